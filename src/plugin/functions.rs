//! The one table of tark's plugin functions: for every plugin type, each function's
//! interface (WIT) name, its export in tark's legacy ABI, the legacy calling convention,
//! tark's output buffer size, how much `plugin check` cares when it is missing, and what
//! tark uses it for. Canonical parameter and result types are not repeated here: they
//! come from the WIT contract ([`crate::abi::canonical::contract::Contract`]).
//!
//! Adding a function is one row of [`FUNCTIONS`]; `tark-wasmer call`, the typed handle
//! methods of [`crate::plugin::PluginInstance`], `plugin check` and the CLI help read it.

use wasmer::{FunctionType, Type};

use crate::manifest::PluginType;

/// How a legacy export is called (tark's host side, mirrored by the example plugins in
/// `tests/plugins/legacy-*`). Strings go in as `(ptr, len)` pairs the host allocates with
/// the guest's `alloc`; output goes to a host-allocated buffer whose pointer is the last
/// parameter, and the `i32` result is the written length (negative: an error code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `() -> i32`: a status code that is data (auth status: 0, 1, 2, ...).
    S,
    /// `() -> i32`: void; a negative code is a failure.
    V,
    /// `(ptr, len) -> i32`: one input; a negative code is a failure.
    P,
    /// `(out_ptr) -> i32`: text in the output buffer.
    R,
    /// `(ptr, len, out_ptr) -> i32`: one input, text in the output buffer.
    PR,
    /// `(messages_ptr, messages_len, model_ptr, model_len, out_ptr) -> i32`: tark's chat.
    Chat,
}

impl Convention {
    /// How many string inputs the export takes.
    pub fn inputs(self) -> usize {
        match self {
            Convention::S | Convention::V | Convention::R => 0,
            Convention::P | Convention::PR => 1,
            Convention::Chat => 2,
        }
    }

    /// Does the export write text to an output buffer?
    pub fn has_output(self) -> bool {
        matches!(self, Convention::R | Convention::PR | Convention::Chat)
    }

    /// Is a negative result a failure (rather than data or a length)?
    pub fn checks_code(self) -> bool {
        matches!(self, Convention::V | Convention::P)
    }

    /// The export's core wasm type.
    pub fn core_signature(self) -> FunctionType {
        let params = 2 * self.inputs() + usize::from(self.has_output());
        FunctionType::new(vec![Type::I32; params], vec![Type::I32])
    }
}

/// How much a legacy export matters to tark (what `plugin check` reports when missing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// tark fails without it: an error.
    Required,
    /// Needed for a common path: a warning.
    Recommended,
    /// Probed or rarely called: a note.
    Optional,
}

/// A function's export in tark's legacy ABI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyExport {
    /// Export name (`provider_info`).
    pub name: &'static str,
    /// Calling convention.
    pub convention: Convention,
    /// Output buffer size tark passes (0 without an output).
    pub buffer: usize,
    /// How much a missing export matters.
    pub need: Need,
    /// What tark uses it for (in `plugin check` messages).
    pub used_for: &'static str,
    /// Names of its string inputs, for `tark-wasmer call` messages.
    pub params: &'static [&'static str],
    /// tark's message for a negative code through the typed handle, when it has one.
    pub failure: Option<&'static str>,
    /// tark's message when this optional export is absent (probed before the call).
    pub absent: Option<&'static str>,
}

/// One plugin function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    /// Plugin type that has it.
    pub plugin_type: PluginType,
    /// Kebab-case name in the type's WIT interface, when it is there.
    pub wit: Option<&'static str>,
    /// Export in tark's legacy ABI, when it is there.
    pub legacy: Option<LegacyExport>,
    /// What it does.
    pub doc: &'static str,
}

impl Function {
    /// The name `tark-wasmer call` and the typed handles know it by: the WIT name, else
    /// the legacy export.
    pub fn name(&self) -> &'static str {
        self.wit.or(self.legacy.map(|l| l.name)).unwrap_or("")
    }

    /// The legacy export's core type, when it has one.
    pub fn legacy_signature(&self) -> Option<FunctionType> {
        self.legacy.map(|l| l.convention.core_signature())
    }
}

/// tark's buffer for R exports.
pub const R_BUFFER: usize = 8192;
/// tark's buffer for PR exports.
pub const PR_BUFFER: usize = 65536;
/// tark's buffer for `provider_chat`.
pub const CHAT_BUFFER: usize = 65536;

const fn export(
    name: &'static str,
    convention: Convention,
    need: Need,
    used_for: &'static str,
) -> LegacyExport {
    let buffer = match convention {
        Convention::R => R_BUFFER,
        Convention::PR => PR_BUFFER,
        Convention::Chat => CHAT_BUFFER,
        Convention::S | Convention::V | Convention::P => 0,
    };
    let params: &'static [&'static str] = match convention {
        Convention::P => &["credentials-json"],
        Convention::PR => &["input"],
        Convention::Chat => &["messages-json", "model"],
        Convention::S | Convention::V | Convention::R => &[],
    };
    LegacyExport {
        name,
        convention,
        buffer,
        need,
        used_for,
        params,
        failure: None,
        absent: None,
    }
}

impl LegacyExport {
    const fn buffer(mut self, size: usize) -> Self {
        self.buffer = size;
        self
    }

    const fn params(mut self, params: &'static [&'static str]) -> Self {
        self.params = params;
        self
    }

    const fn failure(mut self, text: &'static str) -> Self {
        self.failure = Some(text);
        self
    }

    const fn absent(mut self, text: &'static str) -> Self {
        self.absent = Some(text);
        self
    }
}

const fn both(
    ty: PluginType,
    wit: &'static str,
    legacy: LegacyExport,
    doc: &'static str,
) -> Function {
    Function {
        plugin_type: ty,
        wit: Some(wit),
        legacy: Some(legacy),
        doc,
    }
}

const fn wit(ty: PluginType, wit: &'static str, doc: &'static str) -> Function {
    Function {
        plugin_type: ty,
        wit: Some(wit),
        legacy: None,
        doc,
    }
}

const fn legacy(ty: PluginType, legacy: LegacyExport, doc: &'static str) -> Function {
    Function {
        plugin_type: ty,
        wit: None,
        legacy: Some(legacy),
        doc,
    }
}

use Convention::{Chat, P, PR, R, S, V};
use Need::{Optional, Recommended, Required};
use PluginType::{Auth, Channel, Hook, Provider, Tool};

/// Every plugin function, per type in interface order (legacy-only exports last).
pub static FUNCTIONS: &[Function] = &[
    // ----- auth-plugin / legacy auth -----
    both(
        Auth,
        "display-name",
        export("display_name", R, Required, "showing the plugin's name").buffer(256),
        "Name shown to users.",
    ),
    both(
        Auth,
        "status",
        export("status", S, Required, "auth status"),
        "Authentication status.",
    ),
    wit(Auth, "start-device-flow", "Start an OAuth device flow."),
    wit(Auth, "poll", "Poll the device flow."),
    both(
        Auth,
        "get-token",
        export("get_token", R, Required, "getting the token").buffer(4096),
        "The access token.",
    ),
    // tark ignores the legacy code of `logout`: S, not V.
    both(
        Auth,
        "logout",
        export("logout", S, Required, "logout"),
        "Forget the credentials.",
    ),
    legacy(
        Auth,
        export("get_endpoint", R, Required, "getting the endpoint").buffer(1024),
        "API endpoint.",
    ),
    legacy(
        Auth,
        export(
            "init_with_credentials",
            P,
            Required,
            "initialisation with credentials",
        ),
        "Store credentials (JSON).",
    ),
    // ----- provider-plugin / legacy provider -----
    both(
        Provider,
        "info",
        export("provider_info", R, Required, "provider setup and listing"),
        "Provider description.",
    ),
    both(
        Provider,
        "models",
        export("provider_models", R, Required, "provider setup"),
        "Models offered.",
    ),
    both(
        Provider,
        "auth-status",
        export("provider_auth_status", S, Recommended, "auth status"),
        "Authentication status.",
    ),
    both(
        Provider,
        "auth-init",
        export("provider_auth_init", P, Recommended, "auth init"),
        "Store credentials (JSON).",
    ),
    both(
        Provider,
        "auth-logout",
        export("provider_auth_logout", V, Optional, "logout").failure("Provider logout failed"),
        "Forget the credentials.",
    ),
    both(
        Provider,
        "chat",
        export("provider_chat", Chat, Recommended, "every chat"),
        "One chat completion.",
    ),
    wit(
        Provider,
        "chat-stream-start",
        "Start a streamed completion.",
    ),
    wit(Provider, "chat-stream-poll", "Next chunk of a stream."),
    legacy(
        Provider,
        export(
            "provider_auth_credentials",
            R,
            Optional,
            "native provider credentials (probed)",
        ),
        "Credentials for tark's native providers.",
    ),
    legacy(
        Provider,
        export(
            "auth_process_tokens",
            PR,
            Optional,
            "OAuth token processing (probed)",
        )
        .buffer(8192)
        .params(&["tokens-json"]),
        "Turn an OAuth token response into stored credentials.",
    ),
    // ----- channel-plugin / legacy channel -----
    both(
        Channel,
        "info",
        export("channel_info", R, Required, "every inbound message"),
        "Channel description.",
    ),
    both(
        Channel,
        "start",
        export("channel_start", V, Required, "channel start").failure("Channel start failed"),
        "Connect.",
    ),
    both(
        Channel,
        "stop",
        export("channel_stop", V, Optional, "stop").failure("Channel stop failed"),
        "Disconnect.",
    ),
    both(
        Channel,
        "auth-status",
        export("channel_auth_status", S, Optional, "auth status"),
        "Authentication status.",
    ),
    both(
        Channel,
        "auth-init",
        export("channel_auth_init", P, Optional, "credentials (probed)"),
        "Store credentials (JSON).",
    ),
    both(
        Channel,
        "auth-logout",
        export("channel_auth_logout", V, Optional, "logout").failure("Channel logout failed"),
        "Forget the credentials.",
    ),
    both(
        Channel,
        "widget-state",
        export("channel_widget_state", R, Optional, "widgets (probed)"),
        "Widget state (usually JSON).",
    ),
    both(
        Channel,
        "handle-webhook",
        export("channel_handle_webhook", PR, Recommended, "webhooks"),
        "Handle an HTTP webhook.",
    ),
    both(
        Channel,
        "handle-gateway-event",
        export(
            "channel_handle_gateway_event",
            PR,
            Optional,
            "gateway events (probed)",
        )
        .absent("Plugin does not support gateway events"),
        "Handle a gateway (WebSocket) event.",
    ),
    both(
        Channel,
        "poll",
        export("channel_poll", R, Optional, "remote-mode polling (probed)"),
        "Poll for inbound messages.",
    ),
    both(
        Channel,
        "send",
        export("channel_send", PR, Required, "every outbound message"),
        "Send a message.",
    ),
    // ----- tool-plugin -----
    wit(Tool, "get-tools", "Tools offered."),
    wit(Tool, "get-risk-level", "Risk level of a tool."),
    wit(Tool, "execute", "Run a tool."),
    // ----- hook-plugin -----
    wit(Hook, "name", "Hook name."),
    wit(Hook, "subscriptions", "Events the hook wants."),
    wit(Hook, "on-event", "Handle one event."),
];

/// The functions of one plugin type, in table order.
pub fn of_type(ty: PluginType) -> impl Iterator<Item = &'static Function> {
    FUNCTIONS.iter().filter(move |f| f.plugin_type == ty)
}

/// The function of `ty` with this WIT name.
pub fn by_wit(ty: PluginType, name: &str) -> Option<&'static Function> {
    of_type(ty).find(|f| f.wit == Some(name))
}

/// The function with this legacy export name (export names are unique across types).
pub fn by_legacy(export: &str) -> Option<&'static Function> {
    FUNCTIONS
        .iter()
        .find(|f| f.legacy.is_some_and(|l| l.name == export))
}

/// The function of `ty` known as `name` (WIT name first, then legacy export).
pub fn find(ty: PluginType, name: &str) -> Option<&'static Function> {
    by_wit(ty, name).or_else(|| of_type(ty).find(|f| f.legacy.is_some_and(|l| l.name == name)))
}

/// The legacy exports of a plugin type, in table order.
pub fn legacy_exports(ty: PluginType) -> impl Iterator<Item = LegacyExport> {
    of_type(ty).filter_map(|f| f.legacy)
}

/// The WIT names of a plugin type's functions, in table order.
pub fn wit_names(ty: PluginType) -> Vec<&'static str> {
    of_type(ty).filter_map(|f| f.wit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::canonical::contract::Contract;
    use crate::abi::world_for_type;

    #[test]
    fn wit_names_are_the_contract_functions() {
        let contract = Contract::get();
        for ty in [Auth, Provider, Channel, Tool, Hook] {
            let world = &contract.worlds[world_for_type(ty)];
            let iface = &world.exports[0];
            let mut in_contract: Vec<&str> = contract.interfaces[iface]
                .keys()
                .map(String::as_str)
                .collect();
            in_contract.sort();
            let mut in_table = wit_names(ty);
            in_table.sort();
            assert_eq!(in_table, in_contract, "{ty}");
        }
    }

    #[test]
    fn legacy_exports_are_unique_and_typed_by_convention() {
        let mut names: Vec<&str> = FUNCTIONS
            .iter()
            .filter_map(|f| f.legacy.map(|l| l.name))
            .collect();
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        let chat = by_legacy("provider_chat").and_then(|f| f.legacy_signature());
        assert_eq!(chat.map(|s| s.params().len()), Some(5));
        let status = by_legacy("status").and_then(|f| f.legacy_signature());
        assert_eq!(status.map(|s| s.params().len()), Some(0));
        assert_eq!(find(Auth, "get_token").map(|f| f.name()), Some("get-token"));
        for f in FUNCTIONS {
            if let Some(l) = f.legacy {
                assert_eq!(l.params.len(), l.convention.inputs(), "{}", l.name);
                assert_eq!(l.buffer > 0, l.convention.has_output(), "{}", l.name);
            }
        }
    }
}
