/*
 * adamw.c — the AdamW update (PyTorch's torch.optim.AdamW formula, decoupled weight decay,
 * bias correction with a 1-based step). Bias corrections are computed in double and
 * rounded to float once per call; the elementwise part is float with explicit FMA.
 */
#include "kk_internal.h"

void kk_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
              float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    // param, grad, m, v are (n)
    KK_CHECK(step >= 1, "step = %lld: the AdamW step is 1-based (first update is step 1)", (long long)step);
    float decay = (float)(1.0 - (double)lr * weight_decay);
    float step_size = (float)((double)lr / (1.0 - pow(beta1, (double)step)));
    float bc2_sqrt = (float)sqrt(1.0 - pow(beta2, (double)step));
    __m256 vdecay = _mm256_set1_ps(decay), vb1 = _mm256_set1_ps(beta1), vb2 = _mm256_set1_ps(beta2);
    __m256 v1b1 = _mm256_set1_ps(1.0f - beta1), v1b2 = _mm256_set1_ps(1.0f - beta2);
    __m256 vstep = _mm256_set1_ps(step_size), vbc2 = _mm256_set1_ps(bc2_sqrt), veps = _mm256_set1_ps(eps);
    for (int64_t i = 0; i < n; i += 8) {
        __m256i mask = kk_mask8(n - i < 8 ? n - i : 8);
        __m256 g = _mm256_maskload_ps(grad + i, mask);
        // m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
        __m256 mi = _mm256_fmadd_ps(vb1, _mm256_maskload_ps(m + i, mask), _mm256_mul_ps(v1b1, g));
        __m256 vi = _mm256_fmadd_ps(vb2, _mm256_maskload_ps(v + i, mask), _mm256_mul_ps(v1b2, _mm256_mul_ps(g, g)));
        // p = p·(1 − lr·wd) − step_size · m / (sqrt(v)/sqrt(bc2) + eps)
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc2), veps);
        __m256 p = _mm256_mul_ps(_mm256_maskload_ps(param + i, mask), vdecay);
        p = _mm256_fnmadd_ps(vstep, _mm256_div_ps(mi, denom), p);
        _mm256_maskstore_ps(m + i, mask, mi);
        _mm256_maskstore_ps(v + i, mask, vi);
        _mm256_maskstore_ps(param + i, mask, p);
    }
}
