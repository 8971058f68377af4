// Pieces.swift — normalizers and pre-tokenizers: text → the pieces the model tokenizes, the
// way the Hugging Face `tokenizers` library does it. Regexes run on ICU (NSRegularExpression)
// with `\s` / `\S` rewritten to Unicode White_Space and '.' excluding only \n (what the
// library's Oniguruma means by them); split behaviours follow the library's SplitDelimiterBehavior; "characters" are Unicode
// scalars (Rust chars), never Swift grapheme clusters.
import Foundation

/// GPT-2's pre-tokenization pattern (ByteLevel with use_regex).
let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

/// A compiled regex with Oniguruma's meaning of \s and \S.
final class Regex: @unchecked Sendable {
  let re: NSRegularExpression
  /// The hand-written matcher for this pattern, when there is one.
  let fast: FastPattern?
  init(_ pattern: String) throws {
    fast = FastPattern(pattern)
    var out = "", it = pattern.makeIterator()
    while let c = it.next() {
      guard c == "\\" else { out.append(c); continue }
      guard let n = it.next() else { out.append(c); break }
      switch n {
      case "s": out += #"\p{White_Space}"#
      case "S": out += #"\P{White_Space}"#
      default: out.append(c); out.append(n)
      }
    }
    // useUnixLineSeparators: '.' excludes only \n, as in Oniguruma (ICU would also exclude \r, U+2028…)
    do { re = try NSRegularExpression(pattern: out, options: [.useUnixLineSeparators]) } catch {
      throw TokenizerError("tokenizer.json: regex /\(pattern)/ does not compile: \(error)")
    }
  }
  /// Non-overlapping matches as UTF-16 ranges of `ns`.
  func matches(_ ns: NSString) -> [NSRange] {
    re.matches(in: ns as String, range: NSRange(location: 0, length: ns.length)).map(\.range).filter { $0.length > 0 }
  }
}

/// The pieces a split makes of `count` units given the matches (sorted, disjoint), with the
/// library's behaviours; empty pieces are dropped.
func pieceRanges(count: Int, matches: [Range<Int>], behavior: SplitBehavior, invert: Bool) -> [Range<Int>] {
  // alternate (range, isMatch) segments covering the text
  var segments: [(Range<Int>, Bool)] = []
  var at = 0
  for m in matches {
    if m.lowerBound > at { segments.append((at..<m.lowerBound, invert)) }
    segments.append((m, !invert))
    at = m.upperBound
  }
  if at < count { segments.append((at..<count, invert)) }
  var pieces: [Range<Int>] = []
  switch behavior {
  case .Removed: pieces = segments.filter { !$0.1 }.map(\.0)
  case .Isolated: pieces = segments.map(\.0)
  case .MergedWithPrevious:  // a match joins the piece before it, unless that piece was a match
    var prevMatch = false
    for (r, isMatch) in segments {
      if isMatch && !prevMatch, let last = pieces.last {
        pieces[pieces.count - 1] = last.lowerBound..<r.upperBound
      } else {
        pieces.append(r)
      }
      prevMatch = isMatch
    }
  case .MergedWithNext:  // a match joins the piece after it, unless that piece is a match
    var nextMatch = false
    for (r, isMatch) in segments.reversed() {
      if isMatch && !nextMatch, let next = pieces.last {
        pieces[pieces.count - 1] = r.lowerBound..<next.upperBound
      } else {
        pieces.append(r)
      }
      nextMatch = isMatch
    }
    pieces.reverse()
  case .Contiguous:
    var prevMatch = false
    for (r, isMatch) in segments {
      if isMatch && prevMatch, let last = pieces.last {
        pieces[pieces.count - 1] = last.lowerBound..<r.upperBound
      } else {
        pieces.append(r)
      }
      prevMatch = isMatch
    }
  }
  return pieces.filter { !$0.isEmpty }
}

/// A string split by UTF-16 matches (ICU's), sliced by UTF-16 offsets (NSString.substring would
/// drop a leading U+FEFF). Pieces are sorted and disjoint: one walk along the string.
func splitPieces(_ text: String, matches: [NSRange], in ns: NSString, behavior: SplitBehavior, invert: Bool) -> [String] {
  let ranges = pieceRanges(count: ns.length, matches: matches.map { $0.location..<($0.location + $0.length) }, behavior: behavior, invert: invert)
  let u = text.utf16
  var index = u.startIndex, walked = 0
  return ranges.map { r in
    index = u.index(index, offsetBy: r.lowerBound - walked)
    let end = u.index(index, offsetBy: r.count)
    defer { index = end; walked = r.upperBound }
    return String(text[index..<end])
  }
}

/// A string split by a fast matcher (FastPatterns.swift), over its scalars.
func splitPieces(_ text: String, fast: FastPattern, behavior: SplitBehavior, invert: Bool) -> [String] {
  var sc: [Unicode.Scalar] = [], offsets: [Int] = [0]  // offsets[k]: UTF-8 offset of scalar k
  sc.reserveCapacity(text.utf8.count)
  offsets.reserveCapacity(text.utf8.count + 1)
  for c in text.unicodeScalars {
    sc.append(c)
    offsets.append(offsets[offsets.count - 1] + UTF8.width(c))
  }
  let ranges = pieceRanges(count: sc.count, matches: fast.matches(sc), behavior: behavior, invert: invert)
  if ranges.count == 1 && ranges[0] == 0..<sc.count { return [text] }
  var utf8 = text
  return utf8.withUTF8 { buf in
    ranges.map { r in String(decoding: UnsafeBufferPointer(rebasing: buf[offsets[r.lowerBound]..<offsets[r.upperBound]]), as: UTF8.self) }
  }
}

/// Matches of a plain string pattern (non-overlapping, left to right), compared code unit by
/// code unit (Foundation's range(of:) and replacingOccurrences compare canonically: "é" would
/// match "e\u{301}").
func literalMatches(_ pattern: String, in ns: NSString) -> [NSRange] {
  let p = Array(pattern.utf16), t = Array((ns as String).utf16)
  guard !p.isEmpty, p.count <= t.count else { return [] }
  var out: [NSRange] = []
  var i = 0
  while i <= t.count - p.count {
    if t[i] == p[0] && t[i..<(i + p.count)].elementsEqual(p) {
      out.append(NSRange(location: i, length: p.count))
      i += p.count
    } else {
      i += 1
    }
  }
  return out
}

/// Replace every occurrence of `pattern` (code unit for code unit) by `content`.
func replacingLiteral(_ s: String, _ pattern: String, _ content: String) -> String {
  let ns = s as NSString
  let m = literalMatches(pattern, in: ns)
  guard !m.isEmpty else { return s }
  var out = [UInt16](), at = 0
  let t = Array(s.utf16), c = Array(content.utf16)
  for r in m {
    out += t[at..<r.location]
    out += c
    at = r.location + r.length
  }
  out += t[at...]
  return String(decoding: out, as: UTF16.self)
}

/// Matches of a scalar predicate: each maximal run (`runs`) or each scalar.
func scalarMatches(_ ns: NSString, _ text: String, runs: Bool, _ pred: (Unicode.Scalar) -> Bool) -> [NSRange] {
  var out: [NSRange] = []
  var offset = 0
  for s in text.unicodeScalars {
    let len = s.utf16.count
    if pred(s) {
      if runs, let last = out.last, last.location + last.length == offset {
        out[out.count - 1].length += len
      } else {
        out.append(NSRange(location: offset, length: len))
      }
    }
    offset += len
  }
  return out
}

enum Normalizer {
  case nfc, nfd, nfkc, nfkd, lowercase
  case strip(left: Bool, right: Bool)
  case replaceLiteral(String, String), replaceRegex(Regex, String)
  case prepend(String)
  case sequence([Normalizer])

  init(_ spec: NormalizerSpec) throws {
    switch spec {
    case .nfc: self = .nfc
    case .nfd: self = .nfd
    case .nfkc: self = .nfkc
    case .nfkd: self = .nfkd
    case .lowercase: self = .lowercase
    case .strip(let l, let r): self = .strip(left: l, right: r)
    case .replace(.string(let p), let c): self = .replaceLiteral(p, c)
    case .replace(.regex(let p), let c): self = .replaceRegex(try Regex(p), c)
    case .prepend(let p): self = .prepend(p)
    case .sequence(let list): self = .sequence(try list.map(Normalizer.init))
    }
  }

  /// Text whose scalars are all below U+0300 is already NFC (no combining marks, no composable
  /// pairs) — the common case, skipped without Foundation's normalizer.
  static func belowCombiningMarks(_ s: String) -> Bool { s.unicodeScalars.allSatisfy { $0.value < 0x300 } }

  func apply(_ s: String) -> String {
    switch self {
    case .nfc: return Self.belowCombiningMarks(s) ? s : s.precomposedStringWithCanonicalMapping
    case .nfd: return s.decomposedStringWithCanonicalMapping
    case .nfkc: return s.precomposedStringWithCompatibilityMapping
    case .nfkd: return s.decomposedStringWithCompatibilityMapping
    case .lowercase: return s.lowercased()
    case .strip(let l, let r):
      var scalars = Substring(s).unicodeScalars[...]
      if l { while let f = scalars.first, f.properties.isWhitespace { scalars = scalars.dropFirst() } }
      if r { while let f = scalars.last, f.properties.isWhitespace { scalars = scalars.dropLast() } }
      return String(String.UnicodeScalarView(scalars))
    case .replaceLiteral(let p, let c): return replacingLiteral(s, p, c)
    case .replaceRegex(let re, let c):
      return re.re.stringByReplacingMatches(in: s, range: NSRange(location: 0, length: (s as NSString).length),
                                            withTemplate: NSRegularExpression.escapedTemplate(for: c))
    case .prepend(let p): return s.isEmpty ? s : p + s
    case .sequence(let list): return list.reduce(s) { $1.apply($0) }
    }
  }
}

enum PreTokenizer {
  case byteLevel(addPrefixSpace: Bool, regex: Regex?)
  case split(literal: String?, regex: Regex?, SplitBehavior, invert: Bool)
  case whitespace(Regex), whitespaceSplit
  case digits(individual: Bool)
  case sequence([PreTokenizer])

  init(_ spec: PreTokenizerSpec) throws {
    switch spec {
    case .byteLevel(let a, let u): self = .byteLevel(addPrefixSpace: a, regex: u ? try Regex(gpt2Pattern) : nil)
    case .split(.string(let p), let b, let inv): self = .split(literal: p, regex: nil, b, invert: inv)
    case .split(.regex(let p), let b, let inv): self = .split(literal: nil, regex: try Regex(p), b, invert: inv)
    case .whitespace: self = .whitespace(try Regex(#"\w+|[^\w\s]+"#))
    case .whitespaceSplit: self = .whitespaceSplit
    case .digits(let i): self = .digits(individual: i)
    case .sequence(let list): self = .sequence(try list.map(PreTokenizer.init))
    }
  }

  /// Split each piece further (the library's PreTokenizedString.split).
  func apply(_ pieces: [String]) -> [String] {
    switch self {
    case .sequence(let list): return list.reduce(pieces) { $1.apply($0) }
    case .byteLevel(let addPrefixSpace, let regex):
      return pieces.flatMap { p -> [String] in
        let text = addPrefixSpace && p.utf8.first != 0x20 ? " " + p : p  // bytes: " \u{301}" does not hasPrefix(" ") in Swift
        let parts: [String]
        if let fast = regex?.fast {
          parts = splitPieces(text, fast: fast, behavior: .Isolated, invert: false)
        } else if let regex {
          let ns = text as NSString
          parts = splitPieces(text, matches: regex.matches(ns), in: ns, behavior: .Isolated, invert: false)
        } else {
          parts = [text]
        }
        return parts.map(ByteLevel.encode)
      }
    default:
      return pieces.flatMap { p -> [String] in
        if case .split(_, let regex?, let behavior, let invert) = self, let fast = regex.fast {
          return splitPieces(p, fast: fast, behavior: behavior, invert: invert)
        }
        let ns = p as NSString
        switch self {
        case .split(let literal, let regex, let behavior, let invert):
          let m = literal.map { literalMatches($0, in: ns) } ?? regex!.matches(ns)
          return splitPieces(p, matches: m, in: ns, behavior: behavior, invert: invert)
        case .whitespace(let re): return splitPieces(p, matches: re.matches(ns), in: ns, behavior: .Removed, invert: true)
        case .whitespaceSplit:
          return splitPieces(p, matches: scalarMatches(ns, p, runs: true) { $0.properties.isWhitespace }, in: ns, behavior: .Removed, invert: false)
        case .digits(let individual):
          // Rust's char::is_numeric: general category Nd, Nl or No (not Han numerals such as 一)
          let m = scalarMatches(ns, p, runs: !individual) { [.decimalNumber, .letterNumber, .otherNumber].contains($0.properties.generalCategory) }
          return splitPieces(p, matches: m, in: ns, behavior: individual ? .Isolated : .Contiguous, invert: false)
        default: return [p]
        }
      }
    }
  }
}

/// GPT-2's reversible byte ↔ printable-character map.
enum ByteLevel {
  static let byteToScalar: [Unicode.Scalar] = {
    var table = [Unicode.Scalar](repeating: " ", count: 256)
    var n: UInt32 = 0
    for b in 0..<256 {
      if (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b) {
        table[b] = Unicode.Scalar(UInt32(b))!
      } else {
        table[b] = Unicode.Scalar(256 + n)!
        n += 1
      }
    }
    return table
  }()
  static let scalarToByte: [Unicode.Scalar: UInt8] = {
    var m: [Unicode.Scalar: UInt8] = [:]
    for (b, s) in byteToScalar.enumerated() { m[s] = UInt8(b) }
    return m
  }()

  /// The UTF-8 of each byte's character (1 or 2 bytes).
  static let byteToUTF8: [[UInt8]] = byteToScalar.map { Array(String($0).utf8) }

  static func encode(_ s: String) -> String {
    var out: [UInt8] = []
    out.reserveCapacity(s.utf8.count * 2)
    for b in s.utf8 { out += byteToUTF8[Int(b)] }
    return String(decoding: out, as: UTF8.self)
  }

  /// A token's bytes: every scalar mapped back, or (when one is not in the map) its own UTF-8.
  static func bytes(of token: String) -> [UInt8] {
    var out: [UInt8] = []
    for s in token.unicodeScalars {
      guard let b = scalarToByte[s] else { return Array(token.utf8) }
      out.append(b)
    }
    return out
  }
}
