//! tark's process-wide WebSocket helpers (`ws_connect`, `ws_send`, `ws_recv`,
//! `ws_close`), on this crate's WebSocket service ([`crate::host::ws`]). Handles are
//! global to the process, as in tark; plugins do not see them (each plugin instance has
//! its own handles through `tark:ws`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Result};

use crate::host::{next_owner_id, HostServices, OwnerId, PluginContext, WsEvent};
use crate::limits::Limits;
use crate::manifest::PluginCapabilities;

/// Largest message `recv` returns (tark's cap on `max_bytes`).
const WS_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What [`recv`] saw: a message, a close (with its reason in `error`), a message too
/// large (`error: message_too_large`), or nothing before the timeout.
#[derive(Debug)]
pub struct WsRecvResult {
    /// The text message.
    pub message: Option<String>,
    /// The connection is closed.
    pub closed: bool,
    /// Close reason or `message_too_large`.
    pub error: Option<String>,
}

/// The services and the owner id behind the global handles.
struct Global {
    services: Arc<HostServices>,
    owner: OwnerId,
}

fn global() -> Result<&'static Global> {
    static GLOBAL: OnceLock<Global> = OnceLock::new();
    if let Some(g) = GLOBAL.get() {
        return Ok(g);
    }
    let services = HostServices::new(super::host_config()?)?;
    let _ = GLOBAL.set(Global {
        services,
        owner: next_owner_id(),
    });
    GLOBAL
        .get()
        .ok_or_else(|| anyhow!("WebSocket service unavailable"))
}

/// Open a `wss://` connection to a host of `allowed_http` (tark's allowlist rule), with
/// extra handshake headers; the handle. Unlike tark's, the handshake happens here: a
/// failure is this call's error, not a later `recv` close.
pub fn connect(url: &str, headers: &[(String, String)], allowed_http: &[String]) -> Result<u64> {
    let parsed = url::Url::parse(url).map_err(|_| anyhow!("Invalid websocket URL"))?;
    if parsed.scheme() != "wss" {
        anyhow::bail!("Only wss:// URLs are allowed");
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        anyhow::bail!("Missing websocket host");
    }
    let g = global()?;
    let caps = PluginCapabilities {
        http: allowed_http.to_vec(),
        ..PluginCapabilities::default()
    };
    let scratch = std::env::temp_dir().join("tark-wasmer-ws");
    let ctx = PluginContext::new(
        g.services.clone(),
        "tark",
        &caps,
        &scratch,
        Limits::default(),
    )?;
    Ok(g.services.ws.connect(&ctx, g.owner, url, headers)?)
}

/// Queue a text message on `handle`.
pub fn send(handle: u64, data: &str) -> Result<()> {
    let g = global()?;
    Ok(g.services.ws.send(g.owner, handle, data)?)
}

/// Wait up to `timeout_ms` for the next event of `handle`; messages longer than
/// `max_bytes` (at most 64 KiB) are dropped and reported as `message_too_large`.
pub fn recv(handle: u64, timeout_ms: u64, max_bytes: usize) -> Result<WsRecvResult> {
    let g = global()?;
    let event = g.services.ws.recv(
        g.owner,
        handle,
        Duration::from_millis(timeout_ms),
        max_bytes.min(WS_MAX_MESSAGE_BYTES),
    )?;
    Ok(match event {
        WsEvent::Message(m) => WsRecvResult {
            message: Some(m),
            closed: false,
            error: None,
        },
        WsEvent::TooLarge => WsRecvResult {
            message: None,
            closed: false,
            error: Some("message_too_large".into()),
        },
        WsEvent::Closed(reason) => WsRecvResult {
            message: None,
            closed: true,
            error: Some(reason),
        },
        WsEvent::Timeout { closed } => WsRecvResult {
            message: None,
            closed,
            error: None,
        },
    })
}

/// Close `handle` (unknown handles are ignored).
pub fn close(handle: u64) -> Result<()> {
    let g = global()?;
    g.services.ws.close(g.owner, handle);
    Ok(())
}
