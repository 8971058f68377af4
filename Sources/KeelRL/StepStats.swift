// StepStats.swift — the sums a global step exchanges between ranks, by name: each record lists
// its fields once (key paths), packs to a [Double] for one allreduce and unpacks the same way,
// so no caller indexes a packed array. And the one rule that turns a declared scalar's per-part
// values into the step's value (ScalarDeclaration.Reduction), used for reward components and
// objective metrics alike.
import KeelDistributed
import KeelPluginHost

/// A record of named Double sums (+ a variable-length tail) summed elementwise over ranks.
protocol RankSummed {
  /// The named fields, in packing order (any fixed order: each element is summed on its own).
  static var fields: [WritableKeyPath<Self, Double>] { get }
  /// Per-declaration sums (reward components, objective scalars), after the named fields.
  var tail: [Double] { get set }
}

extension RankSummed {
  var packed: [Double] { Self.fields.map { self[keyPath: $0] } + tail }

  mutating func unpack(_ values: [Double]) {
    precondition(values.count == Self.fields.count + tail.count, "a rank sent a record of another shape")
    for (i, f) in Self.fields.enumerated() { self[keyPath: f] = values[i] }
    tail = Array(values[Self.fields.count...])
  }

  /// The same record summed over every rank (a no-op with one process).
  func summed(over comm: Communicator, what: String) throws -> Self {
    var out = self
    out.unpack(try comm.allreduceSum(packed, what: what))
    return out
  }
}

/// A step's response-level sums: reward, correctness, lengths, π_old entropy, the sampler–trainer
/// mismatch (k1, k3 over response tokens), truncation, groups whose rewards are all equal; the
/// tail holds each reward component weighed by its reduction.
struct StepSums: RankSummed {
  var reward = 0.0, correct = 0.0, responses = 0.0, entropy = 0.0, entropyTokens = 0.0
  var mismatchK1 = 0.0, mismatchK3 = 0.0, tokens = 0.0, truncated = 0.0, equalGroups = 0.0
  var tail: [Double] = []
  static var fields: [WritableKeyPath<StepSums, Double>] {
    [\.reward, \.correct, \.responses, \.entropy, \.entropyTokens, \.mismatchK1, \.mismatchK3, \.tokens, \.truncated, \.equalGroups]
  }
}

/// One mini-batch update's totals: whether any rank skipped it (non-finite objective output), its
/// loss, its response tokens; the tail holds each objective scalar weighed by its reduction.
struct UpdateTotals: RankSummed {
  var skipped = 0.0, loss = 0.0, tokens = 0.0
  var tail: [Double] = []
  static var fields: [WritableKeyPath<UpdateTotals, Double>] { [\.skipped, \.loss, \.tokens] }
}

extension ScalarDeclaration.Reduction {
  /// A part's contribution to the sum: a token mean weighed by the part's tokens, a sequence
  /// mean by its sequences, a sum as it is.
  func weigh(_ value: Double, tokens: Double, sequences: Double) -> Double {
    switch self {
    case .tokenMean: return value * tokens
    case .sequenceMean: return value * sequences
    case .sum: return value
    }
  }

  /// The step's value from the summed contributions and the totals they are means over.
  func finish(_ sum: Double, tokens: Double, sequences: Double) -> Double {
    switch self {
    case .tokenMean: return tokens > 0 ? sum / tokens : 0
    case .sequenceMean: return sum / sequences
    case .sum: return sum
    }
  }
}
