/*
 * rloo.c — the "rloo" baseline plugin (Keel ABI 1.0): REINFORCE Leave-One-Out (Kool et al.
 * 2019; Ahmadian et al. 2024, arXiv 2402.14740), one advantage per response:
 *
 *   Â_i = R_i - (1/(G - 1)) Σ_{j in g, j != i} R_j       g = i's prompt group, G = its size
 *       = G/(G - 1) * (R_i - mean_g)
 *
 * The baseline of each response is the mean reward of the OTHER responses to the same prompt,
 * so it is independent of the response itself (an unbiased baseline). No std division.
 * Edge cases: a one-response group has no other response and gets 0 (Keel's choice); an
 * all-equal group gets exactly 0. Groups are found by sorting (group_id, index) pairs, so ids
 * may be any int64 values in any order; sums run in double, in response order within a group.
 *
 * Equals verl adv_estimator "rloo" and TRL RLOOTrainer's advantage (both R - mean of the
 * others).
 *
 * Contract: a non-finite reward → KEEL_ERR_NUMERIC naming the response; NULL arrays with
 * count > 0 → KEEL_ERR_INVALID_ARGUMENT; an allocation failure → KEEL_ERR_INTERNAL. Each
 * failure calls host->error first. No parameters, no mutable globals. Exports only
 * keel_plugin_entry.
 */
#include "../common/group_stats.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "rloo"

/* ---- Instance: the host table only (no parameters) -------------------------------------- */
static keel_status rloo_create(const keel_host *host, const keel_params *params,
                               void **out_instance) {
  return kp_create_host_only(host, PLUGIN_NAME, params, out_instance);
}

static keel_status rloo_compute(void *instance, const keel_baseline_batch *b,
                                keel_baseline_output *out) {
  const kp_host_only *m = instance;
  const keel_host *host = m->host;
  int empty;
  keel_status s = kb_check_inputs(host, PLUGIN_NAME, b, out, KB_GROUP_IDS, &empty);
  if (s || empty) return s;
  kb_member *order;
  if ((s = kb_group_order(host, PLUGIN_NAME, b, &order))) return s;
  const int64_t n = b->count;
  for (int64_t lo = 0; lo < n;) {
    const kb_group g = kb_group_at(order, n, lo, b->rewards);
    for (int64_t k = g.lo; k < g.hi; k++) {
      const int64_t i = order[k].index;
      const double r = b->rewards[i];
      out->advantages[i] = g.size == 1 ? 0.0f : (float)(r - (g.sum - r) / (double)(g.size - 1));
    }
    lo = g.hi;
  }
  free(order);
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_baseline_vtable rloo_vtable = {
    sizeof(keel_baseline_vtable), 0u, rloo_compute,
};

static const keel_plugin rloo_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_BASELINE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "RLOO: R - mean reward of the other responses to the same prompt "
                   "(leave-one-out), no std division; a one-response group gets 0; equals verl "
                   "adv_estimator=rloo and TRL RLOOTrainer",
    .param_count = 0,
    .params = NULL,
    .create = rloo_create,
    .destroy = kp_free_instance,
    .vtable = &rloo_vtable,
};

KP_DEFINE_ENTRY(rloo_plugin)
