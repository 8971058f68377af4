// PluginSet.swift — a run's plugins: one objective, one baseline, the reward plugin (plus an
// optional libffi foreign reward), each resolved by name or path and created with the
// run's parameters (validated against the plugin's declared schema). Combining rewards is
// the host's job: total = Σ weight · reward, and each reward is logged as reward/<name>.
import Foundation
import KeelModel
import KeelPluginHost
import Logging

public final class PluginSet {
  public let objective: ObjectiveInstance
  public let reward: RewardInstance
  public let rewardWeight: Float
  public let foreign: ForeignReward?
  public let foreignWeight: Float
  public let baseline: BaselineInstance

  /// `answerMarker`: the task's final-answer marker ("#" for scratchpad). A reward plugin that
  /// declares a string parameter `marker` gets it unless the config sets one.
  public init(config: RunConfig, discovery: PluginDiscovery, answerMarker: String = "", logger: Logger = Logger(label: "keel.plugins")) throws {
    func make<T>(_ kind: String, _ pluginKind: PluginKind, _ build: (PluginLibrary, [String: ParameterValue]) throws -> T) throws -> T {
      let lib = try discovery.resolve(config.pluginName(kind), kind: pluginKind)
      var text = config.params[kind] ?? [:]
      if kind == "reward", !answerMarker.isEmpty, text["marker"] == nil,
         lib.parameters.contains(where: { $0.name == "marker" && $0.type == .string }) {
        text["marker"] = answerMarker
      }
      let settings = try lib.parseParameters(text)
      return try build(lib, settings)
    }
    // a plugin's log lines at their own level (KEEL_LOG_DEBUG … KEEL_LOG_ERROR): DEBUG hidden unless asked
    let sink: @Sendable (String, PluginLogLine) -> Void = { name, line in
      let level: Logger.Level = [0: .debug, 1: .info, 2: .warning, 3: .error][line.level] ?? .info
      logger.log(level: level, "[\(name)] \(line.message)")
    }
    objective = try make("objective", .objective) { try ObjectiveInstance(library: $0, settings: $1, logSink: sink) }
    reward = try make("reward", .reward) { try RewardInstance(library: $0, settings: $1, logSink: sink) }
    baseline = try make("baseline", .baseline) { try BaselineInstance(library: $0, settings: $1, logSink: sink) }
    rewardWeight = Float(config.reward.weight)
    if let lib = config.reward.foreign.library {
      guard let symbol = config.reward.foreign.symbol, let sig = config.reward.foreign.signature else {
        throw TrainerError(message: "reward.foreign.library is set: reward.foreign.symbol and reward.foreign.signature are required too")
      }
      foreign = try ForeignReward(library: lib, symbol: symbol, signature: sig)
      foreignWeight = Float(config.reward.foreign.weight)
    } else {
      foreign = nil
      foreignWeight = 0
    }
  }

  public var all: [(role: String, instance: PluginInstance)] {
    [("objective", objective), ("reward", reward), ("baseline", baseline)]
  }

  /// reward/<name> components logged per step: each reward's value, and each plugin component.
  public var componentNames: [String] {
    [reward.rewardName] + reward.componentNames.map { reward.rewardName + "/" + $0 } + (foreign.map { [$0.rewardName] } ?? [])
  }

  /// How each of `componentNames` aggregates over a step's samples: the rewards themselves by
  /// their mean over samples, each declared component by its declared reduction.
  public var componentReductions: [ScalarDeclaration.Reduction] {
    [.sequenceMean] + reward.library.scalars.map(\.reduction) + (foreign.map { _ in [.sequenceMean] } ?? [])
  }

  public func score(_ samples: [RewardSample]) throws -> (total: [Float], components: [String: [Float]]) {
    let r = try reward.score(samples)
    var total = r.rewards.map { $0 * rewardWeight }
    var components: [String: [Float]] = [reward.rewardName: r.rewards]
    for (j, name) in reward.componentNames.enumerated() { components[reward.rewardName + "/" + name] = r.components.map { Float($0[j]) } }
    if let foreign {
      let f = try foreign.score(samples)
      for i in total.indices { total[i] += foreignWeight * f.rewards[i] }
      components[foreign.rewardName] = f.rewards
    }
    return (total, components)
  }

  public func saveStates(directory: String) throws {
    for (role, p) in all {
      let blob = try p.saveState()
      if !blob.isEmpty { try writeAtomically(Data(blob), to: directory + "/plugin-\(role).state") }
    }
  }

  public func loadStates(directory: String) throws {
    for (role, p) in all where p.library.hasState {
      let path = directory + "/plugin-\(role).state"
      guard let data = FileManager.default.contents(atPath: path) else {
        throw TrainerError(message: "checkpoint \(directory) lacks \(role) plugin '\(p.library.name)' state (\(path))")
      }
      try p.loadState([UInt8](data))
    }
  }
}
