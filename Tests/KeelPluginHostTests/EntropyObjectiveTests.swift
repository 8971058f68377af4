// EntropyObjectiveTests.swift — the entropy-mechanism objectives `clip-cov` and `kl-cov` (Cui et
// al. 2025; verl's compute_policy_loss_clip_cov / compute_policy_loss_kl_cov) and
// `on-policy-distill` (Tinker's on-policy distillation recipe; GKD-style full mode), loaded
// through the real dlopen path and checked against INDEPENDENT float64 references written below
// from verl's and Tinker's formulas (verl's vectorised form: masked means, the loss comparison
// pg_losses2 > pg_losses1, a sort for topk), including clip-cov's seeded hash selection.
// Tolerances: loss 1e-9 relative (the references sum in another order), every gradient entry
// 1e-6 relative (the plugin stores float); metrics 1e-12.
import KeelABI
import KeelPluginHost
import XCTest

// MARK: - References (float64)

enum EntropyReference {
  static func splitmix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  struct Result {
    var loss = 0.0
    var grad: [Double]
    var gradKlTeacher: [Double]? = nil
    var selected: [Int] = []
    var candidates = 0
    var metrics: [String: Double] = [:]
    init(tokens: Int) { grad = [Double](repeating: 0, count: tokens) }
  }

  /// verl's agg_loss modes as per-token factors, with Keel's whole-step totals (T, S) and
  /// seq-mean-token-sum-norm divided by S·L_max (L_max = 1 when max_response_tokens <= 0).
  static func scales(_ b: ObjectiveBatch, _ mode: String) -> [Double] {
    var s = [Double](repeating: 0, count: b.numTokens)
    for i in 0..<b.numSequences {
      let r = Int(b.seqOffsets[i])..<Int(b.seqOffsets[i + 1])
      let n = r.filter { b.mask[$0] == 1 }.count
      let v: Double
      switch mode {
      case "token-mean": v = 1 / b.totalTokens
      case "seq-mean-token-sum": v = 1 / b.totalSequences
      case "seq-mean-token-mean": v = n > 0 ? 1 / (b.totalSequences * Double(n)) : 0
      default: v = 1 / (b.totalSequences * Double(b.maxResponseTokens > 0 ? b.maxResponseTokens : 1))
      }
      for t in r { s[t] = v }
    }
    return s
  }

  /// verl_F.masked_mean over the call's unmasked tokens.
  static func maskedMean(_ x: [Double], _ mask: [UInt8]) -> Double {
    var sum = 0.0, n = 0.0
    for t in x.indices where mask[t] == 1 { sum += x[t]; n += 1 }
    return sum / n
  }

  /// compute_policy_loss_clip_cov, with the branch and the covariance from logp_frozen (the
  /// detached log-prob) and randperm replaced by the clip_num smallest seeded hash keys.
  static func clipCov(_ b: ObjectiveBatch, ratio: Double = 2e-4, lb: Double = 1, ub: Double = 5,
                      epsLow: Double = 0.2, epsHigh: Double = 0.2, seed: Int64 = 0, mode: String = "token-mean") -> Result {
    let n = b.numTokens
    let lp = b.logp.map(Double.init), frozen = (b.logpFrozen ?? b.logp).map(Double.init)
    let old = b.logpOld.map(Double.init), adv = b.advantages.map(Double.init)
    let valid = b.mask.map { $0 == 1 }
    let rho = (0..<n).map { exp(frozen[$0] - old[$0]) }
    let pg1 = (0..<n).map { -adv[$0] * rho[$0] }
    let pg2 = (0..<n).map { -adv[$0] * min(max(rho[$0], 1 - epsLow), 1 + epsHigh) }
    let clipByOrigin = (0..<n).map { pg2[$0] > pg1[$0] && valid[$0] }
    let advMean = maskedMean(adv, b.mask), lpMean = maskedMean(frozen, b.mask)
    var cov = (0..<n).map { (adv[$0] - advMean) * (frozen[$0] - lpMean) }
    for t in 0..<n where !valid[t] || clipByOrigin[t] { cov[t] = -.infinity }
    let count = valid.filter { $0 }.count
    let clipNum = max(Int(ratio * Double(count)), 1)
    let candidates = (0..<n).filter { cov[$0] < ub && cov[$0] > lb && valid[$0] }
    let seedKey = splitmix64(UInt64(bitPattern: seed))
    let keyed = candidates.map { t in (key: splitmix64(seedKey ^ ((UInt64(b.logpOld[t].bitPattern) << 32) ^ UInt64(t))), t: t) }
      .sorted { $0.key != $1.key ? $0.key < $1.key : $0.t < $1.t }
    let selected = keyed.prefix(min(clipNum, keyed.count)).map(\.t)
    var corr = [Double](repeating: 1, count: n)
    for t in selected { corr[t] = 0 }
    let s = scales(b, mode)
    var out = Result(tokens: n)
    for t in 0..<n where valid[t] {
      let r = exp(lp[t] - old[t])
      let active = !(pg2[t] > pg1[t])  // max(−A·r, −A·clip(r)) is the unclipped −A·r
      out.loss += (active ? -adv[t] * r : pg2[t]) * corr[t] * s[t]
      out.grad[t] = (active ? -adv[t] * r : 0) * corr[t] * s[t]
    }
    out.selected = selected.sorted()
    out.candidates = candidates.count
    let nd = Double(count)
    out.metrics = [
      "masked_fraction_low": Double((0..<n).filter { clipByOrigin[$0] && adv[$0] < 0 }.count) / nd,
      "masked_fraction_high": Double((0..<n).filter { clipByOrigin[$0] && adv[$0] > 0 }.count) / nd,
      "is_weight_mean": 1,
      "pg_clipfrac": Double(selected.count) / nd,
      "ppo_kl": maskedMean((0..<n).map { old[$0] - frozen[$0] }, b.mask),
      "cov_candidate_fraction": Double(candidates.count) / nd,
    ]
    return out
  }

  /// compute_policy_loss_kl_cov, covariance from logp_frozen, topk ties broken by lower index.
  static func klCov(_ b: ObjectiveBatch, ratio: Double = 2e-4, coef: Double = 1, mode: String = "token-mean") -> Result {
    let n = b.numTokens
    let lp = b.logp.map(Double.init), frozen = (b.logpFrozen ?? b.logp).map(Double.init)
    let old = b.logpOld.map(Double.init), adv = b.advantages.map(Double.init)
    let valid = (0..<n).filter { b.mask[$0] == 1 }
    let advV = valid.map { adv[$0] }, lpV = valid.map { frozen[$0] }
    let advMean = advV.reduce(0, +) / Double(valid.count), lpMean = lpV.reduce(0, +) / Double(valid.count)
    let cov = valid.indices.map { (advV[$0] - advMean) * (lpV[$0] - lpMean) }
    let k = max(1, Int(Double(valid.count) * ratio))
    let order = valid.indices.sorted { cov[$0] != cov[$1] ? cov[$0] > cov[$1] : valid[$0] < valid[$1] }
    let selected = Set(order.prefix(k).map { valid[$0] })
    let s = scales(b, mode)
    var out = Result(tokens: n)
    for t in valid {
      let d = lp[t] - old[t], r = exp(d)
      var value = -adv[t] * r, dvalue = -adv[t] * r
      if selected.contains(t) {
        value += coef * abs(d)
        dvalue += coef * (d > 0 ? 1 : d < 0 ? -1 : 0)
      }
      out.loss += value * s[t]
      out.grad[t] = dvalue * s[t]
    }
    out.selected = selected.sorted()
    let nd = Double(valid.count)
    out.metrics = [
      "masked_fraction_low": 0, "masked_fraction_high": 0, "is_weight_mean": 1,
      "ppo_kl_abs": valid.map { abs(frozen[$0] - old[$0]) }.reduce(0, +) / nd,
      "kl_cov_fraction": Double(k) / nd,
    ]
    return out
  }

  /// Tinker: advantage −kl_coef·(log μ − log π_teacher) (+ reward_weight·A), loss −(π/μ)·A,
  /// token-mean over T. Full mode: kl_coef·mean(kl_teacher) plus the reward term.
  static func distill(_ b: ObjectiveBatch, klCoef: Double = 1, rewardWeight: Double = 0, full: Bool = false) -> Result {
    let n = b.numTokens, T = b.totalTokens
    var out = Result(tokens: n)
    if full { out.gradKlTeacher = [Double](repeating: 0, count: n) }
    var kl = 0.0, w = 0.0, count = 0.0
    for t in 0..<n where b.mask[t] == 1 {
      count += 1
      let lp = Double(b.logp[t]), mu = Double(b.logpRollout[t])
      let r = exp(lp - mu)
      w += exp(Double((b.logpFrozen ?? b.logp)[t]) - mu)
      let a: Double
      if full {
        let k = Double(b.klTeacher![t])
        kl += k
        out.loss += klCoef * k / T
        out.gradKlTeacher![t] = klCoef / T
        a = rewardWeight * Double(b.advantages[t])
      } else {
        let d = mu - Double(b.logpTeacher![t])
        kl += d
        a = -klCoef * d + rewardWeight * Double(b.advantages[t])
      }
      out.loss -= r * a / T
      out.grad[t] = -r * a / T
    }
    out.metrics = ["masked_fraction_low": 0, "masked_fraction_high": 0, "teacher_kl": kl / count,
                   "is_weight_mean": full && rewardWeight == 0 ? 1 : w / count]
    return out
  }
}

// MARK: - Batches

/// A deterministic batch from a seed: `responses` responses of lengths 0…9 (response 0 has at
/// least 3 tokens), advantages of both signs up to ±2 (response 2 at A = 0), response 3 fully
/// masked and about one token in five masked elsewhere, ratios π/π_old = e^d with |d| in
/// [0.02, 0.45] (both sides of the clip band, never at |·|'s kink), sampler, teacher and
/// kl_teacher values. The call is part of a larger step: total_sequences = responses + 3,
/// total_tokens = unmasked + 7, max_response_tokens = 12.
func entropyBatch(seed: UInt64, responses: Int = 10) -> ObjectiveBatch {
  var state = seed
  func uniform() -> Double {
    state = state &+ 0x9E37_79B9_7F4A_7C15
    return Double(EntropyReference.splitmix64(state) >> 11) * 0x1p-53
  }
  var offsets: [Int64] = [0], groups: [Int64] = [], mask: [UInt8] = [], adv: [Float] = []
  var logp: [Float] = [], old: [Float] = [], rollout: [Float] = [], teacher: [Float] = [], klTeacher: [Float] = []
  for i in 0..<responses {
    let length = i == 0 ? 3 + Int(uniform() * 7) : Int(uniform() * 10)
    let a: Float = i == 2 ? 0 : Float((uniform() < 0.5 ? -1 : 1) * (0.1 + 1.9 * uniform()))
    for _ in 0..<length {
      let lp = -Float(0.05 + 3.95 * uniform())
      let d = Float((uniform() < 0.5 ? -1 : 1) * (0.02 + 0.43 * uniform()))
      logp.append(lp)
      old.append(lp - d)
      rollout.append(lp - d - Float(0.6 * uniform() - 0.3))
      teacher.append(lp - Float(2.5 * uniform() - 1.0))
      klTeacher.append(Float(2 * uniform()))
      mask.append(i == 3 || uniform() < 0.2 ? 0 : 1)
      adv.append(a)
    }
    offsets.append(offsets.last! + Int64(length))
    groups.append(Int64(i / 2))
  }
  let unmasked = Double(mask.reduce(0) { $0 + Int($1) })
  var b = ObjectiveBatch(seqOffsets: offsets, groupIds: groups, mask: mask, advantages: adv, logp: logp, logpOld: old,
                         logpRollout: rollout, totalSequences: Double(responses + 3), totalTokens: unmasked + 7,
                         maxResponseTokens: 12)
  b.logpTeacher = teacher
  b.klTeacher = klTeacher
  return b
}

/// Responses `range` of `b` (every per-token array, the teacher's included), keeping the
/// whole-step totals: one micro-batch of the step.
func entropySlice(_ b: ObjectiveBatch, _ range: Range<Int>) -> ObjectiveBatch {
  let lo = Int(b.seqOffsets[range.lowerBound]), hi = Int(b.seqOffsets[range.upperBound])
  var p = b
  p.seqOffsets = b.seqOffsets[range.lowerBound...range.upperBound].map { $0 - Int64(lo) }
  p.groupIds = Array(b.groupIds[range])
  p.mask = Array(b.mask[lo..<hi])
  p.advantages = Array(b.advantages[lo..<hi])
  p.logp = Array(b.logp[lo..<hi])
  p.logpFrozen = b.logpFrozen.map { Array($0[lo..<hi]) }
  p.logpOld = Array(b.logpOld[lo..<hi])
  p.logpRollout = Array(b.logpRollout[lo..<hi])
  p.logpRef = b.logpRef.map { Array($0[lo..<hi]) }
  p.logpTeacher = b.logpTeacher.map { Array($0[lo..<hi]) }
  p.klTeacher = b.klTeacher.map { Array($0[lo..<hi]) }
  return p
}

// MARK: - Tests

final class EntropyObjectiveTests: XCTestCase {
  static let modes = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
  static let seeds: [UInt64] = [1, 2, 3, 4, 5, 7, 8]

  func objective(_ name: String, _ settings: [String: ParameterValue] = [:]) throws -> ObjectiveInstance {
    try ObjectiveInstance(library: try builtin(name), settings: settings)
  }

  /// Loss within `rel` (relative), every gradient entry within 1e-6 relative (1e-12 absolute
  /// floor), masked tokens exactly 0, the named metrics within 1e-12.
  func assertClose(_ got: ObjectiveResult, _ want: EntropyReference.Result, _ batch: ObjectiveBatch,
                   metricNames: [String], rel: Double = 1e-9, _ label: String,
                   file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(got.loss, want.loss, accuracy: rel * max(abs(want.loss), 1e-12), "\(label): loss", file: file, line: line)
    XCTAssertEqual(got.gradLogp.count, want.grad.count, "\(label): gradient length", file: file, line: line)
    for t in 0..<min(got.gradLogp.count, want.grad.count) {
      if batch.mask[t] == 0 {
        XCTAssertEqual(got.gradLogp[t], 0, "\(label): masked token \(t)", file: file, line: line)
      } else {
        XCTAssertEqual(Double(got.gradLogp[t]), want.grad[t], accuracy: 1e-6 * abs(want.grad[t]) + 1e-12,
                       "\(label): ∂loss/∂logp at token \(t)", file: file, line: line)
      }
    }
    let m = Dictionary(uniqueKeysWithValues: zip(metricNames, got.metrics))
    for (name, value) in want.metrics {
      guard let v = m[name] else { XCTFail("\(label): no metric \(name)", file: file, line: line); continue }
      XCTAssertEqual(v, value, accuracy: 1e-12 * max(abs(value), 1), "\(label): metric \(name)", file: file, line: line)
    }
  }

  // MARK: the batches

  func testTheBatchesCoverTheCases() {
    for seed in Self.seeds {
      let b = entropyBatch(seed: seed)
      let lengths = (0..<b.numSequences).map { b.seqOffsets[$0 + 1] - b.seqOffsets[$0] }
      XCTAssertGreaterThan(Set(lengths).count, 3, "seed \(seed): responses of different lengths")
      XCTAssertTrue(b.mask.contains(0), "seed \(seed): masked tokens")
      XCTAssertTrue(b.advantages.contains { $0 > 0 } && b.advantages.contains { $0 < 0 }, "seed \(seed): ± advantages")
      // clip-cov's settings below: several candidates, more than clip_num, and PPO-clipped tokens.
      let c = EntropyReference.clipCov(b, ratio: 0.1, lb: 0.05, ub: 5, epsHigh: 0.28)
      XCTAssertGreaterThan(c.candidates, c.selected.count, "seed \(seed): the hash must choose among candidates")
      XCTAssertGreaterThanOrEqual(c.selected.count, 1, "seed \(seed)")
      XCTAssertGreaterThan(c.metrics["masked_fraction_low"]! + c.metrics["masked_fraction_high"]!, 0, "seed \(seed)")
      // kl-cov at ratio 0.2 penalises several tokens.
      XCTAssertGreaterThanOrEqual(EntropyReference.klCov(b, ratio: 0.2).selected.count, 2, "seed \(seed)")
    }
    // verl's default window (1, 5) has candidates in some batch.
    XCTAssertTrue(Self.seeds.contains { EntropyReference.clipCov(entropyBatch(seed: $0)).candidates > 0 })
  }

  // MARK: clip-cov

  func testClipCovGolden() throws {
    for seed in Self.seeds {
      let b = entropyBatch(seed: seed)
      for (k, mode) in Self.modes.enumerated() {
        let hashSeed = Int64(k * 7919) - 3
        let inst = try objective("clip-cov", ["clip_cov_ratio": .float(0.1), "clip_cov_lb": .float(0.05),
                                              "clip_cov_ub": .float(5), "eps_high": .float(0.28),
                                              "seed": .int(hashSeed), "loss_agg_mode": .string(mode)])
        XCTAssertEqual(inst.needs, 0)
        let want = EntropyReference.clipCov(b, ratio: 0.1, lb: 0.05, ub: 5, epsHigh: 0.28, seed: hashSeed, mode: mode)
        assertClose(try inst.compute(b), want, b, metricNames: inst.metricNames, "clip-cov seed \(seed) \(mode)")
      }
      let defaults = try objective("clip-cov")
      assertClose(try defaults.compute(b), EntropyReference.clipCov(b), b, metricNames: defaults.metricNames,
                  "clip-cov defaults seed \(seed)")
    }
  }

  func testClipCovSelectionIsSeededAndStateless() throws {
    let b = entropyBatch(seed: 3)
    let settings: [String: ParameterValue] = ["clip_cov_ratio": .float(0.1), "clip_cov_lb": .float(0.05), "clip_cov_ub": .float(5)]
    // The same seed gives the same subset, on a fresh instance or after other calls.
    let inst = try objective("clip-cov", settings.merging(["seed": .int(42)]) { $1 })
    let first = try inst.compute(b)
    _ = try inst.compute(entropyBatch(seed: 4))
    let again = try inst.compute(b)
    XCTAssertEqual(first.gradLogp, again.gradLogp)
    XCTAssertEqual(first.loss, again.loss)
    XCTAssertEqual(try objective("clip-cov", settings.merging(["seed": .int(42)]) { $1 }).compute(b).gradLogp, first.gradLogp)
    // Other seeds choose other subsets (each one the reference's).
    var subsets = Set<[Int]>()
    for seed in Int64(0)..<12 {
      let want = EntropyReference.clipCov(b, ratio: 0.1, lb: 0.05, ub: 5, seed: seed)
      subsets.insert(want.selected)
      let got = try objective("clip-cov", settings.merging(["seed": .int(seed)]) { $1 }).compute(b)
      for t in 0..<b.numTokens where want.selected.contains(t) { XCTAssertEqual(got.gradLogp[t], 0, "seed \(seed) token \(t)") }
    }
    XCTAssertGreaterThan(subsets.count, 1, "the seed must change the random subset")
  }

  func testClipCovCovarianceIsOverTheCall() throws {
    // A micro-batch of the step: the statistics are the call's own, the normalisers the step's.
    let b = entropyBatch(seed: 5), part = entropySlice(b, 0..<5)
    XCTAssertEqual(part.totalTokens, b.totalTokens)
    let settings: [String: ParameterValue] = ["clip_cov_ratio": .float(0.2), "clip_cov_lb": .float(0.05), "clip_cov_ub": .float(5)]
    let inst = try objective("clip-cov", settings)
    assertClose(try inst.compute(part), EntropyReference.clipCov(part, ratio: 0.2, lb: 0.05, ub: 5), part,
                metricNames: inst.metricNames, "clip-cov on a micro-batch")
  }

  func testClipCovFrozenDecidesAndFiniteDifferences() throws {
    // logp_frozen ≠ logp: branches and the covariance come from the frozen copy.
    var b = entropyBatch(seed: 6)
    b.logpFrozen = b.logp.enumerated().map { $0.element + Float(($0.offset % 5) - 2) * 0.07 }
    let inst = try objective("clip-cov", ["clip_cov_ratio": .float(0.2), "clip_cov_lb": .float(0.05), "clip_cov_ub": .float(5)])
    assertClose(try inst.compute(b), EntropyReference.clipCov(b, ratio: 0.2, lb: 0.05, ub: 5), b,
                metricNames: inst.metricNames, "clip-cov with logp_frozen")
    let (worst, gmax) = try finiteDifferenceGap(inst, entropyBatch(seed: 2))
    XCTAssertLessThan(worst, 1e-4 * max(gmax, 1))
  }

  // MARK: kl-cov

  func testKLCovGolden() throws {
    for seed in Self.seeds {
      let b = entropyBatch(seed: seed)
      for mode in Self.modes {
        let inst = try objective("kl-cov", ["kl_cov_ratio": .float(0.2), "ppo_kl_coef": .float(0.7), "loss_agg_mode": .string(mode)])
        XCTAssertEqual(inst.needs, 0)
        assertClose(try inst.compute(b), EntropyReference.klCov(b, ratio: 0.2, coef: 0.7, mode: mode), b,
                    metricNames: inst.metricNames, "kl-cov seed \(seed) \(mode)")
      }
      let defaults = try objective("kl-cov")
      assertClose(try defaults.compute(b), EntropyReference.klCov(b), b, metricNames: defaults.metricNames,
                  "kl-cov defaults seed \(seed)")
    }
  }

  func testKLCovTiesGoToTheLowerIndex() throws {
    // ā = 0 and l̄ = −0.75 exactly: every token's covariance is exactly 0.5.
    let b = ObjectiveBatch(responses: [(0, 1, [-0.25, -0.25], [-0.375, -0.375], [-0.25, -0.25], [1, 1]),
                                       (0, -1, [-1.25, -1.25], [-1.375, -1.375], [-1.25, -1.25], [1, 1])])
    for (ratio, k) in [(0.25, 1), (0.5, 2), (0.75, 3)] {
      let want = EntropyReference.klCov(b, ratio: ratio)
      XCTAssertEqual(want.selected, Array(0..<k))
      let r = try objective("kl-cov", ["kl_cov_ratio": .float(ratio)]).compute(b)
      for t in 0..<4 {
        let penalty = t < k ? 0.25 : 0.0  // β·sign(logp − logp_old)/T, logp − logp_old = +0.125
        XCTAssertEqual(Double(r.gradLogp[t]), -Double(b.advantages[t]) * exp(0.125) / 4 + penalty, accuracy: 1e-7, "k \(k) token \(t)")
      }
    }
  }

  func testKLCovFrozenDecidesAndFiniteDifferences() throws {
    var b = entropyBatch(seed: 1)
    b.logpFrozen = b.logp.enumerated().map { $0.element + Float(($0.offset % 3) - 1) * 0.3 }
    let inst = try objective("kl-cov", ["kl_cov_ratio": .float(0.3)])
    assertClose(try inst.compute(b), EntropyReference.klCov(b, ratio: 0.3), b, metricNames: inst.metricNames,
                "kl-cov with logp_frozen")
    let (worst, gmax) = try finiteDifferenceGap(inst, entropyBatch(seed: 4))
    XCTAssertLessThan(worst, 1e-4 * max(gmax, 1))
  }

  // MARK: on-policy-distill

  func testDistillSampledGolden() throws {
    for seed in Self.seeds {
      var b = entropyBatch(seed: seed)
      b.klTeacher = nil
      for (kl, rw) in [(1.0, 0.0), (0.5, 0.8), (0.0, 1.0)] {
        let inst = try objective("on-policy-distill", ["kl_coef": .float(kl), "reward_weight": .float(rw)])
        XCTAssertEqual(inst.needs, UInt32(KEEL_OBJECTIVE_USES_TEACHER))
        let r = try inst.compute(b)
        XCTAssertNil(r.gradKlTeacher)
        assertClose(r, EntropyReference.distill(b, klCoef: kl, rewardWeight: rw), b, metricNames: inst.metricNames,
                    "distill sampled seed \(seed) kl \(kl) rw \(rw)")
      }
    }
  }

  func testDistillFullGolden() throws {
    for seed in Self.seeds {
      var b = entropyBatch(seed: seed)
      b.logpTeacher = nil
      for (kl, rw) in [(1.0, 0.0), (0.5, 0.8)] {
        let inst = try objective("on-policy-distill", ["kl_coef": .float(kl), "reward_weight": .float(rw), "mode": .string("full")])
        XCTAssertEqual(inst.needs, UInt32(KEEL_OBJECTIVE_USES_TEACHER_KL))
        let r = try inst.compute(b)
        let want = EntropyReference.distill(b, klCoef: kl, rewardWeight: rw, full: true)
        assertClose(r, want, b, metricNames: inst.metricNames, "distill full seed \(seed) kl \(kl) rw \(rw)")
        let g = try XCTUnwrap(r.gradKlTeacher)
        for t in 0..<b.numTokens {
          XCTAssertEqual(Double(g[t]), want.gradKlTeacher![t], accuracy: 1e-6 * want.gradKlTeacher![t], "∂loss/∂kl_teacher at token \(t)")
        }
      }
    }
  }

  func testDistillIsAdditiveOverMicroBatchesAndMatchesFiniteDifferences() throws {
    let b = entropyBatch(seed: 2)
    for settings: [String: ParameterValue] in [["reward_weight": .float(0.5)], ["mode": .string("full"), "reward_weight": .float(0.5)]] {
      let inst = try objective("on-policy-distill", settings)
      let whole = try inst.compute(b)
      let a = try inst.compute(entropySlice(b, 0..<4)), c = try inst.compute(entropySlice(b, 4..<b.numSequences))
      XCTAssertEqual(a.loss + c.loss, whole.loss, accuracy: 1e-12)
      XCTAssertEqual(a.gradLogp + c.gradLogp, whole.gradLogp)
      let (worst, gmax) = try finiteDifferenceGap(inst, b)
      XCTAssertLessThan(worst, 1e-4 * max(gmax, 1), "\(settings)")
    }
  }

  func testDistillRefusesACallWithoutTheTeacher() throws {
    var b = entropyBatch(seed: 1)
    b.logpTeacher = nil
    XCTAssertThrowsError(try objective("on-policy-distill").compute(b)) { error in
      XCTAssertTrue("\(error)".contains("logp_teacher"), "\(error)")
    }
    b = entropyBatch(seed: 1)
    b.klTeacher = nil
    XCTAssertThrowsError(try objective("on-policy-distill", ["mode": .string("full")]).compute(b)) { error in
      XCTAssertTrue("\(error)".contains("kl_teacher"), "\(error)")
    }
  }

  // MARK: declarations and parameters

  func testDescriptorsNameTheirTwinAndMetrics() throws {
    for (name, twin, extra) in [("clip-cov", "verl", ["pg_clipfrac", "ppo_kl", "cov_candidate_fraction"]),
                                ("kl-cov", "verl", ["ppo_kl_abs", "kl_cov_fraction"]),
                                ("on-policy-distill", "Tinker", ["teacher_kl"])] {
      let lib = try builtin(name)
      XCTAssertEqual(lib.name, name)
      XCTAssertTrue(lib.aggregation.hasPrefix("token-mean"), name)
      XCTAssertTrue(lib.description.contains(twin), "\(name): \(lib.description)")
      XCTAssertTrue(lib.description.contains("token-mean"), "\(name): \(lib.description)")
      XCTAssertEqual(lib.objectiveFlags, 0, "\(name): needs are per instance")
      let names = lib.scalars.map(\.name)
      for metric in ["masked_fraction_low", "masked_fraction_high", "is_weight_mean"] + extra {
        XCTAssertTrue(names.contains(metric), "\(name) lacks \(metric)")
      }
      for metric in names {
        XCTAssertTrue(!metric.isEmpty && metric.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "_") }, metric)
      }
    }
  }

  func testCreateRefusesBadParameters() {
    let cases: [(String, [String: ParameterValue])] = [
      ("clip-cov", ["clip_cov_ratio": .float(0)]), ("kl-cov", ["kl_cov_ratio": .float(0)]),
      ("clip-cov", ["loss_agg_mode": .string("token-sum")]), ("kl-cov", ["loss_agg_mode": .string("seq-mean")]),
      ("on-policy-distill", ["mode": .string("forward")]),
    ]
    for (name, settings) in cases {
      XCTAssertThrowsError(try objective(name, settings), "\(name) \(settings)")
    }
  }
}
