/*
 * rmsnorm.c — RMSNorm forward and backward (Qwen3: weight · x / sqrt(mean(x²) + eps),
 * multiplied by w, not 1 + w; eps inside the sqrt). Used for the layer norms (C = hidden)
 * and the per-head q/k norms (R = rows·heads, C = head_dim).
 */
#include "kk_internal.h"

void kk_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight,
                        int64_t R, int64_t C, float eps) {
    // out is (R,C), rstd is (R), in is (R,C), weight is (C)
    for (int64_t r = 0; r < R; r++) {
        const float *x = in + r * C;
        float *y = out + r * C;
        // sum of squares in the kk sum order; mean and rstd as in HF (float32 variance)
        float ss = kk_dot(x, x, C);
        float rs = 1.0f / sqrtf(ss / (float)C + eps);
        if (rstd != NULL) rstd[r] = rs;
        __m256 vr = _mm256_set1_ps(rs);
        int64_t c = 0;
        for (; c + 8 <= C; c += 8) {
            // y = (x · rstd) · w, two roundings, same order as HF
            __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x + c), vr);
            _mm256_storeu_ps(y + c, _mm256_mul_ps(t, _mm256_loadu_ps(weight + c)));
        }
        for (; c < C; c++) y[c] = (x[c] * rs) * weight[c];
    }
}

void kk_rmsnorm_backward(float *din, float *dweight, const float *dout, const float *in,
                         const float *weight, const float *rstd, int64_t R, int64_t C) {
    // din is (R,C), dweight is (C), dout is (R,C), in is (R,C), weight is (C), rstd is (R)
    // y_c = w_c x_c r, r = (Σx²/C + eps)^(-1/2), ∂r/∂x_c = −r³ x_c / C, so
    //   din_c  += r · w_c · dy_c − (r³/C) · (Σ_j dy_j w_j x_j) · x_c
    //   dw_c   += dy_c · x_c · r
    for (int64_t r = 0; r < R; r++) {
        const float *x = in + r * C, *dy = dout + r * C;
        float *dx = din + r * C;
        float rs = rstd[r];
        // S = Σ_j (dy_j w_j) x_j: products rounded, then FMA chains, kk sum order
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
        int64_t c = 0;
        for (; c + 32 <= C; c += 32) {
            acc0 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(weight + c)), _mm256_loadu_ps(x + c), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + c + 8), _mm256_loadu_ps(weight + c + 8)), _mm256_loadu_ps(x + c + 8), acc1);
            acc2 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + c + 16), _mm256_loadu_ps(weight + c + 16)), _mm256_loadu_ps(x + c + 16), acc2);
            acc3 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + c + 24), _mm256_loadu_ps(weight + c + 24)), _mm256_loadu_ps(x + c + 24), acc3);
        }
        for (; c + 8 <= C; c += 8)
            acc0 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(dy + c), _mm256_loadu_ps(weight + c)), _mm256_loadu_ps(x + c), acc0);
        if (c < C) {
            __m256i m = kk_mask8(C - c);
            acc0 = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_maskload_ps(dy + c, m), _mm256_maskload_ps(weight + c, m)),
                                   _mm256_maskload_ps(x + c, m), acc0);
        }
        float S = kk_hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
        float k = (rs * rs) * rs * S / (float)C; // r³ S / C
        for (c = 0; c < C; c++) {
            float g = rs * (weight[c] * dy[c]);
            dx[c] += fmaf(-k, x[c], g);
            if (dweight != NULL) dweight[c] += (dy[c] * x[c]) * rs;
        }
    }
}
