// ABI11HostTests.swift — the host side of ABI 1.1's per-instance contracts, with real
// libraries: flags written by create (what each instance needs, from its parameters), the
// host's validation of `choices` (values and declarations), the instance-level extension
// query, and the refusal of a call that lacks an input the instance asked for.
import KeelABI
import KeelPluginHost
import KeelTestSupport
import XCTest

final class ABI11HostTests: XCTestCase {
  func needs(_ name: String, _ settings: [String: ParameterValue] = [:]) throws -> [ObjectiveNeed] {
    try ObjectiveInstance(library: try builtin(name), settings: settings).needed
  }

  func testInstanceFlagsFollowTheParameters() throws {
    XCTAssertEqual(try needs("grpo"), [])
    XCTAssertEqual(try needs("grpo", ["kl_coef": .float(0.1)]), [.reference])
    XCTAssertEqual(try needs("grpo", ["kl_coef": .float(0.1), "kl_estimator": .string("full")]), [.referenceKL])
    XCTAssertEqual(try needs("ppo-clip", ["entropy_coef": .float(0.01)]), [.entropy])
    XCTAssertEqual(try needs("minirl"), [])
    XCTAssertEqual(try needs("minirl", ["entropy_coef": .float(0.01)]), [.entropy])
    XCTAssertEqual(try needs("on-policy-distill"), [.teacher])
    XCTAssertEqual(try needs("on-policy-distill", ["mode": .string("full")]), [.teacherKL])
    // two instances of one library keep their own flags
    let a = try ObjectiveInstance(library: try builtin("dapo"), settings: ["entropy_coef": .float(0.1)])
    let b = try ObjectiveInstance(library: try builtin("dapo"))
    XCTAssertEqual(a.needed, [.entropy])
    XCTAssertEqual(b.needed, [])
  }

  func testACallWithoutANeededInputIsRefusedNamingIt() throws {
    let inst = try ObjectiveInstance(library: try builtin("ppo-clip"), settings: ["entropy_coef": .float(0.1)])
    let batch = PluginChecker.objectiveBatch(responses: 4, seed: 2)
    XCTAssertThrowsError(try inst.compute(batch)) { XCTAssertTrue("\($0)".contains("needs entropy"), "\($0)") }
    var ok = batch
    ok.entropy = batch.logp.map { -$0 }
    let r = try inst.compute(ok)
    XCTAssertNotNil(r.gradEntropy)
    XCTAssertNil(r.gradKlRef)
    // a term the instance did not ask for is not passed (and gets no gradient slot)
    let plain = try ObjectiveInstance(library: try builtin("ppo-clip"))
    XCTAssertNil(try plain.compute(ok).gradEntropy)
    XCTAssertEqual(try plain.compute(ok).loss, try plain.compute(batch).loss)
  }

  func testChoicesAreValidatedByTheHost() throws {
    let grpo = try builtin("grpo")
    XCTAssertEqual(grpo.parameters.first { $0.name == "kl_estimator" }?.choices, ["k3", "full"])
    XCTAssertNil(grpo.parameters.first { $0.name == "eps_low" }?.choices)
    for attempt in [{ _ = try ObjectiveInstance(library: grpo, settings: ["kl_estimator": .string("k2")]) },
                    { _ = try grpo.parseParameters(["kl_estimator": "k2"]) }] {
      XCTAssertThrowsError(try attempt()) { e in
        let m = "\(e)"
        XCTAssertTrue(m.contains("kl_estimator") && m.contains("'k2'") && m.contains("k3 | full"), m)
      }
    }
    // a descriptor whose default is not among its choices is refused
    XCTAssertThrowsError(try PluginLibrary.load(path: try TestSupport.fixture("bad_choices.c"))) { e in
      let m = "\(e)"
      XCTAssertTrue(m.contains("mode") && m.contains("fast | exact") && m.contains("invalid descriptor"), m)
    }
  }

  func testInstanceExtensionsBelongToTheirInstance() throws {
    let lib = try PluginLibrary.load(path: try TestSupport.fixture("instance_ext.c"))
    XCTAssertTrue(lib.hasInstanceExtension)
    let a = try ObjectiveInstance(library: lib, settings: ["scale": .float(2.5)])
    let b = try ObjectiveInstance(library: lib, settings: ["scale": .float(0.5)])
    let ta = try XCTUnwrap(try a.instanceExtension("org.keel.test.echo/1"))
    let tb = try XCTUnwrap(try b.instanceExtension("org.keel.test.echo/1"))
    XCTAssertEqual(ta.load(as: UInt32.self), 16)
    XCTAssertEqual(ta.load(fromByteOffset: 8, as: Double.self), 2.5)
    XCTAssertEqual(tb.load(fromByteOffset: 8, as: Double.self), 0.5)
    XCTAssertEqual(try a.instanceExtension("org.keel.test.echo/1"), ta, "the same table for the same id")
    XCTAssertNil(try a.instanceExtension("org.keel.test.echo/2"))
    // a plugin without the entry answers nil
    XCTAssertNil(try ObjectiveInstance(library: try builtin("minirl")).instanceExtension("org.keel.test.echo/1"))
  }

  func testInstancesThatAreNotAdditiveOverCallsSaySo() throws {
    func reason(_ name: String, _ settings: [String: ParameterValue] = [:]) throws -> String? {
      try ObjectiveInstance(library: try builtin(name), settings: settings).perCallReason()
    }
    XCTAssertNotNil(try reason("clip-cov"))
    XCTAssertNotNil(try reason("kl-cov"))
    XCTAssertNil(try reason("ppo-clip"))
    let rejection: [String: ParameterValue] = ["tis_mode": .string("sequence"), "rejection": .bool(true)]
    XCTAssertNotNil(try reason("ppo-clip", rejection))
    var perResponse = rejection
    perResponse["loss_agg_mode"] = .string("seq-mean-token-mean")
    XCTAssertNil(try reason("ppo-clip", perResponse), "per-response denominators are exact")
    // the validator reports the split instead of failing it, for exactly those instances
    let results = PluginChecker(library: try builtin("ppo-clip"), settings: rejection).run()
    let split = try XCTUnwrap(results.first { $0.name == "micro-batch split" })
    XCTAssertTrue(split.passed && split.detail.contains("not additive over calls"), split.detail)
    XCTAssertTrue(results.allSatisfy(\.passed), "\(results.filter { !$0.passed })")
  }

  func testBatchFileLogitsAreEveryResponsesOrNone() throws {
    let path = TestSupport.tempDir("keel-batch") + "/b.json"
    let r0 = #"{"advantage": 1, "logp": [-0.5], "logp_old": [-0.5], "logp_rollout": [-0.5]}"#
    let r1 = #"{"advantage": 1, "logp": [-0.5], "logp_old": [-0.5], "logp_rollout": [-0.5], "logits": [[0.1, 0.2, 0.3]]}"#
    for (responses, bad) in [("[\(r0), \(r1)]", "responses[1].logits is given"), ("[\(r1), \(r0)]", "responses[1].logits is missing")] {
      try #"{"responses": \#(responses)}"#.write(toFile: path, atomically: true, encoding: .utf8)
      XCTAssertThrowsError(try BatchFile.objective(path)) { XCTAssertTrue("\($0)".contains(bad), "\($0)") }
    }
    try #"{"responses": [\#(r1), \#(r1)]}"#.write(toFile: path, atomically: true, encoding: .utf8)
    let (b, _) = try BatchFile.objective(path)
    XCTAssertEqual(b.vocabSize, 3)
    XCTAssertEqual(b.logits, [0.1, 0.2, 0.3, 0.1, 0.2, 0.3])
  }
}
