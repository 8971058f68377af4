// PluginChecker.swift — the validator behind `keel plugins check`: exercises one plugin on
// edge cases and states a pass rule for each. It runs in-process here; the CLI runs it in a
// child process so a plugin that segfaults or traps is reported, not fatal.
//
// Pass rules (objective):
//   empty batch            → status OK, loss 0
//   length-1 response      → finite loss and gradient
//   all-masked batch       → loss exactly 0 and every gradient entry exactly 0
//   mixed batch            → finite outputs; masked tokens get gradient 0
//   extreme log-probs      → finite outputs (log-probs down to -80, ratios up to e^60)
//   NaN log-prob           → an error status or a NaN output (reported), never a crash
//   finite differences     → ∂loss/∂logp (and, ABI 1.1, every distribution-term gradient the
//                            instance returns) matches a central difference with logp_frozen
//                            held fixed: max|fd − g| ≤ 1e-3·max(max|g|, 1e-3) + 1e-5
//   micro-batch split      → two calls with whole-batch totals sum to the whole (1e-5 rel.),
//                            every gradient output included; an instance that declares itself
//                            not additive (the KEEL_EXT_PER_CALL instance extension: a selection
//                            or a denominator over the call's tokens) is reported, not failed
// The batches carry the inputs the instance asked for (ABI 1.1 flags): logp_ref, entropy,
// kl_ref, logp_teacher, kl_teacher, logits (vocab_size 5), made up deterministically.
// Reward: empty batch OK; finite rewards on ordinary, empty and non-ASCII responses;
// Baseline: empty batch OK; finite advantages for one group, singleton and all-equal groups;
// NaN reward → error status or NaN output.
import KeelRandom

public struct CheckResult: Sendable, Equatable {
  public let name: String
  public let passed: Bool
  public let detail: String
}

public struct PluginChecker {
  public let library: PluginLibrary
  public let settings: [String: ParameterValue]
  /// Called with the name of each check before it runs (the child prints it, so a crash can be
  /// attributed to the check that was running).
  public var willRun: (String) -> Void = { _ in }
  /// Called with each result as soon as its check finishes.
  public var didRun: (CheckResult) -> Void = { _ in }

  public init(library: PluginLibrary, settings: [String: ParameterValue] = [:]) {
    self.library = library
    self.settings = settings
  }

  public func run() -> [CheckResult] {
    switch library.kind {
    case .objective: return runObjective()
    case .reward: return runReward()
    case .baseline: return runBaseline()
    }
  }

  private func check(_ name: String, _ body: () throws -> (Bool, String)) -> CheckResult {
    willRun(name)
    let result: CheckResult
    do {
      let (ok, detail) = try body()
      result = CheckResult(name: name, passed: ok, detail: detail)
    } catch {
      result = CheckResult(name: name, passed: false, detail: "\(error)")
    }
    didRun(result)
    return result
  }

  // MARK: objective

  /// A deterministic batch: `responses` responses with lengths 1…, alternating advantage
  /// signs, two per group, ratios on both sides of 1, a masked token in every third response.
  public static func objectiveBatch(responses: Int, seed: UInt64, spread: Float = 0.4) -> ObjectiveBatch {
    var rng = SplitMix64(seed: seed)
    var rows: [(group: Int64, advantage: Float, logp: [Float], logpOld: [Float], logpRollout: [Float], mask: [UInt8])] = []
    for i in 0..<responses {
      let len = 1 + (i * 3) % 7
      var lp: [Float] = [], old: [Float] = [], roll: [Float] = [], mask: [UInt8] = []
      for t in 0..<len {
        let base = -Float(rng.uniform() * 3 + 0.05)
        lp.append(base)
        old.append(base + spread * Float(rng.uniform() * 2 - 1))
        roll.append(base + spread * Float(rng.uniform() * 2 - 1))
        mask.append(i % 3 == 2 && t == 0 && len > 1 ? 0 : 1)
      }
      let adv = Float((i % 2 == 0 ? 1 : -1) * (0.25 + rng.uniform()))
      rows.append((Int64(i / 2), adv, lp, old, roll, mask))
    }
    return ObjectiveBatch(responses: rows)
  }

  private func runObjective() -> [CheckResult] {
    var results: [CheckResult] = []
    results.append(check("empty batch") {
      let inst = try objectiveInstance()
      let r = try inst.compute(Self.withNeededInputs(ObjectiveBatch(seqOffsets: [0], groupIds: [], mask: [], advantages: [], logp: [], logpOld: [], logpRollout: [], totalSequences: 0, totalTokens: 0), inst))
      return (r.loss == 0, "loss \(r.loss) (rule: 0)")
    })
    results.append(check("length-1 response") {
      let inst = try objectiveInstance()
      let b = ObjectiveBatch(responses: [(0, 1.0, [-0.7], [-0.6], [-0.75], [1])])
      let r = try inst.compute(Self.withNeededInputs(b, inst))
      return (r.loss.isFinite && r.gradLogp.allSatisfy(\.isFinite), "loss \(r.loss), grad \(r.gradLogp)")
    })
    results.append(check("all-masked batch") {
      let inst = try objectiveInstance()
      var b = Self.objectiveBatch(responses: 4, seed: 3)
      b.mask = b.mask.map { _ in 0 }
      b.totalTokens = 0
      let r = try inst.compute(Self.withNeededInputs(b, inst))
      let ok = r.loss == 0 && r.gradLogp.allSatisfy { $0 == 0 }
      return (ok, "loss \(r.loss), max|grad| \(r.gradLogp.map { abs($0) }.max() ?? 0) (rule: exactly 0)")
    })
    results.append(check("mixed batch") {
      let inst = try objectiveInstance()
      let b = Self.withNeededInputs(Self.objectiveBatch(responses: 8, seed: 5), inst)
      let r = try inst.compute(b)
      let maskedZero = zip(b.mask, r.gradLogp).allSatisfy { $0.0 == 1 || $0.1 == 0 }
      return (maskedZero, maskedZero ? "loss \(r.loss), metrics \(zip(inst.metricNames, r.metrics).map { "\($0)=\($1)" })" : "a masked token has a non-zero gradient")
    })
    results.append(checkExtremeLogProbs())
    results.append(checkNaNLogProb())
    results.append(checkFiniteDifferences())
    results.append(checkMicroBatchSplit())
    return results
  }

  /// A fresh instance of the objective with the checker's settings.
  private func objectiveInstance() throws -> ObjectiveInstance { try ObjectiveInstance(library: library, settings: settings) }

  /// `b` with every input the instance asks for: reference log-probs (logp_old − 0.05), and
  /// (ABI 1.1) entropies, KLs, teacher log-probs and logits made up from the batch's own values.
  public static func withNeededInputs(_ b: ObjectiveBatch, _ inst: ObjectiveInstance) -> ObjectiveBatch {
    var b = b
    let n = b.numTokens
    if inst.usesReference { b.logpRef = b.logpOld.map { $0 - 0.05 } }
    if inst.needs(.entropy) { b.entropy = b.logp.map { 0.2 + 0.3 * abs($0) } }
    if inst.needs(.referenceKL) { b.klRef = b.logpOld.indices.map { 0.01 + 0.05 * Float($0 % 5) } }
    if inst.needs(.teacher) { b.logpTeacher = b.logpOld.map { $0 - 0.1 } }
    if inst.needs(.teacherKL) { b.klTeacher = b.logpOld.indices.map { 0.02 + 0.04 * Float($0 % 3) } }
    if inst.needs(.logits) {
      b.vocabSize = 5
      b.logits = (0..<(n * 5)).map { Float(($0 * 7) % 11) * 0.3 - 1.5 }
    }
    return b
  }

  /// Log-probs down to -80 and ratios up to e^60: the outputs must be finite.
  private func checkExtremeLogProbs() -> CheckResult {
    check("extreme log-probs") {
      let inst = try objectiveInstance()
      var b = Self.objectiveBatch(responses: 6, seed: 7)
      for t in 0..<b.numTokens {
        switch t % 4 {
        case 0: b.logp[t] = -80; b.logpRollout[t] = -1e-6; b.logpOld[t] = -1e-6
        case 1: b.logp[t] = -1e-7; b.logpRollout[t] = -60; b.logpOld[t] = -60
        case 2: b.logp[t] = -30; b.logpRollout[t] = -30; b.logpOld[t] = -0.01
        default: b.logp[t] = 0; b.logpRollout[t] = -15; b.logpOld[t] = -15
        }
      }
      let r = try inst.compute(Self.withNeededInputs(b, inst))
      return (true, "loss \(r.loss), max|grad| \(r.gradLogp.map { abs($0) }.max() ?? 0)")
    }
  }

  /// A NaN log-prob must give an error status or a NaN output, never a silently finite one.
  private func checkNaNLogProb() -> CheckResult {
    check("NaN log-prob") {
      let inst = try objectiveInstance()
      var b = Self.objectiveBatch(responses: 4, seed: 9)
      b.logp[0] = .nan
      do {
        let r = try inst.compute(Self.withNeededInputs(b, inst), checkFinite: false)
        let nan = !r.loss.isFinite || r.gradLogp.contains { !$0.isFinite }
        return (nan, nan ? "NaN output (the host reports it)" : "NaN input gave finite output \(r.loss): the NaN was silently dropped")
      } catch let e as PluginError {
        return (true, "error status: \(e)")
      }
    }
  }

  /// ∂loss/∂logp against a central difference in logp (logp_frozen held fixed), within the stated tolerance.
  private func checkFiniteDifferences() -> CheckResult {
    check("finite differences") {
      let inst = try objectiveInstance()
      let b = Self.withNeededInputs(Self.objectiveBatch(responses: 8, seed: 11), inst)
      let checks = try inst.gradientChecks(b).checks
      let detail = checks.map { c in
        let at = c.output == "grad_logits" ? "entry \(c.worstEntry)" : "token \(c.worstEntry)"
        return "\(c.output == "grad_logp" ? "" : c.output + ": ")max |fd − grad| = \(c.maxDeviation) at \(at), tolerance \(c.tolerance)"
      }
      return (checks.allSatisfy(\.agrees), detail.joined(separator: "; "))
    }
  }

  /// Two calls with the whole batch's totals must sum to the whole call (1e-5 relative).
  private func checkMicroBatchSplit() -> CheckResult {
    check("micro-batch split") {
      let inst = try objectiveInstance()
      let b = Self.withNeededInputs(Self.objectiveBatch(responses: 8, seed: 13), inst)
      let whole = try inst.compute(b)
      let cut = 4  // responses 0..<4 and 4..<8: groups (two responses each) stay whole
      let parts = [b.slice(0..<cut), b.slice(cut..<b.numSequences)]
      var loss = 0.0
      var grads: [[Float]] = [[], [], [], [], []]
      func outputs(_ r: ObjectiveResult) -> [[Float]] { [r.gradLogp, r.gradEntropy ?? [], r.gradKlRef ?? [], r.gradKlTeacher ?? [], r.gradLogits ?? []] }
      for p in parts {
        let r = try inst.compute(p)
        loss += r.loss
        for (k, g) in outputs(r).enumerated() { grads[k] += g }
      }
      let scale = max(abs(whole.loss), 1e-6)
      var gerr = 0.0, ok = abs(loss - whole.loss) <= 1e-5 * scale + 1e-9
      for (parts, full) in zip(grads, outputs(whole)) {
        let err = zip(parts, full).map { abs(Double($0) - Double($1)) }.max() ?? 0
        gerr = max(gerr, err)
        ok = ok && parts.count == full.count && err <= 1e-5 * max(full.map { abs(Double($0)) }.max() ?? 0, 1e-6)
      }
      let detail = "loss whole \(whole.loss) vs parts \(loss); max grad diff \(gerr)"
      if !ok, let reason = try inst.perCallReason() {
        return (true, detail + " — not additive over calls, as the instance declares (\(reason))")
      }
      return (ok, detail)
    }
  }

  // MARK: reward

  private func runReward() -> [CheckResult] {
    func instance() throws -> RewardInstance { try RewardInstance(library: library, settings: settings) }
    return [
      check("empty batch") {
        let r = try instance().score([])
        return (r.rewards.isEmpty, "no rewards")
      },
      check("ordinary samples") {
        let samples = [RewardSample(prompt: "12+30=", response: "42", responseIds: [4, 2], reference: "42", task: "add"),
                       RewardSample(prompt: "12+30=", response: "41", responseIds: [4, 1], reference: "42", task: "add"),
                       RewardSample(prompt: "sort 3 1 2", response: " 1 2 3 ", responseIds: [1, 2, 3], reference: "1 2 3")]
        let r = try instance().score(samples)
        return (r.rewards.count == 3, "rewards \(r.rewards), components \(r.components)")
      },
      check("empty and non-ASCII responses") {
        let samples = [RewardSample(prompt: "", response: "", reference: ""),
                       RewardSample(prompt: "π≈", response: "3,14 ünïcödé ✓", reference: "3.14", truncated: true)]
        let r = try instance().score(samples)
        return (r.rewards.count == 2, "rewards \(r.rewards)")
      },
    ]
  }

  // MARK: baseline

  private func runBaseline() -> [CheckResult] {
    func instance() throws -> BaselineInstance { try BaselineInstance(library: library, settings: settings) }
    return [
      check("empty batch") {
        let a = try instance().advantages(rewards: [], groupIds: [], lengths: [])
        return (a.isEmpty, "no advantages")
      },
      check("groups: ordinary, singleton, all-equal") {
        let a = try instance().advantages(rewards: [1, 0, 0, 1, 0.5, 1, 1, 1], groupIds: [7, 7, 7, 7, 3, 9, 9, 9],
                                          lengths: [3, 4, 1, 2, 5, 2, 2, 2])
        return (a.count == 8, "advantages \(a)")
      },
      check("NaN reward") {
        do {
          let a = try instance().advantages(rewards: [1, .nan, 0], groupIds: [0, 0, 0], lengths: [1, 1, 1], checkFinite: false)
          let nan = a.contains { !$0.isFinite }
          return (nan, nan ? "NaN output (the host reports it)" : "NaN input gave finite output \(a)")
        } catch let e as PluginError {
          return (true, "error status: \(e)")
        }
      },
    ]
  }
}

extension ObjectiveBatch {
  /// Responses `range` as their own call, keeping the whole batch's normalisers.
  public func slice(_ range: Range<Int>) -> ObjectiveBatch {
    let lo = Int(seqOffsets[range.lowerBound]), hi = Int(seqOffsets[range.upperBound])
    var b = self
    b.seqOffsets = seqOffsets[range.lowerBound...range.upperBound].map { $0 - Int64(lo) }
    b.groupIds = Array(groupIds[range])
    b.mask = Array(mask[lo..<hi])
    b.advantages = Array(advantages[lo..<hi])
    b.logp = Array(logp[lo..<hi])
    b.logpFrozen = logpFrozen.map { Array($0[lo..<hi]) }
    b.logpOld = Array(logpOld[lo..<hi])
    b.logpRollout = Array(logpRollout[lo..<hi])
    b.logpRef = logpRef.map { Array($0[lo..<hi]) }
    b.entropy = entropy.map { Array($0[lo..<hi]) }
    b.klRef = klRef.map { Array($0[lo..<hi]) }
    b.logpTeacher = logpTeacher.map { Array($0[lo..<hi]) }
    b.klTeacher = klTeacher.map { Array($0[lo..<hi]) }
    let V = Int(vocabSize)
    b.logits = logits.map { Array($0[(lo * V)..<(hi * V)]) }
    return b
  }
}

