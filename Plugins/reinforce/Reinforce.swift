// Reinforce.swift — objective "reinforce" (Keel ABI 1.1): token-level REINFORCE, no clip, no
// mask, written in Swift against the C header only (proves the Swift plugin path). By default
// no importance weight and aggregation "seq-mean-token-sum" (MiniRL's):
//
//   L = −Σ_i Σ_{t in i} m_t · c_i · w_i · Â_t · log π_θ(y_t),   ∂L/∂logp_t = −m_t · c_i · w_i · Â_t
//
// c_i, by loss_agg_mode (verl's agg_loss; the normalisers are the host's whole-step totals, so
// loss and gradient are additive over calls):
//   seq-mean-token-sum (default)  c_i = 1/S           S = total_sequences
//   token-mean                    c_i = 1/T           T = total_tokens
//   seq-mean-token-mean           c_i = 1/(S n_i)     n_i = unmasked tokens of response i
//   seq-mean-token-sum-norm       c_i = 1/(S L_max)   L_max = max_response_tokens (≤ 0: 1, with
//                                                     a warning logged once per instance)
// w_i, the sequence-level IS weight to the sampler (seq_is; verl's rollout correction in
// "bypass mode", π_old := μ, the rollout policy), a constant (stop-gradient) per response:
//   ρ_i = exp(Σ_{unmasked t in i} (frozen_t − logp_rollout_t)) = sg[Π_t π_θ(y_t)/μ(y_t)],
//   frozen_t = logp_frozen ? logp_frozen[t] : logp[t]  (the product, not the geometric mean);
//   seq_is "none" (default): w_i = 1 (logp_rollout is not read);
//   "truncate": w_i = min(ρ_i, tis_cap);
//   "mask":     w_i = ρ_i if mis_low ≤ ρ_i ≤ tis_cap, else 0 (the response stays in every
//               denominator).
// Equivalences: the default is verl's REINFORCE (compute_policy_loss_reinforce, no IS weights)
// with loss_agg_mode "seq-mean-token-sum". seq_is "truncate" with tis_cap C is verl
// algorithm.rollout_correction = RolloutCorrectionConfig.bypass_pg_is(C): bypass_mode: true,
// loss_type: reinforce, rollout_is: sequence, rollout_is_threshold: C, rollout_rs: null,
// with actor.loss_agg_mode = loss_agg_mode (verl computes the weight from the current
// log-probs under no_grad, against rollout_log_probs: Keel's logp_frozen and logp_rollout).
// seq_is "mask" is the same with rollout_rs: sequence, rollout_rs_threshold: C,
// rollout_rs_threshold_lower: mis_low: verl removes a rejected response from the mask, which
// for the seq-mean-* aggregations is exactly weight 0 (S unchanged); with token-mean Keel keeps
// its tokens in T. verl clamps the summed log-ratio at ±20 before exp; Keel does not (it
// matters only for tis_cap > e^20, and below e^−20). No TRL twin.
// Metrics (token-mean over unmasked tokens): advantage_mean, is_weight_mean (w_i as used, 1
// with none), is_masked_fraction (tokens of responses mask set to 0), is_truncated_fraction
// (tokens of responses whose ρ_i exceeded tis_cap under truncate).
// Contract: double arithmetic, float gradients; with loss_agg_mode and seq_is at their
// defaults the arithmetic is that of 1.0, bit for bit. Every grad_logp entry is written
// (masked tokens 0). create() refuses an unknown parameter, a wrong type, a value out of
// range, a loss_agg_mode or seq_is not among the choices (naming them), and mask with mis_low >
// tis_cap (KEEL_ERR_INVALID_ARGUMENT). compute: a missing array (mask, advantages, logp,
// seq_offsets, grad_logp; logp_rollout when seq_is is not none) or malformed seq_offsets, or
// unmasked tokens with a whole-step normaliser ≤ 0 → KEEL_ERR_INVALID_ARGUMENT; a non-finite
// logp, logp_frozen / logp_rollout (when read) or advantage on an unmasked token →
// KEEL_ERR_NUMERIC; each failure calls host->error first. No mutable globals (the tables are
// initialised once, then read only); per-run state lives in the instance.

import KeelABI
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func cstr(_ s: StaticString) -> UnsafePointer<CChar> {
  UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// A static NULL-terminated list of C strings (a parameter's `choices`).
private func cstrList(_ items: [StaticString]) -> UnsafeMutablePointer<UnsafePointer<CChar>?> {
  let p = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: items.count + 1)
  for (k, s) in items.enumerated() { (p + k).initialize(to: cstr(s)) }
  (p + items.count).initialize(to: nil)
  return p
}

private let aggregations = ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]
private let seqISModes = ["none", "truncate", "mask"]
private let aggTokenMean = 0, aggSeqMeanTokenSum = 1, aggSeqMeanTokenMean = 2, aggSeqMeanTokenSumNorm = 3
private let isNone = 0, isTruncate = 1, isMask = 2

private final class Instance {
  let host: UnsafePointer<keel_host>
  let aggregation: Int
  let seqIS: Int
  let cap: Double
  let low: Double
  var warnedNoMaxTokens = false  // seq-mean-token-sum-norm: the L_max = 1 fallback was logged
  init(host: UnsafePointer<keel_host>, aggregation: Int, seqIS: Int, cap: Double, low: Double) {
    self.host = host
    self.aggregation = aggregation
    self.seqIS = seqIS
    self.cap = cap
    self.low = low
  }
  func fail(_ status: Int32, _ message: String) -> Int32 { reinforceFail(host, status, message) }
}

private func reinforceFail(_ host: UnsafePointer<keel_host>, _ status: Int32, _ message: String) -> Int32 {
  if let error = host.pointee.error { message.withCString { error(host, $0) } }
  return status
}

// ---- Parameters (declaration order is the order create() receives them in) ----------------
private enum P { static let lossAggMode = 0, seqIS = 1, tisCap = 2, misLow = 3, count = 4 }

nonisolated(unsafe) private let paramDecls: UnsafeMutablePointer<keel_param_decl> = {
  let p = UnsafeMutablePointer<keel_param_decl>.allocate(capacity: P.count)
  let size = UInt32(MemoryLayout<keel_param_decl>.size)
  func string(_ name: StaticString, _ doc: StaticString, _ def: StaticString, _ choices: [StaticString]) -> keel_param_decl {
    var d = keel_param_decl()
    d.struct_size = size
    d.type = KEEL_PARAM_STRING
    d.name = cstr(name)
    d.doc = cstr(doc)
    d.default_s = cstr(def)
    d.choices = UnsafePointer(cstrList(choices))
    return d
  }
  func float(_ name: StaticString, _ doc: StaticString, _ def: Double, _ lo: Double, _ hi: Double) -> keel_param_decl {
    var d = keel_param_decl()
    d.struct_size = size
    d.type = KEEL_PARAM_FLOAT
    d.name = cstr(name)
    d.doc = cstr(doc)
    d.default_f = def
    d.default_s = cstr("")
    d.min_value = lo
    d.max_value = hi
    return d
  }
  (p + P.lossAggMode).initialize(to: string(
    "loss_agg_mode", "aggregation (verl loss_agg_mode): token-mean | seq-mean-token-sum | seq-mean-token-mean | seq-mean-token-sum-norm",
    "seq-mean-token-sum", ["token-mean", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"]))
  (p + P.seqIS).initialize(to: string(
    "seq_is", "sequence-level IS to the sampler, sg[prod pi/mu] (verl bypass mode, loss_type reinforce): none | truncate = min(ratio, tis_cap) | mask = 0 outside [mis_low, tis_cap]",
    "none", ["none", "truncate", "mask"]))
  (p + P.tisCap).initialize(to: float(
    "tis_cap", "upper bound C of the sequence IS ratio (verl rollout_is_threshold)", 2.0, 1e-9, .infinity))
  (p + P.misLow).initialize(to: float(
    "mis_low", "lower bound of the sequence IS ratio under mask (verl rollout_rs_threshold_lower, default 1/C)", 0.5, 0, .infinity))
  return p
}()

/// create()'s parameter values, checked as plugin_util.h's kp_read_params checks them.
private func readParameters(_ host: UnsafePointer<keel_host>, _ params: UnsafePointer<keel_params>?) -> (values: [keel_param_value], status: Int32) {
  var values = (0..<P.count).map { j -> keel_param_value in
    let d = paramDecls[j]
    var v = keel_param_value()
    v.struct_size = UInt32(MemoryLayout<keel_param_value>.size)
    v.type = d.type
    v.name = d.name
    v.f = d.default_f
    v.i = d.default_i
    v.s = d.default_s
    return v
  }
  let count = Int(params?.pointee.count ?? 0)
  guard count > 0 else { return (values, KEEL_OK) }
  guard let first = params?.pointee.values else {
    return (values, reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT, "reinforce: \(count) parameter values but values is NULL"))
  }
  var cursor = UnsafeRawPointer(first)
  for k in 0..<count {
    let size = Int(cursor.load(as: UInt32.self))
    guard size >= MemoryLayout<keel_param_value>.size else {
      return (values, reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT,
                                    "reinforce: parameter value \(k) has struct_size \(size) (< \(MemoryLayout<keel_param_value>.size))"))
    }
    let v = cursor.assumingMemoryBound(to: keel_param_value.self).pointee
    cursor += size
    let name = v.name.map { String(cString: $0) }
    guard let j = (0..<P.count).first(where: { name == String(cString: paramDecls[$0].name) }) else {
      let valid = (0..<P.count).map { String(cString: paramDecls[$0].name) }.joined(separator: ", ")
      return (values, reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT, "reinforce: unknown parameter '\(name ?? "(null)")' (valid: \(valid))"))
    }
    let d = paramDecls[j]
    let pname = String(cString: d.name)
    guard v.type == d.type else {
      return (values, reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT, "reinforce: parameter '\(pname)' has type \(v.type), expected \(d.type)"))
    }
    if d.type == KEEL_PARAM_FLOAT {
      guard v.f >= d.min_value, v.f <= d.max_value else {
        return (values, reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT,
                                      "reinforce: parameter '\(pname)' = \(v.f) is outside [\(d.min_value), \(d.max_value)]"))
      }
      values[j].f = v.f
    } else {
      guard let s = v.s else {
        return (values, reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT, "reinforce: parameter '\(pname)' is NULL"))
      }
      values[j].s = s
    }
  }
  return (values, KEEL_OK)
}

/// The index of a string value among `choices`, or the "is not one of" failure.
private func choice(_ host: UnsafePointer<keel_host>, _ name: String, _ value: UnsafePointer<CChar>?, _ choices: [String]) -> (Int, Int32) {
  let s = value.map { String(cString: $0) }
  if let s, let k = choices.firstIndex(of: s) { return (k, KEEL_OK) }
  return (0, reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT,
                           "reinforce: parameter '\(name)' = '\(s ?? "(null)")' is not one of \(choices.joined(separator: ", "))"))
}

private let create: @convention(c) (UnsafePointer<keel_host>?, UnsafePointer<keel_params>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 = { host, params, out in
  guard let host, let out else { return KEEL_ERR_INVALID_ARGUMENT }
  let (v, status) = readParameters(host, params)
  guard status == KEEL_OK else { return status }
  let (aggregation, s1) = choice(host, "loss_agg_mode", v[P.lossAggMode].s, aggregations)
  guard s1 == KEEL_OK else { return s1 }
  let (seqIS, s2) = choice(host, "seq_is", v[P.seqIS].s, seqISModes)
  guard s2 == KEEL_OK else { return s2 }
  let cap = v[P.tisCap].f, low = v[P.misLow].f
  if seqIS == isMask && low > cap {
    return reinforceFail(host, KEEL_ERR_INVALID_ARGUMENT,
                         "reinforce: parameter 'mis_low' = \(low) exceeds 'tis_cap' = \(cap) (mask keeps ratios in [mis_low, tis_cap])")
  }
  out.pointee = Unmanaged.passRetained(Instance(host: host, aggregation: aggregation, seqIS: seqIS, cap: cap, low: low)).toOpaque()
  return KEEL_OK
}

private let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { raw in
  guard let raw else { return }
  Unmanaged<Instance>.fromOpaque(raw).release()
}

// ---- Metrics -------------------------------------------------------------------------------
private let metricCount = 4

nonisolated(unsafe) private let metricDecls: UnsafeMutablePointer<keel_scalar_decl> = {
  let p = UnsafeMutablePointer<keel_scalar_decl>.allocate(capacity: metricCount)
  func decl(_ name: StaticString, _ doc: StaticString) -> keel_scalar_decl {
    keel_scalar_decl(struct_size: UInt32(MemoryLayout<keel_scalar_decl>.size), reduction: KEEL_REDUCE_TOKEN_MEAN,
                     name: cstr(name), doc: cstr(doc))
  }
  p.initialize(to: decl("advantage_mean", "mean advantage over the call's unmasked tokens"))
  (p + 1).initialize(to: decl("is_weight_mean", "mean sequence IS weight as used over unmasked tokens (1 when seq_is is none)"))
  (p + 2).initialize(to: decl("is_masked_fraction", "fraction of unmasked tokens in responses whose weight mask set to 0"))
  (p + 3).initialize(to: decl("is_truncated_fraction", "fraction of unmasked tokens in responses whose ratio was truncated to tis_cap"))
  return p
}()

private let compute: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<keel_objective_batch>?, UnsafeMutablePointer<keel_objective_output>?) -> Int32 = { raw, batchPtr, outPtr in
  guard let raw, let b = batchPtr?.pointee, let out = outPtr else { return KEEL_ERR_INVALID_ARGUMENT }
  let me = Unmanaged<Instance>.fromOpaque(raw).takeUnretainedValue()
  let n = Int(b.num_tokens), ns = Int(b.num_sequences)
  let useIS = me.seqIS != isNone
  out.pointee.loss = 0
  if let m = out.pointee.metrics { for k in 0..<min(Int(out.pointee.metric_count), metricCount) { m[k] = 0 } }
  guard n >= 0, ns >= 0 else { return me.fail(KEEL_ERR_INVALID_ARGUMENT, "reinforce: negative num_sequences or num_tokens") }
  guard n > 0 else { return KEEL_OK }
  guard let mask = b.mask, let adv = b.advantages, let logp = b.logp, let grad = out.pointee.grad_logp else {
    return me.fail(KEEL_ERR_INVALID_ARGUMENT, "reinforce: a required token array is NULL")
  }
  guard ns > 0, let offsets = b.seq_offsets, offsets[0] == 0, offsets[ns] == Int64(n),
        (0..<ns).allSatisfy({ offsets[$0 + 1] >= offsets[$0] }) else {
    return me.fail(KEEL_ERR_INVALID_ARGUMENT, "reinforce: seq_offsets must be present and run from 0 to num_tokens (\(n)), non-decreasing")
  }
  let rollout = b.logp_rollout
  if useIS && rollout == nil { return me.fail(KEEL_ERR_INVALID_ARGUMENT, "reinforce: logp_rollout is NULL (seq_is is not none)") }
  let frozen = b.logp_frozen ?? logp
  var advSum = 0.0, tokens = 0.0
  for i in 0..<ns {
    for t in Int(offsets[i])..<Int(offsets[i + 1]) where mask[t] != 0 {
      let bad: String? = !logp[t].isFinite ? "logp"
        : (useIS && !frozen[t].isFinite) ? "logp_frozen"
        : (useIS && !rollout![t].isFinite) ? "logp_rollout"
        : !adv[t].isFinite ? "advantage" : nil
      if let bad { return me.fail(KEEL_ERR_NUMERIC, "reinforce: non-finite \(bad) at token \(t) (response \(i))") }
      tokens += 1
      advSum += Double(adv[t])
    }
  }
  let byTokens = me.aggregation == aggTokenMean
  let total = byTokens ? b.total_tokens : b.total_sequences
  if tokens > 0 && !(total > 0 && total.isFinite) {
    return me.fail(KEEL_ERR_INVALID_ARGUMENT,
                   "reinforce: \(byTokens ? "total_tokens" : "total_sequences") must be > 0 when tokens are unmasked (got \(total))")
  }
  // scale = −c (before the per-response 1/n_i of seq-mean-token-mean); 0 without unmasked tokens.
  var scale = tokens > 0 ? -1.0 / total : 0
  if me.aggregation == aggSeqMeanTokenSumNorm && tokens > 0 {
    var lMax = Double(b.max_response_tokens)
    if !(lMax > 0) {
      if !me.warnedNoMaxTokens, let log = me.host.pointee.log {
        "reinforce: max_response_tokens is not set (<= 0); normalising by total_sequences alone (L_max = 1)".withCString {
          log(me.host, KEEL_LOG_WARNING, $0)
        }
      }
      me.warnedNoMaxTokens = true
      lMax = 1
    }
    scale = -1.0 / (total * lMax)
  }
  var loss = 0.0, wSum = 0.0, masked = 0.0, truncated = 0.0
  for i in 0..<ns {
    let range = Int(offsets[i])..<Int(offsets[i + 1])
    var w = 1.0
    if useIS {
      var logRatio = 0.0
      for t in range where mask[t] != 0 { logRatio += Double(frozen[t]) - Double(rollout![t]) }
      let ratio = exp(logRatio)
      let kept = range.reduce(0.0) { $0 + (mask[$1] != 0 ? 1 : 0) }
      if me.seqIS == isTruncate {
        if ratio > me.cap { w = me.cap; truncated += kept } else { w = ratio }
      } else if ratio >= me.low && ratio <= me.cap {
        w = ratio
      } else {
        w = 0
        masked += kept
      }
    }
    var c = scale
    if me.aggregation == aggSeqMeanTokenMean {
      let nI = range.reduce(0.0) { $0 + (mask[$1] != 0 ? 1 : 0) }
      c = nI > 0 ? scale / nI : 0
    }
    let coef = c * w
    for t in range {
      if mask[t] != 0 {
        wSum += w
        loss += coef * Double(adv[t]) * Double(logp[t])
        let g = Float(coef * Double(adv[t]))
        guard g.isFinite else {
          return me.fail(KEEL_ERR_NUMERIC, "reinforce: gradient not finite at token \(t) (response \(i)): w=\(w) A=\(adv[t])")
        }
        grad[t] = g
      } else {
        grad[t] = 0
      }
    }
  }
  guard loss.isFinite else { return me.fail(KEEL_ERR_NUMERIC, "reinforce: loss is not finite (\(loss))") }
  out.pointee.loss = loss
  if tokens > 0, let m = out.pointee.metrics {
    let values = [advSum / tokens, wSum / tokens, masked / tokens, truncated / tokens]
    for k in 0..<min(Int(out.pointee.metric_count), metricCount) { m[k] = values[k] }
  }
  return KEEL_OK
}

nonisolated(unsafe) private let vtable: UnsafeMutablePointer<keel_objective_vtable> = {
  let p = UnsafeMutablePointer<keel_objective_vtable>.allocate(capacity: 1)
  var v = keel_objective_vtable()
  v.struct_size = UInt32(MemoryLayout<keel_objective_vtable>.size)
  v.metric_count = UInt32(metricCount)
  v.metrics = UnsafePointer(metricDecls)
  v.aggregation = cstr("seq-mean-token-sum")
  v.compute = compute
  p.initialize(to: v)
  return p
}()

nonisolated(unsafe) private let descriptor: UnsafeMutablePointer<keel_plugin> = {
  let p = UnsafeMutablePointer<keel_plugin>.allocate(capacity: 1)
  var d = keel_plugin()
  d.struct_size = UInt32(MemoryLayout<keel_plugin>.size)
  d.abi_major = UInt32(KEEL_ABI_MAJOR)
  d.abi_minor = UInt32(KEEL_ABI_MINOR)
  d.kind = KEEL_KIND_OBJECTIVE
  d.name = cstr("reinforce")
  d.version = cstr("1.0.0")
  d.description = cstr("token-level REINFORCE, no clip, optional sequence-level IS to the sampler (seq_is: verl bypass mode, loss_type reinforce); seq-mean-token-sum by default (loss_agg_mode; verl REINFORCE, seq-mean-token-sum)")
  d.param_count = UInt32(P.count)
  d.params = UnsafePointer(paramDecls)
  d.create = create
  d.destroy = destroy
  d.vtable = UnsafeRawPointer(vtable)
  p.initialize(to: d)
  return p
}()

@c public func keel_plugin_entry(_ hostMajor: UInt32, _ hostMinor: UInt32) -> UnsafePointer<keel_plugin>? {
  guard hostMajor == UInt32(KEEL_ABI_MAJOR), hostMinor >= UInt32(KEEL_ABI_MINOR) else { return nil }
  return UnsafePointer(descriptor)
}
