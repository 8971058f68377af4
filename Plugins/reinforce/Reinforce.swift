// Reinforce.swift — objective "reinforce": plain token-level REINFORCE, no importance weight,
// no mask, written in Swift against the C header only (proves the Swift plugin path).
//   loss = −(1/S) Σ_i Σ_t m_t · Â_t · logp_t,   ∂loss/∂logp_t = −m_t · Â_t / S
// S = total_sequences of the optimizer-step batch (aggregation seq-mean-token-sum, MiniRL's).
// Equals verl's vanilla policy loss with no ratio and loss_agg_mode "seq-mean-token-sum".

import KeelABI

private func cstr(_ s: StaticString) -> UnsafePointer<CChar> {
  UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

private final class Instance {
  let host: UnsafePointer<keel_host>
  init(host: UnsafePointer<keel_host>) { self.host = host }
  func fail(_ status: Int32, _ message: String) -> Int32 {
    message.withCString { host.pointee.error(host, $0) }
    return status
  }
}

nonisolated(unsafe) private let metricDecls: UnsafeMutablePointer<keel_scalar_decl> = {
  let p = UnsafeMutablePointer<keel_scalar_decl>.allocate(capacity: 1)
  p.initialize(to: keel_scalar_decl(struct_size: UInt32(MemoryLayout<keel_scalar_decl>.size),
                                    reduction: KEEL_REDUCE_TOKEN_MEAN, name: cstr("advantage_mean"),
                                    doc: cstr("mean advantage over the call's unmasked tokens")))
  return p
}()

private let create: @convention(c) (UnsafePointer<keel_host>?, UnsafePointer<keel_params>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 = { host, _, out in
  guard let host, let out else { return KEEL_ERR_INVALID_ARGUMENT }
  out.pointee = Unmanaged.passRetained(Instance(host: host)).toOpaque()
  return KEEL_OK
}

private let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { raw in
  guard let raw else { return }
  Unmanaged<Instance>.fromOpaque(raw).release()
}

private let compute: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<keel_objective_batch>?, UnsafeMutablePointer<keel_objective_output>?) -> Int32 = { raw, batchPtr, outPtr in
  guard let raw, let b = batchPtr?.pointee, let out = outPtr else { return KEEL_ERR_INVALID_ARGUMENT }
  let me = Unmanaged<Instance>.fromOpaque(raw).takeUnretainedValue()
  let n = Int(b.num_tokens)
  var loss = 0.0, advSum = 0.0, tokens = 0.0
  if n > 0 {
    guard let mask = b.mask, let adv = b.advantages, let logp = b.logp, let grad = out.pointee.grad_logp else {
      return me.fail(KEEL_ERR_INVALID_ARGUMENT, "reinforce: a required token array is NULL")
    }
    for t in 0..<n where mask[t] != 0 {
      guard logp[t].isFinite, adv[t].isFinite else {
        return me.fail(KEEL_ERR_NUMERIC, "reinforce: non-finite \(logp[t].isFinite ? "advantage" : "logp") at token \(t)")
      }
      tokens += 1
      advSum += Double(adv[t])
    }
    if tokens > 0 && !(b.total_sequences > 0) {
      return me.fail(KEEL_ERR_INVALID_ARGUMENT, "reinforce: total_sequences must be > 0 when tokens are unmasked")
    }
    let scale = tokens > 0 ? -1.0 / b.total_sequences : 0
    for t in 0..<n {
      if mask[t] != 0 {
        loss += scale * Double(adv[t]) * Double(logp[t])
        grad[t] = Float(scale * Double(adv[t]))
      } else {
        grad[t] = 0
      }
    }
  }
  out.pointee.loss = loss
  if out.pointee.metric_count >= 1, let m = out.pointee.metrics { m[0] = tokens > 0 ? advSum / tokens : 0 }
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
  d.name = cstr("reinforce")
  d.version = cstr("1.0.0")
  d.description = cstr("token-level REINFORCE, no IS weight, no mask; seq-mean-token-sum (verl vanilla loss without ratio, seq-mean-token-sum)")
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
