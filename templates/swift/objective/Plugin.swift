// Plugin.swift — objective "keel-template-objective", a Swift starting point (ABI 1.1). The same
// objective, with the same parameters and the same arithmetic, is in templates/c/objective/plugin.c
// and templates/rust/objective/lib.rs.
//
// Formula (EDIT HERE, in `compute` below): PPO's clipped surrogate, token-mean, with an optional
// entropy bonus, as a loss to MINIMISE (T = total_tokens, the unmasked tokens of the whole step):
//   L    = (1/T) Σ_t m_t ℓ_t − entropy_coef · (1/T) Σ_t m_t H_t
//   ℓ_t  = max(−A_t r_t, −A_t clip(r_t, 1 − eps, 1 + eps)),  r_t = exp(logp_t − base_t)
//   base_t = logp_old_t (ratio_to = "old", PPO's π_old) or logp_rollout_t ("rollout", μ)
// Stop-gradients: the branch is a constant, decided from ρ_t = exp(frozen_t − base_t) (frozen =
// logp_frozen, or logp when NULL): A > 0 and ρ > 1 + eps, or A < 0 and ρ < 1 − eps → clipped,
// ℓ_t = −A_t(1 ± eps), ∂ℓ_t/∂logp_t = 0; otherwise ℓ_t = −A_t r_t with r_t from logp (live),
// ∂ℓ_t/∂logp_t = −A_t r_t.
//   grad_logp[t] = m_t ∂ℓ_t/∂logp_t / T;   grad_entropy[t] = −m_t entropy_coef / T (coef > 0 only)
// Arithmetic (as the C and Rust templates, so all three agree bit for bit): Double sums
// pg = Σ ℓ_t and hs = Σ H_t in token order, L = pg / T, then L − entropy_coef · (hs / T).
// Equals verl's vanilla policy loss (token-mean, clip_ratio = eps, no dual clip) minus
// entropy_coeff · token-mean(entropy) (verl/workers/actor/dp_actor.py).
//
// Parameters (read by name in create, stepping keel_params.values by its struct_size, rule 4.4):
//   eps FLOAT [0, 1] = 0.2;  entropy_coef FLOAT >= 0 = 0 (> 0: create() asks the host for the
//   per-token entropy through keel_params.instance_flags, ABI 1.1);  ratio_to STRING
//   "old" | "rollout" = "old" (declared with `choices`, ABI 1.1).
// One metric `clip_fraction` (TOKEN_MEAN). Failures: non-finite input on an unmasked token or a
// non-finite result → KEEL_ERR_NUMERIC; a missing array, total_tokens <= 0 with unmasked tokens,
// entropy_coef > 0 without an entropy array → KEEL_ERR_INVALID_ARGUMENT; entropy_coef > 0 on a
// host without per-instance flags → KEEL_ERR_UNSUPPORTED. host->error is called first.
// Build: make   →  libkeel-template-objective.so;  check: keel plugins check ./libkeel-template-objective.so
import KeelABI

#if canImport(Glibc)
import Glibc
#else
import Darwin
#endif

private func cstr(_ s: StaticString) -> UnsafePointer<CChar> {
  UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Per-run state: the host table (for errors) and the parameters. No globals are mutated.
private final class Instance {
  let host: UnsafePointer<keel_host>
  let eps: Double
  let entropyCoef: Double
  let ratioToRollout: Bool  // false: base = logp_old, true: base = logp_rollout
  init(host: UnsafePointer<keel_host>, eps: Double, entropyCoef: Double, ratioToRollout: Bool) {
    self.host = host
    self.eps = eps
    self.entropyCoef = entropyCoef
    self.ratioToRollout = ratioToRollout
  }
}

/// host->error(message), then the status (error first: ABI rule).
private func fail(_ host: UnsafePointer<keel_host>, _ status: Int32, _ message: String) -> Int32 {
  "keel-template-objective: \(message)".withCString { host.pointee.error?(host, $0) }
  return status
}

/// `ratio_to`'s allowed values (ABI 1.1 `choices`, NULL-terminated). The host refuses any other
/// value before create(); create() checks again (another host may not).
nonisolated(unsafe) private let ratioToChoices: UnsafeMutablePointer<UnsafePointer<CChar>?> = {
  let p = UnsafeMutablePointer<UnsafePointer<CChar>?>.allocate(capacity: 3)
  p.initialize(to: cstr("old"))
  (p + 1).initialize(to: cstr("rollout"))
  (p + 2).initialize(to: nil)
  return p
}()

nonisolated(unsafe) private let paramDecls: UnsafeMutablePointer<keel_param_decl> = {
  func decl(_ type: keel_param_type, _ name: StaticString, _ doc: StaticString, _ defaultF: Double,
            _ defaultS: StaticString, _ lo: Double, _ hi: Double) -> keel_param_decl {
    var d = keel_param_decl()
    d.struct_size = UInt32(MemoryLayout<keel_param_decl>.size)
    d.type = type
    d.name = cstr(name)
    d.doc = cstr(doc)
    d.default_f = defaultF
    d.default_s = cstr(defaultS)
    d.min_value = lo
    d.max_value = hi
    return d
  }
  let p = UnsafeMutablePointer<keel_param_decl>.allocate(capacity: 3)
  p.initialize(to: decl(KEEL_PARAM_FLOAT, "eps", "clip range: the ratio is clipped to [1 - eps, 1 + eps]",
                        0.2, "", 0, 1))
  (p + 1).initialize(to: decl(KEEL_PARAM_FLOAT, "entropy_coef",
                              "weight of the token-mean entropy bonus (0 = off; > 0 asks the host for the entropy)",
                              0, "", 0, .infinity))
  var ratioTo = decl(KEEL_PARAM_STRING, "ratio_to",
                     "the ratio's denominator: old = logp_old (PPO's pi_old), rollout = logp_rollout (sampler)",
                     0, "old", 0, 0)
  ratioTo.choices = UnsafePointer(ratioToChoices)
  (p + 2).initialize(to: ratioTo)
  return p
}()

nonisolated(unsafe) private let metricDecls: UnsafeMutablePointer<keel_scalar_decl> = {
  let p = UnsafeMutablePointer<keel_scalar_decl>.allocate(capacity: 1)
  p.initialize(to: keel_scalar_decl(struct_size: UInt32(MemoryLayout<keel_scalar_decl>.size),
                                    reduction: KEEL_REDUCE_TOKEN_MEAN, name: cstr("clip_fraction"),
                                    doc: cstr("fraction of unmasked tokens whose clipped branch is active")))
  return p
}()

/// Does a host struct of `size` bytes (its struct_size) contain a pointer field at `offset`?
/// A reader checks struct_size before reading a field appended after 1.0.
private func covers(_ size: UInt32, _ offset: Int?) -> Bool {
  guard let offset else { return false }
  return Int(size) >= offset + MemoryLayout<UnsafeRawPointer?>.size
}

private let create: @convention(c) (UnsafePointer<keel_host>?, UnsafePointer<keel_params>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 = { host, params, out in
  guard let host, let out else { return KEEL_ERR_INVALID_ARGUMENT }
  var eps = 0.2, entropyCoef = 0.0, ratioTo = "old"  // the declared defaults
  if let params, params.pointee.count > 0 {
    guard let values = params.pointee.values else { return fail(host, KEEL_ERR_INVALID_ARGUMENT, "parameter values are NULL") }
    // Step by the host's struct_size, never by MemoryLayout (ABI rule 4.4: a newer host's
    // keel_param_value may be longer than the one this plugin was compiled with).
    var at = UnsafeRawPointer(values)
    for _ in 0..<Int(params.pointee.count) {
      let size = at.load(as: UInt32.self)  // struct_size alone, before trusting the rest
      guard Int(size) >= MemoryLayout<keel_param_value>.size else {
        return fail(host, KEEL_ERR_INVALID_ARGUMENT, "malformed parameter value (struct_size \(size))")
      }
      let v = at.assumingMemoryBound(to: keel_param_value.self).pointee
      let name = v.name.map { String(cString: $0) } ?? ""
      switch (name, v.type) {
      case ("eps", KEEL_PARAM_FLOAT): eps = v.f
      case ("entropy_coef", KEEL_PARAM_FLOAT): entropyCoef = v.f
      case ("ratio_to", KEEL_PARAM_STRING): ratioTo = v.s.map { String(cString: $0) } ?? ""  // a copy
      default:
        return fail(host, KEEL_ERR_INVALID_ARGUMENT,
                    "unknown parameter '\(name)' (type \(v.type)); valid: eps (float), entropy_coef (float), ratio_to (string)")
      }
      at += Int(size)
    }
  }
  // The host validated ranges and choices against the declarations; check again anyway.
  guard eps >= 0, eps <= 1, entropyCoef >= 0, entropyCoef.isFinite else {
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "eps = \(eps) must be in [0, 1] and entropy_coef = \(entropyCoef) finite and >= 0")
  }
  guard ratioTo == "old" || ratioTo == "rollout" else {
    return fail(host, KEEL_ERR_INVALID_ARGUMENT, "parameter 'ratio_to' = '\(ratioTo)' is not one of old, rollout")
  }
  // This instance's needs (ABI 1.1): the host supplies batch.entropy (and grad_entropy) only
  // when create() sets KEEL_OBJECTIVE_USES_ENTROPY here. The slot exists only when struct_size
  // covers it: a 1.0 host has none and supplies no entropy, so an instance that needs it refuses.
  let flags: UInt32 = entropyCoef > 0 ? UInt32(KEEL_OBJECTIVE_USES_ENTROPY) : 0
  if let params, covers(params.pointee.struct_size, MemoryLayout<keel_params>.offset(of: \.instance_flags)),
     let slot = params.pointee.instance_flags {
    slot.pointee = flags
  } else if flags != 0 {
    return fail(host, KEEL_ERR_UNSUPPORTED, "entropy_coef > 0 needs a host with per-instance flags (ABI >= 1.1)")
  }
  let me = Instance(host: host, eps: eps, entropyCoef: entropyCoef, ratioToRollout: ratioTo == "rollout")
  out.pointee = Unmanaged.passRetained(me).toOpaque()
  return KEEL_OK
}

private let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { raw in
  if let raw { Unmanaged<Instance>.fromOpaque(raw).release() }
}

private let compute: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<keel_objective_batch>?, UnsafeMutablePointer<keel_objective_output>?) -> Int32 = { raw, batchPtr, outPtr in
  guard let raw else { return KEEL_ERR_INVALID_ARGUMENT }
  let me = Unmanaged<Instance>.fromOpaque(raw).takeUnretainedValue()
  guard let b = batchPtr?.pointee, let out = outPtr else {
    return fail(me.host, KEEL_ERR_INVALID_ARGUMENT, "batch or output is NULL")
  }
  out.pointee.loss = 0
  if out.pointee.metric_count >= 1, let m = out.pointee.metrics { m[0] = 0 }
  let n = Int(b.num_tokens)
  if n <= 0 { return KEEL_OK }  // an empty call: loss 0
  guard let mask = b.mask, let adv = b.advantages, let logp = b.logp,
        let base = me.ratioToRollout ? b.logp_rollout : b.logp_old, let grad = out.pointee.grad_logp else {
    return fail(me.host, KEEL_ERR_INVALID_ARGUMENT, "a required token array is NULL")
  }
  // ABI 1.1 fields: read them only when the host's struct_size covers them.
  let useEntropy = me.entropyCoef > 0
  var entropy: UnsafePointer<Float>? = nil
  var gradEntropy: UnsafeMutablePointer<Float>? = nil
  if useEntropy {
    if covers(b.struct_size, MemoryLayout<keel_objective_batch>.offset(of: \.entropy)) { entropy = b.entropy }
    if covers(out.pointee.struct_size, MemoryLayout<keel_objective_output>.offset(of: \.grad_entropy)) {
      gradEntropy = out.pointee.grad_entropy
    }
    guard entropy != nil, gradEntropy != nil else {
      return fail(me.host, KEEL_ERR_INVALID_ARGUMENT, "entropy_coef > 0 but the host gave no entropy / grad_entropy")
    }
  }
  // Stop-gradient rule: differentiate through `logp` only; constants (ratios, clip decisions,
  // anything behind sg[.]) come from `frozen` (NULL means "= logp"): the gradient checker keeps
  // logp_frozen fixed and perturbs logp.
  let frozen = b.logp_frozen ?? logp
  // Normalise by the WHOLE optimizer-step batch, never by counts of this call.
  let total = b.total_tokens, eps = me.eps
  var pg = 0.0, hs = 0.0
  var unmasked = 0, clipped = 0
  for t in 0..<n {
    guard mask[t] != 0 else {
      grad[t] = 0  // masked tokens must get exactly 0
      gradEntropy?[t] = 0
      continue
    }
    let lp = Double(logp[t]), fz = Double(frozen[t]), bt = Double(base[t]), a = Double(adv[t])
    let h = entropy.map { Double($0[t]) } ?? 0
    guard lp.isFinite, fz.isFinite, bt.isFinite, a.isFinite, h.isFinite else {
      return fail(me.host, KEEL_ERR_NUMERIC, "non-finite input at token \(t)")
    }
    guard total > 0 else {
      return fail(me.host, KEEL_ERR_INVALID_ARGUMENT, "unmasked tokens but total_tokens = \(total) (must be > 0)")
    }

    // ---- EDIT HERE: the per-token loss term ℓ_t (`term`) and dℓ_t/dlogp_t (`slope`) ----
    let rho = exp(fz - bt)  // sg[r_t]: decides the branch, carries no gradient
    let term: Double, slope: Double
    if (a > 0 && rho > 1 + eps) || (a < 0 && rho < 1 - eps) {
      term = -a * (a > 0 ? 1 + eps : 1 - eps)  // clipped: a constant
      slope = 0
      clipped += 1
    } else {
      let r = exp(lp - bt)  // the live ratio
      term = -a * r
      slope = -a * r
    }
    // ---- END EDIT HERE ----

    pg += term
    let g = Float(slope / total)
    guard g.isFinite else { return fail(me.host, KEEL_ERR_NUMERIC, "gradient at token \(t) is not finite (ratio overflow)") }
    grad[t] = g
    if useEntropy {
      hs += h
      gradEntropy?[t] = Float(-me.entropyCoef / total)
    }
    unmasked += 1
  }
  var loss = unmasked > 0 ? pg / total : 0
  if useEntropy && unmasked > 0 { loss = loss - me.entropyCoef * (hs / total) }
  guard loss.isFinite else { return fail(me.host, KEEL_ERR_NUMERIC, "the loss is not finite (ratio overflow)") }
  out.pointee.loss = loss
  if out.pointee.metric_count >= 1, let m = out.pointee.metrics {
    m[0] = unmasked > 0 ? Double(clipped) / Double(unmasked) : 0  // TOKEN_MEAN over the call
  }
  return KEEL_OK
}

nonisolated(unsafe) private let vtable: UnsafeMutablePointer<keel_objective_vtable> = {
  let p = UnsafeMutablePointer<keel_objective_vtable>.allocate(capacity: 1)
  var v = keel_objective_vtable()
  v.struct_size = UInt32(MemoryLayout<keel_objective_vtable>.size)
  v.flags = 0  // static needs; this template writes them per instance in create()
  v.metric_count = 1
  v.metrics = UnsafePointer(metricDecls)
  v.aggregation = cstr("token-mean")
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
  d.name = cstr("keel-template-objective")
  d.version = cstr("0.1.0")
  d.description = cstr("PPO clip max(-A r, -A clip(r, 1-eps, 1+eps)) with an optional entropy bonus, token-mean; verl vanilla policy loss (token-mean, entropy_coeff) (Swift template)")
  d.param_count = 3
  d.params = UnsafePointer(paramDecls)
  d.create = create
  d.destroy = destroy
  d.vtable = UnsafeRawPointer(vtable)
  p.initialize(to: d)
  return p
}()

/// The only exported symbol. The ABI check: refuse (nil) a host of another major, or of an older
/// minor than the header this file is compiled against (its structs may lack fields we read).
@c public func keel_plugin_entry(_ hostMajor: UInt32, _ hostMinor: UInt32) -> UnsafePointer<keel_plugin>? {
  guard hostMajor == UInt32(KEEL_ABI_MAJOR), hostMinor >= UInt32(KEEL_ABI_MINOR) else { return nil }
  return UnsafePointer(descriptor)
}
