/*
 * plugin.c — keel-template-baseline: a starting point for a Keel baseline (advantage
 * estimator) plugin (ABI 1.1; a baseline uses nothing 1.1 added).
 *
 * Contract: group mean. advantage_i = reward_i − mean of the rewards of i's group, where a
 * group is every response with the same group_id (ids are arbitrary int64 values, responses
 * of a group may appear in any order). O(n log n): sort indices by (group_id, index), then
 * one pass per run of equal ids; sums are taken in index order, so results are
 * deterministic. A non-finite reward → KEEL_ERR_NUMERIC. Exports only keel_plugin_entry;
 * no mutable globals.
 *
 * Make it yours: change the EDIT HERE region (e.g. divide by the group's std for GRPO),
 * the description and the version. Build with `make`, then run
 * `keel plugins check ./libkeel-template-baseline.so`.
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* Per-instance state. Keep everything mutable here, never in globals. */
typedef struct keel_template_baseline {
  const keel_host *host; /* valid until destroy(); use it to report errors */
} keel_template_baseline;

typedef struct keel_template_baseline_key {
  int64_t group;
  int64_t index;
} keel_template_baseline_key;

static int keel_template_baseline_compare(const void *pa, const void *pb) {
  const keel_template_baseline_key *a = pa, *b = pb;
  if (a->group != b->group) return a->group < b->group ? -1 : 1;
  return a->index < b->index ? -1 : a->index > b->index;
}

static keel_status keel_template_baseline_create(const keel_host *host,
                                                 const keel_params *params,
                                                 void **out_instance) {
  (void)params; /* this template declares no parameters (param_count = 0) */
  keel_template_baseline *self = malloc(sizeof *self);
  if (!self) {
    host->error(host, "keel-template-baseline: out of memory");
    return KEEL_ERR_INTERNAL;
  }
  self->host = host;
  *out_instance = self;
  return KEEL_OK;
}

static void keel_template_baseline_destroy(void *instance) { free(instance); }

static keel_status keel_template_baseline_compute(void *instance,
                                                  const keel_baseline_batch *batch,
                                                  keel_baseline_output *out) {
  const keel_template_baseline *self = instance;
  const int64_t n = batch->count;
  if (n <= 0) return KEEL_OK;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(batch->rewards[i])) {
      char message[160];
      snprintf(message, sizeof message, "keel-template-baseline: non-finite reward at %lld",
               (long long)i);
      self->host->error(self->host, message);
      return KEEL_ERR_NUMERIC;
    }
  }
  /* Scratch memory is per call: allocate it here and free it before returning. */
  keel_template_baseline_key *keys = malloc((size_t)n * sizeof *keys);
  if (!keys) {
    self->host->error(self->host, "keel-template-baseline: out of memory");
    return KEEL_ERR_INTERNAL;
  }
  for (int64_t i = 0; i < n; i++) keys[i] = (keel_template_baseline_key){batch->group_ids[i], i};
  qsort(keys, (size_t)n, sizeof *keys, keel_template_baseline_compare);

  for (int64_t lo = 0; lo < n;) {
    int64_t hi = lo + 1;
    while (hi < n && keys[hi].group == keys[lo].group) hi++;
    /* ---- EDIT HERE: the advantages of one group, keys[lo..hi) ----------------------------- */
    double sum = 0.0;
    for (int64_t k = lo; k < hi; k++) sum += batch->rewards[keys[k].index];
    const double mean = sum / (double)(hi - lo);
    for (int64_t k = lo; k < hi; k++)
      out->advantages[keys[k].index] = (float)((double)batch->rewards[keys[k].index] - mean);
    /* ---- END EDIT HERE ------------------------------------------------------------------ */
    lo = hi;
  }
  free(keys);
  return KEEL_OK;
}

static const keel_baseline_vtable keel_template_baseline_vtable = {
    .struct_size = sizeof(keel_baseline_vtable),
    .reserved0 = 0u,
    .compute = keel_template_baseline_compute,
};

static const keel_plugin keel_template_baseline_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR, /* the ABI this file is compiled against */
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_BASELINE,
    .name = "keel-template-baseline",
    .version = "0.1.0",
    .description = "advantage = reward - mean reward of its group (template)",
    .param_count = 0u,
    .params = NULL,
    .create = keel_template_baseline_create,
    .destroy = keel_template_baseline_destroy,
    .get_extension = NULL,
    .vtable = &keel_template_baseline_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* The only exported symbol. Refuse a host of another major, or an older minor than ours. */
static const uint32_t keel_template_baseline_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < keel_template_baseline_minor)
    return NULL;
  return &keel_template_baseline_plugin;
}
