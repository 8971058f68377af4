// DistributionTermRunTests.swift — ABI 1.1 terms end to end, in short real runs (preset test):
//  - an entropy bonus (minirl's entropy_coef > 0) raises the policy's entropy against the same
//    run at 0, on each of three seeds (the host computes H and chains ∂loss/∂H);
//  - on-policy distillation from a teacher checkpoint (train.teacher: a checkpoint of a run with
//    a high-entropy policy) lowers the per-token KL to the teacher, with the sampled estimate
//    (logp_teacher) and with the host's full-vocabulary KL (kl_teacher, gradient chained);
//  - a Hugging Face directory as the teacher: when it is also the policy's start, the full KL to
//    the teacher is exactly 0 (same weights, same forward) and stays 0 (a fixed point), and a teacher of
//    another vocabulary is refused naming both sizes;
//  - grpo's full-vocabulary KL to the reference (kl_estimator full) is 0 while π_θ = π_ref and
//    positive once the policy has moved;
//  - an objective asking for a reference or a teacher the config does not give stops before
//    the first step, naming the config key.
import Foundation
import KeelTestSupport
import XCTest

final class DistributionTermRunTests: XCTestCase {
  /// The step lines of a finished run (those with a loss).
  func train(_ args: [String], expectFailure: Bool = false) throws -> (rows: [[String: Any]], output: String) {
    let out = TestSupport.tempDir("keel-terms")
    let r = try TestSupport.run(TestSupport.keel, ["train", "--out", out, "--quiet", "--preset", "test"] + args)
    if expectFailure {
      XCTAssertNotEqual(r.status, 0, r.stdout)
      return ([], r.stdout)
    }
    XCTAssertEqual(r.status, 0, r.stdout)
    let rows = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
    }.filter { $0["loss"] != nil }
    return (rows, out)
  }

  func mean(_ rows: ArraySlice<[String: Any]>, _ key: String) -> Double {
    rows.map { $0[key] as! Double }.reduce(0, +) / Double(rows.count)
  }

  func testEntropyBonusRaisesThePolicysEntropy() throws {
    for seed in [1, 2, 3] {
      let base = try train(["--steps", "12", "--seed", "\(seed)"]).rows
      let bonus = try train(["--steps", "12", "--seed", "\(seed)", "--set", "objective.params.entropy_coef=0.05"]).rows
      XCTAssertEqual(base.count, 12)
      // same seed, same start: the first step's entropy (of π_old, before any update) is the same
      XCTAssertEqual(base[0]["entropy"] as! Double, bonus[0]["entropy"] as! Double)
      let a = mean(base.suffix(4), "entropy"), b = mean(bonus.suffix(4), "entropy")
      XCTAssertGreaterThan(b, a + 0.2, "seed \(seed): entropy over the last 4 steps \(b) with the bonus vs \(a) without")
    }
  }

  func testOnPolicyDistillationLowersTheKLToTheTeacher() throws {
    // the teacher: a run trained with a strong entropy bonus (its policy differs a lot from the start)
    let (_, teacherRun) = try train(["--steps", "20", "--set", "objective.params.entropy_coef=0.5", "--set", "checkpoint.every=20"])
    let teacher = teacherRun + "/checkpoints/step-000020"
    XCTAssertTrue(FileManager.default.fileExists(atPath: teacher + "/config.json"))
    for mode in ["sampled", "full"] {
      let rows = try train(["--steps", "10", "--objective", "on-policy-distill", "--set", "objective.params.mode=\(mode)",
                            "--set", "train.teacher=\(teacher)"]).rows
      XCTAssertEqual(rows.count, 10)
      let first = mean(rows.prefix(3), "teacher_kl"), last = mean(rows.suffix(3), "teacher_kl")
      XCTAssertGreaterThan(first, 0.5, mode)
      XCTAssertLessThan(last, first - 0.1, "\(mode): teacher_kl \(first) over the first 3 steps → \(last) over the last 3")
    }
  }

  func testAHuggingFaceTeacher() throws {
    let dir = TestSupport.tempDir("keel-hfteacher")
    for f in ["config.json", "model.safetensors"] {
      try FileManager.default.copyItem(atPath: TestSupport.root + "/Tests/Fixtures/hf/qwen3moe-norm/" + f, toPath: dir + "/" + f)
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
      try FileManager.default.copyItem(atPath: TestSupport.root + "/Tests/Fixtures/tokenizers/wordlevel/" + f, toPath: dir + "/" + f)
    }
    let data = TestSupport.tempDir("keel-hfdata") + "/add.jsonl"
    try (0...9).flatMap { a in (0...9).map { b in "{\"prompt\": \"\(a)+\(b)=\", \"answer\": \"\(a + b)\"}" } }
      .joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let common = ["--steps", "2", "--objective", "on-policy-distill", "--set", "objective.params.mode=full", "--set", "model.checkpoint=\(dir)",
                  "--set", "task.name=\(data)", "--set", "sampler.max_tokens=6"]
    let rows = try train(common + ["--set", "train.teacher=\(dir)"]).rows
    // the teacher is the policy: KL 0, and 0 is a fixed point (∂KL/∂θ = 0 there), so it stays 0
    XCTAssertEqual(rows.map { $0["teacher_kl"] as! Double }, [0, 0])
    // Keel's character-table model as the teacher of a 64-token policy: refused, naming both sizes
    let (_, other) = try train(["--steps", "1", "--set", "checkpoint.every=1"])
    let refused = try train(common + ["--set", "train.teacher=\(other)/checkpoints/step-000001"], expectFailure: true).output
    XCTAssertTrue(refused.contains("train.teacher") && refused.contains("64"), refused)
  }

  func testFullKLToTheReferenceStartsAtZeroAndGrows() throws {
    let rows = try train(["--steps", "8", "--objective", "grpo", "--set", "objective.params.kl_estimator=full",
                          "--set", "objective.params.kl_coef=0.1", "--set", "train.kl_ref=true"]).rows
    XCTAssertEqual(rows[0]["kl_ref_mean"] as! Double, 0, accuracy: 1e-6, "π_θ = π_ref at the first step")
    XCTAssertGreaterThan(rows.last!["kl_ref_mean"] as! Double, 1e-4)
  }

  func testAMissingReferenceOrTeacherStopsBeforeTheFirstStep() throws {
    let teacher = try train(["--steps", "2", "--objective", "on-policy-distill"], expectFailure: true).output
    XCTAssertTrue(teacher.contains("on-policy-distill") && teacher.contains("train.teacher"), teacher)
    let reference = try train(["--steps", "2", "--objective", "grpo", "--set", "objective.params.kl_estimator=full",
                               "--set", "objective.params.kl_coef=0.1"], expectFailure: true).output
    XCTAssertTrue(reference.contains("grpo") && reference.contains("train.kl_ref"), reference)
  }
}
