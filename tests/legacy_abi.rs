//! The legacy ABI against hand-written (often hostile) WAT guests: every host import
//! with out-of-bounds, overflowing and invalid arguments; the calling conventions with
//! misbehaving `alloc`, oversized results, error payloads and traps. Each case asserts
//! the exact outcome and that the host keeps serving calls. Runs on both compilers.

mod common;

use common::fixtures::{compilers, TestEnv};
use tark_wasmer::CallError;
use tark_wasmer::Error;

/// A guest with a bump allocator whose behaviour tests can switch, and exports that
/// call host imports with chosen (bad) pointers and lengths.
const PROBE: &str = r#"
(module
  (import "tark:storage" "get" (func $sget (param i32 i32 i32) (result i32)))
  (import "tark:storage" "set" (func $sset (param i32 i32 i32 i32) (result i32)))
  (import "tark:storage" "delete" (func $sdel (param i32 i32) (result i32)))
  (import "tark:env" "get" (func $eget (param i32 i32 i32) (result i32)))
  (import "tark:fs" "read" (func $fread (param i32 i32 i32) (result i32)))
  (import "tark:http" "get" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
  (import "tark:http" "post" (func $hpost (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tark:ws" "send" (func $wsend (param i64 i32 i32 i32) (result i32)))
  (import "tark:ws" "recv" (func $wrecv (param i64 i64 i64 i32) (result i32)))
  (import "tark:ws" "close" (func $wclose (param i64 i32) (result i32)))
  (import "tark:log" "info" (func $linfo (param i32 i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $deallocs (mut i32) (i32.const 0))
  (global $dealloc_bytes (mut i32) (i32.const 0))
  (global $last_alloc (mut i32) (i32.const 0))
  (global $mode (mut i32) (i32.const 0))
  (data (i32.const 16) "key")
  (data (i32.const 32) "value")
  (data (i32.const 48) "\ff\fe")
  (data (i32.const 64) "http://denied.example/")
  (data (i32.const 96) "[]")
  (data (i32.const 128) "SECRET_VAR")
  (data (i32.const 160) "/etc/passwd")
  (data (i32.const 192) "{\"error\":\"boom\"}")
  (data (i32.const 224) "allowed.txt")
  (func (export "alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (if (i32.eqz (local.get $n)) (then unreachable))
    (global.set $last_alloc (local.get $n))
    (if (i32.eq (global.get $mode) (i32.const 1)) (then (return (i32.const 0))))
    (if (i32.eq (global.get $mode) (i32.const 2)) (then (return (i32.const 0x7fff0000))))
    (if (i32.and (i32.eq (global.get $mode) (i32.const 3))
                 (i32.gt_u (local.get $n) (i32.const 100000)))
      (then (return (i32.const 0))))
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (global.set $heap (local.get $end))
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow
        (i32.add (i32.div_u (i32.sub (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
                            (i32.const 65536)) (i32.const 1))))))
    (local.get $p))
  (func (export "dealloc") (param $p i32) (param $n i32)
    (global.set $deallocs (i32.add (global.get $deallocs) (i32.const 1)))
    (global.set $dealloc_bytes (i32.add (global.get $dealloc_bytes) (local.get $n))))
  (func (export "dealloc_count") (result i32) (global.get $deallocs))
  (func (export "dealloc_bytes") (result i32) (global.get $dealloc_bytes))
  (func (export "last_alloc") (result i32) (global.get $last_alloc))
  (func (export "mode_zero") (result i32) (global.set $mode (i32.const 1)) (i32.const 0))
  (func (export "mode_oob") (result i32) (global.set $mode (i32.const 2)) (i32.const 0))
  (func (export "mode_small_only") (result i32) (global.set $mode (i32.const 3)) (i32.const 0))
  (func (export "store_kv") (result i32) (call $sset (i32.const 16) (i32.const 3) (i32.const 32) (i32.const 5)))
  (func (export "delete_kv") (result i32) (call $sdel (i32.const 16) (i32.const 3)))
  (func (export "get_kv") (param $out i32) (result i32) (call $sget (i32.const 16) (i32.const 3) (local.get $out)))
  (func (export "sget_bad_key_ptr") (result i32) (call $sget (i32.const -1) (i32.const 3) (i32.const 0)))
  (func (export "sget_huge_len") (result i32) (call $sget (i32.const 16) (i32.const -1) (i32.const 0)))
  (func (export "sget_len_overflow") (result i32) (call $sget (i32.const 0x7fffffff) (i32.const 0x7fffffff) (i32.const 0)))
  (func (export "sget_ret_oob") (result i32) (call $sget (i32.const 16) (i32.const 3) (i32.const -4)))
  (func (export "sget_ret_edge") (result i32)
    (call $sget (i32.const 16) (i32.const 3) (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 3))))
  (func (export "sset_bad_utf8") (result i32) (call $sset (i32.const 48) (i32.const 2) (i32.const 32) (i32.const 5)))
  (func (export "sset_bad_value_ptr") (result i32) (call $sset (i32.const 16) (i32.const 3) (i32.const -100) (i32.const 200)))
  (func (export "sdel_bad") (result i32) (call $sdel (i32.const -1) (i32.const -1)))
  (func (export "http_denied") (result i32)
    (call $hget (i32.const 64) (i32.const 22) (i32.const 96) (i32.const 2) (i32.const 1024)))
  (func (export "http_bad_url_ptr") (result i32)
    (call $hget (i32.const -1) (i32.const 22) (i32.const 96) (i32.const 2) (i32.const 1024)))
  (func (export "http_post_bad_body") (result i32)
    (call $hpost (i32.const 64) (i32.const 22) (i32.const 48) (i32.const 2) (i32.const 96) (i32.const 2) (i32.const 1024)))
  (func (export "env_denied") (result i32) (call $eget (i32.const 128) (i32.const 10) (i32.const 1024)))
  (func (export "env_bad_ptr") (result i32) (call $eget (i32.const 0x7ffffff0) (i32.const 100) (i32.const 1024)))
  (func (export "fs_denied") (result i32) (call $fread (i32.const 160) (i32.const 11) (i32.const 1024)))
  (func (export "fs_bad_path") (result i32) (call $fread (i32.const 48) (i32.const 2) (i32.const 1024)))
  (func (export "fs_ok") (param $out i32) (result i32) (call $fread (i32.const 224) (i32.const 11) (local.get $out)))
  (func (export "fs_ret_oob") (result i32) (call $fread (i32.const 224) (i32.const 11) (i32.const -8)))
  (func (export "ws_foreign") (param $out i32) (result i32)
    (call $wrecv (i64.const 1) (i64.const 0) (i64.const 100) (local.get $out)))
  (func (export "ws_send_bad") (result i32)
    (call $wsend (i64.const -5) (i32.const -1) (i32.const 5) (i32.const 1024)))
  (func (export "ws_close_unknown") (param $out i32) (result i32)
    (call $wclose (i64.const 999999) (local.get $out)))
  (func (export "log_bad") (result i32)
    (call $linfo (i32.const -1) (i32.const 10))
    (call $linfo (i32.const 48) (i32.const 2))
    (call $linfo (i32.const 32) (i32.const 5))
    (i32.const 0))
  (func (export "err_payload") (param $out i32) (result i32)
    (memory.copy (local.get $out) (i32.const 192) (i32.const 16))
    (i32.const -16))
  (func (export "err_code_only") (param $out i32) (result i32) (i32.const -7))
  (func (export "overflow") (param $out i32) (result i32) (i32.const 0x7fffffff))
  (func (export "overflow_small") (param $out i32) (result i32) (i32.const 300000))
  (func (export "bad_utf8_result") (param $out i32) (result i32)
    (memory.copy (local.get $out) (i32.const 48) (i32.const 2))
    (i32.const 2))
  (func (export "trap") (result i32) unreachable)
  (func (export "echo") (param $in i32) (param $len i32) (param $out i32) (result i32)
    (memory.copy (local.get $out) (local.get $in) (local.get $len))
    (local.get $len))
  (func (export "wrong_type") (param i64) (result i32) (i32.const 0))
)
"#;

fn env_with_probe() -> TestEnv {
    let env = TestEnv::new();
    std::fs::write(env.tmp.path().join("allowed.txt"), "file contents").expect("write");
    env.install_wat(
        "probe",
        "tool",
        "storage = true\nhttp = [\"127.0.0.1\"]\nenv = [\"PATH\"]\nfs_read = [\"allowed.txt\"]",
        PROBE,
    );
    env
}

fn code(host: &mut tark_wasmer::PluginHost, f: &str) -> i32 {
    host.get_mut("probe")
        .expect("loaded")
        .legacy_code(f, None)
        .unwrap_or_else(|e| panic!("{f} failed: {e}"))
}

fn call_err(r: tark_wasmer::Result<impl std::fmt::Debug>) -> CallError {
    match r {
        Err(Error::Call { source, .. }) => source,
        other => panic!("expected a call error, got {other:?}"),
    }
}

#[test]
fn hostile_import_arguments_get_error_codes_not_crashes() {
    for compiler in compilers() {
        let env = env_with_probe();
        let mut host = env.host(compiler);
        // Storage: valid round trip first.
        assert_eq!(code(&mut host, "store_kv"), 0, "{compiler}");
        let p = host.get_mut("probe").expect("loaded");
        assert_eq!(p.legacy_text("get_kv").expect("get_kv"), "value");
        // Out-of-bounds, overflowing and invalid arguments: -1, host alive.
        for f in [
            "sget_bad_key_ptr",
            "sget_huge_len",
            "sget_len_overflow",
            "sget_ret_oob",
            "sget_ret_edge",
            "sset_bad_utf8",
            "sset_bad_value_ptr",
            "sdel_bad",
            "http_bad_url_ptr",
            "http_post_bad_body",
            "env_bad_ptr",
            "fs_bad_path",
            "ws_send_bad",
        ] {
            assert_eq!(code(&mut host, f), -1, "{f} on {compiler}");
        }
        // Capability denials: -2.
        for f in ["http_denied", "env_denied", "fs_denied"] {
            assert_eq!(code(&mut host, f), -2, "{f} on {compiler}");
        }
        // fs.read write-back out of bounds: -4; an allowed read works.
        assert_eq!(code(&mut host, "fs_ret_oob"), -4);
        let p = host.get_mut("probe").expect("loaded");
        assert_eq!(p.legacy_text("fs_ok").expect("fs_ok"), "file contents");
        // Invalid log messages are dropped silently.
        assert_eq!(code(&mut host, "log_bad"), 0);
        // WebSocket handles the instance does not own look unknown.
        let p = host.get_mut("probe").expect("loaded");
        assert_eq!(
            p.legacy_text("ws_foreign").expect("ws recv"),
            r#"{"error":"Unknown websocket handle","ok":false}"#
        );
        assert_eq!(
            p.legacy_text("ws_close_unknown").expect("ws close"),
            r#"{"ok":true}"#
        );
        // The storage write is on disk in tark's format, and no instance was discarded.
        let stored = std::fs::read_to_string(env.plugins_dir.join("probe/data/storage.json"))
            .expect("storage.json");
        let map: std::collections::HashMap<String, String> =
            serde_json::from_str(&stored).expect("flat string map");
        assert_eq!(map.get("key").map(String::as_str), Some("value"));
        assert_eq!(host.get("probe").expect("loaded").instances_created(), 1);
        assert_eq!(code(&mut host, "delete_kv"), 0);
        let p = host.get_mut("probe").expect("loaded");
        assert_eq!(p.legacy_text("get_kv").expect("get_kv"), "");
    }
}

#[test]
fn buffers_are_freed_with_their_exact_size_and_never_alloc_zero() {
    for compiler in compilers() {
        let env = env_with_probe();
        let mut host = env.host(compiler);
        let p = host.get_mut("probe").expect("loaded");
        // PR with an empty input: alloc(1) for the input (alloc(0) traps in this guest).
        assert_eq!(p.legacy_text_with_input("echo", "").expect("echo"), "");
        assert_eq!(
            p.legacy_text_with_input("echo", "héllo").expect("echo"),
            "héllo"
        );
        let count = p.legacy_code("dealloc_count", None).expect("count");
        let bytes = p.legacy_code("dealloc_bytes", None).expect("bytes");
        // Two calls, each freeing its input buffer and its 256 KiB output buffer.
        assert_eq!(count, 4, "{compiler}");
        assert_eq!(bytes, 1 + 6 + 2 * 256 * 1024, "{compiler}");
        // A negative return still frees the buffer.
        let e = call_err(p.legacy_text("err_code_only"));
        assert_eq!(
            e.to_string(),
            "Function err_code_only returned error code: -7"
        );
        assert_eq!(p.legacy_code("dealloc_count", None).expect("count"), 5);
    }
}

#[test]
fn guest_error_payloads_are_surfaced() {
    for compiler in compilers() {
        let env = env_with_probe();
        let mut host = env.host(compiler);
        let p = host.get_mut("probe").expect("loaded");
        let e = call_err(p.legacy_text("err_payload"));
        assert_eq!(
            e,
            CallError::GuestError {
                function: "err_payload".into(),
                code: -16,
                message: Some("boom".into())
            }
        );
        assert!(e.to_string().contains("boom"));
        assert_eq!(p.instances_created(), 1, "a guest error keeps the instance");
    }
}

#[test]
fn results_past_the_buffer_discard_the_instance() {
    for compiler in compilers() {
        let env = env_with_probe();
        let mut host = env.host(compiler);
        let p = host.get_mut("probe").expect("loaded");
        for f in ["overflow", "overflow_small"] {
            let e = call_err(p.legacy_text(f));
            assert!(
                matches!(e, CallError::OutputOverflow { size: 262144, .. }),
                "{f}: {e}"
            );
            assert!(
                e.to_string().contains("result exceeds output buffer"),
                "{e}"
            );
            // The next call gets a fresh instance (counters start again).
            assert_eq!(p.legacy_code("dealloc_count", None).expect("count"), 0);
        }
        assert_eq!(p.instances_created(), 3);
        let e = call_err(p.legacy_text("bad_utf8_result"));
        assert_eq!(e, CallError::InvalidUtf8("bad_utf8_result".into()));
    }
}

#[test]
fn misbehaving_alloc_is_an_allocation_failure() {
    for compiler in compilers() {
        let env = env_with_probe();
        let mut host = env.host(compiler);
        let p = host.get_mut("probe").expect("loaded");
        assert_eq!(p.legacy_code("mode_zero", None).expect("mode"), 0);
        let e = call_err(p.legacy_text("get_kv"));
        assert!(matches!(e, CallError::AllocFailed { .. }), "{e}");
        assert!(e.to_string().contains("alloc returned 0"), "{e}");
        // Fresh instance (mode reset): works again.
        assert_eq!(p.legacy_text_with_input("echo", "x").expect("echo"), "x");
        assert_eq!(p.legacy_code("mode_oob", None).expect("mode"), 0);
        let e = call_err(p.legacy_text_with_input("echo", "x"));
        assert!(e.to_string().contains("out of bounds"), "{e}");
        // Only small buffers available: the host retries with tark's size.
        assert_eq!(p.legacy_code("mode_small_only", None).expect("mode"), 0);
        assert_eq!(
            p.legacy_text_with_input("echo", "small").expect("echo"),
            "small"
        );
        assert_eq!(p.legacy_code("last_alloc", None).expect("last"), 65536);
    }
}

#[test]
fn traps_are_errors_and_the_next_call_gets_a_fresh_instance() {
    for compiler in compilers() {
        let env = env_with_probe();
        let mut host = env.host(compiler);
        let p = host.get_mut("probe").expect("loaded");
        assert_eq!(p.legacy_text_with_input("echo", "a").expect("echo"), "a");
        let e = call_err(p.legacy_code("trap", None));
        assert!(matches!(e, CallError::Trap { .. }), "{e}");
        assert!(e.to_string().contains("unreachable"), "{e}");
        assert_eq!(p.legacy_text_with_input("echo", "b").expect("echo"), "b");
        assert_eq!(p.instances_created(), 2);
        // Missing exports and wrong types.
        let e = call_err(p.legacy_code("nope", None));
        assert_eq!(e.to_string(), "Plugin does not export 'nope' function");
        let e = call_err(p.legacy_code("wrong_type", None));
        assert_eq!(
            e.to_string(),
            "Plugin does not export 'wrong_type' function"
        );
    }
}

#[test]
fn modules_that_do_not_link_are_refused_with_the_import_named() {
    for compiler in compilers() {
        let cases = [
            (
                r#"(module (import "tark:storage" "list-keys" (func (param i32))) (memory (export "memory") 1))"#,
                "unknown import tark:storage::list-keys with signature (i32) -> ()",
            ),
            (
                r#"(module (import "tark:storage" "get" (func (param i32 i32) (result i32))) (memory (export "memory") 1))"#,
                "import tark:storage::get has signature (i32, i32) -> i32, expected (i32, i32, i32) -> i32",
            ),
            (
                r#"(module (import "env" "memory" (memory 1)))"#,
                "unsupported import env::memory: memory imports",
            ),
            (r#"(module (func (export "status") (result i32) i32.const 1))"#, "Plugin has no memory export"),
            (
                r#"(module (memory (export "memory") 1) (func $s unreachable) (start $s))"#,
                "Failed to instantiate plugin: bad",
            ),
        ];
        for (wat, expected) in cases {
            let env = TestEnv::new();
            env.install_wat("bad", "auth", "", wat);
            let mut host = env.host(compiler);
            let err = host
                .get_mut("bad")
                .expect("loaded")
                .auth_status()
                .expect_err("must not instantiate")
                .to_string();
            assert!(
                err.contains(expected),
                "{compiler}: {err}\nexpected: {expected}"
            );
            // The host still serves other plugins.
            env.install_wat(
                "good",
                "auth",
                "",
                r#"(module (memory (export "memory") 1) (func (export "status") (result i32) i32.const 1))"#,
            );
            let mut host = env.host(compiler);
            let good = host
                .get_mut("good")
                .expect("loaded")
                .auth_status()
                .expect("status");
            assert_eq!(good, tark_wasmer::plugin::AuthStatus::Authenticated);
        }
    }
}
