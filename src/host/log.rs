//! Plugin log lines and captured guest output, through the `log` crate.

/// The `log` target of plugin log lines.
pub const PLUGIN_TARGET: &str = "tark_wasmer::plugin";

/// Would a plugin line at `level` be logged? Checked before a guest's message is read.
pub fn plugin_log_enabled(level: log::Level) -> bool {
    log::log_enabled!(target: PLUGIN_TARGET, level)
}

/// Emit one plugin log line as `[plugin:<id>] <msg>`.
pub fn plugin_log(plugin_id: &str, level: log::Level, msg: &str) {
    log::log!(target: PLUGIN_TARGET, level, "[plugin:{plugin_id}] {msg}");
}
