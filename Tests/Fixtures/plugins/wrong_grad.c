/* wrong_grad.c — fault fixture: objective "fixture-wrong-grad", MiniRL-like with truncated
 * train-inference IS and no clipping, with a deliberate stop-gradient bug: the IS weight is
 * computed from `logp` instead of `logp_frozen`, so it is NOT a constant of the loss:
 *     loss = -(1/S) Σ mask · min(exp(logp - logp_rollout), 5) · A · logp
 * while the reported gradient is the "usual" -(1/S) · mask · w · A (the w·A·logp term from
 * differentiating w is missing). Tests: the gradient checker (logp_frozen fixed, logp
 * perturbed) must disagree with the reported gradient and name this plugin. */
#include "common_objective.h"

/* exp without libm (the fixture is built with a bare `cc -shared`): range reduction to
 * |r| <= ln2/2, then a Taylor series; smooth and accurate to ~1e-15 relative. */
static double fixture_exp(double x) {
  const double ln2 = 0.69314718055994530942;
  if (x < -700.0) return 0.0;
  if (x > 700.0) x = 700.0;
  int k = (int)(x / ln2 + (x >= 0.0 ? 0.5 : -0.5));
  double r = x - k * ln2, term = 1.0, sum = 1.0;
  for (int n = 1; n < 20; n++) sum += term *= r / n;
  for (; k > 0; k--) sum *= 2.0;
  for (; k < 0; k++) sum *= 0.5;
  return sum;
}

static keel_status fixture_wrong_grad(void *instance, const keel_objective_batch *batch,
                                      keel_objective_output *out) {
  (void)instance;
  double loss = 0.0, count = 0.0;
  for (int64_t t = 0; t < batch->num_tokens; t++) {
    if (!batch->mask[t]) {
      out->grad_logp[t] = 0.0f;
      continue;
    }
    const double logp = batch->logp[t];
    /* BUG on purpose: should be batch->logp_frozen (when non-NULL), not logp. */
    const double raw = fixture_exp(logp - (double)batch->logp_rollout[t]);
    const double w = raw < 5.0 ? raw : 5.0;
    const double coef = -w * batch->advantages[t] / batch->total_sequences;
    loss += coef * logp;
    out->grad_logp[t] = (float)coef;
    count += 1.0;
  }
  out->loss = loss;
  if (out->metric_count > 0) out->metrics[0] = count;
  return KEEL_OK;
}

FIXTURE_OBJECTIVE("fixture-wrong-grad", fixture_wrong_grad, KEEL_ABI_MAJOR, KEEL_ABI_MINOR,
                  sizeof(keel_plugin));

static const uint32_t fixture_minor = KEEL_ABI_MINOR;

KEEL_EXPORT const keel_plugin *keel_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor) {
  if (host_abi_major != KEEL_ABI_MAJOR || host_abi_minor < fixture_minor) return NULL;
  return &fixture_plugin;
}
