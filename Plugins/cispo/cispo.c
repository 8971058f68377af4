/*
 * cispo.c — the "cispo" objective plugin (Keel ABI 1.0): CISPO (MiniMax-M1, arXiv 2506.13585;
 * Zheng et al., arXiv 2512.01374, App. A): REINFORCE weighted by a clipped, stop-gradient
 * importance ratio, as a loss to MINIMISE, aggregation "token-mean":
 *
 *   L = -(1/T) * Σ_t m_t * c_t * A_t * logp_t                         T = total_tokens
 *
 *   frozen_t = logp_frozen ? logp_frozen[t] : logp[t]     (every constant comes from here)
 *   ρ_t = exp(frozen_t - logp_old_t)                      (π_θ/π_old, behind sg)
 *   c_t = clip(ρ_t, 1 - eps_low, 1 + eps_high)            with lower_bound (verl)
 *       = min(ρ_t, 1 + eps_high)                          without (TRL: an upper cap only)
 *   grad_logp[t] = -(1/T) * c_t * A_t                     (0 for masked tokens)
 *
 * CISPO clips the weight's VALUE but never zeroes a token's gradient, whatever the sign of
 * A_t: masked_fraction_low/high are therefore always 0, and clipped_fraction_low/high report
 * how often c_t sat on a bound. The loss value contains logp itself, so only gradients (not
 * loss values) are comparable with ratio-form losses such as ppo-clip.
 *
 * Defaults: eps_low 0.2, eps_high 0.28 (DAPO's clip-higher bounds; verl's actor defaults are
 * clip_ratio_low = clip_ratio_high = 0.2). Equals verl policy_loss loss_mode "cispo" with
 * clip_ratio_low = eps_low, clip_ratio_high = eps_high, loss_agg_mode "token-mean" (verl also
 * clamps the log-ratio at ±20, which cannot change c_t for bounds below e^20 - 1); and, with
 * lower_bound = false and eps_high = cap - 1, TRL GRPOTrainer loss_type "cispo" with
 * epsilon_high = cap (TRL's cap is absolute, e.g. 5.0 → eps_high 4.0; token-mean over the
 * generation batch). No train-inference IS option (use minirl or ppo-clip for that).
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry; loss and
 * gradient are additive over calls (only the whole-step normaliser T is used). A non-finite
 * input on an unmasked token → KEEL_ERR_NUMERIC; unmasked tokens with total_tokens <= 0 or a
 * malformed batch → KEEL_ERR_INVALID_ARGUMENT; a result that is not finite → KEEL_ERR_NUMERIC.
 * Each failure calls host->error first, naming the token and response. No mutable globals:
 * parameters live in the instance. Exports only keel_plugin_entry. Links libm (exp).
 */
#include "../common/objective_batch.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "cispo"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_EPS_LOW, P_EPS_HIGH, P_LOWER_BOUND, P_COUNT };

static const keel_param_decl cispo_params[P_COUNT] = {
    KP_FLOAT("eps_low",
             "the IS weight sg[pi/pi_old] is clipped below at 1 - eps_low (with lower_bound)", 0.2,
             0.0, 1.0),
    KP_FLOAT("eps_high", "the IS weight sg[pi/pi_old] is clipped above at 1 + eps_high", 0.28,
             0.0, HUGE_VAL),
    KP_BOOL("lower_bound", "clip the weight from below too (verl); false = upper cap only (TRL)",
            1),
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum {
  M_MASKED_LOW,
  M_MASKED_HIGH,
  M_IS_WEIGHT_MEAN,
  M_CLIPPED_LOW,
  M_CLIPPED_HIGH,
  M_WEIGHT_MEAN,
  M_COUNT
};

static const keel_scalar_decl cispo_metrics[M_COUNT] = {
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
              "always 0: CISPO never zeroes a token's gradient (see clipped_fraction_low)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
              "always 0: CISPO never zeroes a token's gradient (see clipped_fraction_high)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
              "train-inference IS weight: always 1 (cispo has no train-inference correction)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "clipped_fraction_low",
              "fraction of unmasked tokens whose weight was raised to 1 - eps_low (0 without "
              "lower_bound)"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "clipped_fraction_high",
              "fraction of unmasked tokens whose weight was lowered to 1 + eps_high"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "cispo_weight_mean",
              "mean clipped weight sg[clip(pi/pi_old)] over unmasked tokens"),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct cispo {
  const keel_host *host;
  double eps_low, eps_high;
  int lower_bound;
} cispo;

static keel_status cispo_create(const keel_host *host, const keel_params *params,
                                void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, cispo_params, P_COUNT, params, v, 0);
  if (s) return s;
  cispo *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->eps_low = v[P_EPS_LOW].f;
  m->eps_high = v[P_EPS_HIGH].f;
  m->lower_bound = v[P_LOWER_BOUND].i != 0;
  *out_instance = m;
  return KEEL_OK;
}

static keel_status cispo_compute(void *instance, const keel_objective_batch *b,
                                 keel_objective_output *out) {
  const cispo *m = instance;
  const keel_host *host = m->host;
  static const kob_spec spec = {M_COUNT, KOB_TOTAL_TOKENS, {KOB_REQUIRED, "logp_old"},
                                {KOB_IGNORE, NULL}, {KOB_IGNORE, NULL}};
  kob_checked in;
  const keel_status status = kob_check(host, PLUGIN_NAME, &spec, b, out, &in);
  if (status || in.empty) return status;
  const int64_t ns = b->num_sequences, unmasked = in.unmasked;
  const double inv_t = unmasked > 0 ? 1.0 / in.total : 0.0;
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;

  /* Loss, gradient, metrics (kob_check has validated every input read here). */
  double loss_sum = 0.0, c_sum = 0.0;
  int64_t n_low = 0, n_high = 0;
  for (int64_t i = 0; i < ns; i++) {
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) {
        out->grad_logp[t] = 0.0f;
        continue;
      }
      const double lp = b->logp[t];
      const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
      const double a = b->advantages[t];
      double c = exp(frozen - (double)b->logp_old[t]);
      if (c > hi_bound) {
        c = hi_bound;
        n_high++;
      } else if (m->lower_bound && c < lo_bound) {
        c = lo_bound;
        n_low++;
      }
      c_sum += c;
      const double coef = c * a;
      loss_sum += coef * lp;
      const double gd = -coef * inv_t;
      const float g = gd == 0.0 ? 0.0f : (float)gd;
      if (!isfinite(g))
        return kp_fail(host, KEEL_ERR_NUMERIC,
                       PLUGIN_NAME ": gradient not finite at token %lld (response %lld): c=%g A=%g",
                       (long long)t, (long long)i, c, a);
      out->grad_logp[t] = g;
    }
  }
  const double loss = -loss_sum * inv_t;
  if (!isfinite(loss))
    return kp_fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
  out->loss = loss;
  if (unmasked > 0) {
    const double n = (double)unmasked;
    out->metrics[M_IS_WEIGHT_MEAN] = 1.0;
    out->metrics[M_CLIPPED_LOW] = (double)n_low / n;
    out->metrics[M_CLIPPED_HIGH] = (double)n_high / n;
    out->metrics[M_WEIGHT_MEAN] = c_sum / n;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable cispo_vtable = {
    sizeof(keel_objective_vtable), 0u, M_COUNT, 0u, cispo_metrics, "token-mean", cispo_compute,
};

static const keel_plugin cispo_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "CISPO: -sg[clip(r, 1-eps_low, 1+eps_high)] A logp, token-mean, never zeroes "
                   "a gradient; equals verl loss_mode=cispo with loss_agg_mode=token-mean "
                   "(lower_bound=true) and TRL loss_type=cispo with epsilon_high=1+eps_high "
                   "(lower_bound=false)",
    .param_count = P_COUNT,
    .params = cispo_params,
    .create = cispo_create,
    .destroy = kp_free_instance,
    .vtable = &cispo_vtable,
};

KP_DEFINE_ENTRY(cispo_plugin)
