// Trainer+Step.swift — one global step (paper §6), and the metrics it reports.
import Foundation
import KeelModel
import KeelPluginHost
import KeelTasks

extension Trainer {
  func globalStep(_ step: Int) throws -> Metrics {
    let t0 = DispatchTime.now().uptimeNanoseconds
    var m: Metrics = [:]
    // 1. sample B × G responses
    let problems = (0..<B).map { dataset.trainProblem((step - 1) * B + $0) }
    let prompts = try problems.map { try tokenizer.encodePrompt($0.prompt) }
    var requests: [SampleRequest] = []
    for (i, p) in prompts.enumerated() { for g in 0..<G { requests.append(SampleRequest(prompt: p, promptIndex: (step - 1) * B + i, sampleIndex: g)) } }
    let params = SamplingParams(temperature: Float(config.float("sampler.temperature")), topP: Float(config.float("sampler.top_p")),
                                topK: config.int("sampler.top_k"), maxTokens: config.int("sampler.max_tokens"), stopTokens: [CharTokenizer.eos])
    let (samples, tSample) = timed { policy.sampler.generate(requests, params: params, seed: seed, step: step) }
    m["time_sampling"] = tSample
    let k = modelConfig.isMoE ? modelConfig.numExpertsPerTok : 0
    var responses: [Response] = zip(requests, samples).enumerated().map { (i, pair) in
      let (req, s) = pair
      // the sampler never runs the last position: pad its experts (it influences no scored token)
      let routing = s.routing.map { $0 + (0..<Int32(k)) }
      return Response(group: i / G, prompt: req.prompt, tokens: s.tokens, logpRollout: s.logp, samplerRouting: routing,
                      truncated: s.truncated, text: tokenizer.decode(s.tokens))
    }
    // 2. rewards and 3. advantages
    let (_, tScore) = try timed {
      let rewardSamples = responses.enumerated().map { (i, r) in
        RewardSample(prompt: problems[i / G].prompt, response: r.text, responseIds: r.tokens, reference: problems[i / G].answer,
                     task: problems[i / G].task, extraJSON: problems[i / G].extraJSON, truncated: r.truncated)
      }
      let scored = try plugins.score(rewardSamples)
      for i in responses.indices {
        responses[i].reward = scored.total[i]
        responses[i].components = scored.components.mapValues { $0[i] }
        responses[i].correct = Evaluator.answerMatches(responses[i].text, problems[i / G].answer, marker: dataset.answerMarker)
      }
      let adv = try plugins.baseline.advantages(rewards: responses.map(\.reward), groupIds: responses.map { Int64($0.group) },
                                                lengths: responses.map { Int64($0.tokens.count) })
      for i in responses.indices { responses[i].advantage = adv[i] }
    }
    m["time_scoring"] = tScore
    var buffer = RolloutBuffer(responses: responses, groups: B)
    // 4. π_old pass (records the training engine's experts for R2; R3 replays the sampler's)
    let replay = config.string("train.routing_replay")
    let (entropyMean, tOld) = try timed { try oldPass(&buffer, replay: replay) }
    m["time_old_pass"] = tOld
    // 5. N mini-batch updates
    let (updates, tUpdate) = try timed { try updatesOf(&buffer, replay: replay, step: step) }
    m["time_updates"] = tUpdate
    policy.sampler.refresh()
    // metrics
    let rs = buffer.responses
    let n = Double(rs.count)
    m["reward_mean"] = rs.reduce(0.0) { $0 + Double($1.reward) } / n
    m["accuracy"] = Double(rs.filter(\.correct).count) / n
    m["entropy"] = entropyMean
    var k1 = 0.0, k3 = 0.0, tokens = 0.0
    for r in rs {
      for (mu, pi) in zip(r.logpRollout, r.logpOld) {
        let d = Double(mu) - Double(pi)
        k1 += d
        k3 += exp(-d) - 1 + d
        tokens += 1
      }
    }
    m["mismatch_kl"] = tokens > 0 ? k1 / tokens : 0
    m["mismatch_kl_k3"] = tokens > 0 ? k3 / tokens : 0
    m["response_length"] = tokens / n
    m["truncated_fraction"] = Double(rs.filter(\.truncated).count) / n
    var equalGroups = 0
    for g in 0..<B {
      let rewards = rs.filter { $0.group == g }.map(\.reward)
      if rewards.allSatisfy({ $0 == rewards[0] }) { equalGroups += 1 }
    }
    m["zero_advantage_fraction"] = Double(equalGroups) / Double(B)
    for name in plugins.componentNames { m["reward/" + name] = rs.reduce(0.0) { $0 + Double($1.components[name] ?? 0) } / n }
    for (key, value) in updates { m[key] = value }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    m["seconds"] = seconds
    m["tokens_per_second"] = tokens / seconds
    return m
  }

  /// log π_old of every response token (and the reference's, if kl_ref), entropy, R2 experts.
  func oldPass(_ buffer: inout RolloutBuffer, replay: String) throws -> Double {
    var entropySum = 0.0, count = 0.0
    for chunk in microBatches(Array(buffer.responses.indices)) {
      let b = buffer.sequenceBatch(chunk)
      let mode: RoutingMode = replay == "R3" ? .replay(buffer.routing(chunk, sampler: true)!) : .natural
      let out = policy.engine.forward(b, temperature: Float(config.float("sampler.temperature")), routing: mode)
      let refOut = reference?.forward(b, temperature: Float(config.float("sampler.temperature")))
      var o = 0
      for (j, i) in chunk.enumerated() {
        let n = buffer.responses[i].tokens.count
        buffer.responses[i].logpOld = Array(out.logp[o..<(o + n)])
        buffer.responses[i].logpRef = refOut.map { Array($0.logp[o..<(o + n)]) }
        for e in out.entropy[o..<(o + n)] { entropySum += Double(e); count += 1 }
        o += n
        // this response's experts in the π_old pass
        let offset = b.offsets[j], len = b.length(j), k = modelConfig.numExpertsPerTok
        buffer.responses[i].oldRouting = out.routing.experts.map { Array($0[(offset * k)..<((offset + len) * k)]) }
      }
    }
    return count > 0 ? entropySum / count : 0
  }

  func microBatches(_ indices: [Int]) -> [[Int]] {
    let size = config.int("train.micro_batch")
    return stride(from: 0, to: indices.count, by: size).map { Array(indices[$0..<min(indices.count, $0 + size)]) }
  }

  /// The N sequential updates; returns the per-update metrics averaged over them.
  func updatesOf(_ buffer: inout RolloutBuffer, replay: String, step: Int) throws -> Metrics {
    let N = config.int("train.minibatches")
    let names = plugins.objective.metricNames
    var sums: Metrics = [:]
    var applied = 0
    var diagnostics: [Metrics] = []
    let monitor = config.bool("diagnostics.enabled")
    var monitorSeconds = 0.0
    for (mIndex, mb) in buffer.minibatches(N, seed: seed, step: step).enumerated() {
      var monitored: [ResponseLogProbs] = []
      policy.engine.zeroGrads()
      let totalSeq = Double(mb.count)
      let totalTok = Double(mb.reduce(0) { $0 + buffer.responses[$1].tokens.count })
      var loss = 0.0
      var metricSums = [Double](repeating: 0, count: names.count)
      var tokensSeen = 0.0
      for chunk in microBatches(mb) {
        let b = buffer.sequenceBatch(chunk)
        let mode: RoutingMode
        switch replay {
        case "R2": mode = .replay(buffer.routing(chunk, sampler: false)!)
        case "R3": mode = .replay(buffer.routing(chunk, sampler: true)!)
        default: mode = .natural
        }
        let out = policy.engine.forward(b, temperature: Float(config.float("sampler.temperature")), routing: mode, save: true,
                                        auxLossCoef: Float(config.float("train.aux_loss_coef")))
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
        policy.engine.backward(out.saved!, dlogp: result.gradLogp, auxLossCoef: Float(config.float("train.aux_loss_coef")))
      }
      if monitor {
        let (d, dt) = timed { Diagnostics.compute(monitored, threshold: config.float("diagnostics.threshold")) }
        diagnostics.append(d)
        monitorSeconds += dt
      }
      if loss.isNaN { continue }
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
        diagnosticsWriter?.write(row, step: step)
      }
    }
    return out
  }
}
