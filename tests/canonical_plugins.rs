//! Every function of every tark interface run end to end over the real wit-bindgen-built
//! example plugins (`tests/plugins/sdk-auth`, `device-auth`, `tool-kit`, `openai-provider`,
//! `chat-channel`, `hook-guard`) through the library's typed API, on both compilers, against
//! real HTTP and WSS servers on 127.0.0.1. Expected values come from the plugins' READMEs and
//! sources.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use common::fixtures::{compilers, ensure_plugins_built, example_plugin_dir, TestEnv};
use common::servers::{wait_until, CannedResponse, HttpTestServer, OAuthScript, WssTestServer};
use tark_wasmer::engine::Compiler;
use tark_wasmer::plugin::dispatch::function_names;
use tark_wasmer::plugin::{
    AuthStatus, ChannelInfo, ChatResponse, DeviceCode, HookDecision, HookEvent, HookEventKind,
    InboundMessage, Message, ModelInfo, OutboundMessage, PollResult, ProviderAuthStatus,
    ProviderInfo, RiskLevel, Role, SendResult, StreamChunk, ToolResult, Usage, WebhookRequest,
    WebhookResponse,
};
use tark_wasmer::{AbiKind, CallError};
use tark_wasmer::{Error, HostOptions, PluginHost, PluginInstance, PluginType};

const SDK_AUTH: &str = "sdk-auth";
const DEVICE_AUTH: &str = "device-auth";
const TOOL_KIT: &str = "tool-kit";
const PROVIDER: &str = "openai-provider";
const CHANNEL: &str = "chat-channel";
const HOOK: &str = "hook-guard";
const API_KEY: &str = "sk-test-canonical";
const TOKEN: &str = "chan-token";
/// Generous bound for background work (server threads, WebSocket delivery).
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Holds the process-wide environment lock while some variables are set; removes them
/// again when dropped. Environment variables are process-global and the tests of this
/// file run in parallel threads: every test that sets or depends on `DEVICE_AUTH_BASE`
/// or `TOOL_KIT_API` holds one of these.
struct EnvGuard {
    names: Vec<String>,
    _lock: MutexGuard<'static, ()>,
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for n in &self.names {
            std::env::remove_var(n);
        }
    }
}

/// The only place that writes the environment: `Some(v)` sets, `None` removes.
fn env_vars(vars: &[(&str, Option<&str>)]) -> EnvGuard {
    static LOCK: Mutex<()> = Mutex::new(());
    let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for (name, value) in vars {
        match value {
            Some(v) => std::env::set_var(name, v),
            None => std::env::remove_var(name),
        }
    }
    EnvGuard {
        names: vars.iter().map(|(n, _)| n.to_string()).collect(),
        _lock: lock,
    }
}

/// `err(text)` of a canonical `result<_, string>` function: (function, text).
fn plugin_err<T: std::fmt::Debug>(r: tark_wasmer::Result<T>) -> (String, String) {
    match r {
        Err(Error::Call {
            source: CallError::PluginError { function, message },
            ..
        }) => (function, message),
        other => panic!("expected a plugin error (err(..)), got {other:?}"),
    }
}

fn plugin<'a>(host: &'a mut PluginHost, id: &str) -> &'a mut PluginInstance {
    host.get_mut(id)
        .unwrap_or_else(|| panic!("{id} is not loaded"))
}

fn env_with(name: &str) -> TestEnv {
    let env = TestEnv::new();
    env.install_example(name);
    env
}

fn data_dir(env: &TestEnv, id: &str) -> PathBuf {
    env.plugins_dir.join(id).join("data")
}

/// The plugin's `data/storage.json` as a flat string map, checking tark's pretty format.
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

fn store(inst: &PluginInstance, key: &str, value: &str) {
    inst.context()
        .storage_set(key, value)
        .unwrap_or_else(|e| panic!("storage_set({key}): {e}"));
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A temporary directory directly under /tmp (tool-kit's `fs_read` entry).
fn tmp_under_slash_tmp() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("canonical-plugins-")
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

// ---------------------------------------------------------------------------------------
// Loading: ABI, world, manifest type
// ---------------------------------------------------------------------------------------

const ALL: [(&str, PluginType, &str, &str); 6] = [
    (SDK_AUTH, PluginType::Auth, "auth-world", "auth-plugin"),
    (DEVICE_AUTH, PluginType::Auth, "auth-world", "auth-plugin"),
    (TOOL_KIT, PluginType::Tool, "tool-world", "tool-plugin"),
    (
        PROVIDER,
        PluginType::Provider,
        "provider-world",
        "provider-plugin",
    ),
    (
        CHANNEL,
        PluginType::Channel,
        "channel-world",
        "channel-plugin",
    ),
    (HOOK, PluginType::Hook, "hook-world", "hook-plugin"),
];

#[test]
fn every_canonical_example_loads_as_canonical_with_its_world_and_exports() {
    for compiler in compilers() {
        let env = TestEnv::new();
        for (id, ..) in ALL {
            env.install_example(id);
        }
        let mut host = env.host(compiler);
        assert_eq!(
            host.loaded(),
            vec![CHANNEL, DEVICE_AUTH, HOOK, PROVIDER, SDK_AUTH, TOOL_KIT],
            "{compiler}"
        );
        for (id, ty, world, iface) in ALL {
            let p = plugin(&mut host, id);
            assert_eq!(p.abi(), AbiKind::Canonical, "{compiler}: {id}");
            assert_eq!(p.world(), Some(world), "{compiler}: {id}");
            assert_eq!(p.plugin_type(), ty, "{compiler}: {id}");
            assert_eq!(p.interface(), iface, "{compiler}: {id}");
            // Every function of the interface is exported by the module.
            for f in function_names(ty) {
                assert!(p.has_function(f), "{compiler}: {id} lacks {f}");
            }
            assert!(!p.has_function("no-such-function"), "{compiler}: {id}");
            assert_eq!(p.instances_created(), 1, "{compiler}: {id}");
        }
    }
}

/// Copies an example's `plugin.wasm` with its manifest's `type` replaced.
fn retyped_copy(env: &TestEnv, example: &str, new_type: &str) -> PathBuf {
    ensure_plugins_built();
    let src = example_plugin_dir(example);
    let dst = env.tmp.path().join("retyped").join(example);
    std::fs::create_dir_all(&dst).expect("create copy dir");
    let manifest = std::fs::read_to_string(src.join("plugin.toml")).expect("read plugin.toml");
    let lines: Vec<String> = manifest
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("type =") {
                format!("type = \"{new_type}\"")
            } else {
                l.to_string()
            }
        })
        .collect();
    let retyped = lines.join("\n");
    assert_ne!(retyped, manifest, "no type line in {example}'s plugin.toml");
    std::fs::write(dst.join("plugin.toml"), retyped).expect("write plugin.toml");
    std::fs::copy(src.join("plugin.wasm"), dst.join("plugin.wasm")).expect("copy plugin.wasm");
    dst
}

fn bare_host(env: &TestEnv, compiler: Compiler) -> PluginHost {
    PluginHost::with_options(HostOptions {
        plugins_dir: Some(env.plugins_dir.clone()),
        compiler: Some(compiler),
        config: env.config.clone(),
        ..Default::default()
    })
    .expect("host")
}

#[test]
fn a_manifest_type_that_does_not_match_the_world_fails_to_load() {
    for compiler in compilers() {
        let env = TestEnv::new();
        env.install(&retyped_copy(&env, TOOL_KIT, "provider"));
        env.install(&retyped_copy(&env, HOOK, "auth"));
        let mut host = bare_host(&env, compiler);

        let e = host
            .load_id(TOOL_KIT)
            .expect_err("tool-world loaded as provider");
        match &e {
            Error::WrongWorld {
                plugin,
                world,
                plugin_type,
                expected,
            } => {
                assert_eq!(plugin, TOOL_KIT);
                assert_eq!(world, "tool-world");
                assert_eq!(plugin_type, "provider");
                assert_eq!(expected, "provider-world");
            }
            other => panic!("{compiler}: expected WrongWorld, got {other:?}"),
        }
        let text = e.to_string();
        assert!(text.contains("tool-world"), "{compiler}: {text}");
        assert!(text.contains("'provider'"), "{compiler}: {text}");
        assert!(text.contains(TOOL_KIT), "{compiler}: {text}");

        let e = host.load_id(HOOK).expect_err("hook-world loaded as auth");
        let text = e.to_string();
        assert!(text.contains("hook-world"), "{compiler}: {text}");
        assert!(text.contains("'auth'"), "{compiler}: {text}");
        assert!(text.contains("auth-world"), "{compiler}: {text}");

        // load_all reports both and loads neither.
        let failures = host.load_all();
        let mut ids: Vec<&str> = failures.iter().map(|(id, _)| id.as_str()).collect();
        ids.sort();
        assert_eq!(ids, vec![HOOK, TOOL_KIT], "{compiler}");
        assert!(host.loaded().is_empty(), "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// sdk-auth (the SDK guide's Quick Start)
// ---------------------------------------------------------------------------------------

#[test]
fn sdk_auth_device_flow_token_and_logout() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = env_with(SDK_AUTH);
        let mut host = env.host(compiler);
        let a = plugin(&mut host, SDK_AUTH);

        assert_eq!(
            a.auth_display_name().expect("display-name"),
            "My Auth Provider"
        );
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert_eq!(
            plugin_err(a.auth_get_token()),
            ("get-token".to_string(), "Not authenticated".to_string())
        );

        // Test adaptation of the guide: the auth server's base URL from storage.
        store(a, "auth_base", &server.base_url());

        // The guide does not parse the server's answer (here a 404): placeholder values.
        assert_eq!(
            a.auth_start_device_flow().expect("start-device-flow"),
            DeviceCode {
                device_code: "device-code-123".into(),
                user_code: "USER-CODE".into(),
                verification_url: format!("{}/device", server.base_url()),
                expires_in: 900,
                interval: 5,
            },
            "{compiler}"
        );
        let reqs = server.requests_to("/device/code");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        assert_eq!(reqs[0].json(), Some(json!({"client_id": "my-client"})));

        // The token endpoint: 404 -> error, 400 -> pending, 200 -> the body is the token.
        assert_eq!(
            a.auth_poll("device-code-123").expect("poll"),
            PollResult::Error("Unexpected response".into()),
            "{compiler}"
        );
        server.set_response("POST", "/token", text_response(400, "wait"));
        assert_eq!(
            a.auth_poll("device-code-123").expect("poll"),
            PollResult::Pending
        );
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated
        );
        server.set_response("POST", "/token", text_response(200, "sdk-token-1"));
        assert_eq!(
            a.auth_poll("device-code-123").expect("poll"),
            PollResult::Success("sdk-token-1".into()),
            "{compiler}"
        );
        let polls = server.requests_to("/token");
        assert_eq!(polls.len(), 3, "{compiler}");
        for r in &polls {
            assert_eq!(r.method, "POST");
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.json(), Some(json!({"device_code": "device-code-123"})));
        }

        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::Authenticated,
            "{compiler}"
        );
        assert_eq!(a.auth_get_token().expect("get-token"), "sdk-token-1");
        assert_eq!(
            storage_file(&env, SDK_AUTH),
            map(&[
                ("access_token", "sdk-token-1"),
                ("auth_base", &server.base_url())
            ])
        );

        a.auth_logout().expect("logout");
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert_eq!(
            plugin_err(a.auth_get_token()).1,
            "Not authenticated",
            "{compiler}"
        );
        assert_eq!(
            storage_file(&env, SDK_AUTH),
            map(&[("auth_base", &server.base_url())])
        );
        // Logging out twice is fine (deleting a missing key is not an error).
        a.auth_logout().expect("second logout");
        assert_eq!(a.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn sdk_auth_http_errors_come_back_as_values() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = env_with(SDK_AUTH);
        let mut host = env.host(compiler);
        let a = plugin(&mut host, SDK_AUTH);
        // `localhost` is not in the allowlist ["auth.example.com", "127.0.0.1"].
        store(a, "auth_base", &server.localhost_url(""));

        let (function, message) = plugin_err(a.auth_start_device_flow());
        assert_eq!(function, "start-device-flow");
        assert!(message.starts_with("HTTP error: "), "{compiler}: {message}");
        assert!(
            message.contains(&format!(
                "permission denied: {} is not allowed by capabilities.http",
                server.localhost_url("/device/code")
            )),
            "{compiler}: {message}"
        );
        assert!(message.contains("status: None"), "{compiler}: {message}");

        match a.auth_poll("device-code-123").expect("poll") {
            PollResult::Error(m) => {
                assert!(m.starts_with("Request failed: "), "{compiler}: {m}");
                assert!(m.contains("permission denied"), "{compiler}: {m}");
            }
            other => panic!("{compiler}: expected an error, got {other:?}"),
        }
        assert!(
            server.requests().is_empty(),
            "{compiler}: a request was sent"
        );
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated
        );
        assert_eq!(a.instances_created(), 1, "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// device-auth (OAuth device flow; base URL from DEVICE_AUTH_BASE)
// ---------------------------------------------------------------------------------------

const DEVICE_GRANT: &str = "grant_type=urn:ietf:params:oauth:grant-type:device_code";

#[test]
fn device_auth_full_flow_against_the_oauth_server() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        server.set_oauth(OAuthScript {
            pending_polls: 3,
            ..OAuthScript::default()
        });
        // A trailing slash is dropped by the plugin.
        let base = format!("{}/", server.base_url());
        let _env = env_vars(&[("DEVICE_AUTH_BASE", Some(&base))]);
        let env = env_with(DEVICE_AUTH);
        let mut host = env.host(compiler);
        let a = plugin(&mut host, DEVICE_AUTH);

        assert_eq!(a.auth_display_name().expect("display-name"), "Device Auth");
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated
        );
        assert_eq!(
            plugin_err(a.auth_get_token()),
            ("get-token".to_string(), "not authenticated".to_string())
        );

        // The server's codes come back unchanged.
        let code = a.auth_start_device_flow().expect("start-device-flow");
        assert_eq!(
            code,
            DeviceCode {
                device_code: "test-device-code".into(),
                user_code: "TEST-CODE".into(),
                verification_url: server.url("/oauth/device"),
                expires_in: 900,
                interval: 1,
            },
            "{compiler}"
        );
        let reqs = server.requests_to("/oauth/device/code");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].body, "client_id=tark-wasmer-test&scope=read");
        assert_eq!(
            reqs[0].header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(reqs[0].header("accept"), Some("application/json"));

        // Pending three times (the server's 400 authorization_pending), then the token.
        for i in 0..3 {
            assert_eq!(
                a.auth_poll(&code.device_code).expect("poll"),
                PollResult::Pending,
                "{compiler}: poll {i}"
            );
            assert_eq!(
                a.auth_status().expect("status"),
                AuthStatus::NotAuthenticated
            );
        }
        let before = now_secs();
        assert_eq!(
            a.auth_poll(&code.device_code).expect("poll"),
            PollResult::Success("test-access-token".into()),
            "{compiler}"
        );
        let after = now_secs();
        assert_eq!(server.token_polls(), 4, "{compiler}");
        for r in server.requests_to("/oauth/token") {
            assert_eq!(r.method, "POST");
            assert_eq!(
                r.body,
                format!("{DEVICE_GRANT}&device_code=test-device-code&client_id=tark-wasmer-test")
            );
            assert_eq!(
                r.header("content-type"),
                Some("application/x-www-form-urlencoded")
            );
        }

        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::Authenticated,
            "{compiler}"
        );
        assert_eq!(a.auth_get_token().expect("get-token"), "test-access-token");
        let storage = storage_file(&env, DEVICE_AUTH);
        assert_eq!(
            storage.keys().map(String::as_str).collect::<Vec<_>>(),
            vec!["access_token", "expires_at", "refresh_token"],
            "{compiler}"
        );
        assert_eq!(storage["access_token"], "test-access-token");
        assert_eq!(storage["refresh_token"], "test-refresh-token");
        let expires_at: u64 = storage["expires_at"].parse().expect("expires_at number");
        assert!(
            (before + 3600..=after + 3600).contains(&expires_at),
            "{compiler}: expires_at {expires_at} not now+3600 ({before}..={after})"
        );

        a.auth_logout().expect("logout");
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert_eq!(plugin_err(a.auth_get_token()).1, "not authenticated");
        assert_eq!(storage_file(&env, DEVICE_AUTH), BTreeMap::new());
        assert_eq!(a.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn device_auth_expired_tokens_and_token_endpoint_errors() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let _env = env_vars(&[("DEVICE_AUTH_BASE", Some(&server.base_url()))]);
        let env = env_with(DEVICE_AUTH);
        let mut host = env.host(compiler);
        let a = plugin(&mut host, DEVICE_AUTH);

        // A token that expires at once: stored, but the status is expired.
        server.set_oauth(OAuthScript {
            pending_polls: 0,
            token: json!({"access_token": "short-lived", "expires_in": 0}),
            ..OAuthScript::default()
        });
        assert_eq!(
            a.auth_poll("dc-1").expect("poll"),
            PollResult::Success("short-lived".into()),
            "{compiler}"
        );
        assert_eq!(
            a.auth_status().expect("status"),
            AuthStatus::Expired,
            "{compiler}"
        );
        assert_eq!(a.auth_get_token().expect("get-token"), "short-lived");

        // Without refresh_token and expires_in: both keys are removed.
        server.set_oauth(OAuthScript {
            pending_polls: 0,
            token: json!({"access_token": "no-expiry"}),
            ..OAuthScript::default()
        });
        assert_eq!(
            a.auth_poll("dc-1").expect("poll"),
            PollResult::Success("no-expiry".into())
        );
        assert_eq!(a.auth_status().expect("status"), AuthStatus::Authenticated);
        assert_eq!(
            storage_file(&env, DEVICE_AUTH),
            map(&[("access_token", "no-expiry")]),
            "{compiler}"
        );

        // Scripted error answers of the token endpoint.
        let cases: Vec<(CannedResponse, PollResult)> = vec![
            (
                CannedResponse::json(400, &json!({"error": "expired_token"})),
                PollResult::Expired,
            ),
            (
                CannedResponse::json(400, &json!({"error": "slow_down"})),
                PollResult::Pending,
            ),
            (
                CannedResponse::json(
                    400,
                    &json!({"error": "access_denied", "error_description": "The user said no"}),
                ),
                PollResult::Error("access_denied: The user said no".into()),
            ),
            (
                CannedResponse::json(403, &json!({"error": "access_denied"})),
                PollResult::Error("access_denied".into()),
            ),
            (
                CannedResponse::json(500, &json!({"oops": true})),
                PollResult::Error("token request failed: HTTP 500".into()),
            ),
            (
                text_response(200, "not json"),
                PollResult::Error("invalid token response: not JSON".into()),
            ),
            (
                CannedResponse::json(200, &json!({"token_type": "bearer"})),
                PollResult::Error("invalid token response: missing `access_token`".into()),
            ),
        ];
        for (response, expected) in cases {
            server.set_response("POST", "/oauth/token", response.clone());
            assert_eq!(
                a.auth_poll("dc-2").expect("poll"),
                expected,
                "{compiler}: {response:?}"
            );
        }
        // None of them touched the stored token.
        assert_eq!(a.auth_get_token().expect("get-token"), "no-expiry");

        // Scripted answers of the device-code endpoint.
        server.set_response(
            "POST",
            "/oauth/device/code",
            CannedResponse::json(503, &json!({"error": "down"})),
        );
        assert_eq!(
            plugin_err(a.auth_start_device_flow()),
            (
                "start-device-flow".to_string(),
                "device code request failed: HTTP 503".to_string()
            ),
            "{compiler}"
        );
        server.set_response(
            "POST",
            "/oauth/device/code",
            CannedResponse::json(200, &json!({"user_code": "U"})),
        );
        assert_eq!(
            plugin_err(a.auth_start_device_flow()).1,
            "invalid device code response: missing `device_code`"
        );
        // `verification_url` spelling, numbers as strings, defaults for the rest.
        server.set_response(
            "POST",
            "/oauth/device/code",
            CannedResponse::json(
                200,
                &json!({
                    "device_code": "dc-3",
                    "user_code": "USER-3",
                    "verification_url": "https://verify.example/x",
                    "expires_in": "60"
                }),
            ),
        );
        assert_eq!(
            a.auth_start_device_flow().expect("start-device-flow"),
            DeviceCode {
                device_code: "dc-3".into(),
                user_code: "USER-3".into(),
                verification_url: "https://verify.example/x".into(),
                expires_in: 60,
                interval: 5,
            },
            "{compiler}"
        );
        assert_eq!(a.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn device_auth_base_from_storage_and_denied_hosts() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = env_with(DEVICE_AUTH);
        let mut host = env.host(compiler);
        let a = plugin(&mut host, DEVICE_AUTH);

        // DEVICE_AUTH_BASE points at a host the manifest does not allow: the host's
        // http-error message is the plugin's error text, and nothing is sent.
        {
            let denied = server.localhost_url("");
            let _env = env_vars(&[("DEVICE_AUTH_BASE", Some(&denied))]);
            assert_eq!(
                plugin_err(a.auth_start_device_flow()).1,
                format!(
                    "permission denied: {} is not allowed by capabilities.http",
                    server.localhost_url("/oauth/device/code")
                ),
                "{compiler}"
            );
            assert_eq!(
                a.auth_poll("dc").expect("poll"),
                PollResult::Error(format!(
                    "permission denied: {} is not allowed by capabilities.http",
                    server.localhost_url("/oauth/token")
                )),
                "{compiler}"
            );
            assert!(server.requests().is_empty(), "{compiler}");
        }

        // Unset: storage key auth_base is used instead.
        let _env = env_vars(&[("DEVICE_AUTH_BASE", None)]);
        store(a, "auth_base", &server.base_url());
        server.set_oauth(OAuthScript {
            pending_polls: 0,
            ..OAuthScript::default()
        });
        assert_eq!(
            a.auth_start_device_flow()
                .expect("start-device-flow")
                .user_code,
            "TEST-CODE",
            "{compiler}"
        );
        assert_eq!(
            a.auth_poll("test-device-code").expect("poll"),
            PollResult::Success("test-access-token".into())
        );
        assert_eq!(server.requests().len(), 2, "{compiler}");
        a.auth_logout().expect("logout");
        assert_eq!(
            storage_file(&env, DEVICE_AUTH),
            map(&[("auth_base", &server.base_url())]),
            "{compiler}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// tool-kit
// ---------------------------------------------------------------------------------------

#[test]
fn tool_kit_lists_its_tools_with_schemas_and_risk_levels() {
    let expected: [(&str, &str, &[&str], RiskLevel); 5] = [
        (
            "word_count",
            "Counts the whitespace-separated words of a text.",
            &["text"],
            RiskLevel::ReadOnly,
        ),
        (
            "json_pretty",
            "Pretty-prints a JSON document.",
            &["json"],
            RiskLevel::ReadOnly,
        ),
        (
            "read_file",
            "Reads a text file the plugin is allowed to read.",
            &["path"],
            RiskLevel::ReadOnly,
        ),
        (
            "fetch_status",
            "GETs a path of the configured API and reports the HTTP status and body length.",
            &["path"],
            RiskLevel::Risky,
        ),
        (
            "delete_everything",
            "Would delete everything. Always refuses.",
            &[],
            RiskLevel::Dangerous,
        ),
    ];
    for compiler in compilers() {
        let env = env_with(TOOL_KIT);
        let mut host = env.host(compiler);
        let t = plugin(&mut host, TOOL_KIT);
        let tools = t.tool_get_tools().expect("get-tools");
        assert_eq!(
            tools.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            expected.iter().map(|e| e.0).collect::<Vec<_>>(),
            "{compiler}"
        );
        for (def, (name, description, props, risk)) in tools.iter().zip(expected) {
            assert_eq!(def.description, description, "{compiler}: {name}");
            let schema: Value = serde_json::from_str(&def.parameters_schema)
                .unwrap_or_else(|e| panic!("{compiler}: schema of {name} is not JSON: {e}"));
            assert_eq!(schema["type"], json!("object"), "{compiler}: {name}");
            assert_eq!(schema["additionalProperties"], json!(false), "{name}");
            let keys: Vec<&str> = schema["properties"]
                .as_object()
                .unwrap_or_else(|| panic!("{name}: properties is not an object"))
                .keys()
                .map(String::as_str)
                .collect();
            assert_eq!(keys, props, "{compiler}: {name}");
            for p in props {
                assert_eq!(schema["properties"][p]["type"], json!("string"), "{name}");
            }
            assert_eq!(schema["required"], json!(props), "{compiler}: {name}");
            assert_eq!(
                t.tool_get_risk_level(name).expect("get-risk-level"),
                risk,
                "{compiler}: {name}"
            );
        }
        for unknown in ["rm_rf", "", "WORD_COUNT", "word_count "] {
            assert_eq!(
                t.tool_get_risk_level(unknown).expect("get-risk-level"),
                RiskLevel::Dangerous,
                "{compiler}: {unknown:?}"
            );
        }
        assert_eq!(t.instances_created(), 1, "{compiler}");
    }
}

fn ok_result(output: &str) -> ToolResult {
    ToolResult {
        success: true,
        output: output.to_string(),
        error: None,
    }
}

fn failed(error: &str) -> ToolResult {
    ToolResult {
        success: false,
        output: String::new(),
        error: Some(error.to_string()),
    }
}

/// The error text of a failed tool result (panics on success).
fn tool_error(r: ToolResult) -> String {
    assert!(!r.success, "expected a failure, got {r:?}");
    assert_eq!(r.output, "", "{r:?}");
    r.error
        .unwrap_or_else(|| panic!("failure without error text"))
}

#[test]
fn tool_kit_executes_its_tools_and_reports_bad_arguments() {
    for compiler in compilers() {
        let env = env_with(TOOL_KIT);
        let mut host = env.host(compiler);
        let t = plugin(&mut host, TOOL_KIT);

        let args = json!({"text": "one two  three\nfour\tfive ünïcödé"}).to_string();
        assert_eq!(
            t.tool_execute("word_count", &args).expect("execute"),
            ok_result("6"),
            "{compiler}"
        );
        let args = json!({"json": r#"{"a":[1,2],"b":{"c":null}}"#}).to_string();
        assert_eq!(
            t.tool_execute("json_pretty", &args).expect("execute"),
            ok_result("{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {\n    \"c\": null\n  }\n}"),
            "{compiler}"
        );
        let e = tool_error(
            t.tool_execute("json_pretty", &json!({"json": "{oops"}).to_string())
                .expect("execute"),
        );
        assert!(e.starts_with("invalid JSON: "), "{compiler}: {e}");

        // Argument errors.
        let e = tool_error(t.tool_execute("word_count", "not json").expect("execute"));
        assert!(e.starts_with("invalid arguments: "), "{compiler}: {e}");
        assert_eq!(
            t.tool_execute("word_count", "{}").expect("execute"),
            failed("invalid arguments: missing field `text`"),
            "{compiler}"
        );
        assert_eq!(
            t.tool_execute("read_file", r#"{"file":"/tmp/x"}"#)
                .expect("execute"),
            failed("invalid arguments: missing field `path`")
        );
        let e = tool_error(
            t.tool_execute("word_count", r#"{"text":5}"#)
                .expect("execute"),
        );
        assert!(
            e.starts_with("invalid arguments: invalid type: integer `5`"),
            "{compiler}: {e}"
        );

        assert_eq!(
            t.tool_execute("delete_everything", "{}").expect("execute"),
            failed("refused"),
            "{compiler}"
        );
        assert_eq!(
            t.tool_execute("rm_rf", "{}").expect("execute"),
            failed("unknown tool: rm_rf"),
            "{compiler}"
        );
        assert_eq!(
            t.tool_execute("", "").expect("execute"),
            failed("unknown tool: "),
            "{compiler}"
        );
        assert_eq!(t.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn tool_kit_read_file_goes_through_the_fs_policy() {
    let dir = tmp_under_slash_tmp();
    let file = dir.path().join("notes.txt");
    let content = "hello from a file\nzweite Zeile: äöü\n";
    std::fs::write(&file, content).expect("write file");
    let file = file.to_str().expect("utf-8 path").to_string();
    let missing = dir.path().join("missing.txt");
    let missing = missing.to_str().expect("utf-8 path").to_string();
    for compiler in compilers() {
        let env = env_with(TOOL_KIT);
        let mut host = env.host(compiler);
        let t = plugin(&mut host, TOOL_KIT);
        let read = |t: &mut PluginInstance, path: &str| {
            t.tool_execute("read_file", &json!({ "path": path }).to_string())
                .expect("execute")
        };

        assert_eq!(read(t, &file), ok_result(content), "{compiler}");
        // Outside fs_read = ["/tmp"]: the host's message comes through unchanged.
        assert_eq!(
            read(t, "/etc/hostname"),
            failed(
                "fs.read: permission denied: /etc/hostname is not allowed by capabilities.fs_read"
            ),
            "{compiler}"
        );
        let sneaky = format!("{}/../../etc/hostname", dir.path().display());
        let e = tool_error(read(t, &sneaky));
        assert!(
            e.starts_with("fs.read: permission denied: "),
            "{compiler}: {e}"
        );
        // Allowed but absent: an error that is not a permission error.
        let e = tool_error(read(t, &missing));
        assert!(e.starts_with("fs.read: "), "{compiler}: {e}");
        assert!(!e.contains("permission denied"), "{compiler}: {e}");
        assert_eq!(t.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn tool_kit_fetch_status_uses_the_env_and_http_policies() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = env_with(TOOL_KIT);
        let mut host = env.host(compiler);
        let t = plugin(&mut host, TOOL_KIT);
        let fetch = |t: &mut PluginInstance, path: &str| {
            t.tool_execute("fetch_status", &json!({ "path": path }).to_string())
                .expect("execute")
        };

        {
            let _env = env_vars(&[("TOOL_KIT_API", Some(&server.base_url()))]);
            // body {"status":201} is 14 bytes.
            assert_eq!(
                fetch(t, "/status/201"),
                ok_result(r#"{"status":201,"body_len":14}"#),
                "{compiler}"
            );
            // A non-2xx status is still a successful fetch.
            assert_eq!(
                fetch(t, "/status/503"),
                ok_result(r#"{"status":503,"body_len":14}"#)
            );
            assert_eq!(
                fetch(t, "/big/1000"),
                ok_result(r#"{"status":200,"body_len":1000}"#)
            );
            let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
            assert_eq!(paths, vec!["/status/201", "/status/503", "/big/1000"]);
            assert!(server.requests().iter().all(|r| r.method == "GET"));
        }
        {
            // The same server as `localhost`: not in the allowlist ["127.0.0.1"].
            let denied = server.localhost_url("");
            let _env = env_vars(&[("TOOL_KIT_API", Some(&denied))]);
            server.clear_requests();
            assert_eq!(
                fetch(t, "/status/200"),
                failed(&format!(
                    "permission denied: {} is not allowed by capabilities.http",
                    server.localhost_url("/status/200")
                )),
                "{compiler}"
            );
            assert!(server.requests().is_empty(), "{compiler}: request sent");
        }
        {
            let _env = env_vars(&[("TOOL_KIT_API", None)]);
            assert_eq!(
                fetch(t, "/status/200"),
                failed("TOOL_KIT_API is not set"),
                "{compiler}"
            );
        }
        assert_eq!(t.instances_created(), 1, "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// openai-provider
// ---------------------------------------------------------------------------------------

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

fn init_provider(inst: &mut PluginInstance, api_key: &str, base_url: &str) {
    let creds = json!({"api_key": api_key, "base_url": base_url}).to_string();
    inst.provider_auth_init(&creds)
        .unwrap_or_else(|e| panic!("auth-init: {e}"));
}

fn server_models() -> Vec<ModelInfo> {
    ["test-model-a", "test-model-b"]
        .iter()
        .map(|id| ModelInfo {
            id: id.to_string(),
            display_name: id.to_string(),
            context_window: 128000,
            supports_streaming: true,
            supports_tools: false,
        })
        .collect()
}

#[test]
fn openai_provider_info_models_auth_init_and_logout() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = env_with(PROVIDER);
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);

        assert_eq!(
            p.provider_info().expect("info"),
            ProviderInfo {
                id: "openai-provider".into(),
                display_name: "OpenAI-compatible".into(),
                description: "Chat completions from any OpenAI-compatible API (example plugin)"
                    .into(),
                requires_auth: true,
                provider: None,
            },
            "{compiler}"
        );
        assert_eq!(
            p.provider_auth_status().expect("auth-status"),
            ProviderAuthStatus::NotAuthenticated
        );
        // Not authenticated: an empty list, no request.
        assert_eq!(p.provider_models().expect("models"), vec![]);
        assert_eq!(
            plugin_err(p.provider_chat(&msgs(), "m")).1,
            "not authenticated"
        );

        // Invalid credentials: the plugin's err text.
        let (function, message) = plugin_err(p.provider_auth_init("not json"));
        assert_eq!(function, "auth-init");
        assert!(
            message.starts_with("invalid credentials: "),
            "{compiler}: {message}"
        );
        let (_, message) = plugin_err(p.provider_auth_init(r#"{"api_key":"k"}"#));
        assert!(
            message.starts_with("invalid credentials: missing field `base_url`"),
            "{compiler}: {message}"
        );
        assert_eq!(
            plugin_err(p.provider_auth_init(r#"{"api_key":"","base_url":"http://x"}"#)).1,
            "invalid credentials: empty api_key"
        );
        assert_eq!(
            plugin_err(p.provider_auth_init(r#"{"api_key":"k","base_url":""}"#)).1,
            "invalid credentials: empty base_url"
        );
        assert_eq!(
            p.provider_auth_status().expect("auth-status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert!(!data_dir(&env, PROVIDER).join("storage.json").exists());
        assert!(server.requests().is_empty());

        init_provider(p, API_KEY, &server.base_url());
        assert_eq!(
            p.provider_auth_status().expect("auth-status"),
            ProviderAuthStatus::Authenticated,
            "{compiler}"
        );
        assert_eq!(
            storage_file(&env, PROVIDER),
            map(&[("api_key", API_KEY), ("base_url", &server.base_url())])
        );
        assert_eq!(
            p.provider_models().expect("models"),
            server_models(),
            "{compiler}"
        );
        let reqs = server.requests_to("/v1/models");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].method, "GET");
        assert_eq!(
            reqs[0].header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );

        p.provider_auth_logout().expect("auth-logout");
        assert_eq!(
            p.provider_auth_status().expect("auth-status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert_eq!(storage_file(&env, PROVIDER), BTreeMap::new());
        assert_eq!(p.provider_models().expect("models"), vec![]);
        assert_eq!(server.requests().len(), 1, "{compiler}");
        assert_eq!(p.instances_created(), 1, "{compiler}");
    }
}

/// Poll a stream until its `done` chunk (bounded); every chunk in order.
fn drain_stream(p: &mut PluginInstance, id: u64) -> Vec<StreamChunk> {
    let mut chunks = Vec::new();
    for _ in 0..100 {
        let c = p.provider_chat_stream_poll(id).expect("chat-stream-poll");
        let done = c.done;
        chunks.push(c);
        if done {
            return chunks;
        }
    }
    panic!("stream {id} never finished: {chunks:?}");
}

#[test]
fn openai_provider_chat_and_streaming_against_the_server() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = env_with(PROVIDER);
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);
        init_provider(p, API_KEY, &server.base_url());

        let full = ChatResponse {
            text: "echo: hello there".into(),
            usage: Some(Usage {
                input_tokens: 2,
                output_tokens: 3,
            }),
            finish_reason: Some("stop".into()),
        };
        assert_eq!(
            p.provider_chat(&msgs(), "test-model").expect("chat"),
            full,
            "{compiler}"
        );
        let reqs = server.requests_to("/v1/chat/completions");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(
            reqs[0].header("authorization"),
            Some(format!("Bearer {API_KEY}").as_str())
        );
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        assert_eq!(reqs[0].header("accept"), Some("application/json"));
        assert_eq!(
            reqs[0].json(),
            Some(json!({
                "model": "test-model",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hello there"}
                ]
            }))
        );

        // Streaming: the SSE deltas one by one, then the done chunk with the usage.
        server.clear_requests();
        let id = p
            .provider_chat_stream_start(&msgs(), "test-model")
            .expect("chat-stream-start");
        assert_eq!(id, 1, "{compiler}: first stream of the instance");
        let reqs = server.requests_to("/v1/chat/completions");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(
            reqs[0].json(),
            Some(json!({
                "model": "test-model",
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hello there"}
                ],
                "stream": true
            }))
        );
        let chunks = drain_stream(p, id);
        let (last, body) = chunks.split_last().expect("at least the done chunk");
        assert_eq!(
            body.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
            vec!["echo:", " hello", " there"],
            "{compiler}"
        );
        assert!(body.iter().all(|c| !c.done && c.usage.is_none()));
        assert_eq!(
            *last,
            StreamChunk {
                text: String::new(),
                done: true,
                usage: full.usage,
            },
            "{compiler}"
        );
        let joined: String = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(joined, full.text, "{compiler}");

        // The finished stream is forgotten; unknown ids are errors (u64 range included).
        assert_eq!(
            plugin_err(p.provider_chat_stream_poll(id)),
            (
                "chat-stream-poll".to_string(),
                "unknown stream 1".to_string()
            )
        );
        assert_eq!(
            plugin_err(p.provider_chat_stream_poll(u64::MAX)).1,
            "unknown stream 18446744073709551615"
        );
        // Two streams at once, interleaved.
        let a = p
            .provider_chat_stream_start(&[user("alpha beta")], "m")
            .expect("start a");
        let b = p
            .provider_chat_stream_start(&[user("gamma")], "m")
            .expect("start b");
        assert_eq!((a, b), (2, 3), "{compiler}");
        assert_eq!(
            p.provider_chat_stream_poll(b).expect("poll b").text,
            "echo:"
        );
        assert_eq!(
            p.provider_chat_stream_poll(a).expect("poll a").text,
            "echo:"
        );
        let rest_b: String = drain_stream(p, b).iter().map(|c| c.text.clone()).collect();
        let rest_a: String = drain_stream(p, a).iter().map(|c| c.text.clone()).collect();
        assert_eq!(
            (rest_a.as_str(), rest_b.as_str()),
            (" alpha beta", " gamma")
        );
        assert_eq!(p.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn openai_provider_http_failures_are_err_values() {
    for compiler in compilers() {
        let server = HttpTestServer::start();
        let env = env_with(PROVIDER);
        let mut host = env.host(compiler);
        let p = plugin(&mut host, PROVIDER);

        // The server refuses the key: err("HTTP 401: <body>").
        init_provider(p, "bad", &server.base_url());
        let (function, message) = plugin_err(p.provider_chat(&msgs(), "test-model"));
        assert_eq!(function, "chat");
        assert!(message.starts_with("HTTP 401: "), "{compiler}: {message}");
        assert!(
            message.contains("Incorrect API key provided"),
            "{compiler}: {message}"
        );
        let (function, message) = plugin_err(p.provider_chat_stream_start(&msgs(), "test-model"));
        assert_eq!(function, "chat-stream-start");
        assert!(message.starts_with("HTTP 401: "), "{compiler}: {message}");

        // A denied host: the host's http-error message.
        init_provider(p, API_KEY, &server.localhost_url(""));
        server.clear_requests();
        assert_eq!(
            plugin_err(p.provider_chat(&msgs(), "test-model")).1,
            format!(
                "permission denied: {} is not allowed by capabilities.http",
                server.localhost_url("/v1/chat/completions")
            ),
            "{compiler}"
        );
        assert_eq!(p.provider_models().expect("models"), vec![]);
        assert!(server.requests().is_empty(), "{compiler}");
        assert_eq!(p.instances_created(), 1, "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// chat-channel
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
    let text = inst.channel_widget_state().expect("widget-state");
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

/// Poll until `want` messages arrived (bounded by [`WAIT`]); the messages and poll count.
fn poll_for(inst: &mut PluginInstance, want: usize) -> (Vec<InboundMessage>, u64) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut polls = 0u64;
    while got.len() < want && start.elapsed() < WAIT {
        got.extend(inst.channel_poll().expect("poll"));
        polls += 1;
    }
    (got, polls)
}

#[test]
fn chat_channel_info_start_stop_widget_and_auth() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);
        assert_eq!(
            c.channel_info().expect("info"),
            ChannelInfo {
                id: "chat-channel".into(),
                display_name: "Chat Channel".into(),
                description: "Example channel speaking the canonical ABI".into(),
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
        // stop without a connection is fine.
        c.channel_stop().expect("stop");
        assert_eq!(
            widget(c),
            json!({"starts": 2, "polls": 0, "sent": 0, "connected": false})
        );

        assert_eq!(
            c.channel_auth_status().expect("auth-status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        let (function, message) = plugin_err(c.channel_auth_init(r#"{"gateway_url":"wss://x/"}"#));
        assert_eq!(function, "auth-init");
        assert!(
            message.starts_with("invalid credentials: missing field `access_token`"),
            "{compiler}: {message}"
        );
        assert_eq!(
            c.channel_auth_status().expect("auth-status"),
            ProviderAuthStatus::NotAuthenticated
        );
        c.channel_auth_init(&channel_creds(&s.wss.url(), &s.http.base_url()))
            .expect("auth-init");
        assert_eq!(
            c.channel_auth_status().expect("auth-status"),
            ProviderAuthStatus::Authenticated,
            "{compiler}"
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

        c.channel_auth_logout().expect("auth-logout");
        assert_eq!(
            c.channel_auth_status().expect("auth-status"),
            ProviderAuthStatus::NotAuthenticated,
            "{compiler}"
        );
        assert_eq!(storage_file(&s.env, CHANNEL), map(&[("starts", "2")]));
        assert_eq!(
            plugin_err(c.channel_poll()).1,
            "not configured",
            "{compiler}"
        );
        assert_eq!(
            widget(c),
            json!({"starts": 2, "polls": 1, "sent": 0, "connected": false})
        );
        assert_eq!(c.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn chat_channel_poll_receives_gateway_messages_and_stop_closes_the_socket() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);
        c.channel_auth_init(&channel_creds(&s.wss.url(), &s.http.base_url()))
            .expect("auth-init");
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
        assert_eq!(
            widget(c),
            json!({"starts": 0, "polls": polls, "sent": 0, "connected": true}),
            "{compiler}"
        );

        // The server closes: the plugin forgets the handle and reconnects on a later poll.
        assert_eq!(s.wss.close_all(1000, "bye"), 1);
        assert!(
            wait_until(WAIT, || {
                let _ = c.channel_poll().expect("poll");
                widget(c)["connected"] == json!(false)
            }),
            "{compiler}: the close was never noticed"
        );
        s.wss.push_to_next_connection(vec![
            json!({"conversation_id": "conv-3", "user_id": "u", "text": "again"}).to_string(),
        ]);
        let (got, _) = poll_for(c, 1);
        assert_eq!(
            got,
            vec![inbound("conv-3", "u", "again", "ws")],
            "{compiler}"
        );
        assert_eq!(s.wss.connections().len(), 2, "{compiler}");

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
fn chat_channel_send_posts_and_reports_failures() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);

        let msg = OutboundMessage {
            conversation_id: "conv-9".into(),
            text: "hello out there ✓".into(),
            message_id: None,
            is_final: true,
            metadata_json: "{}".into(),
        };
        assert_eq!(plugin_err(c.channel_send(&msg)).1, "not configured");
        // api_base without a token.
        store(c, "api_base", &s.http.base_url());
        assert_eq!(
            plugin_err(c.channel_send(&msg)),
            ("send".to_string(), "not authenticated".to_string()),
            "{compiler}"
        );

        c.channel_auth_init(&channel_creds(&s.wss.url(), &s.http.base_url()))
            .expect("auth-init");
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
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(
            reqs[0].header("authorization"),
            Some(format!("Bearer {TOKEN}").as_str())
        );
        assert_eq!(reqs[0].header("content-type"), Some("application/json"));
        assert_eq!(
            reqs[0].json(),
            Some(json!({
                "conversation_id": "conv-9",
                "text": "hello out there ✓",
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

        // An api_base on a host the manifest does not allow: the host's message.
        let denied = format!("http://127.0.0.2:{}", s.http.port());
        c.channel_auth_init(&channel_creds(&s.wss.url(), &denied))
            .expect("auth-init");
        assert_eq!(
            c.channel_send(&msg).expect("send"),
            SendResult {
                success: false,
                message_id: None,
                error: Some(format!(
                    "permission denied: {denied}/send is not allowed by capabilities.http"
                )),
            },
            "{compiler}"
        );
        assert_eq!(s.http.sent().len(), 3, "{compiler}");
        assert_eq!(stored(c, "sent").as_deref(), Some("2"));
        assert_eq!(widget(c)["sent"], json!(2));
        assert_eq!(c.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn chat_channel_webhook_and_gateway_events() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);

        let mut req = WebhookRequest {
            method: "POST".into(),
            path: "/channels/chat-channel/webhook".into(),
            query: Some("a=1&b=2".into()),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-signature".into(), "sig".into()),
            ],
            body: json!({"conversation_id": "c-7", "user_id": "u-7", "text": "via webhook"})
                .to_string(),
        };
        assert_eq!(
            c.channel_handle_webhook(&req).expect("handle-webhook"),
            WebhookResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: "{\"ok\":true}".into(),
                messages: vec![inbound("c-7", "u-7", "via webhook", "webhook")],
            },
            "{compiler}"
        );
        req.body = "{\"unexpected\": true}".into();
        req.query = None;
        assert_eq!(
            c.channel_handle_webhook(&req).expect("handle-webhook"),
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
            c.channel_handle_gateway_event(&create)
                .expect("handle-gateway-event"),
            vec![inbound("chan-1", "author-1", "gateway hi", "gateway")],
            "{compiler}"
        );
        let other = json!({"t": "TYPING_START", "d": {}}).to_string();
        assert_eq!(
            c.channel_handle_gateway_event(&other)
                .expect("handle-gateway-event"),
            Vec::<InboundMessage>::new()
        );
        assert_eq!(
            plugin_err(c.channel_handle_gateway_event("not json")),
            (
                "handle-gateway-event".to_string(),
                "invalid gateway event JSON".to_string()
            ),
            "{compiler}"
        );
        let partial = json!({"t": "MESSAGE_CREATE", "d": {"channel_id": "x"}}).to_string();
        assert_eq!(
            plugin_err(c.channel_handle_gateway_event(&partial)).1,
            "invalid MESSAGE_CREATE payload"
        );
        assert!(s.http.requests().is_empty());
        assert_eq!(c.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn chat_channel_gateway_on_a_denied_host_is_an_error() {
    for compiler in compilers() {
        let s = channel_setup();
        let mut host = s.env.host(compiler);
        let c = plugin(&mut host, CHANNEL);
        // 127.0.0.2 is not in the allowlist ["127.0.0.1", "localhost"].
        let denied = format!("wss://127.0.0.2:{}/", s.wss.port());
        c.channel_auth_init(&channel_creds(&denied, &s.http.base_url()))
            .expect("auth-init");
        let (function, message) = plugin_err(c.channel_poll());
        assert_eq!(function, "poll");
        assert!(
            message.starts_with("ws.connect failed: WebSocket host not allowed"),
            "{compiler}: {message}"
        );
        assert!(s.wss.connections().is_empty(), "{compiler}");
        assert_eq!(widget(c)["connected"], json!(false));
        assert_eq!(c.instances_created(), 1, "{compiler}");
    }
}

// ---------------------------------------------------------------------------------------
// hook-guard
// ---------------------------------------------------------------------------------------

fn event(kind: HookEventKind, session_id: &str, payload: &Value) -> HookEvent {
    HookEvent {
        kind,
        session_id: session_id.to_string(),
        payload_json: payload.to_string(),
    }
}

#[test]
fn hook_guard_name_and_subscriptions() {
    for compiler in compilers() {
        let env = env_with(HOOK);
        let mut host = env.host(compiler);
        let h = plugin(&mut host, HOOK);
        assert_eq!(h.hook_name().expect("name"), "Hook Guard", "{compiler}");
        assert_eq!(
            h.hook_subscriptions().expect("subscriptions"),
            vec![
                HookEventKind::UserMessage,
                HookEventKind::BeforeToolCall,
                HookEventKind::AfterToolCall,
                HookEventKind::SessionStart,
            ],
            "{compiler}"
        );
        assert_eq!(h.instances_created(), 1, "{compiler}");
    }
}

#[test]
fn hook_guard_blocks_rewrites_and_counts() {
    for compiler in compilers() {
        let env = env_with(HOOK);
        let mut host = env.host(compiler);
        let h = plugin(&mut host, HOOK);
        let mut on = |kind, payload: Value| {
            h.hook_on_event(&event(kind, "sess-1", &payload))
                .expect("on-event")
        };

        // user-message: block, rewrite, allow.
        assert_eq!(
            on(
                HookEventKind::UserMessage,
                json!({"role": "user", "content": "this is forbidden"})
            ),
            HookDecision::Block("message contains a forbidden word".into()),
            "{compiler}"
        );
        assert_eq!(
            on(
                HookEventKind::UserMessage,
                json!({"role": "user", "content": "forbidden secret-token"})
            ),
            HookDecision::Block("message contains a forbidden word".into())
        );
        let rewritten = on(
            HookEventKind::UserMessage,
            json!({"role": "user", "content": "my secret-token and secret-token", "meta": {"n": [1, 2]}}),
        );
        match rewritten {
            HookDecision::Rewrite(text) => {
                let v: Value = serde_json::from_str(&text).expect("rewritten payload is JSON");
                assert_eq!(
                    v,
                    json!({"role": "user", "content": "my [redacted] and [redacted]", "meta": {"n": [1, 2]}}),
                    "{compiler}"
                );
            }
            other => panic!("{compiler}: expected a rewrite, got {other:?}"),
        }
        assert_eq!(
            on(
                HookEventKind::UserMessage,
                json!({"role": "user", "content": "hello"})
            ),
            HookDecision::Allow
        );
        assert_eq!(
            on(HookEventKind::UserMessage, json!({"content": 42})),
            HookDecision::Allow
        );

        // before-tool-call: shell is blocked, other tools run.
        assert_eq!(
            on(
                HookEventKind::BeforeToolCall,
                json!({"tool": "shell", "arguments": "{\"cmd\":\"ls\"}"})
            ),
            HookDecision::Block("shell is not allowed".into()),
            "{compiler}"
        );
        assert_eq!(
            on(
                HookEventKind::BeforeToolCall,
                json!({"tool": "read_file", "arguments": "{}"})
            ),
            HookDecision::Allow
        );

        // Unsubscribed kinds are let through, whatever they carry.
        assert_eq!(
            on(
                HookEventKind::AssistantMessage,
                json!({"role": "assistant", "content": "forbidden"})
            ),
            HookDecision::Allow
        );
        assert_eq!(
            on(
                HookEventKind::SessionEnd,
                json!({"session_id": "sess-1", "reason": "quit"})
            ),
            HookDecision::Allow
        );
        assert!(
            !data_dir(&env, HOOK).join("storage.json").exists(),
            "{compiler}: no side effects yet"
        );

        // session-start stores the event's session id (not the payload's).
        assert_eq!(
            h.hook_on_event(&event(
                HookEventKind::SessionStart,
                "sess-42",
                &json!({"session_id": "other", "workspace": "/w"})
            ))
            .expect("on-event"),
            HookDecision::Allow
        );
        assert_eq!(
            storage_file(&env, HOOK),
            map(&[("last_session", "sess-42")])
        );

        // after-tool-call counts.
        for _ in 0..3 {
            assert_eq!(
                h.hook_on_event(&event(
                    HookEventKind::AfterToolCall,
                    "sess-42",
                    &json!({"tool": "read_file", "arguments": "{}", "success": true, "output": "x"})
                ))
                .expect("on-event"),
                HookDecision::Allow
            );
        }
        assert_eq!(
            storage_file(&env, HOOK),
            map(&[("last_session", "sess-42"), ("tool_calls", "3")]),
            "{compiler}"
        );

        // Invalid payload JSON: allow, no side effects, even for blocking kinds.
        for kind in [
            HookEventKind::SessionStart,
            HookEventKind::AfterToolCall,
            HookEventKind::BeforeToolCall,
            HookEventKind::UserMessage,
        ] {
            let bad = HookEvent {
                kind,
                session_id: "sess-bad".into(),
                payload_json: "{\"tool\": \"shell\", forbidden".into(),
            };
            assert_eq!(
                h.hook_on_event(&bad).expect("on-event"),
                HookDecision::Allow,
                "{compiler}: {kind:?}"
            );
        }
        assert_eq!(
            storage_file(&env, HOOK),
            map(&[("last_session", "sess-42"), ("tool_calls", "3")]),
            "{compiler}"
        );

        // A non-numeric count restarts at 0.
        store(h, "tool_calls", "garbage");
        h.hook_on_event(&event(HookEventKind::AfterToolCall, "s", &json!({})))
            .expect("on-event");
        assert_eq!(stored(h, "tool_calls").as_deref(), Some("1"), "{compiler}");
        assert_eq!(h.instances_created(), 1, "{compiler}");
    }
}
