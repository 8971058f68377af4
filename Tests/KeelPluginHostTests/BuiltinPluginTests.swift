// BuiltinPluginTests.swift — the built-in plugins loaded through the real dlopen path and
// checked against hand-computed cases: MiniRL's four masking cases, the TIS cap, the
// on-policy reduction, its ablation switches, finite differences with logp_frozen held
// fixed (and a wrong variant that fails it), micro-batch additivity; group-mean; exact-match.
import KeelPluginHost
import KeelTestSupport
import XCTest

func builtin(_ name: String) throws -> PluginLibrary {
  try PluginDiscovery(directories: [TestSupport.binDir]).resolve(name)
}

/// Central finite difference of the loss in logp[t], logp_frozen held at the batch's logp.
func finiteDifferenceGap(_ inst: ObjectiveInstance, _ batch: ObjectiveBatch, h: Float = 1e-3) throws -> (worst: Double, gmax: Double) {
  var b = batch
  b.logpFrozen = b.logp
  let g = try inst.compute(b).gradLogp
  var worst = 0.0
  for t in 0..<b.numTokens {
    var plus = b, minus = b
    plus.logp[t] += h
    minus.logp[t] -= h
    let fd = (try inst.compute(plus).loss - inst.compute(minus).loss) / (Double(plus.logp[t]) - Double(minus.logp[t]))
    worst = max(worst, abs(fd - Double(g[t])))
  }
  return (worst, g.map { abs(Double($0)) }.max() ?? 0)
}

final class MiniRLTests: XCTestCase {
  /// Four responses, two groups; S = 4. Token by token (logp, logp_old, logp_rollout, mask):
  ///   r0 A=+1: t0 (−0.5, −1.0, −0.6)  r = e^0.5 > 1.27 → masked high
  ///            t1 (−1.0, −0.5, −1.1)  r = e^−0.5, A>0 → kept, w = e^0.1
  ///   r1 A=−1: t0 (−1.0, −0.5, −0.9)  r = e^−0.5 < 0.8 → masked low
  ///            t1 (−0.5, −1.0, −0.4)  r = e^0.5, A<0 → kept, w = e^−0.1
  ///   r2 A=+½: t0 (−0.1, −0.1, −3.0)  r = 1, w = min(e^2.9, 5) = 5 (TIS cap)
  ///            t1 loss-masked
  ///   r3 A=−½: t0 (−2, −2, −2)        r = 1, w = 1
  static let batch = ObjectiveBatch(responses: [
    (0, 1.0, [-0.5, -1.0], [-1.0, -0.5], [-0.6, -1.1], [1, 1]),
    (0, -1.0, [-1.0, -0.5], [-0.5, -1.0], [-0.9, -0.4], [1, 1]),
    (1, 0.5, [-0.1, -0.7], [-0.1, -0.7], [-3.0, -0.7], [1, 0]),
    (1, -0.5, [-2.0], [-2.0], [-2.0], [1]),
  ])

  func minirl(_ settings: [String: ParameterValue] = [:]) throws -> ObjectiveInstance {
    try ObjectiveInstance(library: try builtin("minirl"), settings: settings)
  }

  func testFourMaskingCasesAndTISCap() throws {
    let r = try minirl().compute(Self.batch)
    let expected: [Double] = [0, -0.25 * exp(0.1) * 1, 0, -0.25 * exp(-0.1) * -1, -0.25 * 5 * 0.5, 0, -0.25 * 1 * -0.5]
    for (t, e) in expected.enumerated() {
      XCTAssertEqual(Double(r.gradLogp[t]), e, accuracy: 1e-6, "token \(t)")
    }
    let logp: [Double] = [-0.5, -1.0, -1.0, -0.5, -0.1, -0.7, -2.0]
    let loss = zip(expected, logp).map { $0 * $1 }.reduce(0, +)
    XCTAssertEqual(r.loss, loss, accuracy: 1e-6)  // inputs are float32
    // metrics over the 6 unmasked tokens: one masked low, one masked high, one truncated
    let m = Dictionary(uniqueKeysWithValues: zip(try minirl().metricNames, r.metrics))
    XCTAssertEqual(m["masked_fraction_low"]!, 1.0 / 6, accuracy: 1e-12)
    XCTAssertEqual(m["masked_fraction_high"]!, 1.0 / 6, accuracy: 1e-12)
    XCTAssertEqual(m["is_truncated_fraction"]!, 1.0 / 6, accuracy: 1e-12)
    let w = [exp(0.1), exp(0.1), exp(-0.1), exp(-0.1), 5, 1.0]
    XCTAssertEqual(m["is_weight_mean"]!, w.reduce(0, +) / 6, accuracy: 1e-6)
  }

  func testOnPolicyReductionNeverMasks() throws {
    var b = Self.batch
    b.logpOld = b.logp  // r ≡ 1
    let r = try minirl().compute(b)
    XCTAssertEqual(r.metrics[0], 0)
    XCTAssertEqual(r.metrics[1], 0)
    for t in 0..<b.numTokens where b.mask[t] == 1 {
      let w = min(exp(Double(b.logp[t] - b.logpRollout[t])), 5)
      XCTAssertEqual(Double(r.gradLogp[t]), -0.25 * w * Double(b.advantages[t]), accuracy: 1e-6)
    }
  }

  func testAblationSwitches() throws {
    // length_norm: r0 has 2 unmasked tokens → halved; r2 has 1 (t1 is loss-masked) → unchanged.
    let ln = try minirl(["length_norm": .bool(true)]).compute(Self.batch)
    XCTAssertEqual(Double(ln.gradLogp[1]), -0.25 * exp(0.1) / 2, accuracy: 1e-6)
    XCTAssertEqual(Double(ln.gradLogp[4]), -0.25 * 5 * 0.5, accuracy: 1e-6)
    // train_infer_is off: weight 1, mask kept.
    let noIS = try minirl(["train_infer_is": .bool(false)]).compute(Self.batch)
    XCTAssertEqual(noIS.gradLogp.map(Double.init), [0, -0.25, 0, 0.25, -0.125, 0, 0.125])
    // clip off and IS off: exactly reinforce.
    let plain = try minirl(["train_infer_is": .bool(false), "clip": .bool(false)]).compute(Self.batch)
    let reinforce = try ObjectiveInstance(library: try builtin("reinforce")).compute(Self.batch)
    XCTAssertEqual(plain.gradLogp, reinforce.gradLogp)
    XCTAssertEqual(plain.loss, reinforce.loss, accuracy: 1e-12)
  }

  func testGradientMatchesFiniteDifferencesWithFrozenWeights() throws {
    for settings: [String: ParameterValue] in [[:], ["length_norm": .bool(true)], ["clip": .bool(false)]] {
      let (worst, gmax) = try finiteDifferenceGap(try minirl(settings), PluginChecker.objectiveBatch(responses: 8, seed: 21))
      XCTAssertLessThan(worst, 1e-4 * max(gmax, 1), "settings \(settings)")
    }
    // Without logp_frozen the IS weight would move with logp: the FD of the loss then differs.
    var b = Self.batch
    b.logpFrozen = nil
    let inst = try minirl(["clip": .bool(false)])
    let g = try inst.compute(b).gradLogp
    var plus = b, minus = b
    plus.logp[1] += 1e-3
    minus.logp[1] -= 1e-3
    let fdUnfrozen = (try inst.compute(plus).loss - inst.compute(minus).loss) / 2e-3
    XCTAssertGreaterThan(abs(fdUnfrozen - Double(g[1])), 1e-2, "perturbing logp without frozen must move the weight")
  }

  func testWrongVariantFailsTheFiniteDifferenceCheck() throws {
    let lib = try PluginLibrary.load(path: try TestSupport.fixture("wrong_grad.c"))
    let results = PluginChecker(library: lib).run()
    let fd = try XCTUnwrap(results.first { $0.name == "finite differences" })
    XCTAssertFalse(fd.passed, fd.detail)
    // …while the real one passes every check.
    XCTAssertTrue(PluginChecker(library: try builtin("minirl")).run().allSatisfy(\.passed))
  }

  func testMicroBatchSplitSumsToWhole() throws {
    for settings: [String: ParameterValue] in [[:], ["length_norm": .bool(true)]] {
      let inst = try minirl(settings)
      let whole = try inst.compute(Self.batch)
      let a = try inst.compute(Self.batch.slice(0..<2)), b = try inst.compute(Self.batch.slice(2..<4))
      XCTAssertEqual(a.loss + b.loss, whole.loss, accuracy: 1e-12)
      XCTAssertEqual(a.gradLogp + b.gradLogp, whole.gradLogp)
    }
  }
}

final class GroupMeanAndExactMatchTests: XCTestCase {
  func testGroupMeanIsMeanOnly() throws {
    let inst = try BaselineInstance(library: try builtin("group-mean"))
    let a = try inst.advantages(rewards: [1, 0, 0, 1, 0.5, 1, 1, 3], groupIds: [7, 7, 7, 7, 3, 9, 9, 9],
                                lengths: [3, 4, 1, 2, 5, 2, 2, 2])
    // group 7 mean ½, singleton 0, group 9 mean 5/3 — no std division (group 9's std ≠ 1)
    XCTAssertEqual(a.map(Double.init), [0.5, -0.5, -0.5, 0.5, 0, Double(Float(1 - 5.0 / 3)), Double(Float(1 - 5.0 / 3)), Double(Float(3 - 5.0 / 3))])
  }

  func testExactMatchNormalisesTheFinalAnswer() throws {
    let inst = try RewardInstance(library: try builtin("exact-match"))
    let cases: [(String, String, Float)] = [("42", "42", 1), (" 42. ", "42", 1), ("+042", "42", 1), ("1,234", "1234", 1),
                                            ("-0", "0", 1), ("41", "42", 0), ("4 2", "42", 0), ("", "0", 0)]
    let r = try inst.score(cases.map { RewardSample(prompt: "p", response: $0.0, reference: $0.1) })
    XCTAssertEqual(r.rewards, cases.map(\.2))
    let marked = try RewardInstance(library: try builtin("exact-match"), settings: ["marker": .string("####")])
    let m = try marked.score([RewardSample(prompt: "", response: "3+4=7, 7*2=14 #### 14", reference: "14"),
                              RewardSample(prompt: "", response: "14", reference: "14")])
    XCTAssertEqual(m.rewards, [1, 0])
    XCTAssertEqual(m.components.map { $0[0] }, [1, 0], "answer_found")
  }
}

