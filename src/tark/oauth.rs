//! tark's plugin OAuth flow (`tark plugin auth`, `tark auth <provider>`): authorization
//! code with PKCE through the user's browser and a callback listener on the manifest's
//! `redirect_uri`, token exchange, the plugin's optional `auth_process_tokens`, then the
//! credentials file. tark runs this in its own `auth::OAuthHandler`, which the face
//! cannot call (tark depends on us, not the reverse), so the flow is written here with
//! the same requests, texts and file format. Differences, all on the safe side: the
//! callback's `state` is checked when `use_state` is on (tark sends it but never checks
//! it), an `error` callback ends the flow at once instead of waiting for the timeout,
//! the token request follows no redirect, and the credentials file is created with mode
//! 0600 rather than narrowed after writing.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{InstalledPlugin, OAuthConfig, OAuthFlowType, PluginHost};

/// How long the callback listener waits for the browser (tark: 120 s).
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Per-connection read limit on the callback listener.
const CALLBACK_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest callback request head read.
const CALLBACK_MAX_HEAD: usize = 16 * 1024;
/// Token request timeout (tark's reqwest client has none; a stalled server would hang).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the flow stored the credentials and what it stored.
#[derive(Debug)]
pub struct PluginOAuthResult {
    /// The credentials file.
    pub creds_path: PathBuf,
    /// Its content: the token response JSON (pretty, with `expires_at`), or what the
    /// plugin's `auth_process_tokens` returned.
    pub tokens_json: String,
}

/// tark's `TokenResponse`: field order and nulls are what lands in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// Run the PKCE flow for `plugin` with `oauth_config` (tark may have changed
/// `credentials_path` or `client_id` from the manifest's), opening the user's browser.
pub async fn run_oauth_flow_for_plugin(
    plugin: &InstalledPlugin,
    oauth_config: &OAuthConfig,
) -> Result<PluginOAuthResult> {
    run_oauth_flow_with_browser(plugin, oauth_config, open_browser).await
}

/// [`run_oauth_flow_for_plugin`] with another way to send the user to the
/// authorization URL (not in tark: a GUI, or a test playing the user).
pub async fn run_oauth_flow_with_browser<B>(
    plugin: &InstalledPlugin,
    oauth_config: &OAuthConfig,
    browser: B,
) -> Result<PluginOAuthResult>
where
    B: FnOnce(&str) + Send + 'static,
{
    if oauth_config.flow != OAuthFlowType::Pkce {
        bail!("Only PKCE OAuth flow is supported for plugins right now");
    }
    oauth_config.check_resolved()?;
    let config = oauth_config.clone();
    let tokens = blocking(move || pkce_flow(&config, browser)).await?;
    let plugin = plugin.clone();
    let config = oauth_config.clone();
    blocking(move || store_tokens(&plugin, &config, &tokens)).await
}

/// Run blocking work off the async executor when there is one.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle
            .spawn_blocking(f)
            .await
            .map_err(|e| anyhow!("OAuth task failed: {e}"))?,
        Err(_) => f(),
    }
}

fn pkce_flow<B: FnOnce(&str)>(config: &OAuthConfig, browser: B) -> Result<TokenResponse> {
    let verifier = random_alphanumeric(128)?;
    let challenge = base64url(&Sha256::digest(verifier.as_bytes()));
    let state = if config.use_state {
        Some(base64url(&random_bytes(32)?))
    } else {
        None
    };
    let auth_url = authorization_url(config, &challenge, state.as_deref());
    let (port, path) = callback_address(&config.redirect_uri)?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("Failed to bind OAuth callback server to 127.0.0.1:{port}"))?;
    listener.set_nonblocking(true)?;
    browser(&auth_url);
    let code = wait_for_code(&listener, &path, state.as_deref())?;
    exchange_code(config, &code, &verifier)
}

/// tark's authorization URL: its parameters in its order, then `extra_params`.
fn authorization_url(config: &OAuthConfig, challenge: &str, state: Option<&str>) -> String {
    let scope = config.scopes.join(" ");
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &config.client_id),
        ("redirect_uri", &config.redirect_uri),
        ("scope", &scope),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(s) = state {
        params.push(("state", s));
    }
    let mut query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    for (k, v) in &config.extra_params {
        query.push(format!("{k}={}", percent_encode(v)));
    }
    format!("{}?{}", config.auth_url, query.join("&"))
}

/// Port and path of the callback listener, from `redirect_uri` (the port must be
/// explicit; no path means tark's `/callback`).
fn callback_address(redirect_uri: &str) -> Result<(u16, String)> {
    let no_port = || anyhow!("Could not extract port from redirect_uri: {redirect_uri}");
    let url = url::Url::parse(redirect_uri).map_err(|_| no_port())?;
    let port = url.port().ok_or_else(no_port)?;
    let has_path = redirect_uri
        .split_once("://")
        .is_some_and(|(_, rest)| rest.contains('/'));
    let path = if has_path {
        url.path().to_string()
    } else {
        "/callback".to_string()
    };
    Ok((port, path))
}

fn wait_for_code(listener: &TcpListener, path: &str, state: Option<&str>) -> Result<String> {
    let deadline = Instant::now() + CALLBACK_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if let Some(code) = handle_callback(stream, path, state)? {
                    return Ok(code);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    bail!(
                        "Authentication timeout - no response after {} seconds. Please try again.",
                        CALLBACK_TIMEOUT.as_secs()
                    );
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            Err(e) => return Err(e).context("OAuth callback server failed"),
        }
    }
}

/// Answer one request on the callback listener: `Some(code)` when it carried the
/// authorization code (and the right `state`), an error when it carried `error`.
fn handle_callback(
    mut stream: TcpStream,
    path: &str,
    state: Option<&str>,
) -> Result<Option<String>> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(CALLBACK_READ_TIMEOUT))?;
    let Some(target) = read_request_target(&mut stream) else {
        respond(&mut stream, "400 Bad Request", "<h1>Bad request</h1>");
        return Ok(None);
    };
    let (req_path, query) = target.split_once('?').unwrap_or((&target, ""));
    if req_path != path {
        respond(&mut stream, "404 Not Found", "<h1>Not found</h1>");
        return Ok(None);
    }
    let mut code = None;
    let mut error = None;
    let mut got_state = None;
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "code" => code = Some(v.into_owned()),
            "error" => error = Some(v.into_owned()),
            "state" => got_state = Some(v.into_owned()),
            _ => {}
        }
    }
    if let Some(expected) = state {
        if got_state.as_deref() != Some(expected) {
            log::warn!("OAuth callback with a wrong or missing state ignored");
            respond(
                &mut stream,
                "400 Bad Request",
                "<h1>Authentication failed</h1><p>Error: state mismatch</p>",
            );
            return Ok(None);
        }
    }
    match (code, error) {
        (Some(code), _) => {
            respond(
                &mut stream,
                "200 OK",
                "<h1>Authentication successful!</h1><p>You can close this window and return to the terminal.</p>",
            );
            Ok(Some(code))
        }
        (None, error) => {
            let error = error.unwrap_or_else(|| "unknown".to_string());
            respond(
                &mut stream,
                "200 OK",
                &format!(
                    "<h1>Authentication failed</h1><p>Error: {}</p><p>Please close this window and try again.</p>",
                    html_escape(&error)
                ),
            );
            bail!("OAuth authorization failed: {error}")
        }
    }
}

/// The request target of a `GET` request head, if well formed.
fn read_request_target(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < CALLBACK_MAX_HEAD {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(buf.get(..n)?),
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next()?.split_whitespace();
    match (parts.next(), parts.next()) {
        (Some("GET"), Some(target)) => Some(target.to_string()),
        _ => None,
    }
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

fn exchange_code(config: &OAuthConfig, code: &str, verifier: &str) -> Result<TokenResponse> {
    println!("Exchanging authorization code for tokens...");
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    form.append_pair("client_id", &config.client_id)
        .append_pair("grant_type", "authorization_code")
        .append_pair("code", code)
        .append_pair("redirect_uri", &config.redirect_uri)
        .append_pair("code_verifier", verifier);
    if let Some(secret) = &config.client_secret {
        form.append_pair("client_secret", secret);
    }
    let response = attohttpc::post(&config.token_url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Accept", "application/json")
        .follow_redirects(false)
        .timeout(TOKEN_TIMEOUT)
        .text(form.finish())
        .send()
        .context("Failed to send token request")?;
    let status = response.status();
    let body = response.text().unwrap_or_default();
    if !status.is_success() {
        bail!("Token request failed ({status}): {body}");
    }
    serde_json::from_str(&body).context("Failed to parse token response")
}

/// Post-process (plugin's `auth_process_tokens` when the manifest names a callback, else
/// `expires_at` added) and write the credentials file.
fn store_tokens(
    plugin: &InstalledPlugin,
    config: &OAuthConfig,
    tokens: &TokenResponse,
) -> Result<PluginOAuthResult> {
    let tokens_json = if config.process_tokens_callback.is_some() {
        let raw = serde_json::to_string(tokens)?;
        let mut host = PluginHost::new()?;
        host.load(plugin)?;
        match host.get_mut(plugin.id()) {
            Some(instance) => instance.auth_process_tokens(&raw)?.unwrap_or(raw),
            None => raw,
        }
    } else {
        let mut value = serde_json::to_value(tokens)?;
        if let Some(expires_in) = tokens.expires_in {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            value["expires_at"] = serde_json::json!(now.saturating_add(expires_in));
        }
        serde_json::to_string_pretty(&value)?
    };
    let creds_path = match &config.credentials_path {
        Some(p) => expand_home(p),
        None => dirs::config_dir()
            .context("Could not determine config directory")?
            .join("tark")
            .join(format!("{}_oauth.json", plugin.id())),
    };
    if let Some(parent) = creds_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    write_private(&creds_path, tokens_json.as_bytes())?;
    Ok(PluginOAuthResult {
        creds_path,
        tokens_json,
    })
}

/// Write a file readable by its owner only.
fn write_private(path: &std::path::Path, data: &[u8]) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options
            .open(path)
            .with_context(|| format!("Failed to write credentials to {}", path.display()))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(data)?;
    }
    #[cfg(not(unix))]
    {
        let mut file = options
            .open(path)
            .with_context(|| format!("Failed to write credentials to {}", path.display()))?;
        file.write_all(data)?;
    }
    Ok(())
}

/// `~` and `~/x` relative to the home directory (tark's rule).
fn expand_home(path: &str) -> PathBuf {
    let home = dirs::home_dir();
    match (path.strip_prefix("~/"), path == "~", home) {
        (Some(rest), _, Some(home)) => home.join(rest),
        (None, true, Some(home)) => home,
        _ => PathBuf::from(path),
    }
}

/// Print the URL (tark's text) and try the platform's opener.
fn open_browser(url: &str) {
    println!("Opening browser for authentication...");
    println!();
    println!("If the browser doesn't open automatically, visit:");
    println!("{url}");
    println!();
    let mut cmd = if cfg!(target_os = "macos") {
        std::process::Command::new("open")
    } else if cfg!(windows) {
        let mut c = std::process::Command::new("rundll32");
        c.arg("url.dll,FileProtocolHandler");
        c
    } else {
        std::process::Command::new("xdg-open")
    };
    cmd.arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    match cmd.spawn() {
        Ok(mut child) => {
            std::thread::spawn(move || {
                let _ = child.wait();
            });
        }
        Err(e) => {
            log::warn!("Failed to open browser: {e}");
            println!("⚠️  Could not open browser automatically. Please visit the URL above.");
        }
    }
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut buf)
        .map_err(|_| anyhow!("No secure random source available"))?;
    Ok(buf)
}

/// `n` characters of `[A-Za-z0-9]`, uniformly (bytes >= 248 are redrawn).
fn random_alphanumeric(n: usize) -> Result<String> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        for b in random_bytes(n)? {
            if out.len() == n {
                break;
            }
            if b < 248 {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    Ok(out)
}

/// Base64url without padding (RFC 7636's encoding of the challenge).
fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

/// Percent-encode everything but RFC 3986 unreserved characters (tark's `urlencoding`).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn pkce_challenge_matches_rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert_eq!(
            base64url(&Sha256::digest(verifier.as_bytes())),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifier_is_128_alphanumerics() {
        let v = random_alphanumeric(128).expect("random");
        assert_eq!(v.len(), 128);
        assert!(v.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(v, random_alphanumeric(128).expect("random"));
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved() {
        assert_eq!(
            percent_encode("a b/c?d=e&f~g.h-i_j"),
            "a%20b%2Fc%3Fd%3De%26f~g.h-i_j"
        );
    }

    #[test]
    fn callback_address_rules() {
        assert_eq!(
            callback_address("http://localhost:1455/auth/callback").expect("ok"),
            (1455, "/auth/callback".to_string())
        );
        assert_eq!(
            callback_address("http://127.0.0.1:8080").expect("ok"),
            (8080, "/callback".to_string())
        );
        let e = callback_address("http://localhost/cb").expect_err("no port");
        assert_eq!(
            e.to_string(),
            "Could not extract port from redirect_uri: http://localhost/cb"
        );
    }
}
