// Paths.swift — where keel finds the files it ships beside its source: the ABI header's
// include directory and templates/. Order: $KEEL_HOME (a directory holding `include/` or
// `Sources/KeelABI/include`, and `templates/`), then the source tree keel was built from.
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

  static var roots: [String] {
    var r: [String] = []
    if let home = getenv("KEEL_HOME") { r.append(String(cString: home)) }
    r.append(sourceRoot)
    return r
  }

  static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

  /// The directory that holds keel/keel_plugin.h.
  static func includeDirectory() -> String? {
    for root in roots {
      for sub in ["include", "Sources/KeelABI/include"] where exists("\(root)/\(sub)/keel/keel_plugin.h") {
        return "\(root)/\(sub)"
      }
    }
    return nil
  }

  static func templatesDirectory() -> String? {
    roots.map { "\($0)/templates" }.first { exists($0) }
  }

  /// The running keel binary.
  static var executable: String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    return n > 0 ? String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "keel"
  }
}
