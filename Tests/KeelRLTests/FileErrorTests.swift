// FileErrorTests.swift — writing and reading files fails with one clear line: a full disk says
// "no space left" (the real ENOSPC of /dev/full), a failed atomic write leaves no temp file, the
// temps a killed process left are cleaned at the next start, a non-UTF-8 file is named as
// such with the line of its first bad byte, a corrupt run_state.json is named.
import Foundation
import KeelModel
import KeelRL
import KeelTasks
import KeelTestSupport
import XCTest

final class FileErrorTests: XCTestCase {
  func testAFullDiskIsNamed() throws {
    let f = try AppendFile(path: "/dev/full")
    XCTAssertThrowsError(try f.append(Data("x\n".utf8))) { e in
      XCTAssertEqual(e as? FileWriteError, FileWriteError(path: "/dev/full", code: ENOSPC))
      XCTAssertTrue("\(e)".contains("cannot write /dev/full: no space left on the device"), "\(e)")
    }
    // an atomic write into a directory that does not exist: the error names the file, nothing is left
    let dir = TestSupport.tempDir("keel-write")
    XCTAssertThrowsError(try writeAtomically(Data("x".utf8), to: dir + "/missing/f.json")) { XCTAssertTrue("\($0)".contains(dir + "/missing/f.json"), "\($0)") }
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
    try writeAtomically(Data("ok".utf8), to: dir + "/f.json")
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["f.json"])
  }

  func testTempsOfAKilledProcessAreCleanedAtTheNextStart() throws {
    let dir = TestSupport.tempDir("keel-stale")
    // a PID that existed and is gone
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/true")
    try p.run()
    p.waitUntilExit()
    let dead = p.processIdentifier
    for name in ["config.yaml.tmp-\(dead)", "config.yaml.tmp-\(getpid())", "keep.json", "notes.tmp-x"] {
      _ = FileManager.default.createFile(atPath: dir + "/" + name, contents: Data())
    }
    try FileManager.default.createDirectory(atPath: dir + "/checkpoints/step-000005.tmp", withIntermediateDirectories: true)
    _ = try RunDirectory(path: dir, create: true)
    XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["config.yaml.tmp-\(getpid())", "keep.json", "notes.tmp-x", "checkpoints"])
    XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/checkpoints"), [])
  }

  func testUnreadableTextAndRunStateAreNamed() throws {
    let dir = TestSupport.tempDir("keel-text")
    var bytes = Data("{\"prompt\": \"1+1=\", \"answer\": 2}\n{\"prompt\": \"".utf8)
    bytes.append(contentsOf: [0xFF, 0xFE])
    bytes.append(Data("\", \"answer\": 3}\n".utf8))
    try bytes.write(to: URL(fileURLWithPath: dir + "/bad.jsonl"))
    XCTAssertThrowsError(try Dataset(jsonl: dir + "/bad.jsonl", evalCount: 4)) {
      XCTAssertTrue("\($0)".contains("dataset \(dir)/bad.jsonl is not UTF-8 text (the first invalid byte is on line 2"), "\($0)")
    }
    XCTAssertThrowsError(try TextFile.read(dir + "/nope.yaml", what: "--config")) { XCTAssertTrue("\($0)".contains("--config \(dir)/nope.yaml: no such file"), "\($0)") }
    try "{\"step\": -5, \"trainSeconds\": 1, \"evalHistory\": []}".write(toFile: dir + "/run_state.json", atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try RunState.load(directory: dir)) { XCTAssertTrue("\($0)".contains("\(dir)/run_state.json: step -5"), "\($0)") }
    try "{\"step\": 3".write(toFile: dir + "/run_state.json", atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try RunState.load(directory: dir)) { XCTAssertTrue("\($0)".contains("\(dir)/run_state.json is not a valid run state"), "\($0)") }
  }
}
