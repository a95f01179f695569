//! The `tark-wasmer` binary's call rules and sessions, driven as a user would: one exit
//! code rule for both ABIs, argument errors in WIT terms, several calls on one live
//! instance (`call ID f -- g`, `call --stream`, `repl`, `repl --jsonl`), and `call PATH`
//! on a plugin directory that is not installed. Real example plugins, real servers on
//! 127.0.0.1, the default compiler only (the call path is compiler-neutral and
//! `tests/cli_plugins.rs` covers both).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use common::fixtures::{ensure_plugins_built, example_plugin_dir};
use common::servers::{HttpTestServer, WssTestServer};

#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// stdout as JSON lines.
    fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}:\n{}",
            self.stderr
        );
        self
    }
}

const CLEARED_VARS: [&str; 6] = [
    "TARK_PLUGINS_DIR",
    "TARK_WASMER_COMPILER",
    "TARK_WASMER_CA_FILE",
    "RUST_LOG",
    "NO_COLOR",
    "CLICOLOR_FORCE",
];

struct Cli {
    root: tempfile::TempDir,
    envs: Vec<(String, String)>,
}

impl Cli {
    fn new() -> Self {
        ensure_plugins_built();
        let root = tempfile::tempdir().expect("tempdir");
        let data = root.path().join("xdg-data");
        Cli {
            envs: vec![
                ("XDG_DATA_HOME".into(), data.to_str().expect("utf-8").into()),
                (
                    "TARK_WASMER_CACHE_DIR".into(),
                    root.path().join("cache").to_str().expect("utf-8").into(),
                ),
            ],
            root,
        }
    }

    fn plugins(&self) -> PathBuf {
        self.root.path().join("plugins")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
        for v in CLEARED_VARS {
            cmd.env_remove(v);
        }
        for (n, v) in &self.envs {
            cmd.env(n, v);
        }
        cmd.current_dir(self.root.path())
            .arg("--plugins-dir")
            .arg(self.plugins())
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_with_input(args, "")
    }

    fn run_with_input(&self, args: &[&str], input: &str) -> Run {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run tark-wasmer");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("wait");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("utf-8"),
            stderr: String::from_utf8(out.stderr).expect("utf-8"),
        }
    }

    fn add(&self, name: &str) {
        let src = example_plugin_dir(name);
        self.run(&["plugin", "add", src.to_str().expect("utf-8"), "--yes"])
            .code(0);
    }

    fn trust(&mut self, wss: &WssTestServer) {
        let path = self.root.path().join("ca.pem");
        std::fs::write(&path, wss.ca_pem()).expect("write CA");
        self.envs.push((
            "TARK_WASMER_CA_FILE".into(),
            path.to_str().expect("utf-8").into(),
        ));
    }
}

fn messages() -> String {
    json!([
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"}
    ])
    .to_string()
}

#[test]
fn exit_codes_follow_one_rule_for_both_abis() {
    let cli = Cli::new();
    for p in ["legacy-auth", "sdk-auth", "legacy-provider"] {
        cli.add(p);
    }
    // A plugin's err: printed as {"err": ...} and exit 3, whatever the ABI.
    for p in ["legacy-auth", "sdk-auth"] {
        let r = cli
            .run(&["call", p, "get-token"])
            .code(3)
            .stderr_has(&format!("Error: plugin {p}: get-token returned err: "));
        let v = r.lines();
        assert_eq!(v.len(), 1);
        assert!(
            v[0]["err"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("not authenticated")),
            "{p}: {}",
            r.stdout
        );
    }
    // Usage errors exit 2 and say what fits, the same way for both ABIs.
    for p in ["legacy-auth", "sdk-auth"] {
        let r = cli
            .run(&["call", p, "display-name", "extra"])
            .code(2)
            .stderr_has("'display-name' takes 0 argument(s) (none); 1 given");
        assert!(r.stdout.is_empty());
        cli.run(&["call", p, "get-tokn"])
            .code(2)
            .stderr_has("unknown function 'get-tokn'")
            .stderr_has("Did you mean 'get-token'?");
    }
    // The legacy list holds only what legacy plugins answer.
    let r = cli.run(&["call", "legacy-auth", "nope"]).code(2);
    assert!(r.stderr.contains("get_endpoint"), "{}", r.stderr);
    assert!(!r.stderr.contains("start-device-flow"), "{}", r.stderr);
    cli.run(&["call", "legacy-auth", "start-device-flow"])
        .code(2)
        .stderr_has("not available for auth plugins of the legacy ABI");
    // Malformed JSON is an error unless the parameter is a string.
    cli.run(&["call", "legacy-provider", "chat", "[{\"role\":\"user\",", "m"])
        .code(2)
        .stderr_has("argument 1 (messages) of 'chat': invalid JSON at line 1 column 16: EOF while parsing a value; expected list<message>");
    cli.run(&[
        "call",
        "legacy-provider",
        "chat",
        r#"[{"role":"user","content":"a"},{"role":"robot","content":"b"}]"#,
        "m",
    ])
    .code(2)
    .stderr_has(
        "messages[1].role: unknown case \"robot\"; expected enum { system, user, assistant, tool }",
    );
    cli.run(&["call", "sdk-auth", "poll", "{not json"]).code(0);
    // Host and limit failures exit 4.
    let msgs = r#"[{"role":"user","content":"x"}]"#;
    cli.run(&["call", "legacy-provider", "chat", msgs, "panic"])
        .code(4)
        .stderr_has("trapped");
    cli.run(&[
        "--cpu-seconds",
        "0.005",
        "call",
        "legacy-provider",
        "chat",
        msgs,
        "loop",
    ])
    .code(4)
    .stderr_has("exceeded its CPU budget");
    // Everything else: 1.
    cli.run(&["call", "no-such-plugin", "info"])
        .code(1)
        .stderr_has("Plugin 'no-such-plugin' not found");
    // The help documents the codes.
    let help = cli.run(&["call", "--help"]).code(0);
    assert!(
        help.stdout.contains("3  the plugin reported a failure"),
        "{}",
        help.stdout
    );
    assert!(help.stdout.contains("  tool: get-tools"), "{}", help.stdout);
    assert!(help.stdout.contains("  hook: name"), "{}", help.stdout);
}

#[test]
fn a_session_keeps_one_instance_and_streams_chunks() {
    let server = HttpTestServer::start();
    let cli = Cli::new();
    cli.add("openai-provider");
    let creds = json!({"api_key": "sk-s", "base_url": server.base_url()}).to_string();
    let msgs = messages();
    // Three calls, one instance: the stream id of the second is known to the third.
    let r = cli
        .run(&[
            "call",
            "openai-provider",
            "auth-init",
            &creds,
            "--",
            "chat-stream-start",
            &msgs,
            "test-model",
            "--",
            "chat-stream-poll",
            "1",
        ])
        .code(0);
    let v = r.lines();
    assert_eq!(v.len(), 3, "{}", r.stdout);
    assert_eq!(v[0], json!({"ok": null}));
    assert_eq!(v[1], json!({"ok": 1}));
    assert_eq!(v[2]["ok"]["done"], json!(false), "{}", r.stdout);
    // --stream: start, then poll until done, a JSON line per chunk.
    let r = cli
        .run(&[
            "call",
            "--stream",
            "openai-provider",
            "chat",
            &msgs,
            "test-model",
        ])
        .code(0);
    let chunks = r.lines();
    assert!(chunks.len() >= 2, "{}", r.stdout);
    let text: String = chunks
        .iter()
        .filter_map(|c| c["ok"]["text"].as_str())
        .collect();
    assert_eq!(
        text.split_whitespace().collect::<Vec<_>>(),
        ["echo:", "hello", "there"]
    );
    let last = chunks.last().expect("a chunk");
    assert_eq!(last["ok"]["done"], json!(true));
    assert!(chunks[..chunks.len() - 1]
        .iter()
        .all(|c| c["ok"]["done"] == json!(false)));
    // A failure inside a session stops it with the failing call's code.
    let r = cli
        .run(&[
            "call",
            "openai-provider",
            "chat-stream-poll",
            "7",
            "--",
            "info",
        ])
        .code(3);
    assert_eq!(r.lines(), vec![json!({"err": "unknown stream 7"})]);
    // --stream needs a streaming provider.
    cli.run(&["call", "--stream", "openai-provider", "models"])
        .code(2)
        .stderr_has("--stream streams a provider's chat");
}

#[test]
fn repl_reads_json_lines_and_interactive_lines() {
    let server = HttpTestServer::start();
    let cli = Cli::new();
    cli.add("openai-provider");
    let creds = json!({"api_key": "sk-r", "base_url": server.base_url()});
    let msgs: Value = serde_json::from_str(&messages()).expect("json");
    let input = [
        json!({"function": "auth-init", "args": [creds.to_string()], "id": 1}),
        json!({"function": "chat-stream-start", "args": [msgs, "test-model"], "id": 2}),
        json!({"function": "chat-stream-poll", "args": [1], "id": 3}),
        json!({"function": "chat-stream-poll", "args": [99]}),
        json!({"function": "chatt"}),
    ]
    .iter()
    .map(|v| v.to_string() + "\n")
    .collect::<String>()
        + "{broken\n";
    let r = cli
        .run_with_input(&["repl", "openai-provider", "--jsonl"], &input)
        .code(0);
    let v = r.lines();
    assert_eq!(v.len(), 6, "{}", r.stdout);
    assert_eq!(v[0], json!({"result": {"ok": null}, "id": 1}));
    assert_eq!(v[1], json!({"result": {"ok": 1}, "id": 2}));
    assert_eq!(v[2]["id"], json!(3));
    assert_eq!(v[2]["result"]["ok"]["done"], json!(false), "{}", r.stdout);
    assert_eq!(v[3]["result"], json!({"err": "unknown stream 99"}));
    assert_eq!(v[3]["error"]["code"], json!(3));
    assert_eq!(v[4]["error"]["code"], json!(2));
    assert!(v[4]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("Did you mean 'chat'?")));
    assert_eq!(v[5]["error"]["code"], json!(2));

    // Interactive syntax on a pipe: FUNCTION ARGS with shell quoting, `functions`.
    let input = format!(
        "info\nchat-stream-start '{}' test-model\nchat-stream-poll 1\nfunctions\nquit\ninfo\n",
        messages()
    );
    let r = cli
        .run_with_input(&["repl", "openai-provider"], &input)
        .code(0);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("{\"id\":\"openai-provider\""),
        "{}",
        r.stdout
    );
    assert_eq!(lines[1], "{\"ok\":1}", "{}", r.stdout);
    assert!(lines[2].starts_with("{\"ok\":{\"text\":"), "{}", r.stdout);
    assert!(
        lines.contains(
            &"chat: func(messages: list<message>, model: string) -> result<chat-response, string>"
        ),
        "{}",
        r.stdout
    );
    // Nothing after `quit`.
    assert_eq!(lines.len(), 3 + 8, "{}", r.stdout);
}

#[test]
fn repl_on_a_terminal_prompts_and_keeps_going_after_errors() {
    let cli = Cli::new();
    cli.add("sdk-auth");
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let line = [
        quote(env!("CARGO_BIN_EXE_tark-wasmer")),
        "--plugins-dir".into(),
        quote(cli.plugins().to_str().expect("utf-8")),
        "repl".into(),
        "sdk-auth".into(),
    ]
    .join(" ");
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    for (n, v) in &cli.envs {
        cmd.env(n, v);
    }
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"display-name\nget-tokn\nget-token\ndisplay-name\nquit\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("tark-wasmer repl: plugin sdk-auth (canonical ABI)"),
        "{text}"
    );
    assert!(text.contains("sdk-auth> "), "{text}");
    assert!(text.contains("Did you mean"), "{text}");
    assert!(text.contains("{\"err\":\"Not authenticated\"}"), "{text}");
    assert_eq!(text.matches("\"My Auth Provider\"").count(), 2, "{text}");
}

#[test]
fn channel_start_and_poll_share_one_instance() {
    let http = HttpTestServer::start();
    let wss = WssTestServer::start();
    let mut cli = Cli::new();
    cli.trust(&wss);
    cli.add("chat-channel");
    let creds = json!({"access_token": "t", "gateway_url": wss.url(), "api_base": http.base_url()})
        .to_string();
    let r = cli
        .run(&[
            "call",
            "chat-channel",
            "auth-init",
            &creds,
            "--",
            "start",
            "--",
            "poll",
            "--",
            "widget-state",
        ])
        .code(0);
    let v = r.lines();
    assert_eq!(v.len(), 4, "{}", r.stdout);
    assert_eq!(v[1], json!({"ok": null}));
    assert!(v[2]["ok"].is_array(), "{}", r.stdout);
    let widget: Value =
        serde_json::from_str(v[3]["ok"].as_str().expect("widget text")).expect("widget json");
    assert_eq!(widget["polls"], json!(1), "{widget}");
    assert_eq!(widget["connected"], json!(true), "{widget}");
    assert_eq!(wss.connections().len(), 1);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let name = entry.file_name();
        if name == "target" || name == "src" {
            continue;
        }
        if entry.path().is_file() {
            std::fs::copy(entry.path(), to.join(&name)).expect("copy");
        }
    }
}

#[test]
fn call_path_runs_a_plugin_directory_that_is_not_installed() {
    let cli = Cli::new();
    let dir = cli.root.path().join("src/device");
    copy_dir(&example_plugin_dir("sdk-auth"), &dir);
    let r = cli
        .run(&["call", dir.to_str().expect("utf-8"), "display-name"])
        .code(0);
    assert_eq!(r.stdout, "\"My Auth Provider\"\n");
    // Relative paths work; nothing is installed and nothing is written into the source.
    let r = cli.run(&["call", "./src/device", "status"]).code(0);
    assert_eq!(r.stdout, "\"not-authenticated\"\n");
    assert!(!cli.plugins().join("sdk-auth").exists());
    assert!(!dir.join("data").exists());
    // A directory without a plugin fails plainly.
    cli.run(&["call", "./src", "info"])
        .code(1)
        .stderr_has("plugin.toml");
    // A module that is not wasm: one line, no dump of bytes, exit 4.
    let junk = cli.root.path().join("junk");
    std::fs::create_dir_all(&junk).expect("mkdir");
    write(
        &junk.join("plugin.toml"),
        b"[plugin]\nname = \"junk\"\nversion = \"0.1.0\"\ntype = \"tool\"\n",
    );
    write(&junk.join("plugin.wasm"), b"PK\x03\x04 a zip file");
    let r = cli.run(&["call", "./junk", "get-tools"]).code(4).stderr_has(
        "Failed to load plugin 'junk': not a WebAssembly module: it starts with \"PK\\x03\\x04 a z\"",
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------
// The author loop: installs that check, links, discovery
// ---------------------------------------------------------------------------------------

fn write(path: &Path, text: &[u8]) {
    std::fs::write(path, text).expect("write");
}

#[test]
fn add_and_update_refuse_plugins_with_check_errors() {
    let cli = Cli::new();
    // Not a wasm file: refused, one line, nothing installed.
    let bad = cli.root.path().join("bad");
    std::fs::create_dir_all(&bad).expect("mkdir");
    write(
        &bad.join("plugin.toml"),
        b"[plugin]\nname = \"bad\"\nversion = \"0.1.0\"\ntype = \"tool\"\n",
    );
    write(&bad.join("plugin.wasm"), b"#!/bin/sh\necho not wasm\n");
    let r = cli
        .run(&["plugin", "add", bad.to_str().expect("utf-8"), "--yes"])
        .code(1)
        .stderr_has("Refusing to install plugin 'bad': plugin check found 1 error(s):")
        .stderr_has(
            "not a WebAssembly module: it starts with \"#!/bin/s\", not the wasm magic number",
        )
        .stderr_has("Nothing was installed.");
    assert!(!r.stdout.contains("Successfully installed"), "{}", r.stdout);
    assert!(!cli.plugins().join("bad").exists());
    // A module whose world does not match its type.
    let wrong = cli.root.path().join("wrong");
    copy_dir(&example_plugin_dir("sdk-auth"), &wrong);
    let toml = std::fs::read_to_string(wrong.join("plugin.toml")).expect("read");
    write(
        &wrong.join("plugin.toml"),
        toml.replace("type = \"auth\"", "type = \"tool\"")
            .as_bytes(),
    );
    cli.run(&["plugin", "add", wrong.to_str().expect("utf-8"), "--yes"])
        .code(1)
        .stderr_has("Built for world auth-world, but [plugin] type 'tool' needs tool-world");
    assert!(!cli.plugins().join("sdk-auth").exists());
    let list = cli.run(&["plugin", "list", "--json"]).code(0);
    assert_eq!(list.stdout.trim(), "[]");
    // Update: a broken rebuild is refused and the installed version stays.
    let good = cli.root.path().join("good");
    copy_dir(&example_plugin_dir("sdk-auth"), &good);
    cli.run(&["plugin", "add", good.to_str().expect("utf-8"), "--yes"])
        .code(0);
    let installed = std::fs::read(cli.plugins().join("sdk-auth/plugin.wasm")).expect("read");
    write(&good.join("plugin.wasm"), b"\0asm\x01\0\0\0\x01\x05garbage");
    cli.run(&["plugin", "update", "sdk-auth"])
        .code(1)
        .stderr_has("Refusing to update plugin 'sdk-auth'")
        .stderr_has("The installed version is unchanged.");
    assert_eq!(
        std::fs::read(cli.plugins().join("sdk-auth/plugin.wasm")).expect("read"),
        installed
    );
    cli.run(&["call", "sdk-auth", "display-name"]).code(0);
}

#[test]
fn check_reports_every_manifest_error_and_unknown_keys() {
    let cli = Cli::new();
    let dir = cli.root.path().join("typos");
    std::fs::create_dir_all(&dir).expect("mkdir");
    write(
        &dir.join("plugin.toml"),
        b"[plugin]\nname = \"bad name\"\nversion = \"one\"\ntype = \"tool\"\ndescripion = \"x\"\n\n[capabilities]\nnetwork = true\nhtp = [\"api.example.com\"]\n",
    );
    let r = cli
        .run(&["plugin", "check", dir.to_str().expect("utf-8")])
        .code(1);
    let all = format!("{}{}", r.stdout, r.stderr);
    for needle in [
        "[plugin] version \"one\" is not valid semver",
        "[plugin] name \"bad name\" must be alphanumeric",
        "Unknown key `descripion` in [plugin] is ignored: did you mean `description`?",
        "Unknown key `htp` in [capabilities] is ignored: did you mean `http`?",
        "Unknown key `network` in [capabilities] is ignored (known keys: ",
    ] {
        assert!(all.contains(needle), "{needle:?} not in\n{all}");
    }
    // The same through --json: both errors, the warnings.
    let r = cli
        .run(&["plugin", "check", dir.to_str().expect("utf-8"), "--json"])
        .code(1);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(
        v["warnings"].as_array().map(|w| w
            .iter()
            .filter(|w| w.as_str().is_some_and(|s| s.starts_with("Unknown key")))
            .count()),
        Some(3),
        "{v}"
    );
}

#[test]
fn a_linked_plugin_runs_its_latest_build() {
    let cli = Cli::new();
    let src = cli.root.path().join("work/sdk-auth");
    copy_dir(&example_plugin_dir("sdk-auth"), &src);
    let r = cli
        .run(&[
            "plugin",
            "add",
            src.to_str().expect("utf-8"),
            "--link",
            "--json",
        ])
        .code(0);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    assert_eq!(v["id"], json!("sdk-auth"));
    let link = cli.plugins().join("sdk-auth");
    assert!(std::fs::symlink_metadata(&link)
        .expect("link")
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_link(&link).expect("target"),
        src.canonicalize().expect("canon")
    );
    cli.run(&["call", "sdk-auth", "display-name"]).code(0);
    assert_eq!(
        cli.run(&["call", "sdk-auth", "display-name"]).stdout,
        "\"My Auth Provider\"\n"
    );
    // A "rebuild" (another auth-world module) is what the next call runs.
    std::fs::copy(
        example_plugin_dir("device-auth").join("plugin.wasm"),
        src.join("plugin.wasm"),
    )
    .expect("copy");
    assert_eq!(
        cli.run(&["call", "sdk-auth", "display-name"])
            .code(0)
            .stdout,
        "\"Device Auth\"\n"
    );
    let info = cli.run(&["plugin", "info", "sdk-auth"]).code(0);
    assert!(info.stdout.contains("(linked)"), "{}", info.stdout);
    // Nothing to update: the link is the latest build.
    cli.run(&["plugin", "update", "sdk-auth"])
        .code(1)
        .stderr_has("is linked to");
    // No .install.json in the source; removing deletes the link only.
    assert!(!src.join(".install.json").exists());
    cli.run(&["plugin", "remove", "sdk-auth"]).code(0);
    assert!(std::fs::symlink_metadata(&link).is_err());
    assert!(src.join("plugin.toml").is_file() && src.join("plugin.wasm").is_file());
    // Git sources cannot be linked.
    cli.run(&["plugin", "add", "https://example.com/x.git", "--link"])
        .code(1)
        .stderr_has("cannot be linked");
}

#[test]
fn plugin_info_lists_functions_with_signatures() {
    let cli = Cli::new();
    cli.add("legacy-provider");
    cli.add("sdk-auth");
    let r = cli.run(&["plugin", "info", "legacy-provider"]).code(0);
    assert!(r.stdout.contains("Functions:"), "{}", r.stdout);
    let line = r
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("chat "))
        .unwrap_or_else(|| panic!("no chat line:\n{}", r.stdout));
    assert!(line.contains("✓"), "{line}");
    assert!(
        line.ends_with(
            "func(messages: list<message>, model: string) -> result<chat-response, string>"
        ),
        "{line}"
    );
    let r = cli.run(&["plugin", "info", "sdk-auth", "--json"]).code(0);
    let v: Value = serde_json::from_str(&r.stdout).expect("json");
    let funcs = v["functions"].as_array().expect("functions");
    let names: Vec<&str> = funcs.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "display-name",
            "status",
            "start-device-flow",
            "poll",
            "get-token",
            "logout"
        ]
    );
    assert!(funcs.iter().all(|f| f["callable"] == json!(true)), "{v}");
    assert_eq!(
        funcs[3]["signature"],
        json!("func(device-code: string) -> poll-result")
    );
    assert_eq!(funcs[3]["export"], json!("tark:plugin/auth-plugin#poll"));
}
