// ForeignReward.swift — any exported C function in any shared library, used as a reward
// through libffi. The config declares its signature, e.g.
//   library: ./libscore.so, symbol: score, signature: "(response: string, reference: string) -> double"
// Argument kinds form a closed whitelist (below); the libffi call interface is prepared
// once, at construction, and reused for every sample. The result is converted to Float.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFFI
import KeelGuard

public struct ForeignSignature: Equatable, Sendable, CustomStringConvertible {
  public enum Argument: String, Sendable, CaseIterable {
    case prompt, response, reference, task, extra
    case responseIds = "response_ids"
    case responseLen = "response_len"
    var cType: String {
      switch self {
      case .responseIds: return "int32*"
      case .responseLen: return "int64"
      default: return "string"
      }
    }
  }
  public enum Return: String, Sendable, CaseIterable { case int, int32, int64, float, double }

  public var arguments: [Argument]
  public var returns: Return

  public var description: String {
    "(" + arguments.map { "\($0.rawValue): \($0.cType)" }.joined(separator: ", ") + ") -> \(returns.rawValue)"
  }

  static var grammar: String {
    "signature must look like \"(response: string, reference: string) -> double\"; arguments: "
      + Argument.allCases.map { "\($0.rawValue): \($0.cType)" }.joined(separator: ", ")
      + "; returns: " + Return.allCases.map(\.rawValue).joined(separator: " | ")
  }

  public init(parsing text: String) throws {
    func fail(_ why: String) -> PluginError { .foreign("invalid foreign-reward signature '\(text)': \(why). The \(Self.grammar).") }
    let trimmed = text.trimmingSpaces
    guard trimmed.hasPrefix("("), let close = trimmed.firstIndex(of: ")") else { throw fail("expected '(' … ')'") }
    let inside = trimmed[trimmed.index(after: trimmed.startIndex)..<close]
    let rest = trimmed[trimmed.index(after: close)...].trimmingSpaces
    guard rest.hasPrefix("->") else { throw fail("expected '-> TYPE' after the arguments") }
    let retText = String(rest.dropFirst(2)).trimmingSpaces
    guard let ret = Return(rawValue: retText) else { throw fail("unknown return type '\(retText)'") }
    var args: [Argument] = []
    if !inside.trimmingSpaces.isEmpty {
      for part in inside.split(separator: ",", omittingEmptySubsequences: false) {
        let pieces = part.split(separator: ":", maxSplits: 1).map { String($0).trimmingSpaces }
        guard pieces.count == 2 else { throw fail("argument '\(part.trimmingSpaces)' needs 'name: type'") }
        guard let arg = Argument(rawValue: pieces[0]) else { throw fail("unknown argument '\(pieces[0])'") }
        guard pieces[1] == arg.cType else {
          throw fail("argument '\(pieces[0])' has type \(arg.cType), not '\(pieces[1])'")
        }
        args.append(arg)
      }
    }
    arguments = args
    returns = ret
  }
}

/// A prepared foreign function, callable as a reward.
public final class ForeignReward: @unchecked Sendable {
  public let libraryPath: String
  public let symbol: String
  /// KeelGuard's one-line label: a crash or a stuck call names the function and its library.
  let guardLabel: UnsafePointer<CChar>
  public let signature: ForeignSignature
  public let rewardName: String
  public var componentNames: [String] { [] }
  private let function: UnsafeMutableRawPointer
  private let cif: UnsafeMutablePointer<ffi_cif>
  private let argTypes: UnsafeMutablePointer<UnsafeMutablePointer<ffi_type>?>
  private let lock = Mutex()

  public init(library: String, symbol: String, signature text: String, name: String? = nil) throws {
    let signature = try ForeignSignature(parsing: text)
    var isDir = false
    guard fileExists(library, isDirectory: &isDir), !isDir else {
      throw PluginError.foreign("foreign reward library '\(library)' does not exist")
    }
    let openPath = library.contains("/") ? library : "./" + library
    _ = dlerror()
    guard let handle = dlopen(openPath, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE) else {
      throw PluginError.foreign("cannot load foreign reward library '\(library)': \(dlerror().map { String(cString: $0) } ?? "?")")
    }
    _ = dlerror()
    guard let fn = dlsym(handle, symbol) else {
      throw PluginError.foreign("foreign reward library '\(library)' exports no symbol '\(symbol)' (check `nm -D --defined-only \(library)`)")
    }
    self.libraryPath = library
    guardLabel = UnsafePointer(strdup("foreign reward \(symbol) (\(library)) declared as \(signature)")!)
    self.symbol = symbol
    self.signature = signature
    self.rewardName = name ?? symbol
    self.function = fn
    // One cif per signature, alive as long as this object.
    var types: [UnsafeMutablePointer<ffi_type>?] = []
    for arg in signature.arguments {
      types.append(arg == .responseLen ? cffi_type_sint64() : cffi_type_pointer())
    }
    argTypes = .allocate(capacity: max(types.count, 1))
    argTypes.initialize(from: types, count: types.count)
    let ret: UnsafeMutablePointer<ffi_type>
    switch signature.returns {
    case .int, .int32: ret = cffi_type_sint32()
    case .int64: ret = cffi_type_sint64()
    case .float: ret = cffi_type_float()
    case .double: ret = cffi_type_double()
    }
    cif = .allocate(capacity: 1)
    let status = ffi_prep_cif(cif, cffi_default_abi(), UInt32(types.count), ret, argTypes)
    guard status == FFI_OK else {
      throw PluginError.foreign("libffi could not prepare '\(signature)' for \(symbol) (status \(status.rawValue))")
    }
  }

  deinit {
    argTypes.deallocate()
    cif.deallocate()
  }

  /// Call the function once per sample.
  public func score(_ samples: [RewardSample]) throws -> RewardResult {
    var rewards: [Float] = []
    rewards.reserveCapacity(samples.count)
    for (i, s) in samples.enumerated() {
      let r = lock.withLock { call(s) }
      guard r.isFinite else {
        throw PluginError.foreign("foreign reward \(symbol) (\(libraryPath)) returned \(r) for sample \(i)")
      }
      rewards.append(r)
    }
    return RewardResult(rewards: rewards, components: samples.map { _ in [] })
  }

  private func call(_ s: RewardSample) -> Float {
    // Argument storage: each argument value lives in its own 8-byte slot; libffi receives
    // pointers to the slots.
    let n = signature.arguments.count
    let slots = UnsafeMutablePointer<UInt64>.allocate(capacity: max(n, 1))
    let values = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: max(n, 1))
    var owned: [UnsafeMutableRawPointer] = []
    defer {
      owned.forEach { free($0) }
      slots.deallocate()
      values.deallocate()
    }
    for (i, arg) in signature.arguments.enumerated() {
      let raw = UnsafeMutableRawPointer(slots + i)
      switch arg {
      case .responseLen:
        raw.storeBytes(of: Int64(s.responseIds.count), as: Int64.self)
      case .responseIds:
        let p = malloc(max(s.responseIds.count, 1) * 4)!
        s.responseIds.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        owned.append(p)
        raw.storeBytes(of: p, as: UnsafeMutableRawPointer.self)
      default:
        let text: String
        switch arg {
        case .prompt: text = s.prompt
        case .response: text = s.response
        case .reference: text = s.reference
        case .task: text = s.task
        default: text = s.extraJSON
        }
        let p = UnsafeMutableRawPointer(strdup(text)!)
        owned.append(p)
        raw.storeBytes(of: p, as: UnsafeMutableRawPointer.self)
      }
      values[i] = raw
    }
    var result: UInt64 = 0  // at least sizeof(ffi_arg)
    let fn = unsafeBitCast(function, to: (@convention(c) () -> Void).self)
    keel_guard_enter(guardLabel)
    withUnsafeMutableBytes(of: &result) { rv in
      ffi_call(cif, fn, rv.baseAddress, values)
    }
    keel_guard_leave()
    switch signature.returns {
    case .int, .int32: return Float(Int32(truncatingIfNeeded: Int64(bitPattern: result)))
    case .int64: return Float(Int64(bitPattern: result))
    case .float: return withUnsafeBytes(of: result) { $0.load(as: Float.self) }
    case .double: return Float(withUnsafeBytes(of: result) { $0.load(as: Double.self) })
    }
  }
}

extension StringProtocol {
  var trimmingSpaces: String {
    let chars = Array(self)
    var lo = 0, hi = chars.count
    while lo < hi, chars[lo].isWhitespace { lo += 1 }
    while hi > lo, chars[hi - 1].isWhitespace { hi -= 1 }
    return String(chars[lo..<hi])
  }
}
