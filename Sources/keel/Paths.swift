// Paths.swift — where keel finds the files it ships beside itself: the ABI header's include
// directory and the plugin templates. Searched in this order, the first hit wins:
//   1. the install layout around the running binary (scripts/install.sh): PREFIX/bin/keel →
//      PREFIX/include (keel/keel_plugin.h) and PREFIX/share/keel/templates — the header this
//      very binary was built with, wherever PREFIX was moved;
//   2. $KEEL_HOME: a Keel source tree (`Sources/KeelABI/include`, `templates/`) or an install
//      prefix (`include/`, `share/keel/templates/`);
//   3. the source tree this binary was built from (a keel run from .build/…).
// The built-in plugins are found the same way (PREFIX/lib/keel/plugins first): PluginDiscovery.
#if canImport(Glibc)
import Glibc
#endif

enum KeelPaths {
  /// The repository root this binary was built from (Sources/keel/Paths.swift → ../../).
  static var sourceRoot: String {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
  }

  /// PREFIX when the running binary is PREFIX/bin/keel (PREFIX/<dir>/keel in general: the
  /// directory above the executable's), or nil when the executable's path is unknown.
  static var installPrefix: String? {
    let exe = executable
    guard exe.hasPrefix("/") else { return nil }
    var parts = exe.split(separator: "/", omittingEmptySubsequences: false)
    guard parts.count >= 3 else { return nil }  // "", dir, keel at least
    parts.removeLast(2)
    let prefix = parts.joined(separator: "/")
    return prefix.isEmpty ? "/" : prefix
  }

  /// Candidate roots, in search order, each with the layout it may have.
  static var roots: [String] {
    var r: [String] = []
    if let prefix = installPrefix { r.append(prefix) }
    if let home = getenv("KEEL_HOME"), home.pointee != 0 { r.append(String(cString: home)) }
    r.append(sourceRoot)
    return r
  }

  static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

  /// `root` + "/" + `sub`, without a doubled slash when root is "/".
  static func join(_ root: String, _ sub: String) -> String {
    root.hasSuffix("/") ? root + sub : root + "/" + sub
  }

  /// The directory that holds keel/keel_plugin.h: PREFIX/include of an installed keel, else
  /// KEEL_HOME's or the build tree's `include/` or `Sources/KeelABI/include`.
  static func includeDirectory() -> String? {
    for root in roots {
      for sub in ["include", "Sources/KeelABI/include"] where exists(join(root, sub) + "/keel/keel_plugin.h") {
        return join(root, sub)
      }
    }
    return nil
  }

  /// The templates directory (LANG/KIND/ inside): PREFIX/share/keel/templates of an installed
  /// keel, else KEEL_HOME's or the build tree's `templates/`.
  static func templatesDirectory() -> String? {
    for root in roots {
      for sub in ["share/keel/templates", "templates"] where exists(join(root, sub)) {
        return join(root, sub)
      }
    }
    return nil
  }

  /// The running keel binary.
  static var executable: String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "keel"
  }
}
