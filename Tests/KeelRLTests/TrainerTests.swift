// TrainerTests.swift — the RL loop end to end on the tiny preset (seconds): reward rises on an
// easy task; resuming equals running straight through, metrics bit for bit (timing aside);
// a NaN-producing objective stops the run naming the plugin and keeps the last checkpoint;
// mini-batches keep groups whole and cover every response once; the mismatch KL is ~0 with
// an fp32 sampler, exactly 0 in exact mode, and clearly positive with bf16; the config
// rejects unknown keys naming the nearest ones.
import Foundation
import KeelModel
import KeelPluginHost
import KeelRL
import KeelTestSupport
import XCTest

final class TrainerTests: XCTestCase {
  override func setUp() {
    setenv("KEEL_CACHE", NSTemporaryDirectory() + "keel-test-cache", 1)
    // the built-in plugins sit next to the test bundle
    setenv("KEEL_PLUGIN_PATH", TestSupport.binDir, 1)
  }

  func runTrainer(_ overrides: [String: String], steps: Int, dir: String? = nil, resume: Bool = false,
                  foldOldPass: Bool = true) throws -> (RunDirectory, [[String: Any]], Summary) {
    let path = dir ?? TestSupport.tempDir("keel-run")
    var o = ["preset": "test"]
    for (k, v) in overrides { o[k] = v }
    o["steps"] = String(steps)
    let config = try ConfigSchema.resolve(file: [:], overrides: o)
    let run = try RunDirectory(path: path, create: true)
    try run.writeConfig(config)
    let trainer = try Trainer(config: config, run: run, quiet: true, logger: KeelLog.silent)
    trainer.foldOldPassIntoUpdate = foldOldPass
    try trainer.prepare(resumeFrom: resume ? run.latestCheckpoint : nil)
    let summary = try trainer.train(steps: steps)
    return (run, try metrics(path), summary)
  }

  func metrics(_ path: String) throws -> [[String: Any]] {
    try String(contentsOfFile: path + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
  }

  func stripTiming(_ rows: [[String: Any]]) -> [NSDictionary] {
    rows.map { r in NSDictionary(dictionary: r.filter { !timingKeys.contains($0.key) }) }
  }

  /// An easy task: the reward is the number of digits in the response (a libffi foreign reward,
  /// `digits` of Tests/Fixtures/plugins/score.c); RL must learn to write only digits, up to max_tokens.
  func testRewardRisesOnAnEasyTask() throws {
    let lib = try TestSupport.fixture("score.c")
    let (_, rows, _) = try runTrainer(["rollout.prompts": "16", "reward.weight": "0", "reward.foreign.library": lib,
                                       "reward.foreign.symbol": "digits", "reward.foreign.signature": "(response: string) -> int64"], steps: 30)
    let rewards = rows.compactMap { $0["reward_mean"] as? Double }
    let first = rewards.prefix(8).reduce(0, +) / 8, last = rewards.suffix(8).reduce(0, +) / 8
    XCTAssertGreaterThan(last, first + 2, "reward \(first) → \(last): \(rewards)")
    XCTAssertNotNil(rows[1]["reward/digits"], "each reward is logged as reward/<name>")
    for key in ["step", "reward_mean", "accuracy", "entropy", "mismatch_kl", "mismatch_kl_k3", "masked_fraction_low",
                "masked_fraction_high", "is_weight_mean", "grad_norm", "loss", "response_length", "truncated_fraction",
                "zero_advantage_fraction", "tokens_per_second", "seconds"] {
      XCTAssertNotNil(rows[1][key], "metrics.jsonl lacks \(key)")
    }
    XCTAssertNotNil(rows[0]["eval_accuracy_greedy"], "step 0 carries the cold start's evaluation")
  }

  func testResumeEqualsAStraightRun() throws {
    let (_, straight, _) = try runTrainer([:], steps: 10)
    let dir = TestSupport.tempDir("keel-resume")
    _ = try runTrainer([:], steps: 5, dir: dir)
    let (_, resumed, _) = try runTrainer([:], steps: 10, dir: dir, resume: true)
    XCTAssertEqual(resumed.count, straight.count)
    XCTAssertEqual(stripTiming(resumed), stripTiming(straight))
  }

  /// N = 1: recording π_old from the update's forward gives the metrics of a separate π_old
  /// pass bit for bit (the tiny MoE policy, several micro-batches, each routing-replay mode, with a
  /// reference policy), and the diagnostics too.
  func testOldPassFoldedIntoTheUpdateGivesTheSameBits() throws {
    for replay in ["none", "R2", "R3"] {
      let o = ["train.routing_replay": replay, "train.micro_batch": "5", "train.kl_ref": "true",
               "diagnostics.enabled": "true"]
      let (runA, folded, _) = try runTrainer(o, steps: 3)
      let (runB, separate, _) = try runTrainer(o, steps: 3, foldOldPass: false)
      XCTAssertEqual(stripTiming(folded), stripTiming(separate), replay)
      XCTAssertEqual(try String(contentsOfFile: runA.path + "/diagnostics.jsonl", encoding: .utf8),
                     try String(contentsOfFile: runB.path + "/diagnostics.jsonl", encoding: .utf8), replay)
      XCTAssertTrue(separate.contains { ($0["time_old_pass"] as? Double ?? 0) > 0 }, "the separate pass ran")
    }
  }

  func testSameSeedSameMetricsAndAnotherSeedDiffers() throws {
    let (_, a, _) = try runTrainer([:], steps: 4)
    let (_, b, _) = try runTrainer([:], steps: 4)
    XCTAssertEqual(stripTiming(a), stripTiming(b))
    let (_, c, _) = try runTrainer(["seed": "2"], steps: 4)
    XCTAssertNotEqual(stripTiming(a), stripTiming(c))
  }

  func testNaNObjectiveStopsNamingThePluginAndKeepsTheCheckpoint() throws {
    let nan = try TestSupport.fixture("nan_output.c")
    let dir = TestSupport.tempDir("keel-nan")
    _ = try runTrainer([:], steps: 5, dir: dir)  // a good checkpoint at step 5
    XCTAssertThrowsError(try runTrainer(["objective.name": nan], steps: 10, dir: dir, resume: true)) { error in
      XCTAssertTrue("\(error)".contains("fixture-nan"), "\(error)")
      XCTAssertTrue("\(error)".contains(nan), "\(error)")
    }
    let run = try RunDirectory(path: dir, create: false)
    XCTAssertTrue(run.latestCheckpoint!.hasSuffix("step-000005"))
    // …or, configured to skip, the run goes on without applying those updates.
    let (_, rows, _) = try runTrainer(["objective.name": nan, "train.on_nan": "skip", "train.micro_batch": "4"], steps: 2)
    XCTAssertEqual(rows.last?["updates_applied"] as? Double, 0)
    // the skip stops the update at its first micro-batch; the step's π_old metrics still cover
    // every response (the responses the update did not reach get a π_old pass of their own):
    // equal to a normal run's at step 1 (same weights, same samples)
    let (_, good, _) = try runTrainer(["train.micro_batch": "4"], steps: 1)
    let skipped = try XCTUnwrap(rows.first { $0["step"] as? Int == 1 && $0["mismatch_kl"] != nil })
    let normal = try XCTUnwrap(good.first { $0["step"] as? Int == 1 && $0["mismatch_kl"] != nil })
    for key in ["mismatch_kl", "mismatch_kl_k3", "entropy", "response_length"] {
      XCTAssertEqual(skipped[key] as? Double, normal[key] as? Double, key)
    }
  }

  func testMismatchKLByPrecision() throws {
    func meanK3(_ precision: String) throws -> (Double, [Double]) {
      let (_, rows, _) = try runTrainer(["sampler.precision": precision], steps: 3)
      let k3 = rows.compactMap { $0["mismatch_kl_k3"] as? Double }
      return (k3.reduce(0, +) / Double(k3.count), rows.compactMap { $0["mismatch_kl"] as? Double })
    }
    let (fp32, _) = try meanK3("fp32")
    XCTAssertLessThan(fp32, 1e-6)
    let (bf16, _) = try meanK3("bf16")
    XCTAssertGreaterThan(bf16, 1e-5)
    let (exact, k1) = try meanK3("exact")
    XCTAssertEqual(exact, 0)
    XCTAssertEqual(k1, k1.map { _ in 0 }, "exact mode: mismatch_kl is exactly 0.0 at every step")
  }

  func testMinibatchesKeepGroupsAndCoverEveryResponseOnce() throws {
    let responses = (0..<24).map { i in
      Response(group: i % 8, prompt: [1], tokens: [3, 4], logpRollout: [-1, -1], samplerRouting: [], truncated: false, text: "")
    }
    let buffer = RolloutBuffer(responses: responses, groups: 8)
    // each mini-batch's responses, as the trainer takes them (Trainer+Update.swift)
    func minibatches(_ n: Int, step: Int) -> [[Int]] {
      let members = buffer.membersByGroup()
      return buffer.minibatchGroups(n, seed: 1, step: step).map { $0.flatMap { members[$0] } }
    }
    for n in [1, 2, 4] {
      let mbs = minibatches(n, step: 3)
      XCTAssertEqual(mbs.count, n)
      XCTAssertEqual(mbs.flatMap { $0 }.sorted(), Array(0..<24), "every response exactly once")
      for mb in mbs {
        let groups = Set(mb.map { responses[$0].group })
        XCTAssertEqual(mb.count, groups.count * 3, "whole groups only")
      }
      XCTAssertEqual(mbs, minibatches(n, step: 3), "seeded order")
    }
    XCTAssertNotEqual(minibatches(4, step: 3), minibatches(4, step: 4))
  }

  func testUnknownConfigKeyNamesTheNearest() throws {
    XCTAssertThrowsError(try ConfigSchema.resolve(file: [:], overrides: ["train.lrr": "1"])) {
      XCTAssertTrue("\($0)".contains("unknown config key 'train.lrr'; did you mean 'train.lr'"), "\($0)")
      // and lists its section's valid keys: every train.* key of the schema, no other
      let listed = "\($0)".components(separatedBy: "Valid keys in 'train': ").last!.components(separatedBy: " (").first!
      XCTAssertEqual(listed.components(separatedBy: ", "), ConfigSchema.keys.map(\.key).filter { $0.hasPrefix("train.") }, "\($0)")
    }
    XCTAssertThrowsError(try ConfigSchema.resolve(file: [:], overrides: ["train.steps": "10"])) {
      XCTAssertTrue("\($0)".contains("did you mean 'steps'?"), "a top-level key with the same name is suggested: \($0)")
    }
    XCTAssertThrowsError(try ConfigSchema.resolve(file: [:], overrides: ["bogus.x": "1"])) {
      XCTAssertTrue("\($0)".contains("Valid sections and keys: ") && "\($0)".contains("train.*") && "\($0)".contains("steps"), "\($0)")
    }
    XCTAssertThrowsError(try ConfigSchema.resolve(file: [:], overrides: ["sampler.precision": "fp64"])) {
      XCTAssertTrue("\($0)".contains("'sampler.precision' expects string (fp32 | bf16 | fp16 | fp8 | exact)"), "\($0)")
    }
    XCTAssertThrowsError(try ConfigSchema.resolve(file: try ConfigSchema.flatten(yaml: "rollout:\n  prompt: 4\n", source: "x.yaml"), overrides: [:])) {
      XCTAssertTrue("\($0)".contains("'rollout.prompts'"), "\($0)")
    }
    // plugin parameters are checked by the plugin's own schema when the run starts
    XCTAssertThrowsError(try runTrainer(["objective.params.eps_hi": "0.3"], steps: 1)) {
      XCTAssertTrue("\($0)".contains("did you mean 'eps_high'"), "\($0)")
    }
  }
}

final class RoutingReplayTests: XCTestCase {
  /// Sampler (fp8, so its experts differ from the trainer's) → buffer → R2/R3 records.
  func testR2AndR3ReplayTheRightExperts() throws {
    var c = try ModelPreset.config("tiny", vocab: 64)
    c.numExperts = 8
    let store = ParameterStore(config: c, seed: 4, scale: 0.3)
    let policy = Policy(store: store, precision: .fp8, threads: 2)
    let reqs = (0..<16).map { SampleRequest(prompt: [1, Int32(5 + $0 % 7), 9, 12], promptIndex: $0 / 4, sampleIndex: $0 % 4) }
    let samples = policy.sampler.generate(reqs, params: SamplingParams(maxTokens: 10), seed: 1, step: 1)
    let k = c.numExpertsPerTok
    var buffer = RolloutBuffer(responses: zip(reqs, samples).map { r, s in
      Response(group: r.promptIndex, prompt: r.prompt, tokens: s.tokens, logpRollout: s.logp,
               samplerRouting: s.routing.map { $0 + (0..<Int32(k)) }, truncated: s.truncated, text: "")
    }, groups: 4)
    let all = Array(buffer.responses.indices)
    let batch = buffer.sequenceBatch(all)
    let natural = policy.engine.forward(batch)  // the π_old pass, natural routing
    var offset = 0
    for i in all {
      let len = batch.length(i)
      buffer.responses[i].oldRouting = natural.routing.experts.map { Array($0[(offset * k)..<((offset + len) * k)]) }
      offset += len
    }
    let samplerRecord = buffer.routing(all, sampler: true)!, oldRecord = buffer.routing(all, sampler: false)!
    XCTAssertEqual(oldRecord, natural.routing)
    // the case that matters: the engines chose differently somewhere
    let differing = zip(samplerRecord.experts.flatMap { $0 }, oldRecord.experts.flatMap { $0 }).filter { $0 != $1 }.count
    XCTAssertGreaterThan(differing, 0, "fp8 sampling should flip some experts")
    // R3: the experts used are the sampler's; R2: the π_old pass's
    let r3 = policy.engine.forward(batch, routing: .replay(samplerRecord))
    XCTAssertEqual(r3.routing, samplerRecord)
    XCTAssertNotEqual(r3.logp, natural.logp)
    let r2 = policy.engine.forward(batch, routing: .replay(oldRecord))
    XCTAssertEqual(r2.routing, oldRecord)
    // R2 on-policy, first mini-batch (θ = θ_old): changes nothing
    XCTAssertEqual(r2.logp, natural.logp)
  }
}

final class ConfigDocTests: XCTestCase {
  /// docs/config.md is generated from the schema; this keeps it true (regenerate it when a key changes).
  func testConfigReferenceListsEveryKeyWithItsDefault() throws {
    let doc = try String(contentsOfFile: TestSupport.root + "/docs/config.md", encoding: .utf8)
    for k in ConfigSchema.keys {
      XCTAssertTrue(doc.contains("| `\(k.key)` | \(ConfigSchema.typeDescription(k)) | `\(k.defaultValue)` |"), "docs/config.md: \(k.key) missing, or its type, bounds or default (\(k.defaultValue)) changed: bash scripts/gen-config-doc.sh")
    }
  }
}

final class RewardMarkerTests: XCTestCase {
  /// On a task whose answer follows a marker (scratchpad: "…#80"), exact-match receives the
  /// marker, so a right scratchpad scores 1; an explicit reward.params.marker wins.
  func testTheTaskMarkerReachesTheRewardPlugin() throws {
    setenv("KEEL_PLUGIN_PATH", TestSupport.binDir, 1)
    let config = try RunConfig.resolve(file: [:], overrides: ["task.name": "scratchpad"])
    let plugins = try PluginSet(config: config, discovery: .standard(), answerMarker: "#", logger: KeelLog.silent)
    XCTAssertTrue(plugins.reward.parameters.contains { $0.0.name == "marker" && $0.1 == .string("#") })
    let scored = try plugins.score([RewardSample(prompt: "17+25+38=", response: "17+25=42;42+38=80#80", reference: "80"),
                                    RewardSample(prompt: "17+25+38=", response: "17+25=42;42+38=81#81", reference: "80")])
    XCTAssertEqual(scored.total, [1, 0])
    let explicit = try RunConfig.resolve(file: [:], overrides: ["reward.params.marker": "="])
    let p2 = try PluginSet(config: explicit, discovery: .standard(), answerMarker: "#", logger: KeelLog.silent)
    XCTAssertTrue(p2.reward.parameters.contains { $0.0.name == "marker" && $0.1 == .string("=") })
  }
}

final class WeightDecayTests: XCTestCase {
  /// train.weight_decay reaches AdamW: one step from the same weights on the same rollouts, with
  /// decay wd and without, differ by exactly the decoupled term −lr·wd·θ₀ (PyTorch's AdamW:
  /// θ ← θ·(1 − lr·wd) − step), element by element.
  func testWeightDecayIsAdamWsDecoupledDecay() throws {
    setenv("KEEL_CACHE", NSTemporaryDirectory() + "keel-test-cache", 1)
    setenv("KEEL_PLUGIN_PATH", TestSupport.binDir, 1)
    let lr = 1e-3, wd = 0.1
    func oneStep(_ decay: Double) throws -> (after: [Float], before: [Float]) {
      let path = TestSupport.tempDir("keel-wd")
      let config = try ConfigSchema.resolve(file: [:], overrides: ["preset": "test", "steps": "1", "train.lr": "\(lr)", "train.weight_decay": "\(decay)"])
      let run = try RunDirectory(path: path, create: true)
      let trainer = try Trainer(config: config, run: run, quiet: true, logger: KeelLog.silent)
      try trainer.prepare(resumeFrom: nil)
      let before = Array(UnsafeBufferPointer(start: trainer.policy.store.values.p, count: trainer.policy.store.layout.count))
      _ = try trainer.train(steps: 1)
      return (Array(UnsafeBufferPointer(start: trainer.policy.store.values.p, count: trainer.policy.store.layout.count)), before)
    }
    let plain = try oneStep(0), decayed = try oneStep(wd)
    XCTAssertEqual(plain.before, decayed.before)
    var worst = 0.0, moved = 0
    for i in plain.before.indices {
      let want = -lr * wd * Double(plain.before[i])
      let got = Double(decayed.after[i]) - Double(plain.after[i])
      worst = max(worst, abs(got - want) / (abs(want) + 1e-6))
      if plain.after[i] != decayed.after[i] { moved += 1 }
    }
    XCTAssertLessThan(worst, 0.05, "decayed − plain = −lr·wd·θ₀ within float rounding of θ·(1 − lr·wd)")
    XCTAssertGreaterThan(moved, plain.before.count / 2)
  }
}
