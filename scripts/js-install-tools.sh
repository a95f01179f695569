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
    # --locked first (the CLI's own lock); where the registry lacks one of its pinned
    # versions (seen here: webpki-roots 1.0.11), a normal resolution of the same CLI version.
    cargo install wasm-bindgen-cli --version "=$want" --locked \
        || cargo install wasm-bindgen-cli --version "=$want"
fi
if ! command -v node >/dev/null; then
    echo "installing nodejs"
    SUDO=(); [[ $(id -u) -ne 0 ]] && SUDO=(sudo)
    "${SUDO[@]}" apt-get update -q && "${SUDO[@]}" apt-get install -y -q nodejs
fi
# Idempotent; nothing to do when rustup has the wasm32 targets.
bash scripts/install-wasm-toolchain.sh
