// Models.swift — the tokenizer models: a pre-tokenized piece → token ids.
//   BPE        split into characters (Unicode scalars; continuing-subword prefix and
//              end-of-word suffix as declared; unknown characters → byte-fallback tokens
//              <0xXX>, else the unk token, fused when fuse_unk; no unk token: dropped, as the
//              library does), then apply merges lowest rank first, leftmost first;
//              ignore_merges: a piece that is itself in the vocabulary is one token.
//              Results are cached per piece.
// Vocabularies and caches are keyed by UTF-8 bytes: Swift String keys compare by canonical
// equivalence ("é" == "e\u{301}"), the library compares bytes.
//   WordLevel  the piece's id, else the unk token's (no unk token: an error).
import Foundation

/// A vocabulary keyed by bytes; ids must fit Keel's Int32 ids (0 … 2^31 − 1).
func vocabulary(_ vocab: [String: Int]) throws -> [Bytes: Int32] {
  var v: [Bytes: Int32] = [:]
  for (k, id) in vocab {
    guard id >= 0, id <= Int(Int32.max) else { throw TokenizerError("tokenizer.json: vocabulary id \(id) of \"\(k)\" is outside 0 … \(Int32.max)") }
    v[bytes(k)] = Int32(id)
  }
  return v
}

/// A string's exact bytes as a dictionary key.
typealias Bytes = [UInt8]
@inline(__always) func bytes(_ s: String) -> Bytes { Array(s.utf8) }

final class BPEModel: @unchecked Sendable {
  let vocab: [Bytes: Int32]
  let merges: [UInt64: (rank: Int32, id: Int32)]  // (left id << 32 | right id) → rank, merged id
  let unk: Int32?
  let prefix: String?, suffix: String?
  let fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool
  private var cache: [Bytes: [Int32]] = [:]
  private let lock = NSLock()

  init(vocab: [String: Int], merges: [MergeSpec], unk: String?, prefix: String?, suffix: String?,
       fuseUnk: Bool, byteFallback: Bool, ignoreMerges: Bool) throws {
    let v = try vocabulary(vocab)
    self.vocab = v
    var m: [UInt64: (Int32, Int32)] = [:]
    for (rank, merge) in merges.enumerated() {
      guard let a = v[bytes(merge.left)], let b = v[bytes(merge.right)] else {
        throw TokenizerError("tokenizer.json: BPE merge #\(rank) (\"\(merge.left)\" \"\(merge.right)\") uses a token that is not in the vocabulary")
      }
      var right = merge.right
      if let prefix, !prefix.isEmpty, merge.right.utf8.starts(with: prefix.utf8) {
        right = String(decoding: merge.right.utf8.dropFirst(prefix.utf8.count), as: UTF8.self)
      }
      guard let id = v[bytes(merge.left + right)] else {
        throw TokenizerError("tokenizer.json: BPE merge #\(rank) makes \"\(merge.left + right)\", which is not in the vocabulary")
      }
      let key = UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
      m[key] = (Int32(rank), id)  // a merge listed twice: the library keeps the later rank
    }
    self.merges = m
    if let unk {
      guard let id = v[bytes(unk)] else { throw TokenizerError("tokenizer.json: BPE unk_token \"\(unk)\" is not in the vocabulary") }
      self.unk = id
    } else {
      self.unk = nil
    }
    self.prefix = prefix; self.suffix = suffix
    self.fuseUnk = fuseUnk; self.byteFallback = byteFallback; self.ignoreMerges = ignoreMerges
  }

  func tokenize(_ piece: String) -> [Int32] {
    if piece.isEmpty { return [] }
    let key = bytes(piece)
    if ignoreMerges, let id = vocab[key] { return [id] }
    lock.lock()
    if let hit = cache[key] { lock.unlock(); return hit }
    lock.unlock()
    let out = merge(initial(piece))
    lock.lock()
    if cache.count > 200_000 { cache.removeAll(keepingCapacity: true) }
    cache[key] = out
    lock.unlock()
    return out
  }

  /// The piece's characters as ids (before any merge).
  func initial(_ piece: String) -> [Int32] {
    var ids: [Int32] = []
    var pendingUnk = false
    let scalars = Array(piece.unicodeScalars)
    for (i, sc) in scalars.enumerated() {
      var s = String(sc)
      if i > 0, let prefix { s = prefix + s }
      if i == scalars.count - 1, let suffix { s += suffix }
      if let id = vocab[bytes(s)] {
        if pendingUnk, let unk { ids.append(unk) }
        pendingUnk = false
        ids.append(id)
        continue
      }
      if byteFallback {
        // the bytes of the unit as looked up (prefix and suffix included); a pending unk stays
        // pending, as in the library
        let fallback = Array(s.utf8).map { vocab[bytes(String(format: "<0x%02X>", $0))] }
        if fallback.allSatisfy({ $0 != nil }) {
          ids += fallback.map { $0! }
          continue
        }
      }
      guard let unk else { continue }  // no unk token: the library drops the character
      if pendingUnk && !fuseUnk { ids.append(unk) }
      pendingUnk = true
    }
    if pendingUnk, let unk { ids.append(unk) }
    return ids
  }

  /// Apply merges: the lowest-ranked adjacent pair first (leftmost among equals), until none applies.
  func merge(_ start: [Int32]) -> [Int32] {
    var ids = start
    while ids.count > 1 {
      var best: (rank: Int32, at: Int, id: Int32)? = nil
      for i in 0..<(ids.count - 1) {
        let key = UInt64(UInt32(bitPattern: ids[i])) << 32 | UInt64(UInt32(bitPattern: ids[i + 1]))
        if let m = merges[key], best == nil || m.rank < best!.rank { best = (m.rank, i, m.id) }
      }
      guard let b = best else { break }
      ids[b.at] = b.id
      ids.remove(at: b.at + 1)
    }
    return ids
  }
}

struct WordLevelModel {
  let vocab: [Bytes: Int32]
  let unk: Int32?
  let unkName: String?
  func tokenize(_ piece: String) throws -> [Int32] {
    if piece.isEmpty { return [] }
    if let id = vocab[bytes(piece)] { return [id] }
    guard let unk else {
      throw TokenizerError("WordLevel tokenizer: \"\(piece)\" is not in the vocabulary and there is no unk token" + (unkName.map { " (unk_token \"\($0)\" is not in the vocabulary)" } ?? ""))
    }
    return [unk]
  }
}
