/* v10_objective.c — compatibility fixture: an objective that uses only ABI 1.0, compiled twice
 * by the tests — against the frozen 1.0 header (Tests/Fixtures/abi-1.0, so its descriptor,
 * declarations and reads have 1.0's sizes: keel_param_decl 64 bytes, keel_plugin 112) and
 * against the current header. The 1.1 host must load the 1.0 build and give bit-identical
 * results to the 1.1 build (and ask a 1.0 build for no 1.1 input).
 * Objective: L = -(scale/S) Σ_t m_t·A_t·logp_t·(sign = "plus" ? 1 : -1)·(1 + bonus·[t first]),
 * three parameters read by stepping keel_params.values by struct_size. */
#include <keel/keel_plugin.h>

#include <stdlib.h>
#include <string.h>

typedef struct v10 {
  double scale, bonus;
  int minus;
} v10;

static const keel_param_decl v10_params[3] = {
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "scale", "multiplies the loss", 1.0, 0, "", 0.0, 10.0},
    {sizeof(keel_param_decl), KEEL_PARAM_STRING, "sign", "plus | minus", 0.0, 0, "plus", 0.0, 0.0},
    {sizeof(keel_param_decl), KEEL_PARAM_FLOAT, "bonus", "extra weight of each response's first token", 0.0, 0, "", 0.0, 5.0},
};

static const keel_scalar_decl v10_metrics[1] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_TOKEN_MEAN, "first_fraction", "fraction of tokens that are first"},
};

static keel_status v10_create(const keel_host *host, const keel_params *params, void **out) {
  v10 *m = malloc(sizeof *m);
  if (!m) return KEEL_ERR_INTERNAL;
  m->scale = 1.0;
  m->bonus = 0.0;
  m->minus = 0;
  const char *p = (const char *)params->values;
  for (uint32_t i = 0; i < params->count; i++) {
    const keel_param_value *v = (const keel_param_value *)(p + (size_t)i * params->values[0].struct_size);
    if (strcmp(v->name, "scale") == 0) m->scale = v->f;
    if (strcmp(v->name, "bonus") == 0) m->bonus = v->f;
    if (strcmp(v->name, "sign") == 0) {
      if (strcmp(v->s, "plus") != 0 && strcmp(v->s, "minus") != 0) {
        free(m);
        host->error(host, "v10: sign must be plus or minus");
        return KEEL_ERR_INVALID_ARGUMENT;
      }
      m->minus = strcmp(v->s, "minus") == 0;
    }
  }
  *out = m;
  return KEEL_OK;
}

static void v10_destroy(void *instance) { free(instance); }

static keel_status v10_compute(void *instance, const keel_objective_batch *b, keel_objective_output *out) {
  const v10 *m = instance;
  double loss = 0.0, first = 0.0, unmasked = 0.0;
  for (int64_t i = 0; i < b->num_sequences; i++) {
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) {
        out->grad_logp[t] = 0.0f;
        continue;
      }
      const double w = (t == b->seq_offsets[i] ? 1.0 + m->bonus : 1.0) * (m->minus ? -1.0 : 1.0);
      const double coef = -m->scale * w * b->advantages[t] / b->total_sequences;
      loss += coef * b->logp[t];
      out->grad_logp[t] = (float)coef;
      unmasked += 1.0;
      first += t == b->seq_offsets[i];
    }
  }
  out->loss = loss;
  out->metrics[0] = unmasked > 0 ? first / unmasked : 0.0;
  return KEEL_OK;
}

static const keel_objective_vtable v10_vtable = {
    sizeof(keel_objective_vtable), 0u, 1u, 0u, v10_metrics, "seq-mean-token-sum", v10_compute,
};

static const keel_plugin v10_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE,
    .name = "fixture-v10",
    .version = "1.0.0",
    .description = "compatibility fixture: an ABI 1.0 objective, seq-mean-token-sum",
    .param_count = 3,
    .params = v10_params,
    .create = v10_create,
    .destroy = v10_destroy,
    .vtable = &v10_vtable,
};

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t major, uint32_t minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t major, uint32_t minor) {
  static const uint32_t built = KEEL_ABI_MINOR;
  return major == KEEL_ABI_MAJOR && minor >= built ? &v10_plugin : NULL;
}
