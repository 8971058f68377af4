// E2EBench.swift — `keel bench e2e`: time to learn, end to end. From one cold-start checkpoint
// (--from DIR: Keel's, or a Hugging Face directory with its tokenizer; default: the default
// cold start, made and cached on first use), one `keel train` per seed (the defaults unless
// --set says otherwise), each a separate process timed by the kernel (wait4: peak RSS). Per
// seed, from the run's summary.json and metrics.jsonl: the cold start's greedy accuracy, the
// first step where greedy held-out accuracy is ≥ cold start + 25 points and held at the next
// evaluation (steps to target), the training seconds to it (evaluation excluded), seconds
// per step split into sampling / scoring (old pass) / updates (medians over steps ≥ 2), the
// final accuracy and the peak RSS. Medians over seeds; JSON with --json. The peer harness that
// runs TRL on the same start is Benchmarks/peers/ (docs/performance.md).
import Foundation
import KeelModel
import KeelRL

struct E2ESeed: Codable {
  var seed: Int
  var coldStartGreedy: Double
  var finalGreedy: Double
  var bestGreedy: Double
  var stepsToTarget: Int?
  var trainSecondsToTarget: Double?
  var targetHeldTwice: Bool
  var steps: Int
  var trainSeconds: Double
  var secondsPerStep: Double
  var samplingSeconds: Double
  var scoringSeconds: Double
  var updateSeconds: Double
  var peakRSSMB: Double
  var wallSeconds: Double
}

struct E2EReport: Codable {
  var from: String
  var overrides: [String]
  var seeds: [E2ESeed]
  var medianStepsToTarget: Double?
  var medianTrainSecondsToTarget: Double?
  var medianSecondsPerStep: Double
  var maxPeakRSSMB: Double
  var reachedTarget: Int
}

enum E2EBench {
  static func run(from: String?, seeds: [Int], sets: [String], threads: Int, json: Bool, keep: String?) throws -> E2EReport {
    let base = keep ?? NSTemporaryDirectory() + "keel-e2e-\(getpid())"
    defer { if keep == nil { try? FileManager.default.removeItem(atPath: base) } }
    var start: [String] = []
    if let from {
      // a directory with its own tokenizer starts as model.checkpoint (its tokenizer then drives the run)
      let key = FileManager.default.fileExists(atPath: from + "/tokenizer.json") ? "model.checkpoint" : "coldstart.checkpoint"
      start = ["--set", "\(key)=\(from)"]
    }
    var rows: [E2ESeed] = []
    for seed in seeds {
      let out = "\(base)/seed-\(seed)"
      try? FileManager.default.removeItem(atPath: out)
      var args = ["train", "--out", out, "--quiet", "--seed", String(seed), "--threads", String(threads)] + start
      for s in sets { args += ["--set", s] }
      if !json { print("seed \(seed): keel \(args.joined(separator: " "))") }
      let t0 = Date()
      try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
      let (status, rssKB) = try spawnMeasured(KeelPaths.executable, args, log: "\(base)/seed-\(seed).log")
      let wall = Date().timeIntervalSince(t0)
      guard status == 0 else {
        let tail = ((try? String(contentsOfFile: "\(base)/seed-\(seed).log", encoding: .utf8)) ?? "").split(separator: "\n").suffix(3).joined(separator: "\n")
        throw BenchError(message: "seed \(seed): keel train exited with status \(status):\n\(tail)")
      }
      let summary = try JSONDecoder().decode(Summary.self, from: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json")))
      let median = try ScalingBench.stepMedians(run: out)
      rows.append(E2ESeed(seed: seed, coldStartGreedy: summary.coldStartGreedy, finalGreedy: summary.finalGreedy, bestGreedy: summary.bestGreedy,
                          stepsToTarget: summary.targetStep, trainSecondsToTarget: summary.targetTrainSeconds,
                          targetHeldTwice: summary.targetHeldTwice, steps: summary.steps, trainSeconds: summary.trainSeconds,
                          secondsPerStep: median("seconds"), samplingSeconds: median("time_sampling"),
                          scoringSeconds: median("time_old_pass") + median("time_scoring"), updateSeconds: median("time_updates"),
                          peakRSSMB: Double(rssKB) / 1024, wallSeconds: wall))
    }
    func median(_ xs: [Double]) -> Double? {
      guard !xs.isEmpty else { return nil }
      let s = xs.sorted()
      return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
    let reached = rows.filter { $0.stepsToTarget != nil }
    let report = E2EReport(from: from ?? "the default cold start", overrides: sets, seeds: rows,
                           medianStepsToTarget: reached.count * 2 > rows.count ? median(rows.map { Double($0.stepsToTarget ?? Int.max) }) : nil,
                           medianTrainSecondsToTarget: reached.count * 2 > rows.count ? median(rows.map { $0.trainSecondsToTarget ?? .infinity }) : nil,
                           medianSecondsPerStep: median(rows.map(\.secondsPerStep)) ?? 0,
                           maxPeakRSSMB: rows.map(\.peakRSSMB).max() ?? 0, reachedTarget: reached.count)
    if json {
      print(String(decoding: try JSONOutput.encoder(pretty: true).encode(report), as: UTF8.self))
    } else {
      print("seed | cold start | final | steps to +25 | train s to +25 | s/step (sample / score / update) | peak RSS MB | wall s")
      for r in rows {
        print(String(format: "%4d | %9.1f%% | %4.1f%% | %12@ | %14@ | %.3f (%.3f / %.3f / %.3f) | %11.0f | %6.1f", r.seed, 100 * r.coldStartGreedy,
                     100 * r.finalGreedy, r.stepsToTarget.map(String.init) ?? "not reached", r.trainSecondsToTarget.map { String(format: "%.1f", $0) } ?? "–",
                     r.secondsPerStep, r.samplingSeconds, r.scoringSeconds, r.updateSeconds, r.peakRSSMB, r.wallSeconds))
      }
      print(String(format: "median over %d seeds: steps to +25 %@, training seconds to +25 %@, %.3f s/step; peak RSS ≤ %.0f MB; %d of %d reached the target",
                   rows.count, report.medianStepsToTarget.map { String(format: "%.0f", $0) } ?? "not reached by most seeds",
                   report.medianTrainSecondsToTarget.map { String(format: "%.1f", $0) } ?? "–", report.medianSecondsPerStep,
                   report.maxPeakRSSMB, reached.count, rows.count))
    }
    return report
  }

  /// posix_spawn + wait4: the exit status and the child's own peak RSS (KB); its output to `log`.
  static func spawnMeasured(_ program: String, _ args: [String], log: String) throws -> (Int32, Int) {
    let argv: [UnsafeMutablePointer<CChar>?] = ([program] + args).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, program, &actions, nil, argv, environ)
    guard rc == 0 else { throw BenchError(message: "cannot start \(program): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let exited = status & 0x7F == 0
    return (exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F), usage.ru_maxrss)
  }
}
