// PluginEvalCommand.swift — the plugin author's loop:
//   keel plugins eval NAME|PATH --batch FILE.json [--set k=v] [--check-grad] [--json]
//   keel plugins eval --example objective|baseline|reward      (a starting batch)
//   keel plugins eval --foreign LIB:SYMBOL:SIGNATURE --batch FILE.json [--json]   (a C function as a reward)
//   keel plugins bench NAME|PATH                               (call time vs a training step)
import ArgumentParser
import Foundation
import KeelGuard
import KeelModel
import KeelPluginHost
import KeelRandom

extension PluginsCommand {
  struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Call a plugin once on a hand-written batch and show loss, ∂loss/∂logp per token and metrics.")
    @Argument(help: "A plugin name or a path to a .so.") var plugin: String?
    @Option(help: "The batch (JSON; `--example KIND` prints one).") var batch: String?
    @Option(help: "Print a starting batch for objective | baseline | reward.") var example: String?
    @Flag(help: "Add a central finite-difference estimate per token (logp_frozen held at the batch's logp).") var checkGrad = false
    @Flag(help: "One machine-readable JSON object.") var json = false
    @Option(help: "Score the reward batch with a C function instead of a plugin: LIB:SYMBOL:SIGNATURE, the config's reward.foreign.library, .symbol and .signature, e.g. '/lib/x86_64-linux-gnu/libm.so.6:fabs:(response_number: double) -> double' (a bare LIB is ./LIB).") var foreign: String?
    @OptionGroup var parameters: ParameterOptions

    func run() throws {
      if let example {
        guard let kind = PluginKind(name: example) else { throw ValidationError("--example must be objective, baseline or reward") }
        print(BatchFile.example(kind))
        return
      }
      if let foreign { return try foreignReward(foreign) }
      guard let plugin, let batch else { throw ValidationError("give a plugin and --batch FILE (or --example KIND)") }
      let lib = try PluginDiscovery.standard().resolve(plugin)
      let settings = try parameters.parse(for: lib)
      var doc = EvalDocument(plugin: lib.name, path: lib.path, kind: lib.kind.description)
      switch lib.kind {
      case .objective: try objective(lib, settings, batch, &doc)
      case .baseline:
        let b = try BatchFile.baseline(batch)
        let adv = try BaselineInstance(library: lib, settings: settings).advantages(rewards: b.rewards, groupIds: b.groups, lengths: b.lengths)
        doc.advantages = adv.map(Double.init)
        if !json {
          print("response  group  reward  length  advantage")
          for i in adv.indices { print(String(format: "%8d  %5d  %6.3f  %6d  %9.6f", i, b.groups[i], b.rewards[i], b.lengths[i], adv[i])) }
        }
      case .reward:
        let samples = try BatchFile.reward(batch)
        let inst = try RewardInstance(library: lib, settings: settings)
        let r = try inst.score(samples)
        doc.rewards = r.rewards.map(Double.init)
        doc.components = Dictionary(uniqueKeysWithValues: inst.componentNames.enumerated().map { j, n in (n, r.components.map { $0[j] }) })
        if !json {
          for (i, s) in samples.enumerated() {
            let comps = inst.componentNames.enumerated().map { "\($1)=\(r.components[i][$0])" }.joined(separator: " ")
            print("sample \(i): reward \(r.rewards[i])  \(comps)  response \"\(s.response)\" reference \"\(s.reference)\"")
          }
        }
      }
      if json { print(String(decoding: try doc.encoded(), as: UTF8.self)) }
    }

    /// `--foreign LIB:SYMBOL:SIGNATURE`: a libffi foreign reward (ForeignReward, as training
    /// calls it) on a reward batch, shown as a reward plugin's rewards are, with the numeric
    /// arguments it received where a plugin's components go. The command line is the user's
    /// own choice (docs/security.md): the library loads as a config's reward.foreign.library
    /// would — a bare name is ./name, never a system search — and needs no --trust. The batch
    /// is read before the library is loaded.
    func foreignReward(_ reference: String) throws {
      guard plugin == nil else { throw ValidationError("give a plugin or --foreign, not both") }
      guard let batch else { throw ValidationError("--foreign needs --batch FILE, a reward batch (`keel plugins eval --example reward` prints one)") }
      guard !checkGrad else { throw ValidationError("--check-grad is for objectives, not a foreign reward") }
      guard parameters.settings.isEmpty else { throw ValidationError("--set sets plugin parameters; a foreign reward has none") }
      let (library, symbol, signature) = try ForeignReward.parseReference(reference)
      let samples = try BatchFile.reward(batch)
      keel_guard_install()  // a crash in the function (a wrong declaration) ends with one line naming it
      let f = try ForeignReward(library: library, symbol: symbol, signature: signature)
      let r = try f.score(samples)
      var doc = EvalDocument(plugin: f.symbol, path: f.libraryPath, kind: "foreign-reward")
      doc.signature = f.signature.description
      doc.rewards = r.rewards.map(Double.init)
      doc.components = [:]
      guard !json else { return print(String(decoding: try doc.encoded(), as: UTF8.self)) }
      for (i, s) in samples.enumerated() {
        let arguments = f.numericArguments(s).joined(separator: " ")
        print("sample \(i): reward \(r.rewards[i])  \(arguments)  response \"\(s.response)\" reference \"\(s.reference)\"")
      }
    }

    func objective(_ lib: PluginLibrary, _ settings: [String: ParameterValue], _ path: String, _ doc: inout EvalDocument) throws {
      let (b, labels) = try BatchFile.objective(path)
      let inst = try ObjectiveInstance(library: lib, settings: settings)
      var frozen = b
      frozen.logpFrozen = b.logp
      let (r, checks) = checkGrad ? try inst.gradientChecks(b) : (try inst.compute(frozen), [])
      let perToken = { (xs: [Double]) in (0..<b.numSequences).map { i in (Int(b.seqOffsets[i])..<Int(b.seqOffsets[i + 1])).map { xs[$0] } } }
      doc.loss = r.loss
      doc.grad_logp = perToken(r.gradLogp.map(Double.init))
      doc.metrics = Dictionary(uniqueKeysWithValues: zip(inst.metricNames, r.metrics).map { ($0, $1) })
      // the declared aggregation names the plugin's default; a loss_agg_mode parameter overrides it
      let aggregation: String
      if case .string(let mode)? = inst.parameters.first(where: { $0.0.name == "loss_agg_mode" })?.1 { aggregation = mode } else { aggregation = lib.aggregation }
      doc.aggregation = aggregation
      // ABI 1.1: the distribution-term gradients the call returned (per token; logits per token row)
      var terms: [String: [[Double]]] = [:]
      for (name, g) in [("grad_entropy", r.gradEntropy), ("grad_kl_ref", r.gradKlRef), ("grad_kl_teacher", r.gradKlTeacher)] {
        if let g { terms[name] = perToken(g.map(Double.init)) }
      }
      if let g = r.gradLogits {
        let V = Int(b.vocabSize)
        terms["grad_logits"] = (0..<b.numTokens).map { t in (0..<V).map { Double(g[t * V + $0]) } }
      }
      if !terms.isEmpty { doc.grad_terms = terms }
      if checkGrad, let logp = checks.first {
        doc.grad_fd = perToken(logp.finiteDifference)
        doc.max_fd_deviation = checks.map(\.maxDeviation).max()
        doc.gradient_checks = Dictionary(uniqueKeysWithValues: checks.map { ($0.output, GradientCheckLine(max_deviation: $0.maxDeviation, tolerance: $0.tolerance, agrees: $0.agrees)) })
      }
      guard !json else { return }
      print("\(lib.name) (\(aggregation)): loss \(r.loss)")
      let fdOf = Dictionary(uniqueKeysWithValues: checks.map { ($0.output, $0.finiteDifference) })
      for i in 0..<b.numSequences {
        let lo = Int(b.seqOffsets[i]), hi = Int(b.seqOffsets[i + 1])
        print("response \(i) (group \(b.groupIds[i]), advantage \(b.advantages.isEmpty || lo == hi ? 0 : b.advantages[lo]))")
        func row(_ name: String, _ cells: [String]) { print(name.padding(toLength: 14, withPad: " ", startingAt: 0) + cells.map { $0.padding(toLength: 12, withPad: " ", startingAt: 0) }.joined()) }
        row("  token", labels[i])
        row("  mask", (lo..<hi).map { String(b.mask[$0]) })
        row("  logp", (lo..<hi).map { String(format: "%.4f", b.logp[$0]) })
        row("  ∂loss/∂logp", (lo..<hi).map { String(format: "%.6f", r.gradLogp[$0]) })
        if let fd = fdOf["grad_logp"] { row("  finite diff", (lo..<hi).map { String(format: "%.6f", fd[$0]) }) }
        for (label, name, g) in [("  ∂loss/∂H", "grad_entropy", r.gradEntropy), ("  ∂loss/∂kl_ref", "grad_kl_ref", r.gradKlRef),
                                 ("  ∂loss/∂kl_tch", "grad_kl_teacher", r.gradKlTeacher)] {
          guard let g else { continue }
          row(label, (lo..<hi).map { String(format: "%.6f", g[$0]) })
          if let fd = fdOf[name] { row("  finite diff", (lo..<hi).map { String(format: "%.6f", fd[$0]) }) }
        }
      }
      print("metrics: " + zip(inst.metricNames, r.metrics).map { "\($0)=\($1)" }.joined(separator: " "))
      for c in checks {
        let which = c.output == "grad_logp" ? "" : " " + c.output
        print(String(format: "gradient check%@: max |fd − grad| = %.3g (tolerance %.3g): %@", which, c.maxDeviation, c.tolerance, c.agrees ? "agree" : "DISAGREE"))
      }
    }
  }

  struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
      abstract: "Time an objective's call on the bench shapes (512 responses × 48 tokens) against a training step of the bench model.")
    @Argument(help: "A plugin name or a path to a .so (or 'all' for every built-in objective).") var plugin: String
    @OptionGroup var parameters: ParameterOptions
    @Option(help: "Threads for the training step.") var threads: Int = 2

    func run() throws {
      let discovery = PluginDiscovery.standard()
      let libs = plugin == "all" ? discovery.list().plugins.filter { $0.kind == .objective } : [try discovery.resolve(plugin, kind: .objective)]
      // the same-run baseline: one training step of the bench MoE model, 512 × 64 tokens
      var s = BenchSettings(config: .benchMoE())
      s.threads = threads
      s.samplerPrecisions = []
      let step = KeelModel.Bench.trainStepSeconds(s)
      print(String(format: "training step (bench MoE, 512 × 64 tokens, forward + backward + AdamW): %.3f s", step))
      var rng = CounterRNG(seed: 7, stream: 7)
      var rows: [(group: Int64, advantage: Float, logp: [Float], logpOld: [Float], logpRollout: [Float], mask: [UInt8])] = []
      for i in 0..<512 {
        let lp = (0..<48).map { _ in -Float(rng.uniform() * 3) }
        rows.append((Int64(i / 8), Float(rng.uniform() - 0.5), lp, lp.map { $0 + Float(rng.uniform() * 0.2 - 0.1) },
                     lp.map { $0 + Float(rng.uniform() * 0.2 - 0.1) }, lp.map { _ in 1 }))
      }
      let batch = ObjectiveBatch(responses: rows, logpRef: rows.map { $0.logpOld })
      for lib in libs {
        let inst = try ObjectiveInstance(library: lib, settings: lib === libs.first && plugin != "all" ? try parameters.parse(for: lib) : [:])
        var times: [Double] = []
        for _ in 0..<21 {
          let t0 = DispatchTime.now().uptimeNanoseconds
          _ = try inst.compute(batch)
          times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) * 1e-9)
        }
        let median = times.sorted()[times.count / 2]
        print(String(format: "%@: %.3f ms per call (median of 21), %.3f%% of the training step", lib.name, median * 1e3, 100 * median / step))
      }
    }
  }
}

/// `keel plugins eval --json`: the plugin and what it returned on the batch file (the fields of
/// its kind only). A non-finite number is written as the string "nan" / "inf" / "-inf".
/// `--foreign`: plugin is the symbol, path the library, kind "foreign-reward", plus signature.
struct GradientCheckLine: Encodable { var max_deviation: Double, tolerance: Double, agrees: Bool }

struct EvalDocument: Encodable {
  var plugin: String, path: String, kind: String
  var signature: String? = nil
  var advantages: [Double]? = nil
  var rewards: [Double]? = nil, components: [String: [Double]]? = nil
  var loss: Double? = nil, grad_logp: [[Double]]? = nil, metrics: [String: Double]? = nil, aggregation: String? = nil
  var grad_fd: [[Double]]? = nil, max_fd_deviation: Double? = nil
  /// ABI 1.1 gradient outputs by name, and (with --check-grad) every output's check.
  var grad_terms: [String: [[Double]]]? = nil
  var gradient_checks: [String: GradientCheckLine]? = nil

  func encoded() throws -> Data {
    try JSONOutput.encoder().encode(self)
  }
}
