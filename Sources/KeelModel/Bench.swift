// Bench.swift — what `keel bench` measures, in one place: the sampler's generated tokens/s,
// the training step's tokens/s (forward + backward of a token-level policy-gradient loss +
// AdamW), their model FLOP rates, and — in the same run — a yardstick: a 1024³ SGEMM through
// OpenBLAS's cblas_sgemm on the same threads (best of 5, measured at the start and at the end;
// the higher one is the yardstick). Sampler: best of 5 calls per precision, round-robin;
// training step: best of 3 — best-of-N on both sides, like the yardstick itself. FLOP formulas (docs/performance.md):
//   train:   6 · active matmul parameters · tokens + 3 · attention
//   sampler: 2 · active matmul parameters · generated tokens + attention of those tokens
//   attention per query at position t: 4 · H · D · (t + 1)
import CBLAS
import Dispatch
import Foundation
import KeelKernels
import KeelRandom

public struct BenchSettings: Sendable {
  public var config: ModelConfig
  public var threads: Int = 2
  public var samplerBatch = 512, promptLength = 16, generated = 48
  public var trainSequences = 512, trainLength = 64, microBatchSequences = 64
  public var samplerPrecisions: [SamplerPrecision] = [.fp32, .bf16, .fp16, .fp8, .exact]
  /// Timed generate calls per precision (round-robin over the precisions; best kept).
  public var samplerRounds = 5
  /// Timed training steps (best kept).
  public var trainRounds = 3
  /// Time the training step (off: sampler figures only, e.g. for profiling).
  public var train = true
  public var backend: GemmBackend = .keel
  /// Time the ABI 1.1 distribution-term kernels also at a Qwen3-sized vocabulary (151,936).
  public var largeVocabulary = true
  public init(config: ModelConfig) { self.config = config }
}

public struct BenchResult: Sendable {
  /// The yardstick: the better of the two measurements below (the conservative choice: a
  /// higher yardstick gives lower fractions).
  public var gemmGflops: Double { max(gemmGflopsStart, gemmGflopsEnd) }
  /// Best-of-5 SGEMM GFLOP/s before the sampler and after the training step (the machine's
  /// speed drifts; both are reported).
  public var gemmGflopsStart: Double
  public var gemmGflopsEnd: Double = 0
  public var samplerSeconds: [SamplerPrecision: Double] = [:]
  public var samplerTokensPerSecond: [SamplerPrecision: Double] = [:]
  public var samplerGflops: [SamplerPrecision: Double] = [:]
  public var trainSeconds: [String: Double] = [:]
  public var trainTokensPerSecond: [String: Double] = [:]
  public var trainGflops: [String: Double] = [:]
  public var peakRSSBytes: Int = 0
  /// ABI 1.1 distribution terms at the LM head: each kernel's time as a multiple of the log-prob
  /// backward every step pays (kk_logprob_backward) on the same rows, keyed "entropy_backward",
  /// "kl_forward", "kl_backward" per shape "ROWSxV" (the bench model's vocabulary, and Qwen3's).
  public var distributionTerms: [String: [String: Double]] = [:]
}

public enum Bench {
  /// Best-of-5 times of the distribution-term kernels over `rows` × `vocab` logits, each divided
  /// by the best-of-5 time of kk_logprob_backward on the same rows (one thread: per-row kernels).
  public static func distributionTermRatios(rows R: Int, vocab V: Int) -> [String: Double] {
    var rng = CounterRNG(seed: 4, stream: 4)
    let logits = FloatBuffer(R * V), logq = FloatBuffer(R * V), d = FloatBuffer(R * V)
    for i in 0..<(R * V) { logits.p[i] = Float(rng.normal() * 2); logq.p[i] = Float(rng.normal()) - 12 }
    let lp = FloatBuffer(R), ent = FloatBuffer(R), lse = FloatBuffer(R), kl = FloatBuffer(R), g = FloatBuffer(R)
    let targets = Buffer<Int32>(R)
    for r in 0..<R { g.p[r] = 0.5; targets[r] = Int32(r % V) }
    kk_logprob_entropy_forward(lp.p, ent.p, lse.p, logits.p, targets.p, Int64(R), Int64(V), 1)
    func best(_ body: () -> Void) -> Double {
      (0..<5).map { _ in let t0 = now(); body(); return now() - t0 }.min()!
    }
    let base = best { kk_logprob_backward(d.p, g.p, logits.p, targets.p, lse.p, Int64(R), Int64(V), 1) }
    return ["entropy_backward": best { kk_entropy_backward(d.p, g.p, logits.p, lse.p, ent.p, Int64(R), Int64(V), 1) } / base,
            "kl_forward": best { kk_kl_forward(kl.p, logits.p, lse.p, logq.p, Int64(R), Int64(V), 1) } / base,
            "kl_backward": best { kk_kl_backward(d.p, g.p, logits.p, lse.p, logq.p, kl.p, Int64(R), Int64(V), 1) } / base]
  }

  static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) * 1e-9 }

  /// Best-of-5 GFLOP/s of a 1024³ SGEMM through OpenBLAS on `threads` threads.
  public static func gemmYardstick(threads: Int) -> Double {
    openblas_set_num_threads(Int32(threads))
    let n = 1024
    let a = FloatBuffer(n * n), b = FloatBuffer(n * n), c = FloatBuffer(n * n)
    var rng = CounterRNG(seed: 1, stream: 1)
    for i in 0..<(n * n) { a[i] = Float(rng.uniform()); b[i] = Float(rng.uniform()) }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a.p, Int32(n), b.p, Int32(n), 0, c.p, Int32(n))  // warm-up
    var best = Double.infinity
    for _ in 0..<5 {
      let t0 = now()
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a.p, Int32(n), b.p, Int32(n), 0, c.p, Int32(n))
      best = min(best, now() - t0)
    }
    return 2 * Double(n * n * n) / best / 1e9
  }

  public static func peakRSS() -> Int {
    var u = rusage()
    getrusage(__rusage_who_t(0), &u)  // RUSAGE_SELF
    return Int(u.ru_maxrss) * 1024
  }

  static func attentionFlops(_ c: ModelConfig, positions: Range<Int>) -> Double {
    positions.reduce(0.0) { $0 + 4 * Double(c.numAttentionHeads * c.headDim) * Double($1 + 1) } * Double(c.numHiddenLayers)
  }

  /// Best of `trainRounds` training steps (micro-batched forward + backward of a token-level policy-gradient
  /// loss over all sequences, then AdamW), in seconds.
  public static func trainStepSeconds(_ s: BenchSettings, store: ParameterStore? = nil, sequences: [[Int32]]? = nil) -> Double {
    let store = store ?? ParameterStore(config: s.config, seed: 1)
    var rng = CounterRNG(seed: 3, stream: 3)
    let seqs = sequences ?? (0..<s.trainSequences).map { _ in (0..<s.trainLength).map { _ in Int32(rng.below(s.config.vocabSize)) } }
    let engine = TrainingEngine(store: store, compute: Compute(threads: s.threads, backend: s.backend))
    engine.compute.configureBLAS()
    let opt = AdamW(count: store.layout.count)
    var best = Double.infinity
    for _ in 0..<max(1, s.trainRounds) {
      let t0 = now()
      engine.zeroGrads()
      var i = 0
      while i < seqs.count {
        let part = Array(seqs[i..<min(seqs.count, i + s.microBatchSequences)])
        let b = SequenceBatch(sequences: part, scoreFrom: part.map { _ in 1 })
        let out = engine.forward(b, save: true)
        engine.backward(out.saved!, dlogp: out.logp.indices.map { Float(($0 % 7) - 3) / Float(seqs.count) })
        i += s.microBatchSequences
      }
      opt.update(params: store, grads: engine.grads, lr: 1e-6, maxNorm: 1, compute: engine.compute)
      best = min(best, now() - t0)
    }
    return best
  }

  public static func run(_ s: BenchSettings, log: (String) -> Void = { _ in }) -> BenchResult {
    let c = s.config
    let store = ParameterStore(config: c, seed: 1)
    let layout = store.layout
    var result = BenchResult(gemmGflopsStart: gemmYardstick(threads: s.threads))
    log("gemm yardstick (start): \(String(format: "%.1f", result.gemmGflopsStart)) GFLOP/s")
    let compute = Compute(threads: s.threads, backend: s.backend)
    compute.configureBLAS()
    // sampler
    var rng = CounterRNG(seed: 2, stream: 2)
    let requests = (0..<s.samplerBatch).map { i in
      SampleRequest(prompt: (0..<s.promptLength).map { _ in Int32(rng.below(c.vocabSize)) }, promptIndex: i, sampleIndex: 0)
    }
    let params = SamplingParams(temperature: 1, maxTokens: s.generated)
    let genFlops = 2 * Double(layout.activeMatmulParameters) * Double(s.samplerBatch * s.generated)
      + Double(s.samplerBatch) * attentionFlops(c, positions: s.promptLength..<(s.promptLength + s.generated))
    // Every precision is timed `samplerRounds` times, round-robin (fp32, bf16, …, fp32, bf16, …),
    // and keeps its best: the first call of a process runs on cold caches and a cold heap, and
    // round-robin spreads the machine's drift over all precisions instead of charging it to one.
    let samplers = s.samplerPrecisions.map { Sampler(store: store, precision: $0, compute: compute) }
    for _ in 0..<max(1, s.samplerRounds) {
      for sampler in samplers {
        let t0 = now()
        let out = sampler.generate(requests, params: params, seed: 1, step: 0)
        let dt = now() - t0
        let tokens = out.reduce(0) { $0 + $1.tokens.count }
        let precision = sampler.precision
        guard dt < (result.samplerSeconds[precision] ?? .infinity) else { continue }
        result.samplerSeconds[precision] = dt
        result.samplerTokensPerSecond[precision] = Double(tokens) / dt
        result.samplerGflops[precision] = genFlops / dt / 1e9
      }
    }
    for p in s.samplerPrecisions {
      log("sampler \(p): \(String(format: "%.0f", result.samplerTokensPerSecond[p]!)) tok/s, \(String(format: "%.1f", result.samplerGflops[p]!)) GFLOP/s")
    }
    // training step
    let seqs = (0..<s.trainSequences).map { _ in (0..<s.trainLength).map { _ in Int32(rng.below(c.vocabSize)) } }
    let trainTokens = s.trainSequences * s.trainLength
    let trainFlops = 6 * Double(layout.activeMatmulParameters) * Double(trainTokens)
      + 3 * Double(s.trainSequences) * attentionFlops(c, positions: 0..<s.trainLength)
    for (label, backend) in [("fast", s.backend), ("exact", GemmBackend.keel)] where s.train {
      var settings = s
      settings.backend = backend
      let best = trainStepSeconds(settings, store: store, sequences: seqs)
      result.trainSeconds[label] = best
      result.trainTokensPerSecond[label] = Double(trainTokens) / best
      result.trainGflops[label] = trainFlops / best / 1e9
      log("train \(label): \(String(format: "%.0f", Double(trainTokens) / best)) tok/s, \(String(format: "%.1f", trainFlops / best / 1e9)) GFLOP/s")
      if s.backend == .keel { break }  // fast == exact on the keel backend
    }
    if s.train {
      for (rows, V) in [(s.microBatchSequences * s.trainLength, c.vocabSize)] + (s.largeVocabulary ? [(64, 151_936)] : []) {
        let ratios = distributionTermRatios(rows: rows, vocab: V)
        result.distributionTerms["\(rows)x\(V)"] = ratios
        log("distribution terms, \(rows) rows × V \(V) (× the log-prob backward): " +
            ["entropy_backward", "kl_forward", "kl_backward"].map { "\($0) \(String(format: "%.2f", ratios[$0]!))" }.joined(separator: ", "))
      }
    }
    result.gemmGflopsEnd = gemmYardstick(threads: s.threads)
    log("gemm yardstick (end): \(String(format: "%.1f", result.gemmGflopsEnd)) GFLOP/s; fractions are of \(String(format: "%.1f", result.gemmGflops))")
    result.peakRSSBytes = peakRSS()
    return result
  }
}
