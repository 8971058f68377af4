/*
 * attention.c — causal grouped-query attention, forward and backward.
 *
 * Everything goes through kk_attention_row_forward (one query position against its keys),
 * so the sampler's decode step against a KV cache and the trainer's full-sequence forward
 * run the same operations on the same values and give the same bits. Query head h reads
 * kv head h / (H/KV). The backward recomputes the probabilities from the saved lse
 * (FlashAttention style), so nothing of size T×T is kept between forward and backward.
 *
 * No heap memory: scores live in a stack buffer of KK_ATTN_CACHED_KEYS; past that they are
 * recomputed one key at a time. Both paths run the same per-element operations (kk_dot,
 * kk_exp, FMA chains in j order), so they give the same bits; the fast path only reorders
 * independent work (all dots first, then all exps). When D is a multiple of 8 up to 128 the
 * helpers are instantiated for that D (constant loop bounds, accumulators in registers);
 * that changes speed, not the sequence of operations.
 */
#include "kk_internal.h"

enum {
    KK_ATTN_MAX_D = 1024,       /* accumulator for one head's output lives on the stack */
    KK_ATTN_CACHED_KEYS = 2048, /* scores kept on the stack (8 KB); more keys: recompute */
    KK_ATTN_REG_D = 128,        /* D = 8·NB ≤ 128: specialised helpers */
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

/* out[j] = scale · kk_dot(a, x_j, D), x_j = x + j·stride, for j < n */
KK_INLINE void kk_dots_d(float *out, const float *a, const float *x, int64_t stride, int64_t n,
                         int D, float scale) {
    for (int64_t j = 0; j < n; j++) out[j] = scale * kk_dot(a, x + j * stride, D);
}

/* acc[d] = Σ_j w[j]·x_j[d], one FMA chain per d in sequential j, starting from acc[d] as
 * given (n calls of kk_axpy); the accumulators stay in registers when D is constant. If
 * sum != NULL also *sum += w[j] sequentially. */
KK_INLINE void kk_weighted_sum_d(float *acc, float *sum, const float *w, const float *x,
                                 int64_t stride, int64_t n, int D) {
    __m256 a[KK_ATTN_REG_D / 8];
    int nb = D / 8;
    for (int b = 0; b < nb; b++) a[b] = _mm256_loadu_ps(acc + 8 * b);
    float l = sum != NULL ? *sum : 0.0f;
    for (int64_t j = 0; j < n; j++) {
        __m256 wj = _mm256_broadcast_ss(w + j);
        if (sum != NULL) l += w[j];
        for (int b = 0; b < nb; b++) a[b] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(x + j * stride + 8 * b), a[b]);
    }
    for (int b = 0; b < nb; b++) _mm256_storeu_ps(acc + 8 * b, a[b]);
    if (sum != NULL) *sum = l;
}

/* dispatch on D: a constant D for the multiples of 8 up to 128, the generic code otherwise */
#define KK_DISPATCH_D(D, CALL_CONST, CALL_GENERIC)                                           \
    switch ((D) % 8 == 0 && (D) <= KK_ATTN_REG_D ? (D) : 0) {                                \
    case 8: CALL_CONST(8); break;     case 16: CALL_CONST(16); break;                        \
    case 24: CALL_CONST(24); break;   case 32: CALL_CONST(32); break;                        \
    case 40: CALL_CONST(40); break;   case 48: CALL_CONST(48); break;                        \
    case 56: CALL_CONST(56); break;   case 64: CALL_CONST(64); break;                        \
    case 72: CALL_CONST(72); break;   case 80: CALL_CONST(80); break;                        \
    case 88: CALL_CONST(88); break;   case 96: CALL_CONST(96); break;                        \
    case 104: CALL_CONST(104); break; case 112: CALL_CONST(112); break;                      \
    case 120: CALL_CONST(120); break; case 128: CALL_CONST(128); break;                      \
    default: CALL_GENERIC; break;                                                            \
    }

static void kk_dots(float *out, const float *a, const float *x, int64_t stride, int64_t n,
                    int D, float scale) {
#define KK_DOTS(DC) kk_dots_d(out, a, x, stride, n, DC, scale)
    KK_DISPATCH_D(D, KK_DOTS, kk_dots_d(out, a, x, stride, n, D, scale))
#undef KK_DOTS
}

static void kk_weighted_sum(float *acc, float *sum, const float *w, const float *x,
                            int64_t stride, int64_t n, int D) {
#define KK_WSUM(DC) kk_weighted_sum_d(acc, sum, w, x, stride, n, DC)
    if (D % 8 == 0 && D <= KK_ATTN_REG_D) {
        KK_DISPATCH_D(D, KK_WSUM, (void)0)
    } else {
        for (int64_t j = 0; j < n; j++) {
            if (sum != NULL) *sum += w[j];
            kk_axpy(acc, w[j], x + j * stride, D);
        }
    }
#undef KK_WSUM
}

/* x[j] ← kk_exp(x[j] − c) for j < n */
static void kk_exp_shifted(float *x, int64_t n, float c) {
    __m256 vc = _mm256_set1_ps(c);
    for (int64_t j = 0; j < n; j += 8) {
        __m256i m = kk_mask8(n - j < 8 ? n - j : 8);
        _mm256_maskstore_ps(x + j, m, kk_exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, m), vc)));
    }
}

/* max of x[0..n) (exact whatever the order), then + 0 so that a −0 max reads +0 */
static float kk_max(const float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + j));
    float lanes[8], m = -INFINITY;
    _mm256_storeu_ps(lanes, vm);
    for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m + 0.0f;
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
    int group = H / KV;
    for (int h = 0; h < H; h++) {
        const float *qh = q + (int64_t)h * D;
        const float *kh = k + (int64_t)(h / group) * D, *vh = v + (int64_t)(h / group) * D;
        for (int d = 0; d < D; d++) acc[d] = 0.0f;
        float m, l = 0.0f;
        if (n_keys <= KK_ATTN_CACHED_KEYS) {
            // s_j = scale · dot(q_h, k_j); m = max_j s_j; e_j = exp(s_j − m);
            // l = Σ_j e_j and acc[d] = Σ_j e_j v_j[d] in sequential j
            kk_dots(scores, qh, kh, kv_row_stride, n_keys, D, scale);
            m = kk_max(scores, n_keys);
            kk_exp_shifted(scores, n_keys, m);
            kk_weighted_sum(acc, &l, scores, vh, kv_row_stride, n_keys, D);
        } else {
            // the same values, one key at a time (scores recomputed in the second pass)
            m = -INFINITY;
            for (int64_t j = 0; j < n_keys; j++) {
                float s = scale * kk_dot(qh, kh + j * kv_row_stride, D);
                m = s > m ? s : m;
            }
            m = m + 0.0f;
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
    // p_j = exp(s_j − lse), dp_j = dout_h · v_j, Δ = Σ_j p_j dp_j (sequential j),
    // ds_j = scale · p_j (dp_j − Δ):
    //   dq_h += Σ_j ds_j k_j;  dk_j += ds_j q_h;  dv_j += p_j dout_h
    kk_attention_check(H, KV, D);
    float probs[KK_ATTN_CACHED_KEYS], dprobs[KK_ATTN_CACHED_KEYS];
    int group = H / KV;
    int64_t kvs = (int64_t)KV * D;
    for (int64_t t = 0; t < T; t++) {
        int64_t n = t + 1;
        for (int h = 0; h < H; h++) {
            int64_t g = h / group;
            const float *qh = q + (t * H + h) * D, *doh = dout + (t * H + h) * D;
            const float *kh = k + g * D, *vh = v + g * D;
            float L = lse[t * H + h];
            float *dqh = dq + (t * H + h) * D;
            float delta = 0.0f;
            if (n <= KK_ATTN_CACHED_KEYS) {
                kk_dots(probs, qh, kh, kvs, n, D, scale);
                kk_exp_shifted(probs, n, L);
                kk_dots(dprobs, doh, vh, kvs, n, D, 1.0f);
                for (int64_t j = 0; j < n; j++) delta = fmaf(probs[j], dprobs[j], delta);
                for (int64_t j = 0; j < n; j++) {
                    float ds = scale * (probs[j] * (dprobs[j] - delta));
                    dprobs[j] = ds; // reused as the weights of dq's sum
                    kk_axpy(dk + j * kvs + g * D, ds, qh, D);
                    kk_axpy(dv + j * kvs + g * D, probs[j], doh, D);
                }
                kk_weighted_sum(dqh, NULL, dprobs, kh, kvs, n, D);
            } else {
                for (int64_t j = 0; j < n; j++) {
                    float p = kk_exp1(scale * kk_dot(qh, kh + j * kvs, D) - L);
                    delta = fmaf(p, kk_dot(doh, vh + j * kvs, D), delta);
                }
                for (int64_t j = 0; j < n; j++) {
                    float p = kk_exp1(scale * kk_dot(qh, kh + j * kvs, D) - L);
                    float ds = scale * (p * (kk_dot(doh, vh + j * kvs, D) - delta));
                    kk_axpy(dqh, ds, kh + j * kvs, D);
                    kk_axpy(dk + j * kvs + g * D, ds, qh, D);
                    kk_axpy(dv + j * kvs + g * D, p, doh, D);
                }
            }
        }
    }
}
