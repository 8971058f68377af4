/*
 * swiglu.c — the SwiGLU gate of the Qwen3 FFN: out = silu(gate) · up, silu on the gate
 * branch. Elementwise; the last n mod 8 elements go through the same vector code (masked),
 * so every element is computed the same way wherever it sits.
 */
#include "kk_internal.h"

/* sigmoid(g) = 1 / (1 + exp(−g)) with the kk exp */
KK_INLINE __m256 kk_sigmoid8(__m256 g) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, kk_exp8(_mm256_sub_ps(_mm256_setzero_ps(), g))));
}

void kk_swiglu_forward(float *out, const float *gate, const float *up, int64_t R, int64_t F) {
    // out, gate, up are (R,F): out = (g · sigmoid(g)) · u
    int64_t n = R * F;
    for (int64_t i = 0; i < n; i += 8) {
        __m256i m = kk_mask8(n - i < 8 ? n - i : 8);
        __m256 g = _mm256_maskload_ps(gate + i, m), u = _mm256_maskload_ps(up + i, m);
        __m256 silu = _mm256_mul_ps(g, kk_sigmoid8(g));
        _mm256_maskstore_ps(out + i, m, _mm256_mul_ps(silu, u));
    }
}

void kk_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, int64_t R, int64_t F) {
    // dgate, dup (accumulate), dout, gate, up are (R,F)
    // s = sigmoid(g): silu' = s · (1 + g · (1 − s));  dgate += dout·u·silu',  dup += dout·silu
    int64_t n = R * F;
    __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 8) {
        __m256i m = kk_mask8(n - i < 8 ? n - i : 8);
        __m256 g = _mm256_maskload_ps(gate + i, m), u = _mm256_maskload_ps(up + i, m);
        __m256 dy = _mm256_maskload_ps(dout + i, m);
        __m256 s = kk_sigmoid8(g);
        __m256 silu = _mm256_mul_ps(g, s);
        __m256 dsilu = _mm256_mul_ps(s, _mm256_fmadd_ps(g, _mm256_sub_ps(one, s), one));
        __m256 dg = _mm256_mul_ps(_mm256_mul_ps(dy, u), dsilu);
        __m256 du = _mm256_mul_ps(dy, silu);
        _mm256_maskstore_ps(dgate + i, m, _mm256_add_ps(_mm256_maskload_ps(dgate + i, m), dg));
        _mm256_maskstore_ps(dup + i, m, _mm256_add_ps(_mm256_maskload_ps(dup + i, m), du));
    }
}
