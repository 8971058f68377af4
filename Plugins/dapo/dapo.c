/*
 * dapo.c — the "dapo" objective plugin (Keel ABI 1.1): DAPO's policy loss (Yu et al. 2025,
 * arXiv 2503.14476): the PPO clipped surrogate with decoupled, asymmetric clip bounds
 * ("clip-higher": eps_low 0.2, eps_high 0.28) and token-level aggregation, as a loss to
 * MINIMISE, default aggregation "token-mean":
 *
 *   L = (1/T) * Σ_t m_t * (w_t * ℓ_t - γ * H_t)                       T = total_tokens
 *
 *   ℓ_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - eps_low, 1 + eps_high)),
 *   r_t = exp(logp_t - logp_old_t)
 *   dual clip (dual_clip = c > 1, A_t < 0 only, off by default): ℓ_t = min(ℓ_t, -A_t * c)
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
 *   w_t = the train-inference IS weight (below), a constant; 1 when tis_mode = "none".
 *   grad_logp[t] = (1/T) * w_t * ∂ℓ_t/∂logp_t; grad_entropy[t] = -γ/T (γ > 0 only);
 *   masked tokens (m_t = 0) get exactly 0.
 *
 * loss_agg_mode (verl's): "token-mean" (default, above), or the per-response weights c_i of
 * "seq-mean-token-sum" (1/S), "seq-mean-token-mean" (1/(S n_i)) or "seq-mean-token-sum-norm"
 * (1/(S L_max)) in place of 1/T, for the policy and the entropy term alike.
 *
 * Train-inference IS correction (multiplies the per-token loss after clipping):
 *   log-ratio λ_t = logp_old_t - logp_rollout_t   (is_ratio = "old":     π_old/μ_old)
 *                 = frozen_t  - logp_rollout_t    (is_ratio = "current": π_θ/μ_old, detached)
 *   tis_mode "token":    ratio_t = exp(λ_t)
 *   tis_mode "sequence": ratio_t = exp(Σ_{u in response, m_u = 1} λ_u) for every token of the
 *                        response (the PRODUCT of token ratios, not the geometric mean)
 *   w_t = min(ratio_t, tis_cap) (truncated), or with mis: ratio_t if mis_low <= ratio_t <=
 *   tis_cap, else 0 (masked; masked-out tokens stay in the denominator T: TRL's convention).
 *   rejection (verl's rollout rejection sampling): w_t = 1 inside [mis_low, tis_cap], else the
 *   token (response) leaves the loss and the denominators; with token-mean T becomes T K/U
 *   (K, U: the call's kept and unmasked tokens; exact when one call holds the optimizer step).
 *   See ../common/ppo_family.h for the exact rules.
 *
 * DAPO's other ingredients are not in the loss: dynamic sampling is a trainer feature and the
 * overlong penalty is the "length-penalty" reward. Same code as "ppo-clip"; only the default
 * eps_high differs. Equals verl vanilla policy loss with loss_agg_mode "token-mean",
 * clip_ratio_low 0.2, clip_ratio_high 0.28 (verl additionally dual-clips with clip_ratio_c,
 * 3 by default, and clamps the log-ratio at ±20: set dual_clip to match; entropy_coeff =
 * entropy_coef), and TRL GRPOTrainer loss_type "dapo" with epsilon 0.2, epsilon_high 0.28,
 * beta 0.
 *
 * Contract: computes in double and stores float; overwrites every grad_logp entry (and every
 * grad_entropy entry when γ > 0); loss and gradient are additive over calls (only whole-step
 * normalisers are used; rejection with token-mean: see above). A non-finite input on an
 * unmasked token (in an array this configuration reads) → KEEL_ERR_NUMERIC; unmasked tokens
 * with total_tokens <= 0 (total_sequences for the seq-mean modes), a malformed batch or a
 * missing entropy with γ > 0 → KEEL_ERR_INVALID_ARGUMENT; a result that is not finite →
 * KEEL_ERR_NUMERIC. Each failure calls host->error first, naming the token and response.
 * create() asks for the entropy (KEEL_OBJECTIVE_USES_ENTROPY) only when γ > 0. No mutable
 * globals: parameters live in the instance. Exports only keel_plugin_entry. Links libm (exp).
 * The computation is ../common/ppo_family.h (shared with ppo-clip, grpo and dr-grpo); this
 * file declares the plugin.
 */
#include "../common/ppo_family.h"

#define PLUGIN_NAME "dapo"

static const keel_param_decl dapo_params[] = {
    PPO_PARAM_EPS_LOW,
    KP_FLOAT("eps_high",
             "upper clip (clip-higher): ratio clipped at 1 + eps_high (A > 0 above it: zero "
             "gradient)",
             0.28, 0.0, HUGE_VAL),
    PPO_PARAM_DUAL_CLIP,
    PPO_PARAM_LOSS_AGG_MODE("token-mean"),
    PPO_PARAM_ENTROPY_COEF,
    PPO_PARAMS_IS,
};

static const keel_scalar_decl dapo_metrics[] = {PPO_METRICS};

static const ppo_variant dapo_variant = {
    PLUGIN_NAME, dapo_params, KP_COUNT(dapo_params), 0,
};

static keel_status dapo_create(const keel_host *host, const keel_params *params,
                               void **out_instance) {
  return ppo_family_create(&dapo_variant, host, params, out_instance);
}

/* ---- Descriptor ------------------------------------------------------------------------- */
static const keel_objective_vtable dapo_vtable = {
    sizeof(keel_objective_vtable), 0u, KP_COUNT(dapo_metrics), 0u, dapo_metrics,
    "token-mean", ppo_family_compute,
};

static const keel_plugin dapo_plugin = {
    KP_DESCRIPTOR_HEADER(KEEL_KIND_OBJECTIVE),
    .name = PLUGIN_NAME,
    .version = "1.0.0",
    .description = "DAPO: PPO clip with clip-higher (eps_low 0.2, eps_high 0.28), token-mean "
                   "by default (loss_agg_mode), optional train-inference IS (tis/mis/rejection) "
                   "and entropy bonus; equals verl vanilla policy loss with "
                   "loss_agg_mode=token-mean, clip_ratio_high=0.28 and TRL loss_type=dapo with "
                   "epsilon_high=0.28, beta=0",
    .param_count = KP_COUNT(dapo_params),
    .params = dapo_params,
    .create = dapo_create,
    .destroy = kp_free_instance,
    .get_instance_extension = ppo_family_instance_extension,
    .vtable = &dapo_vtable,
};

KP_DEFINE_ENTRY(dapo_plugin)
