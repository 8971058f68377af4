// PluginLibrary.swift — one plugin shared library, loaded and validated.
// Contract: `PluginLibrary.load(path:)` dlopens with RTLD_NOW|RTLD_LOCAL|RTLD_NODELETE (never
// unloaded), calls keel_plugin_entry with the host ABI version, checks the descriptor
// (struct_size, ABI major/minor, kind, required pointers, parameter and metric declarations)
// and returns an immutable Swift view of it. Every failure is a PluginError naming the file.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KeelABI

public enum PluginKind: UInt32, Sendable, CustomStringConvertible, CaseIterable {
  case objective = 1, reward = 2, baseline = 3
  public var description: String {
    switch self {
    case .objective: return "objective"
    case .reward: return "reward"
    case .baseline: return "baseline"
    }
  }
  public init?(name: String) {
    guard let k = Self.allCases.first(where: { $0.description == name }) else { return nil }
    self = k
  }
}

public enum ParameterType: UInt32, Sendable, CustomStringConvertible {
  case float = 1, int = 2, bool = 3, string = 4
  public var description: String {
    switch self {
    case .float: return "float"
    case .int: return "int"
    case .bool: return "bool"
    case .string: return "string"
    }
  }
}

/// A value of a plugin parameter, as the host holds it.
public enum ParameterValue: Equatable, Sendable, CustomStringConvertible {
  case float(Double), int(Int64), bool(Bool), string(String)
  public var description: String {
    switch self {
    case .float(let v): return "\(v)"
    case .int(let v): return "\(v)"
    case .bool(let v): return v ? "true" : "false"
    case .string(let v): return "\"\(v)\""
    }
  }
  var typeName: String {
    switch self {
    case .float: return "float"
    case .int: return "int"
    case .bool: return "bool"
    case .string: return "string"
    }
  }
}

public struct ParameterDeclaration: Sendable, Equatable {
  public let name: String
  public let type: ParameterType
  public let doc: String
  public let defaultValue: ParameterValue
  public let minValue: Double
  public let maxValue: Double
  /// ABI 1.1: the allowed values of a string parameter (nil = any string).
  public var choices: [String]? = nil
}

/// An ABI version (major, minor).
public struct ABIVersion: Sendable, Equatable, CustomStringConvertible {
  public var major: UInt32, minor: UInt32
  public init(_ major: UInt32, _ minor: UInt32) { self.major = major; self.minor = minor }
  /// The version this host implements (the header's KEEL_ABI_MAJOR.KEEL_ABI_MINOR).
  public static let host = ABIVersion(UInt32(KEEL_ABI_MAJOR), UInt32(KEEL_ABI_MINOR))
  public var description: String { "\(major).\(minor)" }
}

/// Sizes of the structs as ABI 1.0 defined them: the smallest a 1.x writer may send (rule 4.3).
enum ABI10Size {
  static let plugin = 112, paramDecl = 64, objectiveVtable = 40
}

/// A named scalar an objective reports (metric) or a reward reports per sample (component).
public struct ScalarDeclaration: Sendable, Equatable {
  public enum Reduction: UInt32, Sendable, CustomStringConvertible {
    case tokenMean = 1, sequenceMean = 2, sum = 3
    public var description: String {
      switch self {
      case .tokenMean: return "token-mean"
      case .sequenceMean: return "sequence-mean"
      case .sum: return "sum"
      }
    }
  }
  public let name: String
  public let doc: String
  public let reduction: Reduction
}

public final class PluginLibrary: @unchecked Sendable {
  public let path: String
  public let name: String
  public let version: String
  public let description: String
  public let kind: PluginKind
  public let abiMajor: UInt32
  public let abiMinor: UInt32
  public let parameters: [ParameterDeclaration]
  /// Objective metrics or reward components (empty for baselines).
  public let scalars: [ScalarDeclaration]
  /// Objective aggregation as the plugin declares it ("" for other kinds).
  public let aggregation: String
  public let objectiveFlags: UInt32
  public let hasState: Bool
  /// ABI 1.1: the descriptor has get_instance_extension.
  public var hasInstanceExtension: Bool { table.get_instance_extension != nil }
  /// The descriptor as this host reads it, copied once at load: the writer's struct_size bytes,
  /// fields appended after them (a 1.0 plugin's get_instance_extension) zero. The pointers in it
  /// are the plugin's static storage, valid forever.
  let table: keel_plugin

  /// Every library is loaded once per process (dlopen returns the same handle anyway).
  nonisolated(unsafe) private static var cache: [String: PluginLibrary] = [:]
  private static let cacheLock = Mutex()

  /// `hostABI` other than this host's version loads uncached, as a host of that version would
  /// (the entry receives it and the descriptor is checked against it): how tests play a 1.0 host.
  public static func load(path: String, hostABI: ABIVersion = .host) throws -> PluginLibrary {
    let resolved = canonicalPath(path)
    if hostABI != .host { return try PluginLibrary(resolvedPath: resolved, shownPath: path, hostABI: hostABI) }
    return try cacheLock.withLock {
      if let hit = cache[resolved] { return hit }
      let library = try PluginLibrary(resolvedPath: resolved, shownPath: path)
      cache[resolved] = library
      return library
    }
  }

  private init(resolvedPath: String, shownPath: String, hostABI: ABIVersion = .host) throws {
    let c = Self.readPrefix(try Self.openDescriptor(resolvedPath: resolvedPath, shownPath: shownPath, hostABI: hostABI))
    let (name, kind) = try Self.checkHeader(c, shownPath: shownPath, hostABI: hostABI)
    func invalid(_ why: String) -> PluginError { .invalidDescriptor(path: shownPath, name: name, reason: why) }
    guard c.create != nil, c.destroy != nil else { throw invalid("create or destroy is NULL") }
    guard c.version != nil, c.description != nil else { throw invalid("version or description is NULL") }
    guard c.vtable != nil else { throw invalid("vtable is NULL") }
    let stateFns = [c.state_size != nil, c.save_state != nil, c.load_state != nil]
    guard stateFns.allSatisfy({ $0 }) || stateFns.allSatisfy({ !$0 }) else {
      throw invalid("state_size, save_state and load_state must be all set or all NULL")
    }
    self.path = shownPath
    self.name = name
    self.kind = kind
    self.version = c.version.map { String(cString: $0) } ?? "?"
    self.description = c.description.map { String(cString: $0) } ?? ""
    self.abiMajor = c.abi_major
    self.abiMinor = c.abi_minor
    self.hasState = stateFns[0]
    self.table = c
    self.parameters = try Self.readParameters(c, invalid: invalid)
    let vtable = try Self.readVtable(c, kind: kind, invalid: invalid)
    self.scalars = vtable.scalars
    self.aggregation = vtable.aggregation
    self.objectiveFlags = vtable.flags
  }

  /// dlopens the file, calls its keel_plugin_entry with the host ABI version and returns the
  /// descriptor, once its struct_size shows it is at least as large as the host's keel_plugin.
  private static func openDescriptor(resolvedPath: String, shownPath: String, hostABI: ABIVersion) throws -> UnsafePointer<keel_plugin> {
    var isDirectory = false
    guard fileExists(resolvedPath, isDirectory: &isDirectory), !isDirectory else {
      throw PluginError.fileNotFound(path: shownPath)
    }
    // dlopen needs a '/' in the path, or it searches the system directories instead.
    let openPath = resolvedPath.contains("/") ? resolvedPath : "./" + resolvedPath
    _ = dlerror()
    guard let handle = dlopen(openPath, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
      let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
      throw PluginError.loadFailed(path: shownPath, reason: reason)
    }
    _ = dlerror()
    guard let symbol = dlsym(handle, KEEL_PLUGIN_ENTRY_SYMBOL) else {
      let reason = dlerror().map { String(cString: $0) } ?? "symbol not found"
      throw PluginError.missingEntry(path: shownPath, reason: reason)
    }
    let entry = unsafeBitCast(symbol, to: keel_plugin_entry_fn.self)
    guard let d = entry(hostABI.major, hostABI.minor) else {
      // The entry refused this host. Ask once more as the newest host of this major, only to
      // name the plugin's own version in the message (the entry is pure: rule 6.1).
      var built: ABIVersion? = nil
      if let probe = entry(hostABI.major, UInt32.max), Int(UnsafeRawPointer(probe).load(as: UInt32.self)) >= ABI10Size.plugin {
        built = ABIVersion(probe.pointee.abi_major, probe.pointee.abi_minor)
      }
      throw PluginError.entryReturnedNull(path: shownPath, host: hostABI, plugin: built)
    }
    // Read struct_size before anything else: a short descriptor must not be read past its end.
    let size = UnsafeRawPointer(d).load(as: UInt32.self)
    guard Int(size) >= ABI10Size.plugin else {
      throw PluginError.descriptorTooSmall(path: shownPath, size: size, minimum: ABI10Size.plugin)
    }
    return d
  }

  /// The descriptor as this host sees it: the writer's struct_size bytes, and fields appended
  /// after it (a 1.0 plugin's get_instance_extension) zero.
  static func readPrefix(_ d: UnsafePointer<keel_plugin>) -> keel_plugin {
    var c = keel_plugin()
    let n = min(Int(d.pointee.struct_size), MemoryLayout<keel_plugin>.size)
    withUnsafeMutableBytes(of: &c) { $0.baseAddress!.copyMemory(from: UnsafeRawPointer(d), byteCount: n) }
    return c
  }

  /// The descriptor's name and kind, once its name, ABI version and kind are checked.
  private static func checkHeader(_ c: keel_plugin, shownPath: String, hostABI: ABIVersion) throws -> (name: String, kind: PluginKind) {
    let name = c.name.map { String(cString: $0) } ?? ""
    guard !name.isEmpty else {
      throw PluginError.invalidDescriptor(path: shownPath, name: "?", reason: "name is NULL or empty")
    }
    guard c.abi_major == hostABI.major else {
      throw PluginError.abiMajorMismatch(path: shownPath, name: name, plugin: (c.abi_major, c.abi_minor))
    }
    guard c.abi_minor <= hostABI.minor else {
      throw PluginError.abiMinorTooNew(path: shownPath, name: name, plugin: (c.abi_major, c.abi_minor), host: hostABI)
    }
    guard let kind = PluginKind(rawValue: c.kind) else {
      throw PluginError.invalidDescriptor(path: shownPath, name: name, reason: "unknown kind \(c.kind) (1 objective, 2 reward, 3 baseline)")
    }
    guard name.allSatisfy({ $0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_" }) else {
      throw PluginError.invalidDescriptor(path: shownPath, name: name, reason: "name '\(name)' must use only a-z, 0-9, '-' and '_'")
    }
    return (name, kind)
  }

  /// Checks the kind's vtable (struct_size, compute, an objective's aggregation) and reads its
  /// declarations: metrics or components, and an objective's aggregation and flags.
  private static func readVtable(_ c: keel_plugin, kind: PluginKind, invalid: (String) -> PluginError) throws
    -> (scalars: [ScalarDeclaration], aggregation: String, flags: UInt32) {
    switch kind {
    case .objective:
      let v = c.vtable.assumingMemoryBound(to: keel_objective_vtable.self)
      guard Int(v.pointee.struct_size) >= ABI10Size.objectiveVtable else {
        throw invalid("objective vtable struct_size \(v.pointee.struct_size) < \(ABI10Size.objectiveVtable)")
      }
      guard v.pointee.compute != nil else { throw invalid("objective compute is NULL") }
      guard v.pointee.aggregation != nil else { throw invalid("objective aggregation is NULL (say how the loss is normalised, e.g. \"token-mean\")") }
      let scalars = try readScalars(v.pointee.metrics, count: v.pointee.metric_count, what: "metric", invalid: invalid)
      return (scalars, v.pointee.aggregation.map { String(cString: $0) } ?? "", v.pointee.flags)
    case .reward:
      let v = c.vtable.assumingMemoryBound(to: keel_reward_vtable.self)
      guard Int(v.pointee.struct_size) >= MemoryLayout<keel_reward_vtable>.size else {
        throw invalid("reward vtable struct_size \(v.pointee.struct_size) < \(MemoryLayout<keel_reward_vtable>.size)")
      }
      guard v.pointee.compute != nil else { throw invalid("reward compute is NULL") }
      let scalars = try readScalars(v.pointee.components, count: v.pointee.component_count, what: "component", invalid: invalid)
      return (scalars, "", 0)
    case .baseline:
      let v = c.vtable.assumingMemoryBound(to: keel_baseline_vtable.self)
      guard Int(v.pointee.struct_size) >= MemoryLayout<keel_baseline_vtable>.size else {
        throw invalid("baseline vtable struct_size \(v.pointee.struct_size) < \(MemoryLayout<keel_baseline_vtable>.size)")
      }
      guard v.pointee.compute != nil else { throw invalid("baseline compute is NULL") }
      return ([], "", 0)
    }
  }

  private static func readParameters(_ c: keel_plugin, invalid: (String) -> PluginError) throws -> [ParameterDeclaration] {
    guard c.param_count > 0 else { return [] }
    guard let params = c.params else { throw invalid("param_count is \(c.param_count) but params is NULL") }
    var out: [ParameterDeclaration] = []
    // An array of the writer's type: its stride is the elements' struct_size (rule 4.4).
    let stride = Int(params.pointee.struct_size)
    for i in 0..<Int(c.param_count) {
      let element = UnsafeRawPointer(params) + i * stride
      let size = Int(element.load(as: UInt32.self))
      guard size >= ABI10Size.paramDecl, size == stride else {
        throw invalid("parameter #\(i) has struct_size \(size) (needs >= \(ABI10Size.paramDecl), the same for every element)")
      }
      var p = keel_param_decl()
      withUnsafeMutableBytes(of: &p) { $0.baseAddress!.copyMemory(from: element, byteCount: min(size, MemoryLayout<keel_param_decl>.size)) }
      guard let namePtr = p.name, case let pname = String(cString: namePtr), !pname.isEmpty else {
        throw invalid("parameter #\(i) has no name")
      }
      guard let type = ParameterType(rawValue: p.type) else { throw invalid("parameter '\(pname)' has unknown type \(p.type)") }
      guard !out.contains(where: { $0.name == pname }) else { throw invalid("parameter '\(pname)' is declared twice") }
      let value: ParameterValue
      switch type {
      case .float: value = .float(p.default_f)
      case .int: value = .int(p.default_i)
      case .bool: value = .bool(p.default_i != 0)
      case .string: value = .string(p.default_s.map { String(cString: $0) } ?? "")
      }
      let lo = p.min_value.isNaN ? -Double.infinity : p.min_value
      let hi = p.max_value.isNaN ? Double.infinity : p.max_value
      var decl = ParameterDeclaration(name: pname, type: type, doc: p.doc.map { String(cString: $0) } ?? "",
                                      defaultValue: value, minValue: lo, maxValue: hi)
      if let list = p.choices {
        guard type == .string else { throw invalid("parameter '\(pname)' declares choices but is not a string") }
        var choices: [String] = []
        while let item = list[choices.count] {
          choices.append(String(cString: item))
          guard choices.count <= 256 else { throw invalid("parameter '\(pname)' has more than 256 choices (is the list NULL-terminated?)") }
        }
        guard !choices.isEmpty else { throw invalid("parameter '\(pname)' has an empty choices list (use NULL for any string)") }
        guard case .string(let d) = value, choices.contains(d) else {
          throw invalid("parameter '\(pname)' has default \(value), not one of its choices \(choices.joined(separator: " | "))")
        }
        decl.choices = choices
      }
      out.append(decl)
    }
    return out
  }

  private static func readScalars(_ decls: UnsafePointer<keel_scalar_decl>?, count: UInt32, what: String,
                                  invalid: (String) -> PluginError) throws -> [ScalarDeclaration] {
    guard count > 0 else { return [] }
    guard let decls else { throw invalid("\(what)_count is \(count) but the \(what) declarations are NULL") }
    return try (0..<Int(count)).map { i in
      let s = decls[i]
      guard let n = s.name, case let name = String(cString: n), !name.isEmpty else { throw invalid("\(what) #\(i) has no name") }
      guard let red = ScalarDeclaration.Reduction(rawValue: s.reduction) else {
        throw invalid("\(what) '\(name)' has unknown reduction \(s.reduction)")
      }
      return ScalarDeclaration(name: name, doc: s.doc.map { String(cString: $0) } ?? "", reduction: red)
    }
  }
}

// MARK: - small POSIX helpers shared by the host

func canonicalPath(_ path: String) -> String {
  guard let real = realpath(path, nil) else { return path }
  defer { free(real) }
  return String(cString: real)
}

func fileExists(_ path: String, isDirectory: inout Bool) -> Bool {
  var st = stat()
  guard stat(path, &st) == 0 else { return false }
  isDirectory = (st.st_mode & S_IFMT) == S_IFDIR
  return true
}

/// A pthread mutex usable from Swift 6 strict concurrency (Foundation-free).
final class Mutex: @unchecked Sendable {
  private var m = pthread_mutex_t()
  init() { pthread_mutex_init(&m, nil) }
  deinit { pthread_mutex_destroy(&m) }
  func withLock<T>(_ body: () throws -> T) rethrows -> T {
    pthread_mutex_lock(&m)
    defer { pthread_mutex_unlock(&m) }
    return try body()
  }
}
