//! Call a plugin function by name with JSON arguments: the engine of
//! `tark-wasmer call`. Function names are the kebab-case names of the plugin's tark
//! interface (`display-name`, `auth-status`, `chat`, ...); raw legacy export names
//! (`provider_info`, `get_endpoint`, ...) return the plugin's raw text.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::manifest::PluginType;
use crate::plugin::{Message, OutboundMessage, PluginInstance, WebhookRequest};

fn arg<T: DeserializeOwned>(function: &str, args: &[Value], i: usize, name: &str) -> Result<T> {
    let v = args.get(i).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "'{function}' needs argument {} ({name}); {} given",
            i + 1,
            args.len()
        ))
    })?;
    serde_json::from_value(v.clone()).map_err(|e| {
        Error::InvalidArgument(format!(
            "argument {} ({name}) of '{function}' has the wrong shape: {e}",
            i + 1
        ))
    })
}

/// A string argument: a JSON string as is, any other JSON value as its JSON text.
fn text_arg(function: &str, args: &[Value], i: usize, name: &str) -> Result<String> {
    match args.get(i) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(Error::InvalidArgument(format!(
            "'{function}' needs argument {} ({name}); {} given",
            i + 1,
            args.len()
        ))),
    }
}

fn json<T: Serialize>(v: T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// `{"ok": null}` for a successful `result<_, E>`.
fn ok_unit() -> Value {
    serde_json::json!({ "ok": null })
}

fn ok(v: Value) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("ok".into(), v);
    Value::Object(m)
}

/// Every interface function name a plugin of `ty` answers to.
pub fn function_names(ty: PluginType) -> &'static [&'static str] {
    match ty {
        PluginType::Auth => &[
            "display-name",
            "status",
            "start-device-flow",
            "poll",
            "get-token",
            "logout",
        ],
        PluginType::Provider => &[
            "info",
            "models",
            "auth-status",
            "auth-init",
            "auth-logout",
            "chat",
            "chat-stream-start",
            "chat-stream-poll",
        ],
        PluginType::Channel => &[
            "info",
            "start",
            "stop",
            "auth-status",
            "auth-init",
            "auth-logout",
            "widget-state",
            "handle-webhook",
            "handle-gateway-event",
            "poll",
            "send",
        ],
        PluginType::Tool => &["get-tools", "get-risk-level", "execute"],
        PluginType::Hook => &["name", "subscriptions", "on-event"],
    }
}

/// Call `function` on `inst` with JSON `args`; the result as JSON.
pub fn call_by_name(inst: &mut PluginInstance, function: &str, args: &[Value]) -> Result<Value> {
    let f = function;
    if inst.abi() == crate::abi::AbiKind::Canonical {
        // Every function of the plugin's WIT interface, typed by the contract.
        return inst.call_canonical_json(f, args);
    }
    let ty = inst.plugin_type();
    // Interface names win over raw export names (`status` and `logout` are both).
    if !function_names(ty).contains(&f) {
        if let Some(v) = call_raw_export(inst, f, args)? {
            return Ok(v);
        }
    }
    match (ty, f) {
        (PluginType::Auth, "display-name") => json(inst.auth_display_name()?),
        (PluginType::Auth, "status") => json(inst.auth_status()?),
        (PluginType::Auth, "get-token") => Ok(ok(json(inst.auth_get_token()?)?)),
        (PluginType::Auth, "logout") => {
            inst.auth_logout()?;
            Ok(ok_unit())
        }
        (PluginType::Provider, "info") => json(inst.provider_info()?),
        (PluginType::Provider, "models") => json(inst.provider_models()?),
        (PluginType::Provider, "auth-status") => json(inst.provider_auth_status()?),
        (PluginType::Provider, "auth-init") => {
            inst.provider_auth_init(&text_arg(f, args, 0, "credentials-json")?)?;
            Ok(ok_unit())
        }
        (PluginType::Provider, "auth-logout") => {
            inst.provider_auth_logout()?;
            Ok(ok_unit())
        }
        (PluginType::Provider, "chat") => {
            let messages: Vec<Message> = arg(f, args, 0, "messages")?;
            let model = text_arg(f, args, 1, "model")?;
            Ok(ok(json(inst.provider_chat(&messages, &model)?)?))
        }
        (PluginType::Channel, "info") => json(inst.channel_info()?),
        (PluginType::Channel, "start") => {
            inst.channel_start()?;
            Ok(ok_unit())
        }
        (PluginType::Channel, "stop") => {
            inst.channel_stop()?;
            Ok(ok_unit())
        }
        (PluginType::Channel, "auth-status") => json(inst.channel_auth_status()?),
        (PluginType::Channel, "auth-init") => {
            inst.channel_auth_init(&text_arg(f, args, 0, "credentials-json")?)?;
            Ok(ok_unit())
        }
        (PluginType::Channel, "auth-logout") => {
            inst.channel_auth_logout()?;
            Ok(ok_unit())
        }
        (PluginType::Channel, "widget-state") => Ok(ok(json(inst.channel_widget_state()?)?)),
        (PluginType::Channel, "handle-webhook") => {
            let req: WebhookRequest = arg(f, args, 0, "request")?;
            Ok(ok(json(inst.channel_handle_webhook(&req)?)?))
        }
        (PluginType::Channel, "handle-gateway-event") => {
            let payload = text_arg(f, args, 0, "payload-json")?;
            Ok(ok(json(inst.channel_handle_gateway_event(&payload)?)?))
        }
        (PluginType::Channel, "poll") => Ok(ok(json(inst.channel_poll()?)?)),
        (PluginType::Channel, "send") => {
            let msg: OutboundMessage = arg(f, args, 0, "message")?;
            Ok(ok(json(inst.channel_send(&msg)?)?))
        }
        _ => {
            let known = function_names(ty);
            if known.contains(&f) {
                Err(Error::InvalidArgument(format!(
                    "'{f}' is not available for {} plugins of the {} ABI",
                    ty.as_str(),
                    inst.abi()
                )))
            } else {
                Err(Error::InvalidArgument(format!(
                    "unknown function '{f}' for {} plugin {}; known: {}",
                    ty.as_str(),
                    inst.id(),
                    known.join(", ")
                )))
            }
        }
    }
}

/// Raw legacy export names: the plugin's text as a JSON string.
fn call_raw_export(inst: &mut PluginInstance, f: &str, args: &[Value]) -> Result<Option<Value>> {
    let text = match f {
        "provider_info"
        | "provider_models"
        | "provider_auth_credentials"
        | "channel_info"
        | "channel_widget_state"
        | "channel_poll"
        | "get_token"
        | "get_endpoint"
        | "display_name" => match f {
            "provider_auth_credentials" => inst.provider_auth_credentials_raw()?,
            "get_token" => inst.auth_get_token()?,
            "get_endpoint" => inst.auth_get_endpoint()?,
            "display_name" => inst.auth_display_name()?,
            other => inst.legacy_text(other)?,
        },
        "auth_process_tokens" => inst.auth_process_tokens(&text_arg(f, args, 0, "tokens-json")?)?,
        "channel_handle_webhook" | "channel_handle_gateway_event" | "channel_send" => {
            let input = text_arg(f, args, 0, "input")?;
            inst.legacy_text_with_input(f, &input)?
        }
        "provider_chat" => {
            let msgs = text_arg(f, args, 0, "messages-json")?;
            let model = text_arg(f, args, 1, "model")?;
            inst.legacy_chat_raw(&msgs, &model)?
        }
        // Status codes are data; for the others a negative code is a failure.
        "status" | "provider_auth_status" | "channel_auth_status" => {
            return Ok(Some(Value::from(inst.legacy_code(f, None)?)));
        }
        "channel_start"
        | "channel_stop"
        | "logout"
        | "provider_auth_logout"
        | "channel_auth_logout" => {
            return Ok(Some(Value::from(inst.legacy_checked_code(f, None)?)));
        }
        "init_with_credentials" | "provider_auth_init" | "channel_auth_init" => {
            let input = text_arg(f, args, 0, "credentials-json")?;
            return Ok(Some(Value::from(
                inst.legacy_checked_code(f, Some(&input))?,
            )));
        }
        _ => return Ok(None),
    };
    Ok(Some(Value::String(text)))
}
