// PluginStateTests.swift — a stateful plugin's blob round-trips through save/load, so a
// restored instance continues exactly; a wrong blob is a clear error.
import KeelPluginHost
import KeelTestSupport
import XCTest

final class PluginStateTests: XCTestCase {
  func testStateRoundTripContinuesTheRun() throws {
    let lib = try PluginLibrary.load(path: try TestSupport.fixture("stateful.c"))
    XCTAssertTrue(lib.hasState)
    let batch = PluginChecker.objectiveBatch(responses: 2, seed: 1)
    let a = try ObjectiveInstance(library: lib)
    for _ in 0..<3 { _ = try a.compute(batch) }
    let blob = try a.saveState()
    XCTAssertEqual(blob, [3, 0, 0, 0, 0, 0, 0, 0])
    let b = try ObjectiveInstance(library: lib)
    try b.loadState(blob)
    XCTAssertEqual(try b.compute(batch).metrics, [4])
    XCTAssertEqual(try a.compute(batch).metrics, [4], "instances are independent")
    XCTAssertThrowsError(try b.loadState([1, 2, 3])) { XCTAssertTrue("\($0)".contains("KEEL_ERR_STATE")); XCTAssertTrue("\($0)".contains("must be 8 bytes")) }
  }

  func testStatelessPluginRefusesABlob() throws {
    let lib = try PluginDiscovery(directories: [TestSupport.binDir]).resolve("minirl")
    let inst = try ObjectiveInstance(library: lib)
    XCTAssertEqual(try inst.saveState(), [])
    XCTAssertNoThrow(try inst.loadState([]))
    XCTAssertThrowsError(try inst.loadState([1])) { XCTAssertTrue("\($0)".contains("is stateless")) }
  }
}
