// HFPolicyTokenizer.swift — a Hugging Face tokenizer directory as the policy's tokenizer:
// prompts are encoded verbatim with the tokenizer's own template (add_special_tokens, so a
// BOS is added where the post-processor says so); a response stops at any eos id
// (generation_config.json's list, else tokenizer_config.json's eos_token); decoding drops
// special tokens. How to apply a chat template: render it into the prompt text beforehand.
import Foundation
import KeelTasks
import KeelTokenizer

public struct HFPolicyTokenizer: PolicyTokenizer {
  public let tokenizer: HFTokenizer
  public let directory: String
  /// The files a checkpoint carries along so transformers' AutoTokenizer can load it.
  public static let files = ["tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"]

  public init(directory: String) throws {
    tokenizer = try HFTokenizer(directory: directory)
    self.directory = directory
    guard !tokenizer.eos.isEmpty else {
      throw TrainerError(message: "\(directory): the tokenizer has no eos token (set eos_token in tokenizer_config.json or eos_token_id in generation_config.json): responses could never stop")
    }
  }

  /// Tokenizer files of other formats, which Keel does not read.
  public static let foreignFiles = ["tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "spiece.model"]

  /// The directory's tokenizer when it has a tokenizer.json, else nil (Keel's character table);
  /// a directory with only another tokenizer format is an error (its ids would be silently wrong).
  public static func inDirectory(_ directory: String) throws -> HFPolicyTokenizer? {
    if FileManager.default.fileExists(atPath: directory + "/tokenizer.json") { return try HFPolicyTokenizer(directory: directory) }
    if let f = foreignFiles.first(where: { FileManager.default.fileExists(atPath: directory + "/" + $0) }) {
      throw TrainerError(message: "\(directory) has \(f) but no tokenizer.json: Keel reads only tokenizer.json (save one with transformers: AutoTokenizer.from_pretrained(DIR).save_pretrained(DIR))")
    }
    return nil
  }

  public var vocabSize: Int { tokenizer.vocabSize }
  public var stopTokens: [Int32] { tokenizer.eos }
  public func encodePrompt(_ text: String) throws -> [Int32] {
    let ids = try tokenizer.encode(text, addSpecialTokens: true)
    guard !ids.isEmpty else { throw TrainerError(message: "prompt \(text.debugDescription) encodes to no tokens with \(directory)/tokenizer.json") }
    return ids
  }
  public func encodeResponse(_ text: String) throws -> [Int32] { try tokenizer.encode(text, addSpecialTokens: false) }
  public func decode(_ ids: [Int32]) -> String {
    let end = ids.firstIndex(where: stopTokens.contains) ?? ids.count
    return tokenizer.decode(Array(ids[..<end]), skipSpecialTokens: true)
  }

  /// Copy the tokenizer files into a checkpoint directory.
  public func copy(to checkpoint: String) throws {
    for f in Self.files where FileManager.default.fileExists(atPath: directory + "/" + f) {
      try? FileManager.default.removeItem(atPath: checkpoint + "/" + f)
      try FileManager.default.copyItem(atPath: directory + "/" + f, toPath: checkpoint + "/" + f)
    }
  }
}
