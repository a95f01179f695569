//! `tark:http`: outbound HTTP through one shared client.
//!
//! Design notes (why it looks like this):
//! - Every request opens one connection (`Connection: close`, no pool). The connection
//!   is made by the egress rules (`src/host/net.rs`): the host resolves the name,
//!   refuses blocked networks (loopback, private, link-local, metadata, ...) unless the
//!   allowlist names the address, and connects to the address it checked. attohttpc
//!   cannot be given a socket or resolver, so the exchange itself is a small HTTP/1.1
//!   client with attohttpc's wire behaviour (`src/host/net/http1.rs`); attohttpc still
//!   provides the header types and charset decoding. The shared [`HttpClient`] holds the
//!   TLS settings; each request uses the per-plugin [`Limits`](crate::limits::Limits).
//! - Redirects are followed by hand (at most [`MAX_REDIRECTS`] hops) so that every hop is
//!   checked against the plugin's allowlist and the egress rules (`tests/host_net.rs`,
//!   `tests/egress.rs`). As reqwest does,
//!   301/302/303 turn a POST into a body-less GET, 307/308 keep method and body, and
//!   credentials (`Authorization`, `Cookie`, ...) are dropped when a hop changes host or port.
//! - The body is read through a bounded reader: at most `http_response_max + 1` bytes are
//!   ever buffered (README, "Limits and their defaults"). Text is decoded with the charset of `Content-Type`
//!   (UTF-8 when none is given, like reqwest), lossily; the limit applies to the decoded
//!   UTF-8 text, which is what reaches the guest.
//! - One deadline (`http_timeout`) covers the whole request including redirect hops and
//!   the body; `http_connect_timeout` bounds each connect.
//! - The legacy ABI answers with tark's JSON envelope ([`super::wire::http_envelope`]);
//!   `http_response_max` bounds that envelope as a whole ([`bounded_envelope`]), since
//!   headers and JSON escaping add to the body. The canonical ABI gets the bounded body.

use url::Url;

use super::{HostConfig, HostError, PluginContext};
// What only the native client uses.
#[cfg(feature = "sys")]
use {
    super::net::{self, http1},
    crate::limits::Limits,
    crate::policy::Policy,
    attohttpc::header::{HeaderName, HeaderValue},
    rustls::pki_types::CertificateDer,
    rustls::ClientConfig,
    std::io::Read,
    std::sync::Arc,
    std::time::{Duration, Instant},
};

/// The JS backend's client: requests go to the embedder's transport (`src/host/http_js.rs`).
#[cfg(not(feature = "sys"))]
#[path = "http_js.rs"]
mod js_client;
#[cfg(not(feature = "sys"))]
pub use js_client::{HttpClient, HttpTransport, TransportRequest};

/// Redirect hops followed before giving up (tark/reqwest: 10).
pub const MAX_REDIRECTS: u32 = 10;

/// Request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpMethod {
    /// GET.
    Get,
    /// POST.
    Post,
}

impl HttpMethod {
    fn upper(self) -> &'static str {
        match self {
            HttpMethod::Get => "GET",
            HttpMethod::Post => "POST",
        }
    }

    fn lower(self) -> &'static str {
        match self {
            HttpMethod::Get => "get",
            HttpMethod::Post => "post",
        }
    }
}

/// A response of any status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header pairs, lower-case names, repeated for multi-valued headers.
    pub headers: Vec<(String, String)>,
    /// Body text (charset-decoded, lossy).
    pub body: String,
}

/// Why no response came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The URL's host is not allowlisted (legacy: return code -2).
    #[error("host not allowed: {0}")]
    Denied(String),
    /// A redirect pointed at a host outside the allowlist.
    #[error("redirect to non-allowed host: {0}")]
    RedirectDenied(String),
    /// The host (or a redirect hop) resolves only to addresses in blocked networks
    /// (loopback, private, link-local, ...) that the allowlist does not name; the text
    /// says which address and how to allow it. Nothing was connected.
    #[error("address not allowed: {0}")]
    Blocked(String),
    /// The response body exceeded the limit.
    #[error("response too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// Bytes seen so far (at least limit + 1).
        size: usize,
        /// Limit.
        limit: usize,
    },
    /// The request timed out.
    #[error("timeout: {0}")]
    Timeout(String),
    /// DNS, connect, TLS, protocol or header errors.
    #[error("{0}")]
    Transport(String),
}

/// Parse the configured extra CA certificates (each entry PEM, possibly several
/// certificates). Shared with the WebSocket manager so both trust the same roots.
#[cfg(feature = "sys")]
pub(crate) fn parse_extra_cas(pems: &[Vec<u8>]) -> Result<Vec<CertificateDer<'static>>, HostError> {
    let mut out = Vec::new();
    for (i, pem) in pems.iter().enumerate() {
        let mut reader: &[u8] = pem;
        let mut found = 0usize;
        for cert in rustls_pemfile::certs(&mut reader) {
            let cert =
                cert.map_err(|e| HostError::Tls(format!("extra CA certificate #{i}: {e}")))?;
            out.push(cert);
            found = found.saturating_add(1);
        }
        if found == 0 {
            return Err(HostError::Tls(format!(
                "extra CA certificate #{i}: no PEM certificate found"
            )));
        }
    }
    // Reject certificates rustls cannot use now, rather than on every connection.
    let mut store = rustls::RootCertStore::empty();
    for cert in &out {
        store
            .add(cert.clone())
            .map_err(|e| HostError::Tls(format!("extra CA certificate: {e}")))?;
    }
    Ok(out)
}

/// The shared HTTP client.
#[cfg(feature = "sys")]
pub struct HttpClient {
    /// Extra trusted roots (on top of the webpki roots, always trusted); `tls` holds
    /// them, this copy is what the unit tests inspect.
    #[cfg_attr(not(test), allow(dead_code))]
    extra_roots: Arc<Vec<CertificateDer<'static>>>,
    /// rustls configuration with the webpki and the extra roots.
    tls: Arc<ClientConfig>,
}

#[cfg(feature = "sys")]
impl HttpClient {
    /// Build the client (TLS roots from the config; timeouts come per plugin from its limits).
    pub fn new(config: &HostConfig) -> Result<Self, HostError> {
        let extra_roots = parse_extra_cas(&config.extra_ca_pem)?;
        let tls = net::tls_config(&extra_roots)?;
        Ok(HttpClient {
            extra_roots: Arc::new(extra_roots),
            tls,
        })
    }

    /// Perform one request for a plugin: allowlist, every redirect hop re-checked,
    /// body bounded by `ctx.limits.http_response_max`. Any status is a response.
    pub fn request(
        &self,
        ctx: &PluginContext,
        method: HttpMethod,
        url: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<HttpResponse, HttpError> {
        let mut current = allowed_url(ctx, method, url)?;
        let mut headers = convert_headers(headers)?;
        let limits = &ctx.limits;
        let deadline = Instant::now().checked_add(limits.http_timeout);
        let mut method = method;
        let mut body = body;
        let mut hops = 0u32;

        loop {
            let resp = self
                .send_once(
                    &ctx.policy,
                    &current,
                    method,
                    &headers,
                    body,
                    deadline,
                    limits,
                )
                .inspect_err(|e| {
                    if let HttpError::Blocked(why) = e {
                        log::warn!(
                            "[plugin:{}] HTTP {} blocked - {why}",
                            ctx.plugin_id,
                            method.upper()
                        );
                    }
                })?;
            let status = resp.status().as_u16();
            let Some(next) = redirect_target(status, resp.headers(), &current) else {
                return read_response(ctx, method, resp, limits.http_response_max);
            };
            drop(resp);
            allowed_hop(ctx, method.upper(), &mut hops, &current, &next)?;
            log::debug!(
                "[plugin:{}] http redirect {status}: {current} -> {next}",
                ctx.plugin_id
            );
            if matches!(status, 301..=303) && method == HttpMethod::Post {
                method = HttpMethod::Get;
                body = None;
                headers.retain(|(n, _)| !is_body_header(n.as_str()));
            }
            if !same_origin(&current, &next) {
                headers.retain(|(n, _)| !is_sensitive_header(n.as_str()));
            }
            current = next;
        }
    }

    /// Send one request (no redirect following) within the overall deadline, over a
    /// connection to an address the egress rules checked.
    #[allow(clippy::too_many_arguments)]
    fn send_once(
        &self,
        policy: &Policy,
        url: &Url,
        method: HttpMethod,
        headers: &[(HeaderName, HeaderValue)],
        body: Option<&str>,
        deadline: Option<Instant>,
        limits: &Limits,
    ) -> Result<http1::Response, HttpError> {
        let remaining = match deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => limits.http_timeout,
        };
        if remaining.is_zero() {
            return Err(HttpError::Timeout(format!(
                "operation timed out after {:?} ({url})",
                limits.http_timeout
            )));
        }
        let connect = if limits.http_connect_timeout.is_zero() {
            remaining
        } else {
            limits.http_connect_timeout.min(remaining)
        };
        let io_deadline = Instant::now().checked_add(remaining.max(Duration::from_millis(1)));
        let (tcp, addr) = net::connect(policy, url, connect, io_deadline).map_err(|e| {
            let text = e.to_string();
            if e.is_blocked() {
                HttpError::Blocked(text)
            } else if e.is_timeout() {
                HttpError::Timeout(text)
            } else {
                HttpError::Transport(text)
            }
        })?;
        log::debug!("http: {url} connected to {addr}");
        let _ = tcp.set_nodelay(true);
        let io = |e: std::io::Error| classify_io(&e, format!("Io Error: {e}"));
        let stream = http1::DeadlineStream::new(tcp, io_deadline);
        let transport = http1::Transport::for_url(url, stream, &self.tls).map_err(io)?;
        let request = http1::Request {
            method: method.upper(),
            url,
            headers,
            body: body.map(str::as_bytes),
        };
        http1::exchange(transport, &request).map_err(io)
    }
}

/// tark's JSON answer to `tark:http` calls ([`super::wire::http_envelope`]), bounded by
/// `http_response_max` as a whole: a larger answer becomes
/// `{"error":"response too large: <size> bytes (limit <limit>)"}`.
pub fn bounded_envelope(ctx: &PluginContext, result: &Result<HttpResponse, HttpError>) -> String {
    let text = super::wire::http_envelope(result);
    let limit = ctx.limits.http_response_max;
    if text.len() > limit {
        log::warn!(
            "[plugin:{}] http answer refused: {} bytes over the limit of {limit}",
            ctx.plugin_id,
            text.len()
        );
        return super::wire::error_envelope(
            &HttpError::TooLarge {
                size: text.len(),
                limit,
            }
            .to_string(),
        );
    }
    text
}

/// Read status, headers and the bounded body of a final response.
#[cfg(feature = "sys")]
fn read_response(
    ctx: &PluginContext,
    method: HttpMethod,
    resp: http1::Response,
    limit: usize,
) -> Result<HttpResponse, HttpError> {
    let (status, header_map, reader) = resp.split();
    let headers: Vec<(String, String)> = header_map
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let declared = header_map
        .get(attohttpc::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());

    let cap = u64::try_from(limit.saturating_add(1)).unwrap_or(u64::MAX);
    let mut buf = Vec::new();
    reader
        .text_reader()
        .take(cap)
        .read_to_end(&mut buf)
        .map_err(|e| classify_io(&e, e.to_string()))?;
    if buf.len() > limit {
        let size = declared.unwrap_or(0).max(buf.len());
        log::warn!(
            "[plugin:{}] http.{}: response too large: {size} bytes (limit {limit})",
            ctx.plugin_id,
            method.lower()
        );
        return Err(HttpError::TooLarge { size, limit });
    }
    let body = match String::from_utf8(buf) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    Ok(HttpResponse {
        status: status.as_u16(),
        headers,
        body,
    })
}

/// Validate the plugin's header pairs. Invalid names or values fail the request (as
/// reqwest does at send time). `Content-Length` and `Transfer-Encoding` are dropped: the
/// client frames the body itself, and a forged length would desynchronise the connection.
#[cfg(feature = "sys")]
fn convert_headers(
    headers: &[(String, String)],
) -> Result<Vec<(HeaderName, HeaderValue)>, HttpError> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            HttpError::Transport(format!("builder error: invalid header name: {name:?}"))
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            HttpError::Transport(format!("builder error: invalid header value for {name:?}"))
        })?;
        if n == attohttpc::header::CONTENT_LENGTH || n == attohttpc::header::TRANSFER_ENCODING {
            continue;
        }
        out.push((n, v));
    }
    Ok(out)
}

/// The next URL when `status` is a followable redirect with a usable `Location`;
/// None means "this is the final response" (as reqwest returns a 3xx without Location).
#[cfg(feature = "sys")]
fn redirect_target(
    status: u16,
    headers: &attohttpc::header::HeaderMap,
    current: &Url,
) -> Option<Url> {
    if !is_redirect(status) {
        return None;
    }
    let location = headers.get(attohttpc::header::LOCATION)?;
    let location = String::from_utf8_lossy(location.as_bytes());
    current.join(location.trim()).ok()
}

/// The plugin's request URL when its allowlist allows it (a refusal is logged).
/// Both backends' clients start here.
fn allowed_url(ctx: &PluginContext, method: HttpMethod, url: &str) -> Result<Url, HttpError> {
    let Ok(current) = ctx.policy.check_http(url) else {
        log::warn!(
            "[plugin:{}] HTTP {} blocked - domain not in allowed list: {url}",
            ctx.plugin_id,
            method.upper()
        );
        return Err(HttpError::Denied(url.to_string()));
    };
    log::debug!("[plugin:{}] http.{}({url})", ctx.plugin_id, method.lower());
    Ok(current)
}

/// Count one more redirect hop (`current` to `next`, to be requested with `method`):
/// refused past [`MAX_REDIRECTS`] hops, or (logged) when the allowlist does not allow
/// `next`.
fn allowed_hop(
    ctx: &PluginContext,
    method: &str,
    hops: &mut u32,
    current: &Url,
    next: &Url,
) -> Result<(), HttpError> {
    *hops = hops.saturating_add(1);
    if *hops > MAX_REDIRECTS {
        return Err(HttpError::Transport(format!(
            "error following redirect for url ({current}): too many redirects"
        )));
    }
    if ctx.policy.check_http(next.as_str()).is_err() {
        let host = next
            .host_str()
            .map_or_else(|| next.to_string(), str::to_string);
        log::warn!(
            "[plugin:{}] HTTP {method} redirect blocked - host not in allowed list: {next} (from {current})",
            ctx.plugin_id
        );
        return Err(HttpError::RedirectDenied(host));
    }
    Ok(())
}

/// A redirect status the host follows (when it has a usable `Location`).
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Same scheme-independent origin (host and effective port): credentials may follow.
fn same_origin(a: &Url, b: &Url) -> bool {
    a.host_str() == b.host_str() && a.port_or_known_default() == b.port_or_known_default()
}

/// A credential header, dropped on a cross-origin hop.
fn is_sensitive_header(name: &str) -> bool {
    [
        "authorization",
        "cookie",
        "proxy-authorization",
        "www-authenticate",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// A header describing the body, dropped when a redirect turns a POST into a GET.
fn is_body_header(name: &str) -> bool {
    [
        "content-encoding",
        "content-length",
        "content-type",
        "transfer-encoding",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

#[cfg(feature = "sys")]
fn is_timeout_kind(kind: std::io::ErrorKind) -> bool {
    matches!(
        kind,
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    )
}

#[cfg(feature = "sys")]
fn classify_io(e: &std::io::Error, text: String) -> HttpError {
    if is_timeout_kind(e.kind()) {
        HttpError::Timeout(text)
    } else {
        HttpError::Transport(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn map(pairs: &[(&'static str, &str)]) -> attohttpc::header::HeaderMap {
        let mut m = attohttpc::header::HeaderMap::new();
        for (n, v) in pairs {
            m.append(*n, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn redirect_target_resolves_relative_and_absolute() {
        let cur = url("http://a.example:8080/x/y?q=1");
        let h = map(&[("location", "/other")]);
        assert_eq!(
            redirect_target(302, &h, &cur).unwrap().as_str(),
            "http://a.example:8080/other"
        );
        let h = map(&[("location", "z")]);
        assert_eq!(
            redirect_target(307, &h, &cur).unwrap().as_str(),
            "http://a.example:8080/x/z"
        );
        let h = map(&[("location", "https://b.example/p")]);
        assert_eq!(
            redirect_target(308, &h, &cur).unwrap().as_str(),
            "https://b.example/p"
        );
    }

    #[test]
    fn redirect_target_ignores_non_redirects_and_missing_location() {
        let cur = url("http://a.example/");
        let h = map(&[("location", "/other")]);
        assert!(redirect_target(200, &h, &cur).is_none());
        assert!(redirect_target(300, &h, &cur).is_none());
        assert!(redirect_target(304, &h, &cur).is_none());
        assert!(redirect_target(302, &map(&[]), &cur).is_none());
    }

    #[test]
    fn invalid_headers_are_transport_errors() {
        let bad_name = vec![("bad name".to_string(), "v".to_string())];
        assert!(matches!(
            convert_headers(&bad_name),
            Err(HttpError::Transport(_))
        ));
        let bad_value = vec![("x-ok".to_string(), "line\nbreak".to_string())];
        assert!(matches!(
            convert_headers(&bad_value),
            Err(HttpError::Transport(_))
        ));
        let ok = vec![
            ("X-A".to_string(), "1".to_string()),
            ("Content-Length".to_string(), "99".to_string()),
        ];
        let got = convert_headers(&ok).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0.as_str(), "x-a");
    }

    #[test]
    fn origin_and_header_classes() {
        assert!(same_origin(&url("http://a/x"), &url("http://a:80/y")));
        assert!(!same_origin(&url("http://a/x"), &url("http://a:81/y")));
        assert!(!same_origin(&url("http://a/x"), &url("http://b/x")));
        assert!(is_sensitive_header("authorization"));
        assert!(is_sensitive_header(
            HeaderName::from_static("cookie").as_str()
        ));
        assert!(!is_sensitive_header("x-api-key"));
        assert!(is_body_header("Content-Type"));
        assert!(!is_body_header("accept"));
    }

    #[test]
    fn timeouts_are_classified() {
        let e = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert!(matches!(
            classify_io(&e, e.to_string()),
            HttpError::Timeout(_)
        ));
        let e = std::io::Error::from(std::io::ErrorKind::WouldBlock);
        assert!(matches!(
            classify_io(&e, e.to_string()),
            HttpError::Timeout(_)
        ));
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(matches!(
            classify_io(&e, e.to_string()),
            HttpError::Transport(_)
        ));
    }

    #[test]
    fn extra_ca_parsing() {
        assert!(parse_extra_cas(&[]).unwrap().is_empty());
        assert!(matches!(
            parse_extra_cas(&[b"not a pem".to_vec()]),
            Err(HostError::Tls(_))
        ));
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let two = format!("{}\n{}", ca.cert.pem(), ca.cert.pem());
        assert_eq!(parse_extra_cas(&[two.into_bytes()]).unwrap().len(), 2);
    }

    #[test]
    fn client_builds_with_and_without_extra_roots() {
        let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let config = HostConfig {
            extra_ca_pem: vec![ca.cert.pem().into_bytes()],
            ..HostConfig::default()
        };
        let client = HttpClient::new(&config).unwrap();
        assert_eq!(client.extra_roots.len(), 1);
        assert!(HttpClient::new(&HostConfig::default()).is_ok());
    }
}
