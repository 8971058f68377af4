// PluginLibraryTests.swift — the built-in plugin library (issue 11) loaded through the real
// dlopen path: every objective's loss and ∂loss/∂logp on golden batches against INDEPENDENT
// float64 reference implementations written below (the textbook max/min forms, not the
// plugins' branch logic), finite differences with logp_frozen held fixed, the documented
// equivalences (minirl ↔ reinforce, ppo-clip on the first mini-batch ↔ token-mean REINFORCE,
// grpo ↔ dr-grpo by the length normaliser, sequence ↔ token IS on length-1 responses), the
// baselines and rewards against hand-computed and reference values, and `keel plugins check`'s
// validator on every built-in plugin.
import KeelPluginHost
import KeelTestSupport
import XCTest

// MARK: - Reference implementations (float64, straight from docs/objectives.md)

/// Loss, gradient and clip counts of a reference computation.
struct ReferenceResult {
  var loss = 0.0
  var grad: [Double]
  var low = 0, high = 0, dual = 0, unmasked = 0
  init(tokens: Int) { grad = [Double](repeating: 0, count: tokens) }
}

enum Reference {
  enum Aggregation {
    case tokenMean                // Σ / total_tokens
    case seqMeanTokenMean         // (1/S) Σ_i (1/n_i) Σ_t
    case sumOverConstant(Double)  // Σ / (S · L)
  }

  struct IS {
    var mode = "none"   // none | token | sequence
    var cap = 2.0
    var mis = false
    var misLow = 0.5
    var ratio = "old"   // old: π_old/μ_old, current: π_θ/μ_old (from logp_frozen)
  }

  static func ranges(_ b: ObjectiveBatch) -> [Range<Int>] {
    (0..<b.numSequences).map { Int(b.seqOffsets[$0])..<Int(b.seqOffsets[$0 + 1]) }
  }

  /// Per-token IS weights (1 everywhere for mode "none").
  static func isWeights(_ b: ObjectiveBatch, _ o: IS) -> [Double] {
    var w = [Double](repeating: 1, count: b.numTokens)
    guard o.mode != "none" else { return w }
    let numerator = o.ratio == "old" ? b.logpOld : (b.logpFrozen ?? b.logp)
    func weight(_ x: Double) -> Double { o.mis ? (x < o.misLow || x > o.cap ? 0 : x) : min(x, o.cap) }
    for r in ranges(b) {
      if o.mode == "token" {
        for t in r { w[t] = weight(exp(Double(numerator[t]) - Double(b.logpRollout[t]))) }
      } else {
        var logProduct = 0.0
        for t in r where b.mask[t] == 1 { logProduct += Double(numerator[t]) - Double(b.logpRollout[t]) }
        for t in r { w[t] = weight(exp(logProduct)) }
      }
    }
    return w
  }

  /// The PPO family (ppo-clip, dapo, grpo, dr-grpo): per token
  /// min over the dual clip of max(−A·r, −A·clip(r)), times the IS weight, plus kl·k3.
  /// Written for logp_frozen == logp (the golden batches), where the textbook form is exact.
  static func ppo(_ b: ObjectiveBatch, _ agg: Aggregation, epsLow: Double, epsHigh: Double, dualClip: Double = 0,
                  klCoef: Double = 0, weights: [Double]? = nil) -> ReferenceResult {
    var out = ReferenceResult(tokens: b.numTokens)
    let w = weights ?? [Double](repeating: 1, count: b.numTokens)
    for r in ranges(b) {
      let n = r.filter { b.mask[$0] == 1 }.count
      let norm: Double
      switch agg {
      case .tokenMean: norm = 1 / b.totalTokens
      case .seqMeanTokenMean: norm = n > 0 ? 1 / (b.totalSequences * Double(n)) : 0
      case .sumOverConstant(let l): norm = 1 / (b.totalSequences * l)
      }
      for t in r where b.mask[t] == 1 {
        out.unmasked += 1
        let lp = Double(b.logp[t]), a = Double(b.advantages[t])
        let ratio = exp(lp - Double(b.logpOld[t]))
        let unclipped = -a * ratio
        let clipped = -a * min(max(ratio, 1 - epsLow), 1 + epsHigh)
        var value = max(unclipped, clipped)
        var active = unclipped >= clipped
        if !active { if ratio < 1 { out.low += 1 } else { out.high += 1 } }
        if a < 0 && dualClip > 0 && -a * dualClip < value {
          value = -a * dualClip
          active = false
          out.dual += 1
          out.high += 1
        }
        var dvalue = active ? -a * ratio : 0
        value *= w[t]
        dvalue *= w[t]
        if klCoef > 0, let ref = b.logpRef {
          let d = Double(ref[t]) - lp
          value += klCoef * (exp(d) - d - 1)
          dvalue += klCoef * (1 - exp(d))
        }
        out.loss += norm * value
        out.grad[t] = norm * dvalue
      }
    }
    return out
  }

  /// CISPO: −(1/T) Σ sg[clip(r)]·A·logp.
  static func cispo(_ b: ObjectiveBatch, epsLow: Double, epsHigh: Double, lowerBound: Bool = true) -> ReferenceResult {
    var out = ReferenceResult(tokens: b.numTokens)
    for t in 0..<b.numTokens where b.mask[t] == 1 {
      let ratio = exp(Double(b.logp[t]) - Double(b.logpOld[t]))
      let c = lowerBound ? min(max(ratio, 1 - epsLow), 1 + epsHigh) : min(ratio, 1 + epsHigh)
      if c != ratio { if ratio < 1 { out.low += 1 } else { out.high += 1 } }
      out.loss -= c * Double(b.advantages[t]) * Double(b.logp[t]) / b.totalTokens
      out.grad[t] = -c * Double(b.advantages[t]) / b.totalTokens
    }
    return out
  }

  /// GSPO: (1/S) Σ_i max(−A_i s_i, −A_i clip(s_i)), s_i = exp(mean log-ratio), log s clamped at 10.
  static func gspo(_ b: ObjectiveBatch, epsLow: Double, epsHigh: Double) -> ReferenceResult {
    var out = ReferenceResult(tokens: b.numTokens)
    for r in ranges(b) {
      let kept = r.filter { b.mask[$0] == 1 }
      guard let first = kept.first else { continue }
      let n = Double(kept.count), a = Double(b.advantages[first])
      let logS = kept.map { Double(b.logp[$0]) - Double(b.logpOld[$0]) }.reduce(0, +) / n
      let clamped = logS > 10
      let s = exp(min(logS, 10))
      let unclipped = -a * s, clipped = -a * min(max(s, 1 - epsLow), 1 + epsHigh)
      let active = unclipped >= clipped && !clamped
      if unclipped < clipped { if s < 1 { out.low += kept.count } else { out.high += kept.count } }
      out.loss += max(unclipped, clipped) / b.totalSequences
      for t in kept { out.grad[t] = active ? -a * s / n / b.totalSequences : 0 }
    }
    return out
  }

  // Baselines, one advantage per response.
  static func groups(_ ids: [Int64]) -> [Int64: [Int]] {
    var g: [Int64: [Int]] = [:]
    for (i, id) in ids.enumerated() { g[id, default: []].append(i) }
    return g
  }

  static func groupMeanStd(_ r: [Float], _ ids: [Int64], eps: Double = 1e-6) -> [Double] {
    var a = [Double](repeating: 0, count: r.count)
    for (_, members) in groups(ids) where members.count > 1 {
      let x = members.map { Double(r[$0]) }
      let mean = x.reduce(0, +) / Double(x.count)
      let std = (x.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(x.count - 1)).squareRoot()
      if std == 0 { continue }
      for (k, i) in members.enumerated() { a[i] = (x[k] - mean) / (std + eps) }
    }
    return a
  }

  /// TRL scale_rewards = "batch": centred per group, divided by the whole batch's unbiased std.
  static func groupMeanBatchStd(_ r: [Float], _ ids: [Int64], eps: Double) -> [Double] {
    let all = r.map(Double.init)
    let mean = all.reduce(0, +) / Double(all.count)
    let std = (all.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(all.count - 1)).squareRoot()
    var a = [Double](repeating: 0, count: r.count)
    for (_, members) in groups(ids) where members.count > 1 {
      let gm = members.map { all[$0] }.reduce(0, +) / Double(members.count)
      for i in members { a[i] = (all[i] - gm) / (std + eps) }
    }
    return a
  }

  static func rloo(_ r: [Float], _ ids: [Int64]) -> [Double] {
    var a = [Double](repeating: 0, count: r.count)
    for (_, members) in groups(ids) where members.count > 1 {
      for i in members {
        let others = members.filter { $0 != i }.map { Double(r[$0]) }
        a[i] = Double(r[i]) - others.reduce(0, +) / Double(others.count)
      }
    }
    return a
  }

  /// REINFORCE++ baseline: group-centre, then whiten the per-token broadcast over the batch.
  static func batchNorm(_ r: [Float], _ ids: [Int64], _ lengths: [Int64], eps: Double = 1e-8) -> [Double] {
    var c = [Double](repeating: 0, count: r.count)
    for (_, members) in groups(ids) where members.count > 1 {
      let mean = members.map { Double(r[$0]) }.reduce(0, +) / Double(members.count)
      for i in members { c[i] = Double(r[i]) - mean }
    }
    // Literally broadcast to tokens, as verl does, then take the masked mean / unbiased variance.
    var tokens: [Double] = []
    for i in 0..<r.count { tokens += [Double](repeating: c[i], count: Int(lengths[i])) }
    let mu = tokens.reduce(0, +) / Double(tokens.count)
    let variance = tokens.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(tokens.count - 1)
    return (0..<r.count).map { lengths[$0] > 0 ? (c[$0] - mu) / (variance + eps).squareRoot() : 0 }
  }
}

// MARK: - Helpers

/// |got − want| ≤ rel·max(|want|, floor) for the loss and every gradient entry; masked tokens exactly 0.
func assertMatches(_ got: ObjectiveResult, _ want: ReferenceResult, _ batch: ObjectiveBatch, rel: Double = 1e-5,
                   floor: Double = 1e-6, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
  XCTAssertEqual(got.loss, want.loss, accuracy: rel * max(abs(want.loss), floor), "\(label): loss", file: file, line: line)
  XCTAssertEqual(got.gradLogp.count, want.grad.count, "\(label): gradient length", file: file, line: line)
  for t in 0..<min(got.gradLogp.count, want.grad.count) {
    if batch.mask[t] == 0 {
      XCTAssertEqual(got.gradLogp[t], 0, "\(label): masked token \(t)", file: file, line: line)
    } else {
      XCTAssertEqual(Double(got.gradLogp[t]), want.grad[t], accuracy: rel * max(abs(want.grad[t]), floor),
                     "\(label): ∂loss/∂logp at token \(t)", file: file, line: line)
    }
  }
}

func metrics(_ inst: ObjectiveInstance, _ r: ObjectiveResult) -> [String: Double] {
  Dictionary(uniqueKeysWithValues: zip(inst.metricNames, r.metrics))
}

typealias ResponseRow = (group: Int64, advantage: Float, logp: [Float], logpOld: [Float], logpRollout: [Float], mask: [UInt8])

/// A batch from per-token log-ratios: logp_old = logp − dOld (r = e^dOld), logp_rollout =
/// logp_old − dRoll (π_old/μ_old = e^dRoll).
func ratioBatch(_ rows: [(group: Int64, advantage: Float, logp: [Float], dOld: [Float], dRoll: [Float], mask: [UInt8])]) -> ObjectiveBatch {
  var responses: [ResponseRow] = []
  for row in rows {
    let old = zip(row.logp, row.dOld).map { $0 - $1 }
    let rollout = zip(old, row.dRoll).map { $0 - $1 }
    responses.append((row.group, row.advantage, row.logp, old, rollout, row.mask))
  }
  return ObjectiveBatch(responses: responses)
}

// MARK: - Objectives

final class ObjectiveLibraryTests: XCTestCase {
  /// Seven responses, three groups, S = 7, T = 14 unmasked tokens; r = π/π_old = e^dOld,
  /// π_old/μ_old = e^dRoll. Bounds: ppo-clip [0.8, 1.2], dapo/cispo [0.8, 1.28], tis_cap 2,
  /// mis_low 0.5, dual clip 3.
  ///   r0 A=+1   r: 1.65 (clipped high), 0.61 (below, A>0: kept), 1.11     IS: 2.72 (> cap), 0.74, 1.22
  ///   r1 A=−0.8 r: 0.61 (clipped low), 3.32 (A<0 above: kept; dual-clipped at 3)   IS: 0.41 (< mis_low), 1.49
  ///   r2 A=+0.6 masked, r: 1.22 (ppo high, inside dapo), 0.90, 1.35 (high)        IS: –, 2.23 (> cap), 1.05, 0.82
  ///   r3, r4: the all-equal-reward group, A = 0 (r 1.49, 0.67, 1)
  ///   r5 A=−0.5 length 1, r 1.28 (A<0 above: kept)                                IS: 0.14 (< mis_low)
  ///   r6 A=+0.5 r: 0.78 (below, A>0: kept), masked, 1.16                         IS: 1.35, –, 2.12 (> cap)
  /// Masked tokens carry non-zero log-ratios: they must stay out of sequence-level products.
  static let batch = ratioBatch([
    (0, 1.0, [-0.5, -1.2, -0.3], [0.5, -0.5, 0.1], [1.0, -0.3, 0.2], [1, 1, 1]),
    (0, -0.8, [-2.0, -0.1], [-0.5, 1.2], [-0.9, 0.4], [1, 1]),
    (0, 0.6, [-0.7, -0.4, -1.5, -0.9], [0.0, 0.2, -0.1, 0.3], [0.7, 0.8, 0.05, -0.2], [0, 1, 1, 1]),
    (1, 0.0, [-0.2, -0.6], [0.4, -0.4], [0.1, 0.1], [1, 1]),
    (1, 0.0, [-1.0], [0.0], [0.0], [1]),
    (2, -0.5, [-0.05], [0.25], [-2.0], [1]),
    (2, 0.5, [-0.9, -2.5, -0.15], [-0.25, 0.6, 0.15], [0.3, -1.5, 0.75], [1, 0, 1]),
  ])

  /// The golden batch with a reference policy: ref − logp cycles through these offsets.
  static var batchWithRef: ObjectiveBatch {
    var b = batch
    let offsets: [Float] = [0.3, -0.2, 0.0, 0.5, -0.4, 0.1]
    b.logpRef = b.logp.enumerated().map { $0.element + offsets[$0.offset % offsets.count] }
    return b
  }

  func objective(_ name: String, _ settings: [String: ParameterValue] = [:]) throws -> ObjectiveInstance {
    try ObjectiveInstance(library: try builtin(name), settings: settings)
  }

  func testTheGoldenBatchCoversTheCases() {
    let b = Self.batch
    XCTAssertEqual(b.totalSequences, 7)
    XCTAssertEqual(b.totalTokens, 14)
    let r = (0..<b.numTokens).map { exp(Double(b.logp[$0]) - Double(b.logpOld[$0])) }
    let isr = (0..<b.numTokens).map { exp(Double(b.logpOld[$0]) - Double(b.logpRollout[$0])) }
    XCTAssertGreaterThan(r[0], 1.28)
    XCTAssertLessThan(r[1], 0.8)
    XCTAssertLessThan(r[3], 0.8)
    XCTAssertGreaterThan(r[4], 3)
    XCTAssertTrue(r[6] > 1.2 && r[6] < 1.28, "between ppo-clip's and dapo's upper bound")
    XCTAssertGreaterThan(isr[0], 2)
    XCTAssertLessThan(isr[3], 0.5)
    XCTAssertGreaterThan(isr[6], 2)
    XCTAssertGreaterThan(isr[15], 2)
  }

  // MARK: golden: PPO family

  func testPPOClipGolden() throws {
    let b = Self.batch
    let inst = try objective("ppo-clip")
    let r = try inst.compute(b)
    let want = Reference.ppo(b, .tokenMean, epsLow: 0.2, epsHigh: 0.2)
    assertMatches(r, want, b, "ppo-clip")
    let m = metrics(inst, r)
    XCTAssertEqual(m["masked_fraction_low"]!, Double(want.low) / 14, accuracy: 1e-12)
    XCTAssertEqual(m["masked_fraction_high"]!, Double(want.high) / 14, accuracy: 1e-12)
    XCTAssertEqual(want.low, 1)
    XCTAssertEqual(want.high, 3)  // r0 t0, r2 t1 (1.22 > 1.2), r2 t3
    XCTAssertEqual(m["is_weight_mean"]!, 1)
    XCTAssertEqual(m["is_masked_fraction"]!, 0)
    XCTAssertEqual(inst.library.aggregation, "token-mean")
  }

  func testPPOClipDualClipGolden() throws {
    let b = Self.batch
    let inst = try objective("ppo-clip", ["dual_clip": .float(3)])
    let r = try inst.compute(b)
    let want = Reference.ppo(b, .tokenMean, epsLow: 0.2, epsHigh: 0.2, dualClip: 3)
    XCTAssertEqual(want.dual, 1)  // r1 t1: A < 0, r = 3.32 > 3
    assertMatches(r, want, b, "ppo-clip dual_clip 3")
    XCTAssertEqual(r.gradLogp[4], 0, "dual-clipped token has no gradient")
    let m = metrics(inst, r)
    XCTAssertEqual(m["dual_clip_fraction"]!, 1.0 / 14, accuracy: 1e-12)
    XCTAssertEqual(m["masked_fraction_high"]!, 4.0 / 14, accuracy: 1e-12)
    XCTAssertThrowsError(try objective("ppo-clip", ["dual_clip": .float(0.5)]), "0 < c <= 1 is refused")
  }

  func testDAPOGoldenUsesClipHigher() throws {
    let b = Self.batch
    let inst = try objective("dapo")
    let r = try inst.compute(b)
    let want = Reference.ppo(b, .tokenMean, epsLow: 0.2, epsHigh: 0.28)
    assertMatches(r, want, b, "dapo")
    XCTAssertEqual(want.high, 2, "r2 t1 (1.22) is inside dapo's 1.28 bound")
    XCTAssertNotEqual(r.gradLogp[6], 0)
    XCTAssertEqual(try objective("ppo-clip").compute(b).gradLogp[6], 0)
    // Same code as ppo-clip: with eps_high 0.28 they agree bit for bit.
    let ppo = try objective("ppo-clip", ["eps_high": .float(0.28)]).compute(b)
    XCTAssertEqual(ppo.gradLogp, r.gradLogp)
    XCTAssertEqual(ppo.loss, r.loss)
  }

  func testGRPOGolden() throws {
    let b = Self.batch
    let inst = try objective("grpo")
    XCTAssertEqual(inst.library.aggregation, "seq-mean-token-mean")
    assertMatches(try inst.compute(b), Reference.ppo(b, .seqMeanTokenMean, epsLow: 0.2, epsHigh: 0.2), b, "grpo")
  }

  func testGRPOWithKLGolden() throws {
    let b = Self.batchWithRef
    let inst = try objective("grpo", ["kl_coef": .float(0.1)])
    let r = try inst.compute(b)
    assertMatches(r, Reference.ppo(b, .seqMeanTokenMean, epsLow: 0.2, epsHigh: 0.2, klCoef: 0.1), b, "grpo kl 0.1")
    // k3 ≥ 0 and the KL gives even the A = 0 responses a gradient (ref ≠ logp there).
    XCTAssertGreaterThan(metrics(inst, r)["kl_ref_mean"]!, 0)
    XCTAssertNotEqual(r.gradLogp[9], 0)
    // With IS the weight multiplies the policy term only, not the KL term (as TRL).
    let o = Reference.IS(mode: "token")
    let weighted = try objective("grpo", ["kl_coef": .float(0.1), "tis_mode": .string("token")]).compute(b)
    assertMatches(weighted, Reference.ppo(b, .seqMeanTokenMean, epsLow: 0.2, epsHigh: 0.2, klCoef: 0.1,
                                          weights: Reference.isWeights(b, o)), b, "grpo kl 0.1 + token IS")
  }

  func testGRPOWithKLNeedsAReference() throws {
    let inst = try objective("grpo", ["kl_coef": .float(0.1)])
    XCTAssertThrowsError(try inst.compute(Self.batch)) { error in
      XCTAssertTrue("\(error)".contains("logp_ref"), "\(error)")
      XCTAssertTrue("\(error)".contains("train.kl_ref"), "\(error)")
    }
    // kl_coef 0 never reads logp_ref.
    XCTAssertNoThrow(try objective("grpo").compute(Self.batch))
  }

  func testDrGRPOGolden() throws {
    var b = Self.batchWithRef
    b.maxResponseTokens = 8
    let inst = try objective("dr-grpo", ["kl_coef": .float(0.05)])
    XCTAssertEqual(inst.library.aggregation, "seq-mean-token-sum-norm")
    assertMatches(try inst.compute(b), Reference.ppo(b, .sumOverConstant(8), epsLow: 0.2, epsHigh: 0.2, klCoef: 0.05), b, "dr-grpo")
  }

  func testPPOFamilyWithTrainInferenceIS() throws {
    let b = Self.batch
    let cases: [Reference.IS] = [
      .init(mode: "token"), .init(mode: "sequence"), .init(mode: "token", mis: true),
      .init(mode: "sequence", mis: true), .init(mode: "token", ratio: "current"),
      .init(mode: "sequence", cap: 1.5, ratio: "current"), .init(mode: "token", cap: 3, mis: true, misLow: 0),
    ]
    for o in cases {
      let settings: [String: ParameterValue] = ["tis_mode": .string(o.mode), "tis_cap": .float(o.cap), "mis": .bool(o.mis),
                                                "mis_low": .float(o.misLow), "is_ratio": .string(o.ratio)]
      let w = Reference.isWeights(b, o)
      let label = "\(o.mode) cap \(o.cap) mis \(o.mis) low \(o.misLow) \(o.ratio)"
      let ppo = try objective("ppo-clip", settings)
      let r = try ppo.compute(b)
      assertMatches(r, Reference.ppo(b, .tokenMean, epsLow: 0.2, epsHigh: 0.2, weights: w), b, "ppo-clip IS \(label)")
      let kept = (0..<b.numTokens).filter { b.mask[$0] == 1 }
      let m = metrics(ppo, r)
      XCTAssertEqual(m["is_weight_mean"]!, kept.map { w[$0] }.reduce(0, +) / 14, accuracy: 1e-6, label)
      XCTAssertEqual(m["is_masked_fraction"]!, o.mis ? Double(kept.filter { w[$0] == 0 }.count) / 14 : 0, accuracy: 1e-12, label)
      assertMatches(try objective("dapo", settings).compute(b),
                    Reference.ppo(b, .tokenMean, epsLow: 0.2, epsHigh: 0.28, weights: w), b, "dapo IS \(label)")
      assertMatches(try objective("grpo", settings).compute(b),
                    Reference.ppo(b, .seqMeanTokenMean, epsLow: 0.2, epsHigh: 0.2, weights: w), b, "grpo IS \(label)")
    }
    // The cases really exercise truncation and masking.
    XCTAssertEqual(Reference.isWeights(b, .init(mode: "token"))[0], 2, "truncated at the cap")
    XCTAssertEqual(Reference.isWeights(b, .init(mode: "token", mis: true))[0], 0, "masked above the cap")
    XCTAssertEqual(Reference.isWeights(b, .init(mode: "token", mis: true))[3], 0, "masked below mis_low")
    XCTAssertEqual(Reference.isWeights(b, .init(mode: "sequence"))[0], 2, "product e^0.9 > 2 truncated")
  }

  func testMISKeepsMaskedTokensInTheDenominator() throws {
    // A token mis keeps is weighted by its ratio under the SAME 1/T as without IS: the tokens
    // mis zeroes stay in T (TRL's convention).
    let b = Self.batch
    let r = try objective("ppo-clip", ["tis_mode": .string("token"), "mis": .bool(true)]).compute(b)
    let plain = try objective("ppo-clip").compute(b)
    // token 2 (r0 t2): IS 1.22 kept → gradient = plain gradient × 1.22 (same 1/T normaliser)
    let w2 = exp(Double(b.logpOld[2]) - Double(b.logpRollout[2]))
    XCTAssertEqual(Double(r.gradLogp[2]), Double(plain.gradLogp[2]) * w2, accuracy: 1e-6 * abs(Double(plain.gradLogp[2])))
    // token 12 (r5): IS 0.14 < mis_low → weight 0, no gradient although its ratio is unclipped.
    XCTAssertNotEqual(plain.gradLogp[12], 0)
    XCTAssertEqual(r.gradLogp[12], 0)
  }

  /// Branches, clip decisions and weights come from logp_frozen; values and gradients from logp.
  /// Single-token responses (T = S = 3, n_i = 1, L = 1), logp_old = −1:
  ///   t0 A=+1: frozen −1.0 (ρ = 1, unclipped), live −0.5 → ℓ = −e^0.5, ∂ = −e^0.5
  ///   t1 A=+1: frozen −0.5 (ρ = 1.65, clipped high), live −1.0 → ℓ = −(1 + eps_high), ∂ = 0
  ///   t2 A=−1: frozen −1.6 (ρ = 0.55, clipped low), live −1.0 → ℓ = 1 − eps_low, ∂ = 0
  func testConstantsComeFromLogpFrozen() throws {
    var b = ObjectiveBatch(responses: [(0, 1, [-0.5], [-1], [-1], [1]), (0, 1, [-1], [-1], [-1], [1]), (1, -1, [-1], [-1], [-1], [1])])
    b.logpFrozen = [-1.0, -0.5, -1.6]
    b.maxResponseTokens = 1
    for (name, epsHigh) in [("ppo-clip", 0.2), ("dapo", 0.28), ("grpo", 0.2), ("dr-grpo", 0.2)] {
      let r = try objective(name).compute(b)
      XCTAssertEqual(r.loss, (-exp(0.5) - (1 + epsHigh) + 0.8) / 3, accuracy: 1e-7, name)
      XCTAssertEqual(Double(r.gradLogp[0]), -exp(0.5) / 3, accuracy: 1e-7, name)
      XCTAssertEqual(r.gradLogp[1], 0, name)
      XCTAssertEqual(r.gradLogp[2], 0, name)
    }
    // CISPO: the weight clip(ρ) is frozen (t0: 1, t1: 1.28, t2: 0.8), the log-prob live.
    let c = try objective("cispo").compute(b)
    let cispoGrad: [Double] = [-1.0 / 3, -1.28 / 3, 0.8 / 3]  // −c·A/T
    for t in 0..<3 { XCTAssertEqual(Double(c.gradLogp[t]), cispoGrad[t], accuracy: 1e-7, "cispo token \(t)") }
    let cispoLoss: Double = (0.5 + 1.28 - 0.8) / 3  // −Σ c·A·logp / T with logp −0.5, −1, −1
    XCTAssertEqual(c.loss, cispoLoss, accuracy: 1e-7)
    // GSPO: σ from frozen decides the clip, s from logp is the value. Two two-token responses,
    // logp_old = −1: r0 frozen σ = 1 (inside), live s = e^0.4; r1 frozen σ = e^0.05 (clipped high), live s = 1.
    var g = ObjectiveBatch(responses: [(0, 1, [-0.5, -0.7], [-1, -1], [-1, -1], [1, 1]), (0, 1, [-1, -1], [-1, -1], [-1, -1], [1, 1])])
    g.logpFrozen = [-1, -1, -0.9, -1.0]
    let s = try objective("gspo").compute(g)
    let live = exp((Double(Float(-0.5)) + 1 + Double(Float(-0.7)) + 1) / 2)
    XCTAssertEqual(s.loss, (-live - 1.0004) / 2, accuracy: 1e-7)
    XCTAssertEqual(Double(s.gradLogp[0]), -live / 2 / 2, accuracy: 1e-7)
    XCTAssertEqual(s.gradLogp[0], s.gradLogp[1])
    XCTAssertEqual(s.gradLogp[2], 0)
    XCTAssertEqual(s.gradLogp[3], 0)
  }

  // MARK: golden: CISPO, GSPO

  func testCISPOGolden() throws {
    let b = Self.batch
    let inst = try objective("cispo")
    let r = try inst.compute(b)
    let want = Reference.cispo(b, epsLow: 0.2, epsHigh: 0.28)
    assertMatches(r, want, b, "cispo")
    let m = metrics(inst, r)
    XCTAssertEqual(m["masked_fraction_low"]!, 0, "CISPO never zeroes a gradient")
    XCTAssertEqual(m["masked_fraction_high"]!, 0)
    XCTAssertEqual(m["clipped_fraction_low"]!, Double(want.low) / 14, accuracy: 1e-12)
    XCTAssertEqual(m["clipped_fraction_high"]!, Double(want.high) / 14, accuracy: 1e-12)
    XCTAssertNotEqual(r.gradLogp[0], 0, "clipped high, still a gradient")
    // TRL-style: only an upper cap.
    assertMatches(try objective("cispo", ["lower_bound": .bool(false), "eps_high": .float(4)]).compute(b),
                  Reference.cispo(b, epsLow: 0.2, epsHigh: 4, lowerBound: false), b, "cispo upper cap 5")
  }

  /// GSPO's own batch: sequence log-ratios on both sides of its tiny bounds and one above the clamp.
  ///   r0 A=+1    mean log r 0.025  → s > 1.0004, clipped high
  ///   r1 A=+1    mean 6.7e-5       → inside
  ///   r2 A=−1    mean −0.01        → clipped low
  ///   r3 A=−1    mean 0.2          → A < 0 above: kept
  ///   r4 A=+0.5  mean −0.15 (a masked token) → A > 0 below: kept
  ///   r5 A=−0.5  mean 11.5         → log s clamped at 10: constant, no gradient
  ///   r6 A=0; r7 all masked
  static let gspoBatch = ratioBatch([
    (0, 1.0, [-0.5, -1.0], [0.1, -0.05], [0, 0], [1, 1]),
    (0, 1.0, [-0.3, -0.6, -0.9], [0.0001, 0.0002, -0.0001], [0, 0, 0], [1, 1, 1]),
    (1, -1.0, [-1.5], [-0.01], [0], [1]),
    (1, -1.0, [-0.2, -0.4], [0.3, 0.1], [0, 0], [1, 1]),
    (2, 0.5, [-0.8, -1.1, -0.6], [-0.2, 5.0, -0.1], [0, 0, 0], [1, 0, 1]),
    (2, -0.5, [-4.0, -3.0], [11.0, 12.0], [0, 0], [1, 1]),
    (3, 0.0, [-0.7], [0.2], [0], [1]),
    (3, 0.3, [-0.7, -0.2], [0.2, 0.1], [0, 0], [0, 0]),
  ])

  func testGSPOGolden() throws {
    for b in [Self.gspoBatch, Self.batch] {
      let inst = try objective("gspo")
      let r = try inst.compute(b)
      let want = Reference.gspo(b, epsLow: 3e-4, epsHigh: 4e-4)
      assertMatches(r, want, b, "gspo")
      let m = metrics(inst, r)
      XCTAssertEqual(m["masked_fraction_low"]!, Double(want.low) / b.totalTokens, accuracy: 1e-12)
      XCTAssertEqual(m["masked_fraction_high"]!, Double(want.high) / b.totalTokens, accuracy: 1e-12)
    }
    let r = try objective("gspo").compute(Self.gspoBatch)
    XCTAssertEqual(r.gradLogp[0], 0, "r0 clipped high")
    XCTAssertNotEqual(r.gradLogp[2], 0, "r1 inside")
    XCTAssertEqual(r.gradLogp[2], r.gradLogp[4], "one gradient per response")
    XCTAssertEqual(r.gradLogp[5], 0, "r2 clipped low")
    XCTAssertNotEqual(r.gradLogp[6], 0, "r3 kept")
    XCTAssertEqual(r.gradLogp[11], 0, "r5 clamped")
    XCTAssertTrue(r.loss.isFinite)
    // A response's advantage is its first unmasked token's: the others' are not read.
    var scrambled = Self.gspoBatch
    for (i, range) in Reference.ranges(scrambled).enumerated() {
      let kept = range.filter { scrambled.mask[$0] == 1 }
      for t in range where t != kept.first { scrambled.advantages[t] = Float(100 + i) }
    }
    let s = try objective("gspo").compute(scrambled)
    XCTAssertEqual(s.gradLogp, r.gradLogp)
    XCTAssertEqual(s.loss, r.loss)
  }

  // MARK: finite differences (logp_frozen held fixed)

  func testGradientsMatchFiniteDifferences() throws {
    let tis: [String: ParameterValue] = ["tis_mode": .string("token"), "is_ratio": .string("current")]
    let seq: [String: ParameterValue] = ["tis_mode": .string("sequence"), "is_ratio": .string("current"), "tis_cap": .float(1e6)]
    let cases: [(String, [String: ParameterValue])] = [
      ("ppo-clip", [:]), ("ppo-clip", ["dual_clip": .float(1.1)]), ("ppo-clip", tis), ("ppo-clip", seq),
      ("ppo-clip", ["tis_mode": .string("token"), "mis": .bool(true)]),
      ("dapo", [:]), ("dapo", tis), ("grpo", [:]), ("grpo", ["kl_coef": .float(0.2)]), ("grpo", seq),
      ("grpo", ["kl_coef": .float(0.2), "tis_mode": .string("token")]),
      ("dr-grpo", ["kl_coef": .float(0.2)]), ("dr-grpo", tis), ("cispo", [:]), ("cispo", ["lower_bound": .bool(false)]),
      ("gspo", [:]), ("gspo", ["eps_low": .float(0.2), "eps_high": .float(0.2)]),
    ]
    for (name, settings) in cases {
      let inst = try objective(name, settings)
      for var b in [Self.batchWithRef, PluginChecker.objectiveBatch(responses: 8, seed: 31)] {
        b.maxResponseTokens = 8
        if b.logpRef == nil { b.logpRef = b.logpOld.map { $0 - 0.05 } }
        let (worst, gmax) = try finiteDifferenceGap(inst, b)
        XCTAssertLessThan(worst, 1e-4 * max(gmax, 1), "\(name) \(settings)")
        XCTAssertGreaterThan(gmax, 0, "\(name) \(settings): a non-trivial gradient")
      }
      // GSPO's batch exercises the clamp and per-sequence clipping (ratios up to e^12).
      var g = Self.gspoBatch
      g.logpRef = g.logp.map { $0 - 0.1 }
      let (worst, gmax) = try finiteDifferenceGap(inst, g)
      XCTAssertLessThan(worst, 1e-4 * max(gmax, 1), "\(name) \(settings) on the GSPO batch")
    }
  }

  // MARK: documented equivalences

  func testMiniRLWithoutClipIsReinforceWithTruncatedISWeights() throws {
    let b = Self.batch
    let cap = 2.0
    let minirl = try objective("minirl", ["clip": .bool(false), "tis_cap": .float(cap)]).compute(b)
    // reinforce on advantages pre-multiplied by the frozen weight min(π_θ/μ_old, C).
    var weighted = b
    var truncated = 0
    for t in 0..<b.numTokens {
      let w = min(exp(Double(b.logp[t]) - Double(b.logpRollout[t])), cap)
      if w == cap && b.mask[t] == 1 { truncated += 1 }
      weighted.advantages[t] = Float(Double(b.advantages[t]) * w)
    }
    XCTAssertGreaterThan(truncated, 0, "the cap is exercised")
    let reinforce = try objective("reinforce").compute(weighted)
    XCTAssertEqual(minirl.loss, reinforce.loss, accuracy: 1e-6 * abs(reinforce.loss))
    for t in 0..<b.numTokens {
      XCTAssertEqual(Double(minirl.gradLogp[t]), Double(reinforce.gradLogp[t]), accuracy: 1e-6 * abs(Double(reinforce.gradLogp[t])) + 1e-12, "token \(t)")
    }
  }

  func testMiniRLWithoutClipOrISIsExactlyReinforce() throws {
    for b in [Self.batch, PluginChecker.objectiveBatch(responses: 9, seed: 41)] {
      let minirl = try objective("minirl", ["clip": .bool(false), "train_infer_is": .bool(false)]).compute(b)
      let reinforce = try objective("reinforce").compute(b)
      XCTAssertEqual(minirl.gradLogp, reinforce.gradLogp)
      XCTAssertEqual(minirl.loss, reinforce.loss, accuracy: 1e-12)
    }
  }

  func testPPOClipOnTheFirstMiniBatchIsTokenMeanReinforce() throws {
    var b = Self.batch
    b.logpOld = b.logp  // first mini-batch of a step: π_θ == π_old, r ≡ 1, nothing clipped
    let inst = try objective("ppo-clip", ["dual_clip": .float(3)])
    let r = try inst.compute(b)
    let reinforce = try objective("reinforce").compute(b)  // seq-mean-token-sum: −A/S
    for t in 0..<b.numTokens {
      let expected = b.mask[t] == 1 ? -Double(b.advantages[t]) / b.totalTokens : 0
      XCTAssertEqual(Double(r.gradLogp[t]), expected, accuracy: 1e-7, "token \(t)")
      XCTAssertEqual(Double(r.gradLogp[t]), Double(reinforce.gradLogp[t]) * b.totalSequences / b.totalTokens, accuracy: 1e-7)
    }
    XCTAssertEqual(r.loss, -(0..<b.numTokens).filter { b.mask[$0] == 1 }.map { Double(b.advantages[$0]) }.reduce(0, +) / 14, accuracy: 1e-7)
    let m = metrics(inst, r)
    XCTAssertEqual(m["masked_fraction_low"]!, 0)
    XCTAssertEqual(m["masked_fraction_high"]!, 0)
  }

  func testDrGRPOAndGRPODifferExactlyByTheLengthNormaliser() throws {
    var b = Self.batchWithRef
    b.maxResponseTokens = 8
    for settings: [String: ParameterValue] in [[:], ["kl_coef": .float(0.1)], ["tis_mode": .string("token")]] {
      let grpo = try objective("grpo", settings), dr = try objective("dr-grpo", settings)
      let g = try grpo.compute(b), d = try dr.compute(b)
      for (i, r) in Reference.ranges(b).enumerated() {
        let n = Double(r.filter { b.mask[$0] == 1 }.count)
        for t in r where b.mask[t] == 1 {
          XCTAssertEqual(Double(d.gradLogp[t]), Double(g.gradLogp[t]) * n / 8, accuracy: 1e-6 * abs(Double(g.gradLogp[t])) + 1e-12, "token \(t)")
        }
        // Per response (one call each, whole-batch normalisers): loss_dr = loss_grpo · n_i / L.
        let gi = try grpo.compute(b.slice(i..<(i + 1))), di = try dr.compute(b.slice(i..<(i + 1)))
        XCTAssertEqual(di.loss, gi.loss * n / 8, accuracy: 1e-9 * max(abs(gi.loss), 1), "response \(i) \(settings)")
      }
    }
    // A batch that does not state max_response_tokens: L = 1 (seq-mean-token-sum), with a warning.
    b.maxResponseTokens = 0
    let g = try objective("grpo").compute(b), d = try objective("dr-grpo").compute(b)
    for r in Reference.ranges(b) {
      let n = Double(r.filter { b.mask[$0] == 1 }.count)
      for t in r where b.mask[t] == 1 {
        XCTAssertEqual(Double(d.gradLogp[t]), Double(g.gradLogp[t]) * n, accuracy: 1e-6 * abs(Double(g.gradLogp[t])) + 1e-12)
      }
    }
  }

  func testSequenceLevelISEqualsTokenLevelOnLengthOneResponses() throws {
    // Every response one token long (one of them masked): the product of one ratio is that ratio.
    let b = ratioBatch([
      (0, 1.0, [-0.5], [0.1], [1.0], [1]), (0, -1.0, [-1.0], [-0.3], [-0.9], [1]),
      (1, 0.5, [-0.2], [0.2], [0.3], [1]), (1, -0.5, [-2.0], [0.0], [-2.0], [1]),
      (2, 0.7, [-0.4], [0.5], [0.6], [0]), (2, 0.2, [-0.9], [-0.1], [0.05], [1]),
    ])
    for name in ["ppo-clip", "grpo", "dapo"] {
      for extra: [String: ParameterValue] in [[:], ["mis": .bool(true)], ["is_ratio": .string("current")]] {
        let token = try objective(name, extra.merging(["tis_mode": .string("token")]) { a, _ in a }).compute(b)
        let sequence = try objective(name, extra.merging(["tis_mode": .string("sequence")]) { a, _ in a }).compute(b)
        XCTAssertEqual(token.gradLogp, sequence.gradLogp, "\(name) \(extra)")
        XCTAssertEqual(token.loss, sequence.loss, "\(name) \(extra)")
        XCTAssertEqual(token.metrics, sequence.metrics, "\(name) \(extra)")
      }
    }
  }

  // MARK: contract details

  func testEmptyAndAllMaskedAndAdditivity() throws {
    var masked = Self.batch
    masked.mask = masked.mask.map { _ in 0 }
    masked.totalTokens = 0
    for name in ["ppo-clip", "grpo", "dr-grpo", "dapo", "cispo", "gspo"] {
      let inst = try objective(name)
      let r = try inst.compute(masked)
      XCTAssertEqual(r.loss, 0, name)
      XCTAssertTrue(r.gradLogp.allSatisfy { $0 == 0 }, name)
      // Calls split at group boundaries add up to the whole (whole-batch normalisers).
      var b = Self.batch
      b.maxResponseTokens = 8
      let whole = try inst.compute(b)
      let parts = [b.slice(0..<3), b.slice(3..<5), b.slice(5..<7)].map { try? inst.compute($0) }
      XCTAssertEqual(parts.compactMap { $0?.loss }.reduce(0, +), whole.loss, accuracy: 1e-12, name)
      XCTAssertEqual(parts.compactMap { $0?.gradLogp }.flatMap { $0 }, whole.gradLogp, name)
    }
  }

  func testNonFiniteInputNamesTheToken() throws {
    var b = Self.batch
    b.logpOld[6] = .nan
    for name in ["ppo-clip", "grpo", "dr-grpo", "dapo", "cispo", "gspo"] {
      XCTAssertThrowsError(try objective(name).compute(b)) { error in
        XCTAssertTrue("\(error)".contains("KEEL_ERR_NUMERIC"), "\(name): \(error)")
        XCTAssertTrue("\(error)".contains("logp_old"), "\(name): \(error)")
        XCTAssertTrue("\(error)".contains("token 6 (response 2)"), "\(name): \(error)")
      }
    }
    b = Self.batch
    b.logpOld[9] = .infinity
    b.mask[9] = 0  // a masked token's inputs are never read
    XCTAssertNoThrow(try objective("ppo-clip").compute(b))
  }

  func testDescriptionsNameAggregationAndTwin() throws {
    let expected = ["ppo-clip": "token-mean", "dapo": "token-mean", "grpo": "seq-mean-token-mean",
                    "dr-grpo": "seq-mean-token-sum-norm", "cispo": "token-mean", "gspo": "seq-mean-token-mean"]
    for (name, aggregation) in expected {
      let lib = try builtin(name)
      XCTAssertEqual(lib.aggregation, aggregation, name)
      XCTAssertTrue(lib.description.contains(aggregation), "\(name): \(lib.description)")
      XCTAssertTrue(lib.description.contains("verl"), "\(name): \(lib.description)")
      XCTAssertTrue(lib.description.contains("TRL"), "\(name): \(lib.description)")
      let names = lib.scalars.map(\.name)
      for metric in ["masked_fraction_low", "masked_fraction_high", "is_weight_mean"] {
        XCTAssertTrue(names.contains(metric), "\(name) lacks \(metric)")
      }
      XCTAssertEqual(lib.objectiveFlags, 0, "\(name): no objective needs logp_ref unconditionally")
    }
  }
}

// MARK: - Baselines

final class BaselineLibraryTests: XCTestCase {
  // Groups given in any order with arbitrary ids: 7 (mixed), −3 (singleton), 9 (all equal), 2 (two).
  static let rewards: [Float] = [1, 0, 9, 0.25, 1, 0.5, 9, 3, -2, 9]
  static let groupIds: [Int64] = [7, 7, 9, 7, 7, -3, 9, 2, 2, 9]
  static let lengths: [Int64] = [3, 4, 2, 1, 2, 5, 3, 6, 2, 1]

  func advantages(_ name: String, _ settings: [String: ParameterValue] = [:]) throws -> [Float] {
    try BaselineInstance(library: try builtin(name), settings: settings)
      .advantages(rewards: Self.rewards, groupIds: Self.groupIds, lengths: Self.lengths)
  }

  func assertClose(_ got: [Float], _ want: [Double], _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.count, want.count, label, file: file, line: line)
    for (i, (g, w)) in zip(got, want).enumerated() {
      XCTAssertEqual(Double(g), w, accuracy: 1e-5 * max(abs(w), 1e-6), "\(label): response \(i)", file: file, line: line)
    }
  }

  func testGroupMeanStd() throws {
    let a = try advantages("group-mean-std")
    assertClose(a, Reference.groupMeanStd(Self.rewards, Self.groupIds), "group-mean-std")
    XCTAssertEqual(a[5], 0, "singleton → 0 (verl would give R)")
    XCTAssertEqual([a[2], a[6], a[9]], [0, 0, 0], "all-equal group → exactly 0")
    // Hand check on group 2: rewards 3, −2: mean ½, unbiased std √12.5.
    XCTAssertEqual(Double(a[7]), 2.5 / (12.5.squareRoot() + 1e-6), accuracy: 1e-6)
    let trl = try advantages("group-mean-std", ["eps": .float(1e-4)])
    XCTAssertEqual(Double(trl[7]), 2.5 / (12.5.squareRoot() + 1e-4), accuracy: 1e-6)
  }

  /// scale = batch is TRL's scale_rewards = "batch": the batch's std, not each group's.
  func testGroupMeanStdScaledByTheBatch() throws {
    let a = try advantages("group-mean-std", ["scale": .string("batch"), "eps": .float(1e-4)])
    assertClose(a, Reference.groupMeanBatchStd(Self.rewards, Self.groupIds, eps: 1e-4), "group-mean-std scale=batch")
    XCTAssertEqual(a[5], 0, "singleton → 0")
    XCTAssertEqual([a[2], a[6], a[9]], [0, 0, 0], "all-equal group → 0 (its deviations are 0)")
    // the same group-2 deviation (2.5) as above, now over the batch's std: smaller than the group's
    let group = try advantages("group-mean-std", ["eps": .float(1e-4)])
    XCTAssertNotEqual(a[7], group[7])
    // TRL's own formula on this batch, written out: (R − mean_g) / (torch.std(R) + 1e-4)
    let r = Self.rewards.map(Double.init), m = r.reduce(0, +) / Double(r.count)
    let std = (r.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(r.count - 1)).squareRoot()
    XCTAssertEqual(Double(a[7]), 2.5 / (std + 1e-4), accuracy: 1e-5)
    XCTAssertThrowsError(try advantages("group-mean-std", ["scale": .string("token")]))
  }

  func testRLOO() throws {
    let a = try advantages("rloo")
    assertClose(a, Reference.rloo(Self.rewards, Self.groupIds), "rloo")
    XCTAssertEqual(a[5], 0, "singleton → 0")
    XCTAssertEqual([a[2], a[6], a[9]], [0, 0, 0])
    // Group 7 = {1, 0, 0.25, 1}: response 0 → 1 − (0 + 0.25 + 1)/3.
    XCTAssertEqual(Double(a[0]), 1 - 1.25 / 3, accuracy: 1e-6)
  }

  func testBatchNorm() throws {
    let a = try advantages("batch-norm")
    assertClose(a, Reference.batchNorm(Self.rewards, Self.groupIds, Self.lengths), "batch-norm")
    // The batch mean is not 0 here, so the all-equal group ends non-zero (REINFORCE++).
    XCTAssertNotEqual(a[2], 0)
    XCTAssertEqual(a[2], a[6])
    // Token-weighted: the whitened per-token values have mean 0 and unbiased variance ≈ 1.
    var tokens: [Double] = []
    for i in 0..<a.count { tokens += [Double](repeating: Double(a[i]), count: Int(Self.lengths[i])) }
    let mean = tokens.reduce(0, +) / Double(tokens.count)
    let variance = tokens.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(tokens.count - 1)
    XCTAssertEqual(mean, 0, accuracy: 1e-6)
    XCTAssertEqual(variance, 1, accuracy: 1e-6)
  }

  func testNone() throws {
    XCTAssertEqual(try advantages("none"), Self.rewards)
  }

  func testBaselinesRejectNaN() throws {
    for name in ["group-mean-std", "rloo", "batch-norm", "none"] {
      let inst = try BaselineInstance(library: try builtin(name))
      XCTAssertThrowsError(try inst.advantages(rewards: [1, .nan], groupIds: [0, 0], lengths: [1, 1]), name) { error in
        XCTAssertTrue("\(error)".contains("response 1"), "\(name): \(error)")
      }
    }
  }
}

// MARK: - Rewards

final class RewardLibraryTests: XCTestCase {
  func testFormatDigits() throws {
    let inst = try RewardInstance(library: try builtin("format"))
    let cases: [(String, Float)] = [("42", 1), (" -7 ", 1), ("+007", 1), ("42.", 1), ("4 2", 0), ("1,234", 0),
                                    ("3.5", 0), ("", 0), ("-", 0), ("abc", 0), ("x42", 0), ("४२", 0)]
    let r = try inst.score(cases.map { RewardSample(prompt: "p", response: $0.0, reference: "") })
    XCTAssertEqual(r.rewards, cases.map(\.1))
    XCTAssertEqual(r.components.map { $0[0] }, [1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1], "answer_found: all but the empty one")
  }

  func testFormatPatternsAndMarker() throws {
    let marked = try RewardInstance(library: try builtin("format"), settings: ["marker": .string("####")])
    let m = try marked.score([RewardSample(prompt: "", response: "3+4=7 #### 7", reference: ""),
                              RewardSample(prompt: "", response: "#### x #### -12", reference: ""),
                              RewardSample(prompt: "", response: "7", reference: ""),
                              RewardSample(prompt: "", response: "#### seven", reference: "")])
    XCTAssertEqual(m.rewards, [1, 1, 0, 0])
    XCTAssertEqual(m.components.map { $0[0] }, [1, 1, 0, 1], "answer_found")
    let integer = try RewardInstance(library: try builtin("format"), settings: ["pattern": .string("integer")])
    XCTAssertEqual(try integer.score(["1,234", "-12,000", "1,23", "42"].map { RewardSample(prompt: "", response: $0, reference: "") }).rewards,
                   [1, 1, 0, 1])
    let nonempty = try RewardInstance(library: try builtin("format"), settings: ["pattern": .string("nonempty")])
    XCTAssertEqual(try nonempty.score(["x", " ", "."].map { RewardSample(prompt: "", response: $0, reference: "") }).rewards, [1, 0, 0])
    XCTAssertThrowsError(try RewardInstance(library: try builtin("format"), settings: ["pattern": .string("regex")])) { error in
      XCTAssertTrue("\(error)".contains("digits, integer, nonempty"), "\(error)")
    }
  }

  func testLengthPenalty() throws {
    func penalties(_ settings: [String: ParameterValue], _ lengths: [Int]) throws -> [Float] {
      let inst = try RewardInstance(library: try builtin("length-penalty"), settings: settings)
      return try inst.score(lengths.map { RewardSample(prompt: "", response: "", responseIds: [Int32](repeating: 1, count: $0), reference: "") }).rewards
    }
    // Defaults max_length 8, buffer 2: 0 up to 6 tokens, −½ at 7, −1 at 8 and beyond.
    XCTAssertEqual(try penalties([:], [0, 1, 6, 7, 8, 9, 100]), [0, 0, 0, -0.5, -1, -1, -1])
    // DAPO's formula ((L_max − L_cache) − |y|) / L_cache with L_max 10, L_cache 4.
    let long = try penalties(["max_length": .int(10), "buffer": .int(4)], [6, 7, 9, 10, 11])
    XCTAssertEqual(long.map(Double.init), [0, -0.25, -0.75, -1, -1])
    XCTAssertEqual(try penalties(["buffer": .int(0)], [8, 9]), [0, -1], "buffer 0 is a step")
    let inst = try RewardInstance(library: try builtin("length-penalty"))
    let r = try inst.score([7, 9].map { RewardSample(prompt: "", response: "", responseIds: [Int32](repeating: 1, count: $0), reference: "") })
    XCTAssertEqual(r.components.map { $0[0] }, [0, 1], "overlong")
    XCTAssertThrowsError(try RewardInstance(library: try builtin("length-penalty"), settings: ["buffer": .int(9)]))
  }
}

// MARK: - The validator on every built-in plugin

final class BuiltinLibraryCheckTests: XCTestCase {
  static let all = ["minirl", "reinforce", "ppo-clip", "grpo", "dr-grpo", "dapo", "cispo", "gspo",
                    "clip-cov", "kl-cov", "on-policy-distill",
                    "group-mean", "group-mean-std", "rloo", "batch-norm", "none",
                    "exact-match", "format", "length-penalty"]

  func testEveryBuiltinPassesTheChecker() throws {
    for name in Self.all {
      let lib = try builtin(name)
      XCTAssertEqual(lib.name, name)
      let results = PluginChecker(library: lib).run()
      XCTAssertFalse(results.isEmpty, name)
      for r in results { XCTAssertTrue(r.passed, "\(name): \(r.name): \(r.detail)") }
    }
  }

  func testNonDefaultSettingsPassTheChecker() throws {
    let cases: [(String, [String: ParameterValue])] = [
      ("ppo-clip", ["dual_clip": .float(3), "tis_mode": .string("token")]),
      ("ppo-clip", ["tis_mode": .string("sequence"), "mis": .bool(true), "is_ratio": .string("current")]),
      ("grpo", ["tis_mode": .string("sequence")]), ("dr-grpo", ["tis_mode": .string("token"), "mis": .bool(true)]),
      ("dapo", ["tis_mode": .string("token"), "is_ratio": .string("current")]),
      ("cispo", ["lower_bound": .bool(false)]), ("gspo", ["eps_low": .float(0.2), "eps_high": .float(0.2)]),
      ("group-mean-std", ["eps": .float(1e-4)]), ("batch-norm", ["eps": .float(0)]),
      ("format", ["pattern": .string("integer"), "marker": .string("####")]),
      ("length-penalty", ["max_length": .int(3), "buffer": .int(1)]),
      // ABI 1.1 terms: the checker feeds the inputs the instance asks for and checks their gradients
      ("minirl", ["entropy_coef": .float(0.1)]), ("ppo-clip", ["entropy_coef": .float(0.05), "loss_agg_mode": .string("seq-mean-token-sum")]),
      ("grpo", ["kl_coef": .float(0.1), "kl_estimator": .string("full"), "entropy_coef": .float(0.01)]),
      ("dr-grpo", ["kl_coef": .float(0.1)]), ("reinforce", ["seq_is": .string("truncate"), "loss_agg_mode": .string("token-mean")]),
      ("on-policy-distill", ["mode": .string("full"), "reward_weight": .float(0.5)]),
      ("on-policy-distill", ["reward_weight": .float(1)]),
      ("clip-cov", ["clip_cov_ratio": .float(0.2), "clip_cov_lb": .float(-10), "clip_cov_ub": .float(10)]),
      ("kl-cov", ["kl_cov_ratio": .float(0.2)]),
    ]
    for (name, settings) in cases {
      for r in PluginChecker(library: try builtin(name), settings: settings).run() {
        XCTAssertTrue(r.passed, "\(name) \(settings): \(r.name): \(r.detail)")
      }
    }
  }
}
