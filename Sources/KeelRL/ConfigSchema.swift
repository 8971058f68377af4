// ConfigSchema.swift — every key `keel train` accepts, with its type, default and one-line
// doc (docs/config.md is generated from this table). A YAML file and `--set key.path=value`
// overrides are flattened to dotted keys and checked here: an unknown key is an error that
// names the nearest valid keys; a value of the wrong type names the key and the type.
// Plugin parameters live under objective.params / reward.params / baseline.params and are
// validated by the plugin's own declared schema when it loads.
import Foundation
import KeelPluginHost
import KeelTasks
import Yams

public enum ConfigValue: Equatable, Sendable, CustomStringConvertible {
  case int(Int), float(Double), bool(Bool), string(String), null
  public var description: String {
    switch self {
    case .int(let v): return "\(v)"
    case .float(let v): return "\(v)"
    case .bool(let v): return "\(v)"
    case .string(let v): return v
    case .null: return "null"
    }
  }
}

public struct ConfigKey: Sendable {
  public enum Kind: String, Sendable { case int, float, bool, string, optionalString = "string or null" }
  public let key: String
  public let kind: Kind
  public let defaultValue: ConfigValue
  public let doc: String
  public let choices: [String]?
}

public enum ConfigError: Error, CustomStringConvertible, Equatable {
  /// The key, the nearest known keys, and the valid keys of its section ("train." …; the
  /// section names when the section itself is unknown).
  case unknownKey(String, nearest: [String], valid: [String])
  case badValue(key: String, expected: String, got: String)
  case syntax(String)
  public var description: String {
    switch self {
    case .unknownKey(let k, let nearest, let valid):
      let section = k.lastIndex(of: ".").map { String(k[..<$0]) }
      let inSection = section.map { sec in !valid.isEmpty && valid.allSatisfy { $0.hasPrefix(sec + ".") } } ?? false
      let validText = valid.isEmpty ? "" : (inSection ? ". Valid keys in '\(section!)': " : ". Valid sections and keys: ") + valid.joined(separator: ", ")
      return "unknown config key '\(k)'" + (nearest.isEmpty ? "" : "; did you mean \(nearest.map { "'\($0)'" }.joined(separator: " or "))?")
        + validText + " (all keys with their meaning: `keel train --help-config`)"
    case .badValue(let k, let expected, let got): return "config key '\(k)' expects \(expected), got '\(got)'"
    case .syntax(let m): return m
    }
  }
}

public enum ConfigSchema {
  static func k(_ key: String, _ kind: ConfigKey.Kind, _ def: ConfigValue, _ doc: String, _ choices: [String]? = nil) -> ConfigKey {
    ConfigKey(key: key, kind: kind, defaultValue: def, doc: doc, choices: choices)
  }

  /// The whole table. Every choice the paper leaves open is a documented default here.
  public static let keys: [ConfigKey] = [
    k("seed", .int, .int(1), "seed of everything random: data order, initial weights, sampling"),
    k("steps", .int, .int(240), "RL steps (global batches) to run"),
    k("preset", .string, .string("default"), "starting values for the keys not set: default | test (tiny, seconds)", ["default", "test"]),
    k("task.name", .string, .string("addition"), "addition | arithmetic | sorting | countdown | scratchpad, or a .jsonl path"),
    k("task.digits", .int, .int(2), "digits per operand (addition, arithmetic, scratchpad)"),
    k("task.terms", .int, .int(0), "operands / list length (0 = the task's own default)"),
    k("task.eval_size", .int, .int(500), "held-out problems scored at each evaluation"),
    k("task.eval_path", .optionalString, .null, "JSONL tasks: a second file of held-out rows (then every row of task.name trains; a prompt in both is an error); null = hold out by the split hash"),
    k("task.prompt_field", .string, .string("prompt"), "JSONL tasks: the field holding the prompt (used verbatim)"),
    k("task.answer_field", .string, .string("answer"), "JSONL tasks: the field holding the reference answer"),
    k("task.marker", .optionalString, .null, "final-answer marker (the answer is the text after its last occurrence): null = the task's own ('#' for scratchpad, '' otherwise), or reward.params.marker when that is set"),
    k("model.preset", .string, .string("moe"), "moe (Qwen3-MoE: hidden 128, 4 layers, 8 experts × 256, top-2) | dense (FFN 512) | tiny", ["moe", "dense", "tiny"]),
    k("model.checkpoint", .optionalString, .null, "start RL from this checkpoint directory instead of model.preset and the cold start: Keel's or a Hugging Face one (config.json, *.safetensors; its tokenizer.json, when present, becomes the run's tokenizer)"),
    k("coldstart.checkpoint", .string, .string("auto"), "auto (made by `keel sft` on first use and cached) | a checkpoint directory | none (random init)"),
    k("coldstart.teacher", .string, .string("careful"), "teacher of the cold start demonstrations: careful | sloppy (30% random digit errors) | terse | forgetful (forgets carries 75% of the time)", ["careful", "sloppy", "terse", "forgetful"]),
    k("coldstart.target_accuracy", .float, .float(0.25), "stop the cold start once greedy accuracy on a train-split validation set reaches this"),
    k("coldstart.max_steps", .int, .int(900), "cold start step limit"),
    k("coldstart.lr", .float, .float(3e-3), "cold start AdamW learning rate"),
    k("coldstart.check_every", .int, .int(10), "cold start steps between validation checks (the target accuracy is tested there)"),
    k("coldstart.batch", .int, .int(64), "cold start demonstrations per step"),
    k("sampler.precision", .string, .string("bf16"), "inference-engine arithmetic: fp32 | bf16 | fp16 | fp8 | exact (bit-identical to the trainer)", ["fp32", "bf16", "fp16", "fp8", "exact"]),
    k("sampler.temperature", .float, .float(1.0), "sampling temperature (log-probs are those of softmax(logits / T) on both engines)"),
    k("sampler.top_p", .float, .float(1.0), "nucleus truncation (1 = none; <1 biases μ_old, see docs)"),
    k("sampler.top_k", .int, .int(0), "top-k truncation (0 = none)"),
    k("sampler.max_tokens", .int, .int(8), "longest response, in tokens (the stop token included)"),
    k("rollout.prompts", .int, .int(32), "B: prompts per global batch"),
    k("rollout.group_size", .int, .int(8), "G: responses per prompt"),
    k("train.minibatches", .int, .int(1), "N: sequential updates per global batch (1 = on-policy)"),
    k("train.lr", .float, .float(3e-4), "AdamW learning rate (β = 0.9, 0.999; ε = 1e-8)"),
    k("train.schedule", .string, .string("constant"), "learning-rate schedule: constant | cosine (to 10% over `steps`)", ["constant", "cosine"]),
    k("train.warmup_steps", .int, .int(0), "linear warm-up steps"),
    k("train.weight_decay", .float, .float(0.0), "AdamW decoupled weight decay"),
    k("train.grad_clip", .float, .float(1.0), "global gradient-norm clip (0 = off)"),
    k("train.routing_replay", .string, .string("none"), "MoE routing replay: none | R2 (training engine's π_old experts) | R3 (sampler's experts)", ["none", "R2", "R3"]),
    k("train.kl_ref", .bool, .bool(false), "a frozen reference policy (the cold start): its log-probs reach the objective as logp_ref, and its full distribution as kl_ref = KL(π_θ ‖ π_ref) for objectives that ask for it (ABI 1.1)"),
    k("train.teacher", .optionalString, .null, "a teacher checkpoint directory (Keel's or a Hugging Face one, read-only, same vocabulary as the policy) scored with the policy's micro-batches for objectives that ask for logp_teacher / kl_teacher (ABI 1.1; e.g. on-policy-distill); null = none"),
    k("train.micro_batch", .int, .int(128), "sequences per forward/backward pass (memory bound; does not change results' meaning, except for objectives that declare themselves per call — clip-cov, kl-cov, rejection with token-mean — for which the run warns)"),
    k("train.aux_loss_coef", .float, .float(0.0), "MoE load-balancing loss coefficient (0 = off); taken per micro-batch, weighted by its share of the mini-batch's tokens"),
    k("train.threads", .int, .int(2), "threads for kernels and BLAS (per rank under mpirun)"),
    k("plugins.timeout", .float, .float(600), "seconds one plugin call may run before the run is stopped with a message naming the plugin (0 = no limit); the last checkpoint stays intact"),
    k("distributed.timeout", .float, .float(300), "seconds a rank waits in an MPI collective before it gives up and exits non-zero (0: forever); see docs/scaling.md"),
    k("distributed.check_every", .int, .int(0), "under mpirun, compare a checksum of every rank's weights every this many steps and write them to weights.jsonl (0: only after loading)"),
    k("train.on_nan", .string, .string("stop"), "a NaN/Inf loss or gradient: stop (checkpoint kept, exit non-zero) | skip (drop the update)", ["stop", "skip"]),
    k("objective.name", .string, .string("minirl"), "objective plugin: a name or a path to a .so"),
    k("reward.name", .string, .string("exact-match"), "reward plugin: a name or a path to a .so"),
    k("reward.foreign.library", .optionalString, .null, "optional: a shared library whose exported C function is an extra reward (libffi)"),
    k("reward.foreign.symbol", .optionalString, .null, "the function's symbol"),
    k("reward.foreign.signature", .optionalString, .null, "its signature, e.g. \"(response: string, reference: string) -> double\""),
    k("reward.foreign.weight", .float, .float(1.0), "weight of the foreign reward in the total"),
    k("reward.weight", .float, .float(1.0), "weight of the reward plugin in the total"),
    k("baseline.name", .string, .string("group-mean"), "baseline plugin: a name or a path to a .so"),
    k("eval.every", .int, .int(10), "evaluate on the held-out set every this many steps (and at step 0)"),
    k("eval.samples", .int, .int(4), "K: samples per held-out problem at the sampling temperature (eval_accuracy = mean)"),
    k("eval.reward", .string, .string("exact-match"), "the reward plugin that defines a correct answer (held-out accuracy, training accuracy, cold-start validation): a name or a path; it gets the task's marker"),
    k("eval.threshold", .float, .float(1.0), "a response is correct when eval.reward gives it at least this"),
    k("checkpoint.every", .int, .int(50), "checkpoint every this many steps (and at the end and on Ctrl-C)"),
    k("log.rollouts", .bool, .bool(false), "also write every response (step, prompt, sample, tokens, text, log μ_old, reward, advantage) to <run>/rollouts.jsonl"),
    k("log.tensorboard", .bool, .bool(false), "also write TensorBoard event files to <run>/tensorboard"),
    k("diagnostics.enabled", .bool, .bool(true), "first-order validity monitor (docs/diagnostics.md)"),
    k("diagnostics.threshold", .float, .float(0.1), "a response is first-order valid if its residual is below this"),
  ]

  /// Bounds of every number key, enforced when a configuration resolves (before anything reads
  /// it): a config file comes from anyone, and these values size allocations, loops and kernels.
  public static let bounds: [String: ClosedRange<Double>] = [
    "seed": 0...1e15, "steps": 0...1e8,
    "task.digits": 1...9, "task.terms": 0...64, "task.eval_size": 1...1_000_000,
    "coldstart.target_accuracy": 0...1, "coldstart.max_steps": 1...1e7, "coldstart.lr": 1e-12...1, "coldstart.check_every": 1...1e7,
    "coldstart.batch": 1...65_536,
    "sampler.temperature": 1e-3...100, "sampler.top_p": 1e-6...1, "sampler.top_k": 0...2_097_152, "sampler.max_tokens": 1...1_048_576,
    "rollout.prompts": 1...65_536, "rollout.group_size": 1...4_096,
    "train.minibatches": 1...65_536, "train.lr": 0...1, "train.warmup_steps": 0...1e8, "train.weight_decay": 0...1,
    "train.grad_clip": 0...1e6, "train.micro_batch": 1...1_048_576, "train.aux_loss_coef": 0...100, "train.threads": 1...256,
    "distributed.timeout": 0...1e6, "plugins.timeout": 0...1e6, "distributed.check_every": 0...1e8,
    "reward.foreign.weight": -1e6...1e6, "reward.weight": -1e6...1e6,
    "eval.every": 1...1e8, "eval.samples": 1...1_024, "eval.threshold": -1e9...1e9,
    "checkpoint.every": 1...1e8, "diagnostics.threshold": 0...1e6,
  ]

  /// Limits on products of keys (memory per step).
  static func checkCrossKeys(_ v: [String: ConfigValue]) throws {
    func n(_ k: String) -> Int { if case .int(let x) = v[k] { return x }; return 0 }
    if n("rollout.prompts") * n("rollout.group_size") > 1 << 20 {
      throw ConfigError.badValue(key: "rollout.prompts", expected: "rollout.prompts × rollout.group_size ≤ 1048576 responses per step",
                                 got: "\(n("rollout.prompts")) × \(n("rollout.group_size"))")
    }
    if n("task.eval_size") * n("eval.samples") > 1 << 22 {
      throw ConfigError.badValue(key: "eval.samples", expected: "task.eval_size × eval.samples ≤ 4194304 responses per evaluation",
                                 got: "\(n("task.eval_size")) × \(n("eval.samples"))")
    }
  }

  /// "int in 1…65536": a key's type and, for numbers, its bounds.
  public static func typeDescription(_ k: ConfigKey) -> String {
    guard let b = bounds[k.key] else { return k.kind.rawValue }
    func f(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e16 ? String(Int(x)) : "\(x)" }
    return "\(k.kind.rawValue) in \(f(b.lowerBound))…\(f(b.upperBound))"
  }

  /// The `test` preset: tiny model and batches, so end-to-end tests take seconds.
  public static let testPreset: [String: ConfigValue] = [
    "model.preset": .string("tiny"), "rollout.prompts": .int(8), "rollout.group_size": .int(4),
    "task.eval_size": .int(64), "eval.samples": .int(2), "eval.every": .int(5), "steps": .int(10),
    "coldstart.max_steps": .int(120), "coldstart.batch": .int(32), "coldstart.target_accuracy": .float(0.2),
    "checkpoint.every": .int(5), "train.lr": .float(1e-3), "coldstart.lr": .float(1e-2), "coldstart.check_every": .int(20),
  ]

  public static let pluginParamPrefixes = ["objective.params.", "reward.params.", "baseline.params."]

  static var byKey: [String: ConfigKey] { Dictionary(uniqueKeysWithValues: keys.map { ($0.key, $0) }) }

  /// What a YAML config may be: a config file comes from anyone, and YAML can nest and alias
  /// without bound (a 10 KB file nested 5,000 deep overflowed the parser's stack; a 330-byte
  /// alias bomb expanded without end).
  public static let yamlLimits = (bytes: 1 << 20, depth: 64, nodes: 100_000)

  /// A YAML config file flattened: read as UTF-8 text, refused before reading beyond the size
  /// limit (`what` names its role in messages: "--config", "--resume"…).
  public static func flatten(file path: String, what: String) throws -> [String: String] {
    try flatten(yaml: try TextFile.read(path, what: what, limit: yamlLimits.bytes), source: path)
  }

  /// Flatten a YAML document to dotted keys. The text is checked first (size; nesting, from
  /// indentation, "- " indicators and brackets, so the recursive composer never sees a deep
  /// document), then composed (aliases stay shared, not expanded) and walked with a budget of
  /// nodes that counts every visit through an alias.
  public static func flatten(yaml text: String, source: String) throws -> [String: String] {
    let L = yamlLimits
    guard text.utf8.count <= L.bytes else {
      throw ConfigError.syntax("\(source): \(text.utf8.count) bytes; a config file may have at most \(L.bytes)")
    }
    var flow = 0
    for (n, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      var indent = 0, rest = Substring(line)
      while let c = rest.first, c == " " || c == "\t" || (c == "-" && (rest.dropFirst().first.map { $0 == " " || $0 == "\t" } ?? true)) {
        indent += 1
        rest = rest.dropFirst()
      }
      for c in rest.utf8 {
        if c == UInt8(ascii: "[") || c == UInt8(ascii: "{") { flow += 1 } else if c == UInt8(ascii: "]") || c == UInt8(ascii: "}") { flow = max(0, flow - 1) }
        if flow > L.depth { throw ConfigError.syntax("\(source):\(n + 1): brackets nested more than \(L.depth) deep") }
      }
      if indent > 8 * L.depth { throw ConfigError.syntax("\(source):\(n + 1): indented \(indent) deep; a config nests at most \(L.depth) levels") }
    }
    let node: Node?
    do { node = try Yams.compose(yaml: text) } catch { throw ConfigError.syntax("\(source): not valid YAML: \(error)") }
    guard let root = node else { return [:] }
    guard case .mapping(let top) = root else { throw ConfigError.syntax("\(source): the top level must be a mapping of keys") }
    var out: [String: String] = [:]
    var visited = 0
    func walk(_ prefix: String, _ mapping: Node.Mapping, depth: Int) throws {
      guard depth <= L.depth else { throw ConfigError.syntax("\(source): '\(prefix)' nests more than \(L.depth) levels") }
      for (k, v) in mapping {
        visited += 1
        guard visited <= L.nodes else { throw ConfigError.syntax("\(source): more than \(L.nodes) values (YAML aliases expanding?)") }
        guard let key = k.scalar?.string else { throw ConfigError.syntax("\(source): a key under '\(prefix)' is not a plain string") }
        let path = prefix.isEmpty ? key : prefix + "." + key
        switch v {
        case .mapping(let m): try walk(path, m, depth: depth + 1)
        case .sequence, .scalar: out[path] = try render(v, depth: depth + 1)
        }
      }
    }
    // a scalar as Yams.load gives it ("\(Any)"); a list as "[a, b]" (for plugin parameters), bounded
    func render(_ v: Node, depth: Int) throws -> String {
      visited += 1
      guard visited <= L.nodes, depth <= L.depth else { throw ConfigError.syntax("\(source): more than \(L.nodes) values or \(L.depth) levels (YAML aliases expanding?)") }
      switch v {
      case .scalar: return v.null != nil ? "null" : "\(v.any)"
      case .sequence(let items): return "[" + (try items.map { try render($0, depth: depth + 1) }).joined(separator: ", ") + "]"
      case .mapping: throw ConfigError.syntax("\(source): a mapping inside a list is not a config value")
      }
    }
    try walk("", top, depth: 1)
    return out
  }

  /// Parse `key=value` overrides.
  public static func parseOverrides(_ sets: [String]) throws -> [String: String] {
    var out: [String: String] = [:]
    for s in sets {
      guard let eq = s.firstIndex(of: "="), eq != s.startIndex else { throw ConfigError.syntax("--set expects key.path=value, got '\(s)'") }
      out[String(s[..<eq])] = String(s[s.index(after: eq)...])
    }
    return out
  }

  static func nearest(_ key: String) -> [String] {
    let all = keys.map(\.key)
    var found: [String] = []
    if let n = KeelPluginHost.nearest(key, in: all) { found.append(n) }
    let last = key.split(separator: ".").last.map(String.init) ?? key
    for k in all where (k == last || k.hasSuffix("." + last)) && !found.contains(k) { found.append(k) }
    return Array(found.prefix(3))
  }

  /// The keys of `key`'s section ("train.lrr" → every "train.…" key); if that section does not
  /// exist (or the key has none), the top-level keys and section names.
  static func validKeys(near key: String) -> [String] {
    let all = keys.map(\.key)
    if let dot = key.lastIndex(of: ".") {
      let prefix = String(key[...dot])
      let inSection = all.filter { $0.hasPrefix(prefix) }
      if !inSection.isEmpty { return inSection }
    }
    var top: [String] = []
    for k in all {
      let head = k.contains(".") ? String(k[..<k.firstIndex(of: ".")!]) + ".*" : k
      if !top.contains(head) { top.append(head) }
    }
    return top
  }

  static func convert(_ text: String, for key: ConfigKey) throws -> ConfigValue {
    let bad = ConfigError.badValue(key: key.key, expected: key.kind.rawValue + (key.choices.map { " (\($0.joined(separator: " | ")))" } ?? ""), got: text)
    switch key.kind {
    case .int: guard let v = Int(text) else { throw bad }; return .int(v)
    case .float: guard let v = Double(text), v.isFinite else { throw bad }; return .float(v)
    case .bool:
      switch text.lowercased() {
      case "true", "yes", "on", "1": return .bool(true)
      case "false", "no", "off", "0": return .bool(false)
      default: throw bad
      }
    case .string:
      if let choices = key.choices, !choices.contains(text) { throw bad }
      return .string(text)
    case .optionalString: return text == "null" || text.isEmpty ? .null : .string(text)
    }
  }

  /// Defaults ← preset ← file ← overrides, validated. Returns typed values and plugin params.
  public static func resolve(file: [String: String], overrides: [String: String]) throws -> ResolvedConfig {
    let table = byKey
    var raw = file.merging(overrides) { $1 }
    var values: [String: ConfigValue] = [:]
    var params: [String: [String: String]] = ["objective": [:], "reward": [:], "baseline": [:]]
    for (key, text) in raw {
      if let prefix = pluginParamPrefixes.first(where: { key.hasPrefix($0) }) {
        let kind = String(prefix.split(separator: ".")[0])
        params[kind]![String(key.dropFirst(prefix.count))] = text
        continue
      }
      guard let spec = table[key] else { throw ConfigError.unknownKey(key, nearest: nearest(key), valid: validKeys(near: key)) }
      values[key] = try convert(text, for: spec)
    }
    let preset = values["preset"].map { "\($0)" } ?? "default"
    if preset == "test" {
      for (k, v) in testPreset where values[k] == nil { values[k] = v }
    }
    for spec in keys where values[spec.key] == nil { values[spec.key] = spec.defaultValue }
    for (key, range) in bounds {
      let x: Double
      switch values[key] { case .int(let i)?: x = Double(i); case .float(let d)?: x = d; default: continue }
      guard range.contains(x) else {
        throw ConfigError.badValue(key: key, expected: typeDescription(table[key]!), got: "\(values[key]!)")
      }
    }
    try checkCrossKeys(values)
    raw.removeAll()
    return ResolvedConfig(values: values, pluginParams: params)
  }
}

/// A validated configuration: every schema key has a value.
public struct ResolvedConfig: Sendable, Equatable {
  public var values: [String: ConfigValue]
  public var pluginParams: [String: [String: String]]

  /// YAML of every key (nested), plugin params included: the run directory's config.yaml.
  public func yaml() -> String {
    var tree: [String: Any] = [:]
    func put(_ path: [String], _ v: Any) {
      func go(_ node: inout [String: Any], _ i: Int) {
        if i == path.count - 1 { node[path[i]] = v; return }
        var child = node[path[i]] as? [String: Any] ?? [:]
        go(&child, i + 1)
        node[path[i]] = child
      }
      go(&tree, 0)
    }
    for (k, v) in values {
      switch v {
      case .int(let x): put(k.split(separator: ".").map(String.init), x)
      case .float(let x): put(k.split(separator: ".").map(String.init), x)
      case .bool(let x): put(k.split(separator: ".").map(String.init), x)
      case .string(let x): put(k.split(separator: ".").map(String.init), x)
      case .null: put(k.split(separator: ".").map(String.init), NSNull())
      }
    }
    for (kind, ps) in pluginParams where !ps.isEmpty {
      for (p, v) in ps { put([kind, "params", p], v) }
    }
    return (try? Yams.dump(object: tree, sortKeys: true)) ?? ""
  }
}
