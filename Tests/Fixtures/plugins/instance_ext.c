/* instance_ext.c — ABI 1.1 fixture: an objective (the fixtures' REINFORCE) whose instances
 * answer get_instance_extension("org.keel.test.echo/1") with a table inside the instance that
 * echoes the instance's `scale` parameter (so a test can tell two instances' tables apart), the
 * same pointer for every query, and NULL for any other id. */
#include "common_objective.h"

#include <string.h>

typedef struct echo_table {
  uint32_t struct_size;
  uint32_t reserved0;
  double scale; /* the instance's parameter */
} echo_table;

typedef struct ext_instance {
  fixture_instance base; /* first: fixture_reinforce reads it */
  echo_table echo;
} ext_instance;

static const keel_param_decl ext_params[1] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "scale", "multiplies the loss", 1.0, 0, "", 0.0, 10.0, NULL},
};

static keel_status ext_create(const keel_host *host, const keel_params *params, void **out) {
  ext_instance *m = malloc(sizeof *m);
  if (!m) return KEEL_ERR_INTERNAL;
  m->base.host = host;
  m->base.scale = params->count > 0 ? params->values[0].f : 1.0;
  m->echo.struct_size = sizeof(echo_table);
  m->echo.reserved0 = 0;
  m->echo.scale = m->base.scale;
  *out = m;
  return KEEL_OK;
}

static const void *ext_query(void *instance, const char *id) {
  ext_instance *m = instance;
  return strcmp(id, "org.keel.test.echo/1") == 0 ? &m->echo : NULL;
}

static const keel_objective_vtable ext_vtable = {
    sizeof(keel_objective_vtable), 0u, 1u, 0u, fixture_metrics, "seq-mean-token-sum", fixture_reinforce,
};

static const keel_plugin ext_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = "fixture-instance-ext",
    .version = "0.0.1",
    .description = "test fixture: an instance extension, seq-mean-token-sum",
    .param_count = 1,
    .params = ext_params,
    .create = ext_create,
    .destroy = fixture_destroy,
    .vtable = &ext_vtable,
    .get_instance_extension = ext_query,
};

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t major, uint32_t minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t major, uint32_t minor) {
  return major == KEEL_ABI_MAJOR && minor >= 1u ? &ext_plugin : NULL;
}
