// RolloutBuffer.swift — one global batch: B prompts × G responses with everything the loss
// needs per token (ids, log μ_old from the sampler, log π_old from the training engine, the
// experts each engine routed to) and per response (reward and its components, advantage,
// group, length, truncated). It splits into N mini-batches that keep every prompt's group
// together, in a seeded order.
import KeelModel
import KeelRandom

public struct Response: Sendable {
  public var group: Int
  public var prompt: [Int32]
  public var tokens: [Int32]
  public var logpRollout: [Float]
  public var logpOld: [Float] = []
  public var logpRef: [Float]? = nil
  /// Sampler's experts per MoE layer over prompt + response positions (last padded): R3.
  public var samplerRouting: [[Int32]]
  /// Training engine's experts in the π_old pass: R2.
  public var oldRouting: [[Int32]] = []
  /// Entropy of π_old's next-token distribution at each response token (the π_old pass).
  public var entropyOld: [Float] = []
  /// Whether the π_old values (logpOld, logpRef, entropyOld, oldRouting) are filled in.
  public var oldRecorded = false
  public var reward: Float = 0
  public var components: [String: Float] = [:]
  public var advantage: Float = 0
  public var truncated: Bool
  public var text: String
  public var correct: Bool = false

  public init(group: Int, prompt: [Int32], tokens: [Int32], logpRollout: [Float], samplerRouting: [[Int32]],
              truncated: Bool, text: String) {
    self.group = group
    self.prompt = prompt
    self.tokens = tokens
    self.logpRollout = logpRollout
    self.samplerRouting = samplerRouting
    self.truncated = truncated
    self.text = text
  }
}

public struct RolloutBuffer: Sendable {
  public var responses: [Response]
  public let groups: Int

  public init(responses: [Response], groups: Int) {
    self.responses = responses
    self.groups = groups
  }

  /// The groups (global prompt indices) of each of N mini-batches, shuffled by `seed`: the
  /// same on every rank, whatever share of the groups this buffer holds.
  public func minibatchGroups(_ n: Int, seed: UInt64, step: Int) -> [ArraySlice<Int>] {
    precondition(n >= 1 && groups % n == 0, "train.minibatches (\(n)) must divide rollout.prompts (\(groups))")
    var order = Array(0..<groups)
    var rng = CounterRNG(seed: seed, stream: hashKey(0x3B, UInt64(step)))
    rng.shuffle(&order)
    let per = groups / n
    return (0..<n).map { m in order[(m * per)..<((m + 1) * per)] }
  }

  /// The indices of each group's responses in this buffer (empty for another rank's groups).
  public func membersByGroup() -> [[Int]] {
    var byGroup = [[Int]](repeating: [], count: groups)
    for (i, r) in responses.enumerated() { byGroup[r.group].append(i) }
    return byGroup
  }

  /// Sequences (prompt + response) of some responses, scored from the first response token.
  public func sequenceBatch(_ indices: [Int]) -> SequenceBatch {
    SequenceBatch(sequences: indices.map { responses[$0].prompt + responses[$0].tokens },
                  scoreFrom: indices.map { responses[$0].prompt.count })
  }

  /// A routing record for some responses, from either engine's per-response experts.
  public func routing(_ indices: [Int], sampler: Bool) -> RoutingRecord? {
    guard let first = indices.first else { return nil }
    let layers = (sampler ? responses[first].samplerRouting : responses[first].oldRouting).count
    guard layers > 0 else { return nil }
    return RoutingRecord(experts: (0..<layers).map { l in
      indices.flatMap { sampler ? responses[$0].samplerRouting[l] : responses[$0].oldRouting[l] }
    })
  }
}
