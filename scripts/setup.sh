#!/usr/bin/env bash
# scripts/setup.sh — install the system packages Keel needs (idempotent).
#   bash scripts/setup.sh
# libffi-dev: foreign rewards; libopenblas-dev: the BLAS behind matrix products;
# pkg-config: SwiftPM finds them through it; libopenmpi-dev openmpi-bin: data-parallel
# training over MPI (`mpirun -np K keel train`, docs/scaling.md).
set -euo pipefail
need=()
for pkg in libffi-dev libopenblas-dev pkg-config libopenmpi-dev openmpi-bin; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends "${need[@]}"
fi
