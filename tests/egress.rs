//! Egress rules (`src/host/net.rs`) against real servers on 127.0.0.1: names resolving
//! to blocked networks are refused before any connection unless the allowlist names the
//! address (with or without port, or a network), redirect hops and WebSockets follow
//! the same rules, and URL parsing differentials (userinfo, fragments, trailing dots,
//! case, IDN, numeric IPv4, IPv6 forms, ports) lead to the asserted decision.
//!
//! Network rule of this file: the only connect targets are 127.0.0.1 and ::1. Names are
//! `localhost` and `*.localhost`, which the host maps to loopback without a DNS lookup.

mod common;

use std::sync::Arc;

use common::servers::{HttpTestServer, WssTestServer};
use serde_json::Value;
use tark_wasmer::lowlevel::{
    next_owner_id, HostServices, HttpError, HttpMethod, HttpResponse, PluginContext, WsError,
};
use tark_wasmer::HostConfig;
use tark_wasmer::{Limits, PluginCapabilities};

struct Env {
    _tmp: tempfile::TempDir,
    ctx: Arc<PluginContext>,
}

/// A plugin context with this `http` allowlist, trusting `extra_ca`.
fn env_ca(hosts: &[&str], extra_ca: Vec<Vec<u8>>) -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = HostConfig::default();
    config.policy.workspace_root = tmp.path().to_path_buf();
    config.extra_ca_pem = extra_ca;
    let services = HostServices::new(config).expect("host services");
    let caps = PluginCapabilities {
        http: hosts.iter().map(|h| h.to_string()).collect(),
        ..PluginCapabilities::default()
    };
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let ctx = PluginContext::new(services, "egress-test", &caps, &data_dir, Limits::default())
        .expect("plugin context");
    Env { _tmp: tmp, ctx }
}

fn env(hosts: &[&str]) -> Env {
    env_ca(hosts, Vec::new())
}

fn get(e: &Env, url: &str) -> Result<HttpResponse, HttpError> {
    e.ctx.http_request(HttpMethod::Get, url, &[], None)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("JSON body")
}

fn echoed_host(resp: &HttpResponse) -> Option<String> {
    json(&resp.body)["headers"]
        .as_array()?
        .iter()
        .find(|p| p[0].as_str() == Some("host"))
        .and_then(|p| p[1].as_str().map(str::to_string))
}

/// The request reached the server: 200 from `/echo`.
fn assert_reached(r: Result<HttpResponse, HttpError>, what: &str) -> HttpResponse {
    match r {
        Ok(resp) if resp.status == 200 => resp,
        other => panic!("{what}: expected 200, got {other:?}"),
    }
}

/// Refused by the egress rules with a text naming `host` and `addr`.
fn assert_blocked(r: Result<HttpResponse, HttpError>, host: &str, addr: &str, what: &str) {
    match r {
        Err(HttpError::Blocked(text)) => {
            assert!(
                text.contains(&format!("{host} resolves to {addr}")),
                "{what}: {text}"
            );
            assert!(text.contains("[capabilities] http"), "{what}: {text}");
        }
        other => panic!("{what}: expected Blocked, got {other:?}"),
    }
}

/// Refused by the allowlist (host rule).
fn assert_denied(r: Result<HttpResponse, HttpError>, what: &str) {
    match r {
        Err(HttpError::Denied(_)) => {}
        other => panic!("{what}: expected Denied, got {other:?}"),
    }
}

// ------------------------------------------------------------------ blocked networks

#[test]
fn allowlisted_name_resolving_to_loopback_is_refused_before_connecting() {
    let srv = HttpTestServer::start();
    let e = env(&["localhost"]);
    let url = srv.localhost_url("/echo");
    let err = get(&e, &url).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("address not allowed: localhost resolves to 127.0.0.1"),
        "{text}"
    );
    assert!(text.contains("127.0.0.0/8, loopback"), "{text}");
    assert!(text.contains("add \"127.0.0.1\""), "{text}");
    assert_blocked(
        e.ctx.http_request(HttpMethod::Post, &url, &[], Some("x")),
        "localhost",
        "127.0.0.1",
        "POST",
    );
    assert!(srv.requests().is_empty());
}

#[test]
fn listing_the_address_allows_the_name_and_keeps_the_host_header() {
    let srv = HttpTestServer::start();
    let e = env(&["localhost", "127.0.0.1"]);
    let resp = assert_reached(get(&e, &srv.localhost_url("/echo")), "localhost");
    assert_eq!(
        echoed_host(&resp).as_deref(),
        Some(format!("localhost:{}", srv.port()).as_str())
    );
}

#[test]
fn address_entries_with_port_and_networks() {
    let srv = HttpTestServer::start();
    let port = srv.port();
    let other = port.wrapping_add(1).max(1);
    let name_url = srv.localhost_url("/echo");
    let ip_url = srv.url("/echo");

    // Address with the right port: both the name and the literal on that port.
    let e = env(&["localhost", &format!("127.0.0.1:{port}")]);
    assert_reached(get(&e, &name_url), "name, address:port");
    assert_reached(get(&e, &ip_url), "literal, address:port");
    // Address with another port: the name is blocked, the literal is not allowlisted.
    let e = env(&["localhost", &format!("127.0.0.1:{other}")]);
    assert_blocked(get(&e, &name_url), "localhost", "127.0.0.1", "wrong port");
    assert_denied(get(&e, &ip_url), "literal, wrong port");
    // Networks containing the address.
    for net in ["127.0.0.0/8", "127.0.0.1/32", "::ffff:127.0.0.0/104"] {
        let e = env(&["localhost", net]);
        assert_reached(get(&e, &name_url), net);
        assert_reached(get(&e, &ip_url), net);
    }
    // Networks that do not contain it.
    for net in ["10.0.0.0/8", "127.0.0.2/32", "127.0.0.0/33"] {
        let e = env(&["localhost", net]);
        assert_blocked(get(&e, &name_url), "localhost", "127.0.0.1", net);
        assert_denied(get(&e, &ip_url), net);
    }
    // `::1/128` allows only the name's IPv6 answer: the connect goes to ::1 (where
    // nothing listens), never to the unlisted 127.0.0.1.
    let e = env(&["localhost", "::1/128"]);
    match get(&e, &name_url) {
        Err(HttpError::Transport(_)) => {}
        other => panic!("expected a connection attempt to ::1 only, got {other:?}"),
    }
    assert_denied(get(&e, &ip_url), "::1/128");
    assert!(srv.requests().iter().all(|r| r.path_only() == "/echo"));
    assert_eq!(srv.requests().len(), 2 + 3 * 2);
}

#[test]
fn redirect_hop_to_a_blocked_address_is_refused() {
    let a = HttpTestServer::start();
    let b = HttpTestServer::start();
    // 127.0.0.1 only on a's port: b under the name `localhost` is a blocked address.
    let e = env(&[&format!("127.0.0.1:{}", a.port()), "localhost"]);
    let target = b.localhost_url("/echo");
    assert_blocked(
        get(&e, &a.redirect_url(&target, 302)),
        "localhost",
        "127.0.0.1",
        "redirect hop",
    );
    assert_eq!(a.requests().len(), 1);
    assert!(b.requests().is_empty());
    // Naming b's address too lets the hop through.
    let e = env(&[
        &format!("127.0.0.1:{}", a.port()),
        &format!("127.0.0.1:{}", b.port()),
        "localhost",
    ]);
    assert_reached(get(&e, &a.redirect_url(&target, 302)), "allowed hop");
    assert_eq!(b.requests().len(), 1);
}

#[test]
fn https_by_name_verifies_the_name_and_connects_to_the_checked_address() {
    let srv = HttpTestServer::start_https();
    let ca = vec![srv.ca_pem().expect("ca")];
    let e = env_ca(&["localhost", "127.0.0.1"], ca.clone());
    let resp = assert_reached(get(&e, &srv.localhost_url("/echo")), "https localhost");
    assert_eq!(
        echoed_host(&resp).as_deref(),
        Some(format!("localhost:{}", srv.port()).as_str())
    );
    // A name the certificate does not cover fails TLS (after the checks passed).
    let e = env_ca(&["other.localhost", "127.0.0.1"], ca.clone());
    let url = format!("https://other.localhost:{}/echo", srv.port());
    match get(&e, &url) {
        Err(HttpError::Transport(t)) => assert!(t.to_lowercase().contains("certificate"), "{t}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
    // Blocked before TLS when only the name is listed.
    let e = env_ca(&["localhost"], ca);
    assert_blocked(
        get(&e, &srv.localhost_url("/echo")),
        "localhost",
        "127.0.0.1",
        "https",
    );
    assert_eq!(srv.requests().len(), 1);
}

#[test]
fn websocket_names_follow_the_same_rules() {
    let wss = WssTestServer::start();
    let owner = next_owner_id();
    let e = env_ca(&["localhost"], vec![wss.ca_pem()]);
    match e.ctx.ws_connect(owner, &wss.localhost_url(), &[]) {
        Err(WsError::Blocked(text)) => {
            assert!(text.contains("localhost resolves to 127.0.0.1"), "{text}");
            assert!(text.contains("add \"127.0.0.1\""), "{text}");
        }
        other => panic!("expected Blocked, got {other:?}"),
    }
    assert!(wss.connections().is_empty());

    let e = env_ca(&["localhost", "127.0.0.1"], vec![wss.ca_pem()]);
    let h = e
        .ctx
        .ws_connect(owner, &wss.localhost_url(), &[])
        .expect("connect by name");
    assert_ne!(h, 0);
    assert!(common::servers::wait_until(
        std::time::Duration::from_secs(10),
        || wss.connections().len() == 1
    ));
    let conn = wss.connections().remove(0);
    assert_eq!(
        conn.header("host"),
        Some(format!("localhost:{}", wss.port()).as_str())
    );
    e.ctx.ws_close_all(owner);
}

// ------------------------------------------------------------------ parsing differentials

#[test]
fn userinfo_and_fragment_tricks() {
    let srv = HttpTestServer::start();
    let port = srv.port();
    let e = env(&["127.0.0.1"]);
    // The host is what follows `@`: `localhost`, not the allowlisted userinfo.
    assert_denied(
        get(&e, &format!("http://127.0.0.1@localhost:{port}/echo")),
        "userinfo",
    );
    assert_denied(
        get(
            &e,
            &format!("http://127.0.0.1:{port}@localhost:{port}/echo"),
        ),
        "userinfo with port",
    );
    // `#@allowed`: the part after `#` is a fragment, the host is `localhost`.
    assert_denied(
        get(&e, &format!("http://localhost:{port}#@127.0.0.1/echo")),
        "fragment",
    );
    assert_denied(
        get(&e, &format!("http://localhost:{port}?@127.0.0.1/echo")),
        "query",
    );
    // Backslash is a path separator for http URLs: host `localhost`.
    assert_denied(
        get(&e, &format!("http://localhost:{port}\\@127.0.0.1/echo")),
        "backslash",
    );
    assert!(srv.requests().is_empty());
    // Userinfo on an allowed host is fine (and not sent as a header).
    let resp = assert_reached(
        get(&e, &format!("http://user:pw@127.0.0.1:{port}/echo")),
        "userinfo on allowed host",
    );
    assert_eq!(
        echoed_host(&resp).as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
}

#[test]
fn trailing_dots_and_case() {
    let srv = HttpTestServer::start();
    let port = srv.port();
    let e = env(&["localhost", "127.0.0.1"]);
    assert_reached(
        get(&e, &format!("http://localhost.:{port}/echo")),
        "trailing dot",
    );
    assert_reached(
        get(&e, &format!("http://LOCALHOST:{port}/echo")),
        "upper case",
    );
    assert_reached(get(&e, &format!("http://LocalHost.:{port}/echo")), "both");
    // Entries are normalised the same way; the name still cannot reach loopback alone.
    for entry in ["localhost.", "LOCALHOST", "LocalHost."] {
        let e = env(&[entry]);
        assert_blocked(
            get(&e, &format!("http://localhost.:{port}/echo")),
            "localhost.",
            "127.0.0.1",
            entry,
        );
    }
    // Two trailing dots are not the same name.
    let e = env(&["localhost", "127.0.0.1"]);
    assert_denied(
        get(&e, &format!("http://localhost..:{port}/echo")),
        "two dots",
    );
    assert_eq!(srv.requests().len(), 3);
}

#[test]
fn idn_and_punycode() {
    let srv = HttpTestServer::start();
    let port = srv.port();
    let url = format!("http://bücher.localhost:{port}/echo");
    for entry in [
        "bücher.localhost",
        "xn--bcher-kva.localhost",
        "BÜCHER.localhost",
    ] {
        let e = env(&[entry, "127.0.0.1"]);
        let resp = assert_reached(get(&e, &url), entry);
        assert_eq!(
            echoed_host(&resp).as_deref(),
            Some(format!("xn--bcher-kva.localhost:{port}").as_str()),
            "{entry}"
        );
        assert_reached(
            get(&e, &format!("http://xn--bcher-kva.localhost:{port}/echo")),
            entry,
        );
    }
    // A look-alike ASCII entry does not match, and the IDN name alone is blocked.
    assert_denied(get(&env(&["bucher.localhost", "127.0.0.1"]), &url), "ascii");
    assert_blocked(
        get(&env(&["bücher.localhost"]), &url),
        "xn--bcher-kva.localhost",
        "127.0.0.1",
        "idn alone",
    );
}

#[test]
fn numeric_ipv4_forms_are_the_same_address() {
    let srv = HttpTestServer::start();
    let port = srv.port();
    let forms = [
        format!("http://2130706433:{port}/echo"),
        format!("http://0177.0.0.1:{port}/echo"),
        format!("http://0x7f.1:{port}/echo"),
        format!("http://0x7f000001:{port}/echo"),
        format!("http://127.1:{port}/echo"),
    ];
    let allowed = env(&["127.0.0.1"]);
    for url in &forms {
        let resp = assert_reached(get(&allowed, url), url);
        // The url crate serialises the canonical address.
        assert_eq!(
            echoed_host(&resp).as_deref(),
            Some(format!("127.0.0.1:{port}").as_str()),
            "{url}"
        );
    }
    // A name entry never matches an IP literal, whatever its spelling.
    let by_name = env(&["localhost"]);
    for url in &forms {
        assert_denied(get(&by_name, url), url);
    }
    // Another loopback address is another address: not allowlisted.
    assert_denied(
        get(&allowed, &format!("http://0x7f.2:{port}/echo")),
        "127.0.0.2",
    );
    assert_eq!(srv.requests().len(), forms.len());
}

#[test]
fn ipv6_forms() {
    let srv = HttpTestServer::start();
    let port = srv.port();
    // IPv4-mapped IPv6 is the IPv4 address (compared and connected canonically).
    let e = env(&["127.0.0.1"]);
    let resp = assert_reached(
        get(&e, &format!("http://[::ffff:127.0.0.1]:{port}/echo")),
        "mapped",
    );
    assert_eq!(
        echoed_host(&resp).as_deref(),
        Some(format!("[::ffff:7f00:1]:{port}").as_str())
    );
    assert_reached(
        get(&e, &format!("http://[::ffff:7f00:1]:{port}/echo")),
        "mapped hex",
    );
    assert_denied(
        get(
            &env(&["localhost"]),
            &format!("http://[::ffff:127.0.0.1]:{port}/echo"),
        ),
        "mapped by name",
    );
    // IPv4-compatible and NAT64 forms are other addresses: not allowlisted.
    for host in ["[::127.0.0.1]", "[64:ff9b::7f00:1]"] {
        assert_denied(get(&e, &format!("http://{host}:{port}/echo")), host);
    }
    // Zone ids are not valid in URLs: refused as invalid, never connected.
    for url in [
        format!("http://[fe80::1%25lo]:{port}/echo"),
        format!("http://[fe80::1%lo]:{port}/echo"),
        format!("http://[::1%251]:{port}/echo"),
    ] {
        assert_denied(get(&env(&["fe80::1", "::1"]), &url), &url);
    }
    // Bracketed ::1: denied unless listed; when listed, the connect goes to ::1
    // (nothing listens there, so a transport error, not a policy refusal).
    assert_denied(
        get(&e, &format!("http://[::1]:{port}/echo")),
        "::1 unlisted",
    );
    match get(&env(&["::1"]), &format!("http://[::1]:{port}/echo")) {
        Err(HttpError::Transport(_)) | Ok(_) => {}
        other => panic!("expected an attempted connection to ::1, got {other:?}"),
    }
    assert_eq!(srv.requests().len(), 2);
}

#[test]
fn ports_with_and_without() {
    let srv = HttpTestServer::start();
    let port = srv.port();
    let url = srv.url("/echo");
    // Without a port: any port.
    assert_reached(get(&env(&["127.0.0.1"]), &url), "no port");
    assert_reached(get(&env(&["[127.0.0.1]"]), &url), "bracketed, no port");
    // With the port: that port only, including the scheme default.
    assert_reached(get(&env(&[&format!("127.0.0.1:{port}")]), &url), "port");
    let e = env(&["127.0.0.1:80"]);
    assert_denied(get(&e, &url), "other port");
    // Names never take a port: `localhost:<port>` matches nothing.
    let e = env(&[&format!("localhost:{port}"), "127.0.0.1"]);
    assert_denied(get(&e, &srv.localhost_url("/echo")), "name with port");
    // Port 0 and out-of-range ports are not entries.
    assert_denied(get(&env(&["127.0.0.1:0"]), &url), "port 0");
    assert_denied(get(&env(&["127.0.0.1:70000"]), &url), "port too large");
    assert_eq!(srv.requests().len(), 3);
}
