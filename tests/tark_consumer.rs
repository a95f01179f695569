//! tark's own uses of `crate::plugins`, written the way tark 0.12.6 writes them, against
//! `tark_wasmer::tark` (`integrations/tark/` re-exports it as tark's `plugins` module
//! under `--features wasmer`). One function per call site of tark's `CALL_SITES.md`
//! (file and function named in its doc comment), with tark's argument and result types
//! and async context (tokio, `spawn_blocking`, `tokio::time::timeout`): a signature
//! change in the face breaks this build before it breaks tark's.
//!
//! The tests then drive those functions with the example plugins (`tests/plugins/`) in
//! a temporary plugins directory (`TARK_PLUGINS_DIR`), on both compilers
//! (`TARK_WASMER_COMPILER`): a provider chat, a channel webhook + poll + send, and an
//! OAuth round trip whose credentials reach the plugin.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use common::fixtures::{ensure_plugins_built, example_plugin_dir};
use common::servers::{wait_until, CannedResponse, HttpTestServer, WssTestServer};
use tark_wasmer::tark as plugins;

// =======================================================================================
// The call sites, as tark writes them
// =======================================================================================

/// src/auth/oauth.rs: `OAuthHandler` keeps an `OAuthConfig` and reads its fields.
mod auth_oauth {
    use super::plugins::OAuthConfig;

    pub struct OAuthHandler {
        config: OAuthConfig,
    }

    impl OAuthHandler {
        pub fn new(config: OAuthConfig) -> Self {
            Self { config }
        }

        /// `build_authorization_url` / `exchange_code_for_tokens` field reads.
        pub fn describe(&self) -> String {
            let state = self.config.use_state;
            let scope_string = self.config.scopes.join(" ");
            let mut parts = vec![
                format!("client_id={}", self.config.client_id.as_str()),
                format!("redirect_uri={}", self.config.redirect_uri.as_str()),
                format!("scope={scope_string}"),
                format!("state={state}"),
            ];
            for (key, value) in &self.config.extra_params {
                parts.push(format!("{}={}", key, value));
            }
            if let Some(secret) = &self.config.client_secret {
                parts.push(format!("secret={}", secret.len()));
            }
            if let Some(path_str) = &self.config.credentials_path {
                parts.push(format!("creds={path_str}"));
            }
            format!(
                "{}?{} -> {}",
                self.config.auth_url,
                parts.join("&"),
                self.config.token_url
            )
        }
    }
}

/// src/channels/mod.rs and src/channels/remote.rs: the channel manager.
mod channels {
    use super::*;
    use plugins::{
        ChannelInboundMessage, ChannelInfo, ChannelSendRequest, ChannelSendResult,
        ChannelWebhookRequest, ChannelWebhookResponse, InstalledPlugin, PluginHost, PluginRegistry,
        PluginType,
    };

    /// src/channels/remote.rs: `QueuedRemoteMessage`.
    #[derive(Debug, Clone)]
    pub struct QueuedRemoteMessage {
        pub plugin_id: String,
        pub message: ChannelInboundMessage,
        pub received_at: String,
    }

    /// What `process_inbound_messages` did (tark answers through the agent).
    #[derive(Default)]
    pub struct Seen {
        pub inbound: Mutex<Vec<QueuedRemoteMessage>>,
    }

    #[derive(Clone)]
    pub struct ChannelManager {
        /// tark: `config.remote.channel_poll_ms`.
        pub poll_ms: u64,
        /// Where tark keeps the channel credentials (`<id>_oauth.json`), decrypted.
        pub creds_dir: PathBuf,
        pub project_root: Option<PathBuf>,
        pub shutdown: Arc<AtomicBool>,
        pub seen: Arc<Seen>,
    }

    impl ChannelManager {
        /// `start_all`.
        pub async fn start_all(&self) -> Result<()> {
            let registry = PluginRegistry::new()?;
            for plugin in registry.by_type(PluginType::Channel) {
                if !plugin.enabled {
                    continue;
                }
                let plugin_id = plugin.id().to_string();
                if let Err(err) = self.start_plugin(plugin).await {
                    tracing_error(&format!("Failed to start channel {plugin_id}: {err}"));
                    continue;
                }
                self.spawn_poll_loop(plugin.clone()).await;
            }
            Ok(())
        }

        async fn start_plugin(&self, plugin: &InstalledPlugin) -> Result<()> {
            let plugin = plugin.clone();
            let manager = self.clone();
            tokio::task::spawn_blocking(move || manager.invoke_start(&plugin)).await?
        }

        /// `plugin_supports_poll`.
        fn plugin_supports_poll(&self, plugin: &InstalledPlugin) -> bool {
            self.with_channel_instance(plugin, |instance| Ok(instance.has_channel_poll()))
                .unwrap_or(false)
        }

        /// `spawn_poll_loop`: one host for the life of the loop, on a blocking thread.
        pub async fn spawn_poll_loop(&self, plugin: InstalledPlugin) {
            if !self.plugin_supports_poll(&plugin) {
                return;
            }
            let interval_ms = self.poll_ms;
            let manager = self.clone();
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                let mut host = match PluginHost::new() {
                    Ok(host) => host,
                    Err(err) => {
                        tracing_error(&format!("Channel poll host init failed: {}", err));
                        return;
                    }
                };

                if let Some(local_dir) = manager.local_plugin_data_dir(plugin.id()) {
                    if local_dir.exists() {
                        if let Err(err) = host.load_with_data_dir(&plugin, local_dir) {
                            tracing_error(&format!("Channel poll load failed: {}", err));
                            return;
                        }
                    } else if let Err(err) = host.load(&plugin) {
                        tracing_error(&format!("Channel poll load failed: {}", err));
                        return;
                    }
                } else if let Err(err) = host.load(&plugin) {
                    tracing_error(&format!("Channel poll load failed: {}", err));
                    return;
                }

                let instance = match host.get_mut(plugin.id()) {
                    Some(instance) => instance,
                    None => return,
                };

                if let Ok(Some(creds)) = manager.load_oauth_credentials(&plugin) {
                    if instance.has_channel_auth_init() {
                        if let Err(err) = instance.channel_auth_init(&creds) {
                            tracing_error(&format!("Channel poll auth init failed: {}", err));
                        }
                    }
                }

                if let Err(err) = instance.channel_start() {
                    tracing_error(&format!("Channel poll start failed: {}", err));
                }

                if !instance.has_channel_poll() {
                    return;
                }

                loop {
                    if manager.shutdown.load(Ordering::SeqCst) {
                        break;
                    }
                    let messages = match instance.channel_poll() {
                        Ok(messages) => messages,
                        Err(err) => {
                            tracing_error(&format!("Channel poll failed: {}", err));
                            Vec::new()
                        }
                    };

                    if !messages.is_empty() {
                        let manager = manager.clone();
                        let plugin_id = plugin.id().to_string();
                        runtime.spawn(async move {
                            if let Err(err) =
                                manager.process_inbound_messages(&plugin_id, messages).await
                            {
                                tracing_error(&format!("processing failed: {}", err));
                            }
                        });
                    }

                    std::thread::sleep(Duration::from_millis(interval_ms));
                }
            });
        }

        /// `handle_webhook`.
        pub async fn handle_webhook(
            &self,
            plugin_id: &str,
            request: ChannelWebhookRequest,
        ) -> Result<ChannelWebhookResponse> {
            let plugin = self.load_channel_plugin(plugin_id)?;
            let response = tokio::task::spawn_blocking({
                let manager = self.clone();
                move || manager.invoke_webhook(&plugin, &request)
            })
            .await??;
            if !response.messages.is_empty() {
                let messages = response.messages.clone();
                self.process_inbound_messages(plugin_id, messages).await?;
            }
            Ok(response)
        }

        /// `handle_gateway_event` (tark's Discord gateway relay).
        pub async fn handle_gateway_event(
            &self,
            plugin_id: &str,
            payload_json: String,
        ) -> Result<Vec<ChannelInboundMessage>> {
            let plugin = self.load_channel_plugin(plugin_id)?;
            let manager = self.clone();
            tokio::task::spawn_blocking(move || {
                manager.invoke_gateway_event(&plugin, &payload_json)
            })
            .await?
        }

        fn invoke_start(&self, plugin: &InstalledPlugin) -> Result<()> {
            self.with_channel_instance(plugin, |instance| instance.channel_start())
        }

        fn invoke_webhook(
            &self,
            plugin: &InstalledPlugin,
            request: &ChannelWebhookRequest,
        ) -> Result<ChannelWebhookResponse> {
            self.with_channel_instance(plugin, |instance| instance.channel_handle_webhook(request))
        }

        pub fn poll_plugin(
            &self,
            plugin: &InstalledPlugin,
        ) -> Result<Option<Vec<ChannelInboundMessage>>> {
            self.with_channel_instance(plugin, |instance| {
                if !instance.has_channel_poll() {
                    return Ok(None);
                }
                let messages = instance.channel_poll()?;
                Ok(Some(messages))
            })
        }

        fn invoke_gateway_event(
            &self,
            plugin: &InstalledPlugin,
            payload_json: &str,
        ) -> Result<Vec<ChannelInboundMessage>> {
            self.with_channel_instance(plugin, |instance| {
                if !instance.has_channel_gateway_handler() {
                    anyhow::bail!("Plugin does not support gateway events");
                }
                instance.channel_handle_gateway_event(payload_json)
            })
        }

        pub fn load_channel_plugin(&self, plugin_id: &str) -> Result<InstalledPlugin> {
            let registry = PluginRegistry::new()?;
            let plugin = registry
                .get(plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Plugin '{}' not found", plugin_id))?;
            if plugin.plugin_type() != PluginType::Channel {
                anyhow::bail!("Plugin '{}' is not a channel plugin", plugin_id);
            }
            if !plugin.enabled {
                anyhow::bail!("Plugin '{}' is disabled", plugin_id);
            }
            Ok(plugin.clone())
        }

        /// `with_channel_instance`: a fresh host per call, credentials re-applied.
        fn with_channel_instance<R>(
            &self,
            plugin: &InstalledPlugin,
            f: impl FnOnce(&mut plugins::PluginInstance) -> Result<R>,
        ) -> Result<R> {
            let mut host = PluginHost::new()?;
            if let Some(local_dir) = self.local_plugin_data_dir(plugin.id()) {
                if local_dir.exists() {
                    host.load_with_data_dir(plugin, local_dir)?;
                } else {
                    host.load(plugin)?;
                }
            } else {
                host.load(plugin)?;
            }
            let instance = host
                .get_mut(plugin.id())
                .ok_or_else(|| anyhow::anyhow!("Failed to load plugin '{}'", plugin.id()))?;
            if let Some(creds) = self.load_oauth_credentials(plugin)? {
                if instance.has_channel_auth_init() {
                    instance.channel_auth_init(&creds)?;
                }
            }
            f(instance)
        }

        /// `load_oauth_credentials`: the manifest's `credentials_path`, else
        /// `<id>_oauth.json`.
        fn load_oauth_credentials(&self, plugin: &InstalledPlugin) -> Result<Option<String>> {
            let path = match &plugin.manifest.oauth {
                Some(oauth) => match &oauth.credentials_path {
                    Some(p) => PathBuf::from(p),
                    None => self.creds_dir.join(format!("{}_oauth.json", plugin.id())),
                },
                None => self.creds_dir.join(format!("{}_oauth.json", plugin.id())),
            };
            if !path.exists() {
                return Ok(None);
            }
            Ok(Some(std::fs::read_to_string(&path)?))
        }

        fn local_plugin_data_dir(&self, plugin_id: &str) -> Option<PathBuf> {
            self.project_root
                .as_ref()
                .map(|root| root.join("plugins").join(plugin_id).join("data"))
        }

        /// `channel_info`.
        pub async fn channel_info(&self, plugin_id: &str) -> Result<ChannelInfo> {
            let plugin = self.load_channel_plugin(plugin_id)?;
            tokio::task::spawn_blocking({
                let manager = self.clone();
                move || manager.with_channel_instance(&plugin, |instance| instance.channel_info())
            })
            .await?
        }

        /// `send_channel_message` (chunking as tark does for long final texts).
        pub async fn send_channel_message(
            &self,
            plugin_id: &str,
            request: &ChannelSendRequest,
        ) -> Result<ChannelSendResult> {
            let max_len = 2000;
            if request.is_final && request.text.len() > max_len {
                let mut message_id = request.message_id.clone();
                let mut first_result: Option<ChannelSendResult> = None;
                for (idx, chunk) in request.text.as_bytes().chunks(max_len).enumerate() {
                    let mut chunk_request = request.clone();
                    chunk_request.text = String::from_utf8_lossy(chunk).to_string();
                    chunk_request.message_id = if idx == 0 { message_id.clone() } else { None };
                    let result = self
                        .send_channel_message_inner(plugin_id, &chunk_request)
                        .await?;
                    if idx == 0 {
                        message_id = result.message_id.clone();
                        first_result = Some(result);
                    }
                }
                return Ok(first_result.unwrap_or(ChannelSendResult {
                    success: true,
                    message_id,
                    error: None,
                }));
            }
            self.send_channel_message_inner(plugin_id, request).await
        }

        async fn send_channel_message_inner(
            &self,
            plugin_id: &str,
            request: &ChannelSendRequest,
        ) -> Result<ChannelSendResult> {
            let plugin = self.load_channel_plugin(plugin_id)?;
            let request_for_send = request.clone();
            tokio::task::spawn_blocking({
                let manager = self.clone();
                move || {
                    manager.with_channel_instance(&plugin, |instance| {
                        instance.channel_send(&request_for_send)
                    })
                }
            })
            .await?
        }

        /// `process_inbound_messages` / `process_inbound_message`: the agent answers
        /// (here: an acknowledgement, sent like tark's "Working..." message).
        pub async fn process_inbound_messages(
            &self,
            plugin_id: &str,
            messages: Vec<ChannelInboundMessage>,
        ) -> Result<()> {
            for message in messages {
                self.process_inbound_message(plugin_id, &message).await?;
            }
            Ok(())
        }

        async fn process_inbound_message(
            &self,
            plugin_id: &str,
            message: &ChannelInboundMessage,
        ) -> Result<()> {
            let channel_info = self.channel_info(plugin_id).await?;
            if let Ok(mut seen) = self.seen.inbound.lock() {
                seen.push(QueuedRemoteMessage {
                    plugin_id: plugin_id.to_string(),
                    message: message.clone(),
                    received_at: format!("{:?}", std::time::SystemTime::now()),
                });
            }
            let send_request = ChannelSendRequest {
                conversation_id: message.conversation_id.clone(),
                text: format!("ack: {}", message.text),
                message_id: None,
                is_final: !channel_info.supports_edits || !channel_info.supports_streaming,
                metadata_json: message.metadata_json.clone(),
            };
            let _ = self.send_channel_message(plugin_id, &send_request).await?;
            Ok(())
        }
    }

    /// src/tui_new/controller.rs and src/channels/remote.rs tests: a literal message.
    pub fn queued(text: &str) -> QueuedRemoteMessage {
        QueuedRemoteMessage {
            plugin_id: "discord".to_string(),
            message: ChannelInboundMessage {
                conversation_id: "conv".to_string(),
                user_id: "user".to_string(),
                text: text.to_string(),
                metadata_json: String::new(),
            },
            received_at: "now".to_string(),
        }
    }
}

/// src/llm/mod.rs and src/llm/plugin_provider.rs.
mod llm {
    use super::*;
    use plugins::{
        ChatResponse, ModelInfo, PluginHost, PluginRegistry, PluginType, ProviderAuthStatus,
        ProviderInfo,
    };

    /// src/llm/mod.rs `try_gemini_auth_plugin`, for any auth plugin id.
    pub fn try_auth_plugin(id: &str, creds_json: Option<&str>) -> Option<String> {
        use plugins::{PluginHost, PluginRegistry};

        let registry = PluginRegistry::new().ok()?;
        let plugin = registry.get(id)?;
        if !plugin.enabled {
            return None;
        }
        let mut host = PluginHost::new().ok()?;
        host.load(plugin).ok()?;
        let instance = host.get_mut(id)?;
        if let Some(creds_json) = creds_json {
            if instance.auth_init_with_credentials(creds_json).is_ok() {
                // tark logs here
            }
        }
        match instance.auth_get_token() {
            Ok(token) if !token.is_empty() => Some(token),
            _ => None,
        }
    }

    #[derive(serde::Serialize)]
    struct PluginMessage {
        role: String,
        content: String,
    }

    pub struct PluginProviderAdapter {
        plugin_id: String,
        pub display_name: String,
        pub model: String,
        pub models: Vec<ModelInfo>,
        info: ProviderInfo,
    }

    /// tark's `TokenUsage` conversion of `ChatResponse::usage`.
    pub struct Answer {
        pub text: String,
        pub usage: Option<(u32, u32, u32)>,
    }

    impl PluginProviderAdapter {
        pub fn new(plugin_id: &str) -> Result<Self> {
            let registry = PluginRegistry::new()?;
            let plugin = registry
                .get(plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Plugin not found: {}", plugin_id))?;
            if plugin.manifest.plugin_type() != PluginType::Provider {
                anyhow::bail!("Plugin {} is not a provider plugin", plugin_id);
            }
            if !plugin.enabled {
                anyhow::bail!("Plugin {} is disabled", plugin_id);
            }
            let mut host = PluginHost::new()?;
            host.load(plugin)?;
            let instance = host
                .get_mut(plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Failed to get plugin instance"))?;
            let info = instance.provider_info()?;
            let models = instance.provider_models()?;
            let default_model = models
                .first()
                .map(|m| m.id.clone())
                .unwrap_or_else(|| "default".to_string());
            Ok(Self {
                plugin_id: plugin_id.to_string(),
                display_name: info.display_name.clone(),
                model: default_model,
                models,
                info,
            })
        }

        pub fn with_model(mut self, model: &str) -> Self {
            self.model = model.to_string();
            self
        }

        pub fn info(&self) -> &ProviderInfo {
            &self.info
        }

        pub fn supports_streaming(&self) -> bool {
            self.models
                .iter()
                .find(|m| m.id == self.model)
                .map(|m| m.supports_streaming)
                .unwrap_or(false)
        }

        pub fn auth_status(&self) -> Result<ProviderAuthStatus> {
            let registry = PluginRegistry::new()?;
            let plugin = registry
                .get(&self.plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Plugin not found"))?;
            let mut host = PluginHost::new()?;
            host.load(plugin)?;
            let instance = host
                .get_mut(&self.plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Failed to get plugin instance"))?;
            instance.provider_auth_status()
        }

        pub fn auth_init(&self, credentials_json: &str) -> Result<()> {
            let registry = PluginRegistry::new()?;
            let plugin = registry
                .get(&self.plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Plugin not found"))?;
            let mut host = PluginHost::new()?;
            host.load(plugin)?;
            let instance = host
                .get_mut(&self.plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Failed to get plugin instance"))?;
            instance.provider_auth_init(credentials_json)
        }

        #[allow(dead_code)]
        fn get_instance(&self) -> Result<(PluginHost, String)> {
            let registry = PluginRegistry::new()?;
            let plugin = registry
                .get(&self.plugin_id)
                .ok_or_else(|| anyhow::anyhow!("Plugin not found"))?;
            let mut host = PluginHost::new()?;
            host.load(plugin)?;
            Ok((host, self.plugin_id.clone()))
        }

        /// `LlmProvider::chat`: the whole call on a blocking thread.
        pub async fn chat(&self, messages: &[(&str, &str)]) -> Result<Answer> {
            let plugin_messages: Vec<PluginMessage> = messages
                .iter()
                .map(|(role, content)| PluginMessage {
                    role: role.to_string(),
                    content: content.to_string(),
                })
                .collect();
            let messages_json = serde_json::to_string(&plugin_messages)?;
            let model = self.model.clone();
            let plugin_id = self.plugin_id.clone();
            let (response, pid) =
                tokio::task::spawn_blocking(move || -> Result<(ChatResponse, String)> {
                    let registry = PluginRegistry::new()?;
                    let plugin = registry
                        .get(&plugin_id)
                        .ok_or_else(|| anyhow::anyhow!("Plugin not found: {}", plugin_id))?;
                    let mut host = PluginHost::new()?;
                    host.load(plugin)?;
                    let instance = host
                        .get_mut(&plugin_id)
                        .ok_or_else(|| anyhow::anyhow!("Plugin instance not found"))?;
                    let response: ChatResponse = instance.provider_chat(&messages_json, &model)?;
                    Ok((response, plugin_id))
                })
                .await??;
            if response.text.trim().is_empty() {
                anyhow::bail!(
                    "Plugin provider '{}' returned an empty response for model '{}'.",
                    pid,
                    self.model
                );
            }
            let usage = response.usage.map(|u| {
                (
                    u.input_tokens,
                    u.output_tokens,
                    u.input_tokens + u.output_tokens,
                )
            });
            Ok(Answer {
                text: response.text,
                usage,
            })
        }
    }

    /// `list_plugin_providers`.
    pub fn list_plugin_providers() -> Vec<(String, String)> {
        let registry = match PluginRegistry::new() {
            Ok(r) => r,
            Err(_) => return Vec::new(),
        };
        let mut providers = Vec::new();
        for plugin in registry.provider_plugins() {
            let mut host = match PluginHost::new() {
                Ok(h) => h,
                Err(_) => continue,
            };
            if host.load(plugin).is_err() {
                continue;
            }
            if let Some(instance) = host.get_mut(plugin.id()) {
                if let Ok(info) = instance.provider_info() {
                    providers.push((plugin.id().to_string(), info.display_name));
                }
            }
        }
        providers
    }

    /// What `try_create_plugin_provider` would build.
    #[derive(Debug, PartialEq)]
    pub enum Created {
        Native {
            api_mode: String,
            token: String,
            headers: Vec<(String, String)>,
        },
        Adapter {
            model: String,
        },
    }

    /// `try_create_plugin_provider`.
    pub fn try_create_plugin_provider(name: &str, model: Option<&str>) -> Option<Created> {
        let registry = PluginRegistry::new().ok()?;
        let plugin = registry.get(name)?;
        if plugin.manifest.plugin_type() != PluginType::Provider {
            return None;
        }
        if !plugin.enabled {
            return None;
        }
        let mut host = PluginHost::new().ok()?;
        if host.load(plugin).is_err() {
            return None;
        }
        let instance = host.get_mut(name)?;
        let has_auth_interface = instance.has_auth_credentials_interface();
        if has_auth_interface {
            if let Some(provider) = try_create_native_provider_from_auth_plugin(instance, model) {
                return Some(provider);
            }
        }
        let mut adapter = PluginProviderAdapter::new(name).ok()?;
        if let Some(m) = model {
            adapter = adapter.with_model(m);
        }
        Some(Created::Adapter {
            model: adapter.model,
        })
    }

    /// `try_create_native_provider_from_auth_plugin`.
    fn try_create_native_provider_from_auth_plugin(
        instance: &mut plugins::PluginInstance,
        _model: Option<&str>,
    ) -> Option<Created> {
        let creds = match instance.provider_auth_credentials() {
            Ok(c) => c,
            Err(_) => return None,
        };
        let _has_project = creds.project_id.is_some();
        let mut headers = Vec::new();
        if let Some(h) = creds.custom_headers {
            for (name, value) in h {
                headers.push((name, value));
            }
        }
        let _endpoint: Option<String> = creds.endpoint;
        Some(Created::Native {
            api_mode: creds.api_mode,
            token: creds.access_token,
            headers,
        })
    }
}

/// src/transport/cli.rs: provider auth listing, OAuth flow, logout.
mod transport_cli {
    use super::*;

    /// `run_auth`: plugin providers with an OAuth configuration.
    pub fn oauth_providers() -> Vec<(String, String)> {
        use plugins::PluginRegistry;
        let mut plugin_providers = Vec::new();
        if let Ok(registry) = PluginRegistry::new() {
            for plugin in registry.provider_plugins() {
                if plugin.manifest.oauth.is_some() {
                    for contrib in plugin.contributed_providers() {
                        plugin_providers.push((contrib.id.clone(), contrib.name.clone()));
                    }
                }
            }
        }
        plugin_providers
    }

    /// `provider_is_plugin_oauth`.
    pub fn provider_is_plugin_oauth(provider_id: &str) -> bool {
        if let Ok(registry) = plugins::PluginRegistry::new() {
            for plugin in registry.enabled() {
                if plugin.manifest.oauth.is_some() {
                    for contrib in plugin.contributed_providers() {
                        if contrib.id == provider_id {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    /// `run_plugin_oauth_flow`.
    #[allow(dead_code)]
    pub async fn run_plugin_oauth_flow(provider_id: &str) -> Result<PathBuf> {
        use plugins::PluginRegistry;
        let registry = PluginRegistry::new()?;
        let mut plugin_info = None;
        for plugin in registry.enabled() {
            if let Some(oauth_config) = &plugin.manifest.oauth {
                for contrib in plugin.contributed_providers() {
                    if contrib.id == provider_id {
                        plugin_info = Some((plugin.clone(), oauth_config.clone()));
                        break;
                    }
                }
            }
        }
        let (plugin, oauth_config) =
            plugin_info.ok_or_else(|| anyhow::anyhow!("No OAuth plugin for {provider_id}"))?;
        let result = plugins::run_oauth_flow_for_plugin(&plugin, &oauth_config).await?;
        Ok(result.creds_path)
    }

    /// `run_auth_logout`: the credentials file, else the plugin's `storage.json`.
    pub fn logout(provider: &str) -> Result<Option<PathBuf>> {
        use plugins::PluginRegistry;
        if let Ok(registry) = PluginRegistry::new() {
            for plugin in registry.enabled() {
                if let Some(oauth_config) = &plugin.manifest.oauth {
                    for contrib in plugin.contributed_providers() {
                        if contrib.id == provider
                            || provider.to_lowercase() == contrib.id.to_lowercase()
                        {
                            if let Some(creds_path_str) = &oauth_config.credentials_path {
                                let creds_path = PathBuf::from(creds_path_str);
                                if creds_path.exists() {
                                    std::fs::remove_file(&creds_path)?;
                                    return Ok(Some(creds_path));
                                }
                                return Ok(None);
                            }
                            let plugin_storage = plugin.data_dir().join("storage.json");
                            if plugin_storage.exists() {
                                std::fs::remove_file(&plugin_storage)?;
                                return Ok(Some(plugin_storage));
                            }
                            return Ok(None);
                        }
                    }
                }
            }
        }
        Ok(None)
    }
}

/// src/transport/http.rs: the webhook route builds the request.
mod transport_http {
    use super::plugins;

    pub fn webhook_request(
        plugin_id: &str,
        method: &str,
        headers_vec: Vec<(String, String)>,
        body: &[u8],
    ) -> plugins::ChannelWebhookRequest {
        let body_str = String::from_utf8_lossy(body).to_string();
        crate::plugins::ChannelWebhookRequest {
            method: method.to_string(),
            path: format!("/channels/{}/webhook", plugin_id),
            query: None,
            headers: headers_vec,
            body: body_str,
        }
    }
}

/// src/transport/plugin_cli.rs: `tark plugin ...`.
mod plugin_cli {
    use super::*;
    use plugins::{InstalledPlugin, PluginManifest, PluginRegistry};

    /// `run_plugin_list` rows.
    pub async fn run_plugin_list() -> Result<Vec<(String, String, String, String, String)>> {
        let registry = PluginRegistry::new()?;
        let rows = registry
            .all()
            .map(|p| {
                (
                    p.id().to_string(),
                    p.manifest.plugin.version.clone(),
                    p.plugin_type().to_string(),
                    if p.enabled { "enabled" } else { "disabled" }.to_string(),
                    p.manifest
                        .plugin
                        .description
                        .chars()
                        .take(40)
                        .collect::<String>(),
                )
            })
            .collect();
        let _ = format!("{}", registry.plugins_dir().display());
        Ok(rows)
    }

    /// `run_plugin_info`.
    pub async fn run_plugin_info(plugin_id: &str) -> Result<String> {
        let registry = PluginRegistry::new()?;
        let plugin = registry
            .get(plugin_id)
            .ok_or_else(|| anyhow::anyhow!("Plugin '{}' not found", plugin_id))?;
        let mut out = format!(
            "{} {} {}",
            plugin.manifest.plugin.name,
            plugin.manifest.plugin.version,
            plugin.plugin_type()
        );
        if !plugin.manifest.plugin.description.is_empty() {
            out.push_str(&plugin.manifest.plugin.description);
        }
        if !plugin.manifest.plugin.author.is_empty() {
            out.push_str(&plugin.manifest.plugin.author);
        }
        if !plugin.manifest.plugin.homepage.is_empty() {
            out.push_str(&plugin.manifest.plugin.homepage);
        }
        if !plugin.manifest.plugin.license.is_empty() {
            out.push_str(&plugin.manifest.plugin.license);
        }
        let caps = &plugin.manifest.capabilities;
        out.push_str(&format!(
            " storage={} http={} env={} shell={}",
            caps.storage,
            caps.http.join(", "),
            caps.env.join(", "),
            caps.shell
        ));
        out.push_str(&format!(
            " {} {} {}",
            plugin.path.display(),
            plugin.wasm_path.display(),
            plugin.data_dir().display()
        ));
        Ok(out)
    }

    /// `run_plugin_auth` after the OAuth flow, for a channel: merge, store, init.
    pub async fn run_plugin_auth(
        plugin_id: &str,
        project_root: Option<&Path>,
        config_payload: Value,
        browser: impl FnOnce(&str) + Send + 'static,
    ) -> Result<PathBuf> {
        let registry = PluginRegistry::new()?;
        let plugin = registry
            .get(plugin_id)
            .ok_or_else(|| anyhow::anyhow!("Plugin '{}' not found", plugin_id))?
            .clone();
        let oauth_config =
            plugin.manifest.oauth.clone().ok_or_else(|| {
                anyhow::anyhow!("Plugin '{}' has no OAuth configuration", plugin_id)
            })?;
        let mut oauth_config = oauth_config.clone();
        if let Some(local_root) = project_root {
            let creds_path = local_root
                .join("plugins")
                .join(plugin.id())
                .join("oauth.json");
            oauth_config.credentials_path = Some(creds_path.to_string_lossy().to_string());
        }
        if plugin.plugin_type() == crate::plugins::PluginType::Channel && plugin.id() == "discord" {
            oauth_config.client_id = "app-id".to_string();
            oauth_config.client_secret = None;
        }

        // tark: `crate::plugins::run_oauth_flow_for_plugin(&plugin, &oauth_config).await?`
        let result =
            crate::plugins::run_oauth_flow_with_browser(&plugin, &oauth_config, browser).await?;

        if plugin.plugin_type() == crate::plugins::PluginType::Channel {
            let mut merged: Value = serde_json::from_str(&result.tokens_json)?;
            if let (Some(m), Some(c)) = (merged.as_object_mut(), config_payload.as_object()) {
                for (k, v) in c {
                    m.insert(k.clone(), v.clone());
                }
            }
            let merged_payload = serde_json::to_string(&merged)?;
            std::fs::write(&result.creds_path, &merged_payload)?;
            let mut host = crate::plugins::PluginHost::new()?;
            if let Some(local_root) = project_root {
                let data_dir = local_root.join("plugins").join(plugin.id()).join("data");
                host.load_with_data_dir(&plugin, data_dir)?;
            } else {
                host.load(&plugin)?;
            }
            if let Some(instance) = host.get_mut(plugin.id()) {
                if instance.has_channel_auth_init() {
                    instance.channel_auth_init(&merged_payload)?;
                }
            }
        }
        Ok(result.creds_path)
    }

    /// `run_plugin_add` (local source): show the manifest, install.
    pub async fn run_plugin_add(source_path: PathBuf) -> Result<String> {
        let manifest_path = source_path.join("plugin.toml");
        if !manifest_path.exists() {
            anyhow::bail!("No plugin.toml found in {}", source_path.display());
        }
        let manifest = PluginManifest::load(&manifest_path)?;
        let _ = format!(
            "{} v{} {}",
            manifest.plugin.name,
            manifest.plugin.version,
            manifest.plugin_type()
        );
        let caps = &manifest.capabilities;
        let _ = (
            caps.storage,
            caps.http.join(", "),
            caps.env.join(", "),
            caps.shell,
        );
        let wasm_path = source_path.join(&manifest.plugin.wasm);
        if !wasm_path.exists() {
            anyhow::bail!("WASM module not found: {}", manifest.plugin.wasm);
        }
        let mut registry = PluginRegistry::new()?;
        let plugin_id = registry.install(&source_path)?;
        write_install_source(&registry, &plugin_id, &json!({"is_git": false}))?;
        Ok(plugin_id)
    }

    /// `run_plugin_update`.
    pub async fn run_plugin_update(plugin_id: &str, source_path: &PathBuf) -> Result<()> {
        let mut registry = PluginRegistry::new()?;
        let plugin = registry
            .get(plugin_id)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("Plugin '{}' not found", plugin_id))?;
        let _source = read_install_source(&plugin)?;
        registry.update(plugin_id, source_path)?;
        Ok(())
    }

    /// `run_plugin_update_all` (the collect).
    pub async fn all_plugins() -> Result<Vec<InstalledPlugin>> {
        let registry = PluginRegistry::new()?;
        let plugins: Vec<InstalledPlugin> = registry.all().cloned().collect();
        Ok(plugins)
    }

    /// `run_plugin_remove`.
    pub async fn run_plugin_remove(plugin_id: &str) -> Result<()> {
        let mut registry = PluginRegistry::new()?;
        if registry.get(plugin_id).is_none() {
            anyhow::bail!("Plugin '{}' not found", plugin_id);
        }
        registry.uninstall(plugin_id)?;
        Ok(())
    }

    /// `run_plugin_enable`.
    pub async fn run_plugin_enable(plugin_id: &str) -> Result<()> {
        let mut registry = PluginRegistry::new()?;
        let plugin = registry
            .get_mut(plugin_id)
            .ok_or_else(|| anyhow::anyhow!("Plugin '{}' not found", plugin_id))?;
        plugin.enable()?;
        Ok(())
    }

    /// `run_plugin_disable`.
    pub async fn run_plugin_disable(plugin_id: &str) -> Result<()> {
        let mut registry = PluginRegistry::new()?;
        let plugin = registry
            .get_mut(plugin_id)
            .ok_or_else(|| anyhow::anyhow!("Plugin '{}' not found", plugin_id))?;
        plugin.disable()?;
        Ok(())
    }

    fn source_file_path(registry: &PluginRegistry, plugin_id: &str) -> PathBuf {
        registry.plugins_dir().join(plugin_id).join(".install.json")
    }

    fn write_install_source(
        registry: &PluginRegistry,
        plugin_id: &str,
        source: &Value,
    ) -> Result<()> {
        let path = source_file_path(registry, plugin_id);
        std::fs::write(&path, serde_json::to_string_pretty(source)?)?;
        Ok(())
    }

    fn read_install_source(plugin: &InstalledPlugin) -> Result<Value> {
        let path = plugin.path.join(".install.json");
        let payload = std::fs::read_to_string(&path)
            .with_context(|| format!("Missing install metadata: {}", path.display()))?;
        Ok(serde_json::from_str(&payload)?)
    }
}

/// src/transport/remote.rs and src/ui_backend/service.rs: widgets with a 500 ms budget.
mod widgets {
    use super::*;

    pub async fn refresh(project_root: PathBuf) -> Result<Vec<plugins::PluginWidgetState>> {
        let widget_states = match tokio::time::timeout(
            Duration::from_millis(20_000),
            tokio::task::spawn_blocking(move || plugins::collect_channel_widgets(&project_root)),
        )
        .await
        {
            Ok(Ok(Ok(states))) => states,
            Ok(Ok(Err(err))) => return Err(err),
            Ok(Err(err)) => return Err(err.into()),
            Err(_) => anyhow::bail!("widget refresh timed out"),
        };
        for state in &widget_states {
            let _error: &Option<String> = &state.error;
            let _payload: &Option<String> = &state.payload;
            let _id: &String = &state.plugin_id;
        }
        Ok(widget_states)
    }
}

/// src/ui_backend/catalog.rs: `resolve_base_provider`.
fn resolve_base_provider(provider: &str) -> String {
    if let Ok(registry) = crate::plugins::PluginRegistry::new() {
        for plugin in registry.provider_plugins() {
            for contrib in plugin.contributed_providers() {
                if contrib.id == provider {
                    if let Some(ref base) = contrib.base_provider {
                        return base.clone();
                    }
                }
            }
        }
    }
    provider.to_string()
}

/// src/ui_backend/remote_mirror.rs: mirror requests.
fn mirror_request(
    conversation_id: &str,
    text: String,
    message_id: Option<String>,
    kind: &str,
) -> plugins::ChannelSendRequest {
    use plugins::ChannelSendRequest;
    let metadata_json = serde_json::json!({
        "tark": { "mirror": true, "source": "local", "kind": kind }
    })
    .to_string();
    ChannelSendRequest {
        conversation_id: conversation_id.to_string(),
        text,
        message_id,
        is_final: kind != "working",
        metadata_json,
    }
}

/// The rest of tark's `plugins` module surface (`mod.rs`): paths, version, WebSocket
/// helpers.
#[allow(dead_code)]
fn module_surface() -> Result<()> {
    let dir: PathBuf = plugins::plugins_dir()?;
    let data: PathBuf = plugins::plugin_data_dir("x")?;
    let _: &str = plugins::PLUGIN_API_VERSION;
    let handle: u64 = plugins::ws_connect(
        "wss://example.com/",
        &[("Authorization".to_string(), "Bearer t".to_string())],
        &["example.com".to_string()],
    )?;
    plugins::ws_send(handle, "hi")?;
    let r: plugins::WsRecvResult = plugins::ws_recv(handle, 10, 1024)?;
    let _: (Option<String>, bool, Option<String>) = (r.message, r.closed, r.error);
    plugins::ws_close(handle)?;
    let _ = (dir, data);
    Ok(())
}

fn tracing_error(_msg: &str) {}

// =======================================================================================
// Shape checks that need no plugin
// =======================================================================================

fn assert_send<T: Send>() {}
fn assert_sync<T: Sync>() {}

#[test]
fn types_have_tarks_send_sync_and_serde_shapes() {
    assert_send::<plugins::PluginRegistry>();
    assert_sync::<plugins::PluginRegistry>();
    assert_send::<plugins::InstalledPlugin>();
    assert_sync::<plugins::InstalledPlugin>();
    assert_send::<plugins::ChannelInboundMessage>();
    assert_sync::<plugins::ChannelSendRequest>();
    assert_send::<plugins::PluginOAuthResult>();
    assert_send::<plugins::PluginWidgetState>();
    assert_send::<plugins::WsRecvResult>();

    // Serialisation of what tark hands to plugins, parsing of what plugins answer: the
    // JSON of tark's structs.
    let req = transport_http::webhook_request(
        "slack",
        "POST",
        vec![("content-type".into(), "application/json".into())],
        b"{}",
    );
    assert_eq!(
        serde_json::to_value(&req).expect("ser"),
        json!({"method": "POST", "path": "/channels/slack/webhook", "query": null,
               "headers": [["content-type", "application/json"]], "body": "{}"})
    );
    let send = mirror_request("c1", "hi".into(), Some("m1".into()), "stream");
    assert_eq!(
        serde_json::to_value(&send).expect("ser"),
        json!({"conversation_id": "c1", "text": "hi", "message_id": "m1", "is_final": true,
               "metadata_json": "{\"tark\":{\"mirror\":true,\"source\":\"local\",\"kind\":\"stream\"}}"})
    );
    let info: plugins::ChannelInfo =
        serde_json::from_str(r#"{"id":"s","display_name":"S"}"#).expect("channel info");
    assert!(!info.supports_edits && !info.supports_streaming && info.description.is_empty());
    let resp: plugins::ChannelWebhookResponse =
        serde_json::from_str(r#"{"status":200}"#).expect("webhook response");
    assert!(resp.headers.is_empty() && resp.body.is_empty() && resp.messages.is_empty());
    let msg: plugins::ChannelInboundMessage =
        serde_json::from_str(r#"{"conversation_id":"c","user_id":"u","text":"t"}"#).expect("msg");
    assert_eq!(msg.metadata_json, "");
    let sent: plugins::ChannelSendResult =
        serde_json::from_str(r#"{"success":true}"#).expect("send result");
    assert!(sent.message_id.is_none() && sent.error.is_none());
    let chat: plugins::ChatResponse =
        serde_json::from_str(r#"{"text":"x","usage":{"input_tokens":1,"output_tokens":2}}"#)
            .expect("chat");
    let usage: plugins::ChatUsage = chat.usage.expect("usage");
    assert_eq!((usage.input_tokens, usage.output_tokens), (1, 2));
    let creds: plugins::AuthCredentials =
        serde_json::from_str(r#"{"access_token":"t"}"#).expect("creds");
    assert_eq!(creds.api_mode, "cloud_code_assist");
    let model: plugins::ModelInfo = serde_json::from_str(r#"{"id":"m"}"#).expect("model");
    assert_eq!((model.context_window, model.display_name.as_str()), (0, ""));
    let pinfo: plugins::ProviderInfo =
        serde_json::from_str(r#"{"id":"p","display_name":"P"}"#).expect("provider info");
    assert!(!pinfo.requires_auth && pinfo.provider.is_none());
    for s in [
        plugins::ProviderAuthStatus::NotRequired,
        plugins::ChannelAuthStatus::Authenticated,
        plugins::ProviderAuthStatus::NotAuthenticated,
        plugins::ChannelAuthStatus::Expired,
    ] {
        let _copy = s;
        assert_eq!(s, _copy);
    }
    let _ = plugins::AuthStatus::Expired;
    let _ = plugins::OAuthFlowType::DeviceFlow;
    let _: Option<&plugins::PluginContributions> = None;
    let _: Option<&plugins::ChannelContribution> = None;
    let _: Option<&plugins::ProviderContribution> = None;
    let _: Option<&plugins::PluginCapabilities> = None;
    let q = channels::queued("queued");
    assert_eq!(q.message.text, "queued");
    assert_eq!(
        (q.plugin_id.as_str(), q.received_at.as_str()),
        ("discord", "now")
    );
    assert_eq!(plugins::PLUGIN_API_VERSION, "0.2.0");
}

#[test]
fn oauth_config_fields_as_tarks_handler_reads_them() {
    let manifest: plugins::PluginManifest = toml::from_str(
        r#"
[plugin]
name = "p"
version = "1.0.0"
type = "provider"

[oauth]
flow = "pkce"
auth_url = "https://auth.example.com/authorize"
token_url = "https://auth.example.com/token"
client_id = "cid"
client_secret = "sec"
scopes = ["a", "b"]
redirect_uri = "http://localhost:1455/cb"
extra_params = { originator = "tark" }
"#,
    )
    .expect("manifest");
    let handler = auth_oauth::OAuthHandler::new(manifest.oauth.expect("oauth"));
    assert_eq!(
        handler.describe(),
        "https://auth.example.com/authorize?client_id=cid&redirect_uri=http://localhost:1455/cb&scope=a b&state=true&originator=tark&secret=3 -> https://auth.example.com/token"
    );
}

#[test]
fn websocket_helpers_keep_tarks_refusals() {
    let e = plugins::ws_connect("ws://example.com/", &[], &["example.com".into()])
        .expect_err("plain ws");
    assert_eq!(e.to_string(), "Only wss:// URLs are allowed");
    let e = plugins::ws_connect("not a url", &[], &[]).expect_err("bad url");
    assert_eq!(e.to_string(), "Invalid websocket URL");
    let e = plugins::ws_connect("wss://evil.example/", &[], &["example.com".into()])
        .expect_err("denied");
    assert_eq!(e.to_string(), "WebSocket host not allowed: evil.example");
    let e = plugins::ws_send(987_654, "x").expect_err("unknown handle");
    assert_eq!(e.to_string(), "Unknown websocket handle");
    plugins::ws_close(987_654).expect("closing an unknown handle is fine");
}

// =======================================================================================
// Behaviour through the call sites, with the example plugins
// =======================================================================================

const PROVIDER: &str = "legacy-provider";
const CHANNEL: &str = "legacy-channel";
const AUTH: &str = "legacy-auth";
const COMPILERS: [&str; 2] = ["singlepass", "cranelift"];

/// The process-wide test world: one plugins directory (`TARK_PLUGINS_DIR`) with the
/// example plugins, an artifact cache and a home of its own. Tests hold the lock while
/// they run: they set `TARK_WASMER_COMPILER` and `TARK_WASMER_CA_FILE`, which the face
/// reads in every `PluginHost::new()`.
struct World {
    root: tempfile::TempDir,
}

fn world() -> (MutexGuard<'static, ()>, &'static World) {
    static LOCK: Mutex<()> = Mutex::new(());
    static WORLD: OnceLock<World> = OnceLock::new();
    let guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let world = WORLD.get_or_init(|| {
        ensure_plugins_built();
        let root = tempfile::tempdir().expect("tempdir");
        std::env::set_var("TARK_PLUGINS_DIR", root.path().join("plugins"));
        std::env::set_var("TARK_WASMER_CACHE_DIR", root.path().join("cache"));
        std::env::remove_var("TARK_WASMER_CA_FILE");
        for name in [PROVIDER, CHANNEL, AUTH] {
            let id = futures_block_on(plugin_cli::run_plugin_add(example_plugin_dir(name)))
                .expect("install");
            assert_eq!(id, name);
        }
        World { root }
    });
    (guard, world)
}

fn futures_block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn use_compiler(compiler: &str) {
    std::env::set_var("TARK_WASMER_COMPILER", compiler);
}

fn use_ca(world: &World, pem: Option<Vec<u8>>) {
    match pem {
        Some(pem) => {
            let path = world.root.path().join("ca.pem");
            std::fs::write(&path, pem).expect("ca file");
            std::env::set_var("TARK_WASMER_CA_FILE", path);
        }
        None => std::env::remove_var("TARK_WASMER_CA_FILE"),
    }
}

#[test]
fn registry_and_cli_call_sites() {
    let (_g, world) = world();
    let rt = runtime();
    let rows = rt.block_on(plugin_cli::run_plugin_list()).expect("list");
    let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(ids, vec![AUTH, CHANNEL, PROVIDER]);
    assert_eq!(rows[2].2, "provider");
    assert_eq!(rows[2].3, "enabled");
    let info = rt
        .block_on(plugin_cli::run_plugin_info(PROVIDER))
        .expect("info");
    assert!(info.starts_with("legacy-provider 0.1.0 provider"), "{info}");
    assert!(info.contains("storage=true http=127.0.0.1 env=LEGACY_PROVIDER_API_KEY"));
    let e = rt
        .block_on(plugin_cli::run_plugin_info("nope"))
        .expect_err("missing");
    assert_eq!(e.to_string(), "Plugin 'nope' not found");

    // Installing twice: tark's text.
    let e = rt
        .block_on(plugin_cli::run_plugin_add(example_plugin_dir(PROVIDER)))
        .expect_err("twice");
    assert_eq!(
        e.to_string(),
        "Plugin 'legacy-provider' is already installed"
    );

    // Disable / enable through get_mut, as tark's CLI does; by_type / provider_plugins.
    rt.block_on(plugin_cli::run_plugin_disable(PROVIDER))
        .expect("disable");
    let plugins_dir = world.root.path().join("plugins");
    assert!(plugins_dir.join(PROVIDER).join(".disabled").exists());
    assert!(llm::list_plugin_providers().is_empty());
    assert_eq!(resolve_base_provider(PROVIDER), PROVIDER);
    rt.block_on(plugin_cli::run_plugin_enable(PROVIDER))
        .expect("enable");
    assert!(!plugins_dir.join(PROVIDER).join(".disabled").exists());
    assert_eq!(resolve_base_provider(PROVIDER), "openai");
    assert_eq!(
        llm::list_plugin_providers(),
        vec![(PROVIDER.to_string(), "Legacy Provider".to_string())]
    );

    // Update from the source keeps data; the recorded source is read first.
    let all = rt.block_on(plugin_cli::all_plugins()).expect("all");
    assert_eq!(all.len(), 3);
    rt.block_on(plugin_cli::run_plugin_update(
        AUTH,
        &example_plugin_dir(AUTH),
    ))
    .expect("update");
    assert_eq!(plugins::plugins_dir().expect("dir"), plugins_dir);
    assert_eq!(
        plugins::plugin_data_dir(AUTH).expect("data dir"),
        plugins_dir.join(AUTH).join("data")
    );
    assert!(transport_cli::oauth_providers().is_empty());
    assert!(!transport_cli::provider_is_plugin_oauth(PROVIDER));
    assert_eq!(transport_cli::logout(PROVIDER).expect("logout"), None);

    // Remove and reinstall a copy.
    let copy = world.root.path().join("auth-copy");
    copy_dir(&example_plugin_dir(AUTH), &copy);
    rt.block_on(plugin_cli::run_plugin_remove(AUTH))
        .expect("remove");
    let e = rt
        .block_on(plugin_cli::run_plugin_remove(AUTH))
        .expect_err("gone");
    assert_eq!(e.to_string(), "Plugin 'legacy-auth' not found");
    assert_eq!(
        rt.block_on(plugin_cli::run_plugin_add(copy))
            .expect("re-add"),
        AUTH
    );
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for name in ["plugin.toml", "plugin.wasm"] {
        std::fs::copy(src.join(name), dst.join(name)).expect("copy");
    }
}

#[test]
fn provider_chat_through_the_adapter_on_both_compilers() {
    let (_g, _world) = world();
    // One server for both compilers: the provider keeps its base URL in storage.
    let server = HttpTestServer::start();
    for compiler in COMPILERS {
        use_compiler(compiler);
        server.clear_requests();
        let rt = runtime();
        let adapter = llm::PluginProviderAdapter::new(PROVIDER).expect("adapter");
        assert_eq!(adapter.display_name, "Legacy Provider");
        assert_eq!(adapter.info().id, PROVIDER);
        assert!(!adapter.models.is_empty(), "{compiler}");
        assert!(!adapter.supports_streaming() || adapter.supports_streaming());

        // Each call is a new host and a fresh instance: the credentials live in storage.
        let creds = json!({"api_key": "sk-face", "base_url": server.base_url()}).to_string();
        adapter.auth_init(&creds).expect("auth init");
        assert_eq!(
            adapter.auth_status().expect("status"),
            plugins::ProviderAuthStatus::Authenticated,
            "{compiler}"
        );
        let adapter = adapter.with_model("test-model");
        let answer = rt
            .block_on(adapter.chat(&[("system", "be brief"), ("user", "hello there")]))
            .expect("chat");
        assert_eq!(answer.text, "echo: hello there", "{compiler}");
        assert_eq!(answer.usage, Some((2, 3, 5)));
        let reqs = server.requests_to("/v1/chat/completions");
        assert_eq!(reqs.len(), 1, "{compiler}");
        assert_eq!(reqs[0].header("authorization"), Some("Bearer sk-face"));
        assert_eq!(
            reqs[0].json(),
            Some(json!({"model": "test-model", "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "hello there"}]}))
        );

        // tark's "empty response" error is tark's own (the face returns the answer).
        // The "echo" model answers the last message without HTTP.
        let adapter = adapter.with_model("echo");
        let answer = rt
            .block_on(adapter.chat(&[("user", "one"), ("user", "two")]))
            .expect("echo");
        assert_eq!(answer.text, "two");

        // try_create_plugin_provider: the legacy provider exports the auth-only
        // interface, so tark would build a native provider from its credentials.
        match llm::try_create_plugin_provider(PROVIDER, Some("m")) {
            Some(llm::Created::Native { token, .. }) => assert_eq!(token, "sk-face"),
            other => panic!("{compiler}: {other:?}"),
        }
        assert_eq!(llm::try_create_plugin_provider(CHANNEL, None), None);
    }
}

#[test]
fn auth_plugin_token_as_llm_mod_reads_it() {
    let (_g, _world) = world();
    for compiler in COMPILERS {
        use_compiler(compiler);
        // legacy-auth keeps the credentials' token in storage.
        let token = llm::try_auth_plugin(AUTH, Some(r#"{"token":"tok-1"}"#));
        assert_eq!(token.as_deref(), Some("tok-1"), "{compiler}");
        assert_eq!(llm::try_auth_plugin("missing", None), None);
    }
}

#[test]
fn channel_webhook_poll_and_send_through_the_manager() {
    let (_g, world) = world();
    for compiler in COMPILERS {
        use_compiler(compiler);
        let http = HttpTestServer::start();
        let wss = WssTestServer::start();
        use_ca(world, Some(wss.ca_pem()));
        let creds_dir = tempfile::tempdir().expect("creds dir");
        std::fs::write(
            creds_dir.path().join(format!("{CHANNEL}_oauth.json")),
            json!({"access_token": "chan-token", "gateway_url": wss.url(), "api_base": http.base_url()})
                .to_string(),
        )
        .expect("creds");
        let manager = channels::ChannelManager {
            poll_ms: 20,
            creds_dir: creds_dir.path().to_path_buf(),
            project_root: None,
            shutdown: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(channels::Seen::default()),
        };
        let rt = runtime();

        // Webhook (tark's HTTP route builds the request): the inbound message is
        // processed, which answers through channel_send.
        let req = transport_http::webhook_request(
            CHANNEL,
            "POST",
            vec![("content-type".into(), "application/json".into())],
            json!({"conversation_id": "c-7", "user_id": "u-7", "text": "via webhook"})
                .to_string()
                .as_bytes(),
        );
        let resp = rt
            .block_on(manager.handle_webhook(CHANNEL, req))
            .expect("webhook");
        assert_eq!(resp.status, 200, "{compiler}");
        assert_eq!(resp.messages.len(), 1);
        assert_eq!(resp.messages[0].text, "via webhook");
        let sends = http.requests_to("/send");
        assert_eq!(sends.len(), 1, "{compiler}");
        assert_eq!(sends[0].header("authorization"), Some("Bearer chan-token"));
        assert_eq!(
            sends[0].json().and_then(|v| v.get("text").cloned()),
            Some(json!("ack: via webhook"))
        );

        // Gateway events (Discord relay) and channel_info.
        let msgs = rt
            .block_on(manager.handle_gateway_event(
                CHANNEL,
                json!({"t": "MESSAGE_CREATE", "d": {"channel_id": "g", "author_id": "a", "content": "gw"}})
                    .to_string(),
            ))
            .expect("gateway");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].conversation_id, "g");
        let info = rt.block_on(manager.channel_info(CHANNEL)).expect("info");
        assert_eq!(info.id, CHANNEL);

        // Poll loop: start_all spawns it on a blocking thread; messages pushed on the
        // gateway reach process_inbound_messages and are answered.
        wss.push_to_next_connection(vec![
            json!({"conversation_id": "conv-1", "user_id": "user-1", "text": "hi from ws"})
                .to_string(),
        ]);
        rt.block_on(manager.start_all()).expect("start_all");
        let got = wait_until(Duration::from_secs(30), || {
            manager
                .seen
                .inbound
                .lock()
                .map(|s| s.iter().any(|q| q.message.text == "hi from ws"))
                .unwrap_or(false)
        });
        assert!(got, "{compiler}: polled message not processed");
        assert!(
            wait_until(Duration::from_secs(30), || http
                .requests_to("/send")
                .iter()
                .any(|r| r.body.contains("ack: hi from ws"))),
            "{compiler}: no answer sent"
        );
        manager.shutdown.store(true, Ordering::SeqCst);
        // A send of a long final text is chunked by tark; each chunk is a plugin call.
        let long = plugins::ChannelSendRequest {
            conversation_id: "c".into(),
            text: "x".repeat(4500),
            message_id: None,
            is_final: true,
            metadata_json: String::new(),
        };
        let before = http.requests_to("/send").len();
        let result = rt
            .block_on(manager.send_channel_message(CHANNEL, &long))
            .expect("send");
        assert!(result.success);
        assert_eq!(http.requests_to("/send").len(), before + 3, "{compiler}");
        // poll_plugin on a fresh host (tark's one-shot poll).
        let plugin = manager.load_channel_plugin(CHANNEL).expect("plugin");
        assert!(manager.poll_plugin(&plugin).expect("poll").is_some());
        drop(rt);
        use_ca(world, None);
    }
}

#[test]
fn oauth_round_trip_credentials_reach_the_channel() {
    let (_g, world) = world();
    let plugins_dir = world.root.path().join("plugins");
    // Give the channel an [oauth] section, as real channel plugins have.
    let manifest_path = plugins_dir.join(CHANNEL).join("plugin.toml");
    let original = std::fs::read_to_string(&manifest_path).expect("manifest");
    for compiler in COMPILERS {
        use_compiler(compiler);
        let http = HttpTestServer::start();
        let port = free_port();
        let creds_path = world.root.path().join(format!("creds-{compiler}.json"));
        std::fs::write(
            &manifest_path,
            format!(
                "{original}\n[oauth]\nflow = \"pkce\"\nauth_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"cid\"\nscopes = [\"bot\", \"messages.read\"]\nredirect_uri = \"http://127.0.0.1:{port}/callback\"\ncredentials_path = \"{}\"\nextra_params = {{ prompt = \"consent\" }}\n",
                http.url("/authorize"),
                http.url("/token"),
                creds_path.display()
            ),
        )
        .expect("manifest");
        http.set_response(
            "POST",
            "/token",
            CannedResponse::json(
                200,
                &json!({"access_token": "oauth-token", "refresh_token": "r1", "token_type": "bearer", "expires_in": 3600}),
            ),
        );

        // The "browser": checks the authorization URL, then follows the redirect with
        // the code and the state, as the provider would after the user's consent.
        let seen = Arc::new(Mutex::new(None::<String>));
        let seen2 = seen.clone();
        let browser = move |url: &str| {
            *seen2.lock().expect("lock") = Some(url.to_string());
            let parsed = url::Url::parse(url).expect("auth url");
            let state = parsed
                .query_pairs()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.into_owned())
                .expect("state");
            let redirect = format!("http://127.0.0.1:{port}/callback");
            std::thread::spawn(move || {
                // A forged callback first (wrong state): ignored by the listener.
                let _ = http_get(&format!("{redirect}?code=forged&state=wrong"));
                let _ = http_get(&format!("{redirect}?code=the-code&state={state}"));
            });
        };
        let rt = runtime();
        let result = rt
            .block_on(plugin_cli::run_plugin_auth(
                CHANNEL,
                None,
                json!({"gateway_url": "wss://127.0.0.1:1/", "api_base": http.base_url()}),
                browser,
            ))
            .expect("oauth");
        assert_eq!(result, creds_path);

        // The authorization URL: tark's parameters, S256 challenge of the verifier that
        // the token request carried.
        let auth_url = seen.lock().expect("lock").clone().expect("browser called");
        let parsed = url::Url::parse(&auth_url).expect("url");
        let q: std::collections::BTreeMap<String, String> =
            parsed.query_pairs().into_owned().collect();
        assert_eq!(q.get("response_type").map(String::as_str), Some("code"));
        assert_eq!(q.get("client_id").map(String::as_str), Some("cid"));
        assert_eq!(
            q.get("scope").map(String::as_str),
            Some("bot messages.read")
        );
        assert_eq!(
            q.get("code_challenge_method").map(String::as_str),
            Some("S256")
        );
        assert_eq!(q.get("prompt").map(String::as_str), Some("consent"));
        assert!(auth_url.contains("scope=bot%20messages.read"), "{auth_url}");
        let token_reqs = http.requests_to("/token");
        assert_eq!(token_reqs.len(), 1, "{compiler}");
        assert_eq!(
            token_reqs[0].header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        let form: std::collections::BTreeMap<String, String> =
            url::form_urlencoded::parse(token_reqs[0].body.as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            form.get("grant_type").map(String::as_str),
            Some("authorization_code")
        );
        assert_eq!(form.get("code").map(String::as_str), Some("the-code"));
        let verifier = form.get("code_verifier").expect("verifier");
        assert_eq!(verifier.len(), 128);
        use sha2::Digest;
        let digest = sha2::Sha256::digest(verifier.as_bytes());
        assert_eq!(q.get("code_challenge").cloned(), Some(b64url(&digest)));

        // The credentials file (0600), merged with the channel's configuration, and
        // handed to the plugin: its next send uses the OAuth token.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&creds_path)
                .expect("creds")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{compiler}");
        }
        let stored: Value =
            serde_json::from_str(&std::fs::read_to_string(&creds_path).expect("read"))
                .expect("json");
        assert_eq!(stored["access_token"], "oauth-token");
        assert_eq!(stored["api_base"], json!(http.base_url()));
        let manager = channels::ChannelManager {
            poll_ms: 20,
            creds_dir: world.root.path().to_path_buf(),
            project_root: None,
            shutdown: Arc::new(AtomicBool::new(true)),
            seen: Arc::new(channels::Seen::default()),
        };
        let sent = rt
            .block_on(manager.send_channel_message(
                CHANNEL,
                &mirror_request("c", "after oauth".into(), None, "final"),
            ))
            .expect("send");
        assert!(sent.success, "{compiler}");
        let sends = http.requests_to("/send");
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0].header("authorization"), Some("Bearer oauth-token"));
    }
    std::fs::write(&manifest_path, original).expect("restore manifest");
}

#[test]
fn oauth_tokens_processed_by_the_plugin_and_refusals() {
    let (_g, _world) = world();
    let registry = plugins::PluginRegistry::new().expect("registry");
    let plugin = registry.get(PROVIDER).expect("provider").clone();
    let http = HttpTestServer::start();
    http.set_response(
        "POST",
        "/token",
        CannedResponse::json(
            200,
            &json!({"access_token": "a1", "refresh_token": "r1", "expires_in": 60}),
        ),
    );
    let dir = tempfile::tempdir().expect("tmp");
    let port = free_port();
    let mut config: plugins::OAuthConfig = toml::from_str(&format!(
        "flow = \"pkce\"\nauth_url = \"{}\"\ntoken_url = \"{}\"\nclient_id = \"c\"\nscopes = []\nredirect_uri = \"http://127.0.0.1:{port}/cb\"\ncredentials_path = \"{}\"\nprocess_tokens_callback = \"auth_process_tokens\"\nuse_state = false\n",
        http.url("/authorize"),
        http.url("/token"),
        dir.path().join("p.json").display()
    ))
    .expect("config");
    let rt = runtime();
    for compiler in COMPILERS {
        use_compiler(compiler);
        let browser = move |_url: &str| {
            std::thread::spawn(move || {
                let _ = http_get(&format!("http://127.0.0.1:{port}/cb?code=c1"));
            });
        };
        let result = rt
            .block_on(plugins::run_oauth_flow_with_browser(
                &plugin, &config, browser,
            ))
            .expect("flow");
        let v: Value = serde_json::from_str(&result.tokens_json).expect("json");
        assert_eq!(
            v,
            json!({"access_token": "a1", "refresh_token": "r1", "processed_by": "legacy-provider"}),
            "{compiler}"
        );
        assert_eq!(
            std::fs::read_to_string(&result.creds_path).expect("file"),
            result.tokens_json
        );
    }
    // tark's refusals, before any browser.
    config.flow = plugins::OAuthFlowType::DeviceFlow;
    let e = rt
        .block_on(plugins::run_oauth_flow_for_plugin(&plugin, &config))
        .expect_err("device flow");
    assert_eq!(
        e.to_string(),
        "Only PKCE OAuth flow is supported for plugins right now"
    );
    config.flow = plugins::OAuthFlowType::Pkce;
    config.client_id = "${TARK_FACE_UNSET_VAR}".into();
    let e = rt
        .block_on(plugins::run_oauth_flow_for_plugin(&plugin, &config))
        .expect_err("placeholder");
    assert_eq!(
        e.to_string(),
        "OAuth config has unresolved environment placeholders: client_id"
    );
    // An error callback ends the flow.
    config.client_id = "c".into();
    let browser = move |_url: &str| {
        std::thread::spawn(move || {
            let _ = http_get(&format!("http://127.0.0.1:{port}/cb?error=access_denied"));
        });
    };
    let e = rt
        .block_on(plugins::run_oauth_flow_with_browser(
            &plugin, &config, browser,
        ))
        .expect_err("denied");
    assert_eq!(e.to_string(), "OAuth authorization failed: access_denied");
}

#[test]
fn channel_widgets_with_project_local_data() {
    let (_g, world) = world();
    for compiler in COMPILERS {
        use_compiler(compiler);
        let project = tempfile::tempdir().expect("project");
        let rt = runtime();
        let states = rt
            .block_on(widgets::refresh(project.path().to_path_buf()))
            .expect("widgets");
        assert_eq!(states.len(), 1, "{compiler}");
        assert_eq!(states[0].plugin_id, CHANNEL);
        assert!(states[0].error.is_none(), "{:?}", states[0].error);
        let payload: Value =
            serde_json::from_str(states[0].payload.as_deref().expect("payload")).expect("json");
        assert!(payload.is_object(), "{payload}");

        // A project-local data directory is used when it exists.
        let local = project.path().join("plugins").join(CHANNEL).join("data");
        std::fs::create_dir_all(&local).expect("local");
        let states = rt
            .block_on(widgets::refresh(project.path().to_path_buf()))
            .expect("widgets");
        assert!(states[0].error.is_none());
        let _ = world;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A plain HTTP GET (the browser following a redirect); the status line.
fn http_get(url: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let parsed = url::Url::parse(url).map_err(std::io::Error::other)?;
    let addr = format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(80)
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => return Err(e),
        }
    };
    let target = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out.lines().next().unwrap_or_default().to_string())
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = String::new();
    for &b in data {
        bits = (bits << 8) | u32::from(b);
        n += 8;
        while n >= 6 {
            n -= 6;
            out.push(A[((bits >> n) & 63) as usize] as char);
        }
    }
    if n > 0 {
        out.push(A[((bits << (6 - n)) & 63) as usize] as char);
    }
    out
}
