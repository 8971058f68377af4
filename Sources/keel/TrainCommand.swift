// TrainCommand.swift — `keel train`: the main job. Config = built-in defaults ← --preset ←
// --config FILE ← --set key=value ← the dedicated flags; every key is validated.
//   keel train                          # defaults: MoE policy, MiniRL, exact-match, group-mean, bf16 sampler
//   keel train --preset test --steps 5 --out /tmp/run
//   keel train --objective ./libmine.so --set objective.params.eps_high=0.3
//   keel train --resume runs/x --steps 200
//   mpirun -np 2 keel train --threads 1   # data-parallel over MPI ranks (docs/scaling.md)
import ArgumentParser
import Foundation
import KeelDistributed
import KeelGuard
import KeelPluginHost
import KeelRL
import Logging

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "train", abstract: "Cold-start if needed, then train the policy with RL.")

  @Option(help: "YAML config file.") var config: String?
  @Option(name: .customLong("set"), help: "Override a config key: --set train.lr=1e-4 (repeatable).") var sets: [String] = []
  @Option(help: "Run until this step (overrides `steps`).") var steps: Int?
  @Option(help: "Run directory (default: runs/train-<seed>-<time>).") var out: String?
  @Option(help: "Seed.") var seed: Int?
  @Option(help: "Objective plugin: a name or a path to a .so.") var objective: String?
  @Option(help: "Reward plugin: a name or a path to a .so.") var reward: String?
  @Option(help: "Baseline plugin: a name or a path to a .so.") var baseline: String?
  @Option(help: "Starting values: default | test (tiny, seconds).") var preset: String?
  @Option(help: "Threads per process (per rank under mpirun); sets train.threads.") var threads: Int?
  @Option(help: "Continue the run in this directory from its latest checkpoint.") var resume: String?
  @Option(name: .customLong("trust"), help: "Allow a plugin or foreign library that --config or a resumed run's config.yaml names by path: this file or directory (repeatable). The command line's own choices need no --trust.") var trust: [String] = []
  @Flag(help: "Replace an existing run in --out: its run files are removed first (by default keel refuses to overwrite a run).") var force = false
  @Flag(help: "Also write TensorBoard event files.") var tensorboard = false
  @Flag(help: "No progress line.") var quiet = false
  @Flag(name: .customLong("help-config"), help: "Print every config key with its default and doc.") var helpConfig = false

  func run() throws {
    if helpConfig {
      for k in ConfigSchema.keys { print("\(k.key) (\(ConfigSchema.typeDescription(k)), default \(k.defaultValue)): \(k.doc)") }
      return
    }
    installStopHandlers()
    let comm: Communicator
    do {
      comm = try Communicator.fromEnvironment()
    } catch {
      FileHandle.standardError.write(Data("error: \(error)\n".utf8))
      throw ExitCode(1)
    }
    do {
      try train(comm: comm)
      comm.finalize()
    } catch {
      let text = (error as? LocalizedError)?.errorDescription ?? "\(error)"
      let who = comm.size > 1 ? " (rank \(comm.rank) of \(comm.size), pid \(getpid()), host \(comm.host))" : ""
      FileHandle.standardError.write(Data("\nerror\(who): \(text)\n".utf8))
      // one failing rank ends the whole job at once instead of leaving the others waiting
      if comm.size > 1 { comm.abort(code: 1) }
      throw ExitCode(1)
    }
  }

  func train(comm: Communicator) throws {
    let (file, checkpoint) = try startingConfig()
    var overrides = try flagOverrides()
    if let resume { try Self.checkComplete(file, overrides: overrides, resume: resume) }
    // code named by the file (not by this command line) must be in a trusted place
    let source = resume.map { $0 + "/config.yaml" } ?? config ?? "the config"
    try PluginTrust(trusted: trust).check(file.filter { overrides[$0.key] == nil }, source: source)
    if tensorboard { overrides["log.tensorboard"] = "true" }
    let resolved = try ConfigSchema.resolve(file: file, overrides: overrides)
    let typed = RunConfig(resolved)
    let runPath = try resume ?? newRunPath(seed: typed.seed, comm: comm)
    // rank 0 alone writes the run directory; the others only read (a resumed checkpoint)
    let run = try RunDirectory(path: runPath, create: comm.isRoot)
    keel_guard_set_hint(strdup("resume with keel train --resume \(runPath)"))
    if comm.isRoot { try run.writeConfig(resolved) }
    let logger = comm.isRoot ? Logger(label: "keel.train") : KeelLog.silent
    if comm.size > 1 && comm.isRoot && !quiet {
      logger.info("MPI: \(comm.size) ranks × \(typed.train.threads) threads; rank 0 writes \(runPath)")
    }
    Self.warnIfOversubscribed(comm: comm, threads: typed.train.threads)
    let trainer = try Trainer(config: resolved, run: run, quiet: quiet, comm: comm, logger: logger)
    try trainer.prepare(resumeFrom: checkpoint)
    let summary = try trainer.train(steps: typed.steps)
    guard comm.isRoot else { return }
    Self.printSummary(summary, runPath: runPath)
  }

  /// The config file's keys and the checkpoint to start from: with --resume, the run's
  /// config.yaml and its latest complete checkpoint; otherwise --config's keys (if given) and none.
  private func startingConfig() throws -> (file: [String: String], checkpoint: String?) {
    if let resume {
      let run = try RunDirectory(path: resume, create: false)
      guard FileManager.default.fileExists(atPath: resume + "/config.yaml") else {
        throw ValidationError("--resume \(resume): no config.yaml there (not a keel run directory)")
      }
      let file = try ConfigSchema.flatten(file: resume + "/config.yaml", what: "--resume")
      guard let latest = run.latestCheckpoint else { throw ValidationError("--resume \(resume): no complete checkpoint in \(resume)/checkpoints") }
      return (file, latest)
    }
    if let config { return (try ConfigSchema.flatten(file: config, what: "--config"), nil) }
    return ([:], nil)
  }

  /// The overrides of --set, then of the dedicated flags (which win over --set).
  private func flagOverrides() throws -> [String: String] {
    var overrides = try ConfigSchema.parseOverrides(sets)
    if let steps { overrides["steps"] = String(steps) }
    if let seed { overrides["seed"] = String(seed) }
    if let objective { overrides["objective.name"] = objective }
    if let reward { overrides["reward.name"] = reward }
    if let baseline { overrides["baseline.name"] = baseline }
    if let preset { overrides["preset"] = preset }
    if let threads { overrides["train.threads"] = String(threads) }
    return overrides
  }

  /// A resumed run's config.yaml holds every key (Keel writes them all): missing ones mean a
  /// truncated file (or an older Keel's), and filling them with defaults would silently change
  /// the run, so each missing key must come from the overrides.
  private static func checkComplete(_ file: [String: String], overrides: [String: String], resume: String) throws {
    let missing = ConfigSchema.keys.map(\.key).filter { file[$0] == nil && overrides[$0] == nil }
    if !missing.isEmpty {
      throw ValidationError("--resume \(resume): its config.yaml lacks \(missing.count) key(s) (\(missing.prefix(6).joined(separator: ", "))\(missing.count > 6 ? ", …" : "")): truncated, or written by an older Keel. Restore the file, or give each with --set KEY=VALUE (keel train --help-config lists the defaults)")
    }
  }

  /// A new run's directory: --out, or runs/train-SEED-TIME. Rank 0 refuses one that already
  /// holds a run, or with --force removes that run's files first.
  private func newRunPath(seed: UInt64, comm: Communicator) throws -> String {
    let runPath = out ?? "runs/train-\(seed)-\(Int(Date().timeIntervalSince1970))"
    if comm.isRoot, let existing = Self.existingRun(runPath) {
      guard force else {
        throw ValidationError("--out \(runPath) already holds a run (\(existing)); continue it with --resume \(runPath), or replace it with --force")
      }
      try Self.removeRun(runPath)
    }
    return runPath
  }

  /// Ranks on this host × threads per rank beyond its cores: every kernel then waits for a
  /// descheduled thread (docs/scaling.md: 2 ranks × 1 thread is the best split on 2 cores);
  /// rank 0 warns once on stderr.
  private static func warnIfOversubscribed(comm: Communicator, threads: Int) {
    if comm.size > 1, let local = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init),
       comm.isRoot, local * threads > ProcessInfo.processInfo.activeProcessorCount {
      FileHandle.standardError.write(Data(("warning: \(local) ranks × \(threads) threads on a host with "
        + "\(ProcessInfo.processInfo.activeProcessorCount) cores oversubscribes it; pass --threads \(max(1, ProcessInfo.processInfo.activeProcessorCount / local))\n").utf8))
    }
  }

  /// The run's closing lines on stdout: accuracy, first-order diagnostics and time to target.
  private static func printSummary(_ summary: Summary, runPath: String) {
    print(String(format: "run %@: %d steps, %.1f s of training; greedy eval accuracy %.1f%% → %.1f%% (best %.1f%%)",
                 runPath, summary.steps, summary.trainSeconds, 100 * summary.coldStartGreedy, 100 * summary.finalGreedy, 100 * summary.bestGreedy))
    if let r = summary.diagnostics["fo_residual_mean"] {
      print(String(format: "first-order diagnostics (means over steps): residual %.3g (max %.3g), valid fraction %.3f, train–infer gap %.3g, staleness gap %.3g",
                   r, summary.diagnostics["fo_residual_max"] ?? 0, summary.diagnostics["fo_valid_fraction"] ?? 0,
                   summary.diagnostics["gap_train_infer_abs_mean"] ?? 0, summary.diagnostics["gap_staleness_abs_mean"] ?? 0))
    }
    if let s = summary.targetStep, let t = summary.targetTrainSeconds {
      print(String(format: "time_to_target (+25 points greedy): step %d, %.1f s of training%@", s, t, summary.targetHeldTwice ? ", held at the next evaluation" : ", not held at the next evaluation"))
    }
  }
}

extension TrainCommand {
  /// What a run writes in its directory (RunDirectory.swift); --force removes these and nothing else.
  static let runFiles = ["config.yaml", "metrics.jsonl", "diagnostics.jsonl", "rollouts.jsonl", "weights.jsonl", "provenance.json",
                         "summary.json", "checkpoints", "tensorboard"]

  /// What makes `path` a run that --out would overwrite (nil: absent, or no run files in it).
  static func existingRun(_ path: String) -> String? {
    let fm = FileManager.default
    for file in ["metrics.jsonl", "provenance.json", "summary.json", "checkpoints/latest"] where fm.fileExists(atPath: path + "/" + file) {
      return "it has \(file)"
    }
    return nil
  }

  /// Remove a run's own files from `path` (a user's other files there stay).
  static func removeRun(_ path: String) throws {
    for file in runFiles where FileManager.default.fileExists(atPath: path + "/" + file) {
      try FileManager.default.removeItem(atPath: path + "/" + file)
    }
  }
}

/// The guard around plugin code (one line for a crashing or stuck plugin) and the stop
/// handlers (SIGINT/SIGTERM stop at the end of the step; a second one exits at once).
func installStopHandlers() {
  keel_guard_install()
  keel_guard_install_stop_handlers()
}
