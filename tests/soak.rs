//! Load and soak: many thousands of calls across several plugins (both ABIs) on several
//! threads, with guest memory and host RSS measured before and after. tark's host leaks
//! ~8 KiB of guest memory per call (no `dealloc`: ~80 MiB per 10 000 polls); here both
//! stay flat. Call counts are bounded; nothing is timed.

mod common;

use std::thread;

use common::fixtures::{compilers, TestEnv};
use tark_wasmer::engine::Compiler;
use tark_wasmer::lowlevel::Val;
use tark_wasmer::plugin::{Message, Role};

/// Resident set size of this process in KiB (Linux).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

const GATEWAY_EVENT: &str =
    r#"{"t":"MESSAGE_CREATE","d":{"channel_id":"c","author_id":"u","content":"soak"}}"#;

/// Run `n` calls of `f` on a fresh host for `plugin`; returns (pages after warm-up, pages at end).
fn soak(
    env: &TestEnv,
    compiler: Compiler,
    plugin: &str,
    n: usize,
    f: impl Fn(&mut tark_wasmer::PluginInstance),
) -> (u32, u32, u64) {
    let mut host = env.host(compiler);
    let p = host.get_mut(plugin).expect("loaded");
    for _ in 0..200 {
        f(p);
    }
    let start = p.memory_pages().expect("live instance");
    for _ in 0..n {
        f(p);
    }
    let end = p.memory_pages().expect("live instance");
    assert_eq!(
        p.instances_created(),
        1,
        "{plugin}: the instance was never replaced"
    );
    (start, end, p.instances_created())
}

#[test]
fn thousands_of_calls_keep_guest_memory_and_host_rss_flat() {
    let env = TestEnv::new();
    for p in [
        "legacy-channel",
        "chat-channel",
        "conformance",
        "legacy-provider",
    ] {
        env.install_example(p);
    }
    for compiler in compilers() {
        // Warm everything up once so allocator arenas and caches exist before measuring.
        let _ = soak(&env, compiler, "legacy-channel", 100, |p| {
            p.channel_handle_gateway_event(GATEWAY_EVENT)
                .expect("event");
        });
        let rss_before = rss_kib();
        let env = &env;
        let results: Vec<(String, u32, u32)> = thread::scope(|s| {
            let handles = vec![
                s.spawn(move || {
                    // The poll-loop shape: one long-lived instance, 100 000 R/PR calls.
                    let (a, b, _) = soak(env, compiler, "legacy-channel", 100_000, |p| {
                        let msgs = p
                            .channel_handle_gateway_event(GATEWAY_EVENT)
                            .expect("event");
                        assert_eq!(msgs.len(), 1);
                    });
                    ("legacy-channel".to_string(), a, b)
                }),
                s.spawn(move || {
                    let (a, b, _) = soak(env, compiler, "chat-channel", 20_000, |p| {
                        let msgs = p
                            .channel_handle_gateway_event(GATEWAY_EVENT)
                            .expect("event");
                        assert_eq!(msgs.len(), 1);
                    });
                    ("chat-channel".to_string(), a, b)
                }),
                s.spawn(move || {
                    let payload = "z".repeat(4096);
                    let (a, b, _) = soak(env, compiler, "conformance", 20_000, |p| {
                        let v = p
                            .call_canonical(
                                "conformance",
                                "relay-string",
                                &[Val::string(payload.clone())],
                            )
                            .expect("relay");
                        assert_eq!(v, Some(Val::string(payload.clone())));
                    });
                    ("conformance".to_string(), a, b)
                }),
                s.spawn(move || {
                    let msgs = vec![Message {
                        role: Role::User,
                        content: "hello".into(),
                    }];
                    let (a, b, _) = soak(env, compiler, "legacy-provider", 20_000, |p| {
                        let r = p.provider_chat(&msgs, "echo").expect("chat");
                        assert_eq!(r.text, "hello");
                    });
                    ("legacy-provider".to_string(), a, b)
                }),
            ];
            handles
                .into_iter()
                .map(|h| h.join().expect("soak thread"))
                .collect()
        });
        for (plugin, start, end) in &results {
            assert!(
                end <= &(start + 1),
                "{compiler}: {plugin} guest memory grew from {start} to {end} pages"
            );
        }
        let rss_after = rss_kib();
        let growth_mib = rss_after.saturating_sub(rss_before) / 1024;
        // 160 000 calls: tark's host would have leaked over a gigabyte of guest memory.
        assert!(
            growth_mib < 64,
            "{compiler}: host RSS grew by {growth_mib} MiB ({rss_before} -> {rss_after} KiB)"
        );
    }
}
