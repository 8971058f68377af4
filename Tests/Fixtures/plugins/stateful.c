/* stateful.c — fixture: objective "fixture-stateful" with persistent state (the ABI's
 * state_size/save_state/load_state). Its state is the number of compute calls so far; the
 * metric `calls` reports it after each call, so a restored instance continues the count.
 * A blob of the wrong size is refused with KEEL_ERR_STATE. */
#include <keel/keel_plugin.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const keel_host *host; uint64_t calls; } stateful;

static keel_status create(const keel_host *host, const keel_params *params, void **out) {
  (void)params;
  stateful *s = calloc(1, sizeof *s);
  if (!s) return KEEL_ERR_INTERNAL;
  s->host = host;
  *out = s;
  return KEEL_OK;
}
static void destroy(void *instance) { free(instance); }

static keel_status compute(void *instance, const keel_objective_batch *b, keel_objective_output *out) {
  stateful *s = instance;
  s->calls++;
  double loss = 0.0;
  for (int64_t t = 0; t < b->num_tokens; t++) {
    double g = b->mask[t] ? -(double)b->advantages[t] / b->total_sequences : 0.0;
    loss += g * b->logp[t];
    out->grad_logp[t] = (float)g;
  }
  out->loss = loss;
  out->metrics[0] = (double)s->calls;
  return KEEL_OK;
}

static keel_status state_size(void *instance, uint64_t *size) { (void)instance; *size = sizeof(uint64_t); return KEEL_OK; }
static keel_status save_state(void *instance, void *buffer, uint64_t size) {
  if (size != sizeof(uint64_t)) return KEEL_ERR_STATE;
  memcpy(buffer, &((stateful *)instance)->calls, sizeof(uint64_t));
  return KEEL_OK;
}
static keel_status load_state(void *instance, const void *buffer, uint64_t size) {
  stateful *s = instance;
  if (size != sizeof(uint64_t)) {
    s->host->error(s->host, "fixture-stateful: state blob must be 8 bytes");
    return KEEL_ERR_STATE;
  }
  memcpy(&s->calls, buffer, sizeof(uint64_t));
  return KEEL_OK;
}

static const keel_scalar_decl metrics[1] = {{sizeof(keel_scalar_decl), KEEL_REDUCE_SUM, "calls", "compute calls so far"}};
static const keel_objective_vtable vtable = {sizeof(keel_objective_vtable), 0, 1, 0, metrics, "seq-mean-token-sum", compute};
static const keel_plugin descriptor = {
    .struct_size = sizeof(keel_plugin), .abi_major = KEEL_ABI_MAJOR, .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_OBJECTIVE, .name = "fixture-stateful", .version = "1.0.0",
    .description = "counts its calls in persistent state", .create = create, .destroy = destroy,
    .vtable = &vtable, .state_size = state_size, .save_state = save_state, .load_state = load_state};

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t major, uint32_t minor) {
  (void)minor;
  return major == KEEL_ABI_MAJOR ? &descriptor : NULL;
}
