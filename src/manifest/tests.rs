//! Unit tests for manifest parsing, validation, sections and OAuth.

use super::oauth::expand_placeholders;
use super::*;

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
fn missing_required_fields_name_field_and_fix() {
    assert_eq!(
        err_text("[capabilities]\nstorage = true\n"),
        r#"/plugins/demo/plugin.toml: [plugin] section is missing (add a [plugin] section with name = "...", version = "0.1.0" and type = "...")"#
    );
    assert_eq!(
        err_text("plugin = 3\n"),
        "/plugins/demo/plugin.toml: [plugin] must be a table, found integer (write a [plugin] section with name, version and type)"
    );
    assert_eq!(
        err_text("[plugin]\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] name is required (set name = "my-plugin" under [plugin])"#
    );
    assert_eq!(
        err_text("[plugin]\nname = \"x\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] version is required (set version = "0.1.0" under [plugin])"#
    );
    assert_eq!(
        err_text("[plugin]\nname = \"x\"\nversion = \"1.0.0\"\n"),
        "/plugins/demo/plugin.toml: [plugin] type is required (use one of: auth, tool, provider, channel, hook)"
    );
    assert_eq!(
        err_text("[plugin]\nname = 5\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] name must be a string, found integer (set name = "my-plugin" under [plugin])"#
    );
}

#[test]
fn empty_name_and_version_use_tarks_rules() {
    assert_eq!(
        err_text("[plugin]\nname = \"\"\nversion = \"1.0.0\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] name is required (set name = "my-plugin" under [plugin])"#
    );
    assert_eq!(
        err_text("[plugin]\nname = \"x\"\nversion = \"\"\ntype = \"tool\"\n"),
        r#"/plugins/demo/plugin.toml: [plugin] version is required (set version = "0.1.0" under [plugin])"#
    );
}

#[test]
fn version_must_be_semver() {
    let text = "[plugin]\nname = \"x\"\nversion = \"1.0\"\ntype = \"tool\"\n";
    assert_eq!(
        err_text(text),
        r#"/plugins/demo/plugin.toml: [plugin] version "1.0" is not valid semver (expected MAJOR.MINOR.PATCH such as 1.0.0)"#
    );
    let text = "[plugin]\nname = \"x\"\nversion = \"v1.0.0\"\ntype = \"tool\"\n";
    assert!(err_text(text).contains(r#"version "v1.0.0" is not valid semver"#));
    for ok in ["0.2.3-beta.1", "1.2.3+build.5", "10.20.30"] {
        let text = format!("[plugin]\nname = \"x\"\nversion = \"{ok}\"\ntype = \"tool\"\n");
        assert_eq!(parse(&text).unwrap().version(), ok);
    }
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
fn wasm_path_rules() {
    let dir = Path::new("/plugins/demo");
    let m = parse(&with_plugin_line("wasm = \"dist/plugin.wasm\"")).unwrap();
    assert_eq!(m.wasm_path(dir).unwrap(), dir.join("dist/plugin.wasm"));
    let m = parse(&with_plugin_line("wasm = \"./x.wasm\"")).unwrap();
    assert_eq!(m.wasm_path(dir).unwrap(), dir.join("./x.wasm"));
    for escaping in [
        "/etc/passwd",
        "../other/plugin.wasm",
        "dist/../../x.wasm",
        "dist/../p.wasm",
    ] {
        let e = err_text(&with_plugin_line(&format!("wasm = \"{escaping}\"")));
        assert_eq!(
            e,
            format!("wasm path escapes the plugin directory: {escaping}")
        );
    }
    assert_eq!(
        err_text(&with_plugin_line("wasm = \"\"")),
        r#"/plugins/demo/plugin.toml: [plugin] wasm is empty (set wasm = "plugin.wasm" (relative to the plugin directory) or remove the key)"#
    );
    let e = err_text(&with_plugin_line("wasm = \".\""));
    assert!(
        e.contains(r#"[plugin] wasm "." does not name a file"#),
        "{e}"
    );
    // The check also guards manifests built in code.
    let mut m = parse(MINIMAL).unwrap();
    m.plugin.wasm = "/abs.wasm".into();
    assert!(matches!(
        m.validate(),
        Err(ManifestError::WasmEscape { .. })
    ));
    assert!(matches!(
        m.wasm_path(dir),
        Err(ManifestError::WasmEscape { .. })
    ));
}

#[cfg(unix)]
#[test]
fn wasm_symlink_escape_is_refused() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    let plugin = tmp.path().join("plugin");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(plugin.join("build")).unwrap();
    std::fs::write(outside.join("evil.wasm"), b"\0asm").unwrap();
    std::fs::write(plugin.join("build/real.wasm"), b"\0asm").unwrap();
    let manifest_path = plugin.join(MANIFEST_FILE);

    // File symlink pointing outside.
    symlink(outside.join("evil.wasm"), plugin.join("plugin.wasm")).unwrap();
    std::fs::write(&manifest_path, MINIMAL).unwrap();
    let e = PluginManifest::load(&manifest_path).unwrap_err();
    match &e {
        ManifestError::WasmEscape { wasm, resolved, .. } => {
            assert_eq!(wasm, "plugin.wasm");
            assert_eq!(
                resolved.as_deref(),
                Some(outside.join("evil.wasm").canonicalize().unwrap().as_path())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(e
        .to_string()
        .starts_with("wasm path escapes the plugin directory: plugin.wasm"));

    // Directory symlink pointing outside, even though the module itself is missing.
    symlink(&outside, plugin.join("dist")).unwrap();
    std::fs::write(
        &manifest_path,
        format!("{MINIMAL}wasm = \"dist/missing.wasm\"\n"),
    )
    .unwrap();
    let e = PluginManifest::load(&manifest_path).unwrap_err();
    assert!(matches!(e, ManifestError::WasmEscape { .. }), "{e}");

    // A symlink that stays inside is fine.
    std::fs::remove_file(plugin.join("plugin.wasm")).unwrap();
    symlink(plugin.join("build/real.wasm"), plugin.join("plugin.wasm")).unwrap();
    std::fs::write(&manifest_path, MINIMAL).unwrap();
    let m = PluginManifest::load(&manifest_path).unwrap();
    assert_eq!(m.wasm_path(&plugin).unwrap(), plugin.join("plugin.wasm"));

    // The plugin directory itself may be reached through a symlink.
    let link = tmp.path().join("link-to-plugin");
    symlink(&plugin, &link).unwrap();
    assert_eq!(m.wasm_path(&link).unwrap(), link.join("plugin.wasm"));
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

#[test]
fn warnings_for_inert_fields_never_errors() {
    let text = with_plugin_line("min_tark_version = \"latest\"\napi_version = \"next\"\n[capabilities]\nshell = true\nfilesystem = [\"./src\"]");
    let m = parse(&text).unwrap();
    let w = m.warnings();
    assert_eq!(w.len(), 4, "{w:?}");
    assert!(w[0].contains("Plugin 'demo' requests shell access - this is dangerous!"));
    assert!(w[1].contains("filesystem = [./src]") && w[1].contains("grants no access"));
    assert!(
        w[2].contains(r#"min_tark_version "latest", which is not a version (ignored)"#),
        "{}",
        w[2]
    );
    assert!(
        w[3].contains(r#"api_version "next", which is not a version"#),
        "{}",
        w[3]
    );

    for fine in ["0.12.6", "0.12", "0.9.1", "0.12.6-rc.1", ">=0.9", "^0.12"] {
        let m = parse(&with_plugin_line(&format!("min_tark_version = \"{fine}\""))).unwrap();
        assert!(m.warnings().is_empty(), "{fine}: {:?}", m.warnings());
        assert!(m.check_compatibility().is_ok(), "{fine}");
    }
    for known in ["0.1", "0.1.0", "0.1.7", "0.2", "0.2.0", "0.2.9", "v0.2"] {
        let m = parse(&with_plugin_line(&format!("api_version = \"{known}\""))).unwrap();
        assert!(m.warnings().is_empty(), "{known}");
    }
    let m = parse(&with_plugin_line("api_version = \"0.0.3\"")).unwrap();
    assert!(
        m.warnings()[0].contains("older than any plugin API"),
        "{:?}",
        m.warnings()
    );
}

#[test]
fn newer_api_or_tark_version_is_refused_naming_field_value_and_support() {
    for newer in ["0.3", "0.3.0", "1", "1.0", "1.0.0", "2.1.0"] {
        let e = err_text(&with_plugin_line(&format!("api_version = \"{newer}\"")));
        assert_eq!(
            e,
            format!("/plugins/demo/plugin.toml: [plugin] api_version = \"{newer}\" needs a newer host: this host implements plugin API 0.2.0 and accepts api_version 0.1.x and 0.2.x (install a version of the plugin built for this host, or lower api_version if the plugin really works with it)")
        );
    }
    for newer in ["0.12.7", "0.13", "1.0.0", ">=0.13", "^1"] {
        let e = err_text(&with_plugin_line(&format!(
            "min_tark_version = \"{newer}\""
        )));
        assert!(
            e.starts_with(&format!("/plugins/demo/plugin.toml: [plugin] min_tark_version = \"{newer}\" needs a newer host: this host is compatible with tark 0.12.6")),
            "{e}"
        );
    }
    // A real file: load refuses too, with the typed error.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join(MANIFEST_FILE);
    std::fs::write(&path, with_plugin_line("min_tark_version = \"0.20.0\"")).unwrap();
    match PluginManifest::load(&path) {
        Err(ManifestError::Incompatible { field, value, .. }) => {
            assert_eq!(
                (field.as_str(), value.as_str()),
                ("min_tark_version", "0.20.0")
            );
        }
        other => panic!("{other:?}"),
    }
    // Built in code: check_compatibility is the same rule.
    let mut m = parse(MINIMAL).unwrap();
    m.plugin.api_version = "0.9".into();
    assert!(matches!(
        m.check_compatibility(),
        Err(ManifestError::Incompatible { .. })
    ));
}

#[test]
fn capability_summary_lines() {
    let caps = PluginCapabilities {
        storage: true,
        http: vec!["a.com".into(), "b.com".into()],
        env: vec!["X".into(), "Y".into()],
        shell: true,
        filesystem: vec!["ignored".into()],
        fs_read: vec!["~/.gemini/creds.json".into(), "/etc/*.conf".into()],
    };
    assert_eq!(
        caps.summary_lines(),
        [
            "  • Storage access",
            "  • HTTP to: a.com, b.com",
            "  • Env vars: X, Y",
            "  • Read files: ~/.gemini/creds.json, /etc/*.conf",
            "  • ⚠️  Shell access (dangerous!)",
        ]
    );
    assert!(PluginCapabilities::default().summary_lines().is_empty());
    let hostile = PluginCapabilities {
        http: vec!["evil\u{1b}[2J.com".into()],
        ..Default::default()
    };
    assert_eq!(hostile.summary_lines(), ["  • HTTP to: evil\\u{1b}[2J.com"]);
}

#[test]
fn activation_semantics() {
    let none = ActivationConfig::default();
    assert!(none.should_activate_for("onStartup"));
    assert!(none.should_activate_for("onProvider:gemini"));

    let lazy = ActivationConfig {
        events: vec!["onProvider:gemini".into(), "onCommand:*".into()],
    };
    assert!(lazy.should_activate_for("onProvider:gemini"));
    assert!(!lazy.should_activate_for("onProvider:openai"));
    assert!(!lazy.should_activate_for("onStartup"));
    assert!(lazy.should_activate_for("onCommand:anything"));
    assert!(!lazy.should_activate_for("onCommandX"));

    let wildcard = ActivationConfig {
        events: vec!["onProvider:*".into()],
    };
    assert!(wildcard.should_activate_for("onProvider:gemini"));
    assert!(wildcard.should_activate_for("onProvider:"));
    assert!(!wildcard.should_activate_for("onChannel:x"));

    let startup = ActivationConfig {
        events: vec!["onStartup".into()],
    };
    assert!(startup.should_activate_for("onStartup"));
    assert!(startup.should_activate_for("onProvider:x"));
}

#[test]
fn manifest_round_trips_through_toml() {
    let m = parse(OAUTH.replace("${", "$(").as_str()).unwrap();
    let text = toml::to_string(&m).unwrap();
    let again = parse(&text).unwrap();
    assert_eq!(m, again);
}
