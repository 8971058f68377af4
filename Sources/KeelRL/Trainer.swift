// Trainer.swift — the RL loop of paper §6, one global step at a time:
//   sample B×G responses (sampler: log μ_old, experts) → reward plugin(s) → baseline plugin →
//   π_old pass (training engine: log π_old, entropy, experts) → N mini-batch updates, each:
//   forward at θ (routing replay none | R2 | R3) → objective plugin (loss, ∂loss/∂logp) →
//   backward → AdamW → the updated weights become the sampler's → metrics, eval, checkpoint.
//   With N = 1 the update's forward is the π_old pass (same weights, same tokens, same bits),
//   so π_old is recorded from it instead of a separate pass.
// Everything random is keyed by (seed, step, prompt, sample): a resumed run continues
// exactly, and the same seed gives the same metrics bit for bit (timing keys aside).
// Data-parallel over MPI (docs/scaling.md): each rank owns a contiguous share of the B prompt
// groups; gradients, batch totals and metric sums are summed across ranks; rank 0 alone writes
// metrics, checkpoints and the summary. With one process `comm` is `.single` and every
// collective is a no-op.
import Foundation
import KeelDistributed
import KeelGuard
import KeelModel
import KeelPluginHost
import KeelTasks
import Logging

/// 1 once SIGINT/SIGTERM arrived (KeelGuard's atomic flag, set in its signal handler); the loop
/// finishes the current step, checkpoints and exits. A second signal exits at once.
public var keelStopRequested: Int32 { Int32(keel_guard_stop_requested()) }

public struct TrainerError: Error, CustomStringConvertible {
  public let message: String
  public var description: String { message }
}

public final class Trainer {
  /// With N = 1, record π_old from the update's own forward (see globalStep). Off: a separate
  /// π_old pass, as for N > 1 — the same bits, slower; tests compare the two.
  public var foldOldPassIntoUpdate = true
  /// The typed configuration (RunConfig.swift), and the resolved key/value form it was decoded
  /// from (written to config.yaml and provenance.json).
  public let config: RunConfig
  public let resolved: ResolvedConfig
  public let run: RunDirectory
  public let comm: Communicator
  /// Rank 0's messages (KeelLog.silent on the others); `log` is its info level.
  let logger: Logger
  let quiet: Bool
  /// Keel's character table, or the Hugging Face tokenizer of model.checkpoint.
  let tokenizer: any PolicyTokenizer
  let dataset: Dataset
  /// Tokens of the longest training prompt of a dataset (nil: a procedural task), from the check
  /// that every prompt encodes: what bounds a teacher's needed context.
  let longestTrainPrompt: Int?
  /// The one definition of correct (Grader.swift): made in prepare().
  var grader: Grader!
  let modelConfig: ModelConfig
  public private(set) var policy: Policy!
  var reference: TrainingEngine?
  /// train.teacher's model (read-only), when the objective asks for teacher terms.
  var teacher: TrainingEngine?
  var plugins: PluginSet!
  public private(set) var step = 0
  public private(set) var coldStartEval: EvalResult?
  var evalHistory: [(step: Int, greedy: Double, sampled: Double, trainSeconds: Double)] = []
  var trainSeconds = 0.0
  /// Rank 0 only (nil on the others), like every writer below.
  var metricsWriter: JSONLWriter?
  var weightsWriter: JSONLWriter?
  var rolloutsWriter: JSONLWriter?
  /// One line per mini-batch update: the first-order diagnostics with their `minibatch` index.
  var diagnosticsWriter: JSONLWriter?
  var diagnosticsSums = DiagnosticsSummary()
  var tensorboard: TensorBoardWriter?

  var seed: UInt64 { config.seed }
  var B: Int { config.rollout.prompts }
  var G: Int { config.rollout.groupSize }

  public init(config: ResolvedConfig, run: RunDirectory, quiet: Bool = false, comm: Communicator = .single,
              logger: Logger = Logger(label: "keel.train")) throws {
    self.resolved = config
    self.config = RunConfig(config)
    self.run = run
    self.comm = comm
    self.quiet = quiet || !comm.isRoot
    self.logger = comm.isRoot ? logger : KeelLog.silent
    dataset = try Self.dataset(self.config)
    if let dir = self.config.model.checkpoint {
      modelConfig = try Checkpoint.loadConfig(directory: dir)
      tokenizer = try HFPolicyTokenizer.inDirectory(dir) ?? CharTokenizer()
    } else {
      tokenizer = CharTokenizer()
      modelConfig = try ModelPreset.config(self.config.model.preset, vocab: tokenizer.vocabSize)
    }
    try Self.checkVocabulary(model: modelConfig.vocabSize, tokenizer: tokenizer, what: self.config.model.checkpoint ?? "model.preset")
    // a dataset's prompts must all encode: say which row does not, before any training
    var longest: Int? = dataset.train != nil ? 0 : nil
    if let rows = dataset.train {
      for (i, p) in (rows + dataset.eval).enumerated() {
        let n: Int
        do { n = try tokenizer.encodePrompt(p.prompt).count } catch { throw TrainerError(message: "\(p.source.isEmpty ? dataset.name : p.source): \(error)") }
        if i < rows.count { longest = max(longest ?? 0, n) }
      }
    }
    longestTrainPrompt = longest
    try validate()
  }

  /// The run's problems: the task (or JSONL file), its split and its answer marker — the
  /// config's task.marker, else reward.params.marker when set, else the task's own.
  public static func dataset(_ config: RunConfig) throws -> Dataset {
    let taskName = config.task.name
    let terms = config.task.terms
    let marker = config.task.marker ?? config.params["reward"]?["marker"]
    if taskName.hasSuffix(".jsonl") {
      return try Dataset(jsonl: taskName, evalPath: config.task.evalPath, evalCount: config.task.evalSize,
                         marker: marker ?? "", fields: JSONLFields(prompt: config.task.promptField, answer: config.task.answerField),
                         seed: config.seed)
    }
    let gen = try TaskRegistry.make(taskName, digits: config.task.digits, terms: terms > 0 ? terms : nil)
    return try Dataset(task: gen, seed: config.seed, evalCount: config.task.evalSize, marker: marker)
  }

  /// The run's grader: eval.reward with the dataset's marker, correct at ≥ eval.threshold; when
  /// eval.reward is the training reward plugin it gets reward.params too.
  public static func grader(_ config: RunConfig, marker: String) throws -> Grader {
    let name = config.eval.reward
    let params = name == config.reward.name ? config.params["reward"] ?? [:] : [:]
    return try Grader(reward: name, marker: marker, threshold: config.eval.threshold, params: params)
  }

  /// The model must have an embedding for every id the tokenizer produces.
  public static func checkVocabulary(model: Int, tokenizer: any PolicyTokenizer, what: String) throws {
    guard tokenizer.vocabSize <= model else {
      let which = tokenizer is HFPolicyTokenizer ? "the tokenizer's (tokenizer.json)" : "Keel's character table's"
      throw TrainerError(message: "\(what): the model's vocabulary has \(model) tokens but \(which) ids go up to \(tokenizer.vocabSize - 1) (\(tokenizer.vocabSize) tokens); use a checkpoint whose vocab_size covers its tokenizer")
    }
  }

  func validate() throws {
    func bad(_ m: String) -> TrainerError { TrainerError(message: m) }
    if B % config.train.minibatches != 0 {
      throw bad("train.minibatches (\(config.train.minibatches)) must divide rollout.prompts (\(B)): mini-batches keep groups whole")
    }
    if comm.size > B {
      throw bad("\(comm.size) ranks but rollout.prompts is \(B): every rank needs at least one prompt group")
    }
    if config.train.routingReplay != .none && !modelConfig.isMoE {
      throw bad("train.routing_replay \(config.train.routingReplay.rawValue) needs an MoE policy (model.preset moe or tiny)")
    }
  }

  // MARK: set-up

  var needsTeacher: Bool { plugins.objective.needs(.teacher) || plugins.objective.needs(.teacherKL) }
  /// Whether the reference's log-probs of the sampled tokens are computed and passed: when the
  /// instance asks (USES_REF), or to a 1.0 plugin whenever there is a reference (1.0 hosts did,
  /// and 1.0 plugins such as the old grpo read logp_ref without the static flag).
  var wantsReferenceLogp: Bool { plugins.objective.usesReference || plugins.objective.library.abiMinor == 0 }

  /// The objective instance's needs (ABI 1.1 flags) against the config, before any work: a
  /// reference term needs train.kl_ref, a teacher term train.teacher.
  func checkObjectiveNeeds() throws {
    let o = plugins.objective
    let name = "objective '\(o.library.name)' (\(o.library.path))"
    if (o.needs(.reference) || o.needs(.referenceKL)) && !config.train.klRef {
      throw TrainerError(message: "\(name) needs a reference policy (\(o.needs(.referenceKL) ? "kl_ref" : "logp_ref")): set train.kl_ref = true")
    }
    if needsTeacher && config.train.teacher == nil {
      throw TrainerError(message: "\(name) needs a teacher (\(o.needs(.teacherKL) ? "kl_teacher" : "logp_teacher")): set train.teacher to a checkpoint directory")
    }
    if config.train.teacher != nil && !needsTeacher {
      logger.warning("train.teacher is set but \(name) asks for no teacher term: the teacher is not loaded")
    }
    if let dir = config.train.teacher, needsTeacher {
      // read the teacher's config now (before any cold start): vocabulary and context must fit
      let tc: ModelConfig
      do { tc = try Checkpoint.loadConfig(directory: dir) } catch { throw TrainerError(message: "train.teacher \(dir): \(error)") }
      try checkTeacher(tc, dir: dir, vocabulary: modelConfig.vocabSize)
    }
    if let reason = try o.perCallReason() {
      let perMiniBatch = B / config.train.minibatches * G
      if comm.size > 1 || config.train.microBatch < perMiniBatch {
        logger.warning("\(name) is not additive over calls (\(reason)) but a mini-batch of \(perMiniBatch) responses is split (train.micro_batch \(config.train.microBatch), \(comm.size) rank(s)): its loss depends on the split; set train.micro_batch ≥ \(perMiniBatch) on one rank for the whole-batch definition")
      }
    }
  }

  /// A teacher must score the policy's ids (same vocabulary size) for every sequence the run makes.
  func checkTeacher(_ tc: ModelConfig, dir: String, vocabulary: Int) throws {
    guard tc.vocabSize == vocabulary else {
      throw TrainerError(message: "train.teacher \(dir): its vocabulary has \(tc.vocabSize) tokens but the policy's has \(vocabulary); a teacher must score the policy's token ids (same tokenizer)")
    }
    // a dataset's rows bound the sequences; a procedural task's only the policy's own context
    let what: String, longest: Int
    if let longestPrompt = longestTrainPrompt {
      longest = longestPrompt + config.sampler.maxTokens
      what = "the run's longest sequence (\(longestPrompt) prompt + \(config.sampler.maxTokens) sampler.max_tokens = \(longest) tokens)"
    } else {
      longest = modelConfig.maxPositionEmbeddings
      what = "the policy's (\(longest)), which bounds the task's sequences"
    }
    guard tc.maxPositionEmbeddings >= longest else {
      throw TrainerError(message: "train.teacher \(dir): max_position_embeddings \(tc.maxPositionEmbeddings) is shorter than \(what)")
    }
  }

  /// Load the plugins, the cold start (or the checkpoint to resume from) and the engines.
  public func prepare(resumeFrom checkpoint: String?) throws {
    plugins = try PluginSet(config: config, discovery: .standard(), answerMarker: dataset.answerMarker, logger: logger)
    try checkObjectiveNeeds()
    grader = try Self.grader(config, marker: dataset.answerMarker)
    let precision = config.sampler.precision
    let threads = config.train.threads
    comm.timeout = config.distributed.timeout
    keel_guard_set_timeout(config.pluginTimeout)
    // rank 0 makes (or finds) the cold start first; the others then find it in the cache
    var coldDir: String? = nil
    if comm.isRoot { coldDir = try coldStartDirectory(make: true) }
    try comm.barrier(what: "barrier after the cold start", timeout: 0, patient: true)
    if !comm.isRoot { coldDir = try coldStartDirectory(make: false) }
    if let checkpoint {
      let (store, opt) = try Checkpoint.load(directory: checkpoint, optimizer: true)
      policy = Policy(store: store, precision: precision, threads: threads, optimizer: opt)
      let state = try RunState.load(directory: checkpoint)
      step = state.step
      trainSeconds = state.trainSeconds
      coldStartEval = state.coldStartEval
      evalHistory = state.evalHistory.map { ($0.step, $0.greedy, $0.sampled, $0.trainSeconds) }
      try plugins.loadStates(directory: checkpoint)
    } else if let coldDir {
      let (store, _) = try Checkpoint.load(directory: coldDir)
      try Self.checkVocabulary(model: store.layout.config.vocabSize, tokenizer: tokenizer, what: coldDir)
      policy = Policy(store: store, precision: precision, threads: threads)
    } else {
      policy = Policy(store: ParameterStore(config: modelConfig, seed: seed), precision: precision, threads: threads)
    }
    policy.optimizer.weightDecay = Float(config.train.weightDecay)
    if config.train.klRef {
      let refStore = coldDir.map { try? Checkpoint.load(directory: $0).0 } ?? nil
      reference = TrainingEngine(store: refStore ?? policy.store.copy(), compute: policy.engine.compute)
    }
    if let dir = config.train.teacher, needsTeacher {
      let store: ParameterStore
      do { store = try Checkpoint.load(directory: dir).0 } catch { throw TrainerError(message: "train.teacher \(dir): \(error)") }
      try checkTeacher(store.layout.config, dir: dir, vocabulary: policy.engine.config.vocabSize)
      // the ids must mean the same tokens: a tokenizer.json that differs from the policy's is suspect
      let teacherTokenizer = dir + "/tokenizer.json"
      let policyTokenizer = config.model.checkpoint.map { $0 + "/tokenizer.json" }
      let hasOwn = FileManager.default.fileExists(atPath: teacherTokenizer)
      if hasOwn || policyTokenizer.map({ FileManager.default.fileExists(atPath: $0) }) == true {
        let same = hasOwn && policyTokenizer.map { FileDigest.sha256($0) == FileDigest.sha256(teacherTokenizer) } == true
        if !same {
          logger.warning("train.teacher \(dir): its tokenizer.json is not the policy's (\(policyTokenizer ?? "Keel's character table")); the teacher scores the policy's token ids, so the two must assign the same ids")
        }
      }
      teacher = TrainingEngine(store: store, compute: policy.engine.compute)
    }
    if comm.size > 1 {
      // the objective and the reward see only this rank's data: their states would drift apart
      for (role, p) in plugins.all where role != "baseline" && p.library.hasState {
        throw TrainerError(message: "the \(role) plugin '\(p.library.name)' (\(p.library.path)) keeps state (save_state/load_state), which would differ between MPI ranks (each sees only its share of the batch); run it in one process")
      }
      try checkWeightsAgree(after: "loading")
      // the frozen models every rank scores against must be the same too
      for (key, engine) in [("train.teacher", teacher), ("train.kl_ref (the reference)", reference)] {
        guard let engine else { continue }
        if let list = try rankChecksums(engine.store, what: key).disagreement {
          throw TrainerError(message: "the ranks' \(key) weights differ (\(list)); every rank must read the same checkpoint")
        }
      }
    }
    guard comm.isRoot else { return }
    let keep = checkpoint != nil ? step : nil
    metricsWriter = try JSONLWriter(path: run.path + "/metrics.jsonl", truncateToStepAtMost: keep)
    metricsWriter?.onNonFinite = { [logger] step, keys in
      logger.warning("step \(step): \(keys.joined(separator: ", ")) not finite; written as null in metrics.jsonl")
    }
    if config.diagnostics.enabled {
      diagnosticsWriter = try JSONLWriter(path: run.path + "/diagnostics.jsonl", truncateToStepAtMost: keep)
    }
    if config.log.rollouts {
      rolloutsWriter = try JSONLWriter(path: run.path + "/rollouts.jsonl", truncateToStepAtMost: keep)
    }
    if config.distributed.checkEvery > 0 {
      weightsWriter = try JSONLWriter(path: run.path + "/weights.jsonl", truncateToStepAtMost: keep)
    }
    if config.log.tensorboard { tensorboard = try TensorBoardWriter(directory: run.path + "/tensorboard") }
    try run.writeProvenance(config: config, plugins: plugins, grader: grader, policy: policy, coldStart: coldDir, ranks: comm.size)
  }

  /// Every rank must hold the same weights: compare 64-bit checksums (one 8-byte allgather).
  /// Returns the checksums, in rank order.
  @discardableResult
  func checkWeightsAgree(after what: String) throws -> [UInt64] {
    let (all, disagreement) = try rankChecksums(policy.store, what: "weight")
    if let list = disagreement {
      throw TrainerError(message: "the ranks' weights differ after \(what) (\(list)); on several hosts, the run directory and the cold-start cache must be readable by every rank")
    }
    return all
  }

  /// Every rank's checksum of `store` (one allgather), and when they differ the list
  /// "rank 0: …, rank 1: …" for the message (nil when all agree).
  func rankChecksums(_ store: ParameterStore, what: String) throws -> (all: [UInt64], disagreement: String?) {
    let all = try comm.allgather(WeightChecksum.of(store.values.p, count: store.layout.count), what: "allgather of \(what) checksums")
    guard Set(all).count > 1 else { return (all, nil) }
    return (all, all.enumerated().map { "rank \($0.offset): \(WeightChecksum.hex($0.element))" }.joined(separator: ", "))
  }

  /// `make: false` (ranks other than 0) only looks the cache up: rank 0 made it.
  func coldStartDirectory(make: Bool = true) throws -> String? {
    if let start = config.model.checkpoint { return start }
    let value = config.coldStart.checkpoint
    switch value {
    case "none": return nil
    case "auto":
      guard let gen = dataset.split?.generator else {
        throw TrainerError(message: "coldstart.checkpoint auto needs a procedural task; for a JSONL dataset give a checkpoint directory or none")
      }
      let teacherName = config.coldStart.teacher
      var s = ColdStartSettings(task: gen, taskSeed: seed, model: modelConfig, teacher: Teacher.named(teacherName)!,
                                teacherName: teacherName, targetAccuracy: config.coldStart.targetAccuracy,
                                maxSteps: config.coldStart.maxSteps, lr: Float(config.coldStart.lr),
                                batch: config.coldStart.batch, seed: seed, threads: config.train.threads,
                                maxTokens: config.sampler.maxTokens)
      s.checkEvery = config.coldStart.checkEvery
      s.grader = config.eval.reward
      s.marker = dataset.answerMarker
      s.threshold = config.eval.threshold
      if !make {
        guard let dir = ColdStart.lookup(s) else {
          throw TrainerError(message: "rank \(comm.rank) on host \(comm.host) cannot see the cold start rank 0 made (\(ColdStart.cacheDirectory(s))): put KEEL_CACHE on a shared filesystem (mpirun -x KEEL_CACHE=…) or give coldstart.checkpoint a shared directory")
        }
        return dir
      }
      let (dir, made) = try ColdStart.cached(s, log: quiet ? { _ in } : { [logger] in logger.info("\($0)") })
      if let made { log(String(format: "cold start: %d steps, validation greedy accuracy %.3f, %.1f s", made.steps, made.validationAccuracy, made.seconds)) }
      return dir
    default:
      guard FileManager.default.fileExists(atPath: value + "/config.json") else {
        throw TrainerError(message: "coldstart.checkpoint '\(value)' is not a checkpoint directory (no config.json); use auto, none or a directory written by keel")
      }
      return value
    }
  }

  // MARK: the loop

  public func train(steps: Int) throws -> Summary {
    let evalEvery = config.eval.every
    if step == 0 && coldStartEval == nil {  // (every rank: evaluation is split across them)
      let (e, dt) = try timed { try evaluate() }
      coldStartEval = e
      evalHistory.append((0, e.greedyAccuracy, e.accuracy, 0))
      try write(["eval_accuracy": e.accuracy, "eval_accuracy_greedy": e.greedyAccuracy, "time_eval": dt, "seconds": 0], step: 0)
      progress("step 0 (cold start): eval \(pct(e.accuracy)), greedy \(pct(e.greedyAccuracy))", final: true)
    }
    var stoppedBySignal = false
    let start = Date()
    while step < steps {
      var m = try globalStep(step + 1)
      step += 1
      trainSeconds += m["seconds"]!
      if step % evalEvery == 0 || step == steps {
        let (e, dt) = try timed { try evaluate() }
        m["eval_accuracy"] = e.accuracy
        m["eval_accuracy_greedy"] = e.greedyAccuracy
        m["time_eval"] = dt
        evalHistory.append((step, e.greedyAccuracy, e.accuracy, trainSeconds))
      }
      try write(m, step: step)
      let eta = Date().timeIntervalSince(start) / Double(step) * Double(steps - step)
      diagnosticsSums.add(m)
      progress(String(format: "step %d/%d  reward %.3f  acc %.3f", step, steps, m["reward_mean"]!, m["accuracy"]!)
               + (m["fo_residual_mean"].map { String(format: "  fo-residual %.2g  gaps ti %.2g st %.2g", $0, m["gap_train_infer_abs_mean"]!, m["gap_staleness_abs_mean"]!) } ?? "")
               + (m["eval_accuracy_greedy"].map { String(format: "  eval %.3f greedy %.3f", m["eval_accuracy"]!, $0) } ?? "")
               + String(format: "  ETA %.0fs", eta), final: m["eval_accuracy_greedy"] != nil)
      let checkEvery = config.distributed.checkEvery
      if checkEvery > 0 && step % checkEvery == 0 {
        let sums = try checkWeightsAgree(after: "step \(step)")
        try weightsWriter?.write(WeightsLine(step: step, ranks: sums.count, checksums: sums.map(WeightChecksum.hex)))
      }
      if step % config.checkpointEvery == 0 || step == steps { try checkpoint() }
      // a signal on any rank stops every rank after the same step
      let stop = try comm.allreduceMax([keelStopRequested], what: "allreduce of the stop flag")[0]
      if stop != 0 {
        if step % config.checkpointEvery != 0 && step != steps { try checkpoint() }
        stoppedBySignal = true
        log("stopped by signal after step \(step); checkpoint written; resume with --resume \(run.path)")
        break
      }
    }
    let summary = makeSummary(stoppedBySignal: stoppedBySignal)
    if comm.isRoot { try run.writeSummary(summary) }
    return summary
  }

  /// An info-level message.
  func log(_ message: String) { logger.info("\(message)") }

  func write(_ m: Metrics, step: Int) throws {
    try metricsWriter?.write(m, step: step)
    try tensorboard?.write(m, step: step)
  }

  func progress(_ line: String, final: Bool) {
    guard !quiet else { return }
    FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + (final ? "\n" : "")).utf8))
  }

  func pct(_ x: Double) -> String { String(format: "%.1f%%", 100 * x) }

  func timed<T>(_ body: () throws -> T) rethrows -> (T, Double) {
    let t0 = DispatchTime.now().uptimeNanoseconds
    let r = try body()
    return (r, Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
  }

  func evaluate() throws -> EvalResult {
    try Evaluator.run(policy, problems: dataset.eval, tokenizer: tokenizer, grader: grader, samples: config.eval.samples,
                      temperature: Float(config.sampler.temperature), maxTokens: config.sampler.maxTokens,
                      seed: seed, comm: comm)
  }

  func learningRate(_ step: Int) -> Float {
    let base = config.train.lr, warm = config.train.warmupSteps, total = max(config.steps, 1)
    var lr = base
    if config.train.schedule == .cosine {
      lr = base * (0.1 + 0.9 * 0.5 * (1 + cos(Double.pi * Double(min(step, total)) / Double(total))))
    }
    if warm > 0 && step <= warm { lr *= Double(step) / Double(warm) }
    return Float(lr)
  }

  func checkpoint() throws {
    guard comm.isRoot else { return }
    try run.saveCheckpoint(step: step, policy: policy, plugins: plugins, tokenizer: tokenizer as? HFPolicyTokenizer,
                           state: RunState(step: step, trainSeconds: trainSeconds, coldStartEval: coldStartEval,
                                           evalHistory: evalHistory.map { .init(step: $0.step, greedy: $0.greedy, sampled: $0.sampled, trainSeconds: $0.trainSeconds) }))
  }

  func makeSummary(stoppedBySignal: Bool) -> Summary {
    let cold = coldStartEval?.greedyAccuracy ?? 0
    let reached = Summary.target(evalHistory.map { ($0.step, $0.greedy, $0.trainSeconds) }, target: cold + 0.25)
    return Summary(steps: step, coldStartGreedy: cold, coldStartSampled: coldStartEval?.accuracy ?? 0,
                   finalGreedy: evalHistory.last?.greedy ?? 0, finalSampled: evalHistory.last?.sampled ?? 0,
                   bestGreedy: evalHistory.map(\.greedy).max() ?? 0, targetStep: reached?.step,
                   targetTrainSeconds: reached?.trainSeconds, targetHeldTwice: reached?.held ?? false, trainSeconds: trainSeconds,
                   stoppedBySignal: stoppedBySignal, diagnostics: diagnosticsSums.means)
  }
}

/// Means over the run's steps of the first-order diagnostics, for the summary.
struct DiagnosticsSummary {
  var sums: [String: Double] = [:]
  var steps = 0.0
  static let keys = ["fo_residual_mean", "fo_residual_max", "fo_valid_fraction", "gap_train_infer_abs_mean", "gap_staleness_abs_mean"]
  mutating func add(_ m: Metrics) {
    guard m["fo_residual_mean"] != nil else { return }
    for k in Self.keys { sums[k, default: 0] += m[k] ?? 0 }
    steps += 1
  }
  var means: [String: Double] { steps > 0 ? sums.mapValues { $0 / steps } : [:] }
}
