// Diagnostics.swift — the first-order validity monitor (docs/diagnostics.md). Per mini-batch
// update, from log π_θ (the forward preceding the update), log π_old and log μ_old of each
// response's unmasked tokens, in float64:
//   ρ_i = exp(Σ_t (log π_θ − log μ_old))                 the exact sequence ratio
//   1 + Σ_t δ_t,  δ_t = π_θ/μ_old − 1                     its first-order value
//   residual_i = |ρ_i − (1 + Σ_t δ_t)| / max(ρ_i, 1)
//   second_i   = Σ_{s<t} δ_s δ_t = ((Σδ)² − Σδ²) / 2      the leading neglected term
// and the two gaps separately: train–infer (log π_old − log μ_old) and staleness
// (log π_θ − log π_old), as per-token mean |log-ratio| and per-response summed log-ratio.
// ρ is capped at e^700 (counted in fo_overflow_count) instead of printing inf.
import Foundation

public struct ResponseLogProbs: Sendable {
  public var logp: [Float], logpOld: [Float], logpRollout: [Float]
  public init(logp: [Float], logpOld: [Float], logpRollout: [Float]) {
    self.logp = logp
    self.logpOld = logpOld
    self.logpRollout = logpRollout
  }
}

public enum Diagnostics {
  public static let names = ["fo_residual_mean", "fo_residual_p90", "fo_residual_max", "fo_second_order_abs_mean",
                             "fo_valid_fraction", "fo_overflow_count", "gap_train_infer_abs_mean", "gap_staleness_abs_mean",
                             "gap_train_infer_seq_abs_mean", "gap_staleness_seq_abs_mean", "seq_log_ratio_abs_p90"]

  /// Nearest-rank percentile of a non-empty list.
  static func percentile(_ xs: [Double], _ p: Double) -> Double {
    let s = xs.sorted()
    return s[min(s.count - 1, max(0, Int((p * Double(s.count)).rounded(.up)) - 1))]
  }

  public static func compute(_ responses: [ResponseLogProbs], threshold: Double) -> Metrics {
    var residuals: [Double] = [], seconds: [Double] = [], seqAbs: [Double] = []
    var overflow = 0.0
    var tiSum = 0.0, stSum = 0.0, tokens = 0.0, tiSeq = 0.0, stSeq = 0.0
    for r in responses where !r.logp.isEmpty {
      var logRho = 0.0, sumDelta = 0.0, sumDelta2 = 0.0, ti = 0.0, st = 0.0
      for t in r.logp.indices {
        let lp = Double(r.logp[t]), lo = Double(r.logpOld[t]), lm = Double(r.logpRollout[t])
        logRho += lp - lm
        let delta = exp(lp - lm) - 1
        sumDelta += delta
        sumDelta2 += delta * delta
        tiSum += abs(lo - lm); stSum += abs(lp - lo)
        ti += lo - lm; st += lp - lo
        tokens += 1
      }
      if logRho > 700 { overflow += 1; logRho = 700 }
      let rho = exp(logRho)
      residuals.append(abs(rho - (1 + sumDelta)) / max(rho, 1))
      seconds.append(abs((sumDelta * sumDelta - sumDelta2) / 2))
      seqAbs.append(abs(logRho))
      tiSeq += abs(ti); stSeq += abs(st)
    }
    guard !residuals.isEmpty else { return Dictionary(uniqueKeysWithValues: names.map { ($0, 0) }) }
    let n = Double(residuals.count)
    return [
      "fo_residual_mean": residuals.reduce(0, +) / n,
      "fo_residual_p90": percentile(residuals, 0.9),
      "fo_residual_max": residuals.max()!,
      "fo_second_order_abs_mean": seconds.reduce(0, +) / n,
      "fo_valid_fraction": Double(residuals.filter { $0 < threshold }.count) / n,
      "fo_overflow_count": overflow,
      "gap_train_infer_abs_mean": tiSum / tokens,
      "gap_staleness_abs_mean": stSum / tokens,
      "gap_train_infer_seq_abs_mean": tiSeq / n,
      "gap_staleness_seq_abs_mean": stSeq / n,
      "seq_log_ratio_abs_p90": percentile(seqAbs, 0.9),
    ]
  }

  /// Per step: the mean over the step's mini-batches, plus `<name>_first` and `<name>_last`.
  public static func perStep(_ perMinibatch: [Metrics]) -> Metrics {
    guard let first = perMinibatch.first, let last = perMinibatch.last else { return [:] }
    var out: Metrics = [:]
    for name in names {
      out[name] = perMinibatch.reduce(0) { $0 + ($1[name] ?? 0) } / Double(perMinibatch.count)
      out[name + "_first"] = first[name]
      out[name + "_last"] = last[name]
    }
    out["fo_minibatches"] = Double(perMinibatch.count)
    return out
  }
}
