//! Test fixtures: the example plugins (built from source once per test run), temporary
//! plugin directories, and hosts wired to them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use tark_wasmer::engine::Compiler;
use tark_wasmer::registry::{InstallSource, PluginRegistry};
use tark_wasmer::HostConfig;
use tark_wasmer::{HostOptions, PluginHost};

/// Repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Directory of an example plugin crate (holds plugin.toml and, once built, plugin.wasm).
pub fn example_plugin_dir(name: &str) -> PathBuf {
    repo_root().join("tests/plugins").join(name)
}

/// Build every example plugin from source (once per test process; the build script is
/// a fast no-op when they are up to date, and cargo's lock serialises processes).
pub fn ensure_plugins_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let script = repo_root().join("scripts/build-plugins.sh");
        let out = Command::new("bash")
            .arg(&script)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed:\n{}\n{}",
                script.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("example plugins could not be built: {e}");
    }
}

/// Write a plugin directory with `plugin.toml` and `plugin.wasm` assembled from WAT.
pub fn write_wat_plugin(dir: &Path, id: &str, ty: &str, capabilities: &str, wat: &str) {
    std::fs::create_dir_all(dir).expect("create plugin dir");
    let manifest = format!(
        "[plugin]\nname = \"{id}\"\nversion = \"0.1.0\"\ntype = \"{ty}\"\nwasm = \"plugin.wasm\"\n\n[capabilities]\n{capabilities}\n"
    );
    std::fs::write(dir.join("plugin.toml"), manifest).expect("write manifest");
    let wasm = wat::parse_str(wat).expect("valid WAT");
    std::fs::write(dir.join("plugin.wasm"), wasm).expect("write wasm");
}

/// A temporary plugins directory plus the host settings tests use.
pub struct TestEnv {
    /// Keeps the temp dir alive.
    pub tmp: tempfile::TempDir,
    /// `<tmp>/plugins`.
    pub plugins_dir: PathBuf,
    /// Host settings (extra CA, workspace root).
    pub config: HostConfig,
}

impl TestEnv {
    /// An empty plugins directory.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let plugins_dir = tmp.path().join("plugins");
        std::fs::create_dir_all(&plugins_dir).expect("plugins dir");
        let mut config = HostConfig::default();
        config.policy.workspace_root = tmp.path().to_path_buf();
        config.policy.home_dir = Some(tmp.path().join("home"));
        TestEnv {
            tmp,
            plugins_dir,
            config,
        }
    }

    /// Install a plugin directory into the plugins directory.
    pub fn install(&self, src: &Path) {
        let mut reg = PluginRegistry::new(&self.plugins_dir);
        reg.scan().expect("scan");
        let source = InstallSource::local(src).expect("install source");
        reg.install_from_dir(src, source, false).expect("install");
    }

    /// Install one of the example plugins (building them first).
    pub fn install_example(&self, name: &str) {
        ensure_plugins_built();
        self.install(&example_plugin_dir(name));
    }

    /// Install a WAT plugin.
    pub fn install_wat(&self, id: &str, ty: &str, capabilities: &str, wat: &str) {
        let src = self.tmp.path().join("src").join(id);
        write_wat_plugin(&src, id, ty, capabilities, wat);
        self.install(&src);
    }

    /// A host on this plugins directory with `compiler`, every plugin loaded.
    pub fn host(&self, compiler: Compiler) -> PluginHost {
        let mut host = PluginHost::with_options(HostOptions {
            plugins_dir: Some(self.plugins_dir.clone()),
            compiler: Some(compiler),
            config: self.config.clone(),
            // Each test environment has its own artifact cache (never the user's).
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

/// Both compilers (every test runs on each).
pub fn compilers() -> Vec<Compiler> {
    Compiler::available()
}

/// The smallest legacy module `plugin add` accepts for plugin type `ty` (its install gate
/// runs `plugin check`): memory, `alloc` and the exports the function table marks required
/// (each returning 0). Read from the table, so it follows it.
pub fn stub_wasm(ty: &str) -> Vec<u8> {
    use tark_wasmer::plugin::functions::{legacy_exports, Need};
    let ty: tark_wasmer::PluginType = ty.parse().expect("plugin type");
    let mut wat = String::from(
        r#"(module (memory (export "memory") 1) (func (export "alloc") (param i32) (result i32) (i32.const 0))"#,
    );
    for l in legacy_exports(ty).filter(|l| l.need == Need::Required) {
        let params = "(param i32) ".repeat(l.convention.core_signature().params().len());
        wat.push_str(&format!(
            r#" (func (export "{}") {params}(result i32) (i32.const 0))"#,
            l.name
        ));
    }
    wat.push(')');
    wat::parse_str(&wat).expect("valid WAT")
}
