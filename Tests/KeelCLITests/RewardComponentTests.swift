// RewardComponentTests.swift — a reward component's declared reduction is honoured in
// metrics.jsonl (it used to be averaged over samples whatever it declared): the fixture
// declares the same kind of value with SUM, TOKEN_MEAN and SEQUENCE_MEAN, and each metric is
// checked against the step's own rollouts (rollouts.jsonl: each response's text and tokens).
import Foundation
import KeelTestSupport
import XCTest

final class RewardComponentTests: XCTestCase {
  func testEachComponentIsAggregatedByItsDeclaredReduction() throws {
    let lib = try TestSupport.fixture("reward_components.c")
    let out = TestSupport.tempDir("keel-components") + "/run"
    let r = try TestSupport.run(TestSupport.keel, ["train", "--out", out, "--quiet", "--preset", "test", "--steps", "2", "--reward", lib,
                                                   "--set", "coldstart.checkpoint=none", "--set", "log.rollouts=true"],
                                environment: ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""])
    XCTAssertEqual(r.status, 0, r.stdout)
    let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
      .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    let rollouts = try String(contentsOfFile: out + "/rollouts.jsonl", encoding: .utf8).split(separator: "\n")
      .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    for step in [1, 2] {
      let m = metrics.first { $0["step"] as? Int == step }!
      let rows = rollouts.filter { $0["step"] as? Int == step }
      XCTAssertEqual(rows.count, 8 * 4)
      let chars = rows.map { Double(($0["text"] as! String).utf8.count) }
      let tokens = rows.map { Double(($0["logp_rollout"] as! [Double]).count) }
      XCTAssertEqual(m["reward/fixture-components/one"] as! Double, 32, "SUM: the number of samples")
      XCTAssertEqual(m["reward/fixture-components/chars_seq"] as! Double, chars.reduce(0, +) / 32, accuracy: 1e-12, "SEQUENCE_MEAN")
      let tokenMean = zip(chars, tokens).map { $0 * $1 }.reduce(0, +) / tokens.reduce(0, +)
      XCTAssertEqual(m["reward/fixture-components/chars"] as! Double, tokenMean, accuracy: 1e-12, "TOKEN_MEAN")
      // the two means differ when lengths vary, so the test tells them apart
      if Set(tokens).count > 1 && Set(chars).count > 1 { XCTAssertNotEqual(tokenMean, chars.reduce(0, +) / 32, accuracy: 1e-9) }
    }
  }
}
