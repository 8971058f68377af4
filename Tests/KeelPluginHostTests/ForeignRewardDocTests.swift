// ForeignRewardDocTests.swift — docs/plugin-guide.md's table of foreign-reward arguments and
// return types stays the grammar the parser accepts.
import Foundation
import KeelPluginHost
import KeelTestSupport
import XCTest

final class ForeignRewardDocTests: XCTestCase {
  func testThePluginGuideListsEveryArgumentAndReturnType() throws {
    let doc = try String(contentsOfFile: TestSupport.root + "/docs/plugin-guide.md", encoding: .utf8)
    for arg in ForeignSignature.Argument.allCases {
      XCTAssertTrue(doc.contains("| `\(arg.rawValue)` |"), "docs/plugin-guide.md lacks the foreign-reward argument \(arg.rawValue)")
      // the documented type is the one the parser accepts
      let row = doc.components(separatedBy: "\n").first { $0.hasPrefix("| `\(arg.rawValue)` |") } ?? ""
      let type = row.components(separatedBy: "`").dropFirst(3).first ?? ""
      XCTAssertNoThrow(try ForeignSignature(parsing: "(\(arg.rawValue): \(type)) -> double"), "\(arg.rawValue): \(type)")
    }
    for r in ForeignSignature.Return.allCases {
      XCTAssertTrue(doc.contains("`\(r.rawValue)`"), "docs/plugin-guide.md lacks the return type \(r.rawValue)")
      XCTAssertNoThrow(try ForeignSignature(parsing: "(response: string) -> \(r.rawValue)"))
    }
  }
}
