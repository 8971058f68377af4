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
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "cispo"

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum { P_EPS_LOW, P_EPS_HIGH, P_LOWER_BOUND, P_COUNT };

static const keel_param_decl cispo_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_low",
     "the IS weight sg[pi/pi_old] is clipped below at 1 - eps_low (with lower_bound)", 0.2, 0,
     "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_high",
     "the IS weight sg[pi/pi_old] is clipped above at 1 + eps_high", 0.28, 0, "", 0.0, HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_BOOL, "lower_bound",
     "clip the weight from below too (verl); false = upper cap only (TRL)", 0.0, 1, "", 0.0,
     1.0},
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
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
     "always 0: CISPO never zeroes a token's gradient (see clipped_fraction_low)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
     "always 0: CISPO never zeroes a token's gradient (see clipped_fraction_high)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
     "train-inference IS weight: always 1 (cispo has no train-inference correction)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "clipped_fraction_low",
     "fraction of unmasked tokens whose weight was raised to 1 - eps_low (0 without lower_bound)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "clipped_fraction_high",
     "fraction of unmasked tokens whose weight was lowered to 1 + eps_high"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "cispo_weight_mean",
     "mean clipped weight sg[clip(pi/pi_old)] over unmasked tokens"},
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct cispo {
  const keel_host *host;
  double eps_low, eps_high;
  int lower_bound;
} cispo;

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

static keel_status cispo_create(const keel_host *host, const keel_params *params,
                                void **out_instance) {
  double f[P_COUNT];
  int64_t iv[P_COUNT];
  for (int j = 0; j < P_COUNT; j++) {
    f[j] = cispo_params[j].default_f;
    iv[j] = cispo_params[j].default_i;
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
    while (j < P_COUNT && !(v->name && strcmp(v->name, cispo_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": unknown parameter '%s' (valid: eps_low, eps_high, lower_bound)",
                  v->name ? v->name : "(null)");
    const keel_param_decl *d = &cispo_params[j];
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
    } else {
      if (v->i != 0 && v->i != 1)
        return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                    PLUGIN_NAME ": parameter '%s' = %lld is not 0 or 1", d->name,
                    (long long)v->i);
      iv[j] = v->i;
    }
  }
  cispo *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  m->eps_low = f[P_EPS_LOW];
  m->eps_high = f[P_EPS_HIGH];
  m->lower_bound = iv[P_LOWER_BOUND] != 0;
  *out_instance = m;
  return KEEL_OK;
}

static void cispo_destroy(void *instance) { free(instance); }

/* Returns 0 when x is finite; otherwise reports which array and token. */
static keel_status check_finite(const keel_host *host, const char *array, float x, int64_t t,
                                int64_t i) {
  if (isfinite(x)) return KEEL_OK;
  return fail(host, KEEL_ERR_NUMERIC,
              PLUGIN_NAME ": non-finite %s (%g) at token %lld (response %lld)", array, (double)x,
              (long long)t, (long long)i);
}

static keel_status cispo_compute(void *instance, const keel_objective_batch *b,
                                 keel_objective_output *out) {
  const cispo *m = instance;
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
  const double T = b->total_tokens;
  if (unmasked > 0 && !(T > 0.0 && isfinite(T)))
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": %lld unmasked tokens but total_tokens = %g (must be > 0)",
                (long long)unmasked, T);
  const double inv_t = unmasked > 0 ? 1.0 / T : 0.0;
  const double hi_bound = 1.0 + m->eps_high, lo_bound = 1.0 - m->eps_low;

  /* Pass 2: loss, gradient, metrics. */
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
        return fail(host, KEEL_ERR_NUMERIC,
                    PLUGIN_NAME ": gradient not finite at token %lld (response %lld): c=%g A=%g",
                    (long long)t, (long long)i, c, a);
      out->grad_logp[t] = g;
    }
  }
  const double loss = -loss_sum * inv_t;
  if (!isfinite(loss))
    return fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
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
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "CISPO: -sg[clip(r, 1-eps_low, 1+eps_high)] A logp, token-mean, never zeroes "
                   "a gradient; equals verl loss_mode=cispo with loss_agg_mode=token-mean "
                   "(lower_bound=true) and TRL loss_type=cispo with epsilon_high=1+eps_high "
                   "(lower_bound=false)",
    .param_count = P_COUNT,
    .params = cispo_params,
    .create = cispo_create,
    .destroy = cispo_destroy,
    .get_extension = NULL,
    .vtable = &cispo_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t cispo_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < cispo_built_minor) return NULL;
  return &cispo_plugin;
}
