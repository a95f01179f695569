//! Bench guest plugin (world `hook-world`, `wit/hook.wit`), built with wit-bindgen 0.36 for
//! wasm32-unknown-unknown. The benches in `benches/` drive it through `on-event`, whose
//! `session-id` names a workload and whose `payload-json` carries its argument:
//!
//! | session-id | payload | does | decision |
//! |---|---|---|---|
//! | `noop` | any | nothing | `allow` |
//! | `storage-get` | N | `storage.get("bench-key")` N times | `allow` if all hit, else `block` |
//! | `log-debug` | N | `log.debug(..)` N times | `allow` |
//! | `json` | - | parse + re-serialise 1 MiB of JSON ([`workload::json_roundtrip`]) | `rewrite(<output length>)` |
//! | `fnv` / `xxh` | - | FNV-1a / XXH64 over 16 MiB ([`workload`]) | `rewrite(<hash, 16 hex digits>)` |
//! | `scan` | JSON | redact secrets in every string with regex rules | `rewrite(<JSON>)` or `allow` |
//! | `urls` | JSON | every string that is a URL: host checked against `allowed_hosts` (storage, comma-separated) | `block(<url>)` or `allow` |
//! | `digest` | any | SHA-256 of the payload | `rewrite(<64 hex digits>)` |
//! | `selftest` | - | XXH64 against its published vectors | `allow` or `block` |
//!
//! `name` returns `"Bench Hook"` (the trivial string-returning export). Inputs of the compute
//! workloads are generated once per instance inside the guest, so a call measures only the
//! computation.

wit_bindgen::generate!({
    world: "hook-world",
    path: "../../../wit",
});

mod workload;

use std::sync::OnceLock;

use exports::tark::plugin::hook_plugin::{Guest, HookDecision, HookEvent, HookEventKind};
use regex_lite::Regex;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tark::plugin::{log, storage};

/// The storage key the `storage-get` loop reads (the bench host stores it first).
const BENCH_KEY: &str = "bench-key";

fn json_input() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| workload::make_json(workload::JSON_BYTES))
}

fn hash_input() -> &'static [u8] {
    static DATA: OnceLock<Vec<u8>> = OnceLock::new();
    DATA.get_or_init(|| workload::make_data(workload::HASH_BYTES))
}

fn count(payload: &str) -> u32 {
    payload.trim().parse().unwrap_or(1)
}

/// Secret-looking text and what replaces it.
fn rules() -> &'static [(Regex, &'static str)] {
    static RULES: OnceLock<Vec<(Regex, &'static str)>> = OnceLock::new();
    RULES.get_or_init(|| {
        [
            (r"AKIA[0-9A-Z]{16}", "[aws-key]"),
            (r"gh[pousr]_[A-Za-z0-9]{36,}", "[github-token]"),
            (r"sk-[A-Za-z0-9_-]{20,}", "[api-key]"),
            (r"(?i)bearer\s+[a-z0-9._~+/-]+=*", "Bearer [token]"),
            (r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", "[email]"),
            (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "[ip]"),
            (
                r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
                "[private-key]",
            ),
        ]
        .into_iter()
        .filter_map(|(re, with)| Regex::new(re).ok().map(|r| (r, with)))
        .collect()
    })
}

fn redact(v: &mut Value, changed: &mut bool) {
    match v {
        Value::String(s) => {
            for (re, with) in rules() {
                if re.is_match(s) {
                    *s = re.replace_all(s, *with).into_owned();
                    *changed = true;
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact(i, changed)),
        Value::Object(map) => map.values_mut().for_each(|i| redact(i, changed)),
        _ => {}
    }
}

fn scan(payload: &str) -> HookDecision {
    let mut value: Value = match serde_json::from_str(payload) {
        Ok(v) => v,
        Err(e) => {
            log::warn(&format!("bench-hook: invalid payload JSON, allowing: {e}"));
            return HookDecision::Allow;
        }
    };
    let mut changed = false;
    redact(&mut value, &mut changed);
    if !changed {
        return HookDecision::Allow;
    }
    match serde_json::to_string(&value) {
        Ok(s) => HookDecision::Rewrite(s),
        Err(e) => HookDecision::Block(e.to_string()),
    }
}

fn collect_urls(v: &Value, out: &mut Vec<url::Url>) {
    match v {
        Value::String(s) => {
            for word in s.split_whitespace() {
                if let Ok(u) = url::Url::parse(word) {
                    if u.has_host() {
                        out.push(u);
                    }
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_urls(i, out)),
        Value::Object(map) => map.values().for_each(|i| collect_urls(i, out)),
        _ => {}
    }
}

/// Blocks the first URL whose host (IDNA-normalised) is not allowed.
fn check_urls(payload: &str) -> HookDecision {
    let Ok(value) = serde_json::from_str::<Value>(payload) else {
        return HookDecision::Allow;
    };
    let allowed = storage::get("allowed_hosts").unwrap_or_default();
    let allowed: Vec<&str> = allowed.split(',').map(str::trim).collect();
    let mut urls = Vec::new();
    collect_urls(&value, &mut urls);
    for u in urls {
        let host = u.host_str().unwrap_or_default();
        let ok = allowed
            .iter()
            .any(|a| !a.is_empty() && (host == *a || host.ends_with(&format!(".{a}"))));
        if !ok {
            return HookDecision::Block(format!("host not allowed: {u}"));
        }
    }
    HookDecision::Allow
}

struct BenchHook;

impl Guest for BenchHook {
    fn name() -> String {
        "Bench Hook".to_string()
    }

    fn subscriptions() -> Vec<HookEventKind> {
        vec![
            HookEventKind::SessionStart,
            HookEventKind::SessionEnd,
            HookEventKind::UserMessage,
            HookEventKind::AssistantMessage,
            HookEventKind::BeforeToolCall,
            HookEventKind::AfterToolCall,
        ]
    }

    fn on_event(event: HookEvent) -> HookDecision {
        match event.session_id.as_str() {
            "noop" => HookDecision::Allow,
            "storage-get" => {
                let n = count(&event.payload_json);
                let hits = (0..n).filter(|_| storage::get(BENCH_KEY).is_some()).count();
                if hits == n as usize {
                    HookDecision::Allow
                } else {
                    HookDecision::Block(format!("storage.get hit {hits} of {n} times"))
                }
            }
            "log-debug" => {
                for _ in 0..count(&event.payload_json) {
                    log::debug("bench-hook: a debug line below the host's log level");
                }
                HookDecision::Allow
            }
            "json" => match workload::json_roundtrip(json_input()) {
                Ok(len) => HookDecision::Rewrite(len.to_string()),
                Err(e) => HookDecision::Block(e),
            },
            "fnv" => HookDecision::Rewrite(format!("{:016x}", workload::fnv1a64(hash_input()))),
            "xxh" => HookDecision::Rewrite(format!("{:016x}", workload::xxh64(hash_input(), 0))),
            "scan" => scan(&event.payload_json),
            "urls" => check_urls(&event.payload_json),
            "digest" => {
                let d = Sha256::digest(event.payload_json.as_bytes());
                HookDecision::Rewrite(d.iter().map(|b| format!("{b:02x}")).collect())
            }
            "selftest" => {
                if workload::xxh64_self_test() {
                    HookDecision::Allow
                } else {
                    HookDecision::Block("xxh64 does not match its test vectors".into())
                }
            }
            other => HookDecision::Block(format!("unknown bench workload '{other}'")),
        }
    }
}

export!(BenchHook);
