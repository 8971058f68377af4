// EvalCLITests.swift — measurement from the command line: `keel eval --checkpoint` on a run's
// checkpoint reproduces the run's own held-out numbers at that step with no extra flags (it
// reads the run's config.yaml: task, seed, precision, max tokens, marker, grader), also on
// the scratchpad task (marker '#', 1-digit operands); `keel train --out` refuses to overwrite
// an existing run unless --force (or --resume).
import Foundation
import KeelTestSupport
import XCTest

final class EvalCLITests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]

  func lastEval(_ dir: String) throws -> (greedy: Double, sampled: Double) {
    let rows = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
    let last = try XCTUnwrap(rows.last { $0["eval_accuracy_greedy"] != nil })
    return (last["eval_accuracy_greedy"] as! Double, last["eval_accuracy"] as! Double)
  }

  func testEvalOfARunsCheckpointReportsTheRunsOwnAccuracy() throws {
    let dir = TestSupport.tempDir("keel-eval") + "/run"
    let train = try TestSupport.run(TestSupport.keel, [
      "train", "--preset", "test", "--steps", "4", "--out", dir, "--quiet", "--set", "task.name=scratchpad", "--set", "task.digits=1",
      "--set", "task.terms=3", "--set", "sampler.max_tokens=24", "--set", "sampler.precision=bf16", "--set", "eval.every=2",
      "--set", "coldstart.max_steps=200", "--set", "checkpoint.every=4"], environment: env)
    XCTAssertEqual(train.status, 0, train.stdout)
    let want = try lastEval(dir)
    XCTAssertGreaterThan(want.greedy, 0, "the scratchpad cold start solves some held-out problems (marker '#' reaches evaluation)")
    for target in [dir + "/checkpoints/step-000004", dir] {
      let r = try TestSupport.run(TestSupport.keel, ["eval", "--checkpoint", target], environment: env)
      XCTAssertEqual(r.status, 0, r.stdout)
      XCTAssertTrue(r.stdout.contains(String(format: "eval_accuracy %.4f", want.sampled)), "want \(want):\n\(r.stdout)")
      XCTAssertTrue(r.stdout.contains(String(format: "eval_accuracy_greedy %.4f", want.greedy)), "want \(want):\n\(r.stdout)")
      XCTAssertTrue(r.stdout.contains("64 problems (scratchpad, bf16 sampler"), r.stdout)
    }
    // a flag still overrides one setting
    let fp32 = try TestSupport.run(TestSupport.keel, ["eval", "--checkpoint", dir, "--precision", "fp32", "--samples", "1"], environment: env)
    XCTAssertTrue(fp32.stdout.contains("fp32 sampler") && fp32.stdout.contains("mean over 1 samples"), fp32.stdout)
  }

  func testTrainRefusesToOverwriteARunUnlessForced() throws {
    let dir = TestSupport.tempDir("keel-out") + "/run"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try "mine".write(toFile: dir + "/notes.txt", atomically: true, encoding: .utf8)
    let first = try TestSupport.run(TestSupport.keel, ["train", "--preset", "test", "--steps", "1", "--out", dir, "--quiet"], environment: env)
    XCTAssertEqual(first.status, 0, first.stdout)
    let before = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8)
    let again = try TestSupport.run(TestSupport.keel, ["train", "--preset", "test", "--steps", "2", "--out", dir, "--quiet"], environment: env)
    XCTAssertNotEqual(again.status, 0)
    XCTAssertTrue(again.stdout.contains("already holds a run") && again.stdout.contains("--resume") && again.stdout.contains("--force"), again.stdout)
    XCTAssertEqual(try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8), before, "the refused run changed nothing")
    let forced = try TestSupport.run(TestSupport.keel, ["train", "--preset", "test", "--steps", "2", "--out", dir, "--quiet", "--force"], environment: env)
    XCTAssertEqual(forced.status, 0, forced.stdout)
    let steps = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").count
    XCTAssertEqual(steps, 3, "steps 0, 1, 2 of the new run only")
    XCTAssertEqual(try String(contentsOfFile: dir + "/notes.txt", encoding: .utf8), "mine", "--force removes the run's files only")
    // the grader is recorded with its plugin's hash
    let prov = try String(contentsOfFile: dir + "/provenance.json", encoding: .utf8)
    XCTAssertTrue(prov.contains("\"grader\"") && prov.contains("\"data_version\" : \"split-v2\""), prov)
  }
}
