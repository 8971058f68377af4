#!/usr/bin/env bash
# scripts/gen-config-doc.sh — regenerate docs/config.md from `keel train --help-config`
# (the schema in Sources/KeelRL/ConfigSchema.swift). A test fails when the page is stale.
#   bash scripts/gen-config-doc.sh [path/to/keel]
set -euo pipefail
cd "$(dirname "$0")/.."
keel=${1:-.build/release/keel}
{
cat <<'HEAD'
# Configuration reference

Every key `keel train` accepts (generated from `Sources/KeelRL/ConfigSchema.swift` by
`bash scripts/gen-config-doc.sh`; a test checks that this page lists every key with its
default). Set them in a YAML file (`--config run.yaml`, nested: `train: {lr: 1e-4}`) or with
`--set train.lr=1e-4`. An unknown key is an error naming the nearest valid keys and every key of
its section (or the sections, when the section is unknown). Plugin
parameters go under `objective.params.NAME`, `reward.params.NAME`, `baseline.params.NAME` and
are checked against the plugin's declared parameters (`keel plugins inspect NAME`).

| key | type | default | meaning |
|---|---|---|---|
HEAD
"$keel" train --help-config | python3 -c '
import sys, re
for line in sys.stdin:
    m = re.match(r"^(\S+) \((.*?), default (.*?)\): (.*)$", line.rstrip("\n"))
    if m:
        print("| `%s` | %s | `%s` | %s |" % (m.group(1), m.group(2), m.group(3), m.group(4).replace("|", "\\|")))
'
cat <<'TAIL'

The `test` preset (`--preset test`) changes these defaults: tiny model, `rollout.prompts` 8,
`rollout.group_size` 4, `task.eval_size` 64, `eval.samples` 2, `eval.every` 5, `steps` 10,
`coldstart.max_steps` 120, `coldstart.batch` 32, `coldstart.target_accuracy` 0.2,
`checkpoint.every` 5, `train.lr` 1e-3.

## Exact mode

`sampler.precision: exact` makes the sampler's recorded log-probs equal, bit for bit, the
training engine's log-probs of the same tokens with the same weights: `mismatch_kl` is exactly
0.0 at every step, the train–infer gap of the diagnostics is exactly 0, and MiniRL's
train–infer IS weight is exactly 1. Use it as the control arm that isolates policy staleness
(`keel experiment onpolicy` has such an arm, `minirl-exact-sampler`). What it guarantees and
costs: docs/performance.md.

## In the code

The schema above (`ConfigSchema.keys`, `ConfigSchema.bounds`) is checked when a configuration
resolves (unknown keys, types, choices, bounds, products of keys), then decoded once into the
typed `RunConfig` (Sources/KeelRL/RunConfig.swift: sections `task`, `model`, `coldStart`,
`sampler`, `rollout`, `train`, … with enums `RoutingReplay`, `OnNaN`, `LRSchedule`,
`SamplerPrecision`). Only that file reads a key by its name; a test holds every schema key to
being read there and to changing the typed configuration when set. Cross-key rules that need
the model or the ranks (`train.minibatches` divides `rollout.prompts`, routing replay needs an
MoE policy, a rank per prompt group) are checked when the trainer starts.

## Log level

Messages go through swift-log: `KEEL_LOG_LEVEL=debug keel train …` also shows plugins' DEBUG
lines (hidden by default); `warning` or `error` keeps only those. The level is an environment
variable, not a config key, so it never changes a run's identity in `keel compare`.
TAIL
} > docs/config.md
