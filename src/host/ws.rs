//! `tark:ws`: WebSocket client connections owned by the instance that opened them.
//!
//! Design (limits: README, "Limits and their defaults"; behaviour pinned by
//! `tests/host_net.rs` and `tests/legacy_abi.rs`; answers to guests: [`super::wire`]):
//! - Blocking tungstenite over rustls, one thread per connection. The host owns this
//!   concurrency, so every call works from any thread (no Tokio runtime needed).
//! - The handshake runs synchronously inside [`WsManager::connect`], bounded by
//!   `ws_handshake_timeout` (a watchdog shuts the socket down at the deadline). A failure
//!   is returned as [`WsError::Connect`], a deliberate difference from tark's "report it
//!   later through recv" that is simpler for plugins.
//! - Each connection has its own state (mutex + condvar); the handle table lock is only
//!   taken for lookups, never while waiting, so one slow `recv` stalls nobody else.
//! - Inbound text frames go into a bounded queue (`ws_queue_max`); on overflow the
//!   connection is dropped and `recv` reports `Closed("queue_overflow")` after the queued
//!   messages. Messages above `ws_message_max` are kept only as a marker (always reported as
//!   [`WsEvent::TooLarge`]), so the queue holds at most `ws_queue_max * ws_message_max` bytes.
//!   A single inbound message is capped at [`MAX_INBOUND_MESSAGE`] by tungstenite (larger:
//!   the connection closes with tungstenite's error text).
//! - The connection thread polls its socket with a short read timeout
//!   ([`POLL_INTERVAL`]) and, between reads, writes queued outbound frames and checks for
//!   a close request, so `send` latency is at most one poll interval.
//! - `close` / `close_all` send a close frame and let the thread end on its own: it waits
//!   at most [`CLOSE_WAIT`] for the peer's close reply (plus the write timeout if the peer
//!   stopped reading), then drops the socket. Threads are detached but always exit.

// What only the native manager uses.
#[cfg(feature = "sys")]
use {
    super::{HostConfig, HostError, OwnerId, PluginContext},
    crate::policy::Policy,
    rustls::ClientConfig,
    std::collections::{HashMap, VecDeque},
    std::net::TcpStream,
    std::sync::atomic::{AtomicBool, AtomicU64, Ordering},
    std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError},
    std::sync::{Arc, Condvar, Mutex, MutexGuard},
    std::thread,
    std::time::{Duration, Instant},
    tungstenite::client::IntoClientRequest,
    tungstenite::handshake::HandshakeError,
    tungstenite::http::{HeaderName, HeaderValue},
    tungstenite::protocol::frame::CloseFrame,
    tungstenite::protocol::WebSocketConfig,
    tungstenite::stream::MaybeTlsStream,
    tungstenite::{Connector, Message, WebSocket},
    url::Url,
};

/// The JS backend's WebSocket manager: every connect is refused (`src/host/ws_js.rs`).
#[cfg(not(feature = "sys"))]
#[path = "ws_js.rs"]
mod js_manager;
#[cfg(not(feature = "sys"))]
pub use js_manager::WsManager;

#[cfg(feature = "sys")]
/// How often a connection thread wakes up to write queued frames and check for close.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);
#[cfg(feature = "sys")]
/// Longest a single socket write may block before the connection counts as dead.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
#[cfg(feature = "sys")]
/// Longest a closing connection waits for the peer's close reply.
pub const CLOSE_WAIT: Duration = Duration::from_secs(1);
#[cfg(feature = "sys")]
/// Largest single inbound message tungstenite assembles (bounds memory per connection).
pub const MAX_INBOUND_MESSAGE: usize = 16 * 1024 * 1024;
#[cfg(feature = "sys")]
/// Outbound frames queued per connection before `send` blocks (until the thread writes).
const OUTBOX_MAX: usize = 64;

#[cfg(feature = "sys")]
type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

/// What `ws.recv` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A text message.
    Message(String),
    /// A message longer than `max_bytes` was dropped.
    TooLarge,
    /// The connection is closed, with tark's reason text.
    Closed(String),
    /// Nothing arrived in time; `closed` tells whether the connection is already closed.
    Timeout {
        /// Connection already marked closed.
        closed: bool,
    },
}

/// WebSocket failures reported to the guest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    /// Host not allowlisted (legacy: return code -2).
    #[error("WebSocket host not allowed: {0}")]
    Denied(String),
    /// The host resolves only to addresses in blocked networks the allowlist does not
    /// name (egress rules, `src/host/net.rs`); nothing was connected.
    #[error("WebSocket address not allowed: {0}")]
    Blocked(String),
    /// Unknown handle, or a handle owned by another instance.
    #[error("Unknown websocket handle")]
    UnknownHandle,
    /// The connection is gone.
    #[error("WebSocket send failed")]
    SendFailed,
    /// Refused before connecting, with tark's text (`Only wss:// URLs are allowed`, ...).
    #[error("{0}")]
    Invalid(String),
    /// The handshake failed.
    #[error("{0}")]
    Connect(String),
}

#[cfg(feature = "sys")]
/// One queued inbound message.
enum Inbound {
    Text(String),
    /// Longer than the plugin's `ws_message_max`: never deliverable, kept as a marker.
    Oversize,
}

#[cfg(feature = "sys")]
#[derive(Default)]
struct ConnState {
    queue: VecDeque<Inbound>,
    closed: Option<String>,
}

#[cfg(feature = "sys")]
/// State shared by a connection's thread and the callers (never shared between connections).
#[derive(Default)]
struct Shared {
    state: Mutex<ConnState>,
    cond: Condvar,
    shutdown: AtomicBool,
}

#[cfg(feature = "sys")]
impl Shared {
    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Record the close reason (the first one wins) and wake waiters.
    fn mark_closed(&self, reason: &str) {
        let mut st = self.lock();
        if st.closed.is_none() {
            st.closed = Some(reason.to_string());
        }
        drop(st);
        self.cond.notify_all();
    }

    /// Queue an inbound text; false when the queue is full (overflow).
    fn push(&self, text: &str, queue_max: usize, message_max: usize) -> bool {
        let mut st = self.lock();
        if st.queue.len() >= queue_max {
            return false;
        }
        let item = if text.len() > message_max {
            Inbound::Oversize
        } else {
            Inbound::Text(text.to_string())
        };
        st.queue.push_back(item);
        drop(st);
        self.cond.notify_all();
        true
    }

    /// Wait for the next event, at most `timeout`.
    fn next_event(&self, timeout: Duration, max_bytes: usize) -> WsEvent {
        let start = Instant::now();
        let mut st = self.lock();
        loop {
            if let Some(item) = st.queue.pop_front() {
                return match item {
                    Inbound::Text(t) if t.len() <= max_bytes => WsEvent::Message(t),
                    _ => WsEvent::TooLarge,
                };
            }
            if let Some(reason) = &st.closed {
                return WsEvent::Closed(reason.clone());
            }
            let remaining = timeout.saturating_sub(start.elapsed());
            if remaining.is_zero() {
                return WsEvent::Timeout {
                    closed: st.closed.is_some(),
                };
            }
            st = match self.cond.wait_timeout(st, remaining) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(feature = "sys")]
/// A table entry: the owner, the shared state, and the outbound queue. Dropping the last
/// entry clone drops the sender, which the connection thread also treats as "close".
struct Conn {
    owner: OwnerId,
    shared: Arc<Shared>,
    outbox: SyncSender<String>,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

#[cfg(feature = "sys")]
/// All WebSocket connections of the process.
pub struct WsManager {
    tls: Arc<ClientConfig>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

#[cfg(feature = "sys")]
/// A fresh, non-zero, process-unique handle.
fn next_handle() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    loop {
        let h = NEXT.fetch_add(1, Ordering::Relaxed);
        if h != 0 {
            return h;
        }
    }
}

#[cfg(feature = "sys")]
/// rustls client configuration trusting the webpki roots plus the configured extra CAs.
fn tls_config(config: &HostConfig) -> Result<Arc<ClientConfig>, HostError> {
    super::net::tls_config(&super::http::parse_extra_cas(&config.extra_ca_pem)?)
}

#[cfg(feature = "sys")]
impl WsManager {
    /// Build the manager (TLS roots from the config).
    pub fn new(config: &HostConfig) -> Result<Self, HostError> {
        Ok(WsManager {
            tls: tls_config(config)?,
            conns: Mutex::new(HashMap::new()),
        })
    }

    fn table(&self) -> MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection behind `handle` if `owner` owns it (otherwise: unknown).
    fn lookup(&self, owner: OwnerId, handle: u64) -> Result<Arc<Conn>, WsError> {
        match self.table().get(&handle) {
            Some(c) if c.owner == owner => Ok(Arc::clone(c)),
            _ => Err(WsError::UnknownHandle),
        }
    }

    /// Open a connection for `owner`: allowlist, `wss` only, handshake bounded by
    /// `ctx.limits.ws_handshake_timeout`. Returns the new handle.
    pub fn connect(
        &self,
        ctx: &PluginContext,
        owner: OwnerId,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<u64, WsError> {
        if ctx.policy.check_ws(url).is_err() {
            log::warn!(
                "[plugin:{}] WS connect blocked - domain not in allowed list: {url}",
                ctx.plugin_id
            );
            let host = Url::parse(url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .unwrap_or_else(|| url.to_string());
            return Err(WsError::Denied(host));
        }
        let parsed = validate_url(url)?;
        log::debug!("[plugin:{}] ws.connect({url})", ctx.plugin_id);

        let socket = handshake(
            &ctx.policy,
            &parsed,
            headers,
            &self.tls,
            ctx.limits.ws_handshake_timeout,
        )
        .map_err(|e| {
            log::warn!("[plugin:{}] ws.connect({url}) failed: {e}", ctx.plugin_id);
            e
        })?;

        let handle = next_handle();
        let shared = Arc::new(Shared::default());
        let (outbox, outbox_rx) = mpsc::sync_channel(OUTBOX_MAX);
        let worker = Worker {
            socket,
            shared: Arc::clone(&shared),
            outbox: outbox_rx,
            queue_max: ctx.limits.ws_queue_max.max(1),
            message_max: ctx.limits.ws_message_max,
            plugin_id: ctx.plugin_id.clone(),
            handle,
        };
        let thread = thread::Builder::new()
            .name(format!("tark-ws-{handle}"))
            .spawn(move || worker.run())
            .map_err(|e| WsError::Connect(format!("cannot start WebSocket thread: {e}")))?;
        self.table().insert(
            handle,
            Arc::new(Conn {
                owner,
                shared,
                outbox,
                thread: Mutex::new(Some(thread)),
            }),
        );
        Ok(handle)
    }

    /// Queue a text frame (blocks only while the connection's outbound queue is full).
    pub fn send(&self, owner: OwnerId, handle: u64, text: &str) -> Result<(), WsError> {
        let conn = self.lookup(owner, handle)?;
        if conn.shared.is_closed() {
            return Err(WsError::SendFailed);
        }
        conn.outbox
            .send(text.to_string())
            .map_err(|_| WsError::SendFailed)
    }

    /// Wait for the next event, at most `timeout`; messages longer than `max_bytes` are
    /// dropped and reported as [`WsEvent::TooLarge`].
    pub fn recv(
        &self,
        owner: OwnerId,
        handle: u64,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<WsEvent, WsError> {
        let conn = self.lookup(owner, handle)?;
        Ok(conn.shared.next_event(timeout, max_bytes))
    }

    /// Close one connection (close frame, thread ends, handle forgotten). Unknown
    /// handles and handles of other owners are ignored.
    pub fn close(&self, owner: OwnerId, handle: u64) {
        let removed = {
            let mut table = self.table();
            match table.get(&handle) {
                Some(c) if c.owner == owner => table.remove(&handle),
                _ => None,
            }
        };
        if let Some(conn) = removed {
            request_close(&conn);
            finish(std::slice::from_ref(&conn));
        }
    }

    /// Close all connections of `owner` (its instance is being dropped).
    pub fn close_all(&self, owner: OwnerId) {
        let removed: Vec<Arc<Conn>> = {
            let mut table = self.table();
            let handles: Vec<u64> = table
                .iter()
                .filter(|(_, c)| c.owner == owner)
                .map(|(h, _)| *h)
                .collect();
            handles.iter().filter_map(|h| table.remove(h)).collect()
        };
        for conn in &removed {
            request_close(conn);
        }
        finish(&removed);
    }

    /// Number of open handles (all owners); for diagnostics and tests.
    pub fn handle_count(&self) -> usize {
        self.table().len()
    }
}

#[cfg(feature = "sys")]
impl Drop for WsManager {
    fn drop(&mut self) {
        let conns: Vec<Arc<Conn>> = self.table().drain().map(|(_, c)| c).collect();
        for conn in &conns {
            request_close(conn);
        }
        finish(&conns);
    }
}

#[cfg(feature = "sys")]
fn request_close(conn: &Conn) {
    conn.shared.shutdown.store(true, Ordering::Release);
    conn.shared.cond.notify_all();
}

#[cfg(feature = "sys")]
/// Wait (bounded) until the connection threads have sent their queued frames and the
/// close frame, so nothing a plugin sent is lost when its instance or the process ends.
fn finish(conns: &[Arc<Conn>]) {
    let deadline = Instant::now() + CLOSE_WAIT + POLL_INTERVAL * 4;
    for conn in conns {
        let handle = conn.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(handle) = handle else { continue };
        while !handle.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if handle.is_finished() {
            let _ = handle.join();
        }
    }
}

#[cfg(feature = "sys")]
/// tark's URL checks, with its error texts.
fn validate_url(url: &str) -> Result<Url, WsError> {
    let parsed = Url::parse(url).map_err(|_| WsError::Invalid("Invalid websocket URL".into()))?;
    if parsed.scheme() != "wss" {
        return Err(WsError::Invalid("Only wss:// URLs are allowed".into()));
    }
    match parsed.host_str() {
        Some(h) if !h.is_empty() => Ok(parsed),
        _ => Err(WsError::Invalid("Missing websocket host".into())),
    }
}

#[cfg(feature = "sys")]
/// Shuts a socket down if the guarded operation outlives its deadline.
struct Watchdog {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<bool>>,
}

#[cfg(feature = "sys")]
impl Watchdog {
    fn start(stream: &TcpStream, timeout: Duration) -> Watchdog {
        let (tx, rx) = mpsc::channel::<()>();
        let thread = stream.try_clone().ok().and_then(|s| {
            thread::Builder::new()
                .name("tark-ws-handshake-watchdog".into())
                .spawn(move || match rx.recv_timeout(timeout) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        let _ = s.shutdown(std::net::Shutdown::Both);
                        true
                    }
                    _ => false,
                })
                .ok()
        });
        Watchdog {
            stop: Some(tx),
            thread,
        }
    }

    /// Stop the watchdog; true when it had already fired.
    fn finish(mut self) -> bool {
        drop(self.stop.take());
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

#[cfg(feature = "sys")]
/// Connect (egress rules: resolved and checked once, connected to the checked address),
/// TLS and WebSocket handshake, all within `timeout`. TLS verifies and SNI carries the
/// URL's host name; only the TCP destination comes from the check.
fn handshake(
    policy: &Policy,
    url: &Url,
    headers: &[(String, String)],
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Socket, WsError> {
    handshake_inner(policy, url, headers, tls, timeout).map_err(|e| match e {
        HandshakeFailure::Blocked(why) => WsError::Blocked(why),
        HandshakeFailure::Other(reason) => WsError::Connect(reason),
    })
}

#[cfg(feature = "sys")]
/// Why [`handshake`] failed: refused by the egress rules, or anything else (tark's texts).
enum HandshakeFailure {
    Blocked(String),
    Other(String),
}

#[cfg(feature = "sys")]
impl From<String> for HandshakeFailure {
    fn from(reason: String) -> Self {
        HandshakeFailure::Other(reason)
    }
}

#[cfg(feature = "sys")]
fn handshake_inner(
    policy: &Policy,
    url: &Url,
    headers: &[(String, String)],
    tls: &Arc<ClientConfig>,
    timeout: Duration,
) -> Result<Socket, HandshakeFailure> {
    let timed_out = || format!("WebSocket handshake timed out after {timeout:?}");
    let start = Instant::now();
    let remaining = || timeout.saturating_sub(start.elapsed());

    let deadline = start.checked_add(timeout);
    let stream = match super::net::connect(policy, url, timeout, deadline) {
        Ok((s, _addr)) => s,
        Err(e) if e.is_blocked() => return Err(HandshakeFailure::Blocked(e.to_string())),
        Err(e) if e.is_timeout() => return Err(timed_out().into()),
        Err(super::net::EgressError::Connect(io)) => return Err(format!("IO error: {io}").into()),
        Err(e) => return Err(e.to_string().into()),
    };
    let left = remaining();
    if left.is_zero() {
        return Err(timed_out().into());
    }
    let _ = stream.set_nodelay(true);
    stream
        .set_read_timeout(Some(left))
        .and_then(|_| stream.set_write_timeout(Some(left)))
        .map_err(|e| format!("IO error: {e}"))?;

    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| e.to_string())?;
    for (name, value) in headers {
        // Invalid names or values are skipped silently, as tark does.
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            request.headers_mut().insert(n, v);
        }
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_INBOUND_MESSAGE))
        .max_frame_size(Some(MAX_INBOUND_MESSAGE));

    let watchdog = Watchdog::start(&stream, left);
    let result = tungstenite::client_tls_with_config(
        request,
        stream,
        Some(config),
        Some(Connector::Rustls(Arc::clone(tls))),
    );
    let fired = watchdog.finish();
    let socket = match result {
        Ok((socket, _response)) if !fired => socket,
        Ok(_) | Err(HandshakeError::Interrupted(_)) => return Err(timed_out().into()),
        Err(HandshakeError::Failure(_)) if fired => return Err(timed_out().into()),
        Err(HandshakeError::Failure(e)) => return Err(e.to_string().into()),
    };

    let tcp = match socket.get_ref() {
        MaybeTlsStream::Plain(s) => s,
        MaybeTlsStream::Rustls(s) => s.get_ref(),
        _ => return Err(String::from("unexpected WebSocket stream type").into()),
    };
    tcp.set_read_timeout(Some(POLL_INTERVAL))
        .and_then(|_| tcp.set_write_timeout(Some(WRITE_TIMEOUT)))
        .map_err(|e| format!("IO error: {e}"))?;
    Ok(socket)
}

#[cfg(feature = "sys")]
/// tark's reason text for a received close frame.
fn close_reason(frame: Option<&CloseFrame>) -> String {
    match frame {
        Some(f) => format!("close:{} {}", u16::from(f.code), f.reason.as_str()),
        None => "closed".to_string(),
    }
}

#[cfg(feature = "sys")]
fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(io)
        if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

#[cfg(feature = "sys")]
/// tark's reason text for a read error.
fn error_reason(e: &tungstenite::Error) -> String {
    use tungstenite::error::ProtocolError;
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => "closed".into(),
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => "eof".into(),
        tungstenite::Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "eof".into()
        }
        other => other.to_string(),
    }
}

#[cfg(feature = "sys")]
/// The connection thread.
struct Worker {
    socket: Socket,
    shared: Arc<Shared>,
    outbox: Receiver<String>,
    queue_max: usize,
    message_max: usize,
    plugin_id: String,
    handle: u64,
}

#[cfg(feature = "sys")]
impl Worker {
    fn run(mut self) {
        let reason = self.pump();
        log::debug!(
            "[plugin:{}] ws {} closed: {reason}",
            self.plugin_id,
            self.handle
        );
        self.shared.mark_closed(&reason);
    }

    /// Move frames both ways until the connection ends; returns the close reason.
    fn pump(&mut self) -> String {
        loop {
            // Outbound first, so frames sent just before `close` still go out.
            let mut close_requested = false;
            loop {
                match self.outbox.try_recv() {
                    Ok(text) => {
                        if self.socket.send(Message::text(text)).is_err() {
                            return "send_failed".into();
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        close_requested = true;
                        break;
                    }
                }
            }
            if close_requested || self.shared.shutdown.load(Ordering::Acquire) {
                self.close_gracefully();
                return "closed".into();
            }
            match self.socket.read() {
                Ok(Message::Text(t)) => {
                    if !self
                        .shared
                        .push(t.as_str(), self.queue_max, self.message_max)
                    {
                        log::warn!(
                            "[plugin:{}] ws {}: inbound queue full ({} messages), dropping the connection",
                            self.plugin_id,
                            self.handle,
                            self.queue_max
                        );
                        self.close_gracefully();
                        return "queue_overflow".into();
                    }
                }
                Ok(Message::Close(frame)) => {
                    // tungstenite queued the close reply; push it out, best effort.
                    let _ = self.socket.flush();
                    return close_reason(frame.as_ref());
                }
                Ok(_) => {}
                Err(e) if is_would_block(&e) => {
                    // Idle tick: retry frames a previous write could not finish.
                    if let Err(e) = self.socket.flush() {
                        if !is_would_block(&e) {
                            return error_reason(&e);
                        }
                    }
                }
                Err(e) => return error_reason(&e),
            }
        }
    }

    /// Send a close frame and wait (bounded) for the peer's reply.
    fn close_gracefully(&mut self) {
        if self.socket.close(None).is_err() {
            return;
        }
        let deadline = Instant::now().checked_add(CLOSE_WAIT);
        loop {
            match self.socket.read() {
                Ok(_) => {}
                Err(e) if is_would_block(&e) => {
                    let _ = self.socket.flush();
                }
                Err(_) => return,
            }
            if deadline.is_none_or(|d| Instant::now() >= d) {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::coding::CloseCode;

    #[test]
    fn url_validation_uses_tark_texts() {
        assert_eq!(
            validate_url("not a url"),
            Err(WsError::Invalid("Invalid websocket URL".into()))
        );
        assert_eq!(
            validate_url("ws://example.com/"),
            Err(WsError::Invalid("Only wss:// URLs are allowed".into()))
        );
        assert_eq!(
            validate_url("https://example.com/"),
            Err(WsError::Invalid("Only wss:// URLs are allowed".into()))
        );
        assert!(validate_url("wss://example.com:8443/x").is_ok());
    }

    #[test]
    fn close_reasons() {
        let f = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        assert_eq!(close_reason(Some(&f)), "close:1000 bye");
        assert_eq!(close_reason(None), "closed");
        let eof = tungstenite::Error::Protocol(
            tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
        );
        assert_eq!(error_reason(&eof), "eof");
    }

    #[test]
    fn queue_delivers_then_reports_close_repeatedly() {
        let s = Shared::default();
        assert!(s.push("a", 2, 10));
        assert!(s.push("0123456789abc", 2, 10));
        assert!(!s.push("overflow", 2, 10));
        s.mark_closed("queue_overflow");
        assert_eq!(
            s.next_event(Duration::ZERO, 10),
            WsEvent::Message("a".into())
        );
        assert_eq!(s.next_event(Duration::ZERO, 100), WsEvent::TooLarge);
        for _ in 0..2 {
            assert_eq!(
                s.next_event(Duration::ZERO, 10),
                WsEvent::Closed("queue_overflow".into())
            );
        }
    }

    #[test]
    fn recv_limit_and_timeout() {
        let s = Shared::default();
        assert!(s.push("hello", 4, 100));
        assert!(s.push("hi", 4, 100));
        assert_eq!(s.next_event(Duration::ZERO, 4), WsEvent::TooLarge);
        assert_eq!(
            s.next_event(Duration::ZERO, 4),
            WsEvent::Message("hi".into())
        );
        assert_eq!(
            s.next_event(Duration::from_millis(20), 4),
            WsEvent::Timeout { closed: false }
        );
    }

    #[test]
    fn waiter_wakes_on_push_from_another_thread() {
        let s = Arc::new(Shared::default());
        let s2 = Arc::clone(&s);
        let t = thread::spawn(move || s2.next_event(Duration::from_secs(30), 100));
        thread::sleep(Duration::from_millis(20));
        assert!(s.push("late", 4, 100));
        assert_eq!(t.join().unwrap(), WsEvent::Message("late".into()));
    }

    /// Ownership without a network: a table entry whose "thread" is the test itself.
    #[test]
    fn handles_of_other_owners_are_unknown() {
        let mgr = WsManager::new(&HostConfig::default()).unwrap();
        let (tx, rx) = mpsc::sync_channel(4);
        let shared = Arc::new(Shared::default());
        let h = next_handle();
        assert_ne!(h, 0);
        mgr.table().insert(
            h,
            Arc::new(Conn {
                owner: 7,
                shared: Arc::clone(&shared),
                outbox: tx,
                thread: Mutex::new(None),
            }),
        );
        assert_eq!(mgr.send(8, h, "x"), Err(WsError::UnknownHandle));
        assert_eq!(
            mgr.recv(8, h, Duration::ZERO, 10),
            Err(WsError::UnknownHandle)
        );
        mgr.close(8, h);
        assert_eq!(mgr.handle_count(), 1);
        assert!(!shared.shutdown.load(Ordering::Acquire));

        assert_eq!(mgr.send(7, h, "x"), Ok(()));
        assert_eq!(rx.try_recv().unwrap(), "x");
        assert!(shared.push("in", 4, 100));
        assert_eq!(
            mgr.recv(7, h, Duration::ZERO, 10),
            Ok(WsEvent::Message("in".into()))
        );
        shared.mark_closed("eof");
        assert_eq!(mgr.send(7, h, "x"), Err(WsError::SendFailed));

        mgr.close_all(7);
        assert_eq!(mgr.handle_count(), 0);
        assert!(shared.shutdown.load(Ordering::Acquire));
        assert_eq!(mgr.send(7, h, "x"), Err(WsError::UnknownHandle));
        assert!(rx.try_recv().is_err());
    }
}
