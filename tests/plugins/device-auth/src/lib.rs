//! `device-auth`: an example auth plugin built the way the tark SDK guide tells plugin authors
//! to build one: wit-bindgen 0.36, world `auth-world`, target wasm32-wasip1. The result is a
//! core module speaking the canonical ABI (see canonical-abi.md), not a component.
//!
//! It runs a real OAuth 2.0 device authorization flow (RFC 8628 style):
//! `start-device-flow` asks `{base}/oauth/device/code` for a device/user code pair, `poll`
//! exchanges the device code at `{base}/oauth/token` and stores the tokens.
//!
//! auth-world has no init function, so the server base URL comes from the environment
//! variable `DEVICE_AUTH_BASE` (through the `env` import), else from storage `auth_base`,
//! else `https://auth.example.com`.
//!
//! Storage keys: `access_token`, `refresh_token` (when the server sent one) and `expires_at`
//! (seconds since the Unix epoch, when the server sent `expires_in`).

wit_bindgen::generate!({
    world: "auth-world",
    path: "../../../wit",
});

use exports::tark::plugin::auth_plugin::{AuthStatus, DeviceCode, Guest, PollResult};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};
use tark::plugin::{env, http, log, storage};

/// The OAuth client id this example registers as.
const CLIENT_ID: &str = "tark-wasmer-test";
/// Used when neither `DEVICE_AUTH_BASE` nor storage `auth_base` is set.
const DEFAULT_BASE: &str = "https://auth.example.com";
/// RFC 8628 §3.2: the polling interval when the server does not name one.
const DEFAULT_INTERVAL: u64 = 5;
/// Device code lifetime assumed when the server does not name one.
const DEFAULT_EXPIRES_IN: u64 = 900;

const KEY_ACCESS: &str = "access_token";
const KEY_REFRESH: &str = "refresh_token";
const KEY_EXPIRES_AT: &str = "expires_at";

struct DeviceAuth;

export!(DeviceAuth);

/// The authorization server's base URL, without a trailing slash.
fn base_url() -> String {
    let base = env::get("DEVICE_AUTH_BASE")
        .filter(|s| !s.trim().is_empty())
        .or_else(|| storage::get("auth_base").filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| DEFAULT_BASE.to_string());
    base.trim().trim_end_matches('/').to_string()
}

fn form_headers() -> Vec<(String, String)> {
    vec![
        (
            "Content-Type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        ),
        ("Accept".to_string(), "application/json".to_string()),
    ]
}

/// `application/x-www-form-urlencoded` encoding of one value (unreserved bytes kept).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A number that servers send either as a JSON number or as a decimal string.
fn u64_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn parse_device_code(body: &str) -> Result<DeviceCode, String> {
    let v: Value =
        serde_json::from_str(body).map_err(|e| format!("invalid device code response: {e}"))?;
    let field = |key: &str| {
        str_field(&v, key)
            .map(str::to_string)
            .ok_or_else(|| format!("invalid device code response: missing `{key}`"))
    };
    let device_code = field("device_code")?;
    let user_code = field("user_code")?;
    let verification_url = str_field(&v, "verification_uri")
        .or_else(|| str_field(&v, "verification_url"))
        .map(str::to_string)
        .ok_or_else(|| "invalid device code response: missing `verification_uri`".to_string())?;
    Ok(DeviceCode {
        device_code,
        user_code,
        verification_url,
        expires_in: u64_field(&v, "expires_in").unwrap_or(DEFAULT_EXPIRES_IN),
        interval: u64_field(&v, "interval").unwrap_or(DEFAULT_INTERVAL),
    })
}

/// Stores the tokens of a successful token response; returns the access token.
fn store_tokens(v: &Value) -> Result<String, String> {
    let token = str_field(v, "access_token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| "invalid token response: missing `access_token`".to_string())?;
    storage::set(KEY_ACCESS, token).map_err(|e| format!("storage: {e}"))?;
    match str_field(v, "refresh_token") {
        Some(r) => storage::set(KEY_REFRESH, r).map_err(|e| format!("storage: {e}"))?,
        None => storage::delete(KEY_REFRESH).map_err(|e| format!("storage: {e}"))?,
    }
    match u64_field(v, "expires_in") {
        Some(secs) => {
            let at = now_secs().saturating_add(secs);
            storage::set(KEY_EXPIRES_AT, &at.to_string()).map_err(|e| format!("storage: {e}"))?
        }
        None => storage::delete(KEY_EXPIRES_AT).map_err(|e| format!("storage: {e}"))?,
    }
    Ok(token.to_string())
}

/// Maps a token endpoint answer to a poll result (RFC 8628 §3.5).
fn token_response(resp: &http::HttpResponse) -> PollResult {
    let parsed: Option<Value> = serde_json::from_str(&resp.body).ok();
    if resp.status == 200 {
        return match parsed {
            Some(v) => match store_tokens(&v) {
                Ok(token) => PollResult::Success(token),
                Err(e) => PollResult::Error(e),
            },
            None => PollResult::Error("invalid token response: not JSON".to_string()),
        };
    }
    let Some(error) = parsed.as_ref().and_then(|v| str_field(v, "error")) else {
        return PollResult::Error(format!("token request failed: HTTP {}", resp.status));
    };
    match error {
        "authorization_pending" | "slow_down" => PollResult::Pending,
        "expired_token" => PollResult::Expired,
        other => {
            let description = parsed
                .as_ref()
                .and_then(|v| str_field(v, "error_description"))
                .unwrap_or_default();
            if description.is_empty() {
                PollResult::Error(other.to_string())
            } else {
                PollResult::Error(format!("{other}: {description}"))
            }
        }
    }
}

impl Guest for DeviceAuth {
    fn display_name() -> String {
        "Device Auth".to_string()
    }

    fn status() -> AuthStatus {
        if storage::get(KEY_ACCESS).is_none() {
            return AuthStatus::NotAuthenticated;
        }
        let expires_at = storage::get(KEY_EXPIRES_AT).and_then(|s| s.trim().parse::<u64>().ok());
        match expires_at {
            Some(at) if at <= now_secs() => AuthStatus::Expired,
            _ => AuthStatus::Authenticated,
        }
    }

    fn start_device_flow() -> Result<DeviceCode, String> {
        let url = format!("{}/oauth/device/code", base_url());
        let body = format!("client_id={CLIENT_ID}&scope=read");
        let resp = http::post(&url, &body, &form_headers()).map_err(|e| e.message)?;
        if resp.status != 200 {
            return Err(format!("device code request failed: HTTP {}", resp.status));
        }
        let code = parse_device_code(&resp.body)?;
        log::info(&format!(
            "device flow started: visit {} and enter {}",
            code.verification_url, code.user_code
        ));
        Ok(code)
    }

    fn poll(device_code: String) -> PollResult {
        let url = format!("{}/oauth/token", base_url());
        let body = format!(
            "grant_type=urn:ietf:params:oauth:grant-type:device_code&device_code={}&client_id={CLIENT_ID}",
            form_encode(&device_code)
        );
        match http::post(&url, &body, &form_headers()) {
            Ok(resp) => token_response(&resp),
            Err(e) => PollResult::Error(e.message),
        }
    }

    fn get_token() -> Result<String, String> {
        storage::get(KEY_ACCESS).ok_or_else(|| "not authenticated".to_string())
    }

    fn logout() -> Result<(), String> {
        let mut first_error = None;
        for key in [KEY_ACCESS, KEY_REFRESH, KEY_EXPIRES_AT] {
            if let Err(e) = storage::delete(key) {
                log::warn(&format!("logout: could not delete {key}: {e}"));
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
