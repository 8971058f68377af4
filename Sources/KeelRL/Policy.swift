// Policy.swift — the model presets a run can start from, the policy bundle (weights, training
// engine, sampler, optimizer) and evaluation on held-out problems (mean accuracy over K
// samples at the sampling temperature, and greedy accuracy).
import Foundation
import KeelDistributed
import KeelModel
import KeelPluginHost
import KeelTasks

public enum ModelPreset {
  public static func config(_ name: String, vocab: Int) throws -> ModelConfig {
    var c: ModelConfig
    switch name {
    case "moe": c = .benchMoE()
    case "dense": c = .benchDense()
    case "tiny":
      c = ModelConfig()
      c.hiddenSize = 32; c.numHiddenLayers = 2; c.numAttentionHeads = 2; c.numKeyValueHeads = 1; c.headDim = 16
      c.intermediateSize = 64; c.numExperts = 4; c.numExpertsPerTok = 2; c.moeIntermediateSize = 32
    default: throw ConfigError.badValue(key: "model.preset", expected: "moe | dense | tiny", got: name)
    }
    c.vocabSize = vocab
    c.maxPositionEmbeddings = 128
    try c.validate()
    return c
  }
}

/// The weights and both engines of one policy.
public final class Policy: @unchecked Sendable {
  public let store: ParameterStore
  public let engine: TrainingEngine
  public let sampler: Sampler
  public let optimizer: AdamW

  public init(store: ParameterStore, precision: SamplerPrecision, threads: Int, optimizer: AdamW? = nil) {
    self.store = store
    // exact mode: the training engine must use the same fixed-order kernels as the sampler
    let compute = Compute(threads: threads, backend: .keel)
    compute.configureBLAS()
    engine = TrainingEngine(store: store, compute: compute)
    sampler = Sampler(store: store, precision: precision, compute: compute)
    self.optimizer = optimizer ?? AdamW(count: store.layout.count)
  }
}

public struct EvalResult: Sendable, Equatable, Codable {
  public var accuracy: Double
  public var greedyAccuracy: Double
}

public enum Evaluator {
  /// Score `problems` with exact match of the final answer (after `marker` when given).
  /// Over several ranks each scores its share of the problems (sampling is keyed by the
  /// problem's index, so the result does not depend on the number of ranks).
  public static func run(_ policy: Policy, problems: [Problem], tokenizer: CharTokenizer, samples: Int,
                         temperature: Float, maxTokens: Int, marker: String, seed: UInt64,
                         comm: Communicator = .single) throws -> EvalResult {
    let share = comm.share(of: problems.count)
    let prompts = try problems[share].map { try tokenizer.encodePrompt($0.prompt) }
    func correct(_ k: Int, _ t: Float) -> Double {
      var reqs: [SampleRequest] = []
      for (j, p) in prompts.enumerated() {
        for s in 0..<k { reqs.append(SampleRequest(prompt: p, promptIndex: share.lowerBound + j, sampleIndex: s)) }
      }
      let out = policy.sampler.generate(reqs, params: SamplingParams(temperature: t, maxTokens: maxTokens, stopTokens: [CharTokenizer.eos]),
                                        seed: seed ^ 0xE7A1, step: 0)
      var correct = 0
      for (r, o) in zip(reqs, out) where answerMatches(tokenizer.decode(o.tokens), problems[r.promptIndex].answer, marker: marker) {
        correct += 1
      }
      return Double(correct)
    }
    let counts = try comm.allreduceSum([correct(samples, temperature), correct(1, 0)], what: "allreduce of evaluation counts")
    return EvalResult(accuracy: counts[0] / Double(max(problems.count * samples, 1)),
                      greedyAccuracy: counts[1] / Double(max(problems.count, 1)))
  }

  /// The final answer of a response (after the last marker) equals the reference.
  public static func answerMatches(_ response: String, _ reference: String, marker: String) -> Bool {
    var text = Substring(response)
    if !marker.isEmpty {
      guard let r = response.range(of: marker, options: .backwards) else { return false }
      text = response[r.upperBound...]
    }
    return text.trimmingCharacters(in: .whitespaces) == reference
  }
}
