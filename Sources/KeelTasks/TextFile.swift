// TextFile.swift — reading a text file from anyone: a missing or unreadable file and a file
// that is not UTF-8 are different errors, each naming the file (and the first bad byte's line
// and offset), where "cannot read" used to cover both.
import Foundation

public enum TextFile {
  /// The file's text. `what` names the file's role in messages ("--config", "dataset").
  /// Refuses files over `limit` bytes before reading them.
  public static func read(_ path: String, what: String, limit: Int = 1 << 31) throws -> String {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw TaskError.invalid("\(what) \(path): no such file") }
    guard !isDir.boolValue else { throw TaskError.invalid("\(what) \(path) is a directory, not a file") }
    if let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber, size.intValue > limit {
      throw TaskError.invalid("\(what) \(path) is \(size.intValue) bytes, more than the \(limit) allowed")
    }
    guard let data = FileManager.default.contents(atPath: path) else { throw TaskError.invalid("\(what) \(path): cannot read the file (permissions?)") }
    if let text = String(data: data, encoding: .utf8) { return text }
    // where the UTF-8 breaks
    var line = 1, offset = 0
    var it = data.makeIterator()
    var decoder = UTF8()
    while case .scalarValue(let c) = decoder.decode(&it) {
      if c == "\n" { line += 1 }
      offset += UTF8.width(c)
    }
    throw TaskError.invalid("\(what) \(path) is not UTF-8 text (the first invalid byte is on line \(line), near byte offset \(offset))")
  }
}
