#!/usr/bin/env bash
# Installs what the JS backend's build and test need, when missing (idempotent):
# wasm-bindgen-cli at exactly the wasm-bindgen version of Cargo.lock (the CLI refuses a
# module made by another version), and the wasm32 std sources (scripts/install-wasm-toolchain.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)
if [ -z "$want" ]; then echo "wasm-bindgen is not in Cargo.lock" >&2; exit 1; fi
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
    echo "installing wasm-bindgen-cli $want (have: ${have:-none})"
    cargo install wasm-bindgen-cli --version "=$want" --locked || cargo install wasm-bindgen-cli --version "=$want"
fi
if ! command -v node >/dev/null; then
    echo "installing nodejs" >&2
    sudo apt-get install -y nodejs
fi
if [ ! -d /usr/lib/rustlib/src/rust/library ]; then
    bash scripts/install-wasm-toolchain.sh
fi
