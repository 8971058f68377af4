// CompareTests.swift — `keel compare` end to end with the real binary at tiny scale: the
// report's numbers equal the runs' own metrics.jsonl; identical arms with the same seed give
// identical curves; a NaN arm and a segfaulting arm are marked failed while the others
// complete; re-running skips completed arms, but runs again when the plugin was rebuilt or
// the arm's config changed; the report has the paired differences, per-seed values and the
// plugins' own metrics in markdown and HTML. Plus the collapse detector on constructed
// histories.
import Foundation
import KeelRL
import KeelTestSupport
import XCTest

final class CompareTests: XCTestCase {
  let env = ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""]

  func compare(_ args: [String], out: String) throws -> TestSupport.Output {
    try TestSupport.run(TestSupport.keel, ["compare", "--out", out, "--set", "preset=test", "--set", "steps=4", "--set", "eval.every=2"] + args,
                        environment: env)
  }

  func rows(_ dir: String) throws -> [[String: Any]] {
    try String(contentsOfFile: dir + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
  }

  func testReportMatchesTheRunsAndIdenticalArmsAreIdentical() throws {
    let out = TestSupport.tempDir("keel-cmp")
    let r = try compare(["--arm", "name=a,objective=minirl", "--arm", "name=b,objective=minirl",
                         "--arm", "name=r,objective=reinforce", "--seeds", "1,2"], out: out)
    XCTAssertEqual(r.status, 0, r.stdout)
    // identical arms, same seed → identical curves (timing keys aside)
    for seed in [1, 2] {
      let a = try rows(out + "/runs/a/seed-\(seed)").map { NSDictionary(dictionary: $0.filter { !timingKeys.contains($0.key) }) }
      let b = try rows(out + "/runs/b/seed-\(seed)").map { NSDictionary(dictionary: $0.filter { !timingKeys.contains($0.key) }) }
      XCTAssertEqual(a, b)
    }
    // the report's final = mean over seeds of each run's last greedy held-out accuracy
    let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
    for arm in ["a", "r"] {
      let curves = try [1, 2].map { s in try rows(out + "/runs/\(arm)/seed-\(s)").compactMap { $0["eval_accuracy_greedy"] as? Double } }
      let finals = curves.map { $0.last! }, colds = curves.map { $0.first! }
      let mean = finals.reduce(0, +) / 2
      let std = (finals.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 1).squareRoot()
      XCTAssertTrue(report.contains("| \(arm) | 2 | \(String(format: "%.3f", colds.reduce(0, +) / 2)) | \(String(format: "%.3f", mean)) ± \(String(format: "%.3f", std)) |"), report)
      for (s, (c, f)) in zip([1, 2], zip(colds, finals)) {
        XCTAssertTrue(report.contains("| \(arm) | \(s) | \(String(format: "%.3f", c)) | \(String(format: "%.3f", f)) |"), "per-seed row \(arm) \(s):\n\(report)")
      }
      let peak = try [1, 2].flatMap { s in try rows(out + "/runs/\(arm)/seed-\(s)").filter { ($0["step"] as! Int) > 0 }.compactMap { $0["mismatch_kl"] as? Double } }.max()!
      XCTAssertTrue(report.contains(String(format: "%.5f", peak)), "peak mismatch KL \(peak) in:\n\(report)")
    }
    // identical arms: a paired difference of exactly 0
    XCTAssertTrue(report.contains("| b | 2 | +0.000 [+0.000, +0.000] | indistinguishable at this budget |"), report)
    XCTAssertTrue(r.stdout.contains("[1/6] a seed 1: started") || r.stdout.contains("] a seed 1: started"), r.stdout)
    // plugin-declared metrics are plotted (from provenance.json)
    let prov = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/runs/a/seed-1/provenance.json"))) as! [String: Any]
    let declared = (prov["plugins"] as! [[String: Any]]).flatMap { $0["metrics"] as? [String] ?? [] }
    XCTAssertTrue(declared.contains("is_weight_mean"), "\(declared)")
    for svg in ["eval_accuracy_greedy", "reward_mean", "eval_accuracy", "entropy", "mismatch_kl", "masked_fraction", "fo_residual_mean"]
      + declared.map({ $0.replacingOccurrences(of: "/", with: "_") }) {
      let text = try String(contentsOfFile: out + "/\(svg).svg", encoding: .utf8)
      XCTAssertTrue(text.hasPrefix("<svg") && text.contains("<polyline"), svg)
    }
    let html = try String(contentsOfFile: out + "/report.html", encoding: .utf8)
    for section in ["<svg", "Provenance", "Paired differences against a", "Per seed", "Collapse verdicts", "<h2>Arms</h2>"] {
      XCTAssertTrue(html.contains(section), section)
    }
    // re-running skips what is complete
    let again = try compare(["--arm", "name=a,objective=minirl", "--seeds", "1"], out: out)
    XCTAssertTrue(again.stdout.contains("a seed 1: already complete, skipped"), again.stdout)
  }

  /// A finished run is reused only while its plugin file and its config are unchanged.
  func testARebuiltPluginOrAChangedConfigRunsAgain() throws {
    let out = TestSupport.tempDir("keel-cmp-rebuild")
    let source = try String(contentsOfFile: TestSupport.root + "/templates/c/objective/plugin.c", encoding: .utf8)
    try source.write(toFile: out + "/mine.c", atomically: true, encoding: .utf8)
    let lib = try TestSupport.compileLibrary([out + "/mine.c"], into: out, name: "libmine.so")
    let arm = ["--arm", "name=mine,objective=\(lib)", "--seeds", "1"]
    XCTAssertEqual(try compare(arm, out: out + "/cmp").status, 0)
    let again = try compare(arm + ["--jobs", "2"], out: out + "/cmp")
    XCTAssertTrue(again.stdout.contains("mine seed 1: already complete, skipped"), "train.threads (--jobs) does not change results:\n\(again.stdout)")
    // the plugin is rebuilt with a change: the old run no longer stands for the arm
    try (source + "\nstatic const char rebuilt[] __attribute__((used)) = \"rebuilt\";\n").write(toFile: out + "/mine.c", atomically: true, encoding: .utf8)
    _ = try TestSupport.compileLibrary([out + "/mine.c"], into: out, name: "libmine.so")
    let rebuilt = try compare(arm, out: out + "/cmp")
    XCTAssertTrue(rebuilt.stdout.contains("changed since the run (sha256") && rebuilt.stdout.contains("running it again"), rebuilt.stdout)
    XCTAssertTrue(rebuilt.stdout.contains("mine seed 1: completed"), rebuilt.stdout)
    let prov = try String(contentsOfFile: out + "/cmp/runs/mine/seed-1/provenance.json", encoding: .utf8)
    let sha = try TestSupport.run("/usr/bin/sha256sum", [lib]).stdout.split(separator: " ")[0]
    XCTAssertTrue(prov.contains(String(sha)), "the new run records the rebuilt plugin's hash")
    // another config for the same arm name: run again, naming the key
    let changed = try compare(arm + ["--set", "train.lr=2e-3"], out: out + "/cmp")
    XCTAssertTrue(changed.stdout.contains("its config differs (train.lr)"), changed.stdout)
    // a changed dataset file: run again, naming it
    let data = out + "/d.jsonl"
    let rows = (0..<40).map { "{\"prompt\": \"\($0)+1=\", \"answer\": \"\($0 + 1)\"}" }
    try rows.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let withData = arm + ["--set", "task.name=\(data)", "--set", "coldstart.checkpoint=none"]
    XCTAssertEqual(try compare(withData, out: out + "/cmp-data").status, 0)
    try (rows + ["{\"prompt\": \"99+1=\", \"answer\": \"100\"}"]).joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    let changedData = try compare(withData, out: out + "/cmp-data")
    XCTAssertTrue(changedData.stdout.contains("its input \(data) (task.name) changed since the run"), changedData.stdout)
    // a run of the old split (no data_version in provenance.json, no eval.reward in config.yaml) is not reused
    let run = out + "/cmp/runs/mine/seed-1"
    let again2 = try compare(arm + ["--set", "train.lr=2e-3"], out: out + "/cmp")
    XCTAssertTrue(again2.stdout.contains("mine seed 1: already complete, skipped"), again2.stdout)
    let config = try String(contentsOfFile: run + "/config.yaml", encoding: .utf8)
    try config.split(separator: "\n").filter { $0 != "  reward: exact-match" }.joined(separator: "\n").write(toFile: run + "/config.yaml", atomically: true, encoding: .utf8)
    var prov2 = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: run + "/provenance.json"))) as! [String: Any]
    prov2.removeValue(forKey: "data_version")
    try JSONSerialization.data(withJSONObject: prov2).write(to: URL(fileURLWithPath: run + "/provenance.json"))
    let old = try compare(arm + ["--set", "train.lr=2e-3"], out: out + "/cmp")
    XCTAssertTrue(old.stdout.contains("data version split-v1 (made by an older Keel)"), old.stdout)
  }

  func testBrokenAndCrashingArmsFailAloneAndTheOthersComplete() throws {
    let out = TestSupport.tempDir("keel-cmp-fail")
    let nan = try TestSupport.fixture("nan_output.c"), crash = try TestSupport.fixture("segfault.c")
    let r = try compare(["--arm", "name=good,objective=minirl", "--arm", "name=nan,objective=\(nan)",
                         "--arm", "name=crash,objective=\(crash)", "--seeds", "1"], out: out)
    XCTAssertEqual(r.status, 0, r.stdout)
    XCTAssertTrue(r.stdout.contains("good seed 1: completed"), r.stdout)
    XCTAssertTrue(r.stdout.contains("nan seed 1: failed"), r.stdout)
    XCTAssertTrue(r.stdout.contains("crash seed 1: crashed (signal 11)"), r.stdout)
    let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
    XCTAssertTrue(report.contains("seed 1: crashed (signal 11): plugin 'fixture-segfault'"), report)
    XCTAssertTrue(report.contains("fixture-nan"), "the NaN arm's failure names the plugin:\n\(report)")
    XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/runs/good/seed-1/summary.json"))
  }

  func testARunStoppedBySignalIsNotComplete() throws {
    let dir = TestSupport.tempDir("keel-complete")
    XCTAssertFalse(Comparison.isComplete(dir), "no summary")
    try "{\"stoppedBySignal\": true}".write(toFile: dir + "/summary.json", atomically: true, encoding: .utf8)
    XCTAssertFalse(Comparison.isComplete(dir), "stopped early by Ctrl-C: run it again")
    try "{\"stoppedBySignal\": false}".write(toFile: dir + "/summary.json", atomically: true, encoding: .utf8)
    XCTAssertTrue(Comparison.isComplete(dir))
  }

  func testCollapseDetectorOnConstructedHistories() {
    let d = CollapseDetector()
    // a collapse: accuracy climbs then falls, entropy drops sharply, reward falls
    var entropy: [Double] = [], reward: [Double] = []
    for i in 0..<50 {
      let t = Double(i)
      entropy.append(i < 25 ? 0.8 : 0.8 * exp(-(t - 25) / 5))
      reward.append(i < 25 ? 0.2 + t / 100 : max(0, 0.45 - (t - 25) / 40))
    }
    let collapse = d.judge(evals: [0.2, 0.35, 0.45, 0.3, 0.1, 0.05], entropy: entropy, reward: reward)
    XCTAssertTrue(collapse.collapsed, collapse.reason)
    // noisy but healthy: wobbles ±0.04 around a rising level
    var noisyEntropy: [Double] = [], noisyReward: [Double] = []
    for i in 0..<50 {
      let t = Double(i)
      noisyEntropy.append(0.7 + 0.05 * sin(t))
      noisyReward.append(0.2 + t / 400 + 0.05 * sin(t * 1.7))
    }
    let noisy = d.judge(evals: [0.2, 0.28, 0.25, 0.33, 0.3, 0.36, 0.33], entropy: noisyEntropy, reward: noisyReward)
    XCTAssertFalse(noisy.collapsed, noisy.reason)
    // a slow learner: flat and low
    let slowReward: [Double] = (0..<50).map { i in 0.05 + Double(i) / 2000 }
    let slow = d.judge(evals: [0.05, 0.05, 0.06, 0.06, 0.07, 0.07], entropy: Array(repeating: 0.9, count: 50), reward: slowReward)
    XCTAssertFalse(slow.collapsed, slow.reason)
    // accuracy fell but the policy did not degenerate: reported, not called a collapse
    let dip = d.judge(evals: [0.3, 0.5, 0.35, 0.36], entropy: Array(repeating: 0.7, count: 40), reward: Array(repeating: 0.4, count: 40))
    XCTAssertFalse(dip.collapsed, dip.reason)
  }
}

final class ExperimentTests: XCTestCase {
  /// The paper's on-policy experiment at small scale: every arm runs and the report has the
  /// first-order diagnostics plots (residual, train–infer gap, staleness gap) next to the others.
  func testOnPolicyExperimentSmallShowsTheDiagnosticsPlots() throws {
    let out = TestSupport.tempDir("keel-exp")
    let r = try TestSupport.run(TestSupport.keel, ["experiment", "onpolicy", "--scale", "small", "--seeds", "1", "--out", out],
                                environment: ["KEEL_CACHE": NSTemporaryDirectory() + "keel-test-cache", "KEEL_PLUGIN_PATH": ""])
    XCTAssertEqual(r.status, 0, r.stdout)
    let report = try String(contentsOfFile: out + "/report.md", encoding: .utf8)
    for arm in ["minirl", "minirl-lennorm", "minirl-no-tis", "minirl-R3", "minirl-lennorm-R3", "minirl-no-tis-R3", "minirl-exact-sampler"] {
      XCTAssertTrue(report.contains("| \(arm) |"), "\(arm) missing:\n\(report)")
    }
    XCTAssertFalse(report.contains("failed:") || report.contains("crashed"), report)
    for plot in ["fo_residual_mean", "gap_train_infer_abs_mean", "gap_staleness_abs_mean"] {
      let svg = try String(contentsOfFile: out + "/\(plot).svg", encoding: .utf8)
      XCTAssertTrue(svg.contains("<polyline"), "\(plot).svg has no lines")
      XCTAssertTrue(report.contains("(\(plot).svg)"))
    }
    // the exact-sampler control: its train–infer gap is exactly zero at every step
    let rows = try String(contentsOfFile: out + "/runs/minirl-exact-sampler/seed-1/metrics.jsonl", encoding: .utf8).split(separator: "\n")
      .map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }.filter { ($0["step"] as! Int) > 0 }
    XCTAssertFalse(rows.isEmpty)
    for row in rows {
      XCTAssertEqual(row["mismatch_kl"] as? Double, 0)
      XCTAssertEqual(row["gap_train_infer_abs_mean"] as? Double, 0)
    }
  }
}
