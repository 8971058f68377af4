// MetricsSink.swift — where per-step metrics go: metrics.jsonl (one JSON object per line,
// sorted keys, flushed each step) and, optionally, TensorBoard event files written natively
// (TFRecord framing with masked CRC-32C around hand-encoded `Event` protobufs), so
// `tensorboard --logdir RUN/tensorboard` shows every scalar without Python in Keel.
import Foundation
import KeelModel

public typealias Metrics = [String: Double]

/// Keys that measure time; they differ between runs and are excluded from equality checks.
public let timingKeys: Set<String> = ["seconds", "tokens_per_second", "time_sampling", "time_scoring", "time_old_pass",
                                      "time_updates", "time_eval", "time_diagnostics", "wall_seconds", "time_allreduce"]

public final class JSONLWriter {
  let file: AppendFile
  public init(path: String, truncateToStepAtMost: Int? = nil) throws {
    let fm = FileManager.default
    if let maxStep = truncateToStepAtMost, let text = try? String(contentsOfFile: path, encoding: .utf8) {
      // resume: keep the lines of steps already covered by the checkpoint
      struct Step: Decodable { var step: Int }
      let kept = text.split(separator: "\n").filter { line in
        guard let s = try? JSONDecoder().decode(Step.self, from: Data(line.utf8)) else { return false }
        return s.step <= maxStep
      }
      try writeAtomically(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: path)
    } else if !fm.fileExists(atPath: path) || truncateToStepAtMost == nil {
      try writeAtomically(Data(), to: path)
    }
    file = try AppendFile(path: path)
  }
  /// Told the keys of a line's non-finite values (written as null), e.g. to log a warning.
  public var onNonFinite: ((_ step: Int, _ keys: [String]) -> Void)?

  /// One line. A NaN or infinite value is written as null (JSON has no NaN) and reported
  /// through `onNonFinite`: the line is never dropped.
  public func write(_ m: Metrics, step: Int) throws {
    let bad = m.filter { !$0.value.isFinite }.map(\.key).sorted()
    if !bad.isEmpty { onNonFinite?(step, bad) }
    try write(MetricsLine(step: step, values: m))
  }

  /// One line from a Codable record (it must have a "step" for resume truncation to keep it).
  /// MetricsLine writes a non-finite value as null; any other record's as the string "nan" /
  /// "inf" / "-inf": never dropped, never an encoder error.
  public func write<T: Encodable>(_ line: T) throws {
    try file.append(try JSONOutput.encoder().encode(line) + Data("\n".utf8))
  }
}

/// A metrics.jsonl line: "step" and every metric, a non-finite value as null.
struct MetricsLine: Encodable {
  var step: Int
  var values: Metrics
  struct Key: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
  }
  func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: Key.self)
    try c.encode(step, forKey: Key("step"))
    for (k, v) in values where k != "step" {
      if v.isFinite { try c.encode(v, forKey: Key(k)) } else { try c.encodeNil(forKey: Key(k)) }
    }
  }
}

/// A rollouts.jsonl line (log.rollouts): one response of the global batch.
struct RolloutLine: Encodable {
  var step: Int, prompt: Int, sample: Int, reward: Double, advantage: Double, truncated: Bool
  var tokens: [Int], text: String
  var logp_rollout: [Double]
}

/// A weights.jsonl line (distributed.check_every): every rank's weight checksum.
struct WeightsLine: Encodable {
  var step: Int, ranks: Int, checksums: [String]
}

/// TensorBoard scalars, natively.
public final class TensorBoardWriter {
  let file: AppendFile
  public let path: String

  public init(directory: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let host = ProcessInfo.processInfo.hostName
    path = directory + "/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host)"
    file = try AppendFile(path: path)
    var e = Data()
    Self.field(&e, 1, wire: 1); e.append(Self.le(Date().timeIntervalSince1970.bitPattern))
    Self.field(&e, 3, wire: 2); Self.bytes(&e, Data("brain.Event:2".utf8))
    try record(e)
  }

  public func write(_ m: Metrics, step: Int) throws {
    var summary = Data()
    for (tag, value) in m.sorted(by: { $0.key < $1.key }) where value.isFinite {
      var v = Data()
      Self.field(&v, 1, wire: 2); Self.bytes(&v, Data(tag.utf8))
      Self.field(&v, 2, wire: 5); v.append(Self.le(Float(value).bitPattern))
      Self.field(&summary, 1, wire: 2); Self.bytes(&summary, v)
    }
    var e = Data()
    Self.field(&e, 1, wire: 1); e.append(Self.le(Date().timeIntervalSince1970.bitPattern))
    Self.field(&e, 2, wire: 0); Self.varint(&e, UInt64(step))
    Self.field(&e, 5, wire: 2); Self.bytes(&e, summary)
    try record(e)
  }

  func record(_ data: Data) throws {
    var out = Data()
    let len = Self.le(UInt64(data.count))
    out.append(len)
    out.append(Self.le(Self.maskedCRC(len)))
    out.append(data)
    out.append(Self.le(Self.maskedCRC(data)))
    try file.append(out)
  }

  static func le<T: FixedWidthInteger>(_ x: T) -> Data { withUnsafeBytes(of: x.littleEndian) { Data($0) } }
  static func varint(_ d: inout Data, _ x: UInt64) {
    var x = x
    while x >= 0x80 { d.append(UInt8(x & 0x7F) | 0x80); x >>= 7 }
    d.append(UInt8(x))
  }
  static func field(_ d: inout Data, _ number: UInt64, wire: UInt64) { varint(&d, number << 3 | wire) }
  static func bytes(_ d: inout Data, _ b: Data) { varint(&d, UInt64(b.count)); d.append(b) }

  static let crcTable: [UInt32] = (0..<256).map { i -> UInt32 in
    var c = UInt32(i)
    for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
    return c
  }
  /// CRC-32C (Castagnoli).
  public static func crc32c(_ data: Data) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for b in data { c = crcTable[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
    return c ^ 0xFFFF_FFFF
  }
  static func maskedCRC(_ data: Data) -> UInt32 {
    let c = crc32c(data)
    return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
  }
}
