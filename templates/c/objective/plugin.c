/*
 * plugin.c — keel-template-objective: a starting point for a Keel objective plugin (ABI 1.1).
 * The same objective, with the same parameters and the same arithmetic, is in
 * templates/swift/objective/Plugin.swift and templates/rust/objective/lib.rs.
 *
 * Contract: PPO's clipped surrogate, token-mean, with an optional entropy bonus, as a loss to
 * MINIMISE (T = batch->total_tokens, the unmasked tokens of the whole optimizer step):
 *
 *   L = (1/T) Σ_t m_t ℓ_t  −  entropy_coef · (1/T) Σ_t m_t H_t
 *   ℓ_t = max(−A_t r_t, −A_t clip(r_t, 1 − eps, 1 + eps)),   r_t = exp(logp_t − base_t)
 *   base_t = logp_old_t (ratio_to = "old", PPO's π_old) or logp_rollout_t ("rollout", μ)
 *
 * Stop-gradients: the branch of the max is a constant, decided from
 * ρ_t = exp(frozen_t − base_t), frozen_t = logp_frozen ? logp_frozen[t] : logp[t]:
 *   A_t > 0 and ρ_t > 1 + eps  → clipped: ℓ_t = −A_t (1 + eps),  ∂ℓ_t/∂logp_t = 0
 *   A_t < 0 and ρ_t < 1 − eps  → clipped: ℓ_t = −A_t (1 − eps),  ∂ℓ_t/∂logp_t = 0
 *   otherwise                  → ℓ_t = −A_t r_t with r_t from logp (live), ∂ℓ_t/∂logp_t = −A_t r_t
 * (with logp_frozen == logp this is the max above, differentiated exactly).
 *   grad_logp[t]    = m_t · (∂ℓ_t/∂logp_t) / T
 *   grad_entropy[t] = −m_t · entropy_coef / T         (only when entropy_coef > 0)
 * H_t is the host's per-token entropy of π_θ (ABI 1.1 batch->entropy), a live input: the host
 * chains grad_entropy through the model. Masked tokens get exactly 0 in both gradients.
 * Arithmetic (the three templates do exactly this, so they agree bit for bit): in double,
 * pg = Σ ℓ_t and hs = Σ H_t in token order, L = pg / T, then (entropy_coef > 0 only)
 * L = L − entropy_coef · (hs / T); gradients are stored as float.
 *
 * Equals verl's vanilla policy loss with loss_agg_mode "token-mean", clip_ratio = eps and no
 * dual clip (verl's clip_ratio_c only acts for A < 0 and r > c, default 3), plus
 * `policy_loss = pg_loss − entropy_loss · entropy_coeff` (verl/workers/actor/dp_actor.py,
 * entropy_loss = agg_loss(entropy, response_mask, "token-mean")); TRL GRPOTrainer
 * loss_type "dapo" with epsilon = epsilon_high = eps, beta = 0, when entropy_coef = 0.
 *
 * Parameters (read by name in create, stepping keel_params.values by its struct_size):
 *   eps           FLOAT  [0, 1], default 0.2   the clip range
 *   entropy_coef  FLOAT  >= 0,   default 0     > 0: asks the host for batch->entropy through
 *                                              keel_params.instance_flags (ABI 1.1)
 *   ratio_to      STRING "old" | "rollout", default "old" (declared with `choices`, ABI 1.1)
 * One metric `clip_fraction` (TOKEN_MEAN): clipped tokens / unmasked tokens of the call.
 * Failures (host->error first): a non-finite input on an unmasked token, or a loss or
 * gradient that is not finite → KEEL_ERR_NUMERIC; a missing array, unmasked tokens with
 * total_tokens <= 0, entropy_coef > 0 without an entropy array → KEEL_ERR_INVALID_ARGUMENT;
 * entropy_coef > 0 on a host without per-instance flags (ABI 1.0) → KEEL_ERR_UNSUPPORTED.
 * Exports only keel_plugin_entry; no mutable globals (the parameters live in the instance).
 *
 * Make it yours: change the formula between the EDIT HERE markers, the name, description,
 * aggregation, parameters and version. Build with `make`, then run
 * `keel plugins check ./libkeel-template-objective.so`.
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "keel-template-objective"

/* A STRING parameter's allowed values (ABI 1.1 `choices`, NULL-terminated). The host refuses
 * any other value before create(); create() checks again (another host may not). */
static const char *const keel_template_objective_ratio_choices[] = {"old", "rollout", NULL};

/* The parameters, in declaration order: the host passes one value per declaration, defaults
 * filled in. {struct_size, type, name, doc, default_f, default_i, default_s, min, max, choices} */
static const keel_param_decl keel_template_objective_params[3] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "eps",
     "clip range: the ratio is clipped to [1 - eps, 1 + eps]", 0.2, 0, "", 0.0, 1.0, NULL},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "entropy_coef",
     "weight of the token-mean entropy bonus (0 = off; > 0 asks the host for the entropy)", 0.0,
     0, "", 0.0, HUGE_VAL, NULL},
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "ratio_to",
     "the ratio's denominator: old = logp_old (PPO's pi_old), rollout = logp_rollout (sampler)",
     0.0, 0, "old", 0.0, 0.0, keel_template_objective_ratio_choices},
};

/* One metric, reported by every call. TOKEN_MEAN: the host merges calls weighted by their
 * unmasked tokens. */
static const keel_scalar_decl keel_template_objective_metrics[1] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "clip_fraction",
     "fraction of unmasked tokens whose clipped branch is active"},
};

/* Per-instance state. Keep everything mutable here, never in globals: the host may create
 * several instances of this library with different parameters. */
typedef struct keel_template_objective {
  const keel_host *host; /* valid until destroy(); use it to report errors */
  double eps;
  double entropy_coef;
  int ratio_to_rollout; /* 0: base = logp_old, 1: base = logp_rollout */
} keel_template_objective;

/* host->error(message) and return `status` (error first, then the status: ABI rule). */
static keel_status keel_template_objective_fail(const keel_host *host, keel_status status,
                                                const char *message) {
  if (host && host->error) host->error(host, message);
  return status;
}

static keel_status keel_template_objective_create(const keel_host *host,
                                                  const keel_params *params,
                                                  void **out_instance) {
  char message[256];
  double eps = 0.2, entropy_coef = 0.0; /* the declared defaults */
  const char *ratio_to = "old";

  /* Read the values by name. They are an array of the HOST's keel_param_value, so step by
   * its struct_size, never by our sizeof (ABI rule 4.4: a newer host's element may be
   * longer). `s` strings are borrowed: valid during create() only (we keep an int). */
  uint32_t count = params ? params->count : 0u;
  const unsigned char *cursor = count ? (const unsigned char *)params->values : NULL;
  if (count && !cursor)
    return keel_template_objective_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                                        PLUGIN_NAME ": parameter values are NULL");
  for (uint32_t k = 0; k < count; k++) {
    const keel_param_value *v = (const keel_param_value *)(const void *)cursor;
    if (v->struct_size < sizeof(keel_param_value))
      return keel_template_objective_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                                          PLUGIN_NAME ": malformed parameter value");
    cursor += v->struct_size;
    const char *name = v->name ? v->name : "";
    if (strcmp(name, "eps") == 0 && v->type == KEEL_PARAM_FLOAT) {
      eps = v->f;
    } else if (strcmp(name, "entropy_coef") == 0 && v->type == KEEL_PARAM_FLOAT) {
      entropy_coef = v->f;
    } else if (strcmp(name, "ratio_to") == 0 && v->type == KEEL_PARAM_STRING) {
      ratio_to = v->s ? v->s : "";
    } else {
      snprintf(message, sizeof message,
               PLUGIN_NAME ": unknown parameter '%s' (type %u); valid: eps (float), "
                           "entropy_coef (float), ratio_to (string)",
               name, (unsigned)v->type);
      return keel_template_objective_fail(host, KEEL_ERR_INVALID_ARGUMENT, message);
    }
  }
  /* The host validated ranges and choices against the declarations; check again anyway. */
  if (!(eps >= 0.0 && eps <= 1.0) || !(entropy_coef >= 0.0 && isfinite(entropy_coef))) {
    snprintf(message, sizeof message,
             PLUGIN_NAME ": eps = %g must be in [0, 1] and entropy_coef = %g finite and >= 0",
             eps, entropy_coef);
    return keel_template_objective_fail(host, KEEL_ERR_INVALID_ARGUMENT, message);
  }
  int rollout;
  if (strcmp(ratio_to, "old") == 0) {
    rollout = 0;
  } else if (strcmp(ratio_to, "rollout") == 0) {
    rollout = 1;
  } else {
    snprintf(message, sizeof message,
             PLUGIN_NAME ": parameter 'ratio_to' = '%s' is not one of old, rollout", ratio_to);
    return keel_template_objective_fail(host, KEEL_ERR_INVALID_ARGUMENT, message);
  }

  /* This instance's needs (ABI 1.1): the host supplies batch->entropy (and grad_entropy)
   * only when create() sets KEEL_OBJECTIVE_USES_ENTROPY here. keel_params.instance_flags
   * exists only when struct_size covers it: a 1.0 host has no slot, and supplies no
   * entropy, so an instance that needs it must refuse. */
  const uint32_t flags = entropy_coef > 0.0 ? KEEL_OBJECTIVE_USES_ENTROPY : 0u;
  const int has_slot = params &&
                       params->struct_size >= offsetof(keel_params, instance_flags) +
                                                  sizeof(params->instance_flags) &&
                       params->instance_flags;
  if (has_slot) {
    *params->instance_flags = flags;
  } else if (flags) {
    return keel_template_objective_fail(
        host, KEEL_ERR_UNSUPPORTED,
        PLUGIN_NAME ": entropy_coef > 0 needs a host with per-instance flags (ABI >= 1.1)");
  }

  keel_template_objective *self = malloc(sizeof *self);
  if (!self)
    return keel_template_objective_fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory");
  self->host = host;
  self->eps = eps;
  self->entropy_coef = entropy_coef;
  self->ratio_to_rollout = rollout;
  *out_instance = self;
  return KEEL_OK;
}

static void keel_template_objective_destroy(void *instance) { free(instance); }

static keel_status keel_template_objective_compute(void *instance,
                                                   const keel_objective_batch *batch,
                                                   keel_objective_output *out) {
  const keel_template_objective *self = instance;
  char message[256];
  if (!batch || !out)
    return keel_template_objective_fail(self->host, KEEL_ERR_INVALID_ARGUMENT,
                                        PLUGIN_NAME ": NULL batch or output");
  out->loss = 0.0;
  if (out->metric_count >= 1 && out->metrics) out->metrics[0] = 0.0;
  const int64_t n = batch->num_tokens;
  if (n <= 0) return KEEL_OK; /* an empty call: loss 0 */

  const float *base = self->ratio_to_rollout ? batch->logp_rollout : batch->logp_old;
  if (!batch->mask || !batch->advantages || !batch->logp || !base || !out->grad_logp)
    return keel_template_objective_fail(self->host, KEEL_ERR_INVALID_ARGUMENT,
                                        PLUGIN_NAME ": a required token array is NULL");

  /* ABI 1.1 fields: read them only when the host's struct_size covers them (a reader checks
   * struct_size before reading a field appended after 1.0). */
  const int use_entropy = self->entropy_coef > 0.0;
  const float *entropy = NULL;
  float *grad_entropy = NULL;
  if (use_entropy) {
    if (batch->struct_size >= offsetof(keel_objective_batch, entropy) + sizeof(batch->entropy))
      entropy = batch->entropy;
    if (out->struct_size >= offsetof(keel_objective_output, grad_entropy) +
                                sizeof(out->grad_entropy))
      grad_entropy = out->grad_entropy;
    if (!entropy || !grad_entropy)
      return keel_template_objective_fail(
          self->host, KEEL_ERR_INVALID_ARGUMENT,
          PLUGIN_NAME ": entropy_coef > 0 but the host gave no entropy / grad_entropy");
  }

  /* Normalise by the WHOLE optimizer-step batch (never by counts of this call): the host may
   * split one step into several calls and adds their losses and gradients. */
  const double T = batch->total_tokens;
  const double eps = self->eps;
  double pg = 0.0, hs = 0.0;
  int64_t unmasked = 0, clipped = 0;

  /* Stop-gradient rule: differentiate through `logp` only. Anything your formula treats as
   * a constant (IS weights, ratios, clip decisions, anything behind sg[.]) must be computed
   * from `frozen` below, never from `logp`: the gradient checker keeps logp_frozen fixed and
   * perturbs logp, so a constant computed from logp makes your reported gradient wrong.
   * logp_frozen == NULL means "equal to logp" (ordinary training). */
  for (int64_t t = 0; t < n; t++) {
    if (!batch->mask[t]) {
      out->grad_logp[t] = 0.0f; /* masked tokens must get exactly 0 */
      if (grad_entropy) grad_entropy[t] = 0.0f;
      continue;
    }
    const double logp = batch->logp[t];
    const double frozen = batch->logp_frozen ? (double)batch->logp_frozen[t] : logp;
    const double b = base[t];
    const double a = batch->advantages[t];
    const double h = entropy ? (double)entropy[t] : 0.0;
    if (!isfinite(logp) || !isfinite(frozen) || !isfinite(b) || !isfinite(a) || !isfinite(h)) {
      snprintf(message, sizeof message, PLUGIN_NAME ": non-finite input at token %lld",
               (long long)t);
      return keel_template_objective_fail(self->host, KEEL_ERR_NUMERIC, message);
    }
    if (!(T > 0.0))
      return keel_template_objective_fail(
          self->host, KEEL_ERR_INVALID_ARGUMENT,
          PLUGIN_NAME ": unmasked tokens but total_tokens <= 0");

    /* ---- EDIT HERE: the per-token loss term ℓ_t (`term`) and dℓ_t/dlogp_t (`slope`) ----- */
    const double rho = exp(frozen - b); /* sg[r_t]: decides the branch, carries no gradient */
    double term, slope;
    if ((a > 0.0 && rho > 1.0 + eps) || (a < 0.0 && rho < 1.0 - eps)) {
      term = -a * (a > 0.0 ? 1.0 + eps : 1.0 - eps); /* clipped: a constant */
      slope = 0.0;
      clipped++;
    } else {
      const double r = exp(logp - b); /* the live ratio */
      term = -a * r;
      slope = -a * r;
    }
    /* ---- END EDIT HERE ------------------------------------------------------------------ */

    pg += term;
    const float g = (float)(slope / T);
    if (!isfinite(g)) {
      snprintf(message, sizeof message,
               PLUGIN_NAME ": gradient at token %lld is not finite (ratio overflow)",
               (long long)t);
      return keel_template_objective_fail(self->host, KEEL_ERR_NUMERIC, message);
    }
    out->grad_logp[t] = g;
    if (use_entropy) {
      hs += h;
      grad_entropy[t] = (float)(-self->entropy_coef / T);
    }
    unmasked++;
  }
  double loss = unmasked ? pg / T : 0.0;
  if (use_entropy && unmasked) loss = loss - self->entropy_coef * (hs / T);
  if (!isfinite(loss))
    return keel_template_objective_fail(self->host, KEEL_ERR_NUMERIC,
                                        PLUGIN_NAME ": the loss is not finite (ratio overflow)");
  out->loss = loss;
  if (out->metric_count >= 1 && out->metrics)
    out->metrics[0] = unmasked ? (double)clipped / (double)unmasked : 0.0;
  return KEEL_OK;
}

static const keel_objective_vtable keel_template_objective_vtable = {
    .struct_size = sizeof(keel_objective_vtable),
    .flags = 0u, /* static needs; this template writes them per instance in create() */
    .metric_count = 1u,
    .metrics = keel_template_objective_metrics,
    .aggregation = "token-mean", /* loss summed over tokens, divided by the step's tokens */
    .compute = keel_template_objective_compute,
};

static const keel_plugin keel_template_objective_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR, /* the ABI this file is compiled against */
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = PLUGIN_NAME,
    .version = "0.1.0",
    .description = "PPO clip max(-A r, -A clip(r, 1-eps, 1+eps)) with an optional entropy "
                   "bonus, token-mean; verl vanilla policy loss (token-mean, entropy_coeff) "
                   "(template)",
    .param_count = 3u,
    .params = keel_template_objective_params,
    .create = keel_template_objective_create,
    .destroy = keel_template_objective_destroy,
    .get_extension = NULL,
    .vtable = &keel_template_objective_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
    .get_instance_extension = NULL,
};

/* The only exported symbol. The ABI check: refuse (NULL) a host of another major, or of an
 * older minor than the header this file was compiled against (its structs may lack the
 * fields we read). A static const, not the macro: `unsigned < 0` would warn at minor 0. */
static const uint32_t keel_template_objective_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < keel_template_objective_minor)
    return NULL;
  return &keel_template_objective_plugin;
}
