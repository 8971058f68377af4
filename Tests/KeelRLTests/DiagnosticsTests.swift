// DiagnosticsTests.swift — the first-order validity monitor: a hand-computed two-response
// case checks every metric; in a real run, on-policy with an fp32 sampler the first
// mini-batch shows residual ≈ 0 and both gaps ≈ 0, bf16 shows a train–infer gap but no
// staleness, and with N = 4 the last mini-batch is staler than the first.
import Foundation
import KeelRL
import KeelTestSupport
import XCTest

final class DiagnosticsTests: XCTestCase {
  func f(_ x: Double) -> Float { Float(log(x)) }
  func d(_ x: Float) -> Double { Double(x) }

  func testHandComputedTwoResponses() {
    // A: π_θ/μ = 1.25 then 0.8 → δ = (0.25, −0.2), ρ = 1, 1 + Σδ = 1.05, Σ_{s<t} δ_sδ_t = −0.05
    // B: π_θ/μ = 1.5 → δ = 0.5, ρ = 1.5 = 1 + Σδ (one token: first order is exact)
    let a = ResponseLogProbs(logp: [f(0.5), f(0.4)], logpOld: [f(0.45), f(0.45)], logpRollout: [f(0.4), f(0.5)])
    let b = ResponseLogProbs(logp: [f(0.3)], logpOld: [f(0.25)], logpRollout: [f(0.2)])
    let m = Diagnostics.summarize([a, b].map(Diagnostics.record), threshold: 0.1)
    let tol = 1e-6
    XCTAssertEqual(m["fo_residual_mean"]!, 0.025, accuracy: tol)
    XCTAssertEqual(m["fo_residual_max"]!, 0.05, accuracy: tol)
    XCTAssertEqual(m["fo_residual_p90"]!, 0.05, accuracy: tol)
    XCTAssertEqual(m["fo_second_order_abs_mean"]!, 0.025, accuracy: tol)
    XCTAssertEqual(m["fo_valid_fraction"]!, 1)
    XCTAssertEqual(Diagnostics.summarize([a, b].map(Diagnostics.record), threshold: 0.01)["fo_valid_fraction"]!, 0.5)
    XCTAssertEqual(m["fo_overflow_count"]!, 0)
    let ti = abs(d(f(0.45)) - d(f(0.4))) + abs(d(f(0.45)) - d(f(0.5))) + abs(d(f(0.25)) - d(f(0.2)))
    let st = abs(d(f(0.5)) - d(f(0.45))) + abs(d(f(0.4)) - d(f(0.45))) + abs(d(f(0.3)) - d(f(0.25)))
    XCTAssertEqual(m["gap_train_infer_abs_mean"]!, ti / 3, accuracy: tol)
    XCTAssertEqual(m["gap_staleness_abs_mean"]!, st / 3, accuracy: tol)
    XCTAssertEqual(m["seq_log_ratio_abs_p90"]!, log(1.5), accuracy: tol)
    // an overflowing ratio is capped and counted, never inf
    let huge = ResponseLogProbs(logp: Array(repeating: 0, count: 20), logpOld: Array(repeating: -50, count: 20), logpRollout: Array(repeating: -50, count: 20))
    let o = Diagnostics.summarize([Diagnostics.record(huge)], threshold: 0.1)
    XCTAssertEqual(o["fo_overflow_count"], 1)
    XCTAssertTrue(o.values.allSatisfy(\.isFinite))
  }

  func runMetrics(_ overrides: [String: String], steps: Int) throws -> [[String: Any]] {
    setenv("KEEL_CACHE", NSTemporaryDirectory() + "keel-test-cache", 1)
    setenv("KEEL_PLUGIN_PATH", TestSupport.binDir, 1)
    let path = TestSupport.tempDir("keel-diag")
    var o = ["preset": "test", "steps": String(steps)]
    for (k, v) in overrides { o[k] = v }
    let config = try ConfigSchema.resolve(file: [:], overrides: o)
    let run = try RunDirectory(path: path, create: true)
    let trainer = try Trainer(config: config, run: run, quiet: true, logger: KeelLog.silent)
    try trainer.prepare(resumeFrom: nil)
    _ = try trainer.train(steps: steps)
    return try String(contentsOfFile: path + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }.filter { ($0["step"] as! Int) > 0 }
  }

  func testOnPolicyFP32FirstMinibatchIsExactlyFirstOrder() throws {
    for row in try runMetrics(["sampler.precision": "fp32"], steps: 3) {
      XCTAssertLessThan(row["fo_residual_max_first"] as! Double, 1e-5)
      XCTAssertLessThan(row["gap_train_infer_abs_mean_first"] as! Double, 1e-5)
      XCTAssertEqual(row["gap_staleness_abs_mean_first"] as! Double, 0, "θ = θ_old on the first mini-batch, same kernels")
    }
  }

  func testBF16HasATrainInferGapButNoStalenessOnTheFirstMinibatch() throws {
    for row in try runMetrics(["sampler.precision": "bf16"], steps: 3) {
      XCTAssertGreaterThan(row["gap_train_infer_abs_mean_first"] as! Double, 1e-4)
      XCTAssertEqual(row["gap_staleness_abs_mean_first"] as! Double, 0)
    }
  }

  func testStalenessGrowsOverMinibatches() throws {
    let rows = try runMetrics(["train.minibatches": "4", "sampler.precision": "fp32"], steps: 4)
    let first = rows.map { $0["gap_staleness_abs_mean_first"] as! Double }.reduce(0, +)
    let last = rows.map { $0["gap_staleness_abs_mean_last"] as! Double }.reduce(0, +)
    XCTAssertGreaterThan(last, first, "the last of N = 4 updates is staler than the first")
    XCTAssertEqual(rows[0]["fo_minibatches"] as? Double, 4)
  }

  func testDiagnosticsJSONLHasOneLinePerMinibatch() throws {
    setenv("KEEL_CACHE", NSTemporaryDirectory() + "keel-test-cache", 1)
    setenv("KEEL_PLUGIN_PATH", TestSupport.binDir, 1)
    let path = TestSupport.tempDir("keel-diag-lines")
    let config = try ConfigSchema.resolve(file: [:], overrides: ["preset": "test", "steps": "2", "train.minibatches": "2"])
    let trainer = try Trainer(config: config, run: try RunDirectory(path: path, create: true), quiet: true, logger: KeelLog.silent)
    try trainer.prepare(resumeFrom: nil)
    _ = try trainer.train(steps: 2)
    let lines = try String(contentsOfFile: path + "/diagnostics.jsonl", encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
    let pairs = lines.map { [($0["step"] as! NSNumber).intValue, ($0["minibatch"] as! NSNumber).intValue] }
    XCTAssertEqual(pairs, [[1, 0], [1, 1], [2, 0], [2, 1]])
    let metrics = try String(contentsOfFile: path + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }.filter { ($0["step"] as! Int) == 1 }[0]
    XCTAssertEqual(metrics["gap_staleness_abs_mean_last"] as? Double, lines[1]["gap_staleness_abs_mean"] as? Double)
  }
}
