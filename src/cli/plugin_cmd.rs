//! `plugin add|list|info|remove|enable|disable`: tark's texts on tark's on-disk layout,
//! with aligned, sorted tables and `--json` forms for scripts.

use std::path::{Component, Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};
use sha2::Digest;

use tark_wasmer::engine::WasmEngine;
use tark_wasmer::inspect::ModuleInfo;
use tark_wasmer::manifest::{PluginManifest, MANIFEST_FILE};
use tark_wasmer::registry::{InstallSource, InstalledPlugin, PluginRegistry, RegistryError};
use tark_wasmer::AbiKind;

use super::output::{printable, printable_list, table, tsv, Cell, Out, Style};
use super::Global;

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

/// What `plugin add` was asked for.
#[derive(Debug, Clone, Default)]
pub struct AddRequest {
    /// `<URL|PATH>`, possibly with `#ref`.
    pub source: String,
    /// `--branch`.
    pub branch: Option<String>,
    /// `--path`.
    pub path: Option<String>,
    /// `--yes`: do not ask.
    pub yes: bool,
    /// `--link`: install a local directory by reference.
    pub link: bool,
    /// `--json`.
    pub json: bool,
}

/// Where `plugin add` reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AddSource {
    /// A directory copied as it is (tark: `--path` joined, branch ignored).
    Local(PathBuf),
    /// A git repository: `url` to clone, `recorded` as written to `.install.json`.
    Git {
        url: String,
        recorded: String,
        reference: Option<String>,
    },
}

/// Decide between a local directory and a git repository (tark's rule, plus `URL#ref`):
///
/// - an existing path, or one starting with `/`, `./`, `../` or `~`, is local; with
///   `--branch` or `#ref` it is cloned as a git repository instead (git clones local
///   repositories), recorded by its absolute path;
/// - anything else is a git URL, recorded as given.
fn classify(req: &AddRequest) -> anyhow::Result<AddSource> {
    let whole = Path::new(&req.source);
    let (base, url_ref) = if whole.exists() {
        (req.source.as_str(), None)
    } else {
        super::git::split_ref(&req.source)
    };
    let reference = super::git::resolve_ref(url_ref, req.branch.as_deref())?;
    if looks_local(Path::new(base)) {
        let dir = resolve_local_source(Path::new(base))?;
        return Ok(match reference {
            None => AddSource::Local(dir),
            Some(r) => {
                let text = dir
                    .to_str()
                    .ok_or_else(|| RegistryError::NonUtf8Path { path: dir.clone() })?
                    .to_string();
                AddSource::Git {
                    url: text.clone(),
                    recorded: text,
                    reference: Some(r),
                }
            }
        });
    }
    super::git::transport_of(base)?;
    Ok(AddSource::Git {
        url: base.to_string(),
        recorded: base.to_string(),
        reference,
    })
}

/// Ask on the terminal; `true` without asking when stdin is not a terminal (scripts, CI:
/// tark never asks, so a pipeline that installs plugins keeps working).
fn confirm(question: &str, context: &[String]) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    let mut err = std::io::stderr().lock();
    for line in context {
        writeln!(err, "{line}")?;
    }
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    drop(err);
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let answer = answer.trim().to_ascii_lowercase();
    Ok(answer == "y" || answer == "yes")
}

/// `plugin add <URL|PATH> [--branch REF] [--path SUBDIR] [--yes] [--json]`.
pub fn add(global: &Global, req: &AddRequest, out: &mut Out) -> anyhow::Result<()> {
    out.set_quiet(req.json);
    out.heading("=== Installing Plugin ===")?;
    out.blank()?;
    if req.source.starts_with('-') {
        bail!(
            "Refusing source '{}': it starts with '-'\nPass a URL or a path (write ./{} for a directory with that name).",
            req.source,
            req.source
        );
    }
    match classify(req)? {
        AddSource::Local(base) => {
            let src = match &req.path {
                Some(sub) => base.join(super::git::check_subdir(sub)?),
                None => base,
            };
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
            if req.link {
                return link_checked(global, &src, req, out);
            }
            let source = InstallSource::local(&src)?;
            install_checked(global, &src, &src, source, req, out)
        }
        AddSource::Git {
            url,
            recorded,
            reference,
        } => {
            if req.link {
                bail!("--link installs a local directory by reference; a git repository cannot be linked (clone it and link the clone)");
            }
            out.line(format!("Repository: {}", printable(&recorded)))?;
            out.line(format!(
                "Branch:     {}",
                reference
                    .as_deref()
                    .map(printable)
                    .unwrap_or_else(|| "(default branch)".into())
            ))?;
            if let Some(p) = &req.path {
                out.line(format!("Path:       {}", printable(p)))?;
            }
            out.blank()?;
            out.line("Cloning repository...")?;
            out.flush()?;
            if let Some(p) = &req.path {
                super::git::check_subdir(p)?;
            }
            let checkout = super::git::clone(&url, reference.as_deref())?;
            let src = checkout.plugin_dir(req.path.as_deref())?;
            let manifest = read_source_manifest(&src)?;
            let wasm = manifest.wasm_path(&src)?;
            if !wasm.is_file() {
                return Err(RegistryError::WasmNotBuilt { path: wasm }.into());
            }
            let (_stage_tmp, stage) = super::git::stage_declared_files(&src, &manifest)?;
            let source =
                InstallSource::git(&recorded, checkout.branch.as_deref(), req.path.as_deref());
            install_checked(global, &src, &stage, source, req, out)
        }
    }
}

fn read_source_manifest(src: &Path) -> anyhow::Result<PluginManifest> {
    let manifest_path = src.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        return Err(RegistryError::NoManifest {
            dir: src.to_path_buf(),
        }
        .into());
    }
    Ok(PluginManifest::load(&manifest_path)?)
}

/// Show what is about to be installed from `shown` (the source directory as the user
/// knows it), ask, and install from `copy_from` (the same directory, or the staged
/// declared files of a clone).
fn install_checked(
    global: &Global,
    shown: &Path,
    copy_from: &Path,
    source: InstallSource,
    req: &AddRequest,
    out: &mut Out,
) -> anyhow::Result<()> {
    let manifest = read_source_manifest(shown)?;
    let id = manifest.id().to_string();
    out.line(format!(
        "Found plugin: {} v{}",
        out.paint(printable(&id), Style::Green),
        printable(manifest.version())
    ))?;
    out.line(format!("Type: {}", manifest.plugin_type()))?;
    out.line("Capabilities:")?;
    let mut caps = manifest.capabilities.summary_lines();
    if caps.is_empty() {
        caps.push("  (none)".to_string());
    }
    for line in &caps {
        out.line(line)?;
    }
    let wasm = manifest.wasm_path(shown)?;
    if !wasm.is_file() {
        return Err(RegistryError::WasmNotBuilt { path: wasm }.into());
    }
    refuse_compile_bomb(&wasm)?;
    // The checks of `plugin check`: a plugin with errors is refused with all of them
    // listed (warnings are for `plugin check` to show).
    super::check_cmd::gate(
        global,
        copy_from,
        &shown.to_string_lossy(),
        super::check_cmd::Gate::Install,
    )?;
    let mut registry = scanned_registry(global)?;
    if registry.contains(&id) {
        bail!(
            "{}\nUse `tark-wasmer plugin update {}` to fetch it again, or `tark-wasmer plugin remove {}` first.",
            RegistryError::AlreadyInstalled { id: printable(&id) },
            printable(&id),
            printable(&id)
        );
    }
    out.flush()?;
    if !req.yes {
        let mut context = Vec::new();
        if out.is_quiet() {
            context.push(format!(
                "Plugin {} v{} ({}) asks for:",
                printable(&id),
                printable(manifest.version()),
                manifest.plugin_type()
            ));
            context.extend(caps.iter().cloned());
        }
        if !confirm(&format!("Install plugin '{}'?", printable(&id)), &context)? {
            bail!("Installation cancelled: nothing was installed (pass --yes to install without asking)");
        }
    }
    out.blank()?;
    out.line("Installing...")?;
    let installed = registry.install_from_dir(copy_from, source, false)?;
    super::call_cmd::precompile(global, installed.id());
    if req.json {
        let mut m = summary_json(&installed);
        m.insert(
            "install".into(),
            match &installed.install {
                Some(i) => serde_json::to_value(i)?,
                None => Value::Null,
            },
        );
        m.insert(
            "capabilities".into(),
            serde_json::to_value(&installed.manifest.capabilities)?,
        );
        out.json(&Value::Object(m))?;
        return Ok(());
    }
    out.blank()?;
    out.line(format!(
        "✅ Successfully installed plugin: {}",
        out.paint(printable(installed.id()), Style::Green)
    ))?;
    out.blank()?;
    out.line("The plugin will be loaded on next tark start.")?;
    Ok(())
}

/// Refuse a module outside the engine's static bounds (a compile-time bomb) before it is
/// installed, rather than when it is first loaded.
pub fn refuse_compile_bomb(wasm: &Path) -> anyhow::Result<()> {
    use tark_wasmer::engine::bounds::{check_module_bounds, BoundsError};
    let bytes =
        std::fs::read(wasm).with_context(|| format!("Failed to read {}", wasm.display()))?;
    if let Err(e @ BoundsError::TooComplex { .. }) = check_module_bounds(&bytes) {
        bail!("{}: {e}\nNothing was installed.", wasm.display());
    }
    Ok(())
}

/// `plugin add --link`: the checks, the question, then a link instead of a copy.
fn link_checked(
    global: &Global,
    src: &Path,
    req: &AddRequest,
    out: &mut Out,
) -> anyhow::Result<()> {
    let manifest = read_source_manifest(src)?;
    let wasm = manifest.wasm_path(src)?;
    if !wasm.is_file() {
        return Err(RegistryError::WasmNotBuilt { path: wasm }.into());
    }
    super::check_cmd::gate(
        global,
        src,
        &src.to_string_lossy(),
        super::check_cmd::Gate::Install,
    )?;
    let id = manifest.id().to_string();
    out.line(format!(
        "Found plugin: {} v{} (linking {})",
        out.paint(printable(&id), Style::Green),
        printable(manifest.version()),
        src.display()
    ))?;
    let mut caps = manifest.capabilities.summary_lines();
    if caps.is_empty() {
        caps.push("  (none)".to_string());
    }
    out.line("Capabilities:")?;
    for line in &caps {
        out.line(line)?;
    }
    out.flush()?;
    if !req.yes && !confirm(&format!("Link plugin '{}'?", printable(&id)), &caps)? {
        bail!(
            "Installation cancelled: nothing was installed (pass --yes to install without asking)"
        );
    }
    let mut registry = scanned_registry(global)?;
    let linked = registry.link_dir(src)?;
    super::call_cmd::precompile(global, linked.id());
    if req.json {
        let mut m = summary_json(&linked);
        m.insert("link".into(), json!(src.to_string_lossy()));
        out.json(&Value::Object(m))?;
        return Ok(());
    }
    out.blank()?;
    out.line(format!(
        "✅ Linked plugin: {} -> {}",
        out.paint(printable(linked.id()), Style::Green),
        src.display()
    ))?;
    out.line("Rebuilds are picked up on the next load; `plugin remove` deletes only the link.")?;
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
    if !out.is_terminal() {
        return list_plain(&registry, out);
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
                    Cell::plain(&p.manifest.plugin.description),
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

/// `plugin list` into a pipe: one tab-separated line per plugin (id, version, type,
/// enabled|disabled, description), nothing else on stdout; plugins that failed to load
/// are reported on stderr.
fn list_plain(registry: &PluginRegistry, out: &mut Out) -> anyhow::Result<()> {
    let rows: Vec<Vec<Cell>> = registry
        .list()
        .iter()
        .map(|p| {
            vec![
                Cell::plain(&p.id),
                Cell::plain(p.manifest.version()),
                Cell::plain(p.plugin_type().as_str()),
                Cell::plain(if p.enabled { "enabled" } else { "disabled" }),
                Cell::plain(&p.manifest.plugin.description),
            ]
        })
        .collect();
    for line in tsv(&rows) {
        out.line(line)?;
    }
    for e in registry.load_errors() {
        eprintln!(
            "Plugin at {} failed to load: {}",
            printable(&e.dir.to_string_lossy()),
            printable(e.message.lines().next().unwrap_or(""))
        );
    }
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
    let module = module_facts(global, p);
    let funcs = function_rows(p);
    if as_json {
        let mut v = info_json(p)?;
        if let Value::Object(m) = &mut v {
            m.insert("module".into(), module.to_json());
            m.insert(
                "functions".into(),
                match &funcs {
                    Ok(rows) => serde_json::to_value(rows)?,
                    Err(_) => Value::Null,
                },
            );
        }
        out.line(serde_json::to_string_pretty(&v)?)?;
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
    if let Some(target) = tark_wasmer::registry::link_target(&p.dir) {
        out.line(format!(
            "  {}  {} (linked)",
            label(out, "Source:"),
            printable(&target.to_string_lossy())
        ))?;
    }
    if let Some(install) = &p.install {
        let kind = if install.is_git { "git" } else { "local" };
        out.line(format!(
            "  {}  {} ({kind})",
            label(out, "Source:"),
            printable(&install.url)
        ))?;
    }
    out.blank()?;
    out.line(label(out, "Module:"))?;
    if let Some(size) = module.size {
        out.line(format!("  {}    {size} bytes", label(out, "Size:")))?;
    }
    match (&module.abi, &module.error) {
        (Some(abi), _) => {
            out.line(format!("  {}     {abi}", label(out, "ABI:")))?;
            if *abi == AbiKind::Canonical {
                out.line(format!(
                    "  {}   {}",
                    label(out, "World:"),
                    module.world.as_deref().unwrap_or("unknown")
                ))?;
            }
        }
        (None, Some(e)) => {
            out.line(format!(
                "  {}     unknown: {}",
                label(out, "ABI:"),
                printable(e)
            ))?;
            out.line(format!(
                "  Run `tark-wasmer plugin check {}` for details.",
                printable(&p.id)
            ))?;
        }
        (None, None) => {}
    }
    if let Some(state) = module.cache {
        let entry = module
            .cache_entry
            .as_ref()
            .filter(|_| state == "cached")
            .map(|p| format!(" ({})", printable(&p.to_string_lossy())))
            .unwrap_or_default();
        out.line(format!(
            "  {}   {state} for {}{entry}",
            label(out, "Cache:"),
            module.compiler
        ))?;
    }
    if let Ok(rows) = &funcs {
        out.blank()?;
        out.line(label(out, "Functions:"))?;
        let width = rows
            .iter()
            .map(|f| printable(&f.name).chars().count())
            .max()
            .unwrap_or(0);
        for f in rows {
            let name = printable(&f.name);
            let pad = " ".repeat(width.saturating_sub(name.chars().count()));
            let (mark, note) = if f.callable {
                (out.paint("✓", Style::Green), String::new())
            } else {
                (
                    out.paint("✗", Style::Red),
                    format!("  ({})", printable(f.note.as_deref().unwrap_or(""))),
                )
            };
            out.line(format!(
                "  {name}{pad}  {mark}  {}{note}",
                printable(&f.signature)
            ))?;
        }
        out.line("  (✓ callable with `tark-wasmer call`)")?;
    }
    Ok(())
}

/// Every function the plugin's module exports, with its signature and whether `call`
/// can run it.
fn function_rows(p: &InstalledPlugin) -> anyhow::Result<Vec<tark_wasmer::check::ExportedFunction>> {
    let path = p.checked_wasm_path()?;
    let bytes =
        std::fs::read(&path).with_context(|| format!("Failed to read {}", path.display()))?;
    tark_wasmer::check::exported_functions(&bytes, p.plugin_type()).map_err(|e| anyhow!(e))
}

/// What `info` says about the module itself.
struct ModuleFacts {
    size: Option<u64>,
    abi: Option<AbiKind>,
    world: Option<String>,
    compiler: String,
    /// `cached`, `not cached` or `disabled` (the on-disk artifact for this compiler).
    cache: Option<&'static str>,
    /// The artifact's file, when the cache is enabled.
    cache_entry: Option<PathBuf>,
    error: Option<String>,
}

impl ModuleFacts {
    fn to_json(&self) -> Value {
        json!({
            "size": self.size,
            "abi": self.abi.map(|a| a.as_str()),
            "world": self.world,
            "compiler": self.compiler,
            "cache": self.cache,
            "cache_entry": self.cache_entry.as_ref().map(|p| p.to_string_lossy().into_owned()),
            "error": self.error,
        })
    }
}

/// Size, ABI and world of an installed plugin's module (read from its bytes), and
/// whether the selected compiler's artifact for it is in the cache.
fn module_facts(global: &Global, p: &InstalledPlugin) -> ModuleFacts {
    let compiler = global.compiler.unwrap_or_default();
    let mut facts = ModuleFacts {
        size: None,
        abi: None,
        world: None,
        compiler: compiler.as_str().to_string(),
        cache: None,
        cache_entry: None,
        error: None,
    };
    let result = (|| -> anyhow::Result<()> {
        let path = p.checked_wasm_path()?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        facts.size = u64::try_from(bytes.len()).ok();
        // ABI and world from the module's declarations: no compile just to show them.
        let info = ModuleInfo::parse(&bytes)?;
        let abi = info.abi();
        facts.abi = Some(abi);
        if abi == AbiKind::Canonical {
            facts.world = info.world();
        }
        let engine = WasmEngine::shared(compiler)?;
        match global.cache.open() {
            Ok(Some(cache)) => {
                let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
                let entry = cache.entry_path(&engine.cache_key(&hash));
                facts.cache = Some(if entry.is_file() {
                    "cached"
                } else {
                    "not cached"
                });
                facts.cache_entry = Some(entry);
            }
            Ok(None) => facts.cache = Some("disabled"),
            Err(e) => log::warn!("artifact cache: {e}"),
        }
        Ok(())
    })();
    if let Err(e) = result {
        facts.error = Some(format!("{e:#}"));
    }
    facts
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

/// `plugin remove <ID> [--yes] [--json]`: asks on a terminal (like `add`), then deletes
/// the plugin's directory.
pub fn remove(
    global: &Global,
    id: &str,
    yes: bool,
    as_json: bool,
    out: &mut Out,
) -> anyhow::Result<()> {
    let mut registry = scanned_registry(global)?;
    let p = lookup(&registry, id)?;
    if !yes {
        let data = p.data_dir();
        let context = vec![format!(
            "Plugin {} v{} ({}) at {}{}",
            printable(&p.id),
            printable(p.manifest.version()),
            p.plugin_type(),
            printable(&p.dir.to_string_lossy()),
            if data.is_dir() {
                ", including its data/ (storage)"
            } else {
                ""
            }
        )];
        if !confirm(&format!("Remove plugin '{}'?", printable(id)), &context)? {
            bail!("Removal cancelled: nothing was removed (pass --yes to remove without asking)");
        }
    }
    let removed = registry.remove(id)?;
    if as_json {
        let mut m = summary_json(&removed);
        m.insert("removed".into(), Value::Bool(true));
        out.json(&Value::Object(m))?;
        return Ok(());
    }
    out.line(format!(
        "✅ Removed plugin: {}",
        out.paint(printable(removed.id()), Style::Green)
    ))?;
    Ok(())
}

/// `plugin enable|disable <ID> [--json]`: the plugin's summary with its new state as JSON.
fn toggle(
    global: &Global,
    id: &str,
    enable: bool,
    as_json: bool,
    out: &mut Out,
) -> anyhow::Result<()> {
    let mut registry = scanned_registry(global)?;
    lookup(&registry, id)?;
    if enable {
        registry.enable(id)?;
    } else {
        registry.disable(id)?;
    }
    if as_json {
        let again = scanned_registry(global)?;
        let p = lookup(&again, id)?;
        out.json(&Value::Object(summary_json(p)))?;
        return Ok(());
    }
    let (verb, style) = if enable {
        ("Enabled", Style::Green)
    } else {
        ("Disabled", Style::Yellow)
    };
    out.line(format!(
        "✅ {verb} plugin: {}",
        out.paint(printable(id), style)
    ))?;
    Ok(())
}

/// `plugin enable <ID> [--json]`.
pub fn enable(global: &Global, id: &str, as_json: bool, out: &mut Out) -> anyhow::Result<()> {
    toggle(global, id, true, as_json, out)
}

/// `plugin disable <ID> [--json]`.
pub fn disable(global: &Global, id: &str, as_json: bool, out: &mut Out) -> anyhow::Result<()> {
    toggle(global, id, false, as_json, out)
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
