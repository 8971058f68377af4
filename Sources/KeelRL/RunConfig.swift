// RunConfig.swift — the typed configuration of a run: a ResolvedConfig (ConfigSchema: every
// key's type, default, bounds and doc; validation) decoded once into sections with enums.
// This file is the only place that reads a key by its name: the string lookups below are
// fileprivate, so the trainer, the CLI and the rest read `config.train.lr`, never "train.lr".
// Every schema key is read here exactly once (RunConfig.consumedKeys; a test holds it to the
// schema), and the cross-key rules that need the model or the ranks live in Trainer.validate.
import Foundation
import KeelModel

public enum RoutingReplay: String, Sendable, Equatable { case none, r2 = "R2", r3 = "R3" }
public enum OnNaN: String, Sendable { case stop, skip }
public enum LRSchedule: String, Sendable { case constant, cosine }

public struct RunConfig: Sendable, Equatable {
  public struct Task: Sendable, Equatable {
    public var name: String, digits: Int, terms: Int, evalSize: Int, evalPath: String?
    public var promptField: String, answerField: String, marker: String?
    /// A JSONL file rather than a built-in task.
    public var isJSONL: Bool { name.hasSuffix(".jsonl") }
  }
  public struct Model: Sendable, Equatable { public var preset: String, checkpoint: String? }
  public struct ColdStart: Sendable, Equatable {
    public var checkpoint: String, teacher: String, targetAccuracy: Double, maxSteps: Int, lr: Double, checkEvery: Int, batch: Int
  }
  public struct Sampler: Sendable, Equatable {
    public var precision: SamplerPrecision, temperature: Double, topP: Double, topK: Int, maxTokens: Int
  }
  public struct Rollout: Sendable, Equatable { public var prompts: Int, groupSize: Int }
  public struct Train: Sendable, Equatable {
    public var minibatches: Int, lr: Double, schedule: LRSchedule, warmupSteps: Int, weightDecay: Double, gradClip: Double
    public var routingReplay: RoutingReplay, klRef: Bool, microBatch: Int, auxLossCoef: Double, threads: Int, onNaN: OnNaN
    public var teacher: String?
  }
  public struct Foreign: Sendable, Equatable { public var library: String?, symbol: String?, signature: String?, weight: Double }
  public struct Reward: Sendable, Equatable { public var name: String, weight: Double, foreign: Foreign }
  public struct Eval: Sendable, Equatable { public var every: Int, samples: Int, reward: String, threshold: Double }
  public struct Log: Sendable, Equatable { public var rollouts: Bool, tensorboard: Bool }
  public struct Diagnostics: Sendable, Equatable { public var enabled: Bool, threshold: Double }
  public struct Distributed: Sendable, Equatable { public var timeout: Double, checkEvery: Int }

  public var seed: UInt64, steps: Int, preset: String
  public var task: Task, model: Model, coldStart: ColdStart, sampler: Sampler, rollout: Rollout, train: Train
  /// Plugin names; their parameters are `params` (validated by each plugin's declared schema).
  public var objective: String, reward: Reward, baseline: String
  public var eval: Eval, checkpointEvery: Int, log: Log, diagnostics: Diagnostics
  public var pluginTimeout: Double, distributed: Distributed
  /// objective.params / reward.params / baseline.params, by plugin kind.
  public var params: [String: [String: String]]

  /// Decode a resolved (validated, complete) configuration.
  public init(_ c: ResolvedConfig) {
    var read = Set<String>()
    self.init(c, reading: &read)
  }

  /// Resolve (ConfigSchema.resolve: defaults ← preset ← file ← overrides, validated) and decode.
  public static func resolve(file: [String: String], overrides: [String: String]) throws -> RunConfig {
    RunConfig(try ConfigSchema.resolve(file: file, overrides: overrides))
  }

  /// The schema keys `init` reads: every one of them (ConfigKeysTests).
  public static func consumedKeys(_ c: ResolvedConfig) -> Set<String> {
    var read = Set<String>()
    _ = RunConfig(c, reading: &read)
    return read
  }

  private init(_ c: ResolvedConfig, reading read: inout Set<String>) {
    let r = Reader(c)
    seed = UInt64(r.int("seed")); steps = r.int("steps"); preset = r.string("preset")
    task = Task(name: r.string("task.name"), digits: r.int("task.digits"), terms: r.int("task.terms"), evalSize: r.int("task.eval_size"),
                evalPath: r.optionalString("task.eval_path"), promptField: r.string("task.prompt_field"),
                answerField: r.string("task.answer_field"), marker: r.optionalString("task.marker"))
    model = Model(preset: r.string("model.preset"), checkpoint: r.optionalString("model.checkpoint"))
    coldStart = ColdStart(checkpoint: r.string("coldstart.checkpoint"), teacher: r.string("coldstart.teacher"),
                          targetAccuracy: r.float("coldstart.target_accuracy"), maxSteps: r.int("coldstart.max_steps"),
                          lr: r.float("coldstart.lr"), checkEvery: r.int("coldstart.check_every"), batch: r.int("coldstart.batch"))
    sampler = Sampler(precision: r.choice("sampler.precision"), temperature: r.float("sampler.temperature"), topP: r.float("sampler.top_p"),
                      topK: r.int("sampler.top_k"), maxTokens: r.int("sampler.max_tokens"))
    rollout = Rollout(prompts: r.int("rollout.prompts"), groupSize: r.int("rollout.group_size"))
    train = Train(minibatches: r.int("train.minibatches"), lr: r.float("train.lr"), schedule: r.choice("train.schedule"),
                  warmupSteps: r.int("train.warmup_steps"), weightDecay: r.float("train.weight_decay"), gradClip: r.float("train.grad_clip"),
                  routingReplay: r.choice("train.routing_replay"), klRef: r.bool("train.kl_ref"), microBatch: r.int("train.micro_batch"),
                  auxLossCoef: r.float("train.aux_loss_coef"), threads: r.int("train.threads"), onNaN: r.choice("train.on_nan"),
                  teacher: r.optionalString("train.teacher"))
    objective = r.string("objective.name")
    reward = Reward(name: r.string("reward.name"), weight: r.float("reward.weight"),
                    foreign: Foreign(library: r.optionalString("reward.foreign.library"), symbol: r.optionalString("reward.foreign.symbol"),
                                     signature: r.optionalString("reward.foreign.signature"), weight: r.float("reward.foreign.weight")))
    baseline = r.string("baseline.name")
    eval = Eval(every: r.int("eval.every"), samples: r.int("eval.samples"), reward: r.string("eval.reward"), threshold: r.float("eval.threshold"))
    checkpointEvery = r.int("checkpoint.every")
    log = Log(rollouts: r.bool("log.rollouts"), tensorboard: r.bool("log.tensorboard"))
    diagnostics = Diagnostics(enabled: r.bool("diagnostics.enabled"), threshold: r.float("diagnostics.threshold"))
    pluginTimeout = r.float("plugins.timeout")
    distributed = Distributed(timeout: r.float("distributed.timeout"), checkEvery: r.int("distributed.check_every"))
    params = c.pluginParams
    read = r.read
  }

  /// A plugin kind's name: "objective" | "reward" | "baseline".
  public func pluginName(_ kind: String) -> String {
    switch kind {
    case "objective": return objective
    case "reward": return reward.name
    default: return baseline
    }
  }
}

/// The typed lookups, by key name: only this file may use them. A ResolvedConfig has every
/// schema key with a value of its declared kind (ConfigSchema.resolve), so a mismatch here is a
/// programming error in the schema, not bad input.
private final class Reader {
  let c: ResolvedConfig
  var read = Set<String>()
  init(_ c: ResolvedConfig) { self.c = c }

  func value(_ k: String) -> ConfigValue {
    read.insert(k)
    guard let v = c.values[k] else { preconditionFailure("config key \(k) is not in the schema") }
    return v
  }
  func int(_ k: String) -> Int { if case .int(let v) = value(k) { return v }; preconditionFailure("\(k) is not an int") }
  func float(_ k: String) -> Double {
    switch value(k) { case .float(let v): return v; case .int(let v): return Double(v); default: preconditionFailure("\(k) is not a float") }
  }
  func bool(_ k: String) -> Bool { if case .bool(let v) = value(k) { return v }; preconditionFailure("\(k) is not a bool") }
  func string(_ k: String) -> String { "\(value(k))" }
  func optionalString(_ k: String) -> String? { if case .string(let s) = value(k) { return s }; return nil }
  /// A string key with declared choices, as its enum (the schema checked the choice).
  func choice<E: RawRepresentable>(_ k: String) -> E where E.RawValue == String {
    guard let e = E(rawValue: string(k)) else { preconditionFailure("\(k): '\(string(k))' is not one of \(E.self)'s cases") }
    return e
  }
}
