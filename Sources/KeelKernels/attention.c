/*
 * attention.c — causal grouped-query attention, forward and backward.
 *
 * Everything goes through kk_attention_row_forward (one query position against its keys),
 * so the sampler's decode step against a KV cache and the trainer's full-sequence forward
 * run the same operations on the same values and give the same bits. Query head h reads
 * kv head h / (H/KV). The backward recomputes the probabilities from the saved lse
 * (FlashAttention style), so nothing of size T×T is kept between forward and backward.
 *
 * No heap memory: scores live in a stack buffer of KK_ATTN_CACHED_KEYS keys per head; a
 * longer row is done in two passes over chunks of that many keys, recomputing the scores in
 * the second. Every path runs the same per-element operations (kk_dot, kk_exp, FMA chains
 * in j order), so they give the same bits; what the code chooses is only the order of
 * independent work, for speed:
 *  - heads go in blocks (4 in the forward, 2 in the backward), key-major: a group of 8
 *    keys (cache rows that sit together) is scored for every head of the block at once;
 *  - the 8 horizontal sums of a group are done together by kk_hsum8x8 (a transpose that
 *    lines up the very additions of kk_hsum8);
 *  - the weighted sums of several heads advance side by side, so 4–12 independent FMA
 *    chains hide the FMA latency, each chain still one output element in sequential j;
 *    likewise the backward's Δ chains of the heads of a block.
 * When D is a multiple of 8 up to 128 the scoring and summing helpers are instantiated for
 * that D (constant loop bounds, accumulators in registers); that too changes speed, not the
 * sequence of operations.
 */
#include "kk_internal.h"

enum {
    KK_ATTN_MAX_D = 1024,       /* accumulators of a block of heads live on the stack */
    KK_ATTN_CACHED_KEYS = 2048, /* scores kept on the stack per head; more keys: two passes */
    KK_ATTN_PAD = 8,            /* score rows run to a multiple of 8 past n (whole vectors) */
    KK_ATTN_SROW = KK_ATTN_CACHED_KEYS + KK_ATTN_PAD, /* floats per score row */
    KK_ATTN_REG_D = 128,        /* D = 8·NB ≤ 128: specialised helpers */
    KK_ATTN_HEADS = 4,          /* heads per block in the forward (scores: 32 KB of stack) */
    KK_ATTN_BWD_HEADS = 2,      /* heads per block in the backward (two score buffers) */
    KK_ATTN_PREFETCH = 16,      /* weighted sums prefetch value rows this many keys ahead */
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

/* Scores of nh heads: s_i[j] = scale · kk_dot(a_i, x_i + j·stride, D) into s + i·srow for
 * j < n (a_i = as[i], x_i = xs[i]). Eight keys at a time: kk_dot_lanes per key, one
 * kk_hsum8x8 for the eight horizontal sums (lane r is kk_hsum8 of key j+r, bit for bit),
 * one vector multiply by scale. Key-major: a group of 8 keys is scored for every head
 * before the next group. The last group repeats key n−1 in its missing lanes, so a score
 * row must hold n rounded up to 8 floats. */
KK_INLINE void kk_dots_heads(float *restrict s, int64_t srow, const float *const *as,
                             const float *const *xs, int64_t stride, int64_t n, int nh, int D,
                             float scale) {
    __m256 vs = _mm256_set1_ps(scale), v[8];
    for (int64_t j = 0; j < n; j += 8) {
        int64_t off[8]; // row offsets of the 8 keys, the last key standing in past n
        for (int r = 0; r < 8; r++) off[r] = (j + r < n ? j + r : n - 1) * stride;
#pragma clang loop unroll(disable)
        for (int i = 0; i < nh; i++) {
            for (int r = 0; r < 8; r++) v[r] = kk_dot_lanes(as[i], xs[i] + off[r], D);
            _mm256_storeu_ps(s + i * srow + j, _mm256_mul_ps(vs, kk_hsum8x8(v)));
        }
    }
}

/* Weighted sums of NW heads over the NC vectors of columns C0 … C0+8·NC−1 (NW, NC, C0, D
 * constants): for head i and such a column c,
 *   acc[i·D + c] = fma(w_i[j], x_i[j·stride + c], acc[i·D + c]) for j = 0, 1, …, n−1,
 * w_i = w + i·wstride, x_i = xs[i]: one FMA chain per element in sequential j, kept in a
 * register from the value in acc and stored back at the end (so a sum can go on over the
 * next chunk of keys). If l != NULL also l[i] += w_i[j] in the same order. The NW·NC
 * chains are independent; running them side by side only hides the FMA latency. */
KK_INLINE void kk_weighted_sums_block(float *restrict acc, float *restrict l,
                                      const float *restrict w, int64_t wstride,
                                      const float *const *xs, int64_t stride, int64_t n,
                                      int NW, int NC, int C0, int D) {
    __m256 a[KK_ATTN_HEADS][12];
    float li[KK_ATTN_HEADS];
    const float *x[KK_ATTN_HEADS];
    for (int i = 0; i < NW; i++) {
        x[i] = xs[i] + C0;
        li[i] = l != NULL ? l[i] : 0.0f;
        for (int c = 0; c < NC; c++) a[i][c] = _mm256_loadu_ps(acc + i * D + C0 + 8 * c);
    }
    for (int64_t j = 0; j < n; j++) {
        if (j + KK_ATTN_PREFETCH < n) // a hint only: value rows a few keys ahead into L1
            for (int i = 0; i < NW; i++)
                for (int c = 0; c < NC; c += 2)
                    _mm_prefetch((const char *)(x[i] + (j + KK_ATTN_PREFETCH) * stride + 8 * c), _MM_HINT_T0);
        for (int i = 0; i < NW; i++) {
            // chain (i, c): a[i][c] ← fma(w_i[j], x_i[j][c], a[i][c])
            const float *wi = w + i * wstride + j, *xj = x[i] + j * stride;
            __m256 wj = _mm256_broadcast_ss(wi);
            if (l != NULL) li[i] += *wi;
            for (int c = 0; c < NC; c++) a[i][c] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(xj + 8 * c), a[i][c]);
        }
    }
    for (int i = 0; i < NW; i++) {
        for (int c = 0; c < NC; c++) _mm256_storeu_ps(acc + i * D + C0 + 8 * c, a[i][c]);
        if (l != NULL) l[i] = li[i];
    }
}

/* kk_weighted_sums_block over heads 0 … nh−1 (nh ≤ 4) and all D = 8·NB columns (D
 * constant), in blocks of NW heads × NC vectors: NW = 4 for NB ≤ 3, 2 for NB ≤ 6, else 1,
 * and NB = 13…16 in two column blocks, so that a block is 4–12 chains of 8 lanes (enough to
 * cover the FMA latency, few enough to stay in registers). l (if not NULL) is summed with
 * the first column block of its head. */
KK_INLINE void kk_weighted_sums_heads(float *acc, float *l, const float *w, int64_t wstride,
                                      const float *const *xs, int64_t stride, int64_t n,
                                      int nh, int D) {
    int NB = D / 8, NW = NB <= 3 ? 4 : NB <= 6 ? 2 : 1, NC0 = NB <= 12 ? NB : (NB + 1) / 2;
    int h = 0;
#define KK_WS(NWC)                                                                            \
    do {                                                                                      \
        kk_weighted_sums_block(acc + h * D, l != NULL ? l + h : NULL, w + h * wstride,        \
                               wstride, xs + h, stride, n, NWC, NC0, 0, D);                   \
        if (NB > NC0)                                                                         \
            kk_weighted_sums_block(acc + h * D, NULL, w + h * wstride, wstride, xs + h,       \
                                   stride, n, NWC, NB - NC0, 8 * NC0, D);                     \
        h += NWC;                                                                             \
    } while (0)
    if (NW == 4 && nh == 4) KK_WS(4);
    if (NW >= 2)
        while (h + 2 <= nh) KK_WS(2);
    while (h < nh) KK_WS(1);
#undef KK_WS
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

/* s_i[j] = scale · kk_dot(a_i, x_i + j·stride, D) for heads i < nh, keys j < n (kk_dots_heads);
 * score rows srow apart, each holding n rounded up to 8 */
static void kk_dots(float *s, int64_t srow, const float *const *as, const float *const *xs,
                    int64_t stride, int64_t n, int nh, int D, float scale) {
#define KK_DOTS(DC) kk_dots_heads(s, srow, as, xs, stride, n, nh, DC, scale)
    KK_DISPATCH_D(D, KK_DOTS, KK_DOTS(D))
#undef KK_DOTS
}

/* acc_i[d] = Σ_j w_i[j]·x_i[j·stride + d] for heads i < nh (acc_i = acc + i·D, w_i = w +
 * i·wstride, x_i = xs[i]): one FMA chain per element in sequential j, starting from acc_i[d]
 * as given; if l != NULL also l[i] += w_i[j] sequentially. Registers for the D of
 * kk_weighted_sums_heads; otherwise per head, n calls of kk_axpy. */
static void kk_weighted_sums(float *acc, float *l, const float *w, int64_t wstride,
                             const float *const *xs, int64_t stride, int64_t n, int nh, int D) {
#define KK_WSUMS(DC) kk_weighted_sums_heads(acc, l, w, wstride, xs, stride, n, nh, DC)
    if (D % 8 == 0 && D <= KK_ATTN_REG_D) {
        KK_DISPATCH_D(D, KK_WSUMS, (void)0)
    } else {
        for (int i = 0; i < nh; i++) {
            const float *wi = w + i * wstride;
            for (int64_t j = 0; j < n; j++) {
                if (l != NULL) l[i] += wi[j];
                kk_axpy(acc + (int64_t)i * D, wi[j], xs[i] + j * stride, D);
            }
        }
    }
#undef KK_WSUMS
}

/* x[j] ← kk_exp(x[j] − c) for j < n, in whole vectors: x holds n rounded up to 8 (as
 * written by kk_dots); the padding lanes are transformed too and never read after */
static void kk_exp_shifted(float *x, int64_t n, float c) {
    __m256 vc = _mm256_set1_ps(c);
    for (int64_t j = 0; j < n; j += 8)
        _mm256_storeu_ps(x + j, kk_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + j), vc)));
}

/* The largest non-NaN lane of v (−inf if none): what m = v[l] > m ? v[l] : m over the lanes
 * from m = −inf gives, up to the sign of a zero max (the callers add +0 at the end, and
 * x > m never depends on the sign of a zero m). NaN lanes become −inf, then a max tree. */
KK_INLINE float kk_max_lanes(__m256 v) {
    v = _mm256_blendv_ps(v, _mm256_set1_ps(-INFINITY), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

/* max of x[0..n) (exact whatever the order), then + 0 so that a −0 max reads +0 */
static float kk_max(const float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + j));
    float m = kk_max_lanes(vm);
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m + 0.0f;
}

/* The long-row max: m, x[0], …, x[n−1] folded by m = x > m ? x : m (NaN skipped), up to
 * the sign of a zero (the caller adds +0 after the last chunk); _mm256_max_ps(x, m) is
 * exactly x > m ? x : m per lane */
static float kk_max_running(float m, const float *x, int64_t n) {
    __m256 vm = _mm256_set1_ps(m);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(_mm256_loadu_ps(x + j), vm);
    m = kk_max_lanes(vm);
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    return m;
}

/* The backward's per-key updates over one chunk of n keys, for j < n and then head i < nh:
 *   ds = scale · (p_i[j] · (dp_i[j] − Δ_i)), dp_i[j] ← ds (the weights of dq's sum),
 *   dk_j += ds · q_i, dv_j += p_i[j] · dout_i   (kk_axpy; key j's rows at + j·kvs + goff[i]),
 * p_i = probs + i·KK_ATTN_SROW, dp_i = dprobs + i·KK_ATTN_SROW */
KK_INLINE void kk_bwd_updates_d(float *dk, float *dv, const float *probs, float *dprobs,
                                const float *delta, const float *const *qh,
                                const float *const *doh, const int64_t *goff, int64_t kvs,
                                int64_t n, int nh, float scale, int D) {
    for (int64_t j = 0; j < n; j++) {
        for (int i = 0; i < nh; i++) {
            float p = probs[i * KK_ATTN_SROW + j], *dpj = dprobs + i * KK_ATTN_SROW + j;
            float ds = scale * (p * (*dpj - delta[i]));
            *dpj = ds;
            kk_axpy(dk + j * kvs + goff[i], ds, qh[i], D);
            kk_axpy(dv + j * kvs + goff[i], p, doh[i], D);
        }
    }
}

static void kk_bwd_updates(float *dk, float *dv, const float *probs, float *dprobs,
                           const float *delta, const float *const *qh, const float *const *doh,
                           const int64_t *goff, int64_t kvs, int64_t n, int nh, float scale,
                           int D) {
#define KK_UPD(DC) kk_bwd_updates_d(dk, dv, probs, dprobs, delta, qh, doh, goff, kvs, n, nh, scale, DC)
    KK_DISPATCH_D(D, KK_UPD, KK_UPD(D))
#undef KK_UPD
}

static void kk_attention_check(int H, int KV, int D) {
    KK_CHECK(KV > 0 && H % KV == 0, "H = %d query heads must be a multiple of KV = %d kv heads", H, KV);
    KK_CHECK(D > 0 && D <= KK_ATTN_MAX_D, "head_dim D = %d must be in 1…%d", D, KK_ATTN_MAX_D);
}

/* Query heads h0 … h0+nh−1 of kk_attention_row_forward; scores holds nh rows of
 * KK_ATTN_SROW floats, acc nh·D. Per head the operations of the contract:
 *   s_j (kk_dots); m = kk_max of the s_j, or past KK_ATTN_CACHED_KEYS keys kk_max_running
 *   over the chunks of a first pass (the two can differ only where a score is NaN, and then
 *   every output of the head is NaN anyway); e_j = kk_exp(s_j − m); l = Σ_j e_j and
 *   acc = Σ_j e_j v_j in sequential j, chunk after chunk (scores recomputed in the second
 *   pass); out = acc / l, lse = m + logf(l). */
static void kk_attn_heads(float *out, float *lse, float *scores, float *acc, const float *q,
                          const float *k, const float *v, int64_t kv_row_stride,
                          int64_t n_keys, int h0, int nh, int group, int D, float scale) {
    float l[KK_ATTN_HEADS], m[KK_ATTN_HEADS];
    const float *qh[KK_ATTN_HEADS], *kh[KK_ATTN_HEADS], *vh[KK_ATTN_HEADS];
    for (int i = 0; i < nh; i++) {
        int64_t g = (h0 + i) / group;
        qh[i] = q + (int64_t)(h0 + i) * D, kh[i] = k + g * D, vh[i] = v + g * D;
        l[i] = 0.0f, m[i] = -INFINITY;
    }
    for (int64_t d = 0; d < (int64_t)nh * D; d++) acc[d] = 0.0f;
    // pass 0 (long rows only): m over the chunks, then +0;
    // pass 1, chunk by chunk: s_j, m (short rows), e_j, then l and acc
    int one_pass = n_keys <= KK_ATTN_CACHED_KEYS;
    for (int pass = one_pass; pass < 2; pass++) {
        for (int64_t j0 = 0; j0 < n_keys; j0 += KK_ATTN_CACHED_KEYS) {
            int64_t n = n_keys - j0 < KK_ATTN_CACHED_KEYS ? n_keys - j0 : KK_ATTN_CACHED_KEYS;
            const float *kj[KK_ATTN_HEADS], *vj[KK_ATTN_HEADS];
            for (int i = 0; i < nh; i++) kj[i] = kh[i] + j0 * kv_row_stride, vj[i] = vh[i] + j0 * kv_row_stride;
            kk_dots(scores, KK_ATTN_SROW, qh, kj, kv_row_stride, n, nh, D, scale);
            for (int i = 0; i < nh; i++) {
                float *s = scores + i * KK_ATTN_SROW;
                if (pass == 0) {
                    m[i] = kk_max_running(m[i], s, n);
                } else {
                    if (one_pass) m[i] = kk_max(s, n);
                    kk_exp_shifted(s, n, m[i]);
                }
            }
            if (pass == 1) kk_weighted_sums(acc, l, scores, KK_ATTN_SROW, vj, kv_row_stride, n, nh, D);
        }
        if (pass == 0)
            for (int i = 0; i < nh; i++) m[i] = m[i] + 0.0f;
    }
    for (int i = 0; i < nh; i++) {
        // out_h[d] = acc[d] / l (a vector division is the same IEEE division per lane)
        float *oh = out + (int64_t)(h0 + i) * D, *ai = acc + i * D;
        __m256 vl = _mm256_set1_ps(l[i]);
        int d = 0;
        for (; d + 8 <= D; d += 8) _mm256_storeu_ps(oh + d, _mm256_div_ps(_mm256_loadu_ps(ai + d), vl));
        for (; d < D; d++) oh[d] = ai[d] / l[i];
        if (lse != NULL) lse[h0 + i] = m[i] + logf(l[i]);
    }
}

void kk_attention_row_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, int64_t kv_row_stride, int64_t n_keys,
                              int H, int KV, int D, float scale) {
    // out is (H,D), lse is (H), q is (H,D); key j of kv head g at k + j*kv_row_stride + g*D
    kk_attention_check(H, KV, D);
    KK_CHECK(n_keys >= 1, "n_keys = %lld: a query needs at least its own key", (long long)n_keys);
    float scores[KK_ATTN_HEADS * KK_ATTN_SROW];
    float acc[KK_ATTN_MAX_D];
    // blocks of up to 4 heads (as many as acc holds: fewer when D > 256)
    int block = KK_ATTN_MAX_D / D < KK_ATTN_HEADS ? KK_ATTN_MAX_D / D : KK_ATTN_HEADS;
    for (int h = 0; h < H; h += block)
        kk_attn_heads(out, lse, scores, acc, q, k, v, kv_row_stride, n_keys, h,
                      H - h < block ? H - h : block, H / KV, D, scale);
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
    // Heads in blocks of 2, as in the forward; a dk/dv element still takes its terms in
    // (t, h) order, dq_h and Δ_h in j order. Rows past KK_ATTN_CACHED_KEYS keys: pass 0
    // sums Δ over chunks, pass 1 recomputes p, dp per chunk for the updates.
    kk_attention_check(H, KV, D);
    enum { NB = KK_ATTN_BWD_HEADS };
    _Static_assert(KK_ATTN_BWD_HEADS == 2, "the Δ loop below is written for blocks of 1 or 2 heads");
    float probs[NB * KK_ATTN_SROW], dprobs[NB * KK_ATTN_SROW];
    int group = H / KV;
    int64_t kvs = (int64_t)KV * D;
    for (int64_t t = 0; t < T; t++) {
        int64_t n_keys = t + 1;
        int one_pass = n_keys <= KK_ATTN_CACHED_KEYS;
        for (int h0 = 0; h0 < H; h0 += NB) {
            int nh = H - h0 < NB ? H - h0 : NB;
            const float *qh[NB], *doh[NB], *kh[NB], *vh[NB];
            float L[NB], delta[NB];
            int64_t goff[NB]; // g·D, kv head g of head h0 + i
            for (int i = 0; i < nh; i++) {
                goff[i] = (int64_t)((h0 + i) / group) * D;
                qh[i] = q + (t * H + h0 + i) * D, doh[i] = dout + (t * H + h0 + i) * D;
                kh[i] = k + goff[i], vh[i] = v + goff[i];
                L[i] = lse[t * H + h0 + i], delta[i] = 0.0f;
            }
            for (int pass = one_pass; pass < 2; pass++) {
                for (int64_t j0 = 0; j0 < n_keys; j0 += KK_ATTN_CACHED_KEYS) {
                    int64_t n = n_keys - j0 < KK_ATTN_CACHED_KEYS ? n_keys - j0 : KK_ATTN_CACHED_KEYS;
                    const float *kj[NB], *vj[NB];
                    for (int i = 0; i < nh; i++) kj[i] = kh[i] + j0 * kvs, vj[i] = vh[i] + j0 * kvs;
                    kk_dots(probs, KK_ATTN_SROW, qh, kj, kvs, n, nh, D, scale);
                    for (int i = 0; i < nh; i++) kk_exp_shifted(probs + i * KK_ATTN_SROW, n, L[i]);
                    kk_dots(dprobs, KK_ATTN_SROW, doh, vj, kvs, n, nh, D, 1.0f);
                    if (pass == 0 || one_pass) { // Δ_i: one fmaf chain per head, the heads side by side
                        const float *p0 = probs, *dp0 = dprobs;
                        const float *p1 = probs + KK_ATTN_SROW, *dp1 = dprobs + KK_ATTN_SROW;
                        float d0 = delta[0], d1 = nh == 2 ? delta[1] : 0.0f;
                        if (nh == 2)
                            for (int64_t j = 0; j < n; j++) d0 = fmaf(p0[j], dp0[j], d0), d1 = fmaf(p1[j], dp1[j], d1);
                        else
                            for (int64_t j = 0; j < n; j++) d0 = fmaf(p0[j], dp0[j], d0);
                        delta[0] = d0;
                        if (nh == 2) delta[1] = d1;
                    }
                    if (pass == 0) continue;
                    kk_bwd_updates(dk + j0 * kvs, dv + j0 * kvs, probs, dprobs, delta, qh, doh, goff, kvs, n, nh, scale, D);
                    kk_weighted_sums(dq + (t * H + h0) * D, NULL, dprobs, KK_ATTN_SROW, kj, kvs, n, nh, D);
                }
            }
        }
    }
}
