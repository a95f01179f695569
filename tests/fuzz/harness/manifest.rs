//! `plugin.toml` parsing with fuzzed text. Properties: parsing never panics; a manifest
//! it accepts has a valid plugin id, passes validation again, names a module that stays
//! inside the plugin directory, answers every query (warnings, capability summary,
//! activation, tark's capability predicates), and survives a TOML round trip unchanged.

use std::cell::RefCell;
use std::path::{Component, Path, PathBuf};

use tark_wasmer::manifest::is_valid_plugin_name;
use tark_wasmer::PluginManifest;

use super::Outcome;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

/// `path` with `.` and `..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Parse `text` as `<plugin dir>/plugin.toml` and check what was accepted.
fn check(dir: &Path, text: &str) -> Outcome {
    let path = dir.join("plugin.toml");
    let Ok(m) = PluginManifest::from_str_at(text, &path) else {
        return Outcome {
            well_formed: false,
            refused: true,
        };
    };
    assert!(is_valid_plugin_name(m.id()), "accepted id {:?}", m.id());
    if let Err(e) = m.validate() {
        panic!("accepted, then invalid: {e}");
    }
    let wasm = m
        .wasm_path(dir)
        .unwrap_or_else(|e| panic!("accepted, then the module path fails: {e}"));
    assert!(
        normalize(&wasm).starts_with(dir) && normalize(&wasm) != dir,
        "module {:?} resolves to {} outside {}",
        m.plugin.wasm,
        wasm.display(),
        dir.display()
    );
    let _ = (m.name(), m.version(), m.plugin_type(), m.warnings());
    let _ = m.capabilities.summary_lines();
    let _ = m.activation.should_activate_for("onStartup");
    for host in ["127.0.0.1", "example.com", "EXAMPLE.com.", ""] {
        let _ = m.capabilities.is_http_allowed(host);
    }
    for var in ["HOME", "", "GEMINI_API_KEY"] {
        let _ = m.capabilities.is_env_allowed(var);
    }
    // What the host accepted, written back, reads back the same.
    if let Ok(again) = toml::to_string(&m) {
        match PluginManifest::from_str_at(&again, &path) {
            // Compared as text: `nan` in `[config]` is never equal to itself.
            Ok(m2) => assert_eq!(
                toml::to_string(&m2).ok().as_deref(),
                Some(again.as_str()),
                "round trip changed the manifest"
            ),
            Err(e) => panic!("round trip refused: {e}\n{again}"),
        }
    }
    Outcome {
        well_formed: true,
        refused: false,
    }
}

/// One input: the manifest text (invalid UTF-8 replaced).
pub fn run(data: &[u8]) -> Outcome {
    let text = String::from_utf8_lossy(data);
    FIXTURE.with(|fx| {
        let mut fx = fx.borrow_mut();
        let fx = fx.get_or_insert_with(|| {
            let tmp = tempfile::Builder::new()
                .prefix("tark-fuzz-")
                .tempdir()
                .expect("tempdir");
            let dir = tmp.path().join("plugins").join("p");
            std::fs::create_dir_all(&dir).expect("plugin dir");
            std::fs::write(dir.join("plugin.wasm"), b"\0asm\x01\0\0\0").expect("wasm");
            let dir = std::fs::canonicalize(&dir).expect("canonical");
            Fixture { _tmp: tmp, dir }
        });
        check(&fx.dir, &text)
    })
}
