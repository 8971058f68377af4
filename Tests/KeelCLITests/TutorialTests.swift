// TutorialTests.swift — runs every `sh` block of docs/plugin-guide.md, in order, in a fresh
// directory with the built `keel` first on PATH, so the tutorial stays true. Each block must
// exit 0; the tutorial's key outcomes are then checked on disk.
import Foundation
import KeelTestSupport
import XCTest

final class TutorialTests: XCTestCase {
  func testPluginGuideCommandsRun() throws {
    let doc = try String(contentsOfFile: TestSupport.root + "/docs/plugin-guide.md", encoding: .utf8)
    var blocks: [String] = []
    var current: [String]? = nil
    for line in doc.split(separator: "\n", omittingEmptySubsequences: false) {
      if current == nil, line == "```sh" { current = []; continue }
      if current != nil, line == "```" { blocks.append(current!.joined(separator: "\n")); current = nil; continue }
      current?.append(String(line))
    }
    XCTAssertGreaterThanOrEqual(blocks.count, 6)
    let dir = TestSupport.tempDir("keel-tutorial")
    let env = ["PATH": TestSupport.binDir + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
               "KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]
    for (i, block) in blocks.enumerated() {
      let r = try TestSupport.run("/bin/bash", ["-euo", "pipefail", "-c", block], cwd: dir, environment: env)
      XCTAssertEqual(r.status, 0, "tutorial block \(i + 1) failed:\n\(block)\n---\n\(r.stdout)")
      if r.status != 0 { return }
    }
    XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/my-loss/libmy-loss.so"))
    XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/runs/mine/summary.json"))
    let report = try String(contentsOfFile: dir + "/runs/cmp/report.md", encoding: .utf8)
    XCTAssertTrue(report.contains("| mine |") && report.contains("| minirl |"), report)
  }
}
