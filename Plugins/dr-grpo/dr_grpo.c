/*
 * dr_grpo.c — the "dr-grpo" objective plugin (Keel ABI 1.0): Dr. GRPO ("GRPO done right",
 * Liu et al. 2025, arXiv 2503.20783): the "grpo" loss without the per-response length
 * normaliser 1/n_i, summed over the batch and divided by a constant, as a loss to MINIMISE,
 * aggregation "seq-mean-token-sum-norm":
 *
 *   L = (1/(S * L_max)) * Σ_i Σ_{t in i} m_t * (w_t * ℓ_t + kl_coef * k3_t)
 *                S = total_sequences, L_max = max_response_tokens (the sampler's max_tokens)
 *
 * Normaliser convention: TRL's (loss_type "dr_grpo" divides by B × max_completion_length);
 * verl's "seq-mean-token-sum-norm" divides the batch sum by a configured constant (or the
 * padded width) and not by B, so verl's loss is B times this one (set its constant to
 * L_max and scale its learning rate by 1/B, or compare gradients up to that factor).
 * When max_response_tokens <= 0 (a batch that does not state it, e.g. `keel plugins check`),
 * L_max = 1 is used (seq-mean-token-sum) and a warning is logged once per instance.
 *
 *   ℓ_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - eps_low, 1 + eps_high)),
 *   r_t = exp(logp_t - logp_old_t)
 *   dual clip (dual_clip = c > 1, A_t < 0 only, off by default): ℓ_t = min(ℓ_t, -A_t * c)
 *   k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1   (KL to the reference, only when
 *          kl_coef > 0; differentiated through logp: ∂k3_t/∂logp_t = 1 - exp(ref_t - logp_t))
 *
 * Stop-gradients (every constant comes from frozen_t = logp_frozen ? logp_frozen[t] : logp[t]):
 *   ρ_t = exp(frozen_t - logp_old_t) decides which branch of ℓ_t is active:
 *     A_t > 0 and ρ_t > 1 + eps_high          → clipped high: ℓ_t = -A_t(1 + eps_high), ∂ = 0
 *     A_t < 0 and ρ_t < 1 - eps_low           → clipped low:  ℓ_t = -A_t(1 - eps_low),  ∂ = 0
 *     A_t < 0 and c > 1 and ρ_t > c           → dual clip:    ℓ_t = -A_t * c,           ∂ = 0
 *     otherwise                               → ℓ_t = -A_t * r_t with r_t from logp (live),
 *                                               ∂ℓ_t/∂logp_t = -A_t * r_t
 *   w_t = the train-inference IS weight (below), a constant; 1 when tis_mode = "none".
 *   grad_logp[t] = (1/(S L_max)) * (w_t * ∂ℓ_t/∂logp_t + kl_coef * (1 - exp(ref_t - logp_t)));
 *   masked tokens (m_t = 0) get exactly 0.
 *
 * Train-inference IS correction (multiplies the policy term after clipping, not the KL term):
 *   log-ratio λ_t = logp_old_t - logp_rollout_t   (is_ratio = "old":     π_old/μ_old)
 *                 = frozen_t  - logp_rollout_t    (is_ratio = "current": π_θ/μ_old, detached)
 *   tis_mode "token":    ratio_t = exp(λ_t)
 *   tis_mode "sequence": ratio_t = exp(Σ_{u in response, m_u = 1} λ_u) for every token of the
 *                        response (the PRODUCT of token ratios, not the geometric mean)
 *   w_t = min(ratio_t, tis_cap) (truncated), or with mis: ratio_t if mis_low <= ratio_t <=
 *   tis_cap, else 0 (masked).
 *
 * Dr. GRPO also drops the std division of the advantage: use the "group-mean" baseline (that
 * is a baseline choice, separate from this aggregation). As in "grpo", KEEL_OBJECTIVE_USES_REF
 * is not set (the static vtable cannot depend on kl_coef); kl_coef > 0 without logp_ref fails
 * with KEEL_ERR_INVALID_ARGUMENT asking for train.kl_ref.
 *
 * Equals TRL GRPOTrainer loss_type "dr_grpo" with max_completion_length = L_max, epsilon =
 * eps_low, epsilon_high = eps_high, beta = kl_coef; and, up to the factor B above, verl's
 * vanilla policy loss with loss_agg_mode "seq-mean-token-sum-norm".
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry; loss and
 * gradient are additive over calls (only the whole-step S and the constant L_max are used). A
 * non-finite input on an unmasked token (in an array this configuration reads) →
 * KEEL_ERR_NUMERIC; unmasked tokens with total_sequences <= 0 or a malformed batch →
 * KEEL_ERR_INVALID_ARGUMENT; a result that is not finite → KEEL_ERR_NUMERIC. Each failure
 * calls host->error first, naming the token and response. No mutable globals: parameters and
 * the warned-once flag live in the instance. Exports only keel_plugin_entry. Links libm (exp).
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "dr-grpo"

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum {
  P_EPS_LOW,
  P_EPS_HIGH,
  P_DUAL_CLIP,
  P_KL_COEF,
  P_TIS_MODE,
  P_TIS_CAP,
  P_MIS,
  P_MIS_LOW,
  P_IS_RATIO,
  P_COUNT
};

static const keel_param_decl dr_grpo_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_low",
     "lower clip: ratio pi/pi_old is clipped at 1 - eps_low (A < 0 below it: zero gradient)", 0.2,
     0, "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_high",
     "upper clip: ratio pi/pi_old is clipped at 1 + eps_high (A > 0 above it: zero gradient)",
     0.2, 0, "", 0.0, HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "dual_clip",
     "dual clip c for A < 0: loss <= -A*c (verl clip_ratio_c, TRL delta); 0 = off, else > 1",
     0.0, 0, "", 0.0, HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "kl_coef",
     "coefficient of the k3 KL to the reference policy (needs logp_ref: train.kl_ref); 0 = off",
     0.0, 0, "", 0.0, HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "tis_mode",
     "train-inference IS weight: none | token | sequence (sequence = product of token ratios)",
     0.0, 0, "none", 0.0, 0.0},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "tis_cap",
     "upper bound C of the IS ratio: truncated to min(ratio, C), or masked above C with mis",
     2.0, 0, "", 1e-9, HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_BOOL, "mis",
     "masked IS: weight 0 outside [mis_low, tis_cap] instead of truncating (kept in denominators)",
     0.0, 0, "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "mis_low",
     "lower bound of the IS ratio under mis (verl default 1/tis_cap; 0 = none, as TRL)", 0.5, 0,
     "", 0.0, HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "is_ratio",
     "IS ratio: old = pi_old/mu_old (verl decoupled, TRL) | current = pi_theta/mu_old, detached",
     0.0, 0, "old", 0.0, 0.0},
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum {
  M_MASKED_LOW,
  M_MASKED_HIGH,
  M_IS_WEIGHT_MEAN,
  M_IS_MASKED,
  M_IS_TRUNCATED,
  M_DUAL_CLIP,
  M_KL_REF,
  M_COUNT
};

static const keel_scalar_decl dr_grpo_metrics[M_COUNT] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
     "fraction of unmasked tokens on the clipped branch because A < 0 and ratio < 1 - eps_low"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
     "fraction of unmasked tokens on a zero-gradient branch with the ratio above: A > 0 and "
     "ratio > 1 + eps_high, or dual-clipped (A < 0 and ratio > dual_clip)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
     "mean train-inference IS weight as used (1 when tis_mode is none)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "is_masked_fraction",
     "fraction of unmasked tokens whose IS weight was set to 0 by mis (0 unless mis)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "is_truncated_fraction",
     "fraction of unmasked tokens whose IS ratio was truncated to tis_cap (0 with mis or none)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "dual_clip_fraction",
     "fraction of unmasked tokens dual-clipped (A < 0 and ratio > dual_clip; 0 when off)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "kl_ref_mean",
     "mean k3 KL to the reference over unmasked tokens (0 when kl_coef is 0)"},
};

/* ---- Instance --------------------------------------------------------------------------- */
enum { TIS_NONE, TIS_TOKEN, TIS_SEQUENCE };
enum { IS_RATIO_OLD, IS_RATIO_CURRENT };

typedef struct dr_grpo {
  const keel_host *host;
  double eps_low, eps_high, dual_clip, kl_coef, tis_cap, mis_low;
  int tis_mode, mis, is_ratio;
  int warned_no_max_tokens; /* the L_max = 1 fallback was logged */
} dr_grpo;

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

/* Index of `s` in the NULL-terminated list `choices`, or -1. */
static int choice_index(const char *s, const char *const *choices) {
  for (int k = 0; s && choices[k]; k++)
    if (strcmp(s, choices[k]) == 0) return k;
  return -1;
}

static const char *const tis_mode_choices[] = {"none", "token", "sequence", NULL};
static const char *const is_ratio_choices[] = {"old", "current", NULL};

static keel_status dr_grpo_create(const keel_host *host, const keel_params *params,
                                  void **out_instance) {
  double f[P_COUNT];
  int64_t iv[P_COUNT];
  const char *sv[P_COUNT];
  for (int j = 0; j < P_COUNT; j++) {
    f[j] = dr_grpo_params[j].default_f;
    iv[j] = dr_grpo_params[j].default_i;
    sv[j] = dr_grpo_params[j].default_s;
  }
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
    while (j < P_COUNT && !(v->name && strcmp(v->name, dr_grpo_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": unknown parameter '%s' (valid: eps_low, eps_high, dual_clip, "
                              "kl_coef, tis_mode, tis_cap, mis, mis_low, is_ratio)",
                  v->name ? v->name : "(null)");
    const keel_param_decl *d = &dr_grpo_params[j];
    if (v->type != d->type)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter '%s' has type %u, expected %u", d->name,
                  (unsigned)v->type, (unsigned)d->type);
    if (d->type == KEEL_PARAM_FLOAT) {
      if (!(v->f >= d->min_value && v->f <= d->max_value))
        return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                    PLUGIN_NAME ": parameter '%s' = %g is outside [%g, %g]", d->name, v->f,
                    d->min_value, d->max_value);
      f[j] = v->f;
    } else if (d->type == KEEL_PARAM_STRING) {
      if (!v->s)
        return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": parameter '%s' is NULL",
                    d->name);
      sv[j] = v->s;
    } else {
      if (v->i != 0 && v->i != 1)
        return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                    PLUGIN_NAME ": parameter '%s' = %lld is not 0 or 1", d->name,
                    (long long)v->i);
      iv[j] = v->i;
    }
  }
  const int tis_mode = choice_index(sv[P_TIS_MODE], tis_mode_choices);
  if (tis_mode < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": parameter 'tis_mode' = '%s' is not one of none, token, sequence",
                sv[P_TIS_MODE]);
  const int is_ratio = choice_index(sv[P_IS_RATIO], is_ratio_choices);
  if (is_ratio < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": parameter 'is_ratio' = '%s' is not one of old, current",
                sv[P_IS_RATIO]);
  if (f[P_DUAL_CLIP] != 0.0 && !(f[P_DUAL_CLIP] > 1.0))
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": parameter 'dual_clip' = %g must be 0 (off) or > 1",
                f[P_DUAL_CLIP]);
  if (iv[P_MIS] && f[P_MIS_LOW] > f[P_TIS_CAP])
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": parameter 'mis_low' = %g exceeds 'tis_cap' = %g (mis keeps "
                            "ratios in [mis_low, tis_cap])",
                f[P_MIS_LOW], f[P_TIS_CAP]);
  dr_grpo *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  m->eps_low = f[P_EPS_LOW];
  m->eps_high = f[P_EPS_HIGH];
  m->dual_clip = f[P_DUAL_CLIP];
  m->kl_coef = f[P_KL_COEF];
  m->tis_cap = f[P_TIS_CAP];
  m->mis_low = f[P_MIS_LOW];
  m->tis_mode = tis_mode;
  m->mis = iv[P_MIS] != 0;
  m->is_ratio = is_ratio;
  m->warned_no_max_tokens = 0;
  *out_instance = m;
  return KEEL_OK;
}

static void dr_grpo_destroy(void *instance) { free(instance); }

/* Returns 0 when x is finite; otherwise reports which array and token. */
static keel_status check_finite(const keel_host *host, const char *array, float x, int64_t t,
                                int64_t i) {
  if (isfinite(x)) return KEEL_OK;
  return fail(host, KEEL_ERR_NUMERIC,
              PLUGIN_NAME ": non-finite %s (%g) at token %lld (response %lld)", array, (double)x,
              (long long)t, (long long)i);
}

/* The IS weight for a raw ratio; counts truncation / masking. */
static double is_weight(const dr_grpo *m, double ratio, int64_t *n_trunc, int64_t *n_masked) {
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

static keel_status dr_grpo_compute(void *instance, const keel_objective_batch *b,
                                   keel_objective_output *out) {
  dr_grpo *m = instance;
  const keel_host *host = m->host;
  if (!b || !out)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": NULL batch or output");
  if (out->metric_count != M_COUNT || !out->metrics)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": output has %u metric slots, expected %d",
                (unsigned)out->metric_count, M_COUNT);
  out->loss = 0.0;
  for (int k = 0; k < M_COUNT; k++) out->metrics[k] = 0.0;

  const int64_t ns = b->num_sequences, nt = b->num_tokens;
  if (ns < 0 || nt < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": negative num_sequences or num_tokens");
  if (ns == 0) {
    if (nt != 0)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": 0 sequences but %lld tokens",
                  (long long)nt);
    return KEEL_OK;
  }
  if (!b->seq_offsets)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": seq_offsets is NULL");
  if (b->seq_offsets[0] != 0 || b->seq_offsets[ns] != nt)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": seq_offsets must run from 0 to num_tokens (%lld), got %lld..%lld",
                (long long)nt, (long long)b->seq_offsets[0], (long long)b->seq_offsets[ns]);
  for (int64_t i = 0; i < ns; i++)
    if (b->seq_offsets[i + 1] < b->seq_offsets[i])
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": seq_offsets decreases at response %lld", (long long)i);
  const int tis = m->tis_mode != TIS_NONE;
  const int kl = m->kl_coef > 0.0;
  if (nt > 0) {
    const char *missing = !b->mask ? "mask"
                          : !b->advantages ? "advantages"
                          : !b->logp ? "logp"
                          : !b->logp_old ? "logp_old"
                          : (tis && !b->logp_rollout) ? "logp_rollout (tis_mode is not none)"
                          : (kl && !b->logp_ref)
                              ? "logp_ref (kl_coef > 0 needs a reference: set train.kl_ref)"
                          : !out->grad_logp ? "grad_logp (output)"
                                            : NULL;
    if (missing) return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": %s is NULL", missing);
  }

  /* Pass 1: validate the unmasked inputs this configuration reads, count unmasked tokens. */
  int64_t unmasked = 0;
  for (int64_t i = 0; i < ns; i++) {
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) continue;
      unmasked++;
      keel_status s = check_finite(host, "logp", b->logp[t], t, i);
      if (!s && b->logp_frozen) s = check_finite(host, "logp_frozen", b->logp_frozen[t], t, i);
      if (!s) s = check_finite(host, "logp_old", b->logp_old[t], t, i);
      if (!s && tis) s = check_finite(host, "logp_rollout", b->logp_rollout[t], t, i);
      if (!s && kl) s = check_finite(host, "logp_ref", b->logp_ref[t], t, i);
      if (!s) s = check_finite(host, "advantage", b->advantages[t], t, i);
      if (s) return s;
    }
  }
  const double S = b->total_sequences;
  if (unmasked > 0 && !(S > 0.0 && isfinite(S)))
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": %lld unmasked tokens but total_sequences = %g (must be > 0)",
                (long long)unmasked, S);
  double l_max = (double)b->max_response_tokens;
  if (unmasked > 0 && !(l_max > 0.0)) {
    if (!m->warned_no_max_tokens && host && host->log)
      host->log(host, KEEL_LOG_WARNING,
                PLUGIN_NAME ": max_response_tokens is not set (<= 0); normalising by "
                            "total_sequences alone (L_max = 1)");
    m->warned_no_max_tokens = 1;
    l_max = 1.0;
  }
  const double scale = unmasked > 0 ? 1.0 / (S * l_max) : 0.0; /* 1/(S L_max) */
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;
  const double c = m->dual_clip; /* 0 = off */

  /* Pass 2: loss, gradient, metrics. */
  double loss = 0.0, w_sum = 0.0, kl_sum = 0.0;
  int64_t n_low = 0, n_high = 0, n_dual = 0, n_trunc = 0, n_is_masked = 0;
  for (int64_t i = 0; i < ns; i++) {
    const int64_t lo = b->seq_offsets[i], hi = b->seq_offsets[i + 1];
    double seq_sum = 0.0;
    /* Sequence-level IS: one weight per response, exp of the summed log-ratio. */
    double seq_ratio = 1.0;
    if (m->tis_mode == TIS_SEQUENCE) {
      double log_sum = 0.0;
      for (int64_t t = lo; t < hi; t++) {
        if (!b->mask[t]) continue;
        const double num = m->is_ratio == IS_RATIO_OLD
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
            m->tis_mode == TIS_SEQUENCE
                ? seq_ratio
                : exp((m->is_ratio == IS_RATIO_OLD ? old : frozen) - (double)b->logp_rollout[t]);
        w = is_weight(m, ratio, &n_trunc, &n_is_masked);
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
      seq_sum += w * value + m->kl_coef * kl_value;
      const double gd = (w * dvalue + m->kl_coef * kl_dvalue) * scale;
      const float g = gd == 0.0 ? 0.0f : (float)gd;
      if (!isfinite(g) || !isfinite(value) || !isfinite(kl_value))
        return fail(host, KEEL_ERR_NUMERIC,
                    PLUGIN_NAME ": loss or gradient not finite at token %lld (response %lld): "
                                "A=%g ratio=%g w=%g k3=%g",
                    (long long)t, (long long)i, a, exp(lp - old), w, kl_value);
      out->grad_logp[t] = g;
    }
    loss += seq_sum * scale;
  }
  if (!isfinite(loss))
    return fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
  out->loss = loss;
  if (unmasked > 0) {
    const double n = (double)unmasked;
    out->metrics[M_MASKED_LOW] = (double)n_low / n;
    out->metrics[M_MASKED_HIGH] = (double)n_high / n;
    out->metrics[M_IS_WEIGHT_MEAN] = w_sum / n;
    out->metrics[M_IS_MASKED] = (double)n_is_masked / n;
    out->metrics[M_IS_TRUNCATED] = (double)n_trunc / n;
    out->metrics[M_DUAL_CLIP] = (double)n_dual / n;
    out->metrics[M_KL_REF] = kl_sum / n;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable dr_grpo_vtable = {
    sizeof(keel_objective_vtable), 0u, M_COUNT, 0u, dr_grpo_metrics, "seq-mean-token-sum-norm",
    dr_grpo_compute,
};

static const keel_plugin dr_grpo_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "Dr. GRPO: GRPO without the 1/|y| length normaliser, seq-mean-token-sum-norm "
                   "= batch sum / (total_sequences x max_response_tokens) (TRL's convention; "
                   "verl divides by a constant, not B); equals TRL loss_type=dr_grpo (beta="
                   "kl_coef), verl seq-mean-token-sum-norm up to the factor B",
    .param_count = P_COUNT,
    .params = dr_grpo_params,
    .create = dr_grpo_create,
    .destroy = dr_grpo_destroy,
    .get_extension = NULL,
    .vtable = &dr_grpo_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t dr_grpo_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < dr_grpo_built_minor) return NULL;
  return &dr_grpo_plugin;
}
