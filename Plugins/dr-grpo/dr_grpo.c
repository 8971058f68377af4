/*
 * dr_grpo.c — the "dr-grpo" objective plugin (Keel ABI 1.1): Dr. GRPO ("GRPO done right",
 * Liu et al. 2025, arXiv 2503.20783): the "grpo" loss without the per-response length
 * normaliser 1/n_i, summed over the batch and divided by a constant, as a loss to MINIMISE,
 * default aggregation "seq-mean-token-sum-norm":
 *
 *   L = (1/(S * L_max)) * Σ_i Σ_{t in i} m_t * (w_t * ℓ_t + β * κ_t - γ * H_t)
 *                S = total_sequences, L_max = max_response_tokens (the sampler's max_tokens)
 *
 * Normaliser convention: TRL's (loss_type "dr_grpo" divides by B × max_completion_length).
 * verl's agg_loss "seq-mean-token-sum-norm" divides each response's sum by loss_scale_factor
 * (a configured constant, else the padded width); its newer form (global_batch_info) then
 * divides by the global batch size as here, while the legacy form sums over the batch without
 * dividing by B, so its loss is B times this one (set the constant to L_max and compare
 * gradients up to that factor). When max_response_tokens <= 0 (a batch that does not state
 * it, e.g. `keel plugins check`), L_max = 1 is used (seq-mean-token-sum) and a warning is
 * logged once per instance.
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
 *   w_t = the train-inference IS weight (below), a constant; 1 when tis_mode = "none".
 *   With c = 1/(S L_max): grad_logp[t] = c * (w_t * ∂ℓ_t/∂logp_t + β * (1 - exp(ref_t -
 *   logp_t))) (the KL part with k3 only); grad_kl_ref[t] = β c (full); grad_entropy[t] = -γ c
 *   (γ > 0); masked tokens (m_t = 0) get exactly 0 in every output.
 *
 * loss_agg_mode (verl's): "seq-mean-token-sum-norm" (default, above), or the per-response
 * weights c_i = 1/T ("token-mean", T = total_tokens), 1/S ("seq-mean-token-sum") or
 * 1/(S n_i) ("seq-mean-token-mean", n_i = unmasked tokens of response i), for all terms alike.
 *
 * Train-inference IS correction (multiplies the policy term after clipping, not the KL or the
 * entropy term):
 *   log-ratio λ_t = logp_old_t - logp_rollout_t   (is_ratio = "old":     π_old/μ_old)
 *                 = frozen_t  - logp_rollout_t    (is_ratio = "current": π_θ/μ_old, detached)
 *   tis_mode "token":    ratio_t = exp(λ_t)
 *   tis_mode "sequence": ratio_t = exp(Σ_{u in response, m_u = 1} λ_u) for every token of the
 *                        response (the PRODUCT of token ratios, not the geometric mean)
 *   w_t = min(ratio_t, tis_cap) (truncated), or with mis: ratio_t if mis_low <= ratio_t <=
 *   tis_cap, else 0 (masked).
 *   rejection (verl's rollout rejection sampling): w_t = 1 inside [mis_low, tis_cap], else the
 *   token (the response, with "sequence") is removed: no policy, KL or entropy term (the
 *   constant S L_max is unchanged, as verl's). See ../common/ppo_family.h.
 *
 * Dr. GRPO also drops the std division of the advantage: use the "group-mean" baseline (that
 * is a baseline choice, separate from this aggregation). As in "grpo", create() writes the
 * instance's needs: KEEL_OBJECTIVE_USES_REF when kl_coef > 0 with k3, KEEL_OBJECTIVE_USES_REF_KL
 * with full, KEEL_OBJECTIVE_USES_ENTROPY when entropy_coef > 0, nothing at the defaults (the
 * vtable's static flags stay 0).
 *
 * Equals TRL GRPOTrainer loss_type "dr_grpo" with max_completion_length = L_max, epsilon =
 * eps_low, epsilon_high = eps_high, beta = kl_coef; and verl's vanilla policy loss with
 * loss_agg_mode "seq-mean-token-sum-norm", loss_scale_factor = L_max (up to the factor B
 * above in verl's legacy aggregation), entropy_coeff = entropy_coef.
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry (and every
 * grad_entropy / grad_kl_ref entry when that term is on); loss and gradient are additive over
 * calls (only the whole-step S, T, n_i and the constant L_max are used; rejection with
 * token-mean: ../common/ppo_family.h). A non-finite input on an unmasked token (in an array
 * this configuration reads, entropy and kl_ref included) → KEEL_ERR_NUMERIC; unmasked tokens
 * with total_sequences <= 0 (total_tokens for token-mean), a malformed batch or a missing
 * logp_ref / kl_ref / entropy the settings need → KEEL_ERR_INVALID_ARGUMENT naming it; a
 * result that is not finite → KEEL_ERR_NUMERIC. Each failure calls host->error first, naming
 * the token and response. No mutable globals: parameters and the warned-once flag live in the
 * instance. Exports only keel_plugin_entry. Links libm (exp). The computation is
 * ../common/ppo_family.h (shared with ppo-clip, dapo and grpo); this file declares the plugin.
 */
#include "../common/ppo_family.h"

#define PLUGIN_NAME "dr-grpo"

static const keel_param_decl dr_grpo_params[] = {
    PPO_PARAM_EPS_LOW,
    PPO_PARAM_EPS_HIGH,
    PPO_PARAM_DUAL_CLIP,
    PPO_PARAM_KL_COEF,
    PPO_PARAM_KL_ESTIMATOR,
    PPO_PARAM_LOSS_AGG_MODE("seq-mean-token-sum-norm"),
    PPO_PARAM_ENTROPY_COEF,
    PPO_PARAMS_IS,
};

static const keel_scalar_decl dr_grpo_metrics[] = {PPO_METRICS, PPO_METRIC_KL_REF};

static const ppo_variant dr_grpo_variant = {
    PLUGIN_NAME, dr_grpo_params, KP_COUNT(dr_grpo_params), 1,
};

static keel_status dr_grpo_create(const keel_host *host, const keel_params *params,
                                  void **out_instance) {
  return ppo_family_create(&dr_grpo_variant, host, params, out_instance);
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable dr_grpo_vtable = {
    sizeof(keel_objective_vtable), 0u, KP_COUNT(dr_grpo_metrics), 0u, dr_grpo_metrics,
    "seq-mean-token-sum-norm", ppo_family_compute,
};

static const keel_plugin dr_grpo_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "Dr. GRPO: GRPO without the 1/|y| length normaliser, seq-mean-token-sum-norm "
                   "by default = batch sum / (total_sequences x max_response_tokens) (TRL's "
                   "convention; verl's legacy agg_loss does not divide by B); optional KL (k3 or "
                   "full), entropy bonus, IS (tis/mis/rejection); equals TRL loss_type=dr_grpo "
                   "(beta=kl_coef), verl seq-mean-token-sum-norm",
    .param_count = KP_COUNT(dr_grpo_params),
    .params = dr_grpo_params,
    .create = dr_grpo_create,
    .destroy = kp_free_instance,
    .get_instance_extension = ppo_family_instance_extension,
    .vtable = &dr_grpo_vtable,
};

KP_DEFINE_ENTRY(dr_grpo_plugin)
