/*
 * aggregation.h — verl's loss_agg_mode for the built-in C objectives that take it (the PPO
 * family, clip-cov, kl-cov): the choice list, the parameter declaration, and the per-token
 * scale c_t each mode gives. Shared static inline code (see plugin_util.h).
 *
 *   token-mean               c_t = 1/T          T = total_tokens
 *   seq-mean-token-sum       c_t = 1/S          S = total_sequences
 *   seq-mean-token-mean      c_t = 1/(S n_i)    n_i = the response's counted tokens (0: adds nothing)
 *   seq-mean-token-sum-norm  c_t = 1/(S L)      L = max_response_tokens, or 1 (logged once per
 *                                               instance) when it is <= 0
 * `total` is kob_check's normaliser (T for token-mean, S otherwise): the step's totals, so the
 * scales are additive over calls. Arithmetic as the plugins had it: 1.0 / total,
 * 1.0 / (total * L), scale / n_i.
 */
#ifndef KEEL_PLUGINS_COMMON_AGGREGATION_H
#define KEEL_PLUGINS_COMMON_AGGREGATION_H

#include "plugin_util.h"

/* Modes: the index of the name in ka_modes. */
#define KA_TOKEN_MEAN 0
#define KA_SEQ_MEAN_TOKEN_SUM 1
#define KA_SEQ_MEAN_TOKEN_MEAN 2
#define KA_SEQ_MEAN_TOKEN_SUM_NORM 3
static const char *const ka_modes[] = {"token-mean", "seq-mean-token-sum", "seq-mean-token-mean",
                                       "seq-mean-token-sum-norm", NULL};

/* The loss_agg_mode parameter; `def` is the plugin's default (its vtable's `aggregation`). */
#define KA_PARAM_LOSS_AGG_MODE(def)                                                                \
  KP_CHOICE("loss_agg_mode",                                                                       \
            "aggregation (verl loss_agg_mode): token-mean | seq-mean-token-sum | "                 \
            "seq-mean-token-mean | seq-mean-token-sum-norm",                                       \
            def, ka_modes)

/* The call's base scale (1/T, 1/S or 1/(S L)); 0 when `counted` (the tokens it will scale) is
 * 0. *warned: the instance's "L is not set" flag (the warning is logged once). */
static inline double ka_scale(const keel_host *host, const char *plugin, int mode, double total,
                              int64_t counted, int64_t max_response_tokens, int *warned) {
  if (counted <= 0) return 0.0;
  if (mode != KA_SEQ_MEAN_TOKEN_SUM_NORM) return 1.0 / total;
  double l_max = (double)max_response_tokens;
  if (!(l_max > 0.0)) {
    if (!*warned && host && host->log) {
      char message[512];
      snprintf(message, sizeof message,
               "%s: max_response_tokens is not set (<= 0); normalising by total_sequences "
               "alone (L_max = 1)",
               plugin);
      host->log(host, KEEL_LOG_WARNING, message);
    }
    *warned = 1;
    l_max = 1.0;
  }
  return 1.0 / (total * l_max);
}

/* The scale of one response's tokens: scale / n_i for seq-mean-token-mean (0 when n_i is 0),
 * else the base scale. */
static inline double ka_seq_scale(int mode, double scale, int64_t n_i) {
  if (mode != KA_SEQ_MEAN_TOKEN_MEAN) return scale;
  return n_i > 0 ? scale / (double)n_i : 0.0;
}

/* ka_seq_scale with n_i = the unmasked tokens of response [lo, hi) (counted only when the mode
 * needs them). */
static inline double ka_response_scale(int mode, double scale, const uint8_t *mask, int64_t lo,
                                       int64_t hi) {
  if (mode != KA_SEQ_MEAN_TOKEN_MEAN) return scale;
  int64_t n_i = 0;
  for (int64_t t = lo; t < hi; t++) n_i += mask[t] != 0;
  return ka_seq_scale(mode, scale, n_i);
}

#endif /* KEEL_PLUGINS_COMMON_AGGREGATION_H */
