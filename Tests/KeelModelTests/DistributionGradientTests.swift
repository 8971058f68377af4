// DistributionGradientTests.swift — the ABI 1.1 gradient paths of the training engine against
// float64 central differences of the independent reference model, dense and MoE: the entropy
// H, the full-vocabulary KL(π_θ ‖ q) to a frozen distribution (a reference policy's and a
// teacher's rows: the same code with different q, checked separately), and ∂loss/∂z for the
// tempered logits z = logits / T; then all of them at once with a ∂loss/∂logp term. Each loss
// is L = Σ_t c_t · term_t (or Σ_{t,v} G_tv z_tv) with random coefficients, along a random
// direction over every tensor. Tolerance as the ∂logp test: 2e-3 relative to max(1, |numeric|).
import Foundation
import KeelModel
import KeelRandom
import XCTest

final class DistributionGradientTests: XCTestCase {
  enum Path: CaseIterable { case entropy, klReference, klTeacher, logits, all }

  func check(_ c: ModelConfig, _ path: Path, label: String) throws {
    let T = 0.8
    let store = Tiny.store(c, seed: 11)
    let seqs = Tiny.sequences(vocab: c.vocabSize, seed: 2)
    let batch = SequenceBatch(sequences: seqs, scoreFrom: seqs.map { min(2, $0.count - 1) })
    let engine = TrainingEngine(store: store, compute: Compute(threads: 2))
    let out = engine.forward(batch, temperature: Float(T), save: true)
    let saved = out.saved!
    let S = out.logp.count, V = c.vocabSize
    // frozen distributions: other models' log-prob rows at the same temperature
    func rows(seed: UInt64) -> [Float] {
      TrainingEngine(store: Tiny.store(c, seed: seed), compute: Compute(threads: 1))
        .forward(batch, temperature: Float(T), logProbRows: true).logProbRows!
    }
    let refRows = rows(seed: 23), teacherRows = rows(seed: 31)
    var rng = CounterRNG(seed: 17, stream: 4)
    func coefficients(_ n: Int) -> [Float] { (0..<n).map { _ in Float(rng.normal()) } }
    let uses: Set<Path> = path == .all ? [.entropy, .klReference, .klTeacher, .logits] : [path]
    let cH = coefficients(S), cRef = coefficients(S), cTeacher = coefficients(S), cLogp = coefficients(S)
    let G = coefficients(S * V)
    var d = DistributionGradients()
    if uses.contains(.entropy) { d.entropy = cH }
    if uses.contains(.klReference) { d.kl.append((refRows, engine.kl(saved, logq: refRows), cRef)) }
    if uses.contains(.klTeacher) { d.kl.append((teacherRows, engine.kl(saved, logq: teacherRows), cTeacher)) }
    if uses.contains(.logits) { d.logits = G }
    engine.zeroGrads()
    engine.backward(saved, dlogp: path == .all ? cLogp : [Float](repeating: 0, count: S), distribution: d)
    var u = [Double](repeating: 0, count: store.layout.count)
    for i in u.indices { u[i] = rng.normal() }
    let analytic = zip(engine.grads.array, u).reduce(0.0) { $0 + Double($1.0) * $1.1 }
    // the reference, routed as the engine was
    let forced = Tiny.perSequence(out.routing, seqs, k: c.numExpertsPerTok)
    let base = store.values.array.map(Double.init)
    func loss(_ eps: Double) -> Double {
      let ref = ReferenceModel(layout: store.layout, values: zip(base, u).map { $0 + eps * $1 })
      var total = 0.0, t = 0
      for (i, s) in seqs.enumerated() {
        let r = ref.run(s, temperature: T, forced: c.isMoE ? forced[i] : nil)
        for pos in (min(2, s.count - 1) - 1)..<(s.count - 1) {
          let z = r.z[pos]
          let m = z.max()!
          let lse = m + log(z.reduce(0.0) { $0 + exp($1 - m) })
          let logp = z.map { $0 - lse }
          func klTo(_ q: [Float]) -> Double { (0..<V).reduce(0.0) { $0 + exp(logp[$1]) * (logp[$1] - Double(q[t * V + $1])) } }
          if uses.contains(.entropy) { total += Double(cH[t]) * r.entropy[pos] }
          if uses.contains(.klReference) { total += Double(cRef[t]) * klTo(refRows) }
          if uses.contains(.klTeacher) { total += Double(cTeacher[t]) * klTo(teacherRows) }
          if uses.contains(.logits) { for v in 0..<V { total += Double(G[t * V + v]) * z[v] } }
          if path == .all { total += Double(cLogp[t]) * r.logp[pos] }
          t += 1
        }
      }
      XCTAssertEqual(t, S)
      return total
    }
    let eps = 1e-4
    let numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    XCTAssertGreaterThan(abs(numeric), 1e-3, "\(label): a degenerate direction proves nothing")
    XCTAssertEqual(analytic, numeric, accuracy: 2e-3 * max(1, abs(numeric)), "\(label): analytic \(analytic) vs numeric \(numeric)")
    if ProcessInfo.processInfo.environment["KEEL_TEST_VERBOSE"] != nil { print("\(label): analytic \(analytic) numeric \(numeric)") }
  }

  func testEveryDistributionTermMatchesFiniteDifferencesDenseAndMoE() throws {
    for (name, c) in Tiny.configs.prefix(2) {
      for path in Path.allCases { try check(c, path, label: "\(name) \(path)") }
    }
  }

  /// The forward values the objective sees: KL and the log-prob rows against float64.
  func testKLAndRowsMatchTheReference() throws {
    for (name, c) in Tiny.configs.prefix(2) {
      let seqs = Tiny.sequences(vocab: c.vocabSize, seed: 3)
      let batch = SequenceBatch(sequences: seqs, scoreFrom: seqs.map { min(2, $0.count - 1) })
      let policy = TrainingEngine(store: Tiny.store(c, seed: 11), compute: Compute(threads: 2))
      let other = TrainingEngine(store: Tiny.store(c, seed: 23), compute: Compute(threads: 2))
      let out = policy.forward(batch, temperature: 0.7, save: true)
      let rows = other.forward(batch, temperature: 0.7, logProbRows: true).logProbRows!
      let kl = policy.kl(out.saved!, logq: rows)
      let refP = ReferenceModel(Tiny.store(c, seed: 11)), refQ = ReferenceModel(Tiny.store(c, seed: 23))
      var t = 0
      let V = c.vocabSize
      for s in seqs {
        let a = refP.run(s, temperature: 0.7), b = refQ.run(s, temperature: 0.7)
        for pos in (min(2, s.count - 1) - 1)..<(s.count - 1) {
          func logSoftmax(_ z: [Double]) -> [Double] { let m = z.max()!; let l = m + log(z.reduce(0.0) { $0 + exp($1 - m) }); return z.map { $0 - l } }
          let lp = logSoftmax(a.z[pos]), lq = logSoftmax(b.z[pos])
          for v in 0..<V { XCTAssertEqual(Double(rows[t * V + v]), lq[v], accuracy: 2e-5, "\(name) row \(t) v \(v)") }
          let expected = (0..<V).reduce(0.0) { $0 + exp(lp[$1]) * (lp[$1] - lq[$1]) }
          XCTAssertEqual(Double(kl[t]), expected, accuracy: 2e-5 * max(1, expected), "\(name) kl[\(t)]")
          t += 1
        }
      }
      XCTAssertEqual(t, kl.count)
    }
  }
}
