/*
 * plugin.c — keel-template-objective: a starting point for a Keel objective plugin (ABI 1.0).
 *
 * Contract: token-level REINFORCE as a loss to MINIMISE,
 *     loss         = -(1/S) * Σ_t mask_t * A_t * logp_t      S = batch->total_sequences
 *     grad_logp[t] = -(1/S) * mask_t * A_t                   (0 for masked tokens)
 * one metric `token_count` (SUM: unmasked tokens in the call); a non-finite input on an
 * unmasked token → KEEL_ERR_NUMERIC. Exports only keel_plugin_entry; no mutable globals.
 *
 * Make it yours: change the formula between the EDIT HERE markers, the description, the
 * aggregation string and the version. Build with `make`, then run
 * `keel plugins check ./libkeel-template-objective.so`.
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* One metric, reported by every call. SUM: the host adds the values of several calls. */
static const keel_scalar_decl keel_template_objective_metrics[1] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_SUM, "token_count", "unmasked tokens in the call"},
};

/* Per-instance state. Keep everything mutable here, never in globals: the host may create
 * several instances of this library with different parameters. */
typedef struct keel_template_objective {
  const keel_host *host; /* valid until destroy(); use it to report errors */
} keel_template_objective;

static keel_status keel_template_objective_create(const keel_host *host,
                                                  const keel_params *params,
                                                  void **out_instance) {
  (void)params; /* this template declares no parameters (param_count = 0) */
  keel_template_objective *self = malloc(sizeof *self);
  if (!self) {
    host->error(host, "keel-template-objective: out of memory");
    return KEEL_ERR_INTERNAL;
  }
  self->host = host;
  *out_instance = self;
  return KEEL_OK;
}

static void keel_template_objective_destroy(void *instance) { free(instance); }

static keel_status keel_template_objective_compute(void *instance,
                                                   const keel_objective_batch *batch,
                                                   keel_objective_output *out) {
  const keel_template_objective *self = instance;
  char message[256];
  double loss = 0.0;
  int64_t count = 0;

  /* Normalise by the WHOLE optimizer-step batch (never by counts of this call): the host may
   * split one step into several calls and adds their losses and gradients. */
  const double S = batch->total_sequences;

  /* Stop-gradient rule: differentiate through `logp` only. Anything your formula treats as
   * a constant (IS weights, ratios, clip masks, anything behind sg[.]) must be computed from
   * `frozen` below, never from `logp`: the gradient checker keeps logp_frozen fixed and
   * perturbs logp, so a constant computed from logp makes your reported gradient wrong.
   * logp_frozen == NULL means "equal to logp" (ordinary training). */
  for (int64_t t = 0; t < batch->num_tokens; t++) {
    if (!batch->mask[t]) {
      out->grad_logp[t] = 0.0f; /* masked tokens must get exactly 0 */
      continue;
    }
    const double logp = batch->logp[t];
    const double frozen = batch->logp_frozen ? (double)batch->logp_frozen[t] : logp;
    const double advantage = batch->advantages[t];
    if (!isfinite(logp) || !isfinite(frozen) || !isfinite(advantage)) {
      snprintf(message, sizeof message,
               "keel-template-objective: non-finite input at token %lld", (long long)t);
      self->host->error(self->host, message);
      return KEEL_ERR_NUMERIC;
    }
    if (!(S > 0.0)) {
      self->host->error(self->host,
                        "keel-template-objective: unmasked tokens but total_sequences <= 0");
      return KEEL_ERR_INVALID_ARGUMENT;
    }
    (void)frozen; /* REINFORCE has no stopped constants; yours probably will */

    /* ---- EDIT HERE: the per-token loss term and its derivative d(term)/d(logp) ---------- */
    const double coef = -advantage / S; /* e.g. -(1/S) * w(frozen) * A for an IS-weighted loss */
    loss += coef * logp;
    out->grad_logp[t] = (float)coef;
    /* ---- END EDIT HERE ------------------------------------------------------------------ */

    count++;
  }
  out->loss = loss;
  out->metrics[0] = (double)count;
  return KEEL_OK;
}

static const keel_objective_vtable keel_template_objective_vtable = {
    .struct_size = sizeof(keel_objective_vtable),
    .flags = 0u, /* KEEL_OBJECTIVE_USES_REF if you read batch->logp_ref */
    .metric_count = 1u,
    .metrics = keel_template_objective_metrics,
    .aggregation = "seq-mean-token-sum", /* loss summed over tokens, divided by responses */
    .compute = keel_template_objective_compute,
};

static const keel_plugin keel_template_objective_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR, /* the ABI this file is compiled against */
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = "keel-template-objective",
    .version = "0.1.0",
    .description = "token-level REINFORCE, seq-mean-token-sum (template)",
    .param_count = 0u,
    .params = NULL,
    .create = keel_template_objective_create,
    .destroy = keel_template_objective_destroy,
    .get_extension = NULL,
    .vtable = &keel_template_objective_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* The only exported symbol. Refuse a host of another major, or an older minor than ours. */
static const uint32_t keel_template_objective_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < keel_template_objective_minor)
    return NULL;
  return &keel_template_objective_plugin;
}
