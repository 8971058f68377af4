// PluginEvalCommand.swift — the plugin author's loop:
//   keel plugins eval NAME|PATH --batch FILE.json [--set k=v] [--check-grad] [--json]
//   keel plugins eval --example objective|baseline|reward      (a starting batch)
//   keel plugins bench NAME|PATH                               (call time vs a training step)
import ArgumentParser
import Foundation
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
    @OptionGroup var parameters: ParameterOptions

    func run() throws {
      if let example {
        guard let kind = PluginKind(name: example) else { throw ValidationError("--example must be objective, baseline or reward") }
        print(BatchFile.example(kind))
        return
      }
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

    func objective(_ lib: PluginLibrary, _ settings: [String: ParameterValue], _ path: String, _ doc: inout EvalDocument) throws {
      let (b, labels) = try BatchFile.objective(path)
      let inst = try ObjectiveInstance(library: lib, settings: settings)
      var frozen = b
      frozen.logpFrozen = b.logp
      let r = try inst.compute(frozen)
      var fd: [Double] = []
      if checkGrad {
        for t in 0..<b.numTokens {
          var plus = frozen, minus = frozen
          plus.logp[t] += 1e-3
          minus.logp[t] -= 1e-3
          fd.append((try inst.compute(plus).loss - inst.compute(minus).loss) / (Double(plus.logp[t]) - Double(minus.logp[t])))
        }
      }
      let maxDev = zip(fd, r.gradLogp).map { abs($0 - Double($1)) }.max() ?? 0
      doc.loss = r.loss
      doc.grad_logp = (0..<b.numSequences).map { i in (Int(b.seqOffsets[i])..<Int(b.seqOffsets[i + 1])).map { Double(r.gradLogp[$0]) } }
      doc.metrics = Dictionary(uniqueKeysWithValues: zip(inst.metricNames, r.metrics).map { ($0, $1) })
      doc.aggregation = lib.aggregation
      if checkGrad {
        doc.grad_fd = (0..<b.numSequences).map { i in (Int(b.seqOffsets[i])..<Int(b.seqOffsets[i + 1])).map { fd[$0] } }
        doc.max_fd_deviation = maxDev
      }
      guard !json else { return }
      print("\(lib.name) (\(lib.aggregation)): loss \(r.loss)")
      for i in 0..<b.numSequences {
        let lo = Int(b.seqOffsets[i]), hi = Int(b.seqOffsets[i + 1])
        print("response \(i) (group \(b.groupIds[i]), advantage \(b.advantages.isEmpty || lo == hi ? 0 : b.advantages[lo]))")
        func row(_ name: String, _ cells: [String]) { print(name.padding(toLength: 14, withPad: " ", startingAt: 0) + cells.map { $0.padding(toLength: 12, withPad: " ", startingAt: 0) }.joined()) }
        row("  token", labels[i])
        row("  mask", (lo..<hi).map { String(b.mask[$0]) })
        row("  logp", (lo..<hi).map { String(format: "%.4f", b.logp[$0]) })
        row("  ∂loss/∂logp", (lo..<hi).map { String(format: "%.6f", r.gradLogp[$0]) })
        if checkGrad { row("  finite diff", (lo..<hi).map { String(format: "%.6f", fd[$0]) }) }
      }
      print("metrics: " + zip(inst.metricNames, r.metrics).map { "\($0)=\($1)" }.joined(separator: " "))
      if checkGrad {
        let gmax = r.gradLogp.map { abs(Double($0)) }.max() ?? 0
        let tol = 1e-3 * max(gmax, 1e-3) + 1e-5
        print(String(format: "gradient check: max |fd − grad| = %.3g (tolerance %.3g): %@", maxDev, tol, maxDev <= tol ? "agree" : "DISAGREE"))
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
struct EvalDocument: Encodable {
  var plugin: String, path: String, kind: String
  var advantages: [Double]? = nil
  var rewards: [Double]? = nil, components: [String: [Double]]? = nil
  var loss: Double? = nil, grad_logp: [[Double]]? = nil, metrics: [String: Double]? = nil, aggregation: String? = nil
  var grad_fd: [[Double]]? = nil, max_fd_deviation: Double? = nil

  func encoded() throws -> Data {
    try JSONOutput.encoder().encode(self)
  }
}
