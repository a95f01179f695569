//! `tark:http` and `tark:ws` host services against real local servers: allowlist,
//! redirect re-checks, size and time limits, TLS trust, WebSocket ownership, queue bounds
//! and lifecycle. Everything runs against 127.0.0.1; `localhost` is the denied name.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::servers::{wait_until, HttpTestServer, WssTestServer};
use serde_json::Value;
use tark_wasmer::lowlevel::{
    next_owner_id, HostServices, HttpError, HttpMethod, PluginContext, WsError, WsEvent,
};
use tark_wasmer::HostConfig;
use tark_wasmer::{Limits, PluginCapabilities};

/// Generous upper bound for waiting on background threads (not a timing assertion).
const WAIT: Duration = Duration::from_secs(10);

struct Env {
    _tmp: tempfile::TempDir,
    ctx: Arc<PluginContext>,
}

/// A plugin context allowed to reach `127.0.0.1` only, trusting `extra_ca`.
fn env_with(limits: Limits, extra_ca: Vec<Vec<u8>>) -> Env {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut config = HostConfig::default();
    config.policy.workspace_root = tmp.path().to_path_buf();
    config.extra_ca_pem = extra_ca;
    config.limits = limits.clone();
    let services = HostServices::new(config).expect("host services");
    let caps = PluginCapabilities {
        http: vec!["127.0.0.1".to_string()],
        ..PluginCapabilities::default()
    };
    let data_dir = tmp.path().join("data");
    std::fs::create_dir_all(&data_dir).expect("data dir");
    let ctx =
        PluginContext::new(services, "net-test", &caps, &data_dir, limits).expect("plugin context");
    Env { _tmp: tmp, ctx }
}

fn env() -> Env {
    env_with(Limits::default(), Vec::new())
}

fn wss_env(wss: &WssTestServer, limits: Limits) -> Env {
    env_with(limits, vec![wss.ca_pem()])
}

fn get(
    ctx: &PluginContext,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<tark_wasmer::lowlevel::HttpResponse, HttpError> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    ctx.http_request(HttpMethod::Get, url, &headers, None)
}

fn post(
    ctx: &PluginContext,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<tark_wasmer::lowlevel::HttpResponse, HttpError> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    ctx.http_request(HttpMethod::Post, url, &headers, Some(body))
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).expect("JSON body")
}

/// Header pairs of an `/echo` answer, as (name, value).
fn echoed_headers(v: &Value) -> Vec<(String, String)> {
    v["headers"]
        .as_array()
        .expect("headers array")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or("").to_string(),
                p[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn echoed_header(v: &Value, name: &str) -> Option<String> {
    echoed_headers(v)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v)
}

// ----------------------------------------------------------------------------- HTTP

#[test]
fn http_get_sends_headers_and_returns_status_headers_body() {
    let srv = HttpTestServer::start();
    let e = env();
    let resp = get(
        &e.ctx,
        &srv.url("/echo?x=1"),
        &[("X-Test", "one"), ("X-Multi", "a")],
    )
    .unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp
        .headers
        .iter()
        .any(|(n, v)| n == "content-type" && v == "application/json"));
    assert!(resp
        .headers
        .iter()
        .all(|(n, _)| *n == n.to_ascii_lowercase()));
    let v = json(&resp.body);
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/echo?x=1");
    assert_eq!(echoed_header(&v, "x-test").as_deref(), Some("one"));
    assert_eq!(srv.requests().len(), 1);
}

#[test]
fn http_post_sends_body_without_default_content_type() {
    let srv = HttpTestServer::start();
    let e = env();
    let resp = post(&e.ctx, &srv.url("/echo"), &[], "{\"a\":1}").unwrap();
    assert_eq!(resp.status, 200);
    let v = json(&resp.body);
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body"], "{\"a\":1}");
    assert_eq!(echoed_header(&v, "content-type"), None);

    let resp = post(
        &e.ctx,
        &srv.url("/send"),
        &[("Content-Type", "application/json")],
        "{\"text\":\"hi\"}",
    )
    .unwrap();
    assert_eq!(json(&resp.body)["id"], "msg-1");
    assert_eq!(srv.sent(), vec!["{\"text\":\"hi\"}".to_string()]);
    assert_eq!(
        srv.requests_to("/send")[0].header("content-type"),
        Some("application/json")
    );
}

#[test]
fn http_error_statuses_are_responses() {
    let srv = HttpTestServer::start();
    let e = env();
    let resp = get(&e.ctx, &srv.url("/status/404"), &[]).unwrap();
    assert_eq!(resp.status, 404);
    assert_eq!(json(&resp.body)["status"], 404);
    let resp = get(&e.ctx, &srv.url("/status/503"), &[]).unwrap();
    assert_eq!(resp.status, 503);
}

#[test]
fn http_openai_routes_answer_through_the_host() {
    let srv = HttpTestServer::start();
    let e = env();
    let models = get(&e.ctx, &srv.url("/v1/models"), &[]).unwrap();
    assert_eq!(json(&models.body)["data"][1]["id"], "test-model-b");

    let req = r#"{"model":"m","messages":[{"role":"system","content":"s"},{"role":"user","content":"hello there"}]}"#;
    let resp = post(
        &e.ctx,
        &srv.url("/v1/chat/completions"),
        &[("Authorization", "Bearer ok")],
        req,
    )
    .unwrap();
    let v = json(&resp.body);
    assert_eq!(v["choices"][0]["message"]["content"], "echo: hello there");
    assert_eq!(v["usage"]["prompt_tokens"], 2);

    let stream_req = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"a b"}]}"#;
    let resp = post(&e.ctx, &srv.url("/v1/chat/completions"), &[], stream_req).unwrap();
    let text: String = resp
        .body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| {
            json(d)["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(text, "echo: a b");
    assert!(resp.body.trim_end().ends_with("data: [DONE]"));

    let bad = post(
        &e.ctx,
        &srv.url("/v1/chat/completions"),
        &[("Authorization", "Bearer bad")],
        req,
    )
    .unwrap();
    assert_eq!(bad.status, 401);
}

#[test]
fn http_denied_host_never_connects() {
    let srv = HttpTestServer::start();
    let e = env();
    let url = srv.localhost_url("/echo");
    assert_eq!(get(&e.ctx, &url, &[]), Err(HttpError::Denied(url.clone())));
    assert_eq!(
        post(&e.ctx, &url, &[], "x"),
        Err(HttpError::Denied(url.clone()))
    );
    assert!(srv.requests().is_empty());
}

#[test]
fn http_redirects_between_allowed_hosts_are_followed() {
    let srv = HttpTestServer::start();
    let e = env();
    // Relative Location.
    let resp = get(&e.ctx, &srv.redirect_url("/echo?r=1", 302), &[]).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp.body)["path"], "/echo?r=1");
    // Absolute Location; 307 keeps POST and its body.
    let resp = post(
        &e.ctx,
        &srv.redirect_url(&srv.url("/echo"), 307),
        &[],
        "payload",
    )
    .unwrap();
    let v = json(&resp.body);
    assert_eq!(
        (v["method"].as_str(), v["body"].as_str()),
        (Some("POST"), Some("payload"))
    );
    // 302 turns POST into a body-less GET.
    let resp = post(
        &e.ctx,
        &srv.redirect_url("/echo", 302),
        &[("Content-Type", "text/plain")],
        "payload",
    )
    .unwrap();
    let v = json(&resp.body);
    assert_eq!(
        (v["method"].as_str(), v["body"].as_str()),
        (Some("GET"), Some(""))
    );
    assert_eq!(echoed_header(&v, "content-type"), None);
}

#[test]
fn http_redirect_to_other_origin_drops_credentials() {
    let a = HttpTestServer::start();
    let b = HttpTestServer::start();
    let e = env();
    let headers = [("Authorization", "Bearer secret"), ("X-Keep", "1")];
    let resp = get(&e.ctx, &a.redirect_url(&b.url("/echo"), 302), &headers).unwrap();
    let v = json(&resp.body);
    assert_eq!(echoed_header(&v, "authorization"), None);
    assert_eq!(echoed_header(&v, "x-keep").as_deref(), Some("1"));
    // Same origin keeps them.
    let resp = get(&e.ctx, &a.redirect_url("/echo", 302), &headers).unwrap();
    assert_eq!(
        echoed_header(&json(&resp.body), "authorization").as_deref(),
        Some("Bearer secret")
    );
}

#[test]
fn http_redirect_to_denied_host_is_refused() {
    let srv = HttpTestServer::start();
    let e = env();
    let target = srv.localhost_url("/echo");
    let err = get(&e.ctx, &srv.redirect_url(&target, 302), &[]).unwrap_err();
    assert_eq!(err, HttpError::RedirectDenied("localhost".to_string()));
    assert_eq!(err.to_string(), "redirect to non-allowed host: localhost");
    // Only the redirect itself reached the server.
    assert_eq!(srv.requests().len(), 1);
}

#[test]
fn http_redirect_hop_limit_is_ten() {
    let srv = HttpTestServer::start();
    let e = env();
    let resp = get(&e.ctx, &srv.url("/hops/10"), &[]).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp.body)["hops"], "done");
    srv.clear_requests();
    match get(&e.ctx, &srv.url("/hops/11"), &[]) {
        Err(HttpError::Transport(t)) => assert!(t.contains("too many redirects"), "{t}"),
        other => panic!("expected too many redirects, got {other:?}"),
    }
    assert_eq!(srv.requests().len(), 11);
}

#[test]
fn http_body_over_limit_is_refused_without_reading_it_all() {
    let srv = HttpTestServer::start();
    let limits = Limits {
        http_response_max: 1000,
        ..Limits::default()
    };
    let e = env_with(limits, Vec::new());
    let ok = get(&e.ctx, &srv.url("/big/1000"), &[]).unwrap();
    assert_eq!(ok.body.len(), 1000);
    assert_eq!(
        get(&e.ctx, &srv.url("/big/1001"), &[]),
        Err(HttpError::TooLarge {
            size: 1001,
            limit: 1000
        })
    );
    // 200 MB announced: refused after reading ~1 KB, reporting the announced size.
    assert_eq!(
        get(&e.ctx, &srv.url("/big/200000000"), &[]),
        Err(HttpError::TooLarge {
            size: 200_000_000,
            limit: 1000
        })
    );
}

#[test]
fn http_timeout_is_reported_as_timeout() {
    let srv = HttpTestServer::start();
    let limits = Limits {
        http_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let e = env_with(limits, Vec::new());
    match get(&e.ctx, &srv.url("/slow/5000"), &[]) {
        Err(HttpError::Timeout(_)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[test]
fn http_invalid_headers_are_transport_errors() {
    let srv = HttpTestServer::start();
    let e = env();
    for headers in [[("Bad Name", "v")], [("X-Ok", "line\r\nbreak")]] {
        match get(&e.ctx, &srv.url("/echo"), &headers) {
            Err(HttpError::Transport(_)) => {}
            other => panic!("expected a transport error, got {other:?}"),
        }
    }
    assert!(srv.requests().is_empty());
}

#[test]
fn http_connection_refused_is_transport_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let e = env();
    match get(&e.ctx, &format!("http://127.0.0.1:{port}/"), &[]) {
        Err(HttpError::Transport(_)) => {}
        other => panic!("expected a transport error, got {other:?}"),
    }
}

#[test]
fn https_trusts_extra_ca_only_when_configured() {
    let srv = HttpTestServer::start_https();
    let trusted = env_with(Limits::default(), vec![srv.ca_pem().unwrap()]);
    let resp = get(&trusted.ctx, &srv.url("/echo"), &[]).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(json(&resp.body)["method"], "GET");

    let untrusted = env();
    match get(&untrusted.ctx, &srv.url("/echo"), &[]) {
        Err(HttpError::Transport(t)) => assert!(t.to_lowercase().contains("certificate"), "{t}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
}

// ----------------------------------------------------------------------------- WebSocket

fn connect(
    ctx: &PluginContext,
    owner: u64,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<u64, WsError> {
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    ctx.ws_connect(owner, url, &headers)
}

fn recv(ctx: &PluginContext, owner: u64, h: u64, max: usize) -> WsEvent {
    ctx.ws_recv(owner, h, WAIT, max).expect("recv")
}

#[test]
fn ws_connect_passes_headers_and_round_trips() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    let h = connect(
        &e.ctx,
        owner,
        &wss.url(),
        &[("Authorization", "Bearer tok"), ("Bad Header", "skipped")],
    )
    .unwrap();
    assert_ne!(h, 0);
    assert!(wait_until(WAIT, || wss.connections().len() == 1));
    assert_eq!(
        wss.connections()[0].header("authorization"),
        Some("Bearer tok")
    );

    e.ctx.ws_send(owner, h, "hello server").unwrap();
    assert!(wait_until(WAIT, || wss.received()
        == vec![vec!["hello server".to_string()]]));

    assert_eq!(wss.push("hello client"), 1);
    assert_eq!(
        recv(&e.ctx, owner, h, 65536),
        WsEvent::Message("hello client".into())
    );
    e.ctx.ws_close(owner, h);
}

#[test]
fn ws_scripted_messages_arrive_first() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    wss.push_to_next_connection(vec!["one".into(), "two".into()]);
    let h = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    assert_eq!(recv(&e.ctx, owner, h, 100), WsEvent::Message("one".into()));
    assert_eq!(recv(&e.ctx, owner, h, 100), WsEvent::Message("two".into()));
    e.ctx.ws_close(owner, h);
}

#[test]
fn ws_only_wss_and_allowed_hosts() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    let plain = format!("ws://127.0.0.1:{}/", wss.port());
    assert_eq!(
        connect(&e.ctx, owner, &plain, &[]),
        Err(WsError::Invalid("Only wss:// URLs are allowed".into()))
    );
    assert!(matches!(
        connect(&e.ctx, owner, &wss.localhost_url(), &[]),
        Err(WsError::Denied(_))
    ));
    assert!(wss.connections().is_empty());
}

#[test]
fn ws_untrusted_certificate_fails_connect() {
    let wss = WssTestServer::start();
    let e = env();
    match connect(&e.ctx, next_owner_id(), &wss.url(), &[]) {
        Err(WsError::Connect(reason)) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}")
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[test]
fn ws_handshake_is_bounded() {
    // Accepts TCP (kernel backlog) but never speaks TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let limits = Limits {
        ws_handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let e = env_with(limits, Vec::new());
    match connect(
        &e.ctx,
        next_owner_id(),
        &format!("wss://127.0.0.1:{port}/"),
        &[],
    ) {
        Err(WsError::Connect(reason)) => assert!(reason.contains("timed out"), "{reason}"),
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    drop(silent);
}

#[test]
fn ws_recv_timeout_and_too_large() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    let h = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    assert_eq!(
        e.ctx
            .ws_recv(owner, h, Duration::from_millis(50), 100)
            .unwrap(),
        WsEvent::Timeout { closed: false }
    );
    assert!(wait_until(WAIT, || wss.open_connections() == 1));
    wss.push("0123456789");
    wss.push("ok");
    assert_eq!(recv(&e.ctx, owner, h, 5), WsEvent::TooLarge);
    assert_eq!(recv(&e.ctx, owner, h, 5), WsEvent::Message("ok".into()));
    e.ctx.ws_close(owner, h);
}

#[test]
fn ws_server_close_is_reported_repeatedly() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    let h = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    assert!(wait_until(WAIT, || wss.open_connections() == 1));
    wss.close_all(1000, "bye");
    assert_eq!(
        recv(&e.ctx, owner, h, 100),
        WsEvent::Closed("close:1000 bye".into())
    );
    assert_eq!(
        recv(&e.ctx, owner, h, 100),
        WsEvent::Closed("close:1000 bye".into())
    );
    assert_eq!(e.ctx.ws_send(owner, h, "late"), Err(WsError::SendFailed));
    e.ctx.ws_close(owner, h);
    assert_eq!(e.ctx.ws_send(owner, h, "late"), Err(WsError::UnknownHandle));
}

#[test]
fn ws_server_drop_is_eof() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    let h = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    assert!(wait_until(WAIT, || wss.open_connections() == 1));
    wss.drop_all();
    assert_eq!(recv(&e.ctx, owner, h, 100), WsEvent::Closed("eof".into()));
}

#[test]
fn ws_queue_overflow_drops_connection_after_queued_messages() {
    let wss = WssTestServer::start();
    let limits = Limits {
        ws_queue_max: 3,
        ..Limits::default()
    };
    let e = wss_env(&wss, limits);
    let owner = next_owner_id();
    let h = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    assert!(wait_until(WAIT, || wss.open_connections() == 1));
    for i in 0..10 {
        wss.push(&format!("m{i}"));
    }
    // The host drops the connection by itself; the server sees the close.
    assert!(wait_until(WAIT, || wss.open_connections() == 0));
    for i in 0..3 {
        assert_eq!(
            recv(&e.ctx, owner, h, 100),
            WsEvent::Message(format!("m{i}"))
        );
    }
    assert_eq!(
        recv(&e.ctx, owner, h, 100),
        WsEvent::Closed("queue_overflow".into())
    );
}

#[test]
fn ws_handles_belong_to_their_owner() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let (a, b) = (next_owner_id(), next_owner_id());
    let h = connect(&e.ctx, a, &wss.url(), &[]).unwrap();
    assert_eq!(e.ctx.ws_send(b, h, "x"), Err(WsError::UnknownHandle));
    assert_eq!(
        e.ctx.ws_recv(b, h, Duration::ZERO, 100),
        Err(WsError::UnknownHandle)
    );
    e.ctx.ws_close(b, h);
    e.ctx.ws_close_all(b);
    // Still open and usable by its owner.
    e.ctx.ws_send(a, h, "still here").unwrap();
    assert!(wait_until(WAIT, || wss.received()
        == vec![vec!["still here".to_string()]]));
    assert_eq!(wss.open_connections(), 1);
    e.ctx.ws_close(a, h);
    assert!(wait_until(WAIT, || wss.open_connections() == 0));
    assert_eq!(e.ctx.ws_send(a, h, "x"), Err(WsError::UnknownHandle));
}

#[test]
fn ws_close_all_closes_only_that_owners_connections() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let (a, b) = (next_owner_id(), next_owner_id());
    let a1 = connect(&e.ctx, a, &wss.url(), &[]).unwrap();
    let a2 = connect(&e.ctx, a, &wss.url(), &[]).unwrap();
    let b1 = connect(&e.ctx, b, &wss.url(), &[]).unwrap();
    assert!(a1 != a2 && a2 != b1 && a1 != b1);
    assert!(wait_until(WAIT, || wss.open_connections() == 3));

    e.ctx.ws_close_all(a);
    assert!(wait_until(WAIT, || wss.open_connections() == 1));
    // The server saw close frames from the host, not EOFs.
    let closed: Vec<String> = wss
        .connections()
        .into_iter()
        .filter_map(|c| c.closed)
        .collect();
    assert_eq!(closed, vec!["closed".to_string(), "closed".to_string()]);
    assert_eq!(e.ctx.ws_send(a, a1, "x"), Err(WsError::UnknownHandle));

    e.ctx.ws_send(b, b1, "b alive").unwrap();
    assert!(wait_until(WAIT, || wss
        .received()
        .iter()
        .any(|msgs| msgs == &vec!["b alive".to_string()])));
    e.ctx.ws_close_all(b);
    assert!(wait_until(WAIT, || wss.open_connections() == 0));
}

#[test]
fn ws_recv_on_one_connection_does_not_block_another() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    let slow = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    assert!(wait_until(WAIT, || wss.open_connections() == 1));
    let fast = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    assert!(wait_until(WAIT, || wss.open_connections() == 2));
    let ctx = Arc::clone(&e.ctx);
    // Blocks in recv on `slow` until the very end of the test.
    let waiter = std::thread::spawn(move || ctx.ws_recv(owner, slow, WAIT, 100));
    for i in 0..3 {
        let text = format!("fast {i}");
        e.ctx.ws_send(owner, fast, &text).unwrap();
        assert!(wss.push_to(1, &text));
        assert_eq!(recv(&e.ctx, owner, fast, 100), WsEvent::Message(text));
    }
    assert!(wss.push_to(0, "wake"));
    assert_eq!(waiter.join().unwrap(), Ok(WsEvent::Message("wake".into())));
    e.ctx.ws_close_all(owner);
}

/// Names of this process's threads (Linux: /proc/self/task/*/comm).
fn thread_names() -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for t in tasks.flatten() {
            if let Ok(name) = std::fs::read_to_string(t.path().join("comm")) {
                names.push(name.trim().to_string());
            }
        }
    }
    names
}

#[test]
fn ws_connection_threads_end_after_close() {
    let wss = WssTestServer::start();
    let e = wss_env(&wss, Limits::default());
    let owner = next_owner_id();
    let h1 = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    let h2 = connect(&e.ctx, owner, &wss.url(), &[]).unwrap();
    // Thread names are truncated to 15 bytes by the kernel; handles stay short here.
    let names = [format!("tark-ws-{h1}"), format!("tark-ws-{h2}")];
    assert!(names.iter().all(|n| n.len() <= 15));
    assert!(wait_until(WAIT, || {
        let live = thread_names();
        names.iter().all(|n| live.contains(n))
    }));
    e.ctx.ws_close(owner, h1);
    e.ctx.ws_close_all(owner);
    assert!(wait_until(WAIT, || {
        let live = thread_names();
        names.iter().all(|n| !live.contains(n))
    }));
    assert!(wait_until(WAIT, || wss.open_connections() == 0));
}
