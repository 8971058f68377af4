// ForeignRewardDocTests.swift — docs/plugin-guide.md's table of foreign-reward arguments and
// return types stays the grammar the parser accepts: every argument has a row, the row lists
// every C type the parser accepts for it and no C type it refuses, and every return type is named.
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
      // the C type column names every type the parser accepts, and only those
      let column = row.components(separatedBy: "|").dropFirst(2).first ?? ""
      let named = column.components(separatedBy: "`").enumerated().filter { $0.offset % 2 == 1 }.map(\.element)
      for t in arg.types {
        XCTAssertTrue(named.contains(t.rawValue), "docs/plugin-guide.md's row for \(arg.rawValue) lacks the type \(t.rawValue)")
        XCTAssertNoThrow(try ForeignSignature(parsing: "(\(arg.rawValue): \(t.rawValue)) -> double"))
      }
      for t in named.compactMap(ForeignSignature.CType.init(rawValue:)) {
        XCTAssertTrue(arg.types.contains(t), "docs/plugin-guide.md's row for \(arg.rawValue) names \(t.rawValue), which the parser refuses")
      }
    }
    for r in ForeignSignature.Return.allCases {
      XCTAssertTrue(doc.contains("`\(r.rawValue)`"), "docs/plugin-guide.md lacks the return type \(r.rawValue)")
      XCTAssertNoThrow(try ForeignSignature(parsing: "(response: string) -> \(r.rawValue)"))
    }
  }
}
