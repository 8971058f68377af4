// PluginEvalTests.swift — `keel plugins eval` with the real binary: the example objective
// batch reproduces the hand-computed MiniRL case of BuiltinPluginTests exactly (with gradient
// agreement), a baseline and a reward example give their known values, and malformed batch
// files are clear errors with a non-zero exit.
import Foundation
import KeelTestSupport
import XCTest

final class PluginEvalTests: XCTestCase {
  func keel(_ args: [String]) throws -> TestSupport.Output { try TestSupport.run(TestSupport.keel, args) }

  func example(_ kind: String) throws -> String {
    let path = TestSupport.tempDir("keel-eval") + "/\(kind).json"
    try keel(["plugins", "eval", "--example", kind]).stdout.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  func testMiniRLOnTheExampleIsTheHandComputedCase() throws {
    let r = try keel(["plugins", "eval", "minirl", "--batch", try example("objective"), "--check-grad", "--json"])
    XCTAssertEqual(r.status, 0, r.stdout)
    let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    let grad = (doc["grad_logp"] as! [[Double]]).flatMap { $0 }
    let expected = [0, -0.25 * exp(0.1), 0, 0.25 * exp(-0.1), -0.625, 0, 0.125]
    for (g, e) in zip(grad, expected) { XCTAssertEqual(g, e, accuracy: 1e-6) }
    XCTAssertEqual(grad.count, expected.count)
    let loss = zip(expected, [-0.5, -1.0, -1.0, -0.5, -0.1, -0.7, -2.0]).map { $0 * $1 }.reduce(0, +)
    XCTAssertEqual(doc["loss"] as! Double, loss, accuracy: 1e-6)
    XCTAssertLessThan(doc["max_fd_deviation"] as! Double, 1e-5)
    let metrics = doc["metrics"] as! [String: Double]
    XCTAssertEqual(metrics["masked_fraction_low"]!, 1.0 / 6, accuracy: 1e-12)
    let text = try keel(["plugins", "eval", "minirl", "--batch", try example("objective"), "--check-grad"])
    XCTAssertTrue(text.stdout.contains("gradient check: max |fd − grad| ="), text.stdout)
    XCTAssertTrue(text.stdout.contains(": agree"), text.stdout)
    XCTAssertTrue(text.stdout.contains("  ∂loss/∂logp 0.000000    -0.276293"), text.stdout)
  }

  func testBaselineAndRewardExamples() throws {
    let b = try keel(["plugins", "eval", "group-mean", "--batch", try example("baseline"), "--json"])
    XCTAssertEqual(b.status, 0, b.stdout)
    let adv = (try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as! [String: Any])["advantages"] as! [Double]
    XCTAssertEqual(adv, [0.5, -0.5, -0.5, 0.5, 0, 0])
    let r = try keel(["plugins", "eval", "exact-match", "--batch", try example("reward"), "--json"])
    XCTAssertEqual(r.status, 0, r.stdout)
    let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    XCTAssertEqual(doc["rewards"] as! [Double], [1, 0, 1])
  }

  /// The aggregation shown is the instance's: a loss_agg_mode parameter overrides the declared default.
  func testTheShownAggregationIsTheInstances() throws {
    let batch = try example("objective")
    let byDefault = try keel(["plugins", "eval", "ppo-clip", "--batch", batch])
    XCTAssertTrue(byDefault.stdout.hasPrefix("ppo-clip (token-mean): loss"), byDefault.stdout)
    let set = try keel(["plugins", "eval", "ppo-clip", "--batch", batch, "--set", "loss_agg_mode=seq-mean-token-sum", "--json"])
    let doc = try JSONSerialization.jsonObject(with: Data(set.stdout.utf8)) as! [String: Any]
    XCTAssertEqual(doc["aggregation"] as? String, "seq-mean-token-sum")
  }

  func testMalformedBatchesAreClearErrors() throws {
    let dir = TestSupport.tempDir("keel-eval-bad")
    let cases: [(String, String)] = [
      ("{\"responses\": [{\"advantage\": 1, \"logp\": [-1], \"logp_old\": [-1]}]}", "responses[0].logp_rollout is missing"),
      ("{\"responses\": [{\"advantage\": 1, \"logp\": [-1, -2], \"logp_old\": [-1], \"logp_rollout\": [-1, -2]}]}", "responses[0].logp_old has 1 entries but logp has 2"),
      ("{\"responses\": [{\"advantage\": \"big\", \"logp\": [-1], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "responses[0].advantage must be a number"),
      ("{\"responses\": [{\"advantage\": 1, \"logp\": [NaN], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "not a JSON object (NaN and Infinity are not JSON"),
      ("{\"responses\": [{\"advantage\": 1, \"logp\": [\"x\"], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "responses[0].logp[0] must be a number"),
      ("{\"response\": []}", "field 'responses' is missing"),
      // numbers beyond Int64 used to trap; beyond float32 they silently became ±inf
      ("{\"responses\": [{\"group\": 1e300, \"advantage\": 1, \"logp\": [-1], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "responses[0].group must be a whole number of at most 2^53"),
      ("{\"responses\": [{\"group\": 0.5, \"advantage\": 1, \"logp\": [-1], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "responses[0].group must be a whole number"),
      ("{\"responses\": [{\"advantage\": 1e300, \"logp\": [-1], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "responses[0].advantage = 1e+300 is beyond float32's range"),
      ("{\"responses\": [{\"advantage\": 1, \"logp\": [-1e39], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "responses[0].logp[0] = -1e+39 is beyond float32's range"),
      ("{\"max_response_tokens\": 1e300, \"responses\": [{\"advantage\": 1, \"logp\": [-1], \"logp_old\": [-1], \"logp_rollout\": [-1]}]}", "batch.max_response_tokens must be a whole number"),
    ]
    for (text, needle) in cases {
      try text.write(toFile: dir + "/b.json", atomically: true, encoding: .utf8)
      let r = try keel(["plugins", "eval", "minirl", "--batch", dir + "/b.json"])
      XCTAssertFalse(r.signaled)
      XCTAssertNotEqual(r.status, 0)
      XCTAssertTrue(r.stdout.contains(needle), "\(r.stdout) lacks \(needle)")
    }
    // a baseline batch with a length beyond Int64
    try "{\"responses\": [{\"reward\": 1, \"group\": 0, \"length\": 1e300}]}".write(toFile: dir + "/b.json", atomically: true, encoding: .utf8)
    let b = try keel(["plugins", "eval", "group-mean", "--batch", dir + "/b.json"])
    XCTAssertFalse(b.signaled)
    XCTAssertTrue(b.stdout.contains("responses[0].length must be a whole number"), b.stdout)
  }
}
