// Checkpoint.swift — a Keel checkpoint directory is also a Hugging Face model directory:
//   config.json             every key written explicitly (ModelConfig's Codable)
//   model.safetensors       the model's tensors only, HF names, per-expert (no lm_head when tied)
//   optimizer.safetensors   AdamW moments m and v (flat, Keel's layout) + step in metadata
// Every file is written atomically (temp file + rename). Loading refuses a missing,
// unexpected or mis-shaped tensor by name, reads F32/BF16/F16 tensors, and follows a sharded
// checkpoint's model.safetensors.index.json.
import Foundation

public enum CheckpointError: Error, CustomStringConvertible, Equatable {
  case missing(path: String)
  case tensor(path: String, name: String, reason: String)
  case config(path: String, reason: String)
  public var description: String {
    switch self {
    case .missing(let path): return "checkpoint: \(path) does not exist"
    case .tensor(let path, let name, let reason): return "checkpoint \(path): tensor '\(name)' \(reason)"
    case .config(let path, let reason): return "checkpoint \(path)/config.json: \(reason)"
    }
  }
}

public enum Checkpoint {
  public static func save(directory: String, store: ParameterStore, optimizer: AdamW? = nil) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys]
    try writeAtomically(try enc.encode(store.layout.config), to: directory + "/config.json")
    let base = UnsafeBufferPointer(start: store.values.p, count: store.layout.count)
    let tensors = store.layout.tensors.map { t in
      (name: t.name, shape: t.shape, values: UnsafeBufferPointer(rebasing: base[t.range]))
    }
    try SafeTensorsFile.write(path: directory + "/model.safetensors", tensors: tensors, metadata: ["format": "pt"])
    if let optimizer {
      let n = store.layout.count
      try SafeTensorsFile.write(path: directory + "/optimizer.safetensors",
                                tensors: [("adam.m", [n], UnsafeBufferPointer(start: optimizer.m.p, count: n)),
                                          ("adam.v", [n], UnsafeBufferPointer(start: optimizer.v.p, count: n))],
                                metadata: ["step": String(optimizer.step), "format": "keel-adamw-1"])
    }
  }

  public static func loadConfig(directory: String) throws -> ModelConfig {
    let path = directory + "/config.json"
    guard let data = FileManager.default.contents(atPath: path) else { throw CheckpointError.missing(path: path) }
    do {
      return try JSONDecoder().decode(ModelConfig.self, from: data)
    } catch let e as ModelConfigError {
      throw CheckpointError.config(path: directory, reason: e.description)
    } catch DecodingError.keyNotFound(let key, _) {
      throw CheckpointError.config(path: directory, reason: "required key '\(key.stringValue)' is missing")
    } catch {
      throw CheckpointError.config(path: directory, reason: "\(error)")
    }
  }

  /// Load the model (and the optimizer state if present and `optimizer` is true).
  public static func load(directory: String, optimizer wantOptimizer: Bool = false) throws -> (ParameterStore, AdamW?) {
    let config = try loadConfig(directory: directory)
    let layout = Layout(config)
    // Which file holds which tensor (sharded or single).
    var files: [String: SafeTensorsFile] = [:]
    var owner: [String: String] = [:]
    let index = directory + "/model.safetensors.index.json"
    if let data = FileManager.default.contents(atPath: index) {
      struct Index: Decodable { var weight_map: [String: String] }
      guard let map = try? JSONDecoder().decode(Index.self, from: data).weight_map else {
        throw CheckpointError.tensor(path: index, name: "weight_map", reason: "is missing or malformed")
      }
      owner = map
    } else {
      let single = directory + "/model.safetensors"
      guard FileManager.default.fileExists(atPath: single) else { throw CheckpointError.missing(path: single) }
      let f = try SafeTensorsFile(path: single)
      files["model.safetensors"] = f
      for name in f.entries.keys { owner[name] = "model.safetensors" }
    }
    for file in Set(owner.values) where files[file] == nil {
      files[file] = try SafeTensorsFile(path: directory + "/" + file)
    }
    let expected = Set(layout.tensors.map(\.name))
    if let extra = owner.keys.sorted().first(where: { !expected.contains($0) }) {
      throw CheckpointError.tensor(path: directory, name: extra, reason: "is not part of a \(config.modelType) model with this config (unexpected tensor)")
    }
    // every tensor present with its shape before anything model-sized is allocated (the shapes'
    // byte sizes were checked against the files' own sizes when they were opened)
    for t in layout.tensors {
      guard let file = owner[t.name], let f = files[file], let entry = f.entries[t.name] else {
        throw CheckpointError.tensor(path: directory, name: t.name, reason: "is missing")
      }
      guard entry.shape == t.shape else {
        throw CheckpointError.tensor(path: directory, name: t.name, reason: "has shape \(entry.shape), expected \(t.shape)")
      }
    }
    var values = [Float](repeating: 0, count: layout.count)
    for t in layout.tensors {
      let v = files[owner[t.name]!]!.floats(t.name)!
      // a non-finite weight would poison every forward pass (and MoE routing): refuse it by name
      if let i = v.firstIndex(where: { !$0.isFinite }) {
        throw CheckpointError.tensor(path: directory, name: t.name, reason: "holds a non-finite value (\(v[i])) at flat index \(i)")
      }
      values.replaceSubrange(t.range, with: v)
    }
    let store = ParameterStore(layout: layout, values: values)
    guard wantOptimizer else { return (store, nil) }
    let optPath = directory + "/optimizer.safetensors"
    guard FileManager.default.fileExists(atPath: optPath) else { return (store, nil) }
    let f = try SafeTensorsFile(path: optPath)
    let opt = AdamW(count: layout.count)
    for (name, buf) in [("adam.m", opt.m), ("adam.v", opt.v)] {
      guard let v = f.floats(name), v.count == layout.count else {
        throw CheckpointError.tensor(path: optPath, name: name, reason: "is missing or has the wrong size")
      }
      if let i = v.firstIndex(where: { !$0.isFinite || (name == "adam.v" && $0 < 0) }) {
        throw CheckpointError.tensor(path: optPath, name: name, reason: "holds an invalid value (\(v[i])) at index \(i): moments are finite and adam.v ≥ 0")
      }
      v.withUnsafeBufferPointer { buf.p.update(from: $0.baseAddress!, count: v.count) }
    }
    guard let step = Int(f.metadata["step"] ?? "0"), step >= 0 else {
      throw CheckpointError.tensor(path: optPath, name: "__metadata__.step", reason: "is '\(f.metadata["step"] ?? "")', not a step count ≥ 0")
    }
    opt.step = step
    return (store, opt)
  }
}
