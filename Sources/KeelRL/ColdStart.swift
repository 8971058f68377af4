// ColdStart.swift — `keel sft`: supervised training on demonstrations (cross-entropy on the
// response tokens; `fit` is the loop, whatever the model, tokenizer and demonstrations: a
// built-in task's teacher, or a JSONL file's rows), stopped as soon as greedy accuracy
// on the VALIDATION split reaches the target (neither the held-out test split nor the train
// split's RL stream is used: demonstrations come from the train split's own cold-start
// stream), so the checkpoint solves a fair fraction of the task but far from all.
// The default cold start is cached under ~/.cache/keel (or $KEEL_CACHE), keyed by everything
// that determines it, and made on first use.
import Foundation
import KeelModel
import KeelRandom
import KeelTasks

public struct ColdStartSettings: Sendable {
  public var task: any TaskGenerator
  public var taskSeed: UInt64
  public var model: ModelConfig
  public var teacher: Teacher
  public var teacherName: String
  public var targetAccuracy: Double
  public var maxSteps: Int
  public var lr: Float
  public var batch: Int
  public var seed: UInt64
  public var threads: Int
  public var maxTokens: Int
  /// Steps between validation checks (the target is tested only there).
  public var checkEvery = 20
  /// The reward plugin that grades validation (Grader.swift), the answer marker it is given
  /// (nil: the task's own) and the reward a correct answer reaches: the run's own definition.
  public var grader = "exact-match"
  public var marker: String? = nil
  public var threshold = 1.0

  public init(task: any TaskGenerator, taskSeed: UInt64, model: ModelConfig, teacher: Teacher, teacherName: String,
              targetAccuracy: Double, maxSteps: Int, lr: Float, batch: Int, seed: UInt64, threads: Int, maxTokens: Int) {
    self.task = task; self.taskSeed = taskSeed; self.model = model; self.teacher = teacher; self.teacherName = teacherName
    self.targetAccuracy = targetAccuracy; self.maxSteps = maxSteps; self.lr = lr; self.batch = batch; self.seed = seed
    self.threads = threads; self.maxTokens = maxTokens
  }

  /// Everything that determines the result, for the cache key: the task with every setting
  /// (digits, terms…), the split scheme (v2: the mixed 3-way split and keyed problem streams),
  /// the model, the teacher, the stop rule and its grader, the optimisation settings, the seeds.
  public var fingerprint: String {
    let enc = JSONEncoder()
    enc.outputFormatting = .sortedKeys
    let model = (try? enc.encode(self.model)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    return "v2|\(task.fingerprint)|marker=\(marker ?? task.answerMarker)|\(taskSeed)|\(model)|\(teacherName)|target=\(targetAccuracy)|check=\(checkEvery)|grader=\(grader)|threshold=\(threshold)|\(maxSteps)|\(lr)|\(batch)|\(seed)|\(maxTokens)"
  }
}

public struct ColdStartReport: Sendable, Codable {
  public var steps: Int
  public var validationAccuracy: Double
  /// Wall seconds of the whole loop, and of its validation checks (part of `seconds`).
  public var seconds: Double
  public var validationSeconds: Double
  public var loss: Double
}

/// The supervised loop's settings, whatever the demonstrations come from.
public struct SFTOptions: Sendable {
  public var targetAccuracy: Double
  public var maxSteps: Int
  public var lr: Float
  public var batch: Int
  public var seed: UInt64
  public var maxTokens: Int
  public var checkEvery: Int
  public init(targetAccuracy: Double, maxSteps: Int, lr: Float, batch: Int, seed: UInt64, maxTokens: Int, checkEvery: Int) {
    self.targetAccuracy = targetAccuracy; self.maxSteps = maxSteps; self.lr = lr; self.batch = batch; self.seed = seed
    self.maxTokens = maxTokens; self.checkEvery = checkEvery
  }
}

/// Demonstrations from a JSONL file (`keel sft --task FILE.jsonl`): rows on the split hash's
/// train side are demonstrated, in a seeded order; rows on its validation side (up to 200) stop
/// the training; held-out rows are never used, so RL's evaluation on the same file stays clean.
/// A row's response is its `response` field when it has one, else the marker and the answer.
public struct JSONLDemonstrations: Sendable {
  public let train: [(problem: Problem, response: String)]
  public let validation: [Problem]
  public let seed: UInt64

  public init(path: String, fields: JSONLFields = .init(), responseField: String = "response", marker: String = "", seed: UInt64) throws {
    var train: [(problem: Problem, response: String)] = [], validation: [Problem] = []
    for row in try Dataset.rows(path, fields: fields) {
      switch TaskSplit.split(of: row.prompt) {
      case .eval: continue
      case .validation: validation.append(row)
      case .train:
        let extra = (try? JSONSerialization.jsonObject(with: Data(row.extraJSON.utf8))) as? [String: Any]
        train.append((problem: row, response: extra?[responseField] as? String ?? marker + row.answer))
      }
    }
    guard !train.isEmpty, !validation.isEmpty else {
      throw TaskError.invalid("dataset \(path): \(train.count) row(s) fall in the train split and \(validation.count) in the validation split; keel sft needs both (about 13/16 and 1/16 of the rows): add rows")
    }
    self.train = train
    // up to 200, chosen by split hash: independent of the file's order
    self.validation = Dataset.sample(validation, count: 200).chosen
    self.seed = seed
  }

  /// The index-th demonstration: the train rows in a fresh seeded permutation per epoch.
  public func demonstration(_ index: Int) -> (prompt: String, response: String) {
    let n = train.count
    let d = train[keyedPermutation(index % n, count: n, key: hashKey(seed, 0x7366_74, UInt64(index / n)))]
    return (d.problem.prompt, d.response)
  }
}

public enum ColdStart {
  /// The built-in cold start: a fresh model of `s.model` on a procedural task's teacher.
  public static func train(_ s: ColdStartSettings, log: (String) -> Void = { _ in }) throws -> (ParameterStore, ColdStartReport) {
    let demos = try teacherDemonstrations(task: s.task, seed: s.taskSeed, teacher: s.teacher)
    let store = ParameterStore(config: s.model, seed: s.seed)
    let grader = try Grader(reward: s.grader, marker: s.marker ?? s.task.answerMarker, threshold: s.threshold)
    let options = SFTOptions(targetAccuracy: s.targetAccuracy, maxSteps: s.maxSteps, lr: s.lr, batch: s.batch, seed: s.seed,
                             maxTokens: s.maxTokens, checkEvery: s.checkEvery)
    let report = try fit(store: store, tokenizer: CharTokenizer(), grader: grader, validation: demos.validation, options: options,
                         threads: s.threads, log: log, demonstration: demos.demonstration)
    return (store, report)
  }

  /// A built-in task's demonstrations: the teacher on the train split's cold-start stream, and
  /// for validation up to 200 distinct problems of the validation split (never trained on,
  /// never the test set).
  public static func teacherDemonstrations(task: any TaskGenerator, seed: UInt64, teacher: Teacher) throws
    -> (validation: [Problem], demonstration: @Sendable (Int) -> (prompt: String, response: String)) {
    let split = TaskSplit(generator: task, seed: seed)
    try split.checkPopulated()
    return (split.distinctSet(.validation, count: 200, stream: .coldStart), { index in
      let p = split.problem(.train, index: index, stream: .coldStart)
      return (p.prompt, teacher.demonstrate(p, index: index))
    })
  }

  /// Supervised cross-entropy on the response tokens of `demonstration(index)` (the response is
  /// encoded without special tokens and ends with the tokenizer's first stop token), `batch`
  /// demonstrations per step, AdamW with clipping at 1; greedy accuracy on `validation` every
  /// `checkEvery` steps, stopping at the target. Trains `store` in place.
  public static func fit(store: ParameterStore, tokenizer tok: any PolicyTokenizer, grader: Grader, validation: [Problem],
                         options o: SFTOptions, threads: Int, log: (String) -> Void,
                         demonstration: (Int) throws -> (prompt: String, response: String)) throws -> ColdStartReport {
    let t0 = Date()
    guard let stop = tok.stopTokens.first else { throw TrainerError(message: "the tokenizer has no stop token: a demonstration could not end") }
    let policy = Policy(store: store, precision: .fp32, threads: threads)
    var lastLoss = 0.0, acc = 0.0, step = 0, validationSeconds = 0.0
    let checkEvery = max(1, o.checkEvery)
    let limit = store.layout.config.maxPositionEmbeddings
    while step < o.maxSteps {
      if keelStopRequested != 0 {
        throw TrainerError(message: "interrupted during the cold start at step \(step): nothing was cached; run again to make it")
      }
      var seqs: [[Int32]] = [], from: [Int] = []
      for i in 0..<o.batch {
        let index = step * o.batch + i
        let d = try demonstration(index)
        let prompt = try tok.encodePrompt(d.prompt)
        let response = try tok.encodeResponse(d.response) + [stop]
        guard prompt.count + response.count <= limit else {
          throw TrainerError(message: "demonstration \(index) (prompt \(d.prompt.debugDescription)) is \(prompt.count + response.count) tokens, more than the model's max_position_embeddings \(limit)")
        }
        seqs.append(prompt + response)
        from.append(prompt.count)
      }
      let b = SequenceBatch(sequences: seqs, scoreFrom: from)
      let out = policy.engine.forward(b, save: true)
      let n = Float(out.logp.count)
      lastLoss = -Double(out.logp.reduce(0, +)) / Double(n)
      policy.engine.zeroGrads()
      policy.engine.backward(out.saved!, dlogp: out.logp.map { _ in -1 / n })
      policy.optimizer.update(params: store, grads: policy.engine.grads, lr: o.lr, maxNorm: 1, compute: policy.engine.compute)
      step += 1
      if step % checkEvery == 0 || step == o.maxSteps {
        let t = Date()
        policy.sampler.refresh()
        acc = try Evaluator.run(policy, problems: validation, tokenizer: tok, grader: grader, samples: 1, temperature: 0,
                                maxTokens: o.maxTokens, seed: o.seed).greedyAccuracy
        validationSeconds += Date().timeIntervalSince(t)
        log(String(format: "sft step %d: loss %.3f, validation greedy accuracy %.3f", step, lastLoss, acc))
        if acc >= o.targetAccuracy { break }
      }
    }
    return ColdStartReport(steps: step, validationAccuracy: acc, seconds: Date().timeIntervalSince(t0),
                           validationSeconds: validationSeconds, loss: lastLoss)
  }

  public static var cacheRoot: String {
    if let c = ProcessInfo.processInfo.environment["KEEL_CACHE"] { return c }
    return NSHomeDirectory() + "/.cache/keel"
  }

  /// Where the cold start for these settings is (or would be) cached.
  public static func cacheDirectory(_ s: ColdStartSettings) -> String {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    for b in s.fingerprint.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
    return cacheRoot + "/coldstart-" + String(h, radix: 16)
  }

  /// The cached checkpoint for these settings, if it has been made.
  public static func lookup(_ s: ColdStartSettings) -> String? {
    let dir = cacheDirectory(s)
    return FileManager.default.fileExists(atPath: dir + "/model.safetensors") ? dir : nil
  }

  /// The cached checkpoint for these settings, made (and cached) if missing.
  public static func cached(_ s: ColdStartSettings, log: (String) -> Void) throws -> (directory: String, made: ColdStartReport?) {
    if let dir = lookup(s) { return (dir, nil) }
    StaleTemps.clean(cacheRoot)  // a cold start killed while saving left coldstart-….tmp-PID
    let dir = cacheDirectory(s)
    log("making the cold-start checkpoint (cached in \(dir))")
    let (store, report) = try train(s, log: log)
    let tmp = dir + ".tmp-\(getpid())"
    try? FileManager.default.removeItem(atPath: tmp)
    do {
      try FileManager.default.createDirectory(atPath: cacheRoot, withIntermediateDirectories: true)
      try Checkpoint.save(directory: tmp, store: store)
      // what made it, beside the checkpoint (for people; Keel finds it by its directory name)
      struct Info: Encodable { var steps: Int, validation_greedy_accuracy: Double, seconds: Double, fingerprint: String, made_by: String }
      let info = Info(steps: report.steps, validation_greedy_accuracy: report.validationAccuracy, seconds: report.seconds,
                      fingerprint: s.fingerprint, made_by: "keel sft (ColdStart.cached)")
      try writeAtomically(try JSONOutput.encoder(pretty: true).encode(info), to: tmp + "/coldstart.json")
      try? FileManager.default.removeItem(atPath: dir)
      try FileManager.default.moveItem(atPath: tmp, toPath: dir)
    } catch {
      try? FileManager.default.removeItem(atPath: tmp)
      throw FileWriteError.from(error, path: tmp)
    }
    return (dir, report)
  }
}
