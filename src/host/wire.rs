//! tark's wire texts: the JSON envelopes the `http` and `ws` host functions return to
//! guests (`{"ok":...}`, `{"error":...}`, ...) and the headers JSON they accept. Both ABI
//! adapters use these, so the legacy `tark:ws` imports and the canonical `ws` interface
//! (which returns the same JSON as `string`) answer with the same bytes; the adapters only
//! move them in and out of guest memory.
//!
//! Keys are in alphabetical order, as tark's `serde_json::json!` produces them (its
//! `serde_json` has no `preserve_order`); `tests/legacy_abi.rs` and the unit tests below
//! pin the exact texts.

use serde_json::{Map, Value};

use super::http::{HttpError, HttpResponse};
use super::ws::{WsError, WsEvent};

/// Parse tark's headers JSON: an array of `[name, value]` pairs; anything else is no headers.
pub fn parse_headers(json: &str) -> Vec<(String, String)> {
    serde_json::from_str::<Vec<(String, String)>>(json).unwrap_or_default()
}

/// Build a JSON object with keys in alphabetical order, as tark's `json!` does.
fn envelope(mut pairs: Vec<(&str, Value)>) -> String {
    pairs.sort_by(|a, b| a.0.cmp(b.0));
    let mut map = Map::new();
    for (k, v) in pairs {
        map.insert(k.to_string(), v);
    }
    Value::Object(map).to_string()
}

/// `{"error": "<msg>"}`
pub fn error_envelope(msg: &str) -> String {
    envelope(vec![("error", Value::String(msg.to_string()))])
}

/// tark's HTTP answer envelope: `{"body", "headers", "status"}` or `{"error"}`. Unbounded:
/// [`crate::host::http::bounded_envelope`] applies the plugin's size limit to it.
pub fn http_envelope(result: &Result<HttpResponse, HttpError>) -> String {
    match result {
        Ok(resp) => envelope(vec![
            ("body", Value::String(resp.body.clone())),
            (
                "headers",
                Value::Array(
                    resp.headers
                        .iter()
                        .map(|(k, v)| {
                            Value::Array(vec![Value::String(k.clone()), Value::String(v.clone())])
                        })
                        .collect(),
                ),
            ),
            ("status", Value::from(resp.status)),
        ]),
        Err(e) => error_envelope(&e.to_string()),
    }
}

/// The answer to `ws.connect`: `{"handle": n, "ok": true}` or the error envelope.
pub fn ws_connect_envelope(result: &Result<u64, WsError>) -> String {
    match result {
        Ok(handle) => ws_handle_envelope(*handle),
        Err(e) => ws_error_envelope(e),
    }
}

/// The answer to `ws.send`: `{"ok": true}` or the error envelope.
pub fn ws_send_envelope(result: &Result<(), WsError>) -> String {
    match result {
        Ok(()) => ws_ok_envelope(),
        Err(e) => ws_error_envelope(e),
    }
}

/// The answer to `ws.recv`.
pub fn ws_recv_envelope(result: &Result<WsEvent, WsError>) -> String {
    match result {
        Ok(WsEvent::Message(m)) => envelope(vec![
            ("closed", Value::Bool(false)),
            ("error", Value::Null),
            ("message", Value::String(m.clone())),
            ("ok", Value::Bool(true)),
        ]),
        Ok(WsEvent::TooLarge) => envelope(vec![
            ("closed", Value::Bool(false)),
            ("error", Value::String("message_too_large".into())),
            ("message", Value::Null),
            ("ok", Value::Bool(true)),
        ]),
        Ok(WsEvent::Closed(reason)) => envelope(vec![
            ("closed", Value::Bool(true)),
            ("error", Value::String(reason.clone())),
            ("message", Value::Null),
            ("ok", Value::Bool(true)),
        ]),
        Ok(WsEvent::Timeout { closed }) => envelope(vec![
            ("closed", Value::Bool(*closed)),
            ("error", Value::Null),
            ("message", Value::Null),
            ("ok", Value::Bool(true)),
        ]),
        Err(e) => ws_error_envelope(e),
    }
}

/// `{"error": "<msg>", "ok": false}`
pub fn ws_error_envelope(e: &WsError) -> String {
    envelope(vec![
        ("error", Value::String(e.to_string())),
        ("ok", Value::Bool(false)),
    ])
}

/// `{"ok": true}` (also the answer to `ws.close`).
pub fn ws_ok_envelope() -> String {
    envelope(vec![("ok", Value::Bool(true))])
}

/// `{"handle": n, "ok": true}`
pub fn ws_handle_envelope(handle: u64) -> String {
    envelope(vec![
        ("handle", Value::from(handle)),
        ("ok", Value::Bool(true)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_have_tark_key_order() {
        assert_eq!(error_envelope("x"), r#"{"error":"x"}"#);
        assert_eq!(ws_handle_envelope(3), r#"{"handle":3,"ok":true}"#);
        assert_eq!(ws_connect_envelope(&Ok(3)), r#"{"handle":3,"ok":true}"#);
        assert_eq!(ws_send_envelope(&Ok(())), r#"{"ok":true}"#);
        assert_eq!(
            ws_send_envelope(&Err(WsError::SendFailed)),
            r#"{"error":"WebSocket send failed","ok":false}"#
        );
        assert_eq!(
            ws_recv_envelope(&Ok(WsEvent::Message("hi".into()))),
            r#"{"closed":false,"error":null,"message":"hi","ok":true}"#
        );
        assert_eq!(
            ws_recv_envelope(&Err(WsError::UnknownHandle)),
            r#"{"error":"Unknown websocket handle","ok":false}"#
        );
        assert_eq!(
            ws_recv_envelope(&Ok(WsEvent::Timeout { closed: false })),
            r#"{"closed":false,"error":null,"message":null,"ok":true}"#
        );
        let resp = HttpResponse {
            status: 200,
            headers: vec![("a".into(), "b".into())],
            body: "x".into(),
        };
        assert_eq!(
            http_envelope(&Ok(resp)),
            r#"{"body":"x","headers":[["a","b"]],"status":200}"#
        );
        assert_eq!(
            http_envelope(&Err(HttpError::Timeout("t".into()))),
            r#"{"error":"timeout: t"}"#
        );
    }

    #[test]
    fn headers_parse_like_tark() {
        assert_eq!(
            parse_headers(r#"[["A","b"]]"#),
            vec![("A".to_string(), "b".to_string())]
        );
        assert!(parse_headers(r#"{"A":"b"}"#).is_empty());
        assert!(parse_headers("").is_empty());
        assert!(parse_headers(r#"[["A"]]"#).is_empty());
    }
}
