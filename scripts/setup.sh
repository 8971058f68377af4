#!/usr/bin/env bash
# scripts/setup.sh — install the system packages Keel needs (idempotent).
#   bash scripts/setup.sh
# libffi-dev: foreign rewards; libopenblas-dev: the BLAS behind matrix products;
# pkg-config: SwiftPM finds both through it.
set -euo pipefail
need=()
for pkg in libffi-dev libopenblas-dev pkg-config; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi
