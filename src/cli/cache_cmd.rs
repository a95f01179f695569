//! `cache stats` and `cache clear`: inspect and empty the on-disk cache of compiled
//! artifacts (the directory `--cache-dir` / `TARK_WASMER_CACHE_DIR` names, else the user's
//! cache directory).

use anyhow::Context;
use serde_json::json;

use tark_wasmer::cache::{ArtifactCache, CacheConfig};

use super::output::{printable, Out, Style};
use super::Global;

/// Help text of `cache`.
pub const CACHE_EXAMPLES: &str = "\
Examples:
  tark-wasmer cache stats
  tark-wasmer cache stats --json
  tark-wasmer cache clear
  tark-wasmer cache clear --json
  tark-wasmer --cache-dir /tmp/tw-cache cache stats

Compiled plugin code is cached on disk so later runs skip compiling. Entries are keyed by
the module, compiler, wasmer version, CPU and engine settings, verified before use, and
evicted least-recently-used beyond the size limit (--cache-max-size, default 512M).";

/// The cache the global options name, even when `--no-cache` is given (so it can still be
/// inspected and cleared).
fn cache_for(global: &Global) -> anyhow::Result<ArtifactCache> {
    let config = CacheConfig {
        disabled: false,
        ..global.cache.clone()
    };
    let dir = config
        .resolve_dir()
        .context("No cache directory: set --cache-dir or TARK_WASMER_CACHE_DIR")?;
    Ok(ArtifactCache::new(dir, config.resolve_max_bytes()?))
}

/// Bytes as a short human-readable size (binary units).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// `cache stats [--json]`.
pub fn stats(global: &Global, as_json: bool, out: &mut Out) -> anyhow::Result<()> {
    let cache = cache_for(global)?;
    let s = cache.stats()?;
    if as_json {
        let v = json!({
            "dir": s.dir.display().to_string(),
            "entries": s.entries,
            "total_bytes": s.total_bytes,
            "limit_bytes": s.limit_bytes,
            "enabled": !global.cache.disabled,
        });
        out.json(&v)?;
        return Ok(());
    }
    let label = |out: &Out, t: &str| out.paint(format!("{t:<10}"), Style::Bold);
    let line = format!(
        "{} {}",
        label(out, "Directory:"),
        printable(&s.dir.display().to_string())
    );
    out.line(line)?;
    let line = format!("{} {}", label(out, "Entries:"), s.entries);
    out.line(line)?;
    let line = format!(
        "{} {} ({} bytes)",
        label(out, "Size:"),
        human_size(s.total_bytes),
        s.total_bytes
    );
    out.line(line)?;
    let line = format!(
        "{} {} ({} bytes)",
        label(out, "Limit:"),
        human_size(s.limit_bytes),
        s.limit_bytes
    );
    out.line(line)?;
    if global.cache.disabled {
        let note = out.paint(
            "Caching is disabled for this run (--no-cache).",
            Style::Yellow,
        );
        out.line(note)?;
    }
    Ok(())
}

/// `cache clear [--json]`.
pub fn clear(global: &Global, as_json: bool, out: &mut Out) -> anyhow::Result<()> {
    let cache = cache_for(global)?;
    let removed = cache.clear()?;
    if as_json {
        out.json(&json!({
            "dir": cache.dir().display().to_string(),
            "removed_entries": removed.entries,
            "removed_bytes": removed.bytes,
        }))?;
        return Ok(());
    }
    out.line(format!(
        "Removed {} cached artifact{} ({}) from {}",
        removed.entries,
        if removed.entries == 1 { "" } else { "s" },
        human_size(removed.bytes),
        printable(&cache.dir().display().to_string())
    ))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human_readable() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1024), "1.0 KiB");
        assert_eq!(human_size(1536 * 1024), "1.5 MiB");
        assert_eq!(human_size(512 * 1024 * 1024), "512.0 MiB");
        assert_eq!(human_size(3 << 40), "3.0 TiB");
    }
}
