/*
 * minirl.c — the "minirl" objective plugin (Keel ABI 1.1): MiniRL, Eq. 7 of Zheng et al.
 * (arXiv 2512.01374), as a loss to MINIMISE, aggregation "seq-mean-token-sum":
 *
 *   L = -(1/S) * Σ_i norm_i * Σ_{t in i} (M_t * w_t * A_t * logp_t + m_t * γ * H_t)
 *                                                                         S = total_sequences
 *
 *   frozen_t = logp_frozen ? logp_frozen[t] : logp[t]     (every constant comes from here)
 *   w_t   = min(exp(frozen_t - logp_rollout_t), tis_cap)  if train_infer_is, else 1
 *   r_t   = exp(frozen_t - logp_old_t)                    (decides the clip mask only)
 *   M_t   = 0 if mask_t == 0; with clip: 0 if A_t > 0 and r_t > 1 + eps_high,
 *           0 if A_t < 0 and r_t < 1 - eps_low; 1 otherwise
 *   norm_i = 1/n_i with length_norm (n_i = unmasked tokens of response i; n_i = 0 adds nothing),
 *            else 1
 *   grad_logp[t] = -(1/S) * norm_i * M_t * w_t * A_t      (0 for masked tokens)
 *   entropy bonus (γ = entropy_coef > 0; default 0: absent): H_t = the host's per-token entropy
 *   (KEEL_OBJECTIVE_USES_ENTROPY, asked for by create() only when γ > 0), over every unmasked
 *   token (m_t; the clip mask M_t and the IS weight w_t do not apply to it, as in verl's
 *   pg_loss - entropy_coeff * agg_loss(entropy)), same aggregation as the policy term:
 *   grad_entropy[t] = -(1/S) * norm_i * γ (0 for masked tokens).
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry (and every
 * grad_entropy entry when γ > 0); loss and gradient are additive over calls (only whole-step
 * normalisers are used). With γ = 0 the arithmetic is that of 1.0, bit for bit. A non-finite
 * input on an unmasked token (entropy included when γ > 0) → KEEL_ERR_NUMERIC; unmasked tokens
 * with total_sequences <= 0, a malformed batch, or γ > 0 without entropy / grad_entropy →
 * KEEL_ERR_INVALID_ARGUMENT naming it; γ > 0 on a host without per-instance flags →
 * KEEL_ERR_UNSUPPORTED at create(); a result that is not finite (e.g. tis_cap = inf with an
 * overflowing ratio) → KEEL_ERR_NUMERIC. Each failure calls host->error first.
 * No mutable globals: parameters live in the instance. Exports only keel_plugin_entry.
 * Links libm (exp).
 */
#include "../common/objective_batch.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "minirl"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum {
  P_EPS_LOW,
  P_EPS_HIGH,
  P_TIS_CAP,
  P_LENGTH_NORM,
  P_TRAIN_INFER_IS,
  P_CLIP,
  P_ENTROPY_COEF,
  P_COUNT
};

static const keel_param_decl minirl_params[P_COUNT] = {
    KP_FLOAT("eps_low", "lower clip: mask tokens with A < 0 and pi/pi_old < 1 - eps_low", 0.2,
             0.0, 1.0),
    KP_FLOAT("eps_high", "upper clip: mask tokens with A > 0 and pi/pi_old > 1 + eps_high", 0.27,
             0.0, HUGE_VAL),
    KP_FLOAT("tis_cap", "truncation C of the train-inference IS weight min(pi/mu_old, C)", 5.0,
             1e-9, HUGE_VAL),
    KP_BOOL("length_norm", "ablation: scale each response's token sum by 1/|y| (paper: off)", 0),
    KP_BOOL("train_infer_is",
            "weight tokens by the truncated IS ratio against the sampler (paper: on)", 1),
    KP_BOOL("clip", "mask tokens whose ratio to pi_old left [1-eps_low, 1+eps_high] (paper: on)",
            1),
    KP_FLOAT("entropy_coef",
             "entropy bonus: loss -= entropy_coef * agg(entropy), same aggregation (verl "
             "entropy_coeff); 0 = off (paper)",
             0.0, 0.0, HUGE_VAL),
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum { M_MASKED_LOW, M_MASKED_HIGH, M_IS_WEIGHT_MEAN, M_IS_TRUNCATED, M_COUNT };

static const keel_scalar_decl minirl_metrics[M_COUNT] = {
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
              "fraction of unmasked tokens clipped because A < 0 and ratio < 1 - eps_low"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
              "fraction of unmasked tokens clipped because A > 0 and ratio > 1 + eps_high"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
              "mean train-inference IS weight as used (1 when train_infer_is is off)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_truncated_fraction",
              "fraction of unmasked tokens whose IS ratio exceeded tis_cap (0 when off)"),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct minirl {
  const keel_host *host;
  double eps_low, eps_high, tis_cap, entropy_coef;
  int length_norm, train_infer_is, clip;
} minirl;

static keel_status minirl_create(const keel_host *host, const keel_params *params,
                                 void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, minirl_params, P_COUNT, params, v, 0);
  if (s) return s;
  const double entropy_coef = v[P_ENTROPY_COEF].f;
  const uint32_t needs = entropy_coef > 0.0 ? KEEL_OBJECTIVE_USES_ENTROPY : 0u;
  if (!kp_set_instance_flags(params, needs) && needs)
    return kp_fail(host, KEEL_ERR_UNSUPPORTED,
                   PLUGIN_NAME ": entropy_coef > 0 needs a Keel ABI 1.1 host (per-instance "
                               "flags: the host must supply the per-token entropy)");
  minirl *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->eps_low = v[P_EPS_LOW].f;
  m->eps_high = v[P_EPS_HIGH].f;
  m->tis_cap = v[P_TIS_CAP].f;
  m->length_norm = v[P_LENGTH_NORM].i != 0;
  m->train_infer_is = v[P_TRAIN_INFER_IS].i != 0;
  m->clip = v[P_CLIP].i != 0;
  m->entropy_coef = entropy_coef;
  *out_instance = m;
  return KEEL_OK;
}

static keel_status minirl_compute(void *instance, const keel_objective_batch *b,
                                  keel_objective_output *out) {
  const minirl *m = instance;
  const keel_host *host = m->host;
  /* logp_old and logp_rollout are required only when read; checked whenever given. */
  const kob_spec spec = {
      M_COUNT,
      KOB_TOTAL_SEQUENCES,
      {m->clip ? KOB_REQUIRED : KOB_IF_PRESENT, "logp_old (clip is on)"},
      {m->train_infer_is ? KOB_REQUIRED : KOB_IF_PRESENT, "logp_rollout (train_infer_is is on)"},
      {KOB_IGNORE, NULL},
  };
  kob_checked in;
  const keel_status status = kob_check(host, PLUGIN_NAME, &spec, b, out, &in);
  if (status || in.empty) return status;
  const int64_t ns = b->num_sequences, unmasked = in.unmasked;
  const double inv_s = unmasked > 0 ? 1.0 / in.total : 0.0;
  /* The entropy (γ > 0 only): present, with its gradient slot, and finite where unmasked. */
  const int ent = m->entropy_coef > 0.0;
  const float *entropy = NULL;
  float *grad_entropy = NULL;
  if (ent && b->num_tokens > 0) {
    entropy = KOB_BATCH_HAS(b, entropy) ? b->entropy : NULL;
    grad_entropy = KOB_OUTPUT_HAS(out, grad_entropy) ? out->grad_entropy : NULL;
    if (!entropy)
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                     PLUGIN_NAME ": entropy is NULL (entropy_coef > 0 needs the host's "
                                 "per-token entropy)");
    if (!grad_entropy)
      return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                     PLUGIN_NAME ": grad_entropy (output) is NULL (entropy_coef > 0)");
    for (int64_t i = 0; i < ns; i++)
      for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
        if (!b->mask[t]) continue;
        const keel_status s = kob_finite(host, PLUGIN_NAME, "entropy", entropy[t], t, i);
        if (s) return s;
      }
  }

  /* Loss, gradient, metrics (kob_check has validated every input read here). */
  double loss_sum = 0.0, w_sum = 0.0;
  int64_t n_low = 0, n_high = 0, n_trunc = 0;
  for (int64_t i = 0; i < ns; i++) {
    const int64_t lo = b->seq_offsets[i], hi = b->seq_offsets[i + 1];
    double norm = 1.0;
    if (m->length_norm) {
      int64_t n_i = 0;
      for (int64_t t = lo; t < hi; t++) n_i += b->mask[t] != 0;
      norm = n_i > 0 ? 1.0 / (double)n_i : 0.0;
    }
    double seq_sum = 0.0;
    for (int64_t t = lo; t < hi; t++) {
      if (!b->mask[t]) {
        out->grad_logp[t] = 0.0f;
        if (grad_entropy) grad_entropy[t] = 0.0f;
        continue;
      }
      const double lp = b->logp[t];
      const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
      const double a = b->advantages[t];
      double w = 1.0;
      if (m->train_infer_is) {
        const double raw = exp(frozen - (double)b->logp_rollout[t]);
        if (raw > m->tis_cap) {
          w = m->tis_cap;
          n_trunc++;
        } else {
          w = raw;
        }
      }
      w_sum += w;
      int keep = 1;
      if (m->clip) {
        const double r = exp(frozen - (double)b->logp_old[t]);
        if (a > 0.0 && r > 1.0 + m->eps_high) {
          keep = 0;
          n_high++;
        } else if (a < 0.0 && r < 1.0 - m->eps_low) {
          keep = 0;
          n_low++;
        }
      }
      const double coef = keep ? w * a : 0.0;
      seq_sum += coef * lp;
      const float g = coef == 0.0 ? 0.0f : (float)(-inv_s * norm * coef);
      if (!isfinite(g))
        return kp_fail(host, KEEL_ERR_NUMERIC,
                       PLUGIN_NAME ": gradient not finite at token %lld (response %lld): w=%g A=%g",
                       (long long)t, (long long)i, w, a);
      out->grad_logp[t] = g;
      if (ent) {
        seq_sum += m->entropy_coef * (double)entropy[t];
        const float ge = (float)(-inv_s * norm * m->entropy_coef);
        if (!isfinite(ge))
          return kp_fail(host, KEEL_ERR_NUMERIC,
                         PLUGIN_NAME ": entropy gradient not finite at token %lld (response "
                                     "%lld)",
                         (long long)t, (long long)i);
        grad_entropy[t] = ge == 0.0f ? 0.0f : ge;
      }
    }
    loss_sum += norm * seq_sum;
  }
  const double loss = -inv_s * loss_sum;
  if (!isfinite(loss))
    return kp_fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
  out->loss = loss;
  if (unmasked > 0) {
    const double n = (double)unmasked;
    out->metrics[M_MASKED_LOW] = (double)n_low / n;
    out->metrics[M_MASKED_HIGH] = (double)n_high / n;
    out->metrics[M_IS_WEIGHT_MEAN] = w_sum / n;
    out->metrics[M_IS_TRUNCATED] = m->train_infer_is ? (double)n_trunc / n : 0.0;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable minirl_vtable = {
    sizeof(keel_objective_vtable), 0u, M_COUNT, 0u, minirl_metrics, "seq-mean-token-sum",
    minirl_compute,
};

static const keel_plugin minirl_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "MiniRL (paper Eq. 7): clipped token-level REINFORCE with truncated IS to the "
                   "sampler, seq-mean-token-sum, optional entropy bonus; with clip=false it equals verl REINFORCE with "
                   "token-level truncated IS against the sampler (bypass mode)",
    .param_count = P_COUNT,
    .params = minirl_params,
    .create = minirl_create,
    .destroy = kp_free_instance,
    .vtable = &minirl_vtable,
};

KP_DEFINE_ENTRY(minirl_plugin)
