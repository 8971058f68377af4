// FuzzCommand.swift — `keel fuzz`: an in-tree mutation fuzzer over every reader of untrusted
// data (docs/security.md). Each input is a seed from the corpus (Tests/Fixtures/fuzz and the
// model / tokenizer fixtures) with 1–4 mutations — bit flips, interesting bytes, inserted,
// deleted and repeated ranges, truncation, numbers replaced by extreme values — fed to the
// reader in this process. A reader may refuse an input (a thrown error: the expected outcome);
// it must never crash, hang or run away with memory:
//   - the input is written to --crash-dir before it is read, and KeelGuard names it if the
//     process faults (one line, exit 128 + signal) or if one input runs over --hang seconds;
//   - peak RSS over --max-rss-mb is reported with the input, exit 1.
// Deterministic in --seed. A short run is part of the tests; the long run is documented.
import ArgumentParser
import Foundation
import KeelGuard
import KeelModel
import KeelPluginHost
import KeelRL
import KeelRandom
import KeelTasks
import KeelTokenizer

struct FuzzCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fuzz", abstract: "Mutation-fuzz the readers of untrusted files (developer tool; docs/security.md).")
  @Argument(help: "Readers: all, or some of \(FuzzCommand.readers.joined(separator: ", ")) (comma-separated).") var readers: String = "all"
  @Option(help: "Inputs per reader.") var count: Int = 1000
  @Option(help: "Seed of the mutations.") var seed: Int = 1
  @Option(help: "Repository root (the corpus is ROOT/Tests/Fixtures).") var root: String = "."
  @Option(help: "Where the input being read is kept (and left, if it breaks the reader).") var crashDir: String = NSTemporaryDirectory() + "keel-fuzz"
  @Option(help: "Seconds one input may take.") var hang: Double = 10
  @Option(help: "Peak resident memory allowed, MB.") var maxRssMb: Int = 2048

  static let readers = ["safetensors", "config", "optimizer", "yaml", "jsonl", "batch", "tokens", "tokenizer", "runstate"]

  /// A reader: writes an input into `dir` and reads it as Keel would; a thrown error is a refusal.
  typealias Reader = (_ input: Data, _ dir: String) throws -> Void

  func run() throws {
    let chosen = readers == "all" ? Self.readers : readers.split(separator: ",").map(String.init)
    for r in chosen where !Self.readers.contains(r) { throw ValidationError("unknown reader '\(r)'; valid: \(Self.readers.joined(separator: ", "))") }
    guard count >= 0, hang > 0 else { throw ValidationError("--count ≥ 0 and --hang > 0") }
    keel_guard_install()
    keel_guard_set_timeout(hang)
    try FileManager.default.createDirectory(atPath: crashDir, withIntermediateDirectories: true)
    let fx = root + "/Tests/Fixtures"
    let model = fx + "/hf/qwen3-tied"
    guard FileManager.default.fileExists(atPath: model + "/model.safetensors") else {
      throw ValidationError("no corpus under \(fx) (run from the repository root, or give --root)")
    }
    let optSeedDir = crashDir + "/optimizer-seed"
    try Self.writeOptimizerSeed(model: model, to: optSeedDir)
    let corpus = try Self.corpus(fixtures: fx, model: model, optimizerSeed: optSeedDir)
    let readersByName = Self.readersByName(modelConfig: try Self.corpusFile(model + "/config.json"),
                                           modelTensors: try Self.corpusFile(model + "/model.safetensors"))

    var rng = SplitMix64(seed: UInt64(bitPattern: Int64(seed)) ^ 0x6675_7A7A)
    let t0 = Date()
    var totals: [(String, Int, Int, Double)] = []
    for name in chosen {
      let start = Date()
      let regressions = Self.regressions(fixtures: fx, reader: name)
      let refused = try fuzz(name, read: readersByName[name]!, seeds: corpus[name]!, regressions: regressions, rng: &rng)
      let inputs = regressions.count + count
      let dt = Date().timeIntervalSince(start)
      totals.append((name, inputs, refused, dt))
      print(String(format: "fuzz %@: %d inputs (%d regressions), %d refused with an error, %d read, 0 crashes, 0 hangs over %.0f s, %.1f s",
                   name, inputs, regressions.count, refused, inputs - refused, hang, dt))
    }
    print(String(format: "fuzz: %d inputs over %d readers in %.1f s; peak RSS %d MB (limit %d); no crash, hang or runaway memory",
                 totals.reduce(0) { $0 + $1.1 }, totals.count, Date().timeIntervalSince(t0), Self.peakRSSMB(), maxRssMb))
  }

  /// Feeds one reader its regressions, then `count` mutations of its seeds, each under the guard
  /// (kept in --crash-dir while it is read); returns how many inputs the reader refused.
  /// Throws ExitCode(1) when an input takes the peak RSS over --max-rss-mb.
  private func fuzz(_ name: String, read: Reader, seeds: [Data], regressions: [Data], rng: inout SplitMix64) throws -> Int {
    let work = crashDir + "/" + name
    var refused = 0
    for i in 0..<(regressions.count + count) {
      let input = i < regressions.count ? regressions[i] : Self.mutate(seeds[rng.int(0...(seeds.count - 1))], &rng)
      try? FileManager.default.removeItem(atPath: work)
      try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
      let kept = crashDir + "/\(name)-current.bin"
      try input.write(to: URL(fileURLWithPath: kept))
      let label = strdup("fuzz reader '\(name)' on input \(i) (kept in \(kept))")!
      keel_guard_enter(label)
      do { try read(input, work) } catch { refused += 1 }
      keel_guard_leave()
      free(label)
      let rss = Self.peakRSSMB()
      if rss > maxRssMb {
        print("fuzz \(name): input \(i) (kept in \(kept)) took the peak resident memory to \(rss) MB, over \(maxRssMb) MB")
        throw ExitCode(1)
      }
    }
    return refused
  }

  /// The inputs that once broke `reader` (FIXTURES/fuzz/regressions/READER, in name order); read first.
  private static func regressions(fixtures fx: String, reader name: String) -> [Data] {
    let regressionDir = fx + "/fuzz/regressions/" + name
    return ((try? FileManager.default.contentsOfDirectory(atPath: regressionDir)) ?? []).sorted()
      .compactMap { FileManager.default.contents(atPath: regressionDir + "/" + $0) }
  }

  /// Saves the optimizer seed in `dir`: a real optimizer state of the fixture model.
  private static func writeOptimizerSeed(model: String, to dir: String) throws {
    let (store, _) = try Checkpoint.load(directory: model)
    let opt = AdamW(count: store.layout.count)
    opt.step = 3
    for i in 0..<min(64, store.layout.count) { opt.m.p[i] = Float(i) * 1e-3; opt.v.p[i] = Float(i) * 1e-6 }
    try Checkpoint.save(directory: dir, store: store, optimizer: opt)
  }

  /// The contents of a corpus file (a missing one is a ValidationError).
  private static func corpusFile(_ p: String) throws -> Data {
    guard let d = FileManager.default.contents(atPath: p) else { throw ValidationError("corpus file \(p) is missing") }
    return d
  }

  /// The seeds of each reader, from the fixtures and the optimizer seed.
  private static func corpus(fixtures fx: String, model: String, optimizerSeed optSeedDir: String) throws -> [String: [Data]] {
    let file = corpusFile
    return [
      "safetensors": [try file(model + "/model.safetensors")],
      "config": [try file(model + "/config.json"), try file(fx + "/hf/qwen3moe-norm/config.json")],
      "optimizer": [try file(optSeedDir + "/optimizer.safetensors")],
      "yaml": [try file(fx + "/fuzz/config.yaml")],
      "jsonl": [try file(fx + "/fuzz/data.jsonl")],
      "batch": [try file(fx + "/fuzz/objective.json"), try file(fx + "/fuzz/baseline.json"), try file(fx + "/fuzz/reward.json")],
      "tokens": [try file(fx + "/fuzz/tokens.json"), try file(fx + "/fuzz/tokens.jsonl")],
      "tokenizer": [try file(fx + "/tokenizers/wordlevel/tokenizer.json"), try file(fx + "/tokenizers/qwen2-bpe/tokenizer.json")],
      "runstate": [try file(fx + "/fuzz/run_state.json")],
    ]
  }

  /// Each reader by name; the model readers complete the fixture model with `modelConfig` and `modelTensors`.
  private static func readersByName(modelConfig: Data, modelTensors: Data) -> [String: Reader] {
    [
      "safetensors": { input, dir in
        try modelConfig.write(to: URL(fileURLWithPath: dir + "/config.json"))
        try input.write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        let f = try SafeTensorsFile(path: dir + "/model.safetensors")
        for name in f.entries.keys { _ = f.floats(name) }
        Self.exercise(try Checkpoint.load(directory: dir).0)
      },
      "config": { input, dir in
        try input.write(to: URL(fileURLWithPath: dir + "/config.json"))
        try modelTensors.write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        Self.exercise(try Checkpoint.load(directory: dir).0)
      },
      "optimizer": { input, dir in
        try modelConfig.write(to: URL(fileURLWithPath: dir + "/config.json"))
        try modelTensors.write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        try input.write(to: URL(fileURLWithPath: dir + "/optimizer.safetensors"))
        _ = try Checkpoint.load(directory: dir, optimizer: true)
      },
      "yaml": { input, _ in
        let flat = try ConfigSchema.flatten(yaml: String(decoding: input, as: UTF8.self), source: "fuzz.yaml")
        let c = try ConfigSchema.resolve(file: flat, overrides: [:])
        _ = c.yaml()
        let typed = RunConfig(c)
        if !typed.task.isJSONL { _ = try? Trainer.dataset(typed) }
      },
      "jsonl": { input, dir in
        try input.write(to: URL(fileURLWithPath: dir + "/d.jsonl"))
        let d = try Dataset(jsonl: dir + "/d.jsonl", evalCount: 4, marker: "#")
        for i in 0..<8 { _ = d.trainProblem(i) }
        _ = try? JSONLDemonstrations(path: dir + "/d.jsonl", seed: 1)
      },
      "batch": { input, dir in
        try input.write(to: URL(fileURLWithPath: dir + "/b.json"))
        _ = try? BatchFile.objective(dir + "/b.json")
        _ = try? BatchFile.baseline(dir + "/b.json")
        _ = try BatchFile.reward(dir + "/b.json")
      },
      "tokens": { input, dir in
        try input.write(to: URL(fileURLWithPath: dir + "/t.json"))
        _ = try? ScoreCommand.readTexts(dir + "/t.json")
        _ = try ScoreCommand.readSequences(dir + "/t.json")
      },
      "tokenizer": { input, _ in
        let t = try HFTokenizer(data: input, source: "fuzz/tokenizer.json")
        for s in ["12+30=42", "héllo wörld 🙂", "  \n\t", "<s>1</s>", ""] {
          let ids = try t.encode(s, addSpecialTokens: true)
          _ = t.decode(ids, skipSpecialTokens: false)
        }
      },
      "runstate": { input, dir in
        try input.write(to: URL(fileURLWithPath: dir + "/run_state.json"))
        _ = try RunState.load(directory: dir)
      },
    ]
  }

  /// Use a model that loaded: one forward pass and a few sampled tokens (NaN-safe paths).
  static func exercise(_ store: ParameterStore) {
    let c = store.layout.config
    let seq: [Int32] = [0, 1, 2, 3].map { Int32($0 % c.vocabSize) }
    guard seq.count + 2 <= c.maxPositionEmbeddings else { return }
    let compute = Compute(threads: 1, backend: .keel)
    _ = TrainingEngine(store: store, compute: compute).forward(SequenceBatch(sequences: [seq], scoreFrom: [1]))
    let sampler = Sampler(store: store, precision: .bf16, compute: compute)
    _ = sampler.generate([SampleRequest(prompt: seq, promptIndex: 0, sampleIndex: 0)], params: SamplingParams(temperature: 1, maxTokens: 2), seed: 1, step: 0)
  }

  static func peakRSSMB() -> Int {
    var u = rusage()
    getrusage(RUSAGE_SELF.rawValue, &u)
    return u.ru_maxrss / 1024
  }

  static let interestingNumbers = ["-1", "0", "1e300", "-1e300", "1e-300", "99999999999", "2147483648", "4611686018427387904",
                                   "9223372036854775807", "18446744073709551616", "NaN", "Infinity", "1.5", "-0", "65536", "1048577"]

  /// 1–4 mutations of a seed (output at most 4 MB).
  static func mutate(_ seed: Data, _ rng: inout SplitMix64) -> Data {
    var b = [UInt8](seed)
    for _ in 0..<rng.int(1...4) {
      if b.isEmpty { b = [UInt8](seed) }
      let n = b.count
      switch rng.int(0...8) {
      case 0:  // flip bits
        for _ in 0..<rng.int(1...8) { b[rng.int(0...(n - 1))] ^= UInt8(1 << rng.int(0...7)) }
      case 1:  // an interesting byte
        let bytes: [UInt8] = [0, 0xFF, 0x7F, 0x80, 0xC3, UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: "\""), UInt8(ascii: "9"),
                              UInt8(ascii: "-"), UInt8(ascii: "\n"), UInt8(ascii: "&"), UInt8(ascii: "*"), UInt8(ascii: ":")]
        b[rng.int(0...(n - 1))] = bytes[rng.int(0...(bytes.count - 1))]
      case 2:  // insert random bytes
        let at = rng.int(0...n)
        b.insert(contentsOf: (0..<rng.int(1...16)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
      case 3:  // delete a range
        let lo = rng.int(0...(n - 1)), len = rng.int(1...max(1, min(64, n - lo)))
        b.removeSubrange(lo..<min(n, lo + len))
      case 4:  // truncate
        b = Array(b.prefix(rng.int(0...(n - 1))))
      case 5, 6:  // a number → an extreme value (the headers and configs are mostly numbers)
        let digits = b.indices.filter { (48...57).contains(b[$0]) && ($0 == 0 || !(48...57).contains(b[$0 - 1])) }
        guard let start = digits.isEmpty ? nil : digits[rng.int(0...(digits.count - 1))] else { continue }
        var end = start
        while end < n, (48...57).contains(b[end]) || b[end] == UInt8(ascii: ".") || b[end] == UInt8(ascii: "e") { end += 1 }
        b.replaceSubrange(start..<end, with: Array(interestingNumbers[rng.int(0...(interestingNumbers.count - 1))].utf8))
      case 7:  // repeat a range (bounded)
        let lo = rng.int(0...(n - 1)), len = rng.int(1...max(1, min(256, n - lo)))
        let chunk = Array(b[lo..<min(n, lo + len)])
        let times = rng.int(2...64)
        if n + chunk.count * times <= 4 << 20 { b.insert(contentsOf: Array(repeating: chunk, count: times).flatMap { $0 }, at: lo) }
      default:  // splice a range of the seed elsewhere
        let s = [UInt8](seed)
        let lo = rng.int(0...(s.count - 1)), len = rng.int(1...max(1, min(128, s.count - lo)))
        b.insert(contentsOf: s[lo..<min(s.count, lo + len)], at: rng.int(0...n))
      }
    }
    return Data(b)
  }
}
