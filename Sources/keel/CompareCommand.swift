// CompareCommand.swift — `keel compare` (arms × seeds, each run its own process, then the
// report) and `keel experiment NAME --scale small|full` (the paper's experiments as arms).
import ArgumentParser
import Foundation
import KeelPluginHost
import KeelRL
import KeelTasks

struct CompareOptions: ParsableArguments {
  @Option(help: "Seeds, comma-separated (default 1,2,3; `keel experiment --scale full`: 1,2,3,4,5). Arms share seeds: the comparison is paired.") var seeds: String?
  @Option(help: "Runs in parallel (each gets 2/jobs threads).") var jobs: Int = 1
  @Option(help: "Output directory.") var out: String?
  @Option(name: .customLong("set"), help: "Config override applied to every arm (repeatable).") var sets: [String] = []
  @Option(help: "Held-out accuracy that `steps to threshold` counts up to.") var threshold: Double = 0.5
  @Option(help: "The reference arm of the paired differences (default: the first arm).") var baselineArm: String?
  @Option(help: "The accuracy results and verdicts are about: eval_accuracy_greedy | eval_accuracy.") var metric: String = "eval_accuracy_greedy"
  @Option(name: .customLong("plot"), help: "Also plot this metrics.jsonl key (repeatable; every plugin-declared metric is plotted anyway).") var plots: [String] = []
  @Option(name: .customLong("trust"), help: "Allow a plugin or foreign library that --config or --arms names by path: this file or directory (repeatable).") var trust: [String] = []

  func seedList(default fallback: String = "1,2,3") throws -> [Int] {
    let s = (seeds ?? fallback).split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !s.isEmpty else { throw ValidationError("--seeds must be a comma-separated list of integers") }
    return s
  }
}

func runComparison(base: [String: String], arms: [Arm], options: CompareOptions, defaultOut: String, title: String,
                   defaultSeeds: String = "1,2,3") throws {
  var base = base
  for (k, v) in try ConfigSchema.parseOverrides(options.sets) { base[k] = v }
  base["train.threads"] = base["train.threads"] ?? String(max(1, 2 / max(1, options.jobs)))
  // every arm's config must be valid before anything runs
  for a in arms {
    do { _ = try ConfigSchema.resolve(file: base, overrides: a.overrides) } catch { throw ValidationError("arm '\(a.name)': \(error)") }
  }
  let out = options.out ?? defaultOut
  let cmp = Comparison(base: base, arms: arms, seeds: try options.seedList(default: defaultSeeds), output: out, jobs: options.jobs, keel: KeelPaths.executable)
  guard Report.metrics.contains(options.metric) else {
    throw ValidationError("--metric must be one of \(Report.metrics.joined(separator: ", ")), got '\(options.metric)'")
  }
  if let b = options.baselineArm, !arms.contains(where: { $0.name == b }) {
    throw ValidationError("--baseline-arm '\(b)' is not an arm; arms: \(arms.map(\.name).joined(separator: ", "))")
  }
  let runs = try cmp.run { line in FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
  let reportOptions = ReportOptions(threshold: options.threshold, referenceArm: options.baselineArm, metric: options.metric, extraPlots: options.plots)
  let reports = try Report.write(output: out, runs: runs, arms: arms, options: reportOptions, title: title)
  print("report: \(out)/report.md, \(out)/report.html")
  print("\(options.metric) (95% CI over seeds):")
  for r in reports {
    let finals = r.perSeed.keys.sorted().map { r.perSeed[$0]!.final }
    print(String(format: "  %@: final %.3f (%d seeds), change from cold start %@, collapsed %d/%d%@", r.arm,
                 finals.isEmpty ? Double.nan : finals.reduce(0, +) / Double(finals.count), finals.count, Report.interval(r.change),
                 r.collapsed.filter { $0 }.count, r.collapsed.count, r.failed.isEmpty ? "" : ", FAILED: " + r.failed.joined(separator: "; ")))
  }
  let reference = options.baselineArm ?? arms[0].name
  for p in Report.paired(reports, reference: reference) {
    print("  \(p.arm) − \(reference): final \(Report.interval(p.final)) \(p.final.verdict.rawValue); best \(Report.interval(p.best)) \(p.best.verdict.rawValue); area \(Report.interval(p.area)) \(p.area.verdict.rawValue)")
  }
}

struct CompareCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compare", abstract: "Run arms (objectives, parameters, settings) over seeds side by side and write a report.")
  @Option(help: "YAML with `arms:` (and optional `base:`).") var arms: String?
  @Option(name: .customLong("arm"), help: "An arm: name=X,objective=minirl|./libmine.so,objective.params.k=v,train.minibatches=2 (repeatable).") var armSpecs: [String] = []
  @Option(help: "Base config YAML for every arm.") var config: String?
  @OptionGroup var options: CompareOptions

  func run() throws {
    var base: [String: String] = [:]
    let trust = PluginTrust(trusted: options.trust)
    if let config {
      base = try ConfigSchema.flatten(file: config, what: "--config")
      try trust.check(base, source: config)
    }
    var list: [Arm] = []
    if let arms {
      let text = try TextFile.read(arms, what: "--arms", limit: ConfigSchema.yamlLimits.bytes)
      let parsed = try Arm.parse(yaml: text, source: arms)
      try trust.check(parsed.base, source: arms)
      for arm in parsed.arms { try trust.check(arm.overrides, source: arms + " (arm \(arm.name))") }
      list += parsed.arms
      base.merge(parsed.base) { a, _ in a }
    }
    list += try armSpecs.map(Arm.init(parsing:))
    guard !list.isEmpty else { throw ValidationError("give at least one --arm or an --arms file") }
    try runComparison(base: base, arms: list, options: options, defaultOut: "runs/compare-\(Int(Date().timeIntervalSince1970))", title: "Keel comparison")
  }
}

struct ExperimentCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "experiment", abstract: "The paper's experiments: onpolicy | offpolicy | coldstart | objectives.")
  @Argument(help: "onpolicy | offpolicy | coldstart | objectives") var name: String
  @Option(help: "small (minutes, smoke) | full (what docs/reproduction.md reports)") var scale: String = "small"
  @OptionGroup var options: CompareOptions

  func run() throws {
    let base = try Experiments.base(scale: scale)
    let arms = try Experiments.arms(name, scale: scale)
    try runComparison(base: base, arms: arms, options: options, defaultOut: "runs/experiment-\(name)-\(scale)", title: "Keel experiment: \(name) (\(scale))",
                      defaultSeeds: scale == "full" ? "1,2,3,4,5" : "1,2,3")
  }
}
