// FuzzTests.swift — the short fuzz run of CI: `keel fuzz` replays every regression input
// (Tests/Fixtures/fuzz/regressions: the reproducers — a NaN weight, shapes that
// overflow, config.json sizes, YAML bombs and deep nesting, batch numbers beyond Int64 and
// float32, …) and 150 mutations per reader; any crash, hang over 10 s or peak RSS over 2 GB
// fails it (the process ends non-zero and names the input). The long run: docs/security.md.
import Foundation
import KeelTestSupport
import XCTest

final class FuzzTests: XCTestCase {
  func testEveryReaderSurvivesItsRegressionsAndAShortFuzzRun() throws {
    let crash = TestSupport.tempDir("keel-fuzz-ci")
    let r = try TestSupport.run(TestSupport.keel, ["fuzz", "--count", "150", "--seed", "7", "--root", TestSupport.root, "--crash-dir", crash],
                                environment: ["KEEL_PLUGIN_PATH": ""])
    XCTAssertEqual(r.status, 0, r.stdout)
    XCTAssertFalse(r.signaled, r.stdout)
    for reader in ["safetensors", "config", "optimizer", "yaml", "jsonl", "batch", "tokens", "tokenizer", "runstate"] {
      XCTAssertTrue(r.stdout.contains("fuzz \(reader): "), "reader \(reader) did not run: " + r.stdout)
    }
    XCTAssertTrue(r.stdout.contains("no crash, hang or runaway memory"), r.stdout)
    // every regression input was replayed
    let regressions = TestSupport.root + "/Tests/Fixtures/fuzz/regressions"
    for reader in try FileManager.default.contentsOfDirectory(atPath: regressions) {
      let n = try FileManager.default.contentsOfDirectory(atPath: regressions + "/" + reader).count
      XCTAssertTrue(r.stdout.contains("fuzz \(reader): \(150 + n) inputs (\(n) regressions)"), reader + ": " + r.stdout)
    }
  }
}
