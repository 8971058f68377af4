// HardeningTests.swift — inputs from anyone end in one clear error and a non-zero exit, never a
// signal: a prompt plus max_tokens beyond the model's context (a --set value, a keel eval flag,
// a long JSONL prompt) is named with both numbers before anything is sampled.
import Foundation
import KeelTestSupport
import XCTest

final class HardeningTests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]

  func expectClearError(_ r: TestSupport.Output, _ needles: [String], file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertNotEqual(r.status, 0, r.stdout, file: file, line: line)
    XCTAssertFalse(r.signaled, "ended by a signal: " + r.stdout, file: file, line: line)
    for n in needles { XCTAssertTrue(r.stdout.contains(n), "'\(n)' not in: " + r.stdout, file: file, line: line) }
  }

  func testPromptPlusMaxTokensBeyondTheContextIsAClearError() throws {
    // 1. --set sampler.max_tokens beyond max_position_embeddings (128)
    let out = TestSupport.tempDir("keel-ctx")
    let a = try TestSupport.run(TestSupport.keel, ["train", "--out", out + "/a", "--quiet", "--preset", "test", "--steps", "1",
                                                   "--set", "coldstart.checkpoint=none", "--set", "sampler.max_tokens=200"], environment: env)
    expectClearError(a, ["with max_tokens 200", "more than the model's max_position_embeddings 128"])
    // 2. keel eval --max-tokens on a checkpoint
    let ckpt = TestSupport.tempDir("keel-ctx-model")
    for f in ["config.json", "model.safetensors"] {
      try FileManager.default.copyItem(atPath: TestSupport.root + "/Tests/Fixtures/hf/qwen3moe-norm/" + f, toPath: ckpt + "/" + f)
    }
    for f in ["tokenizer.json", "tokenizer_config.json"] {
      try FileManager.default.copyItem(atPath: TestSupport.root + "/Tests/Fixtures/tokenizers/wordlevel/" + f, toPath: ckpt + "/" + f)
    }
    let b = try TestSupport.run(TestSupport.keel, ["eval", "--checkpoint", ckpt, "--max-tokens", "1000", "--eval-size", "4"], environment: env)
    expectClearError(b, ["with max_tokens 1000", "max_position_embeddings 64"])
    // 3. a JSONL prompt longer than the context
    let data = out + "/long.jsonl"
    var rows = (0..<40).map { "{\"prompt\": \"\($0)+1=\", \"answer\": \"\($0 + 1)\"}" }
    rows.append("{\"prompt\": \"\(String(repeating: "1+", count: 151))1=\", \"answer\": \"152\"}")
    try rows.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let c = try TestSupport.run(TestSupport.keel, ["train", "--out", out + "/c", "--quiet", "--preset", "test", "--steps", "40",
                                                   "--set", "coldstart.checkpoint=none", "--set", "task.name=\(data)",
                                                   "--set", "rollout.prompts=4", "--set", "task.eval_size=2"], environment: env)
    expectClearError(c, ["prompt \"1+1+1+", "has 305 tokens", "max_position_embeddings 128"])
  }

  /// A truncated config.yaml on --resume is refused (it used to be filled with defaults and
  /// rewritten); a JSONL row Keel's character table cannot encode is named by file and line; an
  /// empty tokens file for keel score is an error, not a NaN in JSON.
  func testTruncatedResumeConfigUnencodableRowsAndEmptyScoreFilesAreClearErrors() throws {
    let out = TestSupport.tempDir("keel-trunc") + "/run"
    let a = try TestSupport.run(TestSupport.keel, ["train", "--out", out, "--quiet", "--preset", "test", "--steps", "2",
                                                   "--set", "coldstart.checkpoint=none", "--set", "checkpoint.every=1"], environment: env)
    XCTAssertEqual(a.status, 0, a.stdout)
    // cut at a line boundary, so what is left is valid YAML that lacks keys (cut mid-line it is a YAML error)
    let text = try String(contentsOfFile: out + "/config.yaml", encoding: .utf8)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    let cut = lines.prefix(lines.count / 3).joined(separator: "\n") + "\n"
    try cut.write(toFile: out + "/config.yaml", atomically: true, encoding: .utf8)
    let b = try TestSupport.run(TestSupport.keel, ["train", "--resume", out, "--quiet", "--steps", "3"], environment: env)
    expectClearError(b, ["its config.yaml lacks", "truncated"])
    XCTAssertEqual(try String(contentsOfFile: out + "/config.yaml", encoding: .utf8), cut, "left as it was")
    // a row with a character outside Keel's table
    let data = TestSupport.tempDir("keel-vocab-row") + "/d.jsonl"
    try ((0..<30).map { "{\"prompt\": \"\($0)+1=\", \"answer\": \"\($0 + 1)\"}" } + ["{\"prompt\": \"3€+1=\", \"answer\": \"4\"}"])
      .joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let c = try TestSupport.run(TestSupport.keel, ["train", "--out", out + "-c", "--quiet", "--preset", "test", "--steps", "1",
                                                   "--set", "coldstart.checkpoint=none", "--set", "task.name=\(data)"], environment: env)
    expectClearError(c, ["\(data):31:", "character '€'"])
    // keel score on an empty file
    let empty = TestSupport.tempDir("keel-score-empty") + "/t.json"
    try "[]".write(toFile: empty, atomically: true, encoding: .utf8)
    let ckpt = TestSupport.root + "/Tests/Fixtures/hf/qwen3moe-norm"
    let d = try TestSupport.run(TestSupport.keel, ["score", "--checkpoint", ckpt, "--tokens", empty, "--engine", "both"], environment: env)
    expectClearError(d, ["no sequences to score"])
  }

  /// A run directory that cannot be created is one line naming it (it used to dump an NSError).
  func testAnUnwritableRunDirectoryIsOneLine() throws {
    let r = try TestSupport.run(TestSupport.keel, ["train", "--out", "/proc/keel-cannot-write", "--quiet", "--preset", "test", "--steps", "1"], environment: env)
    expectClearError(r, ["cannot write /proc/keel-cannot-write/checkpoints: "])
    XCTAssertFalse(r.stdout.contains("NSCocoaErrorDomain"), r.stdout)
  }
}

/// `keel bench e2e` at tiny scale: its JSON has every field, per seed and over seeds, and the
/// figures are the runs' own (steps run, a peak RSS the kernel measured).
final class E2EBenchTests: XCTestCase {
  func testE2EBenchJSONHasEveryField() throws {
    let keep = TestSupport.tempDir("keel-e2e")
    let r = try TestSupport.run(TestSupport.keel, ["bench", "e2e", "--seeds", "1,2", "--json", "--keep", keep, "--threads", "1",
                                                   "--set", "preset=test", "--set", "steps=4", "--set", "eval.every=2"],
                                environment: ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""])
    XCTAssertEqual(r.status, 0, r.stdout)
    let doc = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
    for k in ["from", "overrides", "seeds", "medianSecondsPerStep", "maxPeakRSSMB", "reachedTarget"] { XCTAssertNotNil(doc[k], k) }
    let seeds = doc["seeds"] as! [[String: Any]]
    XCTAssertEqual(seeds.map { $0["seed"] as! Int }, [1, 2])
    for s in seeds {
      for k in ["coldStartGreedy", "finalGreedy", "bestGreedy", "targetHeldTwice", "steps", "trainSeconds", "secondsPerStep",
                "samplingSeconds", "scoringSeconds", "updateSeconds", "peakRSSMB", "wallSeconds"] { XCTAssertNotNil(s[k], k) }
      XCTAssertEqual(s["steps"] as? Int, 4)
      XCTAssertGreaterThan(s["peakRSSMB"] as! Double, 10)
      XCTAssertGreaterThan(s["samplingSeconds"] as! Double, 0)
    }
    // the runs are kept and are the ones reported
    let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: keep + "/seed-2/summary.json"))) as! [String: Any]
    XCTAssertEqual(summary["finalGreedy"] as? Double, seeds[1]["finalGreedy"] as? Double)
  }
}
