// Tokenizer.swift — a fixed character-level vocabulary of 64 symbols (the bench model's
// vocab_size): 3 specials, digits, arithmetic and punctuation, lowercase letters. Enough for
// every built-in task and for small JSONL datasets of the same alphabet; an unknown
// character is an error naming it and its position.
/// What the RL loop needs of a tokenizer: prompts to ids, generated ids to text, when to stop.
/// Keel's character table and a Hugging Face tokenizer (KeelRL/HFPolicyTokenizer.swift) conform.
public protocol PolicyTokenizer: Sendable {
  /// One more than the largest id it produces.
  var vocabSize: Int { get }
  /// The ids a prompt is given to the policy as.
  func encodePrompt(_ text: String) throws -> [Int32]
  /// The ids of a response's text (no special tokens added): a demonstration for keel sft.
  func encodeResponse(_ text: String) throws -> [Int32]
  /// The text of generated ids, up to the first stop token; special tokens dropped.
  func decode(_ ids: [Int32]) -> String
  /// Tokens that end a response.
  var stopTokens: [Int32] { get }
}

public struct CharTokenizer: PolicyTokenizer {
  public static let pad: Int32 = 0, bos: Int32 = 1, eos: Int32 = 2
  public static let symbols: [Character] = Array("0123456789+-*/=,.:;#<>()[] ?!'\"_|\nabcdefghijklmnopqrstuvwxyz")
  let index: [Character: Int32]

  public init() {
    var m: [Character: Int32] = [:]
    for (i, c) in Self.symbols.enumerated() { m[c] = Int32(i + 3) }
    index = m
  }

  public var vocabSize: Int { Self.symbols.count + 3 }
  public var stopTokens: [Int32] { [Self.eos] }

  public func encode(_ text: String) throws -> [Int32] {
    var out: [Int32] = []
    for (i, ch) in text.lowercased().enumerated() {
      guard let id = index[ch] else {
        throw TaskError.invalid("character '\(ch)' at position \(i) of \"\(text)\" is not in Keel's vocabulary (\(String(Self.symbols).replacingOccurrences(of: "\n", with: "\\n")))")
      }
      out.append(id)
    }
    return out
  }

  /// A prompt: <bos> + text.
  public func encodePrompt(_ text: String) throws -> [Int32] { [Self.bos] + (try encode(text)) }
  public func encodeResponse(_ text: String) throws -> [Int32] { try encode(text) }

  /// Text of generated ids, stopping at <eos>; specials are dropped.
  public func decode(_ ids: [Int32]) -> String {
    var s = ""
    for id in ids {
      if id == Self.eos { break }
      let i = Int(id) - 3
      if i >= 0 && i < Self.symbols.count { s.append(Self.symbols[i]) }
    }
    return s
  }
}

public enum TaskError: Error, CustomStringConvertible, Equatable {
  case invalid(String)
  public var description: String {
    switch self { case .invalid(let m): return m }
  }
}
