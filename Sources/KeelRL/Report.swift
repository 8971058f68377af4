// Report.swift — the comparison report: report.md and a self-contained report.html (inline
// SVG) with the same sections, in the comparison's directory. Every number comes from the
// runs' own metrics.jsonl (and provenance.json); the statistics are Statistics.swift's.
//   Results       per arm over its seeds: cold-start, final, best and mean-over-the-run
//                 (normalised area) held-out accuracy of the primary metric (default greedy),
//                 the change from the cold start with its 95% interval, final sampled accuracy,
//                 steps to a threshold, collapses (CollapseDetector), peak mismatch KL, masked
//                 fraction, failed runs
//   Paired        per arm against the reference arm (default the first), over shared seeds:
//                 mean difference of final, best and area with 95% paired-t intervals and a
//                 verdict (better / worse / indistinguishable at this budget)
//   Per seed      every run's values, so nothing hides behind a mean
//   Plots         one line per arm (mean over seeds), the 95% interval of that mean shaded:
//                 held-out accuracy (greedy and sampled), reward, entropy, mismatch KL, masked
//                 fraction, the first-order diagnostics, every metric the plugins declare, and
//                 any `--plot NAME`
//   Arms, collapse verdicts, provenance
import Foundation

/// One run's held-out numbers for a metric (eval_accuracy_greedy or eval_accuracy).
public struct SeedResult: Sendable, Equatable {
  public var coldStart: Double
  public var final: Double
  public var best: Double
  public var area: Double
  public var finalSampled: Double
}

public struct ArmReport: Sendable {
  public var arm: String
  public var seeds: [Int]
  public var failed: [String]
  /// Completed runs' values of the primary metric, by seed.
  public var perSeed: [Int: SeedResult]
  public var stepsToThreshold: [Int?]
  public var collapsed: [Bool]
  public var collapseReasons: [String]
  public var peakMismatchKL: Double
  public var meanMaskedFraction: Double
  public var provenance: [String]
  /// metrics.jsonl keys the arm's plugins declare (provenance.json).
  public var pluginMetrics: [String]

  func values(_ f: (SeedResult) -> Double) -> [Double] { perSeed.keys.sorted().map { f(perSeed[$0]!) } }
  func bySeed(_ f: (SeedResult) -> Double) -> [Int: Double] { perSeed.mapValues(f) }
  public var change: Interval { Statistics.meanInterval(values { $0.final - $0.coldStart }) }
}

/// An arm against the reference arm, paired over shared seeds.
public struct PairedReport: Sendable {
  public var arm: String
  public var reference: String
  public var final: Interval
  public var best: Interval
  public var area: Interval
}

public struct ReportOptions: Sendable {
  /// Held-out accuracy that `steps to threshold` counts up to.
  public var threshold: Double = 0.5
  /// The arm the paired differences are taken against (nil: the first).
  public var referenceArm: String? = nil
  /// The accuracy the results and verdicts are about: eval_accuracy_greedy | eval_accuracy.
  public var metric: String = "eval_accuracy_greedy"
  /// Extra metrics.jsonl keys to plot.
  public var extraPlots: [String] = []
  public init(threshold: Double = 0.5, referenceArm: String? = nil, metric: String = "eval_accuracy_greedy", extraPlots: [String] = []) {
    self.threshold = threshold
    self.referenceArm = referenceArm
    self.metric = metric
    self.extraPlots = extraPlots
  }
}

public enum Report {
  public static let plotted: [(key: String, title: String)] = [
    ("eval_accuracy_greedy", "held-out accuracy (greedy)"), ("eval_accuracy", "held-out accuracy (mean over K samples)"),
    ("reward_mean", "training reward"), ("entropy", "token entropy"), ("mismatch_kl", "training–inference KL (k1)"),
    ("masked_fraction", "masked fraction (low + high)"), ("fo_residual_mean", "first-order residual"),
    ("gap_train_infer_abs_mean", "train–infer gap |log π_old − log μ_old|"),
    ("gap_staleness_abs_mean", "staleness gap |log π_θ − log π_old|"),
  ]
  public static let metrics = ["eval_accuracy_greedy", "eval_accuracy"]

  /// metrics.jsonl rows of a run (empty if missing).
  public static func load(_ dir: String) -> [[String: Double]] {
    guard let text = try? String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { line in
      // a metrics line: numbers, and null for a value that was not finite (left out here)
      guard let obj = try? JSONDecoder().decode([String: Double?].self, from: Data(line.utf8)) else { return nil }
      var row = obj.compactMapValues { $0 }
      if let lo = row["masked_fraction_low"], let hi = row["masked_fraction_high"] { row["masked_fraction"] = lo + hi }
      return row
    }
  }

  static func meanStd(_ xs: [Double]) -> (mean: Double, std: Double) {
    guard !xs.isEmpty else { return (.nan, .nan) }
    let m = xs.reduce(0, +) / Double(xs.count)
    let v = xs.count > 1 ? xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count - 1) : 0
    return (m, v.squareRoot())
  }

  /// A run's held-out results for `metric` from its metrics rows (nil without evaluations).
  public static func seedResult(_ rows: [[String: Double]], metric: String) -> SeedResult? {
    let evals = rows.filter { $0[metric] != nil }
    guard let first = evals.first, let last = evals.last else { return nil }
    let trained = evals.filter { ($0["step"] ?? 0) > 0 }
    let points = evals.map { (step: $0["step"] ?? 0, value: $0[metric]!) }
    return SeedResult(coldStart: (first["step"] ?? 0) == 0 ? first[metric]! : .nan, final: last[metric]!,
                      best: (trained.isEmpty ? evals : trained).map { $0[metric]! }.max()!,
                      area: Statistics.normalisedArea(points), finalSampled: last["eval_accuracy"] ?? .nan)
  }

  /// One arm's numbers.
  public static func summarize(arm: String, runs: [CompareRun], options: ReportOptions = .init(), detector: CollapseDetector = .init()) -> ArmReport {
    var steps: [Int?] = [], collapsed: [Bool] = [], reasons: [String] = [], perSeed: [Int: SeedResult] = [:]
    var failed: [String] = [], peak = -Double.infinity, masked: [Double] = [], prov: [String] = [], declared: [String] = []
    for r in runs {
      if r.status != .completed { failed.append("seed \(r.seed): \(r.status.label)"); continue }
      let rows = load(r.directory)
      if let s = seedResult(rows, metric: options.metric) { perSeed[r.seed] = s }
      let evals = rows.filter { $0[options.metric] != nil }
      steps.append(evals.first { ($0["step"] ?? 0) > 0 && $0[options.metric]! >= options.threshold }.map { Int($0["step"]!) })
      let train = rows.filter { ($0["step"] ?? 0) > 0 }
      let v = detector.judge(evals: evals.map { $0[options.metric]! }, entropy: train.compactMap { $0["entropy"] }, reward: train.compactMap { $0["reward_mean"] })
      collapsed.append(v.collapsed)
      reasons.append("seed \(r.seed): " + v.reason)
      peak = max(peak, train.compactMap { $0["mismatch_kl"] }.max() ?? -.infinity)
      masked += train.compactMap { $0["masked_fraction"] }
      if let p = Provenance.read(run: r.directory) {
        let plugins = p.plugins.map { "\($0.role) \($0.name) \($0.version ?? "") abi \($0.abi ?? "?") sha256 \($0.sha256.prefix(12)) \($0.path)" }
        prov.append("seed \(r.seed): keel \(p.keelVersion) (\(p.keelCommit.prefix(10))), \(p.threads) threads, \(p.blas); " + plugins.joined(separator: "; "))
        for m in p.plugins.flatMap({ $0.metrics ?? [] }) where !declared.contains(m) { declared.append(m) }
      }
    }
    return ArmReport(arm: arm, seeds: runs.map(\.seed), failed: failed, perSeed: perSeed, stepsToThreshold: steps,
                     collapsed: collapsed, collapseReasons: reasons, peakMismatchKL: peak.isFinite ? peak : .nan,
                     meanMaskedFraction: masked.isEmpty ? .nan : masked.reduce(0, +) / Double(masked.count),
                     provenance: prov, pluginMetrics: declared)
  }

  /// Every arm against the reference arm.
  public static func paired(_ reports: [ArmReport], reference: String) -> [PairedReport] {
    guard let ref = reports.first(where: { $0.arm == reference }) else { return [] }
    return reports.filter { $0.arm != reference }.map { r in
      PairedReport(arm: r.arm, reference: reference,
                   final: Statistics.paired(r.bySeed(\.final), reference: ref.bySeed(\.final)),
                   best: Statistics.paired(r.bySeed(\.best), reference: ref.bySeed(\.best)),
                   area: Statistics.paired(r.bySeed(\.area), reference: ref.bySeed(\.area)))
    }
  }

  static func f(_ x: Double, _ digits: Int = 3) -> String { x.isNaN ? "–" : String(format: "%.\(digits)f", x) }
  static func signed(_ x: Double) -> String { x.isNaN ? "–" : String(format: "%+.3f", x) }
  /// "+0.052 [+0.011, +0.093]"
  public static func interval(_ i: Interval) -> String {
    i.n < 2 ? signed(i.mean) + " [–]" : "\(signed(i.mean)) [\(signed(i.low)), \(signed(i.high))]"
  }

  /// A table rendered both as markdown and as HTML.
  struct Table {
    var header: [String]
    var rows: [[String]]
    var markdown: String {
      "| " + header.joined(separator: " | ") + " |\n|" + header.map { _ in "---|" }.joined() + "\n"
        + rows.map { "| " + $0.map { $0.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ") }.joined(separator: " | ") + " |\n" }.joined()
    }
    var html: String {
      "<table><tr>" + header.map { "<th>\(escape($0))</th>" }.joined() + "</tr>"
        + rows.map { "<tr>" + $0.map { "<td>\(escape($0))</td>" }.joined() + "</tr>" }.joined() + "</table>"
    }
  }

  static func escape(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
  }

  /// Write report.md, report.html and one SVG per plotted metric. Returns the arm summaries.
  @discardableResult
  public static func write(output: String, runs: [CompareRun], arms: [Arm], options: ReportOptions = .init(), title: String) throws -> [ArmReport] {
    let reports = arms.map { a in summarize(arm: a.name, runs: runs.filter { $0.arm.name == a.name }, options: options) }
    let reference = options.referenceArm ?? arms.first?.name ?? ""
    let pairs = paired(reports, reference: reference)
    let metricName = options.metric == "eval_accuracy_greedy" ? "held-out greedy accuracy" : "held-out accuracy (mean over K samples)"
    let seeds = Set(runs.map(\.seed)).sorted()
    let intro = "Arms × seeds: \(arms.count) × \(seeds.count) (seeds \(seeds.map(String.init).joined(separator: ", "))). "
      + "Primary metric: \(metricName) (`\(options.metric)`); area = its mean over the run (trapezoid over the evaluations, cold start included). "
      + "Intervals: 95%, Student's t over seeds; arms share seeds, so differences are paired (docs/compare.md). "
      + "Final and best: mean ± sample std over seeds; best is over the evaluations after the cold start. Steps to threshold: first evaluation after the cold start with \(options.metric) ≥ \(options.threshold). Collapse detector: docs/compare.md."

    var sections: [(title: String, md: String, html: String)] = []
    let results = Table(
      header: ["arm", "seeds", "cold start", "final", "change from cold start [95% CI]", "best", "area", "final sampled", "steps to threshold",
               "collapsed", "peak mismatch KL", "mean masked fraction", "failed"],
      rows: reports.map { r in
        let final = meanStd(r.values(\.final)), best = meanStd(r.values(\.best))
        let steps = r.stepsToThreshold.map { $0.map(String.init) ?? "never" }.joined(separator: ", ")
        return [r.arm, "\(r.perSeed.count)", f(meanStd(r.values(\.coldStart)).mean), "\(f(final.mean)) ± \(f(final.std))", interval(r.change),
                "\(f(best.mean)) ± \(f(best.std))", f(meanStd(r.values(\.area)).mean), f(meanStd(r.values(\.finalSampled)).mean),
                steps.isEmpty ? "–" : steps, r.collapsed.isEmpty ? "–" : "\(r.collapsed.filter { $0 }.count)/\(r.collapsed.count)",
                f(r.peakMismatchKL, 5), f(r.meanMaskedFraction), r.failed.joined(separator: "; ")]
      })
    sections.append(("Results", results.markdown, results.html))
    let pairedTable = Table(
      header: ["arm", "paired seeds", "final: Δ [95% CI]", "verdict", "best: Δ [95% CI]", "verdict", "area: Δ [95% CI]", "verdict"],
      rows: pairs.map { p in [p.arm, "\(p.final.n)", interval(p.final), p.final.verdict.rawValue, interval(p.best), p.best.verdict.rawValue,
                              interval(p.area), p.area.verdict.rawValue] })
    let pairedNote = "Each arm minus `\(reference)` on the same seeds (\(metricName)). \"better\"/\"worse\": the 95% interval excludes 0; otherwise the arms are indistinguishable at this budget (more seeds or steps could still separate them).\n\n"
    sections.append(("Paired differences against \(reference)", pairedNote + (pairs.isEmpty ? "(one arm only)\n" : pairedTable.markdown),
                     "<p>\(inline(pairedNote))</p>" + pairedTable.html))
    let perSeed = Table(header: ["arm", "seed", "cold start", "final", "change", "best", "area", "final sampled"],
                        rows: reports.flatMap { r in r.perSeed.keys.sorted().map { s in
                          let v = r.perSeed[s]!
                          return [r.arm, "\(s)", f(v.coldStart), f(v.final), signed(v.final - v.coldStart), f(v.best), f(v.area), f(v.finalSampled)]
                        } })
    sections.append(("Per seed", perSeed.markdown, perSeed.html))

    var keys = plotted
    for k in reports.flatMap(\.pluginMetrics) + options.extraPlots where !keys.contains(where: { $0.key == k }) { keys.append((k, k)) }
    var plotsMD = "Lines: mean over seeds; shaded: the 95% t interval of that mean.\n\n", plotsHTML = "<div class=\"plots\">"
    for (key, plotTitle) in keys {
      let svg = plot(key: key, title: plotTitle, runs: runs, arms: arms)
      let file = key.replacingOccurrences(of: "/", with: "_")
      try svg.write(toFile: output + "/\(file).svg", atomically: true, encoding: .utf8)
      plotsMD += "![\(plotTitle)](\(file).svg)\n\n"
      plotsHTML += svg
    }
    sections.append(("Plots", plotsMD, plotsHTML + "</div>"))
    let armLines = arms.map { a in
      "**\(a.name)**: " + (a.overrides.isEmpty ? "base config" : a.overrides.sorted { $0.key < $1.key }.map { "`\($0.key)=\($0.value)`" }.joined(separator: ", "))
    }
    sections.append(("Arms", armLines.map { "- \($0)\n" }.joined(), list(armLines)))
    let verdicts = reports.flatMap { r in r.collapseReasons.map { "\(r.arm) \($0)" } }
    sections.append(("Collapse verdicts", verdicts.map { "- \($0)\n" }.joined(), list(verdicts)))
    let prov = reports.flatMap { r in r.provenance.map { "\(r.arm) \($0)" } }
    sections.append(("Provenance", prov.map { "- \($0)\n" }.joined(), list(prov)))

    var md = "# \(title)\n\n\(intro)\n\n"
    for s in sections { md += "## \(s.title)\n\n\(s.md)\n" }
    try md.write(toFile: output + "/report.md", atomically: true, encoding: .utf8)
    var html = "<!doctype html><html><head><meta charset=\"utf-8\"><title>\(escape(title))</title><style>body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse;margin-bottom:1em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}.plots{display:flex;flex-wrap:wrap;gap:12px}code{background:#f4f4f4}</style></head><body>"
    html += "<h1>\(escape(title))</h1><p>\(inline(intro))</p>"
    for s in sections { html += "<h2>\(escape(s.title))</h2>\(s.html)" }
    try (html + "</body></html>").write(toFile: output + "/report.html", atomically: true, encoding: .utf8)
    return reports
  }

  static func list(_ items: [String]) -> String { "<ul>" + items.map { "<li>\(inline($0))</li>" }.joined() + "</ul>" }

  /// Escaped HTML of a markdown line's inline marks: **x** → <b>, `x` → <code>.
  static func inline(_ text: String) -> String {
    var s = escape(text)
    while let a = s.range(of: "**"), let b = s.range(of: "**", range: a.upperBound..<s.endIndex) {
      s = s.replacingCharacters(in: a.lowerBound..<b.upperBound, with: "<b>" + s[a.upperBound..<b.lowerBound] + "</b>")
    }
    while let a = s.range(of: "`"), let b = s.range(of: "`", range: a.upperBound..<s.endIndex) {
      s = s.replacingCharacters(in: a.lowerBound..<b.upperBound, with: "<code>" + s[a.upperBound..<b.lowerBound] + "</code>")
    }
    return s
  }

  /// Tick values at 1, 2 or 5 × 10^k steps covering [lo, hi]: the step nearest (in log scale)
  /// to (hi − lo) / (count − 1); values rounded to the step's decimals.
  public static func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
    guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
    let raw = (hi - lo) / Double(max(count - 1, 1))
    let mag = pow(10, floor(log10(raw)))
    let step = [1.0, 2, 5, 10].map { $0 * mag }.min { abs(log($0 / raw)) < abs(log($1 / raw)) }!
    let decimals = max(0, -Int(floor(log10(step) + 1e-9)))
    var ticks: [Double] = []
    var k = ceil(lo / step - 1e-9)
    while k * step <= hi + step * 1e-9 {
      ticks.append(Double(String(format: "%.\(decimals)f", k * step))! + 0)  // + 0: no −0
      k += 1
    }
    return ticks
  }

  static func tickLabel(_ v: Double, step: Double) -> String {
    if v == 0 { return "0" }
    if abs(v) < 1e-3 || abs(v) >= 1e5 { return String(format: "%.1e", v) }
    let decimals = max(0, -Int(floor(log10(step) + 1e-9)))
    return String(format: "%.\(decimals)f", v)
  }

  static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

  /// One SVG line plot: per arm the mean over seeds, the 95% t interval of the mean shaded.
  static func plot(key: String, title: String, runs: [CompareRun], arms: [Arm]) -> String {
    let W = 520.0, H = 300.0, left = 56.0, right = 130.0, top = 28.0, bottom = 36.0
    var series: [(String, [(Double, Double, Double, Double)])] = []  // step, mean, lo, hi
    for a in arms {
      var bySteps: [Double: [Double]] = [:]
      for r in runs where r.arm.name == a.name && r.status == .completed {
        for row in load(r.directory) { if let v = row[key], let s = row["step"], v.isFinite { bySteps[s, default: []].append(v) } }
      }
      let pts = bySteps.keys.sorted().map { s -> (Double, Double, Double, Double) in
        let i = Statistics.meanInterval(bySteps[s]!)
        return i.n > 1 ? (s, i.mean, i.low, i.high) : (s, i.mean, i.mean, i.mean)
      }
      series.append((a.name, pts))
    }
    let all = series.flatMap { $0.1 }
    var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" viewBox=\"0 0 \(Int(W)) \(Int(H))\" font-family=\"sans-serif\" font-size=\"11\">"
    svg += "<text x=\"\(left)\" y=\"16\" font-size=\"13\">\(escape(title))</text>"
    guard let xMax = all.map({ $0.0 }).max(), let yLo = all.map({ $0.2 }).min(), let yHi = all.map({ $0.3 }).max() else {
      return svg + "<text x=\"\(left)\" y=\"\(H / 2)\">no data</text></svg>"
    }
    let xMin = all.map { $0.0 }.min()!
    let yTicks = niceTicks(yLo == yHi ? yLo - 0.5 : yLo, yLo == yHi ? yHi + 0.5 : yHi)
    let yStep = yTicks.count > 1 ? yTicks[1] - yTicks[0] : 1
    let y0 = min(yTicks.first ?? yLo, yLo), y1 = max(yTicks.last ?? yHi, yHi)
    let xTicks = niceTicks(xMin, max(xMax, xMin + 1)).filter { $0 == $0.rounded() }
    func X(_ s: Double) -> Double { left + (s - xMin) / max(xMax - xMin, 1) * (W - left - right) }
    func Y(_ v: Double) -> Double { H - bottom - (v - y0) / max(y1 - y0, 1e-300) * (H - top - bottom) }
    svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(W - left - right)\" height=\"\(H - top - bottom)\" fill=\"none\" stroke=\"#999\"/>"
    for v in yTicks where v >= y0 && v <= y1 {
      svg += "<text x=\"\(left - 4)\" y=\"\(Y(v) + 4)\" text-anchor=\"end\">\(tickLabel(v, step: yStep))</text>"
      svg += "<line x1=\"\(left)\" x2=\"\(W - right)\" y1=\"\(Y(v))\" y2=\"\(Y(v))\" stroke=\"#eee\"/>"
    }
    for s in xTicks where s >= xMin && s <= xMax {
      svg += "<text x=\"\(X(s))\" y=\"\(H - bottom + 14)\" text-anchor=\"middle\">\(Int(s))</text>"
    }
    svg += "<text x=\"\((left + W - right) / 2)\" y=\"\(H - 6)\" text-anchor=\"middle\">step</text>"
    for (i, (name, pts)) in series.enumerated() where !pts.isEmpty {
      let color = palette[i % palette.count]
      let band = pts.map { "\(X($0.0)),\(Y($0.3))" } + pts.reversed().map { "\(X($0.0)),\(Y($0.2))" }
      svg += "<polygon points=\"\(band.joined(separator: " "))\" fill=\"\(color)\" fill-opacity=\"0.15\" stroke=\"none\"/>"
      svg += "<polyline points=\"\(pts.map { "\(X($0.0)),\(Y($0.1))" }.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\"/>"
      svg += "<text x=\"\(W - right + 8)\" y=\"\(top + 14 + Double(i) * 14)\" fill=\"\(color)\">\(escape(name))</text>"
    }
    return svg + "</svg>"
  }
}
