//! The optional manifest sections: `[capabilities]`, `[contributes]`, `[activation]` and
//! `[limits]`.

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

/// `[limits]`: what the plugin asks of the host's per-call limits (a tark-wasmer
/// extension; tark ignores the section). Each value replaces the host's default for this
/// plugin, capped at the host's maximum ([`Limits::for_plugin`](crate::limits::Limits::for_plugin)
/// states the rule): a plugin may lower any limit, and raise one only up to the ceiling.
///
/// ```toml
/// [limits]
/// cpu_seconds = 30         # CPU budget per call, seconds of guest execution
/// wall_clock_seconds = 300 # per call, time blocked in host functions included
/// memory_mb = 512          # largest linear memory
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsSection {
    /// CPU budget of one call, in seconds of guest execution (> 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Wall-clock limit of one call, in seconds (> 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_clock_seconds: Option<f64>,
    /// Largest linear memory, in MiB (> 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

/// A positive, finite number of seconds that a [`Duration`](std::time::Duration) can hold.
fn positive_seconds(v: f64) -> Option<std::time::Duration> {
    if v.is_finite() && v > 0.0 {
        std::time::Duration::try_from_secs_f64(v)
            .ok()
            .filter(|d| !d.is_zero())
    } else {
        None
    }
}

impl LimitsSection {
    /// Is the section absent or empty?
    pub fn is_empty(&self) -> bool {
        self == &LimitsSection::default()
    }

    /// The section's values, checked: `(field, what is wrong, how to fix it)` for the
    /// first bad one.
    pub fn request(
        &self,
    ) -> Result<crate::limits::LimitRequest, (&'static str, String, &'static str)> {
        let mut request = crate::limits::LimitRequest::default();
        if let Some(v) = self.cpu_seconds {
            request.cpu_time = Some(positive_seconds(v).ok_or((
                "[limits] cpu_seconds",
                format!("must be a positive number of seconds, got {v}"),
                "write e.g. cpu_seconds = 30 (the host caps it at its maximum, 60 s by default), or remove the key for the host's default of 5 s",
            ))?);
        }
        if let Some(v) = self.wall_clock_seconds {
            request.call_time_limit = Some(positive_seconds(v).ok_or((
                "[limits] wall_clock_seconds",
                format!("must be a positive number of seconds, got {v}"),
                "write e.g. wall_clock_seconds = 300 (the host caps it at its maximum, 600 s by default), or remove the key for the host's default of 120 s",
            ))?);
        }
        if let Some(v) = self.memory_mb {
            let bytes = v.checked_mul(1024 * 1024).filter(|b| *b > 0).ok_or((
                "[limits] memory_mb",
                format!("must be a positive number of MiB up to 4096, got {v}"),
                "write e.g. memory_mb = 512 (the host caps it at its maximum, 1024 MiB by default), or remove the key for the host's default of 256 MiB",
            ))?;
            if v > 4096 {
                return Err((
                    "[limits] memory_mb",
                    format!("must be a positive number of MiB up to 4096 (a wasm32 memory's largest size), got {v}"),
                    "write e.g. memory_mb = 512, or remove the key for the host's default of 256 MiB",
                ));
            }
            request.memory_max = Some(bytes);
        }
        Ok(request)
    }
}
