// StatisticsTests.swift — the statistics behind `keel compare`'s claims:
//  - the t quantiles: each table entry leaves 2.5% in the upper tail of Student's t density,
//    integrated numerically (an independent reference), and the large-df expansion too;
//  - intervals and the normalised area against hand-computed cases;
//  - verdicts from seed histories built with a known difference and with none, through the
//    real report writer (metrics.jsonl files on disk → report.md).
import Foundation
import KeelRL
import KeelTestSupport
import XCTest

final class StatisticsTests: XCTestCase {
  /// P(T > x) for Student's t with df degrees of freedom: Simpson's rule on the density after
  /// the substitution t = x + u/(1−u), u ∈ [0, 1).
  static func upperTail(_ x: Double, df: Int) -> Double {
    let v = Double(df)
    let c = exp(lgamma((v + 1) / 2) - lgamma(v / 2)) / (v * Double.pi).squareRoot()
    func density(_ t: Double) -> Double { c * pow(1 + t * t / v, -(v + 1) / 2) }
    let n = 20000
    var sum = 0.0
    for i in 0...n {
      let u = Double(i) / Double(n)
      guard u < 1 else { continue }  // the integrand vanishes at u → 1
      let t = x + u / (1 - u), jac = 1 / ((1 - u) * (1 - u))
      sum += (i == 0 || i == n ? 1 : (i % 2 == 1 ? 4 : 2)) * density(t) * jac
    }
    return sum / Double(n) / 3
  }

  func testTQuantilesLeaveTwoAndAHalfPercentInTheTail() {
    for df in [1, 2, 3, 4, 5, 7, 10, 20, 30, 31, 45, 100] {
      XCTAssertEqual(Self.upperTail(Statistics.tQuantile975(df: df), df: df), 0.025, accuracy: df == 1 ? 2e-4 : 5e-5, "df \(df)")
    }
  }

  func testIntervalsAndAreaByHand() {
    // 0.1, 0.2, 0.3: mean 0.2, sd 0.1, half-width 4.3027 × 0.1/√3 = 0.248414
    let i = Statistics.meanInterval([0.1, 0.2, 0.3])
    XCTAssertEqual(i.mean, 0.2, accuracy: 1e-12)
    XCTAssertEqual(i.high - i.mean, 4.3027 * 0.1 / 3.0.squareRoot(), accuracy: 1e-9)
    XCTAssertEqual(i.verdict, .indistinguishable)
    XCTAssertEqual(Statistics.meanInterval([0.1, 0.11, 0.12]).verdict, .better)
    XCTAssertEqual(Statistics.meanInterval([-0.1, -0.11, -0.12]).verdict, .worse)
    XCTAssertEqual(Statistics.meanInterval([0.5]).verdict, .tooFewSeeds)
    XCTAssertEqual(Statistics.meanInterval([0.002, 0.002, 0.002]).verdict, .noSpread, "one problem better on every seed: no interval")
    XCTAssertEqual(Statistics.meanInterval([0, 0, 0]).verdict, .indistinguishable, "identical arms")
    // paired: only shared seeds count; d = (0.1, 0.2) on seeds 1, 2
    let p = Statistics.paired([1: 0.5, 2: 0.6, 3: 0.9], reference: [1: 0.4, 2: 0.4, 4: 0.0])
    XCTAssertEqual(p.n, 2)
    XCTAssertEqual(p.mean, 0.15, accuracy: 1e-12)
    // area: (0, 0.2) → (10, 0.4) → (30, 0.4): (10·0.3 + 20·0.4) / 30
    XCTAssertEqual(Statistics.normalisedArea([(0, 0.2), (10, 0.4), (30, 0.4)]), 11.0 / 30, accuracy: 1e-12)
  }

  func testNiceTicks() {
    XCTAssertEqual(Report.niceTicks(0, 100), [0, 20, 40, 60, 80, 100])
    XCTAssertEqual(Report.niceTicks(0.141, 0.52), [0.2, 0.3, 0.4, 0.5])
    XCTAssertEqual(Report.niceTicks(1, 51).first, 10)
  }

  /// A comparison directory with seed histories: held-out greedy accuracy per evaluation.
  func history(_ out: String, arm: String, seed: Int, _ curve: [Double]) throws -> CompareRun {
    let dir = out + "/runs/\(arm)/seed-\(seed)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    var lines: [String] = []
    for (i, v) in curve.enumerated() {
      lines.append("{\"step\": \(i * 10), \"eval_accuracy_greedy\": \(v), \"eval_accuracy\": \(v / 2), \"reward_mean\": 0.5, \"entropy\": 0.7}")
    }
    try lines.joined(separator: "\n").write(toFile: dir + "/metrics.jsonl", atomically: true, encoding: .utf8)
    return CompareRun(arm: Arm(name: arm, overrides: [:]), seed: seed, directory: dir, status: .completed)
  }

  func testVerdictsFromSeedHistoriesWithAKnownDifferenceAndWithNone() throws {
    let out = TestSupport.tempDir("keel-stats")
    defer { try? FileManager.default.removeItem(atPath: out) }
    var runs: [CompareRun] = []
    // seed effects shared by every arm (what pairing removes): large, ±0.08
    let seedEffect = [1: 0.08, 2: -0.05, 3: 0.0, 4: -0.08, 5: 0.05]
    for (seed, e) in seedEffect {
      let base = [0.2, 0.25, 0.3, 0.35].map { $0 + e }
      let noise = Double(seed % 3) * 0.004 - 0.004  // small per-seed noise in the difference
      // ref's own rise varies a little by seed (zero mean), so its change from the cold start has
      // a spread: identical changes on every seed would be "no spread", not "better"
      let refNoise = [1: 0.002, 2: -0.002, 3: 0.0, 4: 0.001, 5: -0.001][seed]!
      runs.append(try history(out, arm: "ref", seed: seed, base.enumerated().map { $0.offset == 3 ? $0.element + refNoise : $0.element }))
      runs.append(try history(out, arm: "plus", seed: seed, base.enumerated().map { $0.offset == 0 ? $0.element : $0.element + 0.05 + noise }))
      runs.append(try history(out, arm: "minus", seed: seed, base.enumerated().map { $0.offset == 0 ? $0.element : $0.element - 0.05 + noise }))
      runs.append(try history(out, arm: "same", seed: seed, base.enumerated().map { $0.offset == 0 ? $0.element : $0.element + (seed % 2 == 0 ? 0.01 : -0.01) }))
    }
    let arms = ["ref", "plus", "minus", "same"].map { Arm(name: $0, overrides: [:]) }
    let reports = try Report.write(output: out, runs: runs, arms: arms, title: "t")
    let pairs = Dictionary(uniqueKeysWithValues: Report.paired(reports, reference: "ref").map { ($0.arm, $0) })
    XCTAssertEqual(pairs["plus"]!.final.verdict, .better)
    // noise by seed 1…5: 0, +0.004, −0.004, 0, +0.004 → mean difference 0.0508 (ref's noise sums to 0)
    XCTAssertEqual(pairs["plus"]!.final.mean, 0.0508, accuracy: 1e-9)
    XCTAssertEqual(pairs["plus"]!.area.verdict, .better)
    XCTAssertEqual(pairs["minus"]!.final.verdict, .worse)
    XCTAssertEqual(pairs["minus"]!.best.verdict, .worse)
    XCTAssertEqual(pairs["same"]!.final.verdict, .indistinguishable)
    XCTAssertEqual(pairs["same"]!.area.verdict, .indistinguishable)
    // unpaired, the same numbers could not separate "plus" from "ref": the seed spread is larger than the effect
    let refFinals = reports[0].perSeed.values.map(\.final), plusFinals = reports[1].perSeed.values.map(\.final)
    let unpaired = Statistics.meanInterval(zip(plusFinals.sorted(), refFinals.sorted().reversed()).map { $0 - $1 })
    XCTAssertEqual(unpaired.verdict, .indistinguishable)
    // the report says so, in markdown and HTML alike
    let md = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
    let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
    for text in [md, html] {
      XCTAssertTrue(text.contains("Paired differences against ref"), text)
      XCTAssertTrue(text.contains("indistinguishable at this budget"))
      XCTAssertTrue(text.contains("better") && text.contains("worse"))
      XCTAssertTrue(text.contains("Per seed") && text.contains("Collapse verdicts") && text.contains("Arms"))
    }
    XCTAssertTrue(md.contains("| plus | 5 | \(Report.interval(pairs["plus"]!.final)) | better |"), md)
    // change from the cold start: ref rose by 0.15 on average (0.15 ± 0.002 by seed)
    XCTAssertEqual(reports[0].change.mean, 0.15, accuracy: 1e-9)
    XCTAssertEqual(reports[0].change.verdict, .better)
  }
}

/// metrics.jsonl keeps a line whose value is NaN (as null) and says so; the report reads the rest.
final class MetricsLineTests: XCTestCase {
  func testANaNMetricIsWrittenAsNullAndReported() throws {
    let dir = TestSupport.tempDir("keel-nan-line")
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let w = try JSONLWriter(path: dir + "/metrics.jsonl")
    var reported: [(Int, [String])] = []
    w.onNonFinite = { reported.append(($0, $1)) }
    try w.write(["loss": 0.5, "clip_fraction": .nan, "kl": .infinity], step: 3)
    try w.write(["loss": 0.25], step: 4)
    let lines = try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
    XCTAssertEqual(lines.count, 2, "the NaN line is kept")
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
    XCTAssertTrue(first["clip_fraction"] is NSNull && first["kl"] is NSNull)
    XCTAssertEqual(first["loss"] as? Double, 0.5)
    XCTAssertEqual(reported.map(\.0), [3])
    XCTAssertEqual(reported.first?.1, ["clip_fraction", "kl"])
    XCTAssertEqual(Report.load(dir).map { $0["loss"] }, [0.5, 0.25])
  }
}
