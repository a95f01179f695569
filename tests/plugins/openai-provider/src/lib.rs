//! `openai-provider`: an example provider plugin built with wit-bindgen 0.36 (world
//! `provider-world`, target wasm32-wasip1): a core module speaking the canonical ABI (see
//! canonical-abi.md) that talks to an OpenAI-compatible chat API.
//!
//! - `auth-init` takes `{"api_key": "...", "base_url": "http://127.0.0.1:PORT"}` and stores
//!   both (storage keys `api_key`, `base_url`); every request sends `Authorization: Bearer`.
//! - `models`: `GET {base_url}/v1/models`; `chat`: `POST {base_url}/v1/chat/completions`.
//! - Streaming: `chat-stream-start` POSTs with `"stream": true`, reads the whole SSE answer
//!   (`data: {json}` lines, ending with `data: [DONE]`) and keeps its text deltas as a queue in
//!   guest memory under a new stream id (1, 2, ...); `chat-stream-poll` hands them out one by
//!   one, then a final `done` chunk (with the usage when the server sent one) and forgets the
//!   stream. Stream state lives in this instance only.

wit_bindgen::generate!({
    world: "provider-world",
    path: "../../../wit",
});

use exports::tark::plugin::provider_plugin::{
    ChatResponse, Guest, Message, ModelInfo, ProviderAuthStatus, ProviderInfo, Role, StreamChunk,
    Usage,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use tark::plugin::{http, log, storage};

struct OpenAiProvider;

export!(OpenAiProvider);

const KEY_API_KEY: &str = "api_key";
const KEY_BASE_URL: &str = "base_url";
/// Context window reported for every model (the models endpoint does not say).
const CONTEXT_WINDOW: u32 = 128_000;

/// One stream's remaining text chunks and the usage the server reported, if any.
struct Stream {
    chunks: VecDeque<String>,
    usage: Option<Usage>,
}

/// Open streams of this instance, by id.
static STREAMS: Mutex<BTreeMap<u64, Stream>> = Mutex::new(BTreeMap::new());
/// The next stream id (ids start at 1).
static NEXT_STREAM_ID: AtomicU64 = AtomicU64::new(1);

fn streams() -> MutexGuard<'static, BTreeMap<u64, Stream>> {
    // The guest is single-threaded; a poisoned lock can only follow a trap, so its data is
    // still consistent.
    STREAMS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `(base_url without trailing slash, api_key)`, or the "not authenticated" error.
fn credentials() -> Result<(String, String), String> {
    let key = storage::get(KEY_API_KEY).filter(|k| !k.is_empty());
    let base = storage::get(KEY_BASE_URL).filter(|b| !b.is_empty());
    match (base, key) {
        (Some(base), Some(key)) => Ok((base.trim_end_matches('/').to_string(), key)),
        _ => Err("not authenticated".to_string()),
    }
}

fn headers(api_key: &str) -> Vec<(String, String)> {
    vec![
        ("Authorization".to_string(), format!("Bearer {api_key}")),
        ("Content-Type".to_string(), "application/json".to_string()),
        ("Accept".to_string(), "application/json".to_string()),
    ]
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::System => "system",
        Role::User => "user",
        Role::Assistant => "assistant",
        Role::Tool => "tool",
    }
}

fn request_body(messages: &[Message], model: &str, stream: bool) -> String {
    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| json!({ "role": role_name(m.role), "content": m.content }))
        .collect();
    let mut body = json!({ "model": model, "messages": msgs });
    if stream {
        body["stream"] = Value::Bool(true);
    }
    body.to_string()
}

/// POSTs a chat completion request; a non-200 answer is `Err("HTTP <status>: <body>")`.
fn post_chat(messages: &[Message], model: &str, stream: bool) -> Result<String, String> {
    let (base, key) = credentials()?;
    let url = format!("{base}/v1/chat/completions");
    let body = request_body(messages, model, stream);
    let resp = http::post(&url, &body, &headers(&key)).map_err(|e| e.message)?;
    if resp.status != 200 {
        return Err(format!("HTTP {}: {}", resp.status, resp.body));
    }
    Ok(resp.body)
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
}

fn usage_of(v: &Value) -> Option<Usage> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    let wire: WireUsage = serde_json::from_value(u.clone()).ok()?;
    Some(Usage {
        input_tokens: u32::try_from(wire.prompt_tokens).unwrap_or(u32::MAX),
        output_tokens: u32::try_from(wire.completion_tokens).unwrap_or(u32::MAX),
    })
}

fn first_choice(v: &Value) -> Option<&Value> {
    v.get("choices").and_then(Value::as_array)?.first()
}

fn parse_chat_response(body: &str) -> Result<ChatResponse, String> {
    let v: Value = serde_json::from_str(body).map_err(|e| format!("invalid response: {e}"))?;
    let choice = first_choice(&v).ok_or_else(|| "invalid response: no choices".to_string())?;
    let text = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let finish_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok(ChatResponse {
        text,
        usage: usage_of(&v),
        finish_reason,
    })
}

/// Splits an SSE body into its text deltas and the last usage object it carried.
fn parse_sse(body: &str) -> Stream {
    let mut chunks = VecDeque::new();
    let mut usage = None;
    for line in body.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" {
            break;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            log::warn(&format!("skipping a stream event that is not JSON: {data}"));
            continue;
        };
        if let Some(u) = usage_of(&event) {
            usage = Some(u);
        }
        let delta = first_choice(&event)
            .and_then(|c| c.get("delta"))
            .and_then(|d| d.get("content"))
            .and_then(Value::as_str);
        if let Some(text) = delta.filter(|t| !t.is_empty()) {
            chunks.push_back(text.to_string());
        }
    }
    Stream { chunks, usage }
}

#[derive(Deserialize)]
struct Credentials {
    api_key: String,
    base_url: String,
}

impl Guest for OpenAiProvider {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "openai-provider".to_string(),
            display_name: "OpenAI-compatible".to_string(),
            description: "Chat completions from any OpenAI-compatible API (example plugin)"
                .to_string(),
            requires_auth: true,
        }
    }

    fn models() -> Vec<ModelInfo> {
        let list = || -> Result<Vec<ModelInfo>, String> {
            let (base, key) = credentials()?;
            let url = format!("{base}/v1/models");
            let resp = http::get(&url, &headers(&key)).map_err(|e| e.message)?;
            if resp.status != 200 {
                return Err(format!("HTTP {}: {}", resp.status, resp.body));
            }
            let v: Value =
                serde_json::from_str(&resp.body).map_err(|e| format!("invalid response: {e}"))?;
            let data = v
                .get("data")
                .and_then(Value::as_array)
                .ok_or_else(|| "invalid response: no `data` list".to_string())?;
            Ok(data
                .iter()
                .filter_map(|m| m.get("id").and_then(Value::as_str))
                .map(|id| ModelInfo {
                    id: id.to_string(),
                    display_name: id.to_string(),
                    context_window: CONTEXT_WINDOW,
                    supports_streaming: true,
                    supports_tools: false,
                })
                .collect())
        };
        list().unwrap_or_else(|e| {
            log::warn(&format!("models: {e}"));
            Vec::new()
        })
    }

    fn auth_status() -> ProviderAuthStatus {
        match storage::get(KEY_API_KEY) {
            Some(k) if !k.is_empty() => ProviderAuthStatus::Authenticated,
            _ => ProviderAuthStatus::NotAuthenticated,
        }
    }

    fn auth_init(credentials_json: String) -> Result<(), String> {
        let creds: Credentials = serde_json::from_str(&credentials_json)
            .map_err(|e| format!("invalid credentials: {e}"))?;
        if creds.api_key.is_empty() {
            return Err("invalid credentials: empty api_key".to_string());
        }
        if creds.base_url.is_empty() {
            return Err("invalid credentials: empty base_url".to_string());
        }
        storage::set(KEY_API_KEY, &creds.api_key)?;
        storage::set(KEY_BASE_URL, &creds.base_url)?;
        Ok(())
    }

    fn auth_logout() -> Result<(), String> {
        let key = storage::delete(KEY_API_KEY);
        let base = storage::delete(KEY_BASE_URL);
        key.and(base)
    }

    fn chat(messages: Vec<Message>, model: String) -> Result<ChatResponse, String> {
        let body = post_chat(&messages, &model, false)?;
        parse_chat_response(&body)
    }

    fn chat_stream_start(messages: Vec<Message>, model: String) -> Result<u64, String> {
        let body = post_chat(&messages, &model, true)?;
        let stream = parse_sse(&body);
        let id = NEXT_STREAM_ID.fetch_add(1, Ordering::Relaxed);
        streams().insert(id, stream);
        Ok(id)
    }

    fn chat_stream_poll(stream_id: u64) -> Result<StreamChunk, String> {
        let mut open = streams();
        let stream = open
            .get_mut(&stream_id)
            .ok_or_else(|| format!("unknown stream {stream_id}"))?;
        if let Some(text) = stream.chunks.pop_front() {
            return Ok(StreamChunk {
                text,
                done: false,
                usage: None,
            });
        }
        let usage = open.remove(&stream_id).and_then(|s| s.usage);
        Ok(StreamChunk {
            text: String::new(),
            done: true,
            usage,
        })
    }
}
