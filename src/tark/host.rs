//! tark's `PluginHost` / `PluginInstance` and the records their methods return.
//!
//! Each loaded plugin gets its own [`crate::plugin::PluginHost`] holding exactly that
//! plugin: tark builds a host per operation and loads one plugin into it, so this keeps
//! tark's "a load is a fresh instance" rule while the engine, the compiled module and
//! the artifact cache stay shared by the whole process (a load compiles nothing twice).
//! Methods keep tark's signatures and return `anyhow::Result`; guest pointers,
//! lengths, buffers, `dealloc` and traps are handled by this crate's ABI layer.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use wasmer::Type;

use super::registry::{InstalledPlugin, PluginRegistry};
use crate::plugin as core;

pub use crate::plugin::{
    AuthCredentials, AuthStatus, ChannelAuthStatus, ChannelInfo, ChatResponse, ModelInfo,
    ProviderAuthStatus, ProviderInfo,
};

/// tark's `ChannelInboundMessage`: a message a channel hands to tark.
pub type ChannelInboundMessage = crate::plugin::InboundMessage;
/// tark's `ChannelWebhookRequest`: an HTTP request for a channel's webhook.
pub type ChannelWebhookRequest = crate::plugin::WebhookRequest;
/// tark's `ChannelWebhookResponse`: the channel's answer, with any inbound messages.
pub type ChannelWebhookResponse = crate::plugin::WebhookResponse;
/// tark's `ChannelSendRequest`: an outbound message (or an edit of `message_id`).
pub type ChannelSendRequest = crate::plugin::OutboundMessage;
/// tark's `ChannelSendResult`.
pub type ChannelSendResult = crate::plugin::SendResult;
/// tark's `ChatUsage`: token counts of a chat answer.
pub type ChatUsage = crate::plugin::Usage;

/// Loaded plugins, by id. Cheap to create: engines and compiled modules are shared by
/// the process.
pub struct PluginHost {
    options: core::HostOptions,
    instances: HashMap<String, PluginInstance>,
}

impl PluginHost {
    /// A host with default settings: compiler from `TARK_WASMER_COMPILER` (else
    /// cranelift), artifact cache on, the current directory as workspace root and the
    /// home directory for `~` in `fs_read` (as tark), extra trusted CAs from
    /// `TARK_WASMER_CA_FILE`.
    pub fn new() -> Result<Self> {
        Ok(Self::with_options(super::host_options()?))
    }

    /// A host whose plugins use `options` (compiler, limits, cache, ...); not in tark,
    /// for callers that want this crate's settings. `options.plugins_dir` is ignored:
    /// each plugin loads from its own directory.
    pub fn with_options(options: core::HostOptions) -> Self {
        PluginHost {
            options,
            instances: HashMap::new(),
        }
    }

    /// Load a plugin with its default data directory (`<path>/data`).
    pub fn load(&mut self, plugin: &InstalledPlugin) -> Result<()> {
        self.load_with_data_dir(plugin, plugin.data_dir())
    }

    /// Load a plugin with another data directory (tark's project-local
    /// `<project>/.tark/plugins/<id>/data`). Replaces an instance already loaded under
    /// the same id.
    pub fn load_with_data_dir(
        &mut self,
        plugin: &InstalledPlugin,
        data_dir: PathBuf,
    ) -> Result<()> {
        log::info!(
            "[plugin:{}] loading (data dir: {})",
            plugin.id(),
            data_dir.display()
        );
        let mut options = self.options.clone();
        options.plugins_dir = plugin.path.parent().map(|p| p.to_path_buf());
        let mut host = core::PluginHost::with_options(options)?;
        host.load_with_data_dir(plugin.entry(), &data_dir)
            .with_context(|| format!("Failed to load plugin: {}", plugin.id()))?;
        let id = plugin.id().to_string();
        self.instances
            .insert(id.clone(), PluginInstance { id, host });
        Ok(())
    }

    /// Drop a loaded plugin (and with it its instance and WebSocket connections).
    pub fn unload(&mut self, plugin_id: &str) -> Result<()> {
        self.instances
            .remove(plugin_id)
            .ok_or_else(|| anyhow!("Plugin not loaded: {}", plugin_id))?;
        Ok(())
    }

    /// A loaded plugin.
    pub fn get(&self, plugin_id: &str) -> Option<&PluginInstance> {
        self.instances.get(plugin_id)
    }

    /// A loaded plugin, for calls.
    pub fn get_mut(&mut self, plugin_id: &str) -> Option<&mut PluginInstance> {
        self.instances.get_mut(plugin_id)
    }

    /// Load every enabled plugin of `registry`; failures are logged and skipped.
    pub fn load_all(&mut self, registry: &PluginRegistry) -> Result<()> {
        for plugin in registry.enabled() {
            if let Err(e) = self.load(plugin) {
                log::error!("[plugin:{}] failed to load: {e:#}", plugin.id());
            }
        }
        Ok(())
    }

    /// Number of loaded plugins.
    pub fn len(&self) -> usize {
        self.instances.len()
    }

    /// No plugin loaded?
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }
}

impl Default for PluginHost {
    /// [`PluginHost::new`]; should reading `TARK_WASMER_CA_FILE` fail, plain defaults.
    fn default() -> Self {
        Self::new().unwrap_or_else(|_| Self::with_options(core::HostOptions::default()))
    }
}

/// One loaded plugin, with tark's methods.
pub struct PluginInstance {
    /// Plugin id.
    pub id: String,
    host: core::PluginHost,
}

/// Legacy export signatures tark probes for (`has_*`).
const I32: Type = Type::I32;

impl PluginInstance {
    fn inner(&mut self) -> Result<&mut core::PluginInstance> {
        let id = &self.id;
        self.host
            .get_mut(id)
            .ok_or_else(|| anyhow!("Plugin not loaded: {}", id))
    }

    /// This crate's handle of the plugin (typed calls, ABI, instance counters); not in
    /// tark.
    pub fn handle_mut(&mut self) -> Option<&mut core::PluginInstance> {
        self.host.get_mut(&self.id)
    }

    /// Does the module export `legacy` with this core signature, or (canonical ABI) the
    /// function `canonical` of its interface?
    fn exports(&mut self, legacy: &str, params: &[Type], canonical: &str) -> bool {
        match self.inner() {
            Ok(i) => i.has_export(legacy, params, &[I32]) || i.has_function(canonical),
            Err(_) => false,
        }
    }

    // ----- auth plugins -----

    /// `status`.
    pub fn auth_status(&mut self) -> Result<AuthStatus> {
        Ok(self.inner()?.auth_status()?)
    }

    /// `get_token`.
    pub fn auth_get_token(&mut self) -> Result<String> {
        Ok(self.inner()?.auth_get_token()?)
    }

    /// `get_endpoint`.
    pub fn auth_get_endpoint(&mut self) -> Result<String> {
        Ok(self.inner()?.auth_get_endpoint()?)
    }

    /// `init_with_credentials(json)`.
    pub fn auth_init_with_credentials(&mut self, credentials_json: &str) -> Result<()> {
        Ok(self.inner()?.auth_init_with_credentials(credentials_json)?)
    }

    /// `logout`.
    pub fn auth_logout(&mut self) -> Result<()> {
        Ok(self.inner()?.auth_logout()?)
    }

    /// `display_name`.
    pub fn auth_display_name(&mut self) -> Result<String> {
        Ok(self.inner()?.auth_display_name()?)
    }

    // ----- provider plugins -----

    /// `provider_info`.
    pub fn provider_info(&mut self) -> Result<ProviderInfo> {
        Ok(self.inner()?.provider_info()?)
    }

    /// `provider_models`.
    pub fn provider_models(&mut self) -> Result<Vec<ModelInfo>> {
        Ok(self.inner()?.provider_models()?)
    }

    /// `provider_auth_status`.
    pub fn provider_auth_status(&mut self) -> Result<ProviderAuthStatus> {
        Ok(self.inner()?.provider_auth_status()?)
    }

    /// `provider_auth_init(credentials_json)`.
    pub fn provider_auth_init(&mut self, credentials_json: &str) -> Result<()> {
        Ok(self.inner()?.provider_auth_init(credentials_json)?)
    }

    /// `provider_auth_logout`.
    pub fn provider_auth_logout(&mut self) -> Result<()> {
        Ok(self.inner()?.provider_auth_logout()?)
    }

    /// `provider_auth_credentials` of an auth-only plugin.
    pub fn provider_auth_credentials(&mut self) -> Result<AuthCredentials> {
        Ok(self.inner()?.provider_auth_credentials()?)
    }

    /// Does the plugin export `provider_auth_credentials` (auth-only interface)?
    pub fn has_auth_credentials_interface(&mut self) -> bool {
        match self.inner() {
            Ok(i) => i.has_auth_credentials_interface(),
            Err(_) => false,
        }
    }

    /// `auth_process_tokens(tokens_json)`: the processed text, or `None` when the plugin
    /// does not export it.
    pub fn auth_process_tokens(&mut self, tokens_json: &str) -> Result<Option<String>> {
        let inner = self.inner()?;
        if !inner.has_auth_process_tokens() {
            return Ok(None);
        }
        Ok(Some(inner.auth_process_tokens(tokens_json)?))
    }

    /// `provider_chat(messages_json, model)`: `messages_json` is tark's JSON array of
    /// `{role, content}`. An empty answer is returned as is (tark's caller reports it).
    pub fn provider_chat(&mut self, messages_json: &str, model: &str) -> Result<ChatResponse> {
        let inner = self.inner()?;
        if inner.world().is_none() {
            let text = inner.legacy_chat_raw(messages_json, model)?;
            return serde_json::from_str(&text).context("Failed to parse chat response JSON");
        }
        let messages: serde_json::Value =
            serde_json::from_str(messages_json).context("Invalid chat messages JSON")?;
        let out = inner.call_canonical_json("chat", &[messages, model.into()])?;
        match out {
            serde_json::Value::Object(mut o) => {
                if let Some(ok) = o.remove("ok") {
                    serde_json::from_value(ok).context("Failed to parse chat response JSON")
                } else {
                    let err = o.remove("err").unwrap_or_default();
                    let text = err
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| err.to_string());
                    Err(anyhow!("Provider chat failed: {text}"))
                }
            }
            other => Err(anyhow!("Failed to parse chat response JSON: {other}")),
        }
    }

    // ----- channel plugins -----

    /// `channel_info`.
    pub fn channel_info(&mut self) -> Result<ChannelInfo> {
        Ok(self.inner()?.channel_info()?)
    }

    /// `channel_start`.
    pub fn channel_start(&mut self) -> Result<()> {
        Ok(self.inner()?.channel_start()?)
    }

    /// `channel_stop`.
    pub fn channel_stop(&mut self) -> Result<()> {
        Ok(self.inner()?.channel_stop()?)
    }

    /// `channel_auth_status`.
    pub fn channel_auth_status(&mut self) -> Result<ChannelAuthStatus> {
        Ok(self.inner()?.channel_auth_status()?)
    }

    /// `channel_auth_init(credentials_json)`.
    pub fn channel_auth_init(&mut self, credentials_json: &str) -> Result<()> {
        Ok(self.inner()?.channel_auth_init(credentials_json)?)
    }

    /// `channel_auth_logout`.
    pub fn channel_auth_logout(&mut self) -> Result<()> {
        Ok(self.inner()?.channel_auth_logout()?)
    }

    /// `channel_widget_state`: the plugin's widget JSON text.
    pub fn channel_widget_state(&mut self) -> Result<String> {
        Ok(self.inner()?.channel_widget_state()?)
    }

    /// `channel_handle_webhook(request)`.
    pub fn channel_handle_webhook(
        &mut self,
        request: &ChannelWebhookRequest,
    ) -> Result<ChannelWebhookResponse> {
        Ok(self.inner()?.channel_handle_webhook(request)?)
    }

    /// `channel_handle_gateway_event(payload_json)`.
    pub fn channel_handle_gateway_event(
        &mut self,
        payload_json: &str,
    ) -> Result<Vec<ChannelInboundMessage>> {
        Ok(self.inner()?.channel_handle_gateway_event(payload_json)?)
    }

    /// `channel_poll`.
    pub fn channel_poll(&mut self) -> Result<Vec<ChannelInboundMessage>> {
        Ok(self.inner()?.channel_poll()?)
    }

    /// `channel_send(request)`.
    pub fn channel_send(&mut self, request: &ChannelSendRequest) -> Result<ChannelSendResult> {
        Ok(self.inner()?.channel_send(request)?)
    }

    /// Does the plugin take credentials (`channel_auth_init`)?
    pub fn has_channel_auth_init(&mut self) -> bool {
        self.exports("channel_auth_init", &[I32, I32], "auth-init")
    }

    /// Does the plugin have a widget (`channel_widget_state`)?
    pub fn has_channel_widget_state(&mut self) -> bool {
        self.exports("channel_widget_state", &[I32], "widget-state")
    }

    /// Does the plugin handle gateway events (`channel_handle_gateway_event`)?
    pub fn has_channel_gateway_handler(&mut self) -> bool {
        self.exports(
            "channel_handle_gateway_event",
            &[I32, I32, I32],
            "handle-gateway-event",
        )
    }

    /// Can the plugin be polled (`channel_poll`)?
    pub fn has_channel_poll(&mut self) -> bool {
        match self.inner() {
            Ok(i) => i.has_channel_poll(),
            Err(_) => false,
        }
    }
}
