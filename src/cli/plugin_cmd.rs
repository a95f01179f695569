//! `plugin add|list|info|remove|enable|disable`: tark's texts on tark's on-disk layout,
//! with aligned, sorted tables and `--json` forms for scripts.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};

use tark_wasmer::manifest::{PluginManifest, MANIFEST_FILE};
use tark_wasmer::registry::{InstallSource, InstalledPlugin, PluginRegistry, RegistryError};

use super::output::{first_chars, printable, printable_list, table, Cell, Out, Style};
use super::Global;

/// How many characters of the description `plugin list` shows (tark's cut-off).
const LIST_DESCRIPTION_CHARS: usize = 40;

fn scanned_registry(global: &Global) -> anyhow::Result<PluginRegistry> {
    let mut registry = PluginRegistry::new(&global.plugins_dir);
    registry.scan()?;
    Ok(registry)
}

/// Where `plugin add <arg>` reads from: `~` and `~/…` expanded (other `~…` forms are
/// refused: `~user` is not expanded by this host), and made absolute without resolving
/// symlinks, so the recorded path works from any directory.
pub fn resolve_local_source(arg: &Path) -> anyhow::Result<PathBuf> {
    let mut components = arg.components();
    let expanded = match components.next() {
        Some(Component::Normal(first)) if first == "~" => {
            let home = dirs::home_dir()
                .ok_or_else(|| anyhow!("Cannot expand '~': the home directory is unknown"))?;
            let rest = components.as_path();
            if rest.as_os_str().is_empty() {
                home
            } else {
                home.join(rest)
            }
        }
        Some(Component::Normal(first)) if first.as_encoded_bytes().starts_with(b"~") => {
            bail!(
                "Unsupported path '{}': only '~' and '~/...' are expanded; give the full path instead",
                arg.display()
            )
        }
        _ => arg.to_path_buf(),
    };
    std::path::absolute(&expanded)
        .with_context(|| format!("Failed to resolve {}", expanded.display()))
}

/// tark's test for a local source: starts with `/`, `./`, `../`, `~`, or exists.
fn looks_local(arg: &Path) -> bool {
    let bytes = arg.as_os_str().as_encoded_bytes();
    arg.is_absolute()
        || bytes.starts_with(b"./")
        || bytes.starts_with(b"../")
        || bytes.starts_with(b"~")
        || bytes == b"."
        || bytes == b".."
        || arg.exists()
}

/// `plugin add <PATH>`.
pub fn add(global: &Global, arg: &Path, out: &mut Out) -> anyhow::Result<()> {
    out.heading("=== Installing Plugin ===")?;
    out.blank()?;
    if !looks_local(arg) {
        bail!(
            "Path does not exist: {}\nInstalling from a git URL is not supported yet; pass a local plugin directory.",
            arg.display()
        );
    }
    let src = resolve_local_source(arg)?;
    out.line(format!("Source: {} (local)", src.display()))?;
    out.blank()?;
    if !src.exists() {
        bail!("Path does not exist: {}", src.display());
    }
    if !src.is_dir() {
        bail!(
            "Not a directory: {}\nPass the directory that holds {MANIFEST_FILE}.",
            src.display()
        );
    }
    let manifest_path = src.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Err(RegistryError::NoManifest { dir: src }.into());
    }
    let manifest = PluginManifest::load(&manifest_path)?;
    let id = manifest.id().to_string();
    out.line(format!(
        "Found plugin: {} v{}",
        out.paint(printable(&id), Style::Green),
        printable(manifest.version())
    ))?;
    out.line(format!("Type: {}", manifest.plugin_type()))?;
    out.line("Capabilities:")?;
    let caps = manifest.capabilities.summary_lines();
    if caps.is_empty() {
        out.line("  (none)")?;
    }
    for line in caps {
        out.line(line)?;
    }
    let wasm = manifest.wasm_path(&src)?;
    if !wasm.is_file() {
        return Err(RegistryError::WasmNotBuilt { path: wasm }.into());
    }
    out.blank()?;
    out.line("Installing...")?;
    let mut registry = scanned_registry(global)?;
    let source = InstallSource::local(&src)?;
    let installed = registry.install_from_dir(&src, source, false)?;
    out.blank()?;
    out.line(format!(
        "✅ Successfully installed plugin: {}",
        out.paint(printable(installed.id()), Style::Green)
    ))?;
    out.blank()?;
    out.line("The plugin will be loaded on next tark start.")?;
    Ok(())
}

/// `{id, version, type, enabled, description, dir, wasm}` of one plugin.
fn summary_json(p: &InstalledPlugin) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("id".into(), json!(p.id));
    m.insert("version".into(), json!(p.manifest.version()));
    m.insert("type".into(), json!(p.plugin_type().as_str()));
    m.insert("enabled".into(), json!(p.enabled));
    m.insert("description".into(), json!(p.manifest.plugin.description));
    m.insert("dir".into(), json!(p.dir.to_string_lossy()));
    m.insert("wasm".into(), json!(p.wasm_path().to_string_lossy()));
    m
}

/// `plugin list [--json]`.
pub fn list(global: &Global, as_json: bool, out: &mut Out) -> anyhow::Result<()> {
    let registry = scanned_registry(global)?;
    let plugins = registry.list();
    if as_json {
        let items: Vec<Value> = plugins
            .iter()
            .map(|p| Value::Object(summary_json(p)))
            .collect();
        out.line(serde_json::to_string_pretty(&items)?)?;
        return Ok(());
    }
    out.heading("=== Installed Plugins ===")?;
    out.blank()?;
    if plugins.is_empty() {
        out.line("No plugins installed.")?;
        out.blank()?;
        out.line("Install a plugin with:")?;
        out.line("  tark-wasmer plugin add <path>")?;
    } else {
        let rows: Vec<Vec<Cell>> = plugins
            .iter()
            .map(|p| {
                let status = if p.enabled {
                    Cell::styled("✓ enabled", Style::Green)
                } else {
                    Cell::styled("✗ disabled", Style::Red)
                };
                vec![
                    Cell::plain(&p.id),
                    Cell::plain(p.manifest.version()),
                    Cell::plain(p.plugin_type().as_str()),
                    status,
                    Cell::plain(first_chars(
                        &printable(&p.manifest.plugin.description),
                        LIST_DESCRIPTION_CHARS,
                    )),
                ]
            })
            .collect();
        let headers = ["ID", "Version", "Type", "Status", "Description"];
        for line in table(out, &headers, &rows) {
            out.line(line)?;
        }
    }
    let errors = registry.load_errors();
    if !errors.is_empty() {
        out.blank()?;
        let title = out.paint("Plugins that failed to load:", Style::Yellow);
        out.line(title)?;
        for e in errors {
            out.line(format!("  {}", printable(&e.dir.to_string_lossy())))?;
            for line in e.message.lines() {
                out.line(format!("    {}", printable(line)))?;
            }
        }
    }
    out.blank()?;
    out.line(format!(
        "Plugins directory: {}",
        global.plugins_dir.display()
    ))?;
    Ok(())
}

fn lookup<'r>(registry: &'r PluginRegistry, id: &str) -> anyhow::Result<&'r InstalledPlugin> {
    registry
        .get(id)
        .ok_or_else(|| RegistryError::NotFound { id: id.to_string() }.into())
}

/// `plugin info <ID> [--json]`.
pub fn info(global: &Global, id: &str, as_json: bool, out: &mut Out) -> anyhow::Result<()> {
    let registry = scanned_registry(global)?;
    let p = lookup(&registry, id)?;
    if as_json {
        out.line(serde_json::to_string_pretty(&info_json(p)?)?)?;
        return Ok(());
    }
    let m = &p.manifest;
    let meta = &m.plugin;
    let label = |out: &Out, text: &str| out.paint(text, Style::Bold);
    out.heading(&format!("=== Plugin: {} ===", printable(&p.id)))?;
    out.blank()?;
    out.line(format!(
        "{}    {}",
        label(out, "Name:"),
        printable(&meta.name)
    ))?;
    out.line(format!(
        "{}  {}",
        label(out, "Version:"),
        printable(&meta.version)
    ))?;
    out.line(format!("{}    {}", label(out, "Type:"), meta.plugin_type))?;
    let status = if p.enabled {
        out.paint("enabled", Style::Green)
    } else {
        out.paint("disabled", Style::Red)
    };
    out.line(format!("{}  {status}", label(out, "Status:")))?;
    for (name, gap, value) in [
        ("Description:", " ", &meta.description),
        ("Author:", "  ", &meta.author),
        ("Homepage:", " ", &meta.homepage),
        ("License:", " ", &meta.license),
    ] {
        if !value.is_empty() {
            out.line(format!("{}{gap}{}", label(out, name), printable(value)))?;
        }
    }
    out.blank()?;
    out.line(label(out, "Capabilities:"))?;
    let caps = &m.capabilities;
    let list_or_cross = |items: &[String]| {
        if items.is_empty() {
            "✗".to_string()
        } else {
            printable_list(items)
        }
    };
    out.line(format!(
        "  {} {}",
        label(out, "Storage:"),
        if caps.storage { "✓" } else { "✗" }
    ))?;
    out.line(format!(
        "  {}    {}",
        label(out, "HTTP:"),
        list_or_cross(&caps.http)
    ))?;
    out.line(format!(
        "  {}     {}",
        label(out, "Env:"),
        list_or_cross(&caps.env)
    ))?;
    out.line(format!(
        "  {}   {}",
        label(out, "Files:"),
        list_or_cross(&caps.fs_read)
    ))?;
    out.line(format!(
        "  {}   {}",
        label(out, "Shell:"),
        if caps.shell {
            "⚠️ yes (dangerous!)"
        } else {
            "✗"
        }
    ))?;
    out.blank()?;
    out.line(label(out, "Paths:"))?;
    out.line(format!(
        "  {} {}",
        label(out, "Install:"),
        printable(&p.dir.to_string_lossy())
    ))?;
    out.line(format!(
        "  {}    {}",
        label(out, "WASM:"),
        printable(&p.wasm_path().to_string_lossy())
    ))?;
    out.line(format!(
        "  {}    {}",
        label(out, "Data:"),
        printable(&p.data_dir().to_string_lossy())
    ))?;
    if let Some(install) = &p.install {
        let kind = if install.is_git { "git" } else { "local" };
        out.line(format!(
            "  {}  {} ({kind})",
            label(out, "Source:"),
            printable(&install.url)
        ))?;
    }
    Ok(())
}

/// Everything `info` knows as JSON: the list fields, the data directory, the install
/// record and the whole manifest (`plugin`, `capabilities`, `contributes`, `activation`,
/// `oauth`, `config`). An OAuth client secret (possibly expanded from the environment) is
/// redacted.
fn info_json(p: &InstalledPlugin) -> anyhow::Result<Value> {
    let mut m = summary_json(p);
    m.insert("data_dir".into(), json!(p.data_dir().to_string_lossy()));
    m.insert(
        "install".into(),
        match &p.install {
            Some(install) => serde_json::to_value(install)?,
            None => Value::Null,
        },
    );
    let mut manifest = p.manifest.clone();
    if let Some(oauth) = manifest.oauth.as_mut() {
        if oauth.client_secret.is_some() {
            oauth.client_secret = Some("<redacted>".into());
        }
    }
    match serde_json::to_value(&manifest)? {
        Value::Object(fields) => m.extend(fields),
        other => {
            m.insert("manifest".into(), other);
        }
    }
    Ok(Value::Object(m))
}

/// `plugin remove <ID>`.
pub fn remove(global: &Global, id: &str, out: &mut Out) -> anyhow::Result<()> {
    out.heading("=== Uninstalling Plugin ===")?;
    out.blank()?;
    let mut registry = scanned_registry(global)?;
    lookup(&registry, id)?;
    let removed = registry.remove(id)?;
    out.line(format!(
        "✅ Successfully uninstalled plugin: {}",
        out.paint(printable(removed.id()), Style::Green)
    ))?;
    Ok(())
}

/// `plugin enable <ID>`.
pub fn enable(global: &Global, id: &str, out: &mut Out) -> anyhow::Result<()> {
    let mut registry = scanned_registry(global)?;
    lookup(&registry, id)?;
    registry.enable(id)?;
    out.line(format!(
        "✅ Enabled plugin: {}",
        out.paint(printable(id), Style::Green)
    ))?;
    Ok(())
}

/// `plugin disable <ID>`.
pub fn disable(global: &Global, id: &str, out: &mut Out) -> anyhow::Result<()> {
    let mut registry = scanned_registry(global)?;
    lookup(&registry, id)?;
    registry.disable(id)?;
    out.line(format!(
        "✅ Disabled plugin: {}",
        out.paint(printable(id), Style::Yellow)
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tilde_forms() {
        let home = dirs::home_dir().expect("a home directory");
        assert_eq!(resolve_local_source(Path::new("~")).unwrap(), home);
        assert_eq!(
            resolve_local_source(Path::new("~/a/b")).unwrap(),
            home.join("a/b")
        );
        let e = resolve_local_source(Path::new("~bob/x")).unwrap_err();
        assert!(e.to_string().contains("Unsupported path '~bob/x'"), "{e}");
        let rel = resolve_local_source(Path::new("some/dir")).unwrap();
        assert!(rel.is_absolute());
        assert!(rel.ends_with("some/dir"));
    }

    #[test]
    fn local_detection_follows_tark() {
        for local in ["/x", "./x", "../x", "~", "~/x", "~x", "."] {
            assert!(looks_local(Path::new(local)), "{local}");
        }
        for remote in ["https://example.com/p.git", "git@host:p", "no-such-dir-xyz"] {
            assert!(!looks_local(Path::new(remote)), "{remote}");
        }
    }
}
