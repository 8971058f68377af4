// ScoreCommand.swift — `keel score`: log-probs of given tokens under a checkpoint, on the
// training engine, the inference engine (at a precision), or both (then the gap between them:
// mean |Δ logp| and the mismatch KL, k1 and k3). FILE is JSON (a list of token-id lists) or
// JSONL ({"tokens": [...]} per line); or, with --text, strings (a JSON list, or JSONL with
// {"text": …} per line) that the checkpoint's own tokenizer.json encodes (its template, e.g. a
// BOS, included) — the ids are in the output. Per sequence: logp[t] = log p(tokens[t+1] | tokens[..t])
// for t = 0…T-2, the entropy of the full next-token distribution at those positions, and for
// MoE the experts chosen per layer and position.
import ArgumentParser
import Foundation
import KeelModel
import KeelRL

struct ScoreCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "score", abstract: "Score given tokens with a checkpoint (train and/or sampler engine).")
  @Option(help: "Checkpoint directory (config.json + model.safetensors, Keel's or a Hugging Face Qwen3 one).") var checkpoint: String
  @Option(help: "JSON list of token-id lists, or JSONL with {\"tokens\": [...]} per line.") var tokens: String?
  @Option(help: "Instead of --tokens: a JSON list of strings, or JSONL with {\"text\": …} per line, encoded with the checkpoint's tokenizer.json.") var text: String?
  @Option(help: "Write the results here (JSON); default: stdout.") var out: String?
  @Option(help: "Sampler precision for --engine sampler|both: fp32 | bf16 | fp16 | fp8 | exact.") var precision: String = "fp32"
  @Option(help: "train | sampler | both") var engine: String = "train"
  @Option(help: "Temperature of the scored distribution.") var temperature: Float = 1
  @Option(help: "Threads.") var threads: Int = 2

  static func readSequences(_ path: String) throws -> [[Int32]] {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --tokens \(path)") }
    func ids(_ any: Any, _ where_: String) throws -> [Int32] {
      guard let list = any as? [Any] else { throw ValidationError("\(path): \(where_) is not a list of token ids") }
      return try list.enumerated().map { i, x in
        guard let n = x as? Int, let v = Int32(exactly: n) else { throw ValidationError("\(path): \(where_), entry \(i) is not an integer token id") }
        return v
      }
    }
    if let list = try? JSONSerialization.jsonObject(with: data) as? [Any] {
      return try list.enumerated().map { try ids($0.element, "sequence \($0.offset)") }
    }
    var out: [[Int32]] = []
    for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
      guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let t = obj["tokens"] else {
        throw ValidationError("\(path):\(n + 1): expected {\"tokens\": [...]}")
      }
      out.append(try ids(t, "line \(n + 1)"))
    }
    return out
  }

  static func readTexts(_ path: String) throws -> [String] {
    guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --text \(path)") }
    if let list = try? JSONDecoder().decode([String].self, from: data) { return list }
    struct Row: Decodable { let text: String }
    var out: [String] = []
    for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n").enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
      guard let row = try? JSONDecoder().decode(Row.self, from: Data(line.utf8)) else {
        throw ValidationError("\(path):\(n + 1): expected {\"text\": \"…\"} (or the whole file a JSON list of strings)")
      }
      out.append(row.text)
    }
    return out
  }

  func run() throws {
    guard let p = SamplerPrecision(rawValue: precision) else { throw ValidationError("--precision must be fp32, bf16, fp16, fp8 or exact") }
    guard ["train", "sampler", "both"].contains(engine) else { throw ValidationError("--engine must be train, sampler or both") }
    guard (tokens == nil) != (text == nil) else { throw ValidationError("give exactly one of --tokens and --text") }
    let (seqs, texts) = try readInput()
    guard !seqs.isEmpty else { throw ValidationError("\(tokens ?? text!): no sequences to score") }
    let (store, _) = try Checkpoint.load(directory: checkpoint)
    let c = store.layout.config
    try Self.checkSequences(seqs, fit: c)
    let compute = Compute(threads: threads, backend: .keel)
    let k = c.isMoE ? c.numExpertsPerTok : 0
    var results: [ScoreDocument.Result] = seqs.map { ScoreDocument.Result(tokens: $0.map(Int.init)) }
    if let texts { for (i, t) in texts.enumerated() { results[i].text = t } }
    var trainLogp: [[Float]] = [], samplerLogp: [[Float]] = []
    if engine != "sampler" {
      trainLogp = scoreOnTrainingEngine(seqs, store: store, compute: compute, expertsPerToken: k, into: &results)
    }
    if engine != "train" {
      samplerLogp = scoreOnSampler(seqs, store: store, precision: p, compute: compute, expertsPerToken: k, into: &results)
    }
    var summary = ScoreDocument.Summary(sequences: seqs.count, engine: engine)
    if engine == "both" { Self.addMismatch(sampler: samplerLogp, train: trainLogp, precision: p, to: &summary) }
    let data = try ScoreDocument(summary: summary, results: results).encoded()
    if let out { try data.write(to: URL(fileURLWithPath: out)) } else { print(String(decoding: data, as: UTF8.self)) }
  }

  /// The sequences to score: --tokens as given, or --text encoded with the checkpoint's
  /// tokenizer.json (then also the texts).
  private func readInput() throws -> (seqs: [[Int32]], texts: [String]?) {
    if let tokens { return (try Self.readSequences(tokens), nil) }
    guard let tok = try HFPolicyTokenizer.inDirectory(checkpoint) else {
      throw ValidationError("--text needs the checkpoint's tokenizer.json; \(checkpoint) has none (give --tokens)")
    }
    let texts = try Self.readTexts(text!)
    return (try texts.map { try tok.tokenizer.encode($0, addSpecialTokens: true) }, texts)
  }

  /// Every sequence has at least 2 tokens, fits in the context, and has ids in the vocabulary.
  private static func checkSequences(_ seqs: [[Int32]], fit c: ModelConfig) throws {
    for (i, s) in seqs.enumerated() {
      guard s.count >= 2 else { throw ValidationError("sequence \(i) needs at least 2 tokens to score") }
      guard s.count <= c.maxPositionEmbeddings else { throw ValidationError("sequence \(i) has \(s.count) tokens > max_position_embeddings \(c.maxPositionEmbeddings)") }
      if let bad = s.first(where: { $0 < 0 || Int($0) >= c.vocabSize }) { throw ValidationError("sequence \(i): token id \(bad) outside the vocabulary (\(c.vocabSize))") }
    }
  }

  /// Scores on the training engine: sets results[i].train (logp, entropy, experts per layer
  /// and position) and returns the log-probs per sequence.
  private func scoreOnTrainingEngine(_ seqs: [[Int32]], store: ParameterStore, compute: Compute, expertsPerToken k: Int,
                                     into results: inout [ScoreDocument.Result]) -> [[Float]] {
    let out = TrainingEngine(store: store, compute: compute).forward(SequenceBatch(sequences: seqs, scoreFrom: seqs.map { _ in 1 }), temperature: temperature)
    var trainLogp: [[Float]] = []
    var o = 0, tokOffset = 0
    for (i, s) in seqs.enumerated() {
      let n = s.count - 1
      trainLogp.append(Array(out.logp[o..<(o + n)]))
      var experts: [[[Int]]] = []
      for layer in out.routing.experts {
        var perPosition: [[Int]] = []
        for t in 0..<s.count {
          let lo = (tokOffset + t) * k
          perPosition.append(layer[lo..<(lo + k)].map { Int($0) })
        }
        experts.append(perPosition)
      }
      let logp: [Double] = out.logp[o..<(o + n)].map { Double($0) }
      let entropy: [Double] = out.entropy[o..<(o + n)].map { Double($0) }
      results[i].train = ScoreDocument.Engine(precision: nil, logp: logp, entropy: entropy, experts: experts)
      o += n
      tokOffset += s.count
    }
    return trainLogp
  }

  /// Scores on the inference engine at `p`: sets results[i].sampler (precision, logp, entropy,
  /// experts) and returns the log-probs per sequence.
  private func scoreOnSampler(_ seqs: [[Int32]], store: ParameterStore, precision p: SamplerPrecision, compute: Compute,
                              expertsPerToken k: Int, into results: inout [ScoreDocument.Result]) -> [[Float]] {
    let res = Sampler(store: store, precision: p, compute: compute).score(seqs, temperature: temperature)
    var samplerLogp: [[Float]] = []
    for (i, r) in res.enumerated() {
      samplerLogp.append(r.logp)
      var experts: [[[Int]]] = []
      for layer in r.routing {
        var perPosition: [[Int]] = []
        for lo in stride(from: 0, to: layer.count, by: max(k, 1)) { perPosition.append(layer[lo..<(lo + k)].map { Int($0) }) }
        experts.append(perPosition)
      }
      let logp: [Double] = r.logp.map { Double($0) }
      let entropy: [Double] = r.entropy.map { Double($0) }
      results[i].sampler = ScoreDocument.Engine(precision: p.rawValue, logp: logp, entropy: entropy, experts: experts)
    }
    return samplerLogp
  }

  /// The gap between the engines (mean |Δ logp|, mismatch KL k1 and k3) into `summary`, and as
  /// one line on stderr.
  private static func addMismatch(sampler samplerLogp: [[Float]], train trainLogp: [[Float]], precision p: SamplerPrecision,
                                  to summary: inout ScoreDocument.Summary) {
    var absSum = 0.0, k1 = 0.0, k3 = 0.0, n = 0.0
    for (a, b) in zip(samplerLogp, trainLogp) {
      for (mu, pi) in zip(a, b) {
        let d = Double(mu) - Double(pi)
        absSum += abs(d); k1 += d; k3 += exp(-d) - 1 + d; n += 1
      }
    }
    summary.mean_abs_delta_logp = absSum / n
    summary.mismatch_kl_k1 = k1 / n
    summary.mismatch_kl_k3 = k3 / n
    summary.precision = p.rawValue
    FileHandle.standardError.write(Data(String(format: "sampler %@ vs train over %d tokens: mean |Δ logp| %.3g, mismatch KL k1 %.3g, k3 %.3g\n",
                                               p.rawValue, Int(n), absSum / n, k1 / n, k3 / n).utf8))
  }
}

/// `keel score`'s output: a summary (and, with both engines, the gap between them) and, per
/// sequence, its tokens (and text) with each engine's log-probs, entropies and experts (per MoE
/// layer and position). A log-prob of −∞ (a token the sampler's precision cannot produce) is
/// written as the string "-inf"; nothing is dropped.
struct ScoreDocument: Encodable {
  struct Summary: Encodable {
    var sequences: Int, engine: String
    var mean_abs_delta_logp: Double? = nil, mismatch_kl_k1: Double? = nil, mismatch_kl_k3: Double? = nil, precision: String? = nil
  }
  struct Engine: Encodable {
    var precision: String?
    var logp: [Double], entropy: [Double], experts: [[[Int]]]
  }
  struct Result: Encodable {
    var tokens: [Int]
    var text: String? = nil
    var train: Engine? = nil, sampler: Engine? = nil
  }
  var summary: Summary
  var results: [Result]

  func encoded() throws -> Data {
    try JSONOutput.encoder().encode(self)
  }
}
