#!/usr/bin/env bash
# Builds the JS backend: the host's core for wasm32-unknown-unknown with wasmer's `js`
# feature (Debian's rustc + rust-web-src with -Z build-std when rustup has no wasm32
# target), then wasm-bindgen's Node bindings. Output: target/js/pkg/tark_wasmer.js (+ .wasm).
# Its own target dir (target/js) keeps native builds warm.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/js-install-tools.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR_JS:-$PWD/target/js}"
profile_dir=debug
if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
    cargo rustc --lib --crate-type cdylib --target wasm32-unknown-unknown \
        --no-default-features --features js "$@"
else
    RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 RUSTFLAGS="-C linker=wasm-ld" \
        /usr/bin/cargo rustc -Z build-std=std,panic_abort --lib --crate-type cdylib \
        --target wasm32-unknown-unknown --no-default-features --features js "$@"
fi
case " $* " in *" --release "*) profile_dir=release ;; esac
wasm-bindgen --target nodejs --out-dir "$CARGO_TARGET_DIR/pkg" \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/$profile_dir/tark_wasmer.wasm"
echo "js-build: $CARGO_TARGET_DIR/pkg/tark_wasmer.js"
