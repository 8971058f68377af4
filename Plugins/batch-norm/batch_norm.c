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
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "batch-norm"

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum { P_EPS, P_COUNT };

static const keel_param_decl bn_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps",
     "added to the batch's token-weighted variance inside the square root (verl 1e-8)", 1e-8, 0,
     "", 0.0, HUGE_VAL},
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct bn {
  const keel_host *host;
  double eps;
} bn;

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
static keel_status fail(const keel_host *host, keel_status status, const char *fmt, ...) {
  char message[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(message, sizeof message, fmt, ap);
  va_end(ap);
  if (host && host->error) host->error(host, message);
  return status;
}

static keel_status bn_create(const keel_host *host, const keel_params *params,
                             void **out_instance) {
  double f[P_COUNT]; /* every parameter is a FLOAT */
  for (int j = 0; j < P_COUNT; j++) f[j] = bn_params[j].default_f;
  uint32_t count = params ? params->count : 0;
  if (count > 0 && !params->values)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": %u parameter values but values is NULL", (unsigned)count);
  /* Walk by each value's struct_size (== sizeof as the host compiled it), matching by name. */
  const char *cursor = count > 0 ? (const char *)params->values : NULL;
  for (uint32_t k = 0; k < count; k++) {
    const keel_param_value *v = (const keel_param_value *)(const void *)cursor;
    if (v->struct_size < sizeof(keel_param_value))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter value %u has struct_size %u (< %u)", (unsigned)k,
                  (unsigned)v->struct_size, (unsigned)sizeof(keel_param_value));
    cursor += v->struct_size;
    int j = 0;
    while (j < P_COUNT && !(v->name && strcmp(v->name, bn_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": unknown parameter '%s' (valid: eps)",
                  v->name ? v->name : "(null)");
    const keel_param_decl *d = &bn_params[j];
    if (v->type != d->type)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter '%s' has type %u, expected %u", d->name,
                  (unsigned)v->type, (unsigned)d->type);
    if (!(v->f >= d->min_value && v->f <= d->max_value))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter '%s' = %g is outside [%g, %g]", d->name, v->f,
                  d->min_value, d->max_value);
    f[j] = v->f;
  }
  bn *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  m->eps = f[P_EPS];
  *out_instance = m;
  return KEEL_OK;
}

static void bn_destroy(void *instance) { free(instance); }

/* ---- Grouping: (group_id, index) pairs sorted, so each group is a contiguous run -------- */
typedef struct member {
  int64_t group;
  int64_t index;
} member;

static int member_cmp(const void *pa, const void *pb) {
  const member *a = pa, *b = pb;
  if (a->group != b->group) return a->group < b->group ? -1 : 1;
  return (a->index > b->index) - (a->index < b->index);
}

static keel_status bn_compute(void *instance, const keel_baseline_batch *b,
                              keel_baseline_output *out) {
  const bn *m = instance;
  const keel_host *host = m->host;
  if (!b || !out)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": NULL batch or output");
  const int64_t n = b->count;
  if (n < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": negative count %lld",
                (long long)n);
  if (n == 0) return KEEL_OK;
  if (!b->rewards || !b->group_ids || !b->lengths || !out->advantages)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": rewards, group_ids, lengths or advantages is NULL");
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(b->rewards[i]))
      return fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": reward of response %lld is %g",
                  (long long)i, (double)b->rewards[i]);
    if (b->lengths[i] < 0)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": length of response %lld is %lld",
                  (long long)i, (long long)b->lengths[i]);
  }
  member *order = malloc((size_t)n * sizeof *order);
  double *centred = malloc((size_t)n * sizeof *centred);
  if (!order || !centred) {
    free(order);
    free(centred);
    return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory for %lld responses",
                (long long)n);
  }
  for (int64_t i = 0; i < n; i++) order[i] = (member){b->group_ids[i], i};
  qsort(order, (size_t)n, sizeof *order, member_cmp);
  /* 1. Subtract the group mean (a one-response group centres to exactly 0). */
  for (int64_t lo = 0; lo < n;) {
    int64_t hi = lo + 1;
    while (hi < n && order[hi].group == order[lo].group) hi++;
    double sum = 0.0;
    for (int64_t k = lo; k < hi; k++) sum += b->rewards[order[k].index];
    const double mean = sum / (double)(hi - lo);
    for (int64_t k = lo; k < hi; k++) {
      const int64_t i = order[k].index;
      centred[i] = hi - lo == 1 ? 0.0 : (double)b->rewards[i] - mean;
    }
    lo = hi;
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
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_BASELINE,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "REINFORCE++ baseline: R - group mean, then whitened over the batch with "
                   "token-weighted (lengths) mean and unbiased variance, eps 1e-8; equals verl "
                   "adv_estimator=reinforce_plus_plus_baseline (except one-response groups: 0)",
    .param_count = P_COUNT,
    .params = bn_params,
    .create = bn_create,
    .destroy = bn_destroy,
    .get_extension = NULL,
    .vtable = &bn_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t bn_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < bn_built_minor) return NULL;
  return &bn_plugin;
}
