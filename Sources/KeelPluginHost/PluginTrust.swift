// PluginTrust.swift — loading code needs the user's consent. Plugins and foreign libraries are
// code; config files (a --config YAML, a resumed run's config.yaml, a compare --arms file) are
// data from anyone. A plugin or library that a FILE names by path is loaded only from a trusted
// place: the built-in plugin directory, a KEEL_PLUGIN_PATH directory, or a path (file or
// directory) the user gave with --trust. A foreign reward library named by a file always needs
// that trust (a bare soname such as libc.so.6 is searched in the system's directories).
// Names (not paths) are looked up only in the trusted directories anyway, and the lookup reads
// the ELF symbol table before it loads anything, so unrelated libraries never run.
// Values given on the command line (--objective, --set …) are the user's own choice.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct PluginTrust: Sendable {
  /// The config keys whose values are code to load.
  public static let codeKeys = ["objective.name", "reward.name", "baseline.name", "eval.reward", "reward.foreign.library"]

  /// Canonical trusted directories and files, and the raw --trust strings (a soname).
  public let directories: [String]
  public let files: [String]
  public let raw: [String]

  /// The built-in directory, KEEL_PLUGIN_PATH's directories, and every --trust path.
  public init(trusted: [String], discovery: PluginDiscovery = .standard()) {
    var dirs: [String] = [], files: [String] = []
    for d in discovery.directories { if let c = Self.canonical(d) { dirs.append(c) } }
    for t in trusted {
      guard let c = Self.canonical(t) else { continue }
      var isDir = false
      if fileExists(c, isDirectory: &isDir), isDir { dirs.append(c) } else { files.append(c) }
    }
    directories = dirs
    self.files = files
    raw = trusted
  }

  static func canonical(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
  }

  public func isTrusted(_ reference: String) -> Bool {
    if raw.contains(reference) { return true }
    guard let c = Self.canonical(reference) else { return false }
    return files.contains(c) || directories.contains { c.hasPrefix($0.hasSuffix("/") ? $0 : $0 + "/") }
  }

  /// Refuse code that `values` (read from the file `source`) would load without consent.
  public func check(_ values: [String: String], source: String) throws {
    for key in Self.codeKeys {
      guard let v = values[key], !v.isEmpty, v != "null" else { continue }
      let needsTrust = key == "reward.foreign.library" || PluginDiscovery.isPath(v)
      if needsTrust && !isTrusted(v) { throw PluginError.untrusted(reference: v, key: key, source: source) }
    }
  }
}
