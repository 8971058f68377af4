/*
 * rope.c — rotary position embedding, Qwen3 / HF `rotate_half` convention: pairs are
 * (i, i + D/2) (half-split), NOT interleaved (2i, 2i+1); angle = pos · theta^(−2i/D).
 * cos and sin are computed in double and rounded to float once, so the direct and the
 * table variants use the same float values and give the same bits. The backward rotates
 * the gradient by −angle (the transpose of a rotation), in place.
 */
#include "kk_internal.h"

enum { KK_ROPE_MAX_D = 1024 };

/* the float cos/sin of angle pos·theta^(−2i/D), i < D/2 */
static void kk_rope_angles(float *cs, float *sn, int64_t pos, int D, double theta) {
    int half = D / 2;
    for (int i = 0; i < half; i++) {
        double inv_freq = pow(theta, -(2.0 * i) / (double)D);
        double angle = (double)pos * inv_freq;
        cs[i] = (float)cos(angle);
        sn[i] = (float)sin(angle);
    }
}

/* one head, in place: sign = +1 rotates by +angle (forward), −1 by −angle (backward)
 *   forward:  a' = fma(−b, s, a·c),  b' = fma(a, s, b·c)      (a = x[i], b = x[i+D/2])
 *   backward: a' = fma( b, s, a·c),  b' = fma(−a, s, b·c) */
static void kk_rope_head(float *x, const float *cs, const float *sn, int half, int backward) {
    float *xa = x, *xb = x + half;
    __m256 flip = _mm256_set1_ps(backward ? -1.0f : 1.0f);
    int i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 a = _mm256_loadu_ps(xa + i), b = _mm256_loadu_ps(xb + i);
        __m256 c = _mm256_loadu_ps(cs + i);
        __m256 s = _mm256_mul_ps(_mm256_loadu_ps(sn + i), flip); // exact sign flip
        _mm256_storeu_ps(xa + i, _mm256_fnmadd_ps(b, s, _mm256_mul_ps(a, c)));
        _mm256_storeu_ps(xb + i, _mm256_fmadd_ps(a, s, _mm256_mul_ps(b, c)));
    }
    for (; i < half; i++) {
        float a = xa[i], b = xb[i], c = cs[i], s = backward ? -sn[i] : sn[i];
        xa[i] = fmaf(-b, s, a * c);
        xb[i] = fmaf(a, s, b * c);
    }
}

static void kk_rope_direct(float *x, const int32_t *positions, int64_t R, int nheads, int D,
                           double theta, int backward) {
    // x is (R, nheads, D)
    float cs[KK_ROPE_MAX_D / 2], sn[KK_ROPE_MAX_D / 2];
    KK_CHECK(D % 2 == 0 && D <= KK_ROPE_MAX_D, "head_dim D = %d must be even and <= %d "
             "(use the table variants for a larger D)", D, KK_ROPE_MAX_D);
    for (int64_t r = 0; r < R; r++) {
        kk_rope_angles(cs, sn, positions[r], D, theta);
        for (int h = 0; h < nheads; h++) kk_rope_head(x + (r * nheads + h) * D, cs, sn, D / 2, backward);
    }
}

void kk_rope_forward(float *x, const int32_t *positions, int64_t R, int nheads, int D,
                     double theta) {
    kk_rope_direct(x, positions, R, nheads, D, theta, 0);
}

void kk_rope_backward(float *dx, const int32_t *positions, int64_t R, int nheads, int D,
                      double theta) {
    kk_rope_direct(dx, positions, R, nheads, D, theta, 1);
}

void kk_rope_table(float *cos_table, float *sin_table, int64_t maxpos, int D, double theta) {
    // cos_table, sin_table are (maxpos, D/2)
    for (int64_t p = 0; p < maxpos; p++)
        kk_rope_angles(cos_table + p * (D / 2), sin_table + p * (D / 2), p, D, theta);
}

static void kk_rope_tabled(float *x, const int32_t *positions, const float *cos_table,
                           const float *sin_table, int64_t R, int nheads, int D, int backward) {
    // x is (R, nheads, D), tables are (maxpos, D/2)
    KK_CHECK(D % 2 == 0, "head_dim D = %d must be even", D);
    int half = D / 2;
    for (int64_t r = 0; r < R; r++) {
        const float *cs = cos_table + (int64_t)positions[r] * half;
        const float *sn = sin_table + (int64_t)positions[r] * half;
        for (int h = 0; h < nheads; h++) kk_rope_head(x + (r * nheads + h) * D, cs, sn, half, backward);
    }
}

void kk_rope_forward_table(float *x, const int32_t *positions, const float *cos_table,
                           const float *sin_table, int64_t R, int nheads, int D) {
    kk_rope_tabled(x, positions, cos_table, sin_table, R, nheads, D, 0);
}

void kk_rope_backward_table(float *dx, const int32_t *positions, const float *cos_table,
                            const float *sin_table, int64_t R, int nheads, int D) {
    kk_rope_tabled(dx, positions, cos_table, sin_table, R, nheads, D, 1);
}
