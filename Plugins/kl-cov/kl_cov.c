/*
 * kl_cov.c — the "kl-cov" objective plugin (Keel ABI 1.1): KL-Cov from "The Entropy Mechanism
 * of Reinforcement Learning for Reasoning Language Models" (Cui et al. 2025, arXiv
 * 2505.22617): the unclipped importance-ratio policy gradient, plus a |log-ratio| penalty on
 * the top-k tokens by advantage-logp covariance (the tokens that drive entropy collapse). A
 * loss to MINIMISE; aggregation "token-mean" by default (loss_agg_mode).
 *
 * Per call (verl: per micro-batch). Let U be the call's unmasked tokens, n = |U| (n counts the
 * CALL, not the step: the covariance and k are local to a call, as verl's are local to its
 * micro-batch; only the loss normalisers below are whole-step constants).
 *   frozen_t = logp_frozen ? logp_frozen[t] : logp[t]     (every constant comes from here)
 *   r_t  = exp(logp_t - logp_old_t)                        (live: differentiated)
 *   ā    = (1/n) Σ_{u∈U} A_u,   l̄ = (1/n) Σ_{u∈U} frozen_u          (sums in token order)
 *   cov_t = (A_t - ā) * (frozen_t - l̄)                     (detached log-prob, as verl)
 *   k = max(1, (int64)(n * kl_cov_ratio))                  (truncation, as Python int())
 *   selected = the k tokens of U with the largest cov_t; ties broken by the lower token index
 *     (torch.topk leaves tie order unspecified). A constant: it depends on frozen only.
 *   per-token loss ℓ_t and ∂ℓ_t/∂logp_t:
 *     t selected → ℓ_t = -A_t r_t + β |logp_t - logp_old_t|,  ∂ = -A_t r_t + β sign(logp_t -
 *                  logp_old_t)   (β = ppo_kl_coef; sign(0) = 0, as torch's abs' gradient)
 *     otherwise  → ℓ_t = -A_t r_t,                             ∂ = -A_t r_t
 *     (A_t == 0 contributes -A_t r_t = 0 and is computed as exactly 0.)
 *   No clipping of any kind (verl's kl_cov has none) and no log-ratio clamp.
 *
 * Aggregation (loss_agg_mode, verl agg_loss's modes; masked tokens get gradient 0):
 *   token-mean               L = (1/T) Σ_t ℓ_t                          T = total_tokens
 *   seq-mean-token-sum       L = (1/S) Σ_i Σ_{t∈i} ℓ_t                  S = total_sequences
 *   seq-mean-token-mean      L = (1/S) Σ_i (1/n_i) Σ_{t∈i} ℓ_t          n_i = unmasked of i
 *   seq-mean-token-sum-norm  L = (1/(S L_max)) Σ_i Σ_{t∈i} ℓ_t          L_max =
 *     max_response_tokens, or 1 (warning logged once per instance) when it is <= 0 (TRL's
 *     Dr. GRPO convention; verl divides by its padded length only, not by the batch size)
 *   grad_logp[t] = ∂ℓ_t/∂logp_t times the token's scale. Sums in double, in token order (per
 *   response, then over responses for the seq-mean modes); gradients stored as float.
 *
 * verl equivalence: policy_loss.loss_mode "kl_cov" (compute_policy_loss_kl_cov in
 * verl/trainer/ppo/core_algos.py) with policy_loss.kl_cov_ratio / ppo_kl_coef = the same-named
 * parameters and the same loss_agg_mode, except (1) the tie order of topk, (2) the normalisers
 * are the whole step's T / S instead of the micro-batch's, and (3) verl's covariance reads the
 * live log-prob (identical when logp_frozen = logp). Defaults are verl's: kl_cov_ratio 2e-4,
 * ppo_kl_coef 1. No TRL twin.
 *
 * Metrics (token-mean over the call's unmasked tokens): masked_fraction_low/high (always 0:
 * nothing is clipped), is_weight_mean (always 1: no train-inference IS), ppo_kl_abs (verl's
 * actor/ppo_kl for kl_cov: mean |frozen - logp_old|), kl_cov_fraction (k / n: tokens
 * penalised).
 *
 * Contract: per-instance flags 0 (no distribution term). Computes in double and stores float;
 * overwrites every grad_logp entry. A call without logp_old (with tokens) →
 * KEEL_ERR_INVALID_ARGUMENT "logp_old is NULL"; the other checks of objective_batch.h (a
 * non-finite input on an unmasked token → KEEL_ERR_NUMERIC; unmasked tokens with a
 * non-positive normaliser → KEEL_ERR_INVALID_ARGUMENT); create() refuses kl_cov_ratio <= 0
 * (verl asserts > 0) and an unknown loss_agg_mode; out of memory for the per-call selection
 * buffers → KEEL_ERR_INTERNAL; a loss or gradient that is not finite → KEEL_ERR_NUMERIC. Each
 * failure calls host->error first. No mutable globals: parameters live in the instance.
 * Exports only keel_plugin_entry. Links libm (exp, fabs).
 */
#include "../common/aggregation.h"
#include "../common/call_covariance.h"
#include "../common/objective_batch.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "kl-cov"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_KL_COV_RATIO, P_PPO_KL_COEF, P_LOSS_AGG_MODE, P_COUNT };


static const keel_param_decl kl_cov_params[P_COUNT] = {
    KP_FLOAT("kl_cov_ratio",
             "fraction of the call's unmasked tokens penalised: k = max(1, int(n * ratio)), top-k "
             "by covariance (verl policy_loss.kl_cov_ratio; > 0)",
             2e-4, 0.0, 1.0),
    KP_FLOAT("ppo_kl_coef",
             "coefficient of |logp - logp_old| on the selected tokens (verl "
             "policy_loss.ppo_kl_coef)",
             1.0, 0.0, HUGE_VAL),
    KA_PARAM_LOSS_AGG_MODE("token-mean"),
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum { M_MASKED_LOW, M_MASKED_HIGH, M_IS_WEIGHT_MEAN, M_PPO_KL_ABS, M_KL_COV_FRACTION, M_COUNT };

static const keel_scalar_decl kl_cov_metrics[M_COUNT] = {
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
              "always 0: kl-cov never clips a token's gradient"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
              "always 0: kl-cov never clips a token's gradient"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
              "train-inference IS weight: always 1 (kl-cov has no train-inference correction)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "ppo_kl_abs",
              "mean |logp - logp_old| over unmasked tokens (verl actor/ppo_kl for kl_cov)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "kl_cov_fraction",
              "fraction of unmasked tokens given the |log-ratio| penalty (top-k by covariance)"),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct kl_cov {
  const keel_host *host;
  double kl_cov_ratio, ppo_kl_coef;
  int agg;
  int warned_no_max_tokens; /* seq-mean-token-sum-norm: the L_max = 1 fallback was logged */
} kl_cov;

static keel_status kl_cov_create(const keel_host *host, const keel_params *params,
                                 void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, kl_cov_params, P_COUNT, params, v, 0);
  if (s) return s;
  int agg = KA_TOKEN_MEAN;
  s = kp_choice(host, PLUGIN_NAME, "loss_agg_mode", v[P_LOSS_AGG_MODE].s, ka_modes, 4, &agg);
  if (s) return s;
  if (!(v[P_KL_COV_RATIO].f > 0.0))
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   PLUGIN_NAME ": parameter 'kl_cov_ratio' = %g must be > 0",
                   v[P_KL_COV_RATIO].f);
  kl_cov *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->kl_cov_ratio = v[P_KL_COV_RATIO].f;
  m->ppo_kl_coef = v[P_PPO_KL_COEF].f;
  m->agg = agg;
  m->warned_no_max_tokens = 0;
  (void)kp_set_instance_flags(params, 0u); /* needs no distribution term (1.0 host: nothing) */
  *out_instance = m;
  return KEEL_OK;
}

/* A token ranked by covariance. */
typedef struct kc_entry {
  double cov;
  int64_t t;
} kc_entry;

/* Larger covariance first; equal covariances: lower token index first. */
static int kc_compare(const void *pa, const void *pb) {
  const kc_entry *a = pa, *b = pb;
  if (a->cov != b->cov) return a->cov > b->cov ? -1 : 1;
  return (a->t > b->t) - (a->t < b->t);
}

static keel_status kl_cov_compute(void *instance, const keel_objective_batch *b,
                                  keel_objective_output *out) {
  kl_cov *m = instance;
  const keel_host *host = m->host;
  const int token_mean = m->agg == KA_TOKEN_MEAN;
  /* checked inputs; scale 1/T, 1/S (then 1/(S n_i) per response for seq-mean-token-mean) or
   * 1/(S L_max); the call's centre (Pass 1: the means of A and of the detached log-prob) */
  kcv_call call;
  int done;
  const keel_status status =
      kcv_begin(host, PLUGIN_NAME, M_COUNT, m->agg, &m->warned_no_max_tokens, b, out, &call, &done);
  if (done) return status;
  const int64_t ns = b->num_sequences, nt = b->num_tokens, n = call.n;
  const double scale = call.scale;

  /* Pass 2: covariance of every unmasked token; the top k are selected. */
  uint8_t *selected = calloc((size_t)nt, 1);
  kc_entry *entries = malloc((size_t)n * sizeof *entries);
  if (!selected || !entries) {
    free(selected);
    free(entries);
    return kp_fail(host, KEEL_ERR_INTERNAL,
                   PLUGIN_NAME ": out of memory for the selection of %lld tokens", (long long)n);
  }
  int64_t count = 0;
  for (int64_t t = 0; t < nt; t++) {
    if (!b->mask[t]) continue;
    entries[count].cov = kcv_cov(b, &call, t);
    entries[count].t = t;
    count++;
  }
  int64_t k = (int64_t)((double)n * m->kl_cov_ratio);
  if (k < 1) k = 1;
  if (k > n) k = n;
  qsort(entries, (size_t)n, sizeof *entries, kc_compare);
  for (int64_t j = 0; j < k; j++) selected[entries[j].t] = 1;
  free(entries);

  /* Pass 3: loss, gradient, metrics. */
  const double beta = m->ppo_kl_coef;
  double loss = 0.0, sum = 0.0, abs_kl_sum = 0.0;
  keel_status result = KEEL_OK;
  for (int64_t i = 0; i < ns && !result; i++) {
    const int64_t lo = b->seq_offsets[i], hi = b->seq_offsets[i + 1];
    const double seq_scale = ka_response_scale(m->agg, scale, b->mask, lo, hi);
    if (!token_mean) sum = 0.0;
    for (int64_t t = lo; t < hi; t++) {
      if (!b->mask[t]) {
        out->grad_logp[t] = 0.0f;
        continue;
      }
      const double lp = b->logp[t];
      const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
      const double old = b->logp_old[t];
      const double a = b->advantages[t];
      abs_kl_sum += fabs(frozen - old);
      double value = 0.0, dvalue = 0.0;
      if (a != 0.0) {
        const double r = exp(lp - old);
        value = -a * r;
        dvalue = value;
      }
      if (selected[t]) {
        const double d = lp - old;
        value += beta * fabs(d);
        dvalue += d > 0.0 ? beta : d < 0.0 ? -beta : 0.0;
      }
      sum += value;
      const double gd = dvalue * seq_scale;
      const float g = gd == 0.0 ? 0.0f : (float)gd;
      if (!isfinite(g) || !isfinite(value)) {
        result = kp_fail(host, KEEL_ERR_NUMERIC,
                         PLUGIN_NAME ": loss or gradient not finite at token %lld (response "
                                     "%lld): A=%g ratio=%g",
                         (long long)t, (long long)i, a, exp(lp - old));
        break;
      }
      out->grad_logp[t] = g;
    }
    if (!token_mean) loss += sum * seq_scale;
  }
  free(selected);
  if (result) return result;
  if (token_mean) loss = sum * scale;
  if (!isfinite(loss))
    return kp_fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
  out->loss = loss;
  const double nd = (double)n;
  out->metrics[M_IS_WEIGHT_MEAN] = 1.0;
  out->metrics[M_PPO_KL_ABS] = abs_kl_sum / nd;
  out->metrics[M_KL_COV_FRACTION] = (double)k / nd;
  return KEEL_OK;
}

/* get_instance_extension: every instance selects tokens per call (KEEL_EXT_PER_CALL). */
KCV_PER_CALL_EXTENSION(kl_cov_instance_extension, "covariance top-k over the call's tokens")

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable kl_cov_vtable = {
    sizeof(keel_objective_vtable), 0u, M_COUNT, 0u, kl_cov_metrics, "token-mean",
    kl_cov_compute,
};

static const keel_plugin kl_cov_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "KL-Cov (Cui et al. 2025): -A*pi/pi_old, plus ppo_kl_coef*|log(pi/pi_old)| on "
                   "the top kl_cov_ratio of tokens by advantage-logp covariance; token-mean by "
                   "default (loss_agg_mode); equals verl loss_mode=kl_cov (topk ties: lower index)",
    .param_count = P_COUNT,
    .params = kl_cov_params,
    .create = kl_cov_create,
    .destroy = kp_free_instance,
    .get_instance_extension = kl_cov_instance_extension,
    .vtable = &kl_cov_vtable,
};

KP_DEFINE_ENTRY(kl_cov_plugin)
