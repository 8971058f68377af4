/* nan_output.c — fault fixture: objective "fixture-nan" whose compute returns KEEL_OK with
 * loss = NaN and every grad_logp = NaN whenever the call has at least one token (an empty
 * call gives loss 0). Tests: the host's finite check after every objective call reports the
 * NaN with the plugin's path and name instead of training on it. */
#include "common_objective.h"

#include <math.h>

static keel_status fixture_nan(void *instance, const keel_objective_batch *batch,
                               keel_objective_output *out) {
  (void)instance;
  out->loss = batch->num_tokens > 0 ? (double)NAN : 0.0;
  for (int64_t t = 0; t < batch->num_tokens; t++) out->grad_logp[t] = NAN;
  if (out->metric_count > 0) out->metrics[0] = 0.0;
  return KEEL_OK;
}

FIXTURE_OBJECTIVE("fixture-nan", fixture_nan, KEEL_ABI_MAJOR, KEEL_ABI_MINOR, sizeof(keel_plugin));

static const uint32_t fixture_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < fixture_minor) return NULL;
  return &fixture_plugin;
}
