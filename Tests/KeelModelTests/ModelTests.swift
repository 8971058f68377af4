// ModelTests.swift — the policy model against the independent float64 reference: forward
// (dense, MoE, GQA, head_dim ≠ hidden/heads, tied, norm_topk_prob off), gradients (directional
// central differences of the reference), routing replay (natural and forced experts, router
// gradient), cross-entropy overfitting, determinism across runs and thread counts.
import Foundation
import KeelModel
import KeelRandom
import XCTest

enum Tiny {
  static func config(moe: Bool, gqa: Bool = true, tied: Bool = false, normTopk: Bool = true) -> ModelConfig {
    var c = ModelConfig()
    c.modelType = moe ? "qwen3_moe" : "qwen3"
    c.vocabSize = 17
    c.hiddenSize = 16
    c.numHiddenLayers = 3
    c.numAttentionHeads = 4
    c.numKeyValueHeads = gqa ? 2 : 4
    c.headDim = 6  // ≠ hidden / heads
    c.intermediateSize = 24
    c.maxPositionEmbeddings = 40
    c.ropeTheta = 10_000
    c.tieWordEmbeddings = tied
    c.numExperts = moe ? 4 : 0
    c.numExpertsPerTok = moe ? 2 : 0
    c.moeIntermediateSize = moe ? 12 : 0
    c.normTopkProb = normTopk
    c.mlpOnlyLayers = moe ? [1] : []  // a dense layer between sparse ones
    return c
  }
  static func store(_ c: ModelConfig, seed: UInt64 = 7) -> ParameterStore {
    ParameterStore(config: c, seed: seed, jitterNorms: true, scale: 0.35)
  }
  static func sequences(vocab: Int, seed: UInt64) -> [[Int32]] {
    var rng = CounterRNG(seed: seed, stream: 3)
    return [5, 9, 2, 7].map { n in (0..<n).map { _ in Int32(rng.below(vocab)) } }
  }
  /// A batch's routing record split per sequence (batch order), as ReferenceModel.run takes it.
  static func perSequence(_ record: RoutingRecord, _ seqs: [[Int32]], k: Int) -> [[[Int32]]] {
    var out: [[[Int32]]] = []
    var offset = 0
    for s in seqs {
      out.append(record.experts.map { Array($0[(offset * k)..<((offset + s.count) * k)]) })
      offset += s.count
    }
    return out
  }
  static let configs: [(String, ModelConfig)] = [
    ("dense-gqa", config(moe: false)),
    ("moe-gqa", config(moe: true)),
    ("moe-mha-tied-unnormalised", config(moe: true, gqa: false, tied: true, normTopk: false)),
  ]
}

final class ModelTests: XCTestCase {
  func batch(_ seqs: [[Int32]]) -> SequenceBatch {
    SequenceBatch(sequences: seqs, scoreFrom: seqs.map { min(2, $0.count - 1) })
  }

  /// Reference log-probs/entropies at the batch's scored positions.
  func reference(_ ref: ReferenceModel, _ seqs: [[Int32]], temperature: Double, forced: [[[Int32]]]? = nil) -> ([Double], [Double]) {
    var lp: [Double] = [], en: [Double] = []
    for (i, s) in seqs.enumerated() {
      let r = ref.run(s, temperature: temperature, forced: forced?[i])
      let from = min(2, s.count - 1)
      lp += r.logp[(from - 1)...]
      en += r.entropy[(from - 1)...]
    }
    return (lp, en)
  }

  func testForwardMatchesReference() throws {
    for (name, c) in Tiny.configs {
      let store = Tiny.store(c)
      let seqs = Tiny.sequences(vocab: c.vocabSize, seed: 1)
      let (lp, en) = reference(ReferenceModel(store), seqs, temperature: 0.7)
      for backend in GemmBackend.allCases {
        let engine = TrainingEngine(store: store, compute: Compute(threads: 2, backend: backend))
        let out = engine.forward(batch(seqs), temperature: 0.7)
        XCTAssertEqual(out.logp.count, lp.count)
        for i in lp.indices {
          XCTAssertEqual(Double(out.logp[i]), lp[i], accuracy: 2e-5, "\(name) \(backend) logp[\(i)]")
          XCTAssertEqual(Double(out.entropy[i]), en[i], accuracy: 2e-5, "\(name) \(backend) entropy[\(i)]")
        }
      }
    }
  }

  /// Σ grad·u vs the reference's float64 central difference of L = Σ_t c_t·logp_t along u.
  func checkGradient(_ c: ModelConfig, replayOther: Bool, direction: (TensorSlot) -> Bool, label: String) throws {
    let store = Tiny.store(c, seed: 11)
    let seqs = Tiny.sequences(vocab: c.vocabSize, seed: 2)
    let engine = TrainingEngine(store: store, compute: Compute(threads: 2))
    let natural = engine.forward(batch(seqs))
    var mode = RoutingMode.natural
    var routing = natural.routing
    if replayOther && c.isMoE {
      // force, per token, experts other than the natural top-k (rotated by one)
      let E = Int32(c.numExperts)
      routing.experts = routing.experts.map { $0.map { ($0 + 1) % E } }
      mode = .replay(routing)
    }
    let out = engine.forward(batch(seqs), temperature: 0.8, routing: mode, save: true)
    var rng = CounterRNG(seed: 5, stream: 9)
    let coef = out.logp.map { _ in Float(rng.normal()) }
    engine.zeroGrads()
    engine.backward(out.saved!, dlogp: coef)
    // direction u over the selected tensors
    var u = [Double](repeating: 0, count: store.layout.count)
    for t in store.layout.tensors where direction(t) { for i in t.range { u[i] = rng.normal() } }
    let analytic = zip(engine.grads.array, u).reduce(0.0) { $0 + Double($1.0) * $1.1 }
    // the reference, routed exactly as the engine was, per sequence
    let forced = Tiny.perSequence(out.routing, seqs, k: c.numExpertsPerTok)
    let base = store.values.array.map(Double.init)
    func loss(_ eps: Double) -> Double {
      let ref = ReferenceModel(layout: store.layout, values: zip(base, u).map { $0 + eps * $1 })
      let (lp, _) = reference(ref, seqs, temperature: 0.8, forced: c.isMoE ? forced : nil)
      return zip(lp, coef).reduce(0.0) { $0 + $1.0 * Double($1.1) }
    }
    let eps = 1e-4
    let numeric = (loss(eps) - loss(-eps)) / (2 * eps)
    XCTAssertGreaterThan(abs(numeric), 1e-3, "\(label): a degenerate direction proves nothing")
    XCTAssertEqual(analytic, numeric, accuracy: 2e-3 * max(1, abs(numeric)), "\(label): analytic \(analytic) vs numeric \(numeric)")
    if ProcessInfo.processInfo.environment["KEEL_TEST_VERBOSE"] != nil { print("\(label): analytic \(analytic) numeric \(numeric)") }
  }

  func testGradientsMatchFiniteDifferences() throws {
    for (name, c) in Tiny.configs {
      try checkGradient(c, replayOther: false, direction: { _ in true }, label: "\(name) all")
      try checkGradient(c, replayOther: false, direction: { $0.shape.count == 1 }, label: "\(name) norms")
      try checkGradient(c, replayOther: false, direction: { $0.name.contains("embed") || $0.name.contains("lm_head") }, label: "\(name) embed/head")
    }
  }

  func testRouterGradientWithForcedExperts() throws {
    let c = Tiny.config(moe: true)
    try checkGradient(c, replayOther: true, direction: { $0.name.hasSuffix("mlp.gate.weight") }, label: "router, forced")
    try checkGradient(c, replayOther: true, direction: { _ in true }, label: "all, forced")
    let u = Tiny.config(moe: true, normTopk: false)
    try checkGradient(u, replayOther: true, direction: { $0.name.hasSuffix("mlp.gate.weight") }, label: "router, forced, unnormalised")
  }

  func testReplayOfNaturalRoutingChangesNothing() throws {
    let c = Tiny.config(moe: true)
    let engine = TrainingEngine(store: Tiny.store(c), compute: Compute(threads: 2))
    let b = batch(Tiny.sequences(vocab: c.vocabSize, seed: 4))
    let natural = engine.forward(b)
    let replayed = engine.forward(b, routing: .replay(natural.routing))
    XCTAssertEqual(natural.logp, replayed.logp)
    XCTAssertEqual(natural.routing, replayed.routing)
  }

  func testReplayOfOtherExpertsMatchesForcedReference() throws {
    let c = Tiny.config(moe: true)
    let store = Tiny.store(c)
    let engine = TrainingEngine(store: store, compute: Compute(threads: 2))
    let seqs = Tiny.sequences(vocab: c.vocabSize, seed: 4)
    let natural = engine.forward(batch(seqs))
    var forcedRecord = natural.routing
    forcedRecord.experts = forcedRecord.experts.map { $0.map { ($0 + 2) % Int32(c.numExperts) } }
    XCTAssertNotEqual(forcedRecord, natural.routing)
    let out = engine.forward(batch(seqs), routing: .replay(forcedRecord))
    XCTAssertEqual(out.routing, forcedRecord, "the experts used are the ones forced")
    let forced = Tiny.perSequence(forcedRecord, seqs, k: 2)
    let (lp, _) = reference(ReferenceModel(store), seqs, temperature: 1, forced: forced)
    let (naturalRef, _) = reference(ReferenceModel(store), seqs, temperature: 1)
    for i in lp.indices { XCTAssertEqual(Double(out.logp[i]), lp[i], accuracy: 2e-5) }
    XCTAssertGreaterThan(zip(lp, naturalRef).map { abs($0 - $1) }.max()!, 1e-3, "forcing other experts must change the output")
  }

  func testCrossEntropyOverfitsAFixedBatch() throws {
    var c = Tiny.config(moe: true)
    c.numHiddenLayers = 2
    let store = ParameterStore(config: c, seed: 3)
    let engine = TrainingEngine(store: store, compute: Compute(threads: 2))
    let opt = AdamW(count: store.layout.count)
    var rng = CounterRNG(seed: 8, stream: 1)
    let seqs = (0..<8).map { _ in (0..<12).map { _ in Int32(rng.below(c.vocabSize)) } }
    let b = SequenceBatch(sequences: seqs, scoreFrom: seqs.map { _ in 1 })
    var first: Float = 0, last: Float = 0
    for step in 0..<300 {
      let out = engine.forward(b, save: true)
      let loss = -out.logp.reduce(0, +) / Float(out.logp.count)
      if step == 0 { first = loss }
      last = loss
      engine.zeroGrads()
      engine.backward(out.saved!, dlogp: out.logp.map { _ in -1 / Float(out.logp.count) })
      opt.update(params: store, grads: engine.grads, lr: 1e-2, maxNorm: 1, compute: engine.compute)
    }
    XCTAssertLessThan(last, first / 10, "cross-entropy \(first) → \(last)")
  }

  func testSameSeedSameGradientsOnAnyThreadCount() throws {
    let c = Tiny.config(moe: true)
    let seqs = Tiny.sequences(vocab: c.vocabSize, seed: 6)
    var grads: [[Float]] = []
    for threads in [1, 2, 2] {
      let engine = TrainingEngine(store: Tiny.store(c), compute: Compute(threads: threads, backend: .keel))
      let out = engine.forward(batch(seqs), save: true)
      engine.backward(out.saved!, dlogp: out.logp.map { _ in 0.3 })
      grads.append(engine.grads.array)
    }
    XCTAssertEqual(grads[0], grads[1])
    XCTAssertEqual(grads[1], grads[2])
  }
}
