// FastPatternTests.swift — the hand-written matchers for the GPT-2, Qwen2 and Llama-3
// pre-tokenization regexes and "." (FastPatterns.swift) against ICU running the same regex:
// the same pieces for thousands of random strings drawn from the characters where the
// alternatives differ (apostrophes and contraction letters in both cases and ſ, letters of
// several scripts, digits and other numbers, punctuation, every kind of whitespace, CR/LF
// runs, combining marks, emoji). The ICU path is forced by wrapping the pattern in (?:…),
// which no fast matcher recognises and which means the same.
import Foundation
import KeelTokenizer
import XCTest

final class FastPatternTests: XCTestCase {
  static let patterns = [
    #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#,
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
    #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#,
    ".",
  ]
  static let alphabet: [String] = ["'", "'", "s", "S", "t", "T", "r", "e", "E", "v", "m", "l", "L", "d", "D", "\u{17F}", "a", "z", "é",
    "e\u{301}", "ß", "Ж", "字", "ا", "0", "7", "٣", "½", "Ⅻ", "+", "=", "#", "-", ".", ",", "!", "(", "…", "€", "😀", "👍🏽",
    " ", " ", " ", "\t", "\n", "\r", "\r\n", "\u{0B}", "\u{0C}", "\u{85}", "\u{A0}", "\u{2028}", "\u{3000}", "\u{FEFF}", "_"]

  func tokenizer(_ pattern: String, behavior: String = "Isolated") throws -> HFTokenizer {
    let spec: [String: Any] = [
      "pre_tokenizer": ["type": "Split", "pattern": ["Regex": pattern], "behavior": behavior, "invert": false],
      "model": ["type": "WordLevel", "vocab": ["[UNK]": 0], "unk_token": "[UNK]"],
    ]
    return try HFTokenizer(data: JSONSerialization.data(withJSONObject: spec))
  }

  func testFastMatchersEqualICU() throws {
    var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
    func next(_ n: Int) -> Int {  // deterministic (SplitMix64) so a failure reproduces
      seed &+= 0x9E37_79B9_7F4A_7C15
      var z = seed
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return Int((z ^ (z >> 31)) % UInt64(n))
    }
    for pattern in Self.patterns {
      for behavior in ["Isolated", "MergedWithNext", "MergedWithPrevious", "Contiguous", "Removed"] {
        let fast = try tokenizer(pattern, behavior: behavior), icu = try tokenizer("(?:" + pattern + ")", behavior: behavior)
        for _ in 0..<(behavior == "Isolated" ? 3000 : 300) {
          let text = (0..<next(14)).map { _ in Self.alphabet[next(Self.alphabet.count)] }.joined()
          XCTAssertEqual(fast.preTokenize(text), icu.preTokenize(text), "/\(pattern)/ \(behavior) on \(text.debugDescription)")
        }
      }
    }
  }
}
