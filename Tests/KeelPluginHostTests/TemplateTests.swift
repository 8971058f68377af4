// TemplateTests.swift — every template compiles OUTSIDE SwiftPM (make + cc, or swiftc), loads
// through dlopen and passes every check of the validator. No keel rebuild is involved.
import Foundation
import KeelPluginHost
import KeelTestSupport
import XCTest

final class TemplateTests: XCTestCase {
  /// Copy templates/LANG/KIND to a temp dir and run make there.
  func buildTemplate(_ lang: String, _ kind: String) throws -> String {
    let dir = TestSupport.tempDir("keel-template")
    let src = TestSupport.root + "/templates/\(lang)/\(kind)"
    for f in try FileManager.default.contentsOfDirectory(atPath: src) {
      try FileManager.default.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
    }
    let r = try TestSupport.run("/usr/bin/make", ["-C", dir, "KEEL_INCLUDE=\(TestSupport.includeDir)", "CARGO=\(TestSupport.which("cargo") ?? "cargo")"])
    XCTAssertEqual(r.status, 0, r.stdout)
    return dir + "/libkeel-template-\(kind).so"
  }

  func checkAll(_ path: String, kind: PluginKind) throws {
    let lib = try PluginLibrary.load(path: path)
    XCTAssertEqual(lib.kind, kind)
    let results = PluginChecker(library: lib).run()
    XCTAssertFalse(results.isEmpty)
    for r in results { XCTAssertTrue(r.passed, "\(path): \(r.name): \(r.detail)") }
  }

  func testCObjectiveTemplate() throws {
    let path = try buildTemplate("c", "objective")
    try checkAll(path, kind: .objective)
    // It computes what it says: REINFORCE, −(1/S)·A per unmasked token.
    let inst = try ObjectiveInstance(library: try PluginLibrary.load(path: path))
    let r = try inst.compute(ObjectiveBatch(responses: [(0, 2, [-1, -2], [-1, -2], [-1, -2], [1, 0]), (0, -1, [-3], [-3], [-3], [1])]))
    XCTAssertEqual(r.gradLogp, [-1, 0, 0.5])
    XCTAssertEqual(r.loss, -0.5 * (2 * -1 + -1 * -3), accuracy: 1e-9)
  }

  func testCRewardTemplate() throws {
    let path = try buildTemplate("c", "reward")
    try checkAll(path, kind: .reward)
    let inst = try RewardInstance(library: try PluginLibrary.load(path: path))
    XCTAssertEqual(try inst.score([RewardSample(prompt: "", response: " 7 ", reference: "7"),
                                   RewardSample(prompt: "", response: "8", reference: "7")]).rewards, [1, 0])
  }

  func testCBaselineTemplate() throws {
    let path = try buildTemplate("c", "baseline")
    try checkAll(path, kind: .baseline)
    let inst = try BaselineInstance(library: try PluginLibrary.load(path: path))
    XCTAssertEqual(try inst.advantages(rewards: [1, 0, 4], groupIds: [5, 5, 2], lengths: [1, 1, 1]), [0.5, -0.5, 0])
  }

  func testSwiftObjectiveTemplate() throws {
    let path = try buildTemplate("swift", "objective")
    try checkAll(path, kind: .objective)
    let inst = try ObjectiveInstance(library: try PluginLibrary.load(path: path), settings: ["cap": .float(2)])
    // weight min(e^(−1−(−3)), 2) = 2 on token 0; e^0 = 1 on token 1; S = 1
    let r = try inst.compute(ObjectiveBatch(responses: [(0, 1, [-1, -2], [-1, -2], [-3, -2], [1, 1])]))
    XCTAssertEqual(r.gradLogp, [-2, -1])
  }

  func testRustObjectiveTemplate() throws {
    guard TestSupport.which("cargo") != nil else { throw XCTSkip("cargo is not installed: the Rust template is not tested here") }
    let path = try buildTemplate("rust", "objective")
    try checkAll(path, kind: .objective)
    let inst = try ObjectiveInstance(library: try PluginLibrary.load(path: path), settings: ["cap": .float(2)])
    let r = try inst.compute(ObjectiveBatch(responses: [(0, 1, [-1, -2], [-1, -2], [-3, -2], [1, 1])]))
    XCTAssertEqual(r.gradLogp, [-2, -1])
  }
}
