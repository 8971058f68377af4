// Trainer+Step.swift — one global step (paper §6; docs/training.md, "One global step") as named
// phases: sample → score → advantages → π_old pass → updates (Trainer+Update.swift) → sync
// sampler → record. Over K ranks (docs/scaling.md) this rank samples, scores and computes π_old
// for its own share of the B prompt groups (prompt indices stay global, so rollouts do not
// depend on K); rewards and lengths are gathered so that the baseline plugin and the loss
// normalisers see the whole global batch; gradients and metric sums are summed before use.
import Foundation
import KeelDistributed
import KeelModel
import KeelPluginHost
import KeelTasks

/// This rank's share of a step's batch as sampling left it.
struct Rollouts {
  /// The global group indices this rank owns, their problems (one per group) and requests (G per group).
  let share: Range<Int>
  let problems: [Problem]
  let requests: [SampleRequest]
  var responses: [Response]
}

/// Per prompt group of the global batch (every rank's responses): response tokens, and prompt
/// + response tokens. The loss normalisers and the MoE auxiliary loss's weights come from these.
struct GroupTokens {
  var response: [Int], sequence: [Int]
  init(groups: Int) { response = Array(repeating: 0, count: groups); sequence = response }
}

/// Seconds spent in each phase (the metrics' time_* keys).
struct PhaseTimes {
  var sampling = 0.0, scoring = 0.0, oldPass = 0.0, updates = 0.0
}

extension Trainer {
  func globalStep(_ step: Int) throws -> Metrics {
    let t0 = DispatchTime.now().uptimeNanoseconds
    let collectivesBefore = (comm.collectiveSeconds, comm.collectiveBytes)
    var times = PhaseTimes()
    // 1. sample this rank's share of the B × G responses
    var rollouts = try timed(&times.sampling) { try sample(step) }
    // 2. rewards and 3. advantages (the baseline sees the global batch)
    let groupTokens = try timed(&times.scoring) { () -> GroupTokens in
      try score(&rollouts)
      return try advantages(&rollouts)
    }
    if config.log.rollouts { try logRollouts(rollouts.responses, requests: rollouts.requests, step: step) }
    var buffer = RolloutBuffer(responses: rollouts.responses, groups: B)
    // 4. π_old pass. With N = 1 the single update's forward runs at the same weights on the same
    // tokens, so it IS the π_old pass (same bits: the training forward does not depend on
    // micro-batch composition, and R2's replay of π_old's experts is those same experts): the
    // update records π_old from its own forward instead of a separate pass.
    let fused = foldOldPassIntoUpdate && config.train.minibatches == 1
    if !fused { try timed(&times.oldPass) { try oldPass(&buffer, Array(buffer.responses.indices)) } }
    // 5. N mini-batch updates, each applied (AdamW) once its gradient is summed over ranks
    let updates = try timed(&times.updates) { try updatesOf(&buffer, step: step, groupTokens: groupTokens, recordOld: fused) }
    if fused {  // responses an update did not reach (a skipped mini-batch) get a π_old pass of their own
      try timed(&times.oldPass) { try oldPass(&buffer, buffer.responses.indices.filter { !buffer.responses[$0].oldRecorded }) }
    }
    // 6. the updated weights become the sampler's
    policy.sampler.refresh()
    // 7. record
    let (stats, tokens) = try stepMetrics(buffer, share: rollouts.share)
    var m = stats
    for (key, value) in updates { m[key] = value }
    m["time_sampling"] = times.sampling
    m["time_scoring"] = times.scoring
    m["time_old_pass"] = times.oldPass
    m["time_updates"] = times.updates
    if comm.size > 1 {
      m["ranks"] = Double(comm.size)
      m["time_allreduce"] = comm.collectiveSeconds - collectivesBefore.0
      m["allreduce_bytes"] = Double(comm.collectiveBytes - collectivesBefore.1)
    }
    let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9
    m["seconds"] = seconds
    m["tokens_per_second"] = tokens / seconds
    return m
  }

  /// Time `body` into `slot`.
  @discardableResult
  func timed<T>(_ slot: inout Double, _ body: () throws -> T) rethrows -> T {
    let (r, dt) = try timed(body)
    slot = dt
    return r
  }

  /// 1. Sampling: this rank's groups of the step's B prompts, G responses each (log μ_old and,
  /// for R3, the sampler's experts).
  func sample(_ step: Int) throws -> Rollouts {
    let share = comm.share(of: B)
    let first = (step - 1) * B
    let problems = share.map { dataset.trainProblem(first + $0) }
    let prompts = try problems.map { try tokenizer.encodePrompt($0.prompt) }
    var requests: [SampleRequest] = []
    for (j, p) in prompts.enumerated() {
      for g in 0..<G { requests.append(SampleRequest(prompt: p, promptIndex: first + share.lowerBound + j, sampleIndex: g)) }
    }
    let params = SamplingParams(temperature: Float(config.sampler.temperature), topP: Float(config.sampler.topP), topK: config.sampler.topK,
                                maxTokens: config.sampler.maxTokens, stopTokens: Set(tokenizer.stopTokens))
    try policy.sampler.check(requests, maxTokens: params.maxTokens) { "training prompt \(problems[$0.promptIndex - first - share.lowerBound].prompt.debugDescription)" }
    let samples = policy.sampler.generate(requests, params: params, seed: seed, step: step)
    let k = modelConfig.isMoE ? modelConfig.numExpertsPerTok : 0
    let responses: [Response] = zip(requests, samples).enumerated().map { (i, pair) in
      let (req, s) = pair
      // the sampler never runs the last position: pad its experts (it influences no scored token)
      let routing = s.routing.map { $0 + (0..<Int32(k)) }
      return Response(group: share.lowerBound + i / G, prompt: req.prompt, tokens: s.tokens, logpRollout: s.logp, samplerRouting: routing,
                      truncated: s.truncated, text: tokenizer.decode(s.tokens))
    }
    return Rollouts(share: share, problems: problems, requests: requests, responses: responses)
  }

  /// 2. Scoring: the reward plugin(s) (total and components) and the grader's verdict.
  func score(_ r: inout Rollouts) throws {
    let problems = r.problems
    let samples = r.responses.enumerated().map { (i, resp) in
      let p = problems[i / G]
      return RewardSample(prompt: p.prompt, response: resp.text, responseIds: resp.tokens, reference: p.answer, task: p.task,
                          extraJSON: p.extraJSON, truncated: resp.truncated)
    }
    let scored = try plugins.score(samples)
    let correct = try grader.correct(r.responses.map(\.text), r.responses.indices.map { problems[$0 / G] })
    for i in r.responses.indices {
      r.responses[i].reward = scored.total[i]
      r.responses[i].components = scored.components.mapValues { $0[i] }
      r.responses[i].correct = correct[i]
    }
  }

  /// 3. Advantages: the baseline plugin over the global batch (every rank's rewards and
  /// lengths, in prompt order). Returns each group's token counts, for the loss normalisers.
  func advantages(_ r: inout Rollouts) throws -> GroupTokens {
    struct Gathered { var reward: Double, responseTokens: Double, sequenceTokens: Double }
    let local = r.responses.flatMap { [Double($0.reward), Double($0.tokens.count), Double($0.prompt.count + $0.tokens.count)] }
    let flat = try comm.allgatherv(local, what: "allgather of rewards and lengths")
    let all = stride(from: 0, to: flat.count, by: 3).map { Gathered(reward: flat[$0], responseTokens: flat[$0 + 1], sequenceTokens: flat[$0 + 2]) }
    var groupTokens = GroupTokens(groups: B)
    for (i, a) in all.enumerated() {
      groupTokens.response[i / G] += Int(a.responseTokens)
      groupTokens.sequence[i / G] += Int(a.sequenceTokens)
    }
    let adv = try plugins.baseline.advantages(rewards: all.map { Float($0.reward) }, groupIds: all.indices.map { Int64($0 / G) },
                                              lengths: all.map { Int64($0.responseTokens) })
    for i in r.responses.indices { r.responses[i].advantage = adv[r.share.lowerBound * G + i] }
    return groupTokens
  }

  /// 4. log π_old of the given responses' tokens (and the reference's, if kl_ref), entropy, R2 experts.
  func oldPass(_ buffer: inout RolloutBuffer, _ indices: [Int]) throws {
    for chunk in microBatches(indices) {
      let b = buffer.sequenceBatch(chunk)
      let mode: RoutingMode = config.train.routingReplay == .r3 ? .replay(buffer.routing(chunk, sampler: true)!) : .natural
      recordOld(&buffer, chunk, batch: b, out: policy.engine.forward(b, temperature: Float(config.sampler.temperature), routing: mode))
    }
  }

  /// The one place π_old is recorded: a π_old forward's per-response values (the separate pass's,
  /// or with N = 1 the update's own), and the reference's forward if kl_ref.
  func recordOld(_ buffer: inout RolloutBuffer, _ chunk: [Int], batch b: SequenceBatch, out: ForwardOutput) {
    let refOut = wantsReferenceLogp ? reference?.forward(b, temperature: Float(config.sampler.temperature)) : nil
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

  func microBatches(_ indices: [Int]) -> [[Int]] {
    let size = config.train.microBatch
    return stride(from: 0, to: indices.count, by: size).map { Array(indices[$0..<min(indices.count, $0 + size)]) }
  }

  /// 7. The step's response-level metrics: this rank's sums, summed over ranks by name, then
  /// divided (reward components by their declared reduction); and the global response tokens.
  func stepMetrics(_ buffer: RolloutBuffer, share: Range<Int>) throws -> (Metrics, tokens: Double) {
    var s = StepSums()
    for r in buffer.responses {
      s.reward += Double(r.reward)
      if r.correct { s.correct += 1 }
      s.responses += 1
      if r.truncated { s.truncated += 1 }
      for e in r.entropyOld { s.entropy += Double(e); s.entropyTokens += 1 }
      for (mu, pi) in zip(r.logpRollout, r.logpOld) {
        let d = Double(mu) - Double(pi)
        s.mismatchK1 += d
        s.mismatchK3 += exp(-d) - 1 + d
        s.tokens += 1
      }
    }
    for g in share {
      let rewards = buffer.responses.filter { $0.group == g }.map(\.reward)
      if rewards.allSatisfy({ $0 == rewards[0] }) { s.equalGroups += 1 }
    }
    let components = Array(zip(plugins.componentNames, plugins.componentReductions))
    s.tail = components.map { name, reduction in
      buffer.responses.reduce(0.0) { $0 + reduction.weigh(Double($1.components[name] ?? 0), tokens: Double($1.logpRollout.count), sequences: 1) }
    }
    s = try s.summed(over: comm, what: "allreduce of step metrics")
    let n = s.responses, tokens = s.tokens
    var m: Metrics = [
      "reward_mean": s.reward / n, "accuracy": s.correct / n, "entropy": s.entropyTokens > 0 ? s.entropy / s.entropyTokens : 0,
      "mismatch_kl": tokens > 0 ? s.mismatchK1 / tokens : 0, "mismatch_kl_k3": tokens > 0 ? s.mismatchK3 / tokens : 0,
      "response_length": tokens / n, "truncated_fraction": s.truncated / n, "zero_advantage_fraction": s.equalGroups / Double(B),
    ]
    for ((name, reduction), sum) in zip(components, s.tail) {
      m["reward/" + name] = reduction.finish(sum, tokens: tokens, sequences: n)
    }
    return (m, tokens)
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
      try writer.write(RolloutLine(step: step, prompt: Int(all[i]), sample: Int(all[i + 1]), reward: all[i + 2], advantage: all[i + 3],
                                   truncated: all[i + 4] != 0, tokens: tokens.map(Int.init), text: tokenizer.decode(tokens),
                                   logp_rollout: Array(all[(i + 6 + n)..<(i + 6 + 2 * n)])))
      i += 6 + 2 * n
    }
  }
}
