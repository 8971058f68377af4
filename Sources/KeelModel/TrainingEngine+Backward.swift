// TrainingEngine+Backward.swift — backward from ∂loss/∂logp (one value per scored token, as
// objective plugins return it; cross-entropy for supervised cold start is dlogp = −1/N) and,
// for ABI 1.1 objectives, from the gradients of distribution terms (entropy, full-vocabulary
// KL to a frozen distribution, the tempered logits themselves), all chained at the LM head,
// through every block and the embedding, ACCUMULATING into `grads`.
// The router's gradient flows through the gates (renormalised over the experts used, natural
// or replayed) and, if requested, through the load-balancing loss.
import KeelKernels

/// Gradients of per-position distribution terms, chained at the LM head (all optional).
public struct DistributionGradients: Sendable {
  /// ∂loss/∂H per scored position (H = the entropy at the training temperature).
  public var entropy: [Float]?
  /// KL(π_θ ‖ q) terms: q as log-prob rows (S, V), the KL values the loss saw, ∂loss/∂KL.
  public var kl: [(logq: [Float], value: [Float], grad: [Float])]
  /// ∂loss/∂z, z = logits / T, (S, V).
  public var logits: [Float]?
  public init(entropy: [Float]? = nil, kl: [(logq: [Float], value: [Float], grad: [Float])] = [], logits: [Float]? = nil) {
    self.entropy = entropy
    self.kl = kl
    self.logits = logits
  }
  public var isEmpty: Bool { entropy == nil && kl.isEmpty && logits == nil }
}

extension TrainingEngine {
  /// KL(π_θ ‖ q) at every scored position of a saved forward; q as log-prob rows (S, V).
  public func kl(_ saved: SavedActivations, logq: [Float]) -> [Float] {
    let S = saved.S, V = config.vocabSize
    precondition(logq.count == S * V, "logq has \(logq.count) entries for \(S) positions × \(V)")
    var out = [Float](repeating: 0, count: S)
    out.withUnsafeMutableBufferPointer { o in
      logq.withUnsafeBufferPointer { q in
        let ob = o.baseAddress!, qb = q.baseAddress!
        compute.parallelRanges(S, grain: 16) { lo, hi in
          kk_kl_forward(ob + lo, saved.logits.p + lo * V, saved.lse.p + lo, qb + lo * V, Int64(hi - lo), Int64(V), saved.inverseTemperature)
        }
      }
    }
    return out
  }

  /// The entropy at every scored position of a saved forward (as the forward returned it).
  public func entropy(_ saved: SavedActivations) -> [Float] { saved.entropy.array }

  /// z = logits / T at every scored position of a saved forward, (S, V).
  public func scaledLogits(_ saved: SavedActivations) -> [Float] {
    let n = saved.S * config.vocabSize, it = saved.inverseTemperature
    return (0..<n).map { saved.logits.p[$0] * it }
  }

  public func backward(_ saved: SavedActivations, dlogp: [Float], distribution: DistributionGradients? = nil, auxLossCoef: Float = 0) {
    let c = config, L = store.layout
    let C = c.hiddenSize, V = c.vocabSize
    let R = saved.R, S = saved.S
    precondition(dlogp.count == S, "dlogp has \(dlogp.count) entries for \(S) scored tokens")
    let g = grads.p
    // LM head: dlogits = dlogp · invT · (onehot − softmax)
    let dlogits = FloatBuffer(S * V)
    let dl = Buffer<Float>(dlogp)
    compute.parallelRanges(S, grain: 16) { lo, hi in
      kk_logprob_backward(dlogits.p + lo * V, dl.p + lo, saved.logits.p + lo * V, saved.targets.p + lo,
                          saved.lse.p + lo, Int64(hi - lo), Int64(V), saved.inverseTemperature)
    }
    if let d = distribution, !d.isEmpty { addDistributionGradients(d, to: dlogits, saved: saved) }
    compute.matmulWeightGrad(g + L.lmHead.offset, dlogits.p, saved.finalNormed.p, M: S, N: V, K: C)
    let dnormed = FloatBuffer(S * C)
    compute.matmulInputGrad(dnormed.p, dlogits.p, w: store.w(L.lmHead), M: S, N: V, K: C)
    let dhs = FloatBuffer(S * C)
    let hs = FloatBuffer(S * C)
    for (i, r) in saved.scoredRows.enumerated() { (hs.p + i * C).update(from: saved.hiddenFinal.p + r * C, count: C) }
    kk_rmsnorm_backward(dhs.p, g + L.finalNorm.offset, dnormed.p, hs.p, store.w(L.finalNorm), saved.finalRstd.p, Int64(S), Int64(C))
    var dh = FloatBuffer(R * C)
    for (i, r) in saved.scoredRows.enumerated() {
      let dst = dh.p + r * C, src = dhs.p + i * C
      for j in 0..<C { dst[j] += src[j] }
    }
    for (l, slots) in L.layers.enumerated().reversed() {
      dh = layerBackward(saved.layers[l], slots: slots, saved: saved, dhOut: dh, auxLossCoef: auxLossCoef)
    }
    // embedding: scatter-add in token order (deterministic)
    for r in 0..<R {
      let dst = g + L.embed.offset + Int(saved.batch.tokens[r]) * C, src = dh.p + r * C
      for j in 0..<C { dst[j] += src[j] }
    }
  }

  /// dlogits (S,V) += the distribution terms' ∂loss/∂logits, row-parallel (rows independent).
  func addDistributionGradients(_ d: DistributionGradients, to dlogits: FloatBuffer, saved: SavedActivations) {
    let S = saved.S, V = config.vocabSize, it = saved.inverseTemperature
    if let de = d.entropy {
      precondition(de.count == S, "∂loss/∂entropy has \(de.count) entries for \(S) positions")
      de.withUnsafeBufferPointer { e in
        let eb = e.baseAddress!
        compute.parallelRanges(S, grain: 16) { lo, hi in
          kk_entropy_backward(dlogits.p + lo * V, eb + lo, saved.logits.p + lo * V, saved.lse.p + lo, saved.entropy.p + lo,
                              Int64(hi - lo), Int64(V), it)
        }
      }
    }
    for term in d.kl {
      precondition(term.grad.count == S && term.value.count == S && term.logq.count == S * V, "KL term shapes do not match \(S) positions")
      term.grad.withUnsafeBufferPointer { gk in
      term.value.withUnsafeBufferPointer { vk in
      term.logq.withUnsafeBufferPointer { q in
        let gb = gk.baseAddress!, vb = vk.baseAddress!, qb = q.baseAddress!
        compute.parallelRanges(S, grain: 16) { lo, hi in
          kk_kl_backward(dlogits.p + lo * V, gb + lo, saved.logits.p + lo * V, saved.lse.p + lo, qb + lo * V, vb + lo,
                         Int64(hi - lo), Int64(V), it)
        }
      }}}
    }
    if let gz = d.logits {
      precondition(gz.count == S * V, "∂loss/∂logits has \(gz.count) entries for \(S) positions × \(V)")
      for i in 0..<(S * V) where gz[i] != 0 { dlogits.p[i] += it * gz[i] }
    }
  }

  /// Backward through one block; returns ∂loss/∂(block input).
  func layerBackward(_ a: LayerActivations, slots: LayerSlots, saved: SavedActivations, dhOut: FloatBuffer, auxLossCoef: Float) -> FloatBuffer {
    let c = config
    let C = c.hiddenSize, H = c.numAttentionHeads, KV = c.numKeyValueHeads, D = c.headDim
    let R = saved.R
    let g = grads.p
    // FFN: h2 = h1 + ffn(normed2)
    let dnormed2 = FloatBuffer(R * C)
    if slots.isSparse {
      moeBackward(a, slots: slots, dOut: dhOut, dNormed: dnormed2, R: R, auxLossCoef: auxLossCoef)
    } else {
      denseBackward(a, slots: slots, dOut: dhOut, dNormed: dnormed2, R: R)
    }
    let dh1 = FloatBuffer(R * C)
    dh1.copy(from: dhOut)
    kk_rmsnorm_backward(dh1.p, g + slots.postNorm.offset, dnormed2.p, a.hidden1.p, store.w(slots.postNorm), a.rstd2.p, Int64(R), Int64(C))
    // attention output projection: h1 = h + att·Woᵀ
    compute.matmulWeightGrad(g + slots.o.offset, dh1.p, a.att.p, M: R, N: C, K: H * D)
    let datt = FloatBuffer(R * H * D)
    compute.matmulInputGrad(datt.p, dh1.p, w: store.w(slots.o), M: R, N: C, K: H * D)
    // attention, per sequence (each sequence's dk/dv region is its own: safe in parallel)
    let dqn = FloatBuffer(R * H * D), dkn = FloatBuffer(R * KV * D), dv = FloatBuffer(R * KV * D)
    let scale = 1 / Float(D).squareRoot()
    let batch = saved.batch
    compute.parallelRanges(batch.count) { lo, hi in
      for s in lo..<hi {
        let o = batch.offsets[s], T = batch.length(s)
        kk_attention_backward(dqn.p + o * H * D, dkn.p + o * KV * D, dv.p + o * KV * D, datt.p + o * H * D,
                              a.qn.p + o * H * D, a.kn.p + o * KV * D, a.v.p + o * KV * D, a.lse.p + o * H,
                              Int64(T), Int32(H), Int32(KV), Int32(D), scale)
      }
    }
    kk_rope_backward_table(dqn.p, saved.positions.p, ropeCos.p, ropeSin.p, Int64(R), Int32(H), Int32(D))
    kk_rope_backward_table(dkn.p, saved.positions.p, ropeCos.p, ropeSin.p, Int64(R), Int32(KV), Int32(D))
    let dq = FloatBuffer(R * H * D), dk = FloatBuffer(R * KV * D)
    kk_rmsnorm_backward(dq.p, g + slots.qNorm.offset, dqn.p, a.q.p, store.w(slots.qNorm), a.rstdQ.p, Int64(R * H), Int64(D))
    kk_rmsnorm_backward(dk.p, g + slots.kNorm.offset, dkn.p, a.k.p, store.w(slots.kNorm), a.rstdK.p, Int64(R * KV), Int64(D))
    compute.matmulWeightGrad(g + slots.q.offset, dq.p, a.normed1.p, M: R, N: H * D, K: C)
    compute.matmulWeightGrad(g + slots.k.offset, dk.p, a.normed1.p, M: R, N: KV * D, K: C)
    compute.matmulWeightGrad(g + slots.v.offset, dv.p, a.normed1.p, M: R, N: KV * D, K: C)
    let dnormed1 = FloatBuffer(R * C)
    compute.matmulInputGrad(dnormed1.p, dq.p, w: store.w(slots.q), M: R, N: H * D, K: C)
    compute.matmulInputGrad(dnormed1.p, dk.p, w: store.w(slots.k), M: R, N: KV * D, K: C)
    compute.matmulInputGrad(dnormed1.p, dv.p, w: store.w(slots.v), M: R, N: KV * D, K: C)
    let dh = dh1  // residual: dh = dh1 + ∂(norm1)/∂h
    kk_rmsnorm_backward(dh.p, g + slots.inputNorm.offset, dnormed1.p, a.input.p, store.w(slots.inputNorm), a.rstd1.p, Int64(R), Int64(C))
    return dh
  }

  func denseBackward(_ a: LayerActivations, slots: LayerSlots, dOut: FloatBuffer, dNormed: FloatBuffer, R: Int) {
    let C = config.hiddenSize, F = config.intermediateSize
    let g = grads.p
    compute.matmulWeightGrad(g + slots.down!.offset, dOut.p, a.act!.p, M: R, N: C, K: F)
    let dact = FloatBuffer(R * F)
    compute.matmulInputGrad(dact.p, dOut.p, w: store.w(slots.down!), M: R, N: C, K: F)
    let dg = FloatBuffer(R * F), du = FloatBuffer(R * F)
    compute.parallelRanges(R, grain: 64) { lo, hi in
      kk_swiglu_backward(dg.p + lo * F, du.p + lo * F, dact.p + lo * F, a.gate!.p + lo * F, a.up!.p + lo * F, Int64(hi - lo), Int64(F))
    }
    compute.matmulWeightGrad(g + slots.gate!.offset, dg.p, a.normed2.p, M: R, N: F, K: C)
    compute.matmulWeightGrad(g + slots.up!.offset, du.p, a.normed2.p, M: R, N: F, K: C)
    compute.matmulInputGrad(dNormed.p, dg.p, w: store.w(slots.gate!), M: R, N: F, K: C)
    compute.matmulInputGrad(dNormed.p, du.p, w: store.w(slots.up!), M: R, N: F, K: C)
  }

  func moeBackward(_ a: LayerActivations, slots: LayerSlots, dOut: FloatBuffer, dNormed: FloatBuffer, R: Int, auxLossCoef: Float) {
    let c = config
    let C = c.hiddenSize, E = c.numExperts, k = c.numExpertsPerTok, F = c.moeIntermediateSize
    let g = grads.p
    let gates = a.gates!, Y = a.expertOut!
    // dgate[r,s] = ⟨dOut[r], Y[r,s]⟩; dY[r,s] = gate[r,s] · dOut[r]
    let dgates = FloatBuffer(uninitialized: R * k)
    kk_moe_gate_grad(dgates.p, dOut.p, Y.p, Int64(R), Int32(k), Int64(C))
    let dX = FloatBuffer(R * k * C)  // ∂/∂(expert input) per (token, slot)
    // experts in parallel (each on one thread): each writes only its own weight gradients
    // and its own (token, slot) rows of dX
    let one = compute.single
    compute.forEach(E) { e in
      let rows = a.expertRows[e]
      let n = rows.count
      guard n > 0 else { return }
      let dy = FloatBuffer(n * C), x = FloatBuffer(n * C)
      for (j, entry) in rows.enumerated() {
        let r = Int(entry) / k, gate = gates[Int(entry)]
        let src = dOut.p + r * C, dst = dy.p + j * C
        for i in 0..<C { dst[i] = gate * src[i] }
        (x.p + j * C).update(from: a.normed2.p + r * C, count: C)
      }
      one.matmulWeightGrad(g + slots.expertDown[e].offset, dy.p, a.expertAct[e].p, M: n, N: C, K: F)
      let dact = FloatBuffer(n * F)
      one.matmulInputGrad(dact.p, dy.p, w: store.w(slots.expertDown[e]), M: n, N: C, K: F)
      let dgt = FloatBuffer(n * F), dup = FloatBuffer(n * F)
      kk_swiglu_backward(dgt.p, dup.p, dact.p, a.expertGate[e].p, a.expertUp[e].p, Int64(n), Int64(F))
      one.matmulWeightGrad(g + slots.expertGate[e].offset, dgt.p, x.p, M: n, N: F, K: C)
      one.matmulWeightGrad(g + slots.expertUp[e].offset, dup.p, x.p, M: n, N: F, K: C)
      let dx = FloatBuffer(n * C)
      one.matmulInputGrad(dx.p, dgt.p, w: store.w(slots.expertGate[e]), M: n, N: F, K: C)
      one.matmulInputGrad(dx.p, dup.p, w: store.w(slots.expertUp[e]), M: n, N: F, K: C)
      for (j, entry) in rows.enumerated() { (dX.p + Int(entry) * C).update(from: dx.p + j * C, count: C) }
    }
    // dNormed[r] = Σ_slot dX[r,slot] (slot order)
    for r in 0..<R {
      let dst = dNormed.p + r * C
      for s in 0..<k {
        let src = dX.p + (r * k + s) * C
        for i in 0..<C { dst[i] += src[i] }
      }
    }
    // router: through the gates (and the load-balancing loss)
    let dlogits = FloatBuffer(R * E)
    kk_router_backward(dlogits.p, dgates.p, a.probs!.p, a.experts!.p, Int64(R), Int32(E), Int32(k), c.normTopkProb ? 1 : 0)
    if auxLossCoef > 0 {
      _ = kk_router_aux_loss(dlogits.p, a.probs!.p, a.experts!.p, Int64(R), Int32(E), Int32(k), auxLossCoef)
    }
    compute.matmulWeightGrad(g + slots.router!.offset, dlogits.p, a.normed2.p, M: R, N: E, K: C)
    compute.matmulInputGrad(dNormed.p, dlogits.p, w: store.w(slots.router!), M: R, N: E, K: C)
  }
}
