//! Typed plugin handles. A [`PluginInstance`] is one loaded plugin: its compiled
//! module, its host services, and (lazily) a live wasm instance that serves its calls.
//! The method names follow tark's `PluginInstance` so tark can switch host by feature.
//!
//! An instance is reused across calls and discarded after anything that may have left
//! the guest inconsistent (trap, output overflow, bad allocation); the next call gets
//! a fresh instance, re-running the channel initialisation calls it had seen
//! (`channel_auth_init`, `channel_start`), as tark's poll loop would.

pub mod dispatch;
mod host;

use std::sync::Arc;

use wasmer::Type;

use crate::abi::canonical::contract::Contract;
use crate::abi::canonical::instance::CanonicalInstance;
use crate::abi::canonical::types::{from_json, to_json, Ty, Val};
use crate::abi::legacy::instance::{CallOutcome, LegacyInstance, Output};
use crate::abi::{detect_abi, detect_world, world_for_type, AbiKind, CallError};
use crate::engine::{CompiledModule, WasmEngine};
use crate::error::{Error, Result};
use crate::host::PluginContext;
use crate::manifest::PluginType;
use crate::registry::InstalledPlugin;

pub use crate::types;
pub use crate::types::*;
pub use host::{HostOptions, PluginHost};

/// tark's output buffer sizes (legacy ABI spec §2.2, §2.4-2.6).
mod buf {
    pub const R: usize = 8192;
    pub const PR: usize = 65536;
    pub const CHAT: usize = 65536;
    pub const PROCESS_TOKENS: usize = 8192;
    pub const TOKEN: usize = 4096;
    pub const ENDPOINT: usize = 1024;
    pub const DISPLAY_NAME: usize = 256;
}

/// A call that re-creates guest state after an instance is replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Replay {
    ChannelAuthInit(String),
    ChannelStart,
}

/// A live wasm instance of either ABI.
enum Live {
    Legacy(LegacyInstance),
    Canonical(CanonicalInstance),
}

/// One loaded plugin.
pub struct PluginInstance {
    installed: InstalledPlugin,
    engine: Arc<WasmEngine>,
    module: CompiledModule,
    abi: AbiKind,
    world: Option<String>,
    ctx: Arc<PluginContext>,
    live: Option<Live>,
    replay: Vec<Replay>,
    instances_created: u64,
}

impl PluginInstance {
    pub(crate) fn new(
        installed: InstalledPlugin,
        engine: Arc<WasmEngine>,
        module: CompiledModule,
        ctx: Arc<PluginContext>,
    ) -> Result<Self> {
        let abi = detect_abi(&module.module);
        let world = match abi {
            AbiKind::Canonical => detect_world(&module.custom_sections, &module.module),
            AbiKind::Legacy => None,
        };
        let ty = installed.manifest.plugin.plugin_type;
        if let Some(w) = &world {
            let expected = world_for_type(ty);
            if w != expected {
                if w.starts_with("conformance") {
                    log::debug!(
                        "[plugin:{}] test world {w} loaded as a {ty} plugin",
                        installed.id
                    );
                } else {
                    return Err(Error::WrongWorld {
                        plugin: installed.id.clone(),
                        world: w.clone(),
                        plugin_type: ty.to_string(),
                        expected: expected.to_string(),
                    });
                }
            }
        }
        Ok(PluginInstance {
            installed,
            engine,
            module,
            abi,
            world,
            ctx,
            live: None,
            replay: Vec::new(),
            instances_created: 0,
        })
    }

    /// Plugin id.
    pub fn id(&self) -> &str {
        &self.installed.id
    }

    /// The installed plugin this was loaded from.
    pub fn installed(&self) -> &InstalledPlugin {
        &self.installed
    }

    /// Manifest type.
    pub fn plugin_type(&self) -> PluginType {
        self.installed.manifest.plugin.plugin_type
    }

    /// Which ABI the module speaks.
    pub fn abi(&self) -> AbiKind {
        self.abi
    }

    /// The world a canonical module was built for (None for legacy modules).
    pub fn world(&self) -> Option<&str> {
        self.world.as_deref()
    }

    /// The plugin interface this plugin exports (canonical ABI).
    pub fn interface(&self) -> String {
        self.world
            .as_deref()
            .and_then(|w| Contract::get().worlds.get(w))
            .and_then(|w| w.exports.first().cloned())
            .unwrap_or_else(|| format!("{}-plugin", self.plugin_type()))
    }

    /// The plugin's host services.
    pub fn context(&self) -> &Arc<PluginContext> {
        &self.ctx
    }

    /// How many wasm instances were created so far (1 + discards).
    pub fn instances_created(&self) -> u64 {
        self.instances_created
    }

    /// Linear memory of the live instance in 64 KiB pages (None when none is live).
    pub fn memory_pages(&self) -> Option<u32> {
        match self.live.as_ref()? {
            Live::Legacy(i) => Some(i.memory_pages()),
            Live::Canonical(i) => Some(i.memory_pages()),
        }
    }

    /// Drop the live instance; the next call creates a fresh one.
    pub fn discard_instance(&mut self) {
        self.live = None;
    }

    fn call_error(&self, source: CallError) -> Error {
        Error::Call {
            plugin: self.id().to_string(),
            source,
        }
    }

    fn create_instance(&mut self) -> Result<()> {
        let store = self.engine.new_store();
        let inst = match self.abi {
            AbiKind::Legacy => {
                LegacyInstance::new(store, &self.module.module, self.ctx.clone()).map(Live::Legacy)
            }
            AbiKind::Canonical => {
                CanonicalInstance::new(store, &self.module.module, self.ctx.clone())
                    .map(Live::Canonical)
            }
        }
        .map_err(|source| Error::Instantiate {
            plugin: self.id().to_string(),
            source,
        })?;
        self.instances_created += 1;
        self.live = Some(inst);
        if self.instances_created > 1 {
            for step in self.replay.clone() {
                let r = match &step {
                    Replay::ChannelAuthInit(creds) => self.channel_auth_init_inner(creds),
                    Replay::ChannelStart => self.channel_start_inner(),
                };
                if let Err(e) = r {
                    log::warn!(
                        "[plugin:{}] re-initialising a fresh instance: {e}",
                        self.id()
                    );
                }
            }
        }
        Ok(())
    }

    fn live(&mut self) -> Result<&mut Live> {
        if self.live.is_none() {
            self.create_instance()?;
        }
        self.live
            .as_mut()
            .ok_or_else(|| Error::NotFound(self.installed.id.clone()))
    }

    fn after_failure(&mut self, what: &str, e: CallError) -> Error {
        if e.poisons_instance() {
            log::warn!(
                "[plugin:{}] discarding instance after failure in {what}: {e}",
                self.installed.id
            );
            self.live = None;
        }
        self.call_error(e)
    }

    /// Call a legacy export on the live instance (creating one if needed).
    fn raw_call(&mut self, export: &str, inputs: &[&[u8]], output: Output) -> Result<CallOutcome> {
        let r = match self.live()? {
            Live::Legacy(inst) => inst.call(export, inputs, output),
            Live::Canonical(_) => Err(CallError::Unsupported {
                function: export.to_string(),
                abi: AbiKind::Canonical,
            }),
        };
        r.map_err(|e| self.after_failure(export, e))
    }

    /// Call a canonical export `iface#func` with dynamic values.
    pub fn call_canonical(&mut self, iface: &str, func: &str, args: &[Val]) -> Result<Option<Val>> {
        let r = match self.live()? {
            Live::Canonical(inst) => inst.call(iface, func, args),
            Live::Legacy(_) => Err(CallError::Unsupported {
                function: format!("{iface}#{func}"),
                abi: AbiKind::Legacy,
            }),
        };
        r.map_err(|e| self.after_failure(func, e))
    }

    /// Call a function of this plugin's interface with JSON arguments (converted with
    /// the WIT types); the result as JSON (`null` for functions without one).
    pub fn call_canonical_json(
        &mut self,
        func: &str,
        args: &[serde_json::Value],
    ) -> Result<serde_json::Value> {
        let iface = self.interface();
        let sig = Contract::get()
            .func(&iface, func)
            .ok_or_else(|| Error::InvalidArgument(format!("unknown function '{func}' of {iface}")))?
            .clone();
        if args.len() != sig.params.len() {
            return Err(Error::InvalidArgument(format!(
                "'{func}' takes {} argument(s) ({}); {} given",
                sig.params.len(),
                sig.params
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                args.len()
            )));
        }
        let mut vals = Vec::with_capacity(args.len());
        for ((name, ty), a) in sig.params.iter().zip(args) {
            // Free text for string parameters: any JSON is passed as its text.
            let a = match a {
                serde_json::Value::String(_) => a.clone(),
                other if *ty == Ty::String => serde_json::Value::String(other.to_string()),
                other => other.clone(),
            };
            vals.push(from_json(ty, &a).map_err(|e| {
                Error::InvalidArgument(format!("argument {name} of '{func}': {e}"))
            })?);
        }
        let out = self.call_canonical(&iface, func, &vals)?;
        match (&sig.result, out) {
            (Some(ty), Some(v)) => {
                to_json(ty, &v).map_err(|e| Error::InvalidArgument(e.to_string()))
            }
            _ => Ok(serde_json::Value::Null),
        }
    }

    /// Canonical call whose result converts to `T` through the JSON mapping.
    fn canon<T: serde::de::DeserializeOwned>(
        &mut self,
        func: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<T> {
        let json = self.call_canonical_json(func, &args)?;
        self.parse_value(func, json)
    }

    /// Canonical call returning `result<T, string>`: `Err(text)` becomes an error.
    fn canon_result<T: serde::de::DeserializeOwned>(
        &mut self,
        func: &str,
        args: Vec<serde_json::Value>,
    ) -> Result<T> {
        let json = self.call_canonical_json(func, &args)?;
        let obj = json.as_object();
        if let Some(ok) = obj.and_then(|o| o.get("ok")) {
            return self.parse_value(func, ok.clone());
        }
        let message = obj.and_then(|o| o.get("err")).map(|e| {
            e.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
        });
        Err(self.call_error(CallError::PluginError {
            function: func.to_string(),
            message: message.unwrap_or_else(|| json.to_string()),
        }))
    }

    fn parse_value<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        v: serde_json::Value,
    ) -> Result<T> {
        serde_json::from_value(v).map_err(|e| {
            self.call_error(CallError::BadResult {
                what: what.to_string(),
                message: e.to_string(),
            })
        })
    }

    fn is_canonical(&self) -> bool {
        self.abi == AbiKind::Canonical
    }

    fn legacy_only(&self, function: &str) -> Result<()> {
        if self.is_canonical() {
            return Err(self.call_error(CallError::Unsupported {
                function: function.to_string(),
                abi: AbiKind::Canonical,
            }));
        }
        Ok(())
    }

    fn canonical_only(&self, function: &str) -> Result<()> {
        if !self.is_canonical() {
            return Err(self.call_error(CallError::Unsupported {
                function: function.to_string(),
                abi: AbiKind::Legacy,
            }));
        }
        Ok(())
    }

    fn call_text(&mut self, export: &str, inputs: &[&[u8]], min_buf: usize) -> Result<String> {
        let out = self.raw_call(export, inputs, Output::Buffer(min_buf))?;
        Ok(out.text.unwrap_or_default())
    }

    fn call_code(&mut self, export: &str, inputs: &[&[u8]]) -> Result<i32> {
        Ok(self.raw_call(export, inputs, Output::Code)?.code)
    }

    /// P / V conventions: a negative code is an error.
    fn call_ok(&mut self, export: &str, inputs: &[&[u8]]) -> Result<()> {
        let code = self.call_code(export, inputs)?;
        if code < 0 {
            return Err(self.call_error(CallError::GuestError {
                function: export.to_string(),
                code,
                message: None,
            }));
        }
        Ok(())
    }

    fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| {
            self.call_error(CallError::BadResult {
                what: what.to_string(),
                message: e.to_string(),
            })
        })
    }

    fn to_json<T: serde::Serialize>(&self, value: &T) -> Result<String> {
        serde_json::to_string(value).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    fn json_value<T: serde::Serialize>(&self, value: &T) -> Result<serde_json::Value> {
        serde_json::to_value(value).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// Does the module export `name` with this core signature? (Probing optional legacy exports.)
    pub fn has_export(&mut self, name: &str, params: &[Type], results: &[Type]) -> bool {
        match self.live() {
            Ok(Live::Legacy(i)) => i.has_export(name, params, results),
            _ => false,
        }
    }

    /// Does a canonical module export `func` of its interface?
    pub fn has_function(&mut self, func: &str) -> bool {
        let iface = self.interface();
        match self.live() {
            Ok(Live::Canonical(i)) => i.has_export(&iface, func),
            _ => false,
        }
    }

    // ----- auth plugins (legacy §2.6; canonical auth-plugin) -----

    /// `status` / `auth-plugin#status`.
    pub fn auth_status(&mut self) -> Result<AuthStatus> {
        if self.is_canonical() {
            return self.canon("status", vec![]);
        }
        Ok(AuthStatus::from_legacy_code(self.call_code("status", &[])?))
    }

    /// `get_token` / `get-token`.
    pub fn auth_get_token(&mut self) -> Result<String> {
        if self.is_canonical() {
            return self.canon_result("get-token", vec![]);
        }
        self.call_text("get_token", &[], buf::TOKEN)
    }

    /// `display_name` / `display-name`.
    pub fn auth_display_name(&mut self) -> Result<String> {
        if self.is_canonical() {
            return self.canon("display-name", vec![]);
        }
        self.call_text("display_name", &[], buf::DISPLAY_NAME)
    }

    /// `get_endpoint` (legacy only).
    pub fn auth_get_endpoint(&mut self) -> Result<String> {
        self.legacy_only("get_endpoint")?;
        self.call_text("get_endpoint", &[], buf::ENDPOINT)
    }

    /// `init_with_credentials(json)` (legacy only).
    pub fn auth_init_with_credentials(&mut self, credentials: &str) -> Result<()> {
        self.legacy_only("init_with_credentials")?;
        self.call_ok("init_with_credentials", &[credentials.as_bytes()])
    }

    /// `logout` (legacy: result ignored, as in tark) / `logout` (canonical `result<_, string>`).
    pub fn auth_logout(&mut self) -> Result<()> {
        if self.is_canonical() {
            return self.canon_result("logout", vec![]);
        }
        self.call_code("logout", &[]).map(|_| ())
    }

    /// `start-device-flow` (canonical only: tark's legacy ABI has no device flow).
    pub fn auth_start_device_flow(&mut self) -> Result<DeviceCode> {
        self.canonical_only("start-device-flow")?;
        self.canon_result("start-device-flow", vec![])
    }

    /// `poll(device-code)` of the device flow (canonical only).
    pub fn auth_poll(&mut self, device_code: &str) -> Result<PollResult> {
        self.canonical_only("poll")?;
        self.canon("poll", vec![device_code.into()])
    }

    // ----- tool plugins (canonical tool-plugin) -----

    /// `get-tools`.
    pub fn tool_get_tools(&mut self) -> Result<Vec<ToolDef>> {
        self.canonical_only("get-tools")?;
        self.canon("get-tools", vec![])
    }

    /// `get-risk-level(tool-name)`.
    pub fn tool_get_risk_level(&mut self, tool: &str) -> Result<RiskLevel> {
        self.canonical_only("get-risk-level")?;
        self.canon("get-risk-level", vec![tool.into()])
    }

    /// `execute(tool-name, arguments-json)`.
    pub fn tool_execute(&mut self, tool: &str, arguments_json: &str) -> Result<ToolResult> {
        self.canonical_only("execute")?;
        self.canon("execute", vec![tool.into(), arguments_json.into()])
    }

    // ----- hook plugins (canonical hook-plugin, our design) -----

    /// `name`.
    pub fn hook_name(&mut self) -> Result<String> {
        self.canonical_only("name")?;
        self.canon("name", vec![])
    }

    /// `subscriptions`: the events the hook wants.
    pub fn hook_subscriptions(&mut self) -> Result<Vec<HookEventKind>> {
        self.canonical_only("subscriptions")?;
        self.canon("subscriptions", vec![])
    }

    /// `on-event(event)`.
    pub fn hook_on_event(&mut self, event: &HookEvent) -> Result<HookDecision> {
        self.canonical_only("on-event")?;
        let ev = self.json_value(event)?;
        self.canon("on-event", vec![ev])
    }

    // ----- provider plugins (legacy §2.4; canonical provider-plugin) -----

    /// `provider_info` / `info`.
    pub fn provider_info(&mut self) -> Result<ProviderInfo> {
        if self.is_canonical() {
            return self.canon("info", vec![]);
        }
        let text = self.call_text("provider_info", &[], buf::R)?;
        self.parse("provider info", &text)
    }

    /// `provider_models` / `models`.
    pub fn provider_models(&mut self) -> Result<Vec<ModelInfo>> {
        if self.is_canonical() {
            return self.canon("models", vec![]);
        }
        let text = self.call_text("provider_models", &[], buf::R)?;
        self.parse("models", &text)
    }

    /// `provider_auth_status` / `auth-status`.
    pub fn provider_auth_status(&mut self) -> Result<ProviderAuthStatus> {
        if self.is_canonical() {
            return self.canon("auth-status", vec![]);
        }
        Ok(ProviderAuthStatus::from_legacy_code(
            self.call_code("provider_auth_status", &[])?,
        ))
    }

    /// `provider_auth_init(credentials_json)` / `auth-init`.
    pub fn provider_auth_init(&mut self, credentials_json: &str) -> Result<()> {
        if self.is_canonical() {
            return self.canon_result("auth-init", vec![credentials_json.into()]);
        }
        self.call_ok("provider_auth_init", &[credentials_json.as_bytes()])
    }

    /// `provider_auth_logout` / `auth-logout`.
    pub fn provider_auth_logout(&mut self) -> Result<()> {
        if self.is_canonical() {
            return self.canon_result("auth-logout", vec![]);
        }
        self.call_ok("provider_auth_logout", &[])
            .map_err(|e| self.rename_guest_error(e, "Provider logout failed"))
    }

    /// Is the optional `provider_auth_credentials` export present? (Legacy only.)
    pub fn has_auth_credentials_interface(&mut self) -> bool {
        self.has_export("provider_auth_credentials", &[Type::I32], &[Type::I32])
    }

    /// `provider_auth_credentials`, raw text (legacy only).
    pub fn provider_auth_credentials_raw(&mut self) -> Result<String> {
        self.legacy_only("provider_auth_credentials")?;
        self.call_text("provider_auth_credentials", &[], buf::R)
    }

    /// `provider_auth_credentials`, parsed (legacy only).
    pub fn provider_auth_credentials(&mut self) -> Result<AuthCredentials> {
        let text = self.provider_auth_credentials_raw()?;
        self.parse("auth credentials", &text)
    }

    /// Is the optional `auth_process_tokens` export present? (Legacy only.)
    pub fn has_auth_process_tokens(&mut self) -> bool {
        self.has_export(
            "auth_process_tokens",
            &[Type::I32, Type::I32, Type::I32],
            &[Type::I32],
        )
    }

    /// `auth_process_tokens(token_response_json)`: the text to store as credentials.
    pub fn auth_process_tokens(&mut self, tokens_json: &str) -> Result<String> {
        self.legacy_only("auth_process_tokens")?;
        self.call_text(
            "auth_process_tokens",
            &[tokens_json.as_bytes()],
            buf::PROCESS_TOKENS,
        )
    }

    /// `provider_chat(messages, model)` / `chat`. An empty answer is an error, as in tark.
    pub fn provider_chat(&mut self, messages: &[Message], model: &str) -> Result<ChatResponse> {
        let resp: ChatResponse = if self.is_canonical() {
            let msgs = self.json_value(&messages)?;
            self.canon_result("chat", vec![msgs, model.into()])?
        } else {
            let msgs = self.to_json(&messages)?;
            let text = self.call_text(
                "provider_chat",
                &[msgs.as_bytes(), model.as_bytes()],
                buf::CHAT,
            )?;
            self.parse("chat response", &text)?
        };
        if resp.text.trim().is_empty() {
            return Err(self.call_error(CallError::BadResult {
                what: "chat response".into(),
                message: "the plugin returned an empty response".into(),
            }));
        }
        Ok(resp)
    }

    /// `chat-stream-start(messages, model)`: a stream id (canonical only).
    pub fn provider_chat_stream_start(&mut self, messages: &[Message], model: &str) -> Result<u64> {
        self.canonical_only("chat-stream-start")?;
        let msgs = self.json_value(&messages)?;
        self.canon_result("chat-stream-start", vec![msgs, model.into()])
    }

    /// `chat-stream-poll(stream-id)`: the next chunk (canonical only).
    pub fn provider_chat_stream_poll(&mut self, stream_id: u64) -> Result<StreamChunk> {
        self.canonical_only("chat-stream-poll")?;
        self.canon_result("chat-stream-poll", vec![stream_id.into()])
    }

    // ----- channel plugins (legacy §2.5; canonical channel-plugin) -----

    /// `channel_info` / `info`.
    pub fn channel_info(&mut self) -> Result<ChannelInfo> {
        if self.is_canonical() {
            return self.canon("info", vec![]);
        }
        let text = self.call_text("channel_info", &[], buf::R)?;
        self.parse("channel info", &text)
    }

    fn channel_start_inner(&mut self) -> Result<()> {
        if self.is_canonical() {
            return self.canon_result("start", vec![]);
        }
        self.call_ok("channel_start", &[])
            .map_err(|e| self.rename_guest_error(e, "Channel start failed"))
    }

    /// `channel_start` / `start`; remembered so a fresh instance is started too.
    pub fn channel_start(&mut self) -> Result<()> {
        self.channel_start_inner()?;
        if !self.replay.contains(&Replay::ChannelStart) {
            self.replay.push(Replay::ChannelStart);
        }
        Ok(())
    }

    /// `channel_stop` / `stop`.
    pub fn channel_stop(&mut self) -> Result<()> {
        if self.is_canonical() {
            self.canon_result::<()>("stop", vec![])?;
        } else {
            self.call_ok("channel_stop", &[])
                .map_err(|e| self.rename_guest_error(e, "Channel stop failed"))?;
        }
        self.replay.retain(|r| *r != Replay::ChannelStart);
        Ok(())
    }

    fn rename_guest_error(&self, e: Error, text: &str) -> Error {
        match e {
            Error::Call {
                source: CallError::GuestError { code, .. },
                plugin,
            } => Error::Call {
                plugin,
                source: CallError::Missing(format!("{text} (code {code})")),
            },
            other => other,
        }
    }

    /// `channel_auth_status` / `auth-status`.
    pub fn channel_auth_status(&mut self) -> Result<ChannelAuthStatus> {
        if self.is_canonical() {
            return self.canon("auth-status", vec![]);
        }
        Ok(ProviderAuthStatus::from_legacy_code(
            self.call_code("channel_auth_status", &[])?,
        ))
    }

    fn channel_auth_init_inner(&mut self, credentials_json: &str) -> Result<()> {
        if self.is_canonical() {
            return self.canon_result("auth-init", vec![credentials_json.into()]);
        }
        self.call_ok("channel_auth_init", &[credentials_json.as_bytes()])
    }

    /// `channel_auth_init(credentials_json)` / `auth-init`; remembered so a fresh
    /// instance gets it too.
    pub fn channel_auth_init(&mut self, credentials_json: &str) -> Result<()> {
        self.channel_auth_init_inner(credentials_json)?;
        self.replay
            .retain(|r| !matches!(r, Replay::ChannelAuthInit(_)));
        self.replay
            .insert(0, Replay::ChannelAuthInit(credentials_json.to_string()));
        Ok(())
    }

    /// `channel_auth_logout` / `auth-logout`.
    pub fn channel_auth_logout(&mut self) -> Result<()> {
        if self.is_canonical() {
            self.canon_result::<()>("auth-logout", vec![])?;
        } else {
            self.call_ok("channel_auth_logout", &[])
                .map_err(|e| self.rename_guest_error(e, "Channel logout failed"))?;
        }
        self.replay
            .retain(|r| !matches!(r, Replay::ChannelAuthInit(_)));
        Ok(())
    }

    /// `channel_widget_state` / `widget-state`: any text (usually JSON).
    pub fn channel_widget_state(&mut self) -> Result<String> {
        if self.is_canonical() {
            return self.canon_result("widget-state", vec![]);
        }
        self.call_text("channel_widget_state", &[], buf::R)
    }

    /// `channel_handle_webhook(request)` / `handle-webhook`.
    pub fn channel_handle_webhook(&mut self, request: &WebhookRequest) -> Result<WebhookResponse> {
        if self.is_canonical() {
            let req = self.json_value(request)?;
            return self.canon_result("handle-webhook", vec![req]);
        }
        let req = self.to_json(request)?;
        let text = self.call_text("channel_handle_webhook", &[req.as_bytes()], buf::PR)?;
        self.parse("webhook response", &text)
    }

    /// `channel_handle_gateway_event(payload_json)` / `handle-gateway-event`.
    pub fn channel_handle_gateway_event(
        &mut self,
        payload_json: &str,
    ) -> Result<Vec<InboundMessage>> {
        if self.is_canonical() {
            return self.canon_result("handle-gateway-event", vec![payload_json.into()]);
        }
        if !self.has_export(
            "channel_handle_gateway_event",
            &[Type::I32, Type::I32, Type::I32],
            &[Type::I32],
        ) {
            return Err(self.call_error(CallError::Missing(
                "Plugin does not support gateway events".into(),
            )));
        }
        let text = self.call_text(
            "channel_handle_gateway_event",
            &[payload_json.as_bytes()],
            buf::PR,
        )?;
        self.parse("gateway inbound messages", &text)
    }

    /// Is `channel_poll` / `poll` present?
    pub fn has_channel_poll(&mut self) -> bool {
        if self.is_canonical() {
            return self.has_function("poll");
        }
        self.has_export("channel_poll", &[Type::I32], &[Type::I32])
    }

    /// `channel_poll` / `poll`.
    pub fn channel_poll(&mut self) -> Result<Vec<InboundMessage>> {
        if self.is_canonical() {
            return self.canon_result("poll", vec![]);
        }
        let text = self.call_text("channel_poll", &[], buf::R)?;
        self.parse("channel poll", &text)
    }

    /// `channel_send(message)` / `send`.
    pub fn channel_send(&mut self, message: &OutboundMessage) -> Result<SendResult> {
        if self.is_canonical() {
            let msg = self.json_value(message)?;
            return self.canon_result("send", vec![msg]);
        }
        let req = self.to_json(message)?;
        let text = self.call_text("channel_send", &[req.as_bytes()], buf::PR)?;
        self.parse("send result", &text)
    }
}

/// Raw legacy calls used by `tark-wasmer call` with export names.
impl PluginInstance {
    /// An R-convention export's raw text.
    pub fn legacy_text(&mut self, export: &str) -> Result<String> {
        self.call_text(export, &[], buf::R)
    }

    /// A PR-convention export's raw text.
    pub fn legacy_text_with_input(&mut self, export: &str, input: &str) -> Result<String> {
        self.call_text(export, &[input.as_bytes()], buf::PR)
    }

    /// `provider_chat` with raw messages JSON; the raw answer.
    pub fn legacy_chat_raw(&mut self, messages_json: &str, model: &str) -> Result<String> {
        self.call_text(
            "provider_chat",
            &[messages_json.as_bytes(), model.as_bytes()],
            buf::CHAT,
        )
    }

    /// A V/P-convention export's code; negative codes are errors.
    pub fn legacy_checked_code(&mut self, export: &str, input: Option<&str>) -> Result<i32> {
        let code = self.legacy_code(export, input)?;
        if code < 0 {
            return Err(self.call_error(CallError::GuestError {
                function: export.to_string(),
                code,
                message: None,
            }));
        }
        Ok(code)
    }

    /// An S/V/P-convention export's raw code (negative codes are returned, not errors).
    pub fn legacy_code(&mut self, export: &str, input: Option<&str>) -> Result<i32> {
        match input {
            Some(i) => self.call_code(export, &[i.as_bytes()]),
            None => self.call_code(export, &[]),
        }
    }
}
