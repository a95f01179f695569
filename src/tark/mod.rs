//! A source-compatible face for tark's `crate::plugins` module (tark 0.12.6), so tark
//! can build with its `wasmer` feature by re-exporting this module under that name
//! (`integrations/tark/`). Every item tark's other modules use keeps tark's path, name,
//! field names, method signatures, `anyhow::Result` error type, sync/async shape and
//! serde shape; underneath, the calls go to this crate's host ([`crate::plugin`]),
//! registry ([`crate::registry`]), manifest ([`crate::manifest`]) and host services
//! ([`crate::host`]). See the README section "Using tark-wasmer from tark" for what
//! differs from tark's wasmtime host and why.
//!
//! Conventions kept from tark because its code relies on them:
//! - `PluginRegistry::new()` and `PluginHost::new()` take no arguments and read tark's
//!   plugins directory (or `TARK_PLUGINS_DIR`, this crate's override);
//! - each `PluginHost::load` gives a fresh wasm instance: tark builds a host per
//!   operation, so state held in guest memory does not outlive it (storage does);
//! - error texts tark or its users match on are tark's (`Plugin '<id>' not found`,
//!   `Only PKCE OAuth flow is supported for plugins right now`, the widget `load_failed`
//!   and `widget_too_large` markers, ...).

pub mod host;
mod manifest;
mod oauth;
mod registry;
mod widget;
mod ws_host;

use std::path::PathBuf;

use anyhow::Result;

use crate::host::HostConfig;
use crate::plugin::HostOptions;

/// Environment variable naming a PEM file of extra trusted root certificates (the
/// command line's `TARK_WASMER_CA_FILE`).
pub use host::{
    AuthCredentials, AuthStatus, ChannelAuthStatus, ChannelInboundMessage, ChannelInfo,
    ChannelSendRequest, ChannelSendResult, ChannelWebhookRequest, ChannelWebhookResponse,
    ChatResponse, ChatUsage, ModelInfo, PluginHost, PluginInstance, ProviderAuthStatus,
    ProviderInfo,
};
pub use manifest::{
    ChannelContribution, CommandContribution, ConfigContribution, OAuthConfig, OAuthFlowType,
    PluginActivation, PluginCapabilities, PluginContributions, PluginManifest, PluginMetadata,
    PluginType, ProviderContribution,
};
pub use oauth::{run_oauth_flow_for_plugin, run_oauth_flow_with_browser, PluginOAuthResult};
pub use registry::{InstalledPlugin, PluginRegistry};
pub use widget::{collect_channel_widgets, PluginWidgetState};
pub use ws_host::{
    close as ws_close, connect as ws_connect, recv as ws_recv, send as ws_send, WsRecvResult,
};

/// The plugin API version this host implements (tark's constant).
pub const PLUGIN_API_VERSION: &str = crate::manifest::PLUGIN_API_VERSION;

/// tark's plugins directory (`<data_local_dir>/tark/plugins`), or `TARK_PLUGINS_DIR`
/// when set: the same directory every other entry point of this crate uses.
pub fn plugins_dir() -> Result<PathBuf> {
    Ok(crate::registry::resolve_plugins_dir(None))
}

/// The default data directory of one plugin: `<plugins_dir>/<id>/data` (tark's layout).
pub fn plugin_data_dir(plugin_id: &str) -> Result<PathBuf> {
    Ok(plugins_dir()?
        .join(plugin_id)
        .join(crate::registry::DATA_DIR))
}

/// Host settings tark expects: its workspace root is the current directory, `~` in
/// `fs_read` is the user's home; plus this crate's extra CAs from `TARK_WASMER_CA_FILE`.
fn host_config() -> Result<HostConfig> {
    Ok(HostConfig::from_environment()?)
}

/// [`HostOptions`] of every host the face builds.
fn host_options() -> Result<HostOptions> {
    Ok(HostOptions {
        config: host_config()?,
        ..HostOptions::default()
    })
}
