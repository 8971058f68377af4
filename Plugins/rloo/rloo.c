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
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define PLUGIN_NAME "rloo"

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct rloo {
  const keel_host *host;
} rloo;

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

static keel_status rloo_create(const keel_host *host, const keel_params *params,
                               void **out_instance) {
  uint32_t count = params ? params->count : 0;
  if (count > 0) {
    const keel_param_value *v = params->values;
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": unknown parameter '%s' (this plugin has no parameters)",
                v && v->name ? v->name : "(null)");
  }
  rloo *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  *out_instance = m;
  return KEEL_OK;
}

static void rloo_destroy(void *instance) { free(instance); }

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

static keel_status rloo_compute(void *instance, const keel_baseline_batch *b,
                                keel_baseline_output *out) {
  const rloo *m = instance;
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
    double sum = 0.0;
    for (int64_t k = lo; k < hi; k++) sum += b->rewards[order[k].index];
    for (int64_t k = lo; k < hi; k++) {
      const int64_t i = order[k].index;
      const double r = b->rewards[i];
      out->advantages[i] = g == 1 ? 0.0f : (float)(r - (sum - r) / (double)(g - 1));
    }
    lo = hi;
  }
  free(order);
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_baseline_vtable rloo_vtable = {
    sizeof(keel_baseline_vtable), 0u, rloo_compute,
};

static const keel_plugin rloo_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_BASELINE,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "RLOO: R - mean reward of the other responses to the same prompt "
                   "(leave-one-out), no std division; a one-response group gets 0; equals verl "
                   "adv_estimator=rloo and TRL RLOOTrainer",
    .param_count = 0,
    .params = NULL,
    .create = rloo_create,
    .destroy = rloo_destroy,
    .get_extension = NULL,
    .vtable = &rloo_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t rloo_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < rloo_built_minor) return NULL;
  return &rloo_plugin;
}
