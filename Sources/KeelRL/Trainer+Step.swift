// Trainer+Step.swift — one global step (paper §6), and the metrics it reports.
// Over K ranks (docs/scaling.md) this rank samples, scores and computes π_old for its own
// share of the B prompt groups (prompt indices stay global, so rollouts do not depend on K);
// rewards and lengths are gathered so that the baseline plugin and the loss normalisers see
// the whole global batch; gradients and metric sums are summed before each update.
import Foundation
import KeelDistributed
import KeelModel
import KeelPluginHost
import KeelTasks

extension Trainer {
  func globalStep(_ step: Int) throws -> Metrics {
    let t0 = DispatchTime.now().uptimeNanoseconds
    var m: Metrics = [:]
    let reduced0 = (comm.collectiveSeconds, comm.collectiveBytes)
    // 1. sample this rank's share of the B × G responses
    let share = comm.share(of: B)
    let problems = share.map { dataset.trainProblem((step - 1) * B + $0) }
    let prompts = try problems.map { try tokenizer.encodePrompt($0.prompt) }
    var requests: [SampleRequest] = []
    for (j, p) in prompts.enumerated() {
      for g in 0..<G { requests.append(SampleRequest(prompt: p, promptIndex: (step - 1) * B + share.lowerBound + j, sampleIndex: g)) }
    }
    let params = SamplingParams(temperature: Float(config.float("sampler.temperature")), topP: Float(config.float("sampler.top_p")),
                                topK: config.int("sampler.top_k"), maxTokens: config.int("sampler.max_tokens"), stopTokens: Set(tokenizer.stopTokens))
    try policy.sampler.check(requests, maxTokens: params.maxTokens) { "training prompt \(problems[$0.promptIndex - (step - 1) * B - share.lowerBound].prompt.debugDescription)" }
    let (samples, tSample) = timed { policy.sampler.generate(requests, params: params, seed: seed, step: step) }
    m["time_sampling"] = tSample
    let k = modelConfig.isMoE ? modelConfig.numExpertsPerTok : 0
    var responses: [Response] = zip(requests, samples).enumerated().map { (i, pair) in
      let (req, s) = pair
      // the sampler never runs the last position: pad its experts (it influences no scored token)
      let routing = s.routing.map { $0 + (0..<Int32(k)) }
      return Response(group: share.lowerBound + i / G, prompt: req.prompt, tokens: s.tokens, logpRollout: s.logp, samplerRouting: routing,
                      truncated: s.truncated, text: tokenizer.decode(s.tokens))
    }
    // 2. rewards and 3. advantages
    var groupTokens = GroupTokens(groups: B)
    let (_, tScore) = try timed {
      let rewardSamples = responses.enumerated().map { (i, r) in
        RewardSample(prompt: problems[i / G].prompt, response: r.text, responseIds: r.tokens, reference: problems[i / G].answer,
                     task: problems[i / G].task, extraJSON: problems[i / G].extraJSON, truncated: r.truncated)
      }
      let scored = try plugins.score(rewardSamples)
      let correct = try grader.correct(responses.map(\.text), responses.indices.map { problems[$0 / G] })
      for i in responses.indices {
        responses[i].reward = scored.total[i]
        responses[i].components = scored.components.mapValues { $0[i] }
        responses[i].correct = correct[i]
      }
      // the baseline sees the global batch (rewards and lengths of every rank, in prompt order)
      var local: [Double] = []
      for r in responses { local += [Double(r.reward), Double(r.tokens.count), Double(r.prompt.count + r.tokens.count)] }
      let all = try comm.allgatherv(local, what: "allgather of rewards and lengths")
      let count = all.count / 3
      let rewards = (0..<count).map { Float(all[3 * $0]) }
      for i in 0..<count {
        groupTokens.response[i / G] += Int(all[3 * i + 1])
        groupTokens.sequence[i / G] += Int(all[3 * i + 2])
      }
      let adv = try plugins.baseline.advantages(rewards: rewards, groupIds: (0..<count).map { Int64($0 / G) },
                                                lengths: (0..<count).map { Int64(all[3 * $0 + 1]) })
      for i in responses.indices { responses[i].advantage = adv[share.lowerBound * G + i] }
    }
    m["time_scoring"] = tScore
    if config.bool("log.rollouts") { try logRollouts(responses, requests: requests, step: step) }
    var buffer = RolloutBuffer(responses: responses, groups: B)
    // 4. π_old pass (records the training engine's experts for R2; R3 replays the sampler's).
    // With N = 1 the single update's forward runs at the same weights on the same tokens, so it
    // IS the π_old pass (same bits: the training forward does not depend on micro-batch
    // composition, and R2's replay of the experts π_old chose is those same experts): the
    // update records π_old from its own forward instead of a separate pass.
    let replay = config.string("train.routing_replay")
    let fused = foldOldPassIntoUpdate && config.int("train.minibatches") == 1
    if !fused {
      let (_, tOld) = try timed { try oldPass(&buffer, Array(buffer.responses.indices), replay: replay) }
      m["time_old_pass"] = tOld
    }
    // 5. N mini-batch updates
    let (updates, tUpdate) = try timed { try updatesOf(&buffer, replay: replay, step: step, groupTokens: groupTokens, recordOld: fused) }
    m["time_updates"] = tUpdate
    if fused {
      // responses an update did not reach (a skipped mini-batch) get a π_old pass of their own
      let missing = buffer.responses.indices.filter { !buffer.responses[$0].oldRecorded }
      let (_, tOld) = try timed { try oldPass(&buffer, missing, replay: replay) }
      m["time_old_pass"] = tOld
    }
    // entropy of π_old over this rank's response tokens, in response order
    var entropySums = (sum: 0.0, count: 0.0)
    for r in buffer.responses { for e in r.entropyOld { entropySums.sum += Double(e); entropySums.count += 1 } }
    policy.sampler.refresh()
    // metrics: this rank's sums, summed over ranks, then divided
    let rs = buffer.responses
    var k1 = 0.0, k3 = 0.0, tokens = 0.0
    for r in rs {
      for (mu, pi) in zip(r.logpRollout, r.logpOld) {
        let d = Double(mu) - Double(pi)
        k1 += d
        k3 += exp(-d) - 1 + d
        tokens += 1
      }
    }
    var equalGroups = 0
    for g in share {
      let rewards = rs.filter { $0.group == g }.map(\.reward)
      if rewards.allSatisfy({ $0 == rewards[0] }) { equalGroups += 1 }
    }
    var sums = [rs.reduce(0.0) { $0 + Double($1.reward) }, Double(rs.filter(\.correct).count), Double(rs.count),
                entropySums.sum, entropySums.count, k1, k3, tokens, Double(rs.filter(\.truncated).count), Double(equalGroups)]
    // each reward component by its declared reduction: summed over samples, or weighted by each
    // response's tokens (divided by the step's tokens below), or per sample (divided by n)
    let components = plugins.componentNames, reductions = plugins.componentReductions
    for (name, reduction) in zip(components, reductions) {
      sums.append(rs.reduce(0.0) { acc, r in
        let v = Double(r.components[name] ?? 0)
        return acc + (reduction == .tokenMean ? v * Double(r.logpRollout.count) : v)
      })
    }
    sums = try comm.allreduceSum(sums, what: "allreduce of step metrics")
    let n = sums[2]
    tokens = sums[7]
    m["reward_mean"] = sums[0] / n
    m["accuracy"] = sums[1] / n
    m["entropy"] = sums[4] > 0 ? sums[3] / sums[4] : 0
    m["mismatch_kl"] = tokens > 0 ? sums[5] / tokens : 0
    m["mismatch_kl_k3"] = tokens > 0 ? sums[6] / tokens : 0
    m["response_length"] = tokens / n
    m["truncated_fraction"] = sums[8] / n
    m["zero_advantage_fraction"] = sums[9] / Double(B)
    for (j, (name, reduction)) in zip(components, reductions).enumerated() {
      switch reduction {
      case .sum: m["reward/" + name] = sums[10 + j]
      case .tokenMean: m["reward/" + name] = tokens > 0 ? sums[10 + j] / tokens : 0
      case .sequenceMean: m["reward/" + name] = sums[10 + j] / n
      }
    }
    for (key, value) in updates { m[key] = value }
    if comm.size > 1 {
      m["ranks"] = Double(comm.size)
      m["time_allreduce"] = comm.collectiveSeconds - reduced0.0
      m["allreduce_bytes"] = Double(comm.collectiveBytes - reduced0.1)
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    m["seconds"] = seconds
    m["tokens_per_second"] = tokens / seconds
    return m
  }

  /// rollouts.jsonl (log.rollouts): every response of the global batch, gathered to rank 0,
  /// one line each: step, prompt (dataset index), sample, token ids, text, per-token log μ_old,
  /// reward, advantage, truncated.
  func logRollouts(_ responses: [Response], requests: [SampleRequest], step: Int) throws {
    var packed: [Double] = []
    for (r, q) in zip(responses, requests) {
      packed += [Double(q.promptIndex), Double(q.sampleIndex), Double(r.reward), Double(r.advantage), r.truncated ? 1 : 0,
                 Double(r.tokens.count)]
      packed += r.tokens.map(Double.init) + r.logpRollout.map(Double.init)
    }
    let all = try comm.allgatherv(packed, what: "allgather of rollouts")
    guard let writer = rolloutsWriter else { return }
    var i = 0
    while i < all.count {
      let n = Int(all[i + 5])
      let tokens = all[(i + 6)..<(i + 6 + n)].map { Int32($0) }
      try writer.writeRaw(["step": step, "prompt": Int(all[i]), "sample": Int(all[i + 1]), "reward": all[i + 2], "advantage": all[i + 3],
                       "truncated": all[i + 4] != 0, "tokens": tokens.map(Int.init), "text": tokenizer.decode(tokens),
                       "logp_rollout": Array(all[(i + 6 + n)..<(i + 6 + 2 * n)])])
      i += 6 + 2 * n
    }
  }

  /// log π_old of the given responses' tokens (and the reference's, if kl_ref), entropy, R2 experts.
  func oldPass(_ buffer: inout RolloutBuffer, _ indices: [Int], replay: String) throws {
    for chunk in microBatches(indices) {
      let b = buffer.sequenceBatch(chunk)
      let mode: RoutingMode = replay == "R3" ? .replay(buffer.routing(chunk, sampler: true)!) : .natural
      let out = policy.engine.forward(b, temperature: Float(config.float("sampler.temperature")), routing: mode)
      recordOld(&buffer, chunk, batch: b, out: out)
    }
  }

  /// Store a π_old forward's per-response values (and the reference's forward, if kl_ref).
  func recordOld(_ buffer: inout RolloutBuffer, _ chunk: [Int], batch b: SequenceBatch, out: ForwardOutput) {
    let refOut = reference?.forward(b, temperature: Float(config.float("sampler.temperature")))
    var o = 0
    for (j, i) in chunk.enumerated() {
      let n = buffer.responses[i].tokens.count
      buffer.responses[i].logpOld = Array(out.logp[o..<(o + n)])
      buffer.responses[i].logpRef = refOut.map { Array($0.logp[o..<(o + n)]) }
      buffer.responses[i].entropyOld = Array(out.entropy[o..<(o + n)])
      o += n
      // this response's experts in the π_old pass
      let offset = b.offsets[j], len = b.length(j), k = modelConfig.numExpertsPerTok
      buffer.responses[i].oldRouting = out.routing.experts.map { Array($0[(offset * k)..<((offset + len) * k)]) }
      buffer.responses[i].oldRecorded = true
    }
  }

  /// Per prompt group of the global batch (every rank's responses): response tokens, and prompt
  /// + response tokens. The loss normalisers and the MoE auxiliary loss's weights come from these.
  struct GroupTokens {
    var response: [Int], sequence: [Int]
    init(groups: Int) { response = Array(repeating: 0, count: groups); sequence = response }
  }

  func microBatches(_ indices: [Int]) -> [[Int]] {
    let size = config.int("train.micro_batch")
    return stride(from: 0, to: indices.count, by: size).map { Array(indices[$0..<min(indices.count, $0 + size)]) }
  }

  /// The N sequential updates; returns the per-update metrics averaged over them.
  /// recordOld (N = 1 only): each micro-batch's forward is also its π_old pass (see globalStep).
  func updatesOf(_ buffer: inout RolloutBuffer, replay: String, step: Int, groupTokens: GroupTokens, recordOld fuse: Bool = false) throws -> Metrics {
    let N = config.int("train.minibatches")
    let names = plugins.objective.metricNames
    var sums: Metrics = [:]
    var applied = 0
    var diagnostics: [Metrics] = []
    let monitor = config.bool("diagnostics.enabled")
    var monitorSeconds = 0.0
    let members = buffer.membersByGroup()
    for (mIndex, groups) in buffer.minibatchGroups(N, seed: seed, step: step).enumerated() {
      let mb = groups.flatMap { members[$0] }  // this rank's responses of the mini-batch
      var monitored: [ResponseLogProbs] = []
      policy.engine.zeroGrads()
      // the loss normalisers are the optimizer-step batch's global totals, over every rank
      let totalSeq = Double(groups.count * G)
      let totalTok = Double(groups.reduce(0) { $0 + groupTokens.response[$1] })
      // the MoE load-balancing loss is taken per micro-batch, weighted by its share of the
      // mini-batch's tokens (prompt + response, all ranks): independent of micro-batches and K
      let allTok = Double(groups.reduce(0) { $0 + groupTokens.sequence[$1] })
      let auxCoef = config.float("train.aux_loss_coef")
      var loss = 0.0
      var metricSums = [Double](repeating: 0, count: names.count)
      var tokensSeen = 0.0
      for chunk in microBatches(mb) {
        let b = buffer.sequenceBatch(chunk)
        let mode: RoutingMode
        switch replay {
        case "R2": mode = fuse ? .natural : .replay(buffer.routing(chunk, sampler: false)!)  // fused: π_old's own choice
        case "R3": mode = .replay(buffer.routing(chunk, sampler: true)!)
        default: mode = .natural
        }
        let chunkAux = Float(auxCoef * Double(b.tokens.count) / max(allTok, 1))
        let out = policy.engine.forward(b, temperature: Float(config.float("sampler.temperature")), routing: mode, save: true,
                                        auxLossCoef: chunkAux)
        if fuse { recordOld(&buffer, chunk, batch: b, out: out) }
        var ob = ObjectiveBatch(seqOffsets: [0], groupIds: [], mask: [], advantages: [], logp: out.logp, logpOld: [], logpRollout: [],
                                totalSequences: totalSeq, totalTokens: totalTok, maxResponseTokens: Int64(config.int("sampler.max_tokens")))
        var offsets: [Int64] = [0]
        var ref: [Float] = []
        for i in chunk {
          let r = buffer.responses[i]
          offsets.append(offsets.last! + Int64(r.tokens.count))
          ob.groupIds.append(Int64(r.group))
          ob.mask += Array(repeating: 1, count: r.tokens.count)
          ob.advantages += Array(repeating: r.advantage, count: r.tokens.count)
          ob.logpOld += r.logpOld
          ob.logpRollout += r.logpRollout
          if let lr = r.logpRef { ref += lr }
        }
        ob.seqOffsets = offsets
        ob.logpRef = reference != nil ? ref : nil
        if monitor {
          for (j, i) in chunk.enumerated() {
            let lo = Int(offsets[j]), hi = Int(offsets[j + 1])
            monitored.append(ResponseLogProbs(logp: Array(out.logp[lo..<hi]), logpOld: buffer.responses[i].logpOld,
                                              logpRollout: buffer.responses[i].logpRollout))
          }
        }
        let result: ObjectiveResult
        do {
          result = try plugins.objective.compute(ob)
        } catch let e as PluginError {
          if config.string("train.on_nan") == "skip", case .nonFinite = e {
            log("step \(step) mini-batch \(mIndex): \(e) — update skipped (train.on_nan: skip)")
            policy.engine.zeroGrads()
            loss = .nan
            break
          }
          throw e
        }
        loss += result.loss
        let tokensHere = Double(ob.numTokens)
        for (j, decl) in plugins.objective.library.scalars.enumerated() {
          switch decl.reduction {
          case .tokenMean: metricSums[j] += result.metrics[j] * tokensHere
          case .sequenceMean: metricSums[j] += result.metrics[j] * Double(chunk.count)
          case .sum: metricSums[j] += result.metrics[j]
          }
        }
        tokensSeen += tokensHere
        policy.engine.backward(out.saved!, dlogp: result.gradLogp, auxLossCoef: chunkAux)
      }
      if monitor {
        let (d, dt) = try timed {
          let records = try comm.allgatherv(monitored.flatMap { Diagnostics.record($0).packed },
                                            what: "allgather of diagnostics records")
          return Diagnostics.summarize(Diagnostics.Record.unpack(records), threshold: config.float("diagnostics.threshold"))
        }
        diagnostics.append(d)
        monitorSeconds += dt
      }
      // sum the gradients and this update's totals over ranks; a skip on any rank skips on all
      var totals = [loss.isNaN ? 1 : 0, loss.isNaN ? 0 : loss, tokensSeen] + metricSums
      totals = try comm.allreduceSum(totals, what: "allreduce of update totals")
      if totals[0] > 0 {
        if !loss.isNaN { log("step \(step) mini-batch \(mIndex): a non-finite objective output on another rank — update skipped (train.on_nan: skip)") }
        continue
      }
      loss = totals[1]
      tokensSeen = totals[2]
      metricSums = Array(totals[3...])
      try comm.allreduceSum(policy.engine.grads.p, count: policy.engine.grads.count, what: "allreduce of gradients")
      let gradNorm = AdamW.norm(policy.engine.grads)
      guard gradNorm.isFinite else {
        let message = "step \(step) mini-batch \(mIndex): the gradient is not finite after objective '\(plugins.objective.library.name)' (\(plugins.objective.library.path))"
        if config.string("train.on_nan") == "skip" { log(message + " — update skipped"); continue }
        throw TrainerError(message: message + "; the last good checkpoint is kept in \(run.path)/checkpoints")
      }
      policy.optimizer.update(params: policy.store, grads: policy.engine.grads, lr: learningRate(step),
                              maxNorm: Float(config.float("train.grad_clip")), compute: policy.engine.compute, norm: gradNorm)
      applied += 1
      sums["loss", default: 0] += loss
      sums["grad_norm", default: 0] += gradNorm
      for (j, decl) in plugins.objective.library.scalars.enumerated() {
        let v: Double
        switch decl.reduction {
        case .tokenMean: v = tokensSeen > 0 ? metricSums[j] / tokensSeen : 0
        case .sequenceMean: v = metricSums[j] / totalSeq
        case .sum: v = metricSums[j]
        }
        sums[decl.name, default: 0] += v
      }
    }
    var out: Metrics = [:]
    for (key, v) in sums { out[key] = v / Double(max(applied, 1)) }
    for key in ["loss", "grad_norm", "masked_fraction_low", "masked_fraction_high", "is_weight_mean"] where out[key] == nil { out[key] = 0 }
    if out["is_weight_mean"] == 0 && !names.contains("is_weight_mean") { out["is_weight_mean"] = 1 }
    out["updates_applied"] = Double(applied)
    if monitor {
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
}
