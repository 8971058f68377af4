// CompareCommand.swift — `keel compare` (arms × seeds, each run its own process, then the
// report) and `keel experiment NAME --scale small|full` (the paper's experiments as arms).
import ArgumentParser
import Foundation
import KeelRL

struct CompareOptions: ParsableArguments {
  @Option(help: "Seeds, comma-separated (default 1,2,3; `keel experiment --scale full`: 1,2,3,4,5). Arms share seeds: the comparison is paired.") var seeds: String?
  @Option(help: "Runs in parallel (each gets 2/jobs threads).") var jobs: Int = 1
  @Option(help: "Output directory.") var out: String?
  @Option(name: .customLong("set"), help: "Config override applied to every arm (repeatable).") var sets: [String] = []
  @Option(help: "Eval accuracy that `steps to threshold` counts up to.") var threshold: Double = 0.5

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
  let runs = try cmp.run { line in FileHandle.standardError.write(Data((line + "\n").utf8)) }
  let reports = try Report.write(output: out, runs: runs, arms: arms, threshold: options.threshold, title: title)
  print("report: \(out)/report.md, \(out)/report.html")
  for r in reports {
    print(String(format: "  %@: final eval %.3f ± %.3f, best %.3f, collapsed %d/%d%@", r.arm, r.finalEval.mean, r.finalEval.std, r.bestEval.mean,
                 r.collapsed.filter { $0 }.count, r.collapsed.count, r.failed.isEmpty ? "" : ", FAILED: " + r.failed.joined(separator: "; ")))
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
    if let config {
      guard let text = try? String(contentsOfFile: config, encoding: .utf8) else { throw ValidationError("cannot read --config \(config)") }
      base = try ConfigSchema.flatten(yaml: text, source: config)
    }
    var list: [Arm] = []
    if let arms {
      guard let text = try? String(contentsOfFile: arms, encoding: .utf8) else { throw ValidationError("cannot read --arms \(arms)") }
      let parsed = try Arm.parse(yaml: text, source: arms)
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
