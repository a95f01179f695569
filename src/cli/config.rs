//! The settings every command shares, from four places in a fixed order: a command-line
//! flag, else an environment variable, else the config file
//! (`$XDG_CONFIG_HOME/tark-wasmer/config.toml`, default `~/.config/...`; `--config PATH`
//! or `TARK_WASMER_CONFIG` name another), else the default. `config show` prints each
//! value with where it came from.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use tark_wasmer::cache::{parse_size, CacheConfig, CACHE_DIR_ENV, CACHE_MAX_SIZE_ENV};
use tark_wasmer::engine::Compiler;
use tark_wasmer::limits::{format_secs, Limits};
use tark_wasmer::registry::PLUGINS_DIR_ENV;

/// Environment variable naming the config file.
pub const CONFIG_ENV: &str = "TARK_WASMER_CONFIG";
/// Environment equivalent of `--compiler`.
pub const COMPILER_ENV: &str = "TARK_WASMER_COMPILER";

/// An example config file (README and `config show --help`).
pub const CONFIG_EXAMPLE: &str = "\
Config file (every key optional):
  compiler = \"cranelift\"          # or \"singlepass\"
  plugins_dir = \"~/plugins\"
  [cache]
  enabled = true
  dir = \"~/.cache/tark-wasmer/artifacts\"
  max_size = \"512M\"
  [limits]
  cpu_seconds = 5                 # seconds of guest CPU per call
  time_limit = 120                # seconds per call, 0 for none
  memory_max = \"256M\"
  metering = true";

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag (its spelling).
    Flag(&'static str),
    /// An environment variable (its name).
    Env(&'static str),
    /// The config file (its path).
    File(PathBuf),
    /// Built in.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "env {var}"),
            Source::File(path) => write!(f, "file {}", path.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// What the command line said about the shared settings (flags only; `None`/`false`
/// when not given).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--plugins-dir`.
    pub plugins_dir: Option<PathBuf>,
    /// `--compiler`.
    pub compiler: Option<Compiler>,
    /// `--cache-dir`.
    pub cache_dir: Option<PathBuf>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--cache-max-size`.
    pub cache_max_size: Option<u64>,
    /// `--cpu-seconds`.
    pub cpu_seconds: Option<f64>,
    /// `--time-limit` (seconds).
    pub time_limit: Option<f64>,
    /// `--memory-max`.
    pub memory_max: Option<u64>,
    /// `--no-metering`.
    pub no_metering: bool,
}

/// Every shared setting, resolved, with its source.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The config file consulted (None without a home directory).
    pub file: Option<PathBuf>,
    /// Whether that file exists (a missing default file is fine).
    pub file_found: bool,
    /// Absolute plugins directory.
    pub plugins_dir: (PathBuf, Source),
    /// Compiler.
    pub compiler: (Compiler, Source),
    /// Whether the artifact cache is used.
    pub cache_enabled: (bool, Source),
    /// Artifact cache directory; `None` when the platform has no cache directory.
    pub cache_dir: (Option<PathBuf>, Source),
    /// Artifact cache size limit in bytes.
    pub cache_max_size: (u64, Source),
    /// CPU budget per call (seconds of guest execution).
    pub cpu_time: (Duration, Source),
    /// Wall-clock limit per call (None: no limit).
    pub time_limit: (Option<Duration>, Source),
    /// Linear memory cap in bytes.
    pub memory_max: (u64, Source),
    /// Whether plugins are compiled with CPU metering.
    pub metering: (bool, Source),
}

impl Settings {
    /// The library's cache configuration (every part explicit, so the library does not
    /// consult the environment again).
    pub fn cache(&self) -> CacheConfig {
        CacheConfig {
            disabled: !self.cache_enabled.0,
            dir: self.cache_dir.0.clone(),
            max_bytes: Some(self.cache_max_size.0),
        }
    }

    /// The library's limits (defaults for what the settings do not cover).
    pub fn limits(&self) -> Limits {
        Limits {
            cpu_time: self.cpu_time.0,
            call_time_limit: self.time_limit.0,
            memory_max: self.memory_max.0,
            cpu_metering: self.metering.0,
            ..Limits::default()
        }
    }

    /// `(key, value, source)` rows in file-key order, for `config show`.
    pub fn rows(&self) -> Vec<(&'static str, String, &Source)> {
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none)".into())
        };
        vec![
            (
                "plugins_dir",
                self.plugins_dir.0.display().to_string(),
                &self.plugins_dir.1,
            ),
            (
                "compiler",
                self.compiler.0.as_str().to_string(),
                &self.compiler.1,
            ),
            (
                "cache.enabled",
                self.cache_enabled.0.to_string(),
                &self.cache_enabled.1,
            ),
            ("cache.dir", path(&self.cache_dir.0), &self.cache_dir.1),
            (
                "cache.max_size",
                self.cache_max_size.0.to_string(),
                &self.cache_max_size.1,
            ),
            (
                "limits.cpu_seconds",
                format_secs(self.cpu_time.0),
                &self.cpu_time.1,
            ),
            (
                "limits.time_limit",
                match self.time_limit.0 {
                    Some(d) => format_secs(d),
                    None => "none".into(),
                },
                &self.time_limit.1,
            ),
            (
                "limits.memory_max",
                self.memory_max.0.to_string(),
                &self.memory_max.1,
            ),
            (
                "limits.metering",
                self.metering.0.to_string(),
                &self.metering.1,
            ),
        ]
    }

    /// `config show --json`: `{file, file_found, settings: {key: {value, source}}}`.
    pub fn to_json(&self) -> Value {
        let source = |s: &Source| match s {
            Source::Flag(f) => json!({"kind": "flag", "name": f}),
            Source::Env(v) => json!({"kind": "env", "name": v}),
            Source::File(p) => json!({"kind": "file", "path": p.display().to_string()}),
            Source::Default => json!({"kind": "default"}),
        };
        let mut settings = serde_json::Map::new();
        let mut put = |key: &str, value: Value, s: &Source| {
            settings.insert(key.into(), json!({"value": value, "source": source(s)}));
        };
        put(
            "plugins_dir",
            json!(self.plugins_dir.0.display().to_string()),
            &self.plugins_dir.1,
        );
        put(
            "compiler",
            json!(self.compiler.0.as_str()),
            &self.compiler.1,
        );
        put(
            "cache.enabled",
            json!(self.cache_enabled.0),
            &self.cache_enabled.1,
        );
        put(
            "cache.dir",
            json!(self.cache_dir.0.as_ref().map(|p| p.display().to_string())),
            &self.cache_dir.1,
        );
        put(
            "cache.max_size",
            json!(self.cache_max_size.0),
            &self.cache_max_size.1,
        );
        put(
            "limits.cpu_seconds",
            json!(self.cpu_time.0.as_secs_f64()),
            &self.cpu_time.1,
        );
        put(
            "limits.time_limit",
            json!(self.time_limit.0.map(|d| d.as_secs_f64())),
            &self.time_limit.1,
        );
        put(
            "limits.memory_max",
            json!(self.memory_max.0),
            &self.memory_max.1,
        );
        put("limits.metering", json!(self.metering.0), &self.metering.1);
        json!({
            "file": self.file.as_ref().map(|p| p.display().to_string()),
            "file_found": self.file_found,
            "settings": settings,
        })
    }
}

/// The keys a config file may hold, with what each expects (used in errors).
const KEYS: &[(&str, &str)] = &[
    ("compiler", "\"singlepass\" or \"cranelift\""),
    ("plugins_dir", "a directory path as a string"),
    ("cache.enabled", "true or false"),
    ("cache.dir", "a directory path as a string"),
    (
        "cache.max_size",
        "a size such as \"512M\" or \"2G\" (or a number of bytes)",
    ),
    (
        "limits.cpu_seconds",
        "seconds of guest CPU per call as a number > 0, e.g. 5",
    ),
    (
        "limits.time_limit",
        "seconds per call as a number, 0 for no limit, e.g. 120",
    ),
    (
        "limits.memory_max",
        "a size such as \"256M\" (or a number of bytes)",
    ),
    ("limits.metering", "true or false"),
];

/// The config file to read: `--config`, else `TARK_WASMER_CONFIG`, else
/// `$XDG_CONFIG_HOME/tark-wasmer/config.toml` (an absolute XDG_CONFIG_HOME), else
/// `~/.config/tark-wasmer/config.toml`. `explicit` is true for the first two: a missing
/// file is then an error.
pub fn config_path(flag: Option<&Path>) -> (Option<PathBuf>, bool) {
    if let Some(p) = flag {
        return (Some(p.to_path_buf()), true);
    }
    if let Some(p) = std::env::var_os(CONFIG_ENV).filter(|v| !v.is_empty()) {
        return (Some(PathBuf::from(p)), true);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| dirs::home_dir().map(|h| h.join(".config")));
    (
        base.map(|b| b.join("tark-wasmer").join("config.toml")),
        false,
    )
}

/// The parsed file: dotted key → TOML value.
struct FileValues {
    path: PathBuf,
    values: Vec<(String, toml::Value)>,
}

impl FileValues {
    fn get(&self, key: &str) -> Option<&toml::Value> {
        self.values.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// An error naming the file, the key, what was found and what is expected.
    fn bad(&self, key: &str, found: &toml::Value) -> anyhow::Error {
        let expected = KEYS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("another value", |(_, e)| e);
        let (table, leaf) = match key.split_once('.') {
            Some((t, l)) => (format!(" under [{t}]"), l),
            None => (String::new(), key),
        };
        anyhow!(
            "config file {}: key `{key}` has an invalid value {found}\nFix: set `{leaf}`{table} to {expected}, or remove the line.",
            self.path.display()
        )
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileValues> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("Failed to read config file {}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        anyhow!(
            "config file {}: invalid TOML: {}\nFix: correct the syntax (see `tark-wasmer config show --help` for an example).",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let mut values = Vec::new();
    for (key, value) in table {
        match (key.as_str(), value) {
            ("cache" | "limits", toml::Value::Table(inner)) => {
                for (k, v) in inner {
                    values.push((format!("{key}.{k}"), v));
                }
            }
            (_, v) => values.push((key, v)),
        }
    }
    for (key, _) in &values {
        if !KEYS.iter().any(|(k, _)| k == key) {
            let hint = did_you_mean(key)
                .map(|k| format!("did you mean `{k}`? "))
                .unwrap_or_default();
            let known: Vec<&str> = KEYS.iter().map(|(k, _)| *k).collect();
            bail!(
                "config file {}: unknown key `{key}`\nFix: {hint}remove it or use one of: {}.",
                path.display(),
                known.join(", ")
            );
        }
    }
    Ok(FileValues {
        path: path.to_path_buf(),
        values,
    })
}

/// The known key closest to `key` (by edit distance, at most 3 edits, or a shared leaf).
fn did_you_mean(key: &str) -> Option<&'static str> {
    let leaf = key.rsplit('.').next().unwrap_or(key);
    KEYS.iter()
        .map(|(k, _)| *k)
        .map(|k| {
            let k_leaf = k.rsplit('.').next().unwrap_or(k);
            let d = if k_leaf == leaf {
                0
            } else {
                edit_distance(key, k).min(edit_distance(leaf, k_leaf))
            };
            (d, k)
        })
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `~` and `~/…` expanded; relative paths resolved against the config file's directory.
fn file_path(file: &Path, text: &str) -> PathBuf {
    let p = if text == "~" {
        dirs::home_dir().unwrap_or_else(|| PathBuf::from(text))
    } else if let Some(rest) = text.strip_prefix("~/") {
        dirs::home_dir()
            .map(|h| h.join(rest))
            .unwrap_or_else(|| PathBuf::from(text))
    } else {
        PathBuf::from(text)
    };
    if p.is_absolute() {
        p
    } else {
        file.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}

/// Resolve every shared setting: flag > environment > config file > default.
pub fn resolve(flags: &Flags) -> anyhow::Result<Settings> {
    let (file, explicit) = config_path(flags.config.as_deref());
    let file_found = file.as_ref().is_some_and(|p| p.is_file());
    let values = match &file {
        Some(p) if file_found => Some(read_file(p)?),
        Some(p) if explicit => bail!(
            "config file {} does not exist\nFix: create it, or point --config / {CONFIG_ENV} at an existing file.",
            p.display()
        ),
        _ => None,
    };
    let from_file = |key: &str| -> Option<(&toml::Value, Source)> {
        let v = values.as_ref()?;
        v.get(key).map(|val| (val, Source::File(v.path.clone())))
    };
    let bad = |key: &str, val: &toml::Value| match &values {
        Some(v) => v.bad(key, val),
        None => anyhow!("invalid {key}"),
    };
    let file_str = |key: &str| -> anyhow::Result<Option<(String, Source)>> {
        match from_file(key) {
            Some((toml::Value::String(s), src)) => Ok(Some((s.clone(), src))),
            Some((other, _)) => Err(bad(key, other)),
            None => Ok(None),
        }
    };
    let file_bool = |key: &str| -> anyhow::Result<Option<(bool, Source)>> {
        match from_file(key) {
            Some((toml::Value::Boolean(b), src)) => Ok(Some((*b, src))),
            Some((other, _)) => Err(bad(key, other)),
            None => Ok(None),
        }
    };
    let file_size = |key: &str| -> anyhow::Result<Option<(u64, Source)>> {
        match from_file(key) {
            Some((toml::Value::String(s), src)) => match parse_size(s) {
                Ok(n) => Ok(Some((n, src))),
                Err(_) => Err(bad(key, &toml::Value::String(s.clone()))),
            },
            Some((toml::Value::Integer(n), src)) if *n >= 0 => Ok(Some((*n as u64, src))),
            Some((other, _)) => Err(bad(key, other)),
            None => Ok(None),
        }
    };
    let path_of = |src: &Source| match src {
        Source::File(p) => p.clone(),
        _ => PathBuf::new(),
    };

    // plugins_dir
    let plugins_dir = if let Some(d) = &flags.plugins_dir {
        (absolute(d.clone()), Source::Flag("--plugins-dir"))
    } else if let Some(d) = std::env::var_os(PLUGINS_DIR_ENV).filter(|v| !v.is_empty()) {
        (absolute(PathBuf::from(d)), Source::Env(PLUGINS_DIR_ENV))
    } else if let Some((s, src)) = file_str("plugins_dir")? {
        (file_path(&path_of(&src), &s), src)
    } else {
        (
            absolute(tark_wasmer::registry::resolve_plugins_dir(None)),
            Source::Default,
        )
    };

    // compiler
    let compiler = if let Some(c) = flags.compiler {
        (c, Source::Flag("--compiler"))
    } else if let Some(raw) = env_nonempty(COMPILER_ENV) {
        let c = raw.parse::<Compiler>().map_err(|_| {
            anyhow!("invalid {COMPILER_ENV} value '{raw}' (possible values: singlepass, cranelift)")
        })?;
        (c, Source::Env(COMPILER_ENV))
    } else if let Some((s, src)) = file_str("compiler")? {
        let c = s
            .parse::<Compiler>()
            .map_err(|_| bad("compiler", &toml::Value::String(s.clone())))?;
        (c, src)
    } else {
        (Compiler::default(), Source::Default)
    };

    // cache
    let cache_enabled = if flags.no_cache {
        (false, Source::Flag("--no-cache"))
    } else if let Some(v) = file_bool("cache.enabled")? {
        v
    } else {
        (true, Source::Default)
    };
    let cache_dir = if let Some(d) = &flags.cache_dir {
        (Some(absolute(d.clone())), Source::Flag("--cache-dir"))
    } else if let Some(d) = std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
        (Some(absolute(PathBuf::from(d))), Source::Env(CACHE_DIR_ENV))
    } else if let Some((s, src)) = file_str("cache.dir")? {
        (Some(file_path(&path_of(&src), &s)), src)
    } else {
        (CacheConfig::default().resolve_dir(), Source::Default)
    };
    let cache_max_size = if let Some(n) = flags.cache_max_size {
        (n, Source::Flag("--cache-max-size"))
    } else if let Some(raw) = env_nonempty(CACHE_MAX_SIZE_ENV) {
        let n = parse_size(&raw)
            .map_err(|e| anyhow!("invalid {CACHE_MAX_SIZE_ENV} value '{raw}': {e}"))?;
        (n, Source::Env(CACHE_MAX_SIZE_ENV))
    } else if let Some(v) = file_size("cache.max_size")? {
        v
    } else {
        (tark_wasmer::cache::DEFAULT_MAX_BYTES, Source::Default)
    };

    // limits
    let defaults = Limits::default();
    let cpu_secs = |t: f64, what: &str| -> anyhow::Result<Duration> {
        if !t.is_finite() || t <= 0.0 {
            bail!("{what} must be a number of seconds > 0, got {t}");
        }
        Duration::try_from_secs_f64(t).map_err(|e| anyhow!("{what} {t}: {e}"))
    };
    let cpu_time = if let Some(t) = flags.cpu_seconds {
        (cpu_secs(t, "--cpu-seconds")?, Source::Flag("--cpu-seconds"))
    } else {
        match from_file("limits.cpu_seconds") {
            Some((v @ (toml::Value::Integer(_) | toml::Value::Float(_)), src)) => {
                let t = match v {
                    toml::Value::Integer(n) => *n as f64,
                    toml::Value::Float(f) => *f,
                    _ => -1.0,
                };
                let d =
                    cpu_secs(t, "limits.cpu_seconds").map_err(|_| bad("limits.cpu_seconds", v))?;
                (d, src)
            }
            Some((other, _)) => return Err(bad("limits.cpu_seconds", other)),
            None => (defaults.cpu_time, Source::Default),
        }
    };
    let seconds = |t: f64, what: &str| -> anyhow::Result<Option<Duration>> {
        if !t.is_finite() || t < 0.0 {
            bail!("{what} must be a number of seconds >= 0 (0 for no limit), got {t}");
        }
        Ok((t > 0.0).then(|| Duration::from_secs_f64(t)))
    };
    let time_limit = if let Some(t) = flags.time_limit {
        (seconds(t, "--time-limit")?, Source::Flag("--time-limit"))
    } else {
        match from_file("limits.time_limit") {
            Some((v @ (toml::Value::Integer(_) | toml::Value::Float(_)), src)) => {
                let t = match v {
                    toml::Value::Integer(n) => *n as f64,
                    toml::Value::Float(f) => *f,
                    _ => -1.0,
                };
                let d = seconds(t, "limits.time_limit").map_err(|_| bad("limits.time_limit", v))?;
                (d, src)
            }
            Some((other, _)) => return Err(bad("limits.time_limit", other)),
            None => (defaults.call_time_limit, Source::Default),
        }
    };
    let memory_max = if let Some(m) = flags.memory_max {
        (m, Source::Flag("--memory-max"))
    } else if let Some(v) = file_size("limits.memory_max")? {
        v
    } else {
        (defaults.memory_max, Source::Default)
    };
    let metering = if flags.no_metering {
        (false, Source::Flag("--no-metering"))
    } else if let Some(v) = file_bool("limits.metering")? {
        v
    } else {
        (defaults.cpu_metering, Source::Default)
    };

    Ok(Settings {
        file,
        file_found,
        plugins_dir,
        compiler,
        cache_enabled,
        cache_dir,
        cache_max_size,
        cpu_time,
        time_limit,
        memory_max,
        metering,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_for_misspelled_keys() {
        assert_eq!(did_you_mean("compiller"), Some("compiler"));
        assert_eq!(
            did_you_mean("limits.cpu_secnds"),
            Some("limits.cpu_seconds")
        );
        assert_eq!(did_you_mean("cpu_seconds"), Some("limits.cpu_seconds"));
        assert_eq!(did_you_mean("zzzzzzzzzzzz"), None);
    }

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let f = Path::new("/etc/tw/config.toml");
        assert_eq!(file_path(f, "plugins"), PathBuf::from("/etc/tw/plugins"));
        assert_eq!(file_path(f, "/abs"), PathBuf::from("/abs"));
    }
}
