// Collapse.swift — the collapse detector of the comparison report (docs/compare.md).
// A run COLLAPSED if its held-out accuracy fell far from its best and stayed there, together
// with a sign of a degenerate policy:
//   1. accuracy: at each of the last two evaluations, eval_accuracy ≤ best − `accuracyDrop`
//      (best over all evaluations, default drop 0.10 absolute), and
//   2. degeneration: the mean entropy of the last 20% of steps < `entropyRatio` (0.5) × the mean
//      of the first 20%, OR the mean reward of the last 20% of steps is below the best
//      `window`-step rolling mean of reward by more than `rewardDrop` (0.10).
// A noisy run (accuracy wobbling around a level) fails test 1; a slow learner (flat, low) has
// its best ≈ its last and fails test 1 too. A failed run (NaN, crash) is reported as failed,
// not as collapsed.

public struct CollapseDetector: Sendable {
  public var accuracyDrop = 0.10
  public var entropyRatio = 0.5
  public var rewardDrop = 0.10
  public var window = 5
  public init() {}

  public struct Verdict: Sendable, Equatable {
    public var collapsed: Bool
    public var reason: String
  }

  /// `evals`: eval_accuracy in step order; `entropy`, `reward`: per-step series.
  public func judge(evals: [Double], entropy: [Double], reward: [Double]) -> Verdict {
    guard evals.count >= 3, let best = evals.max() else { return Verdict(collapsed: false, reason: "too few evaluations") }
    let lastTwo = evals.suffix(2)
    guard lastTwo.allSatisfy({ $0 <= best - accuracyDrop }) else {
      return Verdict(collapsed: false, reason: "accuracy held within \(accuracyDrop) of its best (\(best))")
    }
    func mean(_ xs: ArraySlice<Double>) -> Double { xs.isEmpty ? 0 : xs.reduce(0, +) / Double(xs.count) }
    let fifth = max(1, entropy.count / 5)
    let eStart = mean(entropy.prefix(fifth)), eEnd = mean(entropy.suffix(fifth))
    if eStart > 0 && eEnd < entropyRatio * eStart {
      return Verdict(collapsed: true, reason: "accuracy fell from \(best) to \(lastTwo.last!) and entropy fell from \(eStart) to \(eEnd)")
    }
    if reward.count >= window {
      var bestRolling = -Double.infinity
      for i in 0...(reward.count - window) { bestRolling = max(bestRolling, mean(reward[i..<(i + window)])) }
      let rEnd = mean(reward.suffix(max(1, reward.count / 5)))
      if rEnd < bestRolling - rewardDrop {
        return Verdict(collapsed: true, reason: "accuracy fell from \(best) to \(lastTwo.last!) and reward fell from \(bestRolling) to \(rEnd)")
      }
    }
    return Verdict(collapsed: false, reason: "accuracy fell but entropy and reward did not degenerate")
  }
}
