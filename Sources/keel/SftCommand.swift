// SftCommand.swift — `keel sft`: a cold-start checkpoint from demonstrations (a teacher's on a
// built-in task, or a JSONL file's rows), from scratch or from a model directory with its own
// tokenizer (supervised cross-entropy); and `keel eval`: held-out accuracy of a checkpoint.
import ArgumentParser
import Foundation
import KeelModel
import KeelRL
import KeelTasks

struct SftCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sft", abstract: "Train a cold-start checkpoint on demonstrations (a teacher's, or a JSONL file's).",
    discussion: """
    Built-in tasks: a fresh model (--model) on the teacher's demonstrations. A JSONL file as \
    --task: each row's `response` field (--response-field), else the marker and the answer, is \
    the demonstration; rows on the split's train side are trained on, its validation side stops \
    the training, held-out rows are never used. --checkpoint DIR starts from a model directory \
    (Keel's or a Hugging Face Qwen3 / Qwen3-MoE one) and uses its tokenizer.json when it has \
    one; the output is a Hugging Face directory again, with the tokenizer files copied.
    """)
  @Option(help: "Task: addition | arithmetic | sorting | countdown | scratchpad, or a .jsonl file.") var task: String = "addition"
  @Option(help: "Digits per operand.") var digits: Int = 2
  @Option(help: "Operands / list length (0: the task's default).") var terms: Int = 0
  @Option(help: "careful | sloppy | terse | forgetful (built-in tasks; default careful)") var teacher: String?
  @Option(help: "Model preset: moe | dense | tiny (without --checkpoint).") var model: String = "moe"
  @Option(help: "Start from this model directory (config.json, *.safetensors, tokenizer.json if any) instead of a fresh preset.") var checkpoint: String?
  @Option(help: "JSONL: the prompt's field.") var promptField: String = "prompt"
  @Option(help: "JSONL: the reference answer's field.") var answerField: String = "answer"
  @Option(help: "JSONL: the demonstration's field (a row without it is demonstrated as marker + answer).") var responseField: String = "response"
  @Option(help: "Final-answer marker (default: the task's own; JSONL: none).") var marker: String?
  @Option(help: "Stop at this greedy accuracy on the validation split.") var target: Double = 0.25
  @Option(help: "Step limit.") var maxSteps: Int = 900
  @Option(help: "Learning rate.") var lr: Double = 3e-3
  @Option(help: "Steps between validation checks.") var checkEvery: Int = 10
  @Option(help: "Demonstrations per step.") var batch: Int = 64
  @Option(help: "Longest response in tokens.") var maxTokens: Int = 8
  @Option(help: "Seed.") var seed: Int = 1
  @Option(help: "Threads.") var threads: Int = 2
  @Option(help: "Output checkpoint directory.") var out: String
  @Option(help: "Also write the run's figures as JSON here (steps, accuracy, seconds with and without the validation checks, peak RSS): the peer harness Benchmarks/peers/trl_sft.py reads it.") var report: String?

  func run() throws {
    guard maxSteps >= 1, batch >= 1, checkEvery >= 1, maxTokens >= 1, threads >= 1, lr > 0, lr.isFinite else {
      throw ValidationError("--max-steps, --batch, --check-every, --max-tokens and --threads must be ≥ 1 and --lr positive")
    }
    guard (0...1).contains(target) else { throw ValidationError("--target is an accuracy in [0, 1]") }
    let options = SFTOptions(targetAccuracy: target, maxSteps: maxSteps, lr: Float(lr), batch: batch, seed: UInt64(seed),
                             maxTokens: maxTokens, checkEvery: checkEvery)
    let jsonl = task.hasSuffix(".jsonl")
    if jsonl && teacher != nil { throw ValidationError("--teacher applies to built-in tasks; a JSONL file's demonstrations are its rows (--response-field)") }
    let teacherName = teacher ?? "careful"
    guard let t = Teacher.named(teacherName) else { throw ValidationError("--teacher must be careful, sloppy, terse or forgetful") }
    let report: ColdStartReport, store: ParameterStore
    var tokenizer: HFPolicyTokenizer? = nil
    if checkpoint == nil && !jsonl {
      // the built-in cold start, exactly as keel train makes it
      let gen = try TaskRegistry.make(task, digits: digits, terms: terms > 0 ? terms : nil)
      let config = try ModelPreset.config(model, vocab: CharTokenizer().vocabSize)
      var s = ColdStartSettings(task: gen, taskSeed: UInt64(seed), model: config, teacher: t, teacherName: teacherName,
                                targetAccuracy: target, maxSteps: maxSteps, lr: Float(lr), batch: batch, seed: UInt64(seed),
                                threads: threads, maxTokens: maxTokens)
      s.checkEvery = checkEvery
      s.marker = marker
      (store, report) = try ColdStart.train(s) { print($0) }
    } else {
      if let checkpoint {
        (store, _) = try Checkpoint.load(directory: checkpoint)
        tokenizer = try HFPolicyTokenizer.inDirectory(checkpoint)
      } else {
        store = ParameterStore(config: try ModelPreset.config(model, vocab: CharTokenizer().vocabSize), seed: UInt64(seed))
      }
      let tok: any PolicyTokenizer = tokenizer ?? CharTokenizer()
      try Trainer.checkVocabulary(model: store.layout.config.vocabSize, tokenizer: tok, what: checkpoint ?? "--model \(model)")
      let validation: [Problem], demonstration: (Int) throws -> (prompt: String, response: String), answerMarker: String
      if jsonl {
        let demos = try JSONLDemonstrations(path: task, fields: JSONLFields(prompt: promptField, answer: answerField),
                                            responseField: responseField, marker: marker ?? "", seed: UInt64(seed))
        validation = demos.validation
        demonstration = demos.demonstration
        answerMarker = marker ?? ""
        print("\(task): \(demos.train.count) demonstrations, \(validation.count) validation rows")
      } else {
        let gen = try TaskRegistry.make(task, digits: digits, terms: terms > 0 ? terms : nil)
        (validation, demonstration) = try ColdStart.teacherDemonstrations(task: gen, seed: UInt64(seed), teacher: t)
        answerMarker = marker ?? gen.answerMarker
      }
      let grader = try Grader(reward: "exact-match", marker: answerMarker, threshold: 1)
      report = try ColdStart.fit(store: store, tokenizer: tok, grader: grader, validation: validation, options: options,
                                 threads: threads, log: { print($0) }, demonstration: demonstration)
    }
    try Checkpoint.save(directory: out, store: store)
    try tokenizer?.copy(to: out)
    print(String(format: "saved %@: %d steps, validation greedy accuracy %.3f, %.1f s (%.1f s of it validation checks)", out,
                 report.steps, report.validationAccuracy, report.seconds, report.validationSeconds))
    if let path = self.report { try writeReport(report, to: path) }
  }

  /// The `--report` JSON: the loop's figures and the settings that produced them.
  func writeReport(_ r: ColdStartReport, to path: String) throws {
    struct Report: Encodable {
      var steps: Int, validation_greedy: Double, reached: Bool, seconds: Double, check_seconds: Double, train_seconds: Double
      var mean_step_seconds: Double?, peak_rss_mb: Double, seed: Int, lr: Double, batch: Int, target: Double, check_every: Int
    }
    let train = r.seconds - r.validationSeconds
    let data = try JSONOutput.encoder(pretty: true).encode(Report(steps: r.steps, validation_greedy: r.validationAccuracy, reached: r.validationAccuracy >= target,
                                     seconds: r.seconds, check_seconds: r.validationSeconds, train_seconds: train,
                                     mean_step_seconds: r.steps > 0 ? train / Double(r.steps) : nil,
                                     peak_rss_mb: Double(Bench.peakRSS()) / 1_048_576, seed: seed, lr: lr, batch: batch,
                                     target: target, check_every: checkEvery))
    try writeAtomically(data, to: path)
  }
}

struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval", abstract: "Score a checkpoint on the held-out set.",
    discussion: """
    A run's checkpoint (RUN/checkpoints/step-N, or RUN itself for its latest checkpoint) is scored \
    with the run's own config.yaml: task, seed, held-out size, samples, temperature, sampler \
    precision, max tokens, marker and grader, so the result equals the run's own evaluation at \
    that step. Flags override single settings; a checkpoint without a run (keel sft's output) \
    uses the flags and the built-in defaults.
    """)
  @Option(help: "Checkpoint directory (a run's checkpoints/step-N, a run directory, or a keel sft output).") var checkpoint: String
  @Option(help: "Task (default: the run's, else addition).") var task: String?
  @Option(help: "Digits per operand.") var digits: Int?
  @Option(help: "Operands (0: default).") var terms: Int?
  @Option(help: "Held-out problems.") var evalSize: Int?
  @Option(help: "Samples per problem.") var samples: Int?
  @Option(help: "Sampling temperature.") var temperature: Double?
  @Option(help: "Sampler precision: fp32 | bf16 | fp16 | fp8 | exact (default: the run's, else fp32).") var precision: String?
  @Option(help: "Longest response in tokens.") var maxTokens: Int?
  @Option(help: "Seed (the held-out set and the sampling).") var seed: Int?
  @Option(help: "Final-answer marker (default: the run's, else the task's own).") var marker: String?
  @Option(help: "Threads.") var threads: Int = 2
  @Option(help: "Print this many held-out problems with the greedy response.") var show: Int = 0

  /// The run directory a checkpoint belongs to (RUN/checkpoints/step-N → RUN), if it has a config.yaml.
  static func runDirectory(of checkpoint: String) -> String? {
    let fm = FileManager.default
    let url = URL(fileURLWithPath: checkpoint).standardizedFileURL
    for candidate in [url, url.deletingLastPathComponent().deletingLastPathComponent()] where fm.fileExists(atPath: candidate.path + "/config.yaml") {
      return candidate.path
    }
    return nil
  }

  func run() throws {
    var dir = checkpoint
    var file: [String: String] = [:]
    if let run = Self.runDirectory(of: checkpoint) {
      file = try ConfigSchema.flatten(file: run + "/config.yaml", what: "the run's config")
      if !FileManager.default.fileExists(atPath: dir + "/model.safetensors") {
        guard let latest = try RunDirectory(path: run, create: false).latestCheckpoint else {
          throw ValidationError("\(checkpoint): a run directory without a complete checkpoint")
        }
        dir = latest
      }
      FileHandle.standardError.write(Data("settings from \(run)/config.yaml\n".utf8))
    } else {
      file["sampler.precision"] = "fp32"
    }
    var o: [String: String] = [:]
    if let task { o["task.name"] = task }
    if let digits { o["task.digits"] = String(digits) }
    if let terms { o["task.terms"] = String(terms) }
    if let evalSize { o["task.eval_size"] = String(evalSize) }
    if let samples { o["eval.samples"] = String(samples) }
    if let temperature { o["sampler.temperature"] = String(temperature) }
    if let precision { o["sampler.precision"] = precision }
    if let maxTokens { o["sampler.max_tokens"] = String(maxTokens) }
    if let seed { o["seed"] = String(seed) }
    if let marker { o["task.marker"] = marker }
    let config = try RunConfig.resolve(file: file, overrides: o)
    let data = try Trainer.dataset(config)
    let grader = try Trainer.grader(config, marker: data.answerMarker)
    let p = config.sampler.precision
    let (store, _) = try Checkpoint.load(directory: dir)
    // a checkpoint of a Hugging Face run carries its tokenizer.json
    let tok: any PolicyTokenizer = try HFPolicyTokenizer.inDirectory(dir) ?? CharTokenizer()
    try Trainer.checkVocabulary(model: store.layout.config.vocabSize, tokenizer: tok, what: dir)
    let policy = Policy(store: store, precision: p, threads: threads)
    let k = config.eval.samples, t = config.sampler.temperature, maxTok = config.sampler.maxTokens
    let seedValue = config.seed
    let r = try Evaluator.run(policy, problems: data.eval, tokenizer: tok, grader: grader, samples: k, temperature: Float(t),
                              maxTokens: maxTok, seed: seedValue)
    print(String(format: "eval_accuracy %.4f (mean over %d samples at T=%.2f), eval_accuracy_greedy %.4f, %d problems (%@, %@ sampler, %@)",
                 r.accuracy, k, t, r.greedyAccuracy, data.eval.count, data.name, p.rawValue, dir))
    if show > 0 {
      let shown = Array(data.eval.prefix(show))
      let reqs = try shown.enumerated().map { SampleRequest(prompt: try tok.encodePrompt($0.element.prompt), promptIndex: $0.offset, sampleIndex: 0) }
      try policy.sampler.check(reqs, maxTokens: maxTok) { "held-out prompt \(shown[$0.promptIndex].prompt.debugDescription)" }
      let out = policy.sampler.generate(reqs, params: SamplingParams(temperature: 0, maxTokens: maxTok, stopTokens: Set(tok.stopTokens)), seed: seedValue, step: 0)
      let texts = out.map { tok.decode($0.tokens) }
      for ((pr, text), ok) in zip(zip(shown, texts), try grader.correct(texts, shown)) {
        print("\(ok ? "✓" : "✗") \(pr.prompt)\(text)   (answer \(pr.answer))")
      }
    }
  }
}
