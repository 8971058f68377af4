// Plugin.swift — objective "keel-template-objective", a Swift starting point.
// Formula (EDIT HERE, in `compute` below): REINFORCE with a truncated importance weight
// against the sampler, the weight taken from logp_frozen so it carries no gradient:
//   loss = −(1/S) Σ_i Σ_t m_t · sg[min(π/μ, cap)] · Â_t · logp_t
//   ∂loss/∂logp_t = −m_t · min(exp(frozen_t − logp_rollout_t), cap) · Â_t / S
// S = total_sequences (the whole optimizer-step batch): never divide by counts of the call.
// Build: make   →  libkeel-template-objective.so;  check: keel plugins check ./libkeel-template-objective.so
import KeelABI

private func cstr(_ s: StaticString) -> UnsafePointer<CChar> {
  UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// Per-run state: the host table (for errors) and the parameters. No globals are mutated.
private final class Instance {
  let host: UnsafePointer<keel_host>
  var cap = 5.0
  init(host: UnsafePointer<keel_host>) { self.host = host }
  func fail(_ status: Int32, _ message: String) -> Int32 {
    message.withCString { host.pointee.error(host, $0) }
    return status
  }
}

nonisolated(unsafe) private let paramDecls: UnsafeMutablePointer<keel_param_decl> = {
  let p = UnsafeMutablePointer<keel_param_decl>.allocate(capacity: 1)
  var d = keel_param_decl()
  d.struct_size = UInt32(MemoryLayout<keel_param_decl>.size)
  d.type = KEEL_PARAM_FLOAT
  d.name = cstr("cap")
  d.doc = cstr("truncation C of the importance weight min(π/μ, C)")
  d.default_f = 5.0
  d.min_value = 1e-9
  d.max_value = .infinity
  p.initialize(to: d)
  return p
}()

nonisolated(unsafe) private let metricDecls: UnsafeMutablePointer<keel_scalar_decl> = {
  let p = UnsafeMutablePointer<keel_scalar_decl>.allocate(capacity: 1)
  p.initialize(to: keel_scalar_decl(struct_size: UInt32(MemoryLayout<keel_scalar_decl>.size),
                                    reduction: KEEL_REDUCE_TOKEN_MEAN, name: cstr("is_weight_mean"),
                                    doc: cstr("mean truncated IS weight over unmasked tokens")))
  return p
}()

private let create: @convention(c) (UnsafePointer<keel_host>?, UnsafePointer<keel_params>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 = { host, params, out in
  guard let host, let out else { return KEEL_ERR_INVALID_ARGUMENT }
  let me = Instance(host: host)
  if let params = params?.pointee, let values = params.values, params.count > 0 {
    // step by the host's struct_size, never by MemoryLayout (ABI rule 4.4: a newer host's
    // keel_param_value may be longer than the one this plugin was compiled with)
    let stride = Int(values.pointee.struct_size), base = UnsafeRawPointer(values)
    for k in 0..<Int(params.count) {
      let v = base.advanced(by: k * stride).assumingMemoryBound(to: keel_param_value.self).pointee
      if String(cString: v.name) == "cap" { me.cap = v.f }
    }
  }
  out.pointee = Unmanaged.passRetained(me).toOpaque()
  return KEEL_OK
}

private let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { raw in
  if let raw { Unmanaged<Instance>.fromOpaque(raw).release() }
}

private let compute: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<keel_objective_batch>?, UnsafeMutablePointer<keel_objective_output>?) -> Int32 = { raw, batchPtr, outPtr in
  guard let raw, let b = batchPtr?.pointee, let out = outPtr else { return KEEL_ERR_INVALID_ARGUMENT }
  let me = Unmanaged<Instance>.fromOpaque(raw).takeUnretainedValue()
  let n = Int(b.num_tokens)
  var loss = 0.0, weightSum = 0.0, tokens = 0.0
  if n > 0 {
    guard let mask = b.mask, let adv = b.advantages, let logp = b.logp, let rollout = b.logp_rollout,
          let grad = out.pointee.grad_logp else {
      return me.fail(KEEL_ERR_INVALID_ARGUMENT, "keel-template-objective: a required token array is NULL")
    }
    let frozen = b.logp_frozen ?? logp  // constants come from here (NULL means "= logp")
    for t in 0..<n {
      grad[t] = 0
      guard mask[t] != 0 else { continue }
      guard logp[t].isFinite, frozen[t].isFinite, rollout[t].isFinite, adv[t].isFinite else {
        return me.fail(KEEL_ERR_NUMERIC, "keel-template-objective: non-finite input at token \(t)")
      }
      guard b.total_sequences > 0 else {
        return me.fail(KEEL_ERR_INVALID_ARGUMENT, "keel-template-objective: total_sequences must be > 0")
      }
      // ---- EDIT HERE: the per-token loss and its derivative in logp[t] ----
      let weight = min(Double(frozen[t] - rollout[t]).exp, me.cap)  // sg[min(π/μ, C)]
      let coefficient = -weight * Double(adv[t]) / b.total_sequences
      loss += coefficient * Double(logp[t])
      grad[t] = Float(coefficient)
      // ---- end of the formula ----
      weightSum += weight
      tokens += 1
    }
  }
  out.pointee.loss = loss
  if out.pointee.metric_count >= 1, let m = out.pointee.metrics { m[0] = tokens > 0 ? weightSum / tokens : 0 }
  return KEEL_OK
}

nonisolated(unsafe) private let vtable: UnsafeMutablePointer<keel_objective_vtable> = {
  let p = UnsafeMutablePointer<keel_objective_vtable>.allocate(capacity: 1)
  var v = keel_objective_vtable()
  v.struct_size = UInt32(MemoryLayout<keel_objective_vtable>.size)
  v.metric_count = 1
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
  d.name = cstr("keel-template-objective")
  d.version = cstr("0.1.0")
  d.description = cstr("REINFORCE with truncated IS weight sg[min(π/μ, cap)] against the sampler; seq-mean-token-sum")
  d.param_count = 1
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

private extension Double {
  var exp: Double { _exp(self) }
}
#if canImport(Glibc)
import Glibc
private func _exp(_ x: Double) -> Double { Glibc.exp(x) }
#else
import Darwin
private func _exp(_ x: Double) -> Double { Darwin.exp(x) }
#endif
