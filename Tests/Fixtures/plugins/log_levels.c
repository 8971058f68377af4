/* log_levels.c — fixture reward "fixture-log-levels": reward 0, and one log line at each level
 * (DEBUG, INFO, WARNING) when an instance is created.
 * Test: the host shows a plugin's lines at their own level — DEBUG only with KEEL_LOG_LEVEL=debug. */
#include "common_reward.h"

static keel_status create(const keel_host *host, const keel_params *params, void **out) {
  (void)params;
  host->log(host, KEEL_LOG_DEBUG, "fixture debug line");
  host->log(host, KEEL_LOG_INFO, "fixture info line");
  host->log(host, KEEL_LOG_WARNING, "fixture warning line");
  static int dummy;
  *out = &dummy;
  return KEEL_OK;
}

static keel_status compute(void *instance, const keel_reward_batch *batch, keel_reward_output *out) {
  (void)instance;
  for (int64_t i = 0; i < batch->count; i++) out->rewards[i] = 0.0f;
  return KEEL_OK;
}

FIXTURE_REWARD("fixture-log-levels", "test fixture: one log line per level at create", create, compute, 0u, 0)
