//! `plugin check <PATH|ID> [--json]`: resolve the argument, run the library's analysis
//! ([`tark_wasmer::check`]) and print its report as text or JSON. Errors make the command
//! exit 1 (after printing the whole report).

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::{json, Value};

use tark_wasmer::check::{analyze, Report};
use tark_wasmer::manifest::{is_valid_plugin_name, MANIFEST_FILE};
use tark_wasmer::registry::PluginRegistry;
use tark_wasmer::AbiKind;

use super::output::{printable, Out, Style};
use super::Global;

/// Where the plugin to check is: a directory (or its `plugin.toml`), else an installed id.
fn resolve_target(global: &Global, target: &str) -> anyhow::Result<PathBuf> {
    let path = Path::new(target);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.is_file() && path.file_name().is_some_and(|n| n == MANIFEST_FILE) {
        if let Some(parent) = path.parent() {
            return Ok(if parent.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                parent.to_path_buf()
            });
        }
    }
    if is_valid_plugin_name(target) {
        let mut registry = PluginRegistry::new(&global.plugins_dir);
        registry.scan()?;
        if let Some(p) = registry.get(target) {
            return Ok(p.dir.clone());
        }
        if let Some(e) = registry
            .load_errors()
            .iter()
            .find(|e| e.dir.file_name().is_some_and(|n| n == target))
        {
            return Ok(e.dir.clone());
        }
    }
    bail!(
        "No plugin directory or installed plugin named '{}'\nPass the directory that holds {MANIFEST_FILE}, or an id from `tark-wasmer plugin list`.",
        printable(target)
    )
}

/// What `plugin add`/`update` do with a plugin that has check errors.
#[derive(Debug, Clone, Copy)]
pub enum Gate {
    /// Installing a new plugin: nothing is installed.
    Install,
    /// Updating: the installed version stays.
    Update,
}

/// Run the checks of `plugin check` on `dir` (the tree about to be installed, with the
/// compiler the plugin will run on) and refuse it when they report errors, listing them
/// all. Warnings are returned for the caller to show.
pub fn gate(global: &Global, dir: &Path, shown: &str, gate: Gate) -> anyhow::Result<Vec<String>> {
    let report = tark_wasmer::check::analyze_for_install(dir, global.compiler.unwrap_or_default());
    if report.errors.is_empty() {
        return Ok(report.warnings);
    }
    let who = report
        .id
        .as_deref()
        .map(|id| format!("plugin '{}'", printable(id)))
        .unwrap_or_else(|| "the plugin".into());
    let (verb, outcome) = match gate {
        Gate::Install => ("install", "Nothing was installed."),
        Gate::Update => ("update", "The installed version is unchanged."),
    };
    let list: Vec<String> = report
        .errors
        .iter()
        .map(|e| format!("  - {}", printable(e).replace('\n', "\n    ")))
        .collect();
    bail!(
        "Refusing to {verb} {who}: plugin check found {} error(s):\n{}\n{outcome} Run `tark-wasmer plugin check {}` for the full report.",
        report.errors.len(),
        list.join("\n"),
        printable(shown)
    )
}

/// `plugin check <PATH|ID> [--json]`.
pub fn check(global: &Global, target: &str, as_json: bool, out: &mut Out) -> anyhow::Result<()> {
    let dir = resolve_target(global, target)?;
    let report = analyze(&dir);
    if as_json {
        out.json(&report_json(&report))?;
    } else {
        print_report(&report, out)?;
    }
    if !report.errors.is_empty() {
        out.flush()?;
        bail!(
            "plugin check found {} error(s) in {}",
            report.errors.len(),
            dir.display()
        );
    }
    Ok(())
}

fn compilers_json(r: &Report) -> Value {
    Value::Array(
        r.compilers
            .iter()
            .map(|c| {
                json!({
                    "compiler": c.compiler.as_str(),
                    "ok": c.error.is_none(),
                    "compile_ms": c.millis.map(|m| (m * 100.0).round() / 100.0),
                    "error": c.error,
                })
            })
            .collect(),
    )
}

/// The report as JSON (stable keys for scripts).
pub fn report_json(r: &Report) -> Value {
    json!({
        "ok": r.errors.is_empty(),
        "dir": r.dir.to_string_lossy(),
        "id": r.id,
        "type": r.plugin_type.map(|t| t.as_str()),
        "wasm": r.wasm.as_ref().map(|p| p.to_string_lossy().into_owned()),
        "size": r.size,
        "abi": r.abi.map(|a| a.as_str()),
        "world": r.world,
        "expected_world": r.expected_world,
        "features": r.features,
        "compilers": compilers_json(r),
        "imports": r.imports,
        "exports_ok": r.exports_ok,
        "errors": r.errors,
        "warnings": r.warnings,
        "notes": r.notes,
    })
}

fn print_report(r: &Report, out: &mut Out) -> anyhow::Result<()> {
    let title = match &r.id {
        Some(id) => format!("=== Plugin Check: {} ===", printable(id)),
        None => "=== Plugin Check ===".to_string(),
    };
    out.heading(&title)?;
    out.blank()?;
    let label = |out: &Out, t: &str| out.paint(format!("{t:<10}"), Style::Bold);
    out.line(format!(
        "{} {}",
        label(out, "Directory:"),
        printable(&r.dir.to_string_lossy())
    ))?;
    if let Some(t) = r.plugin_type {
        out.line(format!("{} {t}", label(out, "Type:")))?;
    }
    if let Some(w) = &r.wasm {
        let size = r.size.map(|s| format!(" ({s} bytes)")).unwrap_or_default();
        out.line(format!(
            "{} {}{size}",
            label(out, "WASM:"),
            printable(&w.to_string_lossy())
        ))?;
    }
    if let Some(abi) = r.abi {
        out.line(format!("{} {abi}", label(out, "ABI:")))?;
    }
    if r.abi == Some(AbiKind::Canonical) {
        let world = r.world.as_deref().unwrap_or("unknown");
        let expected = r.expected_world.as_deref().unwrap_or("?");
        out.line(format!(
            "{} {world} (type needs {expected})",
            label(out, "World:")
        ))?;
    }
    if r.size.is_some() && r.errors.iter().all(|e| !e.starts_with("Invalid wasm")) {
        let features = if r.features.is_empty() {
            "none beyond WebAssembly 1.0".to_string()
        } else {
            r.features.join(", ")
        };
        out.line(format!("{} {features}", label(out, "Features:")))?;
    }
    for c in &r.compilers {
        let status = match (&c.millis, &c.error) {
            (Some(ms), _) => out.paint(format!("ok ({ms:.1} ms)"), Style::Green),
            (None, Some(_)) => out.paint("fails", Style::Red),
            (None, None) => "?".to_string(),
        };
        out.line(format!(
            "{} {:<10} {status}",
            label(out, "Compile:"),
            c.compiler.as_str()
        ))?;
    }
    if !r.imports.is_empty() {
        out.line(format!(
            "{} {}",
            label(out, "Imports:"),
            r.imports.join(", ")
        ))?;
    }
    if !r.exports_ok.is_empty() {
        out.line(format!(
            "{} {} expected export(s) present",
            label(out, "Exports:"),
            r.exports_ok.len()
        ))?;
    }
    let section =
        |out: &mut Out, title: &str, mark: String, items: &[String]| -> anyhow::Result<()> {
            if items.is_empty() {
                return Ok(());
            }
            out.blank()?;
            let t = out.paint(title, Style::Bold);
            out.line(t)?;
            for item in items {
                let mut lines = item.lines();
                if let Some(first) = lines.next() {
                    out.line(format!("  {mark} {}", printable(first)))?;
                }
                for more in lines {
                    out.line(format!("    {}", printable(more)))?;
                }
            }
            Ok(())
        };
    let err_mark = out.paint("✗", Style::Red);
    let warn_mark = out.paint("⚠", Style::Yellow);
    section(out, "Errors:", err_mark, &r.errors)?;
    section(out, "Warnings:", warn_mark, &r.warnings)?;
    section(out, "Notes:", "•".to_string(), &r.notes)?;
    out.blank()?;
    let verdict = if r.errors.is_empty() {
        out.paint(
            format!("✅ No errors ({} warning(s))", r.warnings.len()),
            Style::Green,
        )
    } else {
        out.paint(
            format!(
                "✗ {} error(s), {} warning(s)",
                r.errors.len(),
                r.warnings.len()
            ),
            Style::Red,
        )
    };
    out.line(verdict)?;
    Ok(())
}
