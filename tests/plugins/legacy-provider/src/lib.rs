//! `legacy-provider`: an example provider plugin written the way provider plugins in the wild
//! are written against tark's legacy host-function ABI (spec: legacy-abi.md §1, §2.4).
//!
//! - Host functions are raw `extern "C"` imports from the `tark:*` modules.
//! - Answers from `tark:storage`, `tark:http` and `tark:fs` land in one static 256 KiB reply
//!   buffer; `tark:env` answers land in a static 512-byte buffer.
//! - Errors returned through an output buffer follow the in-the-wild convention: write
//!   `{"error":"<msg>"}` at `out_ptr` and return `-(its length)`. When a host import returned a
//!   negative code, the message contains that raw code (e.g. `http.get returned -2`) so the
//!   host's tests can assert it.
//!
//! Special model ids for `provider_chat` (used by the host's tests): `panic` (guest panic →
//! `unreachable` trap), `loop` (never returns: CPU-limit tests), `echo` (no HTTP) and
//! `env:<NAME>` (answers with the value of `tark:env.get(NAME)`).

// `get` exists in several `tark:*` import modules. On wasm the import module keeps them apart;
// a host-target `cargo clippy` run does not know that.
#![cfg_attr(not(target_family = "wasm"), allow(clashing_extern_declarations))]

use serde_json::{json, Value};
use std::alloc::Layout;

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
    #[link_name = "get"]
    fn http_get(
        url_ptr: *const u8,
        url_len: i32,
        headers_ptr: *const u8,
        headers_len: i32,
        ret_ptr: *mut u8,
    ) -> i32;
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

#[link(wasm_import_module = "tark:env")]
extern "C" {
    #[link_name = "get"]
    fn env_get(name_ptr: *const u8, name_len: i32, ret_ptr: *mut u8) -> i32;
}

#[link(wasm_import_module = "tark:fs")]
extern "C" {
    #[link_name = "read"]
    fn fs_read(path_ptr: *const u8, path_len: i32, ret_ptr: *mut u8) -> i32;
}

#[link(wasm_import_module = "tark:log")]
extern "C" {
    #[link_name = "info"]
    fn log_info(msg_ptr: *const u8, msg_len: i32);
    #[link_name = "warn"]
    fn log_warn(msg_ptr: *const u8, msg_len: i32);
}

// ---------------------------------------------------------------------------------------------
// Static buffers, as plugins in the wild have them.

const REPLY_CAP: usize = 256 * 1024;
const ENV_CAP: usize = 512;

static mut REPLY: [u8; REPLY_CAP] = [0; REPLY_CAP];
static mut ENV_BUF: [u8; ENV_CAP] = [0; ENV_CAP];

fn reply_ptr() -> *mut u8 {
    (&raw mut REPLY) as *mut u8
}

fn env_ptr() -> *mut u8 {
    (&raw mut ENV_BUF) as *mut u8
}

/// The first `n` bytes of a static buffer as text (clamped to the buffer's size).
fn buf_text(ptr: *mut u8, cap: usize, n: i32) -> String {
    let len = (n.max(0) as usize).min(cap);
    // SAFETY: `ptr` is one of the static buffers and `len <= cap`; the guest is single-threaded.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Import wrappers.

fn info(msg: &str) {
    unsafe { log_info(msg.as_ptr(), msg.len() as i32) }
}

fn warn(msg: &str) {
    unsafe { log_warn(msg.as_ptr(), msg.len() as i32) }
}

/// `Some(value)` when the key holds a non-empty value (plugins treat `ret <= 0` as absent).
fn storage_read(key: &str) -> Option<String> {
    let n = unsafe { storage_get(key.as_ptr(), key.len() as i32, reply_ptr()) };
    if n > 0 {
        Some(buf_text(reply_ptr(), REPLY_CAP, n))
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

/// `Ok(value)` for a positive answer, `Err(code)` for 0 (unset/empty) or a negative code.
fn env_read(name: &str) -> Result<String, i32> {
    let n = unsafe { env_get(name.as_ptr(), name.len() as i32, env_ptr()) };
    if n > 0 {
        Ok(buf_text(env_ptr(), ENV_CAP, n))
    } else {
        Err(n)
    }
}

/// File contents, or the raw negative (or zero) code from `tark:fs.read`.
fn file_read(path: &str) -> Result<String, i32> {
    let n = unsafe { fs_read(path.as_ptr(), path.len() as i32, reply_ptr()) };
    if n >= 0 {
        Ok(buf_text(reply_ptr(), REPLY_CAP, n))
    } else {
        Err(n)
    }
}

/// The HTTP envelope text, or an error message naming the raw code.
fn get(url: &str, headers: &Value) -> Result<String, String> {
    let h = headers.to_string();
    let n = unsafe {
        http_get(
            url.as_ptr(),
            url.len() as i32,
            h.as_ptr(),
            h.len() as i32,
            reply_ptr(),
        )
    };
    if n < 0 {
        return Err(format!("http.get returned {n}"));
    }
    Ok(buf_text(reply_ptr(), REPLY_CAP, n))
}

fn post(url: &str, body: &str, headers: &Value) -> Result<String, String> {
    let h = headers.to_string();
    let n = unsafe {
        http_post(
            url.as_ptr(),
            url.len() as i32,
            body.as_ptr(),
            body.len() as i32,
            h.as_ptr(),
            h.len() as i32,
            reply_ptr(),
        )
    };
    if n < 0 {
        return Err(format!("http.post returned {n}"));
    }
    Ok(buf_text(reply_ptr(), REPLY_CAP, n))
}

/// Interprets a `tark:http` envelope: `Ok((status, body))`, or the host's transport error text.
fn parse_envelope(text: &str) -> Result<(u64, String), String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("invalid HTTP envelope: {e}"))?;
    if let Some(err) = v.get("error") {
        return Err(match err.as_str() {
            Some(s) => s.to_string(),
            None => err.to_string(),
        });
    }
    let status = v.get("status").and_then(Value::as_u64).unwrap_or(0);
    let body = v
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok((status, body))
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
// Provider exports (§2.4).

#[no_mangle]
pub extern "C" fn provider_info(out_ptr: i32) -> i32 {
    // Goes to WASI stdout: the host's stdout-capture test looks for this line.
    println!("provider_info called");
    info("provider_info");
    let v = json!({
        "id": "legacy-provider",
        "display_name": "Legacy Provider",
        "description": "Example provider speaking tark's legacy ABI",
        "requires_auth": true,
        "provider": "openai",
    });
    write_out(out_ptr, &v.to_string())
}

fn bearer_headers(extra_json: bool) -> Value {
    let mut headers = Vec::new();
    if extra_json {
        headers.push(json!(["Content-Type", "application/json"]));
    }
    if let Some(key) = storage_read("api_key") {
        headers.push(json!(["Authorization", format!("Bearer {key}")]));
    }
    Value::Array(headers)
}

#[no_mangle]
pub extern "C" fn provider_models(out_ptr: i32) -> i32 {
    let Some(base_url) = storage_read("base_url") else {
        let v = json!([
            {"id":"legacy-small","display_name":"Legacy Small","context_window":8192,"supports_streaming":false,"supports_tools":false},
            {"id":"legacy-large","display_name":"Legacy Large","context_window":128000,"supports_streaming":true,"supports_tools":true}
        ]);
        return write_out(out_ptr, &v.to_string());
    };
    match fetch_models(&base_url) {
        Ok(models) => write_out(out_ptr, &models.to_string()),
        Err(msg) => write_err(out_ptr, &msg),
    }
}

fn fetch_models(base_url: &str) -> Result<Value, String> {
    let url = format!("{}/v1/models", base_url.trim_end_matches('/'));
    let envelope = get(&url, &bearer_headers(false))?;
    let (status, body) = parse_envelope(&envelope)?;
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("invalid models response: {e}"))?;
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| "invalid models response: no data array".to_string())?;
    let models: Vec<Value> = data
        .iter()
        .filter_map(|m| m.get("id").and_then(Value::as_str))
        .map(|id| {
            json!({
                "id": id,
                "display_name": id,
                "context_window": 128000,
                "supports_streaming": false,
                "supports_tools": true,
            })
        })
        .collect();
    Ok(Value::Array(models))
}

/// Credentials: `{"api_key":"...","base_url":"..."}` or `{"api_key_file":"/path","base_url":...}`.
///
/// Returns 0; -1 for invalid JSON / missing or empty key; -2 when storage cannot be written;
/// for an `api_key_file` that `tark:fs.read` refuses, the fs code minus 10 (-11 bad path,
/// -12 denied, -13 read error, -14 write-back out of bounds).
#[no_mangle]
pub extern "C" fn provider_auth_init(ptr: i32, len: i32) -> i32 {
    let Some(text) = input_text(ptr, len) else {
        return -1;
    };
    let Ok(v) = serde_json::from_str::<Value>(&text) else {
        return -1;
    };
    let key = if let Some(k) = v.get("api_key").and_then(Value::as_str) {
        k.trim().to_string()
    } else if let Some(path) = v.get("api_key_file").and_then(Value::as_str) {
        match file_read(path) {
            Ok(contents) => contents.trim().to_string(),
            Err(code) => {
                warn(&format!("fs.read returned {code} for {path}"));
                return code - 10;
            }
        }
    } else {
        return -1;
    };
    if key.is_empty() {
        return -1;
    }
    if storage_write("api_key", &key) < 0 {
        return -2;
    }
    if let Some(base_url) = v.get("base_url").and_then(Value::as_str) {
        if storage_write("base_url", base_url) < 0 {
            return -2;
        }
    }
    0
}

/// 1 (authenticated) with a stored key or `LEGACY_PROVIDER_API_KEY` set; else 2 (not authenticated).
#[no_mangle]
pub extern "C" fn provider_auth_status() -> i32 {
    if storage_read("api_key").is_some() || env_read("LEGACY_PROVIDER_API_KEY").is_ok() {
        1
    } else {
        2
    }
}

#[no_mangle]
pub extern "C" fn provider_auth_logout() -> i32 {
    let a = storage_remove("api_key");
    let b = storage_remove("base_url");
    if a < 0 || b < 0 {
        -1
    } else {
        0
    }
}

#[no_mangle]
pub extern "C" fn provider_auth_credentials(out_ptr: i32) -> i32 {
    let Some(key) = storage_read("api_key") else {
        return write_err(out_ptr, "not authenticated");
    };
    let v = json!({
        "access_token": key,
        "project_id": null,
        "api_mode": "openai_compat",
        "endpoint": storage_read("base_url"),
        "custom_headers": {"x-plugin": "legacy-provider"},
    });
    write_out(out_ptr, &v.to_string())
}

#[no_mangle]
pub extern "C" fn provider_chat(
    msgs_ptr: i32,
    msgs_len: i32,
    model_ptr: i32,
    model_len: i32,
    out_ptr: i32,
) -> i32 {
    let Some(model) = input_text(model_ptr, model_len) else {
        return write_err(out_ptr, "invalid model id");
    };
    match model.as_str() {
        "panic" => panic!("requested panic"),
        "loop" => {
            // Never returns: used by the host's CPU/time-limit tests.
            let mut i: u64 = 0;
            loop {
                i = std::hint::black_box(i.wrapping_add(1));
            }
        }
        _ => {}
    }
    let Some(msgs_text) = input_text(msgs_ptr, msgs_len) else {
        return write_err(out_ptr, "invalid messages: not UTF-8");
    };
    let msgs: Value = match serde_json::from_str(&msgs_text) {
        Ok(v @ Value::Array(_)) => v,
        Ok(_) => return write_err(out_ptr, "invalid messages: not an array"),
        Err(e) => return write_err(out_ptr, &format!("invalid messages: {e}")),
    };
    let result = if model == "echo" {
        Ok(echo(&msgs))
    } else if let Some(name) = model.strip_prefix("env:") {
        match env_read(name) {
            Ok(value) => Ok(json!({"text": value, "usage": null, "finish_reason": "stop"})),
            Err(code) => Err(format!("env.get returned {code}")),
        }
    } else {
        chat_http(&model, msgs)
    };
    match result {
        Ok(v) => write_out(out_ptr, &v.to_string()),
        Err(msg) => write_err(out_ptr, &msg),
    }
}

fn echo(msgs: &Value) -> Value {
    let list = msgs.as_array().map(Vec::as_slice).unwrap_or_default();
    let text = list
        .last()
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    json!({
        "text": text,
        "usage": {"input_tokens": list.len(), "output_tokens": 1},
        "finish_reason": "stop",
    })
}

fn chat_http(model: &str, msgs: Value) -> Result<Value, String> {
    if storage_read("api_key").is_none() {
        return Err("not authenticated".to_string());
    }
    let base_url =
        storage_read("base_url").ok_or_else(|| "not configured: no base_url".to_string())?;
    let url = format!("{}/v1/chat/completions", base_url.trim_end_matches('/'));
    let body = json!({"model": model, "messages": msgs}).to_string();
    let envelope = post(&url, &body, &bearer_headers(true))?;
    let (status, body) = parse_envelope(&envelope)?;
    if status != 200 {
        return Err(format!("HTTP {status}: {body}"));
    }
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("invalid chat response: {e}"))?;
    let choice = v.get("choices").and_then(|c| c.get(0));
    let text = choice
        .and_then(|c| c.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .ok_or_else(|| "invalid chat response: no choices[0].message.content".to_string())?;
    let finish_reason = choice.and_then(|c| c.get("finish_reason")).cloned();
    let usage = v.get("usage").map(|u| {
        json!({
            "input_tokens": u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0),
            "output_tokens": u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        })
    });
    Ok(json!({
        "text": text,
        "usage": usage,
        "finish_reason": finish_reason.unwrap_or(Value::Null),
    }))
}

/// OAuth token post-processing (PR, tark's buffer 8192): keeps the two tokens and tags them.
#[no_mangle]
pub extern "C" fn auth_process_tokens(ptr: i32, len: i32, out_ptr: i32) -> i32 {
    let parsed = input_text(ptr, len).and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let Some(Value::Object(tokens)) = parsed else {
        return write_err(out_ptr, "invalid token response JSON");
    };
    let v = json!({
        "access_token": tokens.get("access_token").cloned().unwrap_or(Value::Null),
        "refresh_token": tokens.get("refresh_token").cloned().unwrap_or(Value::Null),
        "processed_by": "legacy-provider",
    });
    write_out(out_ptr, &v.to_string())
}
