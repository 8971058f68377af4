/*
 * call_covariance.h — shared by clip-cov and kl-cov (Cui et al. 2025, as verl's
 * compute_policy_loss_clip_cov / _kl_cov compute it): the covariance of a token's advantage and
 * its detached log-prob, centred by the CALL's means over its unmasked tokens,
 *   cov_t = (Â_t − ā)(frozen_t − l̄),  frozen_t = logp_frozen ? logp_frozen[t] : logp[t],
 * and the KEEL_EXT_PER_CALL answer both give (their selection is over the call's tokens, so
 * their loss depends on how the host splits a step). Shared static inline code (plugin_util.h).
 */
#ifndef KEEL_PLUGINS_COMMON_CALL_COVARIANCE_H
#define KEEL_PLUGINS_COMMON_CALL_COVARIANCE_H

#include <string.h>

#include "plugin_util.h"

/* The detached log-prob of token t (every constant comes from it). */
static inline double kcv_frozen(const keel_objective_batch *b, int64_t t) {
  return b->logp_frozen ? (double)b->logp_frozen[t] : (double)b->logp[t];
}

/* The call's means ā and l̄ over its `n` (> 0) unmasked tokens, summed in token order. */
typedef struct kcv_centre {
  double a_mean, lp_mean;
} kcv_centre;

static inline kcv_centre kcv_call_centre(const keel_objective_batch *b, int64_t n) {
  double a_sum = 0.0, lp_sum = 0.0;
  for (int64_t t = 0; t < b->num_tokens; t++) {
    if (!b->mask[t]) continue;
    a_sum += (double)b->advantages[t];
    lp_sum += kcv_frozen(b, t);
  }
  const kcv_centre c = {a_sum / (double)n, lp_sum / (double)n};
  return c;
}

/* cov_t for an unmasked token t. */
static inline double kcv_cov(const keel_objective_batch *b, kcv_centre c, int64_t t) {
  return ((double)b->advantages[t] - c.a_mean) * (kcv_frozen(b, t) - c.lp_mean);
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
