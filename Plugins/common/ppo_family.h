/*
 * ppo_family.h — the one implementation behind the PPO-family objective plugins "ppo-clip",
 * "dapo", "grpo" and "dr-grpo" (Keel ABI 1.0). Shared static inline code (see plugin_util.h);
 * each plugin's .c declares its parameters, metrics, description and a ppo_variant, and points
 * its create/compute/destroy at ppo_family_create/ppo_family_compute/kp_free_instance.
 *
 * Per unmasked token t (every constant comes from frozen_t = logp_frozen ? logp_frozen[t] :
 * logp[t]), with A_t the advantage:
 *   ℓ_t = max(-A_t r_t, -A_t clip(r_t, 1 - eps_low, 1 + eps_high)), r_t = exp(logp_t - logp_old_t)
 *   dual clip (dual_clip = c > 1, A_t < 0 only): ℓ_t = min(ℓ_t, -A_t c)
 *   the branch is decided by ρ_t = exp(frozen_t - logp_old_t), in this order:
 *     A_t > 0 and ρ_t > 1 + eps_high   → ℓ_t = -A_t (1 + eps_high), ∂ = 0  (masked high)
 *     A_t < 0 and ρ_t < 1 - eps_low    → ℓ_t = -A_t (1 - eps_low),  ∂ = 0  (masked low)
 *     A_t < 0, c > 1 and ρ_t > c       → ℓ_t = -A_t c,              ∂ = 0  (masked high, dual)
 *     A_t == 0 or w_t == 0             → ℓ_t = 0,                   ∂ = 0
 *     otherwise                        → ℓ_t = -A_t r_t, ∂ℓ_t/∂logp_t = -A_t r_t (live logp)
 *   w_t: train-inference IS weight, a constant (1 with tis_mode "none"); log-ratio
 *     λ_t = logp_old_t - logp_rollout_t (is_ratio "old") or frozen_t - logp_rollout_t
 *     ("current"); tis_mode "token": ratio_t = exp(λ_t); "sequence": exp(Σ_{unmasked u of the
 *     response} λ_u) for each of its tokens; w_t = min(ratio_t, tis_cap), or with mis: ratio_t
 *     if mis_low <= ratio_t <= tis_cap, else 0 (the token stays in every denominator).
 *   k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1, ∂k3_t/∂logp_t = 1 - exp(ref_t - logp_t)
 *     (variants with `kl`, read only when kl_coef > 0; not multiplied by w_t).
 *
 * Aggregation (the loss to MINIMISE and grad_logp[t] = ∂L/∂logp_t; masked tokens get 0):
 *   PPO_TOKEN_MEAN              L = (1/T) Σ_t w_t ℓ_t                         T = total_tokens
 *   PPO_SEQ_MEAN_TOKEN_MEAN     L = (1/S) Σ_i (1/n_i) Σ_{t in i} (w_t ℓ_t + β k3_t)
 *   PPO_SEQ_MEAN_TOKEN_SUM_NORM L = (1/(S L_max)) Σ_i Σ_{t in i} (w_t ℓ_t + β k3_t)
 *   S = total_sequences, n_i = unmasked tokens of response i, β = kl_coef, L_max =
 *   max_response_tokens, or 1 (with a warning logged once per instance) when it is <= 0.
 * Arithmetic: double throughout, the sums in token order (per response, then over responses,
 * for the seq-mean aggregations); gradients stored as float (an exact 0 as +0).
 *
 * Parameters (looked up by name in the variant's declarations): eps_low, eps_high, dual_clip,
 * kl_coef (only with `kl`), tis_mode, tis_cap, mis, mis_low, is_ratio. create() refuses, after
 * the generic checks of kp_read_params and in this order: an unknown tis_mode or is_ratio, a
 * dual_clip that is neither 0 nor > 1, and mis with mis_low > tis_cap.
 * Metrics, in this order: masked_fraction_low, masked_fraction_high, is_weight_mean,
 * is_masked_fraction, is_truncated_fraction, dual_clip_fraction, then kl_ref_mean (`kl`).
 * Failures: the checks of objective_batch.h (logp_rollout required when tis_mode is not
 * "none", logp_ref when kl_coef > 0), then KEEL_ERR_NUMERIC for a token whose loss or
 * gradient is not finite, or a loss that is not finite.
 */
#ifndef KEEL_PLUGINS_COMMON_PPO_FAMILY_H
#define KEEL_PLUGINS_COMMON_PPO_FAMILY_H

#include <math.h>

#include "objective_batch.h"
#include "plugin_util.h"

/* ---- Declarations shared by the family (a plugin lists them in its own arrays) ---------- */
#define PPO_PARAM_EPS_LOW                                                                          \
  KP_FLOAT("eps_low",                                                                              \
           "lower clip: ratio pi/pi_old is clipped at 1 - eps_low (A < 0 below it: zero "          \
           "gradient)",                                                                            \
           0.2, 0.0, 1.0)
#define PPO_PARAM_EPS_HIGH                                                                         \
  KP_FLOAT("eps_high",                                                                             \
           "upper clip: ratio pi/pi_old is clipped at 1 + eps_high (A > 0 above it: zero "         \
           "gradient)",                                                                            \
           0.2, 0.0, HUGE_VAL)
#define PPO_PARAM_DUAL_CLIP                                                                        \
  KP_FLOAT("dual_clip",                                                                            \
           "dual clip c for A < 0: loss <= -A*c (verl clip_ratio_c, TRL delta); 0 = off, else "    \
           "> 1",                                                                                  \
           0.0, 0.0, HUGE_VAL)
#define PPO_PARAM_KL_COEF                                                                          \
  KP_FLOAT("kl_coef",                                                                              \
           "coefficient of the k3 KL to the reference policy (needs logp_ref: train.kl_ref); "     \
           "0 = off",                                                                              \
           0.0, 0.0, HUGE_VAL)
/* The train-inference IS parameters, in declaration order. */
#define PPO_PARAMS_IS                                                                              \
  KP_STRING("tis_mode",                                                                            \
        "train-inference IS weight: none | token | sequence (sequence = product of token "         \
        "ratios)",                                                                                 \
        "none"),                                                                                   \
  KP_FLOAT("tis_cap",                                                                              \
           "upper bound C of the IS ratio: truncated to min(ratio, C), or masked above C "         \
           "with mis",                                                                             \
           2.0, 1e-9, HUGE_VAL),                                                                   \
  KP_BOOL("mis",                                                                                   \
          "masked IS: weight 0 outside [mis_low, tis_cap] instead of truncating (kept in "         \
          "denominators)",                                                                         \
          0),                                                                                      \
  KP_FLOAT("mis_low",                                                                              \
           "lower bound of the IS ratio under mis (verl default 1/tis_cap; 0 = none, as "          \
           "TRL)",                                                                                 \
           0.5, 0.0, HUGE_VAL),                                                                    \
  KP_STRING("is_ratio",                                                                            \
            "IS ratio: old = pi_old/mu_old (verl decoupled, TRL) | current = "                     \
            "pi_theta/mu_old, detached",                                                           \
            "old")

/* The metrics of every variant, in order; variants with `kl` append PPO_METRIC_KL_REF. */
#define PPO_METRICS                                                                                \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",                                         \
        "fraction of unmasked tokens on the clipped branch because A < 0 and ratio < 1 - "         \
        "eps_low"),                                                                                \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",                                        \
            "fraction of unmasked tokens on a zero-gradient branch with the ratio above: A "       \
            "> 0 and ratio > 1 + eps_high, or dual-clipped (A < 0 and ratio > dual_clip)"),        \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",                                              \
            "mean train-inference IS weight as used (1 when tis_mode is none)"),                   \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_masked_fraction",                                          \
            "fraction of unmasked tokens whose IS weight was set to 0 by mis (0 unless "           \
            "mis)"),                                                                               \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_truncated_fraction",                                       \
            "fraction of unmasked tokens whose IS ratio was truncated to tis_cap (0 with "         \
            "mis or none)"),                                                                       \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "dual_clip_fraction",                                          \
            "fraction of unmasked tokens dual-clipped (A < 0 and ratio > dual_clip; 0 when "       \
            "off)")
#define PPO_METRIC_KL_REF                                                                          \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "kl_ref_mean",                                                 \
        "mean k3 KL to the reference over unmasked tokens (0 when kl_coef is 0)")

enum {
  PPO_M_MASKED_LOW,
  PPO_M_MASKED_HIGH,
  PPO_M_IS_WEIGHT_MEAN,
  PPO_M_IS_MASKED,
  PPO_M_IS_TRUNCATED,
  PPO_M_DUAL_CLIP,
  PPO_M_KL_REF /* with `kl` only */
};
/* The number of metrics of a variant with (1) or without (0) the KL term. */
#define PPO_METRIC_COUNT(kl) (PPO_M_KL_REF + ((kl) ? 1 : 0))

/* ---- Variant and instance --------------------------------------------------------------- */
#define PPO_TOKEN_MEAN 0
#define PPO_SEQ_MEAN_TOKEN_MEAN 1
#define PPO_SEQ_MEAN_TOKEN_SUM_NORM 2

typedef struct ppo_variant {
  const char *name;              /* the plugin's name: the prefix of its messages */
  const keel_param_decl *params; /* the plugin's declarations */
  uint32_t param_count;
  int aggregation; /* PPO_TOKEN_MEAN, PPO_SEQ_MEAN_TOKEN_MEAN or PPO_SEQ_MEAN_TOKEN_SUM_NORM */
  int kl;          /* declares kl_coef and kl_ref_mean: the k3 KL term to the reference */
} ppo_variant;

#define PPO_TIS_NONE 0
#define PPO_TIS_TOKEN 1
#define PPO_TIS_SEQUENCE 2
#define PPO_IS_RATIO_OLD 0
#define PPO_IS_RATIO_CURRENT 1

typedef struct ppo_instance {
  const keel_host *host;
  const ppo_variant *variant;
  double eps_low, eps_high, dual_clip, kl_coef, tis_cap, mis_low;
  int tis_mode, mis, is_ratio;
  int warned_no_max_tokens; /* PPO_SEQ_MEAN_TOKEN_SUM_NORM: the L_max = 1 fallback was logged */
} ppo_instance;

static inline keel_status ppo_family_create(const ppo_variant *v, const keel_host *host,
                                            const keel_params *params, void **out_instance) {
  enum { MAX_PARAMS = 16 };
  kp_value val[MAX_PARAMS];
  if (v->param_count > MAX_PARAMS)
    return kp_fail(host, KEEL_ERR_INTERNAL, "%s: too many parameters", v->name);
  keel_status s = kp_read_params(host, v->name, v->params, v->param_count, params, val, 0);
  if (s) return s;
  const int i_eps_low = kp_find(v->params, v->param_count, "eps_low");
  const int i_eps_high = kp_find(v->params, v->param_count, "eps_high");
  const int i_dual_clip = kp_find(v->params, v->param_count, "dual_clip");
  const int i_kl_coef = kp_find(v->params, v->param_count, "kl_coef");
  const int i_tis_mode = kp_find(v->params, v->param_count, "tis_mode");
  const int i_tis_cap = kp_find(v->params, v->param_count, "tis_cap");
  const int i_mis = kp_find(v->params, v->param_count, "mis");
  const int i_mis_low = kp_find(v->params, v->param_count, "mis_low");
  const int i_is_ratio = kp_find(v->params, v->param_count, "is_ratio");
  if (i_eps_low < 0 || i_eps_high < 0 || i_dual_clip < 0 || (v->kl && i_kl_coef < 0) ||
      i_tis_mode < 0 || i_tis_cap < 0 || i_mis < 0 || i_mis_low < 0 || i_is_ratio < 0)
    return kp_fail(host, KEEL_ERR_INTERNAL, "%s: a PPO-family parameter is not declared",
                   v->name);
  static const char *const tis_modes[] = {"none", "token", "sequence"};
  static const char *const is_ratios[] = {"old", "current"};
  int tis_mode = PPO_TIS_NONE, is_ratio = PPO_IS_RATIO_OLD;
  s = kp_choice(host, v->name, "tis_mode", val[i_tis_mode].s, tis_modes, 3, &tis_mode);
  if (s) return s;
  s = kp_choice(host, v->name, "is_ratio", val[i_is_ratio].s, is_ratios, 2, &is_ratio);
  if (s) return s;
  const double dual_clip = val[i_dual_clip].f;
  if (dual_clip != 0.0 && !(dual_clip > 1.0))
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: parameter 'dual_clip' = %g must be 0 (off) or > 1", v->name, dual_clip);
  const double tis_cap = val[i_tis_cap].f, mis_low = val[i_mis_low].f;
  if (val[i_mis].i && mis_low > tis_cap)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: parameter 'mis_low' = %g exceeds 'tis_cap' = %g (mis keeps ratios in "
                   "[mis_low, tis_cap])",
                   v->name, mis_low, tis_cap);
  ppo_instance *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, v->name);
  m->host = host;
  m->variant = v;
  m->eps_low = val[i_eps_low].f;
  m->eps_high = val[i_eps_high].f;
  m->dual_clip = dual_clip;
  m->kl_coef = v->kl ? val[i_kl_coef].f : 0.0;
  m->tis_cap = tis_cap;
  m->mis_low = mis_low;
  m->tis_mode = tis_mode;
  m->mis = val[i_mis].i != 0;
  m->is_ratio = is_ratio;
  m->warned_no_max_tokens = 0;
  *out_instance = m;
  return KEEL_OK;
}

/* The IS weight for a raw ratio; counts truncation / masking. */
static inline double ppo_is_weight(const ppo_instance *m, double ratio, int64_t *n_trunc,
                                   int64_t *n_masked) {
  if (m->mis) {
    if (ratio < m->mis_low || ratio > m->tis_cap) {
      (*n_masked)++;
      return 0.0;
    }
    return ratio;
  }
  if (ratio > m->tis_cap) {
    (*n_trunc)++;
    return m->tis_cap;
  }
  return ratio;
}

static inline keel_status ppo_family_compute(void *instance, const keel_objective_batch *b,
                                             keel_objective_output *out) {
  ppo_instance *m = instance;
  const ppo_variant *v = m->variant;
  const keel_host *host = m->host;
  const int tis = m->tis_mode != PPO_TIS_NONE;
  const int kl = m->kl_coef > 0.0;
  const int token_mean = v->aggregation == PPO_TOKEN_MEAN;
  const kob_spec spec = {
      (uint32_t)PPO_METRIC_COUNT(v->kl),
      token_mean ? KOB_TOTAL_TOKENS : KOB_TOTAL_SEQUENCES,
      {KOB_REQUIRED, "logp_old"},
      {tis ? KOB_REQUIRED : KOB_IGNORE, "logp_rollout (tis_mode is not none)"},
      {kl ? KOB_REQUIRED : KOB_IGNORE,
       "logp_ref (kl_coef > 0 needs a reference: set train.kl_ref)"},
  };
  kob_checked in;
  keel_status status = kob_check(host, v->name, &spec, b, out, &in);
  if (status || in.empty) return status;
  const int64_t ns = b->num_sequences;

  /* scale: 1/T (token-mean), 1/S (seq-mean-token-mean: then 1/(S n_i) per response) or
   * 1/(S L_max) (seq-mean-token-sum-norm); 0 when no token is unmasked. */
  double scale;
  if (v->aggregation == PPO_SEQ_MEAN_TOKEN_SUM_NORM) {
    double l_max = (double)b->max_response_tokens;
    if (in.unmasked > 0 && !(l_max > 0.0)) {
      if (!m->warned_no_max_tokens && host && host->log) {
        char message[512];
        snprintf(message, sizeof message,
                 "%s: max_response_tokens is not set (<= 0); normalising by total_sequences "
                 "alone (L_max = 1)",
                 v->name);
        host->log(host, KEEL_LOG_WARNING, message);
      }
      m->warned_no_max_tokens = 1;
      l_max = 1.0;
    }
    scale = in.unmasked > 0 ? 1.0 / (in.total * l_max) : 0.0;
  } else {
    scale = in.unmasked > 0 ? 1.0 / in.total : 0.0;
  }
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;
  const double c = m->dual_clip; /* 0 = off */

  /* One pass: loss, gradient, metrics. `sum` runs over the whole call (token-mean) or over
   * one response (the seq-mean aggregations, added to `loss` with the response's scale). */
  double loss = 0.0, sum = 0.0, w_sum = 0.0, kl_sum = 0.0;
  int64_t n_low = 0, n_high = 0, n_dual = 0, n_trunc = 0, n_is_masked = 0;
  for (int64_t i = 0; i < ns; i++) {
    const int64_t lo = b->seq_offsets[i], hi = b->seq_offsets[i + 1];
    double seq_scale = scale;
    if (v->aggregation == PPO_SEQ_MEAN_TOKEN_MEAN) {
      int64_t n_i = 0;
      for (int64_t t = lo; t < hi; t++) n_i += b->mask[t] != 0;
      seq_scale = n_i > 0 ? scale / (double)n_i : 0.0; /* 1/(S n_i) */
    }
    if (!token_mean) sum = 0.0;
    /* Sequence-level IS: one weight per response, exp of the summed log-ratio. */
    double seq_ratio = 1.0;
    if (m->tis_mode == PPO_TIS_SEQUENCE) {
      double log_sum = 0.0;
      for (int64_t t = lo; t < hi; t++) {
        if (!b->mask[t]) continue;
        const double num = m->is_ratio == PPO_IS_RATIO_OLD
                               ? (double)b->logp_old[t]
                               : (b->logp_frozen ? (double)b->logp_frozen[t] : (double)b->logp[t]);
        log_sum += num - (double)b->logp_rollout[t];
      }
      seq_ratio = exp(log_sum);
    }
    for (int64_t t = lo; t < hi; t++) {
      if (!b->mask[t]) {
        out->grad_logp[t] = 0.0f;
        continue;
      }
      const double lp = b->logp[t];
      const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
      const double old = b->logp_old[t];
      const double a = b->advantages[t];
      double w = 1.0;
      if (tis) {
        const double ratio =
            m->tis_mode == PPO_TIS_SEQUENCE
                ? seq_ratio
                : exp((m->is_ratio == PPO_IS_RATIO_OLD ? old : frozen) -
                      (double)b->logp_rollout[t]);
        w = ppo_is_weight(m, ratio, &n_trunc, &n_is_masked);
      }
      w_sum += w;
      /* Branch from the frozen ratio (a constant); the active branch's value from logp. */
      const double rho = exp(frozen - old);
      double value, dvalue; /* ℓ_t and ∂ℓ_t/∂logp_t */
      if (a > 0.0 && rho > hi_bound) {
        n_high++;
        value = -a * hi_bound;
        dvalue = 0.0;
      } else if (a < 0.0 && rho < lo_bound) {
        n_low++;
        value = -a * lo_bound;
        dvalue = 0.0;
      } else if (a < 0.0 && c > 1.0 && rho > c) {
        n_high++;
        n_dual++;
        value = -a * c;
        dvalue = 0.0;
      } else if (a == 0.0 || w == 0.0) {
        value = 0.0; /* contributes nothing (a weight of 0 is never multiplied by inf) */
        dvalue = 0.0;
      } else {
        const double r = exp(lp - old);
        value = -a * r;
        dvalue = -a * r;
      }
      double kl_value = 0.0, kl_dvalue = 0.0; /* k3_t and ∂k3_t/∂logp_t, through logp */
      if (kl) {
        const double d = (double)b->logp_ref[t] - lp;
        const double e = exp(d);
        kl_value = e - d - 1.0;
        kl_dvalue = 1.0 - e;
        kl_sum += kl_value;
      }
      double gd;
      if (v->kl) {
        sum += w * value + m->kl_coef * kl_value;
        gd = (w * dvalue + m->kl_coef * kl_dvalue) * seq_scale;
      } else {
        sum += w * value;
        gd = w * dvalue * seq_scale;
      }
      const float g = gd == 0.0 ? 0.0f : (float)gd;
      if (!isfinite(g) || !isfinite(value) || !isfinite(kl_value)) {
        if (v->kl)
          return kp_fail(host, KEEL_ERR_NUMERIC,
                         "%s: loss or gradient not finite at token %lld (response %lld): "
                         "A=%g ratio=%g w=%g k3=%g",
                         v->name, (long long)t, (long long)i, a, exp(lp - old), w, kl_value);
        return kp_fail(host, KEEL_ERR_NUMERIC,
                       "%s: loss or gradient not finite at token %lld (response %lld): "
                       "A=%g ratio=%g w=%g",
                       v->name, (long long)t, (long long)i, a, exp(lp - old), w);
      }
      out->grad_logp[t] = g;
    }
    if (!token_mean) loss += sum * seq_scale;
  }
  if (token_mean) loss = sum * scale;
  if (!isfinite(loss))
    return kp_fail(host, KEEL_ERR_NUMERIC, "%s: loss is not finite (%g)", v->name, loss);
  out->loss = loss;
  if (in.unmasked > 0) {
    const double n = (double)in.unmasked;
    out->metrics[PPO_M_MASKED_LOW] = (double)n_low / n;
    out->metrics[PPO_M_MASKED_HIGH] = (double)n_high / n;
    out->metrics[PPO_M_IS_WEIGHT_MEAN] = w_sum / n;
    out->metrics[PPO_M_IS_MASKED] = (double)n_is_masked / n;
    out->metrics[PPO_M_IS_TRUNCATED] = (double)n_trunc / n;
    out->metrics[PPO_M_DUAL_CLIP] = (double)n_dual / n;
    if (v->kl) out->metrics[PPO_M_KL_REF] = kl_sum / n;
  }
  return KEEL_OK;
}

#endif /* KEEL_PLUGINS_COMMON_PPO_FAMILY_H */
