/* reward_components.c — fixture reward "fixture-components": reward 0, and three components
 * that differ only in their declared reduction, so the host's aggregation of each is visible:
 *   one        SUM            1 per sample            → the number of samples in the step
 *   chars      TOKEN_MEAN     strlen(response)        → Σ chars·tokens / Σ tokens
 *   chars_seq  SEQUENCE_MEAN  strlen(response)        → the mean over samples
 * Test: a reward component's declared reduction is honoured (it used to be always averaged). */
#include "common_reward.h"
#include <string.h>

static const keel_scalar_decl components[3] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_SUM, "one", "1 per sample"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "chars", "response length in characters, token-weighted"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_SEQUENCE_MEAN, "chars_seq", "response length in characters, per sample"},
};

static keel_status create(const keel_host *host, const keel_params *params, void **out) {
  (void)host; (void)params;
  static int dummy;
  *out = &dummy;
  return KEEL_OK;
}

static keel_status compute(void *instance, const keel_reward_batch *batch, keel_reward_output *out) {
  (void)instance;
  const char *base = (const char *)batch->samples;
  for (int64_t i = 0; i < batch->count; i++) {
    const keel_reward_sample *s = (const keel_reward_sample *)(base + i * batch->samples[0].struct_size);
    out->rewards[i] = 0.0f;
    out->components[i * 3 + 0] = 1.0;
    out->components[i * 3 + 1] = (double)strlen(s->response);
    out->components[i * 3 + 2] = (double)strlen(s->response);
  }
  return KEEL_OK;
}

FIXTURE_REWARD("fixture-components", "test fixture: reward components with each reduction", create, compute, 3u, components)
