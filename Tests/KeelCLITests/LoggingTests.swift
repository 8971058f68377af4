// LoggingTests.swift — messages go through swift-log with levels: a plugin's DEBUG lines are
// hidden unless KEEL_LOG_LEVEL asks for them, its INFO and WARNING lines are shown with their
// level; files are hashed in process (swift-crypto) to the same digest as coreutils' sha256sum.
import Foundation
import KeelRL
import KeelTestSupport
import XCTest

final class LoggingTests: XCTestCase {
  func trainOutput(level: String?) throws -> String {
    let lib = try TestSupport.fixture("log_levels.c")
    let out = TestSupport.tempDir("keel-log-levels") + "/run"
    var env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]
    if let level { env["KEEL_LOG_LEVEL"] = level }
    let r = try TestSupport.run(TestSupport.keel, ["train", "--out", out, "--quiet", "--preset", "test", "--steps", "1", "--reward", lib,
                                                   "--set", "coldstart.checkpoint=none"], environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    return r.stdout
  }

  func testAPluginsDebugLinesShowOnlyWhenAskedFor() throws {
    let normal = try trainOutput(level: nil)
    XCTAssertFalse(normal.contains("fixture debug line"), normal)
    XCTAssertTrue(normal.contains("[fixture-log-levels] fixture info line"), normal)
    XCTAssertTrue(normal.contains("warning: [fixture-log-levels] fixture warning line"), normal)
    let debug = try trainOutput(level: "debug")
    XCTAssertTrue(debug.contains("debug: [keel.train] [fixture-log-levels] fixture debug line"), debug)
    let quiet = try trainOutput(level: "error")
    XCTAssertFalse(quiet.contains("fixture info line") || quiet.contains("fixture warning line"), quiet)
  }

  /// A plugin metric that is NaN: the step's line stays in metrics.jsonl with the value as null,
  /// and keel train warns, naming the key (it used to drop the whole line silently).
  func testANaNPluginMetricIsWrittenAsNullWithAWarning() throws {
    let lib = try TestSupport.fixture("nan_metric.c")
    let out = TestSupport.tempDir("keel-nan-metric") + "/run"
    let r = try TestSupport.run(TestSupport.keel, ["train", "--out", out, "--quiet", "--preset", "test", "--steps", "2", "--objective", lib,
                                                   "--set", "coldstart.checkpoint=none"],
                                environment: ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""])
    XCTAssertEqual(r.status, 0, r.stdout)
    XCTAssertTrue(r.stdout.contains("warning: step 1: token_count not finite; written as null in metrics.jsonl"), r.stdout)
    let lines = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
      .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    XCTAssertEqual(lines.compactMap { $0["step"] as? Int }, [0, 1, 2], "every step's line is kept")
    for line in lines.dropFirst() {
      XCTAssertTrue(line["token_count"] is NSNull, "\(line)")
      XCTAssertNotNil(line["loss"] as? Double)
    }
  }

  func testFileDigestMatchesSha256sum() throws {
    let dir = TestSupport.tempDir("keel-digest")
    // "abc" is FIPS 180-2's example; the larger file crosses the 1 MiB read chunk
    try Data("abc".utf8).write(to: URL(fileURLWithPath: dir + "/abc"))
    XCTAssertEqual(FileDigest.sha256(dir + "/abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    var big = Data(count: (1 << 20) + 12_345)
    for i in 0..<big.count { big[i] = UInt8(truncatingIfNeeded: i &* 2_654_435_761 >> 7) }
    try big.write(to: URL(fileURLWithPath: dir + "/big"))
    let r = try TestSupport.run("/usr/bin/sha256sum", [dir + "/big"])
    XCTAssertEqual(FileDigest.sha256(dir + "/big"), String(r.stdout.prefix(64)))
    XCTAssertEqual(FileDigest.sha256(dir + "/missing"), "unavailable")
  }
}
