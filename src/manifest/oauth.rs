//! `[oauth]`: the configuration for `tark plugin auth`, with `${VAR}` placeholders expanded
//! from the environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// `[oauth]`: configuration for `tark plugin auth`. `${VAR}` placeholders in the string
/// fields are expanded from the environment at load (see the `oauth_*` tests in
/// `src/manifest/tests/oauth.rs`).
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
pub(super) fn expand_placeholders(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
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
