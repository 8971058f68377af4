#!/usr/bin/env bash
# scripts/run.sh — the main job on the built-in defaults: install what is missing, build keel
# in release mode, validate every built-in plugin and every template, then `keel train` on the
# defaults (cold start made and cached on first use, then MiniRL on 2-digit addition).
#   bash scripts/run.sh            (run directory: runs/default-<time>)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release
keel=.build/release/keel
$keel --version
$keel plugins list
for name in $($keel plugins list | awk 'NR > 1 && /^[a-z]/ {print $1}'); do
  $keel plugins check "$name"
done
# Every template, built outside SwiftPM exactly as a plugin author would.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for t in templates/*/*/; do
  lang=$(basename "$(dirname "$t")"); kind=$(basename "$t")
  if [ "$lang" = rust ] && ! command -v cargo >/dev/null; then echo "cargo not found: the Rust template is not checked"; continue; fi
  name="template-$lang-$kind"
  (cd "$work" && "$OLDPWD/$keel" new-plugin --kind "$kind" --lang "$lang" "$name" >/dev/null)
  make -s -C "$work/$name" >/dev/null
  $keel plugins check "$work/$name/lib$name.so"
done

# The main job: keel train on the built-in defaults.
$keel train --out "runs/default-$(date +%s)" --quiet
