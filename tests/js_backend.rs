//! The JS backend, end to end: `scripts/js-build.sh` builds the host's core for
//! wasm32-unknown-unknown with wasmer's `js` feature (installing wasm-bindgen-cli and the
//! wasm32 std sources when missing), and `tests/js/run.mjs` runs it in Node. Every call of
//! the cross-engine script (`tests/cross_engine.json`, the native host's transcript, which
//! `tests/cross_engine.rs` checks against singlepass and cranelift) must give the same
//! answer, text for text, through the JS engine's WebAssembly: the conformance module,
//! the legacy and the canonical example plugins. Then the JS backend's own rules:
//! storage export/import with the quota, HTTP only through the embedder's transport
//! (allowlist and redirects still checked by the host), files and WebSockets refused
//! with the backend's reason.
//!
//! Opt-in (`scripts/js-test.sh`, i.e. `cargo test --features js-backend-test --test
//! js_backend`): a cold first run installs wasm-bindgen-cli and builds the wasm32 host,
//! which takes tens of minutes on 2 cores; a warm run takes about 10 s.

mod common;

use std::process::Command;

use serde_json::Value;

use common::fixtures::repo_root;

#[test]
fn the_wasm32_host_in_node_answers_like_the_native_host() {
    let root = repo_root();
    let build = Command::new("bash")
        .arg(root.join("scripts/js-build.sh"))
        .current_dir(&root)
        .status()
        .expect("run scripts/js-build.sh");
    assert!(build.success(), "scripts/js-build.sh failed");

    // The native transcript as cases whose arguments and answers stay JSON text.
    let text =
        std::fs::read_to_string(root.join("tests/cross_engine.json")).expect("read transcript");
    let transcript: Value = serde_json::from_str(&text).expect("transcript is JSON");
    let entries = transcript.as_array().expect("transcript is a list");
    let mut cases = String::new();
    for e in entries {
        let case = serde_json::json!({
            "plugin": e["plugin"],
            "function": e["function"],
            "args": e["args"].to_string(),
            "expected": e["result"].to_string(),
        });
        cases.push_str(&case.to_string());
        cases.push('\n');
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cases_file = dir.path().join("cases.jsonl");
    std::fs::write(&cases_file, cases).expect("write cases");

    let out = Command::new("node")
        .arg(root.join("tests/js/run.mjs"))
        .arg(root.join("target/js/pkg"))
        .arg(&root)
        .arg(&cases_file)
        .output()
        .expect("run node (scripts/js-install-tools.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or_default();
    let summary: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("no summary from run.mjs ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(
        summary["failures"],
        Value::Array(vec![]),
        "differences from the native host:\n{}",
        serde_json::to_string_pretty(&summary["failures"]).unwrap_or_default()
    );
    assert_eq!(summary["calls"].as_u64(), Some(entries.len() as u64));
    assert_eq!(summary["identical"].as_u64(), Some(entries.len() as u64));
    let plugins: Vec<&str> = summary["plugins"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for id in [
        "conformance",
        "legacy-provider",
        "legacy-auth",
        "tool-kit",
        "sdk-auth",
    ] {
        assert!(
            plugins.contains(&id),
            "{id} did not run in Node: {plugins:?}"
        );
    }
    for check in [
        "storage_export_import",
        "storage_import_quota",
        "fs_unavailable",
        "ws_unavailable",
        "http_without_transport",
        "http_through_transport",
        "http_allowlist",
    ] {
        assert_eq!(summary["checks"][check], Value::Bool(true), "{check}");
    }
    assert!(out.status.success(), "run.mjs failed:\n{stderr}");
}
