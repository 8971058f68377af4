// Objective.swift — calling an objective plugin: a packed batch of response tokens in, the
// loss, ∂loss/∂logp per token and the declared metrics out; with ABI 1.1, the distribution
// terms the instance asked for (entropy, full-vocabulary KL to the reference / teacher, the
// teacher's log-prob, the logits) in and their gradients out. The host validates the batch's
// shape before the call and checks that loss and gradients are finite after it.

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
  /// ABI 1.1 distribution terms, per token (nil = not supplied).
  public var entropy: [Float]? = nil
  public var klRef: [Float]? = nil
  public var logpTeacher: [Float]? = nil
  public var klTeacher: [Float]? = nil
  /// z = logits / T, [numTokens * vocabSize] (nil = not supplied).
  public var logits: [Float]? = nil
  public var vocabSize: Int64 = 0

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
                          ("logp_ref", logpRef?.count ?? n), ("entropy", entropy?.count ?? n), ("kl_ref", klRef?.count ?? n),
                          ("logp_teacher", logpTeacher?.count ?? n), ("kl_teacher", klTeacher?.count ?? n)] where count != n {
      throw bad("\(name) has \(count) entries for \(n) tokens")
    }
    if let logits {
      guard vocabSize > 0, logits.count == n * Int(vocabSize) else {
        throw bad("logits has \(logits.count) entries for \(n) tokens × vocab_size \(vocabSize)")
      }
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
  /// ABI 1.1: ∂loss/∂(term), present exactly when the batch carried the term.
  public var gradEntropy: [Float]? = nil
  public var gradKlRef: [Float]? = nil
  public var gradKlTeacher: [Float]? = nil
  /// ∂loss/∂z (z = logits / T), [numTokens * vocabSize].
  public var gradLogits: [Float]? = nil
}

/// The inputs an objective instance's flags ask for, by name (for messages and checks).
public enum ObjectiveNeed: CaseIterable, Sendable {
  case reference, entropy, referenceKL, teacher, teacherKL, logits
  public var flag: UInt32 {
    switch self {
    case .reference: return UInt32(KEEL_OBJECTIVE_USES_REF)
    case .entropy: return UInt32(KEEL_OBJECTIVE_USES_ENTROPY)
    case .referenceKL: return UInt32(KEEL_OBJECTIVE_USES_REF_KL)
    case .teacher: return UInt32(KEEL_OBJECTIVE_USES_TEACHER)
    case .teacherKL: return UInt32(KEEL_OBJECTIVE_USES_TEACHER_KL)
    case .logits: return UInt32(KEEL_OBJECTIVE_USES_LOGITS)
    }
  }
  /// The batch field and where the host gets it.
  public var field: String {
    switch self {
    case .reference: return "logp_ref (set train.kl_ref to a reference policy)"
    case .entropy: return "entropy"
    case .referenceKL: return "kl_ref (set train.kl_ref to a reference policy)"
    case .teacher: return "logp_teacher (set train.teacher to a teacher checkpoint)"
    case .teacherKL: return "kl_teacher (set train.teacher to a teacher checkpoint)"
    case .logits: return "logits"
    }
  }
  func supplied(by b: ObjectiveBatch) -> Bool {
    switch self {
    case .reference: return b.logpRef != nil
    case .entropy: return b.entropy != nil
    case .referenceKL: return b.klRef != nil
    case .teacher: return b.logpTeacher != nil
    case .teacherKL: return b.klTeacher != nil
    case .logits: return b.logits != nil
    }
  }
}

public final class ObjectiveInstance: PluginInstance, @unchecked Sendable {
  public init(library: PluginLibrary, settings: [String: ParameterValue] = [:],
              logSink: (@Sendable (String, PluginLogLine) -> Void)? = nil) throws {
    try super.init(library: library, settings: settings, expecting: .objective, logSink: logSink)
  }

  public var metricNames: [String] { library.scalars.map(\.name) }
  public var usesReference: Bool { needs & UInt32(KEEL_OBJECTIVE_USES_REF) != 0 }
  /// The inputs this instance asked for.
  public var needed: [ObjectiveNeed] { ObjectiveNeed.allCases.filter { needs & $0.flag != 0 } }
  public func needs(_ need: ObjectiveNeed) -> Bool { needs & need.flag != 0 }

  /// One call. `checkFinite` false lets a checker see NaN outputs instead of an error. The
  /// batch must carry every input the instance needs; inputs it does not need are not passed.
  public func compute(_ batch: ObjectiveBatch, checkFinite: Bool = true) throws -> ObjectiveResult {
    try batch.validate()
    for need in needed where !need.supplied(by: batch) {
      throw PluginError.invalidInput("objective '\(library.name)' (\(library.path)) needs \(need.field)")
    }
    var batch = batch
    // a 1.1 instance gets exactly what it asked for; a 1.0 plugin gets logp_ref whenever there is
    // one (as 1.0 hosts did: 1.0 plugins could not ask per instance)
    if library.abiMinor >= 1 && !needs(.reference) { batch.logpRef = nil }
    if !needs(.entropy) { batch.entropy = nil }
    if !needs(.referenceKL) { batch.klRef = nil }
    if !needs(.teacher) { batch.logpTeacher = nil }
    if !needs(.teacherKL) { batch.klTeacher = nil }
    if !needs(.logits) { batch.logits = nil }
    let n = batch.numTokens
    let vtable = library.table.vtable.assumingMemoryBound(to: keel_objective_vtable.self).pointee
    var result = ObjectiveResult(loss: 0, gradLogp: [Float](repeating: 0, count: n),
                                 metrics: [Double](repeating: 0, count: Int(vtable.metric_count)))
    var gradEntropy = batch.entropy.map { _ in [Float](repeating: 0, count: n) }
    var gradKlRef = batch.klRef.map { _ in [Float](repeating: 0, count: n) }
    var gradKlTeacher = batch.klTeacher.map { _ in [Float](repeating: 0, count: n) }
    var gradLogits = batch.logits.map { [Float](repeating: 0, count: $0.count) }
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
      withOptionalBuffer(batch.entropy) { entropy in
      withOptionalBuffer(batch.klRef) { klRef in
      withOptionalBuffer(batch.logpTeacher) { teacher in
      withOptionalBuffer(batch.klTeacher) { klTeacher in
      withOptionalBuffer(batch.logits) { logits in
      withOptionalMutableBuffer(&gradEntropy) { gEntropy in
      withOptionalMutableBuffer(&gradKlRef) { gKlRef in
      withOptionalMutableBuffer(&gradKlTeacher) { gKlTeacher in
      withOptionalMutableBuffer(&gradLogits) { gLogits in
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
        b.entropy = entropy
        b.kl_ref = klRef
        b.logp_teacher = teacher
        b.kl_teacher = klTeacher
        b.vocab_size = batch.vocabSize
        b.logits = logits
        var out = keel_objective_output()
        out.struct_size = UInt32(MemoryLayout<keel_objective_output>.size)
        out.metric_count = vtable.metric_count
        out.grad_logp = grad.baseAddress
        out.metrics = metrics.baseAddress
        out.grad_entropy = gEntropy
        out.grad_kl_ref = gKlRef
        out.grad_kl_teacher = gKlTeacher
        out.grad_logits = gLogits
        let status = vtable.compute(handle, &b, &out)
        result.loss = out.loss
        return status
      }}}}}}}}}}}}}}}}}}}}
    }
    result.gradEntropy = gradEntropy
    result.gradKlRef = gradKlRef
    result.gradKlTeacher = gradKlTeacher
    result.gradLogits = gradLogits
    if checkFinite {
      guard result.loss.isFinite else { throw PluginError.nonFinite(path: library.path, name: library.name, what: "loss (\(result.loss))") }
      // every gradient output: finite, and exactly 0 on masked tokens (grad_logits per token row)
      let V = max(Int(batch.vocabSize), 1)
      let outputs: [(what: String, masked: String, grad: [Float]?, stride: Int)] = [
        ("∂loss/∂logp", "gradient", result.gradLogp, 1), ("grad_entropy", "grad_entropy", result.gradEntropy, 1),
        ("grad_kl_ref", "grad_kl_ref", result.gradKlRef, 1), ("grad_kl_teacher", "grad_kl_teacher", result.gradKlTeacher, 1),
        ("grad_logits", "grad_logits", result.gradLogits, V)]
      for (what, masked, grad, stride) in outputs {
        guard let grad else { continue }
        if let bad = grad.firstIndex(where: { !$0.isFinite }) {
          throw PluginError.nonFinite(path: library.path, name: library.name, what: "gradient \(what) at token \(bad / stride) (\(grad[bad]))")
        }
        if let bad = grad.indices.first(where: { batch.mask[$0 / stride] == 0 && grad[$0] != 0 }) {
          throw PluginError.callFailed(path: library.path, name: library.name, function: "objective.compute", status: KEEL_ERR_INTERNAL,
                                       message: "host check: masked token \(bad / stride) got \(masked) \(grad[bad]) (must be 0)")
        }
      }
    }
    return result
  }
}

/// Pass an optional array as a nullable mutable C pointer.
func withOptionalMutableBuffer<T, R>(_ array: inout [T]?, _ body: (UnsafeMutablePointer<T>?) -> R) -> R {
  guard array != nil else { return body(nil) }
  return array!.withUnsafeMutableBufferPointer { body($0.baseAddress) }
}

/// Pass an optional array as a nullable C pointer.
func withOptionalBuffer<T, R>(_ array: [T]?, _ body: (UnsafePointer<T>?) -> R) -> R {
  guard let array else { return body(nil) }
  return array.withUnsafeBufferPointer { body($0.baseAddress) }
}
