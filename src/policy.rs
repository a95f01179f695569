//! Every capability decision in one place: HTTP/WebSocket hosts, environment names,
//! file paths. Host services ask the policy; nothing else decides access.
//!
//! # Host rule (`tark:http.*`, `tark:ws.connect`; legacy spec 6.3 item 11)
//!
//! An allowlist entry matches a host when (a) host == entry, (b) host ends with
//! `"." + entry` (tark's implicit-subdomain rule), or (c) the entry is `*.suffix` and the
//! host is `suffix` or ends with `".suffix"`. Hosts and entries are normalised the way
//! the `url` crate normalises URL hosts (ASCII lower-case, IDNA to punycode), and one
//! trailing dot is ignored (`example.com.` is the same DNS name). An empty list denies
//! everything. Deliberate exceptions, all safer than tark and none relevant to real
//! plugins:
//! - IP literals match only an entry that is the same address (parsed, so `::1`,
//!   `[::1]` and `[0:0::1]` are one entry); dot-suffix matching never applies to or
//!   from IP literals (tark would let an entry `0.0.1` allow `1.0.0.1`).
//!   IPv6 entries may be written with or without brackets.
//! - Entries that are not host names (`https://x`, `x:443`, empty, `*`, `*.`) match
//!   nothing; a warning names them when the policy is built.
//! - `localhost` is an ordinary name: allowed only when listed.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::manifest::PluginCapabilities;

/// How many distinct plaintext-HTTP hosts we remember per plugin for the one-time warning.
const PLAINTEXT_WARN_MEMORY: usize = 256;

/// Host-wide settings that shape capability decisions.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    /// Base directory for relative `fs_read` entries and requested paths (tark: the
    /// workspace root, which is its current directory). A relative value (including the
    /// empty default) is taken relative to the process's current directory when the
    /// policy is built.
    pub workspace_root: PathBuf,
    /// Home directory for `~` expansion (None: `~` paths never match).
    pub home_dir: Option<PathBuf>,
    /// Refuse plaintext `http://` for `tark:http` (off by default, as in tark).
    pub strict_https: bool,
}

/// Why a capability check refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The URL does not parse or has no host.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
    /// The scheme is not allowed for this kind of request.
    #[error("scheme not allowed: {0}")]
    Scheme(String),
    /// The host is not on the plugin's allowlist.
    #[error("host not allowed: {0}")]
    Host(String),
    /// The environment variable is not on the allowlist.
    #[error("environment variable not allowed: {0}")]
    Env(String),
    /// The path is not on the `fs_read` allowlist (or escapes it).
    #[error("path not allowed: {0}")]
    Path(String),
}

/// A normalised host, as compared by the host rule.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NormHost {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A domain name: lower-case ASCII (punycode), no trailing dot.
    Name(String),
}

/// One compiled `http` allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostEntry {
    /// Exactly this address.
    Ip(IpAddr),
    /// This name and (tark's rule) every subdomain.
    Name(String),
    /// `*.suffix`: the suffix itself and every subdomain.
    Wildcard(String),
    /// Not a host name: matches nothing.
    Never,
}

impl HostEntry {
    fn compile(entry: &str) -> HostEntry {
        let entry = entry.trim();
        if let Some(suffix) = entry.strip_prefix("*.") {
            return match normalize_host(suffix) {
                Some(NormHost::Name(n)) => HostEntry::Wildcard(n),
                _ => HostEntry::Never,
            };
        }
        match normalize_host(entry) {
            Some(NormHost::Ip(ip)) => HostEntry::Ip(ip),
            Some(NormHost::Name(n)) => HostEntry::Name(n),
            None => HostEntry::Never,
        }
    }

    fn matches(&self, host: &NormHost) -> bool {
        match (self, host) {
            (HostEntry::Ip(e), NormHost::Ip(h)) => e == h,
            (HostEntry::Name(e), NormHost::Name(h))
            | (HostEntry::Wildcard(e), NormHost::Name(h)) => is_same_or_subdomain(h, e),
            _ => false,
        }
    }
}

/// `host == suffix` or `host` ends with `"." + suffix`, without allocating.
fn is_same_or_subdomain(host: &str, suffix: &str) -> bool {
    if host == suffix {
        return true;
    }
    match host.strip_suffix(suffix) {
        Some(rest) => rest.ends_with('.'),
        None => false,
    }
}

/// Normalise a host or an allowlist entry: brackets optional for IPv6, IP literals
/// parsed, names lower-cased and IDNA-mapped like URL hosts, one trailing dot dropped.
/// None when it is not a host (empty, contains `/`, `:`, `*`, spaces, ...).
fn normalize_host(raw: &str) -> Option<NormHost> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let unbracketed = raw
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(raw);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(NormHost::Ip(ip));
    }
    if raw.contains('%') {
        // No percent-decoding games: an escaped host is not an allowlist host.
        return None;
    }
    let without_dot = raw.strip_suffix('.').unwrap_or(raw);
    match url::Host::parse(without_dot) {
        Ok(url::Host::Domain(d)) => {
            if d.is_empty() || d.ends_with('.') || d.contains('*') {
                None
            } else {
                Some(NormHost::Name(d))
            }
        }
        Ok(url::Host::Ipv4(ip)) => Some(NormHost::Ip(IpAddr::V4(ip))),
        Ok(url::Host::Ipv6(ip)) => Some(NormHost::Ip(IpAddr::V6(ip))),
        Err(_) => None,
    }
}

/// A plugin's capabilities, compiled for fast checks.
#[derive(Debug, Clone)]
pub struct Policy {
    plugin_id: String,
    http: Vec<HostEntry>,
    env: Vec<String>,
    fs_read: Vec<String>,
    workspace_root: PathBuf,
    home_dir: Option<PathBuf>,
    strict_https: bool,
    plaintext_warned: Arc<Mutex<HashSet<String>>>,
}

impl Policy {
    /// Build the policy of one plugin.
    pub fn new(plugin_id: &str, caps: &PluginCapabilities, config: &PolicyConfig) -> Self {
        let http = caps
            .http
            .iter()
            .map(|e| {
                let compiled = HostEntry::compile(e);
                if compiled == HostEntry::Never {
                    log::warn!(
                        "[plugin:{plugin_id}] http allowlist entry {e:?} is not a host name (or `*.` + host name); it matches nothing"
                    );
                }
                compiled
            })
            .collect();
        let workspace_root = if config.workspace_root.is_absolute() {
            normalize_lexically(&config.workspace_root)
        } else {
            match std::env::current_dir() {
                Ok(cwd) => normalize_lexically(&cwd.join(&config.workspace_root)),
                Err(_) => normalize_lexically(&Path::new("/").join(&config.workspace_root)),
            }
        };
        Policy {
            plugin_id: plugin_id.to_string(),
            http,
            env: caps.env.clone(),
            fs_read: caps.fs_read.clone(),
            workspace_root,
            home_dir: config.home_dir.clone(),
            strict_https: config.strict_https,
            plaintext_warned: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// Check an outbound `tark:http` URL: scheme http/https, host on the allowlist.
    /// Plaintext `http://` is refused in strict mode and otherwise warned about once
    /// per host.
    pub fn check_http(&self, url: &str) -> Result<url::Url, Denied> {
        let parsed = url::Url::parse(url).map_err(|e| Denied::InvalidUrl(format!("{url}: {e}")))?;
        let scheme = parsed.scheme();
        if scheme != "http" && scheme != "https" {
            return Err(Denied::Scheme(scheme.to_string()));
        }
        if scheme == "http" && self.strict_https {
            return Err(Denied::Scheme(scheme.to_string()));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| Denied::InvalidUrl(format!("{url}: no host")))?;
        if !self.host_allowed(host) {
            return Err(Denied::Host(host.to_string()));
        }
        if scheme == "http" {
            self.warn_plaintext(host);
        }
        Ok(parsed)
    }

    fn warn_plaintext(&self, host: &str) {
        let first = match self.plaintext_warned.lock() {
            Ok(mut seen) => {
                if seen.contains(host) || seen.len() >= PLAINTEXT_WARN_MEMORY {
                    false
                } else {
                    seen.insert(host.to_string())
                }
            }
            Err(_) => false,
        };
        if first {
            log::warn!(
                "[plugin:{}] plaintext http:// request to {host} (not encrypted; consider https)",
                self.plugin_id
            );
        }
    }

    /// Check one host name (used for redirect hops). Accepts a URL host as printed by
    /// the `url` crate (IPv6 in brackets) or a bare host/IP.
    pub fn host_allowed(&self, host: &str) -> bool {
        match normalize_host(host) {
            Some(h) => self.http.iter().any(|e| e.matches(&h)),
            None => false,
        }
    }

    /// Check a `tark:ws.connect` URL's host against the allowlist (the scheme rule,
    /// `wss` only, is applied by the WebSocket service with tark's error text; here any
    /// scheme other than `ws`/`wss` is refused).
    pub fn check_ws(&self, url: &str) -> Result<url::Url, Denied> {
        let parsed = url::Url::parse(url).map_err(|e| Denied::InvalidUrl(format!("{url}: {e}")))?;
        let scheme = parsed.scheme();
        if scheme != "ws" && scheme != "wss" {
            return Err(Denied::Scheme(scheme.to_string()));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| Denied::InvalidUrl(format!("{url}: no host")))?;
        if !self.host_allowed(host) {
            return Err(Denied::Host(host.to_string()));
        }
        Ok(parsed)
    }

    /// May the plugin read this environment variable? Exact name, the literal `*`, or
    /// an entry ending in `*` as a prefix (`FOO_*`). Denials are logged with tark's text.
    pub fn env_allowed(&self, name: &str) -> bool {
        let allowed = self.env.iter().any(|e| {
            e == name
                || match e.strip_suffix('*') {
                    Some(prefix) => name.starts_with(prefix),
                    None => false,
                }
        });
        if !allowed {
            log::warn!(
                "[plugin:{}] env.get blocked - {name} not in allowed list",
                self.plugin_id
            );
        }
        allowed
    }

    /// Resolve and open a requested path for reading, or refuse it. The returned file
    /// is the very file that was checked (no check-then-use race).
    pub fn fs_open(&self, _requested: &str) -> Result<(std::fs::File, PathBuf), FsOpenError> {
        let _ = (&self.fs_read, &self.home_dir);
        todo!("policy fs")
    }
}

/// Outcome of [`Policy::fs_open`] when no file is returned.
#[derive(Debug, thiserror::Error)]
pub enum FsOpenError {
    /// The path is not allowed.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The path is allowed but could not be opened.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Resolve `.` and `..` without touching the file system (`..` never goes above the root).
fn normalize_lexically(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Prefix(_) | Component::RootDir | Component::Normal(_) => out.push(c),
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                // `/..` is `/`.
                Some(Component::RootDir) | Some(Component::Prefix(_)) => {}
                // A relative path going above its start keeps its `..` (callers make
                // paths absolute first, so this only happens for odd inputs).
                _ => out.push(c),
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps_http(hosts: &[&str]) -> PluginCapabilities {
        PluginCapabilities {
            http: hosts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn http_policy(hosts: &[&str]) -> Policy {
        Policy::new("t", &caps_http(hosts), &PolicyConfig::default())
    }

    #[test]
    fn tark_http_domain_check_stays_allowed() {
        // tark's test_http_domain_check.
        let p = http_policy(&["api.example.com"]);
        assert!(p.check_http("https://api.example.com/v1").is_ok());
        assert!(p.check_http("https://sub.api.example.com/v1").is_ok());
        assert_eq!(
            p.check_http("https://example.com/").unwrap_err(),
            Denied::Host("example.com".into())
        );
        assert!(p.check_http("https://evil-api.example.com/").is_err());
        assert!(p.check_http("https://api.example.com.evil.net/").is_err());
        assert!(p.check_http("https://notapi.example.com/").is_err());
    }

    #[test]
    fn plain_entry_allows_subdomains_ports_and_http() {
        let p = http_policy(&["example.com"]);
        assert!(p.check_http("http://example.com:8080/x").is_ok());
        assert!(p.check_http("https://cdn.example.com/").is_ok());
        assert!(p.check_http("https://a.b.example.com/").is_ok());
        assert!(p.check_http("https://notexample.com/").is_err());
        assert!(p.check_http("https://example.com.evil/").is_err());
    }

    #[test]
    fn wildcard_entries() {
        let p = http_policy(&["*.example.com"]);
        assert!(p.host_allowed("example.com"));
        assert!(p.host_allowed("x.example.com"));
        assert!(p.host_allowed("y.x.example.com"));
        assert!(!p.host_allowed("badexample.com"));
        assert!(!p.host_allowed("example.org"));
        // `*` alone and `*.` are not host patterns.
        let p = http_policy(&["*", "*.", ""]);
        assert!(!p.host_allowed("example.com"));
        assert!(!p.host_allowed("a"));
    }

    #[test]
    fn case_insensitive_and_trailing_dot() {
        let p = http_policy(&["API.Example.COM"]);
        assert!(p.check_http("https://api.example.com/").is_ok());
        assert!(p.check_http("https://API.EXAMPLE.COM/").is_ok());
        assert!(p.host_allowed("Sub.Api.Example.Com"));
        assert!(p.host_allowed("api.example.com."));
        let p = http_policy(&["*.EXAMPLE.org"]);
        assert!(p.host_allowed("a.example.ORG"));
    }

    #[test]
    fn empty_list_denies_all() {
        let p = http_policy(&[]);
        assert!(p.check_http("https://example.com/").is_err());
        assert!(!p.host_allowed("localhost"));
        assert!(p.check_ws("wss://example.com/").is_err());
    }

    #[test]
    fn ip_literals_and_localhost() {
        let p = http_policy(&["example.com"]);
        assert!(p.check_http("http://127.0.0.1/").is_err());
        assert!(p.check_http("http://localhost/").is_err());
        assert!(p.check_http("http://[::1]/").is_err());

        let p = http_policy(&["127.0.0.1", "localhost"]);
        assert!(p.check_http("http://127.0.0.1:9000/").is_ok());
        assert!(p.check_http("http://localhost:9000/").is_ok());
        // The url crate normalises odd IPv4 spellings before we compare.
        assert!(p.check_http("http://0x7f.0.0.1/").is_ok());
        assert!(p.check_http("http://127.0.0.2/").is_err());

        // No dot-suffix matching from or to IP literals.
        let p = http_policy(&["0.0.1"]);
        assert!(!p.host_allowed("1.0.0.1"));
        let p = http_policy(&["1.0.0.1"]);
        assert!(!p.host_allowed("x.1.0.0.1"));
        assert!(p.host_allowed("1.0.0.1"));

        // IPv6: entries with or without brackets, compared as addresses.
        for entry in ["::1", "[::1]", "0:0::1"] {
            let p = http_policy(&[entry]);
            assert!(p.check_http("http://[::1]:8080/").is_ok(), "{entry}");
            assert!(p.host_allowed("::1"), "{entry}");
            assert!(p.host_allowed("[::1]"), "{entry}");
            assert!(!p.host_allowed("[::2]"), "{entry}");
        }
    }

    #[test]
    fn non_host_entries_match_nothing() {
        let p = http_policy(&["https://example.com", "example.com:443", "ex ample.com"]);
        assert!(!p.host_allowed("example.com"));
        assert!(p.check_http("https://example.com/").is_err());
    }

    #[test]
    fn schemes() {
        let p = http_policy(&["example.com"]);
        assert_eq!(
            p.check_http("ftp://example.com/").unwrap_err(),
            Denied::Scheme("ftp".into())
        );
        assert!(matches!(
            p.check_http("file:///etc/passwd").unwrap_err(),
            Denied::Scheme(_)
        ));
        assert!(matches!(
            p.check_http("/relative/path").unwrap_err(),
            Denied::InvalidUrl(_)
        ));
        assert!(matches!(
            p.check_http("not a url").unwrap_err(),
            Denied::InvalidUrl(_)
        ));
        assert!(matches!(
            p.check_http("wss://example.com/").unwrap_err(),
            Denied::Scheme(_)
        ));
        // Plaintext allowed by default (and warned once), refused in strict mode.
        assert!(p.check_http("http://example.com/").is_ok());
        assert!(p.check_http("http://example.com/again").is_ok());
        let strict = Policy::new(
            "t",
            &caps_http(&["example.com"]),
            &PolicyConfig {
                strict_https: true,
                ..Default::default()
            },
        );
        assert_eq!(
            strict.check_http("http://example.com/").unwrap_err(),
            Denied::Scheme("http".into())
        );
        assert!(strict.check_http("https://example.com/").is_ok());
    }

    #[test]
    fn ws_urls() {
        let p = http_policy(&["*.example.com"]);
        let u = p.check_ws("wss://ws.example.com/socket").unwrap();
        assert_eq!(u.host_str(), Some("ws.example.com"));
        assert!(p.check_ws("ws://ws.example.com/socket").is_ok());
        assert!(matches!(
            p.check_ws("https://ws.example.com/").unwrap_err(),
            Denied::Scheme(_)
        ));
        assert!(matches!(
            p.check_ws("wss://evil.com/").unwrap_err(),
            Denied::Host(_)
        ));
        assert!(matches!(p.check_ws("nope").unwrap_err(), Denied::InvalidUrl(_)));
    }

    #[test]
    fn env_rules() {
        let caps = PluginCapabilities {
            env: vec!["HOME".into(), "FOO_*".into()],
            ..Default::default()
        };
        let p = Policy::new("t", &caps, &PolicyConfig::default());
        assert!(p.env_allowed("HOME"));
        assert!(!p.env_allowed("HOMEX"));
        assert!(!p.env_allowed("home"));
        assert!(p.env_allowed("FOO_BAR"));
        assert!(p.env_allowed("FOO_"));
        assert!(!p.env_allowed("FOO"));
        assert!(!p.env_allowed("XFOO_BAR"));
        let star = PluginCapabilities {
            env: vec!["*".into()],
            ..Default::default()
        };
        let p = Policy::new("t", &star, &PolicyConfig::default());
        assert!(p.env_allowed("ANYTHING"));
        let none = Policy::new("t", &PluginCapabilities::default(), &PolicyConfig::default());
        assert!(!none.env_allowed("HOME"));
    }

    #[test]
    fn lexical_normalisation() {
        assert_eq!(normalize_lexically(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize_lexically(Path::new("/../../x")), PathBuf::from("/x"));
        assert_eq!(normalize_lexically(Path::new("a/../../x")), PathBuf::from("../x"));
    }
}
