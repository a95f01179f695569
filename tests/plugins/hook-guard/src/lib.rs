//! Example hook plugin (world `hook-world`, `wit/hook.wit`), built with wit-bindgen 0.36.
//!
//! It shows each kind of hook decision on a real event stream: blocking (a forbidden word
//! in a user message, the `shell` tool), rewriting (a secret token in a user message is
//! redacted) and observing with side effects in storage (last session id, tool-call
//! count). Payloads are untrusted JSON text: anything unparsable is let through with a
//! warning, never a trap.

wit_bindgen::generate!({
    world: "hook-world",
    path: "../../../wit",
});

use exports::tark::plugin::hook_plugin::{Guest, HookDecision, HookEvent, HookEventKind};
use serde_json::Value;
use tark::plugin::{log, storage};

/// A user message containing this word is blocked.
const FORBIDDEN_WORD: &str = "forbidden";
/// Text in a user message that is replaced by [`REDACTED`].
const SECRET: &str = "secret-token";
/// What [`SECRET`] is replaced with.
const REDACTED: &str = "[redacted]";
/// The tool this hook refuses to let run.
const BLOCKED_TOOL: &str = "shell";

struct HookGuard;

impl Guest for HookGuard {
    fn name() -> String {
        "Hook Guard".to_string()
    }

    fn subscriptions() -> Vec<HookEventKind> {
        vec![
            HookEventKind::UserMessage,
            HookEventKind::BeforeToolCall,
            HookEventKind::AfterToolCall,
            HookEventKind::SessionStart,
        ]
    }

    fn on_event(event: HookEvent) -> HookDecision {
        let payload: Value = match serde_json::from_str(&event.payload_json) {
            Ok(v) => v,
            Err(e) => {
                log::warn(&format!(
                    "hook-guard: invalid payload JSON for {}, allowing: {e}",
                    kind_name(event.kind)
                ));
                return HookDecision::Allow;
            }
        };
        match event.kind {
            HookEventKind::UserMessage => on_user_message(payload),
            HookEventKind::BeforeToolCall => on_before_tool_call(&payload),
            HookEventKind::AfterToolCall => on_after_tool_call(),
            HookEventKind::SessionStart => on_session_start(&event.session_id),
            _ => HookDecision::Allow,
        }
    }
}

/// The WIT name of an event kind, for log lines.
fn kind_name(kind: HookEventKind) -> &'static str {
    match kind {
        HookEventKind::SessionStart => "session-start",
        HookEventKind::SessionEnd => "session-end",
        HookEventKind::UserMessage => "user-message",
        HookEventKind::AssistantMessage => "assistant-message",
        HookEventKind::BeforeToolCall => "before-tool-call",
        HookEventKind::AfterToolCall => "after-tool-call",
    }
}

/// Blocks a forbidden word, else redacts the secret token (keeping the other fields).
fn on_user_message(mut payload: Value) -> HookDecision {
    let Some(content) = payload.get("content").and_then(Value::as_str) else {
        return HookDecision::Allow;
    };
    if content.contains(FORBIDDEN_WORD) {
        return HookDecision::Block("message contains a forbidden word".to_string());
    }
    if !content.contains(SECRET) {
        return HookDecision::Allow;
    }
    let redacted = content.replace(SECRET, REDACTED);
    if let Some(field) = payload.get_mut("content") {
        *field = Value::String(redacted);
    }
    HookDecision::Rewrite(payload.to_string())
}

/// Refuses the blocked tool; every other tool runs.
fn on_before_tool_call(payload: &Value) -> HookDecision {
    if payload.get("tool").and_then(Value::as_str) == Some(BLOCKED_TOOL) {
        HookDecision::Block("shell is not allowed".to_string())
    } else {
        HookDecision::Allow
    }
}

/// Counts finished tool calls in storage key `tool_calls` (a decimal string).
fn on_after_tool_call() -> HookDecision {
    // A missing or non-numeric value (someone else wrote it) restarts the count at 0.
    let count = storage::get("tool_calls")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
        .saturating_add(1);
    if let Err(e) = storage::set("tool_calls", &count.to_string()) {
        log::warn(&format!("hook-guard: cannot store tool_calls: {e}"));
    }
    HookDecision::Allow
}

/// Remembers the id of the session that started last in storage key `last_session`.
fn on_session_start(session_id: &str) -> HookDecision {
    if let Err(e) = storage::set("last_session", session_id) {
        log::warn(&format!("hook-guard: cannot store last_session: {e}"));
    }
    HookDecision::Allow
}

export!(HookGuard);
