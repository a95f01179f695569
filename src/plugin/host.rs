//! [`PluginHost`]: loads installed plugins and hands out typed handles. Names follow
//! tark's `PluginHost` (new, load, get, get_mut, unload, load_all).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::cache::{ArtifactCache, CacheConfig, CacheOutcome};
use crate::engine::{Compiler, EngineError, EngineSettings, WasmEngine};
use crate::error::{Error, Result};
use crate::host::{HostConfig, HostServices, PluginContext};
use crate::limits::Limits;
use crate::plugin::PluginInstance;
use crate::registry::{resolve_plugins_dir, InstalledPlugin, PluginRegistry};

/// How to build a [`PluginHost`].
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// Plugins directory (default: `--plugins-dir`, `TARK_PLUGINS_DIR`, then tark's).
    pub plugins_dir: Option<PathBuf>,
    /// Compiler (default: `TARK_WASMER_COMPILER`, then [`Compiler::default`]).
    pub compiler: Option<Compiler>,
    /// Host services settings (limits, policy, extra CA certificates). Its `limits`
    /// apply to every plugin without an override, including the guest-side ones: CPU
    /// budget per call, wall-clock limit per call and memory cap (see [`Limits`]).
    pub config: HostConfig,
    /// Per-plugin limit overrides, by plugin id (the whole [`Limits`] replaces the
    /// host's). A plugin whose `cpu_metering` differs from the host's is compiled by the
    /// engine for that setting. The plugin's own `[limits]` in `plugin.toml` then apply on
    /// top, capped at that `Limits::plugin_max` ([`Limits::for_plugin`]).
    pub plugin_limits: HashMap<String, Limits>,
    /// On-disk cache of compiled artifacts (default: on, in `TARK_WASMER_CACHE_DIR` or
    /// `<user cache dir>/tark-wasmer/artifacts`, 512 MiB).
    pub cache: CacheConfig,
}

/// The compiler named by `TARK_WASMER_COMPILER`, if set.
pub fn compiler_from_env() -> std::result::Result<Option<Compiler>, EngineError> {
    match std::env::var("TARK_WASMER_COMPILER") {
        Ok(v) if !v.trim().is_empty() => v.parse().map(Some),
        _ => Ok(None),
    }
}

/// Loads plugins from the registry and keeps them ready to call.
pub struct PluginHost {
    registry: PluginRegistry,
    services: Arc<HostServices>,
    engine: Arc<WasmEngine>,
    plugin_limits: HashMap<String, Limits>,
    plugins: HashMap<String, PluginInstance>,
    cache: Option<Arc<ArtifactCache>>,
    outcomes: HashMap<String, CacheOutcome>,
}

impl PluginHost {
    /// A host on tark's plugins directory with default settings.
    pub fn new() -> Result<Self> {
        Self::with_options(HostOptions::default())
    }

    /// A host with explicit options.
    pub fn with_options(options: HostOptions) -> Result<Self> {
        let compiler = match options.compiler {
            Some(c) => c,
            None => compiler_from_env()?.unwrap_or_default(),
        };
        let engine = WasmEngine::shared_with(
            compiler,
            EngineSettings::from_limits(&options.config.limits),
        )?;
        let plugins_dir = resolve_plugins_dir(options.plugins_dir);
        let mut registry = PluginRegistry::new(plugins_dir);
        registry.scan()?;
        let services = HostServices::new(options.config)?;
        let cache = options
            .cache
            .open()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?
            .map(Arc::new);
        Ok(PluginHost {
            registry,
            services,
            engine,
            plugin_limits: options.plugin_limits,
            plugins: HashMap::new(),
            cache,
            outcomes: HashMap::new(),
        })
    }

    /// The registry this host loads from.
    pub fn registry(&self) -> &PluginRegistry {
        &self.registry
    }

    /// The compiler in use.
    pub fn compiler(&self) -> Compiler {
        self.engine.compiler()
    }

    /// The shared host services.
    pub fn services(&self) -> &Arc<HostServices> {
        &self.services
    }

    /// Load an installed plugin (compiling it once), with its default data directory.
    pub fn load(&mut self, plugin: &InstalledPlugin) -> Result<()> {
        let data_dir = plugin.data_dir();
        self.load_with_data_dir(plugin, &data_dir)
    }

    /// Load an installed plugin by id.
    pub fn load_id(&mut self, id: &str) -> Result<()> {
        let plugin = self
            .registry
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(id.to_string()))?;
        self.load(&plugin)
    }

    /// Load an installed plugin with another data directory (tark's project-local
    /// `<workspace>/.tark/plugins/<id>/data`).
    pub fn load_with_data_dir(&mut self, plugin: &InstalledPlugin, data_dir: &Path) -> Result<()> {
        let wasm = plugin.checked_wasm_path()?;
        let limits = self.limits_for(plugin, true);
        let engine = self.engine_for(&limits)?;
        let (compiled, outcome) =
            engine.compile_file_cached(&plugin.id, &wasm, self.cache.as_deref())?;
        self.outcomes.insert(plugin.id.clone(), outcome);
        let ctx = PluginContext::new(
            self.services.clone(),
            &plugin.id,
            &plugin.manifest.capabilities,
            data_dir,
            limits,
        )?;
        let instance = PluginInstance::new(plugin.clone(), engine, compiled, ctx)?;
        self.plugins.insert(plugin.id.clone(), instance);
        Ok(())
    }

    /// Compile an installed plugin into the artifact cache without loading it, with the
    /// engine [`PluginHost::load`] would pick (compiler and the plugin's code-affecting
    /// limits). `plugin add` and `plugin update` call this, so the first `call` after
    /// them loads a cached artifact instead of compiling. Says where the module came
    /// from ([`CacheOutcome::DiskHit`] when it was already cached).
    pub fn precompile(&self, plugin: &InstalledPlugin) -> Result<CacheOutcome> {
        let wasm = plugin.checked_wasm_path()?;
        let limits = self.limits_for(plugin, false);
        let engine = self.engine_for(&limits)?;
        let (_, outcome) = engine.compile_file_cached(&plugin.id, &wasm, self.cache.as_deref())?;
        Ok(outcome)
    }

    /// The limits `plugin` runs under: the host's (or its override), with the plugin's
    /// own `[limits]` applied on top, capped ([`Limits::for_plugin`]); `warn` logs what
    /// was capped.
    fn limits_for(&self, plugin: &InstalledPlugin, warn: bool) -> Limits {
        let base = self
            .plugin_limits
            .get(&plugin.id)
            .unwrap_or(&self.services.config.limits);
        // The manifest was validated when it was read, so `request` cannot fail here.
        let request = plugin.manifest.limits.request().unwrap_or_default();
        let (limits, capped) = base.for_plugin(&plugin.id, &request);
        if warn {
            for note in capped {
                log::warn!("{note}");
            }
        }
        limits
    }

    /// The engine for a plugin with `limits`: the host's, or the shared engine of the
    /// same compiler with the plugin's code-affecting settings.
    fn engine_for(&self, limits: &Limits) -> Result<Arc<WasmEngine>> {
        let settings = EngineSettings::from_limits(limits);
        if settings == self.engine.settings() {
            return Ok(self.engine.clone());
        }
        Ok(WasmEngine::shared_with(self.engine.compiler(), settings)?)
    }

    /// The on-disk artifact cache in use (`None` when disabled).
    pub fn artifact_cache(&self) -> Option<&Arc<ArtifactCache>> {
        self.cache.as_ref()
    }

    /// Where the module of the plugin loaded last under `id` came from (memory, disk
    /// cache, compiler).
    pub fn cache_outcome(&self, id: &str) -> Option<&CacheOutcome> {
        self.outcomes.get(id)
    }

    /// A loaded plugin.
    pub fn get(&self, id: &str) -> Option<&PluginInstance> {
        self.plugins.get(id)
    }

    /// A loaded plugin, for calls.
    pub fn get_mut(&mut self, id: &str) -> Option<&mut PluginInstance> {
        self.plugins.get_mut(id)
    }

    /// Drop a loaded plugin (its instance, and with it its WebSocket connections).
    pub fn unload(&mut self, id: &str) -> bool {
        self.plugins.remove(id).is_some()
    }

    /// Ids of the loaded plugins, sorted.
    pub fn loaded(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.plugins.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Load every enabled plugin; failures are logged and skipped, as in tark.
    /// Returns the failures.
    pub fn load_all(&mut self) -> Vec<(String, Error)> {
        let plugins: Vec<InstalledPlugin> = self
            .registry
            .list()
            .into_iter()
            .filter(|p| p.enabled)
            .cloned()
            .collect();
        let mut failures = Vec::new();
        for p in plugins {
            if let Err(e) = self.load(&p) {
                log::warn!("Failed to load plugin {}: {e}", p.id);
                failures.push((p.id.clone(), e));
            }
        }
        failures
    }

    /// Lazy activation: load every enabled plugin whose `[activation] events` match
    /// `event` (see [`crate::manifest::ActivationConfig::should_activate_for`]: exact
    /// names, `prefix*` wildcards, `onStartup` matching everything, and no events at all
    /// matching everything, since tark loads such plugins eagerly) and that is not loaded
    /// yet. Failures are logged and skipped, as in [`Self::load_all`], and returned.
    pub fn load_for_event(&mut self, event: &str) -> Vec<(String, Error)> {
        let plugins: Vec<InstalledPlugin> = self
            .registry
            .enabled()
            .filter(|p| p.should_activate_for(event) && !self.plugins.contains_key(&p.id))
            .cloned()
            .collect();
        let mut failures = Vec::new();
        for p in plugins {
            log::debug!("Activating plugin {} for {event}", p.id);
            if let Err(e) = self.load(&p) {
                log::warn!("Failed to load plugin {} for {event}: {e}", p.id);
                failures.push((p.id.clone(), e));
            }
        }
        failures
    }

    /// [`Self::load_for_event`], answering which loaded plugins are active for `event`
    /// (sorted ids: those just loaded and those loaded before that match it).
    pub fn activate(&mut self, event: &str) -> Vec<String> {
        self.load_for_event(event);
        let mut ids: Vec<String> = self
            .plugins
            .values()
            .filter(|p| p.installed().should_activate_for(event))
            .map(|p| p.id().to_string())
            .collect();
        ids.sort();
        ids
    }
}
