/* segfault.c — fault fixture: objective "fixture-segfault" whose compute writes through a
 * NULL pointer when the call has tokens (an empty call succeeds with loss 0). Tests:
 * `keel plugins check` runs plugins in a child process and reports the crash (signal,
 * plugin path and name) instead of dying with it. The pointer itself is volatile so the
 * compiler cannot prove it NULL and replace the store with a trap instruction (SIGILL). */
#include "common_objective.h"

static keel_status fixture_crash(void *instance, const keel_objective_batch *batch,
                                 keel_objective_output *out) {
  (void)instance;
  if (batch->num_tokens > 0) {
    volatile float *volatile target = NULL;
    *target = 1.0f; /* SIGSEGV */
  }
  out->loss = 0.0;
  if (out->metric_count > 0) out->metrics[0] = 0.0;
  return KEEL_OK;
}

FIXTURE_OBJECTIVE("fixture-segfault", fixture_crash, KEEL_ABI_MAJOR, KEEL_ABI_MINOR,
                  sizeof(keel_plugin));

static const uint32_t fixture_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < fixture_minor) return NULL;
  return &fixture_plugin;
}
