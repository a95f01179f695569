#!/usr/bin/env bash
# The test command: installs the wasm toolchain if missing, builds the example plugins
# from source, and runs the whole test suite (both compilers).
#
# Usage: scripts/test.sh [cargo test args...]
set -euo pipefail
# A relative CARGO_TARGET_DIR means relative to where the script was started.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
bash scripts/install-wasm-toolchain.sh
bash scripts/build-plugins.sh
cargo test --all-targets "$@"
