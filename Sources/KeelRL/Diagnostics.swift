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

  /// What one response contributes; a fixed-size record, so ranks can gather them.
  public struct Record: Sendable {
    public var residual = 0.0, second = 0.0, seqAbs = 0.0, overflow = 0.0
    public var tiAbsSum = 0.0, stAbsSum = 0.0, tokens = 0.0, tiSeqAbs = 0.0, stSeqAbs = 0.0
    static let width = 9
    public var packed: [Double] { [residual, second, seqAbs, overflow, tiAbsSum, stAbsSum, tokens, tiSeqAbs, stSeqAbs] }
    public static func unpack(_ xs: [Double]) -> [Record] {
      stride(from: 0, to: xs.count - width + 1, by: width).map { i in
        Record(residual: xs[i], second: xs[i + 1], seqAbs: xs[i + 2], overflow: xs[i + 3], tiAbsSum: xs[i + 4],
               stAbsSum: xs[i + 5], tokens: xs[i + 6], tiSeqAbs: xs[i + 7], stSeqAbs: xs[i + 8])
      }
    }
  }

  /// One response's record (tokens = 0 for an empty response, which `summarize` skips).
  public static func record(_ r: ResponseLogProbs) -> Record {
    var out = Record()
    guard !r.logp.isEmpty else { return out }
    var logRho = 0.0, sumDelta = 0.0, sumDelta2 = 0.0, ti = 0.0, st = 0.0
    for t in r.logp.indices {
      let lp = Double(r.logp[t]), lo = Double(r.logpOld[t]), lm = Double(r.logpRollout[t])
      logRho += lp - lm
      let delta = exp(lp - lm) - 1
      sumDelta += delta
      sumDelta2 += delta * delta
      out.tiAbsSum += abs(lo - lm); out.stAbsSum += abs(lp - lo)
      ti += lo - lm; st += lp - lo
      out.tokens += 1
    }
    if logRho > 700 { out.overflow = 1; logRho = 700 }
    let rho = exp(logRho)
    out.residual = abs(rho - (1 + sumDelta)) / max(rho, 1)
    out.second = abs((sumDelta * sumDelta - sumDelta2) / 2)
    out.seqAbs = abs(logRho)
    out.tiSeqAbs = abs(ti); out.stSeqAbs = abs(st)
    return out
  }

  /// The mini-batch's metrics from its responses' records (from every rank).
  public static func summarize(_ all: [Record], threshold: Double) -> Metrics {
    let records = all.filter { $0.tokens > 0 }
    guard !records.isEmpty else { return Dictionary(uniqueKeysWithValues: names.map { ($0, 0) }) }
    let n = Double(records.count)
    var tokens = 0.0, ti = 0.0, st = 0.0
    for r in records { tokens += r.tokens; ti += r.tiAbsSum; st += r.stAbsSum }
    let residuals = records.map(\.residual)
    return [
      "fo_residual_mean": residuals.reduce(0, +) / n,
      "fo_residual_p90": percentile(residuals, 0.9),
      "fo_residual_max": residuals.max()!,
      "fo_second_order_abs_mean": records.reduce(0) { $0 + $1.second } / n,
      "fo_valid_fraction": Double(residuals.filter { $0 < threshold }.count) / n,
      "fo_overflow_count": records.reduce(0) { $0 + $1.overflow },
      "gap_train_infer_abs_mean": ti / tokens,
      "gap_staleness_abs_mean": st / tokens,
      "gap_train_infer_seq_abs_mean": records.reduce(0) { $0 + $1.tiSeqAbs } / n,
      "gap_staleness_seq_abs_mean": records.reduce(0) { $0 + $1.stSeqAbs } / n,
      "seq_log_ratio_abs_p90": percentile(records.map(\.seqAbs), 0.9),
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
