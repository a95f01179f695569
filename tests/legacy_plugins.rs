//! Every export of every legacy example plugin (`tests/plugins/legacy-provider`,
//! `legacy-channel`, `legacy-auth`) run through the library's typed API, on both
//! compilers, against real HTTP and WSS servers on 127.0.0.1. Values are asserted
//! exactly: the plugins' sources say what each export answers.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::fixtures::{compilers, TestEnv};
use common::servers::{wait_until, CannedResponse, HttpTestServer, WssTestServer};
use tark_wasmer::plugin::{
    AuthCredentials, AuthStatus, ChannelInfo, ChatResponse, InboundMessage, Message, ModelInfo,
    OutboundMessage, ProviderAuthStatus, ProviderInfo, Role, SendResult, Usage, WebhookRequest,
    WebhookResponse,
};
use tark_wasmer::CallError;
use tark_wasmer::{Error, PluginHost, PluginInstance};

const PROVIDER: &str = "legacy-provider";
const CHANNEL: &str = "legacy-channel";
const AUTH: &str = "legacy-auth";
const API_KEY: &str = "sk-test-legacy";
const TOKEN: &str = "chan-token";
/// Generous bound for background work (server threads, WebSocket delivery).
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Serialises code that sets or depends on `LEGACY_PROVIDER_API_KEY` (the provider's
/// `provider_auth_status` reads it through `tark:env.get`).
fn env_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The call error inside a library error (panics on anything else).
fn call_err<T: std::fmt::Debug>(r: tark_wasmer::Result<T>) -> CallError {
    match r {
        Err(Error::Call { source, .. }) => source,
        other => panic!("expected a call error, got {other:?}"),
    }
}

/// The message of a failed call (panics on success).
fn err_text<T: std::fmt::Debug>(r: tark_wasmer::Result<T>) -> String {
    match r {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

fn plugin<'a>(host: &'a mut PluginHost, id: &str) -> &'a mut PluginInstance {
    host.get_mut(id)
        .unwrap_or_else(|| panic!("{id} is not loaded"))
}

fn provider_env() -> TestEnv {
    let env = TestEnv::new();
    env.install_example(PROVIDER);
    env
}

fn data_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.plugins_dir.join(id).join("data")
}

/// The plugin's `storage.json` as a flat string map, checking it is tark's pretty format
/// (two-space indentation; the host writes keys sorted).
fn storage_file(env: &TestEnv, id: &str) -> BTreeMap<String, String> {
    let path = data_dir(env, id).join("storage.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let map: BTreeMap<String, String> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a flat string map: {e}\n{text}", path.display()));
    let pretty = serde_json::to_string_pretty(&map).expect("serialize");
    assert_eq!(text, pretty, "storage.json is not pretty-printed JSON");
    map
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn stored(inst: &PluginInstance, key: &str) -> Option<String> {
    inst.context()
        .storage_get(key)
        .unwrap_or_else(|e| panic!("storage_get({key}): {e}"))
}

fn user(text: &str) -> Message {
    Message {
        role: Role::User,
        content: text.to_string(),
    }
}

fn msgs() -> Vec<Message> {
    vec![
        Message {
            role: Role::System,
            content: "be brief".into(),
        },
        user("hello there"),
    ]
}

fn init_provider(inst: &mut PluginInstance, base_url: &str) {
    let creds = json!({"api_key": API_KEY, "base_url": base_url}).to_string();
    inst.provider_auth_init(&creds)
        .unwrap_or_else(|e| panic!("provider_auth_init: {e}"));
}

fn static_models() -> Vec<ModelInfo> {
    vec![
        ModelInfo {
            id: "legacy-small".into(),
            display_name: "Legacy Small".into(),
            context_window: 8192,
            supports_streaming: false,
            supports_tools: false,
        },
        ModelInfo {
            id: "legacy-large".into(),
            display_name: "Legacy Large".into(),
            context_window: 128000,
            supports_streaming: true,
            supports_tools: true,
        },
    ]
}

fn server_models() -> Vec<ModelInfo> {
    ["test-model-a", "test-model-b"]
        .iter()
        .map(|id| ModelInfo {
            id: id.to_string(),
            display_name: id.to_string(),
            context_window: 128000,
            supports_streaming: false,
            supports_tools: true,
        })
        .collect()
}

/// A temporary directory directly under /tmp (the provider's `fs_read` entry).
fn tmp_under_slash_tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("legacy-plugins-")
        .tempdir_in("/tmp")
        .expect("tempdir under /tmp")
}

fn url_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------
// Provider
// ---------------------------------------------------------------------------------------

#[test]
fn provider_info_models_and_credentials_interface() {
    for compiler in compilers() {
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        assert_eq!(
            p.provider_info().expect("provider_info"),
            ProviderInfo {
                id: "legacy-provider".into(),
                display_name: "Legacy Provider".into(),
                description: "Example provider speaking tark's legacy ABI".into(),
                requires_auth: true,
                provider: Some("openai".into()),
            },
            "{compiler}"
        );
        // Without a stored base_url: the static list, no HTTP.
        assert_eq!(p.provider_models().expect("models"), static_models());
        assert!(p.has_auth_credentials_interface(), "{compiler}");
        assert!(p.has_auth_process_tokens(), "{compiler}");
        assert_eq!(p.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn provider_auth_init_status_credentials_models_and_logout() {
    let _env_guard = env_lock();
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);

        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        let e = err_text(p.provider_auth_credentials());
        assert!(e.contains("not authenticated"), "{compiler}: {e}");

        init_provider(p, &server.base_url());
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::Authenticated
        );
        assert_eq!(
            p.provider_auth_credentials().expect("credentials"),
            AuthCredentials {
                access_token: API_KEY.into(),
                project_id: None,
                api_mode: "openai_compat".into(),
                endpoint: Some(server.base_url()),
                custom_headers: Some(map(&[("x-plugin", "legacy-provider")])),
            },
            "{compiler}"
        );

        // With base_url: the server's list, fetched with the bearer key.
        assert_eq!(p.provider_models().expect("models"), server_models());
        let reqs = server.requests_to("/v1/models");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(
            reqs[0].header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );

        // On disk: tark's flat, pretty string map.
        assert_eq!(
            storage_file(&env, PROVIDER),
            map(&[("api_key", API_KEY), ("base_url", &server.base_url())])
        );

        p.provider_auth_logout().expect("logout");
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated
        );
        let e = err_text(p.provider_auth_credentials());
        assert!(e.contains("not authenticated"), "{compiler}: {e}");
        assert_eq!(p.provider_models().expect("models"), static_models());
        assert_eq!(storage_file(&env, PROVIDER), BTreeMap::new());
        assert_eq!(
            std::fs::read_to_string(data_dir(&env, PROVIDER).join("storage.json"))
                .expect("storage.json"),
            "{}"
        );
        assert_eq!(p.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn provider_auth_status_honours_the_env_variable() {
    let _env_guard = env_lock();
    for compiler in compilers() {
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        std::env::remove_var("LEGACY_PROVIDER_API_KEY");
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        std::env::set_var("LEGACY_PROVIDER_API_KEY", "from-the-environment");
        let with_var = p.provider_auth_status();
        std::env::remove_var("LEGACY_PROVIDER_API_KEY");
        assert_eq!(
            with_var.expect("status"),
            ProviderAuthStatus::Authenticated,
            "{compiler}"
        );
        // Only the variable made it authenticated: nothing was stored.
        assert_eq!(stored(p, "api_key"), None);
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated
        );
    }
}

#[test]
fn provider_auth_init_error_codes_and_key_files() {
    let _env_guard = env_lock();
    let keys = tmp_under_slash_tmp();
    let key_file = keys.path().join("api_key.txt");
    std::fs::write(&key_file, "  sk-from-file\n").expect("write key file");
    let missing = keys.path().join("no-such-key.txt");
    for compiler in compilers() {
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);

        for bad in ["not json", "{\"nothing\":1}", "{\"api_key\":\"  \"}", ""] {
            match call_err(p.provider_auth_init(bad)) {
                CallError::GuestError { code, function, .. } => {
                    assert_eq!(code, -1, "{compiler}: input {bad:?}");
                    assert_eq!(function, "provider_auth_init");
                }
                other => panic!("{compiler}: input {bad:?}: unexpected {other}"),
            }
        }
        // fs.read denied (-2) -> -12; read error (-3) -> -13.
        let outside = json!({"api_key_file": "/etc/hostname"}).to_string();
        match call_err(p.provider_auth_init(&outside)) {
            CallError::GuestError { code, .. } => assert_eq!(code, -12, "{compiler}"),
            other => panic!("{compiler}: unexpected {other}"),
        }
        let absent = json!({"api_key_file": missing.to_str().expect("utf-8 path")}).to_string();
        match call_err(p.provider_auth_init(&absent)) {
            CallError::GuestError { code, .. } => assert_eq!(code, -13, "{compiler}"),
            other => panic!("{compiler}: unexpected {other}"),
        }
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated
        );
        assert!(!data_dir(&env, PROVIDER).join("storage.json").exists());

        // A key file under /tmp works (trimmed).
        let ok = json!({"api_key_file": key_file.to_str().expect("utf-8 path")}).to_string();
        p.provider_auth_init(&ok).expect("auth init from file");
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::Authenticated
        );
        assert_eq!(
            storage_file(&env, PROVIDER),
            map(&[("api_key", "sk-from-file")])
        );
        let creds = p.provider_auth_credentials().expect("credentials");
        assert_eq!(creds.access_token, "sk-from-file");
        assert_eq!(creds.endpoint, None);
        // Error codes are not traps: still the first instance.
        assert_eq!(p.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn provider_auth_process_tokens_keeps_the_tokens() {
    for compiler in compilers() {
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        let tokens = r#"{"access_token":"at-1","refresh_token":"rt-1","id_token":null,"expires_in":3600,"token_type":"bearer","scope":null}"#;
        let out = p.auth_process_tokens(tokens).expect("auth_process_tokens");
        let v: Value = serde_json::from_str(&out).expect("JSON answer");
        assert_eq!(
            v,
            json!({"access_token":"at-1","refresh_token":"rt-1","processed_by":"legacy-provider"}),
            "{compiler}"
        );
        // Invalid input: the guest's error payload reaches the caller.
        let e = err_text(p.auth_process_tokens("[1,2]"));
        assert!(e.contains("invalid token response JSON"), "{compiler}: {e}");
    }
}

#[test]
fn provider_chat_through_the_server_and_without_http() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);

        // Before auth: the guest refuses without any request.
        let e = err_text(p.provider_chat(&msgs(), "test-model"));
        assert!(e.contains("not authenticated"), "{compiler}: {e}");

        init_provider(p, &server.base_url());
        let resp = p.provider_chat(&msgs(), "test-model").expect("chat");
        assert_eq!(
            resp,
            ChatResponse {
                text: "echo: hello there".into(),
                usage: Some(Usage {
                    input_tokens: 2,
                    output_tokens: 3
                }),
                finish_reason: Some("stop".into()),
            },
            "{compiler}"
        );
        let reqs = server.requests_to("/v1/chat/completions");
        assert_eq!(reqs.len(), 1, "{compiler}");
        let req = &reqs[0];
        assert_eq!(req.method, "POST");
        assert_eq!(
            req.header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(
            req.json(),
            Some(json!({
                "model": "test-model",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hello there"}
                ]
            }))
        );

        // Model "echo": answered by the guest, no HTTP.
        server.clear_requests();
        let resp = p
            .provider_chat(&[user("one"), user("two"), user("three")], "echo")
            .expect("echo chat");
        assert_eq!(
            resp,
            ChatResponse {
                text: "three".into(),
                usage: Some(Usage {
                    input_tokens: 3,
                    output_tokens: 1
                }),
                finish_reason: Some("stop".into()),
            }
        );
        assert!(
            server.requests().is_empty(),
            "{compiler}: echo made HTTP requests"
        );

        // An env name outside the allowlist: env.get -> -2.
        let e = err_text(p.provider_chat(&msgs(), "env:PATH"));
        assert!(e.contains("env.get returned -2"), "{compiler}: {e}");
        assert_eq!(p.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn provider_chat_to_a_denied_host_gets_minus_2() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        // Same server, but as `localhost`: not in the allowlist ["127.0.0.1"].
        init_provider(p, &server.localhost_url(""));
        let e = err_text(p.provider_chat(&msgs(), "test-model"));
        assert!(e.contains("http.post returned -2"), "{compiler}: {e}");
        assert!(
            server.requests().is_empty(),
            "{compiler}: the request was sent"
        );
    }
}

#[test]
fn provider_chat_trap_discards_the_instance_and_storage_survives() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        init_provider(p, &server.base_url());
        assert_eq!(p.instances_created(), 1);

        match call_err(p.provider_chat(&msgs(), "panic")) {
            CallError::Trap { function, .. } => assert_eq!(function, "provider_chat"),
            other => panic!("{compiler}: expected a trap, got {other}"),
        }
        // The next call works, on a fresh instance that sees the stored key.
        let resp = p
            .provider_chat(&msgs(), "test-model")
            .expect("chat after trap");
        assert_eq!(resp.text, "echo: hello there", "{compiler}");
        assert_eq!(p.instances_created(), 2, "{compiler}");
        assert_eq!(
            p.provider_auth_credentials()
                .expect("credentials")
                .access_token,
            API_KEY
        );

        // An explicit discard: again a fresh instance with the same storage.
        p.discard_instance();
        assert_eq!(
            p.provider_auth_credentials()
                .expect("credentials")
                .endpoint
                .as_deref(),
            Some(server.base_url().as_str())
        );
        assert_eq!(p.instances_created(), 3, "{compiler}");
    }
}

#[test]
fn provider_storage_survives_a_new_host() {
    let _env_guard = env_lock();
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = provider_env();
        {
            let mut host = env.host(compiler);
            init_provider(plugin(&mut host, PROVIDER), &server.base_url());
        }
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::Authenticated,
            "{compiler}"
        );
        let creds = p.provider_auth_credentials().expect("credentials");
        assert_eq!(creds.access_token, API_KEY);
        assert_eq!(creds.endpoint, Some(server.base_url()));
        assert_eq!(p.provider_models().expect("models"), server_models());
    }
}

#[test]
fn corrupt_storage_is_moved_aside_and_the_plugin_keeps_working() {
    let _env_guard = env_lock();
    for compiler in compilers() {
        let env = provider_env();
        let dir = data_dir(&env, PROVIDER);
        std::fs::create_dir_all(&dir).expect("data dir");
        let garbage: &[u8] = b"{\"api_key\": \"half-writ\x00\xff garbage";
        std::fs::write(dir.join("storage.json"), garbage).expect("write garbage");

        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        let aside = corrupt_copies(&dir);
        assert_eq!(aside.len(), 1, "{compiler}: {aside:?}");
        assert_eq!(std::fs::read(&aside[0]).expect("corrupt copy"), garbage);
        assert!(!dir.join("storage.json").exists(), "{compiler}");

        // Still works; new writes go to a fresh storage.json.
        assert_eq!(
            p.provider_info().expect("info").id,
            "legacy-provider",
            "{compiler}"
        );
        p.provider_auth_init(&json!({"api_key": "fresh"}).to_string())
            .expect("auth init");
        assert_eq!(storage_file(&env, PROVIDER), map(&[("api_key", "fresh")]));
        assert_eq!(
            p.provider_auth_status().expect("status"),
            ProviderAuthStatus::Authenticated
        );
        assert_eq!(std::fs::read(&aside[0]).expect("corrupt copy"), garbage);
        assert_eq!(corrupt_copies(&dir), aside);
    }
}

fn corrupt_copies(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read data dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("storage.json.corrupt-"))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn http_response_limit_surfaces_as_a_plugin_error() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let mut env = provider_env();
        env.config.limits.http_response_max = 200;
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        init_provider(p, &server.base_url());
        let e = err_text(p.provider_models());
        assert!(e.contains("response too large"), "{compiler}: {e}");
        assert!(e.contains("(limit 200)"), "{compiler}: {e}");
        // The request itself was made (the answer was refused).
        assert_eq!(server.requests_to("/v1/models").len(), 1, "{compiler}");
    }
}

#[test]
fn redirects_are_checked_against_the_allowlist() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = provider_env();
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);

        // The plugin appends /v1/models to base_url, i.e. to the `to` parameter.
        let to_denied = format!(
            "{}/redirect?code=302&to={}",
            server.base_url(),
            url_encode(&server.localhost_url(""))
        );
        init_provider(p, &to_denied);
        let e = err_text(p.provider_models());
        assert!(
            e.contains("redirect to non-allowed host"),
            "{compiler}: {e}"
        );
        assert_eq!(server.requests_to("/redirect").len(), 1, "{compiler}");
        assert!(
            server.requests_to("/v1/models").is_empty(),
            "{compiler}: the redirect to a denied host was followed"
        );

        // A redirect to an allowed host is followed.
        let to_allowed = format!(
            "{}/redirect?code=302&to={}",
            server.base_url(),
            url_encode(&server.base_url())
        );
        init_provider(p, &to_allowed);
        assert_eq!(p.provider_models().expect("models"), server_models());
        assert_eq!(server.requests_to("/v1/models").len(), 1, "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// Channel
// ---------------------------------------------------------------------------------------

struct ChannelSetup {
    env: TestEnv,
    http: HttpTestServer,
    wss: WssTestServer,
}

fn channel_setup() -> ChannelSetup {
    let http = HttpTestServer::start();
    let wss = WssTestServer::start();
    let mut env = TestEnv::new();
    env.config.extra_ca_pem.push(wss.ca_pem());
    env.install_example(CHANNEL);
    ChannelSetup { env, http, wss }
}

fn channel_creds(gateway_url: &str, api_base: &str) -> String {
    json!({"access_token": TOKEN, "gateway_url": gateway_url, "api_base": api_base}).to_string()
}

fn widget(inst: &mut PluginInstance) -> Value {
    let text = inst.channel_widget_state().expect("widget state");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("widget state {text:?}: {e}"))
}

fn inbound(conversation_id: &str, user_id: &str, text: &str, source: &str) -> InboundMessage {
    InboundMessage {
        conversation_id: conversation_id.into(),
        user_id: user_id.into(),
        text: text.into(),
        metadata_json: json!({"source": source}).to_string(),
    }
}

/// Poll until `want` messages arrived (bounded by [`WAIT`]); returns them and the number
/// of polls made.
fn poll_for(inst: &mut PluginInstance, want: usize) -> (Vec<InboundMessage>, u64) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut polls = 0u64;
    while got.len() < want && start.elapsed() < WAIT {
        got.extend(inst.channel_poll().expect("channel_poll"));
        polls += 1;
    }
    (got, polls)
}

#[test]
fn channel_info_start_widget_and_auth_status() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);
        assert_eq!(
            c.channel_info().expect("channel_info"),
            ChannelInfo {
                id: "legacy-channel".into(),
                display_name: "Legacy Channel".into(),
                description: "Example channel speaking tark's legacy ABI".into(),
                supports_streaming: false,
                supports_edits: true,
            },
            "{compiler}"
        );
        assert!(c.has_channel_poll(), "{compiler}");
        assert_eq!(
            widget(c),
            json!({"starts": 0, "polls": 0, "sent": 0, "connected": false})
        );
        c.channel_start().expect("start");
        assert_eq!(stored(c, "starts").as_deref(), Some("1"), "{compiler}");
        c.channel_start().expect("start again");
        assert_eq!(stored(c, "starts").as_deref(), Some("2"), "{compiler}");
        assert_eq!(
            widget(c),
            json!({"starts": 2, "polls": 0, "sent": 0, "connected": false})
        );

        assert_eq!(
            c.channel_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        match call_err(c.channel_auth_init("{\"gateway_url\":\"wss://x/\"}")) {
            CallError::GuestError { code, .. } => assert_eq!(code, -1, "{compiler}"),
            other => panic!("{compiler}: unexpected {other}"),
        }
        c.channel_auth_init(&channel_creds(&s.wss.url(), &s.http.base_url()))
            .expect("channel_auth_init");
        assert_eq!(
            c.channel_auth_status().expect("status"),
            ProviderAuthStatus::Authenticated
        );
        assert_eq!(
            storage_file(&s.env, CHANNEL),
            map(&[
                ("api_base", &s.http.base_url()),
                ("gateway_url", &s.wss.url()),
                ("starts", "2"),
                ("token", TOKEN),
            ])
        );

        c.channel_auth_logout().expect("logout");
        assert_eq!(
            c.channel_auth_status().expect("status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert_eq!(storage_file(&s.env, CHANNEL), map(&[("starts", "2")]));
        // Without credentials the guest reports its own error.
        let e = err_text(c.channel_poll());
        assert!(e.contains("not configured"), "{compiler}: {e}");
        assert_eq!(c.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn channel_poll_receives_gateway_messages_and_stop_closes_the_socket() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);
        c.channel_auth_init(&channel_creds(&s.wss.url(), &s.http.base_url()))
            .expect("channel_auth_init");
        s.wss.push_to_next_connection(vec![
            json!({"conversation_id": "conv-1", "user_id": "user-1", "text": "hi from ws"})
                .to_string(),
            "plain text frame".to_string(),
        ]);

        // The first poll connects (Bearer header) and identifies with the token.
        let (got, mut polls) = poll_for(c, 2);
        assert_eq!(
            got,
            vec![
                inbound("conv-1", "user-1", "hi from ws", "ws"),
                inbound("ws", "ws", "plain text frame", "ws"),
            ],
            "{compiler}"
        );
        let conns = s.wss.connections();
        assert_eq!(conns.len(), 1, "{compiler}");
        assert_eq!(
            conns[0].header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert!(
            wait_until(WAIT, || s
                .wss
                .received()
                .first()
                .is_some_and(|r| !r.is_empty())),
            "{compiler}: no identify message"
        );
        let identify: Vec<Value> = s.wss.received()[0]
            .iter()
            .map(|m| serde_json::from_str(m).expect("identify is JSON"))
            .collect();
        assert_eq!(identify, vec![json!({"op": "identify", "token": TOKEN})]);

        // Messages pushed later arrive on the same connection.
        assert_eq!(
            s.wss.push(
                &json!({"conversation_id": "conv-2", "user_id": "user-2", "text": "second"})
                    .to_string()
            ),
            1
        );
        let (got, more) = poll_for(c, 1);
        polls += more;
        assert_eq!(got, vec![inbound("conv-2", "user-2", "second", "ws")]);
        assert_eq!(s.wss.connections().len(), 1, "{compiler}: reconnected");

        // Same instance throughout: the per-instance poll counter grew.
        assert_eq!(
            widget(c),
            json!({"starts": 0, "polls": polls, "sent": 0, "connected": true}),
            "{compiler}"
        );

        c.channel_stop().expect("stop");
        assert!(
            wait_until(WAIT, || s.wss.open_connections() == 0),
            "{compiler}: the server still sees the connection open"
        );
        assert_eq!(widget(c)["connected"], json!(false));
        assert_eq!(c.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn channel_send_posts_and_reports_failures() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);

        let msg = OutboundMessage {
            conversation_id: "conv-9".into(),
            text: "hello out there".into(),
            message_id: None,
            is_final: true,
            metadata_json: String::new(),
        };
        // Not configured yet: the guest's error payload.
        let e = err_text(c.channel_send(&msg));
        assert!(e.contains("not configured"), "{compiler}: {e}");

        c.channel_auth_init(&channel_creds(&s.wss.url(), &s.http.base_url()))
            .expect("channel_auth_init");
        assert_eq!(
            c.channel_send(&msg).expect("send"),
            SendResult {
                success: true,
                message_id: Some("msg-1".into()),
                error: None,
            },
            "{compiler}"
        );
        let reqs = s.http.requests_to("/send");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(
            reqs[0].header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        assert_eq!(
            reqs[0].json(),
            Some(json!({
                "conversation_id": "conv-9",
                "text": "hello out there",
                "message_id": null,
                "is_final": true
            }))
        );
        assert_eq!(stored(c, "sent").as_deref(), Some("1"));

        let edit = OutboundMessage {
            message_id: Some("msg-1".into()),
            is_final: false,
            text: "edited".into(),
            ..msg.clone()
        };
        assert_eq!(
            c.channel_send(&edit).expect("send"),
            SendResult {
                success: true,
                message_id: Some("msg-2".into()),
                error: None,
            }
        );
        assert_eq!(
            s.http
                .sent()
                .last()
                .and_then(|b| serde_json::from_str::<Value>(b).ok()),
            Some(json!({
                "conversation_id": "conv-9",
                "text": "edited",
                "message_id": "msg-1",
                "is_final": false
            }))
        );
        assert_eq!(stored(c, "sent").as_deref(), Some("2"));

        // The API answers 500: a failed SendResult, the counter unchanged.
        s.http.set_response(
            "POST",
            "/send",
            CannedResponse::json(500, &json!({"error": "boom"})),
        );
        assert_eq!(
            c.channel_send(&msg).expect("send"),
            SendResult {
                success: false,
                message_id: None,
                error: Some("HTTP 500".into()),
            },
            "{compiler}"
        );
        assert_eq!(s.http.sent().len(), 3, "{compiler}");
        assert_eq!(stored(c, "sent").as_deref(), Some("2"));
        assert_eq!(widget(c)["sent"], json!(2));
    }
}

#[test]
fn channel_webhook_and_gateway_events() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);

        let mut req = WebhookRequest {
            method: "POST".into(),
            path: "/channels/legacy-channel/webhook".into(),
            query: None,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({"conversation_id": "c-7", "user_id": "u-7", "text": "via webhook"})
                .to_string(),
        };
        assert_eq!(
            c.channel_handle_webhook(&req).expect("webhook"),
            WebhookResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: "{\"ok\":true}".into(),
                messages: vec![inbound("c-7", "u-7", "via webhook", "webhook")],
            },
            "{compiler}"
        );
        req.body = "{\"unexpected\": true}".into();
        assert_eq!(
            c.channel_handle_webhook(&req).expect("webhook"),
            WebhookResponse {
                status: 400,
                headers: vec![],
                body: "bad request".into(),
                messages: vec![],
            },
            "{compiler}"
        );

        let create = json!({
            "t": "MESSAGE_CREATE",
            "d": {"channel_id": "chan-1", "author_id": "author-1", "content": "gateway hi"}
        })
        .to_string();
        assert_eq!(
            c.channel_handle_gateway_event(&create).expect("gateway"),
            vec![inbound("chan-1", "author-1", "gateway hi", "gateway")],
            "{compiler}"
        );
        let other = json!({"t": "TYPING_START", "d": {}}).to_string();
        assert_eq!(
            c.channel_handle_gateway_event(&other).expect("gateway"),
            Vec::<InboundMessage>::new()
        );
        let e = err_text(c.channel_handle_gateway_event("not json"));
        assert!(e.contains("invalid gateway event JSON"), "{compiler}: {e}");
        assert!(s.http.requests().is_empty());
        assert_eq!(c.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn channel_gateway_on_a_denied_host_fails_with_minus_2() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);
        // 127.0.0.2 is not in the allowlist ["127.0.0.1", "localhost"].
        let denied = format!("wss://127.0.0.2:{}/", s.wss.port());
        c.channel_auth_init(&channel_creds(&denied, &s.http.base_url()))
            .expect("channel_auth_init");
        let e = err_text(c.channel_poll());
        assert!(e.contains("ws.connect returned -2"), "{compiler}: {e}");
        assert!(s.wss.connections().is_empty(), "{compiler}");
        assert_eq!(widget(c)["connected"], json!(false));
    }
}

/// Connects the channel's gateway and waits until the server sees it.
fn connect_channel(s: &ChannelSetup, host: &mut PluginHost) {
    let c = plugin(host, CHANNEL);
    c.channel_auth_init(&channel_creds(&s.wss.url(), &s.http.base_url()))
        .expect("channel_auth_init");
    c.channel_poll().expect("poll");
    assert_eq!(widget(c)["connected"], json!(true));
    assert!(
        wait_until(WAIT, || s.wss.open_connections() == 1),
        "the server never saw the connection"
    );
}

#[test]
fn dropping_the_host_or_unloading_closes_the_websocket() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        connect_channel(&s, &mut host);
        drop(host);
        assert!(
            wait_until(WAIT, || s.wss.open_connections() == 0),
            "{compiler}: dropping the host left the socket open"
        );

        let mut host = s.env.host(compiler);
        connect_channel(&s, &mut host);
        assert_eq!(s.wss.connections().len(), 2, "{compiler}");
        assert!(host.unload(CHANNEL));
        assert!(
            wait_until(WAIT, || s.wss.open_connections() == 0),
            "{compiler}: unloading left the socket open"
        );
        assert!(host.get(CHANNEL).is_none());
    }
}

// ---------------------------------------------------------------------------------------
// Auth (wasm32-unknown-unknown, no WASI)
// ---------------------------------------------------------------------------------------

#[test]
fn auth_plugin_without_wasi_runs_every_export() {
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install_example(AUTH);
        let mut host = env.host(compiler);
        let a = plugin(&mut host, AUTH);

        assert_eq!(a.auth_display_name().expect("display_name"), "Legacy Auth");
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated,
            "{compiler}"
        );
        let e = err_text(a.auth_get_token());
        assert!(e.contains("not authenticated"), "{compiler}: {e}");
        assert_eq!(
            a.auth_get_endpoint().expect("endpoint"),
            "https://auth.example.com"
        );
        match call_err(a.auth_init_with_credentials("{\"endpoint\":\"x\"}")) {
            CallError::GuestError { code, .. } => assert_eq!(code, -1, "{compiler}"),
            other => panic!("{compiler}: unexpected {other}"),
        }

        a.auth_init_with_credentials(&json!({"token": "tok-1"}).to_string())
            .expect("init");
        assert_eq!(a.auth_status().expect("status"), AuthStatus::Authenticated);
        assert_eq!(a.auth_get_token().expect("token"), "tok-1", "{compiler}");
        assert_eq!(
            a.auth_get_endpoint().expect("endpoint"),
            "https://auth.example.com"
        );

        a.auth_init_with_credentials(
            &json!({"token": "tok-2", "endpoint": "https://auth.internal.test/v2"}).to_string(),
        )
        .expect("init");
        assert_eq!(
            a.auth_get_endpoint().expect("endpoint"),
            "https://auth.internal.test/v2"
        );
        assert_eq!(a.auth_get_token().expect("token"), "tok-2");
        assert_eq!(
            storage_file(&env, AUTH),
            map(&[
                ("endpoint", "https://auth.internal.test/v2"),
                ("expired", "false"),
                ("token", "tok-2")
            ])
        );

        a.auth_init_with_credentials(&json!({"token": "tok-3", "expired": true}).to_string())
            .expect("init");
        assert_eq!(a.auth_status().expect("status"), AuthStatus::Expired);
        assert_eq!(
            a.auth_get_endpoint().expect("endpoint"),
            "https://auth.example.com"
        );
        assert_eq!(a.instances_created(), 1, "{compiler}");

        // expires_at: get_token asks for the time, which traps without WASI.
        a.auth_init_with_credentials(
            &json!({"token": "tok-4", "expires_at": 4_102_444_800u64}).to_string(),
        )
        .expect("init");
        match call_err(a.auth_get_token()) {
            CallError::Trap { function, .. } => assert_eq!(function, "get_token"),
            other => panic!("{compiler}: expected a trap, got {other}"),
        }
        // The next call runs on a fresh instance.
        assert_eq!(a.auth_status().expect("status"), AuthStatus::Authenticated);
        assert_eq!(a.instances_created(), 2, "{compiler}");
        assert_eq!(a.auth_display_name().expect("display_name"), "Legacy Auth");

        a.auth_logout().expect("logout");
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert_eq!(storage_file(&env, AUTH), BTreeMap::new());
        assert_eq!(a.instances_created(), 2, "{compiler}");
    }
}
