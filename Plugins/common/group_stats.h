/*
 * group_stats.h — input checks and per-group statistics shared by the built-in baseline
 * (advantage estimator) plugins (Keel ABI 1.0, keel_baseline_batch). Shared static inline code;
 * see plugin_util.h for how Plugins/common/ is included.
 *
 * Groups are the responses sharing a group_id (any int64 values, in any order). They are found
 * by sorting (group_id, index) pairs, so each group is a contiguous run of the sorted order with
 * its members in response order; every sum runs in double, in that order.
 *
 * Failures (each calls host->error first): a NULL batch or output, a negative count or a NULL
 * array the plugin reads (with count > 0) → KEEL_ERR_INVALID_ARGUMENT; a non-finite reward →
 * KEEL_ERR_NUMERIC naming the response; a negative length → KEEL_ERR_INVALID_ARGUMENT naming the
 * response; an allocation failure → KEEL_ERR_INTERNAL.
 */
#ifndef KEEL_PLUGINS_COMMON_GROUP_STATS_H
#define KEEL_PLUGINS_COMMON_GROUP_STATS_H

#include <math.h>

#include "plugin_util.h"

/* ---- Input checks ----------------------------------------------------------------------- */
#define KB_GROUP_IDS 1u /* the plugin reads group_ids */
#define KB_LENGTHS 2u   /* the plugin reads lengths (and group_ids) */

/* NULL batch/output, negative count; count 0 sets *empty (return KEEL_OK); then the arrays
 * read: rewards, [group_ids], [lengths], advantages. */
static inline keel_status kb_check_batch(const keel_host *host, const char *plugin,
                                         const keel_baseline_batch *b,
                                         const keel_baseline_output *out, unsigned reads,
                                         int *empty) {
  *empty = 0;
  if (!b || !out)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: NULL batch or output", plugin);
  if (b->count < 0)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: negative count %lld", plugin,
                   (long long)b->count);
  if (b->count == 0) {
    *empty = 1;
    return KEEL_OK;
  }
  const int lengths = (reads & KB_LENGTHS) != 0;
  const int groups = lengths || (reads & KB_GROUP_IDS) != 0;
  if (!b->rewards || (groups && !b->group_ids) || (lengths && !b->lengths) || !out->advantages)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: %s is NULL", plugin,
                   lengths  ? "rewards, group_ids, lengths or advantages"
                   : groups ? "rewards, group_ids or advantages"
                            : "rewards or advantages");
  return KEEL_OK;
}

/* KEEL_OK when reward i is finite. */
static inline keel_status kb_check_reward(const keel_host *host, const char *plugin,
                                          const keel_baseline_batch *b, int64_t i) {
  if (isfinite(b->rewards[i])) return KEEL_OK;
  return kp_fail(host, KEEL_ERR_NUMERIC, "%s: reward of response %lld is %g", plugin,
                 (long long)i, (double)b->rewards[i]);
}

/* Every reward finite and, with KB_LENGTHS, every length >= 0: response by response. */
static inline keel_status kb_check_values(const keel_host *host, const char *plugin,
                                          const keel_baseline_batch *b, unsigned reads) {
  for (int64_t i = 0; i < b->count; i++) {
    keel_status s = kb_check_reward(host, plugin, b, i);
    if (s) return s;
    if ((reads & KB_LENGTHS) && b->lengths[i] < 0)
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: length of response %lld is %lld",
                     plugin, (long long)i, (long long)b->lengths[i]);
  }
  return KEEL_OK;
}

/* kb_check_batch then kb_check_values: the whole input check of a grouping baseline. */
static inline keel_status kb_check_inputs(const keel_host *host, const char *plugin,
                                          const keel_baseline_batch *b,
                                          const keel_baseline_output *out, unsigned reads,
                                          int *empty) {
  keel_status s = kb_check_batch(host, plugin, b, out, reads, empty);
  if (s || *empty) return s;
  return kb_check_values(host, plugin, b, reads);
}

/* ---- Grouping --------------------------------------------------------------------------- */
typedef struct kb_member {
  int64_t group;
  int64_t index;
} kb_member;

static inline int kb_member_cmp(const void *pa, const void *pb) {
  const kb_member *a = pa, *b = pb;
  if (a->group != b->group) return a->group < b->group ? -1 : 1;
  return (a->index > b->index) - (a->index < b->index);
}

/* Fill order[0..n) with (group_ids[i], i) and sort it: each group becomes a contiguous run. */
static inline void kb_sort_groups(kb_member *order, const int64_t *group_ids, int64_t n) {
  for (int64_t i = 0; i < n; i++) order[i] = (kb_member){group_ids[i], i};
  qsort(order, (size_t)n, sizeof *order, kb_member_cmp);
}

/* A malloc-ed sorted order of the batch's responses (free it), or KEEL_ERR_INTERNAL. */
static inline keel_status kb_group_order(const keel_host *host, const char *plugin,
                                         const keel_baseline_batch *b, kb_member **order) {
  *order = malloc((size_t)b->count * sizeof **order);
  if (!*order)
    return kp_fail(host, KEEL_ERR_INTERNAL, "%s: out of memory grouping %lld responses", plugin,
                   (long long)b->count);
  kb_sort_groups(*order, b->group_ids, b->count);
  return KEEL_OK;
}

/* One group: order[lo..hi) of the sorted order. */
typedef struct kb_group {
  int64_t lo, hi, size;
  double sum;  /* Σ R_j in response order */
  double mean; /* sum / size */
} kb_group;

/* The group starting at order[lo], with its sum and mean. Walk: for (lo = 0; lo < n; lo = g.hi). */
static inline kb_group kb_group_at(const kb_member *order, int64_t n, int64_t lo,
                                   const float *rewards) {
  kb_group g;
  g.lo = lo;
  g.hi = lo + 1;
  while (g.hi < n && order[g.hi].group == order[lo].group) g.hi++;
  g.size = g.hi - g.lo;
  g.sum = 0.0;
  for (int64_t k = g.lo; k < g.hi; k++) g.sum += rewards[order[k].index];
  g.mean = g.sum / (double)g.size;
  return g;
}

/* 1 when every reward of the group equals the first (as floats). */
static inline int kb_group_all_equal(const kb_member *order, const kb_group *g,
                                     const float *rewards) {
  const float first = rewards[order[g->lo].index];
  for (int64_t k = g->lo; k < g->hi; k++)
    if (rewards[order[k].index] != first) return 0;
  return 1;
}

/* The unbiased standard deviation sqrt(Σ (R_j - mean)² / (size - 1)); needs size > 1. */
static inline double kb_group_std(const kb_member *order, const kb_group *g,
                                  const float *rewards) {
  double ss = 0.0;
  for (int64_t k = g->lo; k < g->hi; k++) {
    const double d = (double)rewards[order[k].index] - g->mean;
    ss += d * d;
  }
  return sqrt(ss / (double)(g->size - 1));
}

#endif /* KEEL_PLUGINS_COMMON_GROUP_STATS_H */
