/*
 * ppo_family.h — the one implementation behind the PPO-family objective plugins "ppo-clip",
 * "dapo", "grpo" and "dr-grpo" (Keel ABI 1.1). Shared static inline code (see plugin_util.h);
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
 *   w_t: train-inference IS weight, a constant (1 with tis_mode "none"); raw ratio from the
 *     log-ratio λ_t = logp_old_t - logp_rollout_t (is_ratio "old") or frozen_t - logp_rollout_t
 *     ("current"); tis_mode "token": ratio_t = exp(λ_t); "sequence": exp(Σ_{unmasked u of the
 *     response} λ_u) for each of its tokens. Then, by mode:
 *       truncated (default): w_t = min(ratio_t, tis_cap);
 *       mis:       w_t = ratio_t if mis_low <= ratio_t <= tis_cap, else 0 (the token stays in
 *                  every denominator: TRL's convention);
 *       rejection: w_t = 1 if mis_low <= ratio_t <= tis_cap, else the token is REJECTED (verl's
 *                  rollout rejection sampling, rollout_rs): it contributes nothing at all (no
 *                  policy, KL or entropy term) and leaves the denominators (below).
 *   KL to the reference (variants with `kl`, only when kl_coef = β > 0), not multiplied by w_t:
 *     kl_estimator "k3":   κ_t = k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1 from logp_ref,
 *                          ∂κ_t/∂logp_t = 1 - exp(ref_t - logp_t); needs logp_ref (USES_REF);
 *     kl_estimator "full": κ_t = kl_ref[t], the host's full-vocabulary KL(π_θ ‖ π_ref) at the
 *                          token's prefix (USES_REF_KL): its gradient goes to grad_kl_ref, none
 *                          to grad_logp.
 *   Entropy bonus (entropy_coef = γ > 0): the term -γ H_t with H_t = entropy[t] (USES_ENTROPY),
 *     gradient to grad_entropy; not multiplied by w_t (verl: pg_loss - entropy_coeff ·
 *     agg_loss(entropy)).
 *
 * Aggregation (loss_agg_mode, verl's agg_loss; default per plugin, the vtable's `aggregation`
 * names that default). With u_t = w_t ℓ_t + β κ_t - γ H_t for a kept unmasked token (0 for a
 * rejected or masked one), the loss to MINIMISE is L = Σ_i Σ_{t in i} c_i u_t with
 *   token-mean                  c_i = 1/T                T = total_tokens
 *   seq-mean-token-sum          c_i = 1/S                S = total_sequences
 *   seq-mean-token-mean         c_i = 1/(S n_i)          n_i = unmasked tokens of response i
 *   seq-mean-token-sum-norm     c_i = 1/(S L_max)        L_max = max_response_tokens
 * (n_i = 0 adds nothing; L_max = 1, with a warning logged once per instance, when it is <= 0).
 * Gradients: grad_logp[t] = c_i (w_t ∂ℓ_t/∂logp_t + β ∂κ_t/∂logp_t) (k3 only), grad_entropy[t] =
 * -γ c_i, grad_kl_ref[t] = β c_i (full only); every output is 0 on masked and rejected tokens.
 * Denominators under rejection: n_i counts the response's KEPT tokens (exact; a wholly rejected
 * response adds nothing, S is unchanged, as in verl). S and S L_max are unchanged (exact).
 * token-mean: the plugin sees only its call, so T is replaced by T K/U, K and U the call's kept
 * and unmasked tokens: exact (= verl's count of kept tokens) when one call holds the whole
 * optimizer step; with several calls each call's kept tokens share its own estimate of the
 * step's kept count; equal to T (bit for bit) when nothing is rejected; K = 0 adds nothing.
 * Arithmetic: double throughout, the sums in token order (per response, then over responses,
 * for the seq-mean aggregations); gradients stored as float (an exact 0 as +0). With every new
 * parameter (loss_agg_mode, entropy_coef, kl_estimator, rejection) at its default the
 * arithmetic is that of Keel 1.0's implementation, bit for bit.
 *
 * Parameters (looked up by name in the variant's declarations): eps_low, eps_high, dual_clip,
 * kl_coef and kl_estimator (only with `kl`), loss_agg_mode, entropy_coef, tis_mode, tis_cap, mis,
 * mis_low, is_ratio, rejection. create() refuses, after the generic checks of kp_read_params and
 * in this order: an unknown loss_agg_mode, kl_estimator, tis_mode or is_ratio (naming the
 * allowed values), a dual_clip that is neither 0 nor > 1, rejection with mis or with tis_mode
 * "none", mis or rejection with mis_low > tis_cap, and (KEEL_ERR_UNSUPPORTED) entropy_coef > 0
 * or kl_estimator "full" with kl_coef > 0 on a host without per-instance flags. It writes the
 * instance's needs: USES_REF (kl_coef > 0, k3), USES_REF_KL (kl_coef > 0, full), USES_ENTROPY
 * (entropy_coef > 0); none otherwise.
 * Metrics, in this order: masked_fraction_low, masked_fraction_high, is_weight_mean,
 * is_masked_fraction, is_truncated_fraction, dual_clip_fraction, then kl_ref_mean (`kl`: the
 * mean of the estimator in use over unmasked tokens, rejected ones included). The clip counts
 * and is_weight_mean (a rejected token's weight is 0, a kept one's 1) run over every unmasked
 * token.
 * Failures: the checks of objective_batch.h (logp_rollout required when tis_mode is not
 * "none", logp_ref when kl_coef > 0 with k3), then KEEL_ERR_INVALID_ARGUMENT when a needed
 * distribution term or its gradient slot is NULL (naming it), KEEL_ERR_NUMERIC for a non-finite
 * entropy or kl_ref on an unmasked token, for a token whose loss or gradient is not finite, or
 * a loss that is not finite.
 */
#ifndef KEEL_PLUGINS_COMMON_PPO_FAMILY_H
#define KEEL_PLUGINS_COMMON_PPO_FAMILY_H

#include <math.h>

#include "aggregation.h"
#include "objective_batch.h"
#include "plugin_util.h"

/* ---- Choices (static, NULL-terminated; the index is the instance's code) ----------------- */
static const char *const ppo_kl_estimators[] = {"k3", "full", NULL};
static const char *const ppo_tis_modes[] = {"none", "token", "sequence", NULL};
static const char *const ppo_is_ratios[] = {"old", "current", NULL};

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
           "coefficient of the KL to the reference policy (needs train.kl_ref); 0 = off",          \
           0.0, 0.0, HUGE_VAL)
#define PPO_PARAM_KL_ESTIMATOR                                                                     \
  KP_CHOICE("kl_estimator",                                                                        \
            "KL to the reference: k3 = sampled estimate from logp_ref (verl low_var_kl) | full "   \
            "= the host's full-vocabulary KL(pi||pi_ref) per token",                               \
            "k3", ppo_kl_estimators)
/* The aggregation parameter (aggregation.h); `def` is the plugin's default. */
#define PPO_PARAM_LOSS_AGG_MODE(def) KA_PARAM_LOSS_AGG_MODE(def)
#define PPO_PARAM_ENTROPY_COEF                                                                     \
  KP_FLOAT("entropy_coef",                                                                         \
           "entropy bonus: loss -= entropy_coef * agg(entropy), same aggregation (verl "           \
           "entropy_coeff); 0 = off",                                                              \
           0.0, 0.0, HUGE_VAL)
/* The train-inference IS parameters, in declaration order. */
#define PPO_PARAMS_IS                                                                              \
  KP_CHOICE("tis_mode",                                                                            \
            "train-inference IS weight: none | token | sequence (sequence = product of token "     \
            "ratios)",                                                                             \
            "none", ppo_tis_modes),                                                                \
  KP_FLOAT("tis_cap",                                                                              \
           "upper bound C of the IS ratio: truncated to min(ratio, C), or masked / rejected "      \
           "above C",                                                                              \
           2.0, 1e-9, HUGE_VAL),                                                                   \
  KP_BOOL("mis",                                                                                   \
          "masked IS: weight 0 outside [mis_low, tis_cap] instead of truncating (kept in "         \
          "denominators)",                                                                         \
          0),                                                                                      \
  KP_FLOAT("mis_low",                                                                              \
           "lower bound of the IS ratio under mis or rejection (verl default 1/tis_cap; 0 = "      \
           "none, as TRL)",                                                                        \
           0.5, 0.0, HUGE_VAL),                                                                    \
  KP_CHOICE("is_ratio",                                                                            \
            "IS ratio: old = pi_old/mu_old (verl decoupled, TRL) | current = "                     \
            "pi_theta/mu_old, detached",                                                           \
            "old", ppo_is_ratios),                                                                 \
  KP_BOOL("rejection",                                                                             \
          "rejection only (verl rollout_rs): ratio outside [mis_low, tis_cap] removes the "        \
          "token/response from loss and denominators, kept ones weigh 1",                          \
          0)

/* The metrics of every variant, in order; variants with `kl` append PPO_METRIC_KL_REF. */
#define PPO_METRICS                                                                                \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",                                         \
        "fraction of unmasked tokens on the clipped branch because A < 0 and ratio < 1 - "         \
        "eps_low"),                                                                                \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",                                        \
            "fraction of unmasked tokens on a zero-gradient branch with the ratio above: A "       \
            "> 0 and ratio > 1 + eps_high, or dual-clipped (A < 0 and ratio > dual_clip)"),        \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",                                              \
            "mean train-inference IS weight as used (1 when tis_mode is none; rejection: 1 "       \
            "kept, 0 rejected)"),                                                                  \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_masked_fraction",                                          \
            "fraction of unmasked tokens whose IS weight was set to 0 by mis or that were "        \
            "rejected (0 otherwise)"),                                                             \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_truncated_fraction",                                       \
            "fraction of unmasked tokens whose IS ratio was truncated to tis_cap (0 with "         \
            "mis, rejection or none)"),                                                            \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "dual_clip_fraction",                                          \
            "fraction of unmasked tokens dual-clipped (A < 0 and ratio > dual_clip; 0 when "       \
            "off)")
#define PPO_METRIC_KL_REF                                                                          \
  KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "kl_ref_mean",                                                 \
        "mean KL to the reference over unmasked tokens, k3 or full as kl_estimator says (0 "       \
        "when kl_coef is 0)")

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

typedef struct ppo_variant {
  const char *name;              /* the plugin's name: the prefix of its messages */
  const keel_param_decl *params; /* the plugin's declarations */
  uint32_t param_count;
  int kl; /* declares kl_coef, kl_estimator and kl_ref_mean: the KL term to the reference */
} ppo_variant;

#define PPO_TIS_NONE 0
#define PPO_TIS_TOKEN 1
#define PPO_TIS_SEQUENCE 2
#define PPO_IS_RATIO_OLD 0
#define PPO_IS_RATIO_CURRENT 1

typedef struct ppo_instance {
  const keel_host *host;
  const ppo_variant *variant;
  double eps_low, eps_high, dual_clip, kl_coef, entropy_coef, tis_cap, mis_low;
  int aggregation; /* KA_TOKEN_MEAN ... KA_SEQ_MEAN_TOKEN_SUM_NORM */
  int kl_full;     /* kl_estimator "full" */
  int tis_mode, mis, is_ratio, rejection;
  int warned_no_max_tokens; /* KA_SEQ_MEAN_TOKEN_SUM_NORM: the L_max = 1 fallback was logged */
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
  const int i_kl_estimator = kp_find(v->params, v->param_count, "kl_estimator");
  const int i_agg = kp_find(v->params, v->param_count, "loss_agg_mode");
  const int i_entropy_coef = kp_find(v->params, v->param_count, "entropy_coef");
  const int i_tis_mode = kp_find(v->params, v->param_count, "tis_mode");
  const int i_tis_cap = kp_find(v->params, v->param_count, "tis_cap");
  const int i_mis = kp_find(v->params, v->param_count, "mis");
  const int i_mis_low = kp_find(v->params, v->param_count, "mis_low");
  const int i_is_ratio = kp_find(v->params, v->param_count, "is_ratio");
  const int i_rejection = kp_find(v->params, v->param_count, "rejection");
  if (i_eps_low < 0 || i_eps_high < 0 || i_dual_clip < 0 ||
      (v->kl && (i_kl_coef < 0 || i_kl_estimator < 0)) || i_agg < 0 || i_entropy_coef < 0 ||
      i_tis_mode < 0 || i_tis_cap < 0 || i_mis < 0 || i_mis_low < 0 || i_is_ratio < 0 ||
      i_rejection < 0)
    return kp_fail(host, KEEL_ERR_INTERNAL, "%s: a PPO-family parameter is not declared",
                   v->name);
  int aggregation = KA_TOKEN_MEAN, kl_full = 0;
  int tis_mode = PPO_TIS_NONE, is_ratio = PPO_IS_RATIO_OLD;
  s = kp_choice(host, v->name, "loss_agg_mode", val[i_agg].s, ka_modes, 4,
                &aggregation);
  if (s) return s;
  if (v->kl) {
    s = kp_choice(host, v->name, "kl_estimator", val[i_kl_estimator].s, ppo_kl_estimators, 2,
                  &kl_full);
    if (s) return s;
  }
  s = kp_choice(host, v->name, "tis_mode", val[i_tis_mode].s, ppo_tis_modes, 3, &tis_mode);
  if (s) return s;
  s = kp_choice(host, v->name, "is_ratio", val[i_is_ratio].s, ppo_is_ratios, 2, &is_ratio);
  if (s) return s;
  const double dual_clip = val[i_dual_clip].f;
  if (dual_clip != 0.0 && !(dual_clip > 1.0))
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: parameter 'dual_clip' = %g must be 0 (off) or > 1", v->name, dual_clip);
  const int mis = val[i_mis].i != 0, rejection = val[i_rejection].i != 0;
  if (rejection && mis)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: parameters 'rejection' and 'mis' exclude each other (rejection removes "
                   "tokens outside [mis_low, tis_cap] and weighs the rest 1; mis weighs them by "
                   "their ratio)",
                   v->name);
  if (rejection && tis_mode == PPO_TIS_NONE)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: parameter 'rejection' needs tis_mode token or sequence (the level at "
                   "which ratios are rejected)",
                   v->name);
  const double tis_cap = val[i_tis_cap].f, mis_low = val[i_mis_low].f;
  if ((mis || rejection) && mis_low > tis_cap)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: parameter 'mis_low' = %g exceeds 'tis_cap' = %g (%s keeps ratios in "
                   "[mis_low, tis_cap])",
                   v->name, mis_low, tis_cap, mis ? "mis" : "rejection");
  const double kl_coef = v->kl ? val[i_kl_coef].f : 0.0;
  const double entropy_coef = val[i_entropy_coef].f;
  /* This instance's needs: only what its settings read (none at the defaults). */
  uint32_t needs = 0;
  if (kl_coef > 0.0) needs |= kl_full ? KEEL_OBJECTIVE_USES_REF_KL : KEEL_OBJECTIVE_USES_REF;
  if (entropy_coef > 0.0) needs |= KEEL_OBJECTIVE_USES_ENTROPY;
  const uint32_t needs_1_1 = needs & (KEEL_OBJECTIVE_USES_REF_KL | KEEL_OBJECTIVE_USES_ENTROPY);
  if (!kp_set_instance_flags(params, needs) && needs_1_1)
    return kp_fail(host, KEEL_ERR_UNSUPPORTED,
                   "%s: %s needs a Keel ABI 1.1 host (per-instance flags: the host must supply "
                   "the %s)",
                   v->name,
                   (needs_1_1 & KEEL_OBJECTIVE_USES_ENTROPY) ? "entropy_coef > 0"
                                                             : "kl_estimator full",
                   (needs_1_1 & KEEL_OBJECTIVE_USES_ENTROPY) ? "per-token entropy"
                                                             : "full-vocabulary KL");
  ppo_instance *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, v->name);
  m->host = host;
  m->variant = v;
  m->eps_low = val[i_eps_low].f;
  m->eps_high = val[i_eps_high].f;
  m->dual_clip = dual_clip;
  m->kl_coef = kl_coef;
  m->entropy_coef = entropy_coef;
  m->tis_cap = tis_cap;
  m->mis_low = mis_low;
  m->aggregation = aggregation;
  m->kl_full = kl_full;
  m->tis_mode = tis_mode;
  m->mis = mis;
  m->is_ratio = is_ratio;
  m->rejection = rejection;
  m->warned_no_max_tokens = 0;
  *out_instance = m;
  return KEEL_OK;
}

/* The IS weight for a raw ratio (truncated or mis); counts truncation / masking. */
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

/* rejection: is the raw ratio inside [mis_low, tis_cap] (the token or response is kept)? */
static inline int ppo_kept(const ppo_instance *m, double ratio) {
  return !(ratio < m->mis_low || ratio > m->tis_cap);
}

/* tis_mode "sequence": exp of the summed log-ratio over the response's unmasked tokens. */
static inline double ppo_seq_ratio(const ppo_instance *m, const keel_objective_batch *b,
                                   int64_t lo, int64_t hi) {
  double log_sum = 0.0;
  for (int64_t t = lo; t < hi; t++) {
    if (!b->mask[t]) continue;
    const double num = m->is_ratio == PPO_IS_RATIO_OLD
                           ? (double)b->logp_old[t]
                           : (b->logp_frozen ? (double)b->logp_frozen[t] : (double)b->logp[t]);
    log_sum += num - (double)b->logp_rollout[t];
  }
  return exp(log_sum);
}

/* The raw IS ratio of unmasked token t (seq_ratio: its response's, for tis_mode "sequence"). */
static inline double ppo_token_ratio(const ppo_instance *m, const keel_objective_batch *b,
                                     int64_t t, double seq_ratio) {
  if (m->tis_mode == PPO_TIS_SEQUENCE) return seq_ratio;
  const double lp = b->logp[t];
  const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
  const double old = b->logp_old[t];
  return exp((m->is_ratio == PPO_IS_RATIO_OLD ? old : frozen) - (double)b->logp_rollout[t]);
}

/* rejection: the kept unmasked tokens of response i (lo..hi). */
static inline int64_t ppo_kept_tokens(const ppo_instance *m, const keel_objective_batch *b,
                                      int64_t lo, int64_t hi, double seq_ratio) {
  int64_t kept = 0;
  for (int64_t t = lo; t < hi; t++)
    if (b->mask[t] && ppo_kept(m, ppo_token_ratio(m, b, t, seq_ratio))) kept++;
  return kept;
}

/* A needed distribution term (entropy, kl_ref) and its gradient slot: present (1.1 struct
 * sizes, non-NULL) and finite on every unmasked token. */
static inline keel_status ppo_check_term(const ppo_instance *m, const keel_objective_batch *b,
                                         const float *term, int has_term, const float *grad,
                                         int has_grad, const char *name, const char *why) {
  const char *plugin = m->variant->name;
  if (b->num_tokens == 0) return KEEL_OK;
  if (!has_term || !term)
    return kp_fail(m->host, KEEL_ERR_INVALID_ARGUMENT, "%s: %s is NULL (%s)", plugin, name, why);
  if (!has_grad || !grad)
    return kp_fail(m->host, KEEL_ERR_INVALID_ARGUMENT, "%s: grad_%s (output) is NULL (%s)",
                   plugin, name, why);
  for (int64_t i = 0; i < b->num_sequences; i++)
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) continue;
      keel_status s = kob_finite(m->host, plugin, name, term[t], t, i);
      if (s) return s;
    }
  return KEEL_OK;
}

/* get_instance_extension: KEEL_EXT_PER_CALL for an instance whose token-mean denominator counts
 * the call's kept tokens (rejection with loss_agg_mode token-mean), NULL otherwise. */
static const keel_ext_per_call ppo_per_call = {
    sizeof(keel_ext_per_call), 0u,
    "rejection with token-mean: the denominator is T times the call's kept fraction"};
static inline const void *ppo_family_instance_extension(void *instance, const char *id) {
  const ppo_instance *m = instance;
  if (strcmp(id, KEEL_EXT_PER_CALL) == 0 && m->rejection && m->aggregation == KA_TOKEN_MEAN)
    return &ppo_per_call;
  return NULL;
}

static inline keel_status ppo_family_compute(void *instance, const keel_objective_batch *b,
                                             keel_objective_output *out) {
  ppo_instance *m = instance;
  const ppo_variant *v = m->variant;
  const keel_host *host = m->host;
  const int tis = m->tis_mode != PPO_TIS_NONE;
  const int kl = m->kl_coef > 0.0;
  const int kl_full = kl && m->kl_full;
  const int ent = m->entropy_coef > 0.0;
  const int reject = tis && m->rejection;
  const int token_mean = m->aggregation == KA_TOKEN_MEAN;
  const kob_spec spec = {
      (uint32_t)PPO_METRIC_COUNT(v->kl),
      token_mean ? KOB_TOTAL_TOKENS : KOB_TOTAL_SEQUENCES,
      {KOB_REQUIRED, "logp_old"},
      {tis ? KOB_REQUIRED : KOB_IGNORE, "logp_rollout (tis_mode is not none)"},
      {kl && !kl_full ? KOB_REQUIRED : KOB_IGNORE,
       "logp_ref (kl_coef > 0 needs a reference: set train.kl_ref)"},
  };
  kob_checked in;
  keel_status status = kob_check(host, v->name, &spec, b, out, &in);
  if (status || in.empty) return status;
  const int64_t ns = b->num_sequences;
  /* The 1.1 terms, read only when a setting needs them. */
  const float *entropy = NULL, *kl_ref = NULL;
  float *grad_entropy = NULL, *grad_kl_ref = NULL;
  if (ent) {
    const int has_in = KOB_BATCH_HAS(b, entropy), has_out = KOB_OUTPUT_HAS(out, grad_entropy);
    entropy = has_in ? b->entropy : NULL;
    grad_entropy = has_out ? out->grad_entropy : NULL;
    status = ppo_check_term(m, b, entropy, has_in, grad_entropy, has_out, "entropy",
                            "entropy_coef > 0 needs the host's per-token entropy");
    if (status) return status;
  }
  if (kl_full) {
    const int has_in = KOB_BATCH_HAS(b, kl_ref), has_out = KOB_OUTPUT_HAS(out, grad_kl_ref);
    kl_ref = has_in ? b->kl_ref : NULL;
    grad_kl_ref = has_out ? out->grad_kl_ref : NULL;
    status = ppo_check_term(m, b, kl_ref, has_in, grad_kl_ref, has_out, "kl_ref",
                            "kl_estimator full needs the full-vocabulary KL to the reference: "
                            "set train.kl_ref");
    if (status) return status;
  }

  /* scale: 1/T (token-mean; under rejection 1/(T K/U)), 1/S (seq-mean-token-sum;
   * seq-mean-token-mean: then 1/(S n_i) per response) or 1/(S L_max) (seq-mean-token-sum-norm);
   * 0 when no token is unmasked. */
  double scale;
  if (token_mean && reject) {
    int64_t kept = 0;
    for (int64_t i = 0; i < ns; i++) {
      const int64_t lo = b->seq_offsets[i], hi = b->seq_offsets[i + 1];
      const double seq_ratio = m->tis_mode == PPO_TIS_SEQUENCE ? ppo_seq_ratio(m, b, lo, hi) : 1.0;
      kept += ppo_kept_tokens(m, b, lo, hi, seq_ratio);
    }
    /* T K/U is exactly T when K == U. */
    scale = kept > 0 ? 1.0 / (in.total * ((double)kept / (double)in.unmasked)) : 0.0;
  } else {
    scale = ka_scale(host, v->name, m->aggregation, in.total, in.unmasked, b->max_response_tokens,
                     &m->warned_no_max_tokens);
  }
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;
  const double c = m->dual_clip; /* 0 = off */

  /* One pass: loss, gradient, metrics. `sum` runs over the whole call (token-mean) or over
   * one response (the seq-mean aggregations, added to `loss` with the response's scale). */
  double loss = 0.0, sum = 0.0, w_sum = 0.0, kl_sum = 0.0;
  int64_t n_low = 0, n_high = 0, n_dual = 0, n_trunc = 0, n_is_masked = 0;
  for (int64_t i = 0; i < ns; i++) {
    const int64_t lo = b->seq_offsets[i], hi = b->seq_offsets[i + 1];
    /* Sequence-level IS: one ratio per response, exp of the summed log-ratio. */
    const double seq_ratio = m->tis_mode == PPO_TIS_SEQUENCE ? ppo_seq_ratio(m, b, lo, hi) : 1.0;
    /* 1/(S n_i) for seq-mean-token-mean: n_i counts the kept tokens under rejection */
    const double seq_scale =
        reject && m->aggregation == KA_SEQ_MEAN_TOKEN_MEAN
            ? ka_seq_scale(m->aggregation, scale, ppo_kept_tokens(m, b, lo, hi, seq_ratio))
            : ka_response_scale(m->aggregation, scale, b->mask, lo, hi);
    if (!token_mean) sum = 0.0;
    for (int64_t t = lo; t < hi; t++) {
      if (!b->mask[t]) {
        out->grad_logp[t] = 0.0f;
        if (grad_entropy) grad_entropy[t] = 0.0f;
        if (grad_kl_ref) grad_kl_ref[t] = 0.0f;
        continue;
      }
      const double lp = b->logp[t];
      const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
      const double old = b->logp_old[t];
      const double a = b->advantages[t];
      double w = 1.0;
      int keep = 1; /* 0: rejected, the token contributes nothing */
      if (tis) {
        const double ratio = ppo_token_ratio(m, b, t, seq_ratio);
        if (reject) {
          keep = ppo_kept(m, ratio);
          if (!keep) n_is_masked++;
          w = keep ? 1.0 : 0.0;
        } else {
          w = ppo_is_weight(m, ratio, &n_trunc, &n_is_masked);
        }
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
      /* κ_t and ∂κ_t/∂logp_t: k3 through logp, or the host's full KL (gradient to kl_ref). */
      double kl_value = 0.0, kl_dvalue = 0.0;
      if (kl) {
        if (kl_full) {
          kl_value = kl_ref[t];
        } else {
          const double d = (double)b->logp_ref[t] - lp;
          const double e = exp(d);
          kl_value = e - d - 1.0;
          kl_dvalue = 1.0 - e;
        }
        kl_sum += kl_value;
      }
      const double kl_term = keep ? kl_value : 0.0, kl_dterm = keep ? kl_dvalue : 0.0;
      double gd;
      if (v->kl) {
        sum += w * value + m->kl_coef * kl_term;
        gd = (w * dvalue + m->kl_coef * kl_dterm) * seq_scale;
      } else {
        sum += w * value;
        gd = w * dvalue * seq_scale;
      }
      double g_entropy = 0.0;
      if (ent && keep) {
        sum -= m->entropy_coef * (double)entropy[t];
        g_entropy = -m->entropy_coef * seq_scale;
      }
      if (grad_entropy) grad_entropy[t] = g_entropy == 0.0 ? 0.0f : (float)g_entropy;
      if (grad_kl_ref) {
        const double g_kl = keep ? m->kl_coef * seq_scale : 0.0;
        grad_kl_ref[t] = g_kl == 0.0 ? 0.0f : (float)g_kl;
      }
      const float g = gd == 0.0 ? 0.0f : (float)gd;
      if (!isfinite(g) || !isfinite(value) || !isfinite(kl_value) ||
          !isfinite((float)g_entropy)) {
        if (v->kl)
          return kp_fail(host, KEEL_ERR_NUMERIC,
                         "%s: loss or gradient not finite at token %lld (response %lld): "
                         "A=%g ratio=%g w=%g kl=%g",
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
