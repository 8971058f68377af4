// ScoreTests.swift — `keel score` with the real binary on a real checkpoint: the training and
// the inference engine agree exactly in fp32 (Keel's engines share their fixed-order kernels)
// and disagree measurably in bf16; experts are reported per layer and position; bad token
// files are clear errors.
import Foundation
import KeelModel
import KeelTestSupport
import XCTest

final class ScoreTests: XCTestCase {
  func checkpoint() throws -> String {
    var c = ModelConfig()
    c.hiddenSize = 32; c.numHiddenLayers = 2; c.numAttentionHeads = 2; c.numKeyValueHeads = 1; c.headDim = 16
    c.numExperts = 4; c.numExpertsPerTok = 2; c.moeIntermediateSize = 24
    let dir = TestSupport.tempDir("keel-score-ckpt")
    try Checkpoint.save(directory: dir, store: ParameterStore(config: c, seed: 2, scale: 0.3))
    return dir
  }

  func score(_ args: [String]) throws -> (TestSupport.Output, [String: Any]?) {
    let out = TestSupport.tempDir("keel-score") + "/out.json"
    let r = try TestSupport.run(TestSupport.keel, ["score", "--out", out] + args)
    let doc = FileManager.default.contents(atPath: out).flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }
    return (r, doc)
  }

  func testBothEnginesByPrecision() throws {
    let ckpt = try checkpoint()
    let tokens = TestSupport.tempDir("keel-tokens") + "/t.jsonl"
    try "{\"tokens\": [1, 5, 9, 12, 30, 4]}\n{\"tokens\": [1, 7, 7]}\n".write(toFile: tokens, atomically: true, encoding: .utf8)
    let (fp32, d32) = try score(["--checkpoint", ckpt, "--tokens", tokens, "--engine", "both", "--precision", "fp32"])
    XCTAssertEqual(fp32.status, 0, fp32.stdout)
    let s32 = try XCTUnwrap(d32?["summary"] as? [String: Any])
    XCTAssertEqual(s32["mean_abs_delta_logp"] as? Double, 0)
    XCTAssertEqual(s32["mismatch_kl_k3"] as? Double, 0)
    let (bf16, d16) = try score(["--checkpoint", ckpt, "--tokens", tokens, "--engine", "both", "--precision", "bf16"])
    XCTAssertEqual(bf16.status, 0)
    let s16 = try XCTUnwrap(d16?["summary"] as? [String: Any])
    XCTAssertGreaterThan(s16["mean_abs_delta_logp"] as! Double, 1e-4)
    XCTAssertTrue(bf16.stdout.contains("sampler bf16 vs train over 7 tokens"), bf16.stdout)
    let first = try XCTUnwrap((d16?["results"] as? [[String: Any]])?.first)
    let train = first["train"] as! [String: Any], sampler = first["sampler"] as! [String: Any]
    XCTAssertEqual((train["logp"] as! [Double]).count, 5)
    XCTAssertEqual((sampler["logp"] as! [Double]).count, 5)
    XCTAssertEqual((train["entropy"] as! [Double]).count, 5)
    let experts = train["experts"] as! [[[Int]]]
    XCTAssertEqual(experts.count, 2, "two MoE layers")
    XCTAssertEqual(experts[0].count, 6, "every position")
    XCTAssertTrue(experts[0].allSatisfy { $0.count == 2 && Set($0).count == 2 })
  }

  func testBadTokenFilesAreClearErrors() throws {
    let ckpt = try checkpoint()
    let dir = TestSupport.tempDir("keel-tokens-bad")
    for (text, needle) in [("[[1, 2], [3, \"x\"]]", "sequence 1, entry 1 is not an integer token id"),
                           ("[[1, 99]]", "token id 99 outside the vocabulary (64)"),
                           ("[[1]]", "sequence 0 needs at least 2 tokens"),
                           ("{\"tok\": [1]}\n", ":1: expected {\"tokens\": [...]}")] {
      try text.write(toFile: dir + "/t.json", atomically: true, encoding: .utf8)
      let (r, _) = try score(["--checkpoint", ckpt, "--tokens", dir + "/t.json"])
      XCTAssertNotEqual(r.status, 0)
      XCTAssertTrue(r.stdout.contains(needle), "\(r.stdout) lacks \(needle)")
    }
  }
}
