//! The `tark-wasmer` binary over the real example plugins, legacy and canonical: each
//! example is installed with `plugin add`, then every interface function (and the raw legacy
//! export names) is run with `call` on both compilers, as separate processes, against real
//! HTTP and WSS servers on 127.0.0.1. stdout is compared as exact text: records are objects
//! with snake_case keys in declaration order, enums kebab-case strings, options null or the
//! value, results `{"ok":..}` / `{"err":..}`, variants `{"case":payload}` (or `"case"`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use common::fixtures::{compilers, ensure_plugins_built, example_plugin_dir};
use common::servers::{
    wait_until, CannedResponse, HttpTestServer, OAuthScript, WsConnectionInfo, WssTestServer,
};
use tark_wasmer::engine::Compiler;
use tark_wasmer::plugin::AuthCredentials;

const TOKEN: &str = "chan-token";
/// Generous bound for background work (server threads).
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Driving the binary
// ---------------------------------------------------------------------------------------

/// A finished run of the binary.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The plugin answered `err`: exit 3, the `{"err": ...}` on stdout.
    fn plugin_err(self) -> Self {
        assert_eq!(
            self.code,
            Some(3),
            "expected exit 3\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// A non-zero exit, nothing on stdout (or the plugin's `{"err": ...}` with exit 3), an
    /// `Error: ...` line on stderr, `needle` in stderr.
    fn fails_with(self, needle: &str) -> Self {
        assert!(
            matches!(self.code, Some(c) if c != 0),
            "expected a failure\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        if self.code == Some(3) && !self.stdout.is_empty() {
            assert!(self.json().get("err").is_some(), "{}", self.stdout);
        } else {
            assert!(self.stdout.is_empty(), "stdout on failure: {}", self.stdout);
        }
        // Plugin log lines (warn level) may come first; the error is its own line.
        assert!(
            self.stderr.lines().any(|l| l.starts_with("Error: ")),
            "stderr: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }

    /// stdout as one line of JSON.
    fn json(&self) -> Value {
        assert!(
            self.stdout.ends_with('\n') && self.stdout.lines().count() == 1,
            "not one line: {:?}",
            self.stdout
        );
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// Variables the binary or the example plugins read; every run starts without them.
const CLEARED_VARS: [&str; 9] = [
    "TARK_PLUGINS_DIR",
    "TARK_WASMER_COMPILER",
    "TARK_WASMER_CA_FILE",
    "NO_COLOR",
    "CLICOLOR_FORCE",
    "RUST_LOG",
    "LEGACY_PROVIDER_API_KEY",
    "DEVICE_AUTH_BASE",
    "TOOL_KIT_API",
];

/// A temporary root (the working directory of every run) with a plugins directory, one
/// compiler, and per-run environment variables.
struct Cli {
    root: tempfile::TempDir,
    compiler: Compiler,
    envs: Vec<(String, String)>,
}

impl Cli {
    fn new(compiler: Compiler) -> Self {
        ensure_plugins_built();
        Cli {
            root: tempfile::tempdir().expect("tempdir"),
            compiler,
            envs: Vec::new(),
        }
    }

    fn plugins(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    /// Set (or replace) an environment variable for the following runs.
    fn set_env(&mut self, name: &str, value: &str) {
        self.envs.retain(|(n, _)| n != name);
        self.envs.push((name.to_string(), value.to_string()));
    }

    fn unset_env(&mut self, name: &str) {
        self.envs.retain(|(n, _)| n != name);
    }

    /// Trust the WSS test server's CA (`TARK_WASMER_CA_FILE`, written to a temp file).
    fn trust(&mut self, wss: &WssTestServer) {
        let path = self.root.path().join("test-ca.pem");
        std::fs::write(&path, wss.ca_pem()).expect("write CA file");
        let path = path.to_str().expect("utf-8 path").to_string();
        self.set_env("TARK_WASMER_CA_FILE", &path);
    }

    /// `tark-wasmer --plugins-dir <plugins> --compiler <c> <args>`.
    fn run(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
        for var in CLEARED_VARS {
            cmd.env_remove(var);
        }
        for (n, v) in &self.envs {
            cmd.env(n, v);
        }
        cmd.current_dir(self.root.path())
            .arg("--plugins-dir")
            .arg(self.plugins())
            .arg("--compiler")
            .arg(self.compiler.as_str())
            .args(args);
        let out = cmd.output().expect("run tark-wasmer");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    }

    /// `plugin add tests/plugins/<name>`.
    fn add_example(&self, name: &str) {
        let src = example_plugin_dir(name);
        let r = self
            .run(&["plugin", "add", src.to_str().expect("utf-8 path")])
            .ok();
        assert!(
            r.stdout
                .contains(&format!("Successfully installed plugin: {name}")),
            "{}",
            r.stdout
        );
        assert!(self.plugins().join(name).join("plugin.wasm").is_file());
    }

    fn call(&self, id: &str, function: &str, args: &[&str]) -> Run {
        let mut all = vec!["call", id, function];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `call` prints exactly `expected` (one line of JSON) and exits 0, or 3 when
    /// `expected` is the plugin's `{"err": ...}`.
    fn expect(&self, id: &str, function: &str, args: &[&str], expected: Value) -> Run {
        let r = self.call(id, function, args);
        let code = if expected.get("err").is_some() { 3 } else { 0 };
        assert_eq!(
            r.code,
            Some(code),
            "{}: call {id} {function} {args:?}\nstdout:\n{}\nstderr:\n{}",
            self.compiler,
            r.stdout,
            r.stderr
        );
        assert_eq!(
            r.stdout,
            format!("{expected}\n"),
            "{}: call {id} {function} {args:?}\nstderr:\n{}",
            self.compiler,
            r.stderr
        );
        r
    }

    /// `call` exits 1 with `needle` in the message.
    fn expect_failure(&self, id: &str, function: &str, args: &[&str], needle: &str) -> Run {
        self.call(id, function, args).fails_with(needle)
    }

    fn data_dir(&self, id: &str) -> PathBuf {
        self.plugins().join(id).join("data")
    }

    /// The plugin's storage file as a flat string map (empty when absent).
    fn storage(&self, id: &str) -> BTreeMap<String, String> {
        let path = self.data_dir(id).join("storage.json");
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: {e}\n{text}", path.display())),
            Err(_) => BTreeMap::new(),
        }
    }

    /// Write the plugin's storage file before a run (what a previous session left).
    fn seed_storage(&self, id: &str, pairs: &[(&str, &str)]) {
        let dir = self.data_dir(id);
        std::fs::create_dir_all(&dir).expect("data dir");
        let text = serde_json::to_string_pretty(&map(pairs)).expect("serialize");
        std::fs::write(dir.join("storage.json"), text).expect("write storage.json");
    }
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// JSON text of a value, for arguments.
fn arg(v: &Value) -> String {
    v.to_string()
}

/// The JSON document inside a JSON string printed on stdout (raw legacy exports, `widget-state`).
fn inner_json(v: &Value) -> Value {
    let text = v
        .as_str()
        .unwrap_or_else(|| panic!("expected a JSON string, got {v}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"))
}

fn tmp_under_slash_tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("cli-plugins-")
        .tempdir_in("/tmp")
        .expect("tempdir under /tmp")
}

fn text_response(status: u16, body: &str) -> CannedResponse {
    CannedResponse {
        status,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: body.to_string(),
    }
}

fn inbound(conversation_id: &str, user_id: &str, text: &str, source: &str) -> Value {
    json!({
        "conversation_id": conversation_id,
        "user_id": user_id,
        "text": text,
        "metadata_json": json!({"source": source}).to_string(),
    })
}

// ---------------------------------------------------------------------------------------
// legacy-provider
// ---------------------------------------------------------------------------------------

const LP: &str = "legacy-provider";

fn legacy_models() -> Value {
    json!([
        {"id": "legacy-small", "display_name": "Legacy Small", "context_window": 8192,
         "supports_streaming": false, "supports_tools": false},
        {"id": "legacy-large", "display_name": "Legacy Large", "context_window": 128000,
         "supports_streaming": true, "supports_tools": true}
    ])
}

#[test]
fn legacy_provider_every_function() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let cli = Cli::new(compiler);
        cli.add_example(LP);

        cli.expect(
            LP,
            "info",
            &[],
            json!({
                "id": "legacy-provider",
                "display_name": "Legacy Provider",
                "description": "Example provider speaking tark's legacy ABI",
                "requires_auth": true,
                "provider": "openai"
            }),
        );
        // Raw export name: the plugin's own text as a JSON string.
        let raw = cli.call(LP, "provider_info", &[]).ok().json();
        let info = inner_json(&raw);
        assert_eq!(info["id"], json!("legacy-provider"), "{compiler}");
        assert_eq!(info["display_name"], json!("Legacy Provider"));
        assert_eq!(info["provider"], json!("openai"));
        cli.expect(LP, "models", &[], legacy_models());
        cli.expect(LP, "auth-status", &[], json!("not-authenticated"));
        cli.expect_failure(LP, "provider_auth_credentials", &[], "not authenticated");

        let creds = arg(&json!({"api_key": "sk-cli", "base_url": server.base_url()}));
        cli.expect(LP, "auth-init", &[&creds], json!({"ok": null}));
        assert_eq!(
            cli.storage(LP),
            map(&[("api_key", "sk-cli"), ("base_url", &server.base_url())])
        );
        // A new process sees what the previous one stored.
        cli.expect(LP, "auth-status", &[], json!("authenticated"));
        let raw = cli.call(LP, "provider_auth_credentials", &[]).ok().json();
        let parsed: AuthCredentials =
            serde_json::from_value(inner_json(&raw)).expect("AuthCredentials JSON");
        assert_eq!(
            parsed,
            AuthCredentials {
                access_token: "sk-cli".into(),
                project_id: None,
                api_mode: "openai_compat".into(),
                endpoint: Some(server.base_url()),
                custom_headers: Some(
                    [("x-plugin".to_string(), "legacy-provider".to_string())].into()
                ),
            },
            "{compiler}"
        );
        cli.expect(
            LP,
            "models",
            &[],
            json!([
                {"id": "test-model-a", "display_name": "test-model-a", "context_window": 128000,
                 "supports_streaming": false, "supports_tools": true},
                {"id": "test-model-b", "display_name": "test-model-b", "context_window": 128000,
                 "supports_streaming": false, "supports_tools": true}
            ]),
        );
        let raw = cli.call(LP, "provider_models", &[]).ok().json();
        assert_eq!(inner_json(&raw).as_array().map(Vec::len), Some(2));

        // chat: the echo model answers in the guest; others go to the server.
        let two = arg(&json!([
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"}
        ]));
        cli.expect(
            LP,
            "chat",
            &[&two, "echo"],
            json!({"ok": {"text": "two", "usage": {"input_tokens": 2, "output_tokens": 1},
                          "finish_reason": "stop"}}),
        );
        let one = arg(&json!([{"role": "user", "content": "hello there"}]));
        cli.expect(
            LP,
            "chat",
            &[&one, "test-model"],
            json!({"ok": {"text": "echo: hello there",
                          "usage": {"input_tokens": 1, "output_tokens": 3},
                          "finish_reason": "stop"}}),
        );
        let reqs = server.requests_to("/v1/chat/completions");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-cli"));

        let tokens = arg(&json!({"access_token": "at-1", "refresh_token": "rt-1"}));
        let raw = cli.call(LP, "auth_process_tokens", &[&tokens]).ok().json();
        assert_eq!(
            inner_json(&raw),
            json!({"access_token": "at-1", "refresh_token": "rt-1", "processed_by": "legacy-provider"}),
            "{compiler}"
        );

        // Failures: a trap, a negative code, a denied env name, a denied host.
        cli.expect_failure(LP, "chat", &[&one, "panic"], "trap");
        let r = cli.expect_failure(LP, "auth-init", &["not json"], "provider_auth_init");
        assert!(r.stderr.contains("-1"), "{compiler}: {}", r.stderr);
        cli.expect_failure(LP, "chat", &[&one, "env:PATH"], "env.get returned -2");
        let denied = arg(&json!({"api_key": "sk-cli", "base_url": server.localhost_url("")}));
        cli.expect(LP, "auth-init", &[&denied], json!({"ok": null}));
        cli.expect_failure(LP, "chat", &[&one, "test-model"], "http.post returned -2");
        assert_eq!(
            server.requests().len(),
            3,
            "{compiler}: denied request sent"
        );

        cli.expect(LP, "auth-logout", &[], json!({"ok": null}));
        cli.expect(LP, "auth-status", &[], json!("not-authenticated"));
        assert_eq!(cli.storage(LP), BTreeMap::new(), "{compiler}");
        // Raw S-convention export: the code itself (2 = not authenticated).
        cli.expect(LP, "provider_auth_status", &[], json!(2));
        cli.expect_failure(
            LP,
            "no-such-function",
            &[],
            "unknown function 'no-such-function'",
        );
        let r = cli.expect_failure(
            LP,
            "chat",
            &["[1]", "echo"],
            "argument 1 (messages) of 'chat': messages[0]: got 1; expected record { role: enum { system, user, assistant, tool }, content: string }",
        );
        assert_eq!(r.code, Some(2), "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// legacy-auth
// ---------------------------------------------------------------------------------------

const LA: &str = "legacy-auth";

#[test]
fn legacy_auth_every_function() {
    for compiler in compilers() {
        let cli = Cli::new(compiler);
        cli.add_example(LA);
        cli.expect(LA, "display-name", &[], json!("Legacy Auth"));
        cli.expect(LA, "display_name", &[], json!("Legacy Auth"));
        cli.expect(LA, "status", &[], json!("not-authenticated"));
        cli.expect_failure(LA, "get-token", &[], "not authenticated");
        cli.expect(LA, "get_endpoint", &[], json!("https://auth.example.com"));

        let creds = arg(&json!({"token": "tok-cli", "endpoint": "https://auth.internal.test"}));
        cli.expect(LA, "init_with_credentials", &[&creds], json!(0));
        assert_eq!(
            cli.storage(LA),
            map(&[
                ("endpoint", "https://auth.internal.test"),
                ("expired", "false"),
                ("token", "tok-cli")
            ]),
            "{compiler}"
        );
        cli.expect(LA, "status", &[], json!("authenticated"));
        cli.expect(LA, "get-token", &[], json!({"ok": "tok-cli"}));
        cli.expect(LA, "get_token", &[], json!("tok-cli"));
        cli.expect(LA, "get_endpoint", &[], json!("https://auth.internal.test"));

        let expired = arg(&json!({"token": "tok-old", "expired": true}));
        cli.expect(LA, "init_with_credentials", &[&expired], json!(0));
        cli.expect(LA, "status", &[], json!("expired"));

        // get_token traps without a clock (wasm32-unknown-unknown).
        let timed = arg(&json!({"token": "tok-t", "expires_at": 4_102_444_800u64}));
        cli.expect(LA, "init_with_credentials", &[&timed], json!(0));
        cli.expect_failure(LA, "get-token", &[], "trap");

        cli.expect(LA, "logout", &[], json!({"ok": null}));
        cli.expect(LA, "status", &[], json!("not-authenticated"));
        assert_eq!(cli.storage(LA), BTreeMap::new(), "{compiler}");
    }
}

/// Raw P/V-convention exports (`init_with_credentials`, `provider_auth_init`,
/// `channel_auth_init`, ...) signal failure with a negative code: `call` must fail
/// (exit 1) rather than print the code as a result.
#[test]
fn raw_legacy_calls_with_negative_codes_fail() {
    for compiler in compilers() {
        let cli = Cli::new(compiler);
        cli.add_example(LA);
        cli.add_example(LP);
        cli.add_example("legacy-channel");
        cli.expect_failure(
            LA,
            "init_with_credentials",
            &[r#"{"endpoint":"x"}"#],
            "init_with_credentials",
        );
        cli.expect_failure(
            LP,
            "provider_auth_init",
            &["not json"],
            "provider_auth_init",
        );
        cli.expect_failure(
            "legacy-channel",
            "channel_auth_init",
            &["[]"],
            "channel_auth_init",
        );
        // Success codes are printed.
        cli.expect(LP, "provider_auth_init", &[r#"{"api_key":"k"}"#], json!(0));
        cli.expect("legacy-channel", "channel_start", &[], json!(0));
    }
}

// ---------------------------------------------------------------------------------------
// Channels (legacy-channel and chat-channel)
// ---------------------------------------------------------------------------------------

const LC: &str = "legacy-channel";
const CC: &str = "chat-channel";

fn webhook_request(body: &Value) -> String {
    arg(&json!({
        "method": "POST",
        "path": "/channels/hook",
        "query": null,
        "headers": [["content-type", "application/json"]],
        "body": body.to_string()
    }))
}

fn widget(cli: &Cli, id: &str) -> Value {
    let out = cli.call(id, "widget-state", &[]).ok().json();
    inner_json(&out["ok"])
}

/// `poll` (one process each) until it returns messages; each attempt scripts `messages` for
/// its own new connection. Returns the successful run's stdout.
fn poll_until_messages(cli: &Cli, id: &str, wss: &WssTestServer, messages: &[String]) -> String {
    for _ in 0..10 {
        wss.push_to_next_connection(messages.to_vec());
        let r = cli.call(id, "poll", &[]).ok();
        let v = r.json();
        if v["ok"].as_array().is_some_and(|a| !a.is_empty()) {
            return r.stdout;
        }
    }
    panic!(
        "{}: {id}: poll never returned the pushed messages",
        cli.compiler
    );
}

/// Everything both channel plugins answer identically. Returns the (closed) WebSocket
/// connection of the `poll` process that delivered the messages, for
/// [`assert_closed_gracefully`] at the end of the test.
fn channel_common(
    cli: &Cli,
    id: &str,
    http: &HttpTestServer,
    wss: &WssTestServer,
) -> WsConnectionInfo {
    let c = cli.compiler;
    cli.expect(id, "auth-status", &[], json!("not-authenticated"));
    assert_eq!(
        widget(cli, id),
        json!({"starts": 0, "polls": 0, "sent": 0, "connected": false}),
        "{c}"
    );
    cli.expect(id, "start", &[], json!({"ok": null}));
    cli.expect(id, "start", &[], json!({"ok": null}));
    cli.expect(id, "stop", &[], json!({"ok": null}));
    // Storage persists across processes, per-instance counters do not.
    assert_eq!(
        widget(cli, id),
        json!({"starts": 2, "polls": 0, "sent": 0, "connected": false}),
        "{c}"
    );

    let creds =
        arg(&json!({"access_token": TOKEN, "gateway_url": wss.url(), "api_base": http.base_url()}));
    cli.expect(id, "auth-init", &[&creds], json!({"ok": null}));
    cli.expect(id, "auth-status", &[], json!("authenticated"));
    assert_eq!(
        cli.storage(id),
        map(&[
            ("api_base", &http.base_url()),
            ("gateway_url", &wss.url()),
            ("starts", "2"),
            ("token", TOKEN)
        ]),
        "{c}"
    );

    let ok_body = json!({"conversation_id": "c-7", "user_id": "u-7", "text": "via webhook"});
    cli.expect(
        id,
        "handle-webhook",
        &[&webhook_request(&ok_body)],
        json!({"ok": {
            "status": 200,
            "headers": [["content-type", "application/json"]],
            "body": "{\"ok\":true}",
            "messages": [inbound("c-7", "u-7", "via webhook", "webhook")]
        }}),
    );
    cli.expect(
        id,
        "handle-webhook",
        &[&webhook_request(&json!({"unexpected": true}))],
        json!({"ok": {"status": 400, "headers": [], "body": "bad request", "messages": []}}),
    );
    let create = arg(&json!({
        "t": "MESSAGE_CREATE",
        "d": {"channel_id": "chan-1", "author_id": "author-1", "content": "gateway hi"}
    }));
    cli.expect(
        id,
        "handle-gateway-event",
        &[&create],
        json!({"ok": [inbound("chan-1", "author-1", "gateway hi", "gateway")]}),
    );
    cli.expect(
        id,
        "handle-gateway-event",
        &[r#"{"t":"TYPING_START","d":{}}"#],
        json!({"ok": []}),
    );

    // poll: connect with the Bearer header, identify, receive the scripted messages.
    let before = wss.connections().len();
    let stdout = poll_until_messages(
        cli,
        id,
        wss,
        &[
            json!({"conversation_id": "conv-1", "user_id": "user-1", "text": "hi from ws"})
                .to_string(),
            "plain text frame".to_string(),
        ],
    );
    assert_eq!(
        stdout,
        format!(
            "{}\n",
            json!({"ok": [
                inbound("conv-1", "user-1", "hi from ws", "ws"),
                inbound("ws", "ws", "plain text frame", "ws")
            ]})
        ),
        "{c}"
    );
    let conns = wss.connections();
    assert!(conns.len() > before, "{c}");
    let last = conns.last().expect("a connection");
    assert_eq!(
        last.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    let index = last.index;
    // The process has exited: its connection is gone, and it was closed with a close
    // frame (after the frames the plugin sent), not dropped.
    assert!(
        wait_until(WAIT, || wss
            .connections()
            .get(index)
            .is_some_and(|conn| !conn.is_open())),
        "{c}: connection left open by an exited process"
    );
    let conn = wss.connections().swap_remove(index);

    let msg = arg(&json!({
        "conversation_id": "conv-9",
        "text": "hello out there",
        "message_id": null,
        "is_final": true,
        "metadata_json": ""
    }));
    cli.expect(
        id,
        "send",
        &[&msg],
        json!({"ok": {"success": true, "message_id": "msg-1", "error": null}}),
    );
    let sent = http.requests_to("/send");
    assert_eq!(sent.len(), 1, "{c}");
    assert_eq!(
        sent[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        sent[0].json(),
        Some(
            json!({"conversation_id": "conv-9", "text": "hello out there", "message_id": null, "is_final": true})
        )
    );
    assert_eq!(widget(cli, id)["sent"], json!(1), "{c}");

    cli.expect(id, "auth-logout", &[], json!({"ok": null}));
    cli.expect(id, "auth-status", &[], json!("not-authenticated"));
    assert_eq!(
        cli.storage(id),
        map(&[("sent", "1"), ("starts", "2")]),
        "{c}"
    );
    conn
}

/// A `call` process that polled a channel exits only after the frames its plugin sent
/// (the identify frame, `ws.send` answered ok) went out and the WebSocket was closed with a
/// close frame. Checked last, for every compiler at once, so the other functions are
/// covered even when this fails.
fn assert_closed_gracefully(polled: &[(Compiler, WsConnectionInfo)]) {
    for (c, conn) in polled {
        assert_eq!(
            conn.received
                .iter()
                .map(|m| serde_json::from_str::<Value>(m).unwrap_or(Value::Null))
                .collect::<Vec<_>>(),
            vec![json!({"op": "identify", "token": TOKEN})],
            "{c}: frames sent by the plugin before `call` exited were lost: {conn:#?}"
        );
    }
    for (c, conn) in polled {
        assert_eq!(
            conn.closed.as_deref(),
            Some("closed"),
            "{c}: `call` exited without closing the WebSocket (no close frame): {conn:#?}"
        );
    }
}

fn denied_gateway_creds(wss: &WssTestServer, http: &HttpTestServer) -> String {
    // 127.0.0.2 is not in the allowlist ["127.0.0.1", "localhost"].
    let denied = format!("wss://127.0.0.2:{}/", wss.port());
    arg(&json!({"access_token": TOKEN, "gateway_url": denied, "api_base": http.base_url()}))
}

#[test]
fn legacy_channel_every_function() {
    let mut polled = Vec::new();
    for compiler in compilers() {
        let http = HttpTestServer::start();
        let wss = WssTestServer::start();
        let mut cli = Cli::new(compiler);
        cli.trust(&wss);
        cli.add_example(LC);

        cli.expect(
            LC,
            "info",
            &[],
            json!({
                "id": "legacy-channel",
                "display_name": "Legacy Channel",
                "description": "Example channel speaking tark's legacy ABI",
                "supports_streaming": false,
                "supports_edits": true
            }),
        );
        let raw = cli.call(LC, "channel_info", &[]).ok().json();
        assert_eq!(inner_json(&raw)["id"], json!("legacy-channel"));

        polled.push((compiler, channel_common(&cli, LC, &http, &wss)));

        // Legacy failures exit non-zero (3: the plugin failed).
        cli.expect_failure(LC, "poll", &[], "not configured");
        let r = cli.expect_failure(
            LC,
            "auth-init",
            &[r#"{"gateway_url":"wss://x/"}"#],
            "channel_auth_init",
        );
        assert!(r.stderr.contains("-1"), "{compiler}: {}", r.stderr);
        cli.expect_failure(
            LC,
            "handle-gateway-event",
            &["not json"],
            "invalid gateway event JSON",
        );
        cli.expect(
            LC,
            "auth-init",
            &[&denied_gateway_creds(&wss, &http)],
            json!({"ok": null}),
        );
        let before = wss.connections().len();
        cli.expect_failure(LC, "poll", &[], "ws.connect returned -2");
        assert_eq!(wss.connections().len(), before, "{compiler}");
    }
    assert_closed_gracefully(&polled);
}

#[test]
fn chat_channel_every_function() {
    let mut polled = Vec::new();
    for compiler in compilers() {
        let http = HttpTestServer::start();
        let wss = WssTestServer::start();
        let mut cli = Cli::new(compiler);
        cli.trust(&wss);
        cli.add_example(CC);

        cli.expect(
            CC,
            "info",
            &[],
            json!({
                "id": "chat-channel",
                "display_name": "Chat Channel",
                "description": "Example channel speaking the canonical ABI",
                "supports_streaming": false,
                "supports_edits": true
            }),
        );

        polled.push((compiler, channel_common(&cli, CC, &http, &wss)));

        // Canonical err results are printed as values (and exit 3).
        cli.expect(CC, "poll", &[], json!({"err": "not configured"}));
        let r = cli
            .call(CC, "auth-init", &[r#"{"gateway_url":"wss://x/"}"#])
            .plugin_err();
        let err = r.json()["err"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| panic!("expected err: {}", r.stdout));
        assert!(
            err.starts_with("invalid credentials: missing field `access_token`"),
            "{compiler}: {err}"
        );
        cli.expect(
            CC,
            "handle-gateway-event",
            &["not json"],
            json!({"err": "invalid gateway event JSON"}),
        );
        cli.expect(
            CC,
            "auth-init",
            &[&denied_gateway_creds(&wss, &http)],
            json!({"ok": null}),
        );
        let before = wss.connections().len();
        let v = cli.call(CC, "poll", &[]).plugin_err().json();
        let err = v["err"].as_str().unwrap_or_default();
        assert!(
            err.starts_with("ws.connect failed: WebSocket host not allowed"),
            "{compiler}: {v}"
        );
        assert_eq!(wss.connections().len(), before, "{compiler}");
        // Wrong argument shapes are refused before the call.
        cli.expect_failure(CC, "send", &["{}"], "conversation_id");
        cli.expect_failure(CC, "start", &["extra"], "takes 0 argument(s)");
    }
    assert_closed_gracefully(&polled);
}

// ---------------------------------------------------------------------------------------
// Canonical auth: sdk-auth and device-auth
// ---------------------------------------------------------------------------------------

const SA: &str = "sdk-auth";
const DA: &str = "device-auth";

#[test]
fn sdk_auth_every_function() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let cli = Cli::new(compiler);
        cli.add_example(SA);
        cli.seed_storage(SA, &[("auth_base", &server.base_url())]);

        cli.expect(SA, "display-name", &[], json!("My Auth Provider"));
        cli.expect(SA, "status", &[], json!("not-authenticated"));
        cli.expect(SA, "get-token", &[], json!({"err": "Not authenticated"}));
        cli.expect(
            SA,
            "start-device-flow",
            &[],
            json!({"ok": {
                "device_code": "device-code-123",
                "user_code": "USER-CODE",
                "verification_url": format!("{}/device", server.base_url()),
                "expires_in": 900,
                "interval": 5
            }}),
        );
        assert_eq!(server.requests_to("/device/code").len(), 1, "{compiler}");

        cli.expect(
            SA,
            "poll",
            &["device-code-123"],
            json!({"error": "Unexpected response"}),
        );
        server.set_response("POST", "/token", text_response(400, "wait"));
        cli.expect(SA, "poll", &["device-code-123"], json!("pending"));
        server.set_response("POST", "/token", text_response(200, "cli-token"));
        cli.expect(
            SA,
            "poll",
            &["device-code-123"],
            json!({"success": "cli-token"}),
        );
        cli.expect(SA, "status", &[], json!("authenticated"));
        cli.expect(SA, "get-token", &[], json!({"ok": "cli-token"}));
        cli.expect(SA, "logout", &[], json!({"ok": null}));
        cli.expect(SA, "status", &[], json!("not-authenticated"));
        assert_eq!(
            cli.storage(SA),
            map(&[("auth_base", &server.base_url())]),
            "{compiler}"
        );
        cli.expect_failure(SA, "poll", &[], "'poll' takes 1 argument(s)");
    }
}

#[test]
fn device_auth_every_function() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        server.set_oauth(OAuthScript {
            pending_polls: 1,
            ..OAuthScript::default()
        });
        let mut cli = Cli::new(compiler);
        cli.set_env("DEVICE_AUTH_BASE", &server.base_url());
        cli.add_example(DA);

        cli.expect(DA, "display-name", &[], json!("Device Auth"));
        cli.expect(DA, "status", &[], json!("not-authenticated"));
        cli.expect(DA, "get-token", &[], json!({"err": "not authenticated"}));
        cli.expect(
            DA,
            "start-device-flow",
            &[],
            json!({"ok": {
                "device_code": "test-device-code",
                "user_code": "TEST-CODE",
                "verification_url": server.url("/oauth/device"),
                "expires_in": 900,
                "interval": 1
            }}),
        );
        cli.expect(DA, "poll", &["test-device-code"], json!("pending"));
        cli.expect(
            DA,
            "poll",
            &["test-device-code"],
            json!({"success": "test-access-token"}),
        );
        assert_eq!(server.token_polls(), 2, "{compiler}");
        cli.expect(DA, "status", &[], json!("authenticated"));
        cli.expect(DA, "get-token", &[], json!({"ok": "test-access-token"}));
        let stored = cli.storage(DA);
        assert_eq!(
            stored.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["access_token", "expires_at", "refresh_token"],
            "{compiler}"
        );

        server.set_response(
            "POST",
            "/oauth/token",
            CannedResponse::json(400, &json!({"error": "expired_token"})),
        );
        cli.expect(DA, "poll", &["test-device-code"], json!("expired"));
        server.set_response(
            "POST",
            "/oauth/token",
            CannedResponse::json(
                400,
                &json!({"error": "access_denied", "error_description": "no"}),
            ),
        );
        cli.expect(
            DA,
            "poll",
            &["test-device-code"],
            json!({"error": "access_denied: no"}),
        );

        cli.expect(DA, "logout", &[], json!({"ok": null}));
        cli.expect(DA, "status", &[], json!("not-authenticated"));
        assert_eq!(cli.storage(DA), BTreeMap::new(), "{compiler}");

        // A denied host: the host's message as the err value, nothing sent.
        cli.set_env("DEVICE_AUTH_BASE", &server.localhost_url(""));
        server.clear_requests();
        cli.expect(
            DA,
            "start-device-flow",
            &[],
            json!({"err": format!(
                "permission denied: {} is not allowed by capabilities.http",
                server.localhost_url("/oauth/device/code")
            )}),
        );
        assert!(server.requests().is_empty(), "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// tool-kit
// ---------------------------------------------------------------------------------------

const TK: &str = "tool-kit";

fn tool_ok(output: &str) -> Value {
    json!({"success": true, "output": output, "error": null})
}

fn tool_failed(error: &str) -> Value {
    json!({"success": false, "output": "", "error": error})
}

#[test]
fn tool_kit_every_function() {
    let dir = tmp_under_slash_tmp();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "file body\n").expect("write file");
    let file = file.to_str().expect("utf-8 path").to_string();
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let mut cli = Cli::new(compiler);
        cli.add_example(TK);

        let tools = cli.call(TK, "get-tools", &[]).ok().json();
        let tools = tools.as_array().expect("get-tools prints an array");
        let names: Vec<&str> = tools.iter().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(
            names,
            vec![
                "word_count",
                "json_pretty",
                "read_file",
                "fetch_status",
                "delete_everything"
            ],
            "{compiler}"
        );
        for t in tools {
            let keys: Vec<&str> = t
                .as_object()
                .expect("tool-def object")
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, vec!["name", "description", "parameters_schema"]);
            let schema: Value =
                serde_json::from_str(t["parameters_schema"].as_str().expect("schema is text"))
                    .expect("schema is JSON");
            assert_eq!(schema["type"], json!("object"), "{t}");
        }

        for (tool, risk) in [
            ("word_count", "read-only"),
            ("json_pretty", "read-only"),
            ("read_file", "read-only"),
            ("fetch_status", "risky"),
            ("delete_everything", "dangerous"),
            ("nope", "dangerous"),
        ] {
            cli.expect(TK, "get-risk-level", &[tool], json!(risk));
        }

        cli.expect(
            TK,
            "execute",
            &["word_count", r#"{"text":"a b  c"}"#],
            tool_ok("3"),
        );
        cli.expect(
            TK,
            "execute",
            &["json_pretty", r#"{"json":"[1,{\"a\":true}]"}"#],
            tool_ok("[\n  1,\n  {\n    \"a\": true\n  }\n]"),
        );
        cli.expect(
            TK,
            "execute",
            &["word_count", "{}"],
            tool_failed("invalid arguments: missing field `text`"),
        );
        let path_arg = arg(&json!({ "path": file }));
        cli.expect(
            TK,
            "execute",
            &["read_file", &path_arg],
            tool_ok("file body\n"),
        );
        cli.expect(
            TK,
            "execute",
            &["read_file", r#"{"path":"/etc/hostname"}"#],
            tool_failed(
                "fs.read: permission denied: /etc/hostname is not allowed by capabilities.fs_read",
            ),
        );
        cli.expect(
            TK,
            "execute",
            &["fetch_status", r#"{"path":"/status/201"}"#],
            tool_failed("TOOL_KIT_API is not set"),
        );
        cli.set_env("TOOL_KIT_API", &server.base_url());
        cli.expect(
            TK,
            "execute",
            &["fetch_status", r#"{"path":"/status/201"}"#],
            tool_ok(r#"{"status":201,"body_len":14}"#),
        );
        assert_eq!(server.requests_to("/status/201").len(), 1, "{compiler}");
        cli.set_env("TOOL_KIT_API", &server.localhost_url(""));
        cli.expect(
            TK,
            "execute",
            &["fetch_status", r#"{"path":"/status/201"}"#],
            tool_failed(&format!(
                "permission denied: {} is not allowed by capabilities.http",
                server.localhost_url("/status/201")
            )),
        );
        cli.unset_env("TOOL_KIT_API");
        assert_eq!(server.requests().len(), 1, "{compiler}");
        cli.expect(
            TK,
            "execute",
            &["delete_everything", "{}"],
            tool_failed("refused"),
        );
        cli.expect(
            TK,
            "execute",
            &["rm", "{}"],
            tool_failed("unknown tool: rm"),
        );

        cli.expect_failure(
            TK,
            "no-such-function",
            &[],
            "unknown function 'no-such-function'",
        );
        cli.expect_failure(TK, "execute", &["word_count"], "takes 2 argument(s)");
    }
}

// ---------------------------------------------------------------------------------------
// openai-provider
// ---------------------------------------------------------------------------------------

const OP: &str = "openai-provider";

#[test]
fn openai_provider_every_function() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let cli = Cli::new(compiler);
        cli.add_example(OP);

        cli.expect(
            OP,
            "info",
            &[],
            json!({
                "id": "openai-provider",
                "display_name": "OpenAI-compatible",
                "description": "Chat completions from any OpenAI-compatible API (example plugin)",
                "requires_auth": true
            }),
        );
        cli.expect(OP, "models", &[], json!([]));
        cli.expect(OP, "auth-status", &[], json!("not-authenticated"));
        cli.expect(
            OP,
            "auth-init",
            &[r#"{"api_key":"","base_url":"http://127.0.0.1:1"}"#],
            json!({"err": "invalid credentials: empty api_key"}),
        );
        let creds = arg(&json!({"api_key": "sk-op", "base_url": server.base_url()}));
        cli.expect(OP, "auth-init", &[&creds], json!({"ok": null}));
        cli.expect(OP, "auth-status", &[], json!("authenticated"));
        cli.expect(
            OP,
            "models",
            &[],
            json!([
                {"id": "test-model-a", "display_name": "test-model-a", "context_window": 128000,
                 "supports_streaming": true, "supports_tools": false},
                {"id": "test-model-b", "display_name": "test-model-b", "context_window": 128000,
                 "supports_streaming": true, "supports_tools": false}
            ]),
        );
        let msgs = arg(&json!([
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"}
        ]));
        cli.expect(
            OP,
            "chat",
            &[&msgs, "test-model"],
            json!({"ok": {"text": "echo: hello there",
                          "usage": {"input_tokens": 2, "output_tokens": 3},
                          "finish_reason": "stop"}}),
        );
        let reqs = server.requests_to("/v1/chat/completions");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-op"));

        // A stream lives in one instance: a later process does not know it.
        cli.expect(
            OP,
            "chat-stream-start",
            &[&msgs, "test-model"],
            json!({"ok": 1}),
        );
        assert_eq!(
            server.requests_to("/v1/chat/completions")[1]
                .json()
                .map(|b| b["stream"].clone()),
            Some(json!(true))
        );
        cli.expect(
            OP,
            "chat-stream-poll",
            &["1"],
            json!({"err": "unknown stream 1"}),
        );

        cli.expect(OP, "auth-logout", &[], json!({"ok": null}));
        cli.expect(OP, "auth-status", &[], json!("not-authenticated"));
        cli.expect(
            OP,
            "chat",
            &[&msgs, "m"],
            json!({"err": "not authenticated"}),
        );
        assert_eq!(cli.storage(OP), BTreeMap::new(), "{compiler}");

        cli.expect_failure(OP, "chat", &["not a list", "m"], "messages");
        cli.expect_failure(OP, "chat-stream-poll", &["-1"], "stream-id");
    }
}

// ---------------------------------------------------------------------------------------
// hook-guard
// ---------------------------------------------------------------------------------------

const HG: &str = "hook-guard";

fn hook_event(kind: &str, session: &str, payload: &Value) -> String {
    arg(&json!({"kind": kind, "session_id": session, "payload_json": payload.to_string()}))
}

#[test]
fn hook_guard_every_function() {
    for compiler in compilers() {
        let cli = Cli::new(compiler);
        cli.add_example(HG);
        cli.expect(HG, "name", &[], json!("Hook Guard"));
        cli.expect(
            HG,
            "subscriptions",
            &[],
            json!([
                "user-message",
                "before-tool-call",
                "after-tool-call",
                "session-start"
            ]),
        );
        cli.expect(
            HG,
            "on-event",
            &[&hook_event(
                "user-message",
                "s",
                &json!({"role": "user", "content": "forbidden"}),
            )],
            json!({"block": "message contains a forbidden word"}),
        );
        let v = cli
            .call(
                HG,
                "on-event",
                &[&hook_event(
                    "user-message",
                    "s",
                    &json!({"role": "user", "content": "a secret-token"}),
                )],
            )
            .ok()
            .json();
        assert_eq!(
            inner_json(&v["rewrite"]),
            json!({"role": "user", "content": "a [redacted]"}),
            "{compiler}"
        );
        cli.expect(
            HG,
            "on-event",
            &[&hook_event(
                "before-tool-call",
                "s",
                &json!({"tool": "shell", "arguments": "{}"}),
            )],
            json!({"block": "shell is not allowed"}),
        );
        cli.expect(
            HG,
            "on-event",
            &[&hook_event(
                "user-message",
                "s",
                &json!({"role": "user", "content": "hi"}),
            )],
            json!("allow"),
        );
        cli.expect(
            HG,
            "on-event",
            &[&hook_event(
                "session-start",
                "sess-cli",
                &json!({"session_id": "x", "workspace": "/w"}),
            )],
            json!("allow"),
        );
        for _ in 0..2 {
            cli.expect(
                HG,
                "on-event",
                &[&hook_event(
                    "after-tool-call",
                    "sess-cli",
                    &json!({"tool": "t"}),
                )],
                json!("allow"),
            );
        }
        // The count carried over from one process to the next.
        assert_eq!(
            cli.storage(HG),
            map(&[("last_session", "sess-cli"), ("tool_calls", "2")]),
            "{compiler}"
        );
        let bad = arg(&json!({"kind": "user-message", "session_id": "s", "payload_json": "{nope"}));
        cli.expect(HG, "on-event", &[&bad], json!("allow"));
        cli.expect_failure(
            HG,
            "on-event",
            &[r#"{"kind":"no-such-kind","session_id":"s","payload_json":"{}"}"#],
            "no-such-kind",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Failures that are not about one function
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_plugins_and_disabled_plugins_fail() {
    for compiler in compilers() {
        let cli = Cli::new(compiler);
        cli.add_example(TK);
        cli.expect_failure(
            "no-such-plugin",
            "get-tools",
            &[],
            "Plugin 'no-such-plugin' not found",
        );
        cli.run(&["plugin", "disable", TK]).ok();
        cli.expect_failure(TK, "get-tools", &[], "disabled");
        cli.run(&["plugin", "enable", TK]).ok();
        let r = cli.call(TK, "get-risk-level", &["word_count"]).ok();
        assert_eq!(r.stdout, "\"read-only\"\n", "{compiler}");
    }
}

/// The plugins directory layout the tests rely on: `<plugins>/<id>/data/storage.json`.
#[test]
fn storage_written_by_one_call_is_read_by_the_next() {
    for compiler in compilers() {
        let cli = Cli::new(compiler);
        cli.add_example(LA);
        cli.add_example(SA);
        cli.seed_storage(SA, &[("access_token", "seeded")]);
        cli.expect(SA, "get-token", &[], json!({"ok": "seeded"}));
        cli.expect(
            LA,
            "init_with_credentials",
            &[r#"{"token":"t-1"}"#],
            json!(0),
        );
        cli.expect(LA, "get-token", &[], json!({"ok": "t-1"}));
        let path: PathBuf = cli.data_dir(LA).join("storage.json");
        assert!(Path::new(&path).is_file(), "{compiler}");
        // Another plugin's storage is separate.
        cli.expect(SA, "logout", &[], json!({"ok": null}));
        cli.expect(LA, "get-token", &[], json!({"ok": "t-1"}));
        cli.expect(SA, "get-token", &[], json!({"err": "Not authenticated"}));
    }
}
