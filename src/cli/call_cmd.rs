//! `call <ID> <FUNCTION> [ARG]...`: load one installed plugin with real host services and
//! print the result of one function as a line of JSON.
use anyhow::Context;
use serde_json::Value;

use tark_wasmer::plugin::dispatch::call_by_name;
use tark_wasmer::HostConfig;
use tark_wasmer::{Error, HostOptions, PluginHost};

use super::output::Out;
use super::Global;

/// One command-line argument as a call parameter: JSON when it parses, else the text as a
/// JSON string (so `echo` and `"echo"` mean the same).
pub fn parse_arg(arg: &str) -> Value {
    serde_json::from_str(arg).unwrap_or_else(|_| Value::String(arg.to_string()))
}

/// Host settings for the CLI: the current directory as tark's workspace root, the user's
/// home for `~` in `fs_read`, and the extra CA certificates of `TARK_WASMER_CA_FILE`.
fn host_config() -> anyhow::Result<HostConfig> {
    Ok(HostConfig::from_environment()?)
}

/// The host `call` builds from the global options.
fn host_options(global: &Global) -> anyhow::Result<HostOptions> {
    Ok(HostOptions {
        plugins_dir: Some(global.plugins_dir.clone()),
        compiler: global.compiler,
        config: HostConfig {
            limits: global.limits.clone(),
            ..host_config()?
        },
        cache: global.cache.clone(),
        ..HostOptions::default()
    })
}

/// After `plugin add` / `plugin update`: compile plugin `id` into the artifact cache with
/// the compiler and settings `call` would use, so its first call does not compile. A
/// failure is only logged: the plugin is installed, and `call` reports compile errors.
pub fn precompile(global: &Global, id: &str) {
    let result = (|| -> anyhow::Result<()> {
        let host = PluginHost::with_options(host_options(global)?)?;
        let plugin = host
            .registry()
            .get(id)
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        let outcome = host.precompile(plugin)?;
        log::debug!("precompiled plugin {id}: {outcome:?}");
        Ok(())
    })();
    if let Err(e) = result {
        log::warn!("Could not precompile plugin '{id}' (it will compile on first use): {e:#}");
    }
}

/// `call`: refuse unknown and disabled plugins, load (compile) the plugin, call, print.
pub fn call(
    global: &Global,
    id: &str,
    function: &str,
    args: &[String],
    out: &mut Out,
) -> anyhow::Result<()> {
    let mut host = PluginHost::with_options(host_options(global)?)?;
    let plugin = host
        .registry()
        .get(id)
        .ok_or_else(|| Error::NotFound(id.to_string()))?;
    if !plugin.enabled {
        return Err(Error::Disabled(id.to_string()).into());
    }
    host.load_id(id)
        .with_context(|| format!("Failed to load plugin '{id}'"))?;
    let instance = host
        .get_mut(id)
        .ok_or_else(|| Error::NotFound(id.to_string()))?;
    let params: Vec<Value> = args.iter().map(|a| parse_arg(a)).collect();
    let result = call_by_name(instance, function, &params)?;
    out.line(serde_json::to_string(&result)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_are_json_or_strings() {
        assert_eq!(parse_arg("echo"), Value::String("echo".into()));
        assert_eq!(parse_arg("\"echo\""), Value::String("echo".into()));
        assert_eq!(parse_arg("42"), Value::from(42));
        assert_eq!(parse_arg("-1"), Value::from(-1));
        assert_eq!(parse_arg("{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(parse_arg("{broken"), Value::String("{broken".into()));
        assert_eq!(parse_arg(""), Value::String(String::new()));
    }
}
