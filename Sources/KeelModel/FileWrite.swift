// FileWrite.swift — every file Keel writes goes through here: whole files atomically (temp
// file, fsync, rename: complete or absent, no temp left behind on failure) and append-only
// logs; a failure is a FileWriteError that says what the user needs ("no space left on the
// device", "read-only", "permission denied"), with the errno kept, never a trap or a raw NSError.
import Foundation

/// A failed write, said the way a user needs it: "no space left on …", "… is read-only".
public struct FileWriteError: Error, CustomStringConvertible, Equatable {
  public let path: String
  public let code: Int32
  public init(path: String, code: Int32) { self.path = path; self.code = code }
  public var description: String {
    switch code {
    case ENOSPC: return "cannot write \(path): no space left on the device (ENOSPC); free space and resume — earlier checkpoints are intact"
    case EROFS: return "cannot write \(path): the file system is read-only (EROFS)"
    case EACCES, EPERM: return "cannot write \(path): permission denied (the directory is read-only for this user)"
    case EDQUOT: return "cannot write \(path): disk quota exceeded (EDQUOT)"
    default: return "cannot write \(path): \(String(cString: strerror(code)))"
    }
  }

  /// A Foundation error (FileManager, Data.write) as a FileWriteError when it carries an errno.
  public static func from(_ error: Error, path: String) -> Error {
    if let e = error as? FileWriteError { return e }
    var ns: NSError? = error as NSError
    while let e = ns {
      if e.domain == NSPOSIXErrorDomain { return FileWriteError(path: path, code: Int32(e.code)) }
      // (on Linux the underlying error is stored as a Swift Error, not an NSError)
      let underlying = (e.userInfo[NSUnderlyingErrorKey] as? Error).map { $0 as NSError }
      if underlying == nil, e.domain == NSCocoaErrorDomain {
        let codes: [Int: Int32] = [4: ENOENT, 260: ENOENT, 513: EACCES, 640: ENOSPC, 642: EROFS]
        if let c = codes[e.code] { return FileWriteError(path: path, code: c) }
      }
      ns = underlying
    }
    return error
  }
}

/// Write all of `data` to an open descriptor, or throw the errno.
func writeAll(_ fd: Int32, _ data: Data, path: String) throws {
  try data.withUnsafeBytes { raw in
    var off = 0
    while off < raw.count {
      let n = write(fd, raw.baseAddress! + off, raw.count - off)
      if n < 0 {
        if errno == EINTR { continue }
        throw FileWriteError(path: path, code: errno)
      }
      off += n
    }
  }
}

/// Temp file + fsync + rename: the file is complete or absent, and a failure (a full disk, a
/// read-only directory) is a FileWriteError with no temp file left behind.
public func writeAtomically(_ data: Data, to path: String) throws {
  let tmp = path + ".tmp-\(getpid())"
  let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
  guard fd >= 0 else { throw FileWriteError(path: path, code: errno) }
  do {
    try writeAll(fd, data, path: path)
    guard fsync(fd) == 0 else { throw FileWriteError(path: path, code: errno) }
    guard close(fd) == 0 else { throw FileWriteError(path: path, code: errno) }
  } catch {
    close(fd)
    unlink(tmp)
    throw error
  }
  guard rename(tmp, path) == 0 else {
    let e = errno
    unlink(tmp)
    throw FileWriteError(path: path, code: e)
  }
}

/// An append-only file (metrics.jsonl and the like) whose write errors are thrown, not trapped.
public final class AppendFile {
  public let path: String
  let fd: Int32
  public init(path: String) throws {
    self.path = path
    fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FileWriteError(path: path, code: errno) }
  }
  public func append(_ data: Data) throws { try writeAll(fd, data, path: path) }
  deinit { close(fd) }
}
