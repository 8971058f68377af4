/* bad_choices.c — fault fixture (ABI 1.1): a STRING parameter whose default is not one of its
 * declared choices. The host must refuse the descriptor, naming the parameter and the choices. */
#include "common_objective.h"

static const char *const modes[] = {"fast", "exact", NULL};
static const keel_param_decl bad_params[1] = {
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "mode", "fast | exact", 0.0, 0, "slow", 0.0, 0.0, modes},
};

static const keel_objective_vtable bad_vtable = {
    sizeof(keel_objective_vtable), 0u, 1u, 0u, fixture_metrics, "seq-mean-token-sum", fixture_reinforce,
};

static const keel_plugin bad_plugin = {
    .struct_size = sizeof(keel_plugin), .abi_major = KEEL_ABI_MAJOR, .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE, .name = "fixture-bad-choices", .version = "0.0.1",
    .description = "test fixture: a default outside its choices", .param_count = 1, .params = bad_params,
    .create = fixture_create, .destroy = fixture_destroy, .vtable = &bad_vtable,
};

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t major, uint32_t minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t major, uint32_t minor) {
  (void)major;
  (void)minor;
  return &bad_plugin;
}
