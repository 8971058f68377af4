/*
 * gspo.c — the "gspo" objective plugin (Keel ABI 1.0): GSPO (Group Sequence Policy
 * Optimization, Zheng et al. 2025, arXiv 2507.18071): the PPO clipped surrogate on a
 * length-normalised SEQUENCE ratio, clipped per response, as a loss to MINIMISE, aggregation
 * "seq-mean-token-mean" (each response's loss is the same at every token, so this is the mean
 * over responses of a per-response loss):
 *
 *   L = (1/S) * Σ_{i: n_i > 0} ℓ_i                        S = total_sequences
 *
 *   n_i   = unmasked tokens of response i (a response with none adds nothing)
 *   A_i   = the advantage of response i's first unmasked token (baselines broadcast one
 *           advantage per response, so every token carries the same one)
 *   s_i   = exp((1/n_i) Σ_{t in i, m_t = 1} (logp_t - logp_old_t))   (geometric mean of the
 *           token ratios, live: differentiated through logp)
 *   ℓ_i   = max(-A_i * s_i, -A_i * clip(s_i, 1 - eps_low, 1 + eps_high))
 *   ∂s_i/∂logp_t = s_i / n_i for every unmasked token t of response i, so on the unclipped
 *   branch grad_logp[t] = -(1/S) * A_i * s_i / n_i; masked tokens get exactly 0.
 *
 * Stop-gradients: the branch (clipped or not) and the clamp are decided from the frozen
 * sequence ratio σ_i = exp(min((1/n_i) Σ (frozen_t - logp_old_t), 10)), frozen_t =
 * logp_frozen ? logp_frozen[t] : logp[t]:
 *     A_i > 0 and σ_i > 1 + eps_high   → ℓ_i = -A_i (1 + eps_high), gradient 0 (clipped high)
 *     A_i < 0 and σ_i < 1 - eps_low    → ℓ_i = -A_i (1 - eps_low),  gradient 0 (clipped low)
 *     log σ_i clamped at 10            → ℓ_i = -A_i e^10,            gradient 0 (verl's clamp)
 *     otherwise                        → ℓ_i = -A_i s_i, gradient as above.
 *
 * Equals verl policy_loss loss_mode "gspo" (its token-level s_{i,t} = sg[s_i] π/sg[π] gives
 * the same value and gradient) with loss_agg_mode "seq-mean-token-mean", clip_ratio_low 3e-4,
 * clip_ratio_high 4e-4 (the GSPO paper's values), including its clamp of log s at 10; and TRL
 * GRPOTrainer importance_sampling_level "sequence", loss_type "grpo", epsilon 3e-4,
 * epsilon_high 4e-4, beta 0 (TRL does not clamp). No train-inference IS option.
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry; loss and
 * gradient are additive over calls (only the whole-step S and per-response n_i are used). A
 * non-finite input on an unmasked token → KEEL_ERR_NUMERIC; unmasked tokens with
 * total_sequences <= 0 or a malformed batch → KEEL_ERR_INVALID_ARGUMENT; a result that is not
 * finite → KEEL_ERR_NUMERIC. Each failure calls host->error first, naming the token and
 * response. No mutable globals: parameters live in the instance. Exports only
 * keel_plugin_entry. Links libm (exp).
 */
#include "../common/objective_batch.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "gspo"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_EPS_LOW, P_EPS_HIGH, P_COUNT };

static const keel_param_decl gspo_params[P_COUNT] = {
    KP_FLOAT("eps_low",
             "lower clip of the sequence ratio: 1 - eps_low (A < 0 below it: zero gradient)", 3e-4,
             0.0, 1.0),
    KP_FLOAT("eps_high",
             "upper clip of the sequence ratio: 1 + eps_high (A > 0 above it: zero gradient)",
             4e-4, 0.0, HUGE_VAL),
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum { M_MASKED_LOW, M_MASKED_HIGH, M_IS_WEIGHT_MEAN, M_SEQ_RATIO_MEAN, M_COUNT };

static const keel_scalar_decl gspo_metrics[M_COUNT] = {
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
              "fraction of unmasked tokens in responses clipped because A < 0 and s < 1 - eps_low"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
              "fraction of unmasked tokens in responses clipped because A > 0 and s > 1 + "
              "eps_high"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
              "train-inference IS weight: always 1 (gspo has no train-inference correction)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "seq_ratio_mean",
              "mean over unmasked tokens of their response's sequence ratio s (log s clamped at "
              "10)"),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct gspo {
  const keel_host *host;
  double eps_low, eps_high;
} gspo;

static keel_status gspo_create(const keel_host *host, const keel_params *params,
                               void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, gspo_params, P_COUNT, params, v, 0);
  if (s) return s;
  gspo *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->eps_low = v[P_EPS_LOW].f;
  m->eps_high = v[P_EPS_HIGH].f;
  *out_instance = m;
  return KEEL_OK;
}

static keel_status gspo_compute(void *instance, const keel_objective_batch *b,
                                keel_objective_output *out) {
  const gspo *m = instance;
  const keel_host *host = m->host;
  static const kob_spec spec = {M_COUNT, KOB_TOTAL_SEQUENCES, {KOB_REQUIRED, "logp_old"},
                                {KOB_IGNORE, NULL}, {KOB_IGNORE, NULL}};
  kob_checked in;
  const keel_status status = kob_check(host, PLUGIN_NAME, &spec, b, out, &in);
  if (status || in.empty) return status;
  const int64_t ns = b->num_sequences, unmasked = in.unmasked;
  const double inv_s = unmasked > 0 ? 1.0 / in.total : 0.0;
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;
  const double log_clamp = 10.0; /* verl clamps log s at 10 */

  /* One loss per response, its gradient spread over the response's tokens (kob_check has
   * validated every input read here). */
  double loss_sum = 0.0, ratio_sum = 0.0;
  int64_t n_low = 0, n_high = 0;
  for (int64_t i = 0; i < ns; i++) {
    const int64_t lo = b->seq_offsets[i], hi = b->seq_offsets[i + 1];
    int64_t n_i = 0, first = -1;
    double sum_frozen = 0.0, sum_live = 0.0;
    for (int64_t t = lo; t < hi; t++) {
      out->grad_logp[t] = 0.0f;
      if (!b->mask[t]) continue;
      if (first < 0) first = t;
      n_i++;
      const double lp = b->logp[t], old = b->logp_old[t];
      const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
      sum_frozen += frozen - old;
      sum_live += lp - old;
    }
    if (n_i == 0) continue;
    const double n = (double)n_i;
    const double a = b->advantages[first];
    const double log_sigma = sum_frozen / n;
    const int clamped = log_sigma > log_clamp;
    const double sigma = exp(clamped ? log_clamp : log_sigma);
    ratio_sum += sigma * n;
    double value, dvalue; /* ℓ_i and ∂ℓ_i/∂logp_t for each unmasked token t of response i */
    if (a > 0.0 && sigma > hi_bound) {
      n_high += n_i;
      value = -a * hi_bound;
      dvalue = 0.0;
    } else if (a < 0.0 && sigma < lo_bound) {
      n_low += n_i;
      value = -a * lo_bound;
      dvalue = 0.0;
    } else if (a == 0.0) {
      value = 0.0;
      dvalue = 0.0;
    } else if (clamped) {
      value = -a * exp(log_clamp);
      dvalue = 0.0;
    } else {
      const double s_live = exp(sum_live / n);
      value = -a * s_live;
      dvalue = -a * s_live / n;
    }
    const double gd = dvalue * inv_s;
    const float g = gd == 0.0 ? 0.0f : (float)gd;
    if (!isfinite(g) || !isfinite(value))
      return kp_fail(host, KEEL_ERR_NUMERIC,
                     PLUGIN_NAME ": loss or gradient not finite for response %lld (first token "
                                 "%lld): A=%g s=%g",
                     (long long)i, (long long)first, a, exp(sum_live / n));
    for (int64_t t = lo; t < hi; t++)
      if (b->mask[t]) out->grad_logp[t] = g;
    loss_sum += value;
  }
  const double loss = loss_sum * inv_s;
  if (!isfinite(loss))
    return kp_fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
  out->loss = loss;
  if (unmasked > 0) {
    const double n = (double)unmasked;
    out->metrics[M_MASKED_LOW] = (double)n_low / n;
    out->metrics[M_MASKED_HIGH] = (double)n_high / n;
    out->metrics[M_IS_WEIGHT_MEAN] = 1.0;
    out->metrics[M_SEQ_RATIO_MEAN] = ratio_sum / n;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable gspo_vtable = {
    sizeof(keel_objective_vtable), 0u, M_COUNT, 0u, gspo_metrics, "seq-mean-token-mean",
    gspo_compute,
};

static const keel_plugin gspo_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "GSPO: PPO clip on the sequence ratio s = exp(mean log(pi/pi_old)) clipped per "
                   "response (eps 3e-4/4e-4), seq-mean-token-mean; equals verl loss_mode=gspo "
                   "(log s clamped at 10) and TRL importance_sampling_level=sequence with "
                   "loss_type=grpo, beta=0",
    .param_count = P_COUNT,
    .params = gspo_params,
    .create = gspo_create,
    .destroy = kp_free_instance,
    .vtable = &gspo_vtable,
};

KP_DEFINE_ENTRY(gspo_plugin)
