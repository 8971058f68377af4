// Parameters.swift — every weight of the policy in ONE flat float32 buffer, addressed by the
// Hugging Face tensor names (shapes [out, in], applied as x · Wᵀ). One buffer means one AdamW
// call, one gradient norm and one checkpoint tensor loop. `Layout` is derived from the config
// alone; `ParameterStore` owns values, and the same layout indexes gradients and Adam moments.

import KeelKernels
import KeelRandom

/// A named tensor inside the flat buffer.
public struct TensorSlot: Sendable, Equatable {
  public let name: String
  public let shape: [Int]
  public let offset: Int
  public var count: Int { shape.reduce(1, *) }
  public var range: Range<Int> { offset..<(offset + count) }
}

/// Where each tensor of one layer lives.
public struct LayerSlots: Sendable {
  public let inputNorm, q, k, v, o, qNorm, kNorm, postNorm: TensorSlot
  /// Dense FFN (nil in sparse layers).
  public let gate, up, down: TensorSlot?
  /// MoE (nil in dense layers): router and per-expert projections.
  public let router: TensorSlot?
  public let expertGate, expertUp, expertDown: [TensorSlot]
  public var isSparse: Bool { router != nil }
}

public struct Layout: Sendable {
  public let config: ModelConfig
  public let tensors: [TensorSlot]
  public let embed: TensorSlot
  public let layers: [LayerSlots]
  public let finalNorm: TensorSlot
  /// The LM head (== embed when tied).
  public let lmHead: TensorSlot
  public let count: Int
  /// Tensors that are matrices applied as x·Wᵀ (the sampler rounds these to fp8 in fp8 mode).
  public let matrices: [TensorSlot]

  public init(_ c: ModelConfig) {
    var tensors: [TensorSlot] = []
    var offset = 0
    func add(_ name: String, _ shape: [Int]) -> TensorSlot {
      let t = TensorSlot(name: name, shape: shape, offset: offset)
      offset += t.count
      tensors.append(t)
      return t
    }
    let C = c.hiddenSize, H = c.numAttentionHeads, KV = c.numKeyValueHeads, D = c.headDim
    embed = add("model.embed_tokens.weight", [c.vocabSize, C])
    var layers: [LayerSlots] = []
    var matrices: [TensorSlot] = []
    for l in 0..<c.numHiddenLayers {
      let p = "model.layers.\(l)."
      let inputNorm = add(p + "input_layernorm.weight", [C])
      let q = add(p + "self_attn.q_proj.weight", [H * D, C])
      let k = add(p + "self_attn.k_proj.weight", [KV * D, C])
      let v = add(p + "self_attn.v_proj.weight", [KV * D, C])
      let o = add(p + "self_attn.o_proj.weight", [C, H * D])
      let qNorm = add(p + "self_attn.q_norm.weight", [D])
      let kNorm = add(p + "self_attn.k_norm.weight", [D])
      let postNorm = add(p + "post_attention_layernorm.weight", [C])
      matrices += [q, k, v, o]
      if c.isSparse(layer: l) {
        let router = add(p + "mlp.gate.weight", [c.numExperts, C])
        var eg: [TensorSlot] = [], eu: [TensorSlot] = [], ed: [TensorSlot] = []
        for e in 0..<c.numExperts {
          eg.append(add(p + "mlp.experts.\(e).gate_proj.weight", [c.moeIntermediateSize, C]))
          eu.append(add(p + "mlp.experts.\(e).up_proj.weight", [c.moeIntermediateSize, C]))
          ed.append(add(p + "mlp.experts.\(e).down_proj.weight", [C, c.moeIntermediateSize]))
        }
        matrices += [router] + eg + eu + ed
        layers.append(LayerSlots(inputNorm: inputNorm, q: q, k: k, v: v, o: o, qNorm: qNorm, kNorm: kNorm,
                                 postNorm: postNorm, gate: nil, up: nil, down: nil, router: router,
                                 expertGate: eg, expertUp: eu, expertDown: ed))
      } else {
        let g = add(p + "mlp.gate_proj.weight", [c.intermediateSize, C])
        let u = add(p + "mlp.up_proj.weight", [c.intermediateSize, C])
        let d = add(p + "mlp.down_proj.weight", [C, c.intermediateSize])
        matrices += [g, u, d]
        layers.append(LayerSlots(inputNorm: inputNorm, q: q, k: k, v: v, o: o, qNorm: qNorm, kNorm: kNorm,
                                 postNorm: postNorm, gate: g, up: u, down: d, router: nil,
                                 expertGate: [], expertUp: [], expertDown: []))
      }
    }
    finalNorm = add("model.norm.weight", [C])
    lmHead = c.tieWordEmbeddings ? embed : add("lm_head.weight", [c.vocabSize, C])
    matrices.append(lmHead)
    self.config = c
    self.tensors = tensors
    self.layers = layers
    self.count = offset
    self.matrices = matrices
  }

  public func slot(named name: String) -> TensorSlot? { tensors.first { $0.name == name } }

  /// Parameters multiplied per token (forward FLOPs = 2 × this per token), MoE counting
  /// only the k active experts; the LM head included, the embedding lookup not.
  public var activeMatmulParameters: Int {
    var n = 0
    for l in layers {
      n += l.q.count + l.k.count + l.v.count + l.o.count
      if let r = l.router {
        n += r.count + config.numExpertsPerTok * (l.expertGate[0].count + l.expertUp[0].count + l.expertDown[0].count)
      } else {
        n += l.gate!.count + l.up!.count + l.down!.count
      }
    }
    return n + lmHead.count
  }
}

/// The policy's weights in a flat buffer, plus the transposed copies ([in, out]) of every
/// matrix that the .keel forward kernels read; `refreshTransposed()` after every update.
public final class ParameterStore: @unchecked Sendable {
  public let layout: Layout
  public let values: FloatBuffer
  /// Same offsets as `values`; matrices stored transposed. Valid after refreshTransposed().
  public let transposed: FloatBuffer

  public init(layout: Layout, values: [Float]) {
    precondition(values.count == layout.count)
    self.layout = layout
    self.values = FloatBuffer(values)
    self.transposed = FloatBuffer(layout.count)
    refreshTransposed()
  }

  public func refreshTransposed() {
    for m in layout.matrices {
      kk_transpose(transposed.p + m.offset, values.p + m.offset, Int64(m.shape[0]), Int64(m.shape[1]))
    }
  }

  public func w(_ slot: TensorSlot) -> UnsafeMutablePointer<Float> { values.p + slot.offset }
  public func wt(_ slot: TensorSlot) -> UnsafeMutablePointer<Float> { transposed.p + slot.offset }

  /// Deterministic initialisation from a seed: matrices ~ N(0, scale²) (HF initializer_range 0.02),
  /// norms = 1 (plus a small seeded jitter when `jitterNorms`, so tests see asymmetric norms).
  public convenience init(config: ModelConfig, seed: UInt64, jitterNorms: Bool = false, scale: Float = 0.02) {
    let layout = Layout(config)
    var values = [Float](repeating: 0, count: layout.count)
    var rng = CounterRNG(seed: seed, stream: 0x1A17)
    for t in layout.tensors {
      let isNorm = t.shape.count == 1
      for i in t.range {
        values[i] = isNorm ? (jitterNorms ? 1 + 0.2 * Float(rng.normal()) : 1) : scale * Float(rng.normal())
      }
    }
    self.init(layout: layout, values: values)
  }

  public func tensor(_ slot: TensorSlot) -> [Float] { Array(UnsafeBufferPointer(start: values.p + slot.offset, count: slot.count)) }

  /// A deep copy (e.g. a frozen reference policy).
  public func copy() -> ParameterStore { ParameterStore(layout: layout, values: values.array) }
}
