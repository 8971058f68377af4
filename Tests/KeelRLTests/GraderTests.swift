// GraderTests.swift — one definition of "correct": the training reward (the reward plugin the
// run trains on) and the grader that evaluation, the training accuracy and the cold start's
// validation use agree on every response, including the cases where the old evaluator (bytes
// after trimming spaces) disagreed with exact-match ("#17\n", "#017", "17."); a JSONL dataset
// whose reward sets marker=# evaluates with that marker (it used to score 0% held out).
import Foundation
import KeelPluginHost
import KeelRL
import KeelTasks
import KeelTestSupport
import XCTest

final class GraderTests: XCTestCase {
  override func setUp() { setenv("KEEL_PLUGIN_PATH", TestSupport.binDir, 1) }

  static let responses = ["17", "#17", "#17\n", "#017", "#17.", "#+17", "# 17 ", "#1,7", "#18", "#", "", "17#17", "12#17", "#17#18",
                          "x#17", "#-17", "#17.5", "#17..", "#\t17\r\n", "#0017", "#17 apples", "#１７"]

  /// Reward plugin vs grader on the same responses, for a config: identical verdicts.
  func agreement(_ overrides: [String: String], reference: String = "17") throws -> [Bool] {
    let config = try RunConfig.resolve(file: [:], overrides: overrides)
    let data = try Trainer.dataset(config)
    let plugins = try PluginSet(config: config, discovery: .standard(), answerMarker: data.answerMarker, logger: KeelLog.silent)
    let grader = try Trainer.grader(config, marker: data.answerMarker)
    let problem = Problem(prompt: "8+9=", answer: reference, task: "t")
    let rewards = try plugins.score(Self.responses.map { RewardSample(prompt: problem.prompt, response: $0, reference: reference) }).total
    let correct = try grader.correct(Self.responses, Self.responses.map { _ in problem })
    for (i, r) in Self.responses.enumerated() {
      XCTAssertEqual(rewards[i] >= 1, correct[i], "\(overrides): response \(r.debugDescription) earns reward \(rewards[i]) but the grader says \(correct[i])")
    }
    return correct
  }

  func testTheRewardAndTheEvaluatorAgree() throws {
    let correct = try agreement(["task.name": "scratchpad"])
    let byResponse = Dictionary(uniqueKeysWithValues: zip(Self.responses, correct))
    // the cases the old evaluator scored wrong although the reward was 1
    for r in ["#17\n", "#017", "#17.", "#+17", "# 17 ", "#\t17\r\n", "12#17", "#0017"] { XCTAssertEqual(byResponse[r], true, r.debugDescription) }
    for r in ["17", "#18", "#", "", "#17#18", "#-17", "#17.5", "#17..", "#17 apples", "#1,7", "#１７"] { XCTAssertEqual(byResponse[r], false, r.debugDescription) }
    // without a marker (addition): the whole response is the answer
    let plain = try agreement(["task.name": "addition"])
    let plainBy = Dictionary(uniqueKeysWithValues: zip(Self.responses, plain))
    XCTAssertEqual(plainBy["17"], true)
    XCTAssertEqual(plainBy["#17"], false)
  }

  func testAJSONLDatasetEvaluatesWithTheRewardsMarker() throws {
    let dir = TestSupport.tempDir("keel-grader")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let rows = (0..<64).map { "{\"prompt\": \"\($0)+1=\", \"answer\": \"\($0 + 1)\"}" }
    try rows.joined(separator: "\n").write(toFile: dir + "/d.jsonl", atomically: true, encoding: .utf8)
    let viaReward = try agreement(["task.name": dir + "/d.jsonl", "reward.params.marker": "#"])
    XCTAssertEqual(Dictionary(uniqueKeysWithValues: zip(Self.responses, viaReward))["x#17"], true)
    let config = try RunConfig.resolve(file: [:], overrides: ["task.name": dir + "/d.jsonl", "task.marker": "#"])
    XCTAssertEqual(try Trainer.dataset(config).answerMarker, "#")
    _ = try agreement(["task.name": dir + "/d.jsonl", "task.marker": "#"])
  }

  /// A threshold below 1 with a graded reward: length-penalty style rewards count as correct only above it.
  func testTheThresholdIsApplied() throws {
    let g = try Grader(reward: "exact-match", marker: "", threshold: 0.5)
    let p = Problem(prompt: "1+1=", answer: "2", task: "t")
    XCTAssertEqual(try g.correct(["2", "3"], [p, p]), [true, false])
    let never = try Grader(reward: "exact-match", marker: "", threshold: 1.5)
    XCTAssertEqual(try never.correct(["2"], [p]), [false])
  }
}
