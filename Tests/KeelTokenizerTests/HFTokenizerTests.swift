// HFTokenizerTests.swift — Keel's tokenizer.json reader against the Hugging Face `tokenizers`
// library (the oracle): for every fixture tokenizer (Tests/Fixtures/tokenizers, made by
// scripts/make_tokenizer_fixtures.py: Qwen2-, GPT-2- and Llama-3-style byte-level BPE, a
// WordLevel with ids unlike Keel's character table, a BPE with Replace/Fuse/Strip decoders and
// an unknown token) and every corpus string (ASCII, Unicode in composed and decomposed form,
// emoji, whitespace runs, digits, special and added tokens inside text), the ids with and
// without special tokens and the decoded text with and without special tokens must be
// identical, and random id sequences decode to the library's text. Malformed and unsupported
// files are clear errors naming what is wrong.
import Foundation
import KeelTestSupport
import KeelTokenizer
import XCTest

final class HFTokenizerTests: XCTestCase {
  static let dir = TestSupport.root + "/Tests/Fixtures/tokenizers"

  struct Expected: Decodable { let ids: [Int32]; let ids_special: [Int32]; let decoded: String; let decoded_skip_special: String }
  struct Case: Decodable { let text: String; let expected: [String: Expected] }

  /// The oracle's cases (JSONDecoder: JSONSerialization drops a string's leading U+FEFF on Linux).
  func corpus() throws -> [Case] {
    let text = try String(contentsOfFile: Self.dir + "/corpus.jsonl", encoding: .utf8)
    return try text.split(separator: "\n").map { try JSONDecoder().decode(Case.self, from: Data($0.utf8)) }
  }

  func testEveryFixtureStringGivesTheLibrarysIdsAndText() throws {
    let cases = try corpus()
    XCTAssertGreaterThan(cases.count, 1000)
    let names = Set(cases.flatMap { $0.expected.keys })
    XCTAssertGreaterThanOrEqual(names.count, 5)
    for name in names.sorted() {
      let tok = try HFTokenizer(directory: Self.dir + "/" + name)
      var failures: [String] = [], checked = 0
      for c in cases {
        guard let e = c.expected[name] else { continue }
        checked += 1
        let ids = e.ids, idsSpecial = e.ids_special
        let got = try tok.encode(c.text), gotSpecial = try tok.encode(c.text, addSpecialTokens: true)
        if got != ids { failures.append("ids of \(c.text.debugDescription): \(got) ≠ \(ids)") }
        if gotSpecial != idsSpecial { failures.append("ids with specials of \(c.text.debugDescription): \(gotSpecial) ≠ \(idsSpecial)") }
        let decoded = tok.decode(ids), skipped = tok.decode(ids, skipSpecialTokens: true)
        if decoded != e.decoded { failures.append("decode of \(c.text.debugDescription): \(decoded.debugDescription) ≠ \(e.decoded.debugDescription)") }
        if skipped != e.decoded_skip_special { failures.append("decode (skip special) of \(c.text.debugDescription): \(skipped.debugDescription) ≠ \(e.decoded_skip_special.debugDescription)") }
      }
      XCTAssertGreaterThan(checked, 1000, name)
      XCTAssertTrue(failures.isEmpty, "\(name): \(failures.count) mismatches of \(checked * 4), e.g.\n" + failures.prefix(8).joined(separator: "\n"))
    }
  }

  /// Random id sequences (partial UTF-8 included: U+FFFD where the library puts it).
  func testRandomIdSequencesDecodeLikeTheLibrary() throws {
    struct Row: Decodable { let tokenizer: String; let ids: [Int32]; let decoded: String; let decoded_skip_special: String }
    let rows = try String(contentsOfFile: Self.dir + "/decode_only.jsonl", encoding: .utf8).split(separator: "\n")
      .map { try JSONDecoder().decode(Row.self, from: Data($0.utf8)) }
    XCTAssertGreaterThanOrEqual(rows.count, 300)
    var toks: [String: HFTokenizer] = [:]
    for r in rows {
      let tok = try toks[r.tokenizer] ?? HFTokenizer(directory: Self.dir + "/" + r.tokenizer)
      toks[r.tokenizer] = tok
      XCTAssertEqual(tok.decode(r.ids), r.decoded, "\(r.tokenizer) \(r.ids)")
      XCTAssertEqual(tok.decode(r.ids, skipSpecialTokens: true), r.decoded_skip_special, "\(r.tokenizer) \(r.ids)")
    }
  }

  func testSpecialIdsFromTheConfigFiles() throws {
    for name in try FileManager.default.contentsOfDirectory(atPath: Self.dir).sorted() {
      let d = Self.dir + "/" + name
      guard FileManager.default.fileExists(atPath: d + "/tokenizer.json") else { continue }
      let tok = try HFTokenizer(directory: d)
      if let gen = FileManager.default.contents(atPath: d + "/generation_config.json") {
        let o = try JSONSerialization.jsonObject(with: gen) as! [String: Any]
        if let list = o["eos_token_id"] as? [Int] { XCTAssertEqual(tok.eos, list.map(Int32.init), "\(name): eos_token_id list") }
      } else if let cfg = FileManager.default.contents(atPath: d + "/tokenizer_config.json") {
        let o = try JSONSerialization.jsonObject(with: cfg) as! [String: Any]
        if let eos = o["eos_token"] as? String { XCTAssertEqual(tok.eos, [tok.tokenID(eos)!], name) }
        if let bos = o["bos_token"] as? String { XCTAssertEqual(tok.bos, tok.tokenID(bos), name) }
      }
    }
  }

  func err(_ json: String) -> String {
    do { _ = try HFTokenizer(data: Data(json.utf8), source: "t.json"); return "no error" } catch { return "\(error)" }
  }

  func testMalformedAndUnsupportedFilesAreClearErrors() {
    let bpe = #""model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}"#
    XCTAssertEqual(err("{" + bpe + "}"), "no error")
    let cases: [(String, [String])] = [
      ("not json", ["t.json", "not valid JSON"]),
      (#"{"model": {"type": "Unigram", "vocab": []}}"#, ["model type 'Unigram'", "not supported", "BPE, WordLevel"]),
      ("{" + bpe + #", "pre_tokenizer": {"type": "Metaspace", "replacement": "▁"}}"#, ["pre_tokenizer type 'Metaspace'", "not supported"]),
      ("{" + bpe + #", "normalizer": {"type": "BertNormalizer"}}"#, ["normalizer type 'BertNormalizer'"]),
      ("{" + bpe + #", "decoder": {"type": "WordPiece"}}"#, ["decoder type 'WordPiece'"]),
      ("{" + bpe + #", "post_processor": {"type": "RobertaProcessing"}}"#, ["post_processor type 'RobertaProcessing'"]),
      ("{" + bpe + #", "truncation": {"max_length": 5}}"#, ["'truncation' is set"]),
      (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#, ["merge #0", "not in the vocabulary"]),
      (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["ab"]}}"#, ["\"ab\" is not two tokens"]),
      (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}}"#, ["dropout"]),
      (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<unk>"}}"#, ["unk_token \"<unk>\" is not in the vocabulary"]),
      (#"{"normalizer": null}"#, ["missing key 'model'"]),
      ("{" + bpe + #", "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"}}"#, ["regex", "does not compile"]),
      ("{" + bpe + #", "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a"}, "behavior": "Sideways"}}"#, ["t.json"]),
      (#"{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}"#, ["vocabulary id -1"]),
      (#"{"added_tokens": [{"id": 2, "content": "YY", "special": true}], "model": {"type": "WordLevel", "vocab": {"a": 0, "b": 1, "c": 2}, "unk_token": "a"}}"#,
       ["added token \"YY\" has id 2", "gives it id 3"]),
    ]
    for (json, parts) in cases {
      let e = err(json)
      for p in parts { XCTAssertTrue(e.contains(p), "\(json)\n→ \(e)\n(missing \"\(p)\")") }
    }
  }

  /// Cases checked against the library by hand (tokenizers 0.23.3): Digits splits Nd/Nl/No only
  /// (not Han numerals); single_word uses \w (underscore and combining marks are word characters).
  func testDigitsAndSingleWordFollowTheLibrary() throws {
    let digits = try HFTokenizer(data: Data(#"{"pre_tokenizer": {"type": "Digits", "individual_digits": true}, "model": {"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}}"#.utf8))
    XCTAssertEqual(digits.preTokenize("第一章12"), ["第一章", "1", "2"])
    let single = try HFTokenizer(data: Data(#"{"added_tokens": [{"id": 1, "content": "hello", "single_word": true, "normalized": false, "special": false}], "model": {"type": "WordLevel", "vocab": {"x": 0}, "unk_token": "x"}}"#.utf8))
    XCTAssertEqual(try single.encode("hello"), [1])
    XCTAssertFalse(try single.encode("_hello").contains(1))
    XCTAssertFalse(try single.encode("\u{301}hello").contains(1))
    XCTAssertTrue(try single.encode("½hello").contains(1))
  }

  func testAWordLevelWithoutUnkRefusesUnknownPiecesByName() throws {
    let tok = try HFTokenizer(data: Data(#"{"model": {"type": "WordLevel", "vocab": {"a": 0}}}"#.utf8))
    XCTAssertThrowsError(try tok.encode("b")) { XCTAssertTrue("\($0)".contains("\"b\" is not in the vocabulary")) }
  }
}
