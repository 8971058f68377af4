// RunConfigTests.swift — the typed configuration covers the schema: every key is read when a
// configuration is decoded, and every key, set to another valid value, changes the decoded
// RunConfig (so no key is read and then dropped on the way to its section).
import KeelRL
import XCTest

final class RunConfigTests: XCTestCase {
  func testEverySchemaKeyIsReadByTheTypedConfig() throws {
    let resolved = try ConfigSchema.resolve(file: [:], overrides: [:])
    let read = RunConfig.consumedKeys(resolved)
    let schema = Set(ConfigSchema.keys.map(\.key))
    XCTAssertEqual(schema.subtracting(read).sorted(), [], "schema keys RunConfig never reads")
    XCTAssertEqual(read.subtracting(schema).sorted(), [], "keys RunConfig reads that the schema lacks")
  }

  /// A valid value other than the key's default: within its bounds, among its choices.
  static func otherValue(_ k: ConfigKey) -> String {
    switch (k.kind, k.defaultValue) {
    case (.bool, .bool(let b)): return b ? "false" : "true"
    case (.int, .int(let v)):
      let b = ConfigSchema.bounds[k.key] ?? 0...1e9
      return String(Double(v + 1) <= b.upperBound ? v + 1 : v - 1)
    case (.float, .float(let v)):
      let b = ConfigSchema.bounds[k.key] ?? -1e9...1e9
      let x = v + 0.5 <= b.upperBound ? v + 0.5 : (v / 2 >= b.lowerBound && v / 2 != v ? v / 2 : b.lowerBound)
      return "\(x)"
    case (.string, .string(let s)):
      if let choices = k.choices { return choices.first { $0 != s }! }
      return s + "-other"
    case (.optionalString, _): return "something"
    default: XCTFail("\(k.key): unexpected kind \(k.kind) with default \(k.defaultValue)"); return ""
    }
  }

  func testEveryKeyReachesItsTypedField() throws {
    let base = try RunConfig.resolve(file: [:], overrides: [:])
    for k in ConfigSchema.keys {
      let value = Self.otherValue(k)
      let changed: RunConfig
      do { changed = try RunConfig.resolve(file: [:], overrides: [k.key: value]) } catch {
        XCTFail("\(k.key)=\(value) did not resolve: \(error)"); continue
      }
      // `preset: test` changes other keys' values; every other key changes exactly its own field
      XCTAssertNotEqual(changed, base, "\(k.key)=\(value) left the typed configuration unchanged")
    }
  }

  func testEnumsDecodeFromTheirSchemaChoices() throws {
    let c = try RunConfig.resolve(file: [:], overrides: ["train.routing_replay": "R3", "train.on_nan": "skip", "train.schedule": "cosine",
                                                        "sampler.precision": "fp8"])
    XCTAssertEqual(c.train.routingReplay, .r3)
    XCTAssertEqual(c.train.onNaN, .skip)
    XCTAssertEqual(c.train.schedule, .cosine)
    XCTAssertEqual(c.sampler.precision, .fp8)
  }
}

/// time_to_target: the first crossing the next evaluation holds (a crossing that falls back
/// does not count), else the first crossing, unheld.
final class TargetRuleTests: XCTestCase {
  func testTheFirstHeldCrossingCounts() {
    let evals: [(step: Int, greedy: Double, trainSeconds: Double)] = [
      (0, 0.25, 0), (10, 0.51, 3), (20, 0.48, 6), (30, 0.52, 9), (40, 0.50, 12), (50, 0.55, 15),
    ]
    let t = Summary.target(evals, target: 0.50)
    XCTAssertEqual(t?.step, 30)
    XCTAssertEqual(t?.trainSeconds, 9)
    XCTAssertEqual(t?.held, true)
    let unheld = Summary.target(Array(evals.prefix(3)), target: 0.50)
    XCTAssertEqual(unheld?.step, 10)
    XCTAssertEqual(unheld?.held, false)
    XCTAssertNil(Summary.target(evals, target: 0.9))
    // the cold start (step 0) is never the hit, even when it is above the target
    XCTAssertEqual(Summary.target([(0, 0.9, 0), (10, 0.9, 1), (20, 0.9, 2)], target: 0.5)?.step, 10)
  }
}
