/*
 * minirl.c — the "minirl" objective plugin (Keel ABI 1.0): MiniRL, Eq. 7 of Zheng et al.
 * (arXiv 2512.01374), as a loss to MINIMISE, aggregation "seq-mean-token-sum":
 *
 *   L = -(1/S) * Σ_i norm_i * Σ_{t in i} M_t * w_t * A_t * logp_t        S = total_sequences
 *
 *   frozen_t = logp_frozen ? logp_frozen[t] : logp[t]     (every constant comes from here)
 *   w_t   = min(exp(frozen_t - logp_rollout_t), tis_cap)  if train_infer_is, else 1
 *   r_t   = exp(frozen_t - logp_old_t)                    (decides the clip mask only)
 *   M_t   = 0 if mask_t == 0; with clip: 0 if A_t > 0 and r_t > 1 + eps_high,
 *           0 if A_t < 0 and r_t < 1 - eps_low; 1 otherwise
 *   norm_i = 1/n_i with length_norm (n_i = unmasked tokens of response i; n_i = 0 adds nothing),
 *            else 1
 *   grad_logp[t] = -(1/S) * norm_i * M_t * w_t * A_t      (0 for masked tokens)
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry; loss and
 * gradient are additive over calls (only whole-step normalisers are used). A non-finite input
 * on an unmasked token → KEEL_ERR_NUMERIC; unmasked tokens with total_sequences <= 0 or a
 * malformed batch → KEEL_ERR_INVALID_ARGUMENT; a result that is not finite (e.g. tis_cap = inf
 * with an overflowing ratio) → KEEL_ERR_NUMERIC. Each failure calls host->error first.
 * No mutable globals: parameters live in the instance. Exports only keel_plugin_entry.
 * Links libm (exp).
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum { P_EPS_LOW, P_EPS_HIGH, P_TIS_CAP, P_LENGTH_NORM, P_TRAIN_INFER_IS, P_CLIP, P_COUNT };

static const keel_param_decl minirl_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_low",
     "lower clip: mask tokens with A < 0 and pi/pi_old < 1 - eps_low", 0.2, 0, "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps_high",
     "upper clip: mask tokens with A > 0 and pi/pi_old > 1 + eps_high", 0.27, 0, "", 0.0,
     HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "tis_cap",
     "truncation C of the train-inference IS weight min(pi/mu_old, C)", 5.0, 0, "", 1e-9,
     HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_BOOL, "length_norm",
     "ablation: scale each response's token sum by 1/|y| (paper: off)", 0.0, 0, "", 0.0, 1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_BOOL, "train_infer_is",
     "weight tokens by the truncated IS ratio against the sampler (paper: on)", 0.0, 1, "", 0.0,
     1.0},
    {sizeof(keel_param_decl), KEEL_PARAM_BOOL, "clip",
     "mask tokens whose ratio to pi_old left [1-eps_low, 1+eps_high] (paper: on)", 0.0, 1, "",
     0.0, 1.0},
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum { M_MASKED_LOW, M_MASKED_HIGH, M_IS_WEIGHT_MEAN, M_IS_TRUNCATED, M_COUNT };

static const keel_scalar_decl minirl_metrics[M_COUNT] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low",
     "fraction of unmasked tokens clipped because A < 0 and ratio < 1 - eps_low"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high",
     "fraction of unmasked tokens clipped because A > 0 and ratio > 1 + eps_high"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
     "mean train-inference IS weight as used (1 when train_infer_is is off)"},
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "is_truncated_fraction",
     "fraction of unmasked tokens whose IS ratio exceeded tis_cap (0 when off)"},
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct minirl {
  const keel_host *host;
  double eps_low, eps_high, tis_cap;
  int length_norm, train_infer_is, clip;
} minirl;

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

static keel_status minirl_create(const keel_host *host, const keel_params *params,
                                 void **out_instance) {
  double f[P_COUNT];
  int64_t iv[P_COUNT];
  for (int j = 0; j < P_COUNT; j++) {
    f[j] = minirl_params[j].default_f;
    iv[j] = minirl_params[j].default_i;
  }
  uint32_t count = params ? params->count : 0;
  if (count > 0 && !params->values)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: %u parameter values but values is NULL",
                (unsigned)count);
  /* Walk by each value's struct_size (== sizeof as the host compiled it), matching by name. */
  const char *cursor = count > 0 ? (const char *)params->values : NULL;
  for (uint32_t k = 0; k < count; k++) {
    const keel_param_value *v = (const keel_param_value *)(const void *)cursor;
    if (v->struct_size < sizeof(keel_param_value))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  "minirl: parameter value %u has struct_size %u (< %u)", (unsigned)k,
                  (unsigned)v->struct_size, (unsigned)sizeof(keel_param_value));
    cursor += v->struct_size;
    int j = 0;
    while (j < P_COUNT && !(v->name && strcmp(v->name, minirl_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  "minirl: unknown parameter '%s' (valid: eps_low, eps_high, tis_cap, "
                  "length_norm, train_infer_is, clip)",
                  v->name ? v->name : "(null)");
    const keel_param_decl *d = &minirl_params[j];
    if (v->type != d->type)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: parameter '%s' has type %u, expected %u",
                  d->name, (unsigned)v->type, (unsigned)d->type);
    if (d->type == KEEL_PARAM_FLOAT) {
      if (!(v->f >= d->min_value && v->f <= d->max_value))
        return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                    "minirl: parameter '%s' = %g is outside [%g, %g]", d->name, v->f, d->min_value,
                    d->max_value);
      f[j] = v->f;
    } else {
      if (v->i != 0 && v->i != 1)
        return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: parameter '%s' = %lld is not 0 or 1",
                    d->name, (long long)v->i);
      iv[j] = v->i;
    }
  }
  minirl *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, "minirl: out of memory creating an instance");
  m->host = host;
  m->eps_low = f[P_EPS_LOW];
  m->eps_high = f[P_EPS_HIGH];
  m->tis_cap = f[P_TIS_CAP];
  m->length_norm = iv[P_LENGTH_NORM] != 0;
  m->train_infer_is = iv[P_TRAIN_INFER_IS] != 0;
  m->clip = iv[P_CLIP] != 0;
  *out_instance = m;
  return KEEL_OK;
}

static void minirl_destroy(void *instance) { free(instance); }

/* Returns 0 when x is finite; otherwise reports which array and token. */
static keel_status check_finite(const keel_host *host, const char *array, float x, int64_t t,
                                int64_t i) {
  if (isfinite(x)) return KEEL_OK;
  return fail(host, KEEL_ERR_NUMERIC, "minirl: non-finite %s (%g) at token %lld (response %lld)",
              array, (double)x, (long long)t, (long long)i);
}

static keel_status minirl_compute(void *instance, const keel_objective_batch *b,
                                  keel_objective_output *out) {
  const minirl *m = instance;
  const keel_host *host = m->host;
  if (!b || !out) return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: NULL batch or output");
  if (out->metric_count != M_COUNT || !out->metrics)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: output has %u metric slots, expected %d",
                (unsigned)out->metric_count, M_COUNT);
  out->loss = 0.0;
  for (int k = 0; k < M_COUNT; k++) out->metrics[k] = 0.0;

  const int64_t ns = b->num_sequences, nt = b->num_tokens;
  if (ns < 0 || nt < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: negative num_sequences or num_tokens");
  if (ns == 0) {
    if (nt != 0)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: 0 sequences but %lld tokens",
                  (long long)nt);
    return KEEL_OK;
  }
  if (!b->seq_offsets)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: seq_offsets is NULL");
  if (b->seq_offsets[0] != 0 || b->seq_offsets[ns] != nt)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                "minirl: seq_offsets must run from 0 to num_tokens (%lld), got %lld..%lld",
                (long long)nt, (long long)b->seq_offsets[0], (long long)b->seq_offsets[ns]);
  for (int64_t i = 0; i < ns; i++)
    if (b->seq_offsets[i + 1] < b->seq_offsets[i])
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  "minirl: seq_offsets decreases at response %lld", (long long)i);
  if (nt > 0) {
    const char *missing = !b->mask ? "mask"
                          : !b->advantages ? "advantages"
                          : !b->logp ? "logp"
                          : (m->clip && !b->logp_old) ? "logp_old (clip is on)"
                          : (m->train_infer_is && !b->logp_rollout)
                              ? "logp_rollout (train_infer_is is on)"
                          : !out->grad_logp ? "grad_logp (output)"
                                            : NULL;
    if (missing) return fail(host, KEEL_ERR_INVALID_ARGUMENT, "minirl: %s is NULL", missing);
  }

  /* Pass 1: validate unmasked inputs, count unmasked tokens. */
  int64_t unmasked = 0;
  for (int64_t i = 0; i < ns; i++) {
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) continue;
      unmasked++;
      keel_status s = check_finite(host, "logp", b->logp[t], t, i);
      if (!s && b->logp_frozen) s = check_finite(host, "logp_frozen", b->logp_frozen[t], t, i);
      if (!s && b->logp_old) s = check_finite(host, "logp_old", b->logp_old[t], t, i);
      if (!s && b->logp_rollout) s = check_finite(host, "logp_rollout", b->logp_rollout[t], t, i);
      if (!s) s = check_finite(host, "advantage", b->advantages[t], t, i);
      if (s) return s;
    }
  }
  const double S = b->total_sequences;
  if (unmasked > 0 && !(S > 0.0 && isfinite(S)))
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                "minirl: %lld unmasked tokens but total_sequences = %g (must be > 0)",
                (long long)unmasked, S);
  const double inv_s = unmasked > 0 ? 1.0 / S : 0.0;

  /* Pass 2: loss, gradient, metrics. */
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
        return fail(host, KEEL_ERR_NUMERIC,
                    "minirl: gradient not finite at token %lld (response %lld): w=%g A=%g",
                    (long long)t, (long long)i, w, a);
      out->grad_logp[t] = g;
    }
    loss_sum += norm * seq_sum;
  }
  const double loss = -inv_s * loss_sum;
  if (!isfinite(loss))
    return fail(host, KEEL_ERR_NUMERIC, "minirl: loss is not finite (%g)", loss);
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
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = "minirl",
    .version = "1.0.0",
    .description = "MiniRL (paper Eq. 7): clipped token-level REINFORCE with truncated IS to the "
                   "sampler, seq-mean-token-sum; with clip=false it equals verl REINFORCE with "
                   "token-level truncated IS against the sampler (bypass mode)",
    .param_count = P_COUNT,
    .params = minirl_params,
    .create = minirl_create,
    .destroy = minirl_destroy,
    .get_extension = NULL,
    .vtable = &minirl_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t minirl_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < minirl_built_minor) return NULL;
  return &minirl_plugin;
}
