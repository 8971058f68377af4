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
