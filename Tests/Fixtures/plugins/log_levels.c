/* log_levels.c — fixture reward "fixture-log-levels": reward 0, and one log line at each level
 * (DEBUG, INFO, WARNING) when an instance is created.
 * Test: the host shows a plugin's lines at their own level — DEBUG only with KEEL_LOG_LEVEL=debug. */
#include <keel/keel_plugin.h>

static keel_status create(const keel_host *host, const keel_params *params, void **out) {
  (void)params;
  host->log(host, KEEL_LOG_DEBUG, "fixture debug line");
  host->log(host, KEEL_LOG_INFO, "fixture info line");
  host->log(host, KEEL_LOG_WARNING, "fixture warning line");
  static int dummy;
  *out = &dummy;
  return KEEL_OK;
}

static void destroy(void *instance) { (void)instance; }

static keel_status compute(void *instance, const keel_reward_batch *batch, keel_reward_output *out) {
  (void)instance;
  for (int64_t i = 0; i < batch->count; i++) out->rewards[i] = 0.0f;
  return KEEL_OK;
}

static const keel_reward_vtable vtable = {sizeof(keel_reward_vtable), 0u, 0, compute};

static const keel_plugin plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_REWARD,
    .name = "fixture-log-levels",
    .version = "0.0.1",
    .description = "test fixture: one log line per level at create",
    .create = create,
    .destroy = destroy,
    .vtable = &vtable,
};

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < KEEL_ABI_MINOR) return NULL;
  return &plugin;
}
