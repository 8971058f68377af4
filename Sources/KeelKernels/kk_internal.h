/*
 * kk_internal.h — private helpers shared by the KeelKernels sources (no stable API):
 * fail-fast checks, lane masks, the kk sum order (kk_dot = kk_hsum8 of kk_dot_lanes;
 * kk_hsum8x8 for eight horizontal sums at once) and the kk exp (kk_exp8). Every helper is a
 * fixed sequence of IEEE operations, so a value computed here is the same wherever it is
 * called from.
 */
#ifndef KK_INTERNAL_H
#define KK_INTERNAL_H

#pragma STDC FP_CONTRACT OFF /* no silent a*b+c fusion: every FMA below is explicit */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "keel_kernels.h"

#if !defined(__AVX2__) || !defined(__FMA__) || !defined(__F16C__)
#error "KeelKernels needs AVX2, FMA and F16C: compile with -mavx2 -mfma -mf16c -ffp-contract=off (in Package.swift: cSettings: [.unsafeFlags([\"-mavx2\", \"-mfma\", \"-mf16c\", \"-ffp-contract=off\"])])"
#endif

#define KK_INLINE static inline __attribute__((always_inline))

/* Fail fast on a caller bug (a contract in keel_kernels.h broken): say which kernel, what
 * was wrong and what to do, then abort. Kernels have no error channel by design. */
#define KK_CHECK(cond, ...)                                                     \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "KeelKernels %s: ", __func__);                      \
            fprintf(stderr, __VA_ARGS__);                                       \
            fprintf(stderr, "\n");                                              \
            abort();                                                            \
        }                                                                       \
    } while (0)

/* all-ones in the first n lanes (0 ≤ n ≤ 8), zeros after */
KK_INLINE __m256i kk_mask8(int64_t n) {
    static const int32_t table[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(table + 8 - n));
}

/* Horizontal sum in the fixed order (l + l+4), then (l + l+2), then (0 + 1). */
KK_INLINE float kk_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* kk_hsum8 of eight vectors at once: lane j of the result is kk_hsum8(v[j]), bit for bit.
 * A transpose lines the lanes up so that every addition has the same two operands as in
 * kk_hsum8 (same pairs, same tree): 7 vector additions for 8 sums instead of 24. */
KK_INLINE __m256 kk_hsum8x8(const __m256 v[8]) {
    /* t_j: lanes 0…3 hold v_j[l] + v_j[l+4] (the 128-bit add of kk_hsum8), 4…7 the same
     * for v_{j+4}: [v_j.lo | v_{j+4}.lo] + [v_j.hi | v_{j+4}.hi] */
    __m256 t0 = _mm256_add_ps(_mm256_permute2f128_ps(v[0], v[4], 0x20), _mm256_permute2f128_ps(v[0], v[4], 0x31));
    __m256 t1 = _mm256_add_ps(_mm256_permute2f128_ps(v[1], v[5], 0x20), _mm256_permute2f128_ps(v[1], v[5], 0x31));
    __m256 t2 = _mm256_add_ps(_mm256_permute2f128_ps(v[2], v[6], 0x20), _mm256_permute2f128_ps(v[2], v[6], 0x31));
    __m256 t3 = _mm256_add_ps(_mm256_permute2f128_ps(v[3], v[7], 0x20), _mm256_permute2f128_ps(v[3], v[7], 0x31));
    /* (l + l+2) for l = 0, 1: u01 = [u_0[0], u_0[1], u_1[0], u_1[1] | the same for 4, 5],
     * u23 likewise for 2, 3 | 6, 7 */
    __m256 u01 = _mm256_add_ps(_mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m256 u23 = _mm256_add_ps(_mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(1, 0, 1, 0)), _mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(3, 2, 3, 2)));
    /* (0 + 1): [u_0[0], u_1[0], u_2[0], u_3[0] | 4…7] + [u_0[1], …] = sums 0…7 in order */
    return _mm256_add_ps(_mm256_shuffle_ps(u01, u23, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(u01, u23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* The 8 lanes of kk_dot(a, b, n) before its horizontal sum: four accumulators in the kk
 * sum order, then (acc0 + acc1) + (acc2 + acc3). kk_dot = kk_hsum8(kk_dot_lanes). */
KK_INLINE __m256 kk_dot_lanes(const float *a, const float *b, int64_t n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    if (i < n) {
        __m256i m = kk_mask8(n - i);
        acc0 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), acc0);
    }
    return _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
}

/* Σ_i a[i]·b[i] in the kk sum order (see keel_kernels.h). */
KK_INLINE float kk_dot(const float *a, const float *b, int64_t n) { return kk_hsum8(kk_dot_lanes(a, b, n)); }

/* The kk exp: exp(x) lane-wise, Cody–Waite reduction by ln 2 and a degree-5 polynomial
 * (the Cephes expf coefficients), ≤ 1 ulp on [−87, 88] (measured: 0.98). Results below
 * 2^-126 (x < −87.34) are flushed to 0, x > 88.37 saturates at ≈ 2.4e38 (never inf),
 * −inf gives 0, NaN stays NaN.
 * Each lane is independent, so one value gives the same bits in any lane. */
KK_INLINE __m256 kk_exp8(__m256 x) {
    /* min/max with the constant first let a NaN in x through */
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
    x = _mm256_max_ps(_mm256_set1_ps(-88.3762626647949f), x);
    /* n = floor(x·log2(e) + 0.5) */
    __m256 n = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f),
                                               _mm256_set1_ps(0.5f)));
    /* r = x − n·ln2 in two pieces (0.693359375 is exact in 9 bits) */
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    /* 2^n by building the exponent field; n = −127 gives exactly 0 */
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* kk exp of one value (the same bits as any lane of kk_exp8) */
KK_INLINE float kk_exp1(float x) { return _mm256_cvtss_f32(kk_exp8(_mm256_set1_ps(x))); }

#endif /* KK_INTERNAL_H */
