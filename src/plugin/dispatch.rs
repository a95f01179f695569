//! Call a plugin function by name with JSON arguments: the engine of
//! `tark-wasmer call`. Function names are the kebab-case names of the plugin's tark
//! interface (`display-name`, `auth-status`, `chat`, ...); raw legacy export names
//! (`provider_info`, `get_endpoint`, ...) return the plugin's raw text. Both are looked
//! up in [`crate::plugin::functions`].

use serde_json::Value;

use crate::abi::AbiKind;
use crate::error::{Error, Result};
use crate::manifest::PluginType;
use crate::plugin::{functions, PluginInstance};

/// Every interface function name a plugin of `ty` answers to.
pub fn function_names(ty: PluginType) -> Vec<&'static str> {
    functions::wit_names(ty)
}

/// Call `function` on `inst` with JSON `args`; the result as JSON.
pub fn call_by_name(inst: &mut PluginInstance, function: &str, args: &[Value]) -> Result<Value> {
    let f = function;
    if inst.abi() == AbiKind::Canonical {
        // Every function of the plugin's WIT interface, typed by the contract.
        return inst.call_canonical_json(f, args);
    }
    let ty = inst.plugin_type();
    // Interface names win over raw export names (`status` and `logout` are both).
    if let Some(row) = functions::by_wit(ty, f) {
        if row.legacy.is_none() {
            return Err(Error::InvalidArgument(format!(
                "'{f}' is not available for {} plugins of the {} ABI",
                ty.as_str(),
                inst.abi()
            )));
        }
        return inst.call_function(row, args);
    }
    if let Some(row) = functions::by_legacy(f) {
        return inst.call_legacy_export(row, args);
    }
    Err(Error::InvalidArgument(format!(
        "unknown function '{f}' for {} plugin {}; known: {}",
        ty.as_str(),
        inst.id(),
        function_names(ty).join(", ")
    )))
}
