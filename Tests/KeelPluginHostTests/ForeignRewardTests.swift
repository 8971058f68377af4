// ForeignRewardTests.swift — libffi foreign rewards: plain exported C functions of a library
// built here with cc (Tests/Fixtures/plugins/score.c), called through a signature declared at
// run time; malformed signatures and missing symbols are clear errors.
import KeelPluginHost
import KeelTestSupport
import XCTest

final class ForeignRewardTests: XCTestCase {
  var lib: String { get throws { try TestSupport.fixture("score.c") } }

  func testDoubleReturnWithTwoStrings() throws {
    let f = try ForeignReward(library: try lib, symbol: "score", signature: "(response: string, reference: string) -> double")
    let r = try f.score([RewardSample(prompt: "1+1=", response: "2", reference: "2"),
                         RewardSample(prompt: "1+1=", response: "3", reference: "2")])
    XCTAssertEqual(r.rewards, [1, 0])
  }

  func testFloatAndInt64ReturnsAndTokenIds() throws {
    let ratio = try ForeignReward(library: try lib, symbol: "length_ratio", signature: "(prompt: string, response: string) -> float")
    XCTAssertEqual(try ratio.score([RewardSample(prompt: "abc", response: "abcdef", reference: "")]).rewards, [6.0 / 4.0])
    let digits = try ForeignReward(library: try lib, symbol: "digits", signature: "(response: string) -> int64")
    XCTAssertEqual(try digits.score([RewardSample(prompt: "", response: "a1b22c333", reference: "")]).rewards, [6])
    let ids = try ForeignReward(library: try lib, symbol: "sum_ids", signature: "(response_ids: int32*, response_len: int64) -> int64")
    XCTAssertEqual(try ids.score([RewardSample(prompt: "", response: "", responseIds: [5, 7, 11], reference: ""),
                                  RewardSample(prompt: "", response: "", responseIds: [], reference: "")]).rewards, [23, 0])
  }

  func testMalformedSignaturesAreClearErrors() throws {
    for (sig, needle) in [("response: string -> double", "expected '('"),
                          ("(response: string)", "expected '-> TYPE'"),
                          ("(response: string) -> complex", "unknown return type 'complex'"),
                          ("(answer: string) -> double", "unknown argument 'answer'"),
                          ("(response: int64) -> double", "has type string"),
                          ("(response) -> double", "needs 'name: type'")] {
      XCTAssertThrowsError(try ForeignReward(library: try lib, symbol: "score", signature: sig)) { error in
        XCTAssertTrue("\(error)".contains(needle), "\(error) lacks \(needle)")
        XCTAssertTrue("\(error)".contains("arguments: prompt: string"), "the error lists the grammar")
      }
    }
  }

  func testMissingSymbolAndMissingLibrary() throws {
    XCTAssertThrowsError(try ForeignReward(library: try lib, symbol: "scroe", signature: "(response: string) -> double")) {
      XCTAssertTrue("\($0)".contains("exports no symbol 'scroe'"))
    }
    XCTAssertThrowsError(try ForeignReward(library: "/nope/libx.so", symbol: "score", signature: "(response: string) -> double")) {
      XCTAssertTrue("\($0)".contains("does not exist"))
    }
  }
}
