// SFTDataTests.swift — keel sft's JSONL demonstrations: only the split hash's train side is
// demonstrated, its validation side (≤ 200 rows) stops the training, held-out rows are never
// used; a row's `response` field is its demonstration, else marker + answer; the order is a
// seeded permutation (every train row once per epoch).
import Foundation
import KeelRL
import KeelTasks
import XCTest

final class SFTDataTests: XCTestCase {
  func testJSONLDemonstrationsUseTrainRowsOnlyAndTheirResponses() throws {
    let path = NSTemporaryDirectory() + "keel-sftdata-\(getpid()).jsonl"
    var rows: [String] = []
    for a in 0..<60 { for b in 0..<40 {
      // every third row carries its own demonstration
      let extra = (a + b) % 3 == 0 ? ", \"response\": \"\(a)+\(b)=#\(a + b)\"" : ""
      rows.append("{\"prompt\": \"\(a)+\(b)=\", \"answer\": \(a + b)\(extra)}")
    } }
    try rows.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    let d = try JSONLDemonstrations(path: path, marker: "#", seed: 3)
    XCTAssertTrue(d.train.allSatisfy { TaskSplit.split(of: $0.problem.prompt) == .train })
    XCTAssertTrue(d.validation.allSatisfy { TaskSplit.split(of: $0.prompt) == .validation })
    let expectedTrain = rows.count - (try Dataset.rows(path, fields: .init())).filter { TaskSplit.split(of: $0.prompt) != .train }.count
    XCTAssertEqual(d.train.count, expectedTrain)
    XCTAssertEqual(d.validation.count, min(200, (try Dataset.rows(path, fields: .init())).filter { TaskSplit.split(of: $0.prompt) == .validation }.count))
    XCTAssertGreaterThan(d.validation.count, 100)
    // responses: the field when present, else marker + answer
    for (p, r) in d.train {
      let parts = p.prompt.dropLast().split(separator: "+").map { Int($0)! }
      XCTAssertEqual(r, (parts[0] + parts[1]) % 3 == 0 ? "\(parts[0])+\(parts[1])=#\(p.answer)" : "#\(p.answer)")
    }
    // one epoch is a permutation of the train rows, and the seed changes it
    let epoch = (0..<d.train.count).map { d.demonstration($0).prompt }
    XCTAssertEqual(Set(epoch).count, d.train.count)
    XCTAssertEqual(d.demonstration(d.train.count).prompt, epoch[0])
    let other = try JSONLDemonstrations(path: path, marker: "#", seed: 4)
    XCTAssertNotEqual((0..<50).map { other.demonstration($0).prompt }, Array(epoch.prefix(50)))
    XCTAssertEqual(Set((0..<d.train.count).map { other.demonstration($0).prompt }), Set(epoch))
  }

  func testAFileWithoutValidationRowsIsAClearError() throws {
    let path = NSTemporaryDirectory() + "keel-sftdata-small-\(getpid()).jsonl"
    try "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n".write(toFile: path, atomically: true, encoding: .utf8)
    XCTAssertThrowsError(try JSONLDemonstrations(path: path, seed: 1)) { e in
      XCTAssertTrue("\(e)".contains("keel sft needs both"), "\(e)")
    }
  }
}
