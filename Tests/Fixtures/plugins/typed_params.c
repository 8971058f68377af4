/* typed_params.c — fixture: objective "fixture-params" declaring one parameter of each type:
 *   alpha FLOAT 0.5 [0,1], count INT 3 [1,10], flag BOOL 0, label STRING "x".
 * compute is REINFORCE scaled by alpha (loss = -(alpha/S) Σ mask·A·logp). create fails with
 * KEEL_ERR_INVALID_ARGUMENT and a host->error message when label == "fail".
 * Tests: parameter listing, host validation (unknown name, wrong type, out of range),
 * defaults filled in declaration order, values reaching the instance, create failures. */
#include "common_objective.h"

#include <string.h>

static const keel_param_decl fixture_params[4] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "alpha", "scales the loss", 0.5, 0, "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_INT, "count", "an integer in [1, 10]", 0.0, 3, "", 1.0,
     10.0},
    {sizeof(keel_param_decl), KEEL_PARAM_BOOL, "flag", "a boolean", 0.0, 0, "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "label", "a string; \"fail\" makes create fail",
     0.0, 0, "x", 0.0, 0.0},
};

static keel_status fixture_params_create(const keel_host *host, const keel_params *params,
                                         void **out_instance) {
  double alpha = fixture_params[0].default_f;
  /* Match by name (values arrive in declaration order, but do not rely on it). */
  for (uint32_t k = 0; params && k < params->count; k++) {
    const keel_param_value *v = &params->values[k];
    if (strcmp(v->name, "alpha") == 0) alpha = v->f;
    if (strcmp(v->name, "label") == 0 && v->s && strcmp(v->s, "fail") == 0) {
      host->error(host, "fixture-params: label is \"fail\", refusing to create");
      return KEEL_ERR_INVALID_ARGUMENT;
    }
  }
  keel_status status = fixture_create(host, params, out_instance);
  if (status == KEEL_OK) ((fixture_instance *)*out_instance)->scale = alpha;
  return status;
}

static const keel_objective_vtable fixture_vtable = {
    sizeof(keel_objective_vtable), 0u, 1u, 0u, fixture_metrics, "seq-mean-token-sum",
    fixture_reinforce};

static const keel_plugin fixture_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = "fixture-params",
    .version = "0.0.1",
    .description = "test fixture: REINFORCE scaled by alpha, seq-mean-token-sum",
    .param_count = 4u,
    .params = fixture_params,
    .create = fixture_params_create,
    .destroy = fixture_destroy,
    .vtable = &fixture_vtable,
};

static const uint32_t fixture_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < fixture_minor) return NULL;
  return &fixture_plugin;
}
