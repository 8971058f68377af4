// Decoders.swift — token strings → text (the library's decode_chain, then concatenation), and
// the post-processors that add special tokens around an encoding.
//   ByteLevel     every token's characters back to bytes, the whole sequence as lossy UTF-8
//   Fuse          all tokens into one
//   Strip         per token, up to `start` leading and `stop` trailing `content` characters
//   Replace       per token, a string or regex replaced
//   ByteFallback  runs of <0xXX> tokens → bytes → UTF-8 (invalid: one U+FFFD per token)
import Foundation

enum TokenDecoder {
  case byteLevel, fuse, byteFallback
  case strip(Unicode.Scalar, start: Int, stop: Int)
  case replaceLiteral(String, String), replaceRegex(Regex, String)
  case sequence([TokenDecoder])

  init(_ spec: DecoderSpec) throws {
    switch spec {
    case .byteLevel: self = .byteLevel
    case .fuse: self = .fuse
    case .byteFallback: self = .byteFallback
    case .strip(let content, let start, let stop): self = .strip(content.unicodeScalars.first!, start: start, stop: stop)
    case .replace(.string(let p), let c): self = .replaceLiteral(p, c)
    case .replace(.regex(let p), let c): self = .replaceRegex(try Regex(p), c)
    case .sequence(let list): self = .sequence(try list.map(TokenDecoder.init))
    }
  }

  func chain(_ tokens: [String]) -> [String] {
    switch self {
    case .byteLevel:
      return [String(decoding: tokens.flatMap(ByteLevel.bytes(of:)), as: UTF8.self)]
    case .fuse: return [tokens.joined()]
    case .strip(let c, let start, let stop):
      return tokens.map { t in
        let s = Array(t.unicodeScalars)
        var lo = 0, hi = s.count
        while lo < min(start, s.count) && s[lo] == c { lo += 1 }
        while s.count - hi < stop && hi > lo && s[hi - 1] == c { hi -= 1 }
        return String(String.UnicodeScalarView(s[lo..<hi]))
      }
    case .replaceLiteral(let p, let c): return tokens.map { replacingLiteral($0, p, c) }
    case .replaceRegex(let re, let c):
      return tokens.map { re.re.stringByReplacingMatches(in: $0, range: NSRange(location: 0, length: ($0 as NSString).length),
                                                         withTemplate: NSRegularExpression.escapedTemplate(for: c)) }
    case .byteFallback:
      var out: [String] = [], bytes: [UInt8] = [], count = 0
      func flush() {
        guard count > 0 else { return }
        if let s = String(validating: bytes, as: UTF8.self) { out.append(s) } else { out.append(String(repeating: "\u{FFFD}", count: count)) }
        bytes = []; count = 0
      }
      for t in tokens {
        if t.count == 6, t.hasPrefix("<0x"), t.hasSuffix(">"), let b = UInt8(t.dropFirst(3).dropLast(), radix: 16) {
          bytes.append(b); count += 1
        } else {
          flush(); out.append(t)
        }
      }
      flush()
      return out
    case .sequence(let list): return list.reduce(tokens) { $1.chain($0) }
    }
  }
}

enum PostProcessor {
  case none
  case template([TemplatePiece], [String: [Int32]])
  case sequence([PostProcessor])

  init(_ spec: PostProcessorSpec?) throws {
    guard let spec else { self = .none; return }
    switch spec {
    case .byteLevel: self = .none  // offsets only
    case .template(let single, let ids):
      for case .sequence(let s) in single where s != "A" {
        throw TokenizerError("tokenizer.json: TemplateProcessing single template uses sequence $\(s); only $A is meaningful for one sequence")
      }
      for case .special(let name) in single where ids[name] == nil {
        throw TokenizerError("tokenizer.json: TemplateProcessing uses special token \"\(name)\" that special_tokens does not define")
      }
      for (name, list) in ids where list.contains(where: { $0 < 0 || $0 > Int(Int32.max) }) {
        throw TokenizerError("tokenizer.json: TemplateProcessing special token \"\(name)\" has an id outside 0 … \(Int32.max)")
      }
      self = .template(single, ids.mapValues { $0.map(Int32.init) })
    case .sequence(let list): self = .sequence(try list.map { try PostProcessor($0) })
    }
  }

  /// Every id a template can add.
  var ids: [Int32] {
    switch self {
    case .none: return []
    case .template(_, let specials): return specials.values.flatMap { $0 }
    case .sequence(let list): return list.flatMap(\.ids)
    }
  }

  func apply(_ ids: [Int32]) -> [Int32] {
    switch self {
    case .none: return ids
    case .template(let pieces, let specials):
      return pieces.flatMap { p -> [Int32] in
        switch p {
        case .special(let name): return specials[name]!
        case .sequence: return ids
        }
      }
    case .sequence(let list): return list.reduce(ids) { $1.apply($0) }
    }
  }
}
