//! Size and time limits applied to everything a plugin can make the host do.
//!
//! Defaults are chosen so that plugins that work under tark keep working (see the
//! legacy ABI spec, section 6.1 item 5), while no plugin can make the host buffer or
//! write unbounded data.

use std::time::Duration;

/// Host-side limits. One value per host, optionally overridden per plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest HTTP answer (legacy: the whole JSON envelope; canonical: the body) in bytes.
    pub http_response_max: usize,
    /// Largest file `fs.read` returns, in bytes.
    pub fs_read_max: usize,
    /// Largest single storage value returned by `storage.get`, in bytes.
    pub storage_value_max: usize,
    /// Largest total size of one plugin's storage (sum of key and value bytes).
    pub storage_total_max: usize,
    /// Largest environment value returned by `env.get`, in bytes.
    pub env_value_max: usize,
    /// Largest WebSocket message delivered by `ws.recv` (tark caps at 64 KiB).
    pub ws_message_max: usize,
    /// Inbound messages queued per WebSocket before the connection is dropped.
    pub ws_queue_max: usize,
    /// Largest wait a plugin may ask of `ws.recv`.
    pub ws_recv_wait_max: Duration,
    /// WebSocket handshake timeout.
    pub ws_handshake_timeout: Duration,
    /// HTTP connect timeout (tark: 10 s).
    pub http_connect_timeout: Duration,
    /// HTTP total timeout (tark: 30 s).
    pub http_timeout: Duration,
    /// Largest string or list the host reads from guest memory in one piece.
    pub guest_read_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            http_response_max: 256 * 1024,
            fs_read_max: 256 * 1024,
            storage_value_max: 256 * 1024,
            storage_total_max: 16 * 1024 * 1024,
            env_value_max: 512,
            ws_message_max: 64 * 1024,
            ws_queue_max: 1024,
            ws_recv_wait_max: Duration::from_secs(30),
            ws_handshake_timeout: Duration::from_secs(10),
            http_connect_timeout: Duration::from_secs(10),
            http_timeout: Duration::from_secs(30),
            guest_read_max: 64 * 1024 * 1024,
        }
    }
}
