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
#include <math.h>

#include "../common/plugin_util.h"
#include "../common/reward_batch.h"

#define PLUGIN_NAME "length-penalty"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_MAX_LENGTH, P_BUFFER, P_COUNT };

static const keel_param_decl lp_params[P_COUNT] = {
    KP_INT("max_length",
           "tokens at which the penalty reaches -1 (DAPO L_max); longer responses get -1", 8, 1.0,
           HUGE_VAL),
    KP_INT("buffer",
           "tokens before max_length over which the penalty falls linearly from 0 (DAPO L_cache)",
           2, 0.0, HUGE_VAL),
};

static const keel_scalar_decl lp_components[1] = {
    KP_SCALAR(KEEL_REDUCE_SEQUENCE_MEAN, "overlong",
              "1 if the response is longer than max_length tokens, else 0"),
};

typedef struct length_penalty {
  const keel_host *host;
  int64_t max_length, buffer;
} length_penalty;

static keel_status lp_create(const keel_host *host, const keel_params *params,
                             void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, lp_params, P_COUNT, params, v, 0);
  if (s) return s;
  if (v[P_BUFFER].i > v[P_MAX_LENGTH].i)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   PLUGIN_NAME ": parameter 'buffer' = %lld exceeds 'max_length' = %lld",
                   (long long)v[P_BUFFER].i, (long long)v[P_MAX_LENGTH].i);
  length_penalty *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->max_length = v[P_MAX_LENGTH].i;
  m->buffer = v[P_BUFFER].i;
  *out_instance = m;
  return KEEL_OK;
}

static keel_status lp_score(const void *instance, const keel_reward_sample *s, int64_t i,
                            keel_reward_output *out) {
  const length_penalty *m = instance;
  const int64_t start = m->max_length - m->buffer; /* the buffer begins after this length */
  const int64_t len = s->response_len;
  if (len < 0)
    return kp_fail(m->host, KEEL_ERR_INVALID_ARGUMENT,
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
  return KEEL_OK;
}

static keel_status lp_compute(void *instance, const keel_reward_batch *batch,
                              keel_reward_output *out) {
  const length_penalty *m = instance;
  return kr_compute(m->host, PLUGIN_NAME, m, batch, out, 1, lp_score);
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_reward_vtable lp_vtable = {
    sizeof(keel_reward_vtable), 1u, lp_components, lp_compute,
};

static const keel_plugin lp_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_REWARD),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "DAPO overlong penalty on the token count: 0 up to max_length - buffer, linear "
                   "to -1 at max_length, -1 beyond (verl DAPO reward manager overlong_buffer)",
    .param_count = P_COUNT,
    .params = lp_params,
    .create = lp_create,
    .destroy = kp_free_instance,
    .vtable = &lp_vtable,
};

KP_DEFINE_ENTRY(lp_plugin)
