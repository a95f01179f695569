//! `call <ID|PATH> <FUNCTION> [ARG]... [-- FUNCTION [ARG]...]...` and `repl <ID|PATH>`:
//! load one plugin with real host services and run functions on one live instance,
//! printing each result as a line of JSON.
//!
//! One rule for results whatever the ABI (see [`EXIT_CODES`]): the value on stdout as
//! JSON; a plugin-level `err` (canonical `result::err`, a legacy failure code or error
//! envelope) is printed as `{"err": ...}` and exits 3; usage errors exit 2; host and
//! limit failures exit 4; anything else 1.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::{json, Value};

use tark_wasmer::plugin::dispatch::{call_callable, convert_args, lookup, Callable};
use tark_wasmer::registry::InstalledPlugin;
use tark_wasmer::{CallError, Error, HostConfig, HostOptions, PluginHost, PluginInstance};

use super::output::Out;
use super::Global;

/// Exit status of a usage error (clap's, and `call` arguments that do not fit).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when the plugin reported a failure (`err`, a failure code).
pub const EXIT_PLUGIN: u8 = 3;
/// Exit status when the host failed: load, trap, CPU/time/memory limit, broken ABI.
pub const EXIT_HOST: u8 = 4;

/// The exit codes, for `--help` and the README.
pub const EXIT_CODES: &str = "\
Exit status:
  0  success (the value is on stdout)
  1  error (plugin not installed or disabled, files, install refused, ...)
  2  usage error: unknown command, option or function, wrong argument count, invalid
     JSON or a value that does not fit the parameter's WIT type
  3  the plugin reported a failure: an `err` result (printed as {\"err\": ...} on
     stdout) or a legacy failure code
  4  host or limit failure: the plugin failed to load, trapped, ran out of CPU budget,
     time or memory, or broke the ABI";

/// The plugin answered `err`: already printed; exits [`EXIT_PLUGIN`].
#[derive(Debug, thiserror::Error)]
#[error("plugin {plugin}: {function} returned err: {message}")]
pub struct PluginFailed {
    plugin: String,
    function: String,
    message: String,
}

/// The plugin could not be loaded (exits [`EXIT_HOST`]); one line, even when the
/// compiler's message was a dump of bytes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadFailed(String);

/// A usage error found by the CLI itself (exits [`EXIT_USAGE`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The exit status for an error, by the rule of [`EXIT_CODES`].
pub fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.downcast_ref::<PluginFailed>().is_some() {
            return EXIT_PLUGIN;
        }
        if cause.downcast_ref::<Usage>().is_some() {
            return EXIT_USAGE;
        }
        if cause.downcast_ref::<LoadFailed>().is_some() {
            return EXIT_HOST;
        }
        if let Some(err) = cause.downcast_ref::<Error>() {
            return library_code(err);
        }
    }
    1
}

fn library_code(e: &Error) -> u8 {
    match e {
        Error::InvalidArgument(_) | Error::WrongType { .. } => EXIT_USAGE,
        Error::Call { source, .. } => match source {
            CallError::ArgumentCount { .. } | CallError::Unsupported { .. } => EXIT_USAGE,
            CallError::PluginError { .. }
            | CallError::GuestError { .. }
            | CallError::Missing(_)
            | CallError::MissingExport(_) => EXIT_PLUGIN,
            _ => EXIT_HOST,
        },
        Error::Instantiate { .. }
        | Error::Engine(_)
        | Error::Host(_)
        | Error::WrongWorld { .. } => EXIT_HOST,
        _ => 1,
    }
}

/// A plugin directory given to `call`/`repl` instead of an id: contains a `/`, is `.` or
/// `..`, or is an existing directory with a `plugin.toml`.
fn is_path(target: &str) -> bool {
    target.contains('/')
        || target == "."
        || target == ".."
        || Path::new(target)
            .join(tark_wasmer::manifest::MANIFEST_FILE)
            .is_file()
}

/// Where `call PATH` keeps a not-installed plugin's `data/` (its storage): outside the
/// source tree, so `plugin add` never copies it.
pub fn dev_data_dir(id: &str) -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("tark-wasmer")
        .join("dev-data")
        .join(id)
}

/// A load failure in one line: a module that is not wasm says so (instead of the
/// compiler's dump of the bytes it expected), other messages keep their first line.
fn load_failed(plugin: &InstalledPlugin, e: Error) -> anyhow::Error {
    let text = e.to_string();
    let bytes = std::fs::read(plugin.wasm_path()).unwrap_or_default();
    let line = if matches!(e, Error::Engine(_)) || !bytes.starts_with(b"\0asm") {
        tark_wasmer::check::module_error_line(&bytes, &text)
    } else {
        return anyhow::Error::new(e).context(format!("Failed to load plugin '{}'", plugin.id));
    };
    anyhow::Error::new(LoadFailed(format!(
        "Failed to load plugin '{}': {line} (run `tark-wasmer plugin check {}` for details)",
        plugin.id,
        plugin.dir.display()
    )))
}

/// The host `call` builds from the global options.
fn host_options(global: &Global) -> anyhow::Result<HostOptions> {
    Ok(HostOptions {
        plugins_dir: Some(global.plugins_dir.clone()),
        compiler: global.compiler,
        config: HostConfig {
            limits: global.limits.clone(),
            ..HostConfig::from_environment()?
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

/// A loaded plugin ready for calls.
pub struct Session {
    host: PluginHost,
    id: String,
}

impl Session {
    /// Load an installed plugin by id, or a plugin directory (not installed).
    pub fn open(global: &Global, target: &str) -> anyhow::Result<Session> {
        let mut host = PluginHost::with_options(host_options(global)?)?;
        let id = if is_path(target) {
            let dir = std::path::absolute(target)
                .with_context(|| format!("Failed to resolve {target}"))?;
            let plugin = InstalledPlugin::load(&dir)
                .with_context(|| format!("Failed to load the plugin in {}", dir.display()))?;
            let id = plugin.id.clone();
            host.load_with_data_dir(&plugin, &dev_data_dir(&id))
                .map_err(|e| load_failed(&plugin, e))?;
            id
        } else {
            let plugin = host
                .registry()
                .get(target)
                .ok_or_else(|| Error::NotFound(target.to_string()))?;
            if !plugin.enabled {
                return Err(Error::Disabled(target.to_string()).into());
            }
            let plugin = plugin.clone();
            host.load(&plugin).map_err(|e| load_failed(&plugin, e))?;
            target.to_string()
        };
        Ok(Session { host, id })
    }

    fn instance(&mut self) -> anyhow::Result<&mut PluginInstance> {
        Ok(self
            .host
            .get_mut(&self.id)
            .ok_or_else(|| Error::NotFound(self.id.clone()))?)
    }

    /// The function `name`, or a usage error listing the available ones.
    pub fn lookup(&mut self, name: &str) -> anyhow::Result<Callable> {
        let inst = self.instance()?;
        Ok(lookup(
            inst.abi(),
            inst.plugin_type(),
            &inst.interface(),
            name,
        )?)
    }

    /// Call `function` with command-line arguments; `Ok(value)` also for an `err` value
    /// (the caller prints it, then reports [`PluginFailed`]).
    pub fn call(&mut self, function: &str, args: &[String]) -> anyhow::Result<(Callable, Value)> {
        let c = self.lookup(function)?;
        let values = convert_args(&c, args)?;
        let inst = self.instance()?;
        let v = call_callable(inst, &c, &values)?;
        Ok((c, v))
    }

    fn failed(&self, c: &Callable, v: &Value) -> Option<PluginFailed> {
        if !c.is_err(v) {
            return None;
        }
        let message = match v.get("err") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        Some(PluginFailed {
            plugin: self.id.clone(),
            function: c.name.clone(),
            message,
        })
    }
}

/// Split `f1 a b -- f2 c` into calls; `--` separates them (an argument that is `--`
/// itself can be written as the JSON string `"--"`).
fn split_calls(words: &[String]) -> Vec<(String, Vec<String>)> {
    let mut calls: Vec<(String, Vec<String>)> = Vec::new();
    let mut start_next = true;
    for a in words {
        if a == "--" {
            start_next = true;
            continue;
        }
        if start_next {
            calls.push((a.clone(), Vec::new()));
            start_next = false;
        } else if let Some(last) = calls.last_mut() {
            last.1.push(a.clone());
        }
    }
    calls
}

/// `call`: one or more calls on one live instance (`--` between them), or `--stream`.
pub fn call(
    global: &Global,
    target: &str,
    words: &[String],
    stream: bool,
    out: &mut Out,
) -> anyhow::Result<()> {
    let calls = split_calls(words);
    if calls.is_empty() {
        return Err(Usage("no function given after `--`".into()).into());
    }
    if stream && calls.len() > 1 {
        return Err(
            Usage("--stream runs one streamed chat; do not combine it with --".into()).into(),
        );
    }
    let mut session = Session::open(global, target)?;
    if stream {
        return stream_chat(&mut session, &calls[0].0, &calls[0].1, out);
    }
    for (f, a) in &calls {
        let (c, v) = session.call(f, a)?;
        out.line(serde_json::to_string(&v)?)?;
        if let Some(failed) = session.failed(&c, &v) {
            out.flush()?;
            return Err(failed.into());
        }
    }
    Ok(())
}

/// `call --stream ID chat MESSAGES MODEL`: `chat-stream-start`, then `chat-stream-poll`
/// until a chunk says `done`, printing each chunk as a JSON line as it arrives.
fn stream_chat(
    session: &mut Session,
    function: &str,
    args: &[String],
    out: &mut Out,
) -> anyhow::Result<()> {
    if !matches!(function, "chat" | "chat-stream-start") {
        return Err(Usage(format!(
            "--stream streams a provider's chat: `call --stream ID chat MESSAGES MODEL` (got '{function}')"
        ))
        .into());
    }
    let (c, started) = session.call("chat-stream-start", args)?;
    if let Some(failed) = session.failed(&c, &started) {
        out.line(serde_json::to_string(&started)?)?;
        return Err(failed.into());
    }
    let stream_id = started
        .get("ok")
        .and_then(Value::as_u64)
        .ok_or_else(|| anyhow::anyhow!("chat-stream-start answered {started}, not a stream id"))?;
    loop {
        let (c, v) = session.call("chat-stream-poll", &[stream_id.to_string()])?;
        out.line(serde_json::to_string(&v)?)?;
        out.flush()?;
        if let Some(failed) = session.failed(&c, &v) {
            return Err(failed.into());
        }
        let chunk = v.get("ok");
        if chunk
            .and_then(|c| c.get("done"))
            .and_then(Value::as_bool)
            .unwrap_or(true)
        {
            return Ok(());
        }
        if chunk
            .and_then(|c| c.get("text"))
            .and_then(Value::as_str)
            .is_some_and(str::is_empty)
        {
            // Nothing yet: do not spin on the plugin.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Shell-like words: whitespace separates, '...' and "..." quote, \ escapes outside
/// single quotes.
fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err("unterminated '".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(x) if x == '"' || x == '\\' => cur.push(x),
                            Some(x) => {
                                cur.push('\\');
                                cur.push(x);
                            }
                            None => return Err("unterminated \"".into()),
                        },
                        Some(x) => cur.push(x),
                        None => return Err("unterminated \"".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(x) = chars.next() {
                    cur.push(x);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The help of the interactive `repl`.
const REPL_HELP: &str = "\
Type FUNCTION [ARG]... (ARGs as on the command line: JSON, or text for string parameters;
quote with '...' or \"...\"). Commands: functions, help, quit.";

/// A JSON request line of `repl --jsonl`: `{"function": "f", "args": [...], "id": any}`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    function: String,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    id: Option<Value>,
}

/// A JSON argument as command-line text: strings as JSON string literals (taken as text
/// by string parameters, as a JSON string by the others), other values as their JSON.
fn arg_text(v: &Value) -> String {
    v.to_string()
}

/// `{"error": {"code": N, "message": "..."}}` for a failed request.
fn error_json(e: &anyhow::Error) -> Value {
    json!({"code": exit_code(e), "message": format!("{e:#}")})
}

/// `repl ID|PATH [--jsonl]`: calls read from stdin against one live instance.
pub fn repl(global: &Global, target: &str, jsonl: bool, out: &mut Out) -> anyhow::Result<()> {
    let mut session = Session::open(global, target)?;
    let interactive = !jsonl && std::io::stdin().is_terminal();
    if interactive {
        let abi = session.instance()?.abi();
        eprintln!(
            "tark-wasmer repl: plugin {} ({abi} ABI). {REPL_HELP}",
            session.id
        );
    }
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        if interactive {
            eprint!("{}> ", session.id);
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else {
            break;
        };
        let line = line.context("Failed to read stdin")?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if jsonl {
            let answer = jsonl_request(&mut session, line);
            out.line(serde_json::to_string(&answer)?)?;
            out.flush()?;
            continue;
        }
        match line {
            "quit" | "exit" => break,
            "help" => {
                eprintln!("{REPL_HELP}");
                continue;
            }
            "functions" => {
                let inst = session.instance()?;
                let all = tark_wasmer::plugin::dispatch::callables(
                    inst.abi(),
                    inst.plugin_type(),
                    &inst.interface(),
                );
                for c in all {
                    out.line(format!("{}: {}", c.name, c.signature))?;
                }
                out.flush()?;
                continue;
            }
            _ => {}
        }
        let words = match split_words(line) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("Error: {e}");
                continue;
            }
        };
        let Some((f, args)) = words.split_first() else {
            continue;
        };
        match session.call(f, args) {
            Ok((c, v)) => {
                out.line(serde_json::to_string(&v)?)?;
                out.flush()?;
                if let Some(failed) = session.failed(&c, &v) {
                    eprintln!("Error: {failed}");
                }
            }
            Err(e) => eprintln!("{}", super::format_error(&e)),
        }
    }
    out.flush()?;
    Ok(())
}

/// One `repl --jsonl` line: `{"result": v}` (with `"err": true` when the plugin answered
/// `err`) or `{"error": {"code", "message"}}`, with the request's `id` when it had one.
fn jsonl_request(session: &mut Session, line: &str) -> Value {
    let req: Request = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => {
            let e = anyhow::Error::new(Usage(format!(
                "invalid request at line 1 column {}: {e} (expected {{\"function\": \"name\", \"args\": [...]}})",
                e.column()
            )));
            return json!({ "error": error_json(&e) });
        }
    };
    let args: Vec<String> = req.args.iter().map(arg_text).collect();
    let mut answer = match session.call(&req.function, &args) {
        Ok((c, v)) => match session.failed(&c, &v) {
            Some(failed) => {
                let e = anyhow::Error::new(failed);
                json!({ "result": v, "error": error_json(&e) })
            }
            None => json!({ "result": v }),
        },
        Err(e) => json!({ "error": error_json(&e) }),
    };
    if let (Some(id), Value::Object(m)) = (req.id, &mut answer) {
        m.insert("id".into(), id);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_split_at_double_dashes() {
        let args: Vec<String> = ["f", "a", "--", "g", "--", "h", "1", "2"]
            .map(String::from)
            .to_vec();
        let calls = split_calls(&args);
        assert_eq!(
            calls,
            vec![
                ("f".to_string(), vec!["a".to_string()]),
                ("g".to_string(), vec![]),
                ("h".to_string(), vec!["1".to_string(), "2".to_string()]),
            ]
        );
    }

    #[test]
    fn words_follow_the_shell() {
        assert_eq!(
            split_words(r#"chat '[{"role":"user"}]' "a b" c\ d"#).unwrap(),
            vec![r#"chat"#, r#"[{"role":"user"}]"#, "a b", "c d"]
        );
        assert!(split_words("f 'open").is_err());
        assert_eq!(split_words("f ''").unwrap(), vec!["f", ""]);
    }
}
