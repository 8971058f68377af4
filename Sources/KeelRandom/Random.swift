// Random.swift — counter-based randomness. Every random number Keel draws is a pure function
// of a key (seed, purpose, step, prompt index, sample index, position…), never of a batch
// position or a thread, so the same prompt gives the same sample in any batch, on any number
// of threads or ranks. The mixer is SplitMix64's finaliser; streams are SplitMix64 sequences.
// The project's one SplitMix64: the model (initialisation, sampling) and the rollout buffer
// (mini-batch order) draw from `CounterRNG`; the tasks (problems, teachers) and the plugin
// checker from the textbook `SplitMix64` stream. Both use the same finaliser.

/// SplitMix64's increment (the golden-ratio gamma).
public let splitMix64Gamma: UInt64 = 0x9E37_79B9_7F4A_7C15

/// SplitMix64's output function.
@inline(__always) public func splitMix64Finalize(_ x: UInt64) -> UInt64 {
  var z = x
  z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
  z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
  return z ^ (z >> 31)
}

@inline(__always) public func mix64(_ x: UInt64) -> UInt64 { splitMix64Finalize(x &+ splitMix64Gamma) }

/// Hash an ordered list of integers into one 64-bit key.
@inline(__always) public func hashKey(_ parts: UInt64...) -> UInt64 {
  var h: UInt64 = 0x243F_6A88_85A3_08D3
  for p in parts { h = mix64(h ^ mix64(p)) }
  return h
}

/// A keyed bijection of 0..<n, computed per index without storing a permutation: a 4-round
/// Feistel network on the smallest even bit width covering n (≤ 4n values), walking the cycle
/// until the value falls in 0..<n (fewer than 4 rounds of walking on average). A fresh shuffle
/// per key (e.g. per epoch of a dataset) at O(1) memory.
public func keyedPermutation(_ i: Int, count n: Int, key: UInt64) -> Int {
  precondition(n > 0 && i >= 0 && i < n, "keyedPermutation: index \(i) outside 0..<\(n)")
  guard n > 1 else { return 0 }
  var bits = 2
  while (1 << bits) < n { bits += 1 }
  if bits % 2 == 1 { bits += 1 }
  let half = bits / 2, mask = UInt64((1 << half) - 1)
  var x = UInt64(i)
  repeat {
    var l = x >> UInt64(half), r = x & mask
    for round in 0..<4 as Range<UInt64> {
      (l, r) = (r, l ^ (mix64(key ^ mix64(r &+ (round << 56))) & mask))
    }
    x = (l << UInt64(half)) | r
  } while x >= UInt64(n)
  return Int(x)
}

/// A reproducible stream for one key.
public struct CounterRNG: Sendable {
  public private(set) var state: UInt64
  public init(seed: UInt64, stream: UInt64) { state = hashKey(seed, stream) }
  public init(state: UInt64) { self.state = state }

  public mutating func next() -> UInt64 {
    state &+= splitMix64Gamma
    return mix64(state)
  }
  /// Uniform in [0, 1) with 53 random bits.
  public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }
  /// Standard normal (Box–Muller, one value per call).
  public mutating func normal() -> Double {
    let u1 = max(uniform(), 0x1.0p-60), u2 = uniform()
    return (-2 * _log(u1)).squareRoot() * _cos(2 * Double.pi * u2)
  }
  /// Uniform integer in 0..<n.
  public mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }

  /// A seeded Fisher–Yates shuffle.
  public mutating func shuffle<T>(_ a: inout [T]) {
    guard a.count > 1 else { return }
    for i in stride(from: a.count - 1, to: 0, by: -1) { a.swapAt(i, below(i + 1)) }
  }
}

/// Textbook SplitMix64: the state advances by gamma and is finalised (problems, teachers, the
/// plugin checker's batches).
public struct SplitMix64: Sendable {
  public private(set) var state: UInt64
  public init(seed: UInt64) { state = seed }
  public mutating func next() -> UInt64 {
    state &+= splitMix64Gamma
    return splitMix64Finalize(state)
  }
  /// Uniform in [0, 1) with 53 random bits.
  public mutating func uniform() -> Double { Double(next() >> 11) * 0x1.0p-53 }
  /// Uniform integer in the range (by modulo).
  public mutating func int(_ range: ClosedRange<Int>) -> Int {
    range.lowerBound + Int(next() % UInt64(range.upperBound - range.lowerBound + 1))
  }
}

#if canImport(Glibc)
import Glibc
@inline(__always) func _log(_ x: Double) -> Double { Glibc.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Darwin
@inline(__always) func _log(_ x: Double) -> Double { Darwin.log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { Darwin.cos(x) }
#endif
