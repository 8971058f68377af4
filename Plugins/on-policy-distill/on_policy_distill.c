/*
 * on_policy_distill.c — the "on-policy-distill" objective plugin (Keel ABI 1.1): on-policy
 * distillation (Thinking Machines, "On-Policy Distillation", 2025; tinker-cookbook
 * tinker_cookbook/distillation/train_on_policy.py): the student samples, a frozen teacher
 * scores the sampled tokens, and the per-token reverse KL to the teacher is the (negative)
 * advantage of an importance-sampling policy gradient. A loss to MINIMISE, aggregation
 * "token-mean" (T = total_tokens, the whole step's unmasked tokens).
 *
 * mode "sampled" (default; per-instance flags KEEL_OBJECTIVE_USES_TEACHER):
 *   d_t  = logp_rollout_t - logp_teacher_t       (log μ(x_t) - log π_teacher(x_t): the sampled
 *                                                  one-token estimate of KL(μ ‖ π_teacher))
 *   A'_t = -kl_coef * d_t + reward_weight * A_t  (a constant; A_t the baseline's advantage)
 *   r_t  = exp(logp_t - logp_rollout_t)          (live: differentiated)
 *   L    = -(1/T) Σ_t m_t r_t A'_t
 *   grad_logp[t] = -(1/T) r_t A'_t               (∂r_t/∂logp_t = r_t)
 *   A'_t == 0 contributes exactly 0 (r_t is not evaluated).
 * mode "full" (per-instance flags KEEL_OBJECTIVE_USES_TEACHER_KL): GKD-style, the host's
 *   full-vocabulary term kl_teacher_t = KL(π_θ ‖ π_teacher)(·|prefix) is minimised directly:
 *   L    = kl_coef * (1/T) Σ_t m_t kl_teacher_t  -  (1/T) Σ_t m_t r_t * reward_weight * A_t
 *   grad_kl_teacher[t] = kl_coef / T;  grad_logp[t] = -(1/T) r_t reward_weight A_t
 *   (the reward term, and its need for logp_rollout, only when reward_weight > 0; otherwise
 *   grad_logp is 0 everywhere and logp_rollout is not read).
 * Masked tokens get 0 in every gradient. Sums in double in token order; gradients stored as
 * float. Stop-gradients: A'_t (teacher, sampler and advantage are constants) and the
 * frozen-copy metrics; the ratio and kl_teacher are live. logp_frozen only feeds metrics.
 *
 * Tinker equivalence (mode "sampled"): incorporate_kl_penalty sets
 *   reverse_kl = (sampled_logprobs - teacher_logprobs) * mask,
 *   advantages += -kl_penalty_coef * mask * reverse_kl
 * and loss_fn "importance_sampling" minimises -(exp(target_logprobs - sampling_logprobs) *
 * advantages).sum(). Keel's A' is that advantage with kl_coef = kl_penalty_coef,
 * kl_discount_factor = 0 (Keel has no discounted future-KL sum) and reward_weight = 1 (Tinker
 * always adds the environment's advantage; its distillation environments give reward 0, where
 * any reward_weight agrees); Keel's loss is Tinker's summed loss divided by T (same direction,
 * scaled gradient). Keel scores the teacher at the sampling temperature (like every log-prob it
 * passes); Tinker's teacher log-probs are untempered, so the two agree at sampler.temperature 1
 * (Keel's default). Mode "full" equals TRL GKDTrainer with lmbda = 1 (on-policy) and beta = 1
 * (reverse KL(student ‖ teacher)), token-mean over completion tokens, times kl_coef.
 *
 * Metrics (token-mean over the call's unmasked tokens): masked_fraction_low/high (always 0),
 * is_weight_mean (mean of the frozen ratio exp(frozen - logp_rollout) when the ratio is used;
 * 1 in mode "full" with reward_weight 0), teacher_kl (mean of d_t in "sampled", of kl_teacher_t
 * in "full": Tinker's teacher_kl metric).
 *
 * Contract: create() writes its per-instance flags (kp_set_instance_flags) and refuses with
 * KEEL_ERR_UNSUPPORTED on a host without per-instance flags (1.0), and an unknown mode with
 * KEEL_ERR_INVALID_ARGUMENT. compute: the checks of objective_batch.h (logp_rollout required in
 * "sampled" and when reward_weight > 0), then, with tokens, a missing logp_teacher ("sampled")
 * or kl_teacher / grad_kl_teacher ("full") → KEEL_ERR_INVALID_ARGUMENT naming the array and
 * train.teacher; a non-finite logp_teacher / kl_teacher on an unmasked token →
 * KEEL_ERR_NUMERIC naming the token and response; a loss or gradient that is not finite →
 * KEEL_ERR_NUMERIC. Each failure calls host->error first. No mutable globals: parameters live
 * in the instance. Exports only keel_plugin_entry. Links libm (exp).
 */
#include "../common/objective_batch.h"
#include "../common/plugin_util.h"

#define PLUGIN_NAME "on-policy-distill"

/* ---- Parameters (declaration order is the order create() receives them in) -------------- */
enum { P_KL_COEF, P_REWARD_WEIGHT, P_MODE, P_COUNT };

enum { MODE_SAMPLED, MODE_FULL };
static const char *const modes[] = {"sampled", "full", NULL};

static const keel_param_decl distill_params[P_COUNT] = {
    KP_FLOAT("kl_coef",
             "weight of the reverse KL to the teacher (Tinker kl_penalty_coef)", 1.0, 0.0,
             HUGE_VAL),
    KP_FLOAT("reward_weight",
             "weight of the baseline's advantage added to the distillation advantage (0 = pure "
             "distillation)",
             0.0, 0.0, HUGE_VAL),
    KP_CHOICE("mode",
              "sampled = -(log mu - log pi_teacher) of the sampled token as advantage (Tinker); "
              "full = minimise the full-vocabulary KL(pi || pi_teacher) (GKD)",
              "sampled", modes),
};

/* ---- Metrics ---------------------------------------------------------------------------- */
enum { M_MASKED_LOW, M_MASKED_HIGH, M_IS_WEIGHT_MEAN, M_TEACHER_KL, M_COUNT };

static const keel_scalar_decl distill_metrics[M_COUNT] = {
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_low", "always 0: nothing is clipped"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "masked_fraction_high", "always 0: nothing is clipped"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "is_weight_mean",
              "mean frozen ratio pi/mu (exp(logp - logp_rollout)); 1 when no ratio is used"),
    KP_SCALAR(KEEL_REDUCE_TOKEN_MEAN, "teacher_kl",
              "mean reverse KL to the teacher: log mu - log pi_teacher of the sampled token "
              "(sampled), kl_teacher (full)"),
};

/* ---- Instance --------------------------------------------------------------------------- */
typedef struct distill {
  const keel_host *host;
  double kl_coef, reward_weight;
  int mode;
} distill;

static keel_status distill_create(const keel_host *host, const keel_params *params,
                                  void **out_instance) {
  kp_value v[P_COUNT];
  keel_status s = kp_read_params(host, PLUGIN_NAME, distill_params, P_COUNT, params, v, 0);
  if (s) return s;
  int mode = MODE_SAMPLED;
  s = kp_choice(host, PLUGIN_NAME, "mode", v[P_MODE].s, modes, 2, &mode);
  if (s) return s;
  const uint32_t flags =
      mode == MODE_SAMPLED ? KEEL_OBJECTIVE_USES_TEACHER : KEEL_OBJECTIVE_USES_TEACHER_KL;
  if (!kp_set_instance_flags(params, flags))
    return kp_fail(host, KEEL_ERR_UNSUPPORTED,
                   PLUGIN_NAME ": the host cannot supply the teacher's %s (it predates Keel ABI "
                               "1.1 per-instance flags)",
                   mode == MODE_SAMPLED ? "logp_teacher" : "kl_teacher");
  distill *m = malloc(sizeof *m);
  if (!m) return kp_fail_oom(host, PLUGIN_NAME);
  m->host = host;
  m->kl_coef = v[P_KL_COEF].f;
  m->reward_weight = v[P_REWARD_WEIGHT].f;
  m->mode = mode;
  *out_instance = m;
  return KEEL_OK;
}

static keel_status distill_compute(void *instance, const keel_objective_batch *b,
                                   keel_objective_output *out) {
  const distill *m = instance;
  const keel_host *host = m->host;
  const int sampled = m->mode == MODE_SAMPLED;
  const int ratio_used = sampled || m->reward_weight > 0.0;
  const kob_spec spec = {
      M_COUNT,
      KOB_TOTAL_TOKENS,
      {KOB_IGNORE, NULL},
      {ratio_used ? KOB_REQUIRED : KOB_IGNORE,
       sampled ? "logp_rollout (the sampler's log-probs)"
               : "logp_rollout (reward_weight > 0 needs the sampler's log-probs)"},
      {KOB_IGNORE, NULL},
  };
  kob_checked in;
  keel_status status = kob_check(host, PLUGIN_NAME, &spec, b, out, &in);
  if (status || in.empty) return status;
  const int64_t ns = b->num_sequences, nt = b->num_tokens;

  /* The teacher's input (and, in full mode, its gradient slot). */
  const float *teacher = NULL;
  float *grad_kl = NULL;
  if (nt > 0) {
    if (sampled) {
      teacher = KOB_BATCH_HAS(b, logp_teacher) ? b->logp_teacher : NULL;
      if (!teacher)
        return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                       PLUGIN_NAME ": logp_teacher is NULL (mode 'sampled' needs the teacher's "
                                   "log-probs of the sampled tokens: set train.teacher)");
    } else {
      teacher = KOB_BATCH_HAS(b, kl_teacher) ? b->kl_teacher : NULL;
      if (!teacher)
        return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                       PLUGIN_NAME ": kl_teacher is NULL (mode 'full' needs the full-vocabulary "
                                   "KL to the teacher: set train.teacher)");
      grad_kl = KOB_OUTPUT_HAS(out, grad_kl_teacher) ? out->grad_kl_teacher : NULL;
      if (!grad_kl)
        return kp_fail(host, KEEL_ERR_INVALID_ARGUMENT,
                       PLUGIN_NAME ": grad_kl_teacher (output) is NULL");
    }
    for (int64_t i = 0; i < ns; i++)
      for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
        if (!b->mask[t]) continue;
        status = kob_finite(host, PLUGIN_NAME, sampled ? "logp_teacher" : "kl_teacher",
                            teacher[t], t, i);
        if (status) return status;
      }
  }
  const int64_t n = in.unmasked;
  const double inv_t = n > 0 ? 1.0 / in.total : 0.0;
  const double kl_grad = m->kl_coef * inv_t; /* ∂L/∂kl_teacher_t (full) */

  double sum = 0.0, kl_sum = 0.0, w_sum = 0.0;
  for (int64_t i = 0; i < ns; i++) {
    for (int64_t t = b->seq_offsets[i]; t < b->seq_offsets[i + 1]; t++) {
      if (!b->mask[t]) {
        out->grad_logp[t] = 0.0f;
        if (grad_kl) grad_kl[t] = 0.0f;
        continue;
      }
      const double lp = b->logp[t];
      const double a = b->advantages[t];
      double coef; /* A'_t (sampled) or reward_weight * A_t (full) */
      if (sampled) {
        const double d = (double)b->logp_rollout[t] - (double)teacher[t];
        kl_sum += d;
        coef = -m->kl_coef * d + m->reward_weight * a;
      } else {
        const double kl = teacher[t];
        kl_sum += kl;
        sum -= m->kl_coef * kl; /* sum accumulates -loss terms: L = -(1/T) sum */
        grad_kl[t] = (float)kl_grad;
        coef = ratio_used ? m->reward_weight * a : 0.0;
      }
      if (ratio_used) {
        const double frozen = b->logp_frozen ? (double)b->logp_frozen[t] : lp;
        w_sum += exp(frozen - (double)b->logp_rollout[t]);
      }
      double gd = 0.0, value = 0.0;
      if (coef != 0.0) {
        const double r = exp(lp - (double)b->logp_rollout[t]);
        value = r * coef;
        gd = -value * inv_t;
      }
      sum += value;
      const float g = gd == 0.0 ? 0.0f : (float)gd;
      if (!isfinite(g) || !isfinite(value))
        return kp_fail(host, KEEL_ERR_NUMERIC,
                       PLUGIN_NAME ": loss or gradient not finite at token %lld (response %lld): "
                                   "advantage=%g ratio=%g",
                       (long long)t, (long long)i, coef,
                       exp(lp - (double)b->logp_rollout[t]));
      out->grad_logp[t] = g;
    }
  }
  const double loss = -sum * inv_t;
  if (!isfinite(loss))
    return kp_fail(host, KEEL_ERR_NUMERIC, PLUGIN_NAME ": loss is not finite (%g)", loss);
  out->loss = loss;
  if (n > 0) {
    const double nd = (double)n;
    out->metrics[M_IS_WEIGHT_MEAN] = ratio_used ? w_sum / nd : 1.0;
    out->metrics[M_TEACHER_KL] = kl_sum / nd;
  }
  return KEEL_OK;
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable distill_vtable = {
    sizeof(keel_objective_vtable), 0u, M_COUNT, 0u, distill_metrics, "token-mean",
    distill_compute,
};

static const keel_plugin distill_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "On-policy distillation: advantage -kl_coef*(log mu - log pi_teacher) "
                   "(+ reward_weight*A), loss -(pi/mu)*A, token-mean; equals Tinker's on-policy "
                   "distillation recipe (importance_sampling loss); mode=full minimises the "
                   "full-vocabulary reverse KL (TRL GKDTrainer lmbda=1, beta=1)",
    .param_count = P_COUNT,
    .params = distill_params,
    .create = distill_create,
    .destroy = kp_free_instance,
    .vtable = &distill_vtable,
};

KP_DEFINE_ENTRY(distill_plugin)
