//! A temporary plugins directory with WAT plugins, and hosts on it.

use std::path::{Path, PathBuf};

use tark_wasmer::engine::Compiler;
use tark_wasmer::registry::{InstallSource, PluginRegistry};
use tark_wasmer::HostConfig;
use tark_wasmer::{HostOptions, PluginHost};

/// A temporary plugins directory plus the host settings.
pub struct Env {
    /// Keeps the temp dir alive.
    pub tmp: tempfile::TempDir,
    /// `<tmp>/plugins`.
    pub plugins_dir: PathBuf,
    /// Host settings (workspace root, limits).
    pub config: HostConfig,
}

impl Env {
    pub fn new() -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("tark-fuzz-")
            .tempdir()
            .expect("tempdir");
        let plugins_dir = tmp.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
        let mut config = HostConfig::default();
        config.policy.workspace_root = tmp.path().to_path_buf();
        config.policy.home_dir = Some(tmp.path().join("home"));
        Env {
            tmp,
            plugins_dir,
            config,
        }
    }

    /// Write and install a plugin whose `plugin.wasm` is assembled from `wat`.
    pub fn install_wat(&self, id: &str, ty: &str, capabilities: &str, wat: &str) {
        let src = self.tmp.path().join("src").join(id);
        write_wat_plugin(&src, id, ty, capabilities, wat);
        let mut reg = PluginRegistry::new(&self.plugins_dir);
        reg.scan().expect("scan");
        let source = InstallSource::local(&src).expect("install source");
        reg.install_from_dir(&src, source, false).expect("install");
    }

    /// A host on this plugins directory with `compiler`, every plugin loaded.
    pub fn host(&self, compiler: Compiler) -> PluginHost {
        let mut host = PluginHost::with_options(HostOptions {
            plugins_dir: Some(self.plugins_dir.clone()),
            compiler: Some(compiler),
            config: self.config.clone(),
            cache: tark_wasmer::cache::CacheConfig {
                dir: Some(self.tmp.path().join("cache")),
                ..Default::default()
            },
            ..Default::default()
        })
        .expect("host");
        let failures = host.load_all();
        assert!(failures.is_empty(), "plugins failed to load: {failures:?}");
        host
    }
}

fn write_wat_plugin(dir: &Path, id: &str, ty: &str, capabilities: &str, wat: &str) {
    std::fs::create_dir_all(dir).expect("create plugin dir");
    let manifest = format!(
        "[plugin]\nname = \"{id}\"\nversion = \"0.1.0\"\ntype = \"{ty}\"\nwasm = \"plugin.wasm\"\n\n[capabilities]\n{capabilities}\n"
    );
    std::fs::write(dir.join("plugin.toml"), manifest).expect("write manifest");
    let wasm = wat::parse_str(wat).expect("valid WAT");
    std::fs::write(dir.join("plugin.wasm"), wasm).expect("write wasm");
}
