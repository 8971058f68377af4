/*
 * batch_norm.c — the "batch-norm" baseline plugin (Keel ABI 1.0): REINFORCE++'s baseline
 * (Hu et al. 2025, arXiv 2501.03262; verl adv_estimator "reinforce_plus_plus_baseline"), one
 * advantage per response:
 *
 *   c_i = R_i - mean_g                      (mean of i's prompt group g)
 *   Â_i = (c_i - μ) / sqrt(σ² + eps)        (whitened over the whole batch, token-weighted)
 *
 *   with token weights L_i = lengths[i] (the response's unmasked tokens), N = Σ_i L_i:
 *   μ  = Σ_i L_i c_i / N
 *   σ² = Σ_i L_i (c_i - μ)² / (N - 1)       (unbiased over tokens, as verl's masked_whiten;
 *                                            the biased /N when N = 1)
 *
 * This is exactly verl's token-level masked_whiten of the per-token broadcast c_i: every
 * token of response i carries c_i, so token means are length-weighted response means. Because
 * μ is a batch statistic, an all-equal group ends with a non-zero advantage (-μ/σ).
 *
 * Edge cases (Keel's choices, stated as such):
 *  - a one-response group has c_i = 0 (its own mean); verl subtracts 0 there, keeping R_i;
 *  - a response with length 0 has no tokens to train and gets 0; N = 0 gives every response 0;
 *  - σ² + eps == 0 (all c_i equal and eps = 0) gives 0 instead of 0/0.
 * Groups are found by sorting (group_id, index) pairs; sums run in double.
 *
 * Equals verl adv_estimator "reinforce_plus_plus_baseline" (eps 1e-8 inside the rsqrt),
 * except for one-response groups as above. TRL has no equivalent.
 *
 * Contract: a non-finite reward → KEEL_ERR_NUMERIC naming the response; a negative length →
 * KEEL_ERR_INVALID_ARGUMENT naming the response; NULL arrays with count > 0 →
 * KEEL_ERR_INVALID_ARGUMENT; an allocation failure → KEEL_ERR_INTERNAL. Each failure calls
 * host->error first. No mutable globals. Exports only keel_plugin_entry. Links libm (sqrt).
 */
#include "../common/group_stats.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "batch-norm"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_EPS, P_COUNT };

static const keel_param_decl bn_params[P_COUNT] = {
    KP_FLOAT("eps",
             "added to the batch's token-weighted variance inside the square root (verl 1e-8)",
             1e-8, 0.0, HUGE_VAL),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct bn {
  const keel_host *host;
  double eps;
} bn;

static keel_status bn_create(const keel_host *host, const keel_params *params,
                             void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, bn_params, P_COUNT, params, v, 0);
  if (s) return s;
  bn *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->eps = v[P_EPS].f;
  *out_instance = m;
  return KEEL_OK;
}

static keel_status bn_compute(void *instance, const keel_baseline_batch *b,
                              keel_baseline_output *out) {
  const bn *m = instance;
  const keel_host *host = m->host;
  int empty;
  keel_status s = kb_check_inputs(host, PLUGIN_NAME, b, out, KB_LENGTHS, &empty);
  if (s || empty) return s;
  const int64_t n = b->count;
  kb_member *order = malloc((size_t)n * sizeof *order);
  double *centred = malloc((size_t)n * sizeof *centred);
  if (!order || !centred) {
    free(order);
    free(centred);
    return kp_fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory for %lld responses",
                   (long long)n);
  }
  kb_sort_groups(order, b->group_ids, n);
  /* 1. Subtract the group mean (a one-response group centres to exactly 0). */
  for (int64_t lo = 0; lo < n;) {
    const kb_group g = kb_group_at(order, n, lo, b->rewards);
    for (int64_t k = g.lo; k < g.hi; k++) {
      const int64_t i = order[k].index;
      centred[i] = g.size == 1 ? 0.0 : (double)b->rewards[i] - g.mean;
    }
    lo = g.hi;
  }
  /* 2. Whiten over the batch with token weights (response order). */
  double tokens = 0.0, wsum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    tokens += (double)b->lengths[i];
    wsum += (double)b->lengths[i] * centred[i];
  }
  if (tokens > 0.0) {
    const double mu = wsum / tokens;
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) {
      const double d = centred[i] - mu;
      ss += (double)b->lengths[i] * d * d;
    }
    const double var = ss / (tokens > 1.0 ? tokens - 1.0 : tokens);
    const double denom = sqrt(var + m->eps);
    for (int64_t i = 0; i < n; i++) {
      const double a = b->lengths[i] > 0 && denom > 0.0 ? (centred[i] - mu) / denom : 0.0;
      out->advantages[i] = (float)a;
    }
  } else {
    for (int64_t i = 0; i < n; i++) out->advantages[i] = 0.0f;
  }
  free(order);
  free(centred);
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_baseline_vtable bn_vtable = {
    sizeof(keel_baseline_vtable), 0u, bn_compute,
};

static const keel_plugin bn_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_BASELINE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "REINFORCE++ baseline: R - group mean, then whitened over the batch with "
                   "token-weighted (lengths) mean and unbiased variance, eps 1e-8; equals verl "
                   "adv_estimator=reinforce_plus_plus_baseline (except one-response groups: 0)",
    .param_count = P_COUNT,
    .params = bn_params,
    .create = bn_create,
    .destroy = kp_free_instance,
    .vtable = &bn_vtable,
};

KP_DEFINE_ENTRY(bn_plugin)
