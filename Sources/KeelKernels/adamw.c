/*
 * adamw.c — the AdamW update (PyTorch's torch.optim.AdamW formula, decoupled weight decay,
 * bias correction with a 1-based step). Bias corrections are computed in double and
 * rounded to float once per call; the elementwise part is float with explicit FMA.
 */
#include "kk_internal.h"

typedef struct { __m256 decay, b1, b2, one_minus_b1, one_minus_b2, step_size, bc2_sqrt, eps; } adamw_consts;

// One vector of 8 elements: m, v and p updated in place (registers; the caller loads and stores).
static inline void adamw8(const adamw_consts *c, __m256 g, __m256 *m, __m256 *v, __m256 *p) {
    // m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
    *m = _mm256_fmadd_ps(c->b1, *m, _mm256_mul_ps(c->one_minus_b1, g));
    *v = _mm256_fmadd_ps(c->b2, *v, _mm256_mul_ps(c->one_minus_b2, _mm256_mul_ps(g, g)));
    // p = p·(1 − lr·wd) − step_size · m / (sqrt(v)/sqrt(bc2) + eps)
    __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(*v), c->bc2_sqrt), c->eps);
    *p = _mm256_fnmadd_ps(c->step_size, _mm256_div_ps(*m, denom), _mm256_mul_ps(*p, c->decay));
}

void kk_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
              float beta1, float beta2, float eps, float weight_decay, int64_t step) {
    // param, grad, m, v are (n)
    KK_CHECK(step >= 1, "step = %lld: the AdamW step is 1-based (first update is step 1)", (long long)step);
    const adamw_consts c = {
        .decay = _mm256_set1_ps((float)(1.0 - (double)lr * weight_decay)),
        .b1 = _mm256_set1_ps(beta1), .b2 = _mm256_set1_ps(beta2),
        .one_minus_b1 = _mm256_set1_ps(1.0f - beta1), .one_minus_b2 = _mm256_set1_ps(1.0f - beta2),
        .step_size = _mm256_set1_ps((float)((double)lr / (1.0 - pow(beta1, (double)step)))),
        .bc2_sqrt = _mm256_set1_ps((float)sqrt(1.0 - pow(beta2, (double)step))),
        .eps = _mm256_set1_ps(eps)};
    // Whole vectors with plain loads and stores (a masked store is microcoded and slow on AMD's
    // CPUs: it was most of this kernel's time there); the tail, if any, masked.
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 mi = _mm256_loadu_ps(m + i), vi = _mm256_loadu_ps(v + i), p = _mm256_loadu_ps(param + i);
        adamw8(&c, _mm256_loadu_ps(grad + i), &mi, &vi, &p);
        _mm256_storeu_ps(m + i, mi); _mm256_storeu_ps(v + i, vi); _mm256_storeu_ps(param + i, p);
    }
    if (i < n) {
        __m256i mask = kk_mask8(n - i);
        __m256 mi = _mm256_maskload_ps(m + i, mask), vi = _mm256_maskload_ps(v + i, mask);
        __m256 p = _mm256_maskload_ps(param + i, mask);
        adamw8(&c, _mm256_maskload_ps(grad + i, mask), &mi, &vi, &p);
        _mm256_maskstore_ps(m + i, mask, mi); _mm256_maskstore_ps(v + i, mask, vi);
        _mm256_maskstore_ps(param + i, mask, p);
    }
}
