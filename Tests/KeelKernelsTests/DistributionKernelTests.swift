// DistributionKernelTests.swift — the ABI 1.1 distribution-term kernels (kk_kl_forward,
// kk_entropy_backward, kk_kl_backward; 8 lanes with a masked tail) against float64 loops of their
// formulas: vocabularies that are not multiples of 8 (and V < 8), −inf logits (p = 0), a −inf
// log q where p = 0 (must add nothing, not NaN), rows with zero upstream gradient skipped, and
// accumulation into dlogits. Tolerance: 2e-6 relative to the row's scale.
import KeelKernels
import KeelRandom
import XCTest

final class DistributionKernelTests: XCTestCase {
  func testKernelsMatchAFloat64Reference() {
    var rng = CounterRNG(seed: 3, stream: 8)
    for V in [1, 5, 8, 37, 1000] {
      let R = 4, T: Float = 0.7
      var logits = (0..<(R * V)).map { _ in Float(rng.normal() * 2) }
      var logq = [Float](repeating: 0, count: R * V)
      if V > 3 { logits[1] = -.infinity }  // p = 0 in row 0, and q = 0 there too
      // q: another distribution's log-probs at the same temperature
      let other = (0..<(R * V)).map { _ in Float(rng.normal() * 2) }
      for r in 0..<R { _ = kk_logsoftmax_row(&logq[r * V], Array(other[(r * V)..<((r + 1) * V)]), Int64(V), 1 / T) }
      if V > 3 { logq[1] = -.infinity }
      var lp = [Float](repeating: 0, count: R), ent = [Float](repeating: 0, count: R), lse = [Float](repeating: 0, count: R)
      let targets = [Int32](repeating: 0, count: R)
      kk_logprob_entropy_forward(&lp, &ent, &lse, logits, targets, Int64(R), Int64(V), 1 / T)
      var kl = [Float](repeating: 0, count: R)
      kk_kl_forward(&kl, logits, lse, logq, Int64(R), Int64(V), 1 / T)
      let dH: [Float] = [0.3, 0, -1.2, 2], dK: [Float] = [-0.5, 1.5, 0, 0.25]
      var gH = [Float](repeating: 0.125, count: R * V), gK = [Float](repeating: -0.25, count: R * V)
      kk_entropy_backward(&gH, dH, logits, lse, ent, Int64(R), Int64(V), 1 / T)
      kk_kl_backward(&gK, dK, logits, lse, logq, kl, Int64(R), Int64(V), 1 / T)
      for r in 0..<R {
        let s = (0..<V).map { Double(logits[r * V + $0]) / Double(T) }
        let m = s.max()!
        let L = m + log(s.reduce(0.0) { $0 + exp($1 - m) })
        let p = s.map { exp($0 - L) }, l = s.map { $0 - L }
        let H = -(0..<V).reduce(0.0) { $0 + (p[$1] > 0 ? p[$1] * l[$1] : 0) }
        let K = (0..<V).reduce(0.0) { $0 + (p[$1] > 0 ? p[$1] * (l[$1] - Double(logq[r * V + $1])) : 0) }
        XCTAssertEqual(Double(kl[r]), K, accuracy: 2e-6 * max(1, abs(K)), "V \(V) row \(r) kl")
        XCTAssertFalse(kl[r].isNaN)
        for j in 0..<V {
          let eH = p[j] > 0 ? -Double(dH[r]) / Double(T) * p[j] * (l[j] + H) : 0
          let eK = p[j] > 0 ? Double(dK[r]) / Double(T) * p[j] * (l[j] - Double(logq[r * V + j]) - K) : 0
          XCTAssertEqual(Double(gH[r * V + j]), 0.125 + eH, accuracy: 2e-6 * max(1, abs(Double(dH[r]))), "V \(V) row \(r) entropy grad \(j)")
          XCTAssertEqual(Double(gK[r * V + j]), -0.25 + eK, accuracy: 2e-6 * max(1, abs(Double(dK[r]))), "V \(V) row \(r) kl grad \(j)")
        }
      }
    }
  }
}
