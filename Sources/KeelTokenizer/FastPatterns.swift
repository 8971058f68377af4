// FastPatterns.swift — hand-written matchers for the pre-tokenization regexes the GPT-2,
// Qwen2/Qwen3 and Llama-3 families ship (and "." for character-level splits), over Unicode
// scalars, with exactly the matches the regex engine finds (alternatives in order, greedy,
// with the backtracking each alternative needs). Any other pattern runs on ICU (Pieces.swift).
// HFTokenizerTests compares both paths with the `tokenizers` library; FastPatternTests compares
// each fast matcher with ICU on the same strings.
//   \p{L}  general category L*      \p{N}  N*      \s  White_Space
enum FastPattern {
  case gpt2          // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  case qwen2(maxDigits: Int)  // (?i:'s|…|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,k}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
  case anyButNewline // .

  static let qwen2Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
  static let llama3Pattern = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

  init?(_ pattern: String) {
    switch pattern {
    case gpt2Pattern: self = .gpt2
    case Self.qwen2Pattern: self = .qwen2(maxDigits: 1)
    case Self.llama3Pattern: self = .qwen2(maxDigits: 3)
    case ".": self = .anyButNewline
    default: return nil
    }
  }

  /// The matches in `s` as scalar index ranges, left to right, non-overlapping.
  func matches(_ s: [Unicode.Scalar]) -> [Range<Int>] {
    var out: [Range<Int>] = []
    var i = 0
    while i < s.count {
      if let end = match(s, at: i), end > i {
        out.append(i..<end)
        i = end
      } else {
        i += 1
      }
    }
    return out
  }

  /// The end of the match starting at i, if any.
  func match(_ s: [Unicode.Scalar], at i: Int) -> Int? {
    switch self {
    case .anyButNewline: return s[i] == "\n" ? nil : i + 1
    case .gpt2:
      if let e = contraction(s, i, ignoreCase: false) { return e }
      for cls in [CharClass.letter, .number, .other] {
        let start = s[i] == " " && i + 1 < s.count && cls.contains(s[i + 1]) ? i + 1 : i
        if cls.contains(s[start]) { return run(s, start, cls) }
      }
      return whitespace(s, i)
    case .qwen2(let maxDigits):
      if let e = contraction(s, i, ignoreCase: true) { return e }
      // [^\r\n\p{L}\p{N}]?\p{L}+
      let c = s[i]
      if c != "\r" && c != "\n" && !CharClass.letter.contains(c) && !CharClass.number.contains(c),
         i + 1 < s.count, CharClass.letter.contains(s[i + 1]) {
        return run(s, i + 1, .letter)
      }
      if CharClass.letter.contains(c) { return run(s, i, .letter) }
      // \p{N}{1,k}
      if CharClass.number.contains(c) {
        var e = i + 1
        while e < s.count && e - i < maxDigits && CharClass.number.contains(s[e]) { e += 1 }
        return e
      }
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      let start = c == " " && i + 1 < s.count && CharClass.other.contains(s[i + 1]) ? i + 1 : i
      if CharClass.other.contains(s[start]) {
        var e = run(s, start, .other)
        while e < s.count && (s[e] == "\r" || s[e] == "\n") { e += 1 }
        return e
      }
      // \s*[\r\n]+ : through the last CR/LF of the whitespace run
      if CharClass.space.contains(c) {
        let end = run(s, i, .space)
        var last = -1
        for k in i..<end where s[k] == "\r" || s[k] == "\n" { last = k }
        if last >= 0 { return last + 1 }
      }
      return whitespace(s, i)
    }
  }

  /// 's 't 're 've 'm 'll 'd (ASCII case-insensitively when asked; ſ folds to s).
  func contraction(_ s: [Unicode.Scalar], _ i: Int, ignoreCase: Bool) -> Int? {
    guard s[i] == "'", i + 1 < s.count else { return nil }
    func lower(_ k: Int) -> Unicode.Scalar? {
      guard k < s.count else { return nil }
      let c = s[k]
      guard ignoreCase else { return c }
      if c == "\u{17F}" { return "s" }
      return c.value >= 65 && c.value <= 90 ? Unicode.Scalar(c.value + 32) : c
    }
    switch lower(i + 1) {
    case "s", "t", "m", "d": return i + 2
    case "r", "v": return lower(i + 2) == "e" ? i + 3 : nil
    case "l": return lower(i + 2) == "l" ? i + 3 : nil
    default: return nil
    }
  }

  /// \s+(?!\S) then \s+: a whitespace run, minus its last character when a non-space follows
  /// (unless that leaves nothing: then the whole run).
  func whitespace(_ s: [Unicode.Scalar], _ i: Int) -> Int? {
    guard CharClass.space.contains(s[i]) else { return nil }
    let end = run(s, i, .space)
    if end == s.count || end - i == 1 { return end }
    return end - 1
  }

  func run(_ s: [Unicode.Scalar], _ i: Int, _ cls: CharClass) -> Int {
    var e = i
    while e < s.count && cls.contains(s[e]) { e += 1 }
    return e
  }
}

enum CharClass {
  case letter, number, space, other  // other: not space, letter or number

  /// ASCII: 1 letter, 2 number, 3 space, 0 other.
  static let ascii: [UInt8] = (0..<128).map { c -> UInt8 in
    switch c {
    case 65...90, 97...122: return 1
    case 48...57: return 2
    case 9...13, 32: return 3
    default: return 0
    }
  }

  @inline(__always) static func of(_ c: Unicode.Scalar) -> UInt8 {
    if c.value < 128 { return ascii[Int(c.value)] }
    let p = c.properties
    if p.isWhitespace { return 3 }
    switch p.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return 1
    case .decimalNumber, .letterNumber, .otherNumber: return 2
    default: return 0
    }
  }

  @inline(__always) func contains(_ c: Unicode.Scalar) -> Bool {
    let k = CharClass.of(c)
    switch self {
    case .letter: return k == 1
    case .number: return k == 2
    case .space: return k == 3
    case .other: return k == 0
    }
  }
}
