// Trainer+Update.swift — phase 5 of the global step: the N sequential mini-batch updates. Each
// one: gradient (per micro-batch: forward at θ with routing replay none | R2 | R3 → objective
// plugin → backward; with N = 1 the forward also records π_old) → first-order diagnostics →
// apply (sum the gradient and the totals over ranks, clip, AdamW). Objective scalars are merged
// by their declared reduction (StepStats.swift), over micro-batches, ranks and then updates.
import Foundation
import KeelModel
import KeelPluginHost

/// An applied update's results: the loss, the pre-clip gradient norm and each declared objective
/// scalar (in declaration order), already summed over micro-batches and ranks.
struct UpdateResult {
  var loss: Double
  var gradNorm: Double
  var objective: [Double]
}

/// What an objective reports when it does not declare these scalars itself: nothing masked,
/// importance weight 1; the loss and gradient norm of a step with no applied update are 0.
let objectiveMetricDefaults: [(key: String, value: Double)] = [
  ("loss", 0), ("grad_norm", 0), ("masked_fraction_low", 0), ("masked_fraction_high", 0), ("is_weight_mean", 1),
]

extension Trainer {
  /// The N sequential updates; returns the per-update metrics averaged over the applied ones.
  /// recordOld (N = 1 only): each micro-batch's forward is also its π_old pass (see globalStep).
  func updatesOf(_ buffer: inout RolloutBuffer, step: Int, groupTokens: GroupTokens, recordOld fuse: Bool) throws -> Metrics {
    let scalars = plugins.objective.library.scalars
    var applied: [UpdateResult] = []
    var diagnostics: [Metrics] = []
    var monitorSeconds = 0.0
    let members = buffer.membersByGroup()
    for (index, groups) in buffer.minibatchGroups(config.train.minibatches, seed: seed, step: step).enumerated() {
      let label = "step \(step) mini-batch \(index)"
      let (totals, monitored) = try gradient(&buffer, responses: groups.flatMap { members[$0] }, groups: groups,
                                             groupTokens: groupTokens, recordOld: fuse, label: label)
      if config.diagnostics.enabled {
        let (d, dt) = try timed { try firstOrderDiagnostics(monitored) }
        diagnostics.append(d)
        monitorSeconds += dt
      }
      if let result = try apply(totals, sequences: Double(groups.count * G), step: step, label: label) { applied.append(result) }
    }
    var out: Metrics = [:]
    if !applied.isEmpty {
      var loss = 0.0, norm = 0.0, objective = [Double](repeating: 0, count: scalars.count)
      for r in applied {
        loss += r.loss
        norm += r.gradNorm
        for j in objective.indices { objective[j] += r.objective[j] }
      }
      let n = Double(applied.count)
      out["loss"] = loss / n
      out["grad_norm"] = norm / n
      for (decl, sum) in zip(scalars, objective) { out[decl.name] = sum / n }
    }
    for d in objectiveMetricDefaults where out[d.key] == nil { out[d.key] = d.value }
    out["updates_applied"] = Double(applied.count)
    if config.diagnostics.enabled {
      for (k, v) in Diagnostics.perStep(diagnostics) { out[k] = v }
      out["time_diagnostics"] = monitorSeconds
      for (index, d) in diagnostics.enumerated() {
        var row = d
        row["minibatch"] = Double(index)
        try diagnosticsWriter?.write(row, step: step)
      }
    }
    return out
  }

  /// One update's gradient over this rank's responses of the mini-batch, micro-batch by
  /// micro-batch, into the engine's gradient buffer. Returns this rank's totals (loss, tokens,
  /// objective scalars weighed by reduction; `skipped` after a non-finite objective output under
  /// train.on_nan skip) and the log-probs the first-order monitor needs.
  func gradient(_ buffer: inout RolloutBuffer, responses mb: [Int], groups: ArraySlice<Int>, groupTokens: GroupTokens,
                recordOld fuse: Bool, label: String) throws -> (UpdateTotals, [ResponseLogProbs]) {
    let scalars = plugins.objective.library.scalars
    var totals = UpdateTotals(tail: [Double](repeating: 0, count: scalars.count))
    var monitored: [ResponseLogProbs] = []
    policy.engine.zeroGrads()
    // the loss normalisers are the optimizer-step batch's global totals, over every rank
    let totalSeq = Double(groups.count * G)
    let totalTok = Double(groups.reduce(0) { $0 + groupTokens.response[$1] })
    // the MoE load-balancing loss is taken per micro-batch, weighted by its share of the
    // mini-batch's tokens (prompt + response, all ranks): independent of micro-batches and K
    let allTok = Double(groups.reduce(0) { $0 + groupTokens.sequence[$1] })
    for chunk in microBatches(mb) {
      let b = buffer.sequenceBatch(chunk)
      let mode: RoutingMode
      switch config.train.routingReplay {
      case .r2: mode = fuse ? .natural : .replay(buffer.routing(chunk, sampler: false)!)  // fused: π_old's own choice
      case .r3: mode = .replay(buffer.routing(chunk, sampler: true)!)
      case .none: mode = .natural
      }
      let chunkAux = Float(config.train.auxLossCoef * Double(b.tokens.count) / max(allTok, 1))
      let out = policy.engine.forward(b, temperature: Float(config.sampler.temperature), routing: mode, save: true, auxLossCoef: chunkAux)
      if fuse { recordOld(&buffer, chunk, batch: b, out: out) }
      var ob = objectiveBatch(buffer, chunk, logp: out.logp, totalSequences: totalSeq, totalTokens: totalTok)
      let frozenRows = distributionTerms(&ob, batch: b, saved: out.saved!, entropy: out.entropy)
      if config.diagnostics.enabled {
        for (j, i) in chunk.enumerated() {
          let lo = Int(ob.seqOffsets[j]), hi = Int(ob.seqOffsets[j + 1])
          monitored.append(ResponseLogProbs(logp: Array(out.logp[lo..<hi]), logpOld: buffer.responses[i].logpOld,
                                            logpRollout: buffer.responses[i].logpRollout))
        }
      }
      let result: ObjectiveResult
      do {
        result = try plugins.objective.compute(ob)
      } catch let e as PluginError {
        guard config.train.onNaN == .skip, case .nonFinite = e else { throw e }
        logger.warning("\(label): \(e) — update skipped (train.on_nan: skip)")
        policy.engine.zeroGrads()
        totals.skipped = 1
        totals.loss = 0
        break
      }
      totals.loss += result.loss
      let tokensHere = Double(ob.numTokens)
      for (j, decl) in scalars.enumerated() {
        totals.tail[j] += decl.reduction.weigh(result.metrics[j], tokens: tokensHere, sequences: Double(chunk.count))
      }
      totals.tokens += tokensHere
      policy.engine.backward(out.saved!, dlogp: result.gradLogp,
                             distribution: distributionGradients(result, ob, frozenRows), auxLossCoef: chunkAux)
    }
    return (totals, monitored)
  }

  /// ABI 1.1: fill in the distribution terms the objective instance asked for, from this
  /// micro-batch's saved forward (entropy, logits) and the frozen models' forwards on the same
  /// sequences (the reference's and the teacher's log-prob rows, which are returned for the
  /// backward). Vocabulary-sized work stays within the micro-batch.
  func distributionTerms(_ ob: inout ObjectiveBatch, batch b: SequenceBatch, saved: SavedActivations, entropy: [Float])
    -> (reference: [Float]?, teacher: [Float]?) {
    let o = plugins.objective, T = Float(config.sampler.temperature), engine = policy.engine
    ob.vocabSize = Int64(engine.config.vocabSize)
    if o.needs(.entropy) { ob.entropy = entropy }
    if o.needs(.logits) { ob.logits = engine.scaledLogits(saved) }
    var refRows: [Float]? = nil, teacherRows: [Float]? = nil
    if o.needs(.referenceKL), let reference {
      refRows = reference.forward(b, temperature: T, logProbRows: true).logProbRows
      ob.klRef = engine.kl(saved, logq: refRows!)
    }
    if let teacher, o.needs(.teacher) || o.needs(.teacherKL) {
      let t = teacher.forward(b, temperature: T, logProbRows: o.needs(.teacherKL))
      if o.needs(.teacher) { ob.logpTeacher = t.logp }
      if o.needs(.teacherKL) {
        teacherRows = t.logProbRows
        ob.klTeacher = engine.kl(saved, logq: teacherRows!)
      }
    }
    return (refRows, teacherRows)
  }

  /// The objective's ∂loss/∂(term) outputs as the engine's head gradients (nil: none asked for).
  func distributionGradients(_ r: ObjectiveResult, _ ob: ObjectiveBatch, _ rows: (reference: [Float]?, teacher: [Float]?)) -> DistributionGradients? {
    var d = DistributionGradients(entropy: r.gradEntropy, logits: r.gradLogits)
    if let g = r.gradKlRef, let q = rows.reference, let v = ob.klRef { d.kl.append((q, v, g)) }
    if let g = r.gradKlTeacher, let q = rows.teacher, let v = ob.klTeacher { d.kl.append((q, v, g)) }
    return d.isEmpty ? nil : d
  }

  /// The objective plugin's input for one micro-batch: its responses' tokens, advantages, log π_θ
  /// (this forward's), log π_old, log μ_old and (kl_ref) log π_ref, with the step's normalisers.
  func objectiveBatch(_ buffer: RolloutBuffer, _ chunk: [Int], logp: [Float], totalSequences: Double, totalTokens: Double) -> ObjectiveBatch {
    var ob = ObjectiveBatch(seqOffsets: [0], groupIds: [], mask: [], advantages: [], logp: logp, logpOld: [], logpRollout: [],
                            totalSequences: totalSequences, totalTokens: totalTokens, maxResponseTokens: Int64(config.sampler.maxTokens))
    var ref: [Float] = []
    for i in chunk {
      let r = buffer.responses[i]
      ob.seqOffsets.append(ob.seqOffsets.last! + Int64(r.tokens.count))
      ob.groupIds.append(Int64(r.group))
      ob.mask += Array(repeating: 1, count: r.tokens.count)
      ob.advantages += Array(repeating: r.advantage, count: r.tokens.count)
      ob.logpOld += r.logpOld
      ob.logpRollout += r.logpRollout
      if let lr = r.logpRef { ref += lr }
    }
    ob.logpRef = reference != nil && wantsReferenceLogp ? ref : nil
    return ob
  }

  /// The first-order validity monitor over every rank's responses of one update.
  func firstOrderDiagnostics(_ monitored: [ResponseLogProbs]) throws -> Metrics {
    let records = try comm.allgatherv(monitored.flatMap { Diagnostics.record($0).packed }, what: "allgather of diagnostics records")
    return Diagnostics.summarize(Diagnostics.Record.unpack(records), threshold: config.diagnostics.threshold)
  }

  /// Sum the gradient and the totals over ranks, clip and take the AdamW step. nil when the
  /// update is skipped: a non-finite objective output on any rank, or a non-finite gradient
  /// under train.on_nan skip (under stop, that is an error naming the objective plugin).
  func apply(_ local: UpdateTotals, sequences: Double, step: Int, label: String) throws -> UpdateResult? {
    let totals = try local.summed(over: comm, what: "allreduce of update totals")
    if totals.skipped > 0 {
      if local.skipped == 0 { logger.warning("\(label): a non-finite objective output on another rank — update skipped (train.on_nan: skip)") }
      return nil
    }
    try comm.allreduceSum(policy.engine.grads.p, count: policy.engine.grads.count, what: "allreduce of gradients")
    let gradNorm = AdamW.norm(policy.engine.grads)
    guard gradNorm.isFinite else {
      let message = "\(label): the gradient is not finite after objective '\(plugins.objective.library.name)' (\(plugins.objective.library.path))"
      if config.train.onNaN == .skip { logger.warning("\(message) — update skipped"); return nil }
      throw TrainerError(message: message + "; the last good checkpoint is kept in \(run.path)/checkpoints")
    }
    policy.optimizer.update(params: policy.store, grads: policy.engine.grads, lr: learningRate(step),
                            maxNorm: Float(config.train.gradClip), compute: policy.engine.compute, norm: gradNorm)
    let objective = zip(plugins.objective.library.scalars, totals.tail).map { decl, sum in
      decl.reduction.finish(sum, tokens: totals.tokens, sequences: sequences)
    }
    return UpdateResult(loss: totals.loss, gradNorm: gradNorm, objective: objective)
  }
}
