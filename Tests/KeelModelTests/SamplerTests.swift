// SamplerTests.swift — the inference engine against the training engine: fp32 log-probs
// agree to ~1e-5; exact mode is bit-identical to the training forward for any batch size,
// batch position, thread count and training micro-batch size; bf16/fp16/fp8 differ
// measurably and sanely; the same prompt gives the same tokens alone or inside a batch;
// the same seed gives the same samples; the 16-bit KV cache gives the float cache's bits.
import KeelModel
import XCTest

final class SamplerTests: XCTestCase {
  let prompts: [[Int32]] = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11, 12, 13]]

  func requests(_ n: Int) -> [SampleRequest] {
    (0..<n).map { i in SampleRequest(prompt: prompts[i % prompts.count], promptIndex: i % prompts.count, sampleIndex: i / prompts.count) }
  }

  /// The training engine's log-probs of the sampled responses (micro-batches of `micro` sequences).
  func trainerLogp(_ engine: TrainingEngine, _ reqs: [SampleRequest], _ res: [SampleResult], micro: Int = 1000, temperature: Float = 1) -> [[Float]] {
    var out: [[Float]] = []
    var i = 0
    while i < reqs.count {
      let r = i..<min(reqs.count, i + micro)
      let b = SequenceBatch(sequences: r.map { reqs[$0].prompt + res[$0].tokens }, scoreFrom: r.map { reqs[$0].prompt.count })
      let lp = engine.forward(b, temperature: temperature).logp
      var o = 0
      for j in r { out.append(Array(lp[o..<(o + res[j].tokens.count)])); o += res[j].tokens.count }
      i += micro
    }
    return out
  }

  func testFP32SamplerMatchesTrainingForward() throws {
    for (name, c) in Tiny.configs {
      let store = Tiny.store(c)
      for backend in GemmBackend.allCases {
        let sampler = Sampler(store: store, precision: .fp32, compute: Compute(threads: 2, backend: backend))
        let reqs = requests(12)
        let res = sampler.generate(reqs, params: SamplingParams(temperature: 0.9, maxTokens: 20), seed: 1, step: 0)
        let engine = TrainingEngine(store: store, compute: Compute(threads: 2, backend: backend))
        let lp = trainerLogp(engine, reqs, res, temperature: 0.9)
        var worst: Float = 0
        for i in res.indices { for t in res[i].logp.indices { worst = max(worst, abs(res[i].logp[t] - lp[i][t])) } }
        XCTAssertLessThan(worst, 1e-5, "\(name) \(backend)")
        XCTAssertGreaterThan(res.map(\.tokens.count).reduce(0, +), 100)
      }
    }
  }

  func testExactModeIsBitIdenticalToTrainingForward() throws {
    for (name, base) in Tiny.configs {
      var c = base
      c.maxPositionEmbeddings = 64  // prompts of up to 5 tokens + 48 generated
      let store = Tiny.store(c)
      let engine = TrainingEngine(store: store, compute: Compute(threads: 2, backend: .keel))
      var reference: [Float]? = nil
      for (batchSize, threads) in [(1, 1), (7, 2), (64, 2), (64, 1)] {
        let sampler = Sampler(store: store, precision: .exact, compute: Compute(threads: threads, backend: .blas))
        // the probe prompt sits at a different batch position each time (7 → index 3, 64 → index 17)
        var reqs = requests(batchSize)
        let probe = SampleRequest(prompt: [4, 5, 6, 7, 8], promptIndex: 99, sampleIndex: 0)
        reqs[min(batchSize - 1, batchSize == 7 ? 3 : 17)] = probe
        let res = sampler.generate(reqs, params: SamplingParams(temperature: 1, maxTokens: 48), seed: 3, step: 2)
        for micro in [1, 3, 16] {
          let lp = trainerLogp(engine, reqs, res, micro: micro)
          for i in res.indices { XCTAssertEqual(res[i].logp, lp[i], "\(name) batch \(batchSize) threads \(threads) micro \(micro) seq \(i)") }
        }
        let probeLogp = res[reqs.firstIndex { $0.promptIndex == 99 }!].logp
        if let reference { XCTAssertEqual(probeLogp, reference, "\(name): same prompt, same bits at any batch size/position/threads") }
        reference = probeLogp
      }
    }
  }

  func testReducedPrecisionGapIsMeasurableAndSane() throws {
    let c = Tiny.config(moe: true)
    let store = Tiny.store(c)
    let engine = TrainingEngine(store: store, compute: Compute(threads: 2))
    for precision in [SamplerPrecision.bf16, .fp16, .fp8] {
      let sampler = Sampler(store: store, precision: precision, compute: Compute(threads: 2))
      let reqs = requests(32)
      let res = sampler.generate(reqs, params: SamplingParams(temperature: 1, maxTokens: 24), seed: 5, step: 0)
      let lp = trainerLogp(engine, reqs, res)
      var absSum = 0.0, k1 = 0.0, k3 = 0.0, n = 0.0
      for i in res.indices {
        for t in res[i].logp.indices {
          let mu = Double(res[i].logp[t]), pi = Double(lp[i][t])
          absSum += abs(mu - pi)
          k1 += mu - pi                       // E_μ[log μ − log π]
          k3 += exp(pi - mu) - 1 - (pi - mu)  // E_μ[r − 1 − log r], r = π/μ
          n += 1
        }
      }
      let meanAbs = absSum / n
      print("sampler \(precision): mean |Δlogp| \(meanAbs), KL k1 \(k1 / n), k3 \(k3 / n) over \(Int(n)) tokens")
      XCTAssertGreaterThan(meanAbs, 1e-4, "\(precision) must differ measurably")
      XCTAssertLessThan(meanAbs, 0.5, "\(precision) must stay sane")
      XCTAssertGreaterThanOrEqual(k3, 0)
    }
  }

  /// The 16-bit KV cache of the bf16 / fp16 / fp8 modes against a float32 cache: the same
  /// tokens, log-probs, entropies and experts, bit for bit (its K and V are 16-bit values
  /// already), for sampling and teacher-forced scoring, prompts of several lengths (batched
  /// prefill included), 1 and 2 threads, dense and MoE. fp32 mode keeps a float cache.
  func testCompactKVCacheGivesTheSameBits() throws {
    for moe in [false, true] {
      let store = Tiny.store(Tiny.config(moe: moe))
      for precision in [SamplerPrecision.bf16, .fp16, .fp8] {
        for threads in [1, 2] {
          let compact = Sampler(store: store, precision: precision, compute: Compute(threads: threads))
          let wide = Sampler(store: store, precision: precision, compute: Compute(threads: threads))
          wide.compactKVCache = false
          // 70 requests: whole sequences per thread; 12: a 27-row prefill whose ranges split
          // sequences across the threads (each range widens its own rows)
          for reqs in [requests(70), requests(12)] {
            let params = SamplingParams(temperature: 1, maxTokens: 20)
            let a = compact.generate(reqs, params: params, seed: 11, step: 1)
            let b = wide.generate(reqs, params: params, seed: 11, step: 1)
            XCTAssertTrue(a == b, "\(precision) moe \(moe) threads \(threads) batch \(reqs.count): generate differs")
          }
          let reqs = requests(70)
          let a = compact.generate(reqs, params: SamplingParams(temperature: 1, maxTokens: 20), seed: 11, step: 1)
          let seqs = reqs.indices.map { reqs[$0].prompt + a[$0].tokens }
          XCTAssertTrue(compact.score(seqs) == wide.score(seqs), "\(precision) moe \(moe) threads \(threads): score differs")
          // and the reduced modes still differ from fp32 (the cache did not widen them away)
          let fp32 = Sampler(store: store, precision: .fp32, compute: Compute(threads: threads)).score(seqs)
          XCTAssertTrue(fp32.map(\.logp) != compact.score(seqs).map(\.logp), "\(precision) equals fp32")
        }
      }
    }
  }

  func testSamePromptSameTokensAloneOrInABatch() throws {
    let c = Tiny.config(moe: true)
    let sampler = Sampler(store: Tiny.store(c), precision: .bf16, compute: Compute(threads: 2))
    let probe = SampleRequest(prompt: [3, 1, 4, 1, 5], promptIndex: 42, sampleIndex: 3)
    let alone = sampler.generate([probe], params: SamplingParams(maxTokens: 30), seed: 9, step: 4)[0]
    var batch = requests(64)
    batch[37] = probe
    let inBatch = sampler.generate(batch, params: SamplingParams(maxTokens: 30), seed: 9, step: 4)[37]
    XCTAssertEqual(alone.tokens, inBatch.tokens)
    XCTAssertEqual(alone.logp, inBatch.logp)
    XCTAssertEqual(alone.routing, inBatch.routing)
  }

  func testSameSeedSameSamplesAndStopTokens() throws {
    let c = Tiny.config(moe: false)
    let store = Tiny.store(c)
    let a = Sampler(store: store, precision: .fp32).generate(requests(16), params: SamplingParams(maxTokens: 16, stopTokens: [0]), seed: 1, step: 0)
    let b = Sampler(store: store, precision: .fp32).generate(requests(16), params: SamplingParams(maxTokens: 16, stopTokens: [0]), seed: 1, step: 0)
    XCTAssertEqual(a, b)
    let other = Sampler(store: store, precision: .fp32).generate(requests(16), params: SamplingParams(maxTokens: 16, stopTokens: [0]), seed: 2, step: 0)
    XCTAssertNotEqual(a.map(\.tokens), other.map(\.tokens))
    for r in a {
      if r.truncated { XCTAssertEqual(r.tokens.count, 16); XCTAssertFalse(r.tokens.contains(0)) }
      else { XCTAssertEqual(r.tokens.last, 0); XCTAssertEqual(r.tokens.filter { $0 == 0 }.count, 1) }
    }
  }

  func testRecordedRoutingReplaysToTheSamplerExperts() throws {
    // R3's input: the sampler's experts, replayed in the training engine, are the experts used.
    let c = Tiny.config(moe: true)
    let store = Tiny.store(c)
    let sampler = Sampler(store: store, precision: .fp8, compute: Compute(threads: 2))
    let reqs = requests(8)
    let res = sampler.generate(reqs, params: SamplingParams(maxTokens: 12), seed: 2, step: 0)
    let k = c.numExpertsPerTok
    for i in res.indices {
      let len = reqs[i].prompt.count + res[i].tokens.count
      XCTAssertEqual(res[i].routing.map(\.count), res[i].routing.map { _ in (len - 1) * k })
      // pad the last position (never run by the sampler) with experts 0…k-1
      let record = RoutingRecord(experts: res[i].routing.map { $0 + (0..<Int32(k)) })
      let engine = TrainingEngine(store: store, compute: Compute(threads: 2))
      let b = SequenceBatch(sequences: [reqs[i].prompt + res[i].tokens], scoreFrom: [reqs[i].prompt.count])
      XCTAssertEqual(engine.forward(b, routing: .replay(record)).routing, record)
    }
  }
}
