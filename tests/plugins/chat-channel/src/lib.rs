//! `chat-channel`: an example channel plugin built with wit-bindgen 0.36 (world
//! `channel-world`, target wasm32-wasip1): a core module speaking the canonical ABI (see
//! canonical-abi.md). It is the canonical-ABI twin of `legacy-channel`: the same behaviour,
//! storage keys and wire formats, so tests can run one scenario against both ABIs.
//!
//! Differences forced by the ABI: arguments and results are typed (no JSON envelopes for the
//! plugin's own interface), and host imports have no negative error codes. The `ws` import
//! returns the same JSON envelope strings as the legacy ABI; a refusal or failure is
//! `{"error":"...","ok":false}`, whose text is passed on in `Err(...)`.
//!
//! Per-instance state (deliberately NOT in storage, so the host's instance reuse is
//! observable): the open WebSocket handle and the `polls` counter live in statics.
//! `widget-state` reports `polls`: it grows across calls only while the host keeps reusing the
//! same instance, and is 0 in every fresh instance. The `starts` and `sent` counters are kept in
//! storage and therefore survive instances.

wit_bindgen::generate!({
    world: "channel-world",
    path: "../../../wit",
});

use exports::tark::plugin::channel_plugin::{
    ChannelAuthStatus, ChannelInfo, Guest, InboundMessage, OutboundMessage, SendResult,
    WebhookRequest, WebhookResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use tark::plugin::{http, log, storage, ws};

struct ChatChannel;

export!(ChatChannel);

/// Whether `WS_HANDLE` holds an open connection of this instance.
static WS_OPEN: AtomicBool = AtomicBool::new(false);
static WS_HANDLE: AtomicI64 = AtomicI64::new(0);
/// `poll` calls made on this instance (not persisted; see the crate docs).
static POLLS: AtomicU64 = AtomicU64::new(0);

/// Receives per poll, and their waits: the first recv after a connect waits longer so the
/// handshake (done asynchronously by the host) has time to finish.
const MAX_RECVS_PER_POLL: usize = 16;
const FIRST_RECV_TIMEOUT_MS: i64 = 200;
const RECV_TIMEOUT_MS: i64 = 20;
const RECV_MAX_BYTES: i64 = 65536;

const KEY_TOKEN: &str = "token";
const KEY_GATEWAY: &str = "gateway_url";
const KEY_API_BASE: &str = "api_base";

fn counter(key: &str) -> u64 {
    storage::get(key)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn bump_counter(key: &str) -> Result<(), String> {
    let next = counter(key).saturating_add(1);
    storage::set(key, &next.to_string())
}

fn forget_handle() {
    WS_OPEN.store(false, Ordering::Relaxed);
    WS_HANDLE.store(0, Ordering::Relaxed);
}

fn inbound(conversation_id: &str, user_id: &str, text: &str, source: &str) -> InboundMessage {
    InboundMessage {
        conversation_id: conversation_id.to_string(),
        user_id: user_id.to_string(),
        text: text.to_string(),
        metadata_json: json!({ "source": source }).to_string(),
    }
}

/// A `ws` import's answer: the envelope and, when it is not `"ok": true`, the error text (the
/// envelope's `error`, or the raw answer when it is not a JSON envelope).
fn envelope(raw: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(raw).unwrap_or(Value::Null);
    if v.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(v);
    }
    Err(match v.get("error").and_then(Value::as_str) {
        Some(e) => e.to_string(),
        None => raw.to_string(),
    })
}

/// Opens the gateway connection and identifies; returns the handle.
fn connect(gateway_url: &str, token: &str) -> Result<i64, String> {
    let headers = json!([["Authorization", format!("Bearer {token}")]]).to_string();
    let v = envelope(&ws::connect(gateway_url, &headers))
        .map_err(|e| format!("ws.connect failed: {e}"))?;
    let handle = v
        .get("handle")
        .and_then(Value::as_i64)
        .ok_or_else(|| "ws.connect answered without a handle".to_string())?;
    WS_HANDLE.store(handle, Ordering::Relaxed);
    WS_OPEN.store(true, Ordering::Relaxed);

    let identify = json!({ "op": "identify", "token": token }).to_string();
    if let Err(e) = envelope(&ws::send(handle, &identify)) {
        // The handshake runs asynchronously in the host; a failure also shows up in recv.
        log::warn(&format!("identify not sent: {e}"));
    }
    Ok(handle)
}

#[derive(Deserialize)]
struct Inbound {
    conversation_id: String,
    user_id: String,
    text: String,
}

fn poll_gateway() -> Result<Vec<InboundMessage>, String> {
    let Some(gateway_url) = storage::get(KEY_GATEWAY) else {
        return Err("not configured".to_string());
    };
    let token = storage::get(KEY_TOKEN).unwrap_or_default();
    let mut timeout = RECV_TIMEOUT_MS;
    let handle = if WS_OPEN.load(Ordering::Relaxed) {
        WS_HANDLE.load(Ordering::Relaxed)
    } else {
        timeout = FIRST_RECV_TIMEOUT_MS;
        connect(&gateway_url, &token)?
    };

    let mut msgs = Vec::new();
    for _ in 0..MAX_RECVS_PER_POLL {
        let raw = ws::recv(handle, timeout, RECV_MAX_BYTES);
        timeout = RECV_TIMEOUT_MS;
        let v = match envelope(&raw) {
            Ok(v) => v,
            Err(e) => {
                // Unknown handle (e.g. the host dropped it): reconnect on the next poll.
                log::warn(&format!("ws.recv failed: {e}"));
                forget_handle();
                break;
            }
        };
        if let Some(text) = v.get("message").and_then(Value::as_str) {
            msgs.push(match serde_json::from_str::<Inbound>(text) {
                Ok(m) => inbound(&m.conversation_id, &m.user_id, &m.text, "ws"),
                Err(_) => inbound("ws", "ws", text, "ws"),
            });
            continue;
        }
        if v.get("closed").and_then(Value::as_bool) == Some(true) {
            forget_handle();
            break;
        }
        if v.get("error").and_then(Value::as_str) == Some("message_too_large") {
            continue;
        }
        break; // timeout: nothing more right now
    }
    Ok(msgs)
}

#[derive(Deserialize)]
struct AuthInit {
    access_token: String,
    gateway_url: Option<String>,
    api_base: Option<String>,
}

impl Guest for ChatChannel {
    fn info() -> ChannelInfo {
        ChannelInfo {
            id: "chat-channel".to_string(),
            display_name: "Chat Channel".to_string(),
            description: "Example channel speaking the canonical ABI".to_string(),
            supports_streaming: false,
            supports_edits: true,
        }
    }

    /// Counts starts in storage (`starts`, a decimal string).
    fn start() -> Result<(), String> {
        bump_counter("starts")
    }

    fn stop() -> Result<(), String> {
        if WS_OPEN.load(Ordering::Relaxed) {
            let answer = ws::close(WS_HANDLE.load(Ordering::Relaxed));
            if let Err(e) = envelope(&answer) {
                log::warn(&format!("ws.close failed: {e}"));
            }
            forget_handle();
        }
        Ok(())
    }

    fn auth_status() -> ChannelAuthStatus {
        if storage::get(KEY_TOKEN).is_some() {
            ChannelAuthStatus::Authenticated
        } else {
            ChannelAuthStatus::NotAuthenticated
        }
    }

    /// `{"access_token":"...","gateway_url":"ws://...","api_base":"http://..."}` → storage.
    fn auth_init(credentials_json: String) -> Result<(), String> {
        let creds: AuthInit = serde_json::from_str(&credentials_json)
            .map_err(|e| format!("invalid credentials: {e}"))?;
        storage::set(KEY_TOKEN, &creds.access_token)?;
        if let Some(g) = creds.gateway_url {
            storage::set(KEY_GATEWAY, &g)?;
        }
        if let Some(a) = creds.api_base {
            storage::set(KEY_API_BASE, &a)?;
        }
        Ok(())
    }

    fn auth_logout() -> Result<(), String> {
        let mut first_error = None;
        for key in [KEY_TOKEN, KEY_GATEWAY, KEY_API_BASE] {
            if let Err(e) = storage::delete(key) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn widget_state() -> Result<String, String> {
        Ok(json!({
            "starts": counter("starts"),
            "polls": POLLS.load(Ordering::Relaxed),
            "sent": counter("sent"),
            "connected": WS_OPEN.load(Ordering::Relaxed),
        })
        .to_string())
    }

    fn handle_webhook(request: WebhookRequest) -> Result<WebhookResponse, String> {
        Ok(match serde_json::from_str::<Inbound>(&request.body) {
            Ok(m) => WebhookResponse {
                status: 200,
                headers: vec![("content-type".to_string(), "application/json".to_string())],
                body: "{\"ok\":true}".to_string(),
                messages: vec![inbound(&m.conversation_id, &m.user_id, &m.text, "webhook")],
            },
            Err(_) => WebhookResponse {
                status: 400,
                headers: Vec::new(),
                body: "bad request".to_string(),
                messages: Vec::new(),
            },
        })
    }

    fn handle_gateway_event(payload_json: String) -> Result<Vec<InboundMessage>, String> {
        let ev: Value = serde_json::from_str(&payload_json)
            .map_err(|_| "invalid gateway event JSON".to_string())?;
        if ev.get("t").and_then(Value::as_str) != Some("MESSAGE_CREATE") {
            return Ok(Vec::new());
        }
        let d = ev.get("d");
        let field = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str);
        let (Some(channel), Some(author), Some(content)) =
            (field("channel_id"), field("author_id"), field("content"))
        else {
            return Err("invalid MESSAGE_CREATE payload".to_string());
        };
        Ok(vec![inbound(channel, author, content, "gateway")])
    }

    fn poll() -> Result<Vec<InboundMessage>, String> {
        POLLS.fetch_add(1, Ordering::Relaxed);
        poll_gateway()
    }

    fn send(message: OutboundMessage) -> Result<SendResult, String> {
        let Some(api_base) = storage::get(KEY_API_BASE) else {
            return Err("not configured".to_string());
        };
        let Some(token) = storage::get(KEY_TOKEN) else {
            return Err("not authenticated".to_string());
        };
        let url = format!("{}/send", api_base.trim_end_matches('/'));
        let body = json!({
            "conversation_id": message.conversation_id,
            "text": message.text,
            "message_id": message.message_id,
            "is_final": message.is_final,
        })
        .to_string();
        let headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            ("Authorization".to_string(), format!("Bearer {token}")),
        ];
        let resp = match http::post(&url, &body, &headers) {
            Ok(resp) => resp,
            Err(e) => {
                return Ok(SendResult {
                    success: false,
                    message_id: None,
                    error: Some(e.message),
                })
            }
        };
        if !(200..300).contains(&resp.status) {
            return Ok(SendResult {
                success: false,
                message_id: None,
                error: Some(format!("HTTP {}", resp.status)),
            });
        }
        let id = serde_json::from_str::<Value>(&resp.body)
            .ok()
            .and_then(|b| b.get("id").and_then(Value::as_str).map(str::to_string));
        if bump_counter("sent").is_err() {
            log::warn("could not persist the sent counter");
        }
        Ok(SendResult {
            success: true,
            message_id: id,
            error: None,
        })
    }
}
