// GroupMean.swift — baseline "group-mean" (MiniRL, paper §4): Â_i = R_i − mean of R over the
// responses of the same prompt group. No std division. A singleton group gets 0; an all-equal
// group gets 0. Sums in double, in response order. Written in Swift against the C header only.
// Equals verl's GRPO advantage with norm_adv_by_std_in_grpo=False (Dr.GRPO), except that verl
// gives a one-response group A = R.

import KeelABI

private func cstr(_ s: StaticString) -> UnsafePointer<CChar> {
  UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}

private final class Instance {
  let host: UnsafePointer<keel_host>
  init(host: UnsafePointer<keel_host>) { self.host = host }
}

private let create: @convention(c) (UnsafePointer<keel_host>?, UnsafePointer<keel_params>?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?) -> Int32 = { host, _, out in
  guard let host, let out else { return KEEL_ERR_INVALID_ARGUMENT }
  out.pointee = Unmanaged.passRetained(Instance(host: host)).toOpaque()
  return KEEL_OK
}

private let destroy: @convention(c) (UnsafeMutableRawPointer?) -> Void = { raw in
  guard let raw else { return }
  Unmanaged<Instance>.fromOpaque(raw).release()
}

private let compute: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<keel_baseline_batch>?, UnsafeMutablePointer<keel_baseline_output>?) -> Int32 = { raw, batchPtr, outPtr in
  guard let raw, let b = batchPtr?.pointee, let out = outPtr?.pointee else { return KEEL_ERR_INVALID_ARGUMENT }
  let me = Unmanaged<Instance>.fromOpaque(raw).takeUnretainedValue()
  let n = Int(b.count)
  guard n > 0 else { return KEEL_OK }
  guard let rewards = b.rewards, let groups = b.group_ids, let adv = out.advantages else {
    "group-mean: rewards, group_ids or advantages is NULL".withCString { me.host.pointee.error(me.host, $0) }
    return KEEL_ERR_INVALID_ARGUMENT
  }
  var sums: [Int64: (Double, Int)] = [:]
  for i in 0..<n {
    guard rewards[i].isFinite else {
      "group-mean: reward of response \(i) is \(rewards[i])".withCString { me.host.pointee.error(me.host, $0) }
      return KEEL_ERR_NUMERIC
    }
    let s = sums[groups[i], default: (0, 0)]
    sums[groups[i]] = (s.0 + Double(rewards[i]), s.1 + 1)
  }
  for i in 0..<n {
    let s = sums[groups[i]]!
    adv[i] = Float(Double(rewards[i]) - s.0 / Double(s.1))
  }
  return KEEL_OK
}

nonisolated(unsafe) private let vtable: UnsafeMutablePointer<keel_baseline_vtable> = {
  let p = UnsafeMutablePointer<keel_baseline_vtable>.allocate(capacity: 1)
  var v = keel_baseline_vtable()
  v.struct_size = UInt32(MemoryLayout<keel_baseline_vtable>.size)
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
  d.kind = KEEL_KIND_BASELINE
  d.name = cstr("group-mean")
  d.version = cstr("1.0.0")
  d.description = cstr("Â = R − mean R of the prompt's group, no std division (MiniRL; verl GRPO with norm_adv_by_std_in_grpo=False)")
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
