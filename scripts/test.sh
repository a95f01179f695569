#!/usr/bin/env bash
# The test command: installs the wasm toolchain if missing, builds the example plugins
# from source, and runs the whole test suite (both compilers).
#
# Usage: scripts/test.sh [cargo test args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
bash scripts/install-wasm-toolchain.sh
bash scripts/build-plugins.sh
cargo test --all-targets "$@"
