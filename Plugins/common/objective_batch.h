/*
 * objective_batch.h — the input checks every built-in objective plugin makes before computing
 * (Keel ABI 1.0, keel_objective_batch / keel_objective_output). Shared static inline code; see
 * plugin_util.h for how Plugins/common/ is included.
 *
 * kob_check, in this order (the first failure wins; each calls host->error first):
 *  1. batch and output not NULL, `metric_count` metric slots → else KEEL_ERR_INVALID_ARGUMENT;
 *     then out->loss and every metric are set to 0;
 *  2. num_sequences, num_tokens >= 0; 0 sequences need 0 tokens and end the call (`empty`);
 *     seq_offsets present, from 0 to num_tokens, non-decreasing;
 *  3. with num_tokens > 0, the arrays read are present, named in this order: mask, advantages,
 *     logp, logp_old, logp_rollout, logp_ref (each as its kob_input says), grad_logp;
 *  4. every unmasked token's inputs are finite, checked per token in the order logp,
 *     logp_frozen (when given), logp_old, logp_rollout, logp_ref (when read), advantage
 *     → KEEL_ERR_NUMERIC "non-finite <array> (<x>) at token <t> (response <i>)";
 *  5. with unmasked tokens, the whole-step normaliser (total_tokens or total_sequences) is
 *     finite and > 0 → else KEEL_ERR_INVALID_ARGUMENT.
 * On success `unmasked` counts the call's unmasked tokens and `total` is the normaliser.
 */
#ifndef KEEL_PLUGINS_COMMON_OBJECTIVE_BATCH_H
#define KEEL_PLUGINS_COMMON_OBJECTIVE_BATCH_H

#include <math.h>

#include "plugin_util.h"

/* How an optional log-prob array is used. */
#define KOB_IGNORE 0     /* not read */
#define KOB_IF_PRESENT 1 /* not required; checked for finiteness when not NULL */
#define KOB_REQUIRED 2   /* NULL is KEEL_ERR_INVALID_ARGUMENT "<missing> is NULL" */

typedef struct kob_input {
  int use;             /* KOB_IGNORE, KOB_IF_PRESENT or KOB_REQUIRED */
  const char *missing; /* how the "is NULL" message names it, e.g. "logp_old (clip is on)" */
} kob_input;

/* The whole-step normaliser an objective divides by. */
#define KOB_TOTAL_TOKENS 0
#define KOB_TOTAL_SEQUENCES 1

typedef struct kob_spec {
  uint32_t metric_count; /* the vtable's metric_count */
  int normaliser;        /* KOB_TOTAL_TOKENS or KOB_TOTAL_SEQUENCES */
  kob_input logp_old, logp_rollout, logp_ref;
} kob_spec;

typedef struct kob_checked {
  int empty;        /* no sequences: nothing to compute, return KEEL_OK */
  int64_t unmasked; /* unmasked tokens of the call */
  double total;     /* the normaliser (finite and > 0 when unmasked > 0) */
} kob_checked;

/* ABI 1.1: does the host's batch / output carry the distribution-term fields? (A reader checks
 * struct_size before reading a field appended after 1.0.) */
#define KOB_BATCH_HAS(b, field)                                                                    \
  ((b)->struct_size >= offsetof(keel_objective_batch, field) + sizeof((b)->field))
#define KOB_OUTPUT_HAS(o, field)                                                                   \
  ((o)->struct_size >= offsetof(keel_objective_output, field) + sizeof((o)->field))

/* KEEL_OK when x is finite; otherwise reports which array, token and response. */
static inline keel_status kob_finite(const keel_host *host, const char *plugin, const char *array,
                                     float x, int64_t t, int64_t i) {
  if (isfinite(x)) return KEEL_OK;
  return kp_fail(host, KEEL_ERR_NUMERIC, "%s: non-finite %s (%g) at token %lld (response %lld)",
                 plugin, array, (double)x, (long long)t, (long long)i);
}

static inline int kob_reads(const kob_input *in, const float *array) {
  return in->use == KOB_REQUIRED || (in->use == KOB_IF_PRESENT && array);
}

static inline keel_status kob_check(const keel_host *host, const char *plugin,
                                    const kob_spec *spec, const keel_objective_batch *b,
                                    keel_objective_output *out, kob_checked *res) {
  res->empty = 0;
  res->unmasked = 0;
  res->total = 0.0;
  if (!b || !out)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: NULL batch or output", plugin);
  if (out->metric_count != spec->metric_count || !out->metrics)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: output has %u metric slots, expected %d",
                   plugin, (unsigned)out->metric_count, (int)spec->metric_count);
  out->loss = 0.0;
  for (uint32_t k = 0; k < spec->metric_count; k++) out->metrics[k] = 0.0;

  const int64_t ns = b->num_sequences, nt = b->num_tokens;
  if (ns < 0 || nt < 0)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: negative num_sequences or num_tokens",
                   plugin);
  if (ns == 0) {
    if (nt != 0)
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: 0 sequences but %lld tokens", plugin,
                     (long long)nt);
    res->empty = 1;
    return KEEL_OK;
  }
  if (!b->seq_offsets)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: seq_offsets is NULL", plugin);
  if (b->seq_offsets[0] != 0 || b->seq_offsets[ns] != nt)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: seq_offsets must run from 0 to num_tokens (%lld), got %lld..%lld", plugin,
                   (long long)nt, (long long)b->seq_offsets[0], (long long)b->seq_offsets[ns]);
  for (int64_t i = 0; i < ns; i++)
    if (b->seq_offsets[i + 1] < b->seq_offsets[i])
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: seq_offsets decreases at response %lld",
                     plugin, (long long)i);
  const kob_input *old = &spec->logp_old, *rollout = &spec->logp_rollout, *ref = &spec->logp_ref;
  if (nt > 0) {
    const char *missing = !b->mask ? "mask"
                          : !b->advantages ? "advantages"
                          : !b->logp ? "logp"
                          : (old->use == KOB_REQUIRED && !b->logp_old) ? old->missing
                          : (rollout->use == KOB_REQUIRED && !b->logp_rollout) ? rollout->missing
                          : (ref->use == KOB_REQUIRED && !b->logp_ref) ? ref->missing
                          : !out->grad_logp ? "grad_logp (output)"
                                            : NULL;
    if (missing) return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: %s is NULL", plugin, missing);
  }

  const int read_old = kob_reads(old, b->logp_old);
  const int read_rollout = kob_reads(rollout, b->logp_rollout);
  const int read_ref = kob_reads(ref, b->logp_ref);
  int64_t unmasked = 0;
  for (int64_t i = 0; i < ns; i++) {
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) continue;
      unmasked++;
      keel_status s = kob_finite(host, plugin, "logp", b->logp[t], t, i);
      if (!s && b->logp_frozen)
        s = kob_finite(host, plugin, "logp_frozen", b->logp_frozen[t], t, i);
      if (!s && read_old) s = kob_finite(host, plugin, "logp_old", b->logp_old[t], t, i);
      if (!s && read_rollout)
        s = kob_finite(host, plugin, "logp_rollout", b->logp_rollout[t], t, i);
      if (!s && read_ref) s = kob_finite(host, plugin, "logp_ref", b->logp_ref[t], t, i);
      if (!s) s = kob_finite(host, plugin, "advantage", b->advantages[t], t, i);
      if (s) return s;
    }
  }
  const int by_tokens = spec->normaliser == KOB_TOTAL_TOKENS;
  const double total = by_tokens ? b->total_tokens : b->total_sequences;
  if (unmasked > 0 && !(total > 0.0 && isfinite(total)))
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: %lld unmasked tokens but %s = %g (must be > 0)", plugin,
                   (long long)unmasked, by_tokens ? "total_tokens" : "total_sequences", total);
  res->unmasked = unmasked;
  res->total = total;
  return KEEL_OK;
}

#endif /* KEEL_PLUGINS_COMMON_OBJECTIVE_BATCH_H */
