/*
 * softmax.c — log-softmax with temperature: per-token log-probs of chosen tokens, the
 * entropy of the full distribution, their backward, and the sampler's whole-row
 * log-softmax / softmax. Every entry point goes through kk_row_stats, so one row gives the
 * same m, Z and lse bits whichever entry point computed it (sampler and trainer agree).
 * Cross-entropy for supervised training is −logp: no separate kernel.
 */
#include "kk_internal.h"

/* Row statistics. s_j = logits[j]·inv_temperature (one rounding), m = max_j s_j,
 * Z = Σ_j e_j with e_j = kk_exp(s_j − m): one 8-lane accumulator, lane l takes the j ≡ l
 * (mod 8) in increasing j, the last V mod 8 through a masked load (missing lanes add 0),
 * then kk_hsum8. If ent != NULL also *ent = Σ_j e_j·(s_j − m) in the same lane order
 * (terms with e_j = 0 count as 0, so −inf logits are fine); Z is the same bits either way. */
KK_INLINE float kk_row_stats(const float *logits, int64_t V, float inv_temperature,
                             float *max_out, float *ent) {
    __m256 it = _mm256_set1_ps(inv_temperature);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= V; j += 8) vmax = _mm256_max_ps(vmax, _mm256_mul_ps(_mm256_loadu_ps(logits + j), it));
    float m = -INFINITY;
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; j < V; j++) { float s = logits[j] * inv_temperature; m = s > m ? s : m; }
    *max_out = m;

    __m256 vm = _mm256_set1_ps(m), zero = _mm256_setzero_ps();
    __m256 accz = zero, acce = zero;
    for (j = 0; j < V; j += 8) {
        __m256i mask = kk_mask8(V - j < 8 ? V - j : 8);
        __m256 t = _mm256_sub_ps(_mm256_mul_ps(_mm256_maskload_ps(logits + j, mask), it), vm);
        __m256 e = _mm256_and_ps(kk_exp8(t), _mm256_castsi256_ps(mask));
        accz = _mm256_add_ps(accz, e);
        if (ent != NULL) {
            __m256 live = _mm256_cmp_ps(e, zero, _CMP_NEQ_OQ);
            acce = _mm256_add_ps(acce, _mm256_and_ps(_mm256_mul_ps(e, t), live));
        }
    }
    if (ent != NULL) *ent = kk_hsum8(acce);
    return kk_hsum8(accz);
}

static void kk_softmax_check(int64_t V, float inv_temperature) {
    KK_CHECK(V >= 1, "V = %lld: a distribution needs at least one logit", (long long)V);
    KK_CHECK(inv_temperature > 0.0f, "inv_temperature = %g must be > 0 (temperature 0 is "
             "greedy decoding: take the argmax instead)", (double)inv_temperature);
}

void kk_logprob_entropy_forward(float *logp, float *entropy, float *lse,
                                const float *logits, const int32_t *targets,
                                int64_t R, int64_t V, float inv_temperature) {
    // logp, entropy, lse are (R), logits is (R,V), targets is (R)
    kk_softmax_check(V, inv_temperature);
    for (int64_t r = 0; r < R; r++) {
        const float *row = logits + r * V;
        int32_t t = targets[r];
        KK_CHECK(t >= 0 && t < V, "row %lld: target %d outside the vocabulary 0…%lld",
                 (long long)r, t, (long long)V - 1);
        float m, es = 0.0f;
        float Z = kk_row_stats(row, V, inv_temperature, &m, entropy != NULL ? &es : NULL);
        float logZ = logf(Z);
        float L = m + logZ;
        if (lse != NULL) lse[r] = L;
        logp[r] = row[t] * inv_temperature - L;
        // H = −Σ p (s − lse) = log Z − Σ e (s − m) / Z  (no cancellation against m)
        if (entropy != NULL) entropy[r] = logZ - es / Z;
    }
}

void kk_logprob_backward(float *dlogits, const float *dlogp, const float *logits,
                         const int32_t *targets, const float *lse, int64_t R, int64_t V,
                         float inv_temperature) {
    // dlogits (OVERWRITE) is (R,V): c·(onehot − p), c = dlogp·invT, p_j = exp(s_j − lse)
    kk_softmax_check(V, inv_temperature);
    __m256 it = _mm256_set1_ps(inv_temperature);
    for (int64_t r = 0; r < R; r++) {
        const float *row = logits + r * V;
        float *drow = dlogits + r * V;
        int32_t t = targets[r];
        KK_CHECK(t >= 0 && t < V, "row %lld: target %d outside the vocabulary 0…%lld",
                 (long long)r, t, (long long)V - 1);
        float c = dlogp[r] * inv_temperature;
        __m256 vl = _mm256_set1_ps(lse[r]), vnc = _mm256_set1_ps(-c);
        for (int64_t j = 0; j < V; j += 8) {
            __m256i mask = kk_mask8(V - j < 8 ? V - j : 8);
            __m256 p = kk_exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_maskload_ps(row + j, mask), it), vl));
            _mm256_maskstore_ps(drow + j, mask, _mm256_mul_ps(vnc, p));
        }
        float pt = kk_exp1(row[t] * inv_temperature - lse[r]);
        drow[t] = c * (1.0f - pt);
    }
}

/* ---- Distribution terms (ABI 1.1) ---------------------------------------------------------
 * 8 lanes over j with a masked tail (missing lanes contribute 0), p_j = kk_exp8(s_j − lse);
 * terms with p_j = 0 count as 0 (so −inf logits, and −inf log q where p = 0, are fine). The
 * forward accumulates in double (two 4-lane halves, then lanes in a fixed order): a KL near 0
 * is a sum of terms of both signs. */

/* Σ over the lanes of two 4-lane double accumulators, in a fixed order. */
KK_INLINE double kk_hsum4d2(__m256d a, __m256d b) {
    __m256d t = _mm256_add_pd(a, b);
    __m128d lo = _mm256_castpd256_pd128(t), hi = _mm256_extractf128_pd(t, 1);
    __m128d u = _mm_add_pd(lo, hi);
    return _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
}

void kk_kl_forward(float *kl, const float *logits, const float *lse, const float *logq,
                   int64_t R, int64_t V, float inv_temperature) {
    // kl is (R), logits and logq are (R,V), lse is (R)
    kk_softmax_check(V, inv_temperature);
    __m256 it = _mm256_set1_ps(inv_temperature), zero = _mm256_setzero_ps();
    for (int64_t r = 0; r < R; r++) {
        const float *row = logits + r * V, *q = logq + r * V;
        __m256 vl = _mm256_set1_ps(lse[r]);
        __m256d acc0 = _mm256_setzero_pd(), acc1 = _mm256_setzero_pd();
        for (int64_t j = 0; j < V; j += 8) {
            __m256i mask = kk_mask8(V - j < 8 ? V - j : 8);
            __m256 lp = _mm256_sub_ps(_mm256_mul_ps(_mm256_maskload_ps(row + j, mask), it), vl);
            __m256 p = _mm256_and_ps(kk_exp8(lp), _mm256_castsi256_ps(mask));
            __m256 live = _mm256_cmp_ps(p, zero, _CMP_NEQ_OQ);
            /* p·(lp − lq) with dead lanes forced to 0 (a −inf lq where p = 0 gives no NaN) */
            __m256 d = _mm256_and_ps(_mm256_sub_ps(lp, _mm256_maskload_ps(q + j, mask)), live);
            __m256 t = _mm256_mul_ps(p, d);
            acc0 = _mm256_add_pd(acc0, _mm256_cvtps_pd(_mm256_castps256_ps128(t)));
            acc1 = _mm256_add_pd(acc1, _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1)));
        }
        kl[r] = (float)kk_hsum4d2(acc0, acc1);
    }
}

/* One row of a term's backward: drow[j] += c · p_j · (lp_j − q_j − shift), lp_j = s_j − lse,
 * p_j = kk_exp8(lp_j), q_j = 0 when q is NULL; lanes with p_j = 0 add 0. The entropy's
 * backward is this with c = −dH·invT and shift = −H (lp − (−H) is lp + H, bit for bit); the
 * KL's with c = dKL·invT, q = log q and shift = KL. */
KK_INLINE void kk_term_row_backward(float *drow, const float *row, const float *q, float lse,
                                    float c, float shift, int64_t V, float inv_temperature) {
    __m256 it = _mm256_set1_ps(inv_temperature), zero = _mm256_setzero_ps();
    __m256 vl = _mm256_set1_ps(lse), vs = _mm256_set1_ps(shift), vc = _mm256_set1_ps(c);
    for (int64_t j = 0; j < V; j += 8) {
        __m256i mask = kk_mask8(V - j < 8 ? V - j : 8);
        __m256 lp = _mm256_sub_ps(_mm256_mul_ps(_mm256_maskload_ps(row + j, mask), it), vl);
        __m256 p = kk_exp8(lp);
        __m256 live = _mm256_cmp_ps(p, zero, _CMP_NEQ_OQ);
        __m256 d = q != NULL ? _mm256_sub_ps(lp, _mm256_maskload_ps(q + j, mask)) : lp;
        __m256 g = _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(vc, p), _mm256_sub_ps(d, vs)), live);
        _mm256_maskstore_ps(drow + j, mask, _mm256_add_ps(_mm256_maskload_ps(drow + j, mask), g));
    }
}

void kk_entropy_backward(float *dlogits, const float *dentropy, const float *logits,
                         const float *lse, const float *entropy, int64_t R, int64_t V,
                         float inv_temperature) {
    // dlogits (ACCUMULATE) is (R,V); dentropy, lse, entropy are (R)
    kk_softmax_check(V, inv_temperature);
    for (int64_t r = 0; r < R; r++) {
        if (dentropy[r] == 0.0f) continue;
        kk_term_row_backward(dlogits + r * V, logits + r * V, NULL, lse[r],
                             -dentropy[r] * inv_temperature, -entropy[r], V, inv_temperature);
    }
}

void kk_kl_backward(float *dlogits, const float *dkl, const float *logits, const float *lse,
                    const float *logq, const float *kl, int64_t R, int64_t V,
                    float inv_temperature) {
    // dlogits (ACCUMULATE) is (R,V); logq is (R,V); dkl, lse, kl are (R)
    kk_softmax_check(V, inv_temperature);
    for (int64_t r = 0; r < R; r++) {
        if (dkl[r] == 0.0f) continue;
        kk_term_row_backward(dlogits + r * V, logits + r * V, logq + r * V, lse[r],
                             dkl[r] * inv_temperature, kl[r], V, inv_temperature);
    }
}

float kk_logsoftmax_row(float *out, const float *logits, int64_t V, float inv_temperature) {
    // out is (V), logits is (V): out[j] = s_j − lse
    kk_softmax_check(V, inv_temperature);
    float m;
    float Z = kk_row_stats(logits, V, inv_temperature, &m, NULL);
    float L = m + logf(Z);
    for (int64_t j = 0; j < V; j++) out[j] = logits[j] * inv_temperature - L;
    return L;
}

float kk_softmax_row(float *probs, const float *logits, int64_t V, float inv_temperature) {
    // probs is (V), logits is (V): probs[j] = exp(s_j − m) / Z
    kk_softmax_check(V, inv_temperature);
    float m;
    float Z = kk_row_stats(logits, V, inv_temperature, &m, NULL);
    __m256 it = _mm256_set1_ps(inv_temperature), vm = _mm256_set1_ps(m), vz = _mm256_set1_ps(Z);
    for (int64_t j = 0; j < V; j += 8) {
        __m256i mask = kk_mask8(V - j < 8 ? V - j : 8);
        __m256 e = kk_exp8(_mm256_sub_ps(_mm256_mul_ps(_mm256_maskload_ps(logits + j, mask), it), vm));
        _mm256_maskstore_ps(probs + j, mask, _mm256_div_ps(e, vz));
    }
    return m + logf(Z);
}
