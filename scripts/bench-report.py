#!/usr/bin/env python3
"""Turn one criterion run (benches/*.rs, scripts/bench.sh) into the Markdown results table.

Usage: bench-report.py CRITERION_DIR [--quick]

Reads every <group>/<function>/new/{benchmark,estimates}.json under CRITERION_DIR (one run:
bench.sh empties the directory first), uses the median time of each benchmark, and prints
absolute figures, the ratios the issue asks for (singlepass/cranelift, ours/wasmtime 27,
ours/wasmtime 48, wasm/native) and whether each target is met.
"""

import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone

MODULES = ["conformance", "legacy-provider", "chat-channel", "bench-hook"]


def load(root):
    res = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            b = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            e = json.load(f)
        res[(b["group_id"], b["function_id"])] = {
            "ns": e["median"]["point_estimate"],
            "throughput": b.get("throughput"),
        }
    return res


R = {}


def ns(group, fn):
    r = R.get((group, fn))
    return r["ns"] if r else None


def fmt_time(v):
    if v is None:
        return "-"
    if v < 1e3:
        return f"{v:.0f} ns"
    if v < 1e6:
        return f"{v / 1e3:.1f} µs"
    if v < 1e9:
        return f"{v / 1e6:.2f} ms"
    return f"{v / 1e9:.2f} s"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def mbps(group, fn, nbytes):
    v = ns(group, fn)
    if v is None:
        return None
    return nbytes / v * 1e3  # bytes/ns -> MB/s (1e9/1e6)


def first(group, fns):
    """The first of `fns` measured in `group` (labels depend on default settings)."""
    for f in fns:
        if ns(group, f) is not None:
            return f
    return None


def size_of(group):
    for (g, _f), r in R.items():
        if g == group and r["throughput"] and "Bytes" in r["throughput"]:
            return r["throughput"]["Bytes"]
    return None


def ours_labels(group):
    """Our labels in a host-level group: compiler names with or without +metering."""
    out = []
    for c in ["singlepass", "cranelift"]:
        f = first(group, [c, c + "+metering"])
        if f:
            out.append(f)
    return out


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(r) + " |")
    return "\n".join(lines)


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = os.cpu_count()
    try:
        rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "?"
    return f"{cpu}, {n} vCPU, {platform.system()} {platform.release()}; {rustc}"


def verdict(ok, text):
    if ok is None:
        return "not measured"
    word = "**met**" if ok else "**missed**"
    return f"{word}: {text}" if text else word


def main():
    global R
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    R = load(sys.argv[1])
    quick = "--quick" in sys.argv
    if not R:
        sys.exit(f"no criterion results under {sys.argv[1]}")
    out = []
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    out.append(
        f"Measured {when} on {machine()}, one run of `scripts/bench.sh{' --quick' if quick else ''}` "
        "(criterion medians; every ratio below comes from this same run). wasmtime48 is 48.0.0, the newest "
        "wasmtime this toolchain (rustc 1.95) and wasmer's pinned cranelift 0.135.0 allow; "
        "`+metering` is our operator metering, `+fuel` wasmtime's."
    )

    # ---- compile ----
    rows = []
    for m in MODULES:
        g = f"compile/{m}"
        size = size_of(g)
        if size is None:
            continue
        sp, spm = ns(g, "singlepass"), ns(g, "singlepass+metering")
        cl, clm = ns(g, "cranelift"), ns(g, "cranelift+metering")
        w27, w48 = ns(g, "wasmtime27"), ns(g, "wasmtime48")

        def t(v):
            return "-" if v is None else f"{fmt_time(v)} ({size / v * 1e3:.0f} MB/s)"

        rows.append([
            m, f"{size / 1000:.0f} KB", t(sp), t(spm), t(cl), t(clm), t(w27), t(w48),
            fmt_ratio(cl, sp), fmt_ratio(w27, sp), fmt_ratio(w48, sp),
        ])
    out.append("\n### Compile (time per module, MB/s of wasm)\n")
    out.append(table(
        ["module", "size", "singlepass", "singlepass+metering", "cranelift", "cranelift+metering",
         "wasmtime27", "wasmtime48", "cranelift / singlepass", "wt27 / singlepass", "wt48 / singlepass"],
        rows))

    # ---- cache load / instantiate / warm start ----
    def host_rows(prefix, modules):
        rows = []
        for m in modules:
            g = f"{prefix}/{m}"
            labels = ours_labels(g)
            if not labels:
                continue
            vals = [ns(g, l) for l in labels]
            w27, w48 = ns(g, "wasmtime27"), ns(g, "wasmtime48")
            row = [m] + [f"{l}: {fmt_time(v)}" for l, v in zip(labels, vals)]
            row += [fmt_time(w27), fmt_time(w48)]
            row += [fmt_ratio(vals[0], w27), fmt_ratio(vals[0], w48)]
            rows.append(row)
        return rows

    hdr = ["module", "ours (singlepass)", "ours (cranelift)", "wasmtime27", "wasmtime48",
           "singlepass / wt27", "singlepass / wt48"]
    out.append("\n### Load a cached artifact from disk\n")
    rows = host_rows("cache-load", MODULES)
    for r in rows:
        g = f"cache-load/{r[0]}"
        r.append(" / ".join(fmt_time(ns(g, l + "-deserialize-only")) for l in ours_labels(g)))
    out.append(table(hdr + ["`Module::deserialize` of in-memory bytes alone (sp / cl; noisy)"], rows))
    out.append("\n### Instantiate (fresh instance of a compiled module)\n")
    out.append(table(hdr, host_rows("instantiate", MODULES)))
    out.append("\n### Warm start of the 438 KB bench plugin (stat + read the wasm, its hash from the record of the unchanged file, cache load (digest vouched by its record) + instantiate + first call)\n")
    rows = host_rows("warm-start", ["bench-hook"])
    for r in rows:
        # wasmer's own part: deserializing the artifact bytes already in memory, plus
        # instantiating (both measured above in this run).
        fl = []
        for l in ours_labels("warm-start/bench-hook"):
            d = ns("cache-load/bench-hook", l + "-deserialize-only")
            fl.append(fmt_time(d) if d else "-")
        r.append(" / ".join(fl))
    out.append(table(hdr + ["floor: wasmer's `Module::deserialize` alone (sp / cl)"], rows))
    sha = ns("warm-start/bench-hook", "sha256-of-wasm")
    if sha:
        out.append(f"\nSHA-256 of the 438 KB wasm (paid only when the file changed): {fmt_time(sha)}.")

    # ---- calls ----
    rows = []
    for g, what in [
        ("call/legacy-trivial", "legacy S export returning a constant"),
        ("call/canonical-name", "canonical `name() -> string` + post-return"),
        ("call/canonical-name-typed-api", "same, typed API (`hook_name`, JSON mapping)"),
        ("call/canonical-echo-short-string", "canonical `echo-string` (12 bytes)"),
        ("call/canonical-on-event-noop", "canonical `on-event` (record in, variant out)"),
        ("call/canonical-on-event-typed-api", "same, typed API (`hook_on_event`)"),
        ("call/canonical-webhook-typed-api", "canonical `handle-webhook` (11 flat params), typed API"),
    ]:
        labels = ours_labels(g)
        if not labels:
            continue
        vals = [ns(g, l) for l in labels]
        floor = [ns(g, c + "-floor") for c in ["singlepass", "cranelift"]]
        w27, w48 = ns(g, "wasmtime27"), ns(g, "wasmtime48")
        best = min(v for v in vals if v is not None)
        over = " / ".join(fmt_ratio(v, f) for v, f in zip(vals, floor)) if any(floor) else "-"
        rows.append([what] + [fmt_time(v) for v in vals] + [
            " / ".join(fmt_time(f) for f in floor) if any(floor) else "-", over,
            fmt_time(w27), fmt_time(w48), fmt_ratio(best, w27), fmt_ratio(best, w48)])
    out.append("\n### Call latency (host -> guest, per call)\n")
    out.append(table(["call", "ours singlepass", "ours cranelift", "bare wasmer floor (sp / cl)",
                      "ours / floor (sp / cl)", "wasmtime27", "wasmtime48", "ours best / wt27",
                      "ours best / wt48"], rows))

    rows = []
    for g, what in [
        ("import-x1000/canonical-storage-get", "canonical `storage.get` hit"),
        ("import-x1000/legacy-storage-get", "legacy `tark:storage.get` hit"),
        ("import-x1000/canonical-log-debug", "canonical `log.debug` (level off)"),
        ("import-x1000/legacy-log-debug", "legacy `tark:log.debug` (level off)"),
        ("import-x1000/canonical-list-keys", "canonical `storage.list-keys` (1 key)"),
        ("import-x1000/canonical-env-get", "canonical `env.get` (granted, unset)"),
    ]:
        labels = ours_labels(g)
        if not labels:
            continue
        vals = [ns(g, l) for l in labels]
        w27, w48 = ns(g, "wasmtime27"), ns(g, "wasmtime48")
        per = lambda v: None if v is None else v / 1000
        best = min(v for v in vals if v is not None)
        rows.append([what] + [fmt_time(per(v)) for v in vals] +
                    [fmt_time(per(w27)), fmt_time(per(w48)), fmt_ratio(best, w27), fmt_ratio(best, w48)])
        fl = [ns(g, c + "-floor") for c in ["singlepass", "cranelift"]]
        rows[-1].append(" / ".join(fmt_time(per(f)) for f in fl) if any(fl) else "-")
        rows[-1].append(" / ".join(fmt_ratio(v, f) for v, f in zip(vals, fl)) if any(fl) else "-")
    out.append("\n### Guest -> host import round trip (per call, from loops of 1000)\n")
    out.append(table(["import", "ours singlepass", "ours cranelift", "wasmtime27 (stub host)",
                      "wasmtime48 (stub host)", "ours best / wt27", "ours best / wt48",
                      "bare wasmer floor: stub hit / no-op log (sp / cl)", "ours / floor (sp / cl)"],
                     rows))
    svc = ns("host/storage-get-service", "PluginContext::storage_get")
    if svc:
        out.append(f"\nThe storage service alone (`PluginContext::storage_get`, no wasm): {fmt_time(svc)} per hit.")

    # ---- marshalling ----
    rows = []
    for func in ["echo-string", "relay-string", "echo-bytes", "echo-strings", "relay-strings"]:
        for size in ["1KiB", "64KiB", "1MiB"]:
            g = f"marshal/{func}/{size}"
            labels = ours_labels(g)
            nb = size_of(g)
            if not labels or nb is None:
                continue

            def gbps(f):
                v = ns(g, f)
                return None if v is None else nb / v

            vals = [gbps(l) for l in labels]
            w27, w48 = gbps("wasmtime27"), gbps("wasmtime48")
            f = lambda v: "-" if v is None else f"{v:.2f} GB/s"
            best = max(v for v in vals if v is not None)
            rows.append([func, size] + [f(v) for v in vals] + [f(w27), f(w48), fmt_ratio(best, w27),
                                                                 fmt_ratio(best, w48)])
    out.append("\n### Marshalling throughput (payload bytes per second; echo = host -> guest -> host, relay = also guest -> host import -> guest)\n")
    out.append(table(["function", "payload", "ours singlepass", "ours cranelift", "wasmtime27",
                      "wasmtime48", "ours best / wt27 (speed)", "ours best / wt48 (speed)"], rows))

    # ---- compute ----
    rows = []
    comp = {}
    for bench in ["json-1MiB", "fnv1a-16MiB", "xxh64-16MiB"]:
        g = f"compute/{bench}"
        v = {f: ns(g, f) for f in ["native", "singlepass", "singlepass+metering", "cranelift",
                                    "cranelift+metering", "wasmtime27", "wasmtime27+fuel",
                                    "wasmtime48", "wasmtime48+fuel"]}
        if v["native"] is None:
            continue
        comp[bench] = v
        rows.append([bench] + [fmt_time(v[k]) for k in v] + [
            fmt_ratio(v["singlepass"], v["cranelift"]),
            fmt_ratio(v["cranelift"], v["wasmtime27"]), fmt_ratio(v["cranelift"], v["wasmtime48"]),
            fmt_ratio(v["cranelift"], v["native"]),
        ])
    out.append("\n### Compute inside the plugin (time per call)\n")
    out.append(table(["workload", "native", "singlepass", "singlepass+metering", "cranelift",
                      "cranelift+metering", "wasmtime27", "wasmtime27+fuel", "wasmtime48",
                      "wasmtime48+fuel", "singlepass / cranelift", "cranelift / wt27",
                      "cranelift / wt48", "cranelift / native"], rows))
    rows = []
    for bench, v in comp.items():
        o = lambda a, b: "-" if a is None or b is None else f"{(a / b - 1) * 100:+.0f} %"
        rows.append([bench, o(v["singlepass+metering"], v["singlepass"]),
                     o(v["cranelift+metering"], v["cranelift"]),
                     o(v["wasmtime27+fuel"], v["wasmtime27"]), o(v["wasmtime48+fuel"], v["wasmtime48"])])
    out.append("\nMetering overhead (metered / unmetered - 1):\n")
    out.append(table(["workload", "singlepass", "cranelift", "wasmtime27 fuel", "wasmtime48 fuel"], rows))

    # ---- targets ----
    t = []
    ws = [ns("warm-start/bench-hook", l) for l in ours_labels("warm-start/bench-hook")]
    if ws:
        worst = max(ws)
        t.append(["warm start < 1 ms (438 KB plugin)", fmt_time(min(ws)) + " - " + fmt_time(worst),
                  verdict(worst < 1e6, f"{worst / 1e6:.2f}x the target (worst compiler)")])
    g = "compile/bench-hook"
    sp = ns(g, first(g, ["singlepass+metering", "singlepass"]) or "")
    spu = ns(g, "singlepass")
    cl = ns(g, first(g, ["cranelift+metering", "cranelift"]) or "")
    clu = ns(g, "cranelift")
    if sp and cl:
        r = cl / sp
        ru = (clu / spu) if (clu and spu) else None
        t.append(["singlepass compile >= 5x faster than cranelift", f"{r:.1f}x metered, "
                  + (f"{ru:.1f}x unmetered" if ru else "-") + " (438 KB)",
                  verdict(r >= 5, f"{r / 5:.2f} of the target" if r < 5 else f"{r:.1f}x")])
    for peer in ["wasmtime27", "wasmtime48"]:
        w = ns(g, peer)
        if sp and w:
            r = w / sp
            t.append([f"singlepass compile >= 3x faster than {peer}", f"{r:.1f}x (438 KB, metered singlepass)",
                      verdict(r >= 3, f"{r:.1f}x" if r >= 3 else f"{r / 3:.2f} of the target")])
    g = "call/canonical-name"
    labels = ours_labels(g)
    if labels:
        best = min(ns(g, l) for l in labels)
        w27, w48 = ns(g, "wasmtime27"), ns(g, "wasmtime48")
        t.append(["canonical string-returning call < 150 ns", fmt_time(best),
                  verdict(best < 150, f"{best / 150:.1f}x the target")])
        for peer, w in [("wasmtime27", w27), ("wasmtime48", w48)]:
            if w:
                t.append([f"... within 1.5x of {peer}", f"{best / w:.1f}x",
                          verdict(best / w <= 1.5, f"{best / w / 1.5:.1f}x the allowance")])
    for g, what in [("import-x1000/canonical-storage-get", "canonical"),
                    ("import-x1000/legacy-storage-get", "legacy")]:
        labels = ours_labels(g)
        if labels:
            best = min(ns(g, l) for l in labels) / 1000
            t.append([f"storage.get round trip < 300 ns ({what})", fmt_time(best),
                      verdict(best < 300, f"{best / 300:.1f}x the target")])
    for func in ["echo-string", "relay-string"]:
        g = f"marshal/{func}/1MiB"
        labels = ours_labels(g)
        nb = size_of(g)
        if labels and nb:
            best = max(nb / ns(g, l) for l in labels)
            t.append([f"1 MiB string marshalling >= 2 GB/s ({func})", f"{best:.2f} GB/s",
                      verdict(best >= 2, f"{2 / best:.1f}x too slow" if best < 2 else "")])
    for bench, v in comp.items():
        for peer in ["wasmtime27", "wasmtime48"]:
            r = ratio(v["cranelift"], v[peer])
            if r:
                t.append([f"compute {bench}: cranelift within 1.25x of {peer}", f"{r:.2f}x",
                          verdict(r <= 1.25, f"{r / 1.25:.2f}x the allowance")])
        r = ratio(v["cranelift"], v["native"])
        if r:
            t.append([f"compute {bench}: cranelift within 2x of native", f"{r:.2f}x",
                      verdict(r <= 2, f"{r / 2:.2f}x the allowance")])
        for c in ["singlepass", "cranelift"]:
            r = ratio(v[c + "+metering"], v[c])
            if r:
                t.append([f"compute {bench}: {c} metering overhead < 25 %", f"{(r - 1) * 100:+.0f} %",
                          verdict(r < 1.25, f"{(r - 1) * 100:.0f} % vs 25 %")])
    out.append("\n### Issue-4 targets\n")
    out.append(table(["target", "measured", "verdict"], t))

    # ---- issue 10: the boundary at the floor ----
    t = []

    def pair(g, div=1):
        """(ours, floor) per compiler for group g, divided by div (loops of 1000)."""
        outp = []
        for c in ["singlepass", "cranelift"]:
            o = ns(g, first(g, [c, c + "+metering"]) or "")
            f = ns(g, c + "-floor")
            if o is not None:
                outp.append((c, o / div, None if f is None else f / div))
        return outp

    for c, o, f in pair("call/legacy-trivial"):
        if f:
            t.append([f"legacy trivial export <= 1.2x the floor ({c})", f"{fmt_time(o)} vs floor {fmt_time(f)} = {o / f:.2f}x",
                      verdict(o <= 1.2 * f, f"{o / f / 1.2:.2f}x the allowance; the floor itself is {fmt_time(f)}")])
        t.append([f"legacy trivial export < 60 ns ({c})", fmt_time(o),
                  verdict(o < 60, f"{o / 60:.1f}x; bare wasmer's floor is {fmt_time(f)}" if f else f"{o / 60:.1f}x")])
    for c, o, f in pair("call/canonical-name"):
        t.append([f"canonical `name()` + post-return < 150 ns ({c})", fmt_time(o),
                  verdict(o < 150, f"{o / 150:.1f}x; floor {fmt_time(f)}" if f else f"{o / 150:.1f}x")])
    for g, what, lim in [("import-x1000/legacy-storage-get", "legacy storage.get hit", 250),
                         ("import-x1000/canonical-storage-get", "canonical storage.get hit", 350),
                         ("import-x1000/legacy-log-debug", "legacy log.debug below the level", 10),
                         ("import-x1000/canonical-log-debug", "canonical log.debug below the level", 10)]:
        for c, o, f in pair(g, 1000):
            t.append([f"{what} < {lim} ns ({c})", fmt_time(o),
                      verdict(o < lim, f"{o / lim:.1f}x; floor {fmt_time(f)}" if f else f"{o / lim:.1f}x")])
    for l in ours_labels("warm-start/bench-hook"):
        if l.startswith("cranelift"):
            v = ns("warm-start/bench-hook", l)
            d = ns("cache-load/bench-hook", l + "-deserialize-only")
            t.append(["warm start < 0.5 ms on cranelift (438 KB plugin)", fmt_time(v),
                      verdict(v < 5e5, f"{v / 5e5:.1f}x; wasmer's deserialize alone is {fmt_time(d)}" if d else f"{v / 5e5:.1f}x")])
    t.append(["first `call` after `plugin add` / `update` never compiles", "tests/cache.rs",
              "**met**: `first_call_after_plugin_add_and_update_does_not_compile` (cache log, no timing)"])
    for bench, v in comp.items():
        for c in ["singlepass", "cranelift"]:
            r = ratio(v[c + "+metering"], v[c])
            if r:
                t.append([f"compute {bench}: {c} metering overhead < 15 %", f"{(r - 1) * 100:+.0f} %",
                          verdict(r < 1.15, f"{(r - 1) * 100:.0f} % vs 15 %")])
    out.append("\n### Issue-10 targets (the boundary at wasmer's floor)\n")
    out.append(table(["target", "measured", "verdict"], t))
    print("\n".join(out))


if __name__ == "__main__":
    main()
