/*
 * none.c — the "none" baseline plugin (Keel ABI 1.0): no baseline, the advantage is the
 * reward itself:
 *
 *   Â_i = R_i
 *
 * Plain REINFORCE without variance reduction: useful as an ablation and for rewards that are
 * already centred. group_ids and lengths are not read.
 *
 * Neither verl nor TRL has a dedicated setting; the closest is verl's adv_estimator "grpo"
 * on one-response groups, which gives A = R / (1 + 1e-6).
 *
 * Contract: a non-finite reward → KEEL_ERR_NUMERIC naming the response; NULL arrays with
 * count > 0 → KEEL_ERR_INVALID_ARGUMENT. Each failure calls host->error first. No
 * parameters, no mutable globals. Exports only keel_plugin_entry.
 */
#include "../common/group_stats.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "none"

/* ---- Instance: the host table only (no parameters) -------------------------------------- */
static keel_status none_baseline_create(const keel_host *host, const keel_params *params,
                                        void **out_instance) {
  return kp_create_host_only(host, PLUGIN_NAME, params, out_instance);
}

static keel_status none_baseline_compute(void *instance, const keel_baseline_batch *b,
                                         keel_baseline_output *out) {
  const kp_host_only *m = instance;
  const keel_host *host = m->host;
  int empty;
  keel_status s = kb_check_batch(host, PLUGIN_NAME, b, out, 0u, &empty);
  if (s || empty) return s;
  for (int64_t i = 0; i < b->count; i++) {
    if ((s = kb_check_reward(host, PLUGIN_NAME, b, i))) return s;
    out->advantages[i] = b->rewards[i];
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_baseline_vtable none_baseline_vtable = {
    sizeof(keel_baseline_vtable), 0u, none_baseline_compute,
};

static const keel_plugin none_baseline_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_BASELINE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "no baseline: the advantage is the reward itself (plain REINFORCE without "
                   "variance reduction; verl and TRL have no dedicated setting)",
    .param_count = 0,
    .params = NULL,
    .create = none_baseline_create,
    .destroy = kp_free_instance,
    .vtable = &none_baseline_vtable,
};

KP_DEFINE_ENTRY(none_baseline_plugin)
