/*
 * grpo.c — the "grpo" objective plugin (Keel ABI 1.0): GRPO as the paper's Appendix A states
 * it (Shao et al. 2024, arXiv 2402.03300; Zheng et al., arXiv 2512.01374, App. A): the PPO
 * clipped surrogate per token, each response's token mean, then the mean over responses, as a
 * loss to MINIMISE, aggregation "seq-mean-token-mean":
 *
 *   L = (1/S) * Σ_i (1/n_i) * Σ_{t in i} m_t * (w_t * ℓ_t + kl_coef * k3_t)
 *                S = total_sequences, n_i = unmasked tokens of response i (n_i = 0 adds nothing)
 *
 *   ℓ_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - eps_low, 1 + eps_high)),
 *   r_t = exp(logp_t - logp_old_t)
 *   dual clip (dual_clip = c > 1, A_t < 0 only, off by default): ℓ_t = min(ℓ_t, -A_t * c)
 *   k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1   (KL to the reference, only when
 *          kl_coef > 0; differentiated through logp: ∂k3_t/∂logp_t = 1 - exp(ref_t - logp_t))
 *
 * Stop-gradients (every constant comes from frozen_t = logp_frozen ? logp_frozen[t] : logp[t]):
 *   ρ_t = exp(frozen_t - logp_old_t) decides which branch of ℓ_t is active:
 *     A_t > 0 and ρ_t > 1 + eps_high          → clipped high: ℓ_t = -A_t(1 + eps_high), ∂ = 0
 *     A_t < 0 and ρ_t < 1 - eps_low           → clipped low:  ℓ_t = -A_t(1 - eps_low),  ∂ = 0
 *     A_t < 0 and c > 1 and ρ_t > c           → dual clip:    ℓ_t = -A_t * c,           ∂ = 0
 *     otherwise                               → ℓ_t = -A_t * r_t with r_t from logp (live),
 *                                               ∂ℓ_t/∂logp_t = -A_t * r_t
 *   w_t = the train-inference IS weight (below), a constant; 1 when tis_mode = "none" (the
 *   paper's GRPO has no train-inference correction: that is the default).
 *   grad_logp[t] = (1/(S n_i)) * (w_t * ∂ℓ_t/∂logp_t + kl_coef * (1 - exp(ref_t - logp_t)));
 *   masked tokens (m_t = 0) get exactly 0.
 *
 * Train-inference IS correction (multiplies the policy term after clipping, not the KL term,
 * as TRL does):
 *   log-ratio λ_t = logp_old_t - logp_rollout_t   (is_ratio = "old":     π_old/μ_old)
 *                 = frozen_t  - logp_rollout_t    (is_ratio = "current": π_θ/μ_old, detached)
 *   tis_mode "token":    ratio_t = exp(λ_t)
 *   tis_mode "sequence": ratio_t = exp(Σ_{u in response, m_u = 1} λ_u) for every token of the
 *                        response (the PRODUCT of token ratios, not the geometric mean)
 *   w_t = min(ratio_t, tis_cap) (truncated), or with mis: ratio_t if mis_low <= ratio_t <=
 *   tis_cap, else 0 (masked). Masked-out tokens stay in n_i (TRL's convention).
 *
 * The reference: the vtable cannot set KEEL_OBJECTIVE_USES_REF per instance (it is static and
 * shared by every instance), so it is not set; with kl_coef > 0 a call without logp_ref fails
 * with KEEL_ERR_INVALID_ARGUMENT asking for train.kl_ref. With kl_coef = 0, logp_ref is never
 * read. Std-normalised advantages come from the "group-mean-std" baseline.
 *
 * Equals verl vanilla policy loss with loss_agg_mode "seq-mean-token-mean" (verl also dual-
 * clips, c = 3 by default, and clamps the log-ratio at ±20), use_kl_loss with
 * kl_loss_type "low_var_kl" = k3 (verl also clamps k3 to [-10, 10]) and kl_loss_coef =
 * kl_coef; and TRL GRPOTrainer loss_type "grpo" (divides each response by max(L_i, 1), then
 * means over responses) with epsilon = eps_low, epsilon_high = eps_high, beta = kl_coef.
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry; loss and
 * gradient are additive over calls (only the whole-step S and per-response n_i are used). A
 * non-finite input on an unmasked token (in an array this configuration reads) →
 * KEEL_ERR_NUMERIC; unmasked tokens with total_sequences <= 0 or a malformed batch →
 * KEEL_ERR_INVALID_ARGUMENT; a result that is not finite → KEEL_ERR_NUMERIC. Each failure
 * calls host->error first, naming the token and response. No mutable globals: parameters live
 * in the instance. Exports only keel_plugin_entry. Links libm (exp). The computation is
 * ../common/ppo_family.h (shared with ppo-clip, dapo and dr-grpo); this file declares the plugin.
 */
#include "../common/ppo_family.h"

#define PLUGIN_NAME "grpo"

static const keel_param_decl grpo_params[] = {
    PPO_PARAM_EPS_LOW,
    PPO_PARAM_EPS_HIGH,
    PPO_PARAM_DUAL_CLIP,
    PPO_PARAM_KL_COEF,
    PPO_PARAMS_IS,
};

static const keel_scalar_decl grpo_metrics[] = {PPO_METRICS, PPO_METRIC_KL_REF};

static const ppo_variant grpo_variant = {
    PLUGIN_NAME, grpo_params, KP_COUNT(grpo_params), PPO_SEQ_MEAN_TOKEN_MEAN, 1,
};

static keel_status grpo_create(const keel_host *host, const keel_params *params,
                               void **out_instance) {
  return ppo_family_create(&grpo_variant, host, params, out_instance);
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable grpo_vtable = {
    sizeof(keel_objective_vtable), 0u, KP_COUNT(grpo_metrics), 0u, grpo_metrics,
    "seq-mean-token-mean", ppo_family_compute,
};

static const keel_plugin grpo_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "GRPO (paper App. A): PPO clip per token, seq-mean-token-mean, optional k3 KL "
                   "to the reference and train-inference IS (tis/mis, off by default); equals "
                   "verl vanilla policy loss with loss_agg_mode=seq-mean-token-mean and TRL "
                   "loss_type=grpo (beta=kl_coef)",
    .param_count = KP_COUNT(grpo_params),
    .params = grpo_params,
    .create = grpo_create,
    .destroy = kp_free_instance,
    .vtable = &grpo_vtable,
};

KP_DEFINE_ENTRY(grpo_plugin)
