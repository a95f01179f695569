//! Plugin log lines and captured guest output, through the `log` crate.

/// Emit one plugin log line as `[plugin:<id>] <msg>`.
pub fn plugin_log(plugin_id: &str, level: log::Level, msg: &str) {
    log::log!(target: "tark_wasmer::plugin", level, "[plugin:{plugin_id}] {msg}");
}
