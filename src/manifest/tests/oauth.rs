//! Tests of `oauth.rs`: `${VAR}` placeholder expansion and the unresolved-field report.

use super::*;
use crate::manifest::oauth::expand_placeholders;

fn env(name: &str) -> Option<String> {
    match name {
        "HOST" => Some("accounts.example.com".into()),
        "CLIENT_ID" => Some("cid-${NOT_REEXPANDED}".into()),
        "SCOPE" => Some("email".into()),
        "PORT" => Some("8080".into()),
        "PROMPT" => Some("consent".into()),
        _ => None,
    }
}

#[test]
fn oauth_placeholders_are_expanded_and_unresolved_fields_listed() {
    let m = PluginManifest::from_str_with_env(OAUTH, Path::new("plugin.toml"), &env).unwrap();
    let o = m.oauth.as_ref().unwrap();
    assert_eq!(o.flow, OAuthFlowType::Pkce);
    assert_eq!(o.auth_url, "https://accounts.example.com/auth");
    assert_eq!(
        o.token_url,
        "https://accounts.example.com/token?x=${UNSET_ONE}"
    );
    assert_eq!(o.client_id, "cid-${NOT_REEXPANDED}");
    assert_eq!(o.client_secret.as_deref(), Some("${SECRET}"));
    assert_eq!(o.scopes, ["openid", "email"]);
    assert_eq!(o.redirect_uri, "http://localhost:8080/cb");
    assert_eq!(o.credentials_path.as_deref(), Some("~/${DIR}/creds.json"));
    assert_eq!(o.process_tokens_callback.as_deref(), Some("${CB}"));
    assert_eq!(o.extra_params["prompt"], "consent");
    assert_eq!(o.extra_params["access_type"], "offline");
    assert!(o.use_state);
    assert_eq!(
        o.unresolved_placeholders(),
        [
            "token_url",
            "client_id",
            "client_secret",
            "credentials_path",
            "process_tokens_callback"
        ]
    );
    assert_eq!(
        o.check_resolved().unwrap_err().to_string(),
        "OAuth config has unresolved environment placeholders: token_url, client_id, client_secret, credentials_path, process_tokens_callback"
    );
}

#[test]
fn oauth_all_resolved_and_real_environment() {
    let all = |name: &str| Some(format!("<{name}>"));
    let m = PluginManifest::from_str_with_env(OAUTH, Path::new("plugin.toml"), &all).unwrap();
    let o = m.oauth.unwrap();
    assert!(o.unresolved_placeholders().is_empty());
    assert!(o.check_resolved().is_ok());
    assert_eq!(o.extra_params["prompt"], "<PROMPT>");

    // The real environment: PATH is set for every test process.
    let path = std::env::var("PATH").unwrap();
    let text = OAUTH.replace("${CLIENT_ID}", "${PATH}");
    let m = PluginManifest::from_str_at(&text, Path::new("plugin.toml")).unwrap();
    assert_eq!(m.oauth.unwrap().client_id, path);
}

#[test]
fn oauth_defaults_and_device_flow() {
    let text = r#"
[plugin]
name = "o"
version = "1.0.0"
type = "channel"
[oauth]
flow = "device_flow"
auth_url = "a"
token_url = "t"
client_id = "c"
scopes = []
redirect_uri = "r"
use_state = false
"#;
    let o = parse(text).unwrap().oauth.unwrap();
    assert_eq!(o.flow, OAuthFlowType::DeviceFlow);
    assert!(!o.use_state);
    assert!(o.extra_params.is_empty());
    assert_eq!(o.client_secret, None);
    let e = err_text(&text.replace("client_id = \"c\"\n", ""));
    assert!(e.contains("client_id"), "{e}");
}

#[test]
fn placeholder_scanner_edge_cases() {
    let look = |n: &str| (n == "A").then(|| "1".to_string());
    let cases = [
        ("${A}", "1"),
        ("x${A}y${A}z", "x1y1z"),
        ("${B}", "${B}"),
        ("${A", "${A"),
        ("${}", "${}"),
        ("${A-B}", "${A-B}"),
        ("$A ${ A}", "$A ${ A}"),
        ("$${A}", "$1"),
        ("${${A}}", "${1}"),
        ("trailing $", "trailing $"),
        ("ü${A}ü", "ü1ü"),
        ("", ""),
    ];
    for (input, want) in cases {
        assert_eq!(expand_placeholders(input, &look), want, "{input}");
    }
}
