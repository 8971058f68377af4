#!/usr/bin/env bash
# scripts/test.sh — install what is missing, then run the whole test suite in release mode
# (one release build serves the tests and the keel runs).
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
swift build -c release --build-tests
swift test -c release --skip-build
