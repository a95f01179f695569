//! `bench <ID> <FUNCTION> [ARG]...`: the numbers a plugin author needs to pick a compiler
//! for their own plugin. For each compiler, with and without CPU metering: compile time,
//! artifact-cache load time, instantiation, and the latency distribution of the function
//! (min/median/p99). Uses only the public library (WasmEngine, ArtifactCache, PluginHost),
//! a scratch cache and a scratch data directory (the plugin's own storage is untouched),
//! and a bounded time per measurement (`--time`, `--iterations`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use tark_wasmer::cache::{ArtifactCache, CacheConfig, DEFAULT_MAX_BYTES};
use tark_wasmer::engine::{Compiler, EngineSettings, WasmEngine};
use tark_wasmer::plugin::dispatch::{call_callable, convert_args, lookup};
use tark_wasmer::{Error, HostConfig, HostOptions, PluginHost};

use super::output::{columns, table, Cell, Out, Style};
use super::Global;

/// Help text of `bench`.
pub const BENCH_EXAMPLES: &str = "\
Examples:
  tark-wasmer bench my-provider models
  tark-wasmer bench my-tool execute '\"grep\"' '{\"pattern\":\"x\"}'
  tark-wasmer bench my-provider info --time 10 --json
  tark-wasmer bench my-provider info --iterations 100

For each compiler, with CPU metering (the default: the CPU budget works) and without
(--no-metering: faster code, only the wall-clock limit): compile time (no cache), cache
load (what every later start costs), instantiate, and the function's call latency
(min/median/p99 over many calls on one instance). Arguments are JSON, as for `call`.
The plugin runs with a scratch data directory and a scratch artifact cache; its own data
and the real cache are not touched. Log lines below warnings are off while it runs. --time (default 4 s) bounds the whole run, shared by
the four configurations; each measurement takes at least one sample.";

/// Arguments of `bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Plugin id
    id: String,
    /// Function name (as for `call`)
    function: String,
    /// Parameters, one per argument, as JSON (options may come before or after them)
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// Seconds the whole run may take, about (shared by every configuration)
    #[arg(long, value_name = "SECONDS", default_value_t = 4.0)]
    time: f64,
    /// Largest number of warm calls per configuration
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    iterations: u64,
    /// Print a JSON object instead of a table
    #[arg(long)]
    json: bool,
}

/// Sorted samples of one measurement.
#[derive(Debug, Clone, Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn sorted(mut v: Vec<Duration>) -> Self {
        v.sort();
        Samples(v)
    }

    fn quantile(&self, q: f64) -> Option<Duration> {
        if self.0.is_empty() {
            return None;
        }
        let idx = ((self.0.len() - 1) as f64 * q).round() as usize;
        self.0.get(idx.min(self.0.len() - 1)).copied()
    }

    fn min(&self) -> Option<Duration> {
        self.0.first().copied()
    }

    fn median(&self) -> Option<Duration> {
        self.quantile(0.5)
    }

    fn p99(&self) -> Option<Duration> {
        self.quantile(0.99)
    }
}

/// One configuration's results.
struct Row {
    compiler: Compiler,
    metering: bool,
    compile: Samples,
    cache_load: Samples,
    cold_call: Samples,
    warm_call: Samples,
}

impl Row {
    /// First call on a fresh instance minus a warm call: the cost of instantiating.
    fn instantiate(&self) -> Option<Duration> {
        let cold = self.cold_call.median()?;
        let warm = self.warm_call.median()?;
        Some(cold.saturating_sub(warm))
    }
}

/// Repeat `f` until `budget` is spent or `max` samples are taken (at least `min`).
fn sample(
    budget: Duration,
    min: u64,
    max: u64,
    mut f: impl FnMut() -> anyhow::Result<Duration>,
) -> anyhow::Result<Samples> {
    let start = Instant::now();
    let mut v = Vec::new();
    while (v.len() as u64) < max && ((v.len() as u64) < min || start.elapsed() < budget) {
        v.push(f()?);
    }
    Ok(Samples::sorted(v))
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("tark-wasmer-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("Failed to create {}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bench`.
pub fn bench(global: &Global, args: &BenchArgs, out: &mut Out) -> anyhow::Result<()> {
    if !args.time.is_finite() || args.time <= 0.0 {
        anyhow::bail!("--time must be a number of seconds > 0, got {}", args.time);
    }
    if args.iterations == 0 {
        anyhow::bail!("--iterations must be at least 1");
    }
    let mut registry = tark_wasmer::PluginRegistry::new(&global.plugins_dir);
    registry.scan()?;
    let plugin = registry
        .get(&args.id)
        .cloned()
        .ok_or_else(|| Error::NotFound(args.id.clone()))?;
    let wasm_path = plugin.checked_wasm_path()?;
    let wasm = std::fs::read(&wasm_path)
        .with_context(|| format!("Failed to read {}", wasm_path.display()))?;
    let scratch = Scratch::new()?;
    // Plugin log lines (info) on every call would flood stderr and distort the timings.
    if log::max_level() > log::LevelFilter::Warn {
        log::set_max_level(log::LevelFilter::Warn);
    }
    let configs: Vec<(Compiler, bool)> = Compiler::available()
        .into_iter()
        .flat_map(|c| [(c, true), (c, false)])
        .collect();
    let share = Duration::from_secs_f64(args.time / configs.len().max(1) as f64);
    let mut rows = Vec::new();
    for (i, (compiler, metering)) in configs.iter().copied().enumerate() {
        // Progress for a person waiting (stderr a terminal), never in logs or pipes.
        if !args.json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprintln!(
                "bench: {compiler}, metering {}...",
                if metering { "on" } else { "off" }
            );
        }
        let settings = EngineSettings { metering };
        // Compile: a fresh engine each time, so nothing is remembered between samples.
        let mut last = None;
        let compile = sample(share.mul_f64(0.3), 1, 5, || {
            let engine = WasmEngine::with_settings(compiler, settings)?;
            let t = Instant::now();
            let (compiled, _) = engine.compile_cached(&args.id, &wasm, None)?;
            let elapsed = t.elapsed();
            last = Some((engine, compiled));
            Ok(elapsed)
        })?;
        let (engine, compiled) = last.context("no compile sample")?;
        // Cache load: store the artifact once, then load it as a later start would.
        let cache_dir = scratch.path().join(format!("cache-{i}"));
        let cache = ArtifactCache::new(&cache_dir, DEFAULT_MAX_BYTES);
        let key = engine.cache_key(&compiled.hash);
        cache.store(&key, &compiled.module)?;
        let cache_load = sample(share.mul_f64(0.1), 1, 50, || {
            let t = Instant::now();
            let loaded = cache
                .load(&key, engine.engine())
                .map_err(|r| anyhow::anyhow!("the artifact cache refused its own entry: {r}"))?;
            let elapsed = t.elapsed();
            loaded.context("the artifact just stored is missing from the cache")?;
            Ok(elapsed)
        })?;
        // Calls, through the plugin host as `call` makes them.
        let options = HostOptions {
            plugins_dir: Some(global.plugins_dir.clone()),
            compiler: Some(compiler),
            config: HostConfig {
                limits: tark_wasmer::Limits {
                    cpu_metering: metering,
                    ..global.limits.clone()
                },
                ..HostConfig::from_environment()?
            },
            cache: CacheConfig {
                disabled: false,
                dir: Some(cache_dir.clone()),
                max_bytes: None,
            },
            ..HostOptions::default()
        };
        let mut host = PluginHost::with_options(options)?;
        host.load_with_data_dir(&plugin, &scratch.path().join(format!("data-{i}")))
            .with_context(|| format!("Failed to load plugin '{}'", args.id))?;
        let instance = host
            .get_mut(&args.id)
            .ok_or_else(|| Error::NotFound(args.id.clone()))?;
        // The function and its arguments, checked against its signature as `call` does.
        let callable = lookup(
            instance.abi(),
            instance.plugin_type(),
            &instance.interface(),
            &args.function,
        )?;
        let params = convert_args(&callable, &args.args)?;
        let mut call = |fresh: bool| -> anyhow::Result<Duration> {
            if fresh {
                instance.discard_instance();
            }
            let t = Instant::now();
            call_callable(instance, &callable, &params).with_context(|| {
                format!("bench: {} {} failed on {compiler}", args.id, args.function)
            })?;
            Ok(t.elapsed())
        };
        let cold_call = sample(share.mul_f64(0.2), 1, 20, || call(true))?;
        call(false)?;
        let warm_call = sample(share.mul_f64(0.4), 1, args.iterations, || call(false))?;
        rows.push(Row {
            compiler,
            metering,
            compile,
            cache_load,
            cold_call,
            warm_call,
        });
    }
    if args.json {
        out.json(&to_json(args, &rows))?;
        return Ok(());
    }
    print_table(out, args, &rows)
}

fn micros(d: Option<Duration>) -> Value {
    match d {
        Some(d) => json!((d.as_secs_f64() * 1e7).round() / 10.0),
        None => Value::Null,
    }
}

fn to_json(args: &BenchArgs, rows: &[Row]) -> Value {
    let results: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "compiler": r.compiler.as_str(),
                "metering": r.metering,
                "compile_us": micros(r.compile.median()),
                "compile_samples": r.compile.0.len(),
                "cache_load_us": micros(r.cache_load.median()),
                "cache_load_samples": r.cache_load.0.len(),
                "instantiate_us": micros(r.instantiate()),
                "first_call_us": micros(r.cold_call.median()),
                "call": {
                    "min_us": micros(r.warm_call.min()),
                    "median_us": micros(r.warm_call.median()),
                    "p99_us": micros(r.warm_call.p99()),
                    "samples": r.warm_call.0.len(),
                },
            })
        })
        .collect();
    json!({
        "plugin": args.id,
        "function": args.function,
        "results": results,
    })
}

/// A duration in the unit that keeps 3 significant figures readable.
fn human(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".into();
    };
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

fn print_table(out: &mut Out, args: &BenchArgs, rows: &[Row]) -> anyhow::Result<()> {
    let cells: Vec<Vec<Cell>> = rows
        .iter()
        .map(|r| {
            vec![
                Cell::plain(r.compiler.as_str()),
                Cell::plain(if r.metering { "on" } else { "off" }),
                Cell::plain(human(r.compile.median())),
                Cell::plain(human(r.cache_load.median())),
                Cell::plain(human(r.instantiate())),
                Cell::plain(human(r.warm_call.min())),
                Cell::plain(human(r.warm_call.median())),
                Cell::plain(human(r.warm_call.p99())),
                Cell::plain(r.warm_call.0.len().to_string()),
            ]
        })
        .collect();
    let headers = [
        "Compiler",
        "Metering",
        "Compile",
        "Cache load",
        "Instantiate",
        "Call min",
        "Call median",
        "Call p99",
        "Calls",
    ];
    if !out.is_terminal() {
        for line in columns(&headers, &cells) {
            out.line(line)?;
        }
        return Ok(());
    }
    let title = out.paint(
        format!("Plugin {} function {}", args.id, args.function),
        Style::Bold,
    );
    out.line(title)?;
    for line in table(out, &headers, &cells) {
        out.line(line)?;
    }
    let best = |f: &dyn Fn(&Row) -> Option<Duration>| {
        rows.iter()
            .filter(|r| r.metering)
            .filter_map(|r| f(r).map(|d| (d, r.compiler)))
            .min_by_key(|(d, _)| *d)
            .map(|(_, c)| c.as_str())
            .unwrap_or("-")
    };
    out.blank()?;
    let text = format!(
        "With metering on (the default): a start without a cached artifact is fastest on {}, \
         a cached start on {}, the calls themselves on {}. Compile happens once per plugin \
         version (the cache keeps the artifact): pick the compiler whose calls are fastest \
         unless you run with --no-cache.",
        best(&|r| r.compile.median()),
        best(&|r| Some(r.cache_load.median()? + r.instantiate()?)),
        best(&|r| r.warm_call.median()),
    );
    out.line(super::wrap(&text, out.width().clamp(40, 100)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_of_sorted_samples() {
        let s = Samples::sorted((1..=100).rev().map(Duration::from_micros).collect());
        assert_eq!(s.min(), Some(Duration::from_micros(1)));
        assert_eq!(s.median(), Some(Duration::from_micros(51)));
        assert_eq!(s.p99(), Some(Duration::from_micros(99)));
        assert_eq!(Samples::default().median(), None);
    }

    #[test]
    fn durations_are_human_readable() {
        assert_eq!(human(Some(Duration::from_nanos(1500))), "1.5 µs");
        assert_eq!(human(Some(Duration::from_micros(2500))), "2.50 ms");
        assert_eq!(human(Some(Duration::from_millis(1500))), "1.50 s");
        assert_eq!(human(None), "-");
    }
}
