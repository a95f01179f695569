#!/usr/bin/env bash
# Runs the benchmark suite (benches/compile.rs, calls.rs, compute.rs) with the wasmtime
# peers (cargo feature bench-wasmtime) and prints the results table (scripts/bench-report.py)
# built from this one run, so every ratio compares figures measured together.
#
# Usage: scripts/bench.sh [--quick] [--no-wasmtime] [--update-readme] [criterion filter...]
#   --quick          short measurements (about a third of the full run's time)
#   --no-wasmtime    without the wasmtime peers (no wasmtime build needed)
#   --update-readme  also replace the table between the bench-results markers in README.md
#   filter           passed to criterion (e.g. `compile/` or `marshal/echo-string`); results of
#                    earlier runs are then kept, so the table mixes runs
#
# Results: $CARGO_TARGET_DIR/bench-results/{criterion/,results.md} (default target dir:
# ./target). The full run takes about 15 minutes on 2 cores (plus the first build of wasmtime).
set -euo pipefail

# A relative CARGO_TARGET_DIR means relative to where the script was started.
if [[ -n ${CARGO_TARGET_DIR:-} && $CARGO_TARGET_DIR != /* ]]; then
    export CARGO_TARGET_DIR="$PWD/$CARGO_TARGET_DIR"
fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

quick=0
update_readme=0
features=(--features bench-wasmtime)
filter=()
for a in "$@"; do
    case "$a" in
    --quick) quick=1 ;;
    --no-wasmtime) features=() ;;
    --update-readme) update_readme=1 ;;
    -h | --help)
        sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "bench.sh: unknown option $a (see --help)" >&2
        exit 2
        ;;
    *) filter+=("$a") ;;
    esac
done

target="${CARGO_TARGET_DIR:-$ROOT/target}"
results="$target/bench-results"
export CRITERION_HOME="$results/criterion"
if [[ ${#filter[@]} -eq 0 ]]; then
    # One run, one table: no figures left over from earlier runs.
    rm -rf "$CRITERION_HOME"
fi
mkdir -p "$CRITERION_HOME"

bash scripts/build-plugins.sh >/dev/null
if [[ $quick -eq 1 ]]; then
    export TARK_BENCH_QUICK=1
fi
started=$(date +%s)
cargo bench "${features[@]}" --bench compile --bench calls --bench compute -- "${filter[@]}"
echo "bench.sh: benches took $(($(date +%s) - started)) s" >&2

report_args=("$CRITERION_HOME")
[[ $quick -eq 1 ]] && report_args+=(--quick)
python3 scripts/bench-report.py "${report_args[@]}" >"$results/results.md"
cat "$results/results.md"
echo >&2
echo "bench.sh: table written to $results/results.md" >&2

if [[ $update_readme -eq 1 ]]; then
    python3 - "$ROOT/README.md" "$results/results.md" <<'EOF'
import sys
readme, table = sys.argv[1], open(sys.argv[2]).read().rstrip("\n")
text = open(readme).read()
start, end = "<!-- bench-results:start -->", "<!-- bench-results:end -->"
if start not in text or end not in text:
    sys.exit("bench.sh: README.md has no bench-results markers")
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
open(readme, "w").write(head + start + "\n" + table + "\n" + end + tail)
print("bench.sh: README.md table refreshed", file=sys.stderr)
EOF
fi
