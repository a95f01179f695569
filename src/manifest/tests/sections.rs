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

#[test]
fn limits_section_parses_into_a_request() {
    let m = parse(&format!(
        "{MINIMAL}\n[limits]\ncpu_seconds = 30\nwall_clock_seconds = 2.5\nmemory_mb = 512\n"
    ))
    .unwrap();
    assert_eq!(m.limits.cpu_seconds, Some(30.0));
    let r = m.limits.request().unwrap();
    assert_eq!(r.cpu_time, Some(std::time::Duration::from_secs(30)));
    assert_eq!(
        r.call_time_limit,
        Some(std::time::Duration::from_millis(2500))
    );
    assert_eq!(r.memory_max, Some(512 * 1024 * 1024));
    // Absent section: nothing requested, nothing serialized.
    let m = parse(MINIMAL).unwrap();
    assert!(m.limits.is_empty());
    assert_eq!(
        m.limits.request().unwrap(),
        crate::limits::LimitRequest::default()
    );
    assert!(!toml::to_string(&m).unwrap().contains("[limits]"));
}

#[test]
fn bad_limits_are_refused_with_the_field_and_the_fix() {
    let e = err_text(&format!("{MINIMAL}\n[limits]\ncpu_seconds = -1\n"));
    assert_eq!(
        e,
        "/plugins/demo/plugin.toml: [limits] cpu_seconds must be a positive number of seconds, got -1 \
         (write e.g. cpu_seconds = 30 (the host caps it at its maximum, 60 s by default), or remove \
         the key for the host's default of 5 s)"
    );
    let e = err_text(&format!("{MINIMAL}\n[limits]\ncpu_seconds = 0\n"));
    assert!(
        e.contains("[limits] cpu_seconds must be a positive number of seconds, got 0"),
        "{e}"
    );
    let e = err_text(&format!("{MINIMAL}\n[limits]\ncpu_seconds = nan\n"));
    assert!(e.contains("got NaN"), "{e}");
    let e = err_text(&format!("{MINIMAL}\n[limits]\nwall_clock_seconds = inf\n"));
    assert!(
        e.contains("[limits] wall_clock_seconds must be a positive number of seconds, got inf"),
        "{e}"
    );
    let e = err_text(&format!("{MINIMAL}\n[limits]\nmemory_mb = 0\n"));
    assert!(
        e.contains("[limits] memory_mb must be a positive number of MiB"),
        "{e}"
    );
    let e = err_text(&format!("{MINIMAL}\n[limits]\nmemory_mb = 5000\n"));
    assert!(
        e.contains("up to 4096 (a wasm32 memory's largest size), got 5000"),
        "{e}"
    );
    // Wrong types are the TOML parser's errors, with the position.
    let e = err_text(&format!("{MINIMAL}\n[limits]\ncpu_seconds = \"30s\"\n"));
    assert!(
        e.starts_with("Failed to parse manifest: /plugins/demo/plugin.toml"),
        "{e}"
    );
    assert!(e.contains("cpu_seconds"), "{e}");
}
