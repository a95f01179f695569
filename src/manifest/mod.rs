//! `plugin.toml`: tark's plugin manifest (README.md, "Building a plugin", shows one).
//!
//! The types and field names mirror tark's (`src/plugins/manifest/mod.rs`) so that tark can
//! switch hosts behind a feature flag. Parsing accepts everything tark accepts (unknown keys
//! and tables are ignored) with two deliberate exceptions, pinned by the tests
//! `wasm_path_rules`, `wasm_symlink_escape_is_refused` and
//! `name_rule_is_tarks_and_never_escapes_a_directory`: a `wasm` path that leaves the plugin
//! directory is refused, and a plugin name must be usable as a directory name (tark's own
//! character rule already guarantees that).
//!
//! Errors name the manifest file, the offending field and the fix, because the person who
//! reads them is usually a plugin author editing that file.
//!
//! What lives where:
//! - `mod.rs`: [`PluginManifest`] (loading and parsing), [`PluginMetadata`] (`[plugin]`),
//!   [`PluginType`], [`ManifestError`], the plugin-name rule and the version constants.
//! - `sections.rs`: the optional sections `[capabilities]`, `[contributes]`, `[activation]`,
//!   `[limits]`.
//! - `oauth.rs`: `[oauth]` and its `${VAR}` placeholder expansion.
//! - `validate.rs`: validation, the `wasm` path rules, warnings and the compatibility check.
//! - `tests/`: unit tests, one file per file above (`tests/mod.rs` has the shared fixtures).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod oauth;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

pub use oauth::{OAuthConfig, OAuthFlowType, UnresolvedPlaceholders};
pub use sections::{
    ActivationConfig, ChannelContribution, CommandContribution, ConfigContribution, LimitsSection,
    PluginActivation, PluginCapabilities, PluginContributions, ProviderContribution,
};
use validate::precheck_plugin_table;

/// File name of the manifest inside a plugin directory.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Default `[plugin] api_version` (tark's default).
pub const DEFAULT_API_VERSION: &str = "0.1";

/// Default `[plugin] wasm` (tark's default).
pub const DEFAULT_WASM_FILE: &str = "plugin.wasm";

/// The tark version this host claims compatibility with (tark-cli 0.12.6, whose plugin
/// interface it implements; README.md, "The command line"). A plugin whose
/// `min_tark_version` is above it is refused (see [`PluginManifest::check_compatibility`]).
pub const COMPAT_TARK_VERSION: &str = "0.12.6";

/// The plugin API version this host implements (tark's `PLUGIN_API_VERSION`). Plugins
/// declaring `api_version` with the same major and a minor up to this one's are accepted
/// (`0.1`, `0.1.x`, `0.2`, `0.2.x`); a newer major or minor is refused.
pub const PLUGIN_API_VERSION: &str = "0.2.0";

/// The kind of plugin, from `[plugin] type`. Decides which guest exports the host probes.
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

impl PluginType {
    /// Every type, in tark's documentation order (used to list valid values in errors).
    pub const ALL: [PluginType; 5] = [
        PluginType::Auth,
        PluginType::Tool,
        PluginType::Provider,
        PluginType::Channel,
        PluginType::Hook,
    ];

    /// The manifest spelling (`"provider"`, ...), which is also what the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginType::Auth => "auth",
            PluginType::Tool => "tool",
            PluginType::Provider => "provider",
            PluginType::Channel => "channel",
            PluginType::Hook => "hook",
        }
    }

    /// `auth, tool, provider, channel, hook`: for error messages.
    fn valid_list() -> String {
        PluginType::ALL
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for PluginType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the five plugin types (matching is exact and lower-case, as
/// in the manifest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plugin type {0:?} (expected one of: auth, tool, provider, channel, hook)")]
pub struct UnknownPluginType(pub String);

impl FromStr for PluginType {
    type Err = UnknownPluginType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PluginType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownPluginType(s.to_string()))
    }
}
fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_string()
}

fn default_wasm_file() -> String {
    DEFAULT_WASM_FILE.to_string()
}

/// `[plugin]`: identity and entry point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginMetadata {
    /// Plugin id; also the install directory name.
    pub name: String,
    /// Semantic version (`1.0.0`).
    pub version: String,
    /// Plugin kind (`type` in TOML).
    #[serde(rename = "type")]
    pub plugin_type: PluginType,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Author.
    #[serde(default)]
    pub author: String,
    /// Project homepage.
    #[serde(default)]
    pub homepage: String,
    /// License identifier.
    #[serde(default)]
    pub license: String,
    /// Minimum tark version (never enforced; warning only).
    #[serde(default)]
    pub min_tark_version: Option<String>,
    /// Plugin API version (never enforced; warning when unknown).
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Module path relative to the plugin directory.
    #[serde(default = "default_wasm_file")]
    pub wasm: String,
}

/// A parsed and validated `plugin.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginManifest {
    /// `[plugin]`.
    pub plugin: PluginMetadata,
    /// `[capabilities]`.
    #[serde(default)]
    pub capabilities: PluginCapabilities,
    /// `[contributes]`.
    #[serde(default)]
    pub contributes: PluginContributions,
    /// `[activation]`.
    #[serde(default)]
    pub activation: ActivationConfig,
    /// `[oauth]`, placeholders already expanded.
    #[serde(default)]
    pub oauth: Option<OAuthConfig>,
    /// `[config]`: free-form, stored, unused.
    #[serde(default)]
    pub config: Option<toml::Value>,
    /// `[limits]`: the plugin's own CPU, wall-clock and memory limits, capped by the host.
    #[serde(default, skip_serializing_if = "LimitsSection::is_empty")]
    pub limits: LimitsSection,
}

/// Why a manifest could not be used. Every variant names the file or path involved.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("Failed to read manifest: {}: {error}", path.display())]
    Read {
        /// Manifest path.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// TOML syntax error or a value of the wrong shape (message from `toml`, with line and
    /// column).
    #[error("Failed to parse manifest: {}: {message}", path.display())]
    Parse {
        /// Manifest path.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A field breaks one of tark's rules.
    #[error("{}: {field} {message} ({fix})", path.display())]
    InvalidField {
        /// Manifest path.
        path: PathBuf,
        /// Field, e.g. `[plugin] version`.
        field: String,
        /// What is wrong with it.
        message: String,
        /// How to fix it.
        fix: String,
    },
    /// `[plugin] wasm` points outside the plugin directory (absolute, `..`, or a symlink).
    #[error(
        "wasm path escapes the plugin directory: {wasm}{}",
        resolved.as_ref().map(|r| format!(" (resolves to {})", r.display())).unwrap_or_default()
    )]
    WasmEscape {
        /// Manifest path.
        path: PathBuf,
        /// The declared `wasm` value.
        wasm: String,
        /// Where it resolved to, when a symlink took it outside.
        resolved: Option<PathBuf>,
    },
    /// The declared module does not exist (or is not a file).
    #[error("WASM module not found: {} (declared in manifest)", path.display())]
    WasmMissing {
        /// Full path that was looked up.
        path: PathBuf,
    },
    /// The plugin needs a newer host (`api_version` or `min_tark_version`).
    #[error("{}: [plugin] {field} = \"{value}\" needs a newer host: {supported} (install a version of the plugin built for this host, or lower {field} if the plugin really works with it)", path.display())]
    Incompatible {
        /// Manifest path.
        path: PathBuf,
        /// `api_version` or `min_tark_version`.
        field: String,
        /// The declared value (control characters escaped).
        value: String,
        /// What this host supports.
        supported: String,
    },
}

fn invalid(path: &Path, field: &str, message: String, fix: &str) -> ManifestError {
    ManifestError::InvalidField {
        path: path.to_path_buf(),
        field: field.to_string(),
        message,
        fix: fix.to_string(),
    }
}

/// tark's plugin-name rule: non-empty, every char alphanumeric (Unicode) or `-` / `_`.
///
/// Because the name is also the install directory name, this is the gate that keeps ids
/// from escaping the plugins directory: `.`, `..`, `/`, `\` and NUL all fail it.
pub fn is_valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

impl PluginManifest {
    /// Read, parse, expand `${VAR}` in `[oauth]`, validate, and log [`Self::warnings`].
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let manifest = Self::load_quiet(path)?;
        for warning in manifest.warnings() {
            log::warn!("{warning}");
        }
        Ok(manifest)
    }

    /// [`Self::load`] without logging warnings (for a second look at the same manifest).
    pub fn load_quiet(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|error| ManifestError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Self::from_str_at(&text, path)
    }

    /// Parse manifest text as if read from `path` (used in messages, and its parent
    /// directory as the plugin directory for the symlink check of `wasm`).
    pub fn from_str_at(text: &str, path: &Path) -> Result<Self, ManifestError> {
        Self::from_str_with_env(text, path, &|name| std::env::var(name).ok())
    }

    fn from_str_with_env(
        text: &str,
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ManifestError> {
        let parse_error = |e: toml::de::Error| ManifestError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        };
        let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        precheck_plugin_table(&table, path)?;
        let mut manifest: PluginManifest = toml::from_str(text).map_err(parse_error)?;
        if let Some(oauth) = manifest.oauth.as_mut() {
            oauth.expand_placeholders_with(lookup);
        }
        manifest.validate_at(path)?;
        manifest.check_compatibility_at(path)?;
        let plugin_dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        manifest.wasm_path(plugin_dir)?;
        Ok(manifest)
    }

    /// The plugin id (`[plugin] name`).
    pub fn id(&self) -> &str {
        &self.plugin.name
    }

    /// Same as [`Self::id`]: tark uses both spellings.
    pub fn name(&self) -> &str {
        &self.plugin.name
    }

    /// `[plugin] version`.
    pub fn version(&self) -> &str {
        &self.plugin.version
    }

    /// `[plugin] type`.
    pub fn plugin_type(&self) -> PluginType {
        self.plugin.plugin_type
    }
}

/// Text from a manifest or the file system made safe for a terminal: control characters
/// (newlines, escape sequences) are shown escaped, so a hostile manifest cannot drive the
/// terminal or break the layout. The one copy: error texts here and the command line's
/// output (`src/cli/output.rs` re-exports it) both use it.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// [`printable`] items joined with `, `.
pub fn printable_list(items: &[String]) -> String {
    items
        .iter()
        .map(|s| printable(s))
        .collect::<Vec<_>>()
        .join(", ")
}
