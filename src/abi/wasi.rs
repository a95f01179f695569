//! WASI preview1 for plugins, through wasmer-wasix: no arguments, no environment, no
//! preopened directories, no networking, real clocks and randomness, and stdout/stderr
//! captured line by line into the log with the plugin id.

use std::sync::{Arc, OnceLock};

use wasmer::{Imports, Instance, Module, Store};
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::runtime::PluggableRuntime;
use wasmer_wasix::virtual_fs::{DualWriteFile, NullFile};
use wasmer_wasix::{WasiEnv, WasiFunctionEnv};

use crate::host::PluginContext;

/// Longest line of guest output kept before it is flushed to the log as is.
const MAX_LINE: usize = 4096;

/// What [`tokio_runtime`]'s `enter` returns: held for the duration of a WASI call.
pub type RuntimeGuard = tokio::runtime::EnterGuard<'static>;

/// The process-wide tokio runtime that wasmer-wasix's task manager needs.
pub fn tokio_runtime() -> Result<&'static tokio::runtime::Runtime, WasiSetupError> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("tark-wasmer-wasi")
        .enable_all()
        .build()
        .map_err(|e| WasiSetupError(format!("cannot start the WASI runtime: {e}")))?;
    Ok(RT.get_or_init(|| rt))
}

/// Setting up WASI for an instance failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("WASI setup failed: {0}")]
pub struct WasiSetupError(pub String);

/// One shared wasix runtime per wasmer engine.
fn wasix_runtime(engine: &wasmer::Engine) -> Result<Arc<PluggableRuntime>, WasiSetupError> {
    type Runtimes = std::sync::Mutex<Vec<(wasmer::Engine, Arc<PluggableRuntime>)>>;
    static RUNTIMES: OnceLock<Runtimes> = OnceLock::new();
    let list = RUNTIMES.get_or_init(Default::default);
    let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, rt)) = list.iter().find(|(e, _)| e.id() == engine.id()) {
        return Ok(rt.clone());
    }
    let tokio = tokio_runtime()?;
    let tm = TokioTaskManager::new(tokio.handle().clone());
    let mut rt = PluggableRuntime::new(Arc::new(tm));
    rt.set_engine(engine.clone());
    let rt = Arc::new(rt);
    list.push((engine.clone(), rt.clone()));
    Ok(rt)
}

/// Does the module import anything from WASI?
pub fn imports_wasi(module: &Module) -> bool {
    module
        .imports()
        .any(|i| i.module().starts_with("wasi_snapshot_preview1") || i.module() == "wasi_unstable")
}

/// A line-buffering sink that sends guest output to the log.
fn log_sink(ctx: Arc<PluginContext>, level: log::Level) -> DualWriteFile {
    let mut line: Vec<u8> = Vec::new();
    DualWriteFile::new(Box::new(NullFile::default()), move |bytes: &[u8]| {
        for &b in bytes {
            if b == b'\n' || line.len() >= MAX_LINE {
                if b != b'\n' {
                    line.push(b);
                }
                let text = String::from_utf8_lossy(&line);
                ctx.log(level, text.trim_end_matches('\r'));
                line.clear();
            } else {
                line.push(b);
            }
        }
    })
}

/// WASI state of one instance.
pub struct WasiState {
    env: WasiFunctionEnv,
}

impl WasiState {
    /// Build the WASI environment and its imports for `module` in `store`.
    pub fn new(
        store: &mut Store,
        module: &Module,
        ctx: &Arc<PluginContext>,
    ) -> Result<(WasiState, Imports), WasiSetupError> {
        let runtime = wasix_runtime(store.engine())?;
        let _guard = tokio_runtime()?.enter();
        let env = WasiEnv::builder(ctx.plugin_id.clone())
            .runtime(runtime)
            .stdout(Box::new(log_sink(ctx.clone(), log::Level::Info)))
            .stderr(Box::new(log_sink(ctx.clone(), log::Level::Warn)))
            .stdin(Box::new(NullFile::default()))
            .finalize(store)
            .map_err(|e| WasiSetupError(e.to_string()))?;
        let imports = env
            .import_object_for_all_wasi_versions(store, module)
            .map_err(|e| WasiSetupError(e.to_string()))?;
        Ok((WasiState { env }, imports))
    }

    /// Bind WASI to the instance's exported memory (call once after instantiation).
    pub fn initialize(
        &mut self,
        store: &mut Store,
        instance: &Instance,
    ) -> Result<(), WasiSetupError> {
        let _guard = tokio_runtime()?.enter();
        self.env
            .initialize(store, instance.clone())
            .map_err(|e| WasiSetupError(e.to_string()))
    }
}
