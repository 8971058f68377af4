// TestSupport.swift — shared by the test targets: locating the repository and the built
// products, compiling C fixtures and templates with the system `cc` (outside SwiftPM, like a
// plugin author would), and running the real `keel` binary.
import Foundation
import KeelPluginHost

public enum TestSupport {
  /// Repository root (Tests/KeelTestSupport/TestSupport.swift → ../../).
  public static var root: String {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)
    return parts.joined(separator: "/")
  }
  public static var includeDir: String { root + "/Sources/KeelABI/include" }
  /// SwiftPM's bin directory: where the test bundle, `keel` and the built-in plugins are.
  public static var binDir: String { PluginDiscovery.builtinDirectory }
  public static var keel: String { binDir + "/keel" }

  /// A fresh temporary directory.
  public static func tempDir(_ tag: String = "keel-test") -> String {
    let path = NSTemporaryDirectory() + "\(tag)-\(UUID().uuidString.prefix(8))"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  public struct Output {
    public let status: Int32
    public let signaled: Bool
    public let stdout: String
  }

  /// Run a program; stdout and stderr together.
  @discardableResult
  public static func run(_ program: String, _ args: [String], cwd: String? = nil,
                         environment: [String: String]? = nil) throws -> Output {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    if let cwd { p.currentDirectoryURL = URL(fileURLWithPath: cwd) }
    if let environment {
      p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return Output(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                  stdout: String(decoding: data, as: UTF8.self))
  }

  /// Start a program in the background, stdout and stderr into one pipe; the caller waits.
  public static func start(_ program: String, _ args: [String], environment: [String: String]) throws -> (Process, Pipe) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: program)
    p.arguments = args
    p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    return (p, pipe)
  }

  /// A program on PATH (or in ~/.cargo/bin), or nil.
  public static func which(_ name: String) -> String? {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init) + [NSHomeDirectory() + "/.cargo/bin"]
    return path.map { $0 + "/" + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
  }

  /// Compile C sources into a shared library with cc (as a plugin author would).
  public static func compileLibrary(_ sources: [String], into dir: String? = nil, name: String) throws -> String {
    let out = (dir ?? tempDir("keel-fixture")) + "/" + name
    let r = try run("/usr/bin/cc", ["-std=c11", "-O1", "-fPIC", "-shared",
                                    "-I", includeDir, "-o", out] + sources)
    guard r.status == 0 else { throw NSError(domain: "cc", code: Int(r.status), userInfo: [NSLocalizedDescriptionKey: r.stdout]) }
    return out
  }

  /// Compile one fixture from Tests/Fixtures/plugins (cached per process run).
  public static func fixture(_ file: String) throws -> String {
    let dir = fixtureDir
    let lib = dir + "/lib" + file.replacingOccurrences(of: ".c", with: ".so")
    if FileManager.default.fileExists(atPath: lib) { return lib }
    return try compileLibrary([root + "/Tests/Fixtures/plugins/" + file], into: dir,
                              name: "lib" + file.replacingOccurrences(of: ".c", with: ".so"))
  }
  nonisolated(unsafe) static var fixtureDirCache: String?
  static var fixtureDir: String {
    if let d = fixtureDirCache { return d }
    let d = tempDir("keel-fixtures")
    fixtureDirCache = d
    return d
  }
}
