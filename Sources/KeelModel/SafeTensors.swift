// SafeTensors.swift — reading and writing the safetensors format: an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}}, then raw little-endian
// data. Reads F32, BF16 and F16 (converted to float32); writes F32. Every malformed case is
// an error naming the file and what is wrong: truncated file, header length beyond the file,
// bad JSON, offsets outside the data, a size that does not match the shape.
import Foundation

public enum SafeTensorsError: Error, CustomStringConvertible, Equatable {
  case malformed(path: String, reason: String)
  public var description: String {
    switch self { case .malformed(let path, let reason): return "\(path): not a valid safetensors file: \(reason)" }
  }
}

public struct SafeTensorsFile {
  public struct Entry { public let dtype: String; public let shape: [Int]; public let range: Range<Int> }
  public let path: String
  public let entries: [String: Entry]
  public let metadata: [String: String]
  let data: Data
  let dataStart: Int

  public init(path: String) throws {
    func bad(_ r: String) -> SafeTensorsError { .malformed(path: path, reason: r) }
    guard let data = FileManager.default.contents(atPath: path) else { throw bad("cannot read the file") }
    guard data.count >= 8 else { throw bad("file is \(data.count) bytes, shorter than the 8-byte header length") }
    let n = data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
    guard n <= UInt64(data.count - 8) else { throw bad("header length \(n) runs past the end of the \(data.count)-byte file (truncated?)") }
    guard n <= 100_000_000 else { throw bad("header length \(n) is over the format's 100 MB limit") }
    let headerData = data.subdata(in: 8..<(8 + Int(n)))
    guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
      throw bad("the header is not a JSON object")
    }
    let dataStart = 8 + Int(n)
    let dataSize = data.count - dataStart
    var entries: [String: Entry] = [:]
    var metadata: [String: String] = [:]
    for (name, value) in header {
      if name == "__metadata__" {
        metadata = (value as? [String: String]) ?? [:]
        continue
      }
      guard let obj = value as? [String: Any], let dtype = obj["dtype"] as? String,
            let shape = obj["shape"] as? [Int], let offs = obj["data_offsets"] as? [Int], offs.count == 2 else {
        throw bad("tensor '\(name)' lacks dtype, shape or data_offsets")
      }
      let width: Int
      switch dtype {
      case "F32": width = 4
      case "BF16", "F16": width = 2
      default: throw bad("tensor '\(name)' has dtype \(dtype); Keel reads F32, BF16 and F16")
      }
      guard offs[0] >= 0, offs[0] <= offs[1], offs[1] <= dataSize else {
        throw bad("tensor '\(name)' data_offsets \(offs) lie outside the \(dataSize) data bytes (truncated?)")
      }
      // element count without overflow; no negative dimension
      var elements = 1
      for d in shape {
        guard d >= 0 else { throw bad("tensor '\(name)' has a negative dimension in shape \(shape)") }
        let (product, overflow) = elements.multipliedReportingOverflow(by: d)
        guard !overflow, product <= dataSize else { throw bad("tensor '\(name)' shape \(shape) holds more elements than the file has bytes") }
        elements = product
      }
      guard offs[1] - offs[0] == elements * width else {
        throw bad("tensor '\(name)' has \(offs[1] - offs[0]) bytes for shape \(shape) of \(dtype)")
      }
      entries[name] = Entry(dtype: dtype, shape: shape, range: offs[0]..<offs[1])
    }
    self.path = path
    self.entries = entries
    self.metadata = metadata
    self.data = data
    self.dataStart = dataStart
  }

  /// A tensor as float32.
  public func floats(_ name: String) -> [Float]? {
    guard let e = entries[name] else { return nil }
    let lo = dataStart + e.range.lowerBound, hi = dataStart + e.range.upperBound
    return data[lo..<hi].withUnsafeBytes { raw -> [Float] in
      switch e.dtype {
      case "F32":
        return (0..<(raw.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
      case "BF16":
        return (0..<(raw.count / 2)).map { Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) << 16) }
      default:
        return (0..<(raw.count / 2)).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
      }
    }
  }

  /// Write F32 tensors (in the given order) atomically: a temp file beside `path`, then rename.
  public static func write(path: String, tensors: [(name: String, shape: [Int], values: UnsafeBufferPointer<Float>)],
                           metadata: [String: String] = [:]) throws {
    var header: [String: Any] = [:]
    var offset = 0
    for t in tensors {
      precondition(t.shape.reduce(1, *) == t.values.count)
      header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + t.values.count * 4]] as [String: Any]
      offset += t.values.count * 4
    }
    if !metadata.isEmpty { header["__metadata__"] = metadata }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while (8 + json.count) % 8 != 0 { json.append(0x20) }  // pad with spaces to 8-byte alignment
    var out = Data(capacity: 8 + json.count + offset)
    var n = UInt64(json.count).littleEndian
    withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
    out.append(json)
    for t in tensors { out.append(UnsafeBufferPointer(start: t.values.baseAddress, count: t.values.count)) }
    try writeAtomically(out, to: path)
  }
}
