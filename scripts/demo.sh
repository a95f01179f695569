#!/usr/bin/env bash
# The main job: build tark-wasmer and the bundled example plugins from source, install
# them into a temporary plugins directory, and call them under both compilers.
#
# Usage: scripts/demo.sh            (works from any directory; needs no network)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

bash scripts/install-wasm-toolchain.sh
bash scripts/build-plugins.sh
cargo build --release --quiet
BIN="$ROOT/target/release/tark-wasmer"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tark-wasmer-demo.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
export TARK_PLUGINS_DIR="$WORK/plugins"
export NO_COLOR=1

run() {
    echo "\$ tark-wasmer $*"
    "$BIN" "$@"
    echo
}

for p in legacy-provider legacy-channel legacy-auth; do
    run plugin add "tests/plugins/$p"
done
run plugin list
run plugin info legacy-provider

for compiler in singlepass cranelift; do
    echo "=================== compiler: $compiler ==================="
    run --compiler "$compiler" call legacy-provider info
    run --compiler "$compiler" call legacy-provider models
    run --compiler "$compiler" call legacy-provider auth-status
    run --compiler "$compiler" call legacy-provider auth-init '{"api_key":"demo-key"}'
    run --compiler "$compiler" call legacy-provider auth-status
    run --compiler "$compiler" call legacy-provider chat '[{"role":"user","content":"hello from the demo"}]' echo
    run --compiler "$compiler" call legacy-provider provider_auth_credentials
    run --compiler "$compiler" call legacy-provider auth-logout
    run --compiler "$compiler" call legacy-channel info
    run --compiler "$compiler" call legacy-channel handle-webhook \
        '{"method":"POST","path":"/channels/legacy-channel/webhook","query":null,"headers":[],"body":"{\"conversation_id\":\"c1\",\"user_id\":\"u1\",\"text\":\"hi\"}"}'
    run --compiler "$compiler" call legacy-channel handle-gateway-event \
        '{"t":"MESSAGE_CREATE","d":{"channel_id":"c2","author_id":"u2","content":"from the gateway"}}'
    run --compiler "$compiler" call legacy-auth display-name
    run --compiler "$compiler" call legacy-auth init_with_credentials '{"token":"demo-token"}'
    run --compiler "$compiler" call legacy-auth status
    run --compiler "$compiler" call legacy-auth get-token
    run --compiler "$compiler" call legacy-auth logout
done

echo "Denied capabilities and plugin failures are errors (exit 1):"
if "$BIN" call legacy-provider chat '[{"role":"user","content":"x"}]' panic; then
    echo "expected a failure" >&2
    exit 1
fi
echo
echo "demo finished: every call succeeded under singlepass and cranelift"
