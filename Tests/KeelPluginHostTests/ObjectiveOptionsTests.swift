// ObjectiveOptionsTests.swift — the ABI 1.1 options of the built-in objectives, loaded through
// the real dlopen path and checked against INDEPENDENT float64 references written below from
// verl's formulas (agg_loss, the entropy bonus, rollout correction), not from the plugins'
// branch logic:
//   loss_agg_mode  (ppo-clip, dapo, grpo, dr-grpo, reinforce): verl's four aggregations with
//                  Keel's whole-step normalisers T, S, n_i, L_max;
//   entropy_coef   (the PPO family, minirl): loss −= γ · agg(entropy), grad_entropy = −γ · c_t;
//   kl_estimator   (grpo, dr-grpo): k3 from logp_ref, or the host's full-vocabulary kl_ref with
//                  its gradient in grad_kl_ref and none through logp;
//   rejection      (the PPO family): verl's rollout rejection sampling — rejected tokens or
//                  responses leave the loss and the denominators (token-mean: T·K/U per call);
//   seq_is         (reinforce): verl's bypass-mode REINFORCE with a truncated or masked
//                  sequence-level IS weight sg[Π π_θ/μ] from logp_frozen and logp_rollout.
// Every new parameter at its default gives results identical (==) to not setting it, and asks
// for no input; a bad choice is refused, naming the allowed values.
// Tolerances: loss 1e-9 relative (the plugins sum in double; the references sum in another
// order), every gradient entry 1e-6 relative (the plugins store float), metrics 1e-12.
import KeelPluginHost
import XCTest

// MARK: - References (float64)

enum OptionsReference {
  struct Result {
    var loss = 0.0
    var grad: [Double]
    var gradEntropy: [Double]
    var gradKlRef: [Double]
    /// The IS weight as used per token (1 without IS; rejection: 1 kept, 0 rejected).
    var weights: [Double]
    var kept: [Bool]
    var klSum = 0.0
    init(tokens n: Int) {
      grad = [Double](repeating: 0, count: n)
      gradEntropy = grad
      gradKlRef = grad
      weights = [Double](repeating: 1, count: n)
      kept = [Bool](repeating: true, count: n)
    }
  }

  /// The PPO family's settings (defaults: ppo-clip's).
  struct PPO {
    var agg = "token-mean"
    var epsLow = 0.2, epsHigh = 0.2
    var klCoef = 0.0, klFull = false
    var entropyCoef = 0.0
    var tis = "none", cap = 2.0, mis = false, misLow = 0.5, ratio = "old", rejection = false
  }

  static func ranges(_ b: ObjectiveBatch) -> [Range<Int>] {
    (0..<b.numSequences).map { Int(b.seqOffsets[$0])..<Int(b.seqOffsets[$0 + 1]) }
  }

  /// verl's agg_loss as a per-token factor c_t, with Keel's whole-step totals: token-mean 1/T,
  /// seq-mean-token-sum 1/S, seq-mean-token-mean 1/(S n_i), seq-mean-token-sum-norm 1/(S L_max).
  /// `kept` are the tokens in the loss mask (verl removes rejected ones from it): they define
  /// n_i, and T becomes T·K/U (K kept, U unmasked tokens of the call; = T without rejection).
  static func factors(_ b: ObjectiveBatch, _ agg: String, kept: [Bool]) -> [Double] {
    let unmasked = (0..<b.numTokens).filter { b.mask[$0] == 1 }
    let k = Double(unmasked.filter { kept[$0] }.count), u = Double(unmasked.count)
    let lMax = Double(b.maxResponseTokens > 0 ? b.maxResponseTokens : 1)
    var c = [Double](repeating: 0, count: b.numTokens)
    for r in ranges(b) {
      let n = Double(r.filter { b.mask[$0] == 1 && kept[$0] }.count)
      for t in r {
        switch agg {
        case "token-mean": c[t] = k > 0 ? 1 / (b.totalTokens * k / u) : 0
        case "seq-mean-token-sum": c[t] = 1 / b.totalSequences
        case "seq-mean-token-mean": c[t] = n > 0 ? 1 / (b.totalSequences * n) : 0
        default: c[t] = 1 / (b.totalSequences * lMax)
        }
      }
    }
    return c
  }

  /// The PPO family, textbook form (valid for logp_frozen == logp, as in the golden batch):
  /// per kept unmasked token c_t · (w_t · max(−A r, −A clip(r)) + β κ_t − γ H_t).
  static func ppo(_ b: ObjectiveBatch, _ o: PPO) -> Result {
    let n = b.numTokens
    var out = Result(tokens: n)
    let numerator = o.ratio == "old" ? b.logpOld : (b.logpFrozen ?? b.logp)
    if o.tis != "none" {
      for r in ranges(b) {
        var logProduct = 0.0
        for t in r where b.mask[t] == 1 { logProduct += Double(numerator[t]) - Double(b.logpRollout[t]) }
        for t in r {
          let raw = o.tis == "token" ? exp(Double(numerator[t]) - Double(b.logpRollout[t])) : exp(logProduct)
          let inside = raw >= o.misLow && raw <= o.cap
          if o.rejection {
            out.weights[t] = inside ? 1 : 0
            out.kept[t] = inside
          } else if o.mis {
            out.weights[t] = inside ? raw : 0
          } else {
            out.weights[t] = min(raw, o.cap)
          }
        }
      }
    }
    let c = factors(b, o.agg, kept: out.kept)
    for t in 0..<n where b.mask[t] == 1 {
      let lp = Double(b.logp[t]), a = Double(b.advantages[t])
      let ratio = exp(lp - Double(b.logpOld[t]))
      let unclipped = -a * ratio, clipped = -a * min(max(ratio, 1 - o.epsLow), 1 + o.epsHigh)
      let value = max(unclipped, clipped)
      let dvalue = unclipped >= clipped ? -a * ratio : 0
      var kl = 0.0, dkl = 0.0
      if o.klCoef > 0 {
        if o.klFull {
          kl = Double(b.klRef![t])
        } else {
          let d = Double(b.logpRef![t]) - lp
          kl = exp(d) - d - 1
          dkl = 1 - exp(d)
        }
      }
      out.klSum += kl
      guard out.kept[t] else { continue }
      let h = o.entropyCoef > 0 ? Double(b.entropy![t]) : 0
      out.loss += c[t] * (out.weights[t] * value + o.klCoef * kl - o.entropyCoef * h)
      out.grad[t] = c[t] * (out.weights[t] * dvalue + o.klCoef * dkl)
      out.gradEntropy[t] = -o.entropyCoef * c[t]
      out.gradKlRef[t] = o.klFull ? o.klCoef * c[t] : 0
    }
    return out
  }

  /// MiniRL (paper Eq. 7) plus the entropy bonus over every unmasked token:
  /// −(1/S) Σ_i norm_i Σ_t (M_t w_t A_t logp_t + γ H_t).
  static func minirl(_ b: ObjectiveBatch, entropyCoef: Double, lengthNorm: Bool,
                     epsLow: Double = 0.2, epsHigh: Double = 0.27, cap: Double = 5) -> Result {
    var out = Result(tokens: b.numTokens)
    let s = b.totalSequences
    for r in ranges(b) {
      let n = Double(r.filter { b.mask[$0] == 1 }.count)
      let norm = lengthNorm ? (n > 0 ? 1 / n : 0) : 1
      for t in r where b.mask[t] == 1 {
        let lp = Double(b.logp[t]), a = Double(b.advantages[t])
        let w = min(exp(lp - Double(b.logpRollout[t])), cap)
        let ratio = exp(lp - Double(b.logpOld[t]))
        let clipped = (a > 0 && ratio > 1 + epsHigh) || (a < 0 && ratio < 1 - epsLow)
        let m = clipped ? 0.0 : 1.0
        out.loss += -(norm / s) * (m * w * a * lp + entropyCoef * Double(b.entropy![t]))
        out.grad[t] = -(norm / s) * m * w * a
        out.gradEntropy[t] = -(norm / s) * entropyCoef
      }
    }
    return out
  }

  /// verl's bypass-mode REINFORCE (compute_policy_loss_reinforce): per token −c_t w_i A_t logp_t,
  /// w_i = sg[Π_t π_θ/μ] over the response's unmasked tokens from logp_frozen, truncated
  /// (min(ρ, C)) or masked (ρ inside [low, C], else 0), 1 with "none".
  static func reinforce(_ b: ObjectiveBatch, agg: String, seqIS: String, cap: Double = 2, low: Double = 0.5) -> Result {
    var out = Result(tokens: b.numTokens)
    let frozen = b.logpFrozen ?? b.logp
    for r in ranges(b) {
      var logRho = 0.0
      for t in r where b.mask[t] == 1 { logRho += Double(frozen[t]) - Double(b.logpRollout[t]) }
      let rho = exp(logRho)
      let w = seqIS == "truncate" ? min(rho, cap) : seqIS == "mask" ? (rho >= low && rho <= cap ? rho : 0) : 1
      for t in r { out.weights[t] = w }
    }
    let c = factors(b, agg, kept: [Bool](repeating: true, count: b.numTokens))
    for t in 0..<b.numTokens where b.mask[t] == 1 {
      out.loss -= c[t] * out.weights[t] * Double(b.advantages[t]) * Double(b.logp[t])
      out.grad[t] = -c[t] * out.weights[t] * Double(b.advantages[t])
    }
    return out
  }

  // MARK: checks

  static func close(_ got: Double, _ want: Double, rel: Double, floor: Double) -> Bool {
    abs(got - want) <= rel * max(abs(want), floor)
  }

  /// Loss 1e-9 relative; every gradient entry 1e-6 relative; masked tokens exactly 0.
  static func check(_ got: ObjectiveResult, _ want: Result, _ b: ObjectiveBatch, entropy: Bool = false, klRef: Bool = false,
                    _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertTrue(close(got.loss, want.loss, rel: 1e-9, floor: 1e-3), "\(label): loss \(got.loss) vs \(want.loss)", file: file, line: line)
    var pairs: [(String, [Float]?, [Double])] = [("grad_logp", got.gradLogp, want.grad)]
    if entropy { pairs.append(("grad_entropy", got.gradEntropy, want.gradEntropy)) }
    if klRef { pairs.append(("grad_kl_ref", got.gradKlRef, want.gradKlRef)) }
    for (name, g, w) in pairs {
      guard let g else {
        XCTFail("\(label): \(name) missing", file: file, line: line)
        continue
      }
      XCTAssertEqual(g.count, w.count, "\(label): \(name) length", file: file, line: line)
      for t in 0..<min(g.count, w.count) {
        if b.mask[t] == 0 {
          XCTAssertEqual(g[t], 0, "\(label): \(name) masked token \(t)", file: file, line: line)
        } else {
          XCTAssertTrue(close(Double(g[t]), w[t], rel: 1e-6, floor: 1e-12),
                        "\(label): \(name)[\(t)] = \(g[t]), want \(w[t])", file: file, line: line)
        }
      }
    }
  }

  static func metrics(_ inst: ObjectiveInstance, _ r: ObjectiveResult) -> [String: Double] {
    Dictionary(uniqueKeysWithValues: zip(inst.metricNames, r.metrics))
  }

  /// Responses `range` as their own call with the whole step's normalisers (the 1.1 terms too).
  static func slice(_ b: ObjectiveBatch, _ range: Range<Int>) -> ObjectiveBatch {
    let lo = Int(b.seqOffsets[range.lowerBound]), hi = Int(b.seqOffsets[range.upperBound])
    var s = ObjectiveBatch(seqOffsets: b.seqOffsets[range.lowerBound...range.upperBound].map { $0 - Int64(lo) },
                           groupIds: Array(b.groupIds[range]), mask: Array(b.mask[lo..<hi]),
                           advantages: Array(b.advantages[lo..<hi]), logp: Array(b.logp[lo..<hi]),
                           logpFrozen: b.logpFrozen.map { Array($0[lo..<hi]) }, logpOld: Array(b.logpOld[lo..<hi]),
                           logpRollout: Array(b.logpRollout[lo..<hi]), logpRef: b.logpRef.map { Array($0[lo..<hi]) },
                           totalSequences: b.totalSequences, totalTokens: b.totalTokens, maxResponseTokens: b.maxResponseTokens)
    s.entropy = b.entropy.map { Array($0[lo..<hi]) }
    s.klRef = b.klRef.map { Array($0[lo..<hi]) }
    return s
  }

  /// Eight responses in three groups, lengths 3, 2, 4, 1, 3, 2, 2, 5; S = 8, T = 18 unmasked
  /// tokens; L_max = 8. From per-token log-ratios: logp_old = logp − dOld (r = e^dOld),
  /// logp_rollout = logp_old − dRoll (π_old/μ = e^dRoll). IS bounds [mis_low, tis_cap] = [0.5, 2]:
  ///   r0 A=+1    r 1.65 (clipped high), 0.61, 1.11   IS 2.72 (out), 0.74, 1.22   Π 2.46 (out)
  ///   r1 A=−0.8  r 0.61 (clipped low), 3.32          IS 0.41 (out), 1.49         Π 0.61
  ///   r2 A=+0.6  masked t0; r 1.22, 0.90, 1.35 (high) IS 2.23 (out), 1.05, 0.82  Π 1.92
  ///   r3 A=−0.5  length 1, r 1.28                    IS 0.14 (out)               Π 0.14 (out)
  ///   r4 A=+0.5  masked t1; r 0.78, 1.16             IS 1.35, 2.12 (out)         Π 2.86 (out)
  ///   r5 A=0     r 1.49, 0.67                        IS 1.11, 1.11               Π 1.22
  ///   r6 A=+1.2  all masked (n_i = 0)
  ///   r7 A=−1.1  r 0.74 (clipped low), 1.42, 1.05, 0.90, 1.82   IS all inside     Π 0.90
  /// π_θ/μ (reinforce, is_ratio current) = e^(dOld + dRoll): products 2.72, 1.22, 2.86, 0.17,
  /// 2.59, 1.22, –, 1.65 (above, inside and below [0.5, 2]). Masked tokens carry non-zero
  /// log-ratios: they must stay out of every product. entropy, kl_ref and logp_ref − logp vary.
  static let batch: ObjectiveBatch = {
    let rows: [(group: Int64, advantage: Float, logp: [Float], dOld: [Float], dRoll: [Float], mask: [UInt8])] = [
      (0, 1.0, [-0.5, -1.2, -0.3], [0.5, -0.5, 0.1], [1.0, -0.3, 0.2], [1, 1, 1]),
      (0, -0.8, [-2.0, -0.1], [-0.5, 1.2], [-0.9, 0.4], [1, 1]),
      (0, 0.6, [-0.7, -0.4, -1.5, -0.9], [0.0, 0.2, -0.1, 0.3], [0.7, 0.8, 0.05, -0.2], [0, 1, 1, 1]),
      (1, -0.5, [-0.05], [0.25], [-2.0], [1]),
      (1, 0.5, [-0.9, -2.5, -0.15], [-0.25, 0.6, 0.15], [0.3, -1.5, 0.75], [1, 0, 1]),
      (2, 0.0, [-0.2, -0.6], [0.4, -0.4], [0.1, 0.1], [1, 1]),
      (2, 1.2, [-0.3, -0.8], [0.1, 0.2], [0.3, 0.3], [0, 0]),
      (2, -1.1, [-1.0, -0.35, -0.6, -1.4, -0.25], [-0.3, 0.35, 0.05, -0.1, 0.6], [0.2, -0.1, 0.3, -0.6, 0.1], [1, 1, 1, 1, 1]),
    ]
    var responses: [(group: Int64, advantage: Float, logp: [Float], logpOld: [Float], logpRollout: [Float], mask: [UInt8])] = []
    for row in rows {
      let old = zip(row.logp, row.dOld).map { $0 - $1 }
      let rollout = zip(old, row.dRoll).map { $0 - $1 }
      responses.append((row.group, row.advantage, row.logp, old, rollout, row.mask))
    }
    var b = ObjectiveBatch(responses: responses)
    b.maxResponseTokens = 8
    let refOffsets: [Float] = [0.3, -0.2, 0.0, 0.5, -0.4, 0.1]
    b.logpRef = b.logp.enumerated().map { $0.element + refOffsets[$0.offset % refOffsets.count] }
    b.entropy = (0..<b.numTokens).map { 0.3 + 0.25 * Float($0 % 7) }
    b.klRef = (0..<b.numTokens).map { 0.02 + 0.015 * Float($0 % 5) }
    return b
  }()

  static let aggregations = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
  /// name → (default aggregation, eps_high default, declares the KL term)
  static let family: [(name: String, agg: String, epsHigh: Double, kl: Bool)] = [
    ("ppo-clip", "token-mean", 0.2, false), ("dapo", "token-mean", 0.28, false),
    ("grpo", "seq-mean-token-mean", 0.2, true), ("dr-grpo", "seq-mean-token-sum-norm", 0.2, true),
  ]
}

// MARK: - Tests

final class ObjectiveOptionsTests: XCTestCase {
  typealias R = OptionsReference
  let b = OptionsReference.batch

  func objective(_ name: String, _ settings: [String: ParameterValue] = [:]) throws -> ObjectiveInstance {
    try ObjectiveInstance(library: try builtin(name), settings: settings)
  }

  func testTheGoldenBatchCoversTheCases() {
    XCTAssertEqual(b.totalSequences, 8)
    XCTAssertEqual(b.totalTokens, 18)
    let token = R.ppo(b, .init(tis: "token", rejection: true)), sequence = R.ppo(b, .init(tis: "sequence", rejection: true))
    let unmasked = (0..<b.numTokens).filter { b.mask[$0] == 1 }
    XCTAssertEqual(unmasked.filter { !token.kept[$0] }, [0, 3, 6, 9, 12], "token rejection: IS 2.72, 0.41, 2.23, 0.14, 2.12")
    XCTAssertEqual(unmasked.filter { !sequence.kept[$0] }.count, 3 + 1 + 2, "sequence rejection: r0, r3, r4")
    let r = unmasked.map { exp(Double(b.logp[$0]) - Double(b.logpOld[$0])) }
    XCTAssertTrue(r.contains { $0 > 1.28 } && r.contains { $0 < 0.8 }, "ratios on both sides of the clip band")
    XCTAssertTrue(b.advantages.contains { $0 > 0 } && b.advantages.contains { $0 < 0 } && b.advantages.contains(0))
  }

  // MARK: loss_agg_mode

  func testLossAggModeGoldenOnThePPOFamily() throws {
    for p in R.family {
      for agg in R.aggregations {
        for tis in ["none", "token"] {
          var settings: [String: ParameterValue] = ["loss_agg_mode": .string(agg), "tis_mode": .string(tis)]
          var o = R.PPO(agg: agg, epsHigh: p.epsHigh, tis: tis)
          if p.kl {
            settings["kl_coef"] = .float(0.1)
            o.klCoef = 0.1
          }
          let inst = try objective(p.name, settings)
          let got = try inst.compute(b)
          let want = R.ppo(b, o)
          R.check(got, want, b, "\(p.name) \(agg) tis \(tis)")
          if p.kl { XCTAssertEqual(R.metrics(inst, got)["kl_ref_mean"]!, want.klSum / 18, accuracy: 1e-12) }
        }
      }
      // The vtable's static string still names the default.
      XCTAssertEqual(try builtin(p.name).aggregation, p.agg, p.name)
      let decl = try XCTUnwrap(try builtin(p.name).parameters.first { $0.name == "loss_agg_mode" })
      XCTAssertEqual(decl.defaultValue, .string(p.agg))
      XCTAssertEqual(decl.choices, R.aggregations)
    }
  }

  func testLossAggModeGoldenOnReinforce() throws {
    XCTAssertEqual(try builtin("reinforce").aggregation, "seq-mean-token-sum")
    for agg in R.aggregations {
      let got = try objective("reinforce", ["loss_agg_mode": .string(agg)]).compute(b)
      R.check(got, R.reinforce(b, agg: agg, seqIS: "none"), b, "reinforce \(agg)")
    }
    // Without max_response_tokens, seq-mean-token-sum-norm falls back to L_max = 1.
    var noMax = b
    noMax.maxResponseTokens = 0
    let sum = try objective("reinforce").compute(noMax)
    let norm = try objective("reinforce", ["loss_agg_mode": .string("seq-mean-token-sum-norm")]).compute(noMax)
    XCTAssertEqual(norm.gradLogp, sum.gradLogp)
  }

  /// Across calls split at response boundaries, the seq-mean modes add up exactly (whole-step S,
  /// n_i, L_max) and token-mean too (whole-step T).
  func testLossAggModeIsAdditiveOverCalls() throws {
    let parts = [0..<3, 3..<5, 5..<8]
    for name in ["ppo-clip", "grpo", "dr-grpo", "reinforce"] {
      for agg in R.aggregations {
        let inst = try objective(name, ["loss_agg_mode": .string(agg)])
        let whole = try inst.compute(b)
        let calls = try parts.map { try inst.compute(R.slice(b, $0)) }
        XCTAssertEqual(calls.map(\.loss).reduce(0, +), whole.loss, accuracy: 1e-12, "\(name) \(agg)")
        XCTAssertEqual(calls.flatMap(\.gradLogp), whole.gradLogp, "\(name) \(agg)")
      }
    }
  }

  // MARK: entropy_coef

  func testEntropyCoefGoldenOnThePPOFamily() throws {
    for p in R.family {
      for agg in R.aggregations {
        let inst = try objective(p.name, ["loss_agg_mode": .string(agg), "entropy_coef": .float(0.05),
                                          "tis_mode": .string("sequence"), "mis": .bool(true)])
        XCTAssertEqual(inst.needed, [.entropy], p.name)
        let got = try inst.compute(b)
        R.check(got, R.ppo(b, .init(agg: agg, epsHigh: p.epsHigh, entropyCoef: 0.05, tis: "sequence", mis: true)), b,
                entropy: true, "\(p.name) \(agg) entropy 0.05")
      }
    }
    // With the KL term and rejection: the entropy of a rejected token is out too (verl removes
    // it from the mask), and the IS weight never multiplies the entropy.
    let inst = try objective("grpo", ["entropy_coef": .float(0.2), "kl_coef": .float(0.1), "tis_mode": .string("token"),
                                      "rejection": .bool(true)])
    XCTAssertEqual(Set(inst.needed), [.entropy, .reference])
    let want = R.ppo(b, .init(agg: "seq-mean-token-mean", klCoef: 0.1, entropyCoef: 0.2, tis: "token", rejection: true))
    let got = try inst.compute(b)
    R.check(got, want, b, entropy: true, "grpo entropy + k3 + rejection")
    XCTAssertEqual(got.gradEntropy?[0], 0, "token 0 is rejected (IS 2.72)")
  }

  func testEntropyCoefGoldenOnMiniRL() throws {
    for lengthNorm in [false, true] {
      let inst = try objective("minirl", ["entropy_coef": .float(0.03), "length_norm": .bool(lengthNorm)])
      XCTAssertEqual(inst.needed, [.entropy])
      let got = try inst.compute(b)
      R.check(got, R.minirl(b, entropyCoef: 0.03, lengthNorm: lengthNorm), b, entropy: true, "minirl length_norm \(lengthNorm)")
    }
  }

  func testEntropyCoefZeroAsksForNothingAndChangesNothing() throws {
    for name in ["ppo-clip", "dapo", "grpo", "dr-grpo", "minirl"] {
      let plain = try objective(name), zero = try objective(name, ["entropy_coef": .float(0)])
      XCTAssertEqual(zero.needed, [], name)
      XCTAssertEqual(try builtin(name).objectiveFlags, 0, "\(name): the vtable's static flags stay 0")
      let a = try plain.compute(b), z = try zero.compute(b)  // b carries entropy: not passed
      XCTAssertEqual(a.loss, z.loss, name)
      XCTAssertEqual(a.gradLogp, z.gradLogp, name)
      XCTAssertEqual(a.metrics, z.metrics, name)
      XCTAssertNil(z.gradEntropy, name)
    }
  }

  func testEntropyCoefWithoutEntropyIsRefused() throws {
    var noEntropy = b
    noEntropy.entropy = nil
    for name in ["ppo-clip", "grpo", "minirl"] {
      XCTAssertThrowsError(try objective(name, ["entropy_coef": .float(0.1)]).compute(noEntropy), name) { error in
        XCTAssertTrue("\(error)".contains("entropy"), "\(name): \(error)")
      }
    }
  }

  // MARK: kl_estimator

  func testKLEstimatorFullUsesTheHostsKL() throws {
    for p in R.family where p.kl {
      for agg in [p.agg, "token-mean"] {
        let inst = try objective(p.name, ["kl_coef": .float(0.1), "kl_estimator": .string("full"), "loss_agg_mode": .string(agg)])
        XCTAssertEqual(inst.needed, [.referenceKL], p.name)
        var noRef = b
        noRef.logpRef = nil  // full never reads logp_ref
        let got = try inst.compute(noRef)
        let want = R.ppo(b, .init(agg: agg, klCoef: 0.1, klFull: true))
        R.check(got, want, b, klRef: true, "\(p.name) \(agg) kl full")
        // Nothing flows through logp from the KL: grad_logp is the policy term's alone.
        let policyOnly = try objective(p.name, ["loss_agg_mode": .string(agg)]).compute(b)
        XCTAssertEqual(got.gradLogp, policyOnly.gradLogp, p.name)
        let unmasked = (0..<b.numTokens).filter { b.mask[$0] == 1 }
        XCTAssertEqual(R.metrics(inst, got)["kl_ref_mean"]!, unmasked.map { Double(b.klRef![$0]) }.reduce(0, +) / 18, accuracy: 1e-12)
      }
    }
  }

  func testKLEstimatorK3AsksForTheReferencePerInstance() throws {
    for name in ["grpo", "dr-grpo"] {
      XCTAssertEqual(try objective(name, ["kl_coef": .float(0.1)]).needed, [.reference], name)
      let explicitK3 = try objective(name, ["kl_coef": .float(0.1), "kl_estimator": .string("k3")])
      XCTAssertEqual(explicitK3.needed, [.reference], name)
      XCTAssertEqual(try objective(name).needed, [], "\(name): kl_coef 0 needs nothing")
      XCTAssertEqual(try objective(name, ["kl_estimator": .string("full")]).needed, [], "\(name): full with kl_coef 0")
      var noRef = b
      noRef.logpRef = nil
      XCTAssertThrowsError(try explicitK3.compute(noRef)) { error in
        XCTAssertTrue("\(error)".contains("logp_ref"), "\(error)")
        XCTAssertTrue("\(error)".contains("train.kl_ref"), "\(error)")
      }
      var noKL = b
      noKL.klRef = nil
      XCTAssertThrowsError(try objective(name, ["kl_coef": .float(0.1), "kl_estimator": .string("full")]).compute(noKL)) { error in
        XCTAssertTrue("\(error)".contains("kl_ref"), "\(error)")
      }
    }
  }

  // MARK: rejection (verl's rollout rejection sampling)

  func testRejectionGolden() throws {
    for p in R.family {
      for agg in R.aggregations {
        for (tis, ratio) in [("token", "old"), ("sequence", "old"), ("token", "current"), ("sequence", "current")] {
          let settings: [String: ParameterValue] = ["loss_agg_mode": .string(agg), "tis_mode": .string(tis), "is_ratio": .string(ratio),
                                                    "rejection": .bool(true)]
          let inst = try objective(p.name, settings)
          let got = try inst.compute(b)
          let want = R.ppo(b, .init(agg: agg, epsHigh: p.epsHigh, tis: tis, ratio: ratio, rejection: true))
          let label = "\(p.name) \(agg) \(tis) \(ratio) rejection"
          R.check(got, want, b, label)
          let unmasked = (0..<b.numTokens).filter { b.mask[$0] == 1 }
          let rejected = unmasked.filter { !want.kept[$0] }
          let m = R.metrics(inst, got)
          XCTAssertEqual(m["is_masked_fraction"]!, Double(rejected.count) / 18, accuracy: 1e-12, label)
          XCTAssertEqual(m["is_weight_mean"]!, Double(18 - rejected.count) / 18, accuracy: 1e-12, label)
          XCTAssertEqual(m["is_truncated_fraction"]!, 0, label)
          for t in rejected { XCTAssertEqual(got.gradLogp[t], 0, "\(label): rejected token \(t)") }
        }
      }
    }
    // With a KL term and full estimator, rejected tokens carry no KL either.
    let inst = try objective("dr-grpo", ["kl_coef": .float(0.2), "kl_estimator": .string("full"), "tis_mode": .string("sequence"),
                                         "rejection": .bool(true)])
    R.check(try inst.compute(b), R.ppo(b, .init(agg: "seq-mean-token-sum-norm", klCoef: 0.2, klFull: true, tis: "sequence", rejection: true)),
            b, klRef: true, "dr-grpo kl full + sequence rejection")
  }

  /// Rejected tokens leave the denominators: kept tokens weigh 1/K per token (token-mean, one
  /// call = the whole step) or 1/(S n_kept) (seq-mean-token-mean), not 1/T or 1/(S n_i).
  func testRejectionRemovesTokensFromTheDenominators() throws {
    let plain = try objective("ppo-clip").compute(b)
    let rejected = try objective("ppo-clip", ["tis_mode": .string("token"), "rejection": .bool(true)]).compute(b)
    // token 2 (r0 t2, IS 1.22, kept): same ℓ, denominator K = 13 instead of T = 18
    XCTAssertEqual(Double(rejected.gradLogp[2]), Double(plain.gradLogp[2]) * 18 / 13, accuracy: 1e-6 * abs(Double(plain.gradLogp[2])))
    // …while mis keeps the zero-weight tokens in T (TRL's convention): weight 1.22 over 1/T.
    let mis = try objective("ppo-clip", ["tis_mode": .string("token"), "mis": .bool(true)]).compute(b)
    let w2 = exp(Double(b.logpOld[2]) - Double(b.logpRollout[2]))
    XCTAssertEqual(Double(mis.gradLogp[2]), Double(plain.gradLogp[2]) * w2, accuracy: 1e-6 * abs(Double(plain.gradLogp[2])))
    // seq-mean-token-mean: r0 keeps 2 of 3 tokens (token 0, IS 2.72, is rejected): 1/(S·2).
    let grpo = try objective("grpo").compute(b)
    let grpoRejected = try objective("grpo", ["tis_mode": .string("token"), "rejection": .bool(true)]).compute(b)
    XCTAssertEqual(Double(grpoRejected.gradLogp[2]), Double(grpo.gradLogp[2]) * 3 / 2, accuracy: 1e-6 * abs(Double(grpo.gradLogp[2])))
    // Nothing outside the bounds: exactly the run without IS, bit for bit (T·K/U = T).
    let wide = try objective("ppo-clip", ["tis_mode": .string("token"), "rejection": .bool(true), "mis_low": .float(0),
                                          "tis_cap": .float(1e30)]).compute(b)
    XCTAssertEqual(wide.loss, plain.loss)
    XCTAssertEqual(wide.gradLogp, plain.gradLogp)
  }

  /// token-mean sees only its call: each call's kept tokens are normalised by T·K_c/U_c, its own
  /// estimate of the step's kept count (exact for one call; see docs/objectives.md). The
  /// seq-mean modes stay exactly additive.
  func testRejectionAcrossCalls() throws {
    let parts = [0..<3, 3..<5, 5..<8]
    for agg in R.aggregations {
      let inst = try objective("ppo-clip", ["loss_agg_mode": .string(agg), "tis_mode": .string("token"), "rejection": .bool(true)])
      let whole = try inst.compute(b)
      let calls = try parts.map { try inst.compute(R.slice(b, $0)) }
      for (range, got) in zip(parts, calls) {
        let s = R.slice(b, range)
        R.check(got, R.ppo(s, .init(agg: agg, tis: "token", rejection: true)), s, "ppo-clip \(agg) rejection, call \(range)")
      }
      if agg != "token-mean" {
        XCTAssertEqual(calls.map(\.loss).reduce(0, +), whole.loss, accuracy: 1e-12, agg)
        XCTAssertEqual(calls.flatMap(\.gradLogp), whole.gradLogp, agg)
      }
    }
  }

  func testRejectionSettingsThatMakeNoSenseAreRefused() throws {
    XCTAssertThrowsError(try objective("ppo-clip", ["rejection": .bool(true)])) { error in
      XCTAssertTrue("\(error)".contains("tis_mode"), "\(error)")
    }
    XCTAssertThrowsError(try objective("grpo", ["rejection": .bool(true), "mis": .bool(true), "tis_mode": .string("token")])) { error in
      XCTAssertTrue("\(error)".contains("mis"), "\(error)")
    }
    XCTAssertThrowsError(try objective("dapo", ["rejection": .bool(true), "tis_mode": .string("token"), "mis_low": .float(3)])) { error in
      XCTAssertTrue("\(error)".contains("mis_low"), "\(error)")
    }
  }

  // MARK: reinforce: sequence-level IS (verl bypass mode)

  func testReinforceSequenceISGolden() throws {
    // logp_frozen differs from logp: the weight comes from the frozen copy, the value from logp.
    var frozen = b
    frozen.logpFrozen = b.logp.enumerated().map { $0.element + 0.01 * Float($0.offset % 3) }
    for batch in [b, frozen] {
      for agg in R.aggregations {
        for (seqIS, cap, low) in [("truncate", 2.0, 0.5), ("truncate", 1.5, 0.5), ("mask", 2.0, 0.5), ("mask", 3.0, 0.2)] {
          let inst = try objective("reinforce", ["loss_agg_mode": .string(agg), "seq_is": .string(seqIS), "tis_cap": .float(cap),
                                                 "mis_low": .float(low)])
          XCTAssertEqual(inst.needed, [])
          let got = try inst.compute(batch)
          let want = R.reinforce(batch, agg: agg, seqIS: seqIS, cap: cap, low: low)
          let label = "reinforce \(agg) \(seqIS) [\(low), \(cap)] frozen \(batch.logpFrozen != nil)"
          R.check(got, want, batch, label)
          let unmasked = (0..<batch.numTokens).filter { batch.mask[$0] == 1 }
          let m = R.metrics(inst, got)
          XCTAssertEqual(m["is_weight_mean"]!, unmasked.map { want.weights[$0] }.reduce(0, +) / 18, accuracy: 1e-12, label)
          let zeroed = unmasked.filter { want.weights[$0] == 0 }.count
          XCTAssertEqual(m["is_masked_fraction"]!, seqIS == "mask" ? Double(zeroed) / 18 : 0, accuracy: 1e-12, label)
        }
      }
    }
    // The cases bite: r0 (Π 2.72) is truncated to 2 or masked; r3 (Π 0.17) is masked below 0.5.
    let truncate = R.reinforce(b, agg: "seq-mean-token-sum", seqIS: "truncate"), mask = R.reinforce(b, agg: "seq-mean-token-sum", seqIS: "mask")
    XCTAssertEqual(truncate.weights[0], 2)
    XCTAssertEqual(mask.weights[0], 0)
    XCTAssertEqual(mask.weights[9], 0, "r3")
    XCTAssertNotEqual(mask.weights[3], 0, "r1 inside")
    // One weight per response: with none, it is exactly the plain run.
    let none = try objective("reinforce", ["seq_is": .string("none")]).compute(b)
    XCTAssertEqual(none.gradLogp, try objective("reinforce").compute(b).gradLogp)
  }

  func testReinforceSequenceISNeedsTheRolloutLogProbsOnlyWhenOn() throws {
    var bad = b
    bad.logpRollout[1] = .nan
    XCTAssertThrowsError(try objective("reinforce", ["seq_is": .string("truncate")]).compute(bad)) { error in
      XCTAssertTrue("\(error)".contains("logp_rollout"), "\(error)")
    }
    XCTAssertNoThrow(try objective("reinforce").compute(bad), "seq_is none never reads logp_rollout")
    XCTAssertThrowsError(try objective("reinforce", ["seq_is": .string("mask"), "mis_low": .float(3)])) { error in
      XCTAssertTrue("\(error)".contains("mis_low"), "\(error)")
    }
  }

  // MARK: defaults and choices

  /// Every new parameter set to its default gives results identical (==) to not setting it,
  /// and asks for nothing the plugin did not ask for before.
  func testEveryNewParameterAtItsDefaultIsIdentical() throws {
    let defaults: [String: [String: ParameterValue]] = [
      "ppo-clip": ["loss_agg_mode": .string("token-mean"), "entropy_coef": .float(0), "rejection": .bool(false)],
      "dapo": ["loss_agg_mode": .string("token-mean"), "entropy_coef": .float(0), "rejection": .bool(false)],
      "grpo": ["loss_agg_mode": .string("seq-mean-token-mean"), "entropy_coef": .float(0), "rejection": .bool(false),
               "kl_estimator": .string("k3")],
      "dr-grpo": ["loss_agg_mode": .string("seq-mean-token-sum-norm"), "entropy_coef": .float(0), "rejection": .bool(false),
                  "kl_estimator": .string("k3")],
      "minirl": ["entropy_coef": .float(0)],
      "reinforce": ["loss_agg_mode": .string("seq-mean-token-sum"), "seq_is": .string("none"), "tis_cap": .float(2), "mis_low": .float(0.5)],
    ]
    var frozen = b
    frozen.logpFrozen = b.logp.enumerated().map { $0.element - 0.02 * Float($0.offset % 4) }
    for (name, all) in defaults.sorted(by: { $0.key < $1.key }) {
      let base: [[String: ParameterValue]] = name == "grpo" || name == "dr-grpo"
        ? [[:], ["kl_coef": .float(0.1)], ["tis_mode": .string("sequence"), "mis": .bool(true)]]
        : name == "minirl" || name == "reinforce" ? [[:]] : [[:], ["tis_mode": .string("token"), "dual_clip": .float(2)]]
      for extra in base {
        let plain = try objective(name, extra)
        // each parameter alone, then all together
        for settings in all.map({ [$0.key: $0.value] }) + [all] {
          let explicit = try objective(name, extra.merging(settings) { a, _ in a })
          XCTAssertEqual(explicit.needed, plain.needed, "\(name) \(extra) \(settings)")
          for batch in [b, frozen] {
            let x = try plain.compute(batch), y = try explicit.compute(batch)
            XCTAssertEqual(x.loss, y.loss, "\(name) \(extra) \(settings)")
            XCTAssertEqual(x.gradLogp, y.gradLogp, "\(name) \(extra) \(settings)")
            XCTAssertEqual(x.metrics, y.metrics, "\(name) \(extra) \(settings)")
            XCTAssertNil(y.gradEntropy)
            XCTAssertNil(y.gradKlRef)
          }
        }
      }
    }
  }

  func testABadChoiceIsRefusedNamingTheAllowedValues() throws {
    let cases: [(String, String, [String])] = [
      ("ppo-clip", "loss_agg_mode", R.aggregations), ("dapo", "loss_agg_mode", R.aggregations),
      ("grpo", "loss_agg_mode", R.aggregations), ("dr-grpo", "loss_agg_mode", R.aggregations),
      ("reinforce", "loss_agg_mode", R.aggregations), ("grpo", "kl_estimator", ["k3", "full"]),
      ("dr-grpo", "kl_estimator", ["k3", "full"]), ("reinforce", "seq_is", ["none", "truncate", "mask"]),
      ("ppo-clip", "tis_mode", ["none", "token", "sequence"]), ("grpo", "is_ratio", ["old", "current"]),
    ]
    for (name, parameter, allowed) in cases {
      XCTAssertEqual(try builtin(name).parameters.first { $0.name == parameter }?.choices, allowed, "\(name).\(parameter)")
      XCTAssertThrowsError(try objective(name, [parameter: .string("seq-mean")]), "\(name).\(parameter)") { error in
        let message = "\(error)"
        XCTAssertTrue(message.contains(parameter), "\(name): \(message)")
        for value in allowed { XCTAssertTrue(message.contains(value), "\(name).\(parameter): '\(value)' missing from \(message)") }
      }
    }
  }
}
