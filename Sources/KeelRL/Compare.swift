// Compare.swift — `keel compare`: several arms (config overrides: an objective by name or
// .so path, its parameters, N, routing replay, sampler precision…) over several seeds. Each
// run is its own `keel train` process in OUT/runs/<arm>/seed-<s>, so a plugin that crashes
// takes down only its arm. On a re-run a finished run is reused only when it is still the run
// this comparison would make: complete (summary.json, not stopped by a signal), made with the
// arm's full resolved config, and with every plugin file it loaded unchanged (the SHA-256 in
// its provenance.json); anything else is run again, saying why. With the same seed every arm sees the same data order, the same initial weights
// (the same cached cold start) and the same sampler randomness (keyed by seed, step, prompt,
// sample), so differences between arms are the arms'.
import Foundation
import KeelTasks

public struct Arm: Sendable, Equatable {
  public var name: String
  public var overrides: [String: String]
  public init(name: String, overrides: [String: String]) {
    self.name = name
    self.overrides = overrides
  }

  /// "name=mine,objective=./libmine.so,objective.params.eps_high=0.3,train.minibatches=2"
  /// (`objective`, `reward`, `baseline` are shorthands for `<kind>.name`).
  public init(parsing text: String) throws {
    var name: String? = nil
    var o: [String: String] = [:]
    for part in text.split(separator: ",") {
      guard let eq = part.firstIndex(of: "=") else { throw ConfigError.syntax("--arm: '\(part)' is not key=value (in '\(text)')") }
      let k = String(part[..<eq]), v = String(part[part.index(after: eq)...])
      switch k {
      case "name": name = v
      case "objective", "reward", "baseline": o[k + ".name"] = v
      default: o[k] = v
      }
    }
    guard let name, !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.+".contains($0) }) else {
      throw ConfigError.syntax("--arm '\(text)' needs name=NAME (letters, digits, - _ . +)")
    }
    self.init(name: name, overrides: o)
  }

  /// Arms from YAML: `arms: [{name: minirl, set: {objective.name: minirl, train.minibatches: 2}}]`
  /// (or the overrides directly as keys besides `name`).
  public static func parse(yaml text: String, source: String) throws -> (arms: [Arm], base: [String: String]) {
    let flat = try ConfigSchema.flattenArms(yaml: text, source: source)
    return flat
  }
}

public enum RunStatus: Sendable, Equatable {
  case completed
  case failed(String)
  case crashed(signal: Int32, line: String?)
  public var label: String {
    switch self {
    case .completed: return "completed"
    case .failed(let why): return "failed: " + why
    case .crashed(let s, let line): return "crashed (signal \(s))" + (line.map { ": " + $0.dropFirst(6) } ?? "")
    }
  }
}

public struct CompareRun: Sendable {
  public var arm: Arm
  public var seed: Int
  public var directory: String
  public var status: RunStatus
  public init(arm: Arm, seed: Int, directory: String, status: RunStatus) {
    self.arm = arm
    self.seed = seed
    self.directory = directory
    self.status = status
  }
}

public struct Comparison {
  public var base: [String: String]
  public var arms: [Arm]
  public var seeds: [Int]
  public var output: String
  public var jobs: Int
  public var keel: String

  public init(base: [String: String], arms: [Arm], seeds: [Int], output: String, jobs: Int, keel: String) {
    self.base = base
    self.arms = arms
    self.seeds = seeds
    self.output = output
    self.jobs = max(1, jobs)
    self.keel = keel
  }

  public func runDirectory(_ arm: Arm, _ seed: Int) -> String { output + "/runs/\(arm.name)/seed-\(seed)" }

  /// Run every (arm, seed) that has no reusable finished run; returns each run's status. `log`
  /// gets a line as each run starts and ends.
  public func run(log: @escaping @Sendable (String) -> Void) throws -> [CompareRun] {
    guard Set(arms.map(\.name)).count == arms.count else { throw ConfigError.syntax("arm names must be unique") }
    try FileManager.default.createDirectory(atPath: output + "/runs", withIntermediateDirectories: true)
    var jobsToRun: [(Arm, Int)] = []
    for arm in arms { for s in seeds { jobsToRun.append((arm, s)) } }
    let results = Locked([String: RunStatus]())
    let queue = DispatchQueue(label: "keel.compare", attributes: .concurrent)
    let gate = DispatchSemaphore(value: jobs)
    let group = DispatchGroup()
    let total = jobsToRun.count
    let started = Locked(0)
    for (arm, seed) in jobsToRun {
      let dir = runDirectory(arm, seed)
      let stale = staleReason(arm, seed: seed, directory: dir)
      if stale == nil {
        log("\(arm.name) seed \(seed): already complete, skipped")
        results.mutate { $0[dir] = .completed }
        continue
      }
      if let stale, FileManager.default.fileExists(atPath: dir) { log("\(arm.name) seed \(seed): \(stale): running it again") }
      try? FileManager.default.removeItem(atPath: dir)  // a stale or incomplete run starts over
      try FileManager.default.createDirectory(atPath: output + "/runs/\(arm.name)", withIntermediateDirectories: true)
      var args = ["train", "--out", dir, "--quiet", "--seed", String(seed)]
      for (k, v) in base.sorted(by: { $0.key < $1.key }) { args += ["--set", "\(k)=\(v)"] }
      for (k, v) in arm.overrides.sorted(by: { $0.key < $1.key }) { args += ["--set", "\(k)=\(v)"] }
      let keel = self.keel, launchArgs = args
      gate.wait()
      group.enter()
      queue.async {
        defer { gate.signal(); group.leave() }
        var k = 0
        started.mutate { $0 += 1; k = $0 }
        log("[\(k)/\(total)] \(arm.name) seed \(seed): started")
        let t0 = Date()
        let status = Self.launch(keel, launchArgs, logPath: dir + ".log")
        log("\(arm.name) seed \(seed): \(status.label)" + String(format: " (%.0f s)", Date().timeIntervalSince(t0)))
        results.mutate { $0[dir] = status }
      }
    }
    group.wait()
    let r = results.value
    return jobsToRun.map { CompareRun(arm: $0.0, seed: $0.1, directory: runDirectory($0.0, $0.1), status: r[runDirectory($0.0, $0.1)]!) }
  }

  /// The config `keel train` resolves for (arm, seed) in this comparison.
  public func resolvedConfig(_ arm: Arm, seed: Int) throws -> ResolvedConfig {
    try ConfigSchema.resolve(file: base, overrides: arm.overrides.merging(["seed": String(seed)]) { $1 })
  }

  /// Keys that change how a run is executed or logged, never its metrics: a run made with
  /// other values still stands for the arm (`--jobs` changes train.threads).
  public static let executionKeys: Set<String> = ["train.threads", "log.tensorboard", "log.rollouts", "distributed.timeout", "distributed.check_every"]

  /// Why the run in `directory` cannot stand for (arm, seed) — nil when it can be reused.
  public func staleReason(_ arm: Arm, seed: Int, directory dir: String) -> String? {
    guard Self.isComplete(dir) else { return "not complete" }
    guard let text = try? String(contentsOfFile: dir + "/config.yaml", encoding: .utf8),
          let flat = try? ConfigSchema.flatten(yaml: text, source: dir + "/config.yaml"),
          let had = try? ConfigSchema.resolve(file: flat, overrides: [:]) else {
      return "its config.yaml is missing or unreadable"
    }
    guard let want = try? resolvedConfig(arm, seed: seed) else { return "the arm's config does not resolve" }
    if had.values.filter({ !Self.executionKeys.contains($0.key) }) != want.values.filter({ !Self.executionKeys.contains($0.key) })
        || had.pluginParams != want.pluginParams {
      let keys = Set(had.values.keys).union(want.values.keys).filter { !Self.executionKeys.contains($0) && had.values[$0] != want.values[$0] }.sorted()
      let params = Set(had.pluginParams.keys).union(want.pluginParams.keys).filter { had.pluginParams[$0] != want.pluginParams[$0] }.sorted().map { "\($0).params" }
      return "its config differs (\((keys + params).joined(separator: ", ")))"
    }
    guard let prov = Provenance.read(run: dir) else { return "its provenance.json is missing or unreadable" }
    // runs from before the data version was recorded: split-v2 came with the eval.reward key
    let version = prov.dataVersion ?? (flat["eval.reward"] != nil ? "split-v2" : "split-v1")
    let current = TaskSplit.dataVersion(task: RunConfig(want).task.name)
    if version != current {
      return "its problems come from data version \(version) (made by an older Keel), not \(current)"
    }
    // every recorded file (input data, then plugin libraries) must still have its SHA-256
    let files = prov.files.map { ($0.path, $0.sha256, "its input \($0.path) (\($0.role))") }
      + prov.plugins.map { ($0.path, $0.sha256, "plugin '\($0.name)' (\($0.path))") }
    for (path, recorded, what) in files {
      let now = FileManager.default.fileExists(atPath: path) ? FileDigest.sha256(path) : "missing"
      if now != recorded { return "\(what) changed since the run (sha256 \(recorded.prefix(12))… → \(now.prefix(12))…)" }
    }
    return nil
  }

  /// A run is complete when it wrote its summary and was not stopped early by a signal.
  public static func isComplete(_ dir: String) -> Bool {
    struct Stopped: Decodable { var stoppedBySignal: Bool }  // summary.json's field (Summary)
    guard let data = FileManager.default.contents(atPath: dir + "/summary.json"),
          let s = try? JSONDecoder().decode(Stopped.self, from: data) else { return false }
    return !s.stoppedBySignal
  }

  static func launch(_ keel: String, _ args: [String], logPath: String) -> RunStatus {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: keel)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(["SWIFT_BACKTRACE": "enable=no"]) { $1 }
    _ = FileManager.default.createFile(atPath: logPath, contents: nil)  // (if it fails, the log handle is nil: output inherited)
    let log = FileHandle(forWritingAtPath: logPath)
    p.standardOutput = log
    p.standardError = log
    do { try p.run() } catch { return .failed("cannot start keel: \(error)") }
    p.waitUntilExit()
    try? log?.close()
    if p.terminationReason == .uncaughtSignal { return .crashed(signal: p.terminationStatus, line: nil) }
    if p.terminationStatus != 0 {
      let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
      // KeelGuard's one line for a plugin that crashed (exit 128 + signal)
      if p.terminationStatus > 128, p.terminationStatus < 160,
         let line = text.split(separator: "\n").last(where: { $0.hasPrefix("keel: ") && $0.contains(" crashed with ") }) {
        return .crashed(signal: p.terminationStatus - 128, line: String(line))
      }
      let line = text.split(separator: "\n").last { $0.contains("error") } ?? text.split(separator: "\n").last ?? "exit \(p.terminationStatus)"
      return .failed(String(line).trimmingCharacters(in: .whitespaces))
    }
    return .completed
  }
}

/// A value shared between threads behind a lock.
final class Locked<T>: @unchecked Sendable {
  private var v: T
  private let lock = NSLock()
  init(_ v: T) { self.v = v }
  func mutate(_ body: (inout T) -> Void) { lock.lock(); body(&v); lock.unlock() }
  var value: T { lock.lock(); defer { lock.unlock() }; return v }
}

extension ConfigSchema {
  /// `base: {…config…}` and `arms: [{name: X, <key>: <value>…}]` from a YAML file.
  static func flattenArms(yaml text: String, source: String) throws -> (arms: [Arm], base: [String: String]) {
    let node: Any?
    do { node = try Yams.load(yaml: text) } catch { throw ConfigError.syntax("\(source): not valid YAML: \(error)") }
    guard let root = node as? [String: Any] else { throw ConfigError.syntax("\(source): expected a mapping with `arms:` (and optional `base:`)") }
    for key in root.keys where !["arms", "base", "seeds"].contains(key) {
      throw ConfigError.syntax("\(source): unknown top-level key '\(key)' (valid: arms, base, seeds)")
    }
    var base: [String: String] = [:]
    if let b = root["base"] {
      let text = try Yams.dump(object: b)
      base = try flatten(yaml: text, source: source + " base")
    }
    guard let list = root["arms"] as? [Any] else { throw ConfigError.syntax("\(source): `arms:` must be a list") }
    var arms: [Arm] = []
    for (i, item) in list.enumerated() {
      guard let d = item as? [String: Any], let name = d["name"] as? String else {
        throw ConfigError.syntax("\(source): arm #\(i + 1) needs a `name`")
      }
      var rest = d
      rest.removeValue(forKey: "name")
      var o = try flatten(yaml: try Yams.dump(object: rest), source: source + " arm \(name)")
      for k in ["objective", "reward", "baseline"] where o[k] != nil { o[k + ".name"] = o.removeValue(forKey: k) }
      arms.append(Arm(name: name, overrides: o))
    }
    return (arms, base)
  }
}

import Yams
