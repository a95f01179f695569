//! `legacy-channel`: an example channel plugin written the way channel plugins in the wild are
//! written against tark's legacy host-function ABI (spec: legacy-abi.md §1, §2.5).
//!
//! - Host functions are raw `extern "C"` imports from the `tark:*` modules.
//! - Answers from `tark:storage`, `tark:http` and `tark:ws` land in one static 256 KiB reply
//!   buffer.
//! - Errors returned through an output buffer follow the in-the-wild convention: write
//!   `{"error":"<msg>"}` at `out_ptr` and return `-(its length)`. When a host import returned a
//!   negative code, the message contains that raw code (e.g. `ws.connect returned -2`).
//!
//! Per-instance state (deliberately NOT in storage, so the host's instance reuse is observable):
//! the open WebSocket handle and the `polls` counter live in statics. `channel_widget_state`
//! reports `polls`: it grows across calls only while the host keeps reusing the same instance
//! (the long-lived poll instance), and is 0 in every fresh instance. The `starts` and `sent`
//! counters are kept in storage and therefore survive instances.

// `get` exists in several `tark:*` import modules. On wasm the import module keeps them apart;
// a host-target `cargo clippy` run does not know that.
#![cfg_attr(not(target_family = "wasm"), allow(clashing_extern_declarations))]

use serde::Deserialize;
use serde_json::{json, Value};
use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

// ---------------------------------------------------------------------------------------------
// Host imports (spec §1.1), exact core signatures.

#[link(wasm_import_module = "tark:storage")]
extern "C" {
    #[link_name = "get"]
    fn storage_get(key_ptr: *const u8, key_len: i32, ret_ptr: *mut u8) -> i32;
    #[link_name = "set"]
    fn storage_set(key_ptr: *const u8, key_len: i32, val_ptr: *const u8, val_len: i32) -> i32;
    #[link_name = "delete"]
    fn storage_delete(key_ptr: *const u8, key_len: i32) -> i32;
}

#[link(wasm_import_module = "tark:http")]
extern "C" {
    #[link_name = "post"]
    fn http_post(
        url_ptr: *const u8,
        url_len: i32,
        body_ptr: *const u8,
        body_len: i32,
        headers_ptr: *const u8,
        headers_len: i32,
        ret_ptr: *mut u8,
    ) -> i32;
}

#[link(wasm_import_module = "tark:ws")]
extern "C" {
    #[link_name = "connect"]
    fn ws_connect(
        url_ptr: *const u8,
        url_len: i32,
        headers_ptr: *const u8,
        headers_len: i32,
        ret_ptr: *mut u8,
    ) -> i32;
    #[link_name = "send"]
    fn ws_send(handle: i64, data_ptr: *const u8, data_len: i32, ret_ptr: *mut u8) -> i32;
    #[link_name = "recv"]
    fn ws_recv(handle: i64, timeout_ms: i64, max_bytes: i64, ret_ptr: *mut u8) -> i32;
    #[link_name = "close"]
    fn ws_close(handle: i64, ret_ptr: *mut u8) -> i32;
}

#[link(wasm_import_module = "tark:log")]
extern "C" {
    #[link_name = "warn"]
    fn log_warn(msg_ptr: *const u8, msg_len: i32);
}

// ---------------------------------------------------------------------------------------------
// Static buffers and per-instance state.

const REPLY_CAP: usize = 256 * 1024;
static mut REPLY: [u8; REPLY_CAP] = [0; REPLY_CAP];

/// Whether `WS_HANDLE` holds an open connection of this instance.
static WS_OPEN: AtomicBool = AtomicBool::new(false);
static WS_HANDLE: AtomicI64 = AtomicI64::new(0);
/// `channel_poll` calls made on this instance (not persisted; see the crate docs).
static POLLS: AtomicU64 = AtomicU64::new(0);

/// Receives per poll, and their waits: the first recv after a connect waits longer so the
/// handshake (done asynchronously by the host) has time to finish.
const MAX_RECVS_PER_POLL: usize = 16;
const FIRST_RECV_TIMEOUT_MS: i64 = 200;
const RECV_TIMEOUT_MS: i64 = 20;
const RECV_MAX_BYTES: i64 = 65536;

fn reply_ptr() -> *mut u8 {
    (&raw mut REPLY) as *mut u8
}

fn reply_text(n: i32) -> String {
    let len = (n.max(0) as usize).min(REPLY_CAP);
    // SAFETY: the static reply buffer, `len <= REPLY_CAP`; the guest is single-threaded.
    let bytes = unsafe { std::slice::from_raw_parts(reply_ptr() as *const u8, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

fn reply_json(n: i32) -> Value {
    serde_json::from_str(&reply_text(n)).unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Import wrappers.

fn warn(msg: &str) {
    unsafe { log_warn(msg.as_ptr(), msg.len() as i32) }
}

fn storage_read(key: &str) -> Option<String> {
    let n = unsafe { storage_get(key.as_ptr(), key.len() as i32, reply_ptr()) };
    if n > 0 {
        Some(reply_text(n))
    } else {
        None
    }
}

fn storage_write(key: &str, value: &str) -> i32 {
    unsafe {
        storage_set(
            key.as_ptr(),
            key.len() as i32,
            value.as_ptr(),
            value.len() as i32,
        )
    }
}

fn storage_remove(key: &str) -> i32 {
    unsafe { storage_delete(key.as_ptr(), key.len() as i32) }
}

fn counter(key: &str) -> u64 {
    storage_read(key)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn bump_counter(key: &str) -> i32 {
    let next = counter(key).saturating_add(1);
    storage_write(key, &next.to_string())
}

fn forget_handle() {
    WS_OPEN.store(false, Ordering::Relaxed);
    WS_HANDLE.store(0, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// Output helpers.

/// Copies `s` to `out_ptr` (unchecked, exactly like plugins in the wild) and returns its length.
fn write_out(out_ptr: i32, s: &str) -> i32 {
    // SAFETY: the host promised a buffer at out_ptr (the ABI carries no capacity).
    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), out_ptr as *mut u8, s.len()) };
    s.len() as i32
}

/// The error convention: `{"error":"<msg>"}` at `out_ptr`, returns `-(its length)`.
fn write_err(out_ptr: i32, msg: &str) -> i32 {
    let s = json!({ "error": msg }).to_string();
    -write_out(out_ptr, &s)
}

fn input_text(ptr: i32, len: i32) -> Option<String> {
    if len < 0 {
        return None;
    }
    // SAFETY: the host wrote `len` bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) };
    std::str::from_utf8(bytes).ok().map(str::to_string)
}

fn input_json(ptr: i32, len: i32) -> Option<Value> {
    input_text(ptr, len).and_then(|t| serde_json::from_str(&t).ok())
}

// ---------------------------------------------------------------------------------------------
// Memory exports (§2.1).

#[no_mangle]
pub extern "C" fn alloc(size: i32) -> i32 {
    // Same as plugins in the wild: a negative size panics (trap).
    let layout = Layout::from_size_align(size as usize, 1).unwrap();
    unsafe { std::alloc::alloc(layout) as i32 }
}

#[no_mangle]
pub extern "C" fn dealloc(ptr: i32, size: i32) {
    let layout = Layout::from_size_align(size as usize, 1).unwrap();
    unsafe { std::alloc::dealloc(ptr as *mut u8, layout) }
}

// ---------------------------------------------------------------------------------------------
// Channel exports (§2.5).

#[no_mangle]
pub extern "C" fn channel_info(out_ptr: i32) -> i32 {
    let v = json!({
        "id": "legacy-channel",
        "display_name": "Legacy Channel",
        "description": "Example channel speaking tark's legacy ABI",
        "supports_streaming": false,
        "supports_edits": true,
    });
    write_out(out_ptr, &v.to_string())
}

/// Counts starts in storage (`starts`, a decimal string).
#[no_mangle]
pub extern "C" fn channel_start() -> i32 {
    if bump_counter("starts") < 0 {
        -1
    } else {
        0
    }
}

#[no_mangle]
pub extern "C" fn channel_stop() -> i32 {
    if WS_OPEN.load(Ordering::Relaxed) {
        unsafe { ws_close(WS_HANDLE.load(Ordering::Relaxed), reply_ptr()) };
        forget_handle();
    }
    0
}

#[no_mangle]
pub extern "C" fn channel_auth_status() -> i32 {
    if storage_read("token").is_some() {
        1
    } else {
        2
    }
}

#[derive(Deserialize)]
struct AuthInit {
    access_token: String,
    gateway_url: Option<String>,
    api_base: Option<String>,
}

/// `{"access_token":"...","gateway_url":"wss://...","api_base":"http://..."}` → storage.
/// -1 for invalid input, -2 when storage cannot be written.
#[no_mangle]
pub extern "C" fn channel_auth_init(ptr: i32, len: i32) -> i32 {
    let Some(Ok(creds)) = input_text(ptr, len).map(|t| serde_json::from_str::<AuthInit>(&t)) else {
        return -1;
    };
    let mut pairs = vec![("token", creds.access_token)];
    if let Some(g) = creds.gateway_url {
        pairs.push(("gateway_url", g));
    }
    if let Some(a) = creds.api_base {
        pairs.push(("api_base", a));
    }
    for (k, v) in pairs {
        if storage_write(k, &v) < 0 {
            return -2;
        }
    }
    0
}

#[no_mangle]
pub extern "C" fn channel_auth_logout() -> i32 {
    let mut rc = 0;
    for k in ["token", "gateway_url", "api_base"] {
        if storage_remove(k) < 0 {
            rc = -1;
        }
    }
    rc
}

#[no_mangle]
pub extern "C" fn channel_widget_state(out_ptr: i32) -> i32 {
    let v = json!({
        "starts": counter("starts"),
        "polls": POLLS.load(Ordering::Relaxed),
        "sent": counter("sent"),
        "connected": WS_OPEN.load(Ordering::Relaxed),
    });
    write_out(out_ptr, &v.to_string())
}

#[derive(Deserialize)]
struct Inbound {
    conversation_id: String,
    user_id: String,
    text: String,
}

fn inbound(conversation_id: &str, user_id: &str, text: &str, source: &str) -> Value {
    json!({
        "conversation_id": conversation_id,
        "user_id": user_id,
        "text": text,
        "metadata_json": json!({"source": source}).to_string(),
    })
}

#[no_mangle]
pub extern "C" fn channel_handle_webhook(ptr: i32, len: i32, out_ptr: i32) -> i32 {
    let Some(req) = input_json(ptr, len) else {
        return write_err(out_ptr, "invalid webhook request JSON");
    };
    let body = req.get("body").and_then(Value::as_str).unwrap_or_default();
    let resp = match serde_json::from_str::<Inbound>(body) {
        Ok(m) => json!({
            "status": 200,
            "headers": [["content-type", "application/json"]],
            "body": "{\"ok\":true}",
            "messages": [inbound(&m.conversation_id, &m.user_id, &m.text, "webhook")],
        }),
        Err(_) => json!({"status": 400, "headers": [], "body": "bad request", "messages": []}),
    };
    write_out(out_ptr, &resp.to_string())
}

#[no_mangle]
pub extern "C" fn channel_handle_gateway_event(ptr: i32, len: i32, out_ptr: i32) -> i32 {
    let Some(ev) = input_json(ptr, len) else {
        return write_err(out_ptr, "invalid gateway event JSON");
    };
    if ev.get("t").and_then(Value::as_str) != Some("MESSAGE_CREATE") {
        return write_out(out_ptr, "[]");
    }
    let d = ev.get("d");
    let field = |k: &str| d.and_then(|d| d.get(k)).and_then(Value::as_str);
    let (Some(channel), Some(author), Some(content)) =
        (field("channel_id"), field("author_id"), field("content"))
    else {
        return write_err(out_ptr, "invalid MESSAGE_CREATE payload");
    };
    let msgs = json!([inbound(channel, author, content, "gateway")]);
    write_out(out_ptr, &msgs.to_string())
}

#[no_mangle]
pub extern "C" fn channel_poll(out_ptr: i32) -> i32 {
    POLLS.fetch_add(1, Ordering::Relaxed);
    match poll() {
        Ok(msgs) => write_out(out_ptr, &Value::Array(msgs).to_string()),
        Err(msg) => write_err(out_ptr, &msg),
    }
}

/// Opens the gateway connection and identifies; returns the handle.
fn connect(gateway_url: &str, token: &str) -> Result<i64, String> {
    let headers = json!([["Authorization", format!("Bearer {token}")]]).to_string();
    let n = unsafe {
        ws_connect(
            gateway_url.as_ptr(),
            gateway_url.len() as i32,
            headers.as_ptr(),
            headers.len() as i32,
            reply_ptr(),
        )
    };
    if n < 0 {
        return Err(format!("ws.connect returned {n}"));
    }
    let v = reply_json(n);
    if v.get("ok").and_then(Value::as_bool) != Some(true) {
        let err = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        return Err(format!("ws.connect failed: {err}"));
    }
    let handle = v
        .get("handle")
        .and_then(Value::as_i64)
        .ok_or_else(|| "ws.connect answered without a handle".to_string())?;
    WS_HANDLE.store(handle, Ordering::Relaxed);
    WS_OPEN.store(true, Ordering::Relaxed);

    let identify = json!({"op": "identify", "token": token}).to_string();
    let n = unsafe {
        ws_send(
            handle,
            identify.as_ptr(),
            identify.len() as i32,
            reply_ptr(),
        )
    };
    if n < 0 {
        return Err(format!("ws.send returned {n}"));
    }
    let v = reply_json(n);
    if v.get("ok").and_then(Value::as_bool) != Some(true) {
        // The handshake runs asynchronously in the host; a failure also shows up in recv.
        let err = v
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("unknown error");
        warn(&format!("identify not sent: {err}"));
    }
    Ok(handle)
}

fn poll() -> Result<Vec<Value>, String> {
    let Some(gateway_url) = storage_read("gateway_url") else {
        return Err("not configured".to_string());
    };
    let token = storage_read("token").unwrap_or_default();
    let mut timeout = RECV_TIMEOUT_MS;
    let handle = if WS_OPEN.load(Ordering::Relaxed) {
        WS_HANDLE.load(Ordering::Relaxed)
    } else {
        timeout = FIRST_RECV_TIMEOUT_MS;
        connect(&gateway_url, &token)?
    };

    let mut msgs = Vec::new();
    for _ in 0..MAX_RECVS_PER_POLL {
        let n = unsafe { ws_recv(handle, timeout, RECV_MAX_BYTES, reply_ptr()) };
        timeout = RECV_TIMEOUT_MS;
        if n < 0 {
            return Err(format!("ws.recv returned {n}"));
        }
        let v = reply_json(n);
        if v.get("ok").and_then(Value::as_bool) != Some(true) {
            // Unknown handle (e.g. the host dropped it): reconnect on the next poll.
            let err = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown error");
            warn(&format!("ws.recv failed: {err}"));
            forget_handle();
            break;
        }
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
struct SendRequest {
    conversation_id: String,
    text: String,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    is_final: bool,
}

#[no_mangle]
pub extern "C" fn channel_send(ptr: i32, len: i32, out_ptr: i32) -> i32 {
    let Some(Ok(req)) = input_text(ptr, len).map(|t| serde_json::from_str::<SendRequest>(&t))
    else {
        return write_err(out_ptr, "invalid send request JSON");
    };
    let Some(api_base) = storage_read("api_base") else {
        return write_err(out_ptr, "not configured");
    };
    let Some(token) = storage_read("token") else {
        return write_err(out_ptr, "not authenticated");
    };
    let url = format!("{}/send", api_base.trim_end_matches('/'));
    let body = json!({
        "conversation_id": req.conversation_id,
        "text": req.text,
        "message_id": req.message_id,
        "is_final": req.is_final,
    })
    .to_string();
    let headers = json!([
        ["Content-Type", "application/json"],
        ["Authorization", format!("Bearer {token}")]
    ])
    .to_string();
    let n = unsafe {
        http_post(
            url.as_ptr(),
            url.len() as i32,
            body.as_ptr(),
            body.len() as i32,
            headers.as_ptr(),
            headers.len() as i32,
            reply_ptr(),
        )
    };
    if n < 0 {
        return write_err(out_ptr, &format!("http.post returned {n}"));
    }
    let env = reply_json(n);
    let result = if let Some(err) = env.get("error") {
        let text = err
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string());
        json!({"success": false, "message_id": null, "error": text})
    } else {
        let status = env.get("status").and_then(Value::as_u64).unwrap_or(0);
        if (200..300).contains(&status) {
            let id = env
                .get("body")
                .and_then(Value::as_str)
                .and_then(|b| serde_json::from_str::<Value>(b).ok())
                .and_then(|b| b.get("id").and_then(Value::as_str).map(str::to_string));
            if bump_counter("sent") < 0 {
                warn("could not persist the sent counter");
            }
            json!({"success": true, "message_id": id, "error": null})
        } else {
            json!({"success": false, "message_id": null, "error": format!("HTTP {status}")})
        }
    };
    write_out(out_ptr, &result.to_string())
}
