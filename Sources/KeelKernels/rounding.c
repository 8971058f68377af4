/*
 * rounding.c — reduced-precision emulation for the sampler (inference engines run bf16,
 * fp16 or fp8 while training runs fp32; paper §1, §7). Values are rounded and kept as
 * float, so the rest of the code stays float32. All round to nearest even.
 */
#include "kk_internal.h"

#include <string.h>

/* bf16: keep the top 16 bits, rounding the dropped 16 to nearest even; NaN made quiet
 * first so truncation cannot turn it into inf. */
KK_INLINE __m256 kk_bf16_8(__m256 x) {
    __m256i u = _mm256_castps_si256(x);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb);
    __m256i quiet = _mm256_or_si256(u, _mm256_set1_epi32(0x00400000));
    __m256 nan = _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
    r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), _mm256_castsi256_ps(quiet), nan));
    return _mm256_castsi256_ps(_mm256_and_si256(r, _mm256_set1_epi32((int)0xFFFF0000u)));
}

void kk_round_bf16(float *x, int64_t n) {
    // x is (n), in place; whole vectors unmasked, the tail masked
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, kk_bf16_8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i mask = kk_mask8(n - i);
        _mm256_maskstore_ps(x + i, mask, kk_bf16_8(_mm256_maskload_ps(x + i, mask)));
    }
}

KK_INLINE __m256 kk_fp16_8(__m256 x) {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

void kk_round_fp16(float *x, int64_t n) {
    // x is (n), in place; F16C conversion honours subnormals and overflows to ±inf
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, kk_fp16_8(_mm256_loadu_ps(x + i)));
    if (i < n) {
        __m256i mask = kk_mask8(n - i);
        _mm256_maskstore_ps(x + i, mask, kk_fp16_8(_mm256_maskload_ps(x + i, mask)));
    }
}

/* ---- 16-bit storage ---------------------------------------------------------------------
 * Whole vectors of 8, then the tail one element at a time (the same conversions). */
void kk_store_bf16(uint16_t *out, const float *in, int64_t n) {
    // out (n) bf16 patterns, in (n)
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_srli_epi32(_mm256_castps_si256(kk_bf16_8(_mm256_loadu_ps(in + i))), 16);
        __m128i lo = _mm256_castsi256_si128(u), hi = _mm256_extracti128_si256(u, 1);
        _mm_storeu_si128((__m128i *)(out + i), _mm_packus_epi32(lo, hi));
    }
    for (; i < n; i++) {
        float f = _mm256_cvtss_f32(kk_bf16_8(_mm256_set1_ps(in[i])));
        uint32_t u;
        memcpy(&u, &f, 4);
        out[i] = (uint16_t)(u >> 16);
    }
}

void kk_load_bf16(float *out, const uint16_t *in, int64_t n) {
    // out (n), in (n) bf16 patterns
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(in + i))), 16);
        _mm256_storeu_ps(out + i, _mm256_castsi256_ps(u));
    }
    for (; i < n; i++) {
        uint32_t u = (uint32_t)in[i] << 16;
        memcpy(out + i, &u, 4);
    }
}

void kk_store_fp16(uint16_t *out, const float *in, int64_t n) {
    // out (n) binary16 patterns, in (n)
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    for (; i < n; i++)
        out[i] = (uint16_t)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(in[i]), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), 0);
}

void kk_load_fp16(float *out, const uint16_t *in, int64_t n) {
    // out (n), in (n) binary16 patterns
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(in + i))));
    for (; i < n; i++) out[i] = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(in[i])));
}

/* e4m3fn (bias 7, no inf, max 448 = 1.75·2^8, min normal 2^-6, subnormal step 2^-9):
 *   |x| ≥ 2^-6: round the float mantissa to 3 bits (drop 20 bits, nearest even; a carry
 *              moves into the exponent correctly)
 *   |x| < 2^-6: round to a multiple of 2^-9 by (|x| + 2^14) − 2^14 (the ulp of 2^14 is 2^-9)
 *   then saturate at 448 (inf too), put the sign back, NaN passes through. */
KK_INLINE __m256 kk_e4m3_8(__m256 x) {
    __m256 sign = _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u)));
    __m256 a = _mm256_andnot_ps(sign, x);
    __m256i u = _mm256_castps_si256(a);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 20), _mm256_set1_epi32(1));
    __m256i rn = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFFF)), lsb);
    __m256 normal = _mm256_castsi256_ps(_mm256_and_si256(rn, _mm256_set1_epi32((int)0xFFF00000u)));
    __m256 big = _mm256_set1_ps(16384.0f);
    __m256 sub = _mm256_sub_ps(_mm256_add_ps(a, big), big);
    __m256 r = _mm256_blendv_ps(normal, sub, _mm256_cmp_ps(a, _mm256_set1_ps(0x1p-6f), _CMP_LT_OQ));
    r = _mm256_min_ps(r, _mm256_set1_ps(448.0f));
    r = _mm256_or_ps(r, sign);
    return _mm256_blendv_ps(r, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

float kk_round_e4m3(float x) { return _mm256_cvtss_f32(kk_e4m3_8(_mm256_set1_ps(x))); }

void kk_quantize_fp8_e4m3_rows(float *w, float *scales, int64_t N, int64_t K) {
    // w is (N,K) in place, scales is (N)
    __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    for (int64_t n = 0; n < N; n++) {
        float *row = w + n * K;
        __m256 vmax = _mm256_setzero_ps();
        for (int64_t i = 0; i < K; i += 8) {
            __m256i mask = kk_mask8(K - i < 8 ? K - i : 8);
            vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_maskload_ps(row + i, mask), absmask));
        }
        float lanes[8], amax = 0.0f;
        _mm256_storeu_ps(lanes, vmax);
        for (int l = 0; l < 8; l++) amax = lanes[l] > amax ? lanes[l] : amax;
        float scale = amax > 0.0f ? amax / 448.0f : 1.0f;
        scales[n] = scale;
        __m256 vs = _mm256_set1_ps(scale);
        for (int64_t i = 0; i < K; i += 8) {
            __m256i mask = kk_mask8(K - i < 8 ? K - i : 8);
            __m256 q = kk_e4m3_8(_mm256_div_ps(_mm256_maskload_ps(row + i, mask), vs));
            _mm256_maskstore_ps(row + i, mask, _mm256_mul_ps(q, vs));
        }
    }
}
