// Experiments.swift — the paper's experiments as ready comparisons (`keel experiment NAME`),
// on the long-response task (a written scratchpad of partial sums: tens of tokens, where the
// first-order approximation can actually break) with an fp8 sampler (the paper's inference
// setting; bf16's gap on this tiny policy is small — docs/reproduction.md).
//   onpolicy    MiniRL; + length-norm; w/o train-infer IS; each with R3; + an exact-sampler control. N = 1
//   offpolicy   N ∈ {2, 4, 8}, mini-batch fixed: no clip; R2 no clip; R2; R3; clip without replay
//   coldstart   MiniRL + R2, N = 2, from cold starts by three teachers (careful, sloppy, terse)
//   objectives  MiniRL vs GRPO vs CISPO vs GSPO vs PPO-clip vs REINFORCE, same budget, N = 4
// `small` finishes in minutes (tiny policy, few steps: a smoke test of the harness, not
// evidence); `full` is what docs/reproduction.md reports.
public enum Experiments {
  public static let names = ["onpolicy", "offpolicy", "coldstart", "objectives"]

  public static func base(scale: String) throws -> [String: String] {
    switch scale {
    case "small":
      return ["preset": "test", "task.name": "scratchpad", "task.digits": "1", "task.terms": "3", "sampler.max_tokens": "24",
              "sampler.precision": "fp8", "steps": "8", "eval.every": "4", "rollout.prompts": "8", "rollout.group_size": "4",
              "coldstart.max_steps": "200", "coldstart.lr": "1e-2", "coldstart.check_every": "20"]
    case "full":
      // lr: Keel's default (3e-4, chosen on 2-digit addition, docs/training.md), the same for
      // every arm and experiment, never tuned on these arms
      return ["task.name": "scratchpad", "task.digits": "1", "task.terms": "4", "sampler.max_tokens": "32",
              "sampler.precision": "fp8", "steps": "100", "eval.every": "10", "task.eval_size": "500", "eval.samples": "2",
              "rollout.prompts": "16", "rollout.group_size": "8", "train.lr": "3e-4", "coldstart.max_steps": "1000", "coldstart.lr": "1e-2", "coldstart.check_every": "20",
              "checkpoint.every": "100"]
    default: throw ConfigError.badValue(key: "--scale", expected: "small | full", got: scale)
    }
  }

  public static func arms(_ name: String, scale: String) throws -> [Arm] {
    let minirl = ["objective.name": "minirl"]
    func arm(_ n: String, _ o: [String: String]) -> Arm { Arm(name: n, overrides: minirl.merging(o) { $1 }) }
    switch name {
    case "onpolicy":
      var arms: [Arm] = []
      for (n, o) in [("minirl", [:]), ("minirl-lennorm", ["objective.params.length_norm": "true"]),
                     ("minirl-no-tis", ["objective.params.train_infer_is": "false"])] as [(String, [String: String])] {
        arms.append(arm(n, o))
        arms.append(arm(n + "-R3", o.merging(["train.routing_replay": "R3"]) { $1 }))
      }
      arms.append(arm("minirl-exact-sampler", ["sampler.precision": "exact"]))
      return arms
    case "offpolicy":
      // full: mini-batches of 4 prompts × 8 and 50 steps, so that N = 8 (32 prompts, 8 updates
      // per step) fits the 2-core budget
      let miniBatchPrompts = scale == "small" ? 2 : 4
      let budget = scale == "small" ? [:] : ["steps": "50", "eval.every": "10"]
      var arms: [Arm] = []
      for n in [2, 4, 8] {
        let common = ["train.minibatches": String(n), "rollout.prompts": String(n * miniBatchPrompts)].merging(budget) { $1 }
        arms.append(arm("N\(n)-noclip", common.merging(["objective.params.clip": "false"]) { $1 }))
        arms.append(arm("N\(n)-R2-noclip", common.merging(["objective.params.clip": "false", "train.routing_replay": "R2"]) { $1 }))
        arms.append(arm("N\(n)-R2", common.merging(["train.routing_replay": "R2"]) { $1 }))
        arms.append(arm("N\(n)-R3", common.merging(["train.routing_replay": "R3"]) { $1 }))
        arms.append(arm("N\(n)-clip-only", common))
      }
      return arms
    case "coldstart":
      return ["careful", "sloppy", "terse"].map {
        arm("teacher-\($0)", ["coldstart.teacher": $0, "train.routing_replay": "R2", "train.minibatches": "2"])
      }
    case "objectives":
      // off-policy (N = 4 updates per batch): at N = 1 every clipped objective's gradient is
      // REINFORCE's up to the train–inference weight (docs/compare.md), so they could not differ
      let offPolicy = ["train.minibatches": "4"]
      return [Arm(name: "minirl", overrides: minirl.merging(offPolicy) { $1 }),
              Arm(name: "grpo", overrides: ["objective.name": "grpo", "baseline.name": "group-mean-std"].merging(offPolicy) { $1 }),
              Arm(name: "cispo", overrides: ["objective.name": "cispo"].merging(offPolicy) { $1 }),
              Arm(name: "gspo", overrides: ["objective.name": "gspo", "baseline.name": "group-mean-std"].merging(offPolicy) { $1 }),
              Arm(name: "ppo-clip", overrides: ["objective.name": "ppo-clip"].merging(offPolicy) { $1 }),
              Arm(name: "reinforce", overrides: ["objective.name": "reinforce"].merging(offPolicy) { $1 })]
    default:
      throw ConfigError.syntax("unknown experiment '\(name)'; valid: \(names.joined(separator: ", "))")
    }
  }
}
