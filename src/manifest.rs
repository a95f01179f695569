//! `plugin.toml`: tark's plugin manifest. (Stub: being filled in by the manifest work.)

use serde::{Deserialize, Serialize};

/// The kind of plugin, from `[plugin] type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginType {
    /// Authentication plugin.
    Auth,
    /// Tool plugin.
    Tool,
    /// LLM provider plugin.
    Provider,
    /// Messaging channel plugin.
    Channel,
    /// Lifecycle hook plugin.
    Hook,
}

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

/// A parsed and validated `plugin.toml`.
#[derive(Debug, Clone)]
pub struct PluginManifest {
    /// Plugin id (`[plugin] name`).
    pub name: String,
    /// Plugin type.
    pub plugin_type: PluginType,
    /// Capabilities.
    pub capabilities: PluginCapabilities,
}
