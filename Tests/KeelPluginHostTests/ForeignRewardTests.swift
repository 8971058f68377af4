// ForeignRewardTests.swift — libffi foreign rewards: plain exported C functions of a library
// built here with cc (Tests/Fixtures/plugins/score.c, numeric.c), called through a signature
// declared at run time; malformed signatures and missing symbols are clear errors. Numbers:
// double and float arguments (the response's length, the number a text states) reach the
// function exactly — a float straight from the decimal text, not through a double — and come
// back exactly; a NaN, infinite or beyond-float32 result is refused, naming the function and
// its library; the system's libm (fabs, fabsf, sqrt at its full path) works as it stands.
import Foundation
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

  // ---- double and float ------------------------------------------------------------------

  var numeric: String { get throws { try TestSupport.fixture("numeric.c") } }

  func sample(_ response: String, _ reference: String = "", ids: [Int32] = []) -> RewardSample {
    RewardSample(prompt: "", response: response, responseIds: ids, reference: reference)
  }

  func testDoubleArgumentsAndResultsAreExact() throws {
    // difference(a, b) = a − b: the numbers the response and the reference state
    let d = try ForeignReward(library: try numeric, symbol: "difference",
                              signature: "(response_number: double, reference_number: double) -> double")
    XCTAssertEqual(try d.score([sample("2.5", "0.25"), sample(" 1,234.5. ", "-1e2"), sample("+.5", "3"), sample("7", "7")]).rewards,
                   [2.25, 1334.5, -2.5, 0])
    // the double nearest 0.1 arrives, not a float 0.1 widened (is_tenth compares all 64 bits)
    let tenth = try ForeignReward(library: try numeric, symbol: "is_tenth", signature: "(response_number: double) -> double")
    XCTAssertEqual(try tenth.score([sample("0.1"), sample("1e-1"), sample(" 0.10000000000000001 "), sample("0.1000001")]).rewards, [1, 1, 1, 0])
    // the count as a double: 3 − 0.5
    let len = try ForeignReward(library: try numeric, symbol: "difference",
                                signature: "(response_len: double, reference_number: double) -> double")
    XCTAssertEqual(try len.score([sample("", "0.5", ids: [4, 5, 6])]).rewards, [2.5])
  }

  func testFloatArgumentsAreRoundedOnceFromTheText() throws {
    let f = try ForeignReward(library: try numeric, symbol: "difference_f",
                              signature: "(response_number: float, reference_number: float) -> float")
    // float arithmetic on the floats nearest 0.1 and 0.2 (returned as a float, exactly)
    XCTAssertEqual(try f.score([sample("0.1", "0.2")]).rewards, [Float(0.1) - Float(0.2)])
    // 1 + 2^-24 + 10^-25 is just above the midpoint of 1 and 1 + 2^-23: rounded once it is
    // 1 + 2^-23; through a double (which holds 1 + 2^-24 exactly, a tie to even) it would be 1
    XCTAssertEqual(try f.score([sample("1.0000000596046447753906251", "1")]).rewards, [0x1p-23])
    let tenth = try ForeignReward(library: try numeric, symbol: "is_tenth_f", signature: "(response_number: float) -> float")
    XCTAssertEqual(try tenth.score([sample("0.1"), sample("0.10000001")]).rewards, [1, 0])
    // the count as a float: 4 − 1.5
    let len = try ForeignReward(library: try numeric, symbol: "difference_f",
                                signature: "(response_len: float, reference_number: float) -> float")
    XCTAssertEqual(try len.score([sample("", "1.5", ids: [1, 2, 3, 4])]).rewards, [2.5])
  }

  func testMixedIntegerPointerAndFloatingArguments() throws {
    // mixed(s, x, y, n, ids) = strlen(s) + 10x + 100y + 1000n + 10000 ids[0]: each argument
    // in its own digit, so one passed in the wrong register class shows
    let m = try ForeignReward(library: try numeric, symbol: "mixed",
                              signature: "(response: string, response_number: double, reference_number: float, response_len: int64, response_ids: int32*) -> double")
    // 3 + 5 + 25 + 2000 + 70000 and 4 − 15 + 300 (no ids: n = 0)
    XCTAssertEqual(try m.score([sample("0.5", "0.25", ids: [7, 9]), sample("-1.5", "3")]).rewards, [72033, 289])
    XCTAssertEqual(m.numericArguments(sample("0.5", "0.25", ids: [7, 9])), ["response_number=0.5", "reference_number=0.25", "response_len=2"])
  }

  func testATextWithoutANumberIsNaN() throws {
    let f = try ForeignReward(library: try numeric, symbol: "or_minus_one", signature: "(response_number: double) -> double")
    XCTAssertEqual(try f.score([sample("The answer is 42"), sample(""), sample("inf"), sample("1,23"), sample("7")]).rewards, [-1, -1, -1, -1, 7])
    let numbers: [(String, Double)] = [("42", 42), (" -0.125. ", -0.125), ("1,234,567", 1_234_567), ("+.5e+1", 5), ("5.", 5),
                                       ("1e999", .infinity), ("-1e999", -.infinity), ("1e-999", 0)]
    for (text, value) in numbers {
      XCTAssertEqual(ForeignSignature.number(in: text, as: Double.self), value, text)
    }
    for text in ["", ".", "-", "1e", "e5", "nan", "inf", "0x10", "1 000", "1,2345", "1234,567", ",123", "42 apples", "１２"] {
      XCTAssertTrue(ForeignSignature.number(in: text, as: Double.self).isNaN, text)
      XCTAssertTrue(ForeignSignature.number(in: text, as: Float.self).isNaN, text)
    }
    XCTAssertEqual(ForeignSignature.number(in: "1e39", as: Float.self), .infinity)
  }

  func testNonFiniteResultsAreRefusedNamingTheFunction() throws {
    let lib = try numeric
    let f = try ForeignReward(library: lib, symbol: "divide", signature: "(response_number: double, reference_number: double) -> double")
    XCTAssertEqual(try f.score([sample("1", "4")]).rewards, [0.25])
    let cases: [([RewardSample], [String])] = [
      ([sample("1", "4"), sample("0", "0")], ["nan for sample 1", "a reward must be a finite number"]),
      ([sample("1", "0")], ["returned inf for sample 0"]),
      ([sample("1e300", "1")], ["returned 1e+300 for sample 0", "beyond float32's range"]),
      ([sample("four", "2")], ["nan for sample 0", "its argument response_number was NaN"]),
    ]
    for (samples, needles) in cases {
      XCTAssertThrowsError(try f.score(samples)) { error in
        let text = "\(error)"
        XCTAssertTrue(text.contains("foreign reward divide (\(lib))"), text)
        for n in needles { XCTAssertTrue(text.contains(n), "\(text) lacks \(n)") }
      }
    }
  }

  func testNumberSignaturesAndTheirErrors() throws {
    XCTAssertEqual(try ForeignSignature(parsing: " ( response_len : float ,reference_number:double )->float").description,
                   "(response_len: float, reference_number: double) -> float")
    XCTAssertEqual(try ForeignSignature(parsing: "(response_len: int64) -> int64").description, "(response_len: int64) -> int64")
    let cases: [(String, String)] = [
      ("(response_number: string) -> double", "argument 'response_number' has type double or float, not 'string'"),
      ("(response_len: int32) -> double", "argument 'response_len' has type int64, double or float, not 'int32'"),
      ("(response: double) -> double", "argument 'response' has type string, not 'double'"),
      ("(reference_number: float*) -> double", "has type double or float, not 'float*'"),
    ]
    for (sig, needle) in cases {
      XCTAssertThrowsError(try ForeignSignature(parsing: sig)) { error in
        XCTAssertTrue("\(error)".contains(needle), "\(error) lacks \(needle)")
        XCTAssertTrue("\(error)".contains("response_number: double | float"), "the error lists the grammar")
      }
    }
  }

  func testForeignReferenceIsLibrarySymbolSignature() throws {
    let r = try ForeignReward.parseReference("/lib/x86_64-linux-gnu/libm.so.6:fabs:(response_number: double) -> double")
    XCTAssertEqual(r.library, "/lib/x86_64-linux-gnu/libm.so.6")
    XCTAssertEqual(r.symbol, "fabs")
    XCTAssertEqual(r.signature, "(response_number: double) -> double")
    // a library path may hold ':' and '('; blanks around the signature are allowed
    let odd = try ForeignReward.parseReference("./a:b(c)/libx.so:score: (response: string, reference: string) -> double")
    XCTAssertEqual(odd.library, "./a:b(c)/libx.so")
    XCTAssertEqual(odd.symbol, "score")
    XCTAssertEqual(odd.signature, "(response: string, reference: string) -> double")
    XCTAssertEqual(try ForeignReward.parseReference("libscore.so:score:() -> int").library, "libscore.so")
    let bad: [(String, String)] = [
      ("libm.so.6:fabs", "no '(' begins a signature"), ("(response: string) -> double", "no ':' before the signature"),
      ("fabs:(response: string) -> double", "no ':' between the library and the symbol"),
      (":fabs:(response: string) -> double", "the library is empty"), ("libm.so.6::(response: string) -> double", "is not a symbol"),
    ]
    for (text, needle) in bad {
      XCTAssertThrowsError(try ForeignReward.parseReference(text)) { error in
        XCTAssertTrue("\(error)".contains("--foreign expects LIB:SYMBOL:SIGNATURE"), "\(error)")
        XCTAssertTrue("\(error)".contains(needle), "\(error) lacks \(needle)")
      }
    }
  }

  /// The system's libm at its full path, where this machine has one.
  static var libm: String? {
    ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6",
     "/usr/lib/aarch64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib64/libm.so.6", "/lib/libm.so.6"]
      .first { FileManager.default.fileExists(atPath: $0) }
  }

  func testLibmFabsFabsfAndSqrtAsTheyStand() throws {
    guard let libm = Self.libm else { throw XCTSkip("no libm.so.6 at a known path") }
    let fabs = try ForeignReward(library: libm, symbol: "fabs", signature: "(response_number: double) -> double")
    XCTAssertEqual(try fabs.score([sample("-2.5"), sample("3"), sample(" -0.125. "), sample("-1,000")]).rewards, [2.5, 3, 0.125, 1000])
    let fabsf = try ForeignReward(library: libm, symbol: "fabsf", signature: "(response_number: float) -> float")
    XCTAssertEqual(try fabsf.score([sample("-0.1")]).rewards, [Float(0.1)])
    let sqrt = try ForeignReward(library: libm, symbol: "sqrt", signature: "(response_len: double) -> double")
    XCTAssertEqual(try sqrt.score([sample("", ids: []), sample("", ids: [1, 1, 1, 1]), sample("", ids: Array(repeating: 5, count: 9)),
                                   sample("", ids: [1, 2])]).rewards,
                   [0, 2, 3, Float(Double(2).squareRoot())])
    let sqrtOfNumber = try ForeignReward(library: libm, symbol: "sqrt", signature: "(response_number: double) -> double")
    XCTAssertThrowsError(try sqrtOfNumber.score([sample("4"), sample("-1")])) { error in
      XCTAssertTrue("\(error)".contains("foreign reward sqrt (\(libm))"), "\(error)")
      XCTAssertTrue("\(error)".contains("nan for sample 1"), "\(error)")
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
