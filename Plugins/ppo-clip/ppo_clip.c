/*
 * ppo_clip.c — the "ppo-clip" objective plugin (Keel ABI 1.1): PPO's clipped surrogate
 * (Schulman et al. 2017, arXiv 1707.06347) as a loss to MINIMISE, default aggregation
 * "token-mean":
 *
 *   L = (1/T) * Σ_t m_t * (w_t * ℓ_t - γ * H_t)                       T = total_tokens
 *
 *   ℓ_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - eps_low, 1 + eps_high)),
 *   r_t = exp(logp_t - logp_old_t)
 *   dual clip (dual_clip = c > 1, A_t < 0 only): ℓ_t = min(ℓ_t, -A_t * c)
 *   H_t = the host's per-token entropy, γ = entropy_coef (default 0: the term is absent and
 *         the entropy is not asked for)
 *
 * Stop-gradients (every constant comes from frozen_t = logp_frozen ? logp_frozen[t] : logp[t]):
 *   ρ_t = exp(frozen_t - logp_old_t) decides which branch of ℓ_t is active:
 *     A_t > 0 and ρ_t > 1 + eps_high          → clipped high: ℓ_t = -A_t(1 + eps_high), ∂ = 0
 *     A_t < 0 and ρ_t < 1 - eps_low           → clipped low:  ℓ_t = -A_t(1 - eps_low),  ∂ = 0
 *     A_t < 0 and c > 1 and ρ_t > c           → dual clip:    ℓ_t = -A_t * c,           ∂ = 0
 *     otherwise                               → ℓ_t = -A_t * r_t with r_t from logp (live),
 *                                               ∂ℓ_t/∂logp_t = -A_t * r_t
 *   (with logp_frozen == logp this is exactly the max/min form above, differentiated exactly).
 *   w_t = the train-inference IS weight (below), a constant; 1 when tis_mode = "none".
 *   grad_logp[t] = (1/T) * w_t * ∂ℓ_t/∂logp_t; grad_entropy[t] = -γ/T (γ > 0 only);
 *   masked tokens (m_t = 0) get exactly 0.
 *
 * loss_agg_mode (verl's): "token-mean" (default, above), or the per-response weights c_i of
 * "seq-mean-token-sum" (1/S), "seq-mean-token-mean" (1/(S n_i)) or "seq-mean-token-sum-norm"
 * (1/(S L_max)) in place of 1/T, for the policy and the entropy term alike (S =
 * total_sequences, n_i = unmasked tokens of response i, L_max = max_response_tokens).
 *
 * Train-inference IS correction (multiplies the per-token loss after clipping, as verl's
 * decoupled mode and TRL's vllm_importance_sampling_correction do):
 *   log-ratio λ_t = logp_old_t - logp_rollout_t   (is_ratio = "old":     π_old/μ_old)
 *                 = frozen_t  - logp_rollout_t    (is_ratio = "current": π_θ/μ_old, detached)
 *   tis_mode "token":    ratio_t = exp(λ_t)
 *   tis_mode "sequence": ratio_t = exp(Σ_{u in response, m_u = 1} λ_u) for every token of the
 *                        response (the PRODUCT of token ratios, not the geometric mean)
 *   w_t = min(ratio_t, tis_cap) (truncated), or with mis: ratio_t if mis_low <= ratio_t <=
 *   tis_cap, else 0 (masked; masked-out tokens stay in the denominator T: TRL's convention).
 *   rejection (verl's rollout rejection sampling): w_t = 1 if mis_low <= ratio_t <= tis_cap,
 *   else the token (the response, with "sequence") is removed from the loss and from the
 *   denominators; with token-mean T becomes T K/U (K, U: the call's kept and unmasked tokens;
 *   exact when one call holds the optimizer step, T when nothing is rejected). See
 *   ../common/ppo_family.h for the exact rules.
 *
 * Equals verl policy_loss vanilla with loss_agg_mode "token-mean", clip_ratio_low = eps_low,
 * clip_ratio_high = eps_high, clip_ratio_c = dual_clip (verl always dual-clips, c = 3 by
 * default: set dual_clip: 3 to match it) and entropy_coeff = entropy_coef, but without verl's
 * ±20 clamp of the log-ratio; and TRL GRPOTrainer loss_type "dapo" (token-mean) with epsilon =
 * eps_low, epsilon_high = eps_high, delta = dual_clip, beta = 0 (TRL has no entropy bonus).
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry (and every
 * grad_entropy entry when γ > 0); loss and gradient are additive over calls (only whole-step
 * normalisers are used; rejection with token-mean: see above). A non-finite input on an
 * unmasked token (in an array this configuration reads) → KEEL_ERR_NUMERIC; unmasked tokens
 * with total_tokens <= 0 (total_sequences for the seq-mean modes), a malformed batch or a
 * missing entropy with γ > 0 → KEEL_ERR_INVALID_ARGUMENT; a result that is not finite (e.g.
 * A < 0 without dual clip and a ratio that overflows) → KEEL_ERR_NUMERIC. Each failure calls
 * host->error first, naming the token and response. create() asks for the entropy
 * (KEEL_OBJECTIVE_USES_ENTROPY) only when γ > 0. No mutable globals: parameters live in the
 * instance. Exports only keel_plugin_entry. Links libm (exp). The computation is
 * ../common/ppo_family.h (shared with dapo, grpo and dr-grpo); this file declares the plugin.
 */
#include "../common/ppo_family.h"

#define PLUGIN_NAME "ppo-clip"

static const keel_param_decl ppo_clip_params[] = {
    PPO_PARAM_EPS_LOW,
    PPO_PARAM_EPS_HIGH,
    PPO_PARAM_DUAL_CLIP,
    PPO_PARAM_LOSS_AGG_MODE("token-mean"),
    PPO_PARAM_ENTROPY_COEF,
    PPO_PARAMS_IS,
};

static const keel_scalar_decl ppo_clip_metrics[] = {PPO_METRICS};

static const ppo_variant ppo_clip_variant = {
    PLUGIN_NAME, ppo_clip_params, KP_COUNT(ppo_clip_params), 0,
};

static keel_status ppo_clip_create(const keel_host *host, const keel_params *params,
                                   void **out_instance) {
  return ppo_family_create(&ppo_clip_variant, host, params, out_instance);
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable ppo_clip_vtable = {
    sizeof(keel_objective_vtable), 0u, KP_COUNT(ppo_clip_metrics), 0u, ppo_clip_metrics,
    "token-mean", ppo_family_compute,
};

static const keel_plugin ppo_clip_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "PPO clipped surrogate max(-A r, -A clip(r)) with optional dual clip, "
                   "train-inference IS (tis/mis/rejection) and entropy bonus, token-mean by "
                   "default (loss_agg_mode); equals verl vanilla policy loss with "
                   "loss_agg_mode=token-mean (clip_ratio_c=dual_clip) and TRL loss_type=dapo "
                   "with beta=0",
    .param_count = KP_COUNT(ppo_clip_params),
    .params = ppo_clip_params,
    .create = ppo_clip_create,
    .destroy = kp_free_instance,
    .get_instance_extension = ppo_family_instance_extension,
    .vtable = &ppo_clip_vtable,
};

KP_DEFINE_ENTRY(ppo_clip_plugin)
