// Sampler.swift — the inference engine: batched autoregressive decoding with a KV cache,
// a code path separate from the training engine. It records, per generated token, the
// sampled id, its log-prob under the distribution it was drawn from (log μ_old) and the
// experts it routed to (for R3), and can run in reduced precision so that μ_old ≠ π_old the
// way an FP8/BF16 inference engine differs from an FP32 trainer:
//   fp32   weights and activations float32 (matrix products on the engine's backend)
//   bf16   weights and every activation rounded to bfloat16 (accumulation in float32)
//   fp16   the same with IEEE half
//   fp8    matrices in float8 e4m3 with a per-output-channel scale, activations in bf16
//   exact  bit-identical to the training engine: the same kernels in the same order
//          (kk_gemm's fixed FMA chains, the shared attention row, the same MoE sum order)
// Randomness is keyed by (seed, step, prompt index, sample index, position): the same prompt
// gives the same tokens at any batch position, in any batch, on any number of threads.
// In bf16 / fp16 / fp8 the KV cache holds 16-bit patterns (exact: those K and V are 16-bit
// values already; see compactKVCache).
// With top-p/top-k truncation the recorded log-prob is that of the truncated distribution
// actually sampled from, while the trainer scores the full one (a bias; defaults use none).
import KeelKernels
import KeelRandom

public enum SamplerPrecision: String, Sendable, CaseIterable, Codable {
  case fp32, bf16, fp16, fp8, exact
}

public struct SamplerError: Error, CustomStringConvertible {
  public let message: String
  public var description: String { message }
}

public struct SamplingParams: Sendable {
  /// 0 = greedy (argmax; the recorded log-prob is then at temperature 1).
  public var temperature: Float = 1
  public var topP: Float = 1
  public var topK: Int = 0
  public var maxTokens: Int = 48
  public var stopTokens: Set<Int32> = []
  public init(temperature: Float = 1, topP: Float = 1, topK: Int = 0, maxTokens: Int = 48, stopTokens: Set<Int32> = []) {
    self.temperature = temperature
    self.topP = topP
    self.topK = topK
    self.maxTokens = maxTokens
    self.stopTokens = stopTokens
  }
}

public struct SampleRequest: Sendable {
  public var prompt: [Int32]
  public var promptIndex: Int
  public var sampleIndex: Int
  public init(prompt: [Int32], promptIndex: Int, sampleIndex: Int) {
    self.prompt = prompt
    self.promptIndex = promptIndex
    self.sampleIndex = sampleIndex
  }
}

public struct SampleResult: Sendable, Equatable {
  /// Generated tokens (the stop token included, if one was produced).
  public var tokens: [Int32]
  /// log μ_old of each generated token.
  public var logp: [Float]
  /// Experts per MoE layer for every position of prompt + response except the last:
  /// routing[sparseLayer][position * k + slot] (the positions the trainer runs).
  public var routing: [[Int32]]
  /// true if generation stopped at maxTokens without a stop token.
  public var truncated: Bool
  /// Entropy of the full next-token distribution (at the sampling temperature) at each generated token.
  public var entropy: [Float] = []
}

public final class Sampler: @unchecked Sendable {
  public let store: ParameterStore
  public let precision: SamplerPrecision
  public var compute: Compute
  /// The sampler's own copy of the weights (rounded per precision), refreshed after updates.
  let weights: ParameterStore
  let ropeCos: FloatBuffer, ropeSin: FloatBuffer

  public init(store: ParameterStore, precision: SamplerPrecision, compute: Compute = Compute()) {
    self.store = store
    self.precision = precision
    self.compute = compute
    weights = store.copy()
    let c = store.layout.config
    ropeCos = FloatBuffer(c.maxPositionEmbeddings * c.headDim / 2)
    ropeSin = FloatBuffer(c.maxPositionEmbeddings * c.headDim / 2)
    kk_rope_table(ropeCos.p, ropeSin.p, Int64(c.maxPositionEmbeddings), Int32(c.headDim), c.ropeTheta)
    refresh()
  }

  /// Keep the KV cache in 16 bits in the bf16 / fp16 / fp8 modes (bf16 patterns, or binary16
  /// for fp16): their K and V are rounded to 16 bits already, so this is exact — the same
  /// tokens and log-probs bit for bit — and halves the bytes each attention row reads. Off:
  /// float32 caches (the comparison the tests make).
  public var compactKVCache = true

  var config: ModelConfig { store.layout.config }
  var kvFormat: KVCache.Format {
    guard compactKVCache else { return .fp32 }
    switch precision {
    case .fp32, .exact: return .fp32
    case .bf16, .fp8: return .bf16
    case .fp16: return .fp16
    }
  }
  var backend: GemmBackend { precision == .exact ? .keel : compute.backend }

  /// Take the training engine's current weights (then round them per precision).
  public func refresh() {
    weights.values.copy(from: store.values)
    let L = store.layout
    switch precision {
    case .fp32, .exact: break
    case .bf16: kk_round_bf16(weights.values.p, Int64(L.count))
    case .fp16: kk_round_fp16(weights.values.p, Int64(L.count))
    case .fp8:
      kk_round_bf16(weights.values.p, Int64(L.count))  // norms and embeddings in bf16
      let scales = FloatBuffer(L.matrices.map { $0.shape[0] }.max() ?? 1)
      var done = Set<Int>()
      for m in L.matrices where done.insert(m.offset).inserted {
        (weights.values.p + m.offset).update(from: store.values.p + m.offset, count: m.count)
        kk_quantize_fp8_e4m3_rows(weights.values.p + m.offset, scales.p, Int64(m.shape[0]), Int64(m.shape[1]))
      }
    }
    weights.refreshTransposed()
  }

  /// Round activations to the engine's precision.
  @inline(__always) func round(_ x: UnsafeMutablePointer<Float>, _ n: Int) {
    switch precision {
    case .fp32, .exact: break
    case .bf16, .fp8: kk_round_bf16(x, Int64(n))
    case .fp16: kk_round_fp16(x, Int64(n))
    }
  }

  func matmul(_ out: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, _ slot: TensorSlot, M: Int, N: Int, K: Int,
              on engine: Compute? = nil) {
    (engine ?? compute).matmul(out, input, w: weights.w(slot), wt: weights.wt(slot), M: M, N: N, K: K, backend: backend)
    round(out, M * N)
  }

  // MARK: generation

  public func generate(_ requests: [SampleRequest], params: SamplingParams, seed: UInt64, step: Int) -> [SampleResult] {
    decode(requests, params: params, seed: seed, step: step, forced: nil)
  }

  /// Teacher-forced scoring on the inference path: log μ of tokens[t+1] given tokens[..t]
  /// (t = 0…T-2), the entropy there, and the experts at each position the sampler ran.
  public func score(_ sequences: [[Int32]], temperature: Float = 1) -> [SampleResult] {
    let reqs = sequences.enumerated().map { SampleRequest(prompt: [$0.element[0]], promptIndex: $0.offset, sampleIndex: 0) }
    let params = SamplingParams(temperature: temperature, maxTokens: max(1, sequences.map { $0.count - 1 }.max() ?? 1))
    return decode(reqs, params: params, seed: 0, step: 0, forced: sequences.map { Array($0.dropFirst()) })
  }

  /// Callers check requests here first (generate's own check is a precondition): the longest
  /// prompt plus max_tokens must fit the model's context, and no prompt may be empty.
  public func check(_ requests: [SampleRequest], maxTokens: Int, label: (SampleRequest) -> String = { "prompt \($0.promptIndex)" }) throws {
    guard let longest = requests.max(by: { $0.prompt.count < $1.prompt.count }) else { return }
    guard maxTokens >= 1 else { throw SamplerError(message: "max_tokens is \(maxTokens); a response needs at least 1 token") }
    if longest.prompt.count + maxTokens > config.maxPositionEmbeddings {
      throw SamplerError(message: "\(label(longest)) has \(longest.prompt.count) tokens; with max_tokens \(maxTokens) that is \(longest.prompt.count + maxTokens) positions, more than the model's max_position_embeddings \(config.maxPositionEmbeddings): shorten the prompt or lower sampler.max_tokens to at most \(config.maxPositionEmbeddings - longest.prompt.count)")
    }
    if let empty = requests.first(where: { $0.prompt.isEmpty }) {
      throw SamplerError(message: "\(label(empty)) has no tokens")
    }
  }

  func decode(_ requests: [SampleRequest], params: SamplingParams, seed: UInt64, step: Int, forced: [[Int32]]?) -> [SampleResult] {
    let c = config, L = weights.layout
    let C = c.hiddenSize, KV = c.numKeyValueHeads, D = c.headDim, V = c.vocabSize
    let B = requests.count
    guard B > 0 else { return [] }
    let maxLen = requests.map { $0.prompt.count }.max()! + params.maxTokens
    precondition(maxLen <= c.maxPositionEmbeddings, "prompt + max_tokens = \(maxLen) exceeds max_position_embeddings \(c.maxPositionEmbeddings)")
    precondition(requests.allSatisfy { !$0.prompt.isEmpty }, "every prompt needs at least one token")
    var seqs = requests.map { $0.prompt }
    var results = requests.map { _ in SampleResult(tokens: [], logp: [], routing: Array(repeating: [], count: L.layers.filter(\.isSparse).count), truncated: false) }
    var done = forced.map { $0.map(\.isEmpty) } ?? [Bool](repeating: false, count: B)
    let kvStride = KV * D
    let cache = KVCache(layers: L.layers.count, sequences: B, maxLen: maxLen, rowWidth: kvStride, format: kvFormat)
    // Prefill: every prompt position but the last, all sequences at once (big, efficient
    // products). Every operation is row-local, so this gives the same bits as feeding the
    // positions one decode step at a time.
    let prefill = (0..<B).flatMap { b in (0..<max(0, seqs[b].count - 1)).map { (b, $0) } }
    if !prefill.isEmpty {
      let experts = forwardRowsSplit(prefill, tokens: prefill.map { seqs[$0.0][$0.1] }, cache: cache, maxLen: maxLen).experts
      record(experts, rows: prefill.map(\.0), into: &results)
    }
    let start = (0..<B).map { seqs[$0].count - 1 }
    for t in (start.min() ?? 0)..<(maxLen - 1) {
      let active = (0..<B).filter { !done[$0] && t >= start[$0] && t < seqs[$0].count }
      if active.isEmpty { if (0..<B).allSatisfy({ done[$0] || seqs[$0].count <= t }) { break } else { continue } }
      let rows = active.map { ($0, t) }
      let (x, experts) = forwardRowsSplit(rows, tokens: active.map { seqs[$0][t] }, cache: cache, maxLen: maxLen)
      record(experts, rows: active, into: &results)
      // Which rows sample a next token: those at the end of their known tokens.
      let sampling = active.enumerated().filter { t == seqs[$0.element].count - 1 }
      guard !sampling.isEmpty else { continue }
      let S = sampling.count
      let hs = FloatBuffer(S * C)
      for (j, (i, _)) in sampling.enumerated() { (hs.p + j * C).update(from: x.p + i * C, count: C) }
      let normed = FloatBuffer(S * C)
      kk_rmsnorm_forward(normed.p, nil, hs.p, weights.w(L.finalNorm), Int64(S), Int64(C), c.rmsNormEps)
      round(normed.p, S * C)
      let logits = FloatBuffer(S * V)
      matmul(logits.p, normed.p, L.lmHead, M: S, N: V, K: C)
      let logprobs = FloatBuffer(V)
      for (j, (_, b)) in sampling.enumerated() {
        let token: Int32, lp: Float
        if let forced {
          token = forced[b][results[b].tokens.count]
          _ = kk_logsoftmax_row(logprobs.p, logits.p + j * V, Int64(V), 1 / params.temperature)
          lp = logprobs[Int(token)]
        } else {
          (token, lp) = drawToken(logits.p + j * V, V: V, params: params, scratch: logprobs.p,
                                  key: hashKey(seed, UInt64(step), UInt64(requests[b].promptIndex), UInt64(requests[b].sampleIndex), UInt64(t)))
        }
        // `logprobs` holds the row's full log-softmax at the sampling temperature (T = 1 when greedy)
        results[b].entropy.append(Self.entropy(logprobs: logprobs.p, V: V))
        seqs[b].append(token)
        results[b].tokens.append(token)
        results[b].logp.append(lp)
        if let forced {
          done[b] = results[b].tokens.count == forced[b].count
        } else if params.stopTokens.contains(token) {
          done[b] = true
        } else if results[b].tokens.count >= params.maxTokens {
          done[b] = true
          results[b].truncated = true
        }
      }
    }
    return results
  }

  /// K and V of every layer, sequence and position: [layer][sequence][position][KV·D], in
  /// float32 or as 16-bit patterns (bf16 / binary16; see `compactKVCache`).
  final class KVCache {
    enum Format { case fp32, bf16, fp16 }
    let format: Format
    let k: [FloatBuffer], v: [FloatBuffer]
    let k16: [Buffer<UInt16>], v16: [Buffer<UInt16>]
    init(layers: Int, sequences: Int, maxLen: Int, rowWidth: Int, format: Format) {
      self.format = format
      let n = sequences * maxLen * rowWidth  // every entry is written before it is read
      k = format == .fp32 ? (0..<layers).map { _ in FloatBuffer(uninitialized: n) } : []
      v = format == .fp32 ? (0..<layers).map { _ in FloatBuffer(uninitialized: n) } : []
      k16 = format == .fp32 ? [] : (0..<layers).map { _ in Buffer<UInt16>(uninitialized: n) }
      v16 = format == .fp32 ? [] : (0..<layers).map { _ in Buffer<UInt16>(uninitialized: n) }
    }

    /// Store `count` floats (already rounded to the format) at element `at` of layer l.
    func store(layer l: Int, at: Int, k kp: UnsafePointer<Float>, v vp: UnsafePointer<Float>, count: Int) {
      switch format {
      case .fp32:
        (k[l].p + at).update(from: kp, count: count)
        (v[l].p + at).update(from: vp, count: count)
      case .bf16:
        kk_store_bf16(k16[l].p + at, kp, Int64(count)); kk_store_bf16(v16[l].p + at, vp, Int64(count))
      case .fp16:
        kk_store_fp16(k16[l].p + at, kp, Int64(count)); kk_store_fp16(v16[l].p + at, vp, Int64(count))
      }
    }

    /// Widen `count` elements of layer l from element `at` into kOut / vOut (16-bit formats).
    func load(layer l: Int, at: Int, count: Int, k kOut: UnsafeMutablePointer<Float>, v vOut: UnsafeMutablePointer<Float>) {
      let n = Int64(count)
      switch format {
      case .fp32: preconditionFailure("a float32 cache is read in place")
      case .bf16: kk_load_bf16(kOut, k16[l].p + at, n); kk_load_bf16(vOut, v16[l].p + at, n)
      case .fp16: kk_load_fp16(kOut, k16[l].p + at, n); kk_load_fp16(vOut, v16[l].p + at, n)
      }
    }
  }

  /// forwardRows with the rows split across the threads, whole sequences per thread, each
  /// thread running the complete layer stack on its share single-threaded: one hand-off per
  /// call instead of several per layer. Rows are independent and every kernel is row-local,
  /// so the split changes no bit. Small calls run on the calling thread's engine as is.
  func forwardRowsSplit(_ rows: [(Int, Int)], tokens: [Int32], cache: KVCache, maxLen: Int) -> (x: FloatBuffer, experts: [[Int32]]) {
    let parts = compute.threads
    guard parts > 1, rows.count >= 64 else { return forwardRows(rows, tokens: tokens, cache: cache, maxLen: maxLen, on: compute) }
    // cut points at sequence boundaries, near equal row counts
    var cuts = [0]
    for p in 1..<parts {
      var cut = rows.count * p / parts
      while cut < rows.count && cut > 0 && rows[cut].0 == rows[cut - 1].0 { cut += 1 }
      cuts.append(max(cut, cuts.last!))
    }
    cuts.append(rows.count)
    let one = compute.single
    let results = UnsafeMutablePointer<(x: FloatBuffer, experts: [[Int32]])?>.allocate(capacity: parts)
    results.initialize(repeating: nil, count: parts)
    defer { results.deinitialize(count: parts); results.deallocate() }
    compute.forEach(parts) { p in
      let lo = cuts[p], hi = cuts[p + 1]
      guard lo < hi else { return }
      results[p] = forwardRows(Array(rows[lo..<hi]), tokens: Array(tokens[lo..<hi]), cache: cache, maxLen: maxLen, on: one)
    }
    let C = config.hiddenSize
    let x = FloatBuffer(uninitialized: rows.count * C)
    var experts: [[Int32]] = []
    for p in 0..<parts {
      guard let r = results[p] else { continue }
      (x.p + cuts[p] * C).update(from: r.x.p, count: (cuts[p + 1] - cuts[p]) * C)
      if experts.isEmpty { experts = r.experts } else { for l in experts.indices { experts[l] += r.experts[l] } }
    }
    return (x, experts)
  }

  /// The whole layer stack for a set of (sequence, position) rows whose earlier positions are
  /// already in the cache (rows of one sequence in increasing position order). Writes each
  /// row's K and V into the cache, then attends. Returns the final hidden state per row and
  /// the experts chosen per MoE layer ([row * k + slot]).
  func forwardRows(_ rows: [(Int, Int)], tokens: [Int32], cache: KVCache, maxLen: Int, on engine: Compute) -> (x: FloatBuffer, experts: [[Int32]]) {
    let c = config, L = weights.layout
    let C = c.hiddenSize, H = c.numAttentionHeads, KV = c.numKeyValueHeads, D = c.headDim
    let kvStride = KV * D
    let M = rows.count
    let positions = Buffer<Int32>(M)
    var x = FloatBuffer(uninitialized: M * C)
    for (i, (_, pos)) in rows.enumerated() {
      positions[i] = Int32(pos)
      (x.p + i * C).update(from: weights.w(L.embed) + Int(tokens[i]) * C, count: C)
    }
    var experts: [[Int32]] = []
    for (l, slots) in L.layers.enumerated() {
      let normed = FloatBuffer(uninitialized: M * C)
      kk_rmsnorm_forward(normed.p, nil, x.p, weights.w(slots.inputNorm), Int64(M), Int64(C), c.rmsNormEps)
      round(normed.p, M * C)
      let q = FloatBuffer(uninitialized: M * H * D), kk = FloatBuffer(uninitialized: M * kvStride), v = FloatBuffer(uninitialized: M * kvStride)
      matmul(q.p, normed.p, slots.q, M: M, N: H * D, K: C, on: engine)
      matmul(kk.p, normed.p, slots.k, M: M, N: kvStride, K: C, on: engine)
      matmul(v.p, normed.p, slots.v, M: M, N: kvStride, K: C, on: engine)
      let qn = FloatBuffer(uninitialized: M * H * D), kn = FloatBuffer(uninitialized: M * kvStride)
      kk_rmsnorm_forward(qn.p, nil, q.p, weights.w(slots.qNorm), Int64(M * H), Int64(D), c.rmsNormEps)
      kk_rmsnorm_forward(kn.p, nil, kk.p, weights.w(slots.kNorm), Int64(M * KV), Int64(D), c.rmsNormEps)
      round(qn.p, M * H * D); round(kn.p, M * kvStride)
      kk_rope_forward_table(qn.p, positions.p, ropeCos.p, ropeSin.p, Int64(M), Int32(H), Int32(D))
      kk_rope_forward_table(kn.p, positions.p, ropeCos.p, ropeSin.p, Int64(M), Int32(KV), Int32(D))
      round(qn.p, M * H * D); round(kn.p, M * kvStride)
      let att = FloatBuffer(uninitialized: M * H * D)
      for (i, (b, pos)) in rows.enumerated() {  // every row's K and V first, then attention
        cache.store(layer: l, at: (b * maxLen + pos) * kvStride, k: kn.p + i * kvStride, v: v.p + i * kvStride, count: kvStride)
      }
      attend(att, queries: qn, rows: rows, cache: cache, layer: l, maxLen: maxLen, on: engine)
      round(att.p, M * H * D)
      let h1 = FloatBuffer(uninitialized: M * C)
      matmul(h1.p, att.p, slots.o, M: M, N: C, K: H * D, on: engine)
      for i in 0..<(M * C) { h1.p[i] += x.p[i] }
      round(h1.p, M * C)
      let normed2 = FloatBuffer(uninitialized: M * C)
      kk_rmsnorm_forward(normed2.p, nil, h1.p, weights.w(slots.postNorm), Int64(M), Int64(C), c.rmsNormEps)
      round(normed2.p, M * C)
      let out = FloatBuffer(uninitialized: M * C)
      if slots.isSparse {
        experts.append(moe(out: out, normed: normed2, slots: slots, M: M, on: engine))
      } else {
        dense(out: out, normed: normed2, slots: slots, M: M, on: engine)
      }
      for i in 0..<(M * C) { out.p[i] += h1.p[i] }
      round(out.p, M * C)
      x = out
    }
    return (x, experts)
  }

  /// Causal attention of each row's queries (queries (M, H·D) → att (M, H·D)) over its
  /// sequence's cached K and V at positions 0…pos of layer `layer`.
  func attend(_ att: FloatBuffer, queries qn: FloatBuffer, rows: [(Int, Int)], cache: KVCache, layer l: Int, maxLen: Int,
              on engine: Compute) {
    let H = config.numAttentionHeads, KV = config.numKeyValueHeads, D = config.headDim
    let kvStride = KV * D, scale = 1 / Float(D).squareRoot()
    engine.parallelRanges(rows.count, grain: 8) { lo, hi in
      // A float cache is read in place. A 16-bit cache is widened into float scratch
      // (maxLen · KV·D floats for K and for V: 32 KB each at the bench shapes, so it stays in
      // L1/L2) and the same row kernel runs on it — same values, same bits. A decode step
      // widens a row's whole prefix (the bytes the float cache would have read anyway, read
      // at half the size); within one range, rows of one sequence come in increasing position
      // order (prefill), so each widens only the positions not yet widened.
      let scratch = cache.format == .fp32 ? nil
        : (k: FloatBuffer(uninitialized: maxLen * kvStride), v: FloatBuffer(uninitialized: maxLen * kvStride))
      var widenedSequence = -1, widened = 0
      for i in lo..<hi {
        let (b, pos) = rows[i], base = (b * maxLen) * kvStride
        let keys: UnsafePointer<Float>, values: UnsafePointer<Float>
        if let scratch {
          if b != widenedSequence { widenedSequence = b; widened = 0 }
          if widened < pos + 1 {
            cache.load(layer: l, at: base + widened * kvStride, count: (pos + 1 - widened) * kvStride,
                       k: scratch.k.p + widened * kvStride, v: scratch.v.p + widened * kvStride)
            widened = pos + 1
          }
          (keys, values) = (UnsafePointer(scratch.k.p), UnsafePointer(scratch.v.p))
        } else {
          (keys, values) = (UnsafePointer(cache.k[l].p + base), UnsafePointer(cache.v[l].p + base))
        }
        kk_attention_row_forward(att.p + i * H * D, nil, qn.p + i * H * D, keys, values,
                                 Int64(kvStride), Int64(pos + 1), Int32(H), Int32(KV), Int32(D), scale)
      }
    }
  }

  func dense(out: FloatBuffer, normed: FloatBuffer, slots: LayerSlots, M: Int, on engine: Compute) {
    let C = config.hiddenSize, F = config.intermediateSize
    let g = FloatBuffer(uninitialized: M * F), u = FloatBuffer(uninitialized: M * F), act = FloatBuffer(uninitialized: M * F)
    matmul(g.p, normed.p, slots.gate!, M: M, N: F, K: C, on: engine)
    matmul(u.p, normed.p, slots.up!, M: M, N: F, K: C, on: engine)
    kk_swiglu_forward(act.p, g.p, u.p, Int64(M), Int64(F))
    round(act.p, M * F)
    matmul(out.p, act.p, slots.down!, M: M, N: C, K: F, on: engine)
  }

  /// MoE FFN for M rows; returns the experts chosen [M * k].
  func moe(out: FloatBuffer, normed: FloatBuffer, slots: LayerSlots, M: Int, on engine: Compute) -> [Int32] {
    let c = config
    let C = c.hiddenSize, E = c.numExperts, k = c.numExpertsPerTok, F = c.moeIntermediateSize
    let logits = FloatBuffer(uninitialized: M * E), probs = FloatBuffer(uninitialized: M * E), gates = FloatBuffer(uninitialized: M * k)
    let experts = Buffer<Int32>(uninitialized: M * k)
    matmul(logits.p, normed.p, slots.router!, M: M, N: E, K: C, on: engine)
    kk_router_forward(experts.p, gates.p, probs.p, logits.p, nil, Int64(M), Int32(E), Int32(k), c.normTopkProb ? 1 : 0)
    round(gates.p, M * k)
    var rows = [[Int]](repeating: [], count: E)
    for i in 0..<(M * k) { rows[Int(experts[i])].append(i) }
    let Y = FloatBuffer(uninitialized: M * k * C)
    // experts in parallel, each on one thread, each writing only its own rows of Y
    let one = engine.single
    engine.forEach(E) { e in
      let n = rows[e].count
      guard n > 0 else { return }
      let x = FloatBuffer(uninitialized: n * C), g = FloatBuffer(uninitialized: n * F), u = FloatBuffer(uninitialized: n * F), act = FloatBuffer(uninitialized: n * F), y = FloatBuffer(uninitialized: n * C)
      for (j, entry) in rows[e].enumerated() { (x.p + j * C).update(from: normed.p + (entry / k) * C, count: C) }
      matmul(g.p, x.p, slots.expertGate[e], M: n, N: F, K: C, on: one)
      matmul(u.p, x.p, slots.expertUp[e], M: n, N: F, K: C, on: one)
      kk_swiglu_forward(act.p, g.p, u.p, Int64(n), Int64(F))
      round(act.p, n * F)
      matmul(y.p, act.p, slots.expertDown[e], M: n, N: C, K: F, on: one)
      for (j, entry) in rows[e].enumerated() { (Y.p + entry * C).update(from: y.p + j * C, count: C) }
    }
    moeCombine(out.p, Y.p, gates.p, rows: 0..<M, k: k, C: C)
    round(out.p, M * C)
    return experts.array
  }

  /// Append each row's experts ([row * k + slot] per MoE layer) to its sequence's routing record.
  func record(_ experts: [[Int32]], rows sequences: [Int], into results: inout [SampleResult]) {
    let k = config.isMoE ? config.numExpertsPerTok : 0
    for (i, b) in sequences.enumerated() {
      for l in experts.indices { results[b].routing[l].append(contentsOf: experts[l][(i * k)..<((i + 1) * k)]) }
    }
  }

  /// Entropy of a distribution given as a full row of log-probabilities (float64 sum).
  static func entropy(logprobs: UnsafePointer<Float>, V: Int) -> Float {
    var h = 0.0
    for j in 0..<V { let l = Double(logprobs[j]); h -= exp(l) * l }
    return Float(h)
  }

  /// Draw one token from a row of logits; returns it and its log-prob under the distribution drawn from.
  func drawToken(_ logits: UnsafePointer<Float>, V: Int, params: SamplingParams, scratch: UnsafeMutablePointer<Float>, key: UInt64) -> (Int32, Float) {
    if params.temperature <= 0 {
      var best = 0
      for j in 1..<V where logits[j] > logits[best] { best = j }
      _ = kk_logsoftmax_row(scratch, logits, Int64(V), 1)
      return (Int32(best), scratch[best])
    }
    _ = kk_logsoftmax_row(scratch, logits, Int64(V), 1 / params.temperature)
    var rng = CounterRNG(state: key)
    let u = rng.uniform()
    let truncating = params.topK > 0 && params.topK < V || params.topP < 1
    if !truncating {
      // inverse CDF in token order, in double
      var cumulative = 0.0
      var chosen = V - 1
      for j in 0..<V {
        cumulative += Double(_expf(scratch[j]))
        if u < cumulative { chosen = j; break }
      }
      return (Int32(chosen), scratch[chosen])
    }
    // Truncated: keep the top-k, then the smallest prefix with mass ≥ top-p; renormalise.
    var order = Array(0..<V)
    order.sort { scratch[$0] != scratch[$1] ? scratch[$0] > scratch[$1] : $0 < $1 }
    if params.topK > 0 { order = Array(order.prefix(params.topK)) }
    var kept: [Int] = []
    var mass = 0.0
    for j in order {
      kept.append(j)
      mass += Double(_expf(scratch[j]))
      if mass >= Double(params.topP) { break }
    }
    var cumulative = 0.0
    var chosen = kept.last!
    for j in kept {
      cumulative += Double(_expf(scratch[j])) / mass
      if u < cumulative { chosen = j; break }
    }
    return (Int32(chosen), Float(Double(scratch[chosen]) - _logd(mass)))
  }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _expf(_ x: Float) -> Float { Glibc.expf(x) }
@inline(__always) func _logd(_ x: Double) -> Double { Glibc.log(x) }
#endif
