/*
 * length_penalty.c — the "length-penalty" reward plugin (Keel ABI 1.0): DAPO's soft overlong
 * punishment (Yu et al. 2025, arXiv 2503.14476, Eq. 13), from the response's token count
 * |y| = response_len:
 *
 *   R(y) =  0                                   if |y| <= max_length - buffer
 *           ((max_length - buffer) - |y|) / buffer   if max_length - buffer < |y| <= max_length
 *          -1                                   if |y| > max_length
 *
 * i.e. 0 up to the start of the buffer, then linear down to -1 at max_length, -1 beyond. With
 * buffer = 0 it is a step: 0 up to max_length, -1 beyond. It is meant to be added to a
 * correctness reward (DAPO: L_max = max_length, L_cache = buffer).
 *
 * Equals verl's DAPO reward manager overlong_buffer (len = buffer, penalty_factor 1, with
 * max_response_length = max_length), which is min(-(|y| - (max_length - buffer)) / buffer, 0)
 * and never sees |y| > max_length; Keel's -1 floor covers that case. TRL has no built-in
 * equivalent (a reward function).
 *
 * Contract: reads response_len only (the text is not read); a negative response_len →
 * KEEL_ERR_INVALID_ARGUMENT naming the sample; buffer > max_length is refused by create().
 * Component `overlong` (SEQUENCE_MEAN): 1 if |y| > max_length, else 0. Samples are walked with
 * each element's struct_size as the stride. No mutable globals. Exports only
 * keel_plugin_entry.
 */
#include <keel/keel_plugin.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLUGIN_NAME "length-penalty"

/* ---- Parameters (declaration order is the order create() receives them in) ------------ */
enum { P_MAX_LENGTH, P_BUFFER, P_COUNT };

static const keel_param_decl lp_params[P_COUNT] = {
    {sizeof(keel_param_decl), KEEL_PARAM_INT, "max_length",
     "tokens at which the penalty reaches -1 (DAPO L_max); longer responses get -1", 0.0, 8, "",
     1.0, HUGE_VAL},
    {sizeof(keel_param_decl), KEEL_PARAM_INT, "buffer",
     "tokens before max_length over which the penalty falls linearly from 0 (DAPO L_cache)", 0.0,
     2, "", 0.0, HUGE_VAL},
};

static const keel_scalar_decl lp_components[1] = {
    {sizeof(keel_scalar_decl), KEEL_REDUCE_SEQUENCE_MEAN, "overlong",
     "1 if the response is longer than max_length tokens, else 0"},
};

typedef struct length_penalty {
  const keel_host *host;
  int64_t max_length, buffer;
} length_penalty;

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

static keel_status lp_create(const keel_host *host, const keel_params *params,
                             void **out_instance) {
  int64_t iv[P_COUNT]; /* every parameter is an INT */
  for (int j = 0; j < P_COUNT; j++) iv[j] = lp_params[j].default_i;
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
    while (j < P_COUNT && !(v->name && strcmp(v->name, lp_params[j].name) == 0)) j++;
    if (j == P_COUNT)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": unknown parameter '%s' (valid: max_length, buffer)",
                  v->name ? v->name : "(null)");
    const keel_param_decl *d = &lp_params[j];
    if (v->type != d->type)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter '%s' has type %u, expected %u", d->name,
                  (unsigned)v->type, (unsigned)d->type);
    if (!((double)v->i >= d->min_value && (double)v->i <= d->max_value))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": parameter '%s' = %lld is outside [%g, %g]", d->name,
                  (long long)v->i, d->min_value, d->max_value);
    iv[j] = v->i;
  }
  if (iv[P_BUFFER] > iv[P_MAX_LENGTH])
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": parameter 'buffer' = %lld exceeds 'max_length' = %lld",
                (long long)iv[P_BUFFER], (long long)iv[P_MAX_LENGTH]);
  length_penalty *m = malloc(sizeof *m);
  if (!m) return fail(host, KEEL_ERR_INTERNAL, PLUGIN_NAME ": out of memory creating an instance");
  m->host = host;
  m->max_length = iv[P_MAX_LENGTH];
  m->buffer = iv[P_BUFFER];
  *out_instance = m;
  return KEEL_OK;
}

static void lp_destroy(void *instance) { free(instance); }

static keel_status lp_compute(void *instance, const keel_reward_batch *batch,
                              keel_reward_output *out) {
  const length_penalty *m = instance;
  const keel_host *host = m->host;
  if (!batch || !out)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": NULL batch or output");
  if (batch->count < 0)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": negative count %lld",
                (long long)batch->count);
  if (batch->count == 0) return KEEL_OK;
  if (!batch->samples || !out->rewards)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, PLUGIN_NAME ": samples or rewards is NULL");
  if (out->component_count != 1 || !out->components)
    return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                PLUGIN_NAME ": output has %u component slots, expected 1",
                (unsigned)out->component_count);
  const int64_t start = m->max_length - m->buffer; /* the buffer begins after this length */
  const char *cursor = (const char *)batch->samples;
  for (int64_t i = 0; i < batch->count; i++) {
    const keel_reward_sample *s = (const keel_reward_sample *)(const void *)cursor;
    if (s->struct_size < sizeof(keel_reward_sample))
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": sample %lld has struct_size %u (< %u)", (long long)i,
                  (unsigned)s->struct_size, (unsigned)sizeof(keel_reward_sample));
    cursor += s->struct_size;
    const int64_t len = s->response_len;
    if (len < 0)
      return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                  PLUGIN_NAME ": sample %lld has response_len %lld (< 0)", (long long)i,
                  (long long)len);
    double r;
    if (len <= start)
      r = 0.0;
    else if (len <= m->max_length)
      r = (double)(start - len) / (double)m->buffer; /* buffer > 0 here */
    else
      r = -1.0;
    out->rewards[i] = (float)r;
    out->components[i] = len > m->max_length ? 1.0 : 0.0;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_reward_vtable lp_vtable = {
    sizeof(keel_reward_vtable), 1u, lp_components, lp_compute,
};

static const keel_plugin lp_plugin = {
    .struct_size = sizeof(keel_plugin),
    .abi_major = KEEL_ABI_MAJOR,
    .abi_minor = KEEL_ABI_MINOR,
    .kind = KEEL_KIND_REWARD,
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "DAPO overlong penalty on the token count: 0 up to max_length - buffer, linear "
                   "to -1 at max_length, -1 beyond (verl DAPO reward manager overlong_buffer)",
    .param_count = P_COUNT,
    .params = lp_params,
    .create = lp_create,
    .destroy = lp_destroy,
    .get_extension = NULL,
    .vtable = &lp_vtable,
    .state_size = NULL,
    .save_state = NULL,
    .load_state = NULL,
};

/* A static const, not the macro: `unsigned < 0` would trip -Wtype-limits while MINOR is 0. */
static const uint32_t lp_built_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor);
KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < lp_built_minor) return NULL;
  return &lp_plugin;
}
