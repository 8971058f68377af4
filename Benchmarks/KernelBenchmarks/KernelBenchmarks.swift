// KernelBenchmarks.swift — ordo-one/benchmark suite for KeelKernels at the bench model's shapes.
//   swift package --allow-writing-to-package-directory benchmark      (or: swift package benchmark)
// Throughput is reported per kernel call; compare runs with `swift package benchmark baseline`.
import Benchmark
import KeelKernels

/// Seeded, reproducible float buffers (SplitMix64 → uniform in [-1, 1)).
func randomBuffer(_ n: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
  let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
  var s = seed
  for i in 0..<n {
    s &+= 0x9E37_79B9_7F4A_7C15
    var z = s
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    p[i] = Float(Double((z ^ (z >> 31)) >> 11) * 0x1.0p-53 * 2 - 1)
  }
  return p
}

let benchmarks: @Sendable () -> Void = {
  Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput], maxDuration: .seconds(2))

  // forward products of a training micro-batch (4096 tokens) and a decode step (512 rows)
  for (name, M, N, K) in [("gemm fwd 4096x512x128", 4096, 512, 128), ("gemm fwd 4096x128x512", 4096, 128, 512),
                          ("gemm decode 512x384x128", 512, 384, 128), ("gemm decode 16x512x128", 16, 512, 128)] {
    let a = randomBuffer(M * K, seed: 1), b = randomBuffer(K * N, seed: 2), c = randomBuffer(M * N, seed: 3)
    Benchmark(name) { benchmark in
      for _ in benchmark.scaledIterations { kk_gemm(c, a, b, Int64(M), Int64(N), Int64(K), Int64(K), 1, Int64(N), Int64(N), 0) }
    }
  }
  // weight gradient: dW[128,512] += dOut[4096,128]ᵀ · in[4096,512]
  do {
    let dOut = randomBuffer(4096 * 128, seed: 4), input = randomBuffer(4096 * 512, seed: 5), dW = randomBuffer(128 * 512, seed: 6)
    Benchmark("gemm dW 128x512 over 4096") { benchmark in
      for _ in benchmark.scaledIterations { kk_gemm(dW, dOut, input, 128, 512, 4096, 1, 128, 512, 512, 1) }
    }
  }
  // one decode-step attention row: H = KV = 4, D = 32, 64 keys
  do {
    let q = randomBuffer(128, seed: 7), k = randomBuffer(64 * 128, seed: 8), v = randomBuffer(64 * 128, seed: 9), out = randomBuffer(128, seed: 10)
    Benchmark("attention row 4x32, 64 keys") { benchmark in
      for _ in benchmark.scaledIterations { kk_attention_row_forward(out, nil, q, k, v, 128, 64, 4, 4, 32, 0.17677669) }
    }
  }
  // RMSNorm and log-softmax over a micro-batch
  do {
    let x = randomBuffer(4096 * 128, seed: 11), w = randomBuffer(128, seed: 12), y = randomBuffer(4096 * 128, seed: 13), r = randomBuffer(4096, seed: 14)
    Benchmark("rmsnorm 4096x128") { benchmark in
      for _ in benchmark.scaledIterations { kk_rmsnorm_forward(y, r, x, w, 4096, 128, 1e-6) }
    }
    let logits = randomBuffer(4096 * 64, seed: 15), lp = randomBuffer(4096, seed: 16), ent = randomBuffer(4096, seed: 17), lse = randomBuffer(4096, seed: 18)
    let targets = UnsafeMutablePointer<Int32>.allocate(capacity: 4096)
    for i in 0..<4096 { targets[i] = Int32(i % 64) }
    Benchmark("logprob+entropy 4096x64") { benchmark in
      for _ in benchmark.scaledIterations { kk_logprob_entropy_forward(lp, ent, lse, logits, targets, 4096, 64, 1) }
    }
  }
}
