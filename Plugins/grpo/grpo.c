/*
 * grpo.c — the "grpo" objective plugin (Keel ABI 1.1): GRPO as the paper's Appendix A states
 * it (Shao et al. 2024, arXiv 2402.03300; Zheng et al., arXiv 2512.01374, App. A): the PPO
 * clipped surrogate per token, each response's token mean, then the mean over responses, as a
 * loss to MINIMISE, default aggregation "seq-mean-token-mean":
 *
 *   L = (1/S) * Σ_i (1/n_i) * Σ_{t in i} m_t * (w_t * ℓ_t + β * κ_t - γ * H_t)
 *                S = total_sequences, n_i = unmasked tokens of response i (n_i = 0 adds nothing)
 *
 *   ℓ_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - eps_low, 1 + eps_high)),
 *   r_t = exp(logp_t - logp_old_t)
 *   dual clip (dual_clip = c > 1, A_t < 0 only, off by default): ℓ_t = min(ℓ_t, -A_t * c)
 *   κ_t = the KL to the reference, only when β = kl_coef > 0, by kl_estimator:
 *     "k3" (default): k3_t = exp(ref_t - logp_t) - (ref_t - logp_t) - 1 from logp_ref,
 *                     differentiated through logp: ∂k3_t/∂logp_t = 1 - exp(ref_t - logp_t)
 *     "full":         kl_ref[t], the host's full-vocabulary KL(π_θ ‖ π_ref) at the token's
 *                     prefix; its gradient goes to grad_kl_ref, none through logp
 *   H_t = the host's per-token entropy, γ = entropy_coef (default 0: absent, not asked for)
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
 *   With c_i = 1/(S n_i): grad_logp[t] = c_i * (w_t * ∂ℓ_t/∂logp_t + β * (1 - exp(ref_t -
 *   logp_t))) (the KL part with k3 only); grad_kl_ref[t] = β c_i (full); grad_entropy[t] =
 *   -γ c_i (γ > 0); masked tokens (m_t = 0) get exactly 0 in every output.
 *
 * loss_agg_mode (verl's): "seq-mean-token-mean" (default, above), or c_i = 1/T
 * ("token-mean", T = total_tokens), 1/S ("seq-mean-token-sum") or 1/(S L_max)
 * ("seq-mean-token-sum-norm", L_max = max_response_tokens), for all three terms alike.
 *
 * Train-inference IS correction (multiplies the policy term after clipping, not the KL or the
 * entropy term, as TRL and verl do):
 *   log-ratio λ_t = logp_old_t - logp_rollout_t   (is_ratio = "old":     π_old/μ_old)
 *                 = frozen_t  - logp_rollout_t    (is_ratio = "current": π_θ/μ_old, detached)
 *   tis_mode "token":    ratio_t = exp(λ_t)
 *   tis_mode "sequence": ratio_t = exp(Σ_{u in response, m_u = 1} λ_u) for every token of the
 *                        response (the PRODUCT of token ratios, not the geometric mean)
 *   w_t = min(ratio_t, tis_cap) (truncated), or with mis: ratio_t if mis_low <= ratio_t <=
 *   tis_cap, else 0 (masked; masked-out tokens stay in n_i: TRL's convention).
 *   rejection (verl's rollout rejection sampling): w_t = 1 inside [mis_low, tis_cap], else the
 *   token (the response, with "sequence") is removed: no policy, KL or entropy term, and n_i
 *   counts only the kept tokens (exact; S unchanged, as verl). See ../common/ppo_family.h.
 *
 * The reference: create() writes this instance's needs (ABI 1.1 keel_params.instance_flags):
 * KEEL_OBJECTIVE_USES_REF when kl_coef > 0 with k3 (the host then supplies logp_ref, or
 * refuses the run without train.kl_ref), KEEL_OBJECTIVE_USES_REF_KL when kl_coef > 0 with
 * full, nothing when kl_coef = 0 (logp_ref and kl_ref are then never read). The vtable's static
 * flags stay 0. Std-normalised advantages come from the "group-mean-std" baseline.
 *
 * Equals verl vanilla policy loss with loss_agg_mode "seq-mean-token-mean" (verl also dual-
 * clips, c = 3 by default, and clamps the log-ratio at ±20), use_kl_loss with kl_loss_type
 * "low_var_kl" = k3 (verl also clamps k3 to [-10, 10]) and kl_loss_coef = kl_coef,
 * entropy_coeff = entropy_coef; and TRL GRPOTrainer loss_type "grpo" (divides each response
 * by max(L_i, 1), then means over responses) with epsilon = eps_low, epsilon_high = eps_high,
 * beta = kl_coef. kl_estimator "full" has no twin in either (verl's kl_loss_type "full"
 * raises NotImplementedError; TRL uses k3).
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry (and every
 * grad_entropy / grad_kl_ref entry when that term is on); loss and gradient are additive over
 * calls (only the whole-step S, T and per-response n_i are used; rejection with token-mean:
 * ../common/ppo_family.h). A non-finite input on an unmasked token (in an array this
 * configuration reads, entropy and kl_ref included) → KEEL_ERR_NUMERIC; unmasked tokens with
 * total_sequences <= 0 (total_tokens for token-mean), a malformed batch or a missing
 * logp_ref / kl_ref / entropy the settings need → KEEL_ERR_INVALID_ARGUMENT naming it; a
 * result that is not finite → KEEL_ERR_NUMERIC. Each failure calls host->error first, naming
 * the token and response. No mutable globals: parameters live in the instance. Exports only
 * keel_plugin_entry. Links libm (exp). The computation is ../common/ppo_family.h (shared with
 * ppo-clip, dapo and dr-grpo); this file declares the plugin.
 */
#include "../common/ppo_family.h"

#define PLUGIN_NAME "grpo"

static const keel_param_decl grpo_params[] = {
    PPO_PARAM_EPS_LOW,
    PPO_PARAM_EPS_HIGH,
    PPO_PARAM_DUAL_CLIP,
    PPO_PARAM_KL_COEF,
    PPO_PARAM_KL_ESTIMATOR,
    PPO_PARAM_LOSS_AGG_MODE("seq-mean-token-mean"),
    PPO_PARAM_ENTROPY_COEF,
    PPO_PARAMS_IS,
};

static const keel_scalar_decl grpo_metrics[] = {PPO_METRICS, PPO_METRIC_KL_REF};

static const ppo_variant grpo_variant = {
    PLUGIN_NAME, grpo_params, KP_COUNT(grpo_params), 1,
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
    .description = "GRPO (paper App. A): PPO clip per token, seq-mean-token-mean by default "
                   "(loss_agg_mode), optional KL to the reference (k3 or full), entropy bonus "
                   "and train-inference IS (tis/mis/rejection, off by default); equals verl "
                   "vanilla policy loss with loss_agg_mode=seq-mean-token-mean and TRL "
                   "loss_type=grpo (beta=kl_coef)",
    .param_count = KP_COUNT(grpo_params),
    .params = grpo_params,
    .create = grpo_create,
    .destroy = kp_free_instance,
    .get_instance_extension = ppo_family_instance_extension,
    .vtable = &grpo_vtable,
};

KP_DEFINE_ENTRY(grpo_plugin)
