//! Cross-engine check against the wasmtime peer: the calls of `tests/cross_engine.rs`'s
//! script that the benches' minimal wasmtime host can make (the conformance module's
//! string, bytes and string-list echoes and relays, and every call of the two hook plugins:
//! FNV-1a and XXH64 over 16 MiB, a 1 MiB JSON round trip, SHA-256, the secret scanner and
//! the guard's block/rewrite decisions) run on wasmtime 48 (Cranelift) and must give the
//! results recorded in `tests/cross_engine.json` by singlepass and cranelift on x86_64.
//!
//! Built only with the feature `wasmtime-peer` (it compiles wasmtime): natively
//! `cargo test --features wasmtime-peer --test cross_engine_wasmtime`, under qemu
//! `CROSS_FEATURES=wasmtime-peer scripts/cross.sh aarch64 both cross_engine_wasmtime`.
//! Together with `cross_engine` it shows that wasmer's two compilers and wasmtime agree on
//! the architecture it runs on.

#[allow(dead_code)]
mod wt48 {
    include!("../benches/common/wasmtime_harness.rs");
}

use std::path::PathBuf;

use serde_json::{json, Value};
use tark_wasmer::lowlevel::{Contract, Ty};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example plugin's wasm (built by `scripts/build-plugins.sh`, as for every test).
fn plugin_wasm(id: &str) -> Vec<u8> {
    let path = repo_root()
        .join("tests/plugins")
        .join(id)
        .join("plugin.wasm");
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (build the example plugins: scripts/build-plugins.sh)",
            path.display()
        )
    })
}

/// The hook-decision variant as the transcript writes it (`allow`, `rewrite`, `block`).
fn decision(case: u8, text: Option<String>) -> Value {
    match (case, text) {
        (0, None) => json!("allow"),
        (1, Some(t)) => json!({ "rewrite": t }),
        (2, Some(t)) => json!({ "block": t }),
        (c, t) => json!({ "unexpected-case": c, "text": t }),
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list of strings")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// `hook-event-kind`'s cases in WIT order (the enum's discriminants), from the contract.
fn hook_event_kinds() -> Vec<String> {
    let on_event = Contract::get()
        .func("hook-plugin", "on-event")
        .expect("hook-plugin#on-event");
    let Some((_, Ty::Record(fields))) = on_event.params.first() else {
        panic!("on-event takes a record");
    };
    match fields.iter().find(|(name, _)| name == "kind") {
        Some((_, Ty::Enum(names))) => names.clone(),
        other => panic!("hook-event.kind is not an enum: {other:?}"),
    }
}

/// One hook plugin's call on wasmtime, in the transcript's form.
fn hook_call(hook: &mut wt48::Hook, function: &str, args: &Value) -> Option<Value> {
    let out = match function {
        "name" => hook.name().map(Value::from),
        "on-event" => {
            let event = &args[0];
            let kind = event["kind"].as_str().expect("kind");
            let index = hook_event_kinds()
                .iter()
                .position(|k| k == kind)
                .unwrap_or_else(|| panic!("unknown hook event kind {kind}"));
            hook.on_event(
                u8::try_from(index).expect("a small enum"),
                event["session_id"].as_str().expect("session_id"),
                event["payload_json"].as_str().expect("payload_json"),
            )
            .map(|(case, text)| decision(case, text))
        }
        _ => return None,
    };
    Some(match out {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "err": e }),
    })
}

/// One conformance call on wasmtime, in the transcript's form.
fn conformance_call(c: &mut wt48::Conformance, function: &str, args: &Value) -> Option<Value> {
    let a = &args[0];
    let out = match function {
        "echo-string" => c.echo_string(a.as_str().expect("string")).map(Value::from),
        "relay-string" => c.relay_string(a.as_str().expect("string")).map(Value::from),
        "echo-bytes" => {
            let bytes: Vec<u8> = serde_json::from_value(a.clone()).expect("bytes");
            c.echo_bytes(&bytes).map(|b| json!(b))
        }
        "echo-strings" => c.echo_strings(&strings(a)).map(|s| json!(s)),
        "relay-strings" => c.relay_strings(&strings(a)).map(|s| json!(s)),
        _ => return None,
    };
    Some(match out {
        Ok(v) => json!({ "ok": v }),
        Err(e) => json!({ "err": e }),
    })
}

#[test]
fn wasmtime_gives_the_recorded_results_for_the_calls_it_can_make() {
    let path = repo_root().join("tests/cross_engine.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let expected: Value = serde_json::from_str(&text).expect("the transcript is JSON");
    let expected = expected.as_array().expect("the transcript is a list");

    let engine = wt48::engine(false);
    let module =
        |id: &str| wt48::compile(&engine, &plugin_wasm(id)).unwrap_or_else(|e| panic!("{id}: {e}"));
    let (conf_m, bench_m, guard_m) = (
        module("conformance"),
        module("bench-hook"),
        module("hook-guard"),
    );
    let link = |m| wt48::linker(&engine, m).unwrap_or_else(|e| panic!("linker: {e}"));
    let mut conformance = wt48::Conformance::new(&engine, &link(&conf_m), &conf_m)
        .unwrap_or_else(|e| panic!("conformance: {e}"));
    let mut bench = wt48::Hook::new(&engine, &link(&bench_m), &bench_m)
        .unwrap_or_else(|e| panic!("bench-hook: {e}"));
    let mut guard = wt48::Hook::new(&engine, &link(&guard_m), &guard_m)
        .unwrap_or_else(|e| panic!("hook-guard: {e}"));

    let mut compared = Vec::new();
    for entry in expected {
        let plugin = entry["plugin"].as_str().expect("plugin");
        let function = entry["function"].as_str().expect("function");
        let args = &entry["args"];
        let got = match plugin {
            "conformance" => conformance_call(&mut conformance, function, args),
            "bench-hook" => hook_call(&mut bench, function, args),
            "hook-guard" => hook_call(&mut guard, function, args),
            _ => None,
        };
        if let Some(got) = got {
            assert_eq!(
                got,
                entry["result"],
                "wasmtime on {}: {plugin} {function} {args} differs from the recorded result",
                std::env::consts::ARCH
            );
            compared.push(format!("{plugin} {function}"));
        }
    }
    // 5 conformance calls, 7 bench-hook calls (the compute workloads), 5 hook-guard calls.
    assert_eq!(compared.len(), 17, "calls compared: {compared:?}");
    for workload in ["fnv", "xxh", "json", "digest", "scan"] {
        assert!(
            expected.iter().any(|e| e["plugin"] == "bench-hook"
                && e["args"][0]["session_id"] == workload
                && e["result"]["ok"]["rewrite"].is_string()),
            "{workload}: the recorded transcript has a computed result to compare"
        );
    }
}
