// FaultMatrixTests.swift — every way a plugin can be wrong, each its own test, each a clear
// PluginError naming the file (and the plugin where known) — and no crash. The segfaulting
// plugin is in KeelCLITests (it needs the child process of `keel plugins check`).
import Foundation
import KeelPluginHost
import KeelTestSupport
import XCTest

final class FaultMatrixTests: XCTestCase {
  func expectError(_ body: () throws -> Any, contains needles: [String], file: StaticString = #filePath, line: UInt = #line) {
    do {
      _ = try body()
      XCTFail("expected an error containing \(needles)", file: file, line: line)
    } catch {
      let text = "\(error)"
      for n in needles { XCTAssertTrue(text.contains(n), "'\(text)' lacks '\(n)'", file: file, line: line) }
    }
  }

  func testFileMissing() {
    expectError({ try PluginLibrary.load(path: "/nonexistent/libnothing.so") }, contains: ["/nonexistent/libnothing.so", "does not exist"])
  }

  func testNotASharedLibrary() throws {
    let path = TestSupport.tempDir() + "/libtext.so"
    try "not an ELF file\n".write(toFile: path, atomically: true, encoding: .utf8)
    expectError({ try PluginLibrary.load(path: path) }, contains: [path, "cannot load plugin", "shared library"])
  }

  func testNoEntrySymbol() throws {
    let path = try TestSupport.fixture("no_entry.c")
    expectError({ try PluginLibrary.load(path: path) }, contains: [path, "keel_plugin_entry", "not a Keel plugin"])
  }

  func testEntryReturnsNull() throws {
    let path = try TestSupport.fixture("null_entry.c")
    expectError({ try PluginLibrary.load(path: path) }, contains: [path, "returned NULL", "refused host ABI 1.1"])
  }

  func testABIMajorMismatch() throws {
    let path = try TestSupport.fixture("abi_major.c")
    expectError({ try PluginLibrary.load(path: path) }, contains: [path, "fixture-abi-major", "2.0", "1.1", "major"])
  }

  func testPluginMinorNewerThanHost() throws {
    let path = try TestSupport.fixture("minor_newer.c")
    expectError({ try PluginLibrary.load(path: path) }, contains: [path, "fixture-minor-newer", "1.1", "Upgrade keel"])
  }

  func testWrongKind() throws {
    let discovery = PluginDiscovery(directories: [TestSupport.binDir])
    expectError({ try discovery.resolve("exact-match", kind: .objective) }, contains: ["exact-match", "reward plugin", "objective was expected"])
    let reward = try discovery.resolve("exact-match")
    expectError({ try ObjectiveInstance(library: reward) }, contains: ["exact-match", "objective was expected"])
  }

  func testDescriptorStructSizeTooSmall() throws {
    let path = try TestSupport.fixture("small_struct.c")
    expectError({ try PluginLibrary.load(path: path) }, contains: [path, "struct_size 16"])
  }

  func testUnknownParameterNamesTheNearestValidOnes() throws {
    let lib = try PluginDiscovery(directories: [TestSupport.binDir]).resolve("minirl")
    expectError({ try ObjectiveInstance(library: lib, settings: ["eps_hgih": .float(0.3)]) },
                contains: ["eps_hgih", "did you mean 'eps_high'", "eps_low, eps_high, tis_cap", "minirl"])
    expectError({ try lib.parseParameters(["nope": "1"]) }, contains: ["no parameter 'nope'"])
  }

  func testParameterOfTheWrongType() throws {
    let lib = try PluginLibrary.load(path: try TestSupport.fixture("typed_params.c"))
    expectError({ try ObjectiveInstance(library: lib, settings: ["alpha": .string("big")]) }, contains: ["alpha", "expects float", "fixture-params"])
    expectError({ try ObjectiveInstance(library: lib, settings: ["count": .float(2.5)]) }, contains: ["count", "expects int"])
    expectError({ try ObjectiveInstance(library: lib, settings: ["flag": .int(1)]) }, contains: ["flag", "expects bool"])
    expectError({ try lib.parseParameters(["alpha": "abc"]) }, contains: ["alpha", "expects float", "'abc'"])
    expectError({ try ObjectiveInstance(library: lib, settings: ["alpha": .float(2)]) }, contains: ["alpha", "outside its range [0.0, 1.0]"])
    // Well-typed values pass (int accepted for a float), and create() sees them.
    let ok = try ObjectiveInstance(library: lib, settings: ["alpha": .int(1), "count": .int(4), "flag": .bool(true), "label": .string("y")])
    XCTAssertEqual(ok.parameters.map(\.1), [.float(1), .int(4), .bool(true), .string("y")])
    // create() refusing is an error with the plugin's message.
    expectError({ try ObjectiveInstance(library: lib, settings: ["label": .string("fail")]) }, contains: ["failed to create", "refusing"])
  }

  func testPluginReturnsErrorStatus() throws {
    let lib = try PluginLibrary.load(path: try TestSupport.fixture("error_status.c"))
    let inst = try ObjectiveInstance(library: lib)
    expectError({ try inst.compute(PluginChecker.objectiveBatch(responses: 2, seed: 1)) },
                contains: ["fixture-error", lib.path, "KEEL_ERR_INVALID_ARGUMENT", "refused on purpose"])
  }

  func testPluginReturnsNaNLossOrGradient() throws {
    let lib = try PluginLibrary.load(path: try TestSupport.fixture("nan_output.c"))
    let inst = try ObjectiveInstance(library: lib)
    expectError({ try inst.compute(PluginChecker.objectiveBatch(responses: 2, seed: 1)) },
                contains: ["fixture-nan", lib.path, "non-finite loss"])
    // …and the checker's NaN rule reports it as an output, not a crash.
    let results = PluginChecker(library: lib).run()
    XCTAssertFalse(results.first { $0.name == "mixed batch" }!.passed)
  }

  func testNamesResolveThroughKeelPluginPathFirst() throws {
    // A user directory on KEEL_PLUGIN_PATH is searched before the built-ins; unknown names list what exists.
    let dir = TestSupport.tempDir()
    _ = try TestSupport.compileLibrary([TestSupport.root + "/Tests/Fixtures/plugins/typed_params.c"], into: dir, name: "libmine.so")
    let d = PluginDiscovery.standard(environment: ["KEEL_PLUGIN_PATH": dir])
    XCTAssertEqual(d.directories.first, dir)
    XCTAssertEqual(try d.resolve("fixture-params").path, dir + "/libmine.so")
    XCTAssertEqual(try d.resolve("minirl").name, "minirl")
    expectError({ try d.resolve("minrl") }, contains: ["no plugin named 'minrl'", "minirl", "reinforce", "KEEL_PLUGIN_PATH"])
  }

  func testANameWhoseLibraryIsBrokenSaysWhyNotJustNotFound() throws {
    let dir = TestSupport.tempDir()
    _ = try TestSupport.compileLibrary([TestSupport.root + "/Tests/Fixtures/plugins/abi_major.c"], into: dir, name: "libfixture-abi-major.so")
    let d = PluginDiscovery(directories: [dir])
    expectError({ try d.resolve("fixture-abi-major") }, contains: ["implements ABI 2.0 but this keel hosts ABI 1.1"])
  }
}
