// ForeignEvalTests.swift — `keel plugins eval --foreign LIB:SYMBOL:SIGNATURE --batch FILE` with
// the real binary: a C function of a fixture library (Tests/Fixtures/plugins/numeric.c) scores
// a reward batch with hand-computed values, in text and in --json; the system's libm works at
// its full path; a bare library name means ./name and nothing else (never a system search); a
// NaN result is refused naming the function and its library; a crash inside the function (a
// wrong declaration) ends with the guard's one line; a malformed --foreign or a misuse is a
// clear error with a non-zero exit.
import Foundation
import KeelTestSupport
import XCTest

final class ForeignEvalTests: XCTestCase {
  func keel(_ args: [String], cwd: String? = nil) throws -> TestSupport.Output {
    try TestSupport.run(TestSupport.keel, args, cwd: cwd, environment: ["KEEL_PLUGIN_PATH": ""])
  }

  /// A reward batch file of (response, reference, response_ids) samples.
  func batch(_ samples: [(String, String, [Int])]) throws -> String {
    let path = TestSupport.tempDir("keel-foreign-eval") + "/batch.json"
    let rows: [[String: Any]] = samples.map { ["prompt": "p", "response": $0.0, "reference": $0.1, "response_ids": $0.2] }
    try JSONSerialization.data(withJSONObject: ["samples": rows]).write(to: URL(fileURLWithPath: path))
    return path
  }

  func json(_ r: TestSupport.Output) throws -> [String: Any] {
    try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
  }

  let difference = "difference:(response_number: double, reference_number: double) -> double"

  func testAFixtureFunctionScoresTheBatch() throws {
    let lib = try TestSupport.fixture("numeric.c")
    let file = try batch([("2.5", "0.25", [1]), (" 1,234.5. ", "-1e2", [1, 2]), ("none", "1", [])])
    // or_minus_one: the number itself, or −1 for a response that states none
    let text = try keel(["plugins", "eval", "--foreign", "\(lib):or_minus_one:(response_number: double) -> double", "--batch", file])
    XCTAssertEqual(text.status, 0, text.stdout)
    XCTAssertTrue(text.stdout.contains("sample 0: reward 2.5  response_number=2.5  response \"2.5\" reference \"0.25\""), text.stdout)
    XCTAssertTrue(text.stdout.contains("sample 1: reward 1234.5  response_number=1234.5  response \" 1,234.5. \" reference \"-1e2\""), text.stdout)
    XCTAssertTrue(text.stdout.contains("sample 2: reward -1.0  response_number=nan  response \"none\""), text.stdout)
    // --json: the fields of a reward plugin's document, named for the function
    let r = try keel(["plugins", "eval", "--foreign", "\(lib):\(difference)", "--batch", try batch([("2.5", "0.25", []), (" 1,234.5. ", "-1e2", [])]), "--json"])
    XCTAssertEqual(r.status, 0, r.stdout)
    let doc = try json(r)
    XCTAssertEqual(doc["rewards"] as? [Double], [2.25, 1334.5])
    XCTAssertEqual(doc["kind"] as? String, "foreign-reward")
    XCTAssertEqual(doc["plugin"] as? String, "difference")
    XCTAssertEqual(doc["path"] as? String, lib)
    XCTAssertEqual(doc["signature"] as? String, "(response_number: double, reference_number: double) -> double")
    XCTAssertEqual((doc["components"] as? [String: Any])?.count, 0)
    // float arguments and result, and the count as a float: 2 − 0.5
    let f = try keel(["plugins", "eval", "--foreign", "\(lib):difference_f:(response_len: float, reference_number: float) -> float",
                      "--batch", try batch([("", "0.5", [3, 4])]), "--json"])
    XCTAssertEqual(f.status, 0, f.stdout)
    XCTAssertEqual(try json(f)["rewards"] as? [Double], [1.5])
  }

  func testLibmAtItsFullPath() throws {
    let candidates = ["/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib/aarch64-linux-gnu/libm.so.6",
                      "/usr/lib/aarch64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib64/libm.so.6", "/lib/libm.so.6"]
    guard let libm = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else { throw XCTSkip("no libm.so.6 at a known path") }
    let file = try batch([("-2.5", "", [1, 2, 3, 4]), ("3", "", Array(repeating: 7, count: 9)), (" -0.125. ", "", [])])
    let fabs = try keel(["plugins", "eval", "--foreign", "\(libm):fabs:(response_number: double) -> double", "--batch", file, "--json"])
    XCTAssertEqual(fabs.status, 0, fabs.stdout)
    XCTAssertEqual(try json(fabs)["rewards"] as? [Double], [2.5, 3, 0.125])
    let sqrt = try keel(["plugins", "eval", "--foreign", "\(libm):sqrt:(response_len: double) -> double", "--batch", file, "--json"])
    XCTAssertEqual(sqrt.status, 0, sqrt.stdout)
    XCTAssertEqual(try json(sqrt)["rewards"] as? [Double], [2, 3, 0])
    // sqrt(−2.5) is NaN: refused, naming the function and the library
    let nan = try keel(["plugins", "eval", "--foreign", "\(libm):sqrt:(response_number: double) -> double", "--batch", file])
    XCTAssertNotEqual(nan.status, 0)
    XCTAssertFalse(nan.signaled)
    XCTAssertTrue(nan.stdout.contains("foreign reward sqrt (\(libm))") && nan.stdout.contains("nan for sample 0"), nan.stdout)
  }

  func testABareNameIsAFileInTheCurrentDirectory() throws {
    let here = TestSupport.tempDir("keel-foreign-here"), elsewhere = TestSupport.tempDir("keel-foreign-elsewhere")
    try FileManager.default.copyItem(atPath: try TestSupport.fixture("numeric.c"), toPath: here + "/libnum.so")
    let file = try batch([("3", "1", [])])
    let found = try keel(["plugins", "eval", "--foreign", "libnum.so:\(difference)", "--batch", file, "--json"], cwd: here)
    XCTAssertEqual(found.status, 0, found.stdout)
    XCTAssertEqual(try json(found)["rewards"] as? [Double], [2])
    let missing = try keel(["plugins", "eval", "--foreign", "libnum.so:\(difference)", "--batch", file], cwd: elsewhere)
    XCTAssertNotEqual(missing.status, 0)
    XCTAssertTrue(missing.stdout.contains("foreign reward library 'libnum.so' does not exist"), missing.stdout)
    // a soname is not looked up in the system's directories either
    let soname = try keel(["plugins", "eval", "--foreign", "libm.so.6:fabs:(response_number: double) -> double", "--batch", file], cwd: elsewhere)
    XCTAssertNotEqual(soname.status, 0)
    XCTAssertTrue(soname.stdout.contains("foreign reward library 'libm.so.6' does not exist"), soname.stdout)
  }

  func testANaNResultIsRefusedNamingTheFunctionAndLibrary() throws {
    let lib = try TestSupport.fixture("numeric.c")
    let r = try keel(["plugins", "eval", "--foreign", "\(lib):divide:(response_number: double, reference_number: double) -> double",
                      "--batch", try batch([("1", "4", []), ("0", "0", [])])])
    XCTAssertNotEqual(r.status, 0)
    XCTAssertFalse(r.signaled)
    XCTAssertTrue(r.stdout.contains("foreign reward divide (\(lib))"), r.stdout)
    XCTAssertTrue(r.stdout.contains("nan for sample 1"), r.stdout)
    XCTAssertFalse(r.stdout.contains("sample 0: reward"), "no partial table: \(r.stdout)")
  }

  func testACrashInTheFunctionIsOneLine() throws {
    // digits(const char *) declared as taking the count: it reads address 2 and faults
    let lib = try TestSupport.fixture("score.c")
    let r = try keel(["plugins", "eval", "--foreign", "\(lib):digits:(response_len: int64) -> int64", "--batch", try batch([("x", "", [1, 2])])])
    XCTAssertFalse(r.signaled, r.stdout)
    XCTAssertEqual(r.status, 128 + 11, r.stdout)
    XCTAssertTrue(r.stdout.contains("keel: foreign reward digits (\(lib)) declared as (response_len: int64) -> int64 crashed with SIGSEGV"), r.stdout)
  }

  func testMalformedForeignAndMisuseAreClearErrors() throws {
    let lib = try TestSupport.fixture("numeric.c")
    let file = try batch([("1", "1", [])])
    let cases: [([String], String)] = [
      (["--foreign", "\(lib):difference", "--batch", file], "--foreign expects LIB:SYMBOL:SIGNATURE"),
      (["--foreign", "\(lib):difference:(answer: double) -> double", "--batch", file], "unknown argument 'answer'"),
      (["--foreign", "\(lib):difference:(response_number: string) -> double", "--batch", file], "has type double or float, not 'string'"),
      (["--foreign", "\(lib):differ:(response_number: double) -> double", "--batch", file], "exports no symbol 'differ'"),
      (["--foreign", "\(lib):\(difference)"], "--foreign needs --batch FILE"),
      (["exact-match", "--foreign", "\(lib):\(difference)", "--batch", file], "give a plugin or --foreign, not both"),
      (["--foreign", "\(lib):\(difference)", "--batch", file, "--set", "x=1"], "a foreign reward has none"),
      (["--foreign", "\(lib):\(difference)", "--batch", file, "--check-grad"], "--check-grad is for objectives"),
    ]
    for (args, needle) in cases {
      let r = try keel(["plugins", "eval"] + args)
      XCTAssertFalse(r.signaled)
      XCTAssertNotEqual(r.status, 0, "\(args)")
      XCTAssertTrue(r.stdout.contains(needle), "\(r.stdout) lacks \(needle)")
    }
  }
}
