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
 * Contract: a non-finite reward → KEEL_ERR_NUMERIC naming the response; NULL arrays with
 * count > 0 → KEEL_ERR_INVALID_ARGUMENT; an allocation failure → KEEL_ERR_INTERNAL. Each
 * failure calls host->error first. No mutable globals. Exports only keel_plugin_entry.
 * Links libm (sqrt).
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "group-mean-std"

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum { P_EPS, P_COUNT };

static const keel_param_decl gms_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps",
     "added to the group's std before dividing (verl 1e-6, TRL 1e-4)", 1e-6, 0, "", 0.0,
     HUGE_VAL},
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct gms {
  const keel_host *host;
  double eps;
} gms;

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

static keel_status gms_create(const keel_host *host, const keel_params *params,
                              void **out_instance) {
  double f[P_COUNT]; /* every parameter is a FLOAT */
  for (int j = 0; j < P_COUNT; j++) f[j] = gms_params[j].default_f;
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
    while (j < P_COUNT && !(v->name && strcmp(v->name, gms_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": unknown parameter '%s' (valid: eps)",
                  v->name ? v->name : "(null)");
    const keel_param_decl *d = &gms_params[j];
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
  gms *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  m->eps = f[P_EPS];
  *out_instance = m;
  return KEEL_OK;
}

static void gms_destroy(void *instance) { free(instance); }

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

static keel_status gms_compute(void *instance, const keel_baseline_batch *b,
                               keel_baseline_output *out) {
  const gms *m = instance;
  const keel_host *host = m->host;
  if (!b || !out)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": NULL batch or output");
  const int64_t n = b->count;
  if (n < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": negative count %lld",
                (long long)n);
  if (n == 0) return KEEL_OK;
  if (!b->rewards || !b->group_ids || !out->advantages)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": rewards, group_ids or advantages is NULL");
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(b->rewards[i]))
      return fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": reward of response %lld is %g",
                  (long long)i, (double)b->rewards[i]);
  member *order = malloc((size_t)n * sizeof *order);
  if (!order)
    return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory grouping %lld responses",
                (long long)n);
  for (int64_t i = 0; i < n; i++) order[i] = (member){b->group_ids[i], i};
  qsort(order, (size_t)n, sizeof *order, member_cmp);
  for (int64_t lo = 0; lo < n;) {
    int64_t hi = lo + 1;
    while (hi < n && order[hi].group == order[lo].group) hi++;
    const int64_t g = hi - lo;
    const float first = b->rewards[order[lo].index];
    int all_equal = 1;
    double sum = 0.0;
    for (int64_t k = lo; k < hi; k++) {
      const float r = b->rewards[order[k].index];
      sum += r;
      all_equal = all_equal && r == first;
    }
    if (g == 1 || all_equal) {
      for (int64_t k = lo; k < hi; k++) out->advantages[order[k].index] = 0.0f;
    } else {
      const double mean = sum / (double)g;
      double ss = 0.0;
      for (int64_t k = lo; k < hi; k++) {
        const double d = (double)b->rewards[order[k].index] - mean;
        ss += d * d;
      }
      const double denom = sqrt(ss / (double)(g - 1)) + m->eps;
      for (int64_t k = lo; k < hi; k++) {
        const int64_t i = order[k].index;
        out->advantages[i] = (float)(((double)b->rewards[i] - mean) / denom);
      }
    }
    lo = hi;
  }
  free(order);
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_baseline_vtable gms_vtable = {
    sizeof(keel_baseline_vtable), 0u, gms_compute,
};

static const keel_plugin gms_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_BASELINE,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "GRPO advantage: (R - group mean) / (unbiased group std + eps); all-equal and "
                   "one-response groups get 0 (verl adv_estimator=grpo, eps 1e-6, except that "
                   "verl gives a one-response group R; TRL scale_rewards=group with eps 1e-4)",
    .param_count = P_COUNT,
    .params = gms_params,
    .create = gms_create,
    .destroy = gms_destroy,
    .get_extension = NULL,
    .vtable = &gms_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t gms_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < gms_built_minor) return NULL;
  return &gms_plugin;
}
