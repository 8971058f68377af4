// TrainCLITests.swift — `keel train` as a user runs it: SIGINT finishes the step, writes a
// checkpoint and exits 0, and --resume continues from it; --tensorboard writes real TFRecord
// event files (framing, masked CRC-32C and the Event/Summary protobufs checked by an
// independent bitwise decoder here).
import Foundation
import KeelTestSupport
import XCTest

final class TrainCLITests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]

  func testSIGINTCheckpointsAndExitsCleanlyThenResumes() throws {
    let dir = TestSupport.tempDir("keel-sigint") + "/run"
    let (p, pipe) = try TestSupport.start(TestSupport.keel, ["train", "--preset", "test", "--steps", "100000", "--out", dir, "--quiet",
                                                             "--set", "checkpoint.every=100000"], environment: env)
    // wait until some steps are logged, then interrupt
    let deadline = Date().addingTimeInterval(60)
    while Date() < deadline {
      if let text = try? String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8), text.split(separator: "\n").count >= 4 { break }
      usleep(100_000)
    }
    kill(p.processIdentifier, SIGINT)
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    XCTAssertEqual(p.terminationReason, .exit)
    XCTAssertEqual(p.terminationStatus, 0, output)
    XCTAssertTrue(output.contains("stopped by signal after step"), output)
    let latest = try String(contentsOfFile: dir + "/checkpoints/latest", encoding: .utf8)
    let stoppedAt = Int(latest.dropFirst("step-".count))!
    XCTAssertGreaterThanOrEqual(stoppedAt, 3)
    // the summary says so, and a resume continues from there
    let summary = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/summary.json"))) as! [String: Any]
    XCTAssertEqual(summary["stoppedBySignal"] as? Bool, true)
    let r = try TestSupport.run(TestSupport.keel, ["train", "--resume", dir, "--steps", String(stoppedAt + 2), "--quiet"], environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    let steps = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
      (try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any])["step"] as! Int
    }
    XCTAssertEqual(steps, Array(0...(stoppedAt + 2)), "every step exactly once across the interruption")
  }

  // MARK: TensorBoard

  /// CRC-32C, bit by bit (independent of the table-driven one in MetricsSink.swift).
  func crc32c(_ data: Data) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for byte in data {
      c ^= UInt32(byte)
      for _ in 0..<8 { c = (c >> 1) ^ (c & 1 == 1 ? 0x82F6_3B78 : 0) }
    }
    return ~c
  }
  func masked(_ c: UInt32) -> UInt32 { ((c >> 15) | (c << 17)) &+ 0xA282_EAD8 }

  /// Minimal protobuf walk: (field number, wire type, payload bytes or varint value).
  func fields(_ d: Data) -> [(Int, Int, Data, UInt64)] {
    var out: [(Int, Int, Data, UInt64)] = []
    var i = d.startIndex
    func varint() -> UInt64 {
      var v: UInt64 = 0, shift: UInt64 = 0
      while true { let b = d[i]; i += 1; v |= UInt64(b & 0x7F) << shift; if b & 0x80 == 0 { return v }; shift += 7 }
    }
    while i < d.endIndex {
      let key = varint()
      let field = Int(key >> 3), wire = Int(key & 7)
      switch wire {
      case 0: out.append((field, wire, Data(), varint()))
      case 1: out.append((field, wire, d[i..<(i + 8)], 0)); i += 8
      case 2: let n = Int(varint()); out.append((field, wire, d[i..<(i + n)], 0)); i += n
      case 5: out.append((field, wire, d[i..<(i + 4)], 0)); i += 4
      default: XCTFail("unexpected wire type \(wire)"); return out
      }
    }
    return out
  }

  func testTensorBoardEventFilesAreValid() throws {
    let dir = TestSupport.tempDir("keel-tb") + "/run"
    let r = try TestSupport.run(TestSupport.keel, ["train", "--preset", "test", "--steps", "3", "--out", dir, "--quiet", "--tensorboard"], environment: env)
    XCTAssertEqual(r.status, 0, r.stdout)
    let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/tensorboard")
    let file = try XCTUnwrap(files.first { $0.hasPrefix("events.out.tfevents.") })
    let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/tensorboard/" + file))
    var i = 0
    var events: [Data] = []
    while i < data.count {
      let lenBytes = data.subdata(in: i..<(i + 8))
      let len = Int(lenBytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian)
      let lenCRC = data.subdata(in: (i + 8)..<(i + 12)).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }.littleEndian
      XCTAssertEqual(lenCRC, masked(crc32c(lenBytes)), "length CRC of record \(events.count)")
      let payload = data.subdata(in: (i + 12)..<(i + 12 + len))
      let dataCRC = data.subdata(in: (i + 12 + len)..<(i + 16 + len)).withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) }.littleEndian
      XCTAssertEqual(dataCRC, masked(crc32c(payload)), "data CRC of record \(events.count)")
      events.append(payload)
      i += 16 + len
    }
    XCTAssertEqual(i, data.count)
    // first: file_version; then one event per metrics line, with step and scalar summaries
    XCTAssertTrue(fields(events[0]).contains { $0.0 == 3 && String(decoding: $0.2, as: UTF8.self) == "brain.Event:2" })
    let metrics = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
    XCTAssertEqual(events.count, 1 + metrics.count)
    for (event, row) in zip(events.dropFirst(), metrics) {
      let f = fields(event)
      XCTAssertEqual(f.first { $0.0 == 2 }?.3, UInt64(row["step"] as! Int))
      let summary = try XCTUnwrap(f.first { $0.0 == 5 }?.2)
      var scalars: [String: Float] = [:]
      for value in fields(summary) where value.0 == 1 {
        let vf = fields(value.2)
        let tag = String(decoding: vf.first { $0.0 == 1 }!.2, as: UTF8.self)
        scalars[tag] = vf.first { $0.0 == 2 }!.2.withUnsafeBytes { Float(bitPattern: $0.loadUnaligned(as: UInt32.self).littleEndian) }
      }
      for (key, value) in row where key != "step" {
        guard let v = value as? Double else { continue }
        XCTAssertEqual(scalars[key], Float(v), "step \(row["step"]!) \(key)")
      }
    }
  }
}
