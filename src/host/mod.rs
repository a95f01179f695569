//! Host services (storage, http, ws, env, log, fs) as plain Rust, independent of the
//! ABI a guest uses to reach them. Both ABI adapters call [`PluginContext`]; it asks
//! the [`Policy`](crate::policy::Policy) and applies the [`Limits`]. The JSON texts tark's
//! `http`/`ws` functions return to guests are built in [`wire`], for both adapters.

pub mod env;
pub mod fs;
pub mod http;
pub mod log;
#[cfg(feature = "sys")]
mod net;
pub mod storage;
pub mod wire;
pub mod ws;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::limits::Limits;
use crate::manifest::PluginCapabilities;
use crate::policy::{Policy, PolicyConfig};

pub use env::EnvError;
pub use fs::FsError;
pub use http::{HttpError, HttpMethod, HttpResponse};
pub use storage::StorageError;
pub use ws::{WsError, WsEvent};

/// Process-wide host settings.
#[derive(Debug, Clone, Default)]
pub struct HostConfig {
    /// Default limits for every plugin.
    pub limits: Limits,
    /// Capability-decision settings (workspace root, home, strict https).
    pub policy: PolicyConfig,
    /// Extra trusted root certificates (PEM) for HTTPS and WSS, on top of the
    /// webpki roots: private CAs and the tests' local servers.
    pub extra_ca_pem: Vec<Vec<u8>>,
}

/// Environment variable naming a PEM file of extra trusted root certificates.
pub const CA_FILE_ENV: &str = "TARK_WASMER_CA_FILE";

impl HostConfig {
    /// The settings a user's process runs with (the CLI and tark's face): the current
    /// directory as tark's workspace root, the user's home for `~` in `fs_read`, and the
    /// extra CA certificates named by [`CA_FILE_ENV`]. One place, so both agree.
    pub fn from_environment() -> Result<HostConfig, HostError> {
        let workspace_root = std::env::current_dir().map_err(HostError::CurrentDir)?;
        let mut extra_ca_pem = Vec::new();
        if let Some(path) = std::env::var_os(CA_FILE_ENV).filter(|v| !v.is_empty()) {
            let path = PathBuf::from(path);
            let pem = std::fs::read(&path).map_err(|source| HostError::CaFile {
                path: path.clone(),
                source,
            })?;
            extra_ca_pem.push(pem);
        }
        Ok(HostConfig {
            policy: PolicyConfig {
                workspace_root,
                home_dir: dirs::home_dir(),
                strict_https: false,
            },
            extra_ca_pem,
            ..HostConfig::default()
        })
    }
}

/// Errors building host services.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The current directory (tark's workspace root) cannot be determined.
    #[error("Failed to determine the current directory: {0}")]
    CurrentDir(std::io::Error),
    /// The file named by `TARK_WASMER_CA_FILE` cannot be read.
    #[error("Failed to read CA certificate file {} (from {CA_FILE_ENV}): {source}", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TLS configuration failed (for example an unreadable extra CA certificate).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// The plugin's storage could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Services shared by every plugin in the process: one HTTP client, one WebSocket
/// manager, one store per data directory.
pub struct HostServices {
    /// Settings.
    pub config: HostConfig,
    /// Shared HTTP client.
    pub http: http::HttpClient,
    /// Shared WebSocket manager (handles owned per instance).
    pub ws: ws::WsManager,
    /// One store per data directory, shared by all instances in the process.
    pub stores: storage::StoreRegistry,
}

impl HostServices {
    /// Build the shared services.
    pub fn new(config: HostConfig) -> Result<Arc<Self>, HostError> {
        let http = http::HttpClient::new(&config)?;
        let ws = ws::WsManager::new(&config)?;
        Ok(Arc::new(HostServices {
            config,
            http,
            ws,
            stores: storage::StoreRegistry::default(),
        }))
    }
}

/// Identifies one guest instance: WebSocket handles belong to the instance that opened them.
pub type OwnerId = u64;

/// A fresh, process-unique instance id.
pub fn next_owner_id() -> OwnerId {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Log target of host-call tracing: one trace line per host call, under
/// `tark_wasmer::trace::<plugin id>`, so `RUST_LOG=tark_wasmer::trace=trace` traces every
/// plugin and `RUST_LOG=tark_wasmer::trace::my-plugin=trace` one (the CLI's `--trace`).
pub const TRACE_TARGET: &str = "tark_wasmer::trace";

/// Longest argument or result text a trace line shows (in characters).
const TRACE_ARG_CHARS: usize = 80;

/// `text` quoted and cut to [`TRACE_ARG_CHARS`] characters (`...+N` says how many more).
fn trace_text(text: &str) -> String {
    let n = text.chars().count();
    if n <= TRACE_ARG_CHARS {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(TRACE_ARG_CHARS).collect();
    format!("{head:?}...+{}", n - TRACE_ARG_CHARS)
}

/// Everything one plugin may reach, shared by all of its instances.
pub struct PluginContext {
    /// Plugin id (manifest name), used as the log prefix.
    pub plugin_id: String,
    /// Its compiled capabilities.
    pub policy: Policy,
    /// Its store (shared with every other instance of the same data directory).
    pub storage: Arc<storage::Store>,
    /// Process-wide services.
    pub services: Arc<HostServices>,
    /// Its limits.
    pub limits: Limits,
    /// Whether the manifest declared `storage = true` (we warn once on use without it).
    pub storage_declared: bool,
    storage_warned: std::sync::atomic::AtomicBool,
    data_dir: PathBuf,
}

impl PluginContext {
    /// Build the context of one plugin.
    pub fn new(
        services: Arc<HostServices>,
        plugin_id: &str,
        caps: &PluginCapabilities,
        data_dir: &Path,
        limits: Limits,
    ) -> Result<Arc<Self>, HostError> {
        let policy = Policy::new(plugin_id, caps, &services.config.policy);
        let storage = services
            .stores
            .open(data_dir, plugin_id, limits.storage_total_max)?;
        Ok(Arc::new(PluginContext {
            plugin_id: plugin_id.to_string(),
            policy,
            storage,
            services,
            limits,
            storage_declared: caps.storage,
            storage_warned: std::sync::atomic::AtomicBool::new(false),
            data_dir: data_dir.to_path_buf(),
        }))
    }

    /// The plugin's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// One trace line for host call `call(args)` and its outcome (texts truncated);
    /// nothing is formatted unless tracing is on for this plugin.
    fn trace<T, E: std::fmt::Display>(
        &self,
        call: &str,
        args: &[&str],
        result: Result<T, E>,
        show: impl Fn(&T) -> String,
    ) -> Result<T, E> {
        let target = format!("{TRACE_TARGET}::{}", self.plugin_id);
        if ::log::log_enabled!(target: target.as_str(), ::log::Level::Trace) {
            let args: Vec<String> = args.iter().map(|a| trace_text(a)).collect();
            let outcome = match &result {
                Ok(v) => format!("ok {}", show(v)),
                Err(e) => format!("error {}", trace_text(&e.to_string())),
            };
            ::log::trace!(target: target.as_str(), "[plugin:{}] {call}({}) -> {outcome}", self.plugin_id, args.join(", "));
        }
        result
    }

    fn note_storage_use(&self) {
        if !self.storage_declared && !self.storage_warned.swap(true, Ordering::Relaxed) {
            ::log::warn!(
                "[plugin:{}] uses storage without declaring `storage = true` in [capabilities]",
                self.plugin_id
            );
        }
    }

    /// `storage.get`: the value, or None when absent.
    pub fn storage_get(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.note_storage_use();
        let r = self.storage.get(key, self.limits.storage_value_max);
        self.trace("storage.get", &[key], r, |v| match v {
            Some(v) => trace_text(v),
            None => "none".into(),
        })
    }

    /// `storage.set`: persisted atomically before returning.
    pub fn storage_set(&self, key: &str, value: &str) -> Result<(), StorageError> {
        self.note_storage_use();
        ::log::debug!("[plugin:{}] storage.set({key}, ...)", self.plugin_id);
        let r = self.storage.set(key, value);
        self.trace("storage.set", &[key, value], r, |_| String::new())
    }

    /// `storage.delete`: persisted atomically; absent keys are fine.
    pub fn storage_delete(&self, key: &str) -> Result<(), StorageError> {
        self.note_storage_use();
        ::log::debug!("[plugin:{}] storage.delete({key})", self.plugin_id);
        let r = self.storage.delete(key);
        self.trace("storage.delete", &[key], r, |_| String::new())
    }

    /// `storage.list-keys`, sorted.
    pub fn storage_list_keys(&self) -> Result<Vec<String>, StorageError> {
        self.note_storage_use();
        let r = self.storage.list_keys();
        self.trace("storage.list-keys", &[], r, |keys| {
            format!("{} keys", keys.len())
        })
    }

    /// `http.get` / `http.post`, allowlist and redirect hops checked, body bounded.
    pub fn http_request(
        &self,
        method: HttpMethod,
        url: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> Result<HttpResponse, HttpError> {
        let r = self.services.http.request(self, method, url, headers, body);
        let call = format!("http.{method:?}").to_lowercase();
        self.trace(&call, &[url, body.unwrap_or("")], r, |resp| {
            format!("status {}, {} bytes", resp.status, resp.body.len())
        })
    }

    /// `ws.connect`: a new handle owned by `owner`.
    pub fn ws_connect(
        &self,
        owner: OwnerId,
        url: &str,
        headers: &[(String, String)],
    ) -> Result<u64, WsError> {
        let r = self.services.ws.connect(self, owner, url, headers);
        self.trace("ws.connect", &[url], r, |h| format!("handle {h}"))
    }

    /// `ws.send` on a handle owned by `owner`.
    pub fn ws_send(&self, owner: OwnerId, handle: u64, text: &str) -> Result<(), WsError> {
        let r = self.services.ws.send(owner, handle, text);
        self.trace("ws.send", &[&handle.to_string(), text], r, |_| {
            String::new()
        })
    }

    /// `ws.recv` on a handle owned by `owner`; waits at most `timeout` (capped).
    pub fn ws_recv(
        &self,
        owner: OwnerId,
        handle: u64,
        timeout: Duration,
        max_bytes: usize,
    ) -> Result<WsEvent, WsError> {
        let timeout = timeout.min(self.limits.ws_recv_wait_max);
        let max_bytes = max_bytes.min(self.limits.ws_message_max);
        self.services.ws.recv(owner, handle, timeout, max_bytes)
    }

    /// `ws.close`: closes the connection (close frame) if `owner` owns it.
    pub fn ws_close(&self, owner: OwnerId, handle: u64) {
        self.services.ws.close(owner, handle)
    }

    /// Close every connection of an instance (called when it is dropped).
    pub fn ws_close_all(&self, owner: OwnerId) {
        self.services.ws.close_all(owner)
    }

    /// `env.get`: None when unset; error when denied or too large.
    pub fn env_get(&self, name: &str) -> Result<Option<String>, EnvError> {
        let r = env::get(self, name);
        self.trace("env.get", &[name], r, |v| match v {
            Some(_) => "set (value not shown)".into(),
            None => "unset".into(),
        })
    }

    /// `fs.read`: the file's text.
    pub fn fs_read(&self, path: &str) -> Result<String, FsError> {
        let r = fs::read(self, path);
        self.trace("fs.read", &[path], r, |text| {
            format!("{} bytes", text.len())
        })
    }

    /// Would `log.*` at `level` print anything? Adapters ask before reading the
    /// guest's message, so a line below the level costs no guest-memory access.
    pub fn log_enabled(&self, level: ::log::Level) -> bool {
        log::plugin_log_enabled(level)
    }

    /// `log.*` and captured guest output, prefixed with the plugin id.
    pub fn log(&self, level: ::log::Level, msg: &str) {
        log::plugin_log(&self.plugin_id, level, msg)
    }
}
