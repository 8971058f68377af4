// CheckpointTests.swift — save → load gives bit-identical log-probs and optimizer state; a
// corrupted or mismatched checkpoint gives a clear error naming what is wrong.
import Foundation
import KeelModel
import XCTest

final class CheckpointTests: XCTestCase {
  func tempDir() -> String {
    let d = NSTemporaryDirectory() + "keel-ckpt-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
    return d
  }

  func testSaveLoadIsBitIdentical() throws {
    for (name, c) in Tiny.configs {
      let store = Tiny.store(c)
      let opt = AdamW(count: store.layout.count)
      let engine = TrainingEngine(store: store)
      let b = SequenceBatch(sequences: Tiny.sequences(vocab: c.vocabSize, seed: 1), scoreFrom: [1, 1, 1, 1])
      let out = engine.forward(b, save: true)
      engine.backward(out.saved!, dlogp: out.logp.map { _ in -0.1 })
      opt.update(params: store, grads: engine.grads, lr: 1e-3, maxNorm: 1, compute: engine.compute)
      let dir = tempDir()
      try Checkpoint.save(directory: dir, store: store, optimizer: opt)
      let (loaded, lopt) = try Checkpoint.load(directory: dir, optimizer: true)
      XCTAssertEqual(loaded.layout.config, c, name)
      XCTAssertEqual(loaded.values.array, store.values.array, name)
      XCTAssertEqual(lopt!.m.array, opt.m.array)
      XCTAssertEqual(lopt!.v.array, opt.v.array)
      XCTAssertEqual(lopt!.step, 1)
      XCTAssertEqual(TrainingEngine(store: loaded).forward(b).logp, engine.forward(b).logp, name)
      // a Hugging Face directory: tied embeddings write no lm_head
      let f = try SafeTensorsFile(path: dir + "/model.safetensors")
      XCTAssertEqual(f.entries["lm_head.weight"] == nil, c.tieWordEmbeddings)
      XCTAssertNotNil(f.entries["model.layers.0.self_attn.q_norm.weight"])
      if c.isMoE { XCTAssertEqual(f.entries["model.layers.0.mlp.experts.3.up_proj.weight"]?.shape, [12, 16]) }
      let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as! [String: Any]
      XCTAssertEqual(json["model_type"] as? String, c.modelType)
      XCTAssertEqual(json["head_dim"] as? Int, 6)
    }
  }

  func saved() throws -> String {
    let dir = tempDir()
    try Checkpoint.save(directory: dir, store: Tiny.store(Tiny.config(moe: true)))
    return dir
  }

  func expectError(_ dir: String, _ needle: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertThrowsError(try Checkpoint.load(directory: dir), file: file, line: line) { e in
      XCTAssertTrue("\(e)".contains(needle), "'\(e)' lacks '\(needle)'", file: file, line: line)
    }
  }

  func rewrite(_ dir: String, drop: String? = nil, add: String? = nil, reshape: String? = nil) throws {
    let f = try SafeTensorsFile(path: dir + "/model.safetensors")
    var tensors: [(String, [Int], [Float])] = f.entries.keys.sorted().filter { $0 != drop }.map { ($0, f.entries[$0]!.shape, f.floats($0)!) }
    if let add { tensors.append((add, [2], [1, 2])) }
    if let reshape, let i = tensors.firstIndex(where: { $0.0 == reshape }) { tensors[i].1 = [tensors[i].2.count, 1] }
    let bufs = tensors.map { $0.2 }
    try bufs.withUnsafeBufferPointers { ptrs in
      try SafeTensorsFile.write(path: dir + "/model.safetensors", tensors: zip(tensors, ptrs).map { ($0.0.0, $0.0.1, $0.1) })
    }
  }

  func testMalformedCheckpointsAreClearErrors() throws {
    var d = try saved()
    try rewrite(d, drop: "model.layers.1.mlp.up_proj.weight")
    expectError(d, "tensor 'model.layers.1.mlp.up_proj.weight' is missing")
    d = try saved()
    try rewrite(d, add: "model.layers.0.self_attn.q_proj.bias")
    expectError(d, "'model.layers.0.self_attn.q_proj.bias' is not part of a qwen3_moe model")
    d = try saved()
    try rewrite(d, reshape: "model.norm.weight")
    expectError(d, "'model.norm.weight' has shape [16, 1], expected [16]")
    // truncated data
    d = try saved()
    let path = d + "/model.safetensors"
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    try data.prefix(data.count - 100).write(to: URL(fileURLWithPath: path))
    expectError(d, "lie outside")
    // header length beyond the file
    var bad = data
    bad.replaceSubrange(0..<8, with: withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) })
    try bad.write(to: URL(fileURLWithPath: path))
    expectError(d, "header length 1099511627776 runs past the end")
    try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
    expectError(d, "shorter than the 8-byte header length")
    // unsupported config keys
    for (key, value, needle) in [("rope_scaling", "{\"type\": \"yarn\"}", "'rope_scaling' is not supported"),
                                 ("model_type", "\"llama\"", "'model_type' is not supported"),
                                 ("attention_bias", "true", "'attention_bias' is not supported")] {
      d = try saved()
      var text = try String(contentsOfFile: d + "/config.json", encoding: .utf8)
      text = text.replacingOccurrences(of: "\"\(key)\" : ", with: "\"\(key)\" : \(value), \"_old_\(key)\" : ")
      try text.write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
      expectError(d, needle)
    }
  }

  /// A non-finite weight is refused by name and index (it used to crash MoE routing), and
  /// corrupt Adam moments or step on resume likewise.
  func testNonFiniteWeightsAndCorruptOptimizerStateAreRefusedByName() throws {
    let d = try saved()
    let f = try SafeTensorsFile(path: d + "/model.safetensors")
    var tensors: [(String, [Int], [Float])] = f.entries.keys.sorted().map { ($0, f.entries[$0]!.shape, f.floats($0)!) }
    let gate = tensors.firstIndex { $0.0 == "model.layers.0.mlp.gate.weight" }!
    tensors[gate].2[5] = .nan
    try tensors.map { $0.2 }.withUnsafeBufferPointers { ptrs in
      try SafeTensorsFile.write(path: d + "/model.safetensors", tensors: zip(tensors, ptrs).map { ($0.0.0, $0.0.1, $0.1) })
    }
    expectError(d, "tensor 'model.layers.0.mlp.gate.weight' holds a non-finite value (nan) at flat index 5")
    // optimizer: a negative second moment, a NaN first moment, a negative step
    let store = Tiny.store(Tiny.config(moe: true))
    for (what, needle) in [("v", "adam.v' holds an invalid value (-1.0)"), ("m", "adam.m' holds an invalid value (inf)"), ("step", "'__metadata__.step' is '-5'")] {
      let dir = tempDir()
      let opt = AdamW(count: store.layout.count)
      opt.step = what == "step" ? -5 : 3
      if what == "v" { opt.v.p[7] = -1 }
      if what == "m" { opt.m.p[2] = .infinity }
      try Checkpoint.save(directory: dir, store: store, optimizer: opt)
      XCTAssertThrowsError(try Checkpoint.load(directory: dir, optimizer: true)) { e in XCTAssertTrue("\(e)".contains(needle), "\(e)") }
    }
  }

  /// Sizes in a config.json are bounded before anything is allocated: each extreme value is a
  /// clear error naming the key (they used to grow memory without end, abort allocating
  /// terabytes, trap on overflow or divide by zero).
  func testExtremeConfigValuesAreClearErrors() throws {
    let cases: [(String, String, String)] = [
      ("num_experts", "99999999999", "'num_experts' is 99999999999, more than Keel's limit 1024"),
      ("num_hidden_layers", "99999999999", "'num_hidden_layers' is 99999999999, more than Keel's limit 1024"),
      ("hidden_size", "2147483648", "'hidden_size' is 2147483648, more than Keel's limit 65536"),
      ("hidden_size", "4611686018427387904", "'hidden_size' is 4611686018427387904"),
      ("vocab_size", "9223372036854775807", "'vocab_size' is 9223372036854775807"),
      ("rms_norm_eps", "-1", "'rms_norm_eps' must be a positive number"),
      ("rope_theta", "0", "'rope_theta' must be a number above 1"),
      ("intermediate_size", "-3", "'intermediate_size' must not be negative"),
      ("rope_parameters", "{\"rope_type\": \"yarn\", \"rope_theta\": 10000}", "'rope_parameters.rope_type' is not supported"),
    ]
    for (key, value, needle) in cases {
      let d = try saved()
      var text = try String(contentsOfFile: d + "/config.json", encoding: .utf8)
      text = text.replacingOccurrences(of: "\"\(key)\" : ", with: "\"\(key)\" : \(value), \"_old_\(key)\" : ")
      if !text.contains("\"\(key)\" : \(value)") { text = text.replacingOccurrences(of: "{", with: "{ \"\(key)\" : \(value),", options: [], range: text.range(of: "{")) }
      try text.write(toFile: d + "/config.json", atomically: true, encoding: .utf8)
      expectError(d, needle)
    }
    // heads 0 and no head_dim: no division by zero
    let d = try saved()
    var json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: d + "/config.json"))) as! [String: Any]
    json["num_attention_heads"] = 0
    json.removeValue(forKey: "head_dim")
    try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: d + "/config.json"))
    expectError(d, "'num_attention_heads' must be positive, got 0")
    // the sizes together: layers and width each within limits, the product not
    var big = ModelConfig()
    big.numHiddenLayers = 1000; big.hiddenSize = 8192; big.numAttentionHeads = 64; big.numKeyValueHeads = 64; big.headDim = 128
    big.numExperts = 64; big.moeIntermediateSize = 4096
    XCTAssertThrowsError(try big.validate()) { XCTAssertTrue("\($0)".contains("more than Keel's limit of 4294967296"), "\($0)") }
  }

  /// A safetensors header whose shape overflows or is negative is refused (it used to trap).
  func testSafetensorsShapesThatOverflowAreRefused() throws {
    for shape in ["[4611686018427387904, 4]", "[-1, -4]", "[9223372036854775807, 9223372036854775807]"] {
      let header = "{\"t\": {\"dtype\": \"F32\", \"shape\": \(shape), \"data_offsets\": [0, 16]}}"
      var data = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Data($0) }
      data.append(Data(header.utf8))
      data.append(Data(count: 16))
      let path = tempDir() + "/x.safetensors"
      try data.write(to: URL(fileURLWithPath: path))
      XCTAssertThrowsError(try SafeTensorsFile(path: path)) { e in
        XCTAssertTrue("\(e)".contains("negative dimension") || "\(e)".contains("more elements than the file has bytes"), "\(shape): \(e)")
      }
    }
  }
}

extension Array where Element == [Float] {
  func withUnsafeBufferPointers<R>(_ body: ([UnsafeBufferPointer<Float>]) throws -> R) rethrows -> R {
    var ptrs: [UnsafeBufferPointer<Float>] = []
    func go(_ i: Int) throws -> R {
      if i == count { return try body(ptrs) }
      return try self[i].withUnsafeBufferPointer { p in ptrs.append(p); return try go(i + 1) }
    }
    return try go(0)
  }
}
