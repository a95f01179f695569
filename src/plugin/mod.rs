//! Typed plugin handles. A [`PluginInstance`] is one loaded plugin: its compiled
//! module, its host services, and (lazily) a live wasm instance that serves its calls.
//! The method names follow tark's `PluginInstance` so tark can switch host by feature.
//!
//! An instance is reused across calls and discarded after anything that may have left
//! the guest inconsistent (trap, output overflow, bad allocation); the next call gets
//! a fresh instance, re-running the channel initialisation calls it had seen
//! (`channel_auth_init`, `channel_start`), as tark's poll loop would.
//!
//! Every typed method names one row of [`functions::FUNCTIONS`] and goes through one core
//! per ABI: canonical calls are typed by the WIT contract, legacy calls take their
//! export, convention and buffer size from the row. `tark-wasmer call` uses the same
//! core ([`PluginInstance::call_function`], [`PluginInstance::call_legacy_export`]).

pub mod dispatch;
pub mod functions;
#[cfg(feature = "sys")]
mod host;
mod legacy_json;

use std::sync::Arc;

use serde_json::Value;
use wasmer::Type;

use crate::abi::canonical::contract::{Contract, FuncSig};
use crate::abi::canonical::instance::CanonicalInstance;
use crate::abi::canonical::typed::{Lift, Lower};
use crate::abi::canonical::types::{from_json, to_json, Ty, Val};
use crate::abi::legacy::instance::{CallOutcome, LegacyInstance, Output};
use crate::abi::{world_for_type, AbiKind, CallError};
use crate::engine::{CompiledModule, WasmEngine};
use crate::error::{Error, Result};
use crate::host::PluginContext;
use crate::inspect::{detect_abi, detect_world};
use crate::manifest::PluginType;
use crate::registry::InstalledPlugin;

pub use crate::types;
pub use crate::types::*;
pub use functions::{Convention, Function, LegacyExport, Need};
#[cfg(feature = "sys")]
pub use host::{HostOptions, PluginHost};

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
        self.interface_name().into_owned()
    }

    /// [`Self::interface`] without an allocation when the contract names it (typed calls).
    fn interface_name(&self) -> std::borrow::Cow<'static, str> {
        match self
            .world
            .as_deref()
            .and_then(|w| Contract::get().worlds.get(w))
            .and_then(|w| w.exports.first())
        {
            Some(iface) => std::borrow::Cow::Borrowed(iface.as_str()),
            None => std::borrow::Cow::Owned(format!("{}-plugin", self.plugin_type())),
        }
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

    fn parse<T: serde::de::DeserializeOwned>(&self, what: &str, text: &str) -> Result<T> {
        serde_json::from_str(text).map_err(|e| {
            self.call_error(CallError::BadResult {
                what: what.to_string(),
                message: e.to_string(),
            })
        })
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

    /// Is the legacy export of this row present with its convention's type?
    fn has_legacy_export(&mut self, export: &LegacyExport) -> bool {
        let sig = export.convention.core_signature();
        self.has_export(export.name, sig.params(), sig.results())
    }

    // ----- the call core: one path per ABI, driven by the function table -----

    /// Call a function of [`functions::FUNCTIONS`] by its interface semantics with JSON
    /// arguments (one per WIT parameter); the result in the WIT JSON mapping. Legacy
    /// plugins' JSON is passed through, laid out like the WIT records (fields in WIT
    /// order, missing ones as their zero value, extra ones kept).
    pub fn call_function(&mut self, f: &'static Function, args: &[Value]) -> Result<Value> {
        self.call_via(f, args, Via::Cli)
    }

    /// Call a legacy export of the table by its raw convention: string arguments, the
    /// plugin's text as a JSON string, a status code as a number, a V/P code checked.
    pub fn call_legacy_export(&mut self, f: &'static Function, args: &[Value]) -> Result<Value> {
        let Some(export) = f.legacy else {
            return Err(self.unsupported(f, AbiKind::Legacy));
        };
        let mut texts = Vec::with_capacity(export.params.len());
        for (i, name) in export.params.iter().enumerate() {
            texts.push(text_arg(export.name, args, i, name)?);
        }
        let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        Ok(match self.call_legacy(&export, &inputs, false)? {
            LegacyOut::Code(code) => Value::from(code),
            LegacyOut::Text(text) => Value::String(text),
        })
    }

    fn unsupported(&self, f: &Function, abi: AbiKind) -> Error {
        self.call_error(CallError::Unsupported {
            function: f.name().to_string(),
            abi,
        })
    }

    fn call_via(&mut self, f: &'static Function, args: &[Value], via: Via) -> Result<Value> {
        match self.abi {
            AbiKind::Canonical => match f.wit {
                Some(wit) => self.call_canonical_json(wit, args),
                None => Err(self.unsupported(f, AbiKind::Canonical)),
            },
            AbiKind::Legacy => self.call_legacy_function(f, args, via),
        }
    }

    /// A legacy export called for its interface function: arguments as the WIT
    /// parameters, the result as the WIT result.
    fn call_legacy_function(
        &mut self,
        f: &'static Function,
        args: &[Value],
        via: Via,
    ) -> Result<Value> {
        let Some(export) = f.legacy else {
            return Err(self.unsupported(f, AbiKind::Legacy));
        };
        let Some(sig) = wit_signature(f) else {
            // Legacy-only exports have no WIT types: their raw form.
            return self.call_legacy_export(f, args);
        };
        let name = f.name();
        let mut texts = Vec::with_capacity(sig.params.len());
        for (i, (pname, ty)) in sig.params.iter().enumerate() {
            if *ty == Ty::String {
                texts.push(text_arg(name, args, i, pname)?);
                continue;
            }
            let v = args
                .get(i)
                .ok_or_else(|| missing_arg(name, args, i, pname))?;
            let text = match via {
                Via::Typed(_) => v.to_string(),
                Via::Cli => {
                    let wrong = |e: String| {
                        Error::InvalidArgument(format!(
                            "argument {} ({pname}) of '{name}' has the wrong shape: {e}",
                            i + 1
                        ))
                    };
                    let val = from_json(ty, &legacy_json::shape(ty, v.clone()))
                        .map_err(|e| wrong(e.to_string()))?;
                    to_json(ty, &val)
                        .map_err(|e| wrong(e.to_string()))?
                        .to_string()
                }
            };
            texts.push(text);
        }
        let inputs: Vec<&[u8]> = texts.iter().map(|t| t.as_bytes()).collect();
        let out = self.call_legacy(&export, &inputs, true)?;
        let (ok_ty, wrap) = match &sig.result {
            Some(Ty::Result(ok, _)) => (ok.as_deref(), true),
            other => (other.as_ref(), false),
        };
        let value = match out {
            LegacyOut::Code(code) => match ok_ty {
                Some(Ty::Enum(cases)) => legacy_json::status(cases, code),
                _ => Value::Null,
            },
            LegacyOut::Text(text) => match ok_ty {
                None | Some(Ty::String) => Value::String(text),
                Some(ty) => {
                    let what = match via {
                        Via::Typed(what) => what,
                        Via::Cli => name,
                    };
                    let v: Value = self.parse(what, &text)?;
                    match via {
                        Via::Typed(_) => v,
                        Via::Cli => legacy_json::shape(ty, v),
                    }
                }
            },
        };
        if via == Via::Cli && export.convention == Convention::Chat {
            check_chat_text(value.get("text").and_then(Value::as_str))
                .map_err(|e| self.call_error(e))?;
        }
        Ok(if wrap {
            serde_json::json!({ "ok": value })
        } else {
            value
        })
    }

    /// One legacy call with the row's convention and buffer size. `interface`: called
    /// for its interface function (tark's messages for failures and absent exports).
    fn call_legacy(
        &mut self,
        export: &LegacyExport,
        inputs: &[&[u8]],
        interface: bool,
    ) -> Result<LegacyOut> {
        if let Some(text) = export.absent.filter(|_| interface) {
            if !self.has_legacy_export(export) {
                return Err(self.call_error(CallError::Missing(text.to_string())));
            }
        }
        let conv = export.convention;
        let output = if conv.has_output() {
            Output::Buffer(export.buffer)
        } else {
            Output::Code
        };
        let out = self.raw_call(export.name, inputs, output)?;
        if conv.has_output() {
            return Ok(LegacyOut::Text(out.text.unwrap_or_default()));
        }
        let code = out.code;
        if conv.checks_code() && code < 0 {
            let source = match export.failure.filter(|_| interface) {
                Some(text) => CallError::Missing(format!("{text} (code {code})")),
                None => CallError::GuestError {
                    function: export.name.to_string(),
                    code,
                    message: None,
                },
            };
            return Err(self.call_error(source));
        }
        Ok(LegacyOut::Code(code))
    }

    /// A typed call of `ty`'s function `name` (WIT name, or legacy export for
    /// legacy-only ones); `what` names the result in parse errors of legacy plugins.
    ///
    /// Canonical plugins: `params` are lowered straight into guest memory and the result
    /// lifted straight into `T` (the Rust types checked against the WIT contract once
    /// per instance; see `abi/canonical/typed.rs`): no JSON, no dynamic values. Legacy
    /// plugins: `json_args` gives the JSON texts the legacy export takes.
    fn typed<P: Lower, T: serde::de::DeserializeOwned + Lift>(
        &mut self,
        ty: PluginType,
        name: &str,
        what: &'static str,
        params: P,
        json_args: impl FnOnce() -> Result<Vec<Value>>,
    ) -> Result<T> {
        let f = functions::find(ty, name).ok_or_else(|| {
            Error::InvalidArgument(format!("no function '{name}' for {ty} plugins"))
        })?;
        if self.is_canonical() {
            return self.typed_canonical(f, params);
        }
        let args = json_args()?;
        let json = self.call_via(f, &args, Via::Typed(what))?;
        let is_result = wit_signature(f).is_some_and(|s| matches!(s.result, Some(Ty::Result(..))));
        if !is_result {
            return self.parse_value(what, json);
        }
        match json.get("ok") {
            Some(ok) => self.parse_value(what, ok.clone()),
            None => Err(self.call_error(CallError::PluginError {
                function: f.name().to_string(),
                message: json.to_string(),
            })),
        }
    }

    /// The canonical half of [`Self::typed`]: a `result<T, string>` function's `err` is
    /// the plugin's error, as tark reports it.
    fn typed_canonical<P: Lower, T: Lift>(&mut self, f: &'static Function, params: P) -> Result<T> {
        let Some(wit) = f.wit else {
            return Err(self.unsupported(f, AbiKind::Canonical));
        };
        let iface = self.interface_name();
        let is_result = wit_signature(f).is_some_and(|s| matches!(s.result, Some(Ty::Result(..))));
        let r = match self.live()? {
            Live::Canonical(inst) if is_result => inst
                .call_func::<P, std::result::Result<T, String>>(&iface, wit, params)
                .map(|r| {
                    r.map_err(|message| CallError::PluginError {
                        function: wit.to_string(),
                        message,
                    })
                }),
            Live::Canonical(inst) => inst.call_func::<P, T>(&iface, wit, params).map(Ok),
            Live::Legacy(_) => Err(CallError::Unsupported {
                function: wit.to_string(),
                abi: AbiKind::Legacy,
            }),
        };
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(plugin_error)) => Err(self.call_error(plugin_error)),
            Err(e) => Err(self.after_failure(wit, e)),
        }
    }

    // ----- auth plugins (`auth-plugin`; legacy auth exports) -----

    /// `status` (legacy code / canonical `auth-status`).
    pub fn auth_status(&mut self) -> Result<AuthStatus> {
        self.typed(PluginType::Auth, "status", "auth status", (), no_args)
    }

    /// `get_token` / `get-token`.
    pub fn auth_get_token(&mut self) -> Result<String> {
        self.typed(PluginType::Auth, "get-token", "token", (), no_args)
    }

    /// `display_name` / `display-name`.
    pub fn auth_display_name(&mut self) -> Result<String> {
        self.typed(
            PluginType::Auth,
            "display-name",
            "display name",
            (),
            no_args,
        )
    }

    /// `get_endpoint` (legacy only).
    pub fn auth_get_endpoint(&mut self) -> Result<String> {
        self.typed(PluginType::Auth, "get_endpoint", "endpoint", (), no_args)
    }

    /// `init_with_credentials(json)` (legacy only).
    pub fn auth_init_with_credentials(&mut self, credentials: &str) -> Result<()> {
        let f = functions::find(PluginType::Auth, "init_with_credentials")
            .ok_or_else(|| Error::InvalidArgument("no function 'init_with_credentials'".into()))?;
        self.call_via(f, &[credentials.into()], Via::Typed("init"))?;
        Ok(())
    }

    /// `logout` (legacy: result ignored, as in tark) / `logout` (canonical `result<_, string>`).
    pub fn auth_logout(&mut self) -> Result<()> {
        self.typed(PluginType::Auth, "logout", "logout", (), no_args)
    }

    /// `start-device-flow` (canonical only: tark's legacy ABI has no device flow).
    pub fn auth_start_device_flow(&mut self) -> Result<DeviceCode> {
        self.typed(
            PluginType::Auth,
            "start-device-flow",
            "device code",
            (),
            no_args,
        )
    }

    /// `poll(device-code)` of the device flow (canonical only).
    pub fn auth_poll(&mut self, device_code: &str) -> Result<PollResult> {
        self.typed(PluginType::Auth, "poll", "poll", (device_code,), || {
            Ok(vec![device_code.into()])
        })
    }

    // ----- tool plugins (canonical tool-plugin) -----

    /// `get-tools`.
    pub fn tool_get_tools(&mut self) -> Result<Vec<ToolDef>> {
        self.typed(PluginType::Tool, "get-tools", "tools", (), no_args)
    }

    /// `get-risk-level(tool-name)`.
    pub fn tool_get_risk_level(&mut self, tool: &str) -> Result<RiskLevel> {
        let args = || Ok(vec![tool.into()]);
        self.typed(PluginType::Tool, "get-risk-level", "risk", (tool,), args)
    }

    /// `execute(tool-name, arguments-json)`.
    pub fn tool_execute(&mut self, tool: &str, arguments_json: &str) -> Result<ToolResult> {
        let args = || Ok(vec![tool.into(), arguments_json.into()]);
        let params = (tool, arguments_json);
        self.typed(PluginType::Tool, "execute", "tool result", params, args)
    }

    // ----- hook plugins (canonical hook-plugin, our design) -----

    /// `name`.
    pub fn hook_name(&mut self) -> Result<String> {
        self.typed(PluginType::Hook, "name", "name", (), no_args)
    }

    /// `subscriptions`: the events the hook wants.
    pub fn hook_subscriptions(&mut self) -> Result<Vec<HookEventKind>> {
        self.typed(
            PluginType::Hook,
            "subscriptions",
            "subscriptions",
            (),
            no_args,
        )
    }

    /// `on-event(event)`.
    pub fn hook_on_event(&mut self, event: &HookEvent) -> Result<HookDecision> {
        let args = || Ok(vec![json_value(event)?]);
        self.typed(PluginType::Hook, "on-event", "decision", (event,), args)
    }

    // ----- provider plugins (`provider-plugin`; legacy provider exports) -----

    /// `provider_info` / `info`.
    pub fn provider_info(&mut self) -> Result<ProviderInfo> {
        self.typed(PluginType::Provider, "info", "provider info", (), no_args)
    }

    /// `provider_models` / `models`.
    pub fn provider_models(&mut self) -> Result<Vec<ModelInfo>> {
        self.typed(PluginType::Provider, "models", "models", (), no_args)
    }

    /// `provider_auth_status` / `auth-status`.
    pub fn provider_auth_status(&mut self) -> Result<ProviderAuthStatus> {
        self.typed(
            PluginType::Provider,
            "auth-status",
            "auth status",
            (),
            no_args,
        )
    }

    /// `provider_auth_init(credentials_json)` / `auth-init`.
    pub fn provider_auth_init(&mut self, credentials_json: &str) -> Result<()> {
        let args = || Ok(vec![credentials_json.into()]);
        let params = (credentials_json,);
        self.typed(PluginType::Provider, "auth-init", "auth init", params, args)
    }

    /// `provider_auth_logout` / `auth-logout`.
    pub fn provider_auth_logout(&mut self) -> Result<()> {
        self.typed(PluginType::Provider, "auth-logout", "logout", (), no_args)
    }

    /// Is the optional `provider_auth_credentials` export present? (Legacy only.)
    pub fn has_auth_credentials_interface(&mut self) -> bool {
        self.has_table_export("provider_auth_credentials")
    }

    /// Is this legacy export of the table present with its convention's type?
    fn has_table_export(&mut self, export: &str) -> bool {
        match functions::by_legacy(export).and_then(|f| f.legacy) {
            Some(l) => self.has_legacy_export(&l),
            None => false,
        }
    }

    /// `provider_auth_credentials`, raw text (legacy only).
    pub fn provider_auth_credentials_raw(&mut self) -> Result<String> {
        let name = "provider_auth_credentials";
        self.typed(PluginType::Provider, name, "auth credentials", (), no_args)
    }

    /// `provider_auth_credentials`, parsed (legacy only).
    pub fn provider_auth_credentials(&mut self) -> Result<AuthCredentials> {
        let text = self.provider_auth_credentials_raw()?;
        self.parse("auth credentials", &text)
    }

    /// Is the optional `auth_process_tokens` export present? (Legacy only.)
    pub fn has_auth_process_tokens(&mut self) -> bool {
        self.has_table_export("auth_process_tokens")
    }

    /// `auth_process_tokens(token_response_json)`: the text to store as credentials.
    pub fn auth_process_tokens(&mut self, tokens_json: &str) -> Result<String> {
        let args = || Ok(vec![tokens_json.into()]);
        let params = (tokens_json,);
        self.typed(
            PluginType::Provider,
            "auth_process_tokens",
            "tokens",
            params,
            args,
        )
    }

    /// `provider_chat(messages, model)` / `chat`. An empty answer is an error, as in tark.
    pub fn provider_chat(&mut self, messages: &[Message], model: &str) -> Result<ChatResponse> {
        let args = || Ok(vec![json_value(&messages)?, model.into()]);
        let params = (messages, model);
        let resp: ChatResponse =
            self.typed(PluginType::Provider, "chat", "chat response", params, args)?;
        check_chat_text(Some(&resp.text)).map_err(|e| self.call_error(e))?;
        Ok(resp)
    }

    /// `chat-stream-start(messages, model)`: a stream id (canonical only).
    pub fn provider_chat_stream_start(&mut self, messages: &[Message], model: &str) -> Result<u64> {
        let args = || Ok(vec![json_value(&messages)?, model.into()]);
        let params = (messages, model);
        self.typed(
            PluginType::Provider,
            "chat-stream-start",
            "stream id",
            params,
            args,
        )
    }

    /// `chat-stream-poll(stream-id)`: the next chunk (canonical only).
    pub fn provider_chat_stream_poll(&mut self, stream_id: u64) -> Result<StreamChunk> {
        let args = || Ok(vec![stream_id.into()]);
        let what = "stream chunk";
        self.typed(
            PluginType::Provider,
            "chat-stream-poll",
            what,
            (stream_id,),
            args,
        )
    }

    // ----- channel plugins (`channel-plugin`; legacy channel exports) -----

    /// `channel_info` / `info`.
    pub fn channel_info(&mut self) -> Result<ChannelInfo> {
        self.typed(PluginType::Channel, "info", "channel info", (), no_args)
    }

    fn channel_start_inner(&mut self) -> Result<()> {
        self.typed(PluginType::Channel, "start", "start", (), no_args)
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
        self.typed::<(), ()>(PluginType::Channel, "stop", "stop", (), no_args)?;
        self.replay.retain(|r| *r != Replay::ChannelStart);
        Ok(())
    }

    /// `channel_auth_status` / `auth-status`.
    pub fn channel_auth_status(&mut self) -> Result<ChannelAuthStatus> {
        self.typed(
            PluginType::Channel,
            "auth-status",
            "auth status",
            (),
            no_args,
        )
    }

    fn channel_auth_init_inner(&mut self, credentials_json: &str) -> Result<()> {
        let args = || Ok(vec![credentials_json.into()]);
        let params = (credentials_json,);
        self.typed(PluginType::Channel, "auth-init", "auth init", params, args)
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
        self.typed::<(), ()>(PluginType::Channel, "auth-logout", "logout", (), no_args)?;
        self.replay
            .retain(|r| !matches!(r, Replay::ChannelAuthInit(_)));
        Ok(())
    }

    /// `channel_widget_state` / `widget-state`: any text (usually JSON).
    pub fn channel_widget_state(&mut self) -> Result<String> {
        self.typed(
            PluginType::Channel,
            "widget-state",
            "widget state",
            (),
            no_args,
        )
    }

    /// `channel_handle_webhook(request)` / `handle-webhook`.
    pub fn channel_handle_webhook(&mut self, request: &WebhookRequest) -> Result<WebhookResponse> {
        let args = || Ok(vec![json_value(request)?]);
        let what = "webhook response";
        self.typed(
            PluginType::Channel,
            "handle-webhook",
            what,
            (request,),
            args,
        )
    }

    /// `channel_handle_gateway_event(payload_json)` / `handle-gateway-event`.
    pub fn channel_handle_gateway_event(
        &mut self,
        payload_json: &str,
    ) -> Result<Vec<InboundMessage>> {
        let args = || Ok(vec![payload_json.into()]);
        let what = "gateway inbound messages";
        let params = (payload_json,);
        self.typed(
            PluginType::Channel,
            "handle-gateway-event",
            what,
            params,
            args,
        )
    }

    /// Is `channel_poll` / `poll` present?
    pub fn has_channel_poll(&mut self) -> bool {
        if self.is_canonical() {
            return self.has_function("poll");
        }
        self.has_table_export("channel_poll")
    }

    /// `channel_poll` / `poll`.
    pub fn channel_poll(&mut self) -> Result<Vec<InboundMessage>> {
        self.typed(PluginType::Channel, "poll", "channel poll", (), no_args)
    }

    /// `channel_send(message)` / `send`.
    pub fn channel_send(&mut self, message: &OutboundMessage) -> Result<SendResult> {
        let args = || Ok(vec![json_value(message)?]);
        self.typed(PluginType::Channel, "send", "send result", (message,), args)
    }
}

/// Raw legacy calls by export name (tests, benches, probes): tark's default buffers.
impl PluginInstance {
    /// An R-convention export's raw text.
    pub fn legacy_text(&mut self, export: &str) -> Result<String> {
        let out = self.raw_call(export, &[], Output::Buffer(functions::R_BUFFER))?;
        Ok(out.text.unwrap_or_default())
    }

    /// A PR-convention export's raw text.
    pub fn legacy_text_with_input(&mut self, export: &str, input: &str) -> Result<String> {
        let inputs: [&[u8]; 1] = [input.as_bytes()];
        let out = self.raw_call(export, &inputs, Output::Buffer(functions::PR_BUFFER))?;
        Ok(out.text.unwrap_or_default())
    }

    /// `provider_chat` with raw messages JSON; the raw answer.
    pub fn legacy_chat_raw(&mut self, messages_json: &str, model: &str) -> Result<String> {
        let inputs: [&[u8]; 2] = [messages_json.as_bytes(), model.as_bytes()];
        let out = self.raw_call(
            "provider_chat",
            &inputs,
            Output::Buffer(functions::CHAT_BUFFER),
        )?;
        Ok(out.text.unwrap_or_default())
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
        let out = match input {
            Some(i) => self.raw_call(export, &[i.as_bytes()], Output::Code)?,
            None => self.raw_call(export, &[], Output::Code)?,
        };
        Ok(out.code)
    }
}

/// How a table function is being called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A typed handle method (the result is deserialized next; `what` names it in
    /// parse errors).
    Typed(&'static str),
    /// `tark-wasmer call` by interface name: arguments checked against the WIT types,
    /// results laid out like the WIT records.
    Cli,
}

/// What a legacy export returned.
enum LegacyOut {
    Code(i32),
    Text(String),
}

/// The WIT signature of a table function (None for legacy-only exports).
fn wit_signature(f: &Function) -> Option<&'static FuncSig> {
    let contract = Contract::get();
    let iface = contract
        .worlds
        .get(world_for_type(f.plugin_type))?
        .exports
        .first()?;
    contract.func(iface, f.wit?)
}

/// No arguments (for [`PluginInstance::typed`]'s legacy half).
fn no_args() -> Result<Vec<Value>> {
    Ok(Vec::new())
}

/// A typed value as a JSON argument of a legacy export.
fn json_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// tark treats an empty chat answer as a failure.
fn check_chat_text(text: Option<&str>) -> std::result::Result<(), CallError> {
    if text.is_none_or(|t| t.trim().is_empty()) {
        return Err(CallError::BadResult {
            what: "chat response".into(),
            message: "the plugin returned an empty response".into(),
        });
    }
    Ok(())
}

fn missing_arg(function: &str, args: &[Value], i: usize, name: &str) -> Error {
    Error::InvalidArgument(format!(
        "'{function}' needs argument {} ({name}); {} given",
        i + 1,
        args.len()
    ))
}

/// A string argument: a JSON string as is, any other JSON value as its JSON text.
fn text_arg(function: &str, args: &[Value], i: usize, name: &str) -> Result<String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(missing_arg(function, args, i, name)),
    }
}
