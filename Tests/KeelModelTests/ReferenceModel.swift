// ReferenceModel.swift — an independent, deliberately naive float64 implementation of the
// Qwen3 / Qwen3-MoE forward (qwen3-notes.md, line by line), used as the reference for the
// engine's forward, for routing replay with forced experts, and — by central finite
// differences in float64 — for the engine's gradients.
import Foundation
import KeelModel

struct ReferenceModel {
  let config: ModelConfig
  let layout: Layout
  let w: [Double]

  init(_ store: ParameterStore) {
    config = store.layout.config
    layout = store.layout
    w = store.values.array.map(Double.init)
  }
  init(layout: Layout, values: [Double]) {
    config = layout.config
    self.layout = layout
    w = values
  }

  /// y = x · Wᵀ for W [out, in]
  func linear(_ x: [Double], _ t: TensorSlot) -> [Double] {
    let out = t.shape[0], inn = t.shape[1]
    var y = [Double](repeating: 0, count: out)
    for o in 0..<out {
      var acc = 0.0
      for i in 0..<inn { acc += x[i] * w[t.offset + o * inn + i] }
      y[o] = acc
    }
    return y
  }
  /// RMSNorm(x; w) = w · x / sqrt(mean(x²) + eps)
  func rmsnorm(_ x: [Double], _ t: TensorSlot) -> [Double] {
    var ms = 0.0
    for v in x { ms += v * v }
    ms /= Double(x.count)
    let r = 1 / (ms + Double(config.rmsNormEps)).squareRoot()
    var y = x
    for i in 0..<x.count { y[i] = x[i] * r * w[t.offset + i] }
    return y
  }
  /// rotate_half RoPE: pairs (i, i + D/2), angle = pos · θ^(−2i/D)
  func rope(_ x: [Double], pos: Int) -> [Double] {
    let D = x.count, half = D / 2
    var y = x
    for i in 0..<half {
      let angle = Double(pos) * pow(config.ropeTheta, -2 * Double(i) / Double(D))
      y[i] = x[i] * cos(angle) - x[i + half] * sin(angle)
      y[i + half] = x[i + half] * cos(angle) + x[i] * sin(angle)
    }
    return y
  }
  func silu(_ x: Double) -> Double { x / (1 + exp(-x)) }
  func swiglu(_ x: [Double], gate: TensorSlot, up: TensorSlot, down: TensorSlot) -> [Double] {
    let g = linear(x, gate), u = linear(x, up)
    var a = g
    for i in 0..<g.count { a[i] = silu(g[i]) * u[i] }
    return linear(a, down)
  }
  func dot(_ a: [Double], _ b: [Double]) -> Double {
    var s = 0.0
    for i in 0..<a.count { s += a[i] * b[i] }
    return s
  }

  /// log-probs of tokens[t+1] at positions t = 0..T-2 (temperature T), entropies, and the
  /// experts chosen per sparse layer per position (forced ones if given).
  func run(_ tokens: [Int32], temperature: Double = 1, forced: [[Int32]]? = nil) -> (logp: [Double], entropy: [Double], experts: [[Int32]], z: [[Double]]) {
    let c = config
    let C = c.hiddenSize, H = c.numAttentionHeads, KV = c.numKeyValueHeads, D = c.headDim, T = tokens.count
    var h: [[Double]] = []
    for tok in tokens {
      let o = layout.embed.offset + Int(tok) * C
      h.append(Array(w[o..<(o + C)]))
    }
    var chosen: [[Int32]] = []
    var sparse = 0
    for slots in layout.layers {
      var q: [[[Double]]] = [], k: [[[Double]]] = [], v: [[[Double]]] = []
      for t in 0..<T {
        let x = rmsnorm(h[t], slots.inputNorm)
        let qf = linear(x, slots.q), kf = linear(x, slots.k), vf = linear(x, slots.v)
        var qh: [[Double]] = [], kh: [[Double]] = [], vh: [[Double]] = []
        for hh in 0..<H { qh.append(rope(rmsnorm(Array(qf[(hh * D)..<((hh + 1) * D)]), slots.qNorm), pos: t)) }
        for g in 0..<KV {
          kh.append(rope(rmsnorm(Array(kf[(g * D)..<((g + 1) * D)]), slots.kNorm), pos: t))
          vh.append(Array(vf[(g * D)..<((g + 1) * D)]))
        }
        q.append(qh); k.append(kh); v.append(vh)
      }
      var h1 = h
      for t in 0..<T {
        var att: [Double] = []
        for hh in 0..<H {
          let g = hh / (H / KV)
          var s: [Double] = []
          for j in 0...t { s.append(dot(q[t][hh], k[j][g]) / Double(D).squareRoot()) }
          let m = s.max()!
          var z = 0.0
          for j in 0...t { z += exp(s[j] - m) }
          var o = [Double](repeating: 0, count: D)
          for j in 0...t {
            let p = exp(s[j] - m) / z
            for d in 0..<D { o[d] += p * v[j][g][d] }
          }
          att += o
        }
        let o = linear(att, slots.o)
        for i in 0..<C { h1[t][i] += o[i] }
      }
      var h2 = h1
      var layerExperts: [Int32] = []
      for t in 0..<T {
        let x2 = rmsnorm(h1[t], slots.postNorm)
        var y = [Double](repeating: 0, count: C)
        if let router = slots.router {
          let logits = linear(x2, router)
          let m = logits.max()!
          var p = logits
          var z = 0.0
          for i in 0..<p.count { p[i] = exp(logits[i] - m); z += p[i] }
          for i in 0..<p.count { p[i] /= z }
          let kk = c.numExpertsPerTok
          var sel: [Int] = []
          if let f = forced {
            for j in 0..<kk { sel.append(Int(f[sparse][t * kk + j])) }
          } else {
            let order = p.indices.sorted { a, b in p[a] != p[b] ? p[a] > p[b] : a < b }
            sel = Array(order.prefix(kk))
          }
          var norm = 1.0
          if c.normTopkProb { norm = 0; for e in sel { norm += p[e] } }
          for e in sel {
            let gate = p[e] / norm
            let d = swiglu(x2, gate: slots.expertGate[e], up: slots.expertUp[e], down: slots.expertDown[e])
            for i in 0..<C { y[i] += gate * d[i] }
            layerExperts.append(Int32(e))
          }
        } else {
          y = swiglu(x2, gate: slots.gate!, up: slots.up!, down: slots.down!)
        }
        for i in 0..<C { h2[t][i] += y[i] }
      }
      if slots.isSparse { chosen.append(layerExperts); sparse += 1 }
      h = h2
    }
    var logp: [Double] = [], ent: [Double] = [], zs: [[Double]] = []
    for t in 0..<(T - 1) {
      var logits = linear(rmsnorm(h[t], layout.finalNorm), layout.lmHead)
      for i in 0..<logits.count { logits[i] /= temperature }
      zs.append(logits)
      let m = logits.max()!
      var z = 0.0
      for l in logits { z += exp(l - m) }
      let lse = m + log(z)
      logp.append(logits[Int(tokens[t + 1])] - lse)
      var e = 0.0
      for l in logits { e -= exp(l - lse) * (l - lse) }
      ent.append(e)
    }
    return (logp, ent, chosen, zs)
  }
}
