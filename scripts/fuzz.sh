#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz / libFuzzer) of the ABI boundary and manifest parsing.
#
#   scripts/fuzz.sh [TARGET|all] [SECONDS]   run or resume: each target, each compiler,
#                                            SECONDS each (default 300), in the foreground
#   scripts/fuzz.sh --long [SECONDS]         start a long session in the background: all
#                                            targets x both compilers in turn, SECONDS per
#                                            slice (default 600), until stopped
#   scripts/fuzz.sh --stats                  totals per target and compiler so far
#   scripts/fuzz.sh --stop-and-save          stop the long session, minimize its corpus
#                                            into tests/fuzz/corpus, print the totals
#   scripts/fuzz.sh --save                   minimize into tests/fuzz/corpus (no stop)
#
# Targets: legacy_imports canonical_imports lift manifest (tests/fuzz/fuzz_targets).
# The working corpus, findings and logs live in $FUZZ_RUN_DIR (default tests/fuzz/run,
# git-ignored); the repository keeps the minimized corpus (tests/fuzz/corpus/<target>),
# which every run starts from, so a run resumes where the last saved one stopped.
# Findings: $FUZZ_RUN_DIR/artifacts/<target>/; replay one with
#   tests/fuzz/target/x86_64-unknown-linux-gnu/release/<target> <file>
# and add it to tests/fuzz/regressions/<target>/ (tests/fuzz_regressions.rs replays it).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FUZZ="$ROOT/tests/fuzz"
RUN="${FUZZ_RUN_DIR:-$FUZZ/run}"
TARGETS=(legacy_imports canonical_imports lift manifest)
COMPILERS=(singlepass cranelift)
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"
BUILT="$FUZZ/target/$TRIPLE/release"
NICE="${FUZZ_NICE:-19}"

die() { echo "fuzz.sh: $*" >&2; exit 1; }

ensure_tools() {
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "installing cargo-fuzz" >&2
        cargo install cargo-fuzz --locked
    fi
    command -v c++ >/dev/null 2>&1 || die "libFuzzer needs a C++ compiler (g++ or clang++)"
}

# Stable rustc: no sanitizer (Rust is memory-safe; the fuzzers look for panics, wrong
# answers and runaway memory). 16 codegen units: the build of wasmer and both compilers
# takes minutes instead of an hour, for a slightly slower fuzz loop.
build() {
    ensure_tools
    (cd "$ROOT" && nice -n "$NICE" cargo fuzz build --fuzz-dir tests/fuzz -s none \
        --codegen-units 16 "$@")
}

# Copy the binaries the session runs (later rebuilds do not disturb a running session;
# `install_bins` again to switch it to a new build at its next slice).
install_bins() {
    mkdir -p "$RUN/bin"
    for t in "${TARGETS[@]}"; do
        cp "$BUILT/$t" "$RUN/bin/$t.new" && mv -f "$RUN/bin/$t.new" "$RUN/bin/$t"
    done
}

# One slice: target $1 on compiler $2 for $3 seconds; appends a line to stats.tsv.
slice() {
    local t="$1" c="$2" secs="$3"
    mkdir -p "$RUN/corpus/$t" "$RUN/artifacts/$t" "$RUN/logs"
    local log="$RUN/logs/$t-$c.log"
    local start end rc=0
    start=$(date +%s)
    echo "=== $(date -u +%FT%TZ) $t on $c for ${secs}s" >>"$log"
    # The harness installs plugins and writes storage (fsync) in a temp dir. On a disk busy
    # with other writes an fsync can stall for many seconds, which libFuzzer reports as a
    # slow unit or a timeout (seen 2026-12-04: 74-90 s "timeouts" on inputs that replay in
    # 26-139 ms): the temp dir lives in memory (/dev/shm) when it can, one per slice.
    local tmp
    tmp="$(mktemp -d "${FUZZ_TMPDIR:-/dev/shm}/tark-fuzz-slice.XXXXXX" 2>/dev/null || mktemp -d)"
    TMPDIR="$tmp" TARK_FUZZ_COMPILER="$c" nice -n "$NICE" "$RUN/bin/$t" \
        -max_total_time="$secs" -max_len=4096 -timeout=60 -rss_limit_mb=3072 \
        -print_final_stats=1 -artifact_prefix="$RUN/artifacts/$t/" \
        "$RUN/corpus/$t" "$FUZZ/corpus/$t" >>"$log" 2>&1 || rc=$?
    end=$(date +%s)
    rm -rf "$tmp"
    # The last slice's section of the log: final stats and the last coverage line.
    local section
    section="$(awk -v m="=== " 'index($0,m)==1{buf=""} {buf=buf $0 "\n"} END{printf "%s", buf}' "$log")"
    local execs eps cov ft corp new
    # A slice stopped on its first input has no coverage lines: `|| true`, or set -e and
    # pipefail end the whole session (as on 2026-12-04).
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' <<<"$section" | tail -1 || true)
    eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' <<<"$section" | tail -1 || true)
    new=$(sed -n 's/^stat::new_units_added: *//p' <<<"$section" | tail -1 || true)
    cov=$( (grep -oE 'cov: [0-9]+' <<<"$section" || true) | tail -1 | cut -d' ' -f2)
    ft=$( (grep -oE 'ft: [0-9]+' <<<"$section" || true) | tail -1 | cut -d' ' -f2)
    corp=$( (grep -oE 'corp: [0-9]+' <<<"$section" || true) | tail -1 | cut -d' ' -f2)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$c" \
        "$((end - start))" "${execs:-0}" "${eps:-0}" "${cov:-0}" "${ft:-0}" "${corp:-0}" \
        "${new:-0}" "$rc" >>"$RUN/stats.tsv"
    if [ "$rc" != 0 ]; then
        echo "$(date -u +%FT%TZ) $t on $c exited $rc: see $log and $RUN/artifacts/$t/" \
            | tee -a "$RUN/findings.txt" >&2
    fi
}

stats() {
    [ -f "$RUN/stats.tsv" ] || die "no session in $RUN"
    awk -F'\t' '
        { k=$2" "$3; s[k]+=$4; e[k]+=$5; cov[k]=$7; ft[k]=$8; corp[k]=$9; n[k]++; if ($11!=0) f[k]++ }
        END {
            printf "%-18s %-10s %8s %12s %8s %6s %7s %6s %6s %8s\n", "target", "compiler", "seconds", "execs", "exec/s", "cov", "ft", "corp", "slices", "crashes"
            for (k in s) { split(k, a, " ");
                printf "%-18s %-10s %8d %12d %8.0f %6s %7s %6s %6d %8d\n", a[1], a[2], s[k], e[k], (s[k] ? e[k]/s[k] : 0), cov[k], ft[k], corp[k], n[k], f[k] }
        }' "$RUN/stats.tsv" | (read -r h; echo "$h"; sort)
    if [ -s "$RUN/findings.txt" ]; then echo "findings:"; cat "$RUN/findings.txt"; fi
}

# Minimize the session's corpus plus the repository's into the repository (both
# compilers per input: TARK_FUZZ_COMPILER unset).
save() {
    for t in "${TARGETS[@]}"; do
        local bin="$RUN/bin/$t"
        [ -x "$bin" ] || bin="$BUILT/$t"
        [ -x "$bin" ] || die "no binary for $t: run scripts/fuzz.sh first"
        local out="$RUN/merged/$t"
        rm -rf "$out" && mkdir -p "$out" "$RUN/corpus/$t"
        nice -n "$NICE" "$bin" -merge=1 -max_len=4096 -timeout=60 -rss_limit_mb=3072 \
            "$out" "$FUZZ/corpus/$t" "$RUN/corpus/$t" >"$RUN/logs/merge-$t.log" 2>&1 \
            || die "merge of $t failed: see $RUN/logs/merge-$t.log"
        rm -rf "$FUZZ/corpus/$t" && mkdir -p "$FUZZ/corpus/$t" && cp "$out"/* "$FUZZ/corpus/$t/"
        echo "$t: $(ls "$FUZZ/corpus/$t" | wc -l) inputs, $(du -sh "$FUZZ/corpus/$t" | cut -f1)"
    done
    echo "corpus total: $(du -sh "$FUZZ/corpus" | cut -f1)"
}

long_loop() {
    local secs="$1"
    while true; do
        for t in "${TARGETS[@]}"; do
            for c in "${COMPILERS[@]}"; do
                slice "$t" "$c" "$secs"
            done
        done
    done
}

case "${1:-all}" in
    --long)
        secs="${2:-600}"
        mkdir -p "$RUN/logs"
        if [ -f "$RUN/session.pid" ] && kill -0 "$(cat "$RUN/session.pid")" 2>/dev/null; then
            die "a session is already running (pid $(cat "$RUN/session.pid"))"
        fi
        build
        install_bins
        # Its own process group, so --stop-and-save ends exactly it.
        setsid bash "$0" --loop "$secs" >>"$RUN/logs/session.log" 2>&1 </dev/null &
        echo $! >"$RUN/session.pid"
        echo "session started (pid $!), ${secs}s slices, logs in $RUN"
        ;;
    --loop)
        long_loop "${2:-600}"
        ;;
    --stats)
        stats
        ;;
    --stop-and-save)
        if [ -f "$RUN/session.pid" ]; then
            pid="$(cat "$RUN/session.pid")"
            kill -- "-$pid" 2>/dev/null || true
            rm -f "$RUN/session.pid"
            echo "session $pid stopped"
        fi
        save
        stats
        ;;
    --save)
        save
        ;;
    -h | --help)
        sed -n '2,22p' "$0"
        ;;
    *)
        target="${1:-all}"
        secs="${2:-300}"
        if [ "$target" = all ]; then sel=("${TARGETS[@]}"); else sel=("$target"); fi
        for t in "${sel[@]}"; do
            [ -f "$FUZZ/fuzz_targets/$t.rs" ] || die "no target $t (${TARGETS[*]})"
        done
        build
        install_bins
        for t in "${sel[@]}"; do
            for c in "${COMPILERS[@]}"; do
                slice "$t" "$c" "$secs"
            done
        done
        stats
        ;;
esac
