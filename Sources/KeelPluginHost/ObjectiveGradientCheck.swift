// ObjectiveGradientCheck.swift — every gradient an objective returns against a central finite
// difference of its loss in the matching input, with logp_frozen held at the batch's logp
// (constants stay constant): ∂loss/∂logp, and (ABI 1.1) ∂loss/∂entropy, ∂loss/∂kl_ref,
// ∂loss/∂kl_teacher and ∂loss/∂z for the logits, for the inputs the instance asked for.
// Rule per output: max_t |fd_t − g_t| ≤ 1e-3·max(max|g|, 1e-3) + 1e-5, fd the better of the
// steps 1e-3 and 3e-4 (a kink at a clip boundary can spoil one of them). grad_logits is checked
// at 512 evenly spaced entries at most (the others' finite difference is NaN), so a large
// vocabulary costs bounded time. Used by
// `keel plugins check` and `keel plugins eval --check-grad`.

public struct GradientCheck: Sendable, Equatable {
  /// The output checked: "grad_logp", "grad_entropy", "grad_kl_ref", "grad_kl_teacher", "grad_logits".
  public let output: String
  /// The central difference per entry, in the output's layout.
  public let finiteDifference: [Double]
  public let maxDeviation: Double
  public let worstEntry: Int
  public let tolerance: Double
  public var agrees: Bool { maxDeviation <= tolerance }
}

extension ObjectiveInstance {
  /// The gradient outputs of one call on `batch` (logp_frozen set to its logp) against finite
  /// differences, one GradientCheck per output the call returned.
  public func gradientChecks(_ batch: ObjectiveBatch) throws -> (result: ObjectiveResult, checks: [GradientCheck]) {
    var b = batch
    b.logpFrozen = b.logp
    let r = try compute(b)
    var checks: [GradientCheck] = []
    /// `grad` against central differences of the loss in the input at `key`.
    func run(_ output: String, _ grad: [Float], _ key: WritableKeyPath<ObjectiveBatch, [Float]>, limit: Int = .max) throws {
      let gmax = grad.map { abs(Double($0)) }.max() ?? 0
      var fd = [Double](repeating: limit == .max ? 0 : .nan, count: grad.count)
      var worst = 0.0, worstAt = -1
      let step = limit >= grad.count ? 1 : (grad.count + limit - 1) / max(limit, 1)
      for i in stride(from: 0, to: grad.count, by: step) {
        var best = Double.infinity, bestFd = 0.0
        for h: Float in [1e-3, 3e-4] {
          var plus = b, minus = b
          plus[keyPath: key][i] += h
          minus[keyPath: key][i] -= h
          let hh = Double(plus[keyPath: key][i]) - Double(minus[keyPath: key][i])
          let d = (try compute(plus).loss - compute(minus).loss) / hh
          if abs(d - Double(grad[i])) < best { best = abs(d - Double(grad[i])); bestFd = d }
        }
        fd[i] = bestFd
        if best > worst { worst = best; worstAt = i }
      }
      checks.append(GradientCheck(output: output, finiteDifference: fd, maxDeviation: worst, worstEntry: worstAt,
                                  tolerance: 1e-3 * max(gmax, 1e-3) + 1e-5))
    }
    try run("grad_logp", r.gradLogp, \.logp)
    let terms: [(String, [Float]?, WritableKeyPath<ObjectiveBatch, [Float]?>)] = [
      ("grad_entropy", r.gradEntropy, \.entropy), ("grad_kl_ref", r.gradKlRef, \.klRef),
      ("grad_kl_teacher", r.gradKlTeacher, \.klTeacher), ("grad_logits", r.gradLogits, \.logits)]
    for (name, grad, key) in terms {
      guard let grad, b[keyPath: key] != nil else { continue }
      try run(name, grad, key.appending(path: \.!), limit: name == "grad_logits" ? 512 : .max)
    }
    return (r, checks)
  }
}
