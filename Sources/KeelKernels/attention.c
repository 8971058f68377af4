/*
 * attention.c — causal grouped-query attention, forward and backward.
 *
 * Everything goes through kk_attention_row_forward (one query position against its keys),
 * so the sampler's decode step against a KV cache and the trainer's full-sequence forward
 * run the same operations on the same values and give the same bits. Query head h reads
 * kv head h / (H/KV). The backward recomputes the probabilities from the saved lse
 * (FlashAttention style), so nothing of size T×T is kept between forward and backward.
 * No heap memory: scores live in a stack buffer of KK_ATTN_CACHED_KEYS; past that they are
 * recomputed (a dot product is a fixed sequence, so the recomputed value is the same).
 */
#include "kk_internal.h"

enum {
    KK_ATTN_MAX_D = 1024,       /* accumulator for one head's output lives on the stack */
    KK_ATTN_CACHED_KEYS = 2048, /* scores kept on the stack (8 KB); more keys: recompute */
    KK_ATTN_REG_D = 128,        /* D = 8·nb ≤ 128: accumulators in registers */
};

/* y[d] = fma(a, x[d], y[d]) for d < D: one FMA per element, masked tail */
KK_INLINE void kk_axpy(float *y, float a, const float *x, int D) {
    __m256 va = _mm256_set1_ps(a);
    int d = 0;
    for (; d + 8 <= D; d += 8)
        _mm256_storeu_ps(y + d, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + d), _mm256_loadu_ps(y + d)));
    if (d < D) {
        __m256i m = kk_mask8(D - d);
        _mm256_maskstore_ps(y + d, m, _mm256_fmadd_ps(va, _mm256_maskload_ps(x + d, m), _mm256_maskload_ps(y + d, m)));
    }
}

/* acc[d] = Σ_j w[j]·x_j[d] for d < 8·NB, x_j = x + j·stride, sequential j; the chain for
 * each d starts from acc[d] as given. Same FMAs as n calls of kk_axpy, but the NB
 * accumulators stay in registers (a chain through memory costs ~10 cycles per key, this
 * one 4). NB is a compile-time constant at each call (see kk_weighted_sum). If sum != NULL
 * also *sum += w[j] sequentially. */
KK_INLINE void kk_weighted_sum_nb(const int NB, float *acc, float *sum, const float *w,
                                  const float *x, int64_t stride, int64_t n) {
    __m256 a[KK_ATTN_REG_D / 8];
    for (int b = 0; b < NB; b++) a[b] = _mm256_loadu_ps(acc + 8 * b);
    float l = sum != NULL ? *sum : 0.0f;
    for (int64_t j = 0; j < n; j++) {
        __m256 wj = _mm256_broadcast_ss(w + j);
        if (sum != NULL) l += w[j];
        for (int b = 0; b < NB; b++) a[b] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(x + j * stride + 8 * b), a[b]);
    }
    for (int b = 0; b < NB; b++) _mm256_storeu_ps(acc + 8 * b, a[b]);
    if (sum != NULL) *sum = l;
}

/* dispatch on D: registers when D is a multiple of 8 up to 128, else kk_axpy per key */
static void kk_weighted_sum(float *acc, float *sum, const float *w, const float *x,
                            int64_t stride, int64_t n, int D) {
    switch (D % 8 == 0 ? D / 8 : 0) {
#define KK_CASE(NB) case NB: kk_weighted_sum_nb(NB, acc, sum, w, x, stride, n); return;
        KK_CASE(1) KK_CASE(2) KK_CASE(3) KK_CASE(4) KK_CASE(5) KK_CASE(6) KK_CASE(7) KK_CASE(8)
        KK_CASE(9) KK_CASE(10) KK_CASE(11) KK_CASE(12) KK_CASE(13) KK_CASE(14) KK_CASE(15) KK_CASE(16)
#undef KK_CASE
    default:
        for (int64_t j = 0; j < n; j++) {
            if (sum != NULL) *sum += w[j];
            kk_axpy(acc, w[j], x + j * stride, D);
        }
    }
}

static void kk_attention_check(int H, int KV, int D) {
    KK_CHECK(KV > 0 && H % KV == 0, "H = %d query heads must be a multiple of KV = %d kv heads", H, KV);
    KK_CHECK(D > 0 && D <= KK_ATTN_MAX_D, "head_dim D = %d must be in 1…%d", D, KK_ATTN_MAX_D);
}

void kk_attention_row_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, int64_t kv_row_stride, int64_t n_keys,
                              int H, int KV, int D, float scale) {
    // out is (H,D), lse is (H), q is (H,D); key j of kv head g at k + j*kv_row_stride + g*D
    kk_attention_check(H, KV, D);
    KK_CHECK(n_keys >= 1, "n_keys = %lld: a query needs at least its own key", (long long)n_keys);
    float scores[KK_ATTN_CACHED_KEYS];
    float acc[KK_ATTN_MAX_D];
    int cached = n_keys <= KK_ATTN_CACHED_KEYS;
    int group = H / KV;
    for (int h = 0; h < H; h++) {
        const float *qh = q + (int64_t)h * D;
        const float *kh = k + (int64_t)(h / group) * D, *vh = v + (int64_t)(h / group) * D;
        // pass 1: s_j = scale · dot(q_h, k_j), m = max_j s_j (sequential j)
        float m = -INFINITY;
        for (int64_t j = 0; j < n_keys; j++) {
            float s = scale * kk_dot(qh, kh + j * kv_row_stride, D);
            if (cached) scores[j] = s;
            m = s > m ? s : m;
        }
        // e_j = exp(s_j − m); when cached, 8 at a time (lane-wise the same as one at a time)
        if (cached) {
            __m256 vm = _mm256_set1_ps(m);
            int64_t j = 0;
            for (; j + 8 <= n_keys; j += 8)
                _mm256_storeu_ps(scores + j, kk_exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + j), vm)));
            if (j < n_keys) {
                __m256i msk = kk_mask8(n_keys - j);
                _mm256_maskstore_ps(scores + j, msk, kk_exp8(_mm256_sub_ps(_mm256_maskload_ps(scores + j, msk), vm)));
            }
        }
        // pass 2: l = Σ_j e_j and acc[d] = Σ_j e_j v_j[d], both in sequential j order
        for (int d = 0; d < D; d++) acc[d] = 0.0f;
        float l = 0.0f;
        if (cached) {
            kk_weighted_sum(acc, &l, scores, vh, kv_row_stride, n_keys, D);
        } else {
            for (int64_t j = 0; j < n_keys; j++) {
                float e = kk_exp1(scale * kk_dot(qh, kh + j * kv_row_stride, D) - m);
                l += e;
                kk_axpy(acc, e, vh + j * kv_row_stride, D);
            }
        }
        float *oh = out + (int64_t)h * D;
        for (int d = 0; d < D; d++) oh[d] = acc[d] / l;
        if (lse != NULL) lse[h] = m + logf(l);
    }
}

void kk_attention_forward(float *out, float *lse, const float *q, const float *k,
                          const float *v, int64_t T, int H, int KV, int D, float scale) {
    // out is (T,H,D), lse is (T,H), q is (T,H,D), k and v are (T,KV,D)
    for (int64_t t = 0; t < T; t++)
        kk_attention_row_forward(out + t * H * D, lse != NULL ? lse + t * H : NULL,
                                 q + t * H * D, k, v, (int64_t)KV * D, t + 1, H, KV, D, scale);
}

void kk_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *lse,
                           int64_t T, int H, int KV, int D, float scale) {
    // dq is (T,H,D), dk and dv are (T,KV,D) (all accumulate), dout is (T,H,D)
    // p_j = exp(s_j − lse), dp_j = dout_h · v_j, Δ = Σ_j p_j dp_j, ds_j = p_j (dp_j − Δ)
    //   dq_h += scale Σ_j ds_j k_j;  dk_j += scale ds_j q_h;  dv_j += p_j dout_h
    kk_attention_check(H, KV, D);
    float probs[KK_ATTN_CACHED_KEYS], dprobs[KK_ATTN_CACHED_KEYS];
    int group = H / KV;
    int64_t kvs = (int64_t)KV * D;
    for (int64_t t = 0; t < T; t++) {
        int64_t n = t + 1;
        int cached = n <= KK_ATTN_CACHED_KEYS;
        for (int h = 0; h < H; h++) {
            int64_t g = h / group;
            const float *qh = q + (t * H + h) * D, *doh = dout + (t * H + h) * D;
            const float *kh = k + g * D, *vh = v + g * D;
            float L = lse[t * H + h];
            float *dqh = dq + (t * H + h) * D;
            // pass 1: p_j, dp_j and Δ (sequential j)
            float delta = 0.0f;
            for (int64_t j = 0; j < n; j++) {
                float p = kk_exp1(scale * kk_dot(qh, kh + j * kvs, D) - L);
                float dp = kk_dot(doh, vh + j * kvs, D);
                if (cached) { probs[j] = p; dprobs[j] = dp; }
                delta = fmaf(p, dp, delta);
            }
            // pass 2: scatter the gradients
            if (cached) {
                // dprobs[j] ← ds_j, then dq_h as one register-resident weighted sum
                for (int64_t j = 0; j < n; j++) {
                    float ds = scale * (probs[j] * (dprobs[j] - delta));
                    dprobs[j] = ds;
                    kk_axpy(dk + j * kvs + g * D, ds, qh, D);
                    kk_axpy(dv + j * kvs + g * D, probs[j], doh, D);
                }
                kk_weighted_sum(dqh, NULL, dprobs, kh, kvs, n, D);
            } else {
                for (int64_t j = 0; j < n; j++) {
                    float p = kk_exp1(scale * kk_dot(qh, kh + j * kvs, D) - L);
                    float dp = kk_dot(doh, vh + j * kvs, D);
                    float ds = scale * (p * (dp - delta));
                    kk_axpy(dqh, ds, kh + j * kvs, D);
                    kk_axpy(dk + j * kvs + g * D, ds, qh, D);
                    kk_axpy(dv + j * kvs + g * D, p, doh, D);
                }
            }
        }
    }
}
