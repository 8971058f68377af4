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
