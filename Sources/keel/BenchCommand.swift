// BenchCommand.swift — `keel bench [--model dense|moe] [--json]`: throughput of the sampler and
// the training step at the reference shapes, with a same-run SGEMM yardstick (Bench.swift).
// `keel bench --ranks 1,2,4`: data-parallel scaling of real training steps (ScalingBench.swift).
// `keel bench e2e [--from DIR] [--seeds 1,2,3]`: time to learn, end to end (E2EBench.swift).
import ArgumentParser
import Foundation
import KeelModel

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench", abstract: "Measure sampler and training throughput against a same-run SGEMM yardstick.")

  @Argument(help: "e2e: time to +25 points from a cold start over seeds (E2EBench.swift); omit for the throughput report.") var mode: String?
  @Option(help: "e2e: the cold-start checkpoint (Keel's or a Hugging Face directory; default: the default cold start).") var from: String?
  @Option(help: "e2e: seeds, comma-separated.") var seeds: String = "1,2,3"
  @Option(help: "e2e: keep the runs in this directory (default: a temporary one, removed).") var keep: String?
  @Option(help: "dense | moe") var model: String = "moe"
  @Flag(help: "Print one JSON object.") var json = false
  @Option(help: "Threads (BLAS and Keel's kernels).") var threads: Int = 2
  @Option(help: "Matrix-product backend for the fast modes: keel | blas.") var backend: String = "keel"
  @Flag(help: "Small shapes (a smoke run for tests; figures are not representative).") var quick = false
  @Option(help: "Sampler precisions to time, comma-separated (fp32 is always included: the others are reported against it).")
  var precisions: String = "fp32,bf16,fp16,fp8,exact"
  @Option(help: "Time only one part, e.g. under a profiler: sampler | train (--precisions then does not apply; the JSON leaves out the other part's keys).") var only: String?
  @Option(help: "Scaling report instead: training steps at these rank counts, e.g. 1,2,4 (mpirun; threads per rank = --threads / K).")
  var ranks: String?
  @Option(help: "Training steps per rank count in the scaling report (the first is warm-up).") var scalingSteps: Int = 6
  @Option(name: .customLong("set"), help: "Config override for the scaling report's and e2e's runs (repeatable), e.g. --set model.preset=dense.")
  var sets: [String] = []

  func run() throws {
    if let mode {
      try runE2E(mode: mode)
      return
    }
    if let ranks {
      try runScaling(ranks: ranks)
      return
    }
    guard let backend = GemmBackend(rawValue: backend) else { throw ValidationError("--backend must be keel or blas") }
    let s = try settings(backend: backend)
    let r = Bench.run(s, log: { if !json { print($0) } })
    if json {
      try printJSON(r, settings: s)
    } else {
      Self.printSummary(r, settings: s)
    }
  }

  /// `keel bench e2e`: time to learn over --seeds (E2EBench.swift).
  private func runE2E(mode: String) throws {
    guard mode == "e2e" else { throw ValidationError("unknown bench mode '\(mode)'; valid: e2e (or none, for the throughput report)") }
    let list = seeds.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !list.isEmpty, list.allSatisfy({ $0 >= 0 }) else { throw ValidationError("--seeds takes non-negative integers, e.g. 1,2,3") }
    _ = try E2EBench.run(from: from, seeds: list, sets: sets, threads: threads, json: json, keep: keep)
  }

  /// `keel bench --ranks K,…`: data-parallel scaling of training steps (ScalingBench.swift).
  private func runScaling(ranks: String) throws {
    let ks = ranks.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !ks.isEmpty, ks.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--ranks takes positive integers, e.g. 1,2,4; got '\(ranks)'") }
    guard scalingSteps >= 2 else { throw ValidationError("--scaling-steps must be at least 2 (the first step is warm-up)") }
    _ = try ScalingBench.run(ranks: ks, threads: threads, steps: scalingSteps, sets: sets, json: json)
  }

  /// The throughput report's settings from --model, --threads, --precisions, --only and --quick.
  private func settings(backend: GemmBackend) throws -> BenchSettings {
    let config: ModelConfig
    switch model {
    case "dense": config = .benchDense()
    case "moe": config = .benchMoE()
    default: throw ValidationError("--model must be dense or moe, got '\(model)'")
    }
    var s = BenchSettings(config: config)
    s.threads = threads
    s.backend = backend
    var chosen: [SamplerPrecision] = [.fp32]
    for name in precisions.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !name.isEmpty {
      guard let p = SamplerPrecision(rawValue: name) else {
        throw ValidationError("--precisions: unknown precision '\(name)'; valid: \(SamplerPrecision.allCases.map(\.rawValue).joined(separator: ", "))")
      }
      if !chosen.contains(p) { chosen.append(p) }
    }
    s.samplerPrecisions = chosen
    switch only {
    case nil: break
    case "sampler": s.train = false
    case "train": s.samplerPrecisions = []
    case let other?: throw ValidationError("--only must be sampler or train, got '\(other)'")
    }
    if quick {
      s.samplerBatch = 32; s.generated = 8; s.trainSequences = 32; s.microBatchSequences = 16; s.largeVocabulary = false
    }
    return s
  }

  /// The report as one JSON object on stdout (--json).
  private func printJSON(_ r: BenchResult, settings s: BenchSettings) throws {
    let samplerFast = r.samplerGflops[.fp32] ?? 0, trainFast = r.trainGflops["fast"] ?? 0
    var doc = BenchDocument(model: model, threads: threads, backend: s.backend.rawValue, gemm_gflops: r.gemmGflops,
                            gemm_gflops_start: r.gemmGflopsStart, gemm_gflops_end: r.gemmGflopsEnd, peak_rss_bytes: r.peakRSSBytes)
    if r.samplerSeconds[.fp32] != nil {
      doc.sampler_tokens_per_s = r.samplerTokensPerSecond[.fp32]!
      doc.sampler_gflops = samplerFast
      doc.sampler_fraction_of_gemm = samplerFast / r.gemmGflops
      doc.sampler_by_precision = Dictionary(uniqueKeysWithValues: r.samplerTokensPerSecond.map {
        ($0.key.rawValue, BenchDocument.Precision(tokens_per_s: $0.value, gflops: r.samplerGflops[$0.key]!,
                                                  slowdown_vs_fp32: r.samplerSeconds[$0.key]! / r.samplerSeconds[.fp32]!))
      })
    }
    if s.train {
      doc.train_tokens_per_s = r.trainTokensPerSecond["fast"] ?? 0
      doc.train_gflops = trainFast
      doc.train_fraction_of_gemm = trainFast / r.gemmGflops
      doc.train_exact_slowdown = (r.trainSeconds["exact"] ?? r.trainSeconds["fast"]!) / r.trainSeconds["fast"]!
      doc.distribution_terms_vs_logprob_backward = r.distributionTerms
    }
    let c = s.config
    doc.config = ["model_type": .string(c.modelType), "vocab_size": .int(c.vocabSize), "hidden_size": .int(c.hiddenSize),
                  "num_hidden_layers": .int(c.numHiddenLayers), "num_attention_heads": .int(c.numAttentionHeads),
                  "num_key_value_heads": .int(c.numKeyValueHeads), "head_dim": .int(c.headDim),
                  "intermediate_size": .int(c.intermediateSize), "num_experts": .int(c.numExperts),
                  "num_experts_per_tok": .int(c.numExpertsPerTok), "moe_intermediate_size": .int(c.moeIntermediateSize)]
    doc.shapes = ["sampler_batch": s.samplerBatch, "prompt_tokens": s.promptLength, "generated_tokens": s.generated,
                  "train_sequences": s.trainSequences, "train_tokens_per_sequence": s.trainLength,
                  "micro_batch_sequences": s.microBatchSequences]
    let data = try JSONOutput.encoder().encode(doc)
    print(String(decoding: data, as: UTF8.self))
  }

  /// The report's closing lines: fractions of the yardstick, peak RSS, slowdowns against fp32 and fast.
  private static func printSummary(_ r: BenchResult, settings s: BenchSettings) {
    let samplerFast = r.samplerGflops[.fp32] ?? 0, trainFast = r.trainGflops["fast"] ?? 0
    if s.train { print(String(format: "train: %.0f%% of the yardstick", 100 * trainFast / r.gemmGflops)) }
    if r.samplerSeconds[.fp32] != nil { print(String(format: "sampler fp32: %.0f%% of the yardstick", 100 * samplerFast / r.gemmGflops)) }
    print(String(format: "peak RSS %.0f MiB", Double(r.peakRSSBytes) / 1048576))
    for p in SamplerPrecision.allCases where r.samplerSeconds[p] != nil {
      print(String(format: "  sampler %@: %.2fx the fp32 time", p.rawValue, r.samplerSeconds[p]! / r.samplerSeconds[.fp32]!))
    }
    if let e = r.trainSeconds["exact"], let f = r.trainSeconds["fast"] { print(String(format: "  train exact: %.2fx the fast time", e / f)) }
  }
}

/// `keel bench --json`: the yardstick, each part's throughput and fraction of it, the model and
/// the shapes (the sampler and train fields only when that part ran).
struct BenchDocument: Encodable {
  struct Precision: Encodable { var tokens_per_s: Double, gflops: Double, slowdown_vs_fp32: Double }
  enum Field: Encodable {
    case int(Int), string(String)
    func encode(to encoder: Encoder) throws {
      var c = encoder.singleValueContainer()
      switch self { case .int(let v): try c.encode(v); case .string(let v): try c.encode(v) }
    }
  }
  var model: String, threads: Int, backend: String
  var gemm_gflops: Double, gemm_gflops_start: Double, gemm_gflops_end: Double, peak_rss_bytes: Int
  var sampler_tokens_per_s: Double? = nil, sampler_gflops: Double? = nil, sampler_fraction_of_gemm: Double? = nil
  var sampler_by_precision: [String: Precision]? = nil
  var train_tokens_per_s: Double? = nil, train_gflops: Double? = nil, train_fraction_of_gemm: Double? = nil
  var train_exact_slowdown: Double? = nil
  /// ABI 1.1 term kernels as multiples of the log-prob backward, per "ROWSxV" shape.
  var distribution_terms_vs_logprob_backward: [String: [String: Double]]? = nil
  var config: [String: Field] = [:]
  var shapes: [String: Int] = [:]
}
