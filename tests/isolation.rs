//! Isolation and WASI behaviour: guest stdout/stderr captured into the log with the
//! plugin id, `proc_exit` from WASI failing only the call, and a plugin unable to use
//! another plugin's WebSocket connections. Both compilers.

mod common;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use common::fixtures::{compilers, TestEnv};
use common::servers::{wait_until, HttpTestServer, WssTestServer};
use tark_wasmer::plugin::{Message, Role};
use tark_wasmer::CallError;
use tark_wasmer::Error;

/// Log records of the whole test process: (level, target, message).
fn records() -> &'static Mutex<Vec<(log::Level, String, String)>> {
    static R: OnceLock<Mutex<Vec<(log::Level, String, String)>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

/// Keeps the host's own records at info and above: the compilers' debug and trace
/// records are many (at `Trace` this test held 1.1 GB and took minutes under qemu).
struct Capture;
impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("tark_wasmer")
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        if let Ok(mut v) = records().lock() {
            v.push((r.level(), r.target().to_string(), r.args().to_string()));
        }
    }
    fn flush(&self) {}
}

fn install_logger() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = log::set_boxed_logger(Box::new(Capture));
        log::set_max_level(log::LevelFilter::Info);
    });
}

fn logged(level: log::Level, needle: &str) -> bool {
    records()
        .lock()
        .map(|v| {
            v.iter()
                .any(|(l, t, m)| *l == level && t == "tark_wasmer::plugin" && m.contains(needle))
        })
        .unwrap_or(false)
}

#[test]
fn guest_stdout_and_stderr_go_to_the_log_with_the_plugin_id() {
    install_logger();
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_example("legacy-provider");
        let mut host = env.host(compiler);
        let p = host.get_mut("legacy-provider").expect("loaded");
        p.provider_info().expect("info");
        // println! in the guest -> WASI fd_write(1) -> info line with the prefix.
        assert!(
            logged(
                log::Level::Info,
                "[plugin:legacy-provider] provider_info called"
            ),
            "{compiler}: stdout line not captured"
        );
        // A guest panic writes its message to stderr before trapping -> warn line.
        let msgs = vec![Message {
            role: Role::User,
            content: "x".into(),
        }];
        let err = p.provider_chat(&msgs, "panic").expect_err("traps");
        assert!(matches!(
            err,
            Error::Call {
                source: CallError::Trap { .. },
                ..
            }
        ));
        assert!(
            logged(log::Level::Warn, "[plugin:legacy-provider]")
                && logged(log::Level::Warn, "requested panic"),
            "{compiler}: stderr panic message not captured"
        );
    }
}

#[test]
fn proc_exit_fails_the_call_and_the_host_goes_on() {
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_wat(
            "exiter",
            "auth",
            "",
            r#"(module
                 (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
                 (memory (export "memory") 1)
                 (func (export "status") (result i32) (call $exit (i32.const 3)) (i32.const 1))
                 (func (export "logout") (result i32) (i32.const 0)))"#,
        );
        let mut host = env.host(compiler);
        let p = host.get_mut("exiter").expect("loaded");
        let err = p.auth_status().expect_err("proc_exit ends the call");
        match &err {
            Error::Call {
                source: CallError::Trap { function, message },
                ..
            } => {
                assert_eq!(function, "status");
                assert!(
                    message.contains("exit") && message.contains('3'),
                    "{message}"
                );
            }
            other => panic!("{compiler}: expected a trap, got {other:?}"),
        }
        // The process is alive and the next call runs on a fresh instance.
        p.auth_logout().expect("fresh instance answers");
        assert_eq!(p.instances_created(), 2, "{compiler}");
    }
}

/// Tries every handle 1..=256 with ws.send and ws.close, as a plugin guessing numbers.
const HANDLE_THIEF: &str = r#"(module
  (import "tark:ws" "send" (func $send (param i64 i32 i32 i32) (result i32)))
  (import "tark:ws" "close" (func $close (param i64 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "stolen")
  (func (export "status") (result i32)
    (local $h i64)
    (local.set $h (i64.const 1))
    (loop $l
      (drop (call $send (local.get $h) (i32.const 16) (i32.const 6) (i32.const 1024)))
      (drop (call $close (local.get $h) (i32.const 1024)))
      (local.set $h (i64.add (local.get $h) (i64.const 1)))
      (br_if $l (i64.le_u (local.get $h) (i64.const 256))))
    (i32.const 1)))"#;

#[test]
fn a_plugin_cannot_use_another_plugins_websocket() {
    for compiler in compilers() {
        let http = HttpTestServer::start();
        let wss = WssTestServer::start();
        let mut env = TestEnv::new();
        env.config.extra_ca_pem.push(wss.ca_pem());
        env.install_example("legacy-channel");
        env.install_wat("thief", "auth", "", HANDLE_THIEF);
        let mut host = env.host(compiler);
        let creds = serde_json::json!({
            "access_token": "tok",
            "gateway_url": wss.url(),
            "api_base": http.base_url(),
        })
        .to_string();
        let c = host.get_mut("legacy-channel").expect("loaded");
        c.channel_auth_init(&creds).expect("auth init");
        c.channel_poll().expect("first poll connects");
        assert!(wait_until(Duration::from_secs(20), || wss
            .open_connections()
            == 1));
        // The other plugin sends to and closes every handle it can guess.
        host.get_mut("thief")
            .expect("loaded")
            .auth_status()
            .expect("thief runs");
        // Nothing it sent arrived, and the channel's connection is still open and working.
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            wss.open_connections(),
            1,
            "{compiler}: the connection was closed"
        );
        assert!(
            wss.received().iter().flatten().all(|m| m != "stolen"),
            "{compiler}: a foreign send reached the server"
        );
        wss.push(r#"{"conversation_id":"c","user_id":"u","text":"still mine"}"#);
        let c = host.get_mut("legacy-channel").expect("loaded");
        let mut got = Vec::new();
        for _ in 0..50 {
            got.extend(c.channel_poll().expect("poll"));
            if !got.is_empty() {
                break;
            }
        }
        assert_eq!(
            got.first().map(|m| m.text.as_str()),
            Some("still mine"),
            "{compiler}"
        );
    }
}
