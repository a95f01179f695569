#!/usr/bin/env bash
# The JS backend's test: installs what it needs (wasm-bindgen-cli at the lock's version,
# the wasm32 std sources), builds the wasm32 host (scripts/js-build.sh, target/js) and runs
# tests/js/run.mjs in Node through tests/js_backend.rs. Opt-in (feature js-backend-test),
# since a cold first run takes tens of minutes on 2 cores; warm, about 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/js-install-tools.sh
cargo test --features js-backend-test --test js_backend "$@"
