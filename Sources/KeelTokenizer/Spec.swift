// Spec.swift — the Hugging Face `tokenizer.json` format, decoded with Codable into the parts
// Keel supports. Every component is an enum over its `type`; a type or an option Keel does
// not implement is an error naming it and where it is (never a silent mis-tokenization).
//   normalizer     NFC | NFD | NFKC | NFKD | Lowercase | Strip | Replace | Prepend | Sequence
//   pre_tokenizer  ByteLevel | Split | Sequence | Whitespace | WhitespaceSplit | Digits
//   model          BPE (merges as "a b" strings or [a, b] pairs; no dropout) | WordLevel
//   post_processor ByteLevel | TemplateProcessing | Sequence
//   decoder        ByteLevel | Fuse | Strip | Replace | ByteFallback | Sequence
// truncation and padding must be null (they change encodings; Keel handles lengths itself).
import Foundation

public struct TokenizerError: Error, CustomStringConvertible, Equatable {
  public let message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// `{"String": " "}` or `{"Regex": "\\s+"}`.
enum PatternSpec: Decodable, Equatable {
  case string(String), regex(String)
  enum Keys: String, CodingKey { case String, Regex }
  init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: Keys.self)
    if let s = try c.decodeIfPresent(String.self, forKey: .String) { self = .string(s); return }
    if let r = try c.decodeIfPresent(String.self, forKey: .Regex) { self = .regex(r); return }
    throw TokenizerError("a pattern must be {\"String\": …} or {\"Regex\": …} (at \(decoder.codingPath.map(\.stringValue).joined(separator: ".")))")
  }
}

/// Reads `type` and rejects anything not listed, naming the component and the path.
struct TypeKey: CodingKey {
  var stringValue: String
  var intValue: Int? { nil }
  init(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
  static let type = TypeKey(stringValue: "type")
}

func componentType(_ decoder: Decoder, _ what: String, supported: [String]) throws -> String {
  let c = try decoder.container(keyedBy: TypeKey.self)
  let t = try c.decode(String.self, forKey: .type)
  guard supported.contains(t) else {
    let at = decoder.codingPath.map(\.stringValue).joined(separator: ".")
    throw TokenizerError("tokenizer.json: \(what) type '\(t)' (at \(at.isEmpty ? what : at)) is not supported by Keel; supported: \(supported.joined(separator: ", "))")
  }
  return t
}

func unsupported(_ decoder: Decoder, _ what: String) -> TokenizerError {
  TokenizerError("tokenizer.json: \(what) (at \(decoder.codingPath.map(\.stringValue).joined(separator: "."))) is not supported by Keel")
}

indirect enum NormalizerSpec: Decodable {
  case nfc, nfd, nfkc, nfkd, lowercase
  case strip(left: Bool, right: Bool)
  case replace(PatternSpec, String)
  case prepend(String)
  case sequence([NormalizerSpec])
  enum K: String, CodingKey { case strip_left, strip_right, pattern, content, prepend, normalizers }
  init(from decoder: Decoder) throws {
    let t = try componentType(decoder, "normalizer", supported: ["NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Strip", "Replace", "Prepend", "Sequence"])
    let c = try decoder.container(keyedBy: K.self)
    switch t {
    case "NFC": self = .nfc
    case "NFD": self = .nfd
    case "NFKC": self = .nfkc
    case "NFKD": self = .nfkd
    case "Lowercase": self = .lowercase
    case "Strip": self = .strip(left: try c.decode(Bool.self, forKey: .strip_left), right: try c.decode(Bool.self, forKey: .strip_right))
    case "Replace": self = .replace(try c.decode(PatternSpec.self, forKey: .pattern), try c.decode(String.self, forKey: .content))
    case "Prepend": self = .prepend(try c.decode(String.self, forKey: .prepend))
    default: self = .sequence(try c.decode([NormalizerSpec].self, forKey: .normalizers))
    }
  }
}

enum SplitBehavior: String, Decodable { case Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous }

indirect enum PreTokenizerSpec: Decodable {
  case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
  case split(PatternSpec, SplitBehavior, invert: Bool)
  case whitespace, whitespaceSplit
  case digits(individual: Bool)
  case sequence([PreTokenizerSpec])
  enum K: String, CodingKey { case add_prefix_space, use_regex, pattern, behavior, invert, pretokenizers, individual_digits }
  init(from decoder: Decoder) throws {
    let t = try componentType(decoder, "pre_tokenizer", supported: ["ByteLevel", "Split", "Whitespace", "WhitespaceSplit", "Digits", "Sequence"])
    let c = try decoder.container(keyedBy: K.self)
    switch t {
    case "ByteLevel":
      self = .byteLevel(addPrefixSpace: try c.decodeIfPresent(Bool.self, forKey: .add_prefix_space) ?? true,
                        useRegex: try c.decodeIfPresent(Bool.self, forKey: .use_regex) ?? true)
    case "Split":
      self = .split(try c.decode(PatternSpec.self, forKey: .pattern), try c.decode(SplitBehavior.self, forKey: .behavior),
                    invert: try c.decodeIfPresent(Bool.self, forKey: .invert) ?? false)
    case "Whitespace": self = .whitespace
    case "WhitespaceSplit": self = .whitespaceSplit
    case "Digits": self = .digits(individual: try c.decodeIfPresent(Bool.self, forKey: .individual_digits) ?? false)
    default: self = .sequence(try c.decode([PreTokenizerSpec].self, forKey: .pretokenizers))
    }
  }
}

/// BPE merges: "a b" (older files) or ["a", "b"] (tokenizers ≥ 0.20).
struct MergeSpec: Decodable {
  let left: String, right: String
  init(from decoder: Decoder) throws {
    let c = try decoder.singleValueContainer()
    if let s = try? c.decode(String.self) {
      let parts = s.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: false)
      guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
        throw TokenizerError("tokenizer.json: BPE merge \"\(s)\" is not two tokens separated by one space")
      }
      left = String(parts[0]); right = String(parts[1])
    } else {
      let pair = try c.decode([String].self)
      guard pair.count == 2 else { throw TokenizerError("tokenizer.json: a BPE merge pair must have 2 tokens, has \(pair.count)") }
      left = pair[0]; right = pair[1]
    }
  }
}

enum ModelSpec: Decodable {
  case bpe(vocab: [String: Int], merges: [MergeSpec], unk: String?, continuingSubwordPrefix: String?, endOfWordSuffix: String?,
           fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool)
  case wordLevel(vocab: [String: Int], unk: String?)
  enum K: String, CodingKey { case vocab, merges, unk_token, continuing_subword_prefix, end_of_word_suffix, fuse_unk, byte_fallback, ignore_merges, dropout }
  init(from decoder: Decoder) throws {
    let t = try componentType(decoder, "model", supported: ["BPE", "WordLevel"])
    let c = try decoder.container(keyedBy: K.self)
    if t == "WordLevel" {
      self = .wordLevel(vocab: try c.decode([String: Int].self, forKey: .vocab), unk: try c.decodeIfPresent(String.self, forKey: .unk_token))
      return
    }
    if let d = try c.decodeIfPresent(Double.self, forKey: .dropout), d > 0 {
      throw unsupported(decoder, "BPE dropout \(d) (random segmentation)")
    }
    self = .bpe(vocab: try c.decode([String: Int].self, forKey: .vocab), merges: try c.decode([MergeSpec].self, forKey: .merges),
                unk: try c.decodeIfPresent(String.self, forKey: .unk_token),
                continuingSubwordPrefix: try c.decodeIfPresent(String.self, forKey: .continuing_subword_prefix),
                endOfWordSuffix: try c.decodeIfPresent(String.self, forKey: .end_of_word_suffix),
                fuseUnk: try c.decodeIfPresent(Bool.self, forKey: .fuse_unk) ?? false,
                byteFallback: try c.decodeIfPresent(Bool.self, forKey: .byte_fallback) ?? false,
                ignoreMerges: try c.decodeIfPresent(Bool.self, forKey: .ignore_merges) ?? false)
  }
}

/// One piece of a template: a special token or a sequence ($A / $B).
enum TemplatePiece: Decodable {
  case special(String), sequence(String)
  enum K: String, CodingKey { case SpecialToken, Sequence }
  struct Inner: Decodable { let id: String }
  init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: K.self)
    if let s = try c.decodeIfPresent(Inner.self, forKey: .SpecialToken) { self = .special(s.id); return }
    self = .sequence(try c.decode(Inner.self, forKey: .Sequence).id)
  }
}

indirect enum PostProcessorSpec: Decodable {
  case byteLevel
  case template(single: [TemplatePiece], specialIds: [String: [Int]])
  case sequence([PostProcessorSpec])
  enum K: String, CodingKey { case single, special_tokens, processors }
  struct Special: Decodable { let id: String; let ids: [Int] }
  init(from decoder: Decoder) throws {
    let t = try componentType(decoder, "post_processor", supported: ["ByteLevel", "TemplateProcessing", "Sequence"])
    let c = try decoder.container(keyedBy: K.self)
    switch t {
    case "ByteLevel": self = .byteLevel
    case "TemplateProcessing":
      let specials = try c.decode([String: Special].self, forKey: .special_tokens)
      self = .template(single: try c.decode([TemplatePiece].self, forKey: .single), specialIds: specials.mapValues(\.ids))
    default: self = .sequence(try c.decode([PostProcessorSpec].self, forKey: .processors))
    }
  }
}

indirect enum DecoderSpec: Decodable {
  case byteLevel, fuse, byteFallback
  case strip(content: String, start: Int, stop: Int)
  case replace(PatternSpec, String)
  case sequence([DecoderSpec])
  enum K: String, CodingKey { case content, start, stop, pattern, decoders }
  init(from decoder: Decoder) throws {
    let t = try componentType(decoder, "decoder", supported: ["ByteLevel", "Fuse", "Strip", "Replace", "ByteFallback", "Sequence"])
    let c = try decoder.container(keyedBy: K.self)
    switch t {
    case "ByteLevel": self = .byteLevel
    case "Fuse": self = .fuse
    case "ByteFallback": self = .byteFallback
    case "Strip":
      let content = try c.decode(String.self, forKey: .content)
      guard content.count == 1 else { throw unsupported(decoder, "Strip content of \(content.count) characters") }
      self = .strip(content: content, start: try c.decode(Int.self, forKey: .start), stop: try c.decode(Int.self, forKey: .stop))
    case "Replace": self = .replace(try c.decode(PatternSpec.self, forKey: .pattern), try c.decode(String.self, forKey: .content))
    default: self = .sequence(try c.decode([DecoderSpec].self, forKey: .decoders))
    }
  }
}

struct AddedTokenSpec: Decodable {
  let id: Int
  let content: String
  let single_word: Bool?
  let lstrip: Bool?
  let rstrip: Bool?
  let normalized: Bool?
  let special: Bool?
}

struct TokenizerSpec: Decodable {
  let added_tokens: [AddedTokenSpec]?
  let normalizer: NormalizerSpec?
  let pre_tokenizer: PreTokenizerSpec?
  let post_processor: PostProcessorSpec?
  let decoder: DecoderSpec?
  let model: ModelSpec
  enum K: String, CodingKey { case added_tokens, normalizer, pre_tokenizer, post_processor, decoder, model, truncation, padding }
  init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: K.self)
    for k in [K.truncation, .padding] where c.contains(k) {
      if try !c.decodeNil(forKey: k) { throw TokenizerError("tokenizer.json: '\(k.rawValue)' is set; Keel supports only null (it handles lengths itself)") }
    }
    added_tokens = try c.decodeIfPresent([AddedTokenSpec].self, forKey: .added_tokens)
    normalizer = try c.decodeIfPresent(NormalizerSpec.self, forKey: .normalizer)
    pre_tokenizer = try c.decodeIfPresent(PreTokenizerSpec.self, forKey: .pre_tokenizer)
    post_processor = try c.decodeIfPresent(PostProcessorSpec.self, forKey: .post_processor)
    self.decoder = try c.decodeIfPresent(DecoderSpec.self, forKey: .decoder)
    model = try c.decode(ModelSpec.self, forKey: .model)
  }
}
