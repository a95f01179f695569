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
pub mod types;

use std::sync::Arc;

use wasmer::Type;

use crate::abi::legacy::instance::{CallOutcome, LegacyInstance, Output};
use crate::abi::{AbiKind, CallError};
use crate::engine::{CompiledModule, WasmEngine};
use crate::error::{Error, Result};
use crate::host::PluginContext;
use crate::manifest::PluginType;
use crate::registry::InstalledPlugin;

pub use host::{HostOptions, PluginHost};
pub use types::*;

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

/// One loaded plugin.
pub struct PluginInstance {
    installed: InstalledPlugin,
    engine: Arc<WasmEngine>,
    module: CompiledModule,
    abi: AbiKind,
    ctx: Arc<PluginContext>,
    live: Option<LegacyInstance>,
    replay: Vec<Replay>,
    instances_created: u64,
}

impl PluginInstance {
    pub(crate) fn new(
        installed: InstalledPlugin,
        engine: Arc<WasmEngine>,
        module: CompiledModule,
        abi: AbiKind,
        ctx: Arc<PluginContext>,
    ) -> Self {
        PluginInstance {
            installed,
            engine,
            module,
            abi,
            ctx,
            live: None,
            replay: Vec::new(),
            instances_created: 0,
        }
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
        self.live.as_ref().map(|i| i.memory_pages())
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
        let inst = LegacyInstance::new(store, &self.module.module, self.ctx.clone()).map_err(
            |source| Error::Instantiate {
                plugin: self.id().to_string(),
                source,
            },
        )?;
        self.instances_created += 1;
        self.live = Some(inst);
        if self.instances_created > 1 {
            for step in self.replay.clone() {
                let r = match &step {
                    Replay::ChannelAuthInit(creds) => self
                        .raw_call("channel_auth_init", &[creds.as_bytes()], Output::Code)
                        .map(|_| ()),
                    Replay::ChannelStart => self
                        .raw_call("channel_start", &[], Output::Code)
                        .map(|_| ()),
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

    /// Call an export on the live instance (creating one if needed); discard the
    /// instance when the failure may have left it inconsistent.
    fn raw_call(&mut self, export: &str, inputs: &[&[u8]], output: Output) -> Result<CallOutcome> {
        if self.abi != AbiKind::Legacy {
            return Err(self.call_error(CallError::Unsupported {
                function: export.to_string(),
                abi: self.abi,
            }));
        }
        if self.live.is_none() {
            self.create_instance()?;
        }
        let Some(inst) = self.live.as_mut() else {
            return Err(Error::NotFound(self.installed.id.clone()));
        };
        match inst.call(export, inputs, output) {
            Ok(out) => Ok(out),
            Err(e) => {
                if e.poisons_instance() {
                    log::warn!(
                        "[plugin:{}] discarding instance after failure in {export}: {e}",
                        self.installed.id
                    );
                    self.live = None;
                }
                Err(self.call_error(e))
            }
        }
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

    /// Does the module export `name` with this core signature? (Probing optional exports.)
    pub fn has_export(&mut self, name: &str, params: &[Type], results: &[Type]) -> bool {
        if self.live.is_none() && self.create_instance().is_err() {
            return false;
        }
        self.live
            .as_ref()
            .map(|i| i.has_export(name, params, results))
            .unwrap_or(false)
    }

    // ----- legacy auth plugins (§2.6) -----

    /// `status`: 0 not authenticated, 1 authenticated, 2 expired.
    pub fn auth_status(&mut self) -> Result<AuthStatus> {
        Ok(AuthStatus::from_legacy_code(self.call_code("status", &[])?))
    }

    /// `get_token`.
    pub fn auth_get_token(&mut self) -> Result<String> {
        self.call_text("get_token", &[], buf::TOKEN)
    }

    /// `display_name`.
    pub fn auth_display_name(&mut self) -> Result<String> {
        self.call_text("display_name", &[], buf::DISPLAY_NAME)
    }

    /// `get_endpoint`.
    pub fn auth_get_endpoint(&mut self) -> Result<String> {
        self.call_text("get_endpoint", &[], buf::ENDPOINT)
    }

    /// `init_with_credentials(json)`.
    pub fn auth_init_with_credentials(&mut self, credentials: &str) -> Result<()> {
        self.call_ok("init_with_credentials", &[credentials.as_bytes()])
    }

    /// `logout` (its result is ignored, as in tark).
    pub fn auth_logout(&mut self) -> Result<()> {
        self.call_code("logout", &[]).map(|_| ())
    }

    // ----- provider plugins (§2.4) -----

    /// `provider_info`.
    pub fn provider_info(&mut self) -> Result<ProviderInfo> {
        let text = self.call_text("provider_info", &[], buf::R)?;
        self.parse("provider info", &text)
    }

    /// `provider_models`.
    pub fn provider_models(&mut self) -> Result<Vec<ModelInfo>> {
        let text = self.call_text("provider_models", &[], buf::R)?;
        self.parse("models", &text)
    }

    /// `provider_auth_status`.
    pub fn provider_auth_status(&mut self) -> Result<ProviderAuthStatus> {
        Ok(ProviderAuthStatus::from_legacy_code(
            self.call_code("provider_auth_status", &[])?,
        ))
    }

    /// `provider_auth_init(credentials_json)`.
    pub fn provider_auth_init(&mut self, credentials_json: &str) -> Result<()> {
        self.call_ok("provider_auth_init", &[credentials_json.as_bytes()])
    }

    /// `provider_auth_logout`.
    pub fn provider_auth_logout(&mut self) -> Result<()> {
        self.call_ok("provider_auth_logout", &[])
            .map_err(|e| match e {
                Error::Call {
                    source: CallError::GuestError { .. },
                    plugin,
                } => Error::Call {
                    plugin,
                    source: CallError::Missing("Provider logout failed".into()),
                },
                other => other,
            })
    }

    /// Is the optional `provider_auth_credentials` export present?
    pub fn has_auth_credentials_interface(&mut self) -> bool {
        self.has_export("provider_auth_credentials", &[Type::I32], &[Type::I32])
    }

    /// `provider_auth_credentials`, raw text.
    pub fn provider_auth_credentials_raw(&mut self) -> Result<String> {
        self.call_text("provider_auth_credentials", &[], buf::R)
    }

    /// `provider_auth_credentials`, parsed.
    pub fn provider_auth_credentials(&mut self) -> Result<AuthCredentials> {
        let text = self.provider_auth_credentials_raw()?;
        self.parse("auth credentials", &text)
    }

    /// Is the optional `auth_process_tokens` export present?
    pub fn has_auth_process_tokens(&mut self) -> bool {
        self.has_export(
            "auth_process_tokens",
            &[Type::I32, Type::I32, Type::I32],
            &[Type::I32],
        )
    }

    /// `auth_process_tokens(token_response_json)`: the text to store as credentials.
    pub fn auth_process_tokens(&mut self, tokens_json: &str) -> Result<String> {
        self.call_text(
            "auth_process_tokens",
            &[tokens_json.as_bytes()],
            buf::PROCESS_TOKENS,
        )
    }

    /// `provider_chat(messages, model)`. An empty answer is an error, as in tark.
    pub fn provider_chat(&mut self, messages: &[Message], model: &str) -> Result<ChatResponse> {
        let msgs = self.to_json(&messages)?;
        let text = self.call_text(
            "provider_chat",
            &[msgs.as_bytes(), model.as_bytes()],
            buf::CHAT,
        )?;
        let resp: ChatResponse = self.parse("chat response", &text)?;
        if resp.text.trim().is_empty() {
            return Err(self.call_error(CallError::BadResult {
                what: "chat response".into(),
                message: "the plugin returned an empty response".into(),
            }));
        }
        Ok(resp)
    }

    // ----- channel plugins (§2.5) -----

    /// `channel_info`.
    pub fn channel_info(&mut self) -> Result<ChannelInfo> {
        let text = self.call_text("channel_info", &[], buf::R)?;
        self.parse("channel info", &text)
    }

    /// `channel_start`.
    pub fn channel_start(&mut self) -> Result<()> {
        self.call_ok("channel_start", &[])
            .map_err(|e| self.rename_guest_error(e, "Channel start failed"))?;
        if !self.replay.contains(&Replay::ChannelStart) {
            self.replay.push(Replay::ChannelStart);
        }
        Ok(())
    }

    /// `channel_stop`.
    pub fn channel_stop(&mut self) -> Result<()> {
        self.call_ok("channel_stop", &[])
            .map_err(|e| self.rename_guest_error(e, "Channel stop failed"))?;
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

    /// `channel_auth_status`.
    pub fn channel_auth_status(&mut self) -> Result<ChannelAuthStatus> {
        Ok(ProviderAuthStatus::from_legacy_code(
            self.call_code("channel_auth_status", &[])?,
        ))
    }

    /// `channel_auth_init(credentials_json)`; remembered so a fresh instance gets it too.
    pub fn channel_auth_init(&mut self, credentials_json: &str) -> Result<()> {
        self.call_ok("channel_auth_init", &[credentials_json.as_bytes()])?;
        self.replay
            .retain(|r| !matches!(r, Replay::ChannelAuthInit(_)));
        self.replay
            .insert(0, Replay::ChannelAuthInit(credentials_json.to_string()));
        Ok(())
    }

    /// `channel_auth_logout`.
    pub fn channel_auth_logout(&mut self) -> Result<()> {
        self.call_ok("channel_auth_logout", &[])
            .map_err(|e| self.rename_guest_error(e, "Channel logout failed"))?;
        self.replay
            .retain(|r| !matches!(r, Replay::ChannelAuthInit(_)));
        Ok(())
    }

    /// `channel_widget_state`: any text (usually JSON).
    pub fn channel_widget_state(&mut self) -> Result<String> {
        self.call_text("channel_widget_state", &[], buf::R)
    }

    /// `channel_handle_webhook(request)`.
    pub fn channel_handle_webhook(&mut self, request: &WebhookRequest) -> Result<WebhookResponse> {
        let req = self.to_json(request)?;
        let text = self.call_text("channel_handle_webhook", &[req.as_bytes()], buf::PR)?;
        self.parse("webhook response", &text)
    }

    /// `channel_handle_gateway_event(payload_json)`.
    pub fn channel_handle_gateway_event(
        &mut self,
        payload_json: &str,
    ) -> Result<Vec<InboundMessage>> {
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

    /// Is the optional `channel_poll` export present?
    pub fn has_channel_poll(&mut self) -> bool {
        self.has_export("channel_poll", &[Type::I32], &[Type::I32])
    }

    /// `channel_poll`.
    pub fn channel_poll(&mut self) -> Result<Vec<InboundMessage>> {
        let text = self.call_text("channel_poll", &[], buf::R)?;
        self.parse("channel poll", &text)
    }

    /// `channel_send(message)`.
    pub fn channel_send(&mut self, message: &OutboundMessage) -> Result<SendResult> {
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
