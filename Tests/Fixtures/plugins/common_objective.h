/* common_objective.h — shared by the fixture objectives (not a fixture itself): a REINFORCE
 * compute (loss = -(1/S) Σ mask·A·logp, grad = -(1/S)·mask·A), a trivial create/destroy, and
 * one SUM metric `token_count`, so each fixture only states what it breaks. Everything is
 * static (inline, so unused ones do not warn): each fixture exports only keel_plugin_entry. */
#ifndef KEEL_FIXTURE_COMMON_OBJECTIVE_H
#define KEEL_FIXTURE_COMMON_OBJECTIVE_H
#include <keel/keel_plugin.h>

#include <stdlib.h>

typedef struct fixture_instance {
  const keel_host *host;
  double scale; /* multiplies the loss and gradient (typed_params uses it) */
} fixture_instance;

static const keel_scalar_decl fixture_metrics[1] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_SUM, "token_count", "unmasked tokens in the call"},
};

static inline keel_status fixture_create(const keel_host *host, const keel_params *params,
                                  void **out_instance) {
  (void)params;
  fixture_instance *self = malloc(sizeof *self);
  if (!self) {
    host->error(host, "fixture: out of memory");
    return KEEL_ERR_INTERNAL;
  }
  self->host = host;
  self->scale = 1.0;
  *out_instance = self;
  return KEEL_OK;
}

static inline void fixture_destroy(void *instance) { free(instance); }

static inline keel_status fixture_reinforce(void *instance, const keel_objective_batch *batch,
                                     keel_objective_output *out) {
  const fixture_instance *self = instance;
  double loss = 0.0, count = 0.0;
  for (int64_t t = 0; t < batch->num_tokens; t++) {
    if (!batch->mask[t]) {
      out->grad_logp[t] = 0.0f;
      continue;
    }
    const double coef = -self->scale * batch->advantages[t] / batch->total_sequences;
    loss += coef * batch->logp[t];
    out->grad_logp[t] = (float)coef;
    count += 1.0;
  }
  out->loss = loss;
  if (out->metric_count > 0) out->metrics[0] = count;
  return KEEL_OK;
}

/* A descriptor for an objective named NAME whose compute is COMPUTE. */
#define FIXTURE_OBJECTIVE(NAME, COMPUTE, MAJOR, MINOR, SIZE)                                   \
  static const keel_objective_vtable fixture_vtable = {                                       \
      sizeof(keel_objective_vtable), 0u, 1u, 0u, fixture_metrics, "seq-mean-token-sum",       \
      COMPUTE};                                                                               \
  static const keel_plugin fixture_plugin = {                                                 \
      .struct_size = (SIZE),                                                                  \
      .abi_major = (MAJOR),                                                                   \
      .abi_minor = (MINOR),                                                                   \
      .kind = KEEL_KIND_OBJECTIVE,                                                            \
      .name = NAME,                                                                           \
      .version = "0.0.1",                                                                     \
      .description = "test fixture: " NAME ", seq-mean-token-sum",                            \
      .create = fixture_create,                                                               \
      .destroy = fixture_destroy,                                                             \
      .vtable = &fixture_vtable,                                                              \
  }

#endif
