/*
 * swiglu.c — the SwiGLU gate of the Qwen3 FFN: out = silu(gate) · up, silu on the gate
 * branch. Elementwise; the last n mod 8 elements go through the same vector arithmetic (masked
 * loads and stores), so every element is computed the same way wherever it sits.
 */
#include "kk_internal.h"

/* sigmoid(g) = 1 / (1 + exp(−g)) with the kk exp */
KK_INLINE __m256 kk_sigmoid8(__m256 g) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, kk_exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}

/* Whole vectors load and store plainly, the tail (n mod 8) through masks: `full` is a
 * compile-time constant at each call, so each loop gets its own straight-line code (a masked
 * store is slow on some CPUs). Same arithmetic either way. */
KK_INLINE __m256 kk_ld8(const float *p, __m256i m, const int full) {
    return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}
KK_INLINE void kk_st8(float *p, __m256i m, __m256 x, const int full) {
    if (full) _mm256_storeu_ps(p, x); else _mm256_maskstore_ps(p, m, x);
}

KK_INLINE void kk_swiglu_forward8(float *out, const float *gate, const float *up, __m256i m, const int full) {
    __m256 g = kk_ld8(gate, m, full), u = kk_ld8(up, m, full);
    __m256 silu = _mm256_mul_ps(g, kk_sigmoid8(g));
    kk_st8(out, m, _mm256_mul_ps(silu, u), full);
}

void kk_swiglu_forward(float *out, const float *gate, const float *up, int64_t R, int64_t F) {
    // out, gate, up are (R,F): out = (g · sigmoid(g)) · u
    int64_t n = R * F, i = 0;
    for (; i + 8 <= n; i += 8) kk_swiglu_forward8(out + i, gate + i, up + i, kk_mask8(8), 1);
    if (i < n) kk_swiglu_forward8(out + i, gate + i, up + i, kk_mask8(n - i), 0);
}

// s = sigmoid(g): silu' = s · (1 + g · (1 − s));  dgate += dout·u·silu',  dup += dout·silu
KK_INLINE void kk_swiglu_backward8(float *dgate, float *dup, const float *dout, const float *gate, const float *up,
                                   __m256i m, const int full) {
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 g = kk_ld8(gate, m, full), u = kk_ld8(up, m, full), dy = kk_ld8(dout, m, full);
    __m256 s = kk_sigmoid8(g);
    __m256 silu = _mm256_mul_ps(g, s);
    __m256 dsilu = _mm256_mul_ps(s, _mm256_fmadd_ps(g, _mm256_sub_ps(one, s), one));
    __m256 dg = _mm256_mul_ps(_mm256_mul_ps(dy, u), dsilu);
    __m256 du = _mm256_mul_ps(dy, silu);
    kk_st8(dgate, m, _mm256_add_ps(kk_ld8(dgate, m, full), dg), full);
    kk_st8(dup, m, _mm256_add_ps(kk_ld8(dup, m, full), du), full);
}

void kk_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, int64_t R, int64_t F) {
    // dgate, dup (accumulate), dout, gate, up are (R,F)
    int64_t n = R * F, i = 0;
    for (; i + 8 <= n; i += 8) kk_swiglu_backward8(dgate + i, dup + i, dout + i, gate + i, up + i, kk_mask8(8), 1);
    if (i < n) kk_swiglu_backward8(dgate + i, dup + i, dout + i, gate + i, up + i, kk_mask8(n - i), 0);
}
