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
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "gspo"

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum { P_EPS_LOW, P_EPS_HIGH, P_COUNT };

static const keel_param_decl gspo_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_low",
     "lower clip of the sequence ratio: 1 - eps_low (A < 0 below it: zero gradient)", 3e-4, 0,
     "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_high",
     "upper clip of the sequence ratio: 1 + eps_high (A > 0 above it: zero gradient)", 4e-4, 0,
     "", 0.0, HUGE_VAL},
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum { M_MASKED_LOW, M_MASKED_HIGH, M_IS_WEIGHT_MEAN, M_SEQ_RATIO_MEAN, M_COUNT };

static const keel_scalar_decl gspo_metrics[M_COUNT] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
     "fraction of unmasked tokens in responses clipped because A < 0 and s < 1 - eps_low"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
     "fraction of unmasked tokens in responses clipped because A > 0 and s > 1 + eps_high"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
     "train-inference IS weight: always 1 (gspo has no train-inference correction)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "seq_ratio_mean",
     "mean over unmasked tokens of their response's sequence ratio s (log s clamped at 10)"},
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct gspo {
  const keel_host *host;
  double eps_low, eps_high;
} gspo;

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

static keel_status gspo_create(const keel_host *host, const keel_params *params,
                               void **out_instance) {
  double f[P_COUNT]; /* every parameter is a FLOAT */
  for (int j = 0; j < P_COUNT; j++) f[j] = gspo_params[j].default_f;
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
    while (j < P_COUNT && !(v->name && strcmp(v->name, gspo_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": unknown parameter '%s' (valid: eps_low, eps_high)",
                  v->name ? v->name : "(null)");
    const keel_param_decl *d = &gspo_params[j];
    if (v->type != d->type)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter '%s' has type %u, expected %u", d->name,
                  (unsigned)v->type, (unsigned)d->type);
    if (!(v->f >= d->min_value && v->f <= d->max_value))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter '%s' = %g is outside [%g, %g]", d->name, v->f,
                  d->min_value, d->max_value);
    f[j] = v->f;
  }
  gspo *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  m->eps_low = f[P_EPS_LOW];
  m->eps_high = f[P_EPS_HIGH];
  *out_instance = m;
  return KEEL_OK;
}

static void gspo_destroy(void *instance) { free(instance); }

/* Returns 0 when x is finite; otherwise reports which array and token. */
static keel_status check_finite(const keel_host *host, const char *array, float x, int64_t t,
                                int64_t i) {
  if (isfinite(x)) return KEEL_OK;
  return fail(host, KEEL_ERR_NUMERIC,
              PLUGIN_NAME ": non-finite %s (%g) at token %lld (response %lld)", array, (double)x,
              (long long)t, (long long)i);
}

static keel_status gspo_compute(void *instance, const keel_objective_batch *b,
                                keel_objective_output *out) {
  const gspo *m = instance;
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
  if (nt > 0) {
    const char *missing = !b->mask ? "mask"
                          : !b->advantages ? "advantages"
                          : !b->logp ? "logp"
                          : !b->logp_old ? "logp_old"
                          : !out->grad_logp ? "grad_logp (output)"
                                            : NULL;
    if (missing) return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": %s is NULL", missing);
  }

  /* Pass 1: validate unmasked inputs, count unmasked tokens. */
  int64_t unmasked = 0;
  for (int64_t i = 0; i < ns; i++) {
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) continue;
      unmasked++;
      keel_status s = check_finite(host, "logp", b->logp[t], t, i);
      if (!s && b->logp_frozen) s = check_finite(host, "logp_frozen", b->logp_frozen[t], t, i);
      if (!s) s = check_finite(host, "logp_old", b->logp_old[t], t, i);
      if (!s) s = check_finite(host, "advantage", b->advantages[t], t, i);
      if (s) return s;
    }
  }
  const double S = b->total_sequences;
  if (unmasked > 0 && !(S > 0.0 && isfinite(S)))
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": %lld unmasked tokens but total_sequences = %g (must be > 0)",
                (long long)unmasked, S);
  const double inv_s = unmasked > 0 ? 1.0 / S : 0.0;
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;
  const double log_clamp = 10.0; /* verl clamps log s at 10 */

  /* Pass 2: one loss per response, its gradient spread over the response's tokens. */
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
      return fail(host, KEEL_ERR_NUMERIC,
                  PLUGIN_NAME ": loss or gradient not finite for response %lld (first token "
                              "%lld): A=%g s=%g",
                  (long long)i, (long long)first, a, exp(sum_live / n));
    for (int64_t t = lo; t < hi; t++)
      if (b->mask[t]) out->grad_logp[t] = g;
    loss_sum += value;
  }
  const double loss = loss_sum * inv_s;
  if (!isfinite(loss))
    return fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
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
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "GSPO: PPO clip on the sequence ratio s = exp(mean log(pi/pi_old)) clipped per "
                   "response (eps 3e-4/4e-4), seq-mean-token-mean; equals verl loss_mode=gspo "
                   "(log s clamped at 10) and TRL importance_sampling_level=sequence with "
                   "loss_type=grpo, beta=0",
    .param_count = P_COUNT,
    .params = gspo_params,
    .create = gspo_create,
    .destroy = gspo_destroy,
    .get_extension = NULL,
    .vtable = &gspo_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t gspo_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < gspo_built_minor) return NULL;
  return &gspo_plugin;
}
