/*
 * gemm.c — the fixed-order matrix product kk_gemm (and kk_transpose).
 *
 * C[i,j] (+)= Σ_p A[i,p]·B[p,j] where every C element is one sequential FMA chain over
 * p = 0 … P-1. That single rule is what makes exact mode possible: a row of C depends on
 * its own row of A and on B only, never on M, the tiling or the thread split.
 *
 * How it is fast anyway (GotoBLAS/BLIS structure, AVX2 + FMA):
 *   for jc in N by NC:            B block (kc × nc) packed into 16-column panels
 *     for pc in P by KC:          (C is the running sum between pc blocks: storing and
 *       pack B                     reloading a float does not change the chain)
 *       for ic in M by MC:        A block (mc × kc) packed into 6-row panels
 *         pack A
 *         for jr in nc by 16:     16-column B panel (kc·16 floats) stays in L1
 *           for ir in mc by 6:    6 × 16 micro-kernel: 12 ymm accumulators, per p one
 *                                 2-vector load of B and 6 broadcasts of A
 * Edges: rows past M are padded with zeros in the A panel and never stored; columns past N
 * are zero in the B panel and never stored (masked store). Every lane runs the same FMA
 * chain whatever its neighbours do, so edges give the same bits as interior elements.
 * Small products (the sampler's decode steps, B in L2; see kk_use_direct) skip packing and
 * run the same micro-kernel on A and B in place (masked B loads on the last panel).
 */
#define _POSIX_C_SOURCE 200809L
#include "kk_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Block sizes: measured on one core (Xeon with 2 MB L2); within noise of each other from
 * KC 256–512, MC 96–240. KK_DIRECT_BYTES: B (and A) below this fit in L2 and are read
 * in place faster than packed. */
enum {
    KK_MR = 6,                   /* micro-kernel rows */
    KK_NR = 16,                  /* micro-kernel columns (2 ymm) */
    KK_KC = 256,                 /* p block: B panel 256·16·4 = 16 KB in L1 */
    KK_MC = 144,                 /* A block 144·256·4 = 144 KB in L2 */
    KK_NC = 512,                 /* B block 256·512·4 = 512 KB in L2 */
    KK_SMALL_M = 16,             /* below this many rows, never pack */
    KK_DIRECT_BYTES = 512 << 10, /* see kk_use_direct */
};

/* Packing pays when B is too big for L2 (the direct loop streams it once per 6 rows), or
 * when A is big and re-read for each of many 16-column panels. Measured on one core: direct
 * 86 vs packed 72–78 GFLOP/s for B ≤ 256 KB with small A or N ≤ 64; packed 69 vs direct 41
 * for B = 4 MB; packed 83 vs direct 70 for A = 2 MB, N = 512. */
static int kk_use_direct(int64_t M, int64_t N, int64_t P) {
    int64_t a_bytes = 4 * M * P, b_bytes = 4 * P * N;
    return M < KK_SMALL_M || (b_bytes <= KK_DIRECT_BYTES && (a_bytes <= KK_DIRECT_BYTES || N <= 64));
}

/* ---- per-thread packing buffer ---------------------------------------------------------
 * One buffer of KC·NC + MC·KC floats per thread, allocated on the thread's first large
 * kk_gemm and freed by the key's destructor when the thread exits. */
static pthread_key_t kk_pack_key;
static pthread_once_t kk_pack_once = PTHREAD_ONCE_INIT;
static int kk_pack_key_ok = 0;

static void kk_pack_key_create(void) { kk_pack_key_ok = pthread_key_create(&kk_pack_key, free) == 0; }

static float *kk_pack_buffer(void) {
    pthread_once(&kk_pack_once, kk_pack_key_create);
    if (!kk_pack_key_ok) return NULL;
    float *buf = pthread_getspecific(kk_pack_key);
    if (buf == NULL) {
        size_t bytes = sizeof(float) * ((size_t)KK_KC * KK_NC + (size_t)KK_MC * KK_KC);
        buf = aligned_alloc(64, bytes);
        if (buf == NULL) return NULL;
        if (pthread_setspecific(kk_pack_key, buf) != 0) { free(buf); return NULL; }
    }
    return buf;
}

/* ---- micro-kernel -----------------------------------------------------------------------
 * C tile (MR rows × up to 16 columns) (+)= A (MR × kc) · B (kc × 16).
 * A element (r,p) at A[r*ars + p*acs], B row p at B + p*bs. n_valid < 16 masks the C
 * load/store (and the B loads if b_masked). MR, full and b_masked are compile-time
 * constants at every call site, so the loops over r unroll and the accumulators live in
 * registers. Per element: c = load_c ? C : 0, then c = fma(A[r,p], B[p,j], c) for p = 0…kc-1. */
KK_INLINE void kk_microkernel(const int MR, const int full, const int b_masked,
                              const float *A, int64_t ars, int64_t acs,
                              const float *B, int64_t bs,
                              float *C, int64_t ldc, int64_t kc, int load_c, int64_t n_valid) {
    __m256 c0[KK_MR], c1[KK_MR];
    __m256i m0 = full ? _mm256_set1_epi32(-1) : kk_mask8(n_valid < 8 ? n_valid : 8);
    __m256i m1 = full ? _mm256_set1_epi32(-1) : kk_mask8(n_valid > 8 ? n_valid - 8 : 0);
    for (int r = 0; r < MR; r++) {
        if (load_c) {
            c0[r] = full ? _mm256_loadu_ps(C + r * ldc) : _mm256_maskload_ps(C + r * ldc, m0);
            c1[r] = full ? _mm256_loadu_ps(C + r * ldc + 8) : _mm256_maskload_ps(C + r * ldc + 8, m1);
        } else {
            c0[r] = _mm256_setzero_ps();
            c1[r] = _mm256_setzero_ps();
        }
    }
    for (int64_t p = 0; p < kc; p++) {
        const float *b = B + p * bs;
        __m256 b0 = b_masked ? _mm256_maskload_ps(b, m0) : _mm256_loadu_ps(b);
        __m256 b1 = b_masked ? _mm256_maskload_ps(b + 8, m1) : _mm256_loadu_ps(b + 8);
        const float *a = A + p * acs;
        for (int r = 0; r < MR; r++) {
            __m256 ar = _mm256_broadcast_ss(a + r * ars);
            c0[r] = _mm256_fmadd_ps(ar, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(ar, b1, c1[r]);
        }
    }
    for (int r = 0; r < MR; r++) {
        if (full) {
            _mm256_storeu_ps(C + r * ldc, c0[r]);
            _mm256_storeu_ps(C + r * ldc + 8, c1[r]);
        } else {
            _mm256_maskstore_ps(C + r * ldc, m0, c0[r]);
            _mm256_maskstore_ps(C + r * ldc + 8, m1, c1[r]);
        }
    }
}

typedef void (*kk_packed_kernel)(const float *Ap, const float *Bp, float *C, int64_t ldc,
                                 int64_t kc, int load_c, int64_t n_valid);
typedef void (*kk_direct_kernel)(const float *A, int64_t ars, int64_t acs, const float *B,
                                 int64_t ldb, float *C, int64_t ldc, int64_t kc, int load_c,
                                 int64_t n_valid);

/* packed: A panel is (kc, 6), B panel is (kc, 16), both contiguous */
#define KK_DEFINE_KERNELS(MR)                                                                  \
    static void kk_packed_##MR(const float *Ap, const float *Bp, float *C, int64_t ldc,       \
                               int64_t kc, int load_c, int64_t n_valid) {                      \
        if (n_valid == KK_NR) kk_microkernel(MR, 1, 0, Ap, 1, KK_MR, Bp, KK_NR, C, ldc, kc, load_c, KK_NR); \
        else kk_microkernel(MR, 0, 0, Ap, 1, KK_MR, Bp, KK_NR, C, ldc, kc, load_c, n_valid);  \
    }                                                                                          \
    static void kk_direct_##MR(const float *A, int64_t ars, int64_t acs, const float *B,      \
                               int64_t ldb, float *C, int64_t ldc, int64_t kc, int load_c,     \
                               int64_t n_valid) {                                              \
        if (n_valid == KK_NR) kk_microkernel(MR, 1, 0, A, ars, acs, B, ldb, C, ldc, kc, load_c, KK_NR); \
        else kk_microkernel(MR, 0, 1, A, ars, acs, B, ldb, C, ldc, kc, load_c, n_valid);      \
    }
KK_DEFINE_KERNELS(1)
KK_DEFINE_KERNELS(2)
KK_DEFINE_KERNELS(3)
KK_DEFINE_KERNELS(4)
KK_DEFINE_KERNELS(5)
KK_DEFINE_KERNELS(6)
static const kk_packed_kernel kk_packed[KK_MR + 1] = {0, kk_packed_1, kk_packed_2, kk_packed_3,
                                                      kk_packed_4, kk_packed_5, kk_packed_6};
static const kk_direct_kernel kk_direct[KK_MR + 1] = {0, kk_direct_1, kk_direct_2, kk_direct_3,
                                                      kk_direct_4, kk_direct_5, kk_direct_6};

/* Bp ← B[0:kc, 0:nc] as 16-column panels, panel q = (kc, 16) at Bp + q·kc·16, zero padded */
static void kk_pack_B(float *Bp, const float *B, int64_t ldb, int64_t kc, int64_t nc) {
    for (int64_t j = 0; j < nc; j += KK_NR) {
        int64_t w = nc - j < KK_NR ? nc - j : KK_NR;
        float *dst = Bp + j * kc;
        if (w == KK_NR) {
            for (int64_t p = 0; p < kc; p++) {
                _mm256_store_ps(dst + p * KK_NR, _mm256_loadu_ps(B + p * ldb + j));
                _mm256_store_ps(dst + p * KK_NR + 8, _mm256_loadu_ps(B + p * ldb + j + 8));
            }
        } else {
            __m256i m0 = kk_mask8(w < 8 ? w : 8), m1 = kk_mask8(w > 8 ? w - 8 : 0);
            for (int64_t p = 0; p < kc; p++) {
                _mm256_store_ps(dst + p * KK_NR, _mm256_maskload_ps(B + p * ldb + j, m0));
                _mm256_store_ps(dst + p * KK_NR + 8, _mm256_maskload_ps(B + p * ldb + j + 8, m1));
            }
        }
    }
}

/* Ap ← A[0:mc, 0:kc] as 6-row panels, panel q = (kc, 6) at Ap + q·kc·6, zero padded */
static void kk_pack_A(float *Ap, const float *A, int64_t ars, int64_t acs, int64_t mc, int64_t kc) {
    for (int64_t i = 0; i < mc; i += KK_MR) {
        int64_t h = mc - i < KK_MR ? mc - i : KK_MR;
        float *dst = Ap + i * kc;
        const float *src = A + i * ars;
        if (h == KK_MR && ars == 1) {
            /* transposed A (weight gradient): the 6 rows of one p are adjacent */
            for (int64_t p = 0; p < kc; p++) {
                _mm_storeu_ps(dst + p * KK_MR, _mm_loadu_ps(src + p * acs));
                _mm_storel_pi((__m64 *)(dst + p * KK_MR + 4), _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(src + p * acs + 4))));
            }
        } else if (h == KK_MR && acs == 1) {
            /* row-major A (activations): 4 p at a time, rows 0–3 by a 4×4 transpose, rows
             * 4–5 interleaved pairwise; the p tail one by one */
            const float *s0 = src, *s1 = src + ars, *s2 = src + 2 * ars, *s3 = src + 3 * ars,
                        *s4 = src + 4 * ars, *s5 = src + 5 * ars;
            int64_t p = 0;
            for (; p + 4 <= kc; p += 4) {
                __m128 r0 = _mm_loadu_ps(s0 + p), r1 = _mm_loadu_ps(s1 + p), r2 = _mm_loadu_ps(s2 + p),
                       r3 = _mm_loadu_ps(s3 + p), r4 = _mm_loadu_ps(s4 + p), r5 = _mm_loadu_ps(s5 + p);
                _MM_TRANSPOSE4_PS(r0, r1, r2, r3); /* r_q = rows 0–3 at p + q */
                __m128 lo = _mm_unpacklo_ps(r4, r5), hi = _mm_unpackhi_ps(r4, r5);
                float *d = dst + p * KK_MR;
                _mm_storeu_ps(d, r0);
                _mm_storel_pi((__m64 *)(d + 4), lo);
                _mm_storeu_ps(d + 6, r1);
                _mm_storeh_pi((__m64 *)(d + 10), lo);
                _mm_storeu_ps(d + 12, r2);
                _mm_storel_pi((__m64 *)(d + 16), hi);
                _mm_storeu_ps(d + 18, r3);
                _mm_storeh_pi((__m64 *)(d + 22), hi);
            }
            for (; p < kc; p++) {
                float *d = dst + p * KK_MR;
                d[0] = s0[p], d[1] = s1[p], d[2] = s2[p], d[3] = s3[p], d[4] = s4[p], d[5] = s5[p];
            }
        } else {
            for (int r = 0; r < KK_MR; r++) {
                if (r < h) for (int64_t p = 0; p < kc; p++) dst[p * KK_MR + r] = src[r * ars + p * acs];
                else for (int64_t p = 0; p < kc; p++) dst[p * KK_MR + r] = 0.0f;
            }
        }
    }
}

/* No packing: the micro-kernel reads A and B where they are (one chain per element over
 * the whole P, so no p blocking). */
static void kk_gemm_direct(float *C, const float *A, const float *B, int64_t M, int64_t N,
                           int64_t P, int64_t ars, int64_t acs, int64_t ldb, int64_t ldc,
                           int accumulate) {
    for (int64_t j = 0; j < N; j += KK_NR) {
        int64_t w = N - j < KK_NR ? N - j : KK_NR;
        for (int64_t i = 0; i < M; i += KK_MR) {
            int64_t h = M - i < KK_MR ? M - i : KK_MR;
            kk_direct[h](A + i * ars, ars, acs, B + j, ldb, C + i * ldc + j, ldc, P, accumulate, w);
        }
    }
}

void kk_gemm(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t P,
             int64_t a_row_stride, int64_t a_col_stride, int64_t ldb, int64_t ldc,
             int accumulate) {
    // C is (M,N), A is (M,P) with strides (a_row_stride, a_col_stride), B is (P,N)
    if (M <= 0 || N <= 0) return;
    if (P <= 0) {
        if (!accumulate)
            for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
        return;
    }
    float *buf = kk_use_direct(M, N, P) ? NULL : kk_pack_buffer();
    if (buf == NULL) {
        kk_gemm_direct(C, A, B, M, N, P, a_row_stride, a_col_stride, ldb, ldc, accumulate);
        return;
    }
    float *Bp = buf, *Ap = buf + (size_t)KK_KC * KK_NC;
    for (int64_t jc = 0; jc < N; jc += KK_NC) {
        int64_t nc = N - jc < KK_NC ? N - jc : KK_NC;
        for (int64_t pc = 0; pc < P; pc += KK_KC) {
            int64_t kc = P - pc < KK_KC ? P - pc : KK_KC;
            int load_c = accumulate || pc > 0; /* continue the chain stored in C */
            kk_pack_B(Bp, B + pc * ldb + jc, ldb, kc, nc);
            for (int64_t ic = 0; ic < M; ic += KK_MC) {
                int64_t mc = M - ic < KK_MC ? M - ic : KK_MC;
                kk_pack_A(Ap, A + ic * a_row_stride + pc * a_col_stride, a_row_stride,
                          a_col_stride, mc, kc);
                for (int64_t jr = 0; jr < nc; jr += KK_NR) {
                    int64_t w = nc - jr < KK_NR ? nc - jr : KK_NR;
                    for (int64_t ir = 0; ir < mc; ir += KK_MR) {
                        int64_t h = mc - ir < KK_MR ? mc - ir : KK_MR;
                        kk_packed[h](Ap + ir * kc, Bp + jr * kc,
                                     C + (ic + ir) * ldc + jc + jr, ldc, kc, load_c, w);
                    }
                }
            }
        }
    }
}

/* out[c·ldo + r] = in[r·ldi + c] for an 8×8 block: eight row loads, the classic unpack /
 * shuffle / permute transpose, eight row stores */
KK_INLINE void kk_transpose8x8(float *out, int64_t ldo, const float *in, int64_t ldi) {
    __m256 r0 = _mm256_loadu_ps(in), r1 = _mm256_loadu_ps(in + ldi), r2 = _mm256_loadu_ps(in + 2 * ldi),
           r3 = _mm256_loadu_ps(in + 3 * ldi), r4 = _mm256_loadu_ps(in + 4 * ldi), r5 = _mm256_loadu_ps(in + 5 * ldi),
           r6 = _mm256_loadu_ps(in + 6 * ldi), r7 = _mm256_loadu_ps(in + 7 * ldi);
    __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
           t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
           t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE), u2 = _mm256_shuffle_ps(t1, t3, 0x44),
           u3 = _mm256_shuffle_ps(t1, t3, 0xEE), u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
           u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(out, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(out + ldo, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(out + 2 * ldo, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(out + 3 * ldo, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(out + 4 * ldo, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(out + 5 * ldo, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(out + 6 * ldo, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(out + 7 * ldo, _mm256_permute2f128_ps(u3, u7, 0x31));
}

void kk_transpose(float *out, const float *in, int64_t R, int64_t C) {
    // out is (C,R), in is (R,C); 32×32 blocks keep both sides in cache; whole 8×8 tiles by
    // kk_transpose8x8, the edges element by element
    for (int64_t r0 = 0; r0 < R; r0 += 32)
        for (int64_t c0 = 0; c0 < C; c0 += 32) {
            int64_t r1 = r0 + 32 < R ? r0 + 32 : R, c1 = c0 + 32 < C ? c0 + 32 : C;
            int64_t r8 = r0 + (r1 - r0) / 8 * 8, c8 = c0 + (c1 - c0) / 8 * 8;
            for (int64_t r = r0; r < r8; r += 8)
                for (int64_t c = c0; c < c8; c += 8) kk_transpose8x8(out + c * R + r, R, in + r * C + c, C);
            for (int64_t r = r0; r < r1; r++)
                for (int64_t c = (r < r8 ? c8 : c0); c < c1; c++) out[c * R + r] = in[r * C + c];
        }
}
