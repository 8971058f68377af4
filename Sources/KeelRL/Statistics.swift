// Statistics.swift — what a comparison can claim. Arms share seeds (the same seed gives every
// arm the same data order, initial weights and sampler randomness), so the design is paired:
// per seed, d = arm − reference arm, and the claim is about the mean of d.
//   interval  mean(d) ± t(0.975, n−1) · sd(d) / √n   (Student's paired t, 95%)
//   verdict   "better" if the interval lies above 0, "worse" if below, else "indistinguishable
//             at this budget"; fewer than 2 paired seeds: "too few paired seeds"; the same
//             non-zero difference on every seed (sd 0: accuracies move in steps of one problem,
//             so with few seeds this happens): "no spread over seeds", no interval claimed
// Why t and not the bootstrap: with the 3–5 seeds a CPU budget allows, the percentile
// bootstrap resamples at most n^n sets and its intervals are too narrow (about 80% coverage at
// n = 5 for a nominal 95%), while the t interval is exact for normal differences; each d here
// is a difference of accuracies over hundreds of held-out problems, close to normal.
// Also the one-sample version (a change from the cold start, per arm).
import Foundation

public enum Verdict: String, Sendable, Codable {
  case better, worse
  case indistinguishable = "indistinguishable at this budget"
  case tooFewSeeds = "too few paired seeds"
  case noSpread = "no spread over seeds (no interval)"
}

public struct Interval: Sendable, Equatable, Codable {
  public var n: Int
  public var mean: Double
  public var low: Double
  public var high: Double
  public var verdict: Verdict {
    if n < 2 || !low.isFinite || !high.isFinite { return .tooFewSeeds }
    if low == high && mean != 0 { return .noSpread }
    if low > 0 { return .better }
    if high < 0 { return .worse }
    return .indistinguishable
  }
}

public enum Statistics {
  /// Student's t 0.975 quantile for 1…30 degrees of freedom (standard tables; checked in the
  /// tests by integrating the t density).
  static let t975: [Double] = [12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
                               2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
                               2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423]

  /// t(0.975, df): the table to 30, then the Cornish–Fisher expansion around the normal quantile.
  public static func tQuantile975(df: Int) -> Double {
    precondition(df >= 1)
    if df <= 30 { return t975[df - 1] }
    let z = 1.959964, d = Double(df)
    return z + (z * z * z + z) / (4 * d) + (5 * pow(z, 5) + 16 * z * z * z + 3 * z) / (96 * d * d)
  }

  /// The mean of `xs` with its 95% t interval.
  public static func meanInterval(_ xs: [Double]) -> Interval {
    let n = xs.count
    guard n > 0 else { return Interval(n: 0, mean: .nan, low: .nan, high: .nan) }
    let m = xs.reduce(0, +) / Double(n)
    guard n > 1 else { return Interval(n: 1, mean: m, low: .nan, high: .nan) }
    let sd = (xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(n - 1)).squareRoot()
    let h = tQuantile975(df: n - 1) * sd / Double(n).squareRoot()
    return Interval(n: n, mean: m, low: m - h, high: m + h)
  }

  /// Paired difference arm − reference over the seeds both have.
  public static func paired(_ arm: [Int: Double], reference: [Int: Double]) -> Interval {
    let seeds = Set(arm.keys).intersection(reference.keys).sorted()
    return meanInterval(seeds.map { arm[$0]! - reference[$0]! })
  }

  /// Area under an accuracy curve, normalised by its step span (= the mean accuracy over the
  /// run, trapezoid rule over the evaluation points); a single point is its own value.
  public static func normalisedArea(_ points: [(step: Double, value: Double)]) -> Double {
    let p = points.sorted { $0.step < $1.step }
    guard let first = p.first, let last = p.last else { return .nan }
    guard last.step > first.step else { return first.value }
    var area = 0.0
    for (a, b) in zip(p, p.dropFirst()) { area += (b.step - a.step) * (a.value + b.value) / 2 }
    return area / (last.step - first.step)
  }
}
