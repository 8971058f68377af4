/* nan_metric.c — fixture objective "fixture-nan-metric": a valid REINFORCE loss and gradient,
 * but its one declared metric (`token_count`) is NaN on every call.
 * Test: a NaN plugin metric does not erase the step — metrics.jsonl keeps the line with the
 * value as null, and keel train logs a warning naming the key. */
#include "common_objective.h"

#include <math.h>

static keel_status fixture_nan_metric(void *instance, const keel_objective_batch *batch,
                                      keel_objective_output *out) {
  keel_status s = fixture_reinforce(instance, batch, out);
  if (out->metric_count > 0) out->metrics[0] = (double)NAN;
  return s;
}

FIXTURE_OBJECTIVE("fixture-nan-metric", fixture_nan_metric, KEEL_ABI_MAJOR, KEEL_ABI_MINOR, sizeof(keel_plugin));

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < KEEL_ABI_MINOR) return NULL;
  return &fixture_plugin;
}
