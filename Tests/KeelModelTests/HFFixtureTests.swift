// HFFixtureTests.swift — Keel against Hugging Face transformers itself. Each directory under
// Tests/Fixtures/hf/ is a tiny random Qwen3 / Qwen3-MoE model written by transformers'
// `save_pretrained` (scripts/make_hf_fixtures.py; versions in that folder's README.md) with
// transformers' own float32 log-probs, entropies and MoE routing in expected.json. Keel must
// load each directory as it is (config.json as transformers spells it, sharded and bf16
// safetensors, tied embeddings) and reproduce log-probs and entropies within 1e-4 and the
// chosen experts exactly wherever the router's k-th vs (k+1)-th probability margin exceeds 1e-4.
import Foundation
import KeelModel
import XCTest

final class HFFixtureTests: XCTestCase {
  /// Tests/KeelModelTests/HFFixtureTests.swift → Tests/Fixtures/hf
  static let root: String = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures").appendingPathComponent("hf").path

  static let tolerance = 1e-4
  static let marginFloor = 1e-4

  struct Expected: Decodable {
    let sequences: [[Int32]]
    /// logp[s][t] = log p(sequences[s][t+1] | sequences[s][..t]), t = 0..T-2
    let logp: [[Double]]
    let entropy: [[Double]]
    /// experts["<layer>"][s][pos] = the k experts transformers chose (most probable first)
    let experts: [String: [[[Int32]]]]
    /// margins["<layer>"][s][pos] = p_(k) − p_(k+1) of the router softmax
    let margins: [String: [[Double]]]
    let versions: [String: String]
  }

  func expected(_ name: String) throws -> Expected {
    let path = Self.root + "/" + name + "/expected.json"
    guard let data = FileManager.default.contents(atPath: path) else {
      XCTFail("fixture \(path) is missing (make it with scripts/make_hf_fixtures.py)")
      throw CheckpointError.missing(path: path)
    }
    return try JSONDecoder().decode(Expected.self, from: data)
  }

  /// Load the fixture with Keel, run the engine's forward over all sequences in one batch
  /// (scoreFrom 1), and compare with what transformers recorded.
  @discardableResult
  func check(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> ModelConfig {
    let dir = Self.root + "/" + name
    let exp = try expected(name)
    let store: ParameterStore
    do {
      store = try Checkpoint.load(directory: dir).0
    } catch {
      XCTFail("\(name): Keel cannot load the transformers-written directory: \(error)", file: file, line: line)
      throw error
    }
    let c = store.layout.config
    let batch = SequenceBatch(sequences: exp.sequences, scoreFrom: exp.sequences.map { _ in 1 })
    let out = TrainingEngine(store: store).forward(batch, temperature: 1)

    // log-probs and entropies, position by position
    let n = exp.logp.reduce(0) { $0 + $1.count }
    XCTAssertEqual(out.logp.count, n, "\(name): scored positions", file: file, line: line)
    XCTAssertEqual(out.entropy.count, n, "\(name): entropy positions", file: file, line: line)
    guard out.logp.count == n, out.entropy.count == n else { return c }
    var worstLogp = (diff: 0.0, s: 0, t: 0), worstEntropy = (diff: 0.0, s: 0, t: 0)
    var i = 0
    for s in exp.logp.indices {
      XCTAssertEqual(exp.logp[s].count, exp.sequences[s].count - 1, "\(name): fixture shape", file: file, line: line)
      for t in exp.logp[s].indices {
        let dl = abs(Double(out.logp[i]) - exp.logp[s][t])
        let de = abs(Double(out.entropy[i]) - exp.entropy[s][t])
        if !(dl <= worstLogp.diff) { worstLogp = (dl, s, t) }     // NaN counts as worst
        if !(de <= worstEntropy.diff) { worstEntropy = (de, s, t) }
        i += 1
      }
    }
    func at(_ w: (diff: Double, s: Int, t: Int)) -> String { "sequence \(w.s) position \(w.t)" }
    XCTAssertLessThanOrEqual(worstLogp.diff, Self.tolerance,
                             "\(name): max |Δlogp| vs transformers at \(at(worstLogp))", file: file, line: line)
    XCTAssertLessThanOrEqual(worstEntropy.diff, Self.tolerance,
                             "\(name): max |Δentropy| vs transformers at \(at(worstEntropy))", file: file, line: line)

    // routing: one record per sparse layer, [token * k + slot] over the batch's tokens in order
    let sparseLayers = (0..<c.numHiddenLayers).filter { c.isSparse(layer: $0) }
    XCTAssertEqual(Set(exp.experts.keys), Set(sparseLayers.map(String.init)),
                   "\(name): sparse layers (Keel's config vs transformers' mlp.gate modules)", file: file, line: line)
    XCTAssertEqual(out.routing.experts.count, sparseLayers.count, "\(name): routing records", file: file, line: line)
    guard out.routing.experts.count == sparseLayers.count else { return c }
    let k = c.numExpertsPerTok
    var compared = 0, mismatches: [String] = []
    for (si, layer) in sparseLayers.enumerated() {
      guard let want = exp.experts[String(layer)], let margins = exp.margins[String(layer)] else { continue }
      let got = out.routing.experts[si]
      XCTAssertEqual(got.count, batch.tokens.count * k, "\(name): layer \(layer) routing size", file: file, line: line)
      guard got.count == batch.tokens.count * k else { continue }
      for s in exp.sequences.indices {
        for pos in exp.sequences[s].indices where margins[s][pos] > Self.marginFloor {
          let row = batch.offsets[s] + pos
          let keel = Set(got[(row * k)..<(row * k + k)])
          let hf = Set(want[s][pos])
          compared += 1
          if keel != hf {
            mismatches.append("layer \(layer) seq \(s) pos \(pos): keel \(keel.sorted()) hf \(hf.sorted()) (margin \(margins[s][pos]))")
          }
        }
      }
    }
    if c.isMoE { XCTAssertGreaterThan(compared, 0, "\(name): no routing compared", file: file, line: line) }
    XCTAssertTrue(mismatches.isEmpty, "\(name): \(mismatches.count) of \(compared) expert choices differ from transformers: "
                  + mismatches.prefix(5).joined(separator: "; "), file: file, line: line)
    return c
  }

  /// The same comparison for the float64 reference (ReferenceModel.swift): tells a spec error
  /// (both off) from an engine error (only the engine off).
  func checkReference(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
    let exp = try expected(name)
    let ref = ReferenceModel(try Checkpoint.load(directory: Self.root + "/" + name).0)
    var worst = 0.0
    for (s, seq) in exp.sequences.enumerated() {
      let r = ref.run(seq)
      XCTAssertEqual(r.logp.count, exp.logp[s].count, "\(name): reference positions", file: file, line: line)
      for (a, b) in zip(r.logp, exp.logp[s]) where !(abs(a - b) <= worst) { worst = abs(a - b) }
      for (a, b) in zip(r.entropy, exp.entropy[s]) where !(abs(a - b) <= worst) { worst = abs(a - b) }
    }
    XCTAssertLessThanOrEqual(worst, Self.tolerance, "\(name): float64 reference vs transformers, max |Δ|",
                             file: file, line: line)
  }

  func tensorNames(_ name: String) throws -> [String: SafeTensorsFile.Entry] {
    let dir = Self.root + "/" + name
    let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".safetensors") }
    var all: [String: SafeTensorsFile.Entry] = [:]
    for f in files { all.merge(try SafeTensorsFile(path: dir + "/" + f).entries) { a, _ in a } }
    return all
  }

  // MARK: the fixtures

  func testDenseGQAHeadDimUntied() throws {
    let c = try check("qwen3-gqa")
    XCTAssertEqual(c.modelType, "qwen3")
    XCTAssertEqual(c.numAttentionHeads, 4)
    XCTAssertEqual(c.numKeyValueHeads, 2)
    XCTAssertEqual(c.headDim, 16)
    XCTAssertNotEqual(c.headDim, c.hiddenSize / c.numAttentionHeads)
    XCTAssertFalse(c.tieWordEmbeddings)
    XCTAssertEqual(c.ropeTheta, 1_000_000)  // from rope_parameters.rope_theta
    XCTAssertNotNil(try tensorNames("qwen3-gqa")["lm_head.weight"])
    try checkReference("qwen3-gqa")
  }

  func testDenseTiedMHA() throws {
    let c = try check("qwen3-tied")
    XCTAssertTrue(c.tieWordEmbeddings)
    XCTAssertEqual(c.numKeyValueHeads, c.numAttentionHeads)
    XCTAssertEqual(c.ropeTheta, 10_000)
    XCTAssertNil(try tensorNames("qwen3-tied")["lm_head.weight"], "a tied transformers model writes no lm_head")
    try checkReference("qwen3-tied")
  }

  func testMoENormTopk() throws {
    let c = try check("qwen3moe-norm")
    XCTAssertEqual(c.modelType, "qwen3_moe")
    XCTAssertEqual(c.numExperts, 8)  // transformers ≥ 5 writes num_local_experts
    XCTAssertEqual(c.numExpertsPerTok, 2)
    XCTAssertTrue(c.normTopkProb)
    XCTAssertEqual((0..<c.numHiddenLayers).filter { c.isSparse(layer: $0) }, [0, 1])
    try checkReference("qwen3moe-norm")
  }

  func testMoENoNormWithDenseLayer() throws {
    let c = try check("qwen3moe-nonorm-mixed")
    XCTAssertFalse(c.normTopkProb)
    XCTAssertEqual(c.mlpOnlyLayers, [1])
    XCTAssertEqual((0..<c.numHiddenLayers).filter { c.isSparse(layer: $0) }, [0, 2])
    let names = try tensorNames("qwen3moe-nonorm-mixed")
    XCTAssertNotNil(names["model.layers.1.mlp.gate_proj.weight"])
    XCTAssertNil(names["model.layers.1.mlp.gate.weight"])
    try checkReference("qwen3moe-nonorm-mixed")
  }

  func testBF16Sharded() throws {
    let name = "qwen3-bf16-sharded"
    let dir = Self.root + "/" + name
    XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json"))
    XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/model.safetensors"))
    let shards = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".safetensors") }
    XCTAssertGreaterThanOrEqual(shards.count, 2)
    let names = try tensorNames(name)
    XCTAssertTrue(names.values.allSatisfy { $0.dtype == "BF16" }, "every tensor is stored in bfloat16")
    try check(name)
    try checkReference(name)
  }

  /// expected.json records who made it; a fixture without versions cannot be reproduced.
  func testFixturesRecordVersions() throws {
    for name in ["qwen3-gqa", "qwen3-tied", "qwen3moe-norm", "qwen3moe-nonorm-mixed", "qwen3-bf16-sharded"] {
      let v = try expected(name).versions
      XCTAssertNotNil(v["transformers"], name)
      XCTAssertNotNil(v["torch"], name)
      XCTAssertNotNil(v["safetensors"], name)
    }
  }
}
