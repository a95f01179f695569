//! tark's manifest types are this crate's ([`crate::manifest`]): same fields, same serde
//! shape (`plugin.toml`). What tark has on top are three capability predicates; they
//! answer with the rules this host enforces ([`crate::policy`]).

use crate::policy::{FsOpenError, Policy, PolicyConfig};

pub use crate::manifest::{
    ChannelContribution, CommandContribution, ConfigContribution, OAuthConfig, OAuthFlowType,
    PluginActivation, PluginCapabilities, PluginContributions, PluginManifest, PluginMetadata,
    PluginType, ProviderContribution,
};

/// tark's `PluginCapabilities` predicates. They live here, not in `crate::manifest`,
/// because only tark's code asks them; the host itself decides through
/// [`crate::policy::Policy`].
impl PluginCapabilities {
    /// May the plugin reach `host` over HTTP or WebSocket? The host rule of
    /// [`crate::policy`]: exact name, subdomains of a listed name, `*.suffix` entries.
    pub fn is_http_allowed(&self, host: &str) -> bool {
        self.policy().host_allowed(host)
    }

    /// May the plugin read the environment variable `var`? Exact name, `*`, or an entry
    /// ending in `*` used as a prefix (`GEMINI_*`): tark's rule, also the host's.
    pub fn is_env_allowed(&self, var: &str) -> bool {
        self.env
            .iter()
            .any(|allowed| match allowed.strip_suffix('*') {
                Some(prefix) => var.starts_with(prefix),
                None => allowed == var,
            })
    }

    /// May the plugin read `requested_path` through `fs.read`? `~` expands to the home
    /// directory, relative paths resolve against the current directory, globs and
    /// directory entries as in [`crate::policy::Policy::fs_open`]. An allowed path that
    /// does not exist (yet) counts as allowed, as in tark.
    pub fn is_fs_read_allowed(&self, requested_path: &str) -> bool {
        if self.fs_read.is_empty() {
            return false;
        }
        match self.policy().fs_open(requested_path) {
            Ok(_) => true,
            Err(FsOpenError::Denied(_)) => false,
            Err(FsOpenError::Io(_)) => true,
        }
    }

    fn policy(&self) -> Policy {
        let config = PolicyConfig {
            home_dir: dirs::home_dir(),
            ..PolicyConfig::default()
        };
        Policy::new("tark", self, &config)
    }
}
