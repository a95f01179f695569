//! Cross-engine check: the same plugin calls give the same results on every compiler built
//! in, on every platform. One script of calls (below) runs over every example plugin that
//! has no server to talk to — the conformance module, legacy and canonical plugins of each
//! type and the bench workloads (hashes over 16 MiB, a 1 MiB JSON round trip, SHA-256) —
//! and its transcript must equal the one recorded in `tests/cross_engine.json`, which was
//! written on x86_64 Linux. Run natively it compares singlepass with cranelift; run under
//! qemu (`scripts/cross.sh aarch64`, `riscv64`) it compares each compiler on that
//! architecture with the native transcript, so code generation differences between
//! architectures show up as a diff here.
//!
//! After a deliberate change to an example plugin or to the script, rewrite the expected
//! transcript with `TARK_WASMER_BLESS=1 cargo test --test cross_engine` and review the diff.

mod common;

use serde_json::{json, Value};

use common::fixtures::{compilers, repo_root, TestEnv};
use tark_wasmer::engine::Compiler;
use tark_wasmer::plugin::dispatch::call_by_name;

/// The recorded transcript, relative to the repository root.
const EXPECTED: &str = "tests/cross_engine.json";

/// `(plugin, function, JSON arguments)`, run in this order on one host per compiler (so
/// calls that write plugin storage are seen by the calls after them).
fn script() -> Vec<(&'static str, &'static str, Value)> {
    let scalars = json!({
        "flag": true, "a_u8": 255, "a_s8": -128, "a_u16": 65535, "a_s16": -32768,
        "a_u32": 4294967295u64, "a_s32": -2147483648i64, "a_u64": 18446744073709551615u64,
        "a_s64": -9223372036854775808i64, "a_char": "ß"
    });
    let items = json!([
        {"name": "first", "tags": ["a", "", "ünï"], "score": -5, "color": "green"},
        {"name": "", "tags": [], "score": null, "color": "blue"}
    ]);
    let hook = |session: &str, payload: &str| json!([{"kind": "user-message", "session_id": session, "payload_json": payload}]);
    vec![
        // The canonical-ABI bridge: every WIT type, both directions.
        ("conformance", "echo-string", json!(["héllo, wörld ✓ 🦀"])),
        ("conformance", "echo-bytes", json!([[0, 1, 127, 128, 255]])),
        ("conformance", "echo-u32s", json!([[0, 1, 4294967295u64]])),
        (
            "conformance",
            "echo-strings",
            json!([["a", "", "ü", "🦀🦀"]]),
        ),
        ("conformance", "echo-scalars", json!([scalars])),
        (
            "conformance",
            "echo-tuple",
            json!([["t", 18446744073709551615u64, -1, false]]),
        ),
        ("conformance", "echo-color", json!(["blue"])),
        ("conformance", "echo-shape", json!([{"pair": [7, "seven"]}])),
        (
            "conformance",
            "echo-shape",
            json!([{"big": 18446744073709551615u64}]),
        ),
        ("conformance", "echo-shape", json!(["empty"])),
        ("conformance", "echo-option", json!([{"some": null}])),
        ("conformance", "echo-option", json!([{"some": "x"}])),
        ("conformance", "echo-result", json!([{"ok": {"err": 7}}])),
        ("conformance", "echo-result", json!([{"err": "bad"}])),
        ("conformance", "echo-items", json!([items])),
        (
            "conformance",
            "many-params",
            json!([
                1,
                2,
                3,
                4,
                -5,
                -6,
                -7,
                -8,
                true,
                "ж",
                "k",
                [9, 10],
                11,
                12,
                "o"
            ]),
        ),
        (
            "conformance",
            "sum-u32s",
            json!([[4294967295u64, 4294967295u64, 2]]),
        ),
        ("conformance", "make-string", json!(["€", 300])),
        ("conformance", "relay-string", json!(["relayed ✓"])),
        ("conformance", "relay-strings", json!([["x", "yy", ""]])),
        ("conformance", "relay-scalars", json!([scalars])),
        ("conformance", "relay-shape", json!([{"text": "t"}])),
        ("conformance", "relay-option", json!([null])),
        (
            "conformance",
            "relay-result",
            json!([{"ok": {"ok": "fine"}}]),
        ),
        ("conformance", "relay-items", json!([items])),
        // Legacy ABI plugins.
        ("legacy-provider", "info", json!([])),
        ("legacy-provider", "models", json!([])),
        ("legacy-provider", "auth-status", json!([])),
        (
            "legacy-provider",
            "auth-init",
            json!([r#"{"api_key":"sk-cross"}"#]),
        ),
        ("legacy-provider", "auth-status", json!([])),
        ("legacy-provider", "auth-init", json!(["not json"])),
        ("legacy-provider", "provider_info", json!([])),
        ("legacy-auth", "display-name", json!([])),
        ("legacy-auth", "status", json!([])),
        ("legacy-auth", "get-token", json!([])),
        ("legacy-channel", "info", json!([])),
        ("legacy-channel", "auth-status", json!([])),
        ("legacy-channel", "widget-state", json!([])),
        // Canonical (wit-bindgen) plugins.
        ("sdk-auth", "display-name", json!([])),
        ("sdk-auth", "status", json!([])),
        ("sdk-auth", "get-token", json!([])),
        ("device-auth", "display-name", json!([])),
        ("device-auth", "status", json!([])),
        ("tool-kit", "get-tools", json!([])),
        ("tool-kit", "get-risk-level", json!(["word_count"])),
        ("tool-kit", "get-risk-level", json!(["no_such_tool"])),
        (
            "tool-kit",
            "execute",
            json!(["word_count", r#"{"text":"one two  three\nfour ünï"}"#]),
        ),
        (
            "tool-kit",
            "execute",
            json!([
                "json_pretty",
                r#"{"json":"{\"b\":[1,2.5,null],\"a\":\"x\"}"}"#
            ]),
        ),
        ("tool-kit", "execute", json!(["word_count", "not json"])),
        ("tool-kit", "execute", json!(["delete_everything", "{}"])),
        ("openai-provider", "info", json!([])),
        ("openai-provider", "auth-status", json!([])),
        ("chat-channel", "info", json!([])),
        ("chat-channel", "auth-status", json!([])),
        ("hook-guard", "name", json!([])),
        ("hook-guard", "subscriptions", json!([])),
        (
            "hook-guard",
            "on-event",
            hook("s1", r#"{"content":"hello"}"#),
        ),
        (
            "hook-guard",
            "on-event",
            hook("s1", r#"{"content":"a forbidden word"}"#),
        ),
        (
            "hook-guard",
            "on-event",
            hook("s1", r#"{"content":"key secret-token here"}"#),
        ),
        ("hook-guard", "on-event", hook("s1", "{not json")),
        // Compute workloads: integer multiply chains, 64-bit rotations, float parsing.
        ("bench-hook", "name", json!([])),
        ("bench-hook", "on-event", hook("selftest", "")),
        ("bench-hook", "on-event", hook("fnv", "")),
        ("bench-hook", "on-event", hook("xxh", "")),
        ("bench-hook", "on-event", hook("json", "")),
        (
            "bench-hook",
            "on-event",
            hook("digest", "the quick brown fox ✓"),
        ),
        (
            "bench-hook",
            "on-event",
            hook(
                "scan",
                r#"{"a":"token sk-abcdefghijklmnopqrstuvwx","b":["AKIAABCDEFGHIJKLMNOP"]}"#,
            ),
        ),
    ]
}

/// Every plugin the script calls.
fn plugins() -> Vec<&'static str> {
    let mut ids: Vec<&str> = script().iter().map(|(id, ..)| *id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The script's transcript on `compiler`: one JSON object per call, with the result or
/// the error text.
fn transcript(compiler: Compiler) -> Value {
    let env = TestEnv::new();
    for id in plugins() {
        env.install_example(id);
    }
    let mut host = env.host(compiler);
    let mut out = Vec::new();
    for (id, function, args) in script() {
        let inst = host
            .get_mut(id)
            .unwrap_or_else(|| panic!("{compiler}: {id} is not loaded"));
        let args_list = args.as_array().cloned().unwrap_or_default();
        let outcome = match call_by_name(inst, function, &args_list) {
            Ok(v) => json!({"ok": v}),
            Err(e) => json!({"err": e.to_string()}),
        };
        out.push(json!({"plugin": id, "function": function, "args": args, "result": outcome}));
    }
    Value::Array(out)
}

#[test]
fn every_compiler_gives_the_recorded_results_for_every_example_plugin() {
    let path = repo_root().join(EXPECTED);
    let runs: Vec<(Compiler, Value)> = compilers()
        .into_iter()
        .map(|c| (c, transcript(c)))
        .collect();
    assert!(!runs.is_empty(), "no compiler built in");

    if std::env::var_os("TARK_WASMER_BLESS").is_some() {
        let (first, t) = &runs[0];
        for (c, other) in &runs[1..] {
            assert_eq!(t, other, "{first} and {c} disagree: not blessing");
        }
        let text = serde_json::to_string_pretty(t).expect("serialise") + "\n";
        std::fs::write(&path, text).expect("write the expected transcript");
        return;
    }

    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let expected: Value = serde_json::from_str(&text).expect("expected transcript is JSON");
    let expected = expected.as_array().expect("expected transcript is a list");
    assert_eq!(
        expected.len(),
        script().len(),
        "{EXPECTED} is stale: bless it again"
    );
    // The transcript is not trivially made of errors.
    let oks = expected
        .iter()
        .filter(|r| r["result"].get("ok").is_some())
        .count();
    assert!(
        oks * 10 >= expected.len() * 8,
        "only {oks} of {} calls succeed",
        expected.len()
    );

    for (compiler, got) in &runs {
        let got = got.as_array().expect("transcript is a list");
        for (g, e) in got.iter().zip(expected) {
            assert_eq!(
                g,
                e,
                "{compiler} on {}: {} {} differs from {EXPECTED}",
                std::env::consts::ARCH,
                g["plugin"],
                g["function"]
            );
        }
        assert_eq!(got.len(), expected.len(), "{compiler}");
    }
}
