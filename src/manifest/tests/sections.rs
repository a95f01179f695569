//! Tests of `sections.rs`: the capability summary and activation events.

use super::*;

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
