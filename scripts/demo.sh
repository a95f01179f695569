#!/usr/bin/env bash
# The main job: what this host does, in about a minute (warm). Builds tark-wasmer and the
# example plugins from source, installs legacy and SDK (canonical-ABI) plugins into a
# temporary plugins directory and shows:
#   1. legacy plugins (tark's host-function ABI) answering, under both compilers;
#   2. SDK plugins (wit-bindgen, canonical ABI): a tool and an auth plugin;
#   3. a chat, streamed, against a local OpenAI-compatible server (python3, 127.0.0.1);
#   4. a blocked capability: an HTTP call to a host the plugin did not declare;
#   5. a runaway plugin stopped by its CPU budget;
#   6. a compiler comparison of one plugin function (`tark-wasmer bench`).
#
# Usage: scripts/demo.sh            (any directory; no network; honours CARGO_TARGET_DIR)
# Needs: cargo, python3; the wasm toolchain is installed by scripts/install-wasm-toolchain.sh.
# DEMO_SKIP_BUILD=1 uses an existing binary ($CARGO_TARGET_DIR/release/tark-wasmer, or
# DEMO_BIN); tests/cli_output.rs runs the script so.
set -euo pipefail

# A relative CARGO_TARGET_DIR means relative to where the script was started.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

if [[ -z ${DEMO_SKIP_BUILD:-} ]]; then
    bash scripts/install-wasm-toolchain.sh
    bash scripts/build-plugins.sh
    cargo build --release --quiet
fi
BIN="${DEMO_BIN:-$TARGET_DIR/release/tark-wasmer}"
[[ -x $BIN ]] || { echo "demo: no binary at $BIN (build with cargo build --release)" >&2; exit 1; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/tark-wasmer-demo.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then kill "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
export TARK_PLUGINS_DIR="$WORK/plugins"
export TARK_WASMER_CACHE_DIR="$WORK/cache"
export TARK_WASMER_CONFIG="$WORK/config.toml"
: >"$TARK_WASMER_CONFIG"
export NO_COLOR=1

section() { printf '\n## %s\n\n' "$*"; }
run() {
    echo "\$ tark-wasmer $*"
    "$BIN" "$@"
    echo
}
# A command that must fail (exit non-zero); its message is shown.
fails() {
    echo "\$ tark-wasmer $*"
    if "$BIN" "$@"; then
        echo "demo: expected a failure" >&2
        exit 1
    fi
    echo
}

section "Install: legacy and SDK plugins"
for p in legacy-provider legacy-channel legacy-auth tool-kit sdk-auth openai-provider; do
    "$BIN" plugin add "tests/plugins/$p" --yes >/dev/null
    echo "installed $p"
done
echo
run plugin list

section "1. Legacy plugins (tark's host-function ABI), both compilers"
for compiler in singlepass cranelift; do
    run --compiler "$compiler" call legacy-provider info
    run --compiler "$compiler" call legacy-provider chat '[{"role":"user","content":"hello from the demo"}]' echo
done
run call legacy-channel handle-gateway-event \
    '{"t":"MESSAGE_CREATE","d":{"channel_id":"c2","author_id":"u2","content":"from the gateway"}}'
run call legacy-auth display-name

section "2. SDK plugins (wit-bindgen, canonical ABI)"
run call tool-kit get-tools
run call tool-kit execute word_count '"{\"text\":\"one two three four\"}"'
run call sdk-auth display-name
run call sdk-auth status

section "3. A streamed chat against a local OpenAI-compatible server"
cat >"$WORK/server.py" <<'PY'
import http.server, json, sys

class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_GET(self):
        body = json.dumps({"data": [{"id": "demo-model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        words = ("Hello", " from", " a", " local", " stream", "!")
        if req.get("stream"):
            chunks = [{"choices": [{"delta": {"content": w}}]} for w in words]
            chunks.append({"choices": [{"delta": {}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 3, "completion_tokens": len(words)}})
            body = "".join("data: %s\n\n" % json.dumps(c) for c in chunks) + "data: [DONE]\n\n"
            ctype = "text/event-stream"
        else:
            body = json.dumps({"choices": [{"message": {"content": "".join(words)},
                                            "finish_reason": "stop"}],
                               "usage": {"prompt_tokens": 3, "completion_tokens": len(words)}})
            ctype = "application/json"
        data = body.encode()
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

srv = http.server.HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
PY
python3 "$WORK/server.py" >"$WORK/port" &
SERVER_PID=$!
for _ in $(seq 50); do [[ -s $WORK/port ]] && break; sleep 0.1; done
PORT="$(head -n1 "$WORK/port")"
[[ -n $PORT ]] || { echo "demo: the local server did not start" >&2; exit 1; }
echo "(local server on 127.0.0.1:$PORT)"
run call openai-provider auth-init "{\"api_key\":\"demo-key\",\"base_url\":\"http://127.0.0.1:$PORT\"}"
run call openai-provider models
MSGS='[{"role":"user","content":"say hello"}]'
# One chunk per line as the server streams them (chat-stream-start, then polls).
run call --stream openai-provider chat "$MSGS" demo-model

section "4. A blocked capability: tool-kit may only reach 127.0.0.1"
echo "\$ TOOL_KIT_API=http://example.com tark-wasmer call tool-kit execute fetch_status '{\"path\":\"/\"}'"
result="$(TOOL_KIT_API=http://example.com "$BIN" call tool-kit execute fetch_status '"{\"path\":\"/\"}"' 2>&1 || true)"
echo "$result"
grep -qi "not allowed\|denied\|not in" <<<"$result" || { echo "demo: expected a denial" >&2; exit 1; }
echo

section "5. A runaway plugin (an endless loop) stopped by its CPU budget"
start=$(date +%s.%N)
fails --cpu-seconds 1 call legacy-provider chat '[{"role":"user","content":"spin"}]' loop
echo "(stopped after $(python3 -c "print(round($(date +%s.%N) - $start, 1))") s; the default budget is 5 s of guest CPU)"

section "6. Which compiler for this plugin? (tark-wasmer bench)"
run bench tool-kit execute word_count '"{\"text\":\"one two three four\"}"' --time "${DEMO_BENCH_TIME:-3}"

echo "demo finished: legacy and SDK plugins, a streamed chat, a blocked capability, a stopped runaway, a compiler comparison"
