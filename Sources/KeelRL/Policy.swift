// Policy.swift — the model presets a run can start from, the policy bundle (weights, training
// engine, sampler, optimizer) and evaluation on held-out problems (mean accuracy over K
// samples at the sampling temperature, and greedy accuracy), graded by the Grader.
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
  /// Score `problems` with the grader (the one definition of correct: Grader.swift).
  /// Over several ranks each scores its share of the problems (sampling is keyed by the
  /// problem's index, so the result does not depend on the number of ranks).
  public static func run(_ policy: Policy, problems: [Problem], tokenizer: any PolicyTokenizer, grader: Grader, samples: Int,
                         temperature: Float, maxTokens: Int, seed: UInt64,
                         comm: Communicator = .single) throws -> EvalResult {
    let share = comm.share(of: problems.count)
    let prompts = try problems[share].map { try tokenizer.encodePrompt($0.prompt) }
    func correct(_ k: Int, _ t: Float) throws -> Double {
      var reqs: [SampleRequest] = []
      for (j, p) in prompts.enumerated() {
        for s in 0..<k { reqs.append(SampleRequest(prompt: p, promptIndex: share.lowerBound + j, sampleIndex: s)) }
      }
      try policy.sampler.check(reqs, maxTokens: maxTokens) { "prompt \(problems[$0.promptIndex].prompt.debugDescription)" }
      let out = policy.sampler.generate(reqs, params: SamplingParams(temperature: t, maxTokens: maxTokens, stopTokens: Set(tokenizer.stopTokens)),
                                        seed: seed ^ 0xE7A1, step: 0)
      let ok = try grader.correct(out.map { tokenizer.decode($0.tokens) }, reqs.map { problems[$0.promptIndex] })
      return Double(ok.filter { $0 }.count)
    }
    let counts = try comm.allreduceSum([try correct(samples, temperature), try correct(1, 0)], what: "allreduce of evaluation counts")
    return EvalResult(accuracy: counts[0] / Double(max(problems.count * samples, 1)),
                      greedyAccuracy: counts[1] / Double(max(problems.count, 1)))
  }
}
