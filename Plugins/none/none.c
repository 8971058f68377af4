/*
 * none.c — the "none" baseline plugin (Keel ABI 1.0): no baseline, the advantage is the
 * reward itself:
 *
 *   Â_i = R_i
 *
 * Plain REINFORCE without variance reduction: useful as an ablation and for rewards that are
 * already centred. group_ids and lengths are not read.
 *
 * Neither verl nor TRL has a dedicated setting; the closest is verl's adv_estimator "grpo"
 * on one-response groups, which gives A = R / (1 + 1e-6).
 *
 * Contract: a non-finite reward → KEEL_ERR_NUMERIC naming the response; NULL arrays with
 * count > 0 → KEEL_ERR_INVALID_ARGUMENT. Each failure calls host->error first. No
 * parameters, no mutable globals. Exports only keel_plugin_entry.
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define PLUGIN_NAME "none"

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct none_baseline {
  const keel_host *host;
} none_baseline;

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

static keel_status none_baseline_create(const keel_host *host, const keel_params *params,
                                        void **out_instance) {
  uint32_t count = params ? params->count : 0;
  if (count > 0) {
    const keel_param_value *v = params->values;
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": unknown parameter '%s' (this plugin has no parameters)",
                v && v->name ? v->name : "(null)");
  }
  none_baseline *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  *out_instance = m;
  return KEEL_OK;
}

static void none_baseline_destroy(void *instance) { free(instance); }

static keel_status none_baseline_compute(void *instance, const keel_baseline_batch *b,
                                         keel_baseline_output *out) {
  const none_baseline *m = instance;
  const keel_host *host = m->host;
  if (!b || !out)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": NULL batch or output");
  const int64_t n = b->count;
  if (n < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": negative count %lld",
                (long long)n);
  if (n == 0) return KEEL_OK;
  if (!b->rewards || !out->advantages)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": rewards or advantages is NULL");
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(b->rewards[i]))
      return fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": reward of response %lld is %g",
                  (long long)i, (double)b->rewards[i]);
    out->advantages[i] = b->rewards[i];
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_baseline_vtable none_baseline_vtable = {
    sizeof(keel_baseline_vtable), 0u, none_baseline_compute,
};

static const keel_plugin none_baseline_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_BASELINE,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "no baseline: the advantage is the reward itself (plain REINFORCE without "
                   "variance reduction; verl and TRL have no dedicated setting)",
    .param_count = 0,
    .params = NULL,
    .create = none_baseline_create,
    .destroy = none_baseline_destroy,
    .get_extension = NULL,
    .vtable = &none_baseline_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t none_baseline_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < none_baseline_built_minor) return NULL;
  return &none_baseline_plugin;
}
