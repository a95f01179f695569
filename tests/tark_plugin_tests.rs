//! tark 0.12.6's own unit tests of its plugin module (`src/plugins/{host,manifest,
//! registry}/mod.rs`, 12 tests), re-expressed against `tark_wasmer::tark`: same inputs,
//! same expectations. Where tark's test reached a private item (`PluginState`,
//! `expand_home_path`, `glob_match_path`), the same behaviour is asserted through the
//! public predicate that uses it (`PluginCapabilities::is_*_allowed`).

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use tark_wasmer::tark::{
    PluginCapabilities, PluginHost, PluginManifest, PluginRegistry, PluginType,
};

/// Tests that touch process environment variables run one at a time.
fn env_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ----- host/mod.rs -----

#[test]
fn test_plugin_host_creation() {
    let host = PluginHost::new();
    assert!(host.is_ok());
}

/// tark checks `PluginState::is_http_allowed(url)`: listed names and their subdomains.
#[test]
fn test_http_domain_check() {
    let caps = PluginCapabilities {
        http: vec!["googleapis.com".to_string(), "example.com".to_string()],
        ..Default::default()
    };
    let host_of = |url: &str| {
        url::Url::parse(url)
            .expect("url")
            .host_str()
            .expect("host")
            .to_string()
    };
    assert!(caps.is_http_allowed(&host_of("https://oauth2.googleapis.com/token")));
    assert!(caps.is_http_allowed(&host_of("https://cloudcode-pa.googleapis.com/v1")));
    assert!(caps.is_http_allowed(&host_of("https://example.com/api")));
    assert!(!caps.is_http_allowed(&host_of("https://evil.com/steal")));
    assert!(!caps.is_http_allowed(&host_of("https://notgoogleapis.com/fake")));
}

#[test]
fn test_env_var_check() {
    let caps = PluginCapabilities {
        env: vec!["GEMINI_API_KEY".to_string(), "HOME".to_string()],
        ..Default::default()
    };
    assert!(caps.is_env_allowed("GEMINI_API_KEY"));
    assert!(caps.is_env_allowed("HOME"));
    assert!(!caps.is_env_allowed("SECRET_KEY"));
    assert!(!caps.is_env_allowed("PATH"));
}

// ----- manifest/mod.rs -----

#[test]
fn test_parse_manifest() {
    let toml = r#"
[plugin]
name = "test-auth"
version = "1.0.0"
type = "auth"
description = "Test authentication plugin"

[capabilities]
storage = true
http = ["oauth2.googleapis.com", "*.google.com"]
"#;
    let manifest: PluginManifest = toml::from_str(toml).expect("parse");
    assert_eq!(manifest.plugin.name, "test-auth");
    assert_eq!(manifest.plugin.plugin_type, PluginType::Auth);
    assert!(manifest.capabilities.storage);
    assert!(manifest
        .capabilities
        .is_http_allowed("oauth2.googleapis.com"));
    assert!(manifest.capabilities.is_http_allowed("accounts.google.com"));
    assert!(!manifest.capabilities.is_http_allowed("evil.com"));
}

#[test]
fn test_parse_channel_manifest() {
    let toml = r#"
[plugin]
name = "test-channel"
version = "0.1.0"
type = "channel"

[contributes]
channels = [{ id = "slack", name = "Slack" }]
"#;
    let manifest: PluginManifest = toml::from_str(toml).expect("parse");
    assert_eq!(manifest.plugin.name, "test-channel");
    assert_eq!(manifest.plugin.plugin_type, PluginType::Channel);
    assert_eq!(manifest.contributes.channels.len(), 1);
    assert_eq!(manifest.contributes.channels[0].id, "slack");
}

#[test]
fn test_manifest_env_expansion() {
    let _env = env_lock();
    std::env::set_var("TEST_CLIENT_ID", "client-123");
    std::env::set_var("TEST_REDIRECT", "http://localhost/callback");

    let toml = r#"
[plugin]
name = "test-channel"
version = "0.1.0"
type = "channel"

[oauth]
flow = "pkce"
auth_url = "https://example.com/auth"
token_url = "https://example.com/token"
client_id = "${TEST_CLIENT_ID}"
scopes = ["bot"]
redirect_uri = "${TEST_REDIRECT}"
"#;
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("plugin.toml");
    std::fs::write(&path, toml).expect("write");

    let manifest = PluginManifest::load(&path).expect("load");
    let oauth = manifest.oauth.expect("oauth");
    assert_eq!(oauth.client_id, "client-123");
    assert_eq!(oauth.redirect_uri, "http://localhost/callback");

    std::env::remove_var("TEST_CLIENT_ID");
    std::env::remove_var("TEST_REDIRECT");
}

#[test]
fn test_http_wildcards() {
    let caps = PluginCapabilities {
        http: vec!["*.googleapis.com".to_string()],
        ..Default::default()
    };
    assert!(caps.is_http_allowed("oauth2.googleapis.com"));
    assert!(caps.is_http_allowed("generativelanguage.googleapis.com"));
    assert!(!caps.is_http_allowed("googleapis.com.evil.com"));
}

#[test]
fn test_env_wildcards() {
    let caps = PluginCapabilities {
        env: vec!["GEMINI_*".to_string(), "GOOGLE_API_KEY".to_string()],
        ..Default::default()
    };
    assert!(caps.is_env_allowed("GEMINI_API_KEY"));
    assert!(caps.is_env_allowed("GEMINI_PROJECT_ID"));
    assert!(caps.is_env_allowed("GOOGLE_API_KEY"));
    assert!(!caps.is_env_allowed("OPENAI_API_KEY"));
}

/// tark tests its private `expand_home_path`; here the expansion is seen through
/// `fs_read`: an entry `~/...` allows that file under the home directory, and only it.
#[test]
fn test_expand_home_path() {
    let home = dirs::home_dir().expect("home");
    let caps = PluginCapabilities {
        fs_read: vec!["~/.gemini/oauth_creds.json".to_string()],
        ..Default::default()
    };
    assert!(caps.is_fs_read_allowed(&home.join(".gemini/oauth_creds.json").to_string_lossy()));
    assert!(caps.is_fs_read_allowed("~/.gemini/oauth_creds.json"));
    assert!(!caps.is_fs_read_allowed("/absolute/path"));
    assert!(!caps.is_fs_read_allowed(&home.join(".ssh/id_rsa").to_string_lossy()));
}

#[test]
fn test_fs_read_empty() {
    let caps = PluginCapabilities::default();
    assert!(!caps.is_fs_read_allowed("/any/path"));
}

/// tark tests its private `glob_match_path`; here the same patterns as `fs_read` globs.
#[test]
fn test_glob_match_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().canonicalize().expect("canonical");
    for rel in [
        "usr/local/file.txt",
        "usr/local/bin/file.txt",
        "usr/local/lib/test.js",
    ] {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, "x").expect("write");
    }
    let under = |rel: &str| root.join(rel).to_string_lossy().to_string();
    let caps = |pattern: &str| PluginCapabilities {
        fs_read: vec![under(pattern)],
        ..Default::default()
    };
    // Single star matches within a directory.
    assert!(caps("usr/*/file.txt").is_fs_read_allowed(&under("usr/local/file.txt")));
    assert!(!caps("usr/*/file.txt").is_fs_read_allowed(&under("usr/local/bin/file.txt")));
    // Double star matches across directories.
    assert!(caps("usr/**/file.txt").is_fs_read_allowed(&under("usr/local/bin/file.txt")));
    assert!(caps("usr/**/*.js").is_fs_read_allowed(&under("usr/local/lib/test.js")));
}

// ----- registry/mod.rs -----

#[test]
fn test_registry_creation() {
    let _env = env_lock();
    let dir = tempfile::tempdir().expect("tmp");
    let plugins: PathBuf = dir.path().join("plugins");
    std::env::set_var("TARK_PLUGINS_DIR", &plugins);
    // It creates the plugins directory when it does not exist.
    let result = PluginRegistry::new();
    assert!(result.is_ok());
    assert!(plugins.is_dir());
    assert_eq!(result.expect("registry").all().count(), 0);
    std::env::remove_var("TARK_PLUGINS_DIR");
}
