//! One HTTP/1.1 exchange (`Connection: close`) over a connection the caller opened to
//! an address it checked (see `src/host/net.rs`).
//!
//! Why this exists: attohttpc 0.31 resolves and connects by itself (`happy::connect`
//! with the URL host) and offers no hook for a resolver, a socket or a connector, so it
//! cannot be made to connect to the address the egress rules checked. This module
//! keeps its wire behaviour (request line, default headers in the same order,
//! `Content-Length` framing, response head limits, chunked / length / until-close
//! bodies, charset decoding with UTF-8 as the default through attohttpc's public
//! `TextReader`), so servers and plugins see no difference. TLS is rustls with the
//! host's roots, SNI and certificate checks for the URL's host name.

use std::io::{self, BufRead, BufReader, Read, Take, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use attohttpc::charsets::{self, Charset};
use attohttpc::header::{
    HeaderMap, HeaderName, HeaderValue, ACCEPT, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST,
    TRANSFER_ENCODING, USER_AGENT,
};
use attohttpc::{StatusCode, TextReader};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use url::{Host, Url};

/// The `User-Agent` attohttpc sent when it was the transport; kept so servers see no change.
const DEFAULT_USER_AGENT: &str = "attohttpc/0.31.0";
/// Longest status or header line (as attohttpc).
const MAX_LINE: u64 = 16 * 1024;
/// Most response headers (attohttpc's default).
const MAX_HEADERS: usize = 100;
/// Longest chunk-size line.
const MAX_CHUNK_LINE: u64 = 128;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// A TCP stream whose every read and write is bounded by one deadline.
#[derive(Debug)]
pub(crate) struct DeadlineStream {
    tcp: TcpStream,
    deadline: Option<Instant>,
}

impl DeadlineStream {
    /// Wrap a connected stream; `deadline` None means no time limit.
    pub(crate) fn new(tcp: TcpStream, deadline: Option<Instant>) -> Self {
        DeadlineStream { tcp, deadline }
    }

    fn remaining(&self) -> io::Result<Option<Duration>> {
        match self.deadline {
            None => Ok(None),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "operation timed out",
                    ))
                } else {
                    Ok(Some(left))
                }
            }
        }
    }
}

impl Read for DeadlineStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.tcp.set_read_timeout(left)?;
        self.tcp.read(buf)
    }
}

impl Write for DeadlineStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.remaining()?;
        self.tcp.set_write_timeout(left)?;
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// Plain or TLS transport.
pub(crate) enum Transport {
    /// `http://`.
    Plain(DeadlineStream),
    /// `https://`.
    Tls(Box<StreamOwned<ClientConnection, DeadlineStream>>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Plain(_) => f.write_str("Transport::Plain"),
            Transport::Tls(_) => f.write_str("Transport::Tls"),
        }
    }
}

impl Transport {
    /// Plain for `http`, TLS for `https` (server name and certificate from the URL host).
    pub(crate) fn for_url(
        url: &Url,
        stream: DeadlineStream,
        tls: &Arc<ClientConfig>,
    ) -> io::Result<Transport> {
        if url.scheme() != "https" {
            return Ok(Transport::Plain(stream));
        }
        let name = server_name(url)?;
        let conn = ClientConnection::new(Arc::clone(tls), name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(Transport::Tls(Box::new(StreamOwned::new(conn, stream))))
    }
}

/// The name TLS verifies: the URL host (IP literals as addresses), one trailing dot
/// dropped (SNI carries no trailing dot).
pub(crate) fn server_name(url: &Url) -> io::Result<ServerName<'static>> {
    match url.host() {
        Some(Host::Domain(d)) => {
            let d = d.strip_suffix('.').unwrap_or(d);
            ServerName::try_from(d.to_string())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
        }
        Some(Host::Ipv4(ip)) => Ok(ServerName::IpAddress(std::net::IpAddr::V4(ip).into())),
        Some(Host::Ipv6(ip)) => Ok(ServerName::IpAddress(std::net::IpAddr::V6(ip).into())),
        None => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "URL has no host",
        )),
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
        }
    }
}

/// The request head and body (the URL gives the path, query and `Host`).
pub(crate) struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// Target URL.
    pub url: &'a Url,
    /// Caller headers, in order (validated by the caller).
    pub headers: &'a [(HeaderName, HeaderValue)],
    /// Body; None sends no body and no `Content-Length`.
    pub body: Option<&'a [u8]>,
}

/// The headers attohttpc would send, in its order: caller headers, then `connection`,
/// `content-length`, `accept` and `user-agent` (the last two only when missing), `host`.
fn request_headers(req: &Request<'_>) -> io::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (n, v) in req.headers {
        map.append(n.clone(), v.clone());
    }
    map.insert(CONNECTION, HeaderValue::from_static("close"));
    if let Some(body) = req.body {
        map.insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
    }
    map.entry(ACCEPT).or_insert(HeaderValue::from_static("*/*"));
    map.entry(USER_AGENT)
        .or_insert(HeaderValue::from_static(DEFAULT_USER_AGENT));
    let host = req
        .url
        .host_str()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URL has no host"))?;
    let host = match req.url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let host = HeaderValue::from_str(&host).map_err(|e| invalid(&e.to_string()))?;
    map.insert(HOST, host);
    Ok(map)
}

/// Write the request, then read the response head; the body stays on the wire.
pub(crate) fn exchange(mut transport: Transport, req: &Request<'_>) -> io::Result<Response> {
    let headers = request_headers(req)?;
    {
        let mut w = io::BufWriter::new(&mut transport);
        match req.url.query() {
            Some(q) => write!(w, "{} {}?{} HTTP/1.1\r\n", req.method, req.url.path(), q)?,
            None => write!(w, "{} {} HTTP/1.1\r\n", req.method, req.url.path())?,
        }
        for (name, value) in headers.iter() {
            write!(w, "{}: ", name.as_str())?;
            w.write_all(value.as_bytes())?;
            w.write_all(b"\r\n")?;
        }
        w.write_all(b"\r\n")?;
        if let Some(body) = req.body {
            w.write_all(body)?;
        }
        w.flush()?;
    }
    let mut reader = BufReader::new(transport);
    let (status, mut headers) = read_head(&mut reader)?;
    let body = if is_chunked(&headers) {
        Body::Chunked(Chunked::new(reader))
    } else if let Some(len) = content_length(&headers)? {
        Body::Length(reader.take(len))
    } else {
        Body::Close(reader)
    };
    let charset = charset_of(&headers);
    headers.remove(TRANSFER_ENCODING);
    Ok(Response {
        status,
        headers,
        body: ResponseBody { body, charset },
    })
}

/// Read one line ending in `\n` (at most `max` bytes); the line ending is stripped.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: u64) -> io::Result<()> {
    buf.clear();
    let n = r.take(max).read_until(b'\n', buf)?;
    if n == 0 || buf.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "unexpected end of response head",
        ));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(())
}

fn trim_spaces(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = b {
        b = rest;
    }
    b
}

fn read_head<R: BufRead>(r: &mut R) -> io::Result<(StatusCode, HeaderMap)> {
    let mut line = Vec::new();
    read_line(r, &mut line, MAX_LINE)?;
    let mut parts = line.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let _version = parts.next().ok_or_else(|| invalid("invalid status line"))?;
    let code = parts.next().ok_or_else(|| invalid("invalid status line"))?;
    let status = StatusCode::from_bytes(code).map_err(|_| invalid("invalid status code"))?;
    let mut headers = HeaderMap::new();
    loop {
        read_line(r, &mut line, MAX_LINE)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(invalid("invalid header: too many headers"));
        }
        let colon = line
            .iter()
            .position(|&c| c == b':')
            .ok_or_else(|| invalid("invalid header"))?;
        let (name, value) = line.split_at(colon);
        let value = trim_spaces(value.get(1..).unwrap_or(&[]));
        let Ok(name) = HeaderName::from_bytes(trim_spaces(name)) else {
            log::warn!("dropped invalid response header");
            continue;
        };
        let value = HeaderValue::from_bytes(value).map_err(|_| invalid("invalid header"))?;
        headers.append(name, value);
    }
    Ok((status, headers))
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|s| s.trim().eq_ignore_ascii_case("chunked"))
        })
}

/// The `Content-Length`; repeated values must agree.
fn content_length(headers: &HeaderMap) -> io::Result<Option<u64>> {
    let mut last = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        let n = v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| invalid("invalid content length"))?;
        match last {
            Some(l) if l != n => return Err(invalid("invalid content length")),
            _ => last = Some(n),
        }
    }
    Ok(last)
}

/// The `charset` of `Content-Type`, UTF-8 when absent or unknown.
fn charset_of(headers: &HeaderMap) -> Charset {
    let Some(ct) = headers.get(CONTENT_TYPE) else {
        return charsets::UTF_8;
    };
    let bytes = ct.as_bytes();
    let Some(semi) = bytes.iter().position(|&b| b == b';') else {
        return charsets::UTF_8;
    };
    let rest = trim_spaces(bytes.get(semi.saturating_add(1)..).unwrap_or(&[]));
    match rest.strip_prefix(b"charset=") {
        // `Charset` is `&'static encoding_rs::Encoding`; its target type is not re-exported.
        Some(label) => {
            <<Charset as std::ops::Deref>::Target>::for_label(label).unwrap_or(charsets::UTF_8)
        }
        None => charsets::UTF_8,
    }
}

/// A chunked body decoder (trailers are read and discarded).
pub(crate) struct Chunked<R> {
    inner: R,
    remaining: u64,
    done: bool,
    line: Vec<u8>,
}

impl<R: BufRead> Chunked<R> {
    fn new(inner: R) -> Self {
        Chunked {
            inner,
            remaining: 0,
            done: false,
            line: Vec::new(),
        }
    }

    fn next_chunk(&mut self) -> io::Result<()> {
        read_line(&mut self.inner, &mut self.line, MAX_CHUNK_LINE)?;
        let size = self
            .line
            .split(|&b| b == b';')
            .next()
            .map(trim_spaces)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid("invalid chunk size"))?;
        if size == 0 {
            // Trailer section up to the empty line.
            loop {
                read_line(&mut self.inner, &mut self.line, MAX_LINE)?;
                if self.line.is_empty() {
                    break;
                }
            }
            self.done = true;
        }
        self.remaining = size;
        Ok(())
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.remaining == 0 && !self.done {
            self.next_chunk()?;
        }
        if self.done {
            return Ok(0);
        }
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let slice = buf.get_mut(..want).unwrap_or_default();
        let n = self.inner.read(slice)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected end of chunked body",
            ));
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        if self.remaining == 0 {
            read_line(&mut self.inner, &mut self.line, 2)?;
            if !self.line.is_empty() {
                return Err(invalid("invalid chunk"));
            }
        }
        Ok(n)
    }
}

/// The three body framings.
pub(crate) enum Body {
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked<BufReader<Transport>>),
    /// `Content-Length`.
    Length(Take<BufReader<Transport>>),
    /// Until the server closes.
    Close(BufReader<Transport>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Body::Chunked(r) => r.read(buf),
            Body::Length(r) => {
                // A server that closes before `Content-Length` bytes sent a truncated
                // body: an error, never a shorter success (tests/faults.rs,
                // `http_server_closing_mid_body_is_an_error`).
                let n = r.read(buf)?;
                if n == 0 && !buf.is_empty() && r.limit() > 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "connection closed with {} bytes of the body missing",
                            r.limit()
                        ),
                    ));
                }
                Ok(n)
            }
            Body::Close(r) => r.read(buf),
        }
    }
}

/// The unread body and its charset.
pub(crate) struct ResponseBody {
    body: Body,
    charset: Charset,
}

impl ResponseBody {
    /// The body decoded from its charset to UTF-8 bytes (lossy, as attohttpc).
    pub(crate) fn text_reader(self) -> TextReader<Body> {
        TextReader::new(self.body, self.charset)
    }
}

/// Status, headers (without `Transfer-Encoding`) and the unread body.
pub(crate) struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: ResponseBody,
}

impl Response {
    /// The status code.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Take the parts apart (as `attohttpc::Response::split`).
    pub(crate) fn split(self) -> (StatusCode, HeaderMap, ResponseBody) {
        (self.status, self.headers, self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        let raw = b"HTTP/1.1 201 Created\r\nX-A:  1 \r\nx-a: 2\r\nbad name: x\r\nContent-Type: text/plain; charset=windows-1252\r\n\r\nrest";
        let mut r = BufReader::new(&raw[..]);
        let (status, headers) = read_head(&mut r).unwrap();
        assert_eq!(status.as_u16(), 201);
        let a: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
        assert_eq!(headers.len(), 3);
        assert_eq!(charset_of(&headers), charsets::WINDOWS_1252);
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "rest");
        assert!(read_head(&mut BufReader::new(&b"HTTP/1.1\r\n\r\n"[..])).is_err());
        assert!(read_head(&mut BufReader::new(&b"HTTP/1.1 200 OK\r\n"[..])).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let raw = b"4\r\nwiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\n";
        let mut s = String::new();
        Chunked::new(BufReader::new(&raw[..]))
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "wikipedia");
        let mut s = String::new();
        assert!(Chunked::new(BufReader::new(&b"zz\r\n"[..]))
            .read_to_string(&mut s)
            .is_err());
        assert!(Chunked::new(BufReader::new(&b"5\r\nab"[..]))
            .read_to_string(&mut s)
            .is_err());
    }

    #[test]
    fn lengths_and_charsets() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h).unwrap(), None);
        h.append(CONTENT_LENGTH, HeaderValue::from_static("5"));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(content_length(&h).unwrap(), Some(5));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("6"));
        assert!(content_length(&h).is_err());
        let mut h = HeaderMap::new();
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("gzip, Chunked"));
        assert!(is_chunked(&h));
        assert_eq!(charset_of(&h), charsets::UTF_8);
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html;charset=nope"),
        );
        assert_eq!(charset_of(&h), charsets::UTF_8);
    }

    #[test]
    fn request_headers_follow_attohttpc_order() {
        let url = Url::parse("http://example.com:8080/p?q=1").unwrap();
        let caller = [(
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        )];
        let req = Request {
            method: "POST",
            url: &url,
            headers: &caller,
            body: Some(b"abc"),
        };
        let h = request_headers(&req).unwrap();
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-a",
                "connection",
                "content-length",
                "accept",
                "user-agent",
                "host"
            ]
        );
        assert_eq!(h[HOST], "example.com:8080");
        assert_eq!(h[CONTENT_LENGTH], "3");
    }

    #[test]
    fn tls_server_names() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            server_name(&u("https://Example.COM./")).unwrap(),
            ServerName::try_from("example.com").unwrap()
        );
        assert!(matches!(
            server_name(&u("https://127.0.0.1/")).unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name(&u("https://[::1]/")).unwrap(),
            ServerName::IpAddress(_)
        ));
    }
}
