// Grader.swift — the one definition of "correct". Held-out evaluation, the training
// `accuracy` metric and the cold start's validation all ask the same reward plugin (default
// `exact-match`, the built-in reward, with the dataset's answer marker) and count a response
// correct when its reward is ≥ `threshold` (default 1: exact-match's "equal"). So a response
// that earns reward 1 is never scored wrong in evaluation, and the rules (which marker, how
// whitespace, trailing '.', leading zeros and signs compare) live in one place: the plugin
// (Plugins/common/answer.h, Plugins/exact-match/exact_match.c).
import Foundation
import KeelPluginHost
import KeelTasks

public final class Grader: @unchecked Sendable {
  public let instance: RewardInstance
  public let threshold: Float
  public let marker: String
  /// The plugin's name and path (for the report and errors).
  public var describe: String { "\(instance.library.name) (\(instance.library.path)), correct when reward ≥ \(threshold)" }

  /// `reward`: a reward plugin's name or path. `marker` is passed as the plugin's `marker`
  /// parameter when it declares one (and `params` does not set it).
  public init(reward: String = "exact-match", marker: String, threshold: Double = 1, params: [String: String] = [:],
              discovery: PluginDiscovery = .standard()) throws {
    let lib = try discovery.resolve(reward, kind: .reward)
    var text = params
    if text["marker"] == nil, lib.parameters.contains(where: { $0.name == "marker" && $0.type == .string }) {
      text["marker"] = marker
    }
    instance = try RewardInstance(library: lib, settings: try lib.parseParameters(text))
    self.threshold = Float(threshold)
    self.marker = text["marker"] ?? marker
  }

  /// Whether each response is correct for its problem (`responses[i]` answers `problems[i]`).
  public func correct(_ responses: [String], _ problems: [Problem]) throws -> [Bool] {
    precondition(responses.count == problems.count)
    guard !responses.isEmpty else { return [] }
    let samples = zip(responses, problems).map { r, p in
      RewardSample(prompt: p.prompt, response: r, reference: p.answer, task: p.task, extraJSON: p.extraJSON)
    }
    return try instance.score(samples).rewards.map { $0 >= threshold }
  }

  public func correct(_ response: String, _ problem: Problem) throws -> Bool { try correct([response], [problem])[0] }
}
