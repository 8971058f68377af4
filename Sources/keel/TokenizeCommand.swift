// TokenizeCommand.swift — `keel tokenize`: a Hugging Face tokenizer (a directory with
// tokenizer.json) from the command line: encode a text, decode ids, or time encoding over a
// corpus (one thread; the same loop scripts/make_tokenizer_fixtures.py --keel times for the
// `tokenizers` library, so both are measured in one run).
//   keel tokenize --tokenizer DIR --text "17+25="            → ids (JSON)
//   keel tokenize --tokenizer DIR --decode 1,2,3             → text
//   keel tokenize --tokenizer DIR --bench corpus.jsonl --repeat 20 --json
import ArgumentParser
import Foundation
import KeelTokenizer

struct TokenizeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "tokenize", abstract: "Encode, decode or time a Hugging Face tokenizer (tokenizer.json).")
  @Option(help: "Directory with tokenizer.json (and optionally tokenizer_config.json, generation_config.json).") var tokenizer: String
  @Option(help: "Text to encode.") var text: String?
  @Option(help: "Comma-separated ids to decode.") var decode: String?
  @Flag(help: "Add the post-processor's special tokens when encoding; keep special tokens when decoding.") var special = false
  @Option(help: "Time encoding every line of this file (JSONL with a \"text\" field, or plain lines).") var bench: String?
  @Option(name: .customLong("repeat"), help: "Passes over the corpus (after one untimed pass).") var passes: Int = 20
  @Flag(help: "Print the benchmark as one JSON object.") var json = false

  func run() throws {
    let tok = try HFTokenizer(directory: tokenizer)
    if let text { print("[" + (try tok.encode(text, addSpecialTokens: special)).map(String.init).joined(separator: ", ") + "]") }
    if let decode {
      let ids = try decode.split(separator: ",").map { s -> Int32 in
        guard let v = Int32(s.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--decode: '\(s)' is not an id") }
        return v
      }
      print(tok.decode(ids, skipSpecialTokens: !special))
    }
    if let bench {
      guard passes >= 1 else { throw ValidationError("--repeat must be at least 1") }
      guard let data = FileManager.default.contents(atPath: bench) else { throw ValidationError("cannot read --bench \(bench)") }
      struct Line: Decodable { let text: String }
      let texts = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).compactMap { line -> String? in
        if line.isEmpty { return nil }
        return (try? JSONDecoder().decode(Line.self, from: Data(line.utf8)))?.text ?? String(line)
      }
      let bytes = texts.reduce(0) { $0 + $1.utf8.count }
      var sink = 0
      for t in texts { sink &+= try tok.encode(t, addSpecialTokens: true).count }  // untimed pass
      let t0 = DispatchTime.now().uptimeNanoseconds
      for _ in 0..<passes { for t in texts { sink &+= try tok.encode(t, addSpecialTokens: true).count } }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
      let us = seconds / Double(passes * texts.count) * 1e6, mbs = Double(bytes * passes) / seconds / 1e6
      if json {
        print("{\"strings\": \(texts.count), \"bytes\": \(bytes), \"repeat\": \(passes), \"seconds\": \(seconds), \"us_per_string\": \(us), \"MB_per_s\": \(mbs), \"tokens\": \(sink / (passes + 1))}")
      } else {
        print(String(format: "%d strings (%d bytes) × %d: %.3f s, %.2f µs per string, %.2f MB/s, %d tokens per pass",
                     texts.count, bytes, passes, seconds, us, mbs, sink / (passes + 1)))
      }
    }
  }
}
