/*
 * group_mean_std.c — the "group-mean-std" baseline plugin (Keel ABI 1.0): GRPO's advantage
 * (Shao et al. 2024, arXiv 2402.03300), one advantage per response:
 *
 *   Â_i = (R_i - mean_g) / (std_g + eps)
 *
 *   g = the prompt group of response i (same group_id), G = its size,
 *   mean_g = (1/G) Σ_{j in g} R_j,  std_g = sqrt(Σ_{j in g} (R_j - mean_g)^2 / (G - 1))
 *   (unbiased, as torch.std in verl and TRL).
 *
 * Edge cases (Keel's choices, stated as such):
 *  - a group whose rewards are all equal gets exactly 0 (no division is made);
 *  - a one-response group gets 0 (its unbiased std is undefined). verl gives such a response
 *    A = R (mean 0, std 1); TRL's std is NaN there. Keel prefers "no signal" to "raw reward".
 * Groups are found by sorting (group_id, index) pairs, so ids may be any int64 values in any
 * order; sums run in double, in response order within each group.
 *
 * Equals verl adv_estimator "grpo" with norm_adv_by_std_in_grpo = true (epsilon 1e-6) and TRL
 * GRPOTrainer scale_rewards = "group" (TRL adds 1e-4: set eps = 1e-4 to match it).
 *
 * scale = "batch" (TRL scale_rewards = "batch", Dr. GRPO-style robustness to low-variance groups):
 *   Â_i = (R_i - mean_g) / (std_B + eps),  std_B = the unbiased std of every reward in the batch
 * (torch.std over the whole batch, as TRL's nanstd). Groups are still centred on their own mean;
 * a one-response group still gets 0; a one-response batch or a zero batch std gives 0 (TRL's std
 * is NaN for one response). With eps = 1e-4 it equals TRL's scale_rewards = "batch".
 *
 * Contract: a non-finite reward → KEEL_ERR_NUMERIC naming the response; NULL arrays with
 * count > 0 → KEEL_ERR_INVALID_ARGUMENT; an allocation failure → KEEL_ERR_INTERNAL. Each
 * failure calls host->error first. No mutable globals. Exports only keel_plugin_entry.
 * Links libm (sqrt).
 */
#include "../common/group_stats.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "group-mean-std"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_EPS, P_SCALE, P_COUNT };

static const keel_param_decl gms_params[P_COUNT] = {
    KP_FLOAT("eps", "added to the std before dividing (verl 1e-6, TRL 1e-4)", 1e-6, 0.0,
             HUGE_VAL),
    KP_STRING("scale", "group (divide by each group's std: GRPO) | batch (by the whole batch's "
              "std: TRL scale_rewards=batch)", "group"),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct gms {
  const keel_host *host;
  double eps;
  int batch_scale; /* scale = "batch" */
} gms;

static keel_status gms_create(const keel_host *host, const keel_params *params,
                              void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, gms_params, P_COUNT, params, v, 0);
  if (s) return s;
  const char *scale = v[P_SCALE].s ? v[P_SCALE].s : "group";
  if (strcmp(scale, "group") != 0 && strcmp(scale, "batch") != 0)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: scale must be group or batch, got '%s'",
                   PLUGIN_NAME, scale);
  gms *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->eps = v[P_EPS].f;
  m->batch_scale = strcmp(scale, "batch") == 0;
  *out_instance = m;
  return KEEL_OK;
}

static keel_status gms_compute(void *instance, const keel_baseline_batch *b,
                               keel_baseline_output *out) {
  const gms *m = instance;
  const keel_host *host = m->host;
  int empty;
  keel_status s = kb_check_inputs(host, PLUGIN_NAME, b, out, KB_GROUP_IDS, &empty);
  if (s || empty) return s;
  kb_member *order;
  if ((s = kb_group_order(host, PLUGIN_NAME, b, &order))) return s;
  const int64_t n = b->count;
  /* scale = batch: one std over every reward (unbiased, in response order, in double) */
  double batch_std = 0.0;
  if (m->batch_scale && n > 1) {
    double mean = 0.0, ss = 0.0;
    for (int64_t i = 0; i < n; i++) mean += (double)b->rewards[i];
    mean /= (double)n;
    for (int64_t i = 0; i < n; i++) ss += ((double)b->rewards[i] - mean) * ((double)b->rewards[i] - mean);
    batch_std = sqrt(ss / (double)(n - 1));
  }
  for (int64_t lo = 0; lo < n;) {
    const kb_group g = kb_group_at(order, n, lo, b->rewards);
    if (m->batch_scale) {
      const double denom = batch_std + m->eps;
      for (int64_t k = g.lo; k < g.hi; k++) {
        const int64_t i = order[k].index;
        out->advantages[i] = g.size == 1 || denom == 0.0 || batch_std == 0.0
                                 ? 0.0f
                                 : (float)(((double)b->rewards[i] - g.mean) / denom);
      }
    } else if (g.size == 1 || kb_group_all_equal(order, &g, b->rewards)) {
      for (int64_t k = g.lo; k < g.hi; k++) out->advantages[order[k].index] = 0.0f;
    } else {
      const double denom = kb_group_std(order, &g, b->rewards) + m->eps;
      for (int64_t k = g.lo; k < g.hi; k++) {
        const int64_t i = order[k].index;
        out->advantages[i] = (float)(((double)b->rewards[i] - g.mean) / denom);
      }
    }
    lo = g.hi;
  }
  free(order);
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_baseline_vtable gms_vtable = {
    sizeof(keel_baseline_vtable), 0u, gms_compute,
};

static const keel_plugin gms_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_BASELINE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "GRPO advantage: (R - group mean) / (unbiased group std + eps); all-equal and "
                   "one-response groups get 0 (verl adv_estimator=grpo, eps 1e-6, except that "
                   "verl gives a one-response group R; TRL scale_rewards=group with eps 1e-4); "
                   "scale=batch divides by the whole batch's std (TRL scale_rewards=batch)",
    .param_count = P_COUNT,
    .params = gms_params,
    .create = gms_create,
    .destroy = kp_free_instance,
    .vtable = &gms_vtable,
};

KP_DEFINE_ENTRY(gms_plugin)
