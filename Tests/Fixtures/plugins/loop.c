/* loop.c — fault fixture: objective "fixture-loop" whose compute never returns when the call
 * has tokens (an empty call succeeds with loss 0), ignoring every signal's intent. Tests: the
 * plugins.timeout watchdog ends it, SIGINT ends it, `plugins check` leaves no child spinning. */
#include "common_objective.h"

static keel_status fixture_spin(void *instance, const keel_objective_batch *batch,
                                keel_objective_output *out) {
  (void)instance;
  if (batch->num_tokens > 0) {
    volatile unsigned long long n = 0;
    for (;;) n++;
  }
  out->loss = 0.0;
  if (out->metric_count > 0) out->metrics[0] = 0.0;
  return KEEL_OK;
}

FIXTURE_OBJECTIVE("fixture-loop", fixture_spin, KEEL_ABI_MAJOR, KEEL_ABI_MINOR, sizeof(keel_plugin));

static const uint32_t fixture_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < fixture_minor) return NULL;
  return &fixture_plugin;
}
