// Report.swift — the comparison report: report.md and a self-contained report.html (inline
// SVG) in the comparison's directory. Per arm, over its seeds (mean ± sample std): final and
// best eval accuracy, steps to reach a threshold, whether it collapsed (CollapseDetector),
// peak mismatch_kl, mean masked fraction; failed/crashed runs are marked as such. Line plots
// over steps, one line per arm (mean over seeds) with the seed min–max spread shaded: reward,
// eval accuracy, entropy, mismatch KL, masked fraction, and the first-order diagnostics
// (residual and both gaps). Every number comes from the runs' own metrics.jsonl.
import Foundation

public struct ArmReport: Sendable {
  public var arm: String
  public var seeds: [Int]
  public var failed: [String]
  public var finalEval: (mean: Double, std: Double)
  public var bestEval: (mean: Double, std: Double)
  public var stepsToThreshold: [Int?]
  public var collapsed: [Bool]
  public var collapseReasons: [String]
  public var peakMismatchKL: Double
  public var meanMaskedFraction: Double
  public var provenance: [String]
}

public enum Report {
  public static let plotted: [(key: String, title: String)] = [
    ("reward_mean", "training reward"), ("eval_accuracy", "held-out accuracy (mean over K samples)"),
    ("entropy", "token entropy"), ("mismatch_kl", "training–inference KL (k1)"),
    ("masked_fraction", "masked fraction (low + high)"), ("fo_residual_mean", "first-order residual"),
    ("gap_train_infer_abs_mean", "train–infer gap |log π_old − log μ_old|"),
    ("gap_staleness_abs_mean", "staleness gap |log π_θ − log π_old|"),
  ]

  /// metrics.jsonl rows of a run (empty if missing).
  public static func load(_ dir: String) -> [[String: Double]] {
    guard let text = try? String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8) else { return [] }
    return text.split(separator: "\n").compactMap { line in
      guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else { return nil }
      var row: [String: Double] = [:]
      for (k, v) in obj { if let d = v as? Double { row[k] = d } else if let i = v as? Int { row[k] = Double(i) } }
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

  /// One arm's numbers. `threshold`: eval accuracy to reach (steps_to_threshold).
  public static func summarize(arm: String, runs: [CompareRun], threshold: Double, detector: CollapseDetector = .init()) -> ArmReport {
    var finals: [Double] = [], bests: [Double] = [], steps: [Int?] = [], collapsed: [Bool] = [], reasons: [String] = []
    var failed: [String] = [], peak = -Double.infinity, masked: [Double] = [], prov: [String] = []
    for r in runs {
      if r.status != .completed { failed.append("seed \(r.seed): \(r.status.label)"); continue }
      let rows = load(r.directory)
      let evals = rows.filter { $0["eval_accuracy"] != nil }
      let evalValues = evals.map { $0["eval_accuracy"]! }
      if let f = evalValues.last { finals.append(f) }
      if let b = evalValues.max() { bests.append(b) }
      steps.append(evals.first { $0["eval_accuracy"]! >= threshold }.map { Int($0["step"]!) })
      let train = rows.filter { ($0["step"] ?? 0) > 0 }
      let v = detector.judge(evals: evalValues, entropy: train.compactMap { $0["entropy"] }, reward: train.compactMap { $0["reward_mean"] })
      collapsed.append(v.collapsed)
      reasons.append(v.reason)
      peak = max(peak, train.compactMap { $0["mismatch_kl"] }.max() ?? -.infinity)
      masked += train.compactMap { $0["masked_fraction"] }
      if let data = FileManager.default.contents(atPath: r.directory + "/provenance.json"),
         let p = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
        let plugins = (p["plugins"] as? [[String: Any]] ?? []).map { "\($0["role"] ?? "?") \($0["name"] ?? "?") \($0["version"] ?? "") abi \($0["abi"] ?? "?") sha256 \(String("\($0["sha256"] ?? "")".prefix(12))) \($0["path"] ?? "")" }
        prov.append("seed \(r.seed): keel \(p["keel_version"] ?? "?") (\(String("\(p["keel_commit"] ?? "?")".prefix(10)))), \(p["threads"] ?? "?") threads, \(p["blas"] ?? ""); " + plugins.joined(separator: "; "))
      }
    }
    return ArmReport(arm: arm, seeds: runs.map(\.seed), failed: failed, finalEval: meanStd(finals), bestEval: meanStd(bests),
                     stepsToThreshold: steps, collapsed: collapsed, collapseReasons: reasons,
                     peakMismatchKL: peak.isFinite ? peak : .nan,
                     meanMaskedFraction: masked.isEmpty ? .nan : masked.reduce(0, +) / Double(masked.count), provenance: prov)
  }

  static func f(_ x: Double, _ digits: Int = 3) -> String { x.isNaN ? "–" : String(format: "%.\(digits)f", x) }

  /// Write report.md, report.html and one SVG per plotted metric. Returns the arm summaries.
  @discardableResult
  public static func write(output: String, runs: [CompareRun], arms: [Arm], threshold: Double, title: String) throws -> [ArmReport] {
    let reports = arms.map { a in summarize(arm: a.name, runs: runs.filter { $0.arm.name == a.name }, threshold: threshold) }
    var md = "# \(title)\n\n"
    md += "Arms × seeds: \(arms.count) × \(Set(runs.map(\.seed)).count). Threshold for `steps to threshold`: eval accuracy ≥ \(threshold). "
    md += "Collapse detector: docs/compare.md. Numbers: mean ± sample std over seeds.\n\n"
    md += "| arm | final eval | best eval | steps to threshold | collapsed | peak mismatch KL | mean masked fraction | failed |\n"
    md += "|---|---|---|---|---|---|---|---|\n"
    for r in reports {
      let steps = r.stepsToThreshold.map { $0.map(String.init) ?? "never" }.joined(separator: ", ")
      let coll = r.collapsed.isEmpty ? "–" : "\(r.collapsed.filter { $0 }.count)/\(r.collapsed.count)"
      md += "| \(r.arm) | \(f(r.finalEval.mean)) ± \(f(r.finalEval.std)) | \(f(r.bestEval.mean)) ± \(f(r.bestEval.std)) | \(steps.isEmpty ? "–" : steps) | \(coll) | \(f(r.peakMismatchKL, 5)) | \(f(r.meanMaskedFraction)) | \(r.failed.isEmpty ? "" : r.failed.joined(separator: "; ")) |\n"
    }
    md += "\n## Plots\n\n"
    var svgs: [(String, String)] = []
    for (key, plotTitle) in plotted {
      let svg = plot(key: key, title: plotTitle, runs: runs, arms: arms)
      try svg.write(toFile: output + "/\(key).svg", atomically: true, encoding: .utf8)
      svgs.append((plotTitle, svg))
      md += "![\(plotTitle)](\(key).svg)\n\n"
    }
    md += "## Arms\n\n"
    for a in arms {
      md += "- **\(a.name)**: " + (a.overrides.isEmpty ? "base config" : a.overrides.sorted { $0.key < $1.key }.map { "`\($0.key)=\($0.value)`" }.joined(separator: ", ")) + "\n"
    }
    md += "\n## Collapse verdicts\n\n"
    for r in reports { for (s, reason) in zip(r.seeds, r.collapseReasons) { md += "- \(r.arm) seed \(s): \(reason)\n" } }
    md += "\n## Provenance\n\n"
    for r in reports { for p in r.provenance { md += "- \(r.arm) \(p)\n" } }
    try md.write(toFile: output + "/report.md", atomically: true, encoding: .utf8)
    var html = "<!doctype html><html><head><meta charset=\"utf-8\"><title>\(title)</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child{text-align:left}.plots{display:flex;flex-wrap:wrap;gap:12px}</style></head><body>"
    html += "<h1>\(title)</h1><table><tr><th>arm</th><th>final eval</th><th>best eval</th><th>steps to threshold</th><th>collapsed</th><th>peak mismatch KL</th><th>mean masked fraction</th><th>failed</th></tr>"
    for r in reports {
      let steps = r.stepsToThreshold.map { $0.map(String.init) ?? "never" }.joined(separator: ", ")
      html += "<tr><td>\(r.arm)</td><td>\(f(r.finalEval.mean)) ± \(f(r.finalEval.std))</td><td>\(f(r.bestEval.mean)) ± \(f(r.bestEval.std))</td><td>\(steps)</td><td>\(r.collapsed.filter { $0 }.count)/\(r.collapsed.count)</td><td>\(f(r.peakMismatchKL, 5))</td><td>\(f(r.meanMaskedFraction))</td><td>\(r.failed.joined(separator: "; "))</td></tr>"
    }
    html += "</table><div class=\"plots\">" + svgs.map { $0.1 }.joined() + "</div>"
    html += "<h2>Provenance</h2><ul>" + reports.flatMap { r in r.provenance.map { "<li>\(r.arm) \($0)</li>" } }.joined() + "</ul></body></html>"
    try html.write(toFile: output + "/report.html", atomically: true, encoding: .utf8)
    return reports
  }

  static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"]

  /// One SVG line plot: per arm the mean over seeds, the min–max band shaded.
  static func plot(key: String, title: String, runs: [CompareRun], arms: [Arm]) -> String {
    let W = 520.0, H = 300.0, left = 56.0, right = 130.0, top = 28.0, bottom = 36.0
    var series: [(String, [(Double, Double, Double, Double)])] = []  // step, mean, lo, hi
    for a in arms {
      var bySteps: [Double: [Double]] = [:]
      for r in runs where r.arm.name == a.name && r.status == .completed {
        for row in load(r.directory) { if let v = row[key], let s = row["step"], v.isFinite { bySteps[s, default: []].append(v) } }
      }
      let pts = bySteps.keys.sorted().map { s -> (Double, Double, Double, Double) in
        let v = bySteps[s]!
        return (s, v.reduce(0, +) / Double(v.count), v.min()!, v.max()!)
      }
      series.append((a.name, pts))
    }
    let all = series.flatMap { $0.1 }
    var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(W))\" height=\"\(Int(H))\" viewBox=\"0 0 \(Int(W)) \(Int(H))\" font-family=\"sans-serif\" font-size=\"11\">"
    svg += "<text x=\"\(left)\" y=\"16\" font-size=\"13\">\(title)</text>"
    guard let xMax = all.map({ $0.0 }).max(), let yLo = all.map({ $0.2 }).min(), let yHi = all.map({ $0.3 }).max() else {
      return svg + "<text x=\"\(left)\" y=\"\(H / 2)\">no data</text></svg>"
    }
    let xMin = all.map { $0.0 }.min()!
    let y0 = yLo == yHi ? yLo - 0.5 : yLo, y1 = yLo == yHi ? yHi + 0.5 : yHi
    func X(_ s: Double) -> Double { left + (s - xMin) / max(xMax - xMin, 1) * (W - left - right) }
    func Y(_ v: Double) -> Double { H - bottom - (v - y0) / (y1 - y0) * (H - top - bottom) }
    svg += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(W - left - right)\" height=\"\(H - top - bottom)\" fill=\"none\" stroke=\"#999\"/>"
    for t in 0...4 {
      let v = y0 + (y1 - y0) * Double(t) / 4
      svg += "<text x=\"\(left - 4)\" y=\"\(Y(v) + 4)\" text-anchor=\"end\">\(String(format: abs(v) < 0.01 && v != 0 ? "%.1e" : "%.3g", v))</text>"
      let s = xMin + (xMax - xMin) * Double(t) / 4
      svg += "<text x=\"\(X(s))\" y=\"\(H - bottom + 14)\" text-anchor=\"middle\">\(Int(s.rounded()))</text>"
    }
    svg += "<text x=\"\((left + W - right) / 2)\" y=\"\(H - 6)\" text-anchor=\"middle\">step</text>"
    for (i, (name, pts)) in series.enumerated() where !pts.isEmpty {
      let color = palette[i % palette.count]
      let band = pts.map { "\(X($0.0)),\(Y($0.3))" } + pts.reversed().map { "\(X($0.0)),\(Y($0.2))" }
      svg += "<polygon points=\"\(band.joined(separator: " "))\" fill=\"\(color)\" fill-opacity=\"0.15\" stroke=\"none\"/>"
      svg += "<polyline points=\"\(pts.map { "\(X($0.0)),\(Y($0.1))" }.joined(separator: " "))\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.6\"/>"
      svg += "<text x=\"\(W - right + 8)\" y=\"\(top + 14 + Double(i) * 14)\" fill=\"\(color)\">\(name)</text>"
    }
    return svg + "</svg>"
  }
}
