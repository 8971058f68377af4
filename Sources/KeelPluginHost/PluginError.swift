// PluginError.swift — every way a plugin can fail, as one Swift error whose description
// names the file, the plugin (when known) and what to do next.

import KeelABI

public enum PluginError: Error, CustomStringConvertible, Equatable {
  case fileNotFound(path: String)
  case notFound(name: String, searched: [String], available: [String])
  /// Code named by a file (not the command line) outside every trusted place.
  case untrusted(reference: String, key: String, source: String)
  case loadFailed(path: String, reason: String)
  case missingEntry(path: String, reason: String)
  case entryReturnedNull(path: String, host: ABIVersion, plugin: ABIVersion?)
  case descriptorTooSmall(path: String, size: UInt32, minimum: Int)
  case abiMajorMismatch(path: String, name: String, plugin: (UInt32, UInt32))
  case abiMinorTooNew(path: String, name: String, plugin: (UInt32, UInt32), host: ABIVersion)
  case invalidDescriptor(path: String, name: String, reason: String)
  case wrongKind(path: String, name: String, expected: PluginKind, actual: PluginKind)
  case unknownParameter(plugin: String, path: String, key: String, valid: [String])
  case parameterType(plugin: String, path: String, key: String, expected: String, got: String)
  case parameterRange(plugin: String, path: String, key: String, value: Double, min: Double, max: Double)
  case parameterChoice(plugin: String, path: String, key: String, value: String, choices: [String])
  case createFailed(path: String, name: String, status: Int32, message: String)
  case callFailed(path: String, name: String, function: String, status: Int32, message: String)
  case nonFinite(path: String, name: String, what: String)
  case invalidInput(String)
  case foreign(String)

  public static func == (a: PluginError, b: PluginError) -> Bool { a.description == b.description }

  static func version(_ v: (UInt32, UInt32)) -> String { "\(v.0).\(v.1)" }
  static var hostVersion: String { "\(KEEL_ABI_MAJOR).\(KEEL_ABI_MINOR)" }

  public var description: String {
    switch self {
    case .fileNotFound(let path):
      return "plugin file '\(path)' does not exist. Check the path, or refer to a built-in plugin by name (see `keel plugins list`)."
    case .notFound(let name, let searched, let available):
      return "no plugin named '\(name)' in \(searched.isEmpty ? "any plugin directory" : searched.joined(separator: ", ")). Available: \(available.isEmpty ? "none" : available.joined(separator: ", ")). Pass a path (./libmine.so) or add its directory to KEEL_PLUGIN_PATH."
    case .untrusted(let reference, let key, let source):
      return "\(source) names '\(reference)' as \(key), which is code outside every trusted place (the built-in plugins, KEEL_PLUGIN_PATH); a config file cannot choose code to run. If you trust it, pass --trust \(reference) (or its directory), add its directory to KEEL_PLUGIN_PATH, or give it on the command line (--set \(key)=\(reference))."
    case .loadFailed(let path, let reason):
      return "cannot load plugin '\(path)': \(reason). Is it a shared library built for this machine (cc -shared -fPIC), with all its dependencies installed?"
    case .missingEntry(let path, let reason):
      return "'\(path)' is not a Keel plugin: it exports no keel_plugin_entry (\(reason)). Export `const keel_plugin *keel_plugin_entry(uint32_t, uint32_t)` with KEEL_EXPORT (see templates/)."
    case .entryReturnedNull(let path, let host, let plugin):
      let built = plugin.map { " (it is built for ABI \($0))" } ?? ""
      return "plugin '\(path)': keel_plugin_entry returned NULL: the plugin refused host ABI \(host)\(built). Rebuild it against this keel's header (`keel plugins include-dir`), or use a keel that hosts ABI \(plugin.map { "\($0)" } ?? "the plugin's version")."
    case .descriptorTooSmall(let path, let size, let minimum):
      return "plugin '\(path)': descriptor struct_size \(size) is smaller than the ABI 1.0 keel_plugin (\(minimum) bytes). Set struct_size = sizeof(keel_plugin) and rebuild against `keel plugins include-dir`."
    case .abiMajorMismatch(let path, let name, let plugin):
      return "plugin '\(name)' (\(path)) implements ABI \(Self.version(plugin)) but this keel hosts ABI \(Self.hostVersion): major versions differ. Rebuild the plugin against `keel plugins include-dir`, or use a keel with ABI major \(plugin.0)."
    case .abiMinorTooNew(let path, let name, let plugin, let host):
      return "plugin '\(name)' (\(path)) needs ABI \(Self.version(plugin)) but this keel hosts ABI \(host) (older minor). Upgrade keel, or rebuild the plugin against `keel plugins include-dir`."
    case .invalidDescriptor(let path, let name, let reason):
      return "plugin '\(name)' (\(path)) has an invalid descriptor: \(reason)."
    case .wrongKind(let path, let name, let expected, let actual):
      return "plugin '\(name)' (\(path)) is a \(actual) plugin, but a\(expected == .objective ? "n" : "") \(expected) was expected here."
    case .unknownParameter(let plugin, let path, let key, let valid):
      let near = nearest(key, in: valid)
      return "plugin '\(plugin)' (\(path)) has no parameter '\(key)'\(near.map { " (did you mean '\($0)'?)" } ?? ""). Valid parameters: \(valid.isEmpty ? "none" : valid.joined(separator: ", "))."
    case .parameterType(let plugin, let path, let key, let expected, let got):
      return "parameter '\(key)' of plugin '\(plugin)' (\(path)) expects \(expected), got \(got)."
    case .parameterRange(let plugin, let path, let key, let value, let min, let max):
      return "parameter '\(key)' of plugin '\(plugin)' (\(path)) is \(value), outside its range [\(min), \(max)]."
    case .parameterChoice(let plugin, let path, let key, let value, let choices):
      return "parameter '\(key)' of plugin '\(plugin)' (\(path)) is '\(value)', not one of \(choices.joined(separator: " | "))."
    case .createFailed(let path, let name, let status, let message):
      return "plugin '\(name)' (\(path)) failed to create an instance (status \(status)): \(message.isEmpty ? "no message" : message)"
    case .callFailed(let path, let name, let function, let status, let message):
      return "plugin '\(name)' (\(path)) failed in \(function) (status \(status) \(statusName(status))): \(message.isEmpty ? "no message" : message)"
    case .nonFinite(let path, let name, let what):
      return "plugin '\(name)' (\(path)) returned a non-finite \(what). The step was not applied; check its inputs with `keel plugins check \(path)`."
    case .invalidInput(let message):
      return message
    case .foreign(let message):
      return message
    }
  }
}

/// The ABI's status code names.
public func statusName(_ status: Int32) -> String {
  switch status {
  case KEEL_OK: return "KEEL_OK"
  case KEEL_ERR_INVALID_ARGUMENT: return "KEEL_ERR_INVALID_ARGUMENT"
  case KEEL_ERR_NUMERIC: return "KEEL_ERR_NUMERIC"
  case KEEL_ERR_UNSUPPORTED: return "KEEL_ERR_UNSUPPORTED"
  case KEEL_ERR_STATE: return "KEEL_ERR_STATE"
  case KEEL_ERR_INTERNAL: return "KEEL_ERR_INTERNAL"
  default: return "unknown status"
  }
}

/// The closest candidate by edit distance (at most 3 edits, or a prefix match), for "did you mean".
public func nearest(_ key: String, in candidates: [String]) -> String? {
  func distance(_ a: String, _ b: String) -> Int {
    let a = Array(a), b = Array(b)
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var previous = Array(0...b.count)
    for i in 1...a.count {
      var current = [i] + Array(repeating: 0, count: b.count)
      for j in 1...b.count {
        current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
      }
      previous = current
    }
    return previous[b.count]
  }
  let scored = candidates.map { ($0, distance(key.lowercased(), $0.lowercased())) }.sorted { $0.1 < $1.1 }
  guard let best = scored.first else { return nil }
  if best.1 <= max(2, key.count / 3) { return best.0 }
  return candidates.first { $0.hasPrefix(key) || key.hasPrefix($0) }
}
