// Log.swift — Keel's messages through swift-log, with levels. KeelLogHandler writes one line per
// message to stderr: info and notice as the bare message, warnings as "warning: …", errors as
// "error: …", debug and trace as "debug: [label] …". The level shown is KEEL_LOG_LEVEL's (trace
// | debug | info | notice | warning | error | critical; default info), so a plugin's DEBUG lines
// are hidden unless asked for. `keel` installs the handler once at start (KeelLog.bootstrap).
import Foundation
import Logging

public struct KeelLogHandler: LogHandler {
  public var logLevel: Logger.Level
  public var metadata: Logger.Metadata = [:]
  let label: String

  public init(label: String, level: Logger.Level = KeelLog.levelFromEnvironment()) {
    self.label = label
    self.logLevel = level
  }

  public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  public func log(event: LogEvent) {
    let prefix: String
    switch event.level {
    case .trace, .debug: prefix = "debug: [\(label)] "
    case .info, .notice: prefix = ""
    case .warning: prefix = "warning: "
    case .error, .critical: prefix = "error: "
    }
    FileHandle.standardError.write(Data((prefix + "\(event.message)\n").utf8))
  }
}

public enum KeelLog {
  /// KEEL_LOG_LEVEL, else info (an unknown value: info, said once on stderr).
  public static func levelFromEnvironment() -> Logger.Level {
    guard let text = ProcessInfo.processInfo.environment["KEEL_LOG_LEVEL"], !text.isEmpty else { return .info }
    if let level = Logger.Level(rawValue: text.lowercased()) { return level }
    FileHandle.standardError.write(Data("warning: KEEL_LOG_LEVEL '\(text)' is not one of trace, debug, info, notice, warning, error, critical: using info\n".utf8))
    return .info
  }

  /// Install KeelLogHandler for every logger of this process (call once, first thing).
  public static func bootstrap() {
    let level = levelFromEnvironment()
    LoggingSystem.bootstrap { KeelLogHandler(label: $0, level: level) }
  }

  /// A logger that drops everything (tests; MPI ranks other than 0).
  public static let silent = Logger(label: "keel.silent", factory: { _ in SwiftLogNoOpLogHandler() })
}
