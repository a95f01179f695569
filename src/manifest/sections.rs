//! The optional manifest sections: `[capabilities]`, `[contributes]` and `[activation]`.

use serde::{Deserialize, Serialize};

use super::printable_list;

/// `[capabilities]`: what the plugin may reach. All default to empty / false.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginCapabilities {
    /// Declared storage use (tark does not enforce it; we warn on first use without it).
    pub storage: bool,
    /// Host allowlist for `http.*` and `ws.connect`.
    pub http: Vec<String>,
    /// Environment variable allowlist for `env.get`.
    pub env: Vec<String>,
    /// Shell access: no host function exists; warning only.
    pub shell: bool,
    /// Filesystem paths: no host function exists; warning only.
    pub filesystem: Vec<String>,
    /// Paths and globs readable through `fs.read`.
    pub fs_read: Vec<String>,
}

impl PluginCapabilities {
    /// The `Capabilities:` lines `plugin add` prints before installing, in tark's wording
    /// and order. Unlike tark we also list `fs_read`, because it grants real access the user
    /// should see. Control characters from the manifest are escaped so a hostile manifest
    /// cannot drive the terminal.
    pub fn summary_lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.storage {
            lines.push("  • Storage access".to_string());
        }
        if !self.http.is_empty() {
            lines.push(format!("  • HTTP to: {}", printable_list(&self.http)));
        }
        if !self.env.is_empty() {
            lines.push(format!("  • Env vars: {}", printable_list(&self.env)));
        }
        if !self.fs_read.is_empty() {
            lines.push(format!("  • Read files: {}", printable_list(&self.fs_read)));
        }
        if self.shell {
            lines.push("  • ⚠️  Shell access (dangerous!)".to_string());
        }
        lines
    }
}

/// `[contributes]`: what the plugin adds to tark's menus (VS Code style). Only `providers`
/// has an effect in tark; the rest is parsed and kept.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PluginContributions {
    /// LLM providers (used for `tark auth` menus, logout and the models.dev lookup).
    pub providers: Vec<ProviderContribution>,
    /// Messaging channels (parsed, unused).
    pub channels: Vec<ChannelContribution>,
    /// Commands (parsed, unused).
    pub commands: Vec<CommandContribution>,
    /// Configuration schema (parsed, unused).
    pub configuration: Vec<ConfigContribution>,
}

/// One `[[contributes.providers]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderContribution {
    /// Provider id as shown in tark.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// models.dev provider key (`google`, `openai`, ...) used to look up models.
    #[serde(default)]
    pub base_provider: Option<String>,
}

/// One `[[contributes.channels]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelContribution {
    /// Channel id.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// One `[[contributes.commands]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandContribution {
    /// Command id.
    pub id: String,
    /// Title shown to the user.
    pub title: String,
    /// Optional grouping.
    #[serde(default)]
    pub category: Option<String>,
}

/// One `[[contributes.configuration]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigContribution {
    /// Setting key.
    pub key: String,
    /// Declared value type (`type` in TOML).
    #[serde(rename = "type")]
    pub value_type: String,
    /// Default value.
    #[serde(default)]
    pub default: Option<toml::Value>,
    /// Description.
    #[serde(default)]
    pub description: String,
}

/// `[activation]`: when the plugin wants to be loaded. tark parses it but loads every
/// enabled plugin eagerly, so this host must never use it to exclude a plugin tark runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActivationConfig {
    /// Events such as `onStartup`, `onProvider:<id>`, `onProvider:*`.
    pub events: Vec<String>,
}

/// tark's older name for [`ActivationConfig`].
pub type PluginActivation = ActivationConfig;

impl ActivationConfig {
    /// Whether the plugin should be active when `event` fires.
    ///
    /// - No events declared: `true` for every event. tark's (never called) method answers
    ///   `true` only for `onStartup`, but tark loads every enabled plugin at startup, so a
    ///   plugin without events is in practice active for everything; answering `false`
    ///   would exclude every plugin in the wild from lazy activation.
    /// - `onStartup` declared: `true` for every event (the plugin is loaded at startup and
    ///   therefore active for whatever follows).
    /// - Otherwise an exact match, or an entry ending in `*` matching by prefix
    ///   (`onProvider:*` matches `onProvider:gemini`).
    pub fn should_activate_for(&self, event: &str) -> bool {
        if self.events.is_empty() {
            return true;
        }
        self.events.iter().any(|declared| {
            declared == event
                || declared == "onStartup"
                || declared
                    .strip_suffix('*')
                    .is_some_and(|prefix| event.starts_with(prefix))
        })
    }
}
