/*
 * clip_cov.c — the "clip-cov" objective plugin (Keel ABI 1.1): Clip-Cov from "The Entropy
 * Mechanism of Reinforcement Learning for Reasoning Language Models" (Cui et al. 2025, arXiv
 * 2505.22617): the PPO clipped surrogate, plus a few randomly chosen tokens whose
 * advantage-logp covariance lies in a window [clip_cov_lb, clip_cov_ub] are removed from the
 * gradient (the tokens that drive entropy collapse). A loss to MINIMISE; aggregation
 * "token-mean" by default (loss_agg_mode).
 *
 * Per call (verl: per micro-batch). Let U be the call's unmasked tokens, n = |U| (n counts the
 * CALL, not the step: the covariance statistics are local to a call, as verl's are local to
 * its micro-batch; only the loss normalisers below are whole-step constants).
 *   frozen_t = logp_frozen ? logp_frozen[t] : logp[t]     (every constant comes from here)
 *   ρ_t  = exp(frozen_t - logp_old_t)                      (sg[π_θ/π_old]: decides branches)
 *   r_t  = exp(logp_t - logp_old_t)                        (live: differentiated)
 *   ā    = (1/n) Σ_{u∈U} A_u,   l̄ = (1/n) Σ_{u∈U} frozen_u          (sums in token order)
 *   cov_t = (A_t - ā) * (frozen_t - l̄)                     (detached log-prob, as verl)
 *   clipped_t (verl clip_by_origin) = (A_t > 0 and ρ_t > 1 + eps_high)
 *                                   or (A_t < 0 and ρ_t < 1 - eps_low)
 *   candidates C = { t ∈ U : not clipped_t and clip_cov_lb < cov_t < clip_cov_ub }  (strict)
 *   clip_num = max((int64)(clip_cov_ratio * n), 1)          (truncation, as Python int())
 *   selected  = the min(clip_num, |C|) candidates with the smallest key_t (ties: lower t), with
 *     key_t = splitmix64(splitmix64((uint64)seed) ^ ((uint64)bits(logp_old_t) << 32 ^ t)),
 *     bits(x) the IEEE-754 bit pattern of the float x, t the token's index in the call, and
 *     splitmix64(x): z = x + 0x9E3779B97F4A7C15; z = (z ^ z>>30) * 0xBF58476D1CE4E5B9;
 *                    z = (z ^ z>>27) * 0x94D049BB133111EB; return z ^ z>>31   (mod 2^64).
 *     This replaces verl's torch.randperm: a uniformly random subset of the candidates
 *     (keys behave as independent uniform draws), but deterministic: the same seed and call
 *     give the same subset, independent of earlier calls (no counter, no state).
 *   per-token loss ℓ_t and ∂ℓ_t/∂logp_t:
 *     t selected                        → ℓ_t = 0,                     ∂ = 0   (corr_t = 0)
 *     A_t > 0 and ρ_t > 1 + eps_high    → ℓ_t = -A_t (1 + eps_high),   ∂ = 0   (masked high)
 *     A_t < 0 and ρ_t < 1 - eps_low     → ℓ_t = -A_t (1 - eps_low),    ∂ = 0   (masked low)
 *     A_t == 0                          → ℓ_t = 0,                     ∂ = 0
 *     otherwise                         → ℓ_t = -A_t r_t,              ∂ = -A_t r_t
 *   (= verl's max(-A r, -A clip(r, 1-eps_low, 1+eps_high)) * corr, with the branch decided from
 *   the frozen ratio; no dual clip and no log-ratio clamp, as verl's clip_cov.) Selected tokens
 *   stay in every denominator.
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
 * verl equivalence: policy_loss.loss_mode "clip_cov" (compute_policy_loss_clip_cov in
 * verl/trainer/ppo/core_algos.py) with clip_ratio_low/high = eps_low/eps_high,
 * policy_loss.clip_cov_ratio/clip_cov_lb/clip_cov_ub = the same-named parameters and the same
 * loss_agg_mode, except (1) the random subset (randperm there, the seeded hash here), (2) the
 * normalisers are the whole step's T / S instead of the micro-batch's, and (3) verl decides the
 * branch from the live ratio (identical values when logp_frozen = logp). Defaults are verl's:
 * clip_cov_ratio 2e-4, clip_cov_lb 1, clip_cov_ub 5, eps_low = eps_high = 0.2. No TRL twin.
 *
 * Metrics (token-mean over the call's unmasked tokens): masked_fraction_low/high (PPO clip),
 * is_weight_mean (always 1: no train-inference IS), pg_clipfrac (verl's actor/pg_clipfrac for
 * clip_cov: the fraction of tokens selected by the covariance rule), ppo_kl (verl's
 * actor/ppo_kl: mean of logp_old - frozen), cov_candidate_fraction (|C| / n).
 *
 * Contract: per-instance flags 0 (no distribution term). Computes in double and stores float;
 * overwrites every grad_logp entry. A call without logp_old (with tokens) →
 * KEEL_ERR_INVALID_ARGUMENT "logp_old is NULL"; the other checks of objective_batch.h (a
 * non-finite input on an unmasked token → KEEL_ERR_NUMERIC; unmasked tokens with a
 * non-positive normaliser → KEEL_ERR_INVALID_ARGUMENT); create() refuses clip_cov_ratio <= 0
 * (verl asserts > 0) and an unknown loss_agg_mode; out of memory for the per-call selection
 * buffers → KEEL_ERR_INTERNAL; a loss or gradient that is not finite → KEEL_ERR_NUMERIC. Each
 * failure calls host->error first. No mutable globals: parameters live in the instance.
 * Exports only keel_plugin_entry. Links libm (exp).
 */
#include <string.h>

#include "../common/aggregation.h"
#include "../common/call_covariance.h"
#include "../common/objective_batch.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "clip-cov"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum {
  P_CLIP_COV_RATIO,
  P_CLIP_COV_LB,
  P_CLIP_COV_UB,
  P_EPS_LOW,
  P_EPS_HIGH,
  P_SEED,
  P_LOSS_AGG_MODE,
  P_COUNT
};


static const keel_param_decl clip_cov_params[P_COUNT] = {
    KP_FLOAT("clip_cov_ratio",
             "fraction of the call's unmasked tokens to detach: clip_num = max(int(ratio * n), 1) "
             "(verl policy_loss.clip_cov_ratio; > 0)",
             2e-4, 0.0, 1.0),
    KP_FLOAT("clip_cov_lb",
             "covariance window lower bound (exclusive): candidates have cov > clip_cov_lb",
             1.0, -HUGE_VAL, HUGE_VAL),
    KP_FLOAT("clip_cov_ub",
             "covariance window upper bound (exclusive): candidates have cov < clip_cov_ub",
             5.0, -HUGE_VAL, HUGE_VAL),
    KP_FLOAT("eps_low",
             "lower PPO clip: ratio pi/pi_old clipped at 1 - eps_low (verl clip_ratio_low)", 0.2,
             0.0, 1.0),
    KP_FLOAT("eps_high",
             "upper PPO clip: ratio pi/pi_old clipped at 1 + eps_high (verl clip_ratio_high)",
             0.2, 0.0, HUGE_VAL),
    KP_INT("seed",
           "seed of the hash that picks the random subset of candidates (replaces verl's "
           "randperm)",
           0, -HUGE_VAL, HUGE_VAL),
    KA_PARAM_LOSS_AGG_MODE("token-mean"),
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum {
  M_MASKED_LOW,
  M_MASKED_HIGH,
  M_IS_WEIGHT_MEAN,
  M_PG_CLIPFRAC,
  M_PPO_KL,
  M_CANDIDATES,
  M_COUNT
};

static const keel_scalar_decl clip_cov_metrics[M_COUNT] = {
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
              "fraction of unmasked tokens on the PPO-clipped branch with A < 0 and ratio < 1 - "
              "eps_low"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
              "fraction of unmasked tokens on the PPO-clipped branch with A > 0 and ratio > 1 + "
              "eps_high"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
              "train-inference IS weight: always 1 (clip-cov has no train-inference correction)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "pg_clipfrac",
              "fraction of unmasked tokens detached by the covariance rule (verl actor/pg_clipfrac "
              "for clip_cov)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "ppo_kl",
              "mean of logp_old - logp over unmasked tokens (verl actor/ppo_kl)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "cov_candidate_fraction",
              "fraction of unmasked tokens in the covariance window and not PPO-clipped"),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct clip_cov {
  const keel_host *host;
  double clip_cov_ratio, clip_cov_lb, clip_cov_ub, eps_low, eps_high;
  uint64_t seed_key; /* splitmix64((uint64)seed) */
  int agg;
  int warned_no_max_tokens; /* seq-mean-token-sum-norm: the L_max = 1 fallback was logged */
} clip_cov;

static uint64_t splitmix64(uint64_t x) {
  uint64_t z = x + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static keel_status clip_cov_create(const keel_host *host, const keel_params *params,
                                   void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, clip_cov_params, P_COUNT, params, v, 0);
  if (s) return s;
  int agg = KA_TOKEN_MEAN;
  s = kp_choice(host, PLUGIN_NAME, "loss_agg_mode", v[P_LOSS_AGG_MODE].s, ka_modes, 4, &agg);
  if (s) return s;
  if (!(v[P_CLIP_COV_RATIO].f > 0.0))
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   PLUGIN_NAME ": parameter 'clip_cov_ratio' = %g must be > 0",
                   v[P_CLIP_COV_RATIO].f);
  clip_cov *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->clip_cov_ratio = v[P_CLIP_COV_RATIO].f;
  m->clip_cov_lb = v[P_CLIP_COV_LB].f;
  m->clip_cov_ub = v[P_CLIP_COV_UB].f;
  m->eps_low = v[P_EPS_LOW].f;
  m->eps_high = v[P_EPS_HIGH].f;
  m->seed_key = splitmix64((uint64_t)v[P_SEED].i);
  m->agg = agg;
  m->warned_no_max_tokens = 0;
  (void)kp_set_instance_flags(params, 0u); /* needs no distribution term (1.0 host: nothing) */
  *out_instance = m;
  return KEEL_OK;
}

/* A candidate for the covariance rule: its hash key and token index. */
typedef struct cc_candidate {
  uint64_t key;
  int64_t t;
} cc_candidate;

static int cc_compare(const void *pa, const void *pb) {
  const cc_candidate *a = pa, *b = pb;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  return (a->t > b->t) - (a->t < b->t);
}

static keel_status clip_cov_compute(void *instance, const keel_objective_batch *b,
                                    keel_objective_output *out) {
  clip_cov *m = instance;
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
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;

  /* Pass 2: PPO-clip decisions and the covariance window's candidates. */
  uint8_t *selected = calloc((size_t)nt, 1);
  cc_candidate *cand = malloc((size_t)n * sizeof *cand);
  if (!selected || !cand) {
    free(selected);
    free(cand);
    return kp_fail(host, KEEL_ERR_INTERNAL,
                   PLUGIN_NAME ": out of memory for the selection of %lld tokens", (long long)n);
  }
  int64_t n_cand = 0;
  for (int64_t t = 0; t < nt; t++) {
    if (!b->mask[t]) continue;
    const double frozen = kcv_frozen(b, t);
    const double a = b->advantages[t];
    const double rho = exp(frozen - (double)b->logp_old[t]);
    const int clipped = (a > 0.0 && rho > hi_bound) || (a < 0.0 && rho < lo_bound);
    if (clipped) continue;
    const double cov = kcv_cov(b, &call, t);
    if (cov > m->clip_cov_lb && cov < m->clip_cov_ub) {
      uint32_t bits;
      memcpy(&bits, &b->logp_old[t], sizeof bits);
      cand[n_cand].key = splitmix64(m->seed_key ^ (((uint64_t)bits << 32) ^ (uint64_t)t));
      cand[n_cand].t = t;
      n_cand++;
    }
  }
  int64_t clip_num = (int64_t)(m->clip_cov_ratio * (double)n);
  if (clip_num < 1) clip_num = 1;
  if (clip_num > n_cand) clip_num = n_cand;
  if (n_cand > 0) qsort(cand, (size_t)n_cand, sizeof *cand, cc_compare);
  for (int64_t k = 0; k < clip_num; k++) selected[cand[k].t] = 1;
  free(cand);

  /* Pass 3: loss, gradient, metrics. */
  double loss = 0.0, sum = 0.0, kl_sum = 0.0;
  int64_t n_low = 0, n_high = 0;
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
      kl_sum += old - frozen;
      const double rho = exp(frozen - old);
      double value, dvalue;
      if (selected[t]) {
        value = 0.0;
        dvalue = 0.0;
      } else if (a > 0.0 && rho > hi_bound) {
        n_high++;
        value = -a * hi_bound;
        dvalue = 0.0;
      } else if (a < 0.0 && rho < lo_bound) {
        n_low++;
        value = -a * lo_bound;
        dvalue = 0.0;
      } else if (a == 0.0) {
        value = 0.0;
        dvalue = 0.0;
      } else {
        const double r = exp(lp - old);
        value = -a * r;
        dvalue = value;
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
  out->metrics[M_MASKED_LOW] = (double)n_low / nd;
  out->metrics[M_MASKED_HIGH] = (double)n_high / nd;
  out->metrics[M_IS_WEIGHT_MEAN] = 1.0;
  out->metrics[M_PG_CLIPFRAC] = (double)clip_num / nd;
  out->metrics[M_PPO_KL] = kl_sum / nd;
  out->metrics[M_CANDIDATES] = (double)n_cand / nd;
  return KEEL_OK;
}

/* get_instance_extension: every instance selects tokens per call (KEEL_EXT_PER_CALL). */
KCV_PER_CALL_EXTENSION(clip_cov_instance_extension,
                       "covariance and the random subset are taken over the call's tokens")

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable clip_cov_vtable = {
    sizeof(keel_objective_vtable), 0u, M_COUNT, 0u, clip_cov_metrics, "token-mean",
    clip_cov_compute,
};

static const keel_plugin clip_cov_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "Clip-Cov (Cui et al. 2025): PPO clip, plus a seeded random subset of tokens "
                   "with advantage-logp covariance in (clip_cov_lb, clip_cov_ub) detached; "
                   "token-mean by default (loss_agg_mode); equals verl loss_mode=clip_cov "
                   "(random subset by a seeded hash instead of randperm)",
    .param_count = P_COUNT,
    .params = clip_cov_params,
    .create = clip_cov_create,
    .destroy = kp_free_instance,
    .get_instance_extension = clip_cov_instance_extension,
    .vtable = &clip_cov_vtable,
};

KP_DEFINE_ENTRY(clip_cov_plugin)
