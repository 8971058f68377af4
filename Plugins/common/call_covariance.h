/*
 * call_covariance.h — shared by clip-cov and kl-cov (Cui et al. 2025, as verl's
 * compute_policy_loss_clip_cov / _kl_cov compute it): the start of a call (inputs checked, the
 * aggregation's base scale), the covariance of a token's advantage and its detached log-prob,
 * centred by the CALL's means over its unmasked tokens,
 *   cov_t = (Â_t − ā)(frozen_t − l̄),  frozen_t = logp_frozen ? logp_frozen[t] : logp[t],
 * and the KEEL_EXT_PER_CALL answer both give (their selection is over the call's tokens, so
 * their loss depends on how the host splits a step). Shared static inline code (plugin_util.h).
 */
#ifndef KEEL_PLUGINS_COMMON_CALL_COVARIANCE_H
#define KEEL_PLUGINS_COMMON_CALL_COVARIANCE_H

#include <string.h>

#include "aggregation.h"
#include "objective_batch.h"
#include "plugin_util.h"

/* The detached log-prob of token t (every constant comes from it). */
static inline double kcv_frozen(const keel_objective_batch *b, int64_t t) {
  return b->logp_frozen ? (double)b->logp_frozen[t] : (double)b->logp[t];
}

/* A checked call: its unmasked tokens n (> 0), the aggregation's base scale (ka_scale) and the
 * call's means ā and l̄ (summed in token order). */
typedef struct kcv_call {
  int64_t n;
  double scale, a_mean, lp_mean;
} kcv_call;

/* The start of compute: kob_check (logp_old required, the normaliser of the aggregation `agg`),
 * then *call. Returns 0 with *call set when there is work; otherwise *done = 1 and the status to
 * return (a failure, no sequences, or no unmasked token — grad_logp then zeroed). *warned: the
 * instance's ka_scale flag. */
static inline keel_status kcv_begin(const keel_host *host, const char *plugin, uint32_t metric_count,
                                    int agg, int *warned, const keel_objective_batch *b,
                                    keel_objective_output *out, kcv_call *call, int *done) {
  const kob_spec spec = {metric_count, agg == KA_TOKEN_MEAN ? KOB_TOTAL_TOKENS : KOB_TOTAL_SEQUENCES,
                         {KOB_REQUIRED, "logp_old"}, {KOB_IGNORE, NULL}, {KOB_IGNORE, NULL}};
  kob_checked in;
  *done = 1;
  const keel_status status = kob_check(host, plugin, &spec, b, out, &in);
  if (status || in.empty) return status;
  if (in.unmasked == 0) {
    for (int64_t t = 0; t < b->num_tokens; t++) out->grad_logp[t] = 0.0f;
    return KEEL_OK;
  }
  *done = 0;
  call->n = in.unmasked;
  call->scale = ka_scale(host, plugin, agg, in.total, in.unmasked, b->max_response_tokens, warned);
  double a_sum = 0.0, lp_sum = 0.0;
  for (int64_t t = 0; t < b->num_tokens; t++) {
    if (!b->mask[t]) continue;
    a_sum += (double)b->advantages[t];
    lp_sum += kcv_frozen(b, t);
  }
  call->a_mean = a_sum / (double)in.unmasked;
  call->lp_mean = lp_sum / (double)in.unmasked;
  return KEEL_OK;
}

/* cov_t for an unmasked token t. */
static inline double kcv_cov(const keel_objective_batch *b, const kcv_call *c, int64_t t) {
  return ((double)b->advantages[t] - c->a_mean) * (kcv_frozen(b, t) - c->lp_mean);
}

/* Defines `static const void *FN(void *instance, const char *id)`, a get_instance_extension that
 * answers KEEL_EXT_PER_CALL (for every instance) with the one-line REASON, and NULL otherwise. */
#define KCV_PER_CALL_EXTENSION(FN, REASON)                                                         \
  static const keel_ext_per_call FN##_table = {sizeof(keel_ext_per_call), 0u, REASON};             \
  static const void *FN(void *instance, const char *id) {                                          \
    (void)instance;                                                                                \
    return strcmp(id, KEEL_EXT_PER_CALL) == 0 ? &FN##_table : NULL;                                \
  }

#endif /* KEEL_PLUGINS_COMMON_CALL_COVARIANCE_H */
