//! `tark:http` in the JS backend: a wasm32 host cannot open sockets, so each request is
//! handed to the embedder's [`HttpTransport`] (in `src/js.rs`, a synchronous JavaScript
//! callback). The host keeps the rules it can keep: the plugin's allowlist (`policy`)
//! for the URL and every redirect hop, redirects followed here (the transport must not
//! follow them) with the native method/credential rules, and the response bound
//! `http_response_max`. What it cannot keep: the egress rules on resolved addresses
//! (blocked networks) and the connect/overall timeouts, since the host resolves and
//! connects nothing; those belong to the transport (README "Platforms"). Without a
//! transport every request fails with a clear error.

use std::sync::{Arc, Mutex};

use super::{
    allowed_hop, allowed_url, is_body_header, is_redirect, is_sensitive_header, same_origin,
    HostConfig, HostError, HttpError, HttpMethod, HttpResponse, PluginContext,
};

/// One request as the transport receives it (one hop: no redirect following).
#[derive(Debug, Clone)]
pub struct TransportRequest {
    /// `GET` or `POST`.
    pub method: &'static str,
    /// The URL the policy allowed.
    pub url: String,
    /// Header pairs as the plugin gave them (credentials dropped on a cross-origin hop).
    pub headers: Vec<(String, String)>,
    /// The body (POST only).
    pub body: Option<String>,
    /// Most body bytes the host will accept (the transport may stop reading after this).
    pub max_body: usize,
}

/// Performs one HTTP exchange for the host, synchronously; errors are its text.
pub type HttpTransport =
    Arc<dyn Fn(&TransportRequest) -> Result<HttpResponse, String> + Send + Sync>;

/// The shared HTTP client of the JS backend: the embedder's transport, if any.
pub struct HttpClient {
    transport: Mutex<Option<HttpTransport>>,
}

impl HttpClient {
    /// A client without a transport (requests fail until one is set).
    pub fn new(_config: &HostConfig) -> Result<Self, HostError> {
        Ok(HttpClient {
            transport: Mutex::new(None),
        })
    }

    /// Set (or remove) the transport every later request uses.
    pub fn set_transport(&self, transport: Option<HttpTransport>) {
        *self.transport.lock().unwrap_or_else(|p| p.into_inner()) = transport;
    }

    /// Perform one request for a plugin through the embedder's transport, one hop at a
    /// time: allowlist and redirect rules as native, body bounded by
    /// `ctx.limits.http_response_max`. Any status is a response.
    pub fn request(
        &self,
        ctx: &PluginContext,
        method: HttpMethod,
        url: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<HttpResponse, HttpError> {
        let mut current = allowed_url(ctx, method, url)?;
        let transport = self
            .transport
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                HttpError::Transport(
                    "HTTP is not available: the JS backend has no network of its own and the \
                     embedder set no HTTP transport (JsHost.setHttpTransport)"
                        .to_string(),
                )
            })?;
        let max = ctx.limits.http_response_max;
        let mut request = TransportRequest {
            method: method.upper(),
            url: current.to_string(),
            headers: headers.to_vec(),
            body: body.map(str::to_string),
            max_body: max,
        };
        let mut hops = 0u32;
        loop {
            let resp = transport(&request).map_err(HttpError::Transport)?;
            let location = resp
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("location"))
                .and_then(|(_, v)| current.join(v.trim()).ok());
            let next = match location {
                Some(next) if is_redirect(resp.status) => next,
                _ => {
                    if resp.body.len() > max {
                        return Err(HttpError::TooLarge {
                            size: resp.body.len(),
                            limit: max,
                        });
                    }
                    return Ok(resp);
                }
            };
            allowed_hop(ctx, request.method, &mut hops, &current, &next)?;
            if matches!(resp.status, 301..=303) && request.method == "POST" {
                request.method = "GET";
                request.body = None;
                request.headers.retain(|(n, _)| !is_body_header(n));
            }
            if !same_origin(&current, &next) {
                request.headers.retain(|(n, _)| !is_sensitive_header(n));
            }
            request.url = next.to_string();
            current = next;
        }
    }
}
