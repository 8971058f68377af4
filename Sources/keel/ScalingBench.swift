// ScalingBench.swift — `keel bench --ranks 1,2,4`: the same RL training steps (the defaults
// unless --set says otherwise) at K = 1, 2, 4 … ranks, each K launched as `mpirun -np K keel
// train` (K = 1: a plain process), threads per rank = --threads / K (at least 1). Per K it reads
// the run's metrics.jsonl and prints the median step time, global tokens/s, the allreduce time
// per step and its share of the step, and the bytes each rank sent into collectives per step;
// the first step (warm-up) is left out. More ranks than cores are oversubscribed: their figures
// check correctness, not speed. Figures are ratios against K = 1 measured in the same run.
import Foundation
import KeelModel
import KeelRL

struct ScalingRow: Codable {
  var ranks: Int
  var threadsPerRank: Int
  var stepSeconds: Double
  var tokensPerSecond: Double
  var allreduceSeconds: Double
  var allreduceShare: Double
  var allreduceBytes: Double
  var speedup: Double
  var oversubscribed: Bool
}

enum ScalingBench {
  static func run(ranks: [Int], threads: Int, steps: Int, sets: [String], json: Bool) throws -> [ScalingRow] {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let base = NSTemporaryDirectory() + "keel-scaling-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: base) }
    var rows: [ScalingRow] = []
    for k in ranks {
      let perRank = max(1, threads / k)
      let out = "\(base)/k\(k)"
      var args = ["train", "--out", out, "--steps", String(steps), "--quiet", "--threads", String(perRank),
                  "--set", "eval.every=100000", "--set", "checkpoint.every=100000", "--set", "diagnostics.enabled=false"]
      for s in sets { args += ["--set", s] }
      let program: String
      if k == 1 {
        program = KeelPaths.executable
      } else {
        guard let mpirun = which("mpirun") else {
          throw BenchError(message: "mpirun not found: install Open MPI (bash scripts/setup.sh)")
        }
        program = mpirun
        args = ["-np", String(k), "--oversubscribe", KeelPaths.executable] + args
      }
      if !json { print("K = \(k) × \(perRank) thread\(perRank == 1 ? "" : "s"): \(k == 1 ? "" : "mpirun -np \(k) ")keel \(args.suffix(from: k == 1 ? 0 : 4).joined(separator: " "))") }
      let status = try spawn(program, args)
      guard status == 0 else { throw BenchError(message: "K = \(k): the run exited with status \(status)") }
      let median = try stepMedians(run: out)
      let seconds = median("seconds")
      let reduce = median("time_allreduce")
      rows.append(ScalingRow(ranks: k, threadsPerRank: perRank, stepSeconds: seconds, tokensPerSecond: median("tokens_per_second"),
                             allreduceSeconds: reduce, allreduceShare: reduce / seconds, allreduceBytes: median("allreduce_bytes"),
                             speedup: 0, oversubscribed: k * perRank > cores))
    }
    if let first = rows.first {
      for i in rows.indices { rows[i].speedup = first.stepSeconds / rows[i].stepSeconds }
    }
    if json {
      print(String(decoding: try JSONOutput.encoder().encode(rows), as: UTF8.self))
    } else {
      print("ranks × threads | step s (median) | tokens/s | allreduce s/step | share | bytes/rank/step | speed-up vs first")
      for r in rows {
        print(String(format: "%5d × %-7d | %15.3f | %8.0f | %16.4f | %4.1f%% | %15.0f | %.2fx%@", r.ranks, r.threadsPerRank, r.stepSeconds,
                     r.tokensPerSecond, r.allreduceSeconds, 100 * r.allreduceShare, r.allreduceBytes, r.speedup,
                     r.oversubscribed ? "  (oversubscribed: correctness only)" : ""))
      }
    }
    return rows
  }

  /// The median of a metrics.jsonl key over a run's training steps 2… (step 1 is warm-up; step 0,
  /// the cold-start evaluation, has no step timings), as a function of the key; 0 when absent.
  static func stepMedians(run: String) throws -> (String) -> Double {
    let steps = Report.load(run).filter { ($0["step"] ?? 0) >= 2 }
    guard !steps.isEmpty else { throw BenchError(message: "\(run): fewer than 2 training steps logged") }
    return { key in
      let xs = steps.compactMap { $0[key] }.sorted()
      return xs.isEmpty ? 0 : xs[xs.count / 2]
    }
  }

  static func which(_ name: String) -> String? {
    (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
      .map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }

  static func spawn(_ program: String, _ args: [String]) throws -> Int32 {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    var env = ProcessInfo.processInfo.environment
    if getuid() == 0 {  // Open MPI refuses root without these
      env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
      env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    }
    p.environment = env
    try p.run()
    p.waitUntilExit()
    return p.terminationStatus
  }
}

/// A bench run that could not be measured.
struct BenchError: Error, CustomStringConvertible {
  let message: String
  var description: String { message }
}
