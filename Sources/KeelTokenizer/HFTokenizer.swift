// HFTokenizer.swift — a Hugging Face tokenizer (`tokenizer.json`, optionally with
// `tokenizer_config.json` and `generation_config.json`) in Swift, giving the same ids and the
// same decoded text as the `tokenizers` library for every feature it accepts (Spec.swift lists
// them; anything else is an error naming it). Encoding follows the library:
//   1. added tokens that are not `normalized` are cut out of the raw text (leftmost-longest,
//      with their single_word / lstrip / rstrip rules);
//   2. every other piece is normalized, and `normalized` added tokens are cut out of it;
//   3. the pre-tokenizer splits the remaining pieces; 4. the model maps each to ids;
//   5. with add_special_tokens, the post-processor's template adds BOS/EOS-like tokens.
// Decoding maps ids to token strings (added tokens included; special ones dropped on request),
// runs the decoder chain and concatenates (no decoder: joined by spaces, as the library does).
// Special ids: bos / eos / pad from tokenizer_config.json (a string or {"content": …}), and
// eos_token_id (an int or a list) / bos / pad from generation_config.json, which wins.
// Thread-safe: the BPE cache is behind a lock.
import Foundation

public final class HFTokenizer: @unchecked Sendable {
  struct Added {
    let id: Int32
    let content: [Unicode.Scalar]
    let text: String
    let singleWord: Bool, lstrip: Bool, rstrip: Bool, special: Bool
  }
  enum Model {
    case bpe(BPEModel)
    case wordLevel(WordLevelModel)
  }

  let model: Model
  let normalizer: Normalizer?
  let preTokenizer: PreTokenizer?
  let postProcessor: PostProcessor
  let decoder: TokenDecoder?
  let rawAdded: [Added]
  let normalizedAdded: [Added]
  let addedById: [Int32: Added]
  /// First scalars of the added tokens (a text without any needs no matching).
  let rawFirsts: Set<Unicode.Scalar>, normalizedFirsts: Set<Unicode.Scalar>
  let idToToken: [Int32: String]
  public let vocabSize: Int
  public private(set) var bos: Int32?
  public private(set) var eos: [Int32] = []
  public private(set) var pad: Int32?

  /// Largest tokenizer.json read (untrusted input: bounded before it is parsed).
  public static let maxFileBytes = 512 << 20

  /// A directory with tokenizer.json (and optionally tokenizer_config.json, generation_config.json).
  public convenience init(directory: String) throws {
    let path = directory + "/tokenizer.json"
    try self.init(data: try Self.read(path), source: path)
    if let cfg = try Self.readJSON(directory + "/tokenizer_config.json") {
      func special(_ key: String) throws -> Int32? {
        let value = cfg[key]
        let text = value as? String ?? (value as? [String: Any])?["content"] as? String
        guard let text else { return nil }
        guard let id = tokenID(text) else { throw TokenizerError("\(directory)/tokenizer_config.json: \(key) \"\(text)\" is not a token of tokenizer.json") }
        return id
      }
      bos = try special("bos_token")
      if let e = try special("eos_token") { eos = [e] }
      pad = try special("pad_token")
    }
    if let gen = try Self.readJSON(directory + "/generation_config.json") {
      func ids(_ key: String) throws -> [Int32]? {
        guard let v = gen[key], !(v is NSNull) else { return nil }
        let list = (v as? [Any]) ?? [v]
        return try list.map { x in
          guard let n = x as? Int, n >= 0, n < vocabSize else {
            throw TokenizerError("\(directory)/generation_config.json: \(key) \(x) is not a token id below \(vocabSize)")
          }
          return Int32(n)
        }
      }
      if let e = try ids("eos_token_id") { eos = e }
      if let b = try ids("bos_token_id")?.first { bos = b }
      if let p = try ids("pad_token_id")?.first { pad = p }
    }
  }

  public init(data: Data, source: String = "tokenizer.json") throws {
    let spec: TokenizerSpec
    do {
      spec = try JSONDecoder().decode(TokenizerSpec.self, from: data)
    } catch let e as TokenizerError {
      throw TokenizerError("\(source): \(e.message)")
    } catch let e as DecodingError {
      throw TokenizerError("\(source): \(Self.describe(e))")
    }
    switch spec.model {
    case .bpe(let vocab, let merges, let unk, let prefix, let suffix, let fuseUnk, let byteFallback, let ignoreMerges):
      model = .bpe(try BPEModel(vocab: vocab, merges: merges, unk: unk, prefix: prefix, suffix: suffix,
                                fuseUnk: fuseUnk, byteFallback: byteFallback, ignoreMerges: ignoreMerges))
    case .wordLevel(let vocab, let unk):
      let v = try vocabulary(vocab)
      model = .wordLevel(WordLevelModel(vocab: v, unk: unk.flatMap { v[bytes($0)] }, unkName: unk))
    }
    let modelVocab: [Bytes: Int32]
    switch model {
    case .bpe(let m): modelVocab = m.vocab
    case .wordLevel(let m): modelVocab = m.vocab
    }
    normalizer = try spec.normalizer.map(Normalizer.init)
    preTokenizer = try spec.pre_tokenizer.map(PreTokenizer.init)
    postProcessor = try PostProcessor(spec.post_processor)
    decoder = try spec.decoder.map(TokenDecoder.init)
    var raw: [Added] = [], normalized: [Added] = [], byId: [Int32: Added] = [:]
    // the library ignores an added token's id and assigns its own (the model's id for a token
    // it has, else the next free one): a file whose ids say otherwise would encode differently
    var assigned: [Bytes: Int] = [:]
    var maxAdded: Int? = nil
    for t in spec.added_tokens ?? [] {
      guard t.id >= 0, t.id < Int(Int32.max), !t.content.isEmpty else { throw TokenizerError("\(source): added token \(t.id) \"\(t.content)\" is invalid") }
      let key = bytes(t.content), size = modelVocab.count
      let expected = assigned[key] ?? modelVocab[key].map(Int.init)
        ?? (maxAdded.map { $0 >= size || size == 0 ? $0 + 1 : size } ?? size)
      guard expected == t.id else {
        throw TokenizerError("\(source): added token \"\(t.content)\" has id \(t.id), but the tokenizers library gives it id \(expected) (it ignores the file's ids); Keel does not read such files")
      }
      assigned[key] = expected
      maxAdded = max(maxAdded ?? expected, expected)
      let special = t.special ?? false
      let isNormalized = t.normalized ?? !special
      let text = isNormalized ? (normalizer?.apply(t.content) ?? t.content) : t.content
      let a = Added(id: Int32(t.id), content: Array(text.unicodeScalars), text: t.content, singleWord: t.single_word ?? false,
                    lstrip: t.lstrip ?? false, rstrip: t.rstrip ?? false, special: special)
      if isNormalized { normalized.append(a) } else { raw.append(a) }
      byId[a.id] = a
    }
    rawAdded = raw
    normalizedAdded = normalized
    rawFirsts = Set(raw.compactMap(\.content.first))
    normalizedFirsts = Set(normalized.compactMap(\.content.first))
    addedById = byId
    var reverse: [Int32: String] = [:]
    for (k, v) in modelVocab { reverse[v] = String(decoding: k, as: UTF8.self) }
    idToToken = reverse
    vocabSize = Int(max(modelVocab.values.max() ?? -1, byId.keys.max() ?? -1, postProcessor.ids.max() ?? -1)) + 1
  }

  /// The id of a token string (an added token or a model token).
  public func tokenID(_ token: String) -> Int32? {
    if let a = addedById.values.first(where: { bytes($0.text) == bytes(token) }) { return a.id }
    switch model {
    case .bpe(let m): return m.vocab[bytes(token)]
    case .wordLevel(let m): return m.vocab[bytes(token)]
    }
  }

  /// Whether an id is an added token marked special.
  public func isSpecial(_ id: Int32) -> Bool { addedById[id]?.special ?? false }

  // MARK: encoding

  public func encode(_ text: String, addSpecialTokens: Bool = false) throws -> [Int32] {
    var ids: [Int32] = []
    for (piece, id) in Self.cut(text, rawAdded, firsts: rawFirsts) {
      if let id { ids.append(id); continue }
      let normalizedPiece = normalizer?.apply(piece) ?? piece
      for (sub, id2) in Self.cut(normalizedPiece, normalizedAdded, firsts: normalizedFirsts) {
        if let id2 { ids.append(id2); continue }
        for p in preTokenizer?.apply([sub]) ?? [sub] where !p.isEmpty {
          switch model {
          case .bpe(let m): ids += m.tokenize(p)
          case .wordLevel(let m): ids += try m.tokenize(p)
          }
        }
      }
    }
    return addSpecialTokens ? postProcessor.apply(ids) : ids
  }

  /// The pieces the model would see for `text` (normalizer and pre-tokenizer; added tokens are
  /// not cut out): the library's `pre_tokenizer.pre_tokenize_str` after normalization.
  public func preTokenize(_ text: String) -> [String] {
    let n = normalizer?.apply(text) ?? text
    return preTokenizer?.apply([n]) ?? [n]
  }

  /// Cut added tokens out of `text`: leftmost-longest matches, non-overlapping, with the
  /// single_word / lstrip / rstrip rules of the library. Pieces without an id are the rest.
  static func cut(_ text: String, _ added: [Added], firsts: Set<Unicode.Scalar>) -> [(String, Int32?)] {
    guard !added.isEmpty, !text.isEmpty else { return text.isEmpty ? [] : [(text, nil)] }
    // fast path: no scalar of the text starts an added token
    if !text.unicodeScalars.contains(where: firsts.contains) { return [(text, nil)] }
    let s = Array(text.unicodeScalars)
    var out: [(String, Int32?)] = []
    func str(_ a: Int, _ b: Int) -> String { String(String.UnicodeScalarView(s[a..<b])) }
    // the regex class \w, as the library's single_word check uses it
    func isWord(_ c: Unicode.Scalar) -> Bool {
      let p = c.properties
      return p.isAlphabetic || p.isJoinControl
        || [.nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation].contains(p.generalCategory)
    }
    var startOffset = 0, pos = 0
    while pos < s.count {
      var best: Added? = nil
      for a in added where a.content.count <= s.count - pos && a.content.first == s[pos] && (best == nil || a.content.count > best!.content.count) {
        if s[pos..<(pos + a.content.count)].elementsEqual(a.content) { best = a }
      }
      guard let a = best else { pos += 1; continue }
      var start = pos, stop = pos + a.content.count
      pos = stop
      if a.singleWord {
        let startSpace = start == 0 || !isWord(s[start - 1])
        let stopSpace = stop == s.count || !isWord(s[stop])
        if !startSpace || !stopSpace { continue }
      }
      if a.lstrip {
        var k = start
        while k > 0 && s[k - 1].properties.isWhitespace { k -= 1 }
        start = max(k, startOffset)
      }
      if a.rstrip { while stop < s.count && s[stop].properties.isWhitespace { stop += 1 } }
      if startOffset < start { out.append((str(startOffset, start), nil)) }
      out.append((str(start, stop), a.id))
      startOffset = stop
      pos = max(pos, stop)
    }
    if startOffset < s.count { out.append((str(startOffset, s.count), nil)) }
    return out
  }

  // MARK: decoding

  public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
    var tokens: [String] = []
    for id in ids {
      if let a = addedById[id] {
        if skipSpecialTokens && a.special { continue }
        tokens.append(a.text)
      } else if let t = idToToken[id] {
        tokens.append(t)
      }
    }
    guard let decoder else { return tokens.joined(separator: " ") }
    return decoder.chain(tokens).joined()
  }

  // MARK: files

  static func read(_ path: String) throws -> Data {
    let attrs = try? FileManager.default.attributesOfItem(atPath: path)
    guard let size = attrs?[.size] as? Int else { throw TokenizerError("\(path): cannot read the file") }
    guard size <= maxFileBytes else { throw TokenizerError("\(path): \(size) bytes, more than the \(maxFileBytes) Keel reads") }
    guard let data = FileManager.default.contents(atPath: path) else { throw TokenizerError("\(path): cannot read the file") }
    return data
  }

  static func readJSON(_ path: String) throws -> [String: Any]? {
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    let data = try read(path)
    guard let obj = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
      throw TokenizerError("\(path): not a JSON object")
    }
    return obj
  }

  static func describe(_ e: DecodingError) -> String {
    func at(_ c: DecodingError.Context) -> String {
      let p = c.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
      return p.isEmpty ? "" : " at \(p)"
    }
    switch e {
    case .keyNotFound(let k, let c): return "missing key '\(k.stringValue)'\(at(c))"
    case .typeMismatch(let t, let c): return "expected \(t)\(at(c)): \(c.debugDescription)"
    case .valueNotFound(let t, let c): return "missing \(t) value\(at(c))"
    case .dataCorrupted(let c):
      if let te = c.underlyingError as? TokenizerError { return te.message }
      return "not valid JSON\(at(c)): \(c.debugDescription)"
    @unknown default: return "\(e)"
    }
  }
}
