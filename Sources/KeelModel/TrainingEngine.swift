// TrainingEngine.swift — the training engine: forward over a packed batch of sequences
// (returning log π of the given next tokens at a temperature, and the full-vocabulary entropy
// there), and backward from ∂loss/∂logp per scored token into the flat gradient buffer.
// MoE routing can be recorded, or replayed from given expert indices (R2/R3). One call of
// `forward` handles one micro-batch; the caller accumulates gradients over micro-batches.
//
// Shapes: R tokens in the micro-batch (all positions of all its sequences), C hidden,
// H/KV heads, D head_dim, F FFN width, E experts, k experts per token, S scored positions.
import KeelKernels

/// Sequences packed back to back. Position t of a sequence predicts token t+1; the scored
/// positions of sequence s are scoreFrom[s]-1 … len-2, i.e. targets tokens[scoreFrom[s]…].
public struct SequenceBatch: Sendable {
  public var tokens: [Int32]
  public var offsets: [Int]
  /// Per sequence: index (within the sequence, ≥ 1) of the first token whose log-prob is returned.
  public var scoreFrom: [Int]

  public init(sequences: [[Int32]], scoreFrom: [Int]) {
    precondition(sequences.count == scoreFrom.count)
    tokens = sequences.flatMap { $0 }
    var o = [0]
    for s in sequences { o.append(o.last! + s.count) }
    offsets = o
    self.scoreFrom = scoreFrom
  }
  public var count: Int { offsets.count - 1 }
  public func length(_ s: Int) -> Int { offsets[s + 1] - offsets[s] }
  /// Scored tokens of sequence s.
  public func scoredCount(_ s: Int) -> Int { max(0, length(s) - scoreFrom[s]) }
  public var totalScored: Int { (0..<count).reduce(0) { $0 + scoredCount($1) } }
}

/// Expert indices per MoE layer: experts[sparseLayer][token * k + slot], tokens in batch order.
public struct RoutingRecord: Sendable, Equatable {
  public var experts: [[Int32]]
  public init(experts: [[Int32]]) { self.experts = experts }
}

public enum RoutingMode: Sendable {
  case natural
  /// Force these experts (gates still from the live router logits, renormalised over them).
  case replay(RoutingRecord)
}

public struct ForwardOutput: @unchecked Sendable {
  /// log π(target) at each scored position, sequence by sequence.
  public var logp: [Float]
  /// Entropy of the full next-token distribution at each scored position.
  public var entropy: [Float]
  /// The experts actually used per MoE layer (natural or replayed).
  public var routing: RoutingRecord
  /// Router load-balancing loss summed over MoE layers (0 for dense).
  public var auxLoss: Float
  /// Saved activations for `backward` (nil unless requested).
  public var saved: SavedActivations?
  /// log π(v | prefix) at the temperature for every scored position and every v, (S, V)
  /// row-major (nil unless `logProbRows`): what a frozen reference or teacher contributes to
  /// a full-vocabulary KL.
  public var logProbRows: [Float]? = nil
}

/// Everything the backward pass needs from one forward.
public final class SavedActivations: @unchecked Sendable {
  let batch: SequenceBatch
  let R: Int, S: Int
  let positions: Buffer<Int32>
  let scoredRows: [Int]
  let targets: Buffer<Int32>
  let inverseTemperature: Float
  var layers: [LayerActivations] = []
  let hiddenFinal: FloatBuffer   // [R,C] residual after the last layer
  let finalNormed: FloatBuffer   // [S,C]
  let finalRstd: FloatBuffer     // [S]
  let logits: FloatBuffer        // [S,V]
  let lse: FloatBuffer           // [S]
  let entropy: FloatBuffer       // [S] at the temperature (the distribution-term backward needs it)
  init(batch: SequenceBatch, R: Int, S: Int, C: Int, V: Int, positions: Buffer<Int32>, scoredRows: [Int],
       targets: Buffer<Int32>, inverseTemperature: Float) {
    self.batch = batch
    self.R = R
    self.S = S
    self.positions = positions
    self.scoredRows = scoredRows
    self.targets = targets
    self.inverseTemperature = inverseTemperature
    hiddenFinal = FloatBuffer(uninitialized: R * C)
    finalNormed = FloatBuffer(uninitialized: S * C)
    finalRstd = FloatBuffer(uninitialized: S)
    logits = FloatBuffer(uninitialized: S * V)
    lse = FloatBuffer(uninitialized: S)
    entropy = FloatBuffer(uninitialized: S)
  }
  /// Scored positions and vocabulary size.
  public var scored: Int { S }
}

final class LayerActivations {
  let input, normed1, rstd1, q, k, v, qn, kn, rstdQ, rstdK, att, lse, hidden1, normed2, rstd2: FloatBuffer
  // dense
  var gate, up, act: FloatBuffer?
  // MoE
  var probs, gates, expertOut: FloatBuffer?
  var experts: Buffer<Int32>?
  var expertRows: [[Int32]] = []          // per expert: the (token*k + slot) entries routed to it
  var expertGate: [FloatBuffer] = [], expertUp: [FloatBuffer] = [], expertAct: [FloatBuffer] = []
  init(R: Int, C: Int, H: Int, KV: Int, D: Int) {
    input = FloatBuffer(uninitialized: R * C); normed1 = FloatBuffer(uninitialized: R * C); rstd1 = FloatBuffer(uninitialized: R)
    q = FloatBuffer(uninitialized: R * H * D); k = FloatBuffer(uninitialized: R * KV * D); v = FloatBuffer(uninitialized: R * KV * D)
    qn = FloatBuffer(uninitialized: R * H * D); kn = FloatBuffer(uninitialized: R * KV * D)
    rstdQ = FloatBuffer(uninitialized: R * H); rstdK = FloatBuffer(uninitialized: R * KV)
    att = FloatBuffer(uninitialized: R * H * D); lse = FloatBuffer(uninitialized: R * H)
    hidden1 = FloatBuffer(uninitialized: R * C); normed2 = FloatBuffer(uninitialized: R * C); rstd2 = FloatBuffer(uninitialized: R)
  }
}

public final class TrainingEngine: @unchecked Sendable {
  public let store: ParameterStore
  public var compute: Compute
  /// ∂loss/∂θ, accumulated by `backward` (same layout as the parameters).
  public let grads: FloatBuffer
  /// RoPE tables for positions < maxPositionEmbeddings.
  let ropeCos: FloatBuffer, ropeSin: FloatBuffer
  public var config: ModelConfig { store.layout.config }

  public init(store: ParameterStore, compute: Compute = Compute()) {
    self.store = store
    self.compute = compute
    grads = FloatBuffer(store.layout.count)
    let c = store.layout.config
    ropeCos = FloatBuffer(c.maxPositionEmbeddings * c.headDim / 2)
    ropeSin = FloatBuffer(c.maxPositionEmbeddings * c.headDim / 2)
    kk_rope_table(ropeCos.p, ropeSin.p, Int64(c.maxPositionEmbeddings), Int32(c.headDim), c.ropeTheta)
  }

  public func zeroGrads() { grads.zero() }

  // MARK: forward

  public func forward(_ batch: SequenceBatch, temperature: Float = 1, routing: RoutingMode = .natural,
                      save: Bool = false, auxLossCoef: Float = 0, logProbRows: Bool = false) -> ForwardOutput {
    let c = config, L = store.layout
    let C = c.hiddenSize, H = c.numAttentionHeads, KV = c.numKeyValueHeads, D = c.headDim, V = c.vocabSize
    let R = batch.tokens.count
    // the sequences tile the rows 0..<R (every row's activations are written by its sequence)
    precondition(batch.offsets.first == 0 && batch.offsets.last == R && zip(batch.offsets, batch.offsets.dropFirst()).allSatisfy { $0 <= $1 },
                 "SequenceBatch.offsets must run from 0 to the token count without decreasing")
    let (positions, scoredRows, targetList) = scoring(batch)
    let S = scoredRows.count
    let targets = Buffer<Int32>(targetList)
    let saved = save ? SavedActivations(batch: batch, R: R, S: S, C: C, V: V, positions: positions,
                                        scoredRows: scoredRows, targets: targets, inverseTemperature: 1 / temperature) : nil
    // embedding
    var h = FloatBuffer(uninitialized: R * C)
    for r in 0..<R {
      let tok = Int(batch.tokens[r])
      precondition(tok >= 0 && tok < V, "token id \(tok) outside the vocabulary (\(V))")
      (h.p + r * C).update(from: store.w(L.embed) + tok * C, count: C)
    }
    var routingOut: [[Int32]] = []
    var aux: Float = 0
    var sparseIndex = 0
    for (l, slots) in L.layers.enumerated() {
      let acts = LayerActivations(R: R, C: C, H: H, KV: KV, D: D)
      acts.input.copy(from: h)
      attentionBlock(acts, slots: slots, batch: batch, positions: positions, R: R)
      // h1 = h + att·Woᵀ
      let h1 = acts.hidden1
      compute.matmul(h1.p, acts.att.p, w: store.w(slots.o), wt: store.wt(slots.o), M: R, N: C, K: H * D)
      for i in 0..<(R * C) { h1.p[i] += h.p[i] }
      kk_rmsnorm_forward(acts.normed2.p, acts.rstd2.p, h1.p, store.w(slots.postNorm), Int64(R), Int64(C), c.rmsNormEps)
      let out = FloatBuffer(uninitialized: R * C)
      if slots.isSparse {
        var forced: [Int32]? = nil
        if case .replay(let rec) = routing {
          precondition(rec.experts.count > sparseIndex && rec.experts[sparseIndex].count == R * c.numExpertsPerTok,
                       "routing replay: layer \(l) needs \(R * c.numExpertsPerTok) expert ids")
          forced = rec.experts[sparseIndex]
        }
        aux += moeForward(acts, out: out, slots: slots, R: R, forced: forced, auxLossCoef: auxLossCoef)
        routingOut.append(acts.experts!.array)
        sparseIndex += 1
      } else {
        denseForward(acts, out: out, slots: slots, R: R)
      }
      // h2 = h1 + ffn
      for i in 0..<(R * C) { out.p[i] += h1.p[i] }
      h = out
      saved?.layers.append(acts)
      _ = l
    }
    let (logp, entropy, logits) = head(h, rows: scoredRows, targets: targets, temperature: temperature, saved: saved)
    if let saved { saved.hiddenFinal.copy(from: h); saved.entropy.copy(from: entropy) }
    var rows: [Float]? = nil
    if logProbRows {
      var out = [Float](repeating: 0, count: S * V)
      out.withUnsafeMutableBufferPointer { o in
        let base = o.baseAddress!
        compute.parallelRanges(S, grain: 16) { lo, hi in
          for r in lo..<hi { _ = kk_logsoftmax_row(base + r * V, logits.p + r * V, Int64(V), 1 / temperature) }
        }
      }
      rows = out
    }
    return ForwardOutput(logp: logp.array, entropy: entropy.array, routing: RoutingRecord(experts: routingOut),
                         auxLoss: aux, saved: saved, logProbRows: rows)
  }

  /// Each row's position in its sequence (rows, in: the batch), and the rows whose next token is
  /// scored, with that token (the target).
  func scoring(_ batch: SequenceBatch) -> (positions: Buffer<Int32>, rows: [Int], targets: [Int32]) {
    let positions = Buffer<Int32>(batch.tokens.count)
    var rows: [Int] = [], targets: [Int32] = []
    for s in 0..<batch.count {
      let lo = batch.offsets[s], n = batch.length(s)
      precondition(n <= config.maxPositionEmbeddings, "sequence \(s) has \(n) tokens > max_position_embeddings \(config.maxPositionEmbeddings)")
      for t in 0..<n { positions[lo + t] = Int32(t) }
      if n > batch.scoreFrom[s] {
        for t in batch.scoreFrom[s]..<n {
          rows.append(lo + t - 1)
          targets.append(batch.tokens[lo + t])
        }
      }
    }
    return (positions, rows, targets)
  }

  /// Final norm and LM head at the scored rows only (h (R, C) → logits (S, V)), then log p of
  /// each target at the temperature (logp (S)) and the entropy of each row's distribution (S).
  /// With `saved`, the normed rows, their rstd, the logits and the log-sum-exps are kept there.
  func head(_ h: FloatBuffer, rows: [Int], targets: Buffer<Int32>, temperature: Float, saved: SavedActivations?)
    -> (logp: FloatBuffer, entropy: FloatBuffer, logits: FloatBuffer) {
    let C = config.hiddenSize, V = config.vocabSize, S = rows.count, L = store.layout
    let hs = FloatBuffer(uninitialized: S * C)
    for (i, r) in rows.enumerated() { (hs.p + i * C).update(from: h.p + r * C, count: C) }
    let normed = saved?.finalNormed ?? FloatBuffer(uninitialized: S * C)
    let rstd = saved?.finalRstd ?? FloatBuffer(uninitialized: S)
    kk_rmsnorm_forward(normed.p, rstd.p, hs.p, store.w(L.finalNorm), Int64(S), Int64(C), config.rmsNormEps)
    let logits = saved?.logits ?? FloatBuffer(uninitialized: S * V)
    compute.matmul(logits.p, normed.p, w: store.w(L.lmHead), wt: store.wt(L.lmHead), M: S, N: V, K: C)
    let logp = FloatBuffer(uninitialized: S), entropy = FloatBuffer(uninitialized: S)
    let lse = saved?.lse ?? FloatBuffer(uninitialized: S)
    compute.parallelRanges(S, grain: 16) { lo, hi in
      kk_logprob_entropy_forward(logp.p + lo, entropy.p + lo, lse.p + lo, logits.p + lo * V, targets.p + lo,
                                 Int64(hi - lo), Int64(V), 1 / temperature)
    }
    return (logp, entropy, logits)
  }

  /// q/k/v projections, q/k RMSNorm, RoPE, causal attention → acts.att.
  func attentionBlock(_ a: LayerActivations, slots: LayerSlots, batch: SequenceBatch, positions: Buffer<Int32>, R: Int) {
    let c = config
    let C = c.hiddenSize, H = c.numAttentionHeads, KV = c.numKeyValueHeads, D = c.headDim
    kk_rmsnorm_forward(a.normed1.p, a.rstd1.p, a.input.p, store.w(slots.inputNorm), Int64(R), Int64(C), c.rmsNormEps)
    compute.matmul(a.q.p, a.normed1.p, w: store.w(slots.q), wt: store.wt(slots.q), M: R, N: H * D, K: C)
    compute.matmul(a.k.p, a.normed1.p, w: store.w(slots.k), wt: store.wt(slots.k), M: R, N: KV * D, K: C)
    compute.matmul(a.v.p, a.normed1.p, w: store.w(slots.v), wt: store.wt(slots.v), M: R, N: KV * D, K: C)
    kk_rmsnorm_forward(a.qn.p, a.rstdQ.p, a.q.p, store.w(slots.qNorm), Int64(R * H), Int64(D), c.rmsNormEps)
    kk_rmsnorm_forward(a.kn.p, a.rstdK.p, a.k.p, store.w(slots.kNorm), Int64(R * KV), Int64(D), c.rmsNormEps)
    kk_rope_forward_table(a.qn.p, positions.p, ropeCos.p, ropeSin.p, Int64(R), Int32(H), Int32(D))
    kk_rope_forward_table(a.kn.p, positions.p, ropeCos.p, ropeSin.p, Int64(R), Int32(KV), Int32(D))
    let scale = 1 / Float(D).squareRoot()
    compute.parallelRanges(batch.count) { lo, hi in
      for s in lo..<hi {
        let o = batch.offsets[s], T = batch.length(s)
        kk_attention_forward(a.att.p + o * H * D, a.lse.p + o * H, a.qn.p + o * H * D, a.kn.p + o * KV * D,
                             a.v.p + o * KV * D, Int64(T), Int32(H), Int32(KV), Int32(D), scale)
      }
    }
  }

  func denseForward(_ a: LayerActivations, out: FloatBuffer, slots: LayerSlots, R: Int) {
    let C = config.hiddenSize, F = config.intermediateSize
    let g = FloatBuffer(uninitialized: R * F), u = FloatBuffer(uninitialized: R * F), act = FloatBuffer(uninitialized: R * F)
    compute.matmul(g.p, a.normed2.p, w: store.w(slots.gate!), wt: store.wt(slots.gate!), M: R, N: F, K: C)
    compute.matmul(u.p, a.normed2.p, w: store.w(slots.up!), wt: store.wt(slots.up!), M: R, N: F, K: C)
    compute.parallelRanges(R, grain: 64) { lo, hi in
      kk_swiglu_forward(act.p + lo * F, g.p + lo * F, u.p + lo * F, Int64(hi - lo), Int64(F))
    }
    compute.matmul(out.p, act.p, w: store.w(slots.down!), wt: store.wt(slots.down!), M: R, N: C, K: F)
    a.gate = g; a.up = u; a.act = act
  }

  /// Router, top-k (or replay), experts on gathered rows, gate-weighted sum in slot order.
  func moeForward(_ a: LayerActivations, out: FloatBuffer, slots: LayerSlots, R: Int, forced: [Int32]?, auxLossCoef: Float) -> Float {
    let c = config
    let C = c.hiddenSize, E = c.numExperts, k = c.numExpertsPerTok, F = c.moeIntermediateSize
    let logits = FloatBuffer(uninitialized: R * E), probs = FloatBuffer(uninitialized: R * E), gates = FloatBuffer(uninitialized: R * k)
    let experts = Buffer<Int32>(uninitialized: R * k)
    compute.matmul(logits.p, a.normed2.p, w: store.w(slots.router!), wt: store.wt(slots.router!), M: R, N: E, K: C)
    if let forced {
      forced.withUnsafeBufferPointer {
        kk_router_forward(experts.p, gates.p, probs.p, logits.p, $0.baseAddress, Int64(R), Int32(E), Int32(k), c.normTopkProb ? 1 : 0)
      }
    } else {
      kk_router_forward(experts.p, gates.p, probs.p, logits.p, nil, Int64(R), Int32(E), Int32(k), c.normTopkProb ? 1 : 0)
    }
    let aux = auxLossCoef > 0 ? kk_router_aux_loss(nil, probs.p, experts.p, Int64(R), Int32(E), Int32(k), auxLossCoef) : 0
    // Group (token, slot) entries by expert, in token order.
    var rows = [[Int32]](repeating: [], count: E)
    for i in 0..<(R * k) { rows[Int(experts[i])].append(Int32(i)) }
    let expertOut = FloatBuffer(uninitialized: R * k * C)  // Y[token, slot, :]
    a.expertGate = rows.map { FloatBuffer(uninitialized: $0.count * F) }
    a.expertUp = rows.map { FloatBuffer(uninitialized: $0.count * F) }
    a.expertAct = rows.map { FloatBuffer(uninitialized: $0.count * F) }
    // experts in parallel (each on one thread): each writes only its own buffers and Y rows
    let one = compute.single
    compute.forEach(E) { e in
      let n = rows[e].count
      guard n > 0 else { return }
      let x = FloatBuffer(uninitialized: n * C), y = FloatBuffer(uninitialized: n * C)
      let g = a.expertGate[e], u = a.expertUp[e], act = a.expertAct[e]
      for (j, entry) in rows[e].enumerated() {
        (x.p + j * C).update(from: a.normed2.p + (Int(entry) / k) * C, count: C)
      }
      one.matmul(g.p, x.p, w: store.w(slots.expertGate[e]), wt: store.wt(slots.expertGate[e]), M: n, N: F, K: C)
      one.matmul(u.p, x.p, w: store.w(slots.expertUp[e]), wt: store.wt(slots.expertUp[e]), M: n, N: F, K: C)
      kk_swiglu_forward(act.p, g.p, u.p, Int64(n), Int64(F))
      one.matmul(y.p, act.p, w: store.w(slots.expertDown[e]), wt: store.wt(slots.expertDown[e]), M: n, N: C, K: F)
      for (j, entry) in rows[e].enumerated() {
        (expertOut.p + Int(entry) * C).update(from: y.p + j * C, count: C)
      }
    }
    compute.parallelRanges(R, grain: 16) { lo, hi in
      moeCombine(out.p, expertOut.p, gates.p, rows: lo..<hi, k: k, C: C)
    }
    a.probs = probs; a.gates = gates; a.experts = experts; a.expertOut = expertOut; a.expertRows = rows
    return aux
  }
}

/// out[r] = Σ_slot gate[r,slot] · Y[r,slot,:], one FMA chain per element in slot order
/// (kk_moe_combine) — shared by the training engine and the sampler so both sum experts identically.
@inline(__always) func moeCombine(_ out: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, _ gates: UnsafePointer<Float>,
                                  rows: Range<Int>, k: Int, C: Int) {
  guard !rows.isEmpty else { return }
  kk_moe_combine(out + rows.lowerBound * C, y + rows.lowerBound * k * C, gates + rows.lowerBound * k,
                 Int64(rows.count), Int32(k), Int64(C))
}
