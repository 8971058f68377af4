// ForeignReward.swift — any exported C function in any shared library, used as a reward
// through libffi. The config declares its signature, e.g.
//   library: ./libscore.so, symbol: score, signature: "(response: string, reference: string) -> double"
// and `keel plugins eval --foreign LIB:SYMBOL:SIGNATURE` tries the same three on a batch file.
// Argument kinds form a closed whitelist (below), each with the C types it may be declared as:
// the texts (string), the token ids (int32*), their count (int64, double or float), and the
// number the response or the reference states (double or float; NaN when it states none, so a
// function such as libm's `double fabs(double)` can be a reward). The libffi call interface is
// prepared once, at construction, and reused for every sample. The result is converted to
// Float; a NaN or ±inf result, or a finite one beyond float32's range, is an error naming the
// function, its library and the sample (and the argument that was NaN, if one was).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CFFI
import KeelGuard

public struct ForeignSignature: Equatable, Sendable, CustomStringConvertible {
  /// The C types of the grammar, as a signature spells them.
  public enum CType: String, Sendable, CaseIterable {
    case string  // const char *
    case int32Pointer = "int32*"  // const int32_t *
    case int64, double, float
  }
  public enum Argument: String, Sendable, CaseIterable {
    case prompt, response, reference, task, extra
    case responseIds = "response_ids"
    case responseLen = "response_len"
    case responseNumber = "response_number"
    case referenceNumber = "reference_number"
    /// The C types this argument may be declared as (docs/plugin-guide.md's table).
    public var types: [CType] {
      switch self {
      case .responseIds: return [.int32Pointer]
      case .responseLen: return [.int64, .double, .float]
      case .responseNumber, .referenceNumber: return [.double, .float]
      default: return [.string]
      }
    }
  }
  /// One declared argument: the value the host passes, and the C type it passes it as.
  public struct Parameter: Equatable, Sendable {
    public var argument: Argument
    public var type: CType
  }
  public enum Return: String, Sendable, CaseIterable { case int, int32, int64, float, double }

  public var parameters: [Parameter]
  public var returns: Return
  public var arguments: [Argument] { parameters.map(\.argument) }

  public var description: String {
    "(" + parameters.map { "\($0.argument.rawValue): \($0.type.rawValue)" }.joined(separator: ", ") + ") -> \(returns.rawValue)"
  }

  static var grammar: String {
    "signature must look like \"(response: string, reference: string) -> double\"; arguments: "
      + Argument.allCases.map { "\($0.rawValue): \($0.types.map(\.rawValue).joined(separator: " | "))" }.joined(separator: ", ")
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
    var params: [Parameter] = []
    if !inside.trimmingSpaces.isEmpty {
      for part in inside.split(separator: ",", omittingEmptySubsequences: false) {
        let pieces = part.split(separator: ":", maxSplits: 1).map { String($0).trimmingSpaces }
        guard pieces.count == 2 else { throw fail("argument '\(part.trimmingSpaces)' needs 'name: type'") }
        guard let arg = Argument(rawValue: pieces[0]) else { throw fail("unknown argument '\(pieces[0])'") }
        guard let type = CType(rawValue: pieces[1]), arg.types.contains(type) else {
          let names = arg.types.map(\.rawValue)
          let allowed = names.count == 1 ? names[0] : names.dropLast().joined(separator: ", ") + " or " + names[names.count - 1]
          throw fail("argument '\(pieces[0])' has type \(allowed), not '\(pieces[1])'")
        }
        params.append(Parameter(argument: arg, type: type))
      }
    }
    parameters = params
    returns = ret
  }

  // ---- The number a text states (response_number, reference_number) ----------------------

  /// The number `text` states, rounded to nearest in F (±inf beyond F's range); NaN when it
  /// states none. The text is normalised as exact-match normalises an answer — ASCII whitespace
  /// trimmed, one trailing '.' dropped, trimmed again — and must then be exactly a decimal
  /// number: an optional sign; an integer part (ASCII digits, optionally grouped by ','
  /// thousands separators: a first group of 1–3 digits, then groups of exactly 3) and/or a
  /// fraction ('.' and digits); an optional exponent ('e' or 'E', an optional sign, digits).
  /// Nothing else is a number here: no surrounding words, "inf", "nan" or hexadecimal.
  public static func number<F: BinaryFloatingPoint & LosslessStringConvertible>(in text: String, as type: F.Type) -> F {
    guard let literal = decimalLiteral(text) else { return .nan }
    if let v = F(literal) { return v }
    // Some Swift runtimes refuse an out-of-range literal (ERANGE) instead of rounding it to
    // ±inf or ±0: the decimal exponent of its first significant digit tells which.
    let magnitude: F = decimalExponent(literal) > 0 ? .infinity : 0
    return literal.hasPrefix("-") ? -magnitude : magnitude
  }

  /// `text`'s number (see number(in:as:)) as the characters to convert — sign, digits, '.',
  /// exponent; thousands separators dropped, a digit on each side of a '.' — or nil.
  static func decimalLiteral(_ text: String) -> String? {
    let b = Array(text.utf8)
    func isSpace(_ c: UInt8) -> Bool { c == 0x20 || (c >= 0x09 && c <= 0x0D) }  // space \t \n \v \f \r
    func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }
    func isSign(_ c: UInt8) -> Bool { c == UInt8(ascii: "+") || c == UInt8(ascii: "-") }
    var lo = 0, hi = b.count
    while lo < hi, isSpace(b[lo]) { lo += 1 }
    while hi > lo, isSpace(b[hi - 1]) { hi -= 1 }
    if hi > lo, b[hi - 1] == UInt8(ascii: ".") { hi -= 1 }
    while hi > lo, isSpace(b[hi - 1]) { hi -= 1 }
    var out: [UInt8] = []
    var i = lo
    if i < hi, isSign(b[i]) { out.append(b[i]); i += 1 }
    var intDigits = 0, group = 0, grouped = false
    while i < hi {
      if isDigit(b[i]) {
        intDigits += 1
        group += 1
        if grouped && group > 3 { return nil }
        out.append(b[i])
      } else if b[i] == UInt8(ascii: ",") {
        if group == 0 || (grouped ? group != 3 : group > 3) { return nil }
        grouped = true
        group = 0
      } else {
        break
      }
      i += 1
    }
    if grouped && group != 3 { return nil }
    var fracDigits = 0
    if i < hi, b[i] == UInt8(ascii: ".") {
      // canonical for any parser: "0.5" for ".5", "5" for "5."
      if intDigits == 0 { out.append(UInt8(ascii: "0")) }
      out.append(b[i])
      i += 1
      while i < hi, isDigit(b[i]) { out.append(b[i]); fracDigits += 1; i += 1 }
      if fracDigits == 0 { out.removeLast() }
    }
    guard intDigits + fracDigits > 0 else { return nil }
    if i < hi, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
      out.append(b[i])
      i += 1
      if i < hi, isSign(b[i]) { out.append(b[i]); i += 1 }
      var expDigits = 0
      while i < hi, isDigit(b[i]) { out.append(b[i]); expDigits += 1; i += 1 }
      guard expDigits > 0 else { return nil }
    }
    guard i == hi else { return nil }
    return String(decoding: out, as: UTF8.self)
  }

  /// The power of ten of a decimal literal's first significant digit ("0.05" → −2, "12e3" → 4);
  /// Int.min for zero. The exponent saturates at ±10^9 (no overflow on absurd inputs).
  static func decimalExponent(_ literal: String) -> Int {
    let s = Array(literal.utf8)
    let start = s.first == UInt8(ascii: "+") || s.first == UInt8(ascii: "-") ? 1 : 0
    let end = s.firstIndex(where: { $0 == UInt8(ascii: "e") || $0 == UInt8(ascii: "E") }) ?? s.count
    let point = s[start..<end].firstIndex(of: UInt8(ascii: ".")) ?? end
    let zero = UInt8(ascii: "0")
    var lead: Int
    if let k = s[start..<point].firstIndex(where: { $0 != zero }) {
      lead = point - k - 1
    } else if point < end, let k = s[(point + 1)..<end].firstIndex(where: { $0 != zero }) {
      lead = -(k - point)
    } else {
      return Int.min
    }
    var e = 0, i = end + 1
    let negative = i < s.count && s[i] == UInt8(ascii: "-")
    if i < s.count, s[i] == UInt8(ascii: "-") || s[i] == UInt8(ascii: "+") { i += 1 }
    while i < s.count { e = min(e * 10 + Int(s[i] - zero), 1_000_000_000); i += 1 }
    lead += negative ? -e : e
    return lead
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
    let types: [UnsafeMutablePointer<ffi_type>?] = signature.parameters.map { p in
      switch p.type {
      case .string, .int32Pointer: return cffi_type_pointer()
      case .int64: return cffi_type_sint64()
      case .double: return cffi_type_double()
      case .float: return cffi_type_float()
      }
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

  /// `LIB:SYMBOL:SIGNATURE` (`keel plugins eval --foreign`): the values a config gives as
  /// reward.foreign.library, .symbol and .signature, spelled the same way. The signature is
  /// the text from the last '(' on (a signature has one); the symbol is what lies between the
  /// two ':' before it, so the library path may itself contain ':' or '('.
  public static func parseReference(_ text: String) throws -> (library: String, symbol: String, signature: String) {
    func fail(_ why: String) -> PluginError {
      .foreign("--foreign expects LIB:SYMBOL:SIGNATURE, e.g. '/lib/x86_64-linux-gnu/libm.so.6:fabs:(response_number: double) -> double', got '\(text)': \(why)")
    }
    guard let open = text.lastIndex(of: "(") else { throw fail("no '(' begins a signature") }
    var head = text[..<open]
    while let last = head.last, last.isWhitespace { head = head.dropLast() }
    guard head.last == ":" else { throw fail("no ':' before the signature") }
    head = head.dropLast()
    guard let colon = head.lastIndex(of: ":") else { throw fail("no ':' between the library and the symbol") }
    let library = String(head[..<colon])
    let symbol = String(head[head.index(after: colon)...]).trimmingSpaces
    guard !library.isEmpty else { throw fail("the library is empty") }
    guard !symbol.isEmpty, !symbol.contains(where: \.isWhitespace) else { throw fail("'\(symbol)' is not a symbol") }
    return (library, symbol, String(text[open...]))
  }

  /// Call the function once per sample.
  public func score(_ samples: [RewardSample]) throws -> RewardResult {
    var rewards: [Float] = []
    rewards.reserveCapacity(samples.count)
    for (i, s) in samples.enumerated() {
      let r = lock.withLock { call(s) }
      guard r.value.isFinite, r.reward.isFinite else { throw refusal(r.value, sample: i, s) }
      rewards.append(r.reward)
    }
    return RewardResult(rewards: rewards, components: samples.map { _ in [] })
  }

  /// The numeric arguments a sample passes, as `name=value` with the value as the declared C
  /// type holds it (for `keel plugins eval --foreign`'s lines).
  public func numericArguments(_ s: RewardSample) -> [String] {
    signature.parameters.compactMap { p in
      switch Self.number(p, s) {
      case .int64(let v): return "\(p.argument.rawValue)=\(v)"
      case .double(let v): return "\(p.argument.rawValue)=\(v)"
      case .float(let v): return "\(p.argument.rawValue)=\(v)"
      case nil: return nil
      }
    }
  }

  /// A numeric argument's value for one sample, in its declared C type (nil: not numeric).
  enum Number { case int64(Int64), double(Double), float(Float) }
  static func number(_ p: ForeignSignature.Parameter, _ s: RewardSample) -> Number? {
    switch (p.argument, p.type) {
    case (.responseLen, .int64): return .int64(Int64(s.responseIds.count))
    case (.responseLen, .double): return .double(Double(s.responseIds.count))
    case (.responseLen, .float): return .float(Float(s.responseIds.count))
    case (.responseNumber, .double): return .double(ForeignSignature.number(in: s.response, as: Double.self))
    case (.responseNumber, .float): return .float(ForeignSignature.number(in: s.response, as: Float.self))
    case (.referenceNumber, .double): return .double(ForeignSignature.number(in: s.reference, as: Double.self))
    case (.referenceNumber, .float): return .float(ForeignSignature.number(in: s.reference, as: Float.self))
    default: return nil
    }
  }

  /// The error for a result that is not a finite float32: it names the function, its library,
  /// the sample, and any number argument that was NaN (a text that states no number).
  private func refusal(_ value: Double, sample i: Int, _ s: RewardSample) -> PluginError {
    var why = value.isFinite ? ", beyond float32's range (a reward is a float32)" : " (a reward must be a finite number)"
    let nanArguments = signature.parameters.filter { p in
      switch Self.number(p, s) {
      case .double(let v): return v.isNaN
      case .float(let v): return v.isNaN
      default: return false
      }
    }.map(\.argument.rawValue)
    if !nanArguments.isEmpty {
      why += "; its argument \(nanArguments.joined(separator: ", ")) was NaN: the text states no number"
    }
    return .foreign("foreign reward \(symbol) (\(libraryPath)) declared as \(signature) returned \(value) for sample \(i)\(why)")
  }

  /// One call: the reward (the result converted to Float, as it always was) and the result as
  /// a Double (exact, except an int64 beyond 2^53), for the finiteness check and the message.
  private func call(_ s: RewardSample) -> (reward: Float, value: Double) {
    // Argument storage: each argument value lives in its own zeroed 8-byte slot (a float in
    // its first 4 bytes); libffi receives pointers to the slots.
    let n = signature.parameters.count
    let slots = UnsafeMutablePointer<UInt64>.allocate(capacity: max(n, 1))
    slots.initialize(repeating: 0, count: max(n, 1))
    let values = UnsafeMutablePointer<UnsafeMutableRawPointer?>.allocate(capacity: max(n, 1))
    var owned: [UnsafeMutableRawPointer] = []
    defer {
      owned.forEach { free($0) }
      slots.deallocate()
      values.deallocate()
    }
    for (i, p) in signature.parameters.enumerated() {
      let raw = UnsafeMutableRawPointer(slots + i)
      switch p.argument {
      case .responseLen, .responseNumber, .referenceNumber:
        switch Self.number(p, s) {
        case .int64(let v): raw.storeBytes(of: v, as: Int64.self)
        case .double(let v): raw.storeBytes(of: v, as: Double.self)
        case .float(let v): raw.storeBytes(of: v, as: Float.self)
        case nil: break  // unreachable: the parser allows only numeric types for these
        }
      case .responseIds:
        let ids = malloc(max(s.responseIds.count, 1) * 4)!
        s.responseIds.withUnsafeBytes { bytes in
          if let base = bytes.baseAddress, bytes.count > 0 { ids.copyMemory(from: base, byteCount: bytes.count) }
        }
        owned.append(ids)
        raw.storeBytes(of: ids, as: UnsafeMutableRawPointer.self)
      case .prompt, .response, .reference, .task, .extra:
        let text: String
        switch p.argument {
        case .prompt: text = s.prompt
        case .response: text = s.response
        case .reference: text = s.reference
        case .task: text = s.task
        default: text = s.extraJSON
        }
        let copy = UnsafeMutableRawPointer(strdup(text)!)
        owned.append(copy)
        raw.storeBytes(of: copy, as: UnsafeMutableRawPointer.self)
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
    case .int, .int32:
      let v = Int32(truncatingIfNeeded: Int64(bitPattern: result))
      return (Float(v), Double(v))
    case .int64:
      let v = Int64(bitPattern: result)
      return (Float(v), Double(v))
    case .float:
      let v = withUnsafeBytes(of: result) { $0.load(as: Float.self) }
      return (v, Double(v))
    case .double:
      let v = withUnsafeBytes(of: result) { $0.load(as: Double.self) }
      return (Float(v), v)
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
