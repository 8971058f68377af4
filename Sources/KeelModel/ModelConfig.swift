// ModelConfig.swift — the policy's configuration, with the Hugging Face Qwen3 / Qwen3-MoE
// `config.json` keys (snake_case, as published checkpoints spell them). Decoding accepts both
// spellings (rope_theta | rope_parameters.rope_theta, num_experts | num_local_experts,
// torch_dtype | dtype) and refuses what Keel does not implement, naming the key. Encoding
// writes every key explicitly.
import Foundation

public struct ModelConfig: Equatable, Sendable {
  public var modelType: String = "qwen3_moe"
  public var vocabSize: Int = 64
  public var hiddenSize: Int = 128
  public var numHiddenLayers: Int = 4
  public var numAttentionHeads: Int = 4
  public var numKeyValueHeads: Int = 4
  public var headDim: Int = 32
  public var intermediateSize: Int = 512
  public var rmsNormEps: Float = 1e-6
  public var ropeTheta: Double = 1_000_000
  public var maxPositionEmbeddings: Int = 128
  public var tieWordEmbeddings: Bool = false
  // Mixture-of-Experts (model_type qwen3_moe); numExperts == 0 means dense.
  public var numExperts: Int = 8
  public var numExpertsPerTok: Int = 2
  public var moeIntermediateSize: Int = 256
  public var normTopkProb: Bool = true
  public var decoderSparseStep: Int = 1
  public var mlpOnlyLayers: [Int] = []
  public var routerAuxLossCoef: Float = 0.001

  public init() {}

  /// The bench shapes (issue: vocab 64, hidden 128, 4 layers, 4 heads): dense FFN 512.
  public static func benchDense() -> ModelConfig {
    var c = ModelConfig()
    c.modelType = "qwen3"
    c.numExperts = 0
    return c
  }
  /// The bench shapes with 8 experts × 256, top-2.
  public static func benchMoE() -> ModelConfig { ModelConfig() }

  public var isMoE: Bool { modelType == "qwen3_moe" && numExperts > 0 }

  /// Layer l is sparse iff l ∉ mlp_only_layers and (l+1) % decoder_sparse_step == 0.
  public func isSparse(layer l: Int) -> Bool {
    isMoE && !mlpOnlyLayers.contains(l) && decoderSparseStep > 0 && (l + 1) % decoderSparseStep == 0
  }

  /// Upper bounds on the sizes of a config.json (far above anything Keel trains on a CPU, far
  /// below what would overflow or exhaust memory before a tensor is read).
  public static let limits = (vocab: 1 << 21, width: 1 << 16, layers: 1024, heads: 1024, headDim: 1024, positions: 1 << 20,
                              experts: 1024, parameters: 1 << 32)

  /// The parameter count in floating point (no overflow whatever the sizes): the embedding and
  /// head, and per layer attention, norms and the FFN (dense, or experts plus router).
  public var approximateParameterCount: Double {
    let H = Double(hiddenSize), V = Double(vocabSize), hd = Double(headDim)
    let attention = H * hd * Double(numAttentionHeads) * 2 + H * hd * Double(numKeyValueHeads) * 2 + 2 * hd + 2 * H
    var total = V * H * (tieWordEmbeddings ? 1 : 2) + H
    for l in 0..<max(0, min(numHiddenLayers, Self.limits.layers)) {
      let ffn = isSparse(layer: l) ? Double(numExperts) * 3 * H * Double(moeIntermediateSize) + H * Double(numExperts) : 3 * H * Double(intermediateSize)
      total += attention + ffn
    }
    return total
  }

  public func validate() throws {
    func bad(_ key: String, _ why: String) -> ModelConfigError { .invalid(key: key, reason: why) }
    guard ["qwen3", "qwen3_moe"].contains(modelType) else {
      throw bad("model_type", "'\(modelType)' is not supported (qwen3 | qwen3_moe)")
    }
    for (k, v) in [("vocab_size", vocabSize), ("hidden_size", hiddenSize), ("num_hidden_layers", numHiddenLayers),
                   ("num_attention_heads", numAttentionHeads), ("num_key_value_heads", numKeyValueHeads),
                   ("head_dim", headDim), ("max_position_embeddings", maxPositionEmbeddings)] where v <= 0 {
      throw bad(k, "must be positive, got \(v)")
    }
    // sizes Keel can hold: a config.json comes from anyone, and sizes decide allocations
    for (k, v, limit) in [("vocab_size", vocabSize, Self.limits.vocab), ("hidden_size", hiddenSize, Self.limits.width),
                          ("num_hidden_layers", numHiddenLayers, Self.limits.layers), ("num_attention_heads", numAttentionHeads, Self.limits.heads),
                          ("num_key_value_heads", numKeyValueHeads, Self.limits.heads), ("head_dim", headDim, Self.limits.headDim),
                          ("intermediate_size", intermediateSize, Self.limits.width * 8),
                          ("max_position_embeddings", maxPositionEmbeddings, Self.limits.positions)] where v > limit {
      throw bad(k, "is \(v), more than Keel's limit \(limit)")
    }
    guard intermediateSize >= 0 else { throw bad("intermediate_size", "must not be negative, got \(intermediateSize)") }
    guard rmsNormEps.isFinite && rmsNormEps > 0 else { throw bad("rms_norm_eps", "must be a positive number, got \(rmsNormEps)") }
    guard ropeTheta.isFinite && ropeTheta > 1 else { throw bad("rope_theta", "must be a number above 1, got \(ropeTheta)") }
    guard numAttentionHeads % numKeyValueHeads == 0 else {
      throw bad("num_key_value_heads", "\(numKeyValueHeads) must divide num_attention_heads \(numAttentionHeads)")
    }
    guard headDim % 2 == 0 else { throw bad("head_dim", "must be even for rotary embeddings, got \(headDim)") }
    if isMoE {
      guard numExpertsPerTok >= 1, numExpertsPerTok <= numExperts else {
        throw bad("num_experts_per_tok", "must be in 1…num_experts (\(numExperts)), got \(numExpertsPerTok)")
      }
      guard numExperts <= Self.limits.experts else { throw bad("num_experts", "is \(numExperts), more than Keel's limit \(Self.limits.experts)") }
      guard numHiddenLayers * numExperts <= 1 << 16 else { throw bad("num_experts", "× num_hidden_layers is \(numHiddenLayers * numExperts) expert blocks, more than Keel's limit 65536") }
      guard moeIntermediateSize > 0 else { throw bad("moe_intermediate_size", "must be positive") }
      guard moeIntermediateSize <= Self.limits.width * 8 else { throw bad("moe_intermediate_size", "is \(moeIntermediateSize), more than Keel's limit \(Self.limits.width * 8)") }
      guard decoderSparseStep >= 0 else { throw bad("decoder_sparse_step", "must not be negative, got \(decoderSparseStep)") }
    }
    guard routerAuxLossCoef.isFinite else { throw bad("router_aux_loss_coef", "must be a finite number") }
    let n = approximateParameterCount
    guard n <= Double(Self.limits.parameters) else {
      throw bad("hidden_size/num_hidden_layers/num_experts", String(format: "describe a model of %.3g parameters (%.0f GB in fp32), more than Keel's limit of ", n, n * 4 / 1e9) + "\(Self.limits.parameters)")
    }
    if (0..<numHiddenLayers).contains(where: { !isSparse(layer: $0) }) && intermediateSize <= 0 {
      throw bad("intermediate_size", "dense layers need a positive intermediate_size")
    }
  }
}

public enum ModelConfigError: Error, CustomStringConvertible, Equatable {
  case invalid(key: String, reason: String)
  case unsupported(key: String, reason: String)
  public var description: String {
    switch self {
    case .invalid(let key, let reason): return "config.json: '\(key)' \(reason)"
    case .unsupported(let key, let reason): return "config.json: '\(key)' is not supported by Keel: \(reason)"
    }
  }
}

extension ModelConfig: Codable {
  enum Keys: String, CodingKey {
    case model_type, architectures, vocab_size, hidden_size, num_hidden_layers, num_attention_heads
    case num_key_value_heads, head_dim, intermediate_size, rms_norm_eps, rope_theta, rope_parameters
    case rope_scaling, max_position_embeddings, tie_word_embeddings, hidden_act, attention_bias
    case torch_dtype, dtype, num_experts, num_local_experts, num_experts_per_tok, moe_intermediate_size
    case norm_topk_prob, decoder_sparse_step, mlp_only_layers, router_aux_loss_coef
    case use_sliding_window, sliding_window, attention_dropout
  }
  struct RopeParameters: Codable { var rope_theta: Double?; var rope_type: String? }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: Keys.self)
    modelType = try c.decode(String.self, forKey: .model_type)
    guard ["qwen3", "qwen3_moe"].contains(modelType) else {
      throw ModelConfigError.unsupported(key: "model_type", reason: "'\(modelType)' (Keel loads qwen3 and qwen3_moe)")
    }
    vocabSize = try c.decode(Int.self, forKey: .vocab_size)
    hiddenSize = try c.decode(Int.self, forKey: .hidden_size)
    numHiddenLayers = try c.decode(Int.self, forKey: .num_hidden_layers)
    numAttentionHeads = try c.decode(Int.self, forKey: .num_attention_heads)
    numKeyValueHeads = try c.decodeIfPresent(Int.self, forKey: .num_key_value_heads) ?? numAttentionHeads
    headDim = try c.decodeIfPresent(Int.self, forKey: .head_dim) ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
    intermediateSize = try c.decodeIfPresent(Int.self, forKey: .intermediate_size) ?? 0
    rmsNormEps = Float(try c.decodeIfPresent(Double.self, forKey: .rms_norm_eps) ?? 1e-6)
    // a scaled RoPE (yarn, linear…) is refused even when rope_theta is also given
    let rope = try c.decodeIfPresent(RopeParameters.self, forKey: .rope_parameters)
    if let t = rope?.rope_type, t != "default" {
      throw ModelConfigError.unsupported(key: "rope_parameters.rope_type", reason: "'\(t)' (only default RoPE)")
    }
    ropeTheta = try c.decodeIfPresent(Double.self, forKey: .rope_theta) ?? rope?.rope_theta ?? 10_000
    if c.contains(.rope_scaling), try !c.decodeNil(forKey: .rope_scaling) {
      throw ModelConfigError.unsupported(key: "rope_scaling", reason: "only unscaled RoPE (rope_scaling: null)")
    }
    if try c.decodeIfPresent(Bool.self, forKey: .use_sliding_window) == true {
      throw ModelConfigError.unsupported(key: "use_sliding_window", reason: "sliding-window attention")
    }
    if try c.decodeIfPresent(Bool.self, forKey: .attention_bias) == true {
      throw ModelConfigError.unsupported(key: "attention_bias", reason: "Qwen3 has no attention biases")
    }
    if let act = try c.decodeIfPresent(String.self, forKey: .hidden_act), act != "silu" {
      throw ModelConfigError.unsupported(key: "hidden_act", reason: "'\(act)' (only silu)")
    }
    maxPositionEmbeddings = try c.decodeIfPresent(Int.self, forKey: .max_position_embeddings) ?? 4096
    tieWordEmbeddings = try c.decodeIfPresent(Bool.self, forKey: .tie_word_embeddings) ?? false
    if modelType == "qwen3_moe" {
      numExperts = try c.decodeIfPresent(Int.self, forKey: .num_experts)
        ?? c.decodeIfPresent(Int.self, forKey: .num_local_experts) ?? 0
      numExpertsPerTok = try c.decodeIfPresent(Int.self, forKey: .num_experts_per_tok) ?? 2
      moeIntermediateSize = try c.decodeIfPresent(Int.self, forKey: .moe_intermediate_size) ?? 0
      normTopkProb = try c.decodeIfPresent(Bool.self, forKey: .norm_topk_prob) ?? false
      decoderSparseStep = try c.decodeIfPresent(Int.self, forKey: .decoder_sparse_step) ?? 1
      mlpOnlyLayers = try c.decodeIfPresent([Int].self, forKey: .mlp_only_layers) ?? []
      routerAuxLossCoef = Float(try c.decodeIfPresent(Double.self, forKey: .router_aux_loss_coef) ?? 0.001)
    } else {
      numExperts = 0
      numExpertsPerTok = 0
      moeIntermediateSize = 0
    }
    try validate()
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: Keys.self)
    try c.encode(modelType, forKey: .model_type)
    try c.encode([isMoE ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM"], forKey: .architectures)
    try c.encode(vocabSize, forKey: .vocab_size)
    try c.encode(hiddenSize, forKey: .hidden_size)
    try c.encode(numHiddenLayers, forKey: .num_hidden_layers)
    try c.encode(numAttentionHeads, forKey: .num_attention_heads)
    try c.encode(numKeyValueHeads, forKey: .num_key_value_heads)
    try c.encode(headDim, forKey: .head_dim)
    try c.encode(intermediateSize, forKey: .intermediate_size)
    try c.encode(Double(rmsNormEps), forKey: .rms_norm_eps)
    try c.encode(ropeTheta, forKey: .rope_theta)
    try c.encodeNil(forKey: .rope_scaling)
    try c.encode(maxPositionEmbeddings, forKey: .max_position_embeddings)
    try c.encode(tieWordEmbeddings, forKey: .tie_word_embeddings)
    try c.encode("silu", forKey: .hidden_act)
    try c.encode(false, forKey: .attention_bias)
    try c.encode(0.0, forKey: .attention_dropout)
    try c.encode(false, forKey: .use_sliding_window)
    try c.encode("float32", forKey: .torch_dtype)
    if isMoE {
      try c.encode(numExperts, forKey: .num_experts)
      try c.encode(numExpertsPerTok, forKey: .num_experts_per_tok)
      try c.encode(moeIntermediateSize, forKey: .moe_intermediate_size)
      try c.encode(normTopkProb, forKey: .norm_topk_prob)
      try c.encode(decoderSparseStep, forKey: .decoder_sparse_step)
      try c.encode(mlpOnlyLayers, forKey: .mlp_only_layers)
      try c.encode(Double(routerAuxLossCoef), forKey: .router_aux_loss_coef)
    }
  }
}
