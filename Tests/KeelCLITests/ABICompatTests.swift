// ABICompatTests.swift — ABI 1.1 against 1.0, both ways, with real libraries:
//  - a plugin built against the frozen 1.0 header (Tests/Fixtures/abi-1.0: 1.0's struct sizes,
//    abi_minor 0) loads under this 1.1 host, its parameters are read at their 1.0 stride, it is
//    asked for no 1.1 input, and it gives the same loss, gradient, metrics — and the same
//    training metrics, bit for bit — as the same source built against the 1.1 header;
//  - a 1.1 plugin run by a 1.0-only path (PluginLibrary.load with a 1.0 host ABI: the entry
//    receives 1.0, and the descriptor is checked against 1.0) is refused, naming both versions.
import Foundation
import KeelPluginHost
import KeelRL
import KeelTestSupport
import XCTest

final class ABICompatTests: XCTestCase {
  /// fixture v10_objective.c built against the 1.0 header (`v10`) or the current one.
  func build(v10: Bool) throws -> String {
    let dir = TestSupport.tempDir("keel-abi")
    let out = dir + "/libfixture-v10-\(v10 ? "abi10" : "abi11").so"
    let include = v10 ? TestSupport.root + "/Tests/Fixtures/abi-1.0" : TestSupport.includeDir
    let r = try TestSupport.run("/usr/bin/cc", ["-std=c11", "-O1", "-fPIC", "-shared", "-I", include, "-o", out,
                                                TestSupport.root + "/Tests/Fixtures/plugins/v10_objective.c"])
    XCTAssertEqual(r.status, 0, r.stdout)
    return out
  }

  func testA10PluginLoadsAndComputesAsIts11Build() throws {
    let old = try PluginLibrary.load(path: try build(v10: true)), new = try PluginLibrary.load(path: try build(v10: false))
    XCTAssertEqual(old.abiMinor, 0)
    XCTAssertEqual(new.abiMinor, 1)
    XCTAssertEqual(old.parameters, new.parameters)
    XCTAssertEqual(old.parameters.map(\.name), ["scale", "sign", "bonus"])
    XCTAssertEqual(old.parameters[1].defaultValue, .string("plus"))
    XCTAssertFalse(old.hasInstanceExtension)
    let settings: [String: ParameterValue] = ["scale": .float(0.7), "sign": .string("minus"), "bonus": .float(2)]
    let a = try ObjectiveInstance(library: old, settings: settings), b = try ObjectiveInstance(library: new, settings: settings)
    XCTAssertEqual(a.needs, 0)
    XCTAssertNil(try a.instanceExtension("org.keel.anything/1"))
    var batch = PluginChecker.objectiveBatch(responses: 6, seed: 4)
    // 1.1 inputs a 1.0 plugin did not ask for are not passed (and cannot change its result)
    batch.entropy = batch.logp.map { -$0 }
    let ra = try a.compute(batch), rb = try b.compute(batch)
    XCTAssertEqual(ra.loss, rb.loss)
    XCTAssertEqual(ra.gradLogp, rb.gradLogp)
    XCTAssertEqual(ra.metrics, rb.metrics)
    XCTAssertNil(ra.gradEntropy)
    // the hand-computed value: −(0.7/S) Σ m·w·A·logp with w = −(1 + 2·[first])
    var expected = 0.0
    for i in 0..<batch.numSequences {
      for t in Int(batch.seqOffsets[i])..<Int(batch.seqOffsets[i + 1]) where batch.mask[t] == 1 {
        let w = -(t == Int(batch.seqOffsets[i]) ? 3.0 : 1.0)
        expected += -0.7 * w * Double(batch.advantages[t]) / batch.totalSequences * Double(batch.logp[t])
      }
    }
    XCTAssertEqual(ra.loss, expected, accuracy: 1e-12 * max(1, abs(expected)))
    // the 1.0 plugin's parameters are still validated by the host
    XCTAssertThrowsError(try ObjectiveInstance(library: old, settings: ["scale": .float(11)]))
  }

  func testA10PluginTrainsBitIdenticallyToIts11Build() throws {
    var runs: [[NSDictionary]] = []
    for v10 in [true, false] {
      let out = TestSupport.tempDir("keel-abi-run")
      let r = try TestSupport.run(TestSupport.keel, ["train", "--out", out, "--quiet", "--preset", "test", "--steps", "3",
                                                     "--objective", try build(v10: v10), "--set", "objective.params.bonus=0.5"])
      XCTAssertEqual(r.status, 0, r.stdout)
      runs.append(try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
        NSDictionary(dictionary: (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]).filter { !timingKeys.contains($0.key) })
      })
    }
    XCTAssertGreaterThanOrEqual(runs[0].count, 3)
    XCTAssertEqual(runs[0], runs[1])
  }

  func testA11PluginIsRefusedByA10HostNamingBothVersions() throws {
    let host10 = ABIVersion(1, 0)
    // a built-in (1.1): its entry refuses a 1.0 host; the host names what the plugin is built for
    let minirl = TestSupport.binDir + "/libkeel-minirl.so"
    XCTAssertEqual(try PluginLibrary.load(path: minirl).abiMinor, 1)
    XCTAssertThrowsError(try PluginLibrary.load(path: minirl, hostABI: host10)) { e in
      let m = "\(e)"
      XCTAssertTrue(m.contains("refused host ABI 1.0") && m.contains("built for ABI 1.1"), m)
    }
    // a test fixture built against the 1.1 header, refused the same way
    let dir = TestSupport.tempDir("keel-abi")
    let lib = try TestSupport.compileLibrary([TestSupport.root + "/Tests/Fixtures/plugins/typed_params.c"], into: dir, name: "libtyped.so")
    XCTAssertEqual(try PluginLibrary.load(path: lib).abiMinor, 1)
    XCTAssertThrowsError(try PluginLibrary.load(path: lib, hostABI: host10)) { e in
      let m = "\(e)"
      XCTAssertTrue(m.contains("refused host ABI 1.0") && m.contains("built for ABI 1.1"), m)
    }
    // a plugin whose entry does not check its host (minor_newer.c, built for 1.2): the host's own check
    XCTAssertThrowsError(try PluginLibrary.load(path: try TestSupport.fixture("minor_newer.c"), hostABI: host10)) { e in
      let m = "\(e)"
      XCTAssertTrue(m.contains("needs ABI 1.2") && m.contains("hosts ABI 1.0"), m)
    }
    // and a 1.0 plugin is fine for the 1.0 host
    XCTAssertEqual(try PluginLibrary.load(path: try build(v10: true), hostABI: host10).abiMinor, 0)
  }
}
