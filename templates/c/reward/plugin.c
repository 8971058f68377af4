/*
 * plugin.c — keel-template-reward: a starting point for a Keel reward plugin (ABI 1.1).
 *
 * Contract: one score per response, 1.0 when the response equals the reference after
 * trimming ASCII whitespace from both ends of each, else 0.0. No components. A NULL
 * response or reference → KEEL_ERR_INVALID_ARGUMENT naming the sample. Exports only
 * keel_plugin_entry; no mutable globals.
 *
 * Make it yours: change score() (the EDIT HERE region), the description and the version.
 * Build with `make`, then run `keel plugins check ./libkeel-template-reward.so`.
 */
#include <keel/keel_plugin.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per-instance state. Keep everything mutable here, never in globals. */
typedef struct keel_template_reward {
  const keel_host *host; /* valid until destroy(); use it to report errors */
} keel_template_reward;

static int keel_template_reward_is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Trim s in place as a (pointer, length) view. */
static void keel_template_reward_trim(const char **s, size_t *n) {
  while (*n > 0 && keel_template_reward_is_space((*s)[0])) (*s)++, (*n)--;
  while (*n > 0 && keel_template_reward_is_space((*s)[*n - 1])) (*n)--;
}

/* ---- EDIT HERE: the score of one response ----------------------------------------------- */
static float keel_template_reward_score(const keel_reward_sample *sample) {
  const char *a = sample->response, *b = sample->reference;
  size_t na = strlen(a), nb = strlen(b);
  keel_template_reward_trim(&a, &na);
  keel_template_reward_trim(&b, &nb);
  return na == nb && memcmp(a, b, na) == 0 ? 1.0f : 0.0f;
}
/* ---- END EDIT HERE ---------------------------------------------------------------------- */

static keel_status keel_template_reward_create(const keel_host *host, const keel_params *params,
                                               void **out_instance) {
  (void)params; /* this template declares no parameters (param_count = 0) */
  keel_template_reward *self = malloc(sizeof *self);
  if (!self) {
    host->error(host, "keel-template-reward: out of memory");
    return KEEL_ERR_INTERNAL;
  }
  self->host = host;
  *out_instance = self;
  return KEEL_OK;
}

static void keel_template_reward_destroy(void *instance) { free(instance); }

static keel_status keel_template_reward_compute(void *instance, const keel_reward_batch *batch,
                                                keel_reward_output *out) {
  const keel_template_reward *self = instance;
  /* Samples may be larger than this file's keel_reward_sample (a newer host appends fields):
   * step by each element's struct_size, never by sizeof. */
  const char *cursor = (const char *)batch->samples;
  for (int64_t i = 0; i < batch->count; i++) {
    const keel_reward_sample *sample = (const keel_reward_sample *)(const void *)cursor;
    cursor += sample->struct_size;
    if (!sample->response || !sample->reference) {
      char message[160];
      snprintf(message, sizeof message, "keel-template-reward: sample %lld has a NULL %s",
               (long long)i, sample->response ? "reference" : "response");
      self->host->error(self->host, message);
      return KEEL_ERR_INVALID_ARGUMENT;
    }
    out->rewards[i] = keel_template_reward_score(sample);
  }
  return KEEL_OK;
}

static const keel_reward_vtable keel_template_reward_vtable = {
    .struct_size = sizeof(keel_reward_vtable),
    .component_count = 0u, /* named extra scores (e.g. "format_ok") go here, with `components` */
    .components = NULL,
    .compute = keel_template_reward_compute,
};

static const keel_plugin keel_template_reward_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR, /* the ABI this file is compiled against */
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_REWARD,
    .name = "keel-template-reward",
    .version = "0.1.0",
    .description = "1 if the trimmed response equals the trimmed reference, else 0 (template)",
    .param_count = 0u,
    .params = NULL,
    .create = keel_template_reward_create,
    .destroy = keel_template_reward_destroy,
    .get_extension = NULL,
    .vtable = &keel_template_reward_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* The only exported symbol. Refuse a host of another major, or an older minor than ours. */
static const uint32_t keel_template_reward_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < keel_template_reward_minor)
    return NULL;
  return &keel_template_reward_plugin;
}
