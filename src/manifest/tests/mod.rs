//! Unit tests for the manifest, one file per source file (`validate.rs`, `oauth.rs`,
//! `sections.rs`); this file holds the shared fixtures and the tests of `mod.rs` (parsing,
//! loading, plugin types and names).

use super::*;

mod oauth;
mod sections;
mod validate;

const MINIMAL: &str = r#"
[plugin]
name = "demo"
version = "1.0.0"
type = "provider"
"#;

fn parse(text: &str) -> Result<PluginManifest, ManifestError> {
    PluginManifest::from_str_at(text, Path::new("/plugins/demo/plugin.toml"))
}

fn with_plugin_line(line: &str) -> String {
    format!("[plugin]\nname = \"demo\"\nversion = \"1.0.0\"\ntype = \"tool\"\n{line}\n")
}

fn err_text(text: &str) -> String {
    match parse(text) {
        Ok(m) => panic!("expected an error, parsed {m:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn minimal_manifest_gets_tarks_defaults() {
    let m = parse(MINIMAL).unwrap();
    assert_eq!(m.id(), "demo");
    assert_eq!(m.name(), "demo");
    assert_eq!(m.version(), "1.0.0");
    assert_eq!(m.plugin_type(), PluginType::Provider);
    assert_eq!(m.plugin.description, "");
    assert_eq!(m.plugin.author, "");
    assert_eq!(m.plugin.homepage, "");
    assert_eq!(m.plugin.license, "");
    assert_eq!(m.plugin.min_tark_version, None);
    assert_eq!(m.plugin.api_version, "0.1");
    assert_eq!(m.plugin.wasm, "plugin.wasm");
    assert_eq!(m.capabilities, PluginCapabilities::default());
    assert!(!m.capabilities.storage && !m.capabilities.shell);
    assert_eq!(m.contributes, PluginContributions::default());
    assert!(m.activation.events.is_empty());
    assert!(m.oauth.is_none());
    assert!(m.config.is_none());
    assert!(m.warnings().is_empty(), "{:?}", m.warnings());
}

#[test]
fn full_manifest_and_unknown_keys_are_accepted() {
    let text = r#"
top_level_unknown = 1
[plugin]
name = "gemini-auth"
version = "0.2.3-beta.1"
type = "channel"
description = "desc"
author = "me"
homepage = "https://example.com"
license = "MIT"
min_tark_version = "0.10.0"
api_version = "0.2.0"
wasm = "dist/plugin.wasm"
mystery = "ignored"

[capabilities]
storage = true
http = ["api.example.com", "*.googleapis.com"]
env = ["GEMINI_*"]
fs_read = ["~/.gemini/oauth_creds.json"]
future_cap = true

[[contributes.providers]]
id = "gemini"
name = "Gemini"
base_provider = "google"

[[contributes.channels]]
id = "chat"
name = "Chat"
description = "a channel"

[[contributes.commands]]
id = "cmd"
title = "Do it"
category = "Tools"

[[contributes.configuration]]
key = "model"
type = "string"
default = "gemini-pro"

[activation]
events = ["onProvider:gemini"]

[config]
anything = { nested = [1, 2] }

[unknown_table]
x = 1
"#;
    let m = parse(text).unwrap();
    assert_eq!(m.plugin.plugin_type, PluginType::Channel);
    assert_eq!(m.plugin.wasm, "dist/plugin.wasm");
    assert_eq!(m.plugin.min_tark_version.as_deref(), Some("0.10.0"));
    assert_eq!(m.plugin.api_version, "0.2.0");
    assert!(m.capabilities.storage);
    assert_eq!(m.capabilities.http, ["api.example.com", "*.googleapis.com"]);
    assert_eq!(m.capabilities.env, ["GEMINI_*"]);
    assert_eq!(m.capabilities.fs_read, ["~/.gemini/oauth_creds.json"]);
    let p = &m.contributes.providers[0];
    assert_eq!((p.id.as_str(), p.name.as_str()), ("gemini", "Gemini"));
    assert_eq!(p.description, "");
    assert_eq!(p.base_provider.as_deref(), Some("google"));
    assert_eq!(m.contributes.channels[0].description, "a channel");
    assert_eq!(m.contributes.commands[0].category.as_deref(), Some("Tools"));
    let c = &m.contributes.configuration[0];
    assert_eq!(c.value_type, "string");
    assert_eq!(c.default, Some(toml::Value::String("gemini-pro".into())));
    assert_eq!(m.activation.events, ["onProvider:gemini"]);
    let config = m.config.as_ref().unwrap();
    assert_eq!(config["anything"]["nested"][1].as_integer(), Some(2));
    assert!(m.warnings().is_empty(), "{:?}", m.warnings());
}

#[test]
fn plugin_type_display_fromstr_as_str() {
    for t in PluginType::ALL {
        assert_eq!(t.to_string(), t.as_str());
        assert_eq!(t.as_str().parse::<PluginType>().unwrap(), t);
        let m = parse(&format!(
            "[plugin]\nname = \"x\"\nversion = \"1.0.0\"\ntype = \"{t}\"\n"
        ))
        .unwrap();
        assert_eq!(m.plugin_type(), t);
    }
    let names: Vec<_> = PluginType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, ["auth", "tool", "provider", "channel", "hook"]);
    let e = "Provider".parse::<PluginType>().unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"unknown plugin type "Provider" (expected one of: auth, tool, provider, channel, hook)"#
    );
}

#[test]
fn unknown_type_lists_the_five_types() {
    let text = "[plugin]\nname = \"x\"\nversion = \"1.0.0\"\ntype = \"widget\"\n";
    assert_eq!(
        err_text(text),
        r#"/plugins/demo/plugin.toml: [plugin] type "widget" is not a valid plugin type (use one of: auth, tool, provider, channel, hook)"#
    );
    let text = "[plugin]\nname = \"x\"\nversion = \"1.0.0\"\ntype = 3\n";
    assert_eq!(
        err_text(text),
        "/plugins/demo/plugin.toml: [plugin] type must be a string, found integer (use one of: auth, tool, provider, channel, hook)"
    );
}

#[test]
fn name_rule_is_tarks_and_never_escapes_a_directory() {
    for ok in [
        "demo",
        "Gemini_Auth-2",
        "プラグイン",
        "ñandú",
        "x",
        "-",
        "_",
    ] {
        assert!(is_valid_plugin_name(ok), "{ok}");
        let text = format!("[plugin]\nname = \"{ok}\"\nversion = \"1.0.0\"\ntype = \"tool\"\n");
        assert_eq!(parse(&text).unwrap().id(), ok);
    }
    for bad in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "/abs",
        "a\\\\b",
        "a.b",
        "my plugin",
        "x\\u0000",
        "~",
    ] {
        let text = format!("[plugin]\nname = \"{bad}\"\nversion = \"1.0.0\"\ntype = \"tool\"\n");
        let e = err_text(&text);
        assert!(e.contains("[plugin] name"), "{bad}: {e}");
    }
    for bad in ["", ".", "..", "../etc", "a/b", "/", "a\\b", "a\0b", "C:x"] {
        assert!(!is_valid_plugin_name(bad), "{bad:?}");
    }
    assert_eq!(
        err_text("[plugin]\nname = \"..\"\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] name ".." must be alphanumeric with hyphens/underscores (use only letters, digits, '-' and '_'; the name is also the install directory name)"#
    );
}

#[test]
fn toml_syntax_errors_name_the_file_and_position() {
    let e = err_text("[plugin\nname = \"x\"\n");
    assert!(
        e.starts_with("Failed to parse manifest: /plugins/demo/plugin.toml: "),
        "{e}"
    );
    assert!(e.contains("line 1"), "{e}");
    let e = err_text(&with_plugin_line(
        "[capabilities]\nhttp = \"api.example.com\"",
    ));
    assert!(
        e.starts_with("Failed to parse manifest: /plugins/demo/plugin.toml: "),
        "{e}"
    );
    assert!(e.contains("line 6"), "{e}");
    let e = err_text(&with_plugin_line("[oauth]\nflow = \"implicit\""));
    assert!(e.contains("Failed to parse manifest"), "{e}");
    assert!(e.contains("implicit"), "{e}");
}

#[test]
fn read_error_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("nope").join(MANIFEST_FILE);
    let e = PluginManifest::load(&path).unwrap_err();
    assert!(matches!(e, ManifestError::Read { .. }));
    assert!(e
        .to_string()
        .starts_with(&format!("Failed to read manifest: {}: ", path.display())));
}

#[test]
fn load_reads_a_real_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(MANIFEST_FILE);
    std::fs::write(&path, MINIMAL).unwrap();
    let m = PluginManifest::load(&path).unwrap();
    assert_eq!(m, parse(MINIMAL).unwrap());
}

const OAUTH: &str = r#"
[plugin]
name = "o"
version = "1.0.0"
type = "auth"

[oauth]
flow = "pkce"
auth_url = "https://${HOST}/auth"
token_url = "https://${HOST}/token?x=${UNSET_ONE}"
client_id = "${CLIENT_ID}"
client_secret = "${SECRET}"
scopes = ["openid", "${SCOPE}"]
redirect_uri = "http://localhost:${PORT}/cb"
credentials_path = "~/${DIR}/creds.json"
process_tokens_callback = "${CB}"
extra_params = { access_type = "offline", prompt = "${PROMPT}" }
"#;

#[test]
fn manifest_round_trips_through_toml() {
    let m = parse(OAUTH.replace("${", "$(").as_str()).unwrap();
    let text = toml::to_string(&m).unwrap();
    let again = parse(&text).unwrap();
    assert_eq!(m, again);
}
