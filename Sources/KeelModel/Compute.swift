// Compute.swift — how the model runs its kernels: the thread count, a deterministic
// parallel-for over row ranges, and the three matrix products (forward, input gradient,
// weight gradient) on either backend:
//   .keel  KeelKernels' kk_gemm: one fixed FMA chain per output element, so a row's result is
//          the same bits in any batch and any thread split (exact mode needs this);
//   .blas  OpenBLAS's cblas_sgemm (fast; blocking — and so rounding — depends on the shape).
// Work is split only along output rows, never along a reduction, so thread count never
// changes a result on the .keel backend.
import CBLAS
import Dispatch
import KeelKernels

public enum GemmBackend: String, Sendable, CaseIterable { case keel, blas }

public struct Compute: Sendable {
  public var threads: Int
  public var backend: GemmBackend
  public init(threads: Int = 2, backend: GemmBackend = .keel) {
    self.threads = max(1, threads)
    self.backend = backend
  }

  /// Products smaller than this many multiply-adds run on one thread: waking a second thread
  /// costs more than it saves (measured: ~10% of a decode step went to thread hand-offs).
  public static let parallelMinimumMACs = 1 << 17

  /// body(lo, hi) over `count` items in `threads` contiguous chunks (aligned to `grain`).
  /// `work` (e.g. multiply-adds) below `parallelMinimumMACs` runs inline.
  public func parallelRanges(_ count: Int, grain: Int = 1, work: Int = .max, _ body: (Int, Int) -> Void) {
    guard count > 0 else { return }
    if work < Self.parallelMinimumMACs { body(0, count); return }
    let chunks = min(threads, (count + grain - 1) / grain)
    if chunks <= 1 { body(0, count); return }
    let per = ((count + chunks - 1) / chunks + grain - 1) / grain * grain
    withoutActuallyEscaping(body) { escaping in
      let box = UncheckedSendable(escaping)
      DispatchQueue.concurrentPerform(iterations: chunks) { c in
        let lo = c * per, hi = min(count, lo + per)
        if lo < hi { box.value(lo, hi) }
      }
    }
  }

  /// body(i) for i in 0..<count, items handed to the threads as they free up (for uneven
  /// items such as MoE experts). Each item must write only its own outputs.
  public func forEach(_ count: Int, _ body: (Int) -> Void) {
    guard count > 0 else { return }
    if threads <= 1 || count == 1 { for i in 0..<count { body(i) }; return }
    withoutActuallyEscaping(body) { escaping in
      let box = UncheckedSendable(escaping)
      DispatchQueue.concurrentPerform(iterations: count) { box.value($0) }
    }
  }

  /// The same backend on one thread (for work already split across threads).
  public var single: Compute { Compute(threads: 1, backend: backend) }

  /// out[M,N] = in[M,K] · Wᵀ, W is [N,K]; `wt` is W transposed ([K,N]) for the .keel backend.
  public func matmul(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, w: UnsafePointer<Float>,
                     wt: UnsafePointer<Float>?, M: Int, N: Int, K: Int, backend: GemmBackend? = nil) {
    guard M > 0 else { return }
    if (backend ?? self.backend) == .blas || wt == nil {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(M), Int32(N), Int32(K), 1, input, Int32(K), w, Int32(K), 0, out, Int32(N))
      return
    }
    parallelRanges(M, grain: 6, work: M * N * K) { lo, hi in
      kk_gemm(out + lo * N, input + lo * K, wt!, Int64(hi - lo), Int64(N), Int64(K), Int64(K), 1, Int64(N), Int64(N), 0)
    }
  }

  /// dIn[M,K] += dOut[M,N] · W[N,K].
  public func matmulInputGrad(_ dIn: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, w: UnsafePointer<Float>,
                              M: Int, N: Int, K: Int) {
    guard M > 0 else { return }
    if backend == .blas {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(M), Int32(K), Int32(N), 1, dOut, Int32(N), w, Int32(K), 1, dIn, Int32(K))
      return
    }
    parallelRanges(M, grain: 6, work: M * N * K) { lo, hi in
      kk_gemm(dIn + lo * K, dOut + lo * N, w, Int64(hi - lo), Int64(K), Int64(N), Int64(N), 1, Int64(K), Int64(K), 1)
    }
  }

  /// dW[N,K] += dOut[M,N]ᵀ · in[M,K].
  public func matmulWeightGrad(_ dW: UnsafeMutablePointer<Float>, _ dOut: UnsafePointer<Float>, _ input: UnsafePointer<Float>,
                               M: Int, N: Int, K: Int) {
    guard M > 0 else { return }
    if backend == .blas {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(N), Int32(K), Int32(M), 1, dOut, Int32(N), input, Int32(K), 1, dW, Int32(K))
      return
    }
    parallelRanges(N, grain: 6, work: M * N * K) { lo, hi in
      kk_gemm(dW + lo * K, dOut + lo, input, Int64(hi - lo), Int64(K), Int64(M), 1, Int64(N), Int64(K), Int64(K), 1)
    }
  }

  /// Make OpenBLAS use this many threads.
  public func configureBLAS() { openblas_set_num_threads(Int32(threads)) }
}

/// Lets a closure cross into concurrentPerform. Sound here because every chunk writes a
/// disjoint range and the call returns only after all chunks finished.
struct UncheckedSendable<T>: @unchecked Sendable {
  let value: T
  init(_ value: T) { self.value = value }
}
