//! Network egress rules for `tark:http` and `tark:ws`: the host resolves every name
//! itself, checks every resolved address against the blocked networks below, and
//! connects to exactly the address it checked (no second lookup, so a name cannot
//! resolve to an allowed address for the check and to another one for the connect:
//! DNS rebinding). Spin's `BlockedNetworks` (spinframework/spin, `factor-outbound-networking`)
//! is the model; the allowlist itself (which hosts a plugin may name) stays in
//! [`Policy`](crate::policy::Policy).
//!
//! # Rules
//!
//! 1. The URL host must pass the allowlist (`Policy::check_http` / `check_ws`).
//! 2. An IP literal is used as is; a name is resolved by the host (`localhost` and
//!    `*.localhost` are loopback without any lookup, RFC 6761).
//! 3. Every resolved address is compared, in its canonical form (an IPv4-mapped
//!    `::ffff:a.b.c.d` is `a.b.c.d`), with the table below. A blocked address is still
//!    allowed when the allowlist names it explicitly: the address itself
//!    (`"127.0.0.1"`, `"::1"`), the address with the URL's port (`"127.0.0.1:8080"`,
//!    `"[::1]:8080"`), or a network containing it (`"10.1.0.0/16"`, `"fd00::/8"`).
//!    A host name entry (`"localhost"`, `"*.corp"`) never allows a blocked address.
//! 4. Blocked addresses are dropped; the connection is tried on the remaining ones in
//!    resolver order. When none remains, the request is refused before any connection
//!    with an error naming the host, the address, the network and the entry that would
//!    allow it.
//! 5. Every redirect hop and every WebSocket connect goes through the same steps.
//!
//! # Blocked networks
//!
//! | Network | What |
//! |---|---|
//! | `0.0.0.0/8` | "this network", unspecified (RFC 1122) |
//! | `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` | private (RFC 1918) |
//! | `100.64.0.0/10` | shared address space, carrier-grade NAT (RFC 6598) |
//! | `127.0.0.0/8` | loopback |
//! | `169.254.0.0/16` | link-local, including cloud metadata `169.254.169.254` (RFC 3927) |
//! | `192.0.0.0/24` | IETF protocol assignments (RFC 6890) |
//! | `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24` | documentation (RFC 5737) |
//! | `192.88.99.0/24` | 6to4 relay anycast, deprecated (RFC 7526) |
//! | `198.18.0.0/15` | benchmarking (RFC 2544) |
//! | `224.0.0.0/4` | multicast |
//! | `255.255.255.255/32` | limited broadcast |
//! | `240.0.0.0/4` | reserved (RFC 1112) |
//! | `::/128` | unspecified |
//! | `::1/128` | loopback |
//! | `::ffff:0:0/96` | IPv4-mapped: the embedded IPv4 address is checked |
//! | `::/96` | IPv4-compatible, deprecated (RFC 4291) |
//! | `64:ff9b::/96` | NAT64 well-known prefix: the embedded IPv4 address is checked (RFC 6052) |
//! | `64:ff9b:1::/48` | NAT64 local use (RFC 8215) |
//! | `100::/64` | discard-only (RFC 6666) |
//! | `2001:db8::/32` | documentation (RFC 3849) |
//! | `2002::/16` | 6to4: the embedded IPv4 address is checked (RFC 3056) |
//! | `fc00::/7` | unique local (RFC 4193) |
//! | `fe80::/10` | link-local |
//! | `fec0::/10` | site-local, deprecated (RFC 3879) |
//! | `ff00::/8` | multicast |
//!
//! Teredo (`2001::/32`) is not decoded: its client address is obfuscated and traffic
//! goes through a public relay.

pub(crate) mod http1;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use url::{Host, Url};

use crate::policy::{in_network, Policy};

/// rustls client configuration trusting the webpki roots plus `extra` (HTTPS and WSS).
pub(crate) fn tls_config(
    extra: &[rustls::pki_types::CertificateDer<'static>],
) -> Result<std::sync::Arc<rustls::ClientConfig>, super::HostError> {
    use super::HostError;
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| HostError::Tls(format!("extra CA certificate: {e}")))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HostError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(cfg))
}

/// A named blocked network (see the module table).
struct Blocked {
    net: IpAddr,
    prefix: u8,
    what: &'static str,
}

const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8, what: &'static str) -> Blocked {
    Blocked {
        net: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
        prefix,
        what,
    }
}

const fn v6(segments: [u16; 8], prefix: u8, what: &'static str) -> Blocked {
    let [a, b, c, d, e, f, g, h] = segments;
    Blocked {
        net: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
        prefix,
        what,
    }
}

/// IPv4 networks, most specific first where they overlap (broadcast inside 240/4).
const BLOCKED_V4: &[Blocked] = &[
    v4(0, 0, 0, 0, 8, "0.0.0.0/8, this network / unspecified"),
    v4(10, 0, 0, 0, 8, "10.0.0.0/8, private network (RFC 1918)"),
    v4(
        100,
        64,
        0,
        0,
        10,
        "100.64.0.0/10, carrier-grade NAT (RFC 6598)",
    ),
    v4(127, 0, 0, 0, 8, "127.0.0.0/8, loopback"),
    v4(
        169,
        254,
        0,
        0,
        16,
        "169.254.0.0/16, link-local and cloud metadata",
    ),
    v4(
        172,
        16,
        0,
        0,
        12,
        "172.16.0.0/12, private network (RFC 1918)",
    ),
    v4(192, 0, 0, 0, 24, "192.0.0.0/24, IETF protocol assignments"),
    v4(192, 0, 2, 0, 24, "192.0.2.0/24, documentation"),
    v4(192, 88, 99, 0, 24, "192.88.99.0/24, 6to4 relay anycast"),
    v4(
        192,
        168,
        0,
        0,
        16,
        "192.168.0.0/16, private network (RFC 1918)",
    ),
    v4(198, 18, 0, 0, 15, "198.18.0.0/15, benchmarking"),
    v4(198, 51, 100, 0, 24, "198.51.100.0/24, documentation"),
    v4(203, 0, 113, 0, 24, "203.0.113.0/24, documentation"),
    v4(224, 0, 0, 0, 4, "224.0.0.0/4, multicast"),
    v4(255, 255, 255, 255, 32, "255.255.255.255, broadcast"),
    v4(240, 0, 0, 0, 4, "240.0.0.0/4, reserved"),
];

/// IPv6 networks that do not embed an IPv4 address, most specific first.
const BLOCKED_V6: &[Blocked] = &[
    v6([0, 0, 0, 0, 0, 0, 0, 0], 128, "::, unspecified"),
    v6([0, 0, 0, 0, 0, 0, 0, 1], 128, "::1, loopback"),
    v6(
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "::/96, IPv4-compatible (deprecated)",
    ),
    v6(
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "64:ff9b:1::/48, local-use NAT64",
    ),
    v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "100::/64, discard-only"),
    v6(
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "2001:db8::/32, documentation",
    ),
    v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "fc00::/7, unique local"),
    v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "fe80::/10, link-local"),
    v6(
        [0xfec0, 0, 0, 0, 0, 0, 0, 0],
        10,
        "fec0::/10, site-local (deprecated)",
    ),
    v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "ff00::/8, multicast"),
];

fn lookup(table: &[Blocked], addr: IpAddr) -> Option<&'static str> {
    table
        .iter()
        .find(|b| in_network(addr, b.net, b.prefix))
        .map(|b| b.what)
}

/// The blocked network `addr` belongs to (its description), or None when it may be
/// reached without an explicit allowlist entry.
pub(crate) fn blocked_network(addr: IpAddr) -> Option<String> {
    match addr.to_canonical() {
        IpAddr::V4(a) => lookup(BLOCKED_V4, IpAddr::V4(a)).map(str::to_string),
        IpAddr::V6(a) => {
            if let Some(what) = lookup(BLOCKED_V6, IpAddr::V6(a)) {
                return Some(what.to_string());
            }
            let seg = a.segments();
            let o = a.octets();
            // NAT64 (64:ff9b::/96): the last 32 bits are the IPv4 destination.
            if in_network(
                IpAddr::V6(a),
                IpAddr::V6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)),
                96,
            ) {
                let inner = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
                return lookup(BLOCKED_V4, IpAddr::V4(inner))
                    .map(|w| format!("64:ff9b::/96, NAT64 form of {inner} ({w})"));
            }
            // 6to4 (2002::/16): bits 16..48 are the IPv4 address of the site.
            if seg[0] == 0x2002 {
                let inner = Ipv4Addr::new(o[2], o[3], o[4], o[5]);
                return lookup(BLOCKED_V4, IpAddr::V4(inner))
                    .map(|w| format!("2002::/16, 6to4 form of {inner} ({w})"));
            }
            None
        }
    }
}

/// Why a connection was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum EgressError {
    /// The URL has no host or port (the allowlist check normally catches this first).
    #[error("URL has no host or port: {0}")]
    NoHost(String),
    /// Name resolution failed.
    #[error("failed to resolve {host}: {source}")]
    Resolve {
        /// The name.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// Every address of the host is in a blocked network and none is allowlisted.
    #[error("{host} resolves to {addr}, which is in a blocked network ({network}); to allow it, add \"{entry}\" (or a network containing it, like \"{net_hint}\") to [capabilities] http in plugin.toml")]
    Blocked {
        /// Host as written in the URL.
        host: String,
        /// The first refused address (canonical form).
        addr: IpAddr,
        /// Description of its blocked network.
        network: String,
        /// The allowlist entry that would allow this address.
        entry: String,
        /// A CIDR entry that would allow it and its neighbours.
        net_hint: String,
    },
    /// The deadline passed before a connection was made.
    #[error("connect to {0} timed out")]
    Timeout(String),
    /// Every allowed address refused the connection (the last error).
    #[error("Io Error: {0}")]
    Connect(#[source] io::Error),
}

impl EgressError {
    /// True when the refusal is a policy decision (nothing was connected).
    pub(crate) fn is_blocked(&self) -> bool {
        matches!(self, EgressError::Blocked { .. })
    }

    /// True for timeouts (connect deadline, or an I/O timeout while connecting).
    pub(crate) fn is_timeout(&self) -> bool {
        match self {
            EgressError::Timeout(_) => true,
            EgressError::Connect(e) => {
                matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
                )
            }
            _ => false,
        }
    }
}

/// A name resolver: (name, port) to addresses. The system resolver in production; tests
/// pass fakes to prove what is checked and connected.
pub(crate) type Resolver<'a> = &'a dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

/// The system resolver (`getaddrinfo`), except that `localhost` and `*.localhost` are
/// loopback without a lookup (RFC 6761: a DNS answer must not move them elsewhere).
pub(crate) fn system_resolve(name: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let lower = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Ok(vec![
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port),
        ]);
    }
    Ok((name, port).to_socket_addrs()?.collect())
}

/// The allowlist entry and a covering network that would allow `addr`.
fn allow_hints(addr: IpAddr) -> (String, String) {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            (a.to_string(), format!("{}.{}.0.0/16", o[0], o[1]))
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            let net = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            (a.to_string(), format!("{net}/64"))
        }
    }
}

/// Resolve the URL's host (an IP literal is its own single address) and keep only the
/// addresses the policy lets this plugin reach on this port, in resolver order. The
/// returned addresses are canonical (`::ffff:a.b.c.d` becomes `a.b.c.d`): connect to
/// them and to nothing else.
pub(crate) fn resolve_checked(
    policy: &Policy,
    url: &Url,
    resolve: Resolver<'_>,
) -> Result<Vec<SocketAddr>, EgressError> {
    let no_host = || EgressError::NoHost(url.to_string());
    let host = url.host().ok_or_else(no_host)?;
    let port = url.port_or_known_default().ok_or_else(no_host)?;
    let (host_text, addrs) = match host {
        Host::Ipv4(ip) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V4(ip), port)]),
        Host::Ipv6(ip) => (ip.to_string(), vec![SocketAddr::new(IpAddr::V6(ip), port)]),
        Host::Domain(name) => {
            let addrs = resolve(name, port).map_err(|source| EgressError::Resolve {
                host: name.to_string(),
                source,
            })?;
            (name.to_string(), addrs)
        }
    };
    let mut allowed = Vec::with_capacity(addrs.len());
    let mut first_refused: Option<(IpAddr, String)> = None;
    for addr in addrs {
        let ip = addr.ip().to_canonical();
        match blocked_network(ip) {
            Some(network) if !policy.address_listed(ip, port) => {
                if first_refused.is_none() {
                    first_refused = Some((ip, network));
                }
            }
            _ => {
                let checked = SocketAddr::new(ip, port);
                if !allowed.contains(&checked) {
                    allowed.push(checked);
                }
            }
        }
    }
    if allowed.is_empty() {
        return Err(match first_refused {
            Some((addr, network)) => {
                let (entry, net_hint) = allow_hints(addr);
                EgressError::Blocked {
                    host: host_text,
                    addr,
                    network,
                    entry,
                    net_hint,
                }
            }
            None => EgressError::Resolve {
                host: host_text,
                source: io::Error::new(io::ErrorKind::NotFound, "no addresses"),
            },
        });
    }
    Ok(allowed)
}

/// Connect to one of the checked addresses of `url` within `connect_timeout` per
/// attempt and before `deadline`. Returns the stream and the address it is connected to.
pub(crate) fn connect(
    policy: &Policy,
    url: &Url,
    connect_timeout: Duration,
    deadline: Option<Instant>,
) -> Result<(TcpStream, SocketAddr), EgressError> {
    connect_with(policy, url, connect_timeout, deadline, &system_resolve)
}

/// [`connect`] with a chosen resolver.
pub(crate) fn connect_with(
    policy: &Policy,
    url: &Url,
    connect_timeout: Duration,
    deadline: Option<Instant>,
    resolve: Resolver<'_>,
) -> Result<(TcpStream, SocketAddr), EgressError> {
    let addrs = resolve_checked(policy, url, resolve)?;
    let mut last_err = None;
    for addr in addrs {
        let mut timeout = connect_timeout;
        if let Some(d) = deadline {
            timeout = timeout.min(d.saturating_duration_since(Instant::now()));
        }
        if timeout.is_zero() {
            return Err(EgressError::Timeout(addr.to_string()));
        }
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok((s, addr)),
            Err(e) => {
                log::debug!("connect to {addr} failed: {e}");
                last_err = Some(e);
            }
        }
    }
    Err(match last_err {
        Some(e) => EgressError::Connect(e),
        None => EgressError::NoHost(url.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::PluginCapabilities;
    use crate::policy::PolicyConfig;
    use std::cell::Cell;

    fn policy(hosts: &[&str]) -> Policy {
        let caps = PluginCapabilities {
            http: hosts.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        Policy::new("t", &caps, &PolicyConfig::default())
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn blocked(s: &str) -> bool {
        blocked_network(ip(s)).is_some()
    }

    #[test]
    fn blocked_table_v4() {
        for a in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(blocked(a), "{a} must be blocked");
        }
        for a in [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "169.253.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "11.0.0.0",
        ] {
            assert!(!blocked(a), "{a} must be reachable");
        }
        assert_eq!(
            blocked_network(ip("169.254.169.254")).unwrap(),
            "169.254.0.0/16, link-local and cloud metadata"
        );
        assert_eq!(
            blocked_network(ip("255.255.255.255")).unwrap(),
            "255.255.255.255, broadcast"
        );
    }

    #[test]
    fn blocked_table_v6_and_embedded_v4() {
        for a in [
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "fec0::1",
            "2001:db8::1",
            "100::1",
            "64:ff9b:1::1",
            // IPv4-mapped: the embedded address decides.
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            // IPv4-compatible (deprecated), whatever it embeds.
            "::127.0.0.1",
            "::8.8.8.8",
            // NAT64 and 6to4 forms of blocked IPv4 addresses.
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "2002:c0a8:101::",
        ] {
            assert!(blocked(a), "{a} must be blocked");
        }
        for a in [
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "fe00::1",
        ] {
            assert!(!blocked(a), "{a} must be reachable");
        }
        assert!(blocked_network(ip("64:ff9b::7f00:1"))
            .unwrap()
            .contains("NAT64 form of 127.0.0.1"));
        assert_eq!(
            blocked_network(ip("::ffff:127.0.0.1")).unwrap(),
            "127.0.0.0/8, loopback"
        );
    }

    #[test]
    fn network_membership() {
        assert!(in_network(ip("10.1.2.3"), ip("10.1.0.0"), 16));
        assert!(!in_network(ip("10.2.0.0"), ip("10.1.0.0"), 16));
        assert!(in_network(ip("1.2.3.4"), ip("0.0.0.0"), 0));
        assert!(in_network(ip("1.2.3.4"), ip("1.2.3.4"), 32));
        assert!(!in_network(ip("1.2.3.5"), ip("1.2.3.4"), 32));
        assert!(in_network(ip("fd12::1"), ip("fc00::"), 7));
        assert!(!in_network(ip("::1"), ip("0.0.0.0"), 0));
        assert!(in_network(ip("::1"), ip("::"), 0));
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// A resolver that answers `addrs` for every name and counts its calls.
    fn fake<'a>(
        addrs: &'a [&'a str],
        calls: &'a Cell<u32>,
    ) -> impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + 'a {
        move |_, port| {
            calls.set(calls.get() + 1);
            Ok(addrs
                .iter()
                .map(|a| SocketAddr::new(a.parse().unwrap(), port))
                .collect())
        }
    }

    fn blocked_addr(r: Result<Vec<SocketAddr>, EgressError>) -> IpAddr {
        match r {
            Err(EgressError::Blocked { addr, .. }) => addr,
            other => panic!("expected a blocked address, got {other:?}"),
        }
    }

    #[test]
    fn names_resolving_to_blocked_addresses_are_refused() {
        let calls = Cell::new(0);
        let p = policy(&["api.example.com"]);
        for (answer, refused) in [
            ("127.0.0.1", "127.0.0.1"),
            ("10.0.0.7", "10.0.0.7"),
            ("169.254.169.254", "169.254.169.254"),
            ("100.64.1.1", "100.64.1.1"),
            ("::ffff:192.168.0.1", "192.168.0.1"),
            ("fd00:ec2::254", "fd00:ec2::254"),
            ("0.0.0.0", "0.0.0.0"),
        ] {
            let answers = [answer];
            let r = resolve_checked(
                &p,
                &url("https://api.example.com/"),
                &fake(&answers, &calls),
            );
            assert_eq!(blocked_addr(r), ip(refused), "{answer}");
        }
        assert_eq!(calls.get(), 7);
    }

    #[test]
    fn blocked_error_names_host_address_and_fix() {
        let calls = Cell::new(0);
        let p = policy(&["api.example.com"]);
        let answers = ["10.1.2.3"];
        let err = resolve_checked(
            &p,
            &url("https://api.example.com/x"),
            &fake(&answers, &calls),
        )
        .unwrap_err();
        assert!(err.is_blocked());
        let text = err.to_string();
        assert!(
            text.contains("api.example.com resolves to 10.1.2.3"),
            "{text}"
        );
        assert!(text.contains("10.0.0.0/8, private network"), "{text}");
        assert!(text.contains("add \"10.1.2.3\""), "{text}");
        assert!(text.contains("\"10.1.0.0/16\""), "{text}");
        assert!(text.contains("[capabilities] http"), "{text}");
    }

    #[test]
    fn blocked_addresses_are_dropped_and_public_ones_kept() {
        let calls = Cell::new(0);
        let p = policy(&["api.example.com"]);
        let answers = ["10.0.0.1", "93.184.216.34", "::1", "2606:4700::1"];
        let got = resolve_checked(
            &p,
            &url("https://api.example.com/"),
            &fake(&answers, &calls),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                "93.184.216.34:443".parse::<SocketAddr>().unwrap(),
                "[2606:4700::1]:443".parse().unwrap()
            ]
        );
    }

    #[test]
    fn explicit_entries_allow_blocked_addresses() {
        let calls = Cell::new(0);
        let answers = ["10.1.2.3"];
        let u = url("http://svc.internal:8080/");
        let r = |hosts: &[&str]| resolve_checked(&policy(hosts), &u, &fake(&answers, &calls));
        // The name alone does not allow a private address.
        assert!(r(&["svc.internal"]).unwrap_err().is_blocked());
        // The address, the address with the right port, or a network containing it do.
        assert!(r(&["svc.internal", "10.1.2.3"]).is_ok());
        assert!(r(&["svc.internal", "10.1.2.3:8080"]).is_ok());
        assert!(r(&["svc.internal", "10.1.0.0/16"]).is_ok());
        assert!(r(&["svc.internal", "10.0.0.0/8"]).is_ok());
        // Wrong port, other network, other address: still blocked.
        assert!(r(&["svc.internal", "10.1.2.3:9090"])
            .unwrap_err()
            .is_blocked());
        assert!(r(&["svc.internal", "10.2.0.0/16"])
            .unwrap_err()
            .is_blocked());
        assert!(r(&["svc.internal", "10.1.2.4"]).unwrap_err().is_blocked());
        // An IPv4-mapped answer is allowed by its IPv4 entry, and comes back canonical.
        let mapped = ["::ffff:10.1.2.3"];
        let got = resolve_checked(
            &policy(&["svc.internal", "10.1.2.3"]),
            &u,
            &fake(&mapped, &calls),
        )
        .unwrap();
        assert_eq!(got, vec!["10.1.2.3:8080".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn localhost_is_loopback_without_lookup() {
        for name in ["localhost", "LOCALHOST", "localhost.", "a.b.localhost"] {
            let got = system_resolve(name, 80).unwrap();
            assert_eq!(
                got,
                vec![
                    "127.0.0.1:80".parse::<SocketAddr>().unwrap(),
                    "[::1]:80".parse().unwrap()
                ],
                "{name}"
            );
        }
    }

    #[test]
    fn resolution_happens_once_and_the_checked_address_is_connected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Cell::new(0);
        let answers = ["127.0.0.1"];
        let p = policy(&["svc.test", "127.0.0.1"]);
        let (stream, addr) = connect_with(
            &p,
            &url(&format!("http://svc.test:{port}/")),
            Duration::from_secs(5),
            None,
            &fake(&answers, &calls),
        )
        .unwrap();
        assert_eq!(calls.get(), 1);
        assert_eq!(addr, SocketAddr::new(ip("127.0.0.1"), port));
        assert_eq!(stream.peer_addr().unwrap(), addr);
        let (_accepted, from) = listener.accept().unwrap();
        assert_eq!(from, stream.local_addr().unwrap());
    }

    #[test]
    fn refused_names_never_connect() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let calls = Cell::new(0);
        // Loopback answers are blocked for a plugin that lists only the name.
        let answers = ["127.0.0.1", "::1", "::ffff:127.0.0.1"];
        let err = connect_with(
            &policy(&["svc.test"]),
            &url(&format!("http://svc.test:{port}/")),
            Duration::from_secs(5),
            None,
            &fake(&answers, &calls),
        )
        .unwrap_err();
        assert!(err.is_blocked());
        assert_eq!(
            listener.accept().map_err(|e| e.kind()).unwrap_err(),
            io::ErrorKind::WouldBlock
        );
    }

    #[test]
    fn ip_literals_need_no_resolver() {
        let calls = Cell::new(0);
        let answers: [&str; 0] = [];
        let p = policy(&["127.0.0.1"]);
        let got = resolve_checked(&p, &url("http://127.0.0.1:81/"), &fake(&answers, &calls));
        assert_eq!(
            got.unwrap(),
            vec!["127.0.0.1:81".parse::<SocketAddr>().unwrap()]
        );
        let got = resolve_checked(
            &p,
            &url("http://[::ffff:127.0.0.1]:81/"),
            &fake(&answers, &calls),
        );
        assert_eq!(
            got.unwrap(),
            vec!["127.0.0.1:81".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(calls.get(), 0);
        // A literal of a blocked network the allowlist does not name.
        let err = resolve_checked(
            &policy(&["127.0.0.1"]),
            &url("http://[::1]/"),
            &fake(&answers, &calls),
        )
        .unwrap_err();
        assert_eq!(blocked_addr(Err(err)), ip("::1"));
    }
}
