//! Real local servers for integration tests: an HTTP/1.1 server with OpenAI-compatible,
//! messaging, echo, redirect, size, delay and OAuth device-flow routes, and a WSS
//! (WebSocket over TLS) server with a generated CA.
//!
//! Every server binds `127.0.0.1:0` (never another address), runs on background threads,
//! bounds its own loops (idle timeouts, size caps, a stop flag polled every few
//! milliseconds) and shuts down when dropped. "Denied host" tests reach the same server
//! through the name `localhost` ([`HttpTestServer::localhost_url`]) while the plugin's
//! allowlist holds only `127.0.0.1`; the request is refused before any connection is made.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Poll `cond` every 10 ms until it holds or `timeout` passes; returns whether it held.
/// Use generous timeouts (seconds): this waits for background threads, it does not
/// measure anything.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() >= timeout {
            return cond();
        }
        thread::sleep(Duration::from_millis(10));
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long a connection may sit idle before the server drops it.
const IDLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Socket read timeout: how often blocked server threads look at the stop flag.
const POLL: Duration = Duration::from_millis(20);
/// Largest request head / line the HTTP server accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body the HTTP server accepts.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest `/big/<bytes>` body.
const MAX_BIG: usize = 256 * 1024 * 1024;
/// Longest `/slow/<ms>` delay.
const MAX_SLOW_MS: u64 = 120_000;
/// Requests served on one keep-alive connection before it is closed.
const MAX_REQUESTS_PER_CONN: usize = 1000;

/// Accept connections until `stop`; each connection runs `serve` on its own thread.
fn accept_loop(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    while !stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let serve = Arc::clone(&serve);
                let spawned = thread::Builder::new()
                    .name("test-server-conn".into())
                    .spawn(move || serve(stream));
                if let Ok(handle) = spawned {
                    let mut w = lock(&workers);
                    w.retain(|h| !h.is_finished());
                    w.push(handle);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn bind_local() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let addr = listener.local_addr().expect("local addr");
    (listener, addr)
}

fn stop_and_join(
    stop: &AtomicBool,
    accept: &mut Option<JoinHandle<()>>,
    workers: &Mutex<Vec<JoinHandle<()>>>,
) {
    stop.store(true, Ordering::Release);
    if let Some(h) = accept.take() {
        let _ = h.join();
    }
    let handles: Vec<JoinHandle<()>> = lock(workers).drain(..).collect();
    for h in handles {
        let _ = h.join();
    }
}

// ---------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------

/// One request as the HTTP server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// Method, e.g. `POST`.
    pub method: String,
    /// Request target as sent: path plus `?query` if any.
    pub path: String,
    /// Headers in order, names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    /// Body (after de-chunking), lossily decoded as UTF-8.
    pub body: String,
}

impl RecordedRequest {
    /// First value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query string.
    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or("")
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// A fixed answer installed with [`HttpTestServer::set_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannedResponse {
    /// Status code.
    pub status: u16,
    /// Extra headers (Content-Length and Connection are added by the server).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: String,
}

impl CannedResponse {
    /// A JSON answer with `Content-Type: application/json`.
    pub fn json(status: u16, body: &Value) -> Self {
        CannedResponse {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
        }
    }
}

/// Script of the OAuth device-flow token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthScript {
    /// How many `POST /oauth/token` calls answer `{"error":"authorization_pending"}`
    /// before the token is issued (default 1).
    pub pending_polls: usize,
    /// Status of the pending answers (default 400, as RFC 8628; GitHub uses 200).
    pub pending_status: u16,
    /// The token answer (status 200).
    pub token: Value,
}

impl Default for OAuthScript {
    fn default() -> Self {
        OAuthScript {
            pending_polls: 1,
            pending_status: 400,
            token: json!({
                "access_token": "test-access-token",
                "refresh_token": "test-refresh-token",
                "token_type": "bearer",
                "expires_in": 3600,
                "scope": "read"
            }),
        }
    }
}

#[derive(Default)]
struct HttpState {
    requests: Mutex<Vec<RecordedRequest>>,
    overrides: Mutex<HashMap<(String, String), CannedResponse>>,
    sends: AtomicUsize,
    oauth: Mutex<OAuthScript>,
    token_polls: AtomicUsize,
    stop: Arc<AtomicBool>,
    port: u16,
    scheme: &'static str,
}

/// A local HTTP/1.1 server (see the module docs for its routes).
///
/// Routes:
/// - `GET /v1/models`: OpenAI model list (`test-model-a`, `test-model-b`).
/// - `POST /v1/chat/completions`: OpenAI-compatible; replies `echo: <last user message>`,
///   usage `prompt_tokens` = number of messages, `completion_tokens` = 3,
///   `finish_reason` `stop`; `"stream": true` answers SSE chunks word by word ending with
///   `data: [DONE]`; `Authorization: Bearer bad` answers 401 with an OpenAI error object.
/// - `POST /send`: answers `{"id":"msg-<n>"}` (n counts from 1).
/// - `GET|POST /echo`: JSON `{"method","path","headers":[[n,v]..],"body"}`.
/// - `GET /status/<n>`: that status (200..=599), body `{"status":n}`.
/// - `GET /big/<bytes>`: a body of that many `x`.
/// - `GET|POST /redirect?to=<url-encoded url>&code=<301|302|303|307|308>` (default 302).
/// - `GET|POST /hops/<n>`: a 302 chain `/hops/<n-1>` ... `/hops/0` (200).
/// - `GET /slow/<ms>`: answers after that delay.
/// - `POST /oauth/device/code`, `POST /oauth/token`: device flow, see [`OAuthScript`].
/// - anything else: 404 `{"error":"not found"}`. [`HttpTestServer::set_response`]
///   overrides any method + path.
pub struct HttpTestServer {
    addr: SocketAddr,
    state: Arc<HttpState>,
    ca_pem: Option<String>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl HttpTestServer {
    /// Start a plain-HTTP server on `127.0.0.1:<free port>`.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// Start an HTTPS server (same routes) whose certificate, for `localhost` and
    /// `127.0.0.1`, is signed by a freshly generated CA: give [`HttpTestServer::ca_pem`] to
    /// the host as `HostConfig::extra_ca_pem`.
    pub fn start_https() -> Self {
        Self::start_with(Some(generate_tls()))
    }

    fn start_with(tls: Option<(String, Arc<rustls::ServerConfig>)>) -> Self {
        let (listener, addr) = bind_local();
        let stop = Arc::new(AtomicBool::new(false));
        let (ca_pem, tls) = match tls {
            Some((pem, cfg)) => (Some(pem), Some(cfg)),
            None => (None, None),
        };
        let state = Arc::new(HttpState {
            stop: Arc::clone(&stop),
            port: addr.port(),
            scheme: if tls.is_some() { "https" } else { "http" },
            ..HttpState::default()
        });
        let workers = Arc::new(Mutex::new(Vec::new()));
        let st = Arc::clone(&state);
        let w = Arc::clone(&workers);
        let accept = thread::Builder::new()
            .name("http-test-server".into())
            .spawn(move || {
                accept_loop(listener, stop, w, move |tcp| {
                    if !prepare_tcp(&tcp) {
                        return;
                    }
                    match &tls {
                        None => serve_http(tcp, &st),
                        Some(cfg) => {
                            if let Ok(conn) = rustls::ServerConnection::new(Arc::clone(cfg)) {
                                serve_http(rustls::StreamOwned::new(conn, tcp), &st);
                            }
                        }
                    }
                })
            })
            .expect("spawn http test server");
        HttpTestServer {
            addr,
            state,
            ca_pem,
            accept: Some(accept),
            workers,
        }
    }

    /// The test CA (PEM) of an HTTPS server; None for plain HTTP.
    pub fn ca_pem(&self) -> Option<Vec<u8>> {
        self.ca_pem.clone().map(String::into_bytes)
    }

    /// `http://127.0.0.1:<port>` (`https://` for [`HttpTestServer::start_https`]).
    pub fn base_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.state.scheme, self.addr.port())
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// `http://localhost:<port><path>`: the same server under a name that an allowlist
    /// of just `127.0.0.1` denies.
    pub fn localhost_url(&self, path: &str) -> String {
        format!(
            "{}://localhost:{}{path}",
            self.state.scheme,
            self.addr.port()
        )
    }

    /// `<base_url>/redirect?to=<target>&code=<code>` with `target` URL-encoded.
    pub fn redirect_url(&self, target: &str, code: u16) -> String {
        let to: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
        self.url(&format!("/redirect?to={to}&code={code}"))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// Requests whose path (without query) equals `path`.
    pub fn requests_to(&self, path: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path_only() == path)
            .collect()
    }

    /// Bodies received by `POST /send`, in order.
    pub fn sent(&self) -> Vec<String> {
        self.requests_to("/send")
            .into_iter()
            .filter(|r| r.method == "POST")
            .map(|r| r.body)
            .collect()
    }

    /// Forget the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.state.requests).clear();
    }

    /// Answer `method path` (path without query) with a fixed response from now on.
    pub fn set_response(&self, method: &str, path: &str, response: CannedResponse) {
        lock(&self.state.overrides)
            .insert((method.to_ascii_uppercase(), path.to_string()), response);
    }

    /// Replace the OAuth token-endpoint script (also resets the poll counter).
    pub fn set_oauth(&self, script: OAuthScript) {
        *lock(&self.state.oauth) = script;
        self.state.token_polls.store(0, Ordering::Release);
    }

    /// How many times `POST /oauth/token` was called.
    pub fn token_polls(&self) -> usize {
        self.state.token_polls.load(Ordering::Acquire)
    }
}

impl Drop for HttpTestServer {
    fn drop(&mut self) {
        stop_and_join(&self.state.stop, &mut self.accept, &self.workers);
    }
}

/// Buffered, stop-aware reading from one connection.
struct ConnReader<S> {
    stream: S,
    buf: Vec<u8>,
    stop: Arc<AtomicBool>,
}

/// A server-side connection: plain TCP or TLS over TCP.
trait HttpStream: Read + Write {
    /// Orderly end of our sending side (TLS: close_notify).
    fn close_write(&mut self);
}

impl HttpStream for TcpStream {
    fn close_write(&mut self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl HttpStream for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn close_write(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Write);
    }
}

/// Socket options of every accepted connection; false when they cannot be set.
fn prepare_tcp(tcp: &TcpStream) -> bool {
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(POLL)).is_ok()
        && tcp.set_write_timeout(Some(Duration::from_secs(5))).is_ok()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn invalid(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl<S: Read> ConnReader<S> {
    /// Read more bytes; Ok(0) on EOF. Fails when idle too long or the server stops.
    fn fill(&mut self) -> io::Result<usize> {
        let start = Instant::now();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.stop.load(Ordering::Acquire) {
                return Err(io::Error::other("server stopping"));
            }
            match self.stream.read(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if start.elapsed() > IDLE_TIMEOUT {
                        return Err(io::ErrorKind::TimedOut.into());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The next request head (through the blank line), or None at a clean EOF.
    fn head(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n\r\n") {
                return Ok(Some(self.buf.drain(..pos.saturating_add(4)).collect()));
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("request head too large"));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..pos).collect();
                self.buf.drain(..2);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                // Trailers, up to the blank line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            if body.len().saturating_add(size) > MAX_BODY {
                return Err(invalid("body too large"));
            }
            body.extend(self.exact(size)?);
            if self.exact(2)? != b"\r\n" {
                return Err(invalid("bad chunk end"));
            }
        }
    }
}

/// What a route answers.
enum Reply {
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `Content-Length: n` of `x`, streamed.
    Big(usize),
    /// SSE events (each a complete `data: ...\n\n` block) sent as HTTP chunks.
    Sse(Vec<String>),
}

fn json_reply(status: u16, v: &Value) -> Reply {
    Reply::Full {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: v.to_string().into_bytes(),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn serve_http<S: HttpStream>(stream: S, state: &HttpState) {
    let mut reader = ConnReader {
        stream,
        buf: Vec::new(),
        stop: Arc::clone(&state.stop),
    };
    for _ in 0..MAX_REQUESTS_PER_CONN {
        let Ok(Some(head)) = reader.head() else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let mut parts = request_line.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let version = parts.next().unwrap_or("").trim().to_string();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        if get("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && reader
                .stream
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .is_err()
        {
            return;
        }
        let body = if get("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
        {
            reader.chunked()
        } else {
            match get("content-length").map(|v| v.parse::<usize>()) {
                None => Ok(Vec::new()),
                Some(Ok(n)) if n <= MAX_BODY => reader.exact(n),
                Some(_) => Err(invalid("bad content-length")),
            }
        };
        let Ok(body) = body else {
            let _ = write_full(&mut reader.stream, 400, &[], b"bad request", false);
            return;
        };
        let connection = get("connection").unwrap_or_default().to_ascii_lowercase();
        let keep_alive = if version == "HTTP/1.0" {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        };
        let req = RecordedRequest {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        lock(&state.requests).push(req.clone());
        let reply = route(&req, state);
        let ok = match reply {
            Reply::Full {
                status,
                headers,
                body,
            } => write_full(&mut reader.stream, status, &headers, &body, keep_alive),
            Reply::Big(n) => write_big(&mut reader.stream, n, keep_alive, &state.stop),
            Reply::Sse(events) => write_sse(&mut reader.stream, &events, keep_alive),
        };
        if ok.is_err() || !keep_alive {
            reader.stream.close_write();
            // Drain briefly so the peer sees an orderly close rather than a reset.
            let mut sink = [0u8; 1024];
            let _ = reader.stream.read(&mut sink);
            return;
        }
    }
}

fn head_bytes(status: u16, headers: &[(String, String)], extra: &str, keep_alive: bool) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(extra);
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    head.into_bytes()
}

fn write_full(
    out: &mut impl Write,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let no_body = status == 204 || status == 304;
    let extra = if no_body {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let mut msg = head_bytes(status, headers, &extra, keep_alive);
    if !no_body {
        msg.extend_from_slice(body);
    }
    out.write_all(&msg)?;
    out.flush()
}

fn write_big(
    out: &mut impl Write,
    n: usize,
    keep_alive: bool,
    stop: &AtomicBool,
) -> io::Result<()> {
    let headers = vec![("Content-Type".to_string(), "text/plain".to_string())];
    out.write_all(&head_bytes(
        200,
        &headers,
        &format!("Content-Length: {n}\r\n"),
        keep_alive,
    ))?;
    let block = vec![b'x'; 64 * 1024];
    let mut left = n;
    while left > 0 {
        if stop.load(Ordering::Acquire) {
            return Err(io::Error::other("server stopping"));
        }
        let k = left.min(block.len());
        out.write_all(block.get(..k).unwrap_or(&[]))?;
        left = left.saturating_sub(k);
    }
    out.flush()
}

fn write_sse(out: &mut impl Write, events: &[String], keep_alive: bool) -> io::Result<()> {
    let headers = vec![
        ("Content-Type".to_string(), "text/event-stream".to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
    ];
    out.write_all(&head_bytes(
        200,
        &headers,
        "Transfer-Encoding: chunked\r\n",
        keep_alive,
    ))?;
    for ev in events {
        out.write_all(format!("{:x}\r\n{ev}\r\n", ev.len()).as_bytes())?;
        out.flush()?;
    }
    out.write_all(b"0\r\n\r\n")?;
    out.flush()
}

fn route(req: &RecordedRequest, state: &HttpState) -> Reply {
    let path = req.path_only().to_string();
    let query = req.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    if let Some(canned) = lock(&state.overrides).get(&(req.method.clone(), path.clone())) {
        return Reply::Full {
            status: canned.status,
            headers: canned.headers.clone(),
            body: canned.body.clone().into_bytes(),
        };
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (req.method.as_str(), segments.as_slice()) {
        ("GET", ["v1", "models"]) => json_reply(
            200,
            &json!({
                "object": "list",
                "data": [
                    {"id": "test-model-a", "object": "model", "owned_by": "test"},
                    {"id": "test-model-b", "object": "model", "owned_by": "test"}
                ]
            }),
        ),
        ("POST", ["v1", "chat", "completions"]) => chat_completions(req),
        ("POST", ["send"]) => {
            let n = state.sends.fetch_add(1, Ordering::AcqRel).saturating_add(1);
            json_reply(200, &json!({ "id": format!("msg-{n}") }))
        }
        ("GET" | "POST", ["echo"]) => json_reply(
            200,
            &json!({
                "method": req.method,
                "path": req.path,
                "headers": req.headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
                "body": req.body,
            }),
        ),
        ("GET", ["status", n]) => match n.parse::<u16>() {
            Ok(code) if (200..=599).contains(&code) => json_reply(code, &json!({ "status": code })),
            _ => json_reply(400, &json!({"error": "status must be 200..=599"})),
        },
        ("GET", ["big", n]) => match n.parse::<usize>() {
            Ok(size) if size <= MAX_BIG => Reply::Big(size),
            _ => json_reply(400, &json!({"error": "bad size"})),
        },
        ("GET" | "POST", ["redirect"]) => {
            let mut to = None;
            let mut code = 302u16;
            for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                match k.as_ref() {
                    "to" => to = Some(v.into_owned()),
                    "code" => code = v.parse().unwrap_or(302),
                    _ => {}
                }
            }
            match to {
                Some(location) if matches!(code, 301 | 302 | 303 | 307 | 308) => Reply::Full {
                    status: code,
                    headers: vec![("Location".into(), location)],
                    body: Vec::new(),
                },
                _ => json_reply(400, &json!({"error": "need to=<url> and a redirect code"})),
            }
        }
        ("GET" | "POST", ["hops", n]) => match n.parse::<u32>() {
            Ok(0) => json_reply(200, &json!({ "hops": "done" })),
            Ok(k) => Reply::Full {
                status: 302,
                headers: vec![("Location".into(), format!("/hops/{}", k.saturating_sub(1)))],
                body: Vec::new(),
            },
            Err(_) => json_reply(400, &json!({"error": "bad hop count"})),
        },
        ("GET", ["slow", ms]) => match ms.parse::<u64>() {
            Ok(ms) if ms <= MAX_SLOW_MS => {
                let until = Instant::now() + Duration::from_millis(ms);
                while Instant::now() < until && !state.stop.load(Ordering::Acquire) {
                    thread::sleep(Duration::from_millis(10));
                }
                json_reply(200, &json!({ "slept_ms": ms }))
            }
            _ => json_reply(400, &json!({"error": "bad delay"})),
        },
        ("POST", ["oauth", "device", "code"]) => json_reply(
            200,
            &json!({
                "device_code": "test-device-code",
                "user_code": "TEST-CODE",
                "verification_uri": format!("{}://127.0.0.1:{}/oauth/device", state.scheme, state.port),
                "expires_in": 900,
                "interval": 1
            }),
        ),
        ("POST", ["oauth", "token"]) => {
            let polls = state
                .token_polls
                .fetch_add(1, Ordering::AcqRel)
                .saturating_add(1);
            let script = lock(&state.oauth).clone();
            if polls <= script.pending_polls {
                json_reply(
                    script.pending_status,
                    &json!({"error": "authorization_pending"}),
                )
            } else {
                json_reply(200, &script.token)
            }
        }
        _ => json_reply(404, &json!({"error": "not found"})),
    }
}

/// Text of an OpenAI message `content`: a string, or the text parts of an array.
fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

fn chat_completions(req: &RecordedRequest) -> Reply {
    if req.header("authorization") == Some("Bearer bad") {
        return json_reply(
            401,
            &json!({"error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key"
            }}),
        );
    }
    let Some(body) = req.json() else {
        return json_reply(
            400,
            &json!({"error": {"message": "body is not JSON", "type": "invalid_request_error"}}),
        );
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return json_reply(
            400,
            &json!({"error": {"message": "messages missing", "type": "invalid_request_error"}}),
        );
    };
    let last_user = messages
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    let reply = format!("echo: {last_user}");
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("test-model-a")
        .to_string();
    let prompt_tokens = messages.len();
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 3,
        "total_tokens": prompt_tokens.saturating_add(3)
    });
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let mut events = Vec::new();
        for (i, word) in reply.split(' ').enumerate() {
            let piece = if i == 0 {
                word.to_string()
            } else {
                format!(" {word}")
            };
            let chunk = json!({
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": null}]
            });
            events.push(format!("data: {chunk}\n\n"));
        }
        let last = json!({
            "id": "chatcmpl-test",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": usage
        });
        events.push(format!("data: {last}\n\n"));
        events.push("data: [DONE]\n\n".to_string());
        return Reply::Sse(events);
    }
    json_reply(
        200,
        &json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply},
                "finish_reason": "stop"
            }],
            "usage": usage
        }),
    )
}

// ---------------------------------------------------------------------------------------
// WSS
// ---------------------------------------------------------------------------------------

/// A snapshot of one WebSocket connection the WSS server accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsConnectionInfo {
    /// 0-based, in accept order.
    pub index: usize,
    /// Request path (and query) of the handshake.
    pub path: String,
    /// Handshake request headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Text messages received from the client, in order.
    pub received: Vec<String>,
    /// None while open; then `close:<code> <reason>`, `closed` (close frame without
    /// payload), `eof`, `server closed` or an error text.
    pub closed: Option<String>,
}

impl WsConnectionInfo {
    /// First value of a handshake header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Still open?
    pub fn is_open(&self) -> bool {
        self.closed.is_none()
    }
}

enum WsOut {
    Text(String),
    Close(u16, String),
    /// Drop the TCP connection without a close frame.
    Drop,
}

struct WsConnSlot {
    index: usize,
    path: String,
    headers: Vec<(String, String)>,
    received: Mutex<Vec<String>>,
    outbox: Mutex<VecDeque<WsOut>>,
    closed: Mutex<Option<String>>,
}

impl WsConnSlot {
    fn snapshot(&self) -> WsConnectionInfo {
        WsConnectionInfo {
            index: self.index,
            path: self.path.clone(),
            headers: self.headers.clone(),
            received: lock(&self.received).clone(),
            closed: lock(&self.closed).clone(),
        }
    }

    fn close_with(&self, reason: String) {
        let mut c = lock(&self.closed);
        if c.is_none() {
            *c = Some(reason);
        }
    }
}

#[derive(Default)]
struct WssState {
    conns: Mutex<Vec<Arc<WsConnSlot>>>,
    scripts: Mutex<VecDeque<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

/// A local WebSocket-over-TLS server. Its certificate (for `localhost` and `127.0.0.1`)
/// is signed by a CA generated at start; give [`WssTestServer::ca_pem`] to the host as
/// `HostConfig::extra_ca_pem`. Messages from clients are recorded per connection;
/// messages to clients are pushed with [`WssTestServer::push`] or scripted per connection
/// with [`WssTestServer::push_to_next_connection`].
pub struct WssTestServer {
    addr: SocketAddr,
    ca_pem: String,
    state: Arc<WssState>,
    accept: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Test CA and a server certificate for `localhost` / `127.0.0.1` signed by it.
pub fn generate_tls() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tark-wasmer test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");

    let mut leaf_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("leaf params");
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca)
        .expect("leaf certificate");

    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone(), ca.der().clone()], key)
        .expect("server certificate");
    (ca.pem(), Arc::new(config))
}

impl WssTestServer {
    /// Start a server on `127.0.0.1:<free port>` with a freshly generated CA.
    pub fn start() -> Self {
        let (ca_pem, tls) = generate_tls();
        let (listener, addr) = bind_local();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(WssState {
            stop: Arc::clone(&stop),
            ..WssState::default()
        });
        let workers = Arc::new(Mutex::new(Vec::new()));
        let st = Arc::clone(&state);
        let w = Arc::clone(&workers);
        let accept = thread::Builder::new()
            .name("wss-test-server".into())
            .spawn(move || {
                accept_loop(listener, stop, w, move |stream| {
                    serve_ws(stream, &st, Arc::clone(&tls));
                })
            })
            .expect("spawn wss test server");
        WssTestServer {
            addr,
            ca_pem,
            state,
            accept: Some(accept),
            workers,
        }
    }

    /// `wss://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("wss://127.0.0.1:{}/", self.addr.port())
    }

    /// `wss://localhost:<port>/`: the same server under a name an allowlist of just
    /// `127.0.0.1` denies.
    pub fn localhost_url(&self) -> String {
        format!("wss://localhost:{}/", self.addr.port())
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The test CA certificate (PEM) that signed the server certificate.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca_pem.clone().into_bytes()
    }

    /// Snapshots of every connection accepted so far, in accept order.
    pub fn connections(&self) -> Vec<WsConnectionInfo> {
        lock(&self.state.conns)
            .iter()
            .map(|c| c.snapshot())
            .collect()
    }

    /// Number of connections still open.
    pub fn open_connections(&self) -> usize {
        lock(&self.state.conns)
            .iter()
            .filter(|c| lock(&c.closed).is_none())
            .count()
    }

    /// Text messages received, per connection in accept order.
    pub fn received(&self) -> Vec<Vec<String>> {
        self.connections().into_iter().map(|c| c.received).collect()
    }

    /// Send `text` to every open connection; returns how many it was queued for.
    pub fn push(&self, text: &str) -> usize {
        self.queue_all(|| WsOut::Text(text.to_string()))
    }

    /// Send `text` to the connection with this accept index; false if it is not open.
    pub fn push_to(&self, index: usize, text: &str) -> bool {
        let conns = lock(&self.state.conns);
        match conns.get(index) {
            Some(c) if lock(&c.closed).is_none() => {
                lock(&c.outbox).push_back(WsOut::Text(text.to_string()));
                true
            }
            _ => false,
        }
    }

    /// Messages sent to the next connection right after its handshake (one script per
    /// future connection, consumed in order).
    pub fn push_to_next_connection(&self, messages: Vec<String>) {
        lock(&self.state.scripts).push_back(messages);
    }

    /// Send a close frame with `code` and `reason` to every open connection.
    pub fn close_all(&self, code: u16, reason: &str) -> usize {
        self.queue_all(|| WsOut::Close(code, reason.to_string()))
    }

    /// Drop every open connection's TCP stream without a close frame (client sees EOF).
    pub fn drop_all(&self) -> usize {
        self.queue_all(|| WsOut::Drop)
    }

    fn queue_all(&self, make: impl Fn() -> WsOut) -> usize {
        let conns = lock(&self.state.conns);
        let mut n = 0usize;
        for c in conns.iter().filter(|c| lock(&c.closed).is_none()) {
            lock(&c.outbox).push_back(make());
            n = n.saturating_add(1);
        }
        n
    }
}

impl Drop for WssTestServer {
    fn drop(&mut self) {
        stop_and_join(&self.state.stop, &mut self.accept, &self.workers);
    }
}

/// Request target and headers of a WebSocket handshake.
type HandshakeSeen = (String, Vec<(String, String)>);

fn serve_ws(stream: TcpStream, state: &WssState, tls: Arc<rustls::ServerConfig>) {
    use tungstenite::handshake::server::{Request, Response};
    use tungstenite::protocol::frame::coding::CloseCode;
    use tungstenite::protocol::frame::CloseFrame;
    use tungstenite::Message;

    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let Ok(tcp) = stream.try_clone() else {
        return;
    };
    let Ok(conn) = rustls::ServerConnection::new(tls) else {
        return;
    };
    let tls_stream = rustls::StreamOwned::new(conn, stream);
    let seen: Arc<Mutex<HandshakeSeen>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    // The error type is tungstenite's (an HTTP response); it is never built here.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| {
        let headers = req
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        *lock(&seen2) = (req.uri().to_string(), headers);
        Ok(resp)
    };
    let Ok(mut ws) = tungstenite::accept_hdr(tls_stream, callback) else {
        return;
    };
    let _ = tcp.set_read_timeout(Some(POLL));
    let (path, headers) = lock(&seen).clone();
    let slot = {
        let mut conns = lock(&state.conns);
        let slot = Arc::new(WsConnSlot {
            index: conns.len(),
            path,
            headers,
            received: Mutex::default(),
            outbox: Mutex::default(),
            closed: Mutex::default(),
        });
        if let Some(script) = lock(&state.scripts).pop_front() {
            lock(&slot.outbox).extend(script.into_iter().map(WsOut::Text));
        }
        conns.push(Arc::clone(&slot));
        slot
    };

    let started = Instant::now();
    let max_life = Duration::from_secs(600);
    let would_block = |e: &tungstenite::Error| {
        matches!(e, tungstenite::Error::Io(io)
            if matches!(io.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    };
    loop {
        if state.stop.load(Ordering::Acquire) || started.elapsed() > max_life {
            let _ = ws.close(None);
            let _ = ws.flush();
            slot.close_with("server closed".into());
            return;
        }
        let pending: Vec<WsOut> = lock(&slot.outbox).drain(..).collect();
        for out in pending {
            match out {
                WsOut::Text(t) => {
                    if let Err(e) = ws.send(Message::text(t)) {
                        slot.close_with(e.to_string());
                        return;
                    }
                }
                WsOut::Close(code, reason) => {
                    let _ = ws.close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }));
                    let _ = ws.flush();
                    // Wait (bounded) for the client's close reply.
                    let until = Instant::now() + Duration::from_secs(2);
                    while Instant::now() < until {
                        match ws.read() {
                            Ok(_) => {}
                            Err(e) if would_block(&e) => {}
                            Err(_) => break,
                        }
                    }
                    slot.close_with("server closed".into());
                    return;
                }
                WsOut::Drop => {
                    let _ = tcp.shutdown(Shutdown::Both);
                    slot.close_with("server dropped".into());
                    return;
                }
            }
        }
        match ws.read() {
            Ok(Message::Text(t)) => lock(&slot.received).push(t.as_str().to_string()),
            Ok(Message::Close(frame)) => {
                let _ = ws.flush();
                slot.close_with(match frame {
                    Some(f) => format!("close:{} {}", u16::from(f.code), f.reason.as_str()),
                    None => "closed".into(),
                });
                return;
            }
            Ok(_) => {}
            Err(e) if would_block(&e) => {
                let _ = ws.flush();
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => {
                slot.close_with("eof".into());
                return;
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                slot.close_with("eof".into());
                return;
            }
            Err(e) => {
                slot.close_with(e.to_string());
                return;
            }
        }
    }
}
