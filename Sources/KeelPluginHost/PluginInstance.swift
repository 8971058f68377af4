// PluginInstance.swift — one live instance of a plugin: its own host table (so messages are
// attributed), create/destroy, serialised calls (the ABI promises a plugin never sees two
// concurrent calls on one instance), the host-side checks after every call (status, finite
// outputs), and the optional state blob for checkpoints.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KeelABI
import KeelGuard

/// A log line a plugin sent through the host table.
public struct PluginLogLine: Sendable, Equatable {
  public let level: UInt32
  public let message: String
}

/// What the host table's context points at.
final class InstanceContext: @unchecked Sendable {
  let pluginName: String
  var lastError: String = ""
  var logs: [PluginLogLine] = []
  let logSink: (@Sendable (String, PluginLogLine) -> Void)?
  init(pluginName: String, logSink: (@Sendable (String, PluginLogLine) -> Void)?) {
    self.pluginName = pluginName
    self.logSink = logSink
  }
}

private func context(_ host: UnsafePointer<keel_host>?) -> InstanceContext? {
  guard let raw = host?.pointee.context else { return nil }
  return Unmanaged<InstanceContext>.fromOpaque(raw).takeUnretainedValue()
}

private let hostLog: @convention(c) (UnsafePointer<keel_host>?, UInt32, UnsafePointer<CChar>?) -> Void = { host, level, message in
  guard let ctx = context(host) else { return }
  let line = PluginLogLine(level: level, message: message.map { String(cString: $0) } ?? "")
  if ctx.logs.count < 1000 { ctx.logs.append(line) }
  ctx.logSink?(ctx.pluginName, line)
}

private let hostError: @convention(c) (UnsafePointer<keel_host>?, UnsafePointer<CChar>?) -> Void = { host, message in
  guard let ctx = context(host) else { return }
  ctx.lastError = message.map { String(cString: $0) } ?? ""
}

public class PluginInstance: @unchecked Sendable {
  public let library: PluginLibrary
  public let parameters: [(ParameterDeclaration, ParameterValue)]
  let handle: UnsafeMutableRawPointer?
  let ctx: InstanceContext
  let hostTable: UnsafeMutablePointer<keel_host>
  let lock = Mutex()
  /// What this instance needs (KEEL_OBJECTIVE_USES_*): the vtable's static flags, or what a 1.1
  /// plugin's create() wrote to keel_params.instance_flags. Read once, after create.
  public let needs: UInt32

  /// Create an instance. `settings` are validated against the declared parameters first.
  public init(library: PluginLibrary, settings: [String: ParameterValue] = [:], expecting kind: PluginKind? = nil,
              logSink: (@Sendable (String, PluginLogLine) -> Void)? = nil) throws {
    if let kind, kind != library.kind {
      throw PluginError.wrongKind(path: library.path, name: library.name, expected: kind, actual: library.kind)
    }
    self.library = library
    self.parameters = try library.resolveParameters(settings)
    let ctx = InstanceContext(pluginName: library.name, logSink: logSink)
    self.ctx = ctx
    let hostTable = UnsafeMutablePointer<keel_host>.allocate(capacity: 1)
    self.hostTable = hostTable
    var h = keel_host()
    h.struct_size = UInt32(MemoryLayout<keel_host>.size)
    h.abi_major = UInt32(KEEL_ABI_MAJOR)
    h.abi_minor = UInt32(KEEL_ABI_MINOR)
    h.context = Unmanaged.passUnretained(ctx).toOpaque()
    h.log = hostLog
    h.error = hostError
    hostTable.initialize(to: h)
    let block = ParameterBlock(parameters)
    var instance: UnsafeMutableRawPointer? = nil
    var flags = library.objectiveFlags
    let status = block.withParams(flags: &flags) { params in
      keel_guard_enter(PluginGuardLabels.label(library: library, function: "create"))
      defer { keel_guard_leave() }
      return library.table.create(UnsafePointer(hostTable), params, &instance)
    }
    guard status == KEEL_OK else {
      hostTable.deallocate()
      throw PluginError.createFailed(path: library.path, name: library.name, status: status, message: ctx.lastError)
    }
    handle = instance
    needs = library.abiMinor >= 1 ? flags : library.objectiveFlags & UInt32(KEEL_OBJECTIVE_USES_REF)
    let known = UInt32(KEEL_OBJECTIVE_USES_REF | KEEL_OBJECTIVE_USES_ENTROPY | KEEL_OBJECTIVE_USES_REF_KL | KEEL_OBJECTIVE_USES_TEACHER
                       | KEEL_OBJECTIVE_USES_TEACHER_KL | KEEL_OBJECTIVE_USES_LOGITS)
    if library.kind == .objective, needs & ~known != 0 {
      throw PluginError.createFailed(path: library.path, name: library.name, status: KEEL_ERR_INVALID_ARGUMENT,
                                     message: "host check: instance flags 0x\(String(needs, radix: 16)) set bits this host does not know (known: 0x\(String(known, radix: 16)))")
    }
  }

  /// KEEL_EXT_PER_CALL: why this instance's loss is not additive over calls, or nil.
  public func perCallReason() throws -> String? {
    guard let table = try instanceExtension(KEEL_EXT_PER_CALL) else { return nil }
    let t = table.assumingMemoryBound(to: keel_ext_per_call.self)
    guard Int(t.pointee.struct_size) >= MemoryLayout<keel_ext_per_call>.size else { return "(no reason given)" }
    return t.pointee.reason.map { String(cString: $0) } ?? "(no reason given)"
  }

  /// ABI 1.1: this instance's extension table for `id`, or nil (also for 1.0 plugins).
  public func instanceExtension(_ id: String) throws -> UnsafeRawPointer? {
    guard let fn = library.table.get_instance_extension else { return nil }
    var table: UnsafeRawPointer? = nil
    try call("get_instance_extension") { table = id.withCString { fn(handle, $0) }; return KEEL_OK }
    return table
  }

  deinit {
    library.table.destroy(handle)
    hostTable.deallocate()
  }

  func guardLabel(_ function: String) -> UnsafePointer<CChar> { PluginGuardLabels.label(library: library, function: function) }

  /// Log lines the plugin sent so far.
  public var logs: [PluginLogLine] { lock.withLock { ctx.logs } }

  /// Run one plugin call under the instance lock and turn a failure status into an error.
  func call(_ function: String, _ body: () -> Int32) throws {
    try lock.withLock {
      ctx.lastError = ""
      keel_guard_enter(guardLabel(function))
      let status = body()
      keel_guard_leave()
      guard status == KEEL_OK else {
        throw PluginError.callFailed(path: library.path, name: library.name, function: function,
                                     status: status, message: ctx.lastError)
      }
    }
  }

  // MARK: state blob

  /// The plugin's saved state (empty for stateless plugins).
  public func saveState() throws -> [UInt8] {
    let d = library.table
    guard let sizeFn = d.state_size, let saveFn = d.save_state else { return [] }
    var size: UInt64 = 0
    try call("state_size") { sizeFn(handle, &size) }
    var blob = [UInt8](repeating: 0, count: Int(size))
    try call("save_state") { blob.withUnsafeMutableBytes { saveFn(handle, $0.baseAddress, size) } }
    return blob
  }

  public func loadState(_ blob: [UInt8]) throws {
    let d = library.table
    guard let loadFn = d.load_state else {
      guard blob.isEmpty else {
        throw PluginError.invalidInput("plugin '\(library.name)' (\(library.path)) is stateless but the checkpoint holds \(blob.count) bytes of its state")
      }
      return
    }
    try call("load_state") { blob.withUnsafeBytes { loadFn(handle, $0.baseAddress, UInt64(blob.count)) } }
  }
}

/// The guard's one-line labels ("plugin 'minirl' (/path/libkeel-minirl.so), objective compute"),
/// made once per plugin and function and kept for the process's life (the signal handler and
/// the watchdog read them without allocating).
enum PluginGuardLabels {
  nonisolated(unsafe) static var table: [String: UnsafePointer<CChar>] = [:]
  static let lock = Mutex()
  static func label(library: PluginLibrary, function: String) -> UnsafePointer<CChar> {
    let key = library.path + "\u{0}" + function
    return lock.withLock {
      if let l = table[key] { return l }
      let l = UnsafePointer(strdup("plugin '\(library.name)' (\(library.path)), \(function)")!)
      table[key] = l
      return l
    }
  }
}
