// HFRunTests.swift — RL from a Hugging Face model directory with its own tokenizer, as a user
// runs it: a transformers-made Qwen3-MoE (Tests/Fixtures/hf, vocabulary 64) with a WordLevel
// tokenizer.json whose ids differ from Keel's character table (digits are 39–48, "</s>" is 2),
// on a JSONL of additions: `keel train --set model.checkpoint=DIR` runs, its checkpoints are
// Hugging Face directories again (config, safetensors, the tokenizer files), a checkpoint
// reads back to the same bits and the same tokenization, and `keel eval` scores it with its
// own tokenizer. A model whose vocabulary is smaller than its tokenizer's ids is a clear error
// naming both sizes (it used to end in SIGILL). `keel sft --checkpoint DIR --task FILE.jsonl`
// cold-starts such a directory on the file's rows with its own tokenizer and writes a Hugging
// Face directory again; `keel score --text` encodes strings with the directory's tokenizer.
import Foundation
import KeelModel
import KeelTasks
import KeelTestSupport
import KeelTokenizer
import XCTest

final class HFRunTests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]

  /// A model directory: the fixture model plus, when given, a fixture tokenizer.
  func modelDir(tokenizer: String?, model: String = "qwen3moe-norm") throws -> String {
    let dir = TestSupport.tempDir("keel-hfdir")
    for f in ["config.json", "model.safetensors"] {
      try FileManager.default.copyItem(atPath: TestSupport.root + "/Tests/Fixtures/hf/\(model)/" + f, toPath: dir + "/" + f)
    }
    if let tokenizer {
      for f in ["tokenizer.json", "tokenizer_config.json"] {
        try FileManager.default.copyItem(atPath: TestSupport.root + "/Tests/Fixtures/tokenizers/\(tokenizer)/" + f, toPath: dir + "/" + f)
      }
    }
    return dir
  }

  func additions() throws -> String {
    let path = TestSupport.tempDir("keel-hfdata") + "/add.jsonl"
    var rows: [String] = []
    for a in 0...9 { for b in 0...9 { rows.append("{\"prompt\": \"\(a)+\(b)=\", \"answer\": \"\(a + b)\"}") } }
    try rows.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  func testRLFromAHuggingFaceDirectoryWithItsTokenizer() throws {
    // Qwen3-MoE and dense Qwen3 (GQA, head_dim ≠ hidden / heads), both made by transformers
    for model in ["qwen3moe-norm", "qwen3-gqa"] { try rlFromAHuggingFaceDirectory(model: model) }
  }

  func rlFromAHuggingFaceDirectory(model: String) throws {
    let dir = try modelDir(tokenizer: "wordlevel", model: model), data = try additions()
    let out = TestSupport.tempDir("keel-hfrun") + "/run"
    let r = try TestSupport.run(TestSupport.keel, ["train", "--out", out, "--quiet", "--preset", "test", "--steps", "2",
                                                   "--set", "model.checkpoint=\(dir)", "--set", "task.name=\(data)",
                                                   "--set", "sampler.max_tokens=6", "--set", "eval.every=1"], environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    let rows = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
    XCTAssertEqual(rows.count, 3)
    // the written checkpoint is a Hugging Face directory with the tokenizer files
    let ckpt = out + "/checkpoints/step-000002"
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
      XCTAssertTrue(FileManager.default.fileExists(atPath: ckpt + "/" + f), f)
    }
    // write → read → identical bits, and identical tokenization
    let (store, _) = try Checkpoint.load(directory: ckpt)
    XCTAssertEqual(store.layout.config.vocabSize, 64)
    let again = TestSupport.tempDir("keel-hfsave")
    try Checkpoint.save(directory: again, store: store)
    let (reread, _) = try Checkpoint.load(directory: again)
    XCTAssertTrue(zip(UnsafeBufferPointer(start: store.values.p, count: store.layout.count),
                      UnsafeBufferPointer(start: reread.values.p, count: reread.layout.count)).allSatisfy { $0.bitPattern == $1.bitPattern })
    let original = try HFTokenizer(directory: dir), written = try HFTokenizer(directory: ckpt)
    for text in ["7+8=", "15", "0+0=0</s>"] { XCTAssertEqual(try original.encode(text), try written.encode(text)) }
    XCTAssertEqual(try original.encode("7+8="), [46, 31, 47, 34], "the tokenizer's own ids, not Keel's character table")
    // keel eval scores the checkpoint with its own tokenizer and the run's settings: the run's own last evaluation
    let last = try JSONSerialization.jsonObject(with: Data(rows.last!.utf8)) as! [String: Any]
    let e = try TestSupport.run(TestSupport.keel, ["eval", "--checkpoint", out], environment: env)
    XCTAssertEqual(e.status, 0, e.stdout)
    XCTAssertTrue(e.stdout.contains(String(format: "eval_accuracy_greedy %.4f", last["eval_accuracy_greedy"] as! Double)), e.stdout)
  }

  func testAVocabularySmallerThanTheTokenizersIdsIsAClearError() throws {
    let data = try additions()
    // Keel's character table on a model with a 15-token vocabulary: the acceptance case
    var c = ModelConfig()
    c.vocabSize = 15; c.hiddenSize = 32; c.numHiddenLayers = 1; c.numAttentionHeads = 2; c.numKeyValueHeads = 1; c.headDim = 16
    c.modelType = "qwen3"; c.intermediateSize = 64; c.numExperts = 0; c.maxPositionEmbeddings = 64
    try c.validate()
    let small = TestSupport.tempDir("keel-vocab15")
    try Checkpoint.save(directory: small, store: ParameterStore(config: c, seed: 1))
    let a = try TestSupport.run(TestSupport.keel, ["train", "--out", TestSupport.tempDir("keel-vocab") + "/r", "--quiet", "--preset", "test",
                                                   "--steps", "1", "--set", "coldstart.checkpoint=\(small)", "--set", "task.name=\(data)"], environment: env)
    XCTAssertNotEqual(a.status, 0)
    XCTAssertFalse(a.signaled, a.stdout)
    XCTAssertTrue(a.stdout.contains("has 15 tokens") && a.stdout.contains("go up to \(CharTokenizer().vocabSize - 1)"), a.stdout)
    // a tokenizer.json with 606 ids on the same model
    let big = try modelDir(tokenizer: "qwen2-bpe")
    let b = try TestSupport.run(TestSupport.keel, ["train", "--out", TestSupport.tempDir("keel-vocab") + "/r", "--quiet", "--preset", "test",
                                                   "--steps", "1", "--set", "model.checkpoint=\(big)", "--set", "task.name=\(data)"], environment: env)
    XCTAssertNotEqual(b.status, 0)
    XCTAssertTrue(b.stdout.contains("has 64 tokens") && b.stdout.contains("go up to 605") && b.stdout.contains("tokenizer.json"), b.stdout)
  }

  func testSFTFromAHuggingFaceDirectoryOnAJSONLFileWithItsTokenizer() throws {
    let dir = try modelDir(tokenizer: "wordlevel")
    // 2-digit additions: enough rows on every side of the split
    let data = TestSupport.tempDir("keel-hfsft") + "/add.jsonl"
    var rows: [String] = []
    for a in 10...59 { for b in 10...49 { rows.append("{\"prompt\": \"\(a)+\(b)=\", \"answer\": \"\(a + b)\"}") } }
    try rows.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let out = TestSupport.tempDir("keel-hfsft") + "/sft"
    let r = try TestSupport.run(TestSupport.keel, ["sft", "--checkpoint", dir, "--task", data, "--max-steps", "40", "--check-every", "20",
                                                   "--batch", "32", "--lr", "3e-3", "--out", out], environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    // supervised learning on the tokenizer's own ids: the loss falls
    let losses = r.stdout.split(separator: "\n").filter { $0.hasPrefix("sft step") }.compactMap { line -> Double? in
      guard let range = line.range(of: "loss ") else { return nil }
      return Double(line[range.upperBound...].prefix(while: { $0 != "," }))
    }
    XCTAssertEqual(losses.count, 2, r.stdout)
    XCTAssertLessThan(losses[1], losses[0] - 0.1, r.stdout)
    // a Hugging Face directory again, with the tokenizer files, the same shapes, other weights
    for f in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
      XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f)
    }
    let (before, _) = try Checkpoint.load(directory: dir), (after, _) = try Checkpoint.load(directory: out)
    XCTAssertEqual(before.layout.config, after.layout.config)
    XCTAssertFalse(zip(UnsafeBufferPointer(start: before.values.p, count: before.layout.count),
                       UnsafeBufferPointer(start: after.values.p, count: after.layout.count)).allSatisfy { $0.bitPattern == $1.bitPattern })
    // RL starts from it with its tokenizer
    let run = TestSupport.tempDir("keel-hfsft") + "/run"
    let t = try TestSupport.run(TestSupport.keel, ["train", "--out", run, "--quiet", "--preset", "test", "--steps", "1",
                                                   "--set", "model.checkpoint=\(out)", "--set", "task.name=\(data)",
                                                   "--set", "sampler.max_tokens=4"], environment: env)
    XCTAssertEqual(t.status, 0, t.stdout)
    // a teacher does not apply to a JSONL file: a clear error
    let bad = try TestSupport.run(TestSupport.keel, ["sft", "--checkpoint", dir, "--task", data, "--teacher", "sloppy", "--out", out + "-x"], environment: env)
    XCTAssertNotEqual(bad.status, 0)
    XCTAssertTrue(bad.stdout.contains("--teacher applies to built-in tasks"), bad.stdout)
  }

  func testScoreTextWithTheDirectorysTokenizerEqualsScoringItsIds() throws {
    let dir = try modelDir(tokenizer: "wordlevel")
    let tmp = TestSupport.tempDir("keel-hfscore")
    let texts = ["7+8=15</s>", "12+30=42", "0+0=0"]
    try JSONEncoder().encode(texts).write(to: URL(fileURLWithPath: tmp + "/texts.json"))
    let ids = try texts.map { try HFTokenizer(directory: dir).encode($0, addSpecialTokens: true).map(Int.init) }
    try JSONEncoder().encode(ids).write(to: URL(fileURLWithPath: tmp + "/ids.json"))
    let a = try TestSupport.run(TestSupport.keel, ["score", "--checkpoint", dir, "--text", tmp + "/texts.json", "--out", tmp + "/a.json"], environment: env)
    let b = try TestSupport.run(TestSupport.keel, ["score", "--checkpoint", dir, "--tokens", tmp + "/ids.json", "--out", tmp + "/b.json"], environment: env)
    XCTAssertEqual(a.status, 0, a.stdout)
    XCTAssertEqual(b.status, 0, b.stdout)
    func results(_ f: String) throws -> [[String: Any]] {
      (try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: f))) as! [String: Any])["results"] as! [[String: Any]]
    }
    let ra = try results(tmp + "/a.json"), rb = try results(tmp + "/b.json")
    XCTAssertEqual(ra.map { $0["tokens"] as! [Int] }, ids)
    XCTAssertEqual(ra.map { $0["text"] as! String }, texts)
    XCTAssertEqual(ra.map { ($0["train"] as! [String: Any])["logp"] as! [Double] }, rb.map { ($0["train"] as! [String: Any])["logp"] as! [Double] })
    XCTAssertEqual(ids[0].suffix(1), [2], "\"</s>\" inside the text is the special token")
    // --text needs a tokenizer.json
    let bare = try modelDir(tokenizer: nil)
    let c = try TestSupport.run(TestSupport.keel, ["score", "--checkpoint", bare, "--text", tmp + "/texts.json"], environment: env)
    XCTAssertNotEqual(c.status, 0)
    XCTAssertTrue(c.stdout.contains("--text needs the checkpoint's tokenizer.json"), c.stdout)
  }
}
