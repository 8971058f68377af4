// TemplateTests.swift — every template compiles OUTSIDE SwiftPM (make + cc, swiftc or cargo),
// loads through dlopen and passes every check of the validator. No keel rebuild is involved.
// The three objective templates (c, swift, rust) implement ONE objective with the same
// parameters (eps, entropy_coef, ratio_to): they must compute the same loss, ∂loss/∂logp,
// ∂loss/∂entropy and metric on the same batch, and match an independent float64 reference.
import Foundation
import KeelABI
import KeelPluginHost
import KeelTestSupport
import XCTest

final class TemplateTests: XCTestCase {
  /// Copy templates/LANG/KIND to a temp dir and run make there.
  func buildTemplate(_ lang: String, _ kind: String) throws -> String {
    let dir = TestSupport.tempDir("keel-template")
    let src = TestSupport.root + "/templates/\(lang)/\(kind)"
    for f in try FileManager.default.contentsOfDirectory(atPath: src) {
      try FileManager.default.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
    }
    let r = try TestSupport.run("/usr/bin/make", ["-C", dir, "KEEL_INCLUDE=\(TestSupport.includeDir)", "CARGO=\(TestSupport.which("cargo") ?? "cargo")"])
    XCTAssertEqual(r.status, 0, r.stdout)
    return dir + "/libkeel-template-\(kind).so"
  }

  func checkAll(_ path: String, kind: PluginKind, settings: [String: ParameterValue] = [:]) throws {
    let lib = try PluginLibrary.load(path: path)
    XCTAssertEqual(lib.kind, kind)
    let results = PluginChecker(library: lib, settings: settings).run()
    XCTAssertFalse(results.isEmpty)
    for r in results { XCTAssertTrue(r.passed, "\(path) \(settings): \(r.name): \(r.detail)") }
  }

  // MARK: the objective template (same in C, Swift and Rust)

  /// The objective templates' formula, written independently in float64 from its definition
  /// (max/clip form; the branch is the larger side of the max at logp_frozen, ties unclipped):
  ///   L = (1/T) Σ m_t max(−A r_t, −A clip(r_t, 1−eps, 1+eps)) − entropy_coef · (1/T) Σ m_t H_t
  ///   r_t = exp(logp_t − base_t), base = logp_old ("old") or logp_rollout ("rollout").
  static func referenceObjective(_ b: ObjectiveBatch, eps: Double, entropyCoef: Double, ratioTo: String)
    -> (loss: Double, grad: [Double], gradEntropy: [Double], clipFraction: Double) {
    let base = ratioTo == "rollout" ? b.logpRollout : b.logpOld
    let frozen = b.logpFrozen ?? b.logp
    let T = b.totalTokens
    var terms: [Double] = [], entropies: [Double] = []
    var grad = [Double](repeating: 0, count: b.numTokens), gradEntropy = grad
    var clipped = 0.0, unmasked = 0.0
    for t in 0..<b.numTokens where b.mask[t] != 0 {
      let a = Double(b.advantages[t])
      let rho = exp(Double(frozen[t]) - Double(base[t])), r = exp(Double(b.logp[t]) - Double(base[t]))
      let clip = { (x: Double) in min(max(x, 1 - eps), 1 + eps) }
      if -a * clip(rho) > -a * rho {  // the clipped side is the max at the frozen point: a constant
        terms.append(-a * clip(rho))
        clipped += 1
      } else {
        terms.append(-a * r)
        grad[t] = -a * r / T
      }
      if entropyCoef > 0 {
        entropies.append(Double(b.entropy![t]))
        gradEntropy[t] = -entropyCoef / T
      }
      unmasked += 1
    }
    guard unmasked > 0 else { return (0, grad, gradEntropy, 0) }
    var loss = terms.reduce(0, +) / T
    if entropyCoef > 0 { loss -= entropyCoef * entropies.reduce(0, +) / T }
    return (loss, grad, gradEntropy, clipped / unmasked)
  }

  /// A batch with every case: both advantage signs, ratios inside and outside [1−eps, 1+eps]
  /// against both logp_old and logp_rollout, a masked token, logp_frozen ≠ logp (the branch
  /// must follow logp_frozen), an entropy per token, and total_tokens larger than the call's
  /// unmasked tokens (a micro-batch of a bigger step).
  static func agreementBatch() -> ObjectiveBatch {
    var b = ObjectiveBatch(responses: [
      (0, 1.0, [-1.0, -2.0, -0.5], [-1.1, -2.6, -0.2], [-0.9, -1.5, -0.5], [1, 1, 1]),
      (0, -0.75, [-3.0, -0.4], [-2.0, -0.9], [-3.2, -0.3], [1, 1]),
      (1, 0.5, [-0.1, -0.7, -1.3], [-0.3, -0.7, -1.0], [-3.0, -0.7, -1.4], [0, 1, 1]),
      (1, -1.25, [-2.0], [-1.7], [-2.4], [1]),
    ])
    b.logpFrozen = zip(b.logp, [0.05, -0.3, 0.0, 0.2, 0.0, 0.0, 0.1, -0.15, 0.0] as [Float]).map { $0 + $1 }
    b.entropy = [2.5, 0.75, 1.5, 3.0, 0.25, 1.0, 2.0, 0.5, 1.75]
    b.totalTokens = 12  // 8 unmasked here, 12 in the whole step
    return b
  }

  static let agreementSettings: [[String: ParameterValue]] = [
    [:],  // eps 0.2, entropy_coef 0, ratio_to old
    ["eps": .float(0.1), "entropy_coef": .float(0.01), "ratio_to": .string("rollout")],
    ["eps": .float(0.3), "entropy_coef": .float(0.05)],
    ["eps": .float(0), "ratio_to": .string("rollout")],
  ]

  /// The same loss, gradients and metric from the C, Swift and Rust templates, each against
  /// the float64 reference (loss 1e-12 relative; gradients are float stores: 2e-7 relative).
  func testObjectiveTemplatesAgree() throws {
    var langs = ["c", "swift"]
    if TestSupport.which("cargo") != nil { langs.append("rust") } else { print("cargo absent: the Rust template is not compared") }
    let libs = try langs.map { (lang: $0, lib: try PluginLibrary.load(path: try buildTemplate($0, "objective"))) }
    for (_, lib) in libs {
      XCTAssertEqual(lib.parameters.map(\.name), ["eps", "entropy_coef", "ratio_to"])
      XCTAssertEqual(lib.scalars.map(\.name), ["clip_fraction"])
      XCTAssertEqual(lib.aggregation, "token-mean")
      XCTAssertEqual(lib.abiMinor, 1)
    }
    for settings in Self.agreementSettings {
      let eps: Double, coef: Double, ratioTo: String
      if case .float(let v) = settings["eps"] { eps = v } else { eps = 0.2 }
      if case .float(let v) = settings["entropy_coef"] { coef = v } else { coef = 0 }
      if case .string(let v) = settings["ratio_to"] { ratioTo = v } else { ratioTo = "old" }
      var batch = Self.agreementBatch()
      if coef == 0 { batch.entropy = nil }  // the host supplies it only to an instance that asks
      let ref = Self.referenceObjective(batch, eps: eps, entropyCoef: coef, ratioTo: ratioTo)
      XCTAssertGreaterThan(ref.clipFraction, 0, "the batch must exercise both branches (\(settings))")
      var first: ObjectiveResult? = nil
      for (lang, lib) in libs {
        let what = "\(lang) \(settings)"
        let inst = try ObjectiveInstance(library: lib, settings: settings)
        XCTAssertEqual(inst.needs, coef > 0 ? KEEL_OBJECTIVE_USES_ENTROPY : 0, what)
        let r = try inst.compute(batch)
        XCTAssertEqual(r.loss, ref.loss, accuracy: 1e-12 * max(1, abs(ref.loss)), what)
        for t in 0..<batch.numTokens {
          XCTAssertEqual(Double(r.gradLogp[t]), ref.grad[t], accuracy: 2e-7 * abs(ref.grad[t]), "\(what) grad_logp[\(t)]")
        }
        XCTAssertEqual(r.metrics.count, 1, what)
        XCTAssertEqual(r.metrics.first ?? -1, ref.clipFraction, accuracy: 1e-15, what)
        if coef > 0 {
          let ge = try XCTUnwrap(r.gradEntropy, what)
          for t in 0..<batch.numTokens {
            XCTAssertEqual(Double(ge[t]), ref.gradEntropy[t], accuracy: 2e-7 * abs(ref.gradEntropy[t]), "\(what) grad_entropy[\(t)]")
          }
        }
        // The three do the same arithmetic in the same order: they agree with each other.
        if let first {
          XCTAssertEqual(r.loss, first.loss, accuracy: 1e-15 * max(1, abs(first.loss)), "\(what) vs \(langs[0])")
          XCTAssertEqual(r.gradLogp, first.gradLogp, "\(what) vs \(langs[0])")
          if coef > 0 { XCTAssertEqual(r.gradEntropy, first.gradEntropy, "\(what) vs \(langs[0])") }
        } else {
          first = r
        }
      }
    }
    // The ABI 1.1 `choices` declaration: the host refuses another value before create().
    for (lang, lib) in libs {
      XCTAssertThrowsError(try ObjectiveInstance(library: lib, settings: ["ratio_to": .string("sampler")]), lang)
    }
  }

  /// Two responses, T = 3 unmasked tokens, eps 0.2, ratio against logp_old:
  ///   r0 A=+1: t0 r = 1 → −A r = −1, grad −1/3;  t1 r = e^0.5 > 1.2 → clipped −1.2, grad 0
  ///   r1 A=−1: t0 r = e^−1 < 0.8 → clipped +0.8, grad 0
  /// loss = (−1 − 1.2 + 0.8)/3, clip_fraction 2/3.
  func handComputed(_ path: String) throws {
    let inst = try ObjectiveInstance(library: try PluginLibrary.load(path: path))
    let r = try inst.compute(ObjectiveBatch(responses: [(0, 1, [-1, -2], [-1, -2.5], [-1, -2], [1, 1]), (0, -1, [-3], [-2], [-3], [1])]))
    XCTAssertEqual(r.gradLogp, [Float(-1.0 / 3.0), 0, 0])
    XCTAssertEqual(r.loss, (-1 - 1.2 + 0.8) / 3, accuracy: 1e-12)
    XCTAssertEqual(r.metrics, [2.0 / 3.0])
  }

  func testCObjectiveTemplate() throws {
    let path = try buildTemplate("c", "objective")
    try checkAll(path, kind: .objective)
    try checkAll(path, kind: .objective, settings: ["eps": .float(0.1), "ratio_to": .string("rollout")])
    try handComputed(path)
  }

  func testCRewardTemplate() throws {
    let path = try buildTemplate("c", "reward")
    try checkAll(path, kind: .reward)
    let inst = try RewardInstance(library: try PluginLibrary.load(path: path))
    XCTAssertEqual(try inst.score([RewardSample(prompt: "", response: " 7 ", reference: "7"),
                                   RewardSample(prompt: "", response: "8", reference: "7")]).rewards, [1, 0])
  }

  func testCBaselineTemplate() throws {
    let path = try buildTemplate("c", "baseline")
    try checkAll(path, kind: .baseline)
    let inst = try BaselineInstance(library: try PluginLibrary.load(path: path))
    XCTAssertEqual(try inst.advantages(rewards: [1, 0, 4], groupIds: [5, 5, 2], lengths: [1, 1, 1]), [0.5, -0.5, 0])
  }

  func testSwiftObjectiveTemplate() throws {
    let path = try buildTemplate("swift", "objective")
    try checkAll(path, kind: .objective)
    try checkAll(path, kind: .objective, settings: ["eps": .float(0.1), "ratio_to": .string("rollout")])
    try handComputed(path)
  }

  func testRustObjectiveTemplate() throws {
    guard TestSupport.which("cargo") != nil else { throw XCTSkip("cargo is not installed: the Rust template is not tested here") }
    let path = try buildTemplate("rust", "objective")
    try checkAll(path, kind: .objective)
    try checkAll(path, kind: .objective, settings: ["eps": .float(0.1), "ratio_to": .string("rollout")])
    try handComputed(path)
  }
}
