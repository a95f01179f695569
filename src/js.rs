//! The JS backend's face: [`JsHost`], a plugin host for JavaScript (Node, browsers)
//! built with wasm-bindgen. The host's core is the native one (manifest rules, policy,
//! both ABI adapters, the function table and `call` by name, storage quotas); plugins are
//! compiled and run by the JavaScript engine's own WebAssembly through wasmer's `js`
//! backend. What differs from native, and why (README "Platforms"):
//! - No CPU budget or wall-clock limit (no metering, no watchdog); the memory limit is
//!   checked at instantiation and reported on failure, not capped by tunables.
//! - Storage lives in memory per plugin; [`JsHost::export_storage`] and
//!   [`JsHost::import_storage`] let the embedder keep it.
//! - HTTP goes through a synchronous callback the embedder sets
//!   ([`JsHost::set_http_transport`]); the allowlist and redirect rules stay in the host.
//! - WebSockets and file reads fail with a clear "not available in the JS backend".
//!
//! Values cross as JSON text, so 64-bit integers keep every digit.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

use crate::engine::WasmEngine;
use crate::host::http::{HttpTransport, TransportRequest};
use crate::host::{HostConfig, HostServices, HttpResponse, PluginContext};
use crate::limits::Limits;
use crate::manifest::PluginManifest;
use crate::plugin::dispatch::call_by_name;
use crate::plugin::PluginInstance;
use crate::policy::PolicyConfig;
use crate::registry::InstalledPlugin;

/// Where plugins "live" in the JS backend: names for messages and storage keys only.
const PLUGINS_ROOT: &str = "/tark-js/plugins";

thread_local! {
    /// The embedder's HTTP callback per host (JavaScript values are not `Send`: they stay
    /// on this thread, which is the only one a wasm32 host without threads has).
    static TRANSPORTS: RefCell<HashMap<u32, js_sys::Function>> = RefCell::new(HashMap::new());
    /// The embedder's log callback.
    static LOGGER: RefCell<Option<js_sys::Function>> = const { RefCell::new(None) };
}

/// Forwards `log` records to the embedder's callback (`level`, `target`, `message`).
struct JsLogger;

impl log::Log for JsLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        LOGGER.with(|l| {
            if let Some(f) = l.borrow().as_ref() {
                let _ = f.call3(
                    &JsValue::NULL,
                    &JsValue::from_str(record.level().as_str()),
                    &JsValue::from_str(record.target()),
                    &JsValue::from_str(&record.args().to_string()),
                );
            }
        });
    }

    fn flush(&self) {}
}

static JS_LOGGER: JsLogger = JsLogger;

/// Send the host's and the plugins' log lines at `level` (`error` ... `trace`, or `off`)
/// to `callback(level, target, message)`.
#[wasm_bindgen(js_name = setLogger)]
pub fn set_logger(callback: Option<js_sys::Function>, level: &str) -> Result<(), JsError> {
    let filter: log::LevelFilter = level
        .parse()
        .map_err(|_| JsError::new(&format!("unknown log level '{level}'")))?;
    let _ = log::set_logger(&JS_LOGGER);
    log::set_max_level(if callback.is_some() {
        filter
    } else {
        log::LevelFilter::Off
    });
    LOGGER.with(|l| *l.borrow_mut() = callback);
    Ok(())
}

/// A plugin host running in a JavaScript engine.
#[wasm_bindgen]
pub struct JsHost {
    id: u32,
    engine: Arc<WasmEngine>,
    services: Arc<HostServices>,
    plugins: HashMap<String, PluginInstance>,
}

fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

#[wasm_bindgen]
impl JsHost {
    /// A host with the default limits (those the JS backend can apply).
    #[wasm_bindgen(constructor)]
    pub fn new() -> Result<JsHost, JsError> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let config = HostConfig {
            limits: Limits::default(),
            policy: PolicyConfig {
                workspace_root: PathBuf::from("/workspace"),
                home_dir: None,
                strict_https: false,
            },
            extra_ca_pem: Vec::new(),
        };
        let services = HostServices::new(config).map_err(js_err)?;
        Ok(JsHost {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            engine: Arc::new(WasmEngine::new()),
            services,
            plugins: HashMap::new(),
        })
    }

    /// Load a plugin from its `plugin.toml` text and module bytes (tark's manifest rules,
    /// the same ABI and world checks as native). Returns the plugin id.
    pub fn load(&mut self, manifest_toml: &str, wasm: &[u8]) -> Result<String, JsError> {
        let probe = PathBuf::from(PLUGINS_ROOT).join("plugin.toml");
        let manifest = PluginManifest::from_str_at(manifest_toml, &probe).map_err(js_err)?;
        for warning in manifest.warnings() {
            log::warn!("{warning}");
        }
        let id = manifest.plugin.name.clone();
        let dir = PathBuf::from(PLUGINS_ROOT).join(&id);
        let installed = InstalledPlugin {
            id: id.clone(),
            dir: dir.clone(),
            manifest,
            enabled: true,
            install: None,
        };
        let request = installed.manifest.limits.request().unwrap_or_default();
        let (limits, notes) = self.services.config.limits.for_plugin(&id, &request);
        for note in notes {
            log::warn!("{note}");
        }
        let compiled = self.engine.compile(&id, wasm).map_err(js_err)?;
        let ctx = PluginContext::new(
            self.services.clone(),
            &id,
            &installed.manifest.capabilities,
            &dir.join("data"),
            limits,
        )
        .map_err(js_err)?;
        let instance =
            PluginInstance::new(installed, self.engine.clone(), compiled, ctx).map_err(js_err)?;
        self.plugins.insert(id.clone(), instance);
        Ok(id)
    }

    /// Ids of the loaded plugins, sorted.
    pub fn loaded(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.plugins.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Call `function` (tark's kebab-case interface name, or a raw legacy export) of
    /// `plugin` with a JSON array of arguments. Answers JSON text: `{"ok": value}` or
    /// `{"err": "message"}` (the native `call`'s shapes).
    pub fn call(
        &mut self,
        plugin: &str,
        function: &str,
        args_json: &str,
    ) -> Result<String, JsError> {
        let inst = self
            .plugins
            .get_mut(plugin)
            .ok_or_else(|| JsError::new(&format!("plugin '{plugin}' is not loaded")))?;
        let args: Value = serde_json::from_str(args_json)
            .map_err(|e| JsError::new(&format!("arguments are not JSON: {e}")))?;
        let Value::Array(args) = args else {
            return Err(JsError::new("arguments must be a JSON array"));
        };
        let outcome = match call_by_name(inst, function, &args) {
            Ok(v) => json!({ "ok": v }),
            Err(e) => json!({ "err": e.to_string() }),
        };
        Ok(outcome.to_string())
    }

    /// The plugin's storage as a JSON object of strings.
    #[wasm_bindgen(js_name = exportStorage)]
    pub fn export_storage(&self, plugin: &str) -> Result<String, JsError> {
        let ctx = self.context(plugin)?;
        serde_json::to_string(&ctx.storage.snapshot()).map_err(js_err)
    }

    /// Replace the plugin's storage with a JSON object of strings (quota checked).
    #[wasm_bindgen(js_name = importStorage)]
    pub fn import_storage(&self, plugin: &str, json_text: &str) -> Result<(), JsError> {
        let ctx = self.context(plugin)?;
        let map: BTreeMap<String, String> = serde_json::from_str(json_text)
            .map_err(|e| JsError::new(&format!("storage must be a JSON object of strings: {e}")))?;
        ctx.storage.restore(map).map_err(js_err)
    }

    /// Set the synchronous HTTP transport: `callback(requestJson)` gets
    /// `{"method","url","headers":[[name,value]],"body","max_body"}` for one hop (it
    /// must not follow redirects) and returns `{"status","headers":[[name,value]],"body"}`
    /// or throws. `null` removes it (requests then fail with a clear error).
    #[wasm_bindgen(js_name = setHttpTransport)]
    pub fn set_http_transport(&self, callback: Option<js_sys::Function>) {
        let id = self.id;
        let transport: Option<HttpTransport> = match callback {
            Some(f) => {
                TRANSPORTS.with(|t| t.borrow_mut().insert(id, f));
                Some(Arc::new(move |req: &TransportRequest| {
                    js_transport(id, req)
                }))
            }
            None => {
                TRANSPORTS.with(|t| t.borrow_mut().remove(&id));
                None
            }
        };
        self.services.http.set_transport(transport);
    }

    fn context(&self, plugin: &str) -> Result<&Arc<PluginContext>, JsError> {
        self.plugins
            .get(plugin)
            .map(PluginInstance::context)
            .ok_or_else(|| JsError::new(&format!("plugin '{plugin}' is not loaded")))
    }
}

impl Drop for JsHost {
    fn drop(&mut self) {
        let id = self.id;
        TRANSPORTS.with(|t| t.borrow_mut().remove(&id));
    }
}

/// One hop through the embedder's callback of host `id`.
fn js_transport(id: u32, req: &TransportRequest) -> Result<HttpResponse, String> {
    let f = TRANSPORTS
        .with(|t| t.borrow().get(&id).cloned())
        .ok_or_else(|| "the HTTP transport was removed".to_string())?;
    let request = json!({
        "method": req.method,
        "url": req.url,
        "headers": req.headers,
        "body": req.body,
        "max_body": req.max_body,
    });
    let answer = f
        .call1(&JsValue::NULL, &JsValue::from_str(&request.to_string()))
        .map_err(|e| {
            let text = e
                .as_string()
                .or_else(|| js_sys::Error::from(e).message().as_string())
                .unwrap_or_else(|| "transport failed".to_string());
            format!("HTTP transport: {text}")
        })?;
    let text = answer
        .as_string()
        .ok_or_else(|| "HTTP transport must return JSON text".to_string())?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("HTTP transport answer is not JSON: {e}"))?;
    let status = v
        .get("status")
        .and_then(Value::as_u64)
        .and_then(|s| u16::try_from(s).ok())
        .ok_or_else(|| "HTTP transport answer has no status".to_string())?;
    let headers = v
        .get("headers")
        .and_then(Value::as_array)
        .map(|hs| {
            hs.iter()
                .filter_map(|h| {
                    let pair = h.as_array()?;
                    Some((
                        pair.first()?.as_str()?.to_ascii_lowercase(),
                        pair.get(1)?.as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let body = v
        .get("body")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}
