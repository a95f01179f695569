//! `tark:ws` in the JS backend: refused. tark's WebSocket calls are synchronous
//! (`ws.recv` blocks up to a timeout), and a JavaScript WebSocket delivers messages only
//! to an event loop that cannot run while the guest is inside a call. The allowlist is
//! still checked first, so a plugin sees the same denial as natively for a host it was
//! never granted; an allowed host gets a clear "not available" error.

use std::time::Duration;

use super::{WsError, WsEvent};
use crate::host::{HostConfig, HostError, OwnerId, PluginContext};

/// The text of every refused connect.
pub const UNAVAILABLE: &str = "WebSockets are not available in the JS backend: a synchronous \
     ws.recv cannot wait for a JavaScript WebSocket (use the native host for channel plugins \
     that need a gateway connection)";

/// The JS backend's WebSocket manager: holds no connections.
pub struct WsManager;

impl WsManager {
    /// The manager (nothing to configure).
    pub fn new(_config: &HostConfig) -> Result<Self, HostError> {
        Ok(WsManager)
    }

    /// Refused: allowlist first (the native denial), then [`UNAVAILABLE`].
    pub fn connect(
        &self,
        ctx: &PluginContext,
        _owner: OwnerId,
        url: &str,
        _headers: &[(String, String)],
    ) -> Result<u64, WsError> {
        if ctx.policy.check_ws(url).is_err() {
            return Err(WsError::Denied(url.to_string()));
        }
        log::warn!(
            "[plugin:{}] ws.connect({url}): {UNAVAILABLE}",
            ctx.plugin_id
        );
        Err(WsError::Connect(UNAVAILABLE.to_string()))
    }

    /// No handle exists.
    pub fn send(&self, _owner: OwnerId, _handle: u64, _text: &str) -> Result<(), WsError> {
        Err(WsError::UnknownHandle)
    }

    /// No handle exists.
    pub fn recv(
        &self,
        _owner: OwnerId,
        _handle: u64,
        _timeout: Duration,
        _max_bytes: usize,
    ) -> Result<WsEvent, WsError> {
        Err(WsError::UnknownHandle)
    }

    /// Nothing to close.
    pub fn close(&self, _owner: OwnerId, _handle: u64) {}

    /// Nothing to close.
    pub fn close_all(&self, _owner: OwnerId) {}

    /// Always zero.
    pub fn handle_count(&self) -> usize {
        0
    }
}
