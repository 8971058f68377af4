// MPITests.swift — data-parallel training over MPI, run as users run it: `mpirun -np 2 keel
// train` against the single-process run on the same config (docs/scaling.md):
//   step-1 rollouts identical, the ranks' weights identical after every step, step-1 metrics
//   within 1e-5 relative, later steps within the tolerance stated below, two K = 2 runs bit
//   for bit; resume across K; a killed rank, a hung rank and a signalled rank.
// Skipped (with the reason) only where `mpirun` is not installed.
import Foundation
import KeelModel
import KeelRL
import KeelTasks
import KeelTestSupport
import XCTest

final class MPITests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": "",
             "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
             "OMPI_MCA_rmaps_base_oversubscribe": "1"]
  /// The tiny preset with every response logged and the weights compared after every step, on
  /// 1-digit addition (the tiny cold start solves ~25% of it, so every step has a gradient).
  let common = ["--preset", "test", "--threads", "1", "--quiet", "--set", "log.rollouts=true", "--set", "task.digits=1",
                "--set", "distributed.check_every=1", "--set", "checkpoint.every=1"]

  func mpirun() throws -> String {
    guard let path = TestSupport.which("mpirun") else {
      throw XCTSkip("mpirun not found: install Open MPI (bash scripts/setup.sh installs libopenmpi-dev openmpi-bin)")
    }
    return path
  }

  /// `keel train` with K ranks (K = 1: no mpirun at all).
  @discardableResult
  func train(ranks: Int, out: String, _ args: [String]) throws -> TestSupport.Output {
    let r = ranks == 1
      ? try TestSupport.run(TestSupport.keel, ["train", "--out", out] + args, environment: env)
      : try TestSupport.run(try mpirun(), ["-np", String(ranks), TestSupport.keel, "train", "--out", out] + args, environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    return r
  }

  func lines(_ path: String) throws -> [[String: Any]] {
    try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
  }

  func metrics(_ dir: String) throws -> [Int: [String: Double]] {
    var out: [Int: [String: Double]] = [:]
    for o in try lines(dir + "/metrics.jsonl") {
      let step = o["step"] as! Int
      out[step] = o.compactMapValues { $0 as? Double }.filter { !timing.contains($0.key) && !["ranks", "allreduce_bytes"].contains($0.key) }
    }
    return out
  }
  let timing: Set<String> = ["seconds", "tokens_per_second", "time_sampling", "time_scoring", "time_old_pass", "time_updates",
                             "time_eval", "time_diagnostics", "wall_seconds", "time_allreduce"]

  /// The largest relative difference of the shared keys (|a − b| / max(|a|, |b|), 0 when both are 0).
  func maxRelative(_ a: [String: Double], _ b: [String: Double], sameKeys: Bool = true) -> (Double, String) {
    if sameKeys { XCTAssertEqual(Set(a.keys), Set(b.keys)) }
    var worst = (0.0, "")
    for (k, x) in a {
      guard let y = b[k] else { continue }
      let d = x == y ? 0 : abs(x - y) / max(abs(x), abs(y))
      if d > worst.0 { worst = (d, k) }
    }
    return worst
  }

  /// Per step, every rank's weight checksum, from weights.jsonl.
  func checksums(_ dir: String) throws -> [Int: [String]] {
    var out: [Int: [String]] = [:]
    for o in try lines(dir + "/weights.jsonl") { out[o["step"] as! Int] = o["checksums"] as? [String] }
    return out
  }

  func rollouts(_ dir: String, step: Int) throws -> [[String: Any]] {
    try lines(dir + "/rollouts.jsonl").filter { $0["step"] as? Int == step }
  }

  func testTwoRanksMatchOneProcess() throws {
    _ = try mpirun()
    let base = TestSupport.tempDir("keel-mpi")
    let steps = ["--steps", "3"]
    try train(ranks: 1, out: base + "/k1", common + steps)
    try train(ranks: 2, out: base + "/k2", common + steps)
    try train(ranks: 2, out: base + "/k2again", common + steps)

    // step-1 rollouts: the same responses, token for token, with the same rewards and log μ_old
    let r1 = try rollouts(base + "/k1", step: 1), r2 = try rollouts(base + "/k2", step: 1)
    XCTAssertEqual(r1.count, 8 * 4)
    XCTAssertEqual(r1.count, r2.count)
    for (a, b) in zip(r1, r2) {
      XCTAssertEqual(a["prompt"] as? Int, b["prompt"] as? Int)
      XCTAssertEqual(a["sample"] as? Int, b["sample"] as? Int)
      XCTAssertEqual(a["tokens"] as? [Int], b["tokens"] as? [Int])
      XCTAssertEqual(a["reward"] as? Double, b["reward"] as? Double)
      XCTAssertEqual(a["advantage"] as? Double, b["advantage"] as? Double)
      XCTAssertEqual(a["logp_rollout"] as? [Double], b["logp_rollout"] as? [Double])
    }
    // the data are real: several distinct responses, some rewarded differently
    XCTAssertGreaterThan(Set(r1.map { $0["text"] as! String }).count, 4)

    // every rank holds the same weights after every step, and the weights move
    let c1 = try checksums(base + "/k1"), c2 = try checksums(base + "/k2")
    for step in 1...3 {
      let ranks = try XCTUnwrap(c2[step])
      XCTAssertEqual(ranks.count, 2)
      XCTAssertEqual(Set(ranks).count, 1, "step \(step): ranks disagree \(ranks)")
      XCTAssertEqual(c1[step]?.count, 1)
    }
    XCTAssertEqual(Set((1...3).compactMap { c2[$0]?.first }).count, 3, "weights must change every step")

    // metrics: step 1 within 1e-5 relative; later steps within 1e-3 (see docs/scaling.md)
    let m1 = try metrics(base + "/k1"), m2 = try metrics(base + "/k2")
    XCTAssertEqual(m1[0], m2[0], "the cold-start evaluation is split over ranks but must count the same")
    let (d1, k1) = maxRelative(m1[1]!, m2[1]!)
    XCTAssertLessThanOrEqual(d1, 1e-5, "step 1: \(k1) differs by \(d1) relative")
    for step in 2...3 {
      let (d, k) = maxRelative(m1[step]!, m2[step]!)
      XCTAssertLessThanOrEqual(d, 1e-3, "step \(step): \(k) differs by \(d) relative")
    }
    print("K=1 vs K=2, largest relative metric difference: step 1 \(d1) (\(k1)); steps 2-3",
          (2...3).map { maxRelative(m1[$0]!, m2[$0]!) })

    // the same K twice: bit for bit
    XCTAssertEqual(try metrics(base + "/k2again"), m2)
    XCTAssertEqual(try checksums(base + "/k2again"), c2)
  }

  /// ABI 1.1 terms under data parallelism: on-policy distillation with the full-vocabulary KL to a
  /// teacher (each rank scores its own micro-batches against its copy of the teacher, checked
  /// equal at load) matches one process as the plain objective does.
  func testDistillationWithATeacherMatchesOneProcess() throws {
    _ = try mpirun()
    let base = TestSupport.tempDir("keel-mpi-distill")
    try train(ranks: 1, out: base + "/teacher", common + ["--steps", "4", "--set", "objective.params.entropy_coef=0.5", "--set", "checkpoint.every=4"])
    let args = common + ["--steps", "2", "--objective", "on-policy-distill", "--set", "objective.params.mode=full",
                         "--set", "train.teacher=\(base)/teacher/checkpoints/step-000004"]
    try train(ranks: 1, out: base + "/k1", args)
    try train(ranks: 2, out: base + "/k2", args)
    let m1 = try metrics(base + "/k1"), m2 = try metrics(base + "/k2")
    XCTAssertGreaterThan(m1[1]!["teacher_kl"]!, 0)
    let (d1, k1) = maxRelative(m1[1]!, m2[1]!)
    XCTAssertLessThanOrEqual(d1, 1e-5, "step 1: \(k1) differs by \(d1) relative")
    let (d2, k2) = maxRelative(m1[2]!, m2[2]!)
    XCTAssertLessThanOrEqual(d2, 1e-3, "step 2: \(k2) differs by \(d2) relative")
  }

  func testResumeAcrossRankCounts() throws {
    _ = try mpirun()
    let base = TestSupport.tempDir("keel-mpi-resume")
    // K = 2 for 2 steps, then K = 1 to step 4; and K = 1 for 2 steps, then K = 2 to step 4
    try train(ranks: 2, out: base + "/a", common + ["--steps", "2"])
    let ra = try TestSupport.run(TestSupport.keel, ["train", "--resume", base + "/a", "--steps", "4", "--quiet", "--threads", "1"], environment: env)
    XCTAssertEqual(ra.status, 0, ra.stdout)
    try train(ranks: 1, out: base + "/b", common + ["--steps", "2"])
    let r = try TestSupport.run(try mpirun(), ["-np", "2", TestSupport.keel, "train", "--resume", base + "/b", "--steps", "4", "--quiet", "--threads", "1"],
                                environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    try train(ranks: 1, out: base + "/straight", common + ["--steps", "4"])
    let straight = try metrics(base + "/straight")
    for run in ["a", "b"] {
      let m = try metrics(base + "/" + run)
      XCTAssertEqual(m.keys.sorted(), [0, 1, 2, 3, 4], run)
      let sums = try checksums(base + "/" + run)
      XCTAssertEqual(sums.keys.sorted(), [1, 2, 3, 4], run)
      for (step, ranks) in sums { XCTAssertEqual(Set(ranks).count, 1, "\(run) step \(step)") }
      for step in 1...4 {
        // (the interrupted runs also evaluated at step 2, where they stopped: compare shared keys)
        let (d, k) = maxRelative(m[step]!, straight[step]!, sameKeys: false)
        XCTAssertNotNil(m[step]!["grad_norm"])
        XCTAssertLessThanOrEqual(d, 1e-3, "\(run) step \(step): \(k) differs by \(d) relative from the uninterrupted K = 1 run")
      }
    }
  }

  /// A plugin that keeps state would drift apart across ranks (each sees its share of the
  /// batch): K = 2 refuses it, naming the plugin, and the whole job exits non-zero; K = 1 runs it.
  func testStatefulObjectiveRefusedAcrossRanks() throws {
    let lib = try TestSupport.fixture("stateful.c")
    let base = TestSupport.tempDir("keel-mpi-stateful")
    let args = ["--preset", "test", "--threads", "1", "--quiet", "--steps", "1", "--objective", lib]
    let r = try TestSupport.run(try mpirun(), ["-np", "2", TestSupport.keel, "train", "--out", base + "/k2"] + args, environment: env)
    XCTAssertNotEqual(r.status, 0, r.stdout)
    XCTAssertTrue(r.stdout.contains("fixture-stateful") && r.stdout.contains("keeps state") && r.stdout.contains(lib), r.stdout)
    try train(ranks: 1, out: base + "/k1", args)
  }

  /// `keel bench --ranks 1,2`: one row per K; K = 2 sends each step's gradients (4 bytes per
  /// parameter per update) plus small metric vectors into collectives; K = 1 sends nothing.
  func testScalingBenchReportsCollectiveBytes() throws {
    _ = try mpirun()
    let r = try TestSupport.run(TestSupport.keel, ["bench", "--ranks", "1,2", "--scaling-steps", "3", "--json", "--threads", "2",
                                                   "--set", "preset=test"], environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    let json = try XCTUnwrap(r.stdout.split(separator: "\n").last { $0.hasPrefix("[") })
    let rows = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [[String: Any]]
    XCTAssertEqual(rows.map { $0["ranks"] as? Int }, [1, 2])
    XCTAssertEqual(rows.map { $0["threadsPerRank"] as? Int }, [2, 1])
    let params = try ModelPreset.config("tiny", vocab: CharTokenizer().vocabSize)
    let count = Layout(params).count
    let bytes = rows[1]["allreduceBytes"] as! Double
    XCTAssertEqual(rows[0]["allreduceBytes"] as! Double, 0)
    XCTAssertGreaterThanOrEqual(bytes, Double(4 * count), "one gradient allreduce per update")
    XCTAssertLessThan(bytes, Double(4 * count) + 64 * 1024, "gradients plus small metric vectors only")
    for row in rows { XCTAssertGreaterThan(row["stepSeconds"] as! Double, 0) }
  }

  /// The pid of rank `rank` of the job writing to `out`.
  func rankPid(_ rank: Int, out: String) -> pid_t? {
    for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
      guard let pid = Int32(entry),
            let cmd = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline"),
            String(decoding: cmd, as: UTF8.self).contains(out),
            let environ = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
      let vars = environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
      if vars.contains("OMPI_COMM_WORLD_RANK=\(rank)") && !String(decoding: cmd, as: UTF8.self).hasPrefix("mpirun") { return pid }
    }
    return nil
  }

  /// A long K = 2 run, started in the background; returns the process once step `atLeast` is
  /// checkpointed (or, with `atLeast` 0, once 3 steps are logged). The caller ends it.
  func startLongRun(out: String, extra: [String] = [], atLeast: Int = 2) throws -> (Process, Pipe) {
    let (p, pipe) = try TestSupport.start(try mpirun(), ["-np", "2", TestSupport.keel, "train", "--out", out, "--steps", "100000"] + common + extra,
                                          environment: env)
    let deadline = Date().addingTimeInterval(120)
    func ready() -> Bool {
      if atLeast == 0 { return ((try? lines(out + "/metrics.jsonl"))?.count ?? 0) >= 4 }
      guard let name = try? String(contentsOfFile: out + "/checkpoints/latest", encoding: .utf8),
            let s = Int(name.dropFirst("step-".count)) else { return false }
      return s >= atLeast
    }
    while !ready() {
      if Date() > deadline || !p.isRunning {
        if p.isRunning { p.terminate() }
        throw TestFailure("the K = 2 run did not get going within 120 s (still running: \(p.isRunning))")
      }
      usleep(50_000)
    }
    return (p, pipe)
  }

  struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
  }

  func waitExit(_ p: Process, within seconds: Double) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while p.isRunning && Date() < deadline { usleep(50_000) }
    return !p.isRunning
  }

  func assertLatestCheckpointLoads(_ out: String) throws {
    let latest = try String(contentsOfFile: out + "/checkpoints/latest", encoding: .utf8)
    let r = try TestSupport.run(TestSupport.keel, ["eval", "--checkpoint", out + "/checkpoints/" + latest, "--eval-size", "8", "--samples", "1"],
                                environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    XCTAssertTrue(r.stdout.contains("eval_accuracy_greedy"), r.stdout)
  }

  func testKilledRankEndsTheJob() throws {
    let out = TestSupport.tempDir("keel-mpi-kill") + "/run"
    let (p, pipe) = try startLongRun(out: out)
    defer { if p.isRunning { p.terminate() } }
    let pid = try XCTUnwrap(rankPid(1, out: out), "rank 1 not found")
    let t0 = Date()
    kill(pid, SIGKILL)
    XCTAssertTrue(waitExit(p, within: 60), "the job did not end within 60 s of a rank's death")
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    print("a killed rank ended the job in \(Date().timeIntervalSince(t0)) s")
    XCTAssertNotEqual(p.terminationStatus, 0, text)
    XCTAssertTrue(text.contains("rank 1"), "the message must name the rank:\n\(text)")
    try assertLatestCheckpointLoads(out)
  }

  func testHungRankTimesOut() throws {
    let out = TestSupport.tempDir("keel-mpi-hang") + "/run"
    let (p, pipe) = try startLongRun(out: out, extra: ["--set", "distributed.timeout=3"])
    defer { if p.isRunning { p.terminate() } }
    let pid = try XCTUnwrap(rankPid(1, out: out), "rank 1 not found")
    defer { kill(pid, SIGKILL) }
    kill(pid, SIGSTOP)  // alive but silent: rank 0 must not wait forever
    XCTAssertTrue(waitExit(p, within: 60), "the job did not end after a rank hung")
    kill(pid, SIGKILL)
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssertNotEqual(p.terminationStatus, 0, text)
    XCTAssertTrue(text.contains("keel rank 0: waited"), text)
    try assertLatestCheckpointLoads(out)
  }

  func testSignalOnOneRankStopsEveryRank() throws {
    let out = TestSupport.tempDir("keel-mpi-sigterm") + "/run"
    // checkpoints are rare here: the stop must write one
    let (p, pipe) = try startLongRun(out: out, extra: ["--set", "checkpoint.every=1000"], atLeast: 0)
    defer { if p.isRunning { p.terminate() } }
    let pid = try XCTUnwrap(rankPid(1, out: out), "rank 1 not found")
    kill(pid, SIGTERM)
    XCTAssertTrue(waitExit(p, within: 60))
    let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    XCTAssertEqual(p.terminationStatus, 0, text)
    let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/summary.json"))) as! [String: Any]
    XCTAssertEqual(summary["stoppedBySignal"] as? Bool, true)
    let steps = summary["steps"] as! Int
    XCTAssertEqual(try String(contentsOfFile: out + "/checkpoints/latest", encoding: .utf8), String(format: "step-%06d", steps))
    XCTAssertEqual(try lines(out + "/metrics.jsonl").last?["step"] as? Int, steps)
    try assertLatestCheckpointLoads(out)
  }
}
