/* error_status.c — fault fixture: objective "fixture-error" whose compute reports
 * "fixture-error: refused on purpose" through host->error and returns
 * KEEL_ERR_INVALID_ARGUMENT. Tests: the host surfaces that message with the plugin's path
 * and name and the status, and stops the step. */
#include "common_objective.h"

static keel_status fixture_refuse(void *instance, const keel_objective_batch *batch,
                                  keel_objective_output *out) {
  const fixture_instance *self = instance;
  (void)batch;
  (void)out;
  self->host->error(self->host, "fixture-error: refused on purpose");
  return KEEL_ERR_INVALID_ARGUMENT;
}

FIXTURE_OBJECTIVE("fixture-error", fixture_refuse, KEEL_ABI_MAJOR, KEEL_ABI_MINOR,
                  sizeof(keel_plugin));

static const uint32_t fixture_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < fixture_minor) return NULL;
  return &fixture_plugin;
}
