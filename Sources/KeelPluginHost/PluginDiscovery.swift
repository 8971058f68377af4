// PluginDiscovery.swift — finding plugins. A reference is either a path (contains '/' or
// ends in .so) or a name. Names are searched, in order, in the directories of
// KEEL_PLUGIN_PATH (':'-separated) and then the built-in directory: PREFIX/lib/keel/plugins
// for an installed keel (PREFIX/bin/keel, scripts/install.sh), else the directory the running
// keel binary lives in, which is where SwiftPM puts the built-in plugin libraries. The first
// library whose descriptor has that name wins: the conventional file names first
// (libkeel-NAME.so, libNAME.so, NAME.so), then every library that exports keel_plugin_entry
// by its ELF symbol table (others are never loaded). Trust: PluginTrust.swift.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

public struct PluginDiscovery: Sendable {
  public var directories: [String]

  /// KEEL_PLUGIN_PATH directories, then the built-in directory.
  public static func standard(environment: [String: String]? = nil) -> PluginDiscovery {
    let value = environment?["KEEL_PLUGIN_PATH"] ?? getenv("KEEL_PLUGIN_PATH").map { String(cString: $0) } ?? ""
    let user = value.split(separator: ":").map(String.init).filter { !$0.isEmpty }
    return PluginDiscovery(directories: user + [builtinPluginDirectory])
  }

  /// Where the built-in plugins are: PREFIX/lib/keel/plugins when the running executable is
  /// PREFIX/bin/keel of an install (scripts/install.sh) and that directory exists; otherwise
  /// the executable's own directory (SwiftPM's bin directory: keel, the plugins, the tests).
  public static var builtinPluginDirectory: String {
    let bin = builtinDirectory
    guard let slash = bin.lastIndex(of: "/") else { return bin }
    let installed = String(bin[..<slash]) + "/lib/keel/plugins"
    var isDirectory = false
    return fileExists(installed, isDirectory: &isDirectory) && isDirectory ? installed : bin
  }

  public init(directories: [String]) { self.directories = directories }

  /// The directory of the running executable (keel, or the test bundle beside it).
  public static var builtinDirectory: String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
    guard n > 0 else { return "." }
    let exe = String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return String(exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)])
  }

  public static func isPath(_ reference: String) -> Bool {
    reference.contains("/") || reference.hasSuffix(".so") || reference.hasSuffix(".dylib")
  }

  /// Shared libraries in a directory that could be plugins (sorted, so results are stable).
  public static func candidates(in directory: String) -> [String] {
    guard let dir = opendir(directory) else { return [] }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(cString: raw.baseAddress!.assumingMemoryBound(to: CChar.self))
      }
      if name.hasSuffix(".so") { names.append(name) }
    }
    return names.sorted().map { directory.hasSuffix("/") ? directory + $0 : directory + "/" + $0 }
  }

  /// Does the file export keel_plugin_entry? Read from the ELF dynamic symbol table without
  /// loading the library, so scanning a directory never runs an unrelated library's
  /// constructors; only a file that exports the entry is then dlopened.
  static func exportsEntry(_ path: String) -> Bool {
    ELFSymbols.exports("keel_plugin_entry", path: path)
  }

  public struct Listing: Sendable {
    public var plugins: [PluginLibrary] = []
    /// Libraries that export the entry but failed to load, with why.
    public var failures: [(path: String, error: PluginError)] = []
  }

  /// Every plugin in the search directories. A name found twice keeps its first occurrence.
  public func list() -> Listing {
    var listing = Listing()
    var seen = Set<String>()
    for dir in directories {
      for path in Self.candidates(in: dir) where Self.exportsEntry(path) {
        do {
          let lib = try PluginLibrary.load(path: path)
          if seen.insert(lib.name).inserted { listing.plugins.append(lib) }
        } catch let e as PluginError {
          listing.failures.append((path, e))
        } catch {}
      }
    }
    return listing
  }

  /// Resolve a name or a path to a loaded library, optionally of a required kind.
  public func resolve(_ reference: String, kind: PluginKind? = nil) throws -> PluginLibrary {
    let lib: PluginLibrary
    if Self.isPath(reference) {
      lib = try PluginLibrary.load(path: reference)
    } else {
      lib = try find(name: reference)
    }
    if let kind, lib.kind != kind {
      throw PluginError.wrongKind(path: lib.path, name: lib.name, expected: kind, actual: lib.kind)
    }
    return lib
  }

  private func find(name: String) throws -> PluginLibrary {
    // Fast path: the conventional file names, before scanning whole directories.
    for dir in directories {
      for file in ["libkeel-\(name).so", "lib\(name).so", "\(name).so"] {
        let path = dir + "/" + file
        var isDir = false
        if fileExists(path, isDirectory: &isDir), !isDir, Self.exportsEntry(path), let lib = try? PluginLibrary.load(path: path), lib.name == name {
          return lib
        }
      }
    }
    let listing = list()
    if let hit = listing.plugins.first(where: { $0.name == name }) { return hit }
    // A library that would have matched but failed to load: say why, not just "not found".
    if let broken = listing.failures.first(where: { $0.path.hasSuffix("/libkeel-\(name).so") || $0.path.hasSuffix("/lib\(name).so") }) {
      throw broken.error
    }
    throw PluginError.notFound(name: name, searched: directories, available: listing.plugins.map(\.name).sorted())
  }
}
