/*
 * routing.c — top-k MoE routing (Qwen3-MoE: softmax over all experts, then top-k, gates
 * renormalised over the k when norm_topk_prob), its backward, routing replay (forced
 * experts: R2/R3 in the paper — indices are forced, gates still come from the live
 * router probabilities), and the Switch / HF load-balancing loss.
 */
#include <math.h>
#include "kk_internal.h"

enum { KK_ROUTER_MAX_E = 1024 }; /* aux loss keeps per-expert sums on the stack */

static void kk_router_check(int E, int k) {
    KK_CHECK(E >= 1 && k >= 1 && k <= E, "need 1 <= k <= E, got k = %d experts per token of E = %d", k, E);
}

/* Natural choice: slot s gets the largest probability after slots 0…s−1 in the order
 * (probability descending, expert index ascending) — i.e. ties go to the lower index. */
static inline float kk_topk_key(float x) { return x != x ? -INFINITY : x; }

static void kk_topk(int32_t *experts, const float *p, int E, int k) {
    // the k largest of p in (value desc, index asc) order; NaN ranks below every number, so
    // the result is always k distinct experts in 0..E-1 (a NaN weight then surfaces as a NaN
    // gate and loss, which the trainer's NaN guard reports, instead of an index of -1)
    for (int s = 0; s < k; s++) {
        int prev = s > 0 ? experts[s - 1] : -1;
        float pv = prev >= 0 ? kk_topk_key(p[prev]) : 0.0f;
        int best = -1;
        float bv = 0.0f;
        for (int e = 0; e < E; e++) {
            float v = kk_topk_key(p[e]);
            // e must come after prev in the order, and beat the best so far
            if (prev >= 0 && !(v < pv || (v == pv && e > prev))) continue;
            if (best < 0 || v > bv) { best = e; bv = v; }
        }
        experts[s] = best;
    }
}

void kk_router_forward(int32_t *experts, float *gates, float *probs,
                       const float *router_logits, const int32_t *forced,
                       int64_t R, int E, int k, int norm_topk_prob) {
    // experts, gates are (R,k), probs and router_logits are (R,E), forced is (R,k) or NULL
    kk_router_check(E, k);
    for (int64_t r = 0; r < R; r++) {
        float *p = probs + r * E;
        int32_t *ex = experts + r * k;
        kk_softmax_row(p, router_logits + r * E, E, 1.0f);
        if (forced == NULL) {
            kk_topk(ex, p, E, k);
        } else {
            for (int s = 0; s < k; s++) {
                int32_t e = forced[r * k + s];
                KK_CHECK(e >= 0 && e < E, "row %lld slot %d: forced expert %d outside 0…%d "
                         "(was the routing recorded with another expert count?)", (long long)r, s, e, E - 1);
                for (int s2 = 0; s2 < s; s2++)
                    KK_CHECK(ex[s2] != e, "row %lld: forced expert %d appears twice", (long long)r, e);
                ex[s] = e;
            }
        }
        // gates: Σ in slot order; p / Σ (renormalised) or p
        float sum = 0.0f;
        for (int s = 0; s < k; s++) sum += p[ex[s]];
        for (int s = 0; s < k; s++) gates[r * k + s] = norm_topk_prob ? p[ex[s]] / sum : p[ex[s]];
    }
}

void kk_router_backward(float *dlogits, const float *dgates, const float *probs,
                        const int32_t *experts, int64_t R, int E, int k, int norm_topk_prob) {
    // dlogits (accumulate) and probs are (R,E), dgates and experts are (R,k)
    kk_router_check(E, k);
    for (int64_t r = 0; r < R; r++) {
        const float *p = probs + r * E;
        const int32_t *ex = experts + r * k;
        const float *dg = dgates + r * k;
        float *dl = dlogits + r * E;
        if (norm_topk_prob) {
            // g = softmax of the chosen logits alone, so only chosen logits get gradient:
            //   dl_{e_s} += g_s · (dg_s − Σ_i g_i dg_i),  g recomputed exactly as the forward
            float sum = 0.0f;
            for (int s = 0; s < k; s++) sum += p[ex[s]];
            float dot = 0.0f;
            for (int s = 0; s < k; s++) dot = fmaf(p[ex[s]] / sum, dg[s], dot);
            for (int s = 0; s < k; s++) {
                float g = p[ex[s]] / sum;
                dl[ex[s]] += g * (dg[s] - dot);
            }
        } else {
            // g_s = p_{e_s}: softmax backward with dp = dg on the chosen, 0 elsewhere
            //   dl_e += p_e · (dp_e − Σ_s p_{e_s} dg_s)
            float dot = 0.0f;
            for (int s = 0; s < k; s++) dot = fmaf(p[ex[s]], dg[s], dot);
            for (int e = 0; e < E; e++) dl[e] += p[e] * (0.0f - dot);
            for (int s = 0; s < k; s++) dl[ex[s]] += p[ex[s]] * dg[s];
        }
    }
}

float kk_router_aux_loss(float *dlogits, const float *probs, const int32_t *experts,
                         int64_t R, int E, int k, float coef) {
    // dlogits (accumulate, or NULL) and probs are (R,E), experts is (R,k)
    kk_router_check(E, k);
    KK_CHECK(E <= KK_ROUTER_MAX_E, "E = %d experts, at most %d supported", E, KK_ROUTER_MAX_E);
    if (R <= 0) return 0.0f;
    double count[KK_ROUTER_MAX_E], psum[KK_ROUTER_MAX_E];
    for (int e = 0; e < E; e++) count[e] = psum[e] = 0.0;
    for (int64_t r = 0; r < R; r++) {
        for (int s = 0; s < k; s++) {
            int32_t e = experts[r * k + s];
            KK_CHECK(e >= 0 && e < E, "row %lld slot %d: expert %d outside 0…%d", (long long)r, s, e, E - 1);
            count[e] += 1.0;
        }
        for (int e = 0; e < E; e++) psum[e] += probs[r * E + e]; // sequential r, in double
    }
    // loss = coef · E · Σ_e f_e P_e,  f_e = count_e / R,  P_e = psum_e / R
    double loss = 0.0;
    for (int e = 0; e < E; e++) loss += (count[e] / (double)R) * (psum[e] / (double)R);
    loss *= (double)coef * E;
    if (dlogits != NULL) {
        // ∂loss/∂p[r,e] = w_e = coef·E·f_e / R (f constant); softmax backward per row:
        //   dl[r,e] += p[r,e] · (w_e − Σ_f p[r,f] w_f)
        float w[KK_ROUTER_MAX_E];
        for (int e = 0; e < E; e++) w[e] = (float)((double)coef * E * (count[e] / (double)R) / (double)R);
        for (int64_t r = 0; r < R; r++) {
            const float *p = probs + r * E;
            float dot = 0.0f;
            for (int e = 0; e < E; e++) dot = fmaf(p[e], w[e], dot);
            for (int e = 0; e < E; e++) dlogits[r * E + e] += p[e] * (w[e] - dot);
        }
    }
    return (float)loss;
}

void kk_moe_combine(float *out, const float *y, const float *gates, int64_t R, int k, int64_t C) {
    // out is (R,C), y is (R,k,C), gates is (R,k); per element one fma chain in slot order
    for (int64_t r = 0; r < R; r++) {
        float *o = out + r * C;
        int64_t i = 0;
        for (; i + 8 <= C; i += 8) {
            __m256 acc = _mm256_setzero_ps();
            for (int s = 0; s < k; s++)
                acc = _mm256_fmadd_ps(_mm256_set1_ps(gates[r * k + s]), _mm256_loadu_ps(y + (r * k + s) * C + i), acc);
            _mm256_storeu_ps(o + i, acc);
        }
        for (; i < C; i++) {
            float acc = 0.0f;
            for (int s = 0; s < k; s++) acc = fmaf(gates[r * k + s], y[(r * k + s) * C + i], acc);
            o[i] = acc;
        }
    }
}

void kk_moe_gate_grad(float *dgates, const float *dout, const float *y, int64_t R, int k, int64_t C) {
    // dgates is (R,k), dout is (R,C), y is (R,k,C); per entry one sequential fma chain over C
    for (int64_t r = 0; r < R; r++) {
        const float *d = dout + r * C;
        for (int s = 0; s < k; s++) {
            const float *ys = y + (r * k + s) * C;
            float acc = 0.0f;
            for (int64_t i = 0; i < C; i++) acc = fmaf(d[i], ys[i], acc);
            dgates[r * k + s] = acc;
        }
    }
}
