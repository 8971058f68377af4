// AdamW.swift — the optimizer over the flat parameter buffer: global-norm gradient clipping
// (norm in double, in buffer order, so it is deterministic) and PyTorch's AdamW (kk_adamw),
// split across threads along the buffer (elementwise: the split never changes a bit).
import KeelKernels

public final class AdamW: @unchecked Sendable {
  public var beta1: Float = 0.9
  public var beta2: Float = 0.999
  public var eps: Float = 1e-8
  public var weightDecay: Float = 0
  public let m: FloatBuffer
  public let v: FloatBuffer
  /// Updates taken so far (the next one is step + 1).
  public var step: Int = 0

  public init(count: Int, weightDecay: Float = 0) {
    m = FloatBuffer(count)
    v = FloatBuffer(count)
    self.weightDecay = weightDecay
  }

  /// The global L2 norm of a gradient buffer.
  public static func norm(_ g: FloatBuffer) -> Double {
    var s = 0.0
    for i in 0..<g.count { let x = Double(g.p[i]); s += x * x }
    return s.squareRoot()
  }

  /// Clip to `maxNorm` (if > 0), then update `params` in place. Returns the pre-clip norm
  /// (`norm`, when the caller already computed it, is used as is).
  @discardableResult
  public func update(params: ParameterStore, grads: FloatBuffer, lr: Float, maxNorm: Float, compute: Compute, norm known: Double? = nil) -> Double {
    let norm = known ?? Self.norm(grads)
    if maxNorm > 0 && norm > Double(maxNorm) {
      let s = Float(Double(maxNorm) / (norm + 1e-6))
      for i in 0..<grads.count { grads.p[i] *= s }
    }
    step += 1
    let p = params.values.p, g = grads.p, m = m.p, v = v.p, t = Int64(step)
    let (b1, b2, e, wd) = (beta1, beta2, eps, weightDecay)
    compute.parallelRanges(grads.count, grain: 4096) { lo, hi in
      kk_adamw(p + lo, g + lo, m + lo, v + lo, Int64(hi - lo), lr, b1, b2, e, wd, t)
    }
    params.refreshTransposed()
    return norm
  }
}
