/*
 * keel_kernels.h — KeelKernels: the float32 numeric kernels under Keel's Qwen3-family policy.
 *
 * Everything the model needs that is not bookkeeping: the matrix product, RMSNorm, RoPE,
 * causal grouped-query attention, SwiGLU, log-softmax / log-prob / entropy, top-k MoE
 * routing, AdamW and reduced-precision rounding. Each forward sits beside its backward in
 * one file per idea (gemm.c, rmsnorm.c, rope.c, attention.c, swiglu.c, softmax.c,
 * routing.c, adamw.c, rounding.c). Build flags: -std=c11 -O3 -mavx2 -mfma -mf16c
 * -ffp-contract=off (AVX2 + FMA + F16C only; never AVX-512).
 *
 * Conventions (they hold for every function below):
 *  - float32, row-major, contiguous unless a stride argument says otherwise.
 *  - Arguments: outputs first, then saved activations, then inputs, then weights, dims last.
 *    Shape vocabulary: R rows, C channels, T time (positions of one sequence), H query heads,
 *    KV key/value heads, D head_dim, F FFN width, V vocab, E experts, k experts per token.
 *  - Backward functions ACCUMULATE (+=) into gradient buffers unless the comment says
 *    OVERWRITE or IN PLACE. Zero them first.
 *  - Single-threaded, no global mutable state (kk_gemm keeps one packing buffer per thread).
 *    The caller parallelises by calling a kernel on disjoint row ranges. Outputs that sum
 *    over rows (kk_rmsnorm_backward's dweight, kk_router_aux_loss, kk_attention_backward's
 *    dk/dv) are NOT safe to share between concurrent calls: give each thread its own buffer
 *    and add them up in a fixed order.
 *  - EXACT MODE: every output element is computed by a fixed sequence of IEEE float
 *    operations (explicit FMA, documented reduction orders) that depends only on that
 *    element's own inputs and on the sizes of the reductions it contains — never on how many
 *    rows are in the call, on tiling, on the thread split, or on whether keys come from a KV
 *    cache. Computing row i alone or inside any batch gives the same bits.
 *  - Buffers must not alias unless a comment says "in place".
 *  - Reductions over a vector of length n use one fixed order ("the kk sum order"): four
 *    8-lane accumulators, accumulator a takes elements 32·b + 8·a + lane (b = 0, 1, …) by FMA
 *    in increasing b; then elements 32·⌊n/32⌋ … 8·⌊n/8⌋−1 go 8 at a time into accumulator 0,
 *    then the last n mod 8 (masked, missing lanes add exact zeros) into accumulator 0; then
 *    (acc0 + acc1) + (acc2 + acc3), then lanes (l + l+4), then (l + l+2), then (0 + 1).
 */
#ifndef KEEL_KERNELS_H
#define KEEL_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- gemm.c -----------------------------------------------------------------------------
 * C[i,j] (+)= Σ_{p=0..P-1} A[i*a_row_stride + p*a_col_stride] * B[p*ldb + j]
 * C is (M,N) with row stride ldc; B is (P,N) with row stride ldb and unit column stride.
 * Every C element is ONE sequential FMA chain over p = 0, 1, …, P-1, starting from 0
 * (accumulate == 0) or from the C value already there (accumulate != 0). So C[i,j] depends
 * only on row i of A, column j of B and P: bit-identical for any M, any row split.
 * Uses:  forward      out[M,N]  = in[M,K] · Wt[K,N]     (a_row_stride=K, a_col_stride=1)
 *        input grad   dIn[M,K] += dOut[M,N] · W[N,K]    (a_row_stride=N, a_col_stride=1)
 *        weight grad  dW[N,K]  += dOut^T · in           (A = dOut read transposed:
 *                                  M=N_out rows, P=tokens, a_row_stride=1, a_col_stride=N_out)
 * Products whose B (P·N floats) is over 512 KB, or whose A is over 512 KB with N > 64, pack
 * A and B into a per-thread buffer (656 KB, allocated on a thread's first such call, freed
 * at thread exit); the rest (e.g. every M < 16 decode step) read A and B in place. Either
 * way the bits are the same. P == 0 writes zeros (or leaves C unchanged when accumulating).
 * C must not overlap A or B. */
void kk_gemm(float *C, const float *A, const float *B, int64_t M, int64_t N, int64_t P,
             int64_t a_row_stride, int64_t a_col_stride, int64_t ldb, int64_t ldc,
             int accumulate);

/* out[C,R] = in[R,C]^T (exact copy). Keeps W[N,K] and Wt[K,N] in step after an update. */
void kk_transpose(float *out, const float *in, int64_t R, int64_t C);

/* ---- rmsnorm.c --------------------------------------------------------------------------
 * out[r,c] = (in[r,c] * rstd[r]) * weight[c],  rstd[r] = 1 / sqrtf(Σ_c in[r,c]² / C + eps)
 * (sum of squares in the kk sum order). rstd may be NULL (inference). May run in place
 * (out == in). Serves the layer norms
 * (C = hidden) and the per-head q/k norms (R = rows·heads, C = head_dim). */
void kk_rmsnorm_forward(float *out, float *rstd, const float *in, const float *weight,
                        int64_t R, int64_t C, float eps);
/* din += ∂L/∂in, dweight += ∂L/∂weight (dweight may be NULL); rstd from the forward. */
void kk_rmsnorm_backward(float *din, float *dweight, const float *dout, const float *in,
                         const float *weight, const float *rstd, int64_t R, int64_t C);

/* ---- rope.c -----------------------------------------------------------------------------
 * Rotary embedding, half-split pairs (i, i + D/2), i < D/2, IN PLACE on x (R, nheads, D):
 *   angle = positions[r] · theta^(−2i/D)  (double), c = (float)cos(angle), s = (float)sin(angle)
 *   x[i]       ← fmaf(−x[i+D/2], s, x[i]·c)
 *   x[i + D/2] ← fmaf( x[i],     s, x[i+D/2]·c)
 * The backward rotates by −angle, IN PLACE on the gradient (it does not accumulate).
 * D must be even (and ≤ 1024 for the direct variants, which keep one row's cos/sin on the
 * stack). The table variants read cos/sin from kk_rope_table and give the same bits as the
 * direct ones; the model should use them (no pow/cos/sin per row). */
void kk_rope_forward(float *x, const int32_t *positions, int64_t R, int nheads, int D,
                     double theta);
void kk_rope_backward(float *dx, const int32_t *positions, int64_t R, int nheads, int D,
                      double theta);
/* cos_table, sin_table are (maxpos, D/2): entry [pos, i] for positions 0 … maxpos-1. */
void kk_rope_table(float *cos_table, float *sin_table, int64_t maxpos, int D, double theta);
/* every positions[r] must be < maxpos of the table */
void kk_rope_forward_table(float *x, const int32_t *positions, const float *cos_table,
                           const float *sin_table, int64_t R, int nheads, int D);
void kk_rope_backward_table(float *dx, const int32_t *positions, const float *cos_table,
                            const float *sin_table, int64_t R, int nheads, int D);

/* ---- attention.c ------------------------------------------------------------------------
 * Causal grouped-query attention on ONE row function, so a decode step against a KV cache
 * and the full-sequence training forward give the same bits.
 * kk_attention_row_forward: one query position against n_keys keys.
 *   out (H,D), lse (H) (may be NULL), q (H,D); key j of kv head g is at
 *   k + j*kv_row_stride + g*D (likewise v). Query head h uses kv head h / (H/KV).
 *   s_j = scale · dot(q_h, k_j)        (dot in the kk sum order over D)
 *   m = max_j s_j (a −0 max reads +0); e_j = exp(s_j − m) with the kk exp (≤ 1 ulp; results
 *   below 2^-126 flush to 0)
 *   l = Σ_j e_j                        (scalar, sequential j = 0, 1, …)
 *   out_h[d] = (Σ_j e_j · v_j[d]) / l  (one FMA chain per d, sequential j)
 *   lse_h = m + logf(l)
 * H must be a multiple of KV; D ≤ 1024; n_keys ≥ 1. No heap memory; up to 2048 keys
 * are scored once into a stack buffer, beyond that scores are recomputed (same bits). */
void kk_attention_row_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, int64_t kv_row_stride, int64_t n_keys,
                              int H, int KV, int D, float scale);
/* One sequence: out (T,H,D), lse (T,H), q (T,H,D), k, v (T,KV,D). Row t is exactly
 * kk_attention_row_forward with n_keys = t+1 and kv_row_stride = KV*D. */
void kk_attention_forward(float *out, float *lse, const float *q, const float *k,
                          const float *v, int64_t T, int H, int KV, int D, float scale);
/* dq (T,H,D), dk, dv (T,KV,D) all accumulate; p is recomputed from q, k and the saved lse.
 * Writes dk/dv of every earlier position: one call per sequence per thread. */
void kk_attention_backward(float *dq, float *dk, float *dv, const float *dout,
                           const float *q, const float *k, const float *v, const float *lse,
                           int64_t T, int H, int KV, int D, float scale);

/* ---- swiglu.c ---------------------------------------------------------------------------
 * out[r,f] = silu(gate[r,f]) · up[r,f],  silu(g) = g · (1 / (1 + exp(−g))) with the kk exp.
 * Elementwise; the forward may run in place (out == gate or out == up). */
void kk_swiglu_forward(float *out, const float *gate, const float *up, int64_t R, int64_t F);
void kk_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                        const float *up, int64_t R, int64_t F);

/* ---- softmax.c --------------------------------------------------------------------------
 * Row r over V logits, temperature as its inverse: s_j = logits[j] · inv_temperature,
 *   m = max_j s_j, Z = Σ_j exp(s_j − m) (one 8-lane accumulator, lane l takes j ≡ l mod 8 in
 *   increasing j, then lanes added as in the kk sum order), lse = m + logf(Z),
 *   logp[r] = s_target − lse,  entropy[r] = logf(Z) − Σ_j e_j·(s_j − m) / Z.
 * entropy may be NULL; lse (R) is saved for the backward. All three log-prob entry points
 * share one row routine: the same row gives the same bits in each. */
void kk_logprob_entropy_forward(float *logp, float *entropy, float *lse,
                                const float *logits, const int32_t *targets,
                                int64_t R, int64_t V, float inv_temperature);
/* dlogits (R,V) OVERWRITTEN: dlogp[r] · inv_temperature · (onehot(target) − softmax). */
void kk_logprob_backward(float *dlogits, const float *dlogp, const float *logits,
                         const int32_t *targets, const float *lse, int64_t R, int64_t V,
                         float inv_temperature);
/* Distribution terms of row r (ABI 1.1 objectives), with p_j = exp(s_j − lse[r]) and the
 * entropy H[r] as kk_logprob_entropy_forward gives it. 8 lanes over j (the forward sums in double).
 * KL to another distribution q, given as log-probs logq (R,V) (another model's
 * kk_logsoftmax_row at the same temperature): kl[r] = Σ_j p_j (s_j − lse − logq_j). */
void kk_kl_forward(float *kl, const float *logits, const float *lse, const float *logq,
                   int64_t R, int64_t V, float inv_temperature);
/* dlogits (R,V) ACCUMULATED: += inv_temperature · dentropy[r] · ∂H/∂s_j
 *   = −inv_temperature · dentropy[r] · p_j (log p_j + H[r]). */
void kk_entropy_backward(float *dlogits, const float *dentropy, const float *logits,
                         const float *lse, const float *entropy, int64_t R, int64_t V,
                         float inv_temperature);
/* dlogits (R,V) ACCUMULATED: += inv_temperature · dkl[r] · p_j (log p_j − logq_j − kl[r]). */
void kk_kl_backward(float *dlogits, const float *dkl, const float *logits, const float *lse,
                    const float *logq, const float *kl, int64_t R, int64_t V,
                    float inv_temperature);
/* Sampler: out[j] = s_j − lse for the whole row; returns lse. */
float kk_logsoftmax_row(float *out, const float *logits, int64_t V, float inv_temperature);
/* Sampler and router: probs[j] = exp(s_j − m) / Z (same m, Z as above); returns lse. */
float kk_softmax_row(float *probs, const float *logits, int64_t V, float inv_temperature);

/* ---- routing.c --------------------------------------------------------------------------
 * MoE top-k routing. probs (R,E) = kk_softmax_row of each row of router_logits (R,E).
 * Natural choice (forced == NULL): the k largest probabilities, slots in DESCENDING
 *   probability, ties → lower expert index first.
 * Replay (forced != NULL, (R,k)): experts[r,:] = forced[r,:] copied in the GIVEN slot order
 *   (indices must be distinct and in [0,E)); no re-sorting.
 * gates[r,s] = p[e_s] / Σ_{s'} p[e_s'] if norm_topk_prob, else p[e_s]  (sum in slot order).
 * experts and forced may be the same buffer. */
void kk_router_forward(int32_t *experts, float *gates, float *probs,
                       const float *router_logits, const int32_t *forced,
                       int64_t R, int E, int k, int norm_topk_prob);
/* dlogits (R,E) += exact gradient of the gates through the renormalisation and softmax. */
void kk_router_backward(float *dlogits, const float *dgates, const float *probs,
                        const int32_t *experts, int64_t R, int E, int k, int norm_topk_prob);
/* Load-balancing loss, Switch / HF Qwen3-MoE style, over the R rows of this call:
 *   loss = coef · E · Σ_e f_e · P_e,  f_e = (number of slots routed to e) / R  (Σ_e f_e = k,
 *   as HF's load_balancing_loss_func), P_e = Σ_r probs[r,e] / R.
 * f is a constant; if dlogits != NULL it accumulates ∂loss/∂router_logits. Returns loss.
 * f and P are batch statistics: call it once over all rows of the batch (for one layer, or
 * over the rows of all layers stacked as HF does), not per thread's row range. E ≤ 1024. */
float kk_router_aux_loss(float *dlogits, const float *probs, const int32_t *experts,
                         int64_t R, int E, int k, float coef);

/* The expert combination and its gate gradient (forward beside backward), shared by the
 * training engine and the sampler so both sum the experts identically:
 * kk_moe_combine: out (R,C), y (R,k,C) expert outputs per (row, slot), gates (R,k):
 *   out[r,i] = fma chain over slots s = 0…k−1 from 0: o ← fma(gates[r,s], y[r,s,i], o).
 * kk_moe_gate_grad: dgates (R,k) = ⟨dout[r,:], y[r,s,:]⟩, one sequential fma chain over
 *   i = 0…C−1 from 0 (∂out/∂gates; ∂out/∂y[r,s] = gates[r,s]·dout[r] is left to the caller). */
void kk_moe_combine(float *out, const float *y, const float *gates, int64_t R, int k, int64_t C);
void kk_moe_gate_grad(float *dgates, const float *dout, const float *y, int64_t R, int k, int64_t C);

/* ---- adamw.c ----------------------------------------------------------------------------
 * PyTorch AdamW, step ≥ 1 (1-based, for bias correction), decoupled weight decay:
 *   param ← param · (1 − lr·wd);  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²
 *   param ← param − (lr / (1−β1^step)) · m / (sqrt(v) / sqrt(1−β2^step) + eps) */
void kk_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr,
              float beta1, float beta2, float eps, float weight_decay, int64_t step);

/* ---- rounding.c -------------------------------------------------------------------------
 * Reduced-precision emulation, IN PLACE, results kept as float.
 * bf16: round to nearest even; NaN stays NaN (quiet); overflow past bf16 max → ±inf. */
void kk_round_bf16(float *x, int64_t n);
/* IEEE binary16, round to nearest even, subnormals kept, overflow → ±inf (F16C). */
void kk_round_fp16(float *x, int64_t n);
/* 16-bit storage (the sampler's KV cache in its bf16 / fp16 / fp8 modes, whose K and V are
 * already rounded to 16 bits, so storing them is exact and halves the bytes the attention
 * rows read):
 * kk_store_bf16: out[i] = the bf16 bit pattern of kk_round_bf16(in[i]) (for an in[i] that is
 *   already bf16-rounded, its top 16 bits); kk_load_bf16: out[i] = that pattern widened back
 *   to float (exact). kk_store_fp16 / kk_load_fp16: the same with IEEE binary16 (F16C, round to
 *   nearest even, overflow → ±inf). load(store(x)) == round(x) bit for bit. */
void kk_store_bf16(uint16_t *out, const float *in, int64_t n);
void kk_load_bf16(float *out, const uint16_t *in, int64_t n);
void kk_store_fp16(uint16_t *out, const float *in, int64_t n);
void kk_load_fp16(float *out, const uint16_t *in, int64_t n);
/* float8 e4m3fn: RNE to 3 mantissa bits, subnormal step 2^-9, saturating to ±448 (also
 * ±inf → ±448: e4m3fn has no inf); NaN stays NaN. */
float kk_round_e4m3(float x);
/* Per-output-channel fp8: for each row of w (N,K): scales[n] = max_k |w[n,k]| / 448 (1 if
 * the row is all zero); w[n,k] ← kk_round_e4m3(w[n,k] / scales[n]) · scales[n]. */
void kk_quantize_fp8_e4m3_rows(float *w, float *scales, int64_t N, int64_t K);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_KERNELS_H */
