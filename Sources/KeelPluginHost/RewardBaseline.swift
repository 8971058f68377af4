// RewardBaseline.swift — calling reward plugins (samples → one float each, plus named
// components) and baseline plugins (rewards, groups, lengths → one advantage per response).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import KeelABI

/// One response to score.
public struct RewardSample: Sendable, Equatable {
  public var prompt: String
  public var response: String
  public var responseIds: [Int32]
  public var reference: String
  public var task: String
  public var extraJSON: String
  public var truncated: Bool
  public init(prompt: String, response: String, responseIds: [Int32] = [], reference: String,
              task: String = "", extraJSON: String = "{}", truncated: Bool = false) {
    self.prompt = prompt
    self.response = response
    self.responseIds = responseIds
    self.reference = reference
    self.task = task
    self.extraJSON = extraJSON
    self.truncated = truncated
  }
}

public struct RewardResult: Sendable {
  public var rewards: [Float]
  /// components[i][c]: sample i, component c (declaration order).
  public var components: [[Double]]
}

public final class RewardInstance: PluginInstance, @unchecked Sendable {
  public init(library: PluginLibrary, settings: [String: ParameterValue] = [:],
              logSink: (@Sendable (String, PluginLogLine) -> Void)? = nil) throws {
    try super.init(library: library, settings: settings, expecting: .reward, logSink: logSink)
  }

  public var rewardName: String { library.name }
  public var componentNames: [String] { library.scalars.map(\.name) }

  public func score(_ samples: [RewardSample]) throws -> RewardResult {
    let vtable = library.table.vtable.assumingMemoryBound(to: keel_reward_vtable.self).pointee
    let nc = Int(vtable.component_count)
    var rewards = [Float](repeating: .nan, count: samples.count)
    var components = [Double](repeating: 0, count: samples.count * nc)
    // C copies of the strings, alive for the call.
    var cstrings: [UnsafeMutablePointer<CChar>] = []
    defer { cstrings.forEach { free($0) } }
    func c(_ s: String) -> UnsafePointer<CChar> { let p = strdup(s)!; cstrings.append(p); return UnsafePointer(p) }
    let ids = samples.map { $0.responseIds }
    var cs = [keel_reward_sample]()
    cs.reserveCapacity(samples.count)
    let idBuffers = ids.map { arr -> UnsafeMutablePointer<Int32> in
      let p = UnsafeMutablePointer<Int32>.allocate(capacity: max(arr.count, 1))
      p.initialize(from: arr, count: arr.count)
      return p
    }
    defer { idBuffers.forEach { $0.deallocate() } }
    for (i, s) in samples.enumerated() {
      var x = keel_reward_sample()
      x.struct_size = UInt32(MemoryLayout<keel_reward_sample>.size)
      x.prompt = c(s.prompt)
      x.response = c(s.response)
      x.response_ids = UnsafePointer(idBuffers[i])
      x.response_len = Int64(s.responseIds.count)
      x.reference = c(s.reference)
      x.task = c(s.task)
      x.extra_json = c(s.extraJSON)
      x.truncated = s.truncated ? 1 : 0
      cs.append(x)
    }
    try call("reward.compute") {
      cs.withUnsafeBufferPointer { sp in
      rewards.withUnsafeMutableBufferPointer { rp in
      components.withUnsafeMutableBufferPointer { cp in
        var b = keel_reward_batch()
        b.struct_size = UInt32(MemoryLayout<keel_reward_batch>.size)
        b.count = Int64(samples.count)
        b.samples = sp.baseAddress
        var out = keel_reward_output()
        out.struct_size = UInt32(MemoryLayout<keel_reward_output>.size)
        out.component_count = UInt32(nc)
        out.rewards = rp.baseAddress
        out.components = nc > 0 ? cp.baseAddress : nil
        return vtable.compute(handle, &b, &out)
      }}}
    }
    if let bad = rewards.firstIndex(where: { !$0.isFinite }) {
      throw PluginError.nonFinite(path: library.path, name: library.name, what: "reward for sample \(bad) (\(rewards[bad]))")
    }
    let rows = (0..<samples.count).map { i in Array(components[(i * nc)..<((i + 1) * nc)]) }
    return RewardResult(rewards: rewards, components: rows)
  }
}

public final class BaselineInstance: PluginInstance, @unchecked Sendable {
  public init(library: PluginLibrary, settings: [String: ParameterValue] = [:],
              logSink: (@Sendable (String, PluginLogLine) -> Void)? = nil) throws {
    try super.init(library: library, settings: settings, expecting: .baseline, logSink: logSink)
  }

  /// Advantages per response. `checkFinite` false lets a checker see NaN outputs.
  public func advantages(rewards: [Float], groupIds: [Int64], lengths: [Int64], checkFinite: Bool = true) throws -> [Float] {
    guard rewards.count == groupIds.count, rewards.count == lengths.count else {
      throw PluginError.invalidInput("baseline batch: \(rewards.count) rewards, \(groupIds.count) group ids, \(lengths.count) lengths (must be equal)")
    }
    let vtable = library.table.vtable.assumingMemoryBound(to: keel_baseline_vtable.self).pointee
    var adv = [Float](repeating: .nan, count: rewards.count)
    try call("baseline.compute") {
      rewards.withUnsafeBufferPointer { r in
      groupIds.withUnsafeBufferPointer { g in
      lengths.withUnsafeBufferPointer { l in
      adv.withUnsafeMutableBufferPointer { a in
        var b = keel_baseline_batch()
        b.struct_size = UInt32(MemoryLayout<keel_baseline_batch>.size)
        b.count = Int64(rewards.count)
        b.rewards = r.baseAddress
        b.group_ids = g.baseAddress
        b.lengths = l.baseAddress
        var out = keel_baseline_output()
        out.struct_size = UInt32(MemoryLayout<keel_baseline_output>.size)
        out.advantages = a.baseAddress
        return vtable.compute(handle, &b, &out)
      }}}}
    }
    if checkFinite, let bad = adv.firstIndex(where: { !$0.isFinite }) {
      throw PluginError.nonFinite(path: library.path, name: library.name, what: "advantage for response \(bad) (\(adv[bad]))")
    }
    return adv
  }
}
