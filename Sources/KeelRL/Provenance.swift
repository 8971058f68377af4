// Provenance.swift — a run's provenance.json as a Codable record: Keel's version and commit, the
// plugins (role, name, path, SHA-256, ABI, parameters, declared metrics), the input files with
// their SHA-256, the machine (CPU model and flags, BLAS, threads, ranks), the cold start and the
// data version. Written once by RunDirectory.writeProvenance; read by keel compare (to reuse a
// run only if every input is unchanged) and by its report. Fields added later are optional, so
// older runs still read.
import Foundation
import KeelModel

public struct Provenance: Codable, Sendable {
  public struct Plugin: Codable, Sendable {
    /// objective | reward | baseline | grader | foreign-reward
    public var role: String
    public var name: String
    public var path: String
    public var sha256: String
    public var abi: String?
    public var version: String?
    public var parameters: [String: String]?
    /// The metrics.jsonl keys this plugin's declared scalars are written under.
    public var metrics: [String]?
    /// The grader's threshold (a response is correct at a reward ≥ this).
    public var threshold: Double?
    /// A foreign reward's libffi signature.
    public var signature: String?
  }
  public struct File: Codable, Sendable {
    public var role: String, path: String, sha256: String
  }

  public var keelVersion: String
  public var pluginAbi: String
  public var keelCommit: String
  public var plugins: [Plugin]
  public var files: [File]
  public var blas: String
  public var cpuModel: String
  public var cpuFlags: [String]
  public var threads: Int
  public var ranks: Int
  public var coldStart: String
  public var modelParameters: Int
  /// Absent in runs made before it was recorded (compare then infers it from the config).
  public var dataVersion: String?

  public func encoded() throws -> Data {
    let enc = JSONOutput.encoder(pretty: true)
    enc.keyEncodingStrategy = .convertToSnakeCase
    return try enc.encode(self)
  }

  /// The provenance.json of a run directory, or nil when it is missing or unreadable.
  public static func read(run directory: String) -> Provenance? {
    guard let data = FileManager.default.contents(atPath: directory + "/provenance.json") else { return nil }
    let dec = JSONDecoder()
    dec.keyDecodingStrategy = .convertFromSnakeCase
    dec.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
    return try? dec.decode(Provenance.self, from: data)
  }
}
