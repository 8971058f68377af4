// SftCommand.swift — `keel sft`: a cold-start checkpoint from a teacher's demonstrations
// (supervised cross-entropy), and `keel eval`: held-out accuracy of a checkpoint.
import ArgumentParser
import Foundation
import KeelModel
import KeelRL
import KeelTasks

struct SftCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "sft", abstract: "Train a cold-start checkpoint on teacher demonstrations.")
  @Option(help: "Task: addition | arithmetic | sorting | countdown | scratchpad.") var task: String = "addition"
  @Option(help: "Digits per operand.") var digits: Int = 2
  @Option(help: "Operands / list length (0: the task's default).") var terms: Int = 0
  @Option(help: "careful | sloppy | terse | forgetful") var teacher: String = "careful"
  @Option(help: "Model preset: moe | dense | tiny.") var model: String = "moe"
  @Option(help: "Stop at this greedy accuracy on a train-split validation set.") var target: Double = 0.25
  @Option(help: "Step limit.") var maxSteps: Int = 900
  @Option(help: "Learning rate.") var lr: Double = 3e-3
  @Option(help: "Steps between validation checks.") var checkEvery: Int = 10
  @Option(help: "Demonstrations per step.") var batch: Int = 64
  @Option(help: "Longest response in tokens.") var maxTokens: Int = 8
  @Option(help: "Seed.") var seed: Int = 1
  @Option(help: "Threads.") var threads: Int = 2
  @Option(help: "Output checkpoint directory.") var out: String

  func run() throws {
    guard let t = Teacher.named(teacher) else { throw ValidationError("--teacher must be careful, sloppy, terse or forgetful") }
    let gen = try TaskRegistry.make(task, digits: digits, terms: terms > 0 ? terms : nil)
    let config = try ModelPreset.config(model, vocab: CharTokenizer().vocabSize)
    var s = ColdStartSettings(task: gen, taskSeed: UInt64(seed), model: config, teacher: t, teacherName: teacher,
                              targetAccuracy: target, maxSteps: maxSteps, lr: Float(lr), batch: batch, seed: UInt64(seed),
                              threads: threads, maxTokens: maxTokens)
    s.checkEvery = checkEvery
    let (store, report) = try ColdStart.train(s) { print($0) }
    try Checkpoint.save(directory: out, store: store)
    print(String(format: "saved %@: %d steps, validation greedy accuracy %.3f, %.1f s", out, report.steps, report.validationAccuracy, report.seconds))
  }
}

struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(commandName: "eval", abstract: "Score a checkpoint on the held-out set.")
  @Option(help: "Checkpoint directory (a run's checkpoints/step-N, or a keel sft output).") var checkpoint: String
  @Option(help: "Task.") var task: String = "addition"
  @Option(help: "Digits per operand.") var digits: Int = 2
  @Option(help: "Operands (0: default).") var terms: Int = 0
  @Option(help: "Held-out problems.") var evalSize: Int = 500
  @Option(help: "Samples per problem.") var samples: Int = 4
  @Option(help: "Sampling temperature.") var temperature: Double = 1
  @Option(help: "Sampler precision: fp32 | bf16 | fp16 | fp8 | exact.") var precision: String = "fp32"
  @Option(help: "Longest response in tokens.") var maxTokens: Int = 8
  @Option(help: "Seed (the task's split and the sampling).") var seed: Int = 1
  @Option(help: "Print this many held-out problems with the greedy response.") var show: Int = 0

  func run() throws {
    guard let p = SamplerPrecision(rawValue: precision) else { throw ValidationError("--precision must be one of fp32, bf16, fp16, fp8, exact") }
    let gen = try TaskRegistry.make(task, digits: digits, terms: terms > 0 ? terms : nil)
    let data = Dataset(task: gen, seed: UInt64(seed), evalCount: evalSize)
    let (store, _) = try Checkpoint.load(directory: checkpoint)
    let policy = Policy(store: store, precision: p, threads: 2)
    let r = try Evaluator.run(policy, problems: data.eval, tokenizer: CharTokenizer(), samples: samples, temperature: Float(temperature),
                              maxTokens: maxTokens, marker: gen.answerMarker, seed: UInt64(seed))
    print(String(format: "eval_accuracy %.4f (mean over %d samples at T=%.2f), eval_accuracy_greedy %.4f, %d problems", r.accuracy, samples, temperature, r.greedyAccuracy, data.eval.count))
    if show > 0 {
      let tok = CharTokenizer()
      let shown = Array(data.eval.prefix(show))
      let reqs = try shown.enumerated().map { SampleRequest(prompt: try tok.encodePrompt($0.element.prompt), promptIndex: $0.offset, sampleIndex: 0) }
      let out = policy.sampler.generate(reqs, params: SamplingParams(temperature: 0, maxTokens: maxTokens, stopTokens: [CharTokenizer.eos]), seed: UInt64(seed), step: 0)
      for (pr, o) in zip(shown, out) {
        let text = tok.decode(o.tokens)
        let ok = Evaluator.answerMatches(text, pr.answer, marker: gen.answerMarker)
        print("\(ok ? "✓" : "✗") \(pr.prompt)\(text)   (answer \(pr.answer))")
      }
    }
  }
}
