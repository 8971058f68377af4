// PluginParameters.swift — a run's parameter settings checked against a plugin's declared
// schema: unknown names (with the nearest valid ones), wrong types and out-of-range values
// are errors naming the parameter; the result has one value per declared parameter, in
// declaration order, defaults filled in — exactly what create() receives.

import KeelABI

extension PluginLibrary {
  /// Validate `settings` (name → value) and fill in defaults.
  public func resolveParameters(_ settings: [String: ParameterValue]) throws -> [(ParameterDeclaration, ParameterValue)] {
    let valid = parameters.map(\.name)
    for key in settings.keys.sorted() where !valid.contains(key) {
      throw PluginError.unknownParameter(plugin: name, path: path, key: key, valid: valid)
    }
    return try parameters.map { decl in
      guard let given = settings[decl.name] else { return (decl, decl.defaultValue) }
      return (decl, try coerce(given, to: decl))
    }
  }

  /// Parse textual settings (`--set eps_high=0.3`) by the declared types.
  public func parseParameters(_ settings: [String: String]) throws -> [String: ParameterValue] {
    let valid = parameters.map(\.name)
    var out: [String: ParameterValue] = [:]
    for (key, text) in settings {
      guard let decl = parameters.first(where: { $0.name == key }) else {
        throw PluginError.unknownParameter(plugin: name, path: path, key: key, valid: valid)
      }
      out[key] = try parseValue(text, for: decl)
    }
    return out
  }

  func parseValue(_ text: String, for decl: ParameterDeclaration) throws -> ParameterValue {
    let bad = PluginError.parameterType(plugin: name, path: path, key: decl.name, expected: decl.type.description, got: "'\(text)'")
    switch decl.type {
    case .float: guard let v = Double(text) else { throw bad }; return try coerce(.float(v), to: decl)
    case .int: guard let v = Int64(text) else { throw bad }; return try coerce(.int(v), to: decl)
    case .bool:
      switch text.lowercased() {
      case "true", "1", "yes", "on": return .bool(true)
      case "false", "0", "no", "off": return .bool(false)
      default: throw bad
      }
    case .string: return try coerce(.string(text), to: decl)
    }
  }

  func coerce(_ value: ParameterValue, to decl: ParameterDeclaration) throws -> ParameterValue {
    let mismatch = PluginError.parameterType(plugin: name, path: path, key: decl.name,
                                             expected: decl.type.description, got: "\(value.typeName) \(value)")
    func checkRange(_ x: Double) throws {
      guard x.isFinite || x.isInfinite && (x < 0 ? decl.minValue == -.infinity : decl.maxValue == .infinity),
            x >= decl.minValue, x <= decl.maxValue else {
        throw PluginError.parameterRange(plugin: name, path: path, key: decl.name, value: x, min: decl.minValue, max: decl.maxValue)
      }
    }
    switch (decl.type, value) {
    case (.float, .float(let v)): try checkRange(v); return .float(v)
    case (.float, .int(let v)): try checkRange(Double(v)); return .float(Double(v))
    case (.int, .int(let v)): try checkRange(Double(v)); return .int(v)
    case (.int, .float(let v)) where v.rounded() == v && abs(v) < 9e15: try checkRange(v); return .int(Int64(v))
    case (.bool, .bool(let v)): return .bool(v)
    case (.string, .string(let v)):
      if let choices = decl.choices, !choices.contains(v) {
        throw PluginError.parameterChoice(plugin: name, path: path, key: decl.name, value: v, choices: choices)
      }
      return .string(v)
    default: throw mismatch
    }
  }
}

/// C storage for one create() call: keeps the strings alive while the plugin reads them.
final class ParameterBlock {
  let values: UnsafeMutablePointer<keel_param_value>
  let count: Int
  private var strings: [UnsafeMutablePointer<CChar>] = []

  init(_ resolved: [(ParameterDeclaration, ParameterValue)]) {
    count = resolved.count
    values = .allocate(capacity: max(count, 1))
    for (i, (decl, value)) in resolved.enumerated() {
      let name = strdup(decl.name)!
      strings.append(name)
      var v = keel_param_value()
      v.struct_size = UInt32(MemoryLayout<keel_param_value>.size)
      v.type = decl.type.rawValue
      v.name = UnsafePointer(name)
      switch value {
      case .float(let x): v.f = x
      case .int(let x): v.i = x; v.f = Double(x)
      case .bool(let x): v.i = x ? 1 : 0
      case .string(let s):
        let p = strdup(s)!
        strings.append(p)
        v.s = UnsafePointer(p)
      }
      (values + i).initialize(to: v)
    }
  }

  /// `flags`: keel_params.instance_flags — holds the static flags on entry; create() may overwrite.
  func withParams<T>(flags: UnsafeMutablePointer<UInt32>, _ body: (UnsafePointer<keel_params>) throws -> T) rethrows -> T {
    var p = keel_params()
    p.struct_size = UInt32(MemoryLayout<keel_params>.size)
    p.count = UInt32(count)
    p.values = UnsafePointer(values)
    p.instance_flags = flags
    return try withUnsafePointer(to: &p) { try body($0) }
  }

  deinit {
    values.deinitialize(count: count)
    values.deallocate()
    strings.forEach { free($0) }
  }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
