// GuardTests.swift — faulty plugin code ends a run with one clear line and a non-zero status,
// never a hang or a 100-line backtrace: a plugin stuck in a loop is ended by plugins.timeout
// and by SIGINT (3 s after it, or at once on a second SIGINT); a segfaulting plugin in
// training names the plugin, its path, the function and the signal; a killed
// `keel plugins check` leaves no child spinning. The run directory stays as it was.
import Foundation
import KeelTestSupport
import XCTest

final class GuardTests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]

  /// Start keel, optionally signal it after `after` seconds, and wait at most `deadline` s.
  func runBounded(_ args: [String], signals: [(after: Double, signal: Int32)] = [], deadline: Double = 60) throws -> (status: Int32, signaled: Bool, output: String, seconds: Double) {
    let (p, pipe) = try TestSupport.start(TestSupport.keel, args, environment: env)
    let t0 = Date()
    final class Box: @unchecked Sendable { var data = Data() }
    let buffer = Box()
    let reader = DispatchQueue(label: "reader")
    let done = DispatchSemaphore(value: 0)
    reader.async { buffer.data = pipe.fileHandleForReading.readDataToEndOfFile(); done.signal() }
    var pending = signals
    while p.isRunning && Date().timeIntervalSince(t0) < deadline {
      if let s = pending.first, Date().timeIntervalSince(t0) >= s.after { kill(p.processIdentifier, s.signal); pending.removeFirst() }
      usleep(50_000)
    }
    if p.isRunning { kill(p.processIdentifier, SIGKILL); XCTFail("keel \(args) still running after \(deadline) s") }
    p.waitUntilExit()
    done.wait()
    return (p.terminationStatus, p.terminationReason == .uncaughtSignal, String(decoding: buffer.data, as: UTF8.self), Date().timeIntervalSince(t0))
  }

  func trainArgs(_ plugin: String, out: String) -> [String] {
    ["train", "--out", out, "--quiet", "--preset", "test", "--steps", "3", "--set", "coldstart.checkpoint=none", "--objective", plugin]
  }

  func testAStuckPluginIsEndedByTheTimeout() throws {
    let lib = try TestSupport.fixture("loop.c"), out = TestSupport.tempDir("keel-guard") + "/run"
    let r = try runBounded(trainArgs(lib, out: out) + ["--set", "plugins.timeout=2"])
    XCTAssertEqual(r.status, 124, r.output)
    XCTAssertFalse(r.signaled)
    XCTAssertTrue(r.output.contains("keel: plugin 'fixture-loop' (\(lib)), objective.compute has run for") && r.output.contains("more than plugins.timeout (2 s)"), r.output)
    XCTAssertTrue(r.output.contains("resume with keel train --resume \(out)"), r.output)
    XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/metrics.jsonl"), "the run's files stay")
  }

  func testSIGINTEndsAStuckPluginAndASecondSIGINTExitsAtOnce() throws {
    let lib = try TestSupport.fixture("loop.c")
    let one = try runBounded(trainArgs(lib, out: TestSupport.tempDir("keel-guard") + "/a"), signals: [(4, SIGINT)])
    XCTAssertEqual(one.status, 130, one.output)
    XCTAssertTrue(one.output.contains("stopped by a signal while plugin 'fixture-loop'") && one.output.contains("did not return"), one.output)
    XCTAssertLessThan(one.seconds, 15)
    let two = try runBounded(trainArgs(lib, out: TestSupport.tempDir("keel-guard") + "/b"), signals: [(4, SIGINT), (4.3, SIGINT)])
    XCTAssertEqual(two.status, 130, two.output)
    XCTAssertTrue(two.output.contains("keel: second SIGINT: exiting at once"), two.output)
    XCTAssertLessThan(two.seconds, 8)
  }

  func testASegfaultingPluginInTrainingIsOneLine() throws {
    let lib = try TestSupport.fixture("segfault.c")
    let r = try runBounded(trainArgs(lib, out: TestSupport.tempDir("keel-guard") + "/run"))
    XCTAssertEqual(r.status, 128 + SIGSEGV, r.output)
    XCTAssertFalse(r.signaled)
    XCTAssertTrue(r.output.contains("keel: plugin 'fixture-segfault' (\(lib)), objective.compute crashed with SIGSEGV"), r.output)
    XCTAssertLessThan(r.output.split(separator: "\n").count, 6, "one line, no backtrace: " + r.output)
  }

  func testAKilledPluginsCheckLeavesNoChild() throws {
    let lib = try TestSupport.fixture("loop.c")
    let (p, _) = try TestSupport.start(TestSupport.keel, ["plugins", "check", lib], environment: env)
    // wait for the child to be spinning
    // processes whose command line is the check's child (read from /proc: no procps needed)
    func children() throws -> [String] {
      try FileManager.default.contentsOfDirectory(atPath: "/proc").filter { Int($0) != nil }.compactMap { pid in
        guard let raw = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
        let args = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return args.contains("--in-process") && args.contains(lib) ? pid : nil
      }
    }
    var seen = false
    for _ in 0..<100 where !seen { seen = !(try children()).isEmpty; usleep(100_000) }
    XCTAssertTrue(seen, "the check's child never started")
    kill(p.processIdentifier, SIGKILL)
    p.waitUntilExit()
    var gone = false
    for _ in 0..<50 where !gone { gone = (try children()).isEmpty; usleep(100_000) }
    let left = try children()
    XCTAssertTrue(gone, "the child outlived its killed parent: \(left)")
  }
}
