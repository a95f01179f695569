//! `legacy-auth`: an example auth plugin for tark's legacy auth interface (spec: legacy-abi.md
//! §2.6), built for `wasm32-unknown-unknown` like some plugins in the wild: the module imports
//! no WASI at all, only `tark:storage` and `tark:log`.
//!
//! Storage keys: `token`, `endpoint`, `expired` ("true"/"false"), `expires_at` (unix seconds).
//! Errors returned through an output buffer follow the in-the-wild convention: write
//! `{"error":"<msg>"}` at `out_ptr` and return `-(its length)`.

use serde::Deserialize;
use serde_json::json;
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

#[link(wasm_import_module = "tark:log")]
extern "C" {
    #[link_name = "info"]
    fn log_info(msg_ptr: *const u8, msg_len: i32);
}

const REPLY_CAP: usize = 256 * 1024;
static mut REPLY: [u8; REPLY_CAP] = [0; REPLY_CAP];

const DEFAULT_ENDPOINT: &str = "https://auth.example.com";
const KEYS: [&str; 4] = ["token", "endpoint", "expired", "expires_at"];

fn reply_ptr() -> *mut u8 {
    (&raw mut REPLY) as *mut u8
}

fn info(msg: &str) {
    unsafe { log_info(msg.as_ptr(), msg.len() as i32) }
}

fn storage_read(key: &str) -> Option<String> {
    let n = unsafe { storage_get(key.as_ptr(), key.len() as i32, reply_ptr()) };
    if n <= 0 {
        return None;
    }
    let len = (n as usize).min(REPLY_CAP);
    // SAFETY: the static reply buffer, `len <= REPLY_CAP`; the guest is single-threaded.
    let bytes = unsafe { std::slice::from_raw_parts(reply_ptr() as *const u8, len) };
    Some(String::from_utf8_lossy(bytes).into_owned())
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

/// Copies `s` to `out_ptr` (unchecked, exactly like plugins in the wild) and returns its length.
fn write_out(out_ptr: i32, s: &str) -> i32 {
    // SAFETY: the host promised a buffer at out_ptr (the ABI carries no capacity).
    unsafe { std::ptr::copy_nonoverlapping(s.as_ptr(), out_ptr as *mut u8, s.len()) };
    s.len() as i32
}

fn write_err(out_ptr: i32, msg: &str) -> i32 {
    let s = json!({ "error": msg }).to_string();
    -write_out(out_ptr, &s)
}

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

/// 0 not authenticated (no token), 1 authenticated, 2 expired (stored `expired` == "true").
#[no_mangle]
pub extern "C" fn status() -> i32 {
    if storage_read("token").is_none() {
        0
    } else if storage_read("expired").as_deref() == Some("true") {
        2
    } else {
        1
    }
}

/// The token (tark's buffer: 4096 bytes).
///
/// When the credentials carried `expires_at`, the token's age is checked with
/// `SystemTime::now()`. On wasm32-unknown-unknown there is no clock: `now()` panics, and with
/// panic = "abort" that is an `unreachable` trap. This is intentional: it reproduces a real
/// defect of plugins in the wild (spec §6.4 item 25), and the host's tests rely on this trap.
#[no_mangle]
pub extern "C" fn get_token(out_ptr: i32) -> i32 {
    let Some(token) = storage_read("token") else {
        return write_err(out_ptr, "not authenticated");
    };
    if let Some(expires_at) = storage_read("expires_at").and_then(|s| s.parse::<u64>().ok()) {
        let now = std::time::SystemTime::now() // traps on wasm32-unknown-unknown (see above)
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now >= expires_at {
            return write_err(out_ptr, "token expired");
        }
    }
    write_out(out_ptr, &token)
}

/// The endpoint (tark's buffer: 1024 bytes); default `https://auth.example.com`.
#[no_mangle]
pub extern "C" fn get_endpoint(out_ptr: i32) -> i32 {
    let endpoint = storage_read("endpoint").unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
    write_out(out_ptr, &endpoint)
}

#[derive(Deserialize)]
struct Credentials {
    token: String,
    endpoint: Option<String>,
    #[serde(default)]
    expired: bool,
    expires_at: Option<u64>,
}

/// `{"token":"...","endpoint":"...","expired":bool,"expires_at":u64}` → storage (fields other
/// than `token` optional; absent ones are removed). -1 invalid input, -2 storage failure.
#[no_mangle]
pub extern "C" fn init_with_credentials(ptr: i32, len: i32) -> i32 {
    if len < 0 {
        return -1;
    }
    // SAFETY: the host wrote `len` bytes at `ptr`.
    let bytes = unsafe { std::slice::from_raw_parts(ptr as *const u8, len as usize) };
    let Ok(creds) = serde_json::from_slice::<Credentials>(bytes) else {
        return -1;
    };
    info("init_with_credentials");
    let mut rc = storage_write("token", &creds.token);
    let expired = if creds.expired { "true" } else { "false" };
    rc = rc.min(storage_write("expired", expired));
    rc = rc.min(match creds.endpoint {
        Some(e) => storage_write("endpoint", &e),
        None => storage_remove("endpoint"),
    });
    rc = rc.min(match creds.expires_at {
        Some(t) => storage_write("expires_at", &t.to_string()),
        None => storage_remove("expires_at"),
    });
    if rc < 0 {
        -2
    } else {
        0
    }
}

/// Deletes everything this plugin stored (tark ignores the result).
#[no_mangle]
pub extern "C" fn logout() -> i32 {
    let mut rc = 0;
    for k in KEYS {
        rc = rc.min(storage_remove(k));
    }
    rc
}

/// The display name (tark's buffer: 256 bytes).
#[no_mangle]
pub extern "C" fn display_name(out_ptr: i32) -> i32 {
    write_out(out_ptr, "Legacy Auth")
}
