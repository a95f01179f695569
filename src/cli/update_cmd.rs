//! `plugin update <ID> | --all`: fetch installed plugins again from where `.install.json`
//! says they came from (a git repository or a local directory), with tark's texts.
//!
//! The plugin's `data/`, `.disabled` and `.install.json` are kept; the source must declare
//! the same id; any failure leaves the installed plugin exactly as it was (the registry
//! stages and swaps). A local source recorded as a relative path (as tark writes it) is
//! resolved against the current directory and then recorded as absolute.

use std::path::PathBuf;

use anyhow::{anyhow, bail};
use serde_json::{json, Value};

use tark_wasmer::manifest::{PluginManifest, MANIFEST_FILE};
use tark_wasmer::registry::{InstallSource, PluginRegistry, RegistryError};

use super::git::{self, TempDir};
use super::output::{printable, Out, Style};
use super::Global;

/// `url`, `url (branch)` or `url (branch:path)` as tark prints the source.
pub fn describe(source: &InstallSource) -> String {
    if !source.is_git {
        return printable(&source.url);
    }
    match (&source.branch, &source.path) {
        (Some(b), Some(p)) => format!(
            "{} ({}:{})",
            printable(&source.url),
            printable(b),
            printable(p)
        ),
        (Some(b), None) => format!("{} ({})", printable(&source.url), printable(b)),
        (None, Some(p)) => format!("{} (:{})", printable(&source.url), printable(p)),
        (None, None) => printable(&source.url),
    }
}

/// A fetched source directory and the temporary directories that hold it.
struct Fetched {
    dir: PathBuf,
    _keep: Vec<TempDir>,
    _checkout: Option<git::Checkout>,
}

fn fetch(source: &InstallSource) -> anyhow::Result<Fetched> {
    if !source.is_git {
        let dir = source
            .source_path()
            .ok_or_else(|| anyhow!("Install metadata names no local path"))?;
        if !dir.is_dir() {
            return Err(RegistryError::LocalSourceMissing { path: dir }.into());
        }
        return Ok(Fetched {
            dir,
            _keep: Vec::new(),
            _checkout: None,
        });
    }
    let checkout = git::clone(&source.url, source.branch.as_deref())?;
    let src = checkout
        .plugin_dir(source.path.as_deref())
        .map_err(|_| anyhow!("Subdirectory not found in repository"))?;
    let manifest_path = src.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Err(RegistryError::NoManifest { dir: src }.into());
    }
    let manifest = PluginManifest::load(&manifest_path)?;
    let wasm = manifest.wasm_path(&src)?;
    if !wasm.is_file() {
        return Err(RegistryError::WasmNotBuilt { path: wasm }.into());
    }
    let (tmp, stage) = git::stage_declared_files(&src, &manifest)?;
    Ok(Fetched {
        dir: stage,
        _keep: vec![tmp],
        _checkout: Some(checkout),
    })
}

/// Update one plugin; the version before and after.
fn update_one(
    global: &Global,
    registry: &mut PluginRegistry,
    id: &str,
) -> anyhow::Result<(String, String)> {
    let plugin = registry
        .get(id)
        .ok_or_else(|| RegistryError::NotFound { id: id.to_string() })?;
    let before = plugin.manifest.version().to_string();
    let source = plugin.install_source()?.clone();
    let fetched = fetch(&source)?;
    if let Ok(m) = PluginManifest::load_quiet(&fetched.dir.join(MANIFEST_FILE)) {
        super::plugin_cmd::refuse_compile_bomb(&m.wasm_path(&fetched.dir)?)?;
    }
    super::check_cmd::gate(
        global,
        &fetched.dir,
        &fetched.dir.to_string_lossy(),
        super::check_cmd::Gate::Update,
    )?;
    let updated = registry.update_from_dir(id, &fetched.dir)?;
    let after = updated.manifest.version().to_string();
    // A relative local path (tark's record) becomes absolute, so the next update works
    // from any directory; everything else, including installed_at, stays as it was.
    if !source.is_git && !std::path::Path::new(&source.url).is_absolute() {
        if let Some(abs) = source
            .source_path()
            .and_then(|p| p.to_str().map(str::to_string))
        {
            if let Some(p) = registry.get_mut(id) {
                p.set_install_source(InstallSource {
                    url: abs,
                    ..source.clone()
                })?;
            }
        }
    }
    Ok((before, after))
}

/// `plugin update <ID> | --all [--json]`.
pub fn update(
    global: &Global,
    id: Option<&str>,
    all: bool,
    as_json: bool,
    out: &mut Out,
) -> anyhow::Result<()> {
    out.set_quiet(as_json);
    let mut registry = PluginRegistry::new(&global.plugins_dir);
    registry.scan()?;
    let ids: Vec<String> = match (id, all) {
        (Some(_), true) => bail!("Give a plugin ID or --all, not both"),
        (None, false) => {
            bail!("Specify a plugin ID or use --all\nExample: tark-wasmer plugin update my-plugin")
        }
        (Some(id), false) => {
            out.heading("=== Updating Plugin ===")?;
            out.blank()?;
            let plugin = registry
                .get(id)
                .ok_or_else(|| RegistryError::NotFound { id: id.to_string() })?;
            if let Some(target) = tark_wasmer::registry::link_target(&plugin.dir) {
                bail!(
                    "Plugin '{}' is linked to {} (plugin add --link): there is nothing to fetch, the next load runs its latest build",
                    printable(id),
                    target.display()
                );
            }
            let source = plugin.install_source()?;
            out.line(format!(
                "Updating {} from {}",
                out.paint(printable(id), Style::Green),
                describe(source)
            ))?;
            out.flush()?;
            let (before, after) = update_one(global, &mut registry, id)?;
            super::call_cmd::precompile(global, id);
            if as_json {
                out.json(&json!({
                    "updated": [{"id": id, "version_before": before, "version": after}],
                    "skipped": [],
                    "failed": [],
                }))?;
            } else {
                out.line(format!(
                    "✅ Updated plugin: {}",
                    out.paint(printable(id), Style::Green)
                ))?;
            }
            return Ok(());
        }
        (None, true) => registry.list().iter().map(|p| p.id.clone()).collect(),
    };
    out.heading("=== Updating Plugins ===")?;
    out.blank()?;
    if ids.is_empty() {
        out.line("No plugins installed.")?;
        if as_json {
            out.json(&json!({"updated": [], "skipped": [], "failed": []}))?;
        }
        return Ok(());
    }
    let (mut updated, mut skipped, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for id in ids {
        if registry
            .get(&id)
            .and_then(|p| tark_wasmer::registry::link_target(&p.dir))
            .is_some()
        {
            skipped.push(json!({"id": id, "reason": "linked (plugin add --link)"}));
            continue;
        }
        let source = registry.get(&id).and_then(|p| p.install.clone());
        let Some(source) = source else {
            skipped.push(json!({"id": id, "reason": format!("no readable {}", tark_wasmer::registry::INSTALL_FILE)}));
            continue;
        };
        out.line(format!(
            "Updating {} from {}",
            out.paint(printable(&id), Style::Green),
            describe(&source)
        ))?;
        out.flush()?;
        match update_one(global, &mut registry, &id) {
            Ok((before, after)) => {
                super::call_cmd::precompile(global, &id);
                out.line(format!(
                    "✅ Updated {}",
                    out.paint(printable(&id), Style::Green)
                ))?;
                updated.push(json!({"id": id, "version_before": before, "version": after}));
            }
            Err(e) => {
                log::warn!("Failed to update plugin {id}: {e:#}");
                let mark = out.paint("✗", Style::Red);
                out.line(format!(
                    "{mark} Failed to update {}: {}",
                    printable(&id),
                    printable(&format!("{e:#}"))
                ))?;
                failed.push(json!({"id": id, "error": format!("{e:#}")}));
            }
        }
    }
    out.blank()?;
    out.line(format!(
        "Done. updated={}, skipped={}, failed={}",
        updated.len(),
        skipped.len(),
        failed.len()
    ))?;
    let n_failed = failed.len();
    if as_json {
        out.json(&Value::Object(
            [
                ("updated".to_string(), Value::Array(updated)),
                ("skipped".to_string(), Value::Array(skipped)),
                ("failed".to_string(), Value::Array(failed)),
            ]
            .into_iter()
            .collect(),
        ))?;
    }
    if n_failed > 0 {
        out.flush()?;
        bail!("{n_failed} plugin(s) failed to update (see the messages above)");
    }
    Ok(())
}
