// RunDirectory.swift — a run's directory on disk:
//   config.yaml        the resolved configuration (every key)
//   metrics.jsonl      one JSON object per step (diagnostics.jsonl, rollouts.jsonl and
//                      weights.jsonl beside it when enabled; rank 0 writes all of them)
//   provenance.json    Keel version and commit, each plugin's path, SHA-256, ABI and version,
//                      parameters and declared metrics, the BLAS, CPU flags, threads
//   checkpoints/step-N/  model (HF directory), optimizer, run state, plugin states
//   checkpoints/latest   the name of the newest complete checkpoint
//   summary.json       the outcome (cold start vs final accuracy, time to target)
import Crypto
import Foundation
import KeelModel
import KeelPluginHost
import KeelTasks

public struct RunState: Codable, Sendable {
  public struct EvalPoint: Codable, Sendable { public var step: Int; public var greedy: Double; public var sampled: Double; public var trainSeconds: Double }
  public var step: Int
  public var trainSeconds: Double
  public var coldStartEval: EvalResult?
  public var evalHistory: [EvalPoint]

  public static func load(directory: String) throws -> RunState {
    guard let data = FileManager.default.contents(atPath: directory + "/run_state.json") else {
      throw TrainerError(message: "\(directory) has no run_state.json: not a checkpoint of a keel run")
    }
    let state: RunState
    do { state = try JSONDecoder().decode(RunState.self, from: data) } catch {
      throw TrainerError(message: "\(directory)/run_state.json is not a valid run state: \(error)")
    }
    guard state.step >= 0, state.trainSeconds.isFinite, state.trainSeconds >= 0 else {
      throw TrainerError(message: "\(directory)/run_state.json: step \(state.step) and train seconds \(state.trainSeconds) must be ≥ 0")
    }
    return state
  }
}

/// Temp files and directories a killed process left behind (NAME.tmp-PID with PID no longer
/// running, and checkpoints' step-N.tmp): removed when the next process starts there.
public enum StaleTemps {
  public static func isStale(_ name: String) -> Bool {
    guard let r = name.range(of: ".tmp", options: .backwards) else { return false }
    let rest = name[r.upperBound...]
    if rest.isEmpty { return true }
    guard rest.hasPrefix("-"), let pid = Int32(rest.dropFirst()), pid > 0 else { return false }
    return pid != getpid() && kill(pid, 0) != 0 && errno == ESRCH
  }

  /// Remove the stale temps directly inside `directory`; returns what was removed.
  @discardableResult
  public static func clean(_ directory: String) -> [String] {
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return [] }
    var removed: [String] = []
    for n in names.sorted() where isStale(n) {
      if (try? FileManager.default.removeItem(atPath: directory + "/" + n)) != nil { removed.append(n) }
    }
    return removed
  }
}


public struct Summary: Codable, Sendable {
  public var steps: Int
  public var coldStartGreedy: Double
  public var coldStartSampled: Double
  public var finalGreedy: Double
  public var finalSampled: Double
  public var bestGreedy: Double
  /// time_to_target: the first evaluation whose greedy accuracy is ≥ cold start + 25 points and
  /// stays so at the next evaluation (targetHeldTwice); with no such pair, the first evaluation
  /// at the target (targetHeldTwice false: the run crossed it but did not hold it).
  public var targetStep: Int?
  public var targetTrainSeconds: Double?
  public var targetHeldTwice: Bool
  public var trainSeconds: Double
  public var stoppedBySignal: Bool
  /// Means over the steps this session ran: the first-order diagnostics (docs/diagnostics.md).
  public var diagnostics: [String: Double] = [:]
}

extension Summary {
  /// The time_to_target rule over a run's evaluations (step 0 is the cold start, never a hit):
  /// the first evaluation at ≥ `target` that the next evaluation holds, else the first at ≥
  /// `target` (held false), else nil. The peer harnesses (Benchmarks/peers) use the same rule.
  public static func target(_ evals: [(step: Int, greedy: Double, trainSeconds: Double)], target: Double)
    -> (step: Int, trainSeconds: Double, held: Bool)? {
    let hits = evals.filter { $0.step > 0 }
    for (a, b) in zip(hits, hits.dropFirst()) where a.greedy >= target && b.greedy >= target {
      return (a.step, a.trainSeconds, true)
    }
    return hits.first { $0.greedy >= target }.map { ($0.step, $0.trainSeconds, false) }
  }
}

public struct RunDirectory: Sendable {
  public let path: String

  public init(path: String, create: Bool) throws {
    self.path = path
    if create {
      do { try FileManager.default.createDirectory(atPath: path + "/checkpoints", withIntermediateDirectories: true) } catch {
        throw FileWriteError.from(error, path: path + "/checkpoints")
      }
      StaleTemps.clean(path)
      StaleTemps.clean(path + "/checkpoints")
    }
  }

  public var latestCheckpoint: String? {
    guard let name = try? String(contentsOfFile: path + "/checkpoints/latest", encoding: .utf8) else { return nil }
    let dir = path + "/checkpoints/" + name.trimmingCharacters(in: .whitespacesAndNewlines)
    return FileManager.default.fileExists(atPath: dir + "/run_state.json") ? dir : nil
  }

  public func writeConfig(_ config: ResolvedConfig) throws {
    try writeAtomically(Data(config.yaml().utf8), to: path + "/config.yaml")
  }

  /// Write into a temp directory, then rename: a checkpoint is complete or absent.
  public func saveCheckpoint(step: Int, policy: Policy, plugins: PluginSet, tokenizer: HFPolicyTokenizer? = nil, state: RunState) throws {
    let name = String(format: "step-%06d", step)
    let final = path + "/checkpoints/" + name, tmp = final + ".tmp"
    try? FileManager.default.removeItem(atPath: tmp)
    do {
      try Checkpoint.save(directory: tmp, store: policy.store, optimizer: policy.optimizer)
      let enc = JSONEncoder()
      enc.outputFormatting = [.prettyPrinted, .sortedKeys]
      try writeAtomically(try enc.encode(state), to: tmp + "/run_state.json")
      try plugins.saveStates(directory: tmp)
      try tokenizer?.copy(to: tmp)  // a Hugging Face directory again: AutoTokenizer loads it
      try? FileManager.default.removeItem(atPath: final)
      try FileManager.default.moveItem(atPath: tmp, toPath: final)
      try writeAtomically(Data(name.utf8), to: path + "/checkpoints/latest")
    } catch {
      // a failed save (a full disk, a read-only directory) leaves no partial checkpoint behind
      try? FileManager.default.removeItem(atPath: tmp)
      throw FileWriteError.from(error, path: tmp)
    }
  }

  public func writeSummary(_ s: Summary) throws {
    // a diverged run's NaN is written as "nan" (JSON has no NaN), never a raw encoder error
    try writeAtomically(try JSONOutput.encoder(pretty: true).encode(s), to: path + "/summary.json")
  }

  public func writeProvenance(config: RunConfig, plugins: PluginSet, grader: Grader, policy: Policy, coldStart: String?, ranks: Int = 1) throws {
    var records: [Provenance.Plugin] = []
    for (role, p) in plugins.all + [("grader", grader.instance)] {
      // the metrics.jsonl keys this plugin's declared scalars are written under (plotted by keel compare)
      let metrics = role == "objective" ? p.library.scalars.map(\.name)
        : role == "reward" ? plugins.componentNames.filter { $0.hasPrefix(p.library.name + "/") }.map { "reward/" + $0 } : []
      records.append(Provenance.Plugin(role: role, name: p.library.name, path: p.library.path, sha256: FileDigest.sha256(p.library.path),
                                       abi: "\(p.library.abiMajor).\(p.library.abiMinor)", version: p.library.version,
                                       parameters: Dictionary(uniqueKeysWithValues: p.parameters.map { ($0.0.name, "\($0.1)") }),
                                       metrics: metrics, threshold: role == "grader" ? Double(grader.threshold) : nil))
    }
    if let f = plugins.foreign {
      records.append(Provenance.Plugin(role: "foreign-reward", name: f.symbol, path: f.libraryPath, sha256: FileDigest.sha256(f.libraryPath),
                                       signature: f.signature.description))
    }
    let flags = CPUInfo.field("flags").split(separator: " ").map(String.init).filter { ["avx2", "fma", "f16c", "avx512f"].contains($0) }
    let info = Provenance(
      keelVersion: KeelVersion.string, pluginAbi: KeelVersion.abi, keelCommit: gitCommit(), plugins: records,
      files: Self.inputFiles(config),
      blas: "OpenBLAS (cblas) core type \(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "auto"); matrix products: KeelKernels kk_gemm",
      cpuModel: CPUInfo.field("model name"), cpuFlags: flags, threads: config.train.threads, ranks: ranks, coldStart: coldStart ?? "none",
      modelParameters: policy.store.layout.count, dataVersion: TaskSplit.dataVersion(task: config.task.name))
    try writeAtomically(try info.encoded(), to: path + "/provenance.json")
  }
}

extension RunDirectory {
  /// The data files a run started from (model.checkpoint's and train.teacher's config, weights
  /// and tokenizer files; a JSONL dataset and its held-out file), with their SHA-256: keel compare reruns a run whose
  /// inputs changed.
  static func inputFiles(_ config: RunConfig) -> [Provenance.File] {
    var out: [Provenance.File] = []
    func add(_ role: String, _ path: String) {
      if FileManager.default.fileExists(atPath: path) { out.append(Provenance.File(role: role, path: path, sha256: FileDigest.sha256(path))) }
    }
    // model.checkpoint and (a frozen model the objective scores against) train.teacher
    for (role, dir) in [("model.checkpoint", config.model.checkpoint), ("train.teacher", config.train.teacher)] {
      guard let dir else { continue }
      let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
      for n in names where n == "config.json" || n.hasSuffix(".safetensors") || n == "model.safetensors.index.json" || HFPolicyTokenizer.files.contains(n) {
        add(role, dir + "/" + n)
      }
    }
    let task = config.task.name
    if task.hasSuffix(".jsonl") { add("task.name", task) }
    if let held = config.task.evalPath { add("task.eval_path", held) }
    return out
  }
}

public enum FileDigest {
  /// SHA-256 of a file (lower-case hex), read in 1 MiB chunks with swift-crypto: in process,
  /// memory bounded whatever the file's size. "unavailable" when it cannot be read.
  public static func sha256(_ path: String) -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else { return "unavailable" }
    defer { try? handle.close() }
    var hasher = SHA256()
    do {
      while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { hasher.update(data: chunk) }
    } catch { return "unavailable" }
    return hasher.finalize().map { String(format: "%02x", $0) }.joined()
  }
}

func gitCommit() -> String {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: "/usr/bin/git")
  var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
  parts.removeLast(3)
  p.arguments = ["-C", parts.joined(separator: "/"), "rev-parse", "HEAD"]
  let pipe = Pipe()
  p.standardOutput = pipe
  p.standardError = FileHandle.nullDevice
  do { try p.run() } catch { return "unknown" }
  let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
  p.waitUntilExit()
  return p.terminationStatus == 0 ? out : "unknown"
}

