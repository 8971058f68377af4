// Objective.swift — calling an objective plugin: a packed batch of response tokens in, the
// loss, ∂loss/∂logp per token and the declared metrics out. The host validates the batch's
// shape before the call and checks that loss and gradient are finite after it.

import KeelABI

/// A packed batch of responses, as the ABI's keel_objective_batch describes it.
public struct ObjectiveBatch: Sendable {
  public var seqOffsets: [Int64]
  public var groupIds: [Int64]
  public var mask: [UInt8]
  public var advantages: [Float]
  public var logp: [Float]
  /// Constants (IS weights, masks, clip decisions) come from here; nil = equal to `logp`.
  public var logpFrozen: [Float]?
  public var logpOld: [Float]
  public var logpRollout: [Float]
  public var logpRef: [Float]?
  /// Responses and unmasked tokens of the whole optimizer-step batch (the normalisers).
  public var totalSequences: Double
  public var totalTokens: Double
  public var maxResponseTokens: Int64

  public init(seqOffsets: [Int64], groupIds: [Int64], mask: [UInt8], advantages: [Float], logp: [Float],
              logpFrozen: [Float]? = nil, logpOld: [Float], logpRollout: [Float], logpRef: [Float]? = nil,
              totalSequences: Double? = nil, totalTokens: Double? = nil, maxResponseTokens: Int64 = 0) {
    self.seqOffsets = seqOffsets
    self.groupIds = groupIds
    self.mask = mask
    self.advantages = advantages
    self.logp = logp
    self.logpFrozen = logpFrozen
    self.logpOld = logpOld
    self.logpRollout = logpRollout
    self.logpRef = logpRef
    self.totalSequences = totalSequences ?? Double(max(seqOffsets.count - 1, 0))
    self.totalTokens = totalTokens ?? Double(mask.reduce(0) { $0 + Int($1) })
    self.maxResponseTokens = maxResponseTokens
  }

  public var numSequences: Int { max(seqOffsets.count - 1, 0) }
  public var numTokens: Int { mask.count }

  /// Responses with per-response token lists, for tests and hand-written batches.
  public init(responses: [(group: Int64, advantage: Float, logp: [Float], logpOld: [Float], logpRollout: [Float], mask: [UInt8])],
              logpRef: [[Float]]? = nil) {
    var offsets: [Int64] = [0]
    var b = ObjectiveBatch(seqOffsets: [0], groupIds: [], mask: [], advantages: [], logp: [], logpOld: [], logpRollout: [])
    for r in responses {
      offsets.append(offsets.last! + Int64(r.logp.count))
      b.groupIds.append(r.group)
      b.mask += r.mask
      b.advantages += Array(repeating: r.advantage, count: r.logp.count)
      b.logp += r.logp
      b.logpOld += r.logpOld
      b.logpRollout += r.logpRollout
    }
    b.seqOffsets = offsets
    b.logpRef = logpRef.map { $0.flatMap { $0 } }
    b.totalSequences = Double(responses.count)
    b.totalTokens = Double(b.mask.reduce(0) { $0 + Int($1) })
    self = b
  }

  /// Structural checks the host makes before every call (lengths, offsets).
  public func validate() throws {
    func bad(_ m: String) -> PluginError { .invalidInput("invalid objective batch: \(m)") }
    let n = numTokens
    guard let first = seqOffsets.first, first == 0 else { throw bad("seq_offsets must start at 0") }
    guard seqOffsets.last.map(Int.init) == n else { throw bad("seq_offsets ends at \(seqOffsets.last ?? 0) but there are \(n) tokens") }
    for i in 1..<seqOffsets.count where seqOffsets[i] < seqOffsets[i - 1] {
      throw bad("seq_offsets decreases at response \(i - 1)")
    }
    guard groupIds.count == numSequences else { throw bad("group_ids has \(groupIds.count) entries for \(numSequences) responses") }
    for (name, count) in [("advantages", advantages.count), ("logp", logp.count), ("logp_old", logpOld.count),
                          ("logp_rollout", logpRollout.count), ("logp_frozen", logpFrozen?.count ?? n),
                          ("logp_ref", logpRef?.count ?? n)] where count != n {
      throw bad("\(name) has \(count) entries for \(n) tokens")
    }
    guard totalSequences >= Double(numSequences), totalTokens >= 0 else {
      throw bad("total_sequences (\(totalSequences)) must be at least the call's \(numSequences) responses")
    }
  }
}

public struct ObjectiveResult: Sendable {
  public var loss: Double
  public var gradLogp: [Float]
  /// Declared metrics in declaration order.
  public var metrics: [Double]
}

public final class ObjectiveInstance: PluginInstance, @unchecked Sendable {
  public init(library: PluginLibrary, settings: [String: ParameterValue] = [:],
              logSink: (@Sendable (String, PluginLogLine) -> Void)? = nil) throws {
    try super.init(library: library, settings: settings, expecting: .objective, logSink: logSink)
  }

  public var metricNames: [String] { library.scalars.map(\.name) }
  public var usesReference: Bool { library.objectiveFlags & KEEL_OBJECTIVE_USES_REF != 0 }

  /// One call. `checkFinite` false lets a checker see NaN outputs instead of an error.
  public func compute(_ batch: ObjectiveBatch, checkFinite: Bool = true) throws -> ObjectiveResult {
    try batch.validate()
    if usesReference && batch.logpRef == nil {
      throw PluginError.invalidInput("objective '\(library.name)' (\(library.path)) needs logp_ref: set train.kl_ref to a reference policy")
    }
    let vtable = library.descriptor.pointee.vtable.assumingMemoryBound(to: keel_objective_vtable.self).pointee
    var result = ObjectiveResult(loss: 0, gradLogp: [Float](repeating: 0, count: batch.numTokens),
                                 metrics: [Double](repeating: 0, count: Int(vtable.metric_count)))
    try call("objective.compute") {
      batch.seqOffsets.withUnsafeBufferPointer { offsets in
      batch.groupIds.withUnsafeBufferPointer { groups in
      batch.mask.withUnsafeBufferPointer { mask in
      batch.advantages.withUnsafeBufferPointer { adv in
      batch.logp.withUnsafeBufferPointer { logp in
      batch.logpOld.withUnsafeBufferPointer { old in
      batch.logpRollout.withUnsafeBufferPointer { rollout in
      withOptionalBuffer(batch.logpFrozen) { frozen in
      withOptionalBuffer(batch.logpRef) { ref in
      result.gradLogp.withUnsafeMutableBufferPointer { grad in
      result.metrics.withUnsafeMutableBufferPointer { metrics in
        var b = keel_objective_batch()
        b.struct_size = UInt32(MemoryLayout<keel_objective_batch>.size)
        b.num_sequences = Int64(batch.numSequences)
        b.num_tokens = Int64(batch.numTokens)
        b.seq_offsets = offsets.baseAddress
        b.group_ids = groups.baseAddress
        b.mask = mask.baseAddress
        b.advantages = adv.baseAddress
        b.logp = logp.baseAddress
        b.logp_frozen = frozen
        b.logp_old = old.baseAddress
        b.logp_rollout = rollout.baseAddress
        b.logp_ref = ref
        b.total_sequences = batch.totalSequences
        b.total_tokens = batch.totalTokens
        b.max_response_tokens = batch.maxResponseTokens
        var out = keel_objective_output()
        out.struct_size = UInt32(MemoryLayout<keel_objective_output>.size)
        out.metric_count = vtable.metric_count
        out.grad_logp = grad.baseAddress
        out.metrics = metrics.baseAddress
        let status = vtable.compute(handle, &b, &out)
        result.loss = out.loss
        return status
      }}}}}}}}}}}
    }
    if checkFinite {
      guard result.loss.isFinite else { throw PluginError.nonFinite(path: library.path, name: library.name, what: "loss (\(result.loss))") }
      if let bad = result.gradLogp.firstIndex(where: { !$0.isFinite }) {
        throw PluginError.nonFinite(path: library.path, name: library.name, what: "gradient ∂loss/∂logp at token \(bad) (\(result.gradLogp[bad]))")
      }
      if let bad = result.gradLogp.indices.first(where: { batch.mask[$0] == 0 && result.gradLogp[$0] != 0 }) {
        throw PluginError.callFailed(path: library.path, name: library.name, function: "objective.compute", status: KEEL_ERR_INTERNAL,
                                     message: "host check: masked token \(bad) got gradient \(result.gradLogp[bad]) (must be 0)")
      }
    }
    return result
  }
}

/// Pass an optional array as a nullable C pointer.
func withOptionalBuffer<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) -> R) -> R {
  guard let array else { return body(nil) }
  return array.withUnsafeBufferPointer { body($0.baseAddress) }
}
