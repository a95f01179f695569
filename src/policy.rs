//! Every capability decision in one place: HTTP/WebSocket hosts, environment names,
//! file paths. Host services ask the policy; nothing else decides access.
//!
//! # Host rule (`tark:http.*`, `tark:ws.connect`; tested in `tests/host_net.rs` and the unit tests below)
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
//! - IP literals are compared in canonical form: `[::ffff:127.0.0.1]` is `127.0.0.1`.
//! - Address entries may carry a port (`127.0.0.1:8080`, `[::1]:8080`: that port only)
//!   or be a network (`10.1.0.0/16`, `fd00::/8`: every IP literal inside it). Names
//!   never carry a port.
//! - Entries that are not host names or address entries (`https://x`, `x:443`, empty,
//!   `*`, `*.`) match nothing; a warning names them when the policy is built.
//! - `localhost` is an ordinary name: allowed only when listed.
//!
//! # Addresses (egress rules, `src/host/net.rs`)
//!
//! Passing the host rule is not enough to connect: the host resolves names itself and
//! refuses loopback, private, link-local and other blocked networks unless an address
//! entry (with or without port, or a network) covers the resolved address
//! ([`Policy::address_listed`]). A name entry never allows a blocked address.

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
    /// Exactly this address (canonical form), on any port or only on the given one.
    Ip(IpAddr, Option<u16>),
    /// Every address of this network (`addr/prefix`, host bits cleared).
    Net(IpAddr, u8),
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
        if entry.contains('/') {
            return parse_network(entry).unwrap_or(HostEntry::Never);
        }
        if !entry.contains('%') {
            if let Ok(sa) = entry.parse::<std::net::SocketAddr>() {
                return match sa.port() {
                    0 => HostEntry::Never,
                    port => HostEntry::Ip(sa.ip().to_canonical(), Some(port)),
                };
            }
        }
        match normalize_host(entry) {
            Some(NormHost::Ip(ip)) => HostEntry::Ip(ip, None),
            Some(NormHost::Name(n)) => HostEntry::Name(n),
            None => HostEntry::Never,
        }
    }

    /// Does this entry allow `host` on `port` (None: an entry without port only)?
    fn matches(&self, host: &NormHost, port: Option<u16>) -> bool {
        match (self, host) {
            (HostEntry::Ip(e, None), NormHost::Ip(h)) => e == h,
            (HostEntry::Ip(e, Some(p)), NormHost::Ip(h)) => e == h && port == Some(*p),
            (HostEntry::Net(net, prefix), NormHost::Ip(h)) => in_network(*h, *net, *prefix),
            (HostEntry::Name(e), NormHost::Name(h))
            | (HostEntry::Wildcard(e), NormHost::Name(h)) => is_same_or_subdomain(h, e),
            _ => false,
        }
    }
}

/// Is `addr` inside `net/prefix`? Different families never match.
pub(crate) fn in_network(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32u32.saturating_sub(u32::from(prefix)));
            let mask = if prefix == 0 { 0 } else { mask.unwrap_or(0) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128u32.saturating_sub(u32::from(prefix)));
            let mask = if prefix == 0 { 0 } else { mask.unwrap_or(0) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `10.1.0.0/16`, `fd00::/8` (IPv6 optionally bracketed): a network entry. The
/// address is canonicalised and its host bits are cleared. None when malformed.
fn parse_network(entry: &str) -> Option<HostEntry> {
    let (addr, prefix) = entry.split_once('/')?;
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    let addr: IpAddr = addr.parse().ok()?;
    if !prefix.bytes().all(|b| b.is_ascii_digit()) || prefix.is_empty() || prefix.len() > 3 {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let (addr, prefix) = match addr {
        IpAddr::V4(_) if prefix <= 32 => (addr, prefix),
        // `::ffff:a.b.c.d/N` with N >= 96 is the IPv4 network `a.b.c.d/(N-96)`.
        IpAddr::V6(v6) if (96..=128).contains(&prefix) && v6.to_ipv4_mapped().is_some() => {
            (IpAddr::V6(v6).to_canonical(), prefix - 96)
        }
        IpAddr::V6(_) if prefix <= 128 => (addr, prefix),
        _ => return None,
    };
    let cleared = match addr {
        IpAddr::V4(a) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix))
            };
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix))
            };
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Some(HostEntry::Net(cleared, prefix))
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
        return Some(NormHost::Ip(ip.to_canonical()));
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
        Ok(url::Host::Ipv6(ip)) => Some(NormHost::Ip(IpAddr::V6(ip).to_canonical())),
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
                        "[plugin:{plugin_id}] http allowlist entry {e:?} is not a host name, `*.` + host name, IP address (optionally with :port) or network (addr/prefix); it matches nothing"
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
        if !self.host_port_allowed(host, parsed.port_or_known_default()) {
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

    /// Check one host name on any port: entries restricted to a port do not count.
    /// Accepts a URL host as printed by the `url` crate (IPv6 in brackets) or a bare
    /// host/IP.
    pub fn host_allowed(&self, host: &str) -> bool {
        self.host_port_allowed(host, None)
    }

    /// Check a host on a port (None: only entries without a port can match).
    fn host_port_allowed(&self, host: &str, port: Option<u16>) -> bool {
        match normalize_host(host) {
            Some(h) => self.http.iter().any(|e| e.matches(&h, port)),
            None => false,
        }
    }

    /// Does the allowlist name this address explicitly (the address itself, the address
    /// with this port, or a network containing it)? Only such entries let a plugin reach
    /// an address in a blocked network (`src/host/net.rs`); host names never do.
    pub fn address_listed(&self, addr: IpAddr, port: u16) -> bool {
        let h = NormHost::Ip(addr.to_canonical());
        self.http.iter().any(|e| {
            matches!(e, HostEntry::Ip(..) | HostEntry::Net(..)) && e.matches(&h, Some(port))
        })
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
        if !self.host_port_allowed(host, parsed.port_or_known_default()) {
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
    ///
    /// Rule (tark's `fs_read` rule; unit tests below): `~` and `~/x` expand with the configured
    /// home directory (other `~...` forms, and `~` without a home, never match; write
    /// `./~name` for such a file); relative requests and relative entries resolve
    /// against the workspace root. The request is canonicalized once (a missing path
    /// resolves its deepest existing ancestor and appends the rest lexically, so `..`
    /// cannot escape through a symlink). Entries containing `*` are globs (`*` = any run
    /// except `/`, `**` = any run, everything else literal) matched against that path,
    /// either as written or with their literal leading directories canonicalized. Other
    /// entries are canonicalized and allow the path itself and everything inside it
    /// (component-wise). The checked canonical path is what is opened; the opened handle
    /// is then verified to be that file. Directories and non-regular files are I/O errors;
    /// an allowed path that cannot be resolved is an I/O error, anything else is denied.
    pub fn fs_open(&self, requested: &str) -> Result<(std::fs::File, PathBuf), FsOpenError> {
        let deny = || {
            log::warn!(
                "[plugin:{}] fs.read blocked - path not in allowed list: {requested}",
                self.plugin_id
            );
            FsOpenError::Denied(Denied::Path(requested.to_string()))
        };
        if requested.contains('\0') || self.fs_read.is_empty() {
            return Err(deny());
        }
        let Some(abs) = self.expand(requested) else {
            return Err(deny());
        };
        let canonical = match std::fs::canonicalize(&abs) {
            Ok(c) => c,
            Err(e) => {
                let resolved = resolve_partially(&abs);
                return Err(if self.path_allowed(&resolved) {
                    FsOpenError::Io(e)
                } else {
                    deny()
                });
            }
        };
        if !self.path_allowed(&canonical) {
            return Err(deny());
        }
        let before = std::fs::metadata(&canonical)?;
        check_regular(&before)?;
        let file = std::fs::File::open(&canonical)?;
        let opened = file.metadata()?;
        check_regular(&opened)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            if before.dev() != opened.dev() || before.ino() != opened.ino() {
                log::warn!(
                    "[plugin:{}] fs.read refused - {} changed while it was opened",
                    self.plugin_id,
                    canonical.display()
                );
                return Err(deny());
            }
        }
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd_link = format!("/proc/self/fd/{}", file.as_raw_fd());
            // Fail closed: without this check a directory swapped for a symlink between
            // the check and the open would go unnoticed (tests/redteam.rs,
            // `fs_read_symlink_swapped_between_check_and_open_never_leaks`).
            match std::fs::read_link(fd_link) {
                Ok(real) if real == canonical || self.path_allowed(&real) => {}
                Ok(real) => {
                    log::warn!(
                        "[plugin:{}] fs.read refused - {} resolved to {} when opened",
                        self.plugin_id,
                        canonical.display(),
                        real.display()
                    );
                    return Err(deny());
                }
                Err(e) => {
                    log::warn!(
                        "[plugin:{}] fs.read refused - cannot tell which file {} opened: {e}",
                        self.plugin_id,
                        canonical.display()
                    );
                    return Err(deny());
                }
            }
        }
        Ok((file, canonical))
    }

    /// Expand `~` and make a path absolute against the workspace root. None for `~`
    /// forms we do not expand (they never match).
    fn expand(&self, raw: &str) -> Option<PathBuf> {
        let path = if raw == "~" {
            self.home_dir.clone()?
        } else if let Some(rest) = raw.strip_prefix("~/") {
            self.home_dir.as_ref()?.join(rest)
        } else if raw.starts_with('~') {
            return None;
        } else {
            PathBuf::from(raw)
        };
        Some(if path.is_absolute() {
            path
        } else {
            self.workspace_root.join(path)
        })
    }

    /// Is this resolved (canonical) path covered by an `fs_read` entry?
    fn path_allowed(&self, path: &Path) -> bool {
        if is_host_process_view(path) {
            return false;
        }
        self.fs_read.iter().any(|entry| {
            // An empty entry would mean "the workspace" (tark: everything); refuse it.
            if entry.trim().is_empty() {
                return false;
            }
            let Some(expanded) = self.expand(entry) else {
                return false;
            };
            if entry.contains('*') {
                glob_entry_matches(&expanded, path)
            } else {
                let base = match std::fs::canonicalize(&expanded) {
                    Ok(c) => c,
                    Err(_) => resolve_partially(&expanded),
                };
                path.starts_with(&base)
            }
        })
    }
}

/// `/proc` describes processes, first of all the host's own (`/proc/self/environ` holds
/// the secrets the `env` allowlist hides, `/proc/self/mem` its memory): never readable
/// through `fs.read`, whatever the allowlist says (an entry of `/` or a symlink into
/// `/proc` included; tests/redteam.rs, `fs_read_never_reaches_proc_self`).
fn is_host_process_view(path: &Path) -> bool {
    cfg!(target_os = "linux") && path.starts_with("/proc")
}

/// Directories and special files (FIFOs, devices) are not readable through `fs.read`.
fn check_regular(meta: &std::fs::Metadata) -> std::io::Result<()> {
    if meta.is_dir() {
        Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory",
        ))
    } else if !meta.is_file() {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    } else {
        Ok(())
    }
}

/// The canonical form of the deepest existing ancestor of `abs`, with the remaining
/// components appended and `.`/`..` resolved lexically. For paths that do not exist
/// (or cannot be resolved), this is where they would be.
pub(crate) fn resolve_partially(abs: &Path) -> PathBuf {
    let comps: Vec<Component<'_>> = abs.components().collect();
    for split in (1..comps.len()).rev() {
        let prefix: PathBuf = comps.iter().take(split).collect();
        if let Ok(base) = std::fs::canonicalize(&prefix) {
            let mut joined = base;
            joined.extend(comps.iter().skip(split));
            return normalize_lexically(&joined);
        }
    }
    normalize_lexically(abs)
}

/// Match a glob entry (already `~`-expanded and absolute) against a resolved path,
/// either as written or with its literal leading directories canonicalized (so
/// `/tmp/x/*.txt` still works where `/tmp` is a symlink).
fn glob_entry_matches(pattern: &Path, path: &Path) -> bool {
    let pattern = normalize_lexically(pattern);
    let text = path.as_os_str().as_encoded_bytes();
    if glob_match(pattern.as_os_str().as_encoded_bytes(), text) {
        return true;
    }
    let comps: Vec<Component<'_>> = pattern.components().collect();
    let literal = comps
        .iter()
        .take_while(|c| !c.as_os_str().as_encoded_bytes().contains(&b'*'))
        .count();
    let prefix: PathBuf = comps.iter().take(literal).collect();
    match std::fs::canonicalize(&prefix) {
        Ok(canon) if canon != prefix => {
            let mut alt = canon;
            alt.extend(comps.iter().skip(literal));
            glob_match(alt.as_os_str().as_encoded_bytes(), text)
        }
        _ => false,
    }
}

/// One piece of a glob pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    /// This exact byte.
    Literal(u8),
    /// `*`: any run of bytes except `/`.
    Star,
    /// `**`: any run of bytes.
    DoubleStar,
}

fn glob_tokens(pattern: &[u8]) -> Vec<GlobToken> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut iter = pattern.iter().peekable();
    while let Some(&b) = iter.next() {
        if b == b'*' {
            if iter.peek() == Some(&&b'*') {
                iter.next();
                tokens.push(GlobToken::DoubleStar);
            } else {
                tokens.push(GlobToken::Star);
            }
        } else {
            tokens.push(GlobToken::Literal(b));
        }
    }
    tokens
}

/// Anchored glob match, O(pattern x text), no backtracking blow-up. `*` = any run of
/// bytes except `/`, `**` = any run, every other byte literal (no regex, no `?`/`[]`).
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // reach[j]: the tokens consumed so far can match text[..j].
    let mut reach = vec![false; text.len().saturating_add(1)];
    if let Some(first) = reach.first_mut() {
        *first = true;
    }
    for token in glob_tokens(pattern) {
        let mut next = vec![false; reach.len()];
        match token {
            GlobToken::Literal(c) => {
                for ((slot, &prev), &b) in next.iter_mut().skip(1).zip(reach.iter()).zip(text) {
                    *slot = prev && b == c;
                }
            }
            GlobToken::Star | GlobToken::DoubleStar => {
                let mut before = false;
                for (j, (slot, &here)) in next.iter_mut().zip(reach.iter()).enumerate() {
                    let extend = before
                        && j.checked_sub(1)
                            .and_then(|k| text.get(k))
                            .is_some_and(|&b| token == GlobToken::DoubleStar || b != b'/');
                    *slot = here || extend;
                    before = *slot;
                }
            }
        }
        reach = next;
    }
    reach.last().copied().unwrap_or(false)
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

    /// Which rule answered a URL check: "ok", or the kind of denial.
    fn verdict(r: Result<url::Url, Denied>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(Denied::InvalidUrl(_)) => "invalid-url",
            Err(Denied::Scheme(_)) => "scheme",
            Err(Denied::Host(_)) => "host",
            Err(Denied::Env(_)) => "env",
            Err(Denied::Path(_)) => "path",
        }
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
        // Userinfo does not fool the host extraction.
        assert_eq!(
            p.check_http("https://api.example.com@evil.net/")
                .unwrap_err(),
            Denied::Host("evil.net".into())
        );
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
    fn address_entries_with_ports_and_networks() {
        let p = http_policy(&["127.0.0.1:8080", "[::1]:9090"]);
        assert!(p.check_http("http://127.0.0.1:8080/").is_ok());
        assert!(p.check_http("http://[::ffff:127.0.0.1]:8080/").is_ok());
        assert_eq!(
            p.check_http("http://127.0.0.1:8081/").unwrap_err(),
            Denied::Host("127.0.0.1".into())
        );
        assert!(p.check_http("http://127.0.0.1/").is_err());
        assert!(p.check_http("http://[::1]:9090/").is_ok());
        assert!(p.check_http("http://[::1]/").is_err());
        // A port-restricted entry does not allow the host "on any port".
        assert!(!p.host_allowed("127.0.0.1"));
        assert!(p.address_listed("127.0.0.1".parse().unwrap(), 8080));
        assert!(!p.address_listed("127.0.0.1".parse().unwrap(), 80));
        assert!(p.address_listed("::ffff:127.0.0.1".parse().unwrap(), 8080));

        let p = http_policy(&["10.1.0.0/16", "[fd00::]/8", "192.168.1.77/24"]);
        assert!(p.check_http("http://10.1.200.3/").is_ok());
        assert!(p.check_http("http://10.2.0.1/").is_err());
        assert!(p.check_http("http://[fd12::1]/").is_ok());
        assert!(p.check_http("http://[fe80::1]/").is_err());
        // Host bits are cleared: the entry is 192.168.1.0/24.
        assert!(p.check_http("http://192.168.1.5/").is_ok());
        assert!(p.check_http("http://192.168.2.5/").is_err());
        assert!(p.address_listed("::ffff:10.1.0.9".parse().unwrap(), 1));
        // Names never match network entries.
        assert!(p.check_http("http://10.1.0.0.example/").is_err());
        // Names are never "listed addresses".
        let p = http_policy(&["localhost", "example.com"]);
        assert!(!p.address_listed("127.0.0.1".parse().unwrap(), 80));

        // Malformed networks and ports match nothing.
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "/8",
            "x/8",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "[fe80::1%2]:80",
            "localhost:8080",
        ] {
            let p = http_policy(&[bad]);
            assert_eq!(p.http, vec![HostEntry::Never], "{bad}");
        }
    }

    #[test]
    fn ip_literals_compare_canonically() {
        let p = http_policy(&["127.0.0.1"]);
        assert!(p.check_http("http://[::ffff:127.0.0.1]/").is_ok());
        assert!(p.check_http("http://[::ffff:7f00:1]/").is_ok());
        assert!(p.check_http("http://2130706433/").is_ok());
        assert!(p.check_http("http://0177.0.0.1/").is_ok());
        assert!(p.check_http("http://0x7f.1/").is_ok());
        // IPv4-compatible and NAT64 spellings are different addresses.
        assert!(p.check_http("http://[::127.0.0.1]/").is_err());
        assert!(p.check_http("http://[64:ff9b::7f00:1]/").is_err());
        // Zone ids are not valid URL hosts.
        assert_eq!(
            verdict(p.check_http("http://[fe80::1%25eth0]/")),
            "invalid-url"
        );
        let p = http_policy(&["::ffff:127.0.0.1"]);
        assert!(p.check_http("http://127.0.0.1/").is_ok());
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
        for (url, want) in [
            ("file:///etc/passwd", "scheme"),
            ("/relative/path", "invalid-url"),
            ("not a url", "invalid-url"),
            ("wss://example.com/", "scheme"),
        ] {
            assert_eq!(verdict(p.check_http(url)), want, "{url}");
        }
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
        for (url, want) in [
            ("https://ws.example.com/", "scheme"),
            ("wss://evil.com/", "host"),
            ("nope", "invalid-url"),
        ] {
            assert_eq!(verdict(p.check_ws(url)), want, "{url}");
        }
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
        let none = Policy::new(
            "t",
            &PluginCapabilities::default(),
            &PolicyConfig::default(),
        );
        assert!(!none.env_allowed("HOME"));
    }

    #[test]
    fn lexical_normalisation() {
        assert_eq!(
            normalize_lexically(Path::new("/a/./b/../c")),
            PathBuf::from("/a/c")
        );
        assert_eq!(
            normalize_lexically(Path::new("/../../x")),
            PathBuf::from("/x")
        );
        assert_eq!(
            normalize_lexically(Path::new("a/../../x")),
            PathBuf::from("../x")
        );
    }

    // ---- fs ----

    use std::fs;

    struct FsFixture {
        _tmp: tempfile::TempDir,
        root: PathBuf,
    }

    fn fixture() -> FsFixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = fs::canonicalize(tmp.path()).unwrap();
        FsFixture { _tmp: tmp, root }
    }

    fn write(path: &Path, text: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    fn fs_policy(entries: &[String], ws: &Path, home: Option<&Path>) -> Policy {
        let caps = PluginCapabilities {
            fs_read: entries.to_vec(),
            ..Default::default()
        };
        Policy::new(
            "t",
            &caps,
            &PolicyConfig {
                workspace_root: ws.to_path_buf(),
                home_dir: home.map(Path::to_path_buf),
                strict_https: false,
            },
        )
    }

    fn p(path: &Path) -> String {
        path.to_str().unwrap().to_string()
    }

    fn read_ok(policy: &Policy, req: &str) -> (String, PathBuf) {
        use std::io::Read;
        let (mut f, path) = policy.fs_open(req).unwrap_or_else(|e| panic!("{req}: {e}"));
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        (s, path)
    }

    fn is_denied(policy: &Policy, req: &str) -> bool {
        matches!(
            policy.fs_open(req),
            Err(FsOpenError::Denied(Denied::Path(_)))
        )
    }

    fn io_kind(policy: &Policy, req: &str) -> Option<std::io::ErrorKind> {
        match policy.fs_open(req) {
            Err(FsOpenError::Io(e)) => Some(e.kind()),
            _ => None,
        }
    }

    #[test]
    fn fs_allowed_file_and_directory_component_wise() {
        let fx = fixture();
        let r = &fx.root;
        write(&r.join("a/b/file.txt"), "inside");
        write(&r.join("a/b/deep/x.txt"), "deep");
        write(&r.join("a/bc/file.txt"), "sibling");
        write(&r.join("single.txt"), "one");
        let pol = fs_policy(&[p(&r.join("a/b")), p(&r.join("single.txt"))], r, None);
        assert_eq!(read_ok(&pol, &p(&r.join("a/b/file.txt"))).0, "inside");
        assert_eq!(read_ok(&pol, &p(&r.join("a/b/deep/x.txt"))).0, "deep");
        let (text, path) = read_ok(&pol, &p(&r.join("single.txt")));
        assert_eq!((text.as_str(), path), ("one", r.join("single.txt")));
        assert!(is_denied(&pol, &p(&r.join("a/bc/file.txt"))));
        assert!(is_denied(&pol, &p(&r.join("a/file.txt"))));
        // `./` and redundant separators are fine.
        assert_eq!(
            read_ok(&pol, &format!("{}/a/./b//file.txt", p(r))).0,
            "inside"
        );
    }

    #[test]
    fn fs_empty_list_and_empty_entry_deny() {
        let fx = fixture();
        write(&fx.root.join("f.txt"), "x");
        let pol = fs_policy(&[], &fx.root, None);
        assert!(is_denied(&pol, &p(&fx.root.join("f.txt"))));
        let pol = fs_policy(&["".to_string(), " ".to_string()], &fx.root, None);
        assert!(is_denied(&pol, &p(&fx.root.join("f.txt"))));
        assert!(is_denied(&pol, "f.txt"));
    }

    #[test]
    fn fs_dotdot_cannot_escape() {
        let fx = fixture();
        let r = &fx.root;
        write(&r.join("allowed/ok.txt"), "ok");
        write(&r.join("secret.txt"), "secret");
        let pol = fs_policy(&[p(&r.join("allowed"))], r, None);
        assert!(is_denied(&pol, &format!("{}/allowed/../secret.txt", p(r))));
        assert!(is_denied(&pol, &format!("{}/allowed/../nope.txt", p(r))));
        assert!(is_denied(
            &pol,
            &format!("{}/allowed/missing/../../secret.txt", p(r))
        ));
        assert_eq!(
            read_ok(&pol, &format!("{}/allowed/../allowed/ok.txt", p(r))).0,
            "ok"
        );
    }

    #[cfg(unix)]
    #[test]
    fn fs_symlinks_are_resolved_before_checking() {
        use std::os::unix::fs::symlink;
        let fx = fixture();
        let r = &fx.root;
        write(&r.join("allowed/real.txt"), "real");
        write(&r.join("outside/secret.txt"), "secret");
        symlink(r.join("outside/secret.txt"), r.join("allowed/escape.txt")).unwrap();
        symlink(r.join("outside"), r.join("allowed/outdir")).unwrap();
        symlink(r.join("allowed/real.txt"), r.join("allowed/alias.txt")).unwrap();
        let pol = fs_policy(&[p(&r.join("allowed"))], r, None);
        assert!(is_denied(&pol, &p(&r.join("allowed/escape.txt"))));
        assert!(is_denied(&pol, &p(&r.join("allowed/outdir/secret.txt"))));
        // `..` after a symlinked directory is resolved physically: no existence oracle.
        assert!(is_denied(
            &pol,
            &p(&r.join("allowed/outdir/../outside/secret.txt"))
        ));
        assert!(is_denied(
            &pol,
            &p(&r.join("allowed/outdir/../missing.txt"))
        ));
        assert!(is_denied(&pol, &p(&r.join("allowed/outdir/missing.txt"))));
        let (text, path) = read_ok(&pol, &p(&r.join("allowed/alias.txt")));
        assert_eq!(text, "real");
        assert_eq!(path, r.join("allowed/real.txt"));
    }

    #[cfg(unix)]
    #[test]
    fn fs_entry_through_symlink_is_canonicalized() {
        use std::os::unix::fs::symlink;
        let fx = fixture();
        let r = &fx.root;
        write(&r.join("real/a.txt"), "a");
        symlink(r.join("real"), r.join("link")).unwrap();
        let pol = fs_policy(&[p(&r.join("link"))], r, None);
        assert_eq!(read_ok(&pol, &p(&r.join("real/a.txt"))).0, "a");
        assert_eq!(read_ok(&pol, &p(&r.join("link/a.txt"))).0, "a");
        // Glob whose literal directories go through a symlink.
        let pol = fs_policy(&[format!("{}/link/*.txt", p(r))], r, None);
        assert_eq!(read_ok(&pol, &p(&r.join("link/a.txt"))).0, "a");
        assert_eq!(read_ok(&pol, &p(&r.join("real/a.txt"))).0, "a");
    }

    #[test]
    fn fs_glob_star_and_double_star() {
        let fx = fixture();
        let r = &fx.root;
        for f in ["d/a.txt", "d/a.md", "d/sub/b.txt", "d/sub/deep/c.txt"] {
            write(&r.join(f), f);
        }
        let star = fs_policy(&[format!("{}/d/*.txt", p(r))], r, None);
        assert_eq!(read_ok(&star, &p(&r.join("d/a.txt"))).0, "d/a.txt");
        assert!(is_denied(&star, &p(&r.join("d/a.md"))));
        assert!(is_denied(&star, &p(&r.join("d/sub/b.txt"))));

        let double = fs_policy(&[format!("{}/d/**/*.txt", p(r))], r, None);
        assert!(double.fs_open(&p(&r.join("d/sub/b.txt"))).is_ok());
        assert!(double.fs_open(&p(&r.join("d/sub/deep/c.txt"))).is_ok());
        // As in tark (`.*/[^/]*`): needs at least one directory level.
        assert!(is_denied(&double, &p(&r.join("d/a.txt"))));
        assert!(is_denied(&double, &p(&r.join("d/a.md"))));

        let all = fs_policy(&[format!("{}/d/**", p(r))], r, None);
        assert!(all.fs_open(&p(&r.join("d/sub/deep/c.txt"))).is_ok());
        assert!(all.fs_open(&p(&r.join("d/a.md"))).is_ok());
        // A glob-allowed but missing file is an I/O error, not a denial.
        assert_eq!(
            io_kind(&star, &p(&r.join("d/missing.txt"))),
            Some(std::io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn fs_glob_metacharacters_are_literal() {
        let fx = fixture();
        let r = &fx.root;
        write(&r.join("x+y/a.txt"), "plus");
        write(&r.join("xxy/a.txt"), "regex would match");
        write(&r.join("xy/a.txt"), "regex would match too");
        write(&r.join("br/[1].txt"), "bracket");
        write(&r.join("br/1.txt"), "one");
        write(&r.join("br/aXtxt"), "dot");
        let pol = fs_policy(
            &[
                format!("{}/x+y/*.txt", p(r)),
                format!("{}/br/[1].*", p(r)),
                format!("{}/br/a.txt*", p(r)),
            ],
            r,
            None,
        );
        assert_eq!(read_ok(&pol, &p(&r.join("x+y/a.txt"))).0, "plus");
        assert!(is_denied(&pol, &p(&r.join("xxy/a.txt"))));
        assert!(is_denied(&pol, &p(&r.join("xy/a.txt"))));
        assert_eq!(read_ok(&pol, &p(&r.join("br/[1].txt"))).0, "bracket");
        assert!(is_denied(&pol, &p(&r.join("br/1.txt"))));
        assert!(is_denied(&pol, &p(&r.join("br/aXtxt"))));
    }

    #[test]
    fn glob_matcher_unit() {
        assert!(glob_match(b"/a/*", b"/a/b"));
        assert!(glob_match(b"/a/*", b"/a/"));
        assert!(!glob_match(b"/a/*", b"/a/b/c"));
        assert!(glob_match(b"/a/**", b"/a/b/c"));
        assert!(glob_match(b"/a/***", b"/a/b/c"));
        assert!(glob_match(b"*", b""));
        assert!(!glob_match(b"", b"x"));
        assert!(glob_match(b"", b""));
        assert!(glob_match(b"/a/*b*c", b"/a/xbyc"));
        assert!(!glob_match(b"/a/*b*c", b"/a/xbyd"));
        assert!(glob_match(b"/a/?", b"/a/?"));
        assert!(!glob_match(b"/a/?", b"/a/b"));
        // Many stars on a long text stay fast (no exponential backtracking).
        let text = vec![b'a'; 4000];
        assert!(!glob_match(b"*a*a*a*a*a*a*a*a*a*a*a*a*b", &text));
    }

    #[test]
    fn fs_tilde_expansion() {
        let fx = fixture();
        let r = &fx.root;
        let home = r.join("home");
        write(&home.join("notes/n.txt"), "note");
        write(&r.join("ws/~other/x.txt"), "literal tilde dir");
        let pol = fs_policy(&["~/notes".to_string()], &r.join("ws"), Some(&home));
        assert_eq!(read_ok(&pol, "~/notes/n.txt").0, "note");
        assert_eq!(read_ok(&pol, &p(&home.join("notes/n.txt"))).0, "note");
        assert!(is_denied(&pol, "~other/x.txt"));
        let whole_home = fs_policy(&["~".to_string()], r, Some(&home));
        assert_eq!(read_ok(&whole_home, "~/notes/n.txt").0, "note");
        // No home directory: `~` never matches.
        let no_home = fs_policy(&["~/notes".to_string()], r, None);
        assert!(is_denied(&no_home, "~/notes/n.txt"));
        assert!(is_denied(&no_home, &p(&home.join("notes/n.txt"))));
        // `~user` entries never match; `./~other` names the literal directory.
        let ws_pol = fs_policy(
            &["~other".to_string(), "./~other/x.txt".to_string()],
            &r.join("ws"),
            Some(&home),
        );
        assert_eq!(read_ok(&ws_pol, "./~other/x.txt").0, "literal tilde dir");
        assert!(is_denied(&ws_pol, "~other/x.txt"));
    }

    #[test]
    fn fs_relative_paths_use_workspace_root() {
        let fx = fixture();
        let r = &fx.root;
        let ws = r.join("ws");
        write(&ws.join("docs/readme.md"), "readme");
        write(&r.join("outside.txt"), "outside");
        let pol = fs_policy(&["docs".to_string(), "*.cfg".to_string()], &ws, None);
        assert_eq!(read_ok(&pol, "docs/readme.md").0, "readme");
        assert_eq!(read_ok(&pol, "./docs/../docs/readme.md").0, "readme");
        assert_eq!(read_ok(&pol, &p(&ws.join("docs/readme.md"))).0, "readme");
        assert!(is_denied(&pol, "../outside.txt"));
        assert!(is_denied(&pol, "docs/../../outside.txt"));
        write(&ws.join("app.cfg"), "cfg");
        assert_eq!(read_ok(&pol, "app.cfg").0, "cfg");
        write(&ws.join("other/app.cfg"), "nested");
        assert!(is_denied(&pol, "other/app.cfg"));
    }

    #[test]
    fn fs_missing_directory_and_special_files() {
        let fx = fixture();
        let r = &fx.root;
        write(&r.join("allowed/sub/f.txt"), "f");
        let pol = fs_policy(&[p(&r.join("allowed"))], r, None);
        assert_eq!(
            io_kind(&pol, &p(&r.join("allowed/missing.txt"))),
            Some(std::io::ErrorKind::NotFound)
        );
        assert!(is_denied(&pol, &p(&r.join("missing.txt"))));
        assert_eq!(
            io_kind(&pol, &p(&r.join("allowed/sub"))),
            Some(std::io::ErrorKind::IsADirectory)
        );
        assert_eq!(
            io_kind(&pol, &p(&r.join("allowed"))),
            Some(std::io::ErrorKind::IsADirectory)
        );
        assert!(is_denied(&pol, "with\0nul"));
        // A FIFO must not block the host: refused before opening.
        let fifo = r.join("allowed/fifo");
        let st = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(
            io_kind(&pol, &p(&fifo)),
            Some(std::io::ErrorKind::InvalidInput)
        );
    }
}
