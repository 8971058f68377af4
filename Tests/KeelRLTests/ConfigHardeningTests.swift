// ConfigHardeningTests.swift — a configuration comes from anyone: every number key has bounds
// checked when the configuration resolves (each issue reproducer — minibatches 0, seed −1,
// digits 19, temperature 1e300, 1e8 prompts, 100,000 threads, lr 1e300, steps −5 — is an
// error naming the key, before anything divides, allocates or traps), products of keys are
// bounded, the built-in tasks refuse settings whose answers overflow, and YAML cannot nest or
// alias without bound (a 5,000-deep document, a "billion laughs" alias bomb).
import Foundation
import KeelRL
import KeelTasks
import XCTest

final class ConfigHardeningTests: XCTestCase {
  func resolveError(_ overrides: [String: String], file: StaticString = #filePath, line: UInt = #line) -> String? {
    do { _ = try ConfigSchema.resolve(file: [:], overrides: overrides); return nil } catch { return "\(error)" }
  }

  func testEveryNumberKeyHasBoundsAndTheyAreEnforced() throws {
    let numbers = ConfigSchema.keys.filter { $0.kind == .int || $0.kind == .float }
    XCTAssertEqual(Set(numbers.map(\.key)), Set(ConfigSchema.bounds.keys), "bounds for exactly the number keys")
    for k in numbers {
      let b = ConfigSchema.bounds[k.key]!
      // the default is within bounds
      let def: Double
      switch k.defaultValue { case .int(let i): def = Double(i); case .float(let d): def = d; default: def = .nan }
      XCTAssertTrue(b.contains(def), "\(k.key) default \(def) outside \(b)")
      for outside in [b.upperBound * 10 + 1, b.lowerBound - 1 - abs(b.lowerBound)] {
        let text = k.kind == .int ? String(Int(outside.rounded(.down))) : String(outside)
        let e = resolveError([k.key: text])
        XCTAssertNotNil(e, "\(k.key)=\(text) accepted")
        XCTAssertTrue(e?.contains("config key '\(k.key)'") ?? false, "\(k.key)=\(text): \(e ?? "")")
      }
    }
  }

  func testTheIssuesReproducersAreErrorsNamingTheKey() {
    for (key, value) in [("train.minibatches", "0"), ("seed", "-1"), ("task.digits", "19"), ("sampler.temperature", "1e300"),
                         ("rollout.prompts", "100000000"), ("rollout.group_size", "100000000"), ("eval.samples", "100000000"),
                         ("coldstart.batch", "100000000"), ("train.threads", "100000"), ("train.lr", "1e300"), ("steps", "-5")] {
      let e = resolveError([key: value])
      XCTAssertTrue(e?.contains("config key '\(key)' expects") ?? false, "\(key)=\(value): \(e ?? "accepted")")
    }
    // products: within each bound, beyond together
    XCTAssertTrue(resolveError(["rollout.prompts": "65536", "rollout.group_size": "4096"])?.contains("rollout.prompts × rollout.group_size") ?? false)
    XCTAssertNil(resolveError(["rollout.prompts": "64", "rollout.group_size": "16", "train.minibatches": "4"]))
  }

  func testBuiltInTasksRefuseSettingsWhoseAnswersOverflow() {
    for (name, digits, terms, needle) in [("addition", 19, nil as Int?, "task.digits must be in 1…9"), ("countdown", nil, 100, "task.terms must be in 2…12"),
                                          ("arithmetic", 9, 12, "can exceed a 64-bit answer"), ("sorting", nil, 1000, "task.terms must be in 1…64")] {
      XCTAssertThrowsError(try TaskRegistry.make(name, digits: digits, terms: terms), name) { XCTAssertTrue("\($0)".contains(needle), "\($0)") }
    }
    XCTAssertNoThrow(try TaskRegistry.make("arithmetic", digits: 2, terms: 3))
    XCTAssertNoThrow(try TaskRegistry.make("scratchpad", digits: 1, terms: 4))
  }

  func testYAMLCannotNestOrAliasWithoutBound() throws {
    // 5,000 levels, block style (10 KB) and flow style
    var block = ""
    for i in 0..<5000 { block += String(repeating: " ", count: i) + "k\(i):\n" }
    XCTAssertThrowsError(try ConfigSchema.flatten(yaml: block, source: "deep.yaml")) { XCTAssertTrue("\($0)".contains("deep.yaml"), "\($0)") }
    let flow = "a: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"
    XCTAssertThrowsError(try ConfigSchema.flatten(yaml: flow, source: "flow.yaml")) { XCTAssertTrue("\($0)".contains("brackets nested more than 64"), "\($0)") }
    let dashes = "a:\n" + String(repeating: "- ", count: 3000) + "x\n"
    XCTAssertThrowsError(try ConfigSchema.flatten(yaml: dashes, source: "dash.yaml"))
    // billion laughs: 9 levels of 9 aliases each (~387 M expansions), a few hundred bytes
    var bomb = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
    var prev = "a"
    for c in ["b", "c", "d", "e", "f", "g", "h", "i"] {
      bomb += "\(c): &\(c) [" + Array(repeating: "*\(prev)", count: 9).joined(separator: ",") + "]\n"
      prev = c
    }
    XCTAssertLessThan(bomb.utf8.count, 400)
    let t0 = Date()
    XCTAssertThrowsError(try ConfigSchema.flatten(yaml: bomb, source: "bomb.yaml")) { XCTAssertTrue("\($0)".contains("more than 100000 values"), "\($0)") }
    XCTAssertLessThan(Date().timeIntervalSince(t0), 10, "bounded work")
    // a mapping bomb through aliases is bounded too
    var mbomb = "a: &a {x: 1, y: 2, z: 3}\n"
    prev = "a"
    for c in ["b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m"] {
      mbomb += "\(c): &\(c) {p: *\(prev), q: *\(prev), r: *\(prev), s: *\(prev)}\n"
      prev = c
    }
    XCTAssertThrowsError(try ConfigSchema.flatten(yaml: mbomb, source: "mbomb.yaml"))
    // too big a file
    XCTAssertThrowsError(try ConfigSchema.flatten(yaml: "a: " + String(repeating: "x", count: 2 << 20), source: "big.yaml")) {
      XCTAssertTrue("\($0)".contains("a config file may have at most"), "\($0)")
    }
  }

  func testOrdinaryYAMLFlattensAsBefore() throws {
    let text = """
    seed: 3
    steps: 20
    train: {lr: 1e-4, threads: 1}
    task:
      name: scratchpad
      marker: null
      eval_path: ~
    diagnostics:
      enabled: yes
    reward:
      params: {marker: "#", numbers: [1, 2, 3]}
    sampler: {temperature: 0.7}
    """
    let flat = try ConfigSchema.flatten(yaml: text, source: "ok.yaml")
    XCTAssertEqual(flat["seed"], "3")
    XCTAssertEqual(flat["train.lr"], "0.0001")
    XCTAssertEqual(flat["task.marker"], "null")
    XCTAssertEqual(flat["task.eval_path"], "null")
    XCTAssertEqual(flat["diagnostics.enabled"], "true")
    XCTAssertEqual(flat["reward.params.marker"], "#")
    XCTAssertEqual(flat["reward.params.numbers"], "[1, 2, 3]")
    let c = try RunConfig.resolve(file: flat, overrides: [:])
    XCTAssertEqual(c.train.lr, 1e-4)
    XCTAssertEqual(c.sampler.temperature, 0.7)
    XCTAssertTrue(c.diagnostics.enabled)
    XCTAssertNil(c.task.marker)
  }
}
