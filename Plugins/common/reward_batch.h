/*
 * reward_batch.h — the batch checks and sample walk shared by the built-in reward plugins
 * (Keel ABI 1.0, keel_reward_batch / keel_reward_output). Shared static inline code; see
 * plugin_util.h for how Plugins/common/ is included.
 *
 * kr_check_batch, in this order (each failure calls host->error first and is
 * KEEL_ERR_INVALID_ARGUMENT): NULL batch or output; a negative count; count 0 sets *empty (the
 * call returns KEEL_OK); NULL samples or rewards; a component slot count other than the
 * vtable's (or NULL components). kr_next_sample then walks the samples with each element's
 * struct_size as the stride, refusing one smaller than this header's keel_reward_sample.
 * kr_compute is a reward's whole compute(): both, with a per-sample scorer.
 */
#ifndef KEEL_PLUGINS_COMMON_REWARD_BATCH_H
#define KEEL_PLUGINS_COMMON_REWARD_BATCH_H

#include "plugin_util.h"

static inline keel_status kr_check_batch(const keel_host *host, const char *plugin,
                                         const keel_reward_batch *batch,
                                         const keel_reward_output *out,
                                         uint32_t component_count, int *empty) {
  *empty = 0;
  if (!batch || !out)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: NULL batch or output", plugin);
  if (batch->count < 0)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: negative count %lld", plugin,
                   (long long)batch->count);
  if (batch->count == 0) {
    *empty = 1;
    return KEEL_OK;
  }
  if (!batch->samples || !out->rewards)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: samples or rewards is NULL", plugin);
  if (out->component_count != component_count || !out->components)
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                   "%s: output has %u component slots, expected %u", plugin,
                   (unsigned)out->component_count, (unsigned)component_count);
  return KEEL_OK;
}

/* *sample = sample i at *cursor (start: batch->samples), and *cursor moves past it. */
static inline keel_status kr_next_sample(const keel_host *host, const char *plugin,
                                         const char **cursor, int64_t i,
                                         const keel_reward_sample **sample) {
  const keel_reward_sample *s = (const keel_reward_sample *)(const void *)*cursor;
  if (s->struct_size < sizeof(keel_reward_sample))
    return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT, "%s: sample %lld has struct_size %u (< %u)",
                   plugin, (long long)i, (unsigned)s->struct_size,
                   (unsigned)sizeof(keel_reward_sample));
  *cursor += s->struct_size;
  *sample = s;
  return KEEL_OK;
}

/* Scores sample i: writes out->rewards[i] and its components, or fails (host->error first). */
typedef keel_status (*kr_score_fn)(const void *instance, const keel_reward_sample *sample,
                                   int64_t i, keel_reward_output *out);

/* kr_check_batch, then each sample in order: kr_next_sample, then score(). The first failure
 * wins (samples before it keep their outputs). */
static inline keel_status kr_compute(const keel_host *host, const char *plugin,
                                     const void *instance, const keel_reward_batch *batch,
                                     keel_reward_output *out, uint32_t component_count,
                                     kr_score_fn score) {
  int empty;
  keel_status s = kr_check_batch(host, plugin, batch, out, component_count, &empty);
  if (s || empty) return s;
  const char *cursor = (const char *)batch->samples;
  for (int64_t i = 0; i < batch->count; i++) {
    const keel_reward_sample *sample = NULL;
    if ((s = kr_next_sample(host, plugin, &cursor, i, &sample))) return s;
    if ((s = score(instance, sample, i, out))) return s;
  }
  return KEEL_OK;
}

#endif /* KEEL_PLUGINS_COMMON_REWARD_BATCH_H */
