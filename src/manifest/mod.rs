//! `plugin.toml`: tark's plugin manifest (legacy spec §4).
//!
//! The types and field names mirror tark's (`src/plugins/manifest/mod.rs`) so that tark can
//! switch hosts behind a feature flag. Parsing accepts everything tark accepts (unknown keys
//! and tables are ignored) with two deliberate exceptions from spec §6.4 item 24: a `wasm`
//! path that leaves the plugin directory is refused, and a plugin name must be usable as a
//! directory name (tark's own character rule already guarantees that).
//!
//! Errors name the manifest file, the offending field and the fix, because the person who
//! reads them is usually a plugin author editing that file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// File name of the manifest inside a plugin directory.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// Default `[plugin] api_version` (tark's default).
pub const DEFAULT_API_VERSION: &str = "0.1";

/// Default `[plugin] wasm` (tark's default).
pub const DEFAULT_WASM_FILE: &str = "plugin.wasm";

/// The tark version this host claims compatibility with (spec §0.1). A plugin whose
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
            lines.push(format!("  • HTTP to: {}", join_printable(&self.http)));
        }
        if !self.env.is_empty() {
            lines.push(format!("  • Env vars: {}", join_printable(&self.env)));
        }
        if !self.fs_read.is_empty() {
            lines.push(format!("  • Read files: {}", join_printable(&self.fs_read)));
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

/// `[oauth] flow`. Only `pkce` runs (tark: "Only PKCE OAuth flow is supported for plugins
/// right now"), but `device_flow` manifests must still load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OAuthFlowType {
    /// Authorization code with PKCE.
    Pkce,
    /// Device authorization grant (parsed, not supported at run time).
    DeviceFlow,
}

fn default_true() -> bool {
    true
}

/// `[oauth]`: configuration for `tark plugin auth` (spec §4.5). `${VAR}` placeholders in the
/// string fields are expanded from the environment at load.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthConfig {
    /// Which OAuth flow.
    pub flow: OAuthFlowType,
    /// Authorization endpoint.
    pub auth_url: String,
    /// Token endpoint.
    pub token_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret (public clients have none).
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Requested scopes.
    pub scopes: Vec<String>,
    /// Redirect URI registered with the provider.
    pub redirect_uri: String,
    /// Where to store credentials (`~/` expanded by the OAuth flow); default
    /// `<config_dir>/tark/<id>_oauth.json`.
    #[serde(default)]
    pub credentials_path: Option<String>,
    /// Presence enables the `auth_process_tokens` export; the value is ignored.
    #[serde(default)]
    pub process_tokens_callback: Option<String>,
    /// Extra authorize-URL query parameters.
    #[serde(default)]
    pub extra_params: BTreeMap<String, String>,
    /// Whether to send and verify `state`.
    #[serde(default = "default_true")]
    pub use_state: bool,
}

/// The OAuth flow refuses to run while placeholders are unresolved; the text is tark's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("OAuth config has unresolved environment placeholders: {}", fields.join(", "))]
pub struct UnresolvedPlaceholders {
    /// The affected field names, in tark's order.
    pub fields: Vec<&'static str>,
}

impl OAuthConfig {
    /// Replace `${NAME}` placeholders (`NAME` = `[A-Za-z0-9_]+`) in the fields tark expands,
    /// using `lookup`; names it does not know are left verbatim.
    pub fn expand_placeholders_with(&mut self, lookup: &dyn Fn(&str) -> Option<String>) {
        let expand = |s: &mut String| *s = expand_placeholders(s, lookup);
        expand(&mut self.auth_url);
        expand(&mut self.token_url);
        expand(&mut self.client_id);
        if let Some(s) = self.client_secret.as_mut() {
            expand(s);
        }
        self.scopes.iter_mut().for_each(&expand);
        expand(&mut self.redirect_uri);
        if let Some(s) = self.credentials_path.as_mut() {
            expand(s);
        }
        if let Some(s) = self.process_tokens_callback.as_mut() {
            expand(s);
        }
        self.extra_params.values_mut().for_each(&expand);
    }

    /// Fields that still contain `${` after expansion (tark's test and field names), so the
    /// OAuth flow can refuse with a message naming them.
    pub fn unresolved_placeholders(&self) -> Vec<&'static str> {
        let has = |s: &str| s.contains("${");
        let opt = |s: &Option<String>| s.as_deref().is_some_and(has);
        let mut out = Vec::new();
        if has(&self.auth_url) {
            out.push("auth_url");
        }
        if has(&self.token_url) {
            out.push("token_url");
        }
        if has(&self.client_id) {
            out.push("client_id");
        }
        if opt(&self.client_secret) {
            out.push("client_secret");
        }
        if self.scopes.iter().any(|s| has(s)) {
            out.push("scopes");
        }
        if has(&self.redirect_uri) {
            out.push("redirect_uri");
        }
        if opt(&self.credentials_path) {
            out.push("credentials_path");
        }
        if opt(&self.process_tokens_callback) {
            out.push("process_tokens_callback");
        }
        if self.extra_params.values().any(|s| has(s)) {
            out.push("extra_params");
        }
        out
    }

    /// `Ok` when every placeholder was resolved; otherwise tark's error text.
    pub fn check_resolved(&self) -> Result<(), UnresolvedPlaceholders> {
        let fields = self.unresolved_placeholders();
        if fields.is_empty() {
            Ok(())
        } else {
            Err(UnresolvedPlaceholders { fields })
        }
    }
}

/// Single-pass `${NAME}` substitution; unknown names and malformed placeholders stay as
/// written (tark's behaviour), substituted values are not re-scanned.
fn expand_placeholders(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        let (before, from_dollar) = rest.split_at(start);
        out.push_str(before);
        let after_open = from_dollar.get(2..).unwrap_or("");
        let name_len = after_open
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after_open.len());
        let name = after_open.get(..name_len).unwrap_or("");
        let closed = after_open
            .get(name_len..)
            .is_some_and(|t| t.starts_with('}'));
        if !name.is_empty() && closed {
            let consumed = 2 + name_len + 1;
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => out.push_str(from_dollar.get(..consumed).unwrap_or("")),
            }
            rest = from_dollar.get(consumed..).unwrap_or("");
        } else {
            out.push_str("${");
            rest = after_open;
        }
    }
    out.push_str(rest);
    out
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

    /// tark's validation (plus the `wasm` path rule), reporting errors against
    /// `plugin.toml`. Prefer [`Self::validate_at`] when the file is known.
    pub fn validate(&self) -> Result<(), ManifestError> {
        self.validate_at(Path::new(MANIFEST_FILE))
    }

    /// Validate, naming `manifest_path` in errors. Rules in tark's order: name required,
    /// version required, version semver, name characters; then the `wasm` path.
    pub fn validate_at(&self, manifest_path: &Path) -> Result<(), ManifestError> {
        let p = &self.plugin;
        if p.name.is_empty() {
            return Err(invalid(
                manifest_path,
                "[plugin] name",
                "is required".into(),
                r#"set name = "my-plugin" under [plugin]"#,
            ));
        }
        if p.version.is_empty() {
            return Err(invalid(
                manifest_path,
                "[plugin] version",
                "is required".into(),
                r#"set version = "0.1.0" under [plugin]"#,
            ));
        }
        if semver::Version::parse(&p.version).is_err() {
            return Err(invalid(
                manifest_path,
                "[plugin] version",
                format!("{:?} is not valid semver", p.version),
                "expected MAJOR.MINOR.PATCH such as 1.0.0",
            ));
        }
        if !is_valid_plugin_name(&p.name) {
            return Err(invalid(
                manifest_path,
                "[plugin] name",
                format!(
                    "{:?} must be alphanumeric with hyphens/underscores",
                    p.name
                ),
                "use only letters, digits, '-' and '_'; the name is also the install directory name",
            ));
        }
        self.check_wasm_lexical(manifest_path)
    }

    /// The checks on `wasm` that need no file system: not empty, names a file, relative,
    /// no `..`.
    fn check_wasm_lexical(&self, manifest_path: &Path) -> Result<(), ManifestError> {
        let wasm = &self.plugin.wasm;
        if wasm.is_empty() {
            return Err(invalid(
                manifest_path,
                "[plugin] wasm",
                "is empty".into(),
                r#"set wasm = "plugin.wasm" (relative to the plugin directory) or remove the key"#,
            ));
        }
        let escape = || ManifestError::WasmEscape {
            path: manifest_path.to_path_buf(),
            wasm: wasm.clone(),
            resolved: None,
        };
        let path = Path::new(wasm);
        if path.is_absolute() || path.has_root() {
            return Err(escape());
        }
        let mut last_is_name = false;
        for component in path.components() {
            match component {
                Component::Normal(_) => last_is_name = true,
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(escape())
                }
            }
        }
        if !last_is_name {
            return Err(invalid(
                manifest_path,
                "[plugin] wasm",
                format!("{wasm:?} does not name a file"),
                r#"set wasm to the module's path, e.g. "plugin.wasm" or "dist/plugin.wasm""#,
            ));
        }
        Ok(())
    }

    /// `<plugin_dir>/<wasm>` after checking that it stays inside `plugin_dir`, also after
    /// resolving symlinks along the part of the path that exists. Does not require the file
    /// to exist (the caller reports [`ManifestError::WasmMissing`]).
    pub fn wasm_path(&self, plugin_dir: &Path) -> Result<PathBuf, ManifestError> {
        let manifest_path = plugin_dir.join(MANIFEST_FILE);
        self.check_wasm_lexical(&manifest_path)?;
        let joined = plugin_dir.join(&self.plugin.wasm);
        let Ok(root) = std::fs::canonicalize(plugin_dir) else {
            // Nothing exists yet, so there is no symlink to follow.
            return Ok(joined);
        };
        // Resolve the deepest existing prefix: a symlinked directory that leads outside is
        // an escape even when the module itself is missing.
        let mut probe: &Path = &joined;
        loop {
            match std::fs::canonicalize(probe) {
                Ok(real) if real.starts_with(&root) => return Ok(joined),
                Ok(real) => {
                    return Err(ManifestError::WasmEscape {
                        path: manifest_path,
                        wasm: self.plugin.wasm.clone(),
                        resolved: Some(real),
                    })
                }
                Err(_) => match probe.parent() {
                    Some(parent) if probe != plugin_dir && !parent.as_os_str().is_empty() => {
                        probe = parent
                    }
                    _ => return Ok(joined),
                },
            }
        }
    }

    /// Things tark accepts but the user should know about (spec §6.3 item 12). Never
    /// errors: refusing these would break plugins that work under tark.
    pub fn warnings(&self) -> Vec<String> {
        let id = printable(&self.plugin.name);
        let mut out = Vec::new();
        if self.capabilities.shell {
            out.push(format!(
                "Plugin '{id}' requests shell access - this is dangerous! (no shell access is granted: this host has no shell function)"
            ));
        }
        if !self.capabilities.filesystem.is_empty() {
            out.push(format!(
                "Plugin '{id}' declares [capabilities] filesystem = [{}]; this grants no access (only fs_read paths are readable)",
                join_printable(&self.capabilities.filesystem)
            ));
        }
        if let Some(min) = &self.plugin.min_tark_version {
            if let VersionCheck::Unparsed = check_min_tark_version(min) {
                out.push(format!(
                    "Plugin '{id}' has min_tark_version {:?}, which is not a version (ignored)",
                    printable(min)
                ));
            }
        }
        match check_api_version(&self.plugin.api_version) {
            VersionCheck::Unparsed => out.push(format!(
                "Plugin '{id}' declares api_version {:?}, which is not a version (ignored; this host implements plugin API {PLUGIN_API_VERSION})",
                printable(&self.plugin.api_version)
            )),
            VersionCheck::Older => out.push(format!(
                "Plugin '{id}' declares api_version {:?}, older than any plugin API tark published (0.1); loading it anyway",
                printable(&self.plugin.api_version)
            )),
            VersionCheck::Ok | VersionCheck::Newer => {}
        }
        out
    }

    /// Refuse a plugin built for a newer host: `api_version` with a newer major or minor
    /// than [`PLUGIN_API_VERSION`], or `min_tark_version` above [`COMPAT_TARK_VERSION`]
    /// (a plain version, `0.13`, or a requirement such as `>=0.13` that 0.12.6 does not
    /// meet). Values that are not versions at all are only warned about (see
    /// [`Self::warnings`]): tark never read them, so refusing them would break plugins that
    /// run under tark. Called by [`Self::load`] and every parse, so installing, updating
    /// and loading all refuse such a plugin with the same message.
    pub fn check_compatibility(&self) -> Result<(), ManifestError> {
        self.check_compatibility_at(Path::new(MANIFEST_FILE))
    }

    fn check_compatibility_at(&self, path: &Path) -> Result<(), ManifestError> {
        let p = &self.plugin;
        if let VersionCheck::Newer = check_api_version(&p.api_version) {
            return Err(ManifestError::Incompatible {
                path: path.to_path_buf(),
                field: "api_version".into(),
                value: printable(&p.api_version),
                supported: format!(
                    "this host implements plugin API {PLUGIN_API_VERSION} and accepts api_version 0.1.x and 0.2.x"
                ),
            });
        }
        if let Some(min) = &p.min_tark_version {
            if let VersionCheck::Newer = check_min_tark_version(min) {
                return Err(ManifestError::Incompatible {
                    path: path.to_path_buf(),
                    field: "min_tark_version".into(),
                    value: printable(min),
                    supported: format!("this host is compatible with tark {COMPAT_TARK_VERSION}"),
                });
            }
        }
        Ok(())
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

/// How a declared version compares with what this host supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VersionCheck {
    /// Supported.
    Ok,
    /// Needs a newer host: refused.
    Newer,
    /// Older than anything tark published: accepted with a warning.
    Older,
    /// Not a version: ignored with a warning.
    Unparsed,
}

/// `MAJOR`, `MAJOR.MINOR` or a full semver version (missing parts are 0); surrounding
/// spaces and a leading `v` are tolerated.
fn lenient_version(text: &str) -> Option<semver::Version> {
    let t = text.trim();
    let t = t.strip_prefix('v').unwrap_or(t);
    if let Ok(v) = semver::Version::parse(t) {
        return Some(v);
    }
    let mut parts = t.split('.');
    let major = parts.next()?.parse::<u64>().ok()?;
    let minor = match parts.next() {
        Some(m) => m.parse::<u64>().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(semver::Version::new(major, minor, 0))
}

/// `api_version`: same major and a minor up to ours is fine; `0.0.x` is older than tark's
/// first API; anything with a newer major or minor needs a newer host.
fn check_api_version(declared: &str) -> VersionCheck {
    let (Some(v), Some(ours)) = (
        lenient_version(declared),
        lenient_version(PLUGIN_API_VERSION),
    ) else {
        return VersionCheck::Unparsed;
    };
    if (v.major, v.minor) > (ours.major, ours.minor) {
        VersionCheck::Newer
    } else if (v.major, v.minor) < (0, 1) {
        VersionCheck::Older
    } else {
        VersionCheck::Ok
    }
}

/// `min_tark_version`: a version (lenient) above [`COMPAT_TARK_VERSION`], or a requirement
/// (`>=0.13`, `^0.13`) that it does not meet, needs a newer host.
fn check_min_tark_version(declared: &str) -> VersionCheck {
    let Ok(compat) = semver::Version::parse(COMPAT_TARK_VERSION) else {
        return VersionCheck::Unparsed;
    };
    if let Some(v) = lenient_version(declared) {
        // Pre-releases sort below their release: "0.12.6-rc.1" is satisfied by 0.12.6.
        return if v > compat {
            VersionCheck::Newer
        } else {
            VersionCheck::Ok
        };
    }
    match semver::VersionReq::parse(declared.trim()) {
        Ok(req) if req.matches(&compat) => VersionCheck::Ok,
        Ok(_) => VersionCheck::Newer,
        Err(_) => VersionCheck::Unparsed,
    }
}

/// Before serde sees the manifest: check the `[plugin]` keys tark requires so the error
/// names the field and the fix instead of serde's "missing field".
fn precheck_plugin_table(table: &toml::Table, path: &Path) -> Result<(), ManifestError> {
    let plugin = match table.get("plugin") {
        Some(toml::Value::Table(t)) => t,
        Some(other) => {
            return Err(invalid(
                path,
                "[plugin]",
                format!("must be a table, found {}", other.type_str()),
                "write a [plugin] section with name, version and type",
            ))
        }
        None => {
            return Err(invalid(
                path,
                "[plugin]",
                "section is missing".into(),
                r#"add a [plugin] section with name = "...", version = "0.1.0" and type = "...""#,
            ))
        }
    };
    let required = [
        ("name", r#"set name = "my-plugin" under [plugin]"#),
        ("version", r#"set version = "0.1.0" under [plugin]"#),
    ];
    for (key, fix) in required {
        let field = format!("[plugin] {key}");
        match plugin.get(key) {
            Some(toml::Value::String(_)) => {}
            Some(other) => {
                return Err(invalid(
                    path,
                    &field,
                    format!("must be a string, found {}", other.type_str()),
                    fix,
                ))
            }
            None => return Err(invalid(path, &field, "is required".into(), fix)),
        }
    }
    let type_fix = format!("use one of: {}", PluginType::valid_list());
    match plugin.get("type") {
        Some(toml::Value::String(s)) => {
            if s.parse::<PluginType>().is_err() {
                return Err(invalid(
                    path,
                    "[plugin] type",
                    format!("{:?} is not a valid plugin type", printable(s)),
                    &type_fix,
                ));
            }
        }
        Some(other) => {
            return Err(invalid(
                path,
                "[plugin] type",
                format!("must be a string, found {}", other.type_str()),
                &type_fix,
            ))
        }
        None => {
            return Err(invalid(
                path,
                "[plugin] type",
                "is required".into(),
                &type_fix,
            ))
        }
    }
    Ok(())
}

/// Escape control characters so manifest text cannot drive a terminal.
fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

fn join_printable(items: &[String]) -> String {
    items
        .iter()
        .map(|s| printable(s))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
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
            let text =
                format!("[plugin]\nname = \"{bad}\"\nversion = \"1.0.0\"\ntype = \"tool\"\n");
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
}
