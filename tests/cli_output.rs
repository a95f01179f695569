//! The command line's output for people and scripts, run as real processes: tables sized
//! to the terminal (on a pseudo-terminal via util-linux `script`), tab-separated lines
//! when piped, `--json` on every management command, `remove` confirmation, completions,
//! the man page, the config file with its precedence (`config show`), verbosity and
//! host-call tracing, `bench`, and the demo script.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

use common::fixtures::{ensure_plugins_built, example_plugin_dir, repo_root};

/// A finished run of the binary.
use common::cli::Run;

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", self.stdout))
    }
}

/// A temporary root: plugins directory, artifact cache, config home.
struct Env {
    root: tempfile::TempDir,
}

const CLEARED: &[&str] = &[
    "TARK_PLUGINS_DIR",
    "TARK_WASMER_COMPILER",
    "TARK_WASMER_CA_FILE",
    "TARK_WASMER_CACHE_DIR",
    "TARK_WASMER_CACHE_MAX_SIZE",
    "TARK_WASMER_CONFIG",
    "NO_COLOR",
    "CLICOLOR_FORCE",
    "RUST_LOG",
    "COLUMNS",
];

impl Env {
    fn new() -> Self {
        Env {
            root: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn plugins(&self) -> PathBuf {
        self.root().join("plugins")
    }

    fn config_home(&self) -> PathBuf {
        self.root().join("config-home")
    }

    /// The binary with a clean environment: this root's plugins directory and cache, and
    /// XDG_CONFIG_HOME inside the root (no user config file is read).
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
        for var in CLEARED {
            cmd.env_remove(var);
        }
        cmd.env("TARK_PLUGINS_DIR", self.plugins())
            .env("TARK_WASMER_CACHE_DIR", self.root().join("cache"))
            .env("XDG_CONFIG_HOME", self.config_home())
            .stdin(Stdio::null());
        cmd
    }

    fn run(&self, mut cmd: Command) -> Run {
        let out = cmd.output().expect("run tark-wasmer");
        Run {
            code: out.status.code(),
            stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
            stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
        }
    }

    fn tw(&self, args: &[&str]) -> Run {
        let mut cmd = self.cmd();
        cmd.args(args);
        self.run(cmd)
    }

    /// `tark-wasmer <args>` on a pseudo-terminal `cols` wide, answering `input`. The
    /// terminal merges stdout and stderr into `stdout`.
    fn on_terminal(&self, cols: u16, args: &[&str], input: &str) -> Run {
        let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
        let mut line = vec![quote(env!("CARGO_BIN_EXE_tark-wasmer"))];
        line.extend(args.iter().map(|a| quote(a)));
        let shell = format!("stty cols {cols} rows 40; exec {}", line.join(" "));
        let mut cmd = Command::new("script");
        for var in CLEARED {
            cmd.env_remove(var);
        }
        cmd.args(["-qec", &shell, "/dev/null"])
            .env("TARK_PLUGINS_DIR", self.plugins())
            .env("TARK_WASMER_CACHE_DIR", self.root().join("cache"))
            .env("XDG_CONFIG_HOME", self.config_home())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        use std::io::Write;
        let mut child = cmd.spawn().expect("script(1) runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n"),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A source plugin directory (legacy, an empty module) with a description.
    fn source(&self, name: &str, ty: &str, description: &str) -> PathBuf {
        let dir = self.root().join("src").join(name);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("plugin.toml"),
            format!(
                "[plugin]\nname = \"{name}\"\nversion = \"1.0.0\"\ntype = \"{ty}\"\ndescription = \"{description}\"\n"
            ),
        )
        .unwrap();
        fs::write(dir.join("plugin.wasm"), common::fixtures::stub_wasm(ty)).unwrap();
        dir
    }

    fn add(&self, src: &Path) {
        self.tw(&["plugin", "add", src.to_str().unwrap(), "--yes"])
            .ok();
    }

    fn add_example(&self, name: &str) {
        ensure_plugins_built();
        self.add(&example_plugin_dir(name));
    }
}

const LONG: &str =
    "A description long enough that a narrow terminal must cut it somewhere near the end";

fn two_plugins(env: &Env) {
    env.add(&env.source("beta", "provider", LONG));
    env.add(&env.source("alpha", "auth", "Short"));
    env.tw(&["plugin", "disable", "alpha"]).ok();
}

#[test]
fn list_piped_is_tab_separated_lines_without_decoration() {
    let env = Env::new();
    two_plugins(&env);
    let r = env.tw(&["plugin", "list"]).ok();
    assert_eq!(
        r.stdout,
        format!("alpha\t1.0.0\tauth\tdisabled\tShort\nbeta\t1.0.0\tprovider\tenabled\t{LONG}\n")
    );
    let r = env.tw(&["plugin", "list"]);
    let ids: Vec<&str> = r
        .stdout
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    assert_eq!(ids, ["alpha", "beta"]);
    // An empty directory prints nothing at all for a script.
    let empty = Env::new();
    assert_eq!(empty.tw(&["plugin", "list"]).ok().stdout, "");
}

#[test]
fn list_on_a_terminal_is_a_table_fitted_to_its_width() {
    let env = Env::new();
    two_plugins(&env);
    let narrow = env.on_terminal(60, &["plugin", "list"], "").ok();
    let table: Vec<&str> = narrow
        .stdout
        .lines()
        .filter(|l| l.starts_with(['╭', '│', '├', '╰']))
        .collect();
    assert_eq!(table.len(), 6, "{}", narrow.stdout);
    for line in &table {
        assert_eq!(line.chars().count(), 60, "{line}\n{}", narrow.stdout);
    }
    let beta = table.iter().find(|l| l.contains("beta")).unwrap();
    assert!(beta.contains("A description"), "{beta}");
    assert!(beta.contains('…'), "cut with an ellipsis: {beta}");

    let wide = env.on_terminal(200, &["plugin", "list"], "").ok();
    assert!(wide.stdout.contains(LONG), "{}", wide.stdout);
    assert!(!wide.stdout.contains('…'), "{}", wide.stdout);
    assert!(wide.stdout.contains("✗ disabled"), "{}", wide.stdout);
}

#[test]
fn every_management_command_has_json() {
    let env = Env::new();
    let src = env.source("toggle", "tool", "Toggled");
    env.add(&src);
    let v = env
        .tw(&["plugin", "disable", "toggle", "--json"])
        .ok()
        .json();
    assert_eq!(v["id"], "toggle");
    assert_eq!(v["enabled"], false);
    let v = env
        .tw(&["plugin", "enable", "toggle", "--json"])
        .ok()
        .json();
    assert_eq!(v["enabled"], true);
    assert_eq!(v["type"], "tool");

    // `plugin add` compiled the plugin into the cache (its first call does not compile).
    let v = env.tw(&["cache", "stats", "--json"]).ok().json();
    assert_eq!(v["entries"], 1);
    let v = env.tw(&["cache", "clear", "--json"]).ok().json();
    assert_eq!(v["removed_entries"], 1);
    let v = env.tw(&["cache", "stats", "--json"]).ok().json();
    assert_eq!(v["entries"], 0);
    assert_eq!(v["dir"], env.root().join("cache").to_str().unwrap());

    let v = env
        .tw(&["plugin", "remove", "toggle", "--yes", "--json"])
        .ok()
        .json();
    assert_eq!(v["id"], "toggle");
    assert_eq!(v["removed"], true);
    assert!(!env.plugins().join("toggle").exists());
    assert!(src.join("plugin.wasm").is_file(), "source untouched");
}

#[test]
fn remove_asks_on_a_terminal_and_nothing_is_printed_before_an_error() {
    let env = Env::new();
    env.add(&env.source("victim", "tool", ""));
    let dir = env.plugins().join("victim");
    fs::create_dir_all(dir.join("data")).unwrap();

    let r = env.on_terminal(100, &["plugin", "remove", "victim"], "n\n");
    assert_eq!(r.code, Some(1), "{}", r.stdout);
    assert!(
        r.stdout.contains("Remove plugin 'victim'? [y/N]"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("including its data/"), "{}", r.stdout);
    assert!(r.stdout.contains("Removal cancelled"), "{}", r.stdout);
    assert!(dir.is_dir(), "kept after 'n'");

    let r = env
        .on_terminal(100, &["plugin", "remove", "victim"], "y\n")
        .ok();
    assert!(
        r.stdout.contains("✅ Removed plugin: victim"),
        "{}",
        r.stdout
    );
    assert!(!dir.exists());

    // Not found: the error alone, no banner on stdout.
    let r = env.tw(&["plugin", "remove", "victim"]).fails();
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr.trim_end(), "Error: Plugin 'victim' not found");
    // Scripts (stdin not a terminal) are not asked.
    env.add(&env.source("scripted", "tool", ""));
    let r = env.tw(&["plugin", "remove", "scripted"]).ok();
    assert_eq!(r.stdout, "✅ Removed plugin: scripted\n");
}

#[test]
fn completions_and_man_page_come_from_the_definitions() {
    let env = Env::new();
    let bash = env.tw(&["completions", "bash"]).ok().stdout;
    assert!(bash.contains("complete -F _tark__wasmer"), "{bash}");
    for word in ["bench", "config", "--compiler", "--trace"] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    let zsh = env.tw(&["completions", "zsh"]).ok().stdout;
    assert!(zsh.starts_with("#compdef tark-wasmer"), "{zsh}");
    let fish = env.tw(&["completions", "fish"]).ok().stdout;
    assert!(fish.contains("complete -c tark-wasmer"), "{fish}");
    assert!(fish.contains("singlepass"), "compiler values are completed");
    let r = env.tw(&["completions", "tcsh"]);
    assert_eq!(r.code, Some(2), "an unknown shell is a usage error");

    let man = env.tw(&["man"]).ok().stdout;
    assert!(
        man.starts_with(".ie") || man.contains(".TH tark-wasmer"),
        "{man}"
    );
    assert!(man.contains(".TH tark-wasmer"), "{man}");
    assert!(man.contains("completions"), "subcommands are listed");
    // A broken config file does not break generated output.
    fs::create_dir_all(env.config_home().join("tark-wasmer")).unwrap();
    fs::write(
        env.config_home().join("tark-wasmer/config.toml"),
        "= broken",
    )
    .unwrap();
    env.tw(&["man"]).ok();
    env.tw(&["completions", "bash"]).ok();
}

#[test]
fn compiler_help_names_one_default() {
    let env = Env::new();
    let help = env.tw(&["--help"]).ok().stdout;
    assert!(help.contains("[default: cranelift]"), "{help}");
    assert!(!help.contains("(default)"), "{help}");
    assert!(help.contains("-v, --verbose"), "{help}");
    assert!(help.contains("-q, --quiet"), "{help}");
    assert!(help.contains("--trace"), "{help}");
    assert!(help.contains("--config <PATH>"), "{help}");
}

fn setting<'v>(v: &'v Value, key: &str) -> (&'v Value, String) {
    let s = &v["settings"][key];
    let src = &s["source"];
    let source = match src["kind"].as_str().unwrap() {
        "flag" | "env" => format!(
            "{} {}",
            src["kind"].as_str().unwrap(),
            src["name"].as_str().unwrap()
        ),
        "file" => "file".to_string(),
        other => other.to_string(),
    };
    (&s["value"], source)
}

#[test]
fn config_precedence_is_flag_env_file_default() {
    let env = Env::new();
    let file = env.config_home().join("tark-wasmer/config.toml");
    fs::create_dir_all(file.parent().unwrap()).unwrap();
    fs::write(
        &file,
        "compiler = \"singlepass\"\n\n[cache]\nmax_size = \"64M\"\n\n[limits]\ncpu_seconds = 2.5\ntime_limit = 7.5\nmetering = false\n",
    )
    .unwrap();

    let v = env.tw(&["config", "show", "--json"]).ok().json();
    assert_eq!(v["file"], file.to_str().unwrap());
    assert_eq!(v["file_found"], true);
    assert_eq!(
        setting(&v, "compiler"),
        (&Value::from("singlepass"), "file".into())
    );
    assert_eq!(setting(&v, "cache.max_size").0, &Value::from(64u64 << 20));
    assert_eq!(
        setting(&v, "limits.cpu_seconds"),
        (&Value::from(2.5), "file".into())
    );
    assert_eq!(setting(&v, "limits.time_limit").0, &Value::from(7.5));
    assert_eq!(setting(&v, "limits.metering").0, &Value::from(false));
    assert_eq!(setting(&v, "limits.memory_max").1, "default");
    assert_eq!(
        setting(&v, "plugins_dir"),
        (
            &Value::from(env.plugins().to_str().unwrap()),
            "env TARK_PLUGINS_DIR".into()
        )
    );

    // The environment beats the file; a flag beats both.
    let mut cmd = env.cmd();
    cmd.env("TARK_WASMER_COMPILER", "cranelift")
        .env("TARK_WASMER_CACHE_MAX_SIZE", "1G")
        .args(["config", "show", "--json"]);
    let v = env.run(cmd).ok().json();
    assert_eq!(
        setting(&v, "compiler"),
        (&Value::from("cranelift"), "env TARK_WASMER_COMPILER".into())
    );
    assert_eq!(setting(&v, "cache.max_size").0, &Value::from(1u64 << 30));
    let mut cmd = env.cmd();
    cmd.env("TARK_WASMER_COMPILER", "cranelift").args([
        "--compiler",
        "singlepass",
        "--cpu-seconds",
        "9",
        "config",
        "show",
        "--json",
    ]);
    let v = env.run(cmd).ok().json();
    assert_eq!(
        setting(&v, "compiler"),
        (&Value::from("singlepass"), "flag --compiler".into())
    );
    assert_eq!(
        setting(&v, "limits.cpu_seconds"),
        (&Value::from(9.0), "flag --cpu-seconds".into())
    );

    // --config names another file; the text form says where each value came from.
    let other = env.root().join("other.toml");
    fs::write(&other, "[cache]\nenabled = false\n").unwrap();
    let r = env
        .tw(&["--config", other.to_str().unwrap(), "config", "show"])
        .ok();
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("cache.enabled\t"))
        .expect("a cache.enabled line");
    assert_eq!(
        line,
        format!("cache.enabled\tfalse\tfile {}", other.display())
    );
    let line = r
        .stdout
        .lines()
        .find(|l| l.starts_with("compiler\t"))
        .unwrap();
    assert_eq!(line, "compiler\tcranelift\tdefault");
    // The setting is used: `cache stats` reports caching off.
    let v = env
        .tw(&[
            "--config",
            other.to_str().unwrap(),
            "cache",
            "stats",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["enabled"], false);
}

#[test]
fn bad_config_files_name_the_file_the_key_and_the_fix() {
    let env = Env::new();
    let file = env.root().join("bad.toml");
    let check = |text: &str, needles: &[&str]| {
        fs::write(&file, text).unwrap();
        let r = env
            .tw(&["--config", file.to_str().unwrap(), "plugin", "list"])
            .fails();
        assert_eq!(r.stdout, "");
        assert!(r.stderr.contains(file.to_str().unwrap()), "{}", r.stderr);
        for n in needles {
            assert!(r.stderr.contains(n), "missing {n:?} in:\n{}", r.stderr);
        }
    };
    check(
        "compiller = \"singlepass\"\n",
        &["unknown key `compiller`", "did you mean `compiler`?"],
    );
    check(
        "[limits]\ncpu_seconds = \"lots\"\n",
        &[
            "key `limits.cpu_seconds`",
            "\"lots\"",
            "Fix: set `cpu_seconds` under [limits] to seconds of guest CPU",
        ],
    );
    check(
        "compiler = \"llvm\"\n",
        &["key `compiler`", "\"singlepass\" or \"cranelift\""],
    );
    check("[cache\nmax_size = 1", &["invalid TOML", "Fix:"]);
    let missing = env.root().join("missing.toml");
    let r = env
        .tw(&["--config", missing.to_str().unwrap(), "plugin", "list"])
        .fails();
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);
}

#[test]
fn verbosity_quiet_and_host_call_tracing() {
    let env = Env::new();
    env.add_example("legacy-provider");
    let init = [
        "call",
        "legacy-provider",
        "auth-init",
        r#"{"api_key":"k-secret-value"}"#,
    ];

    // Default: no compiler internals, no trace lines.
    let r = env.tw(&init).ok();
    assert!(!r.stderr.contains("storage.set("), "{}", r.stderr);

    // --trace: one line per host call, with the plugin prefix and the arguments.
    let mut args = vec!["--trace"];
    args.extend(init);
    let r = env.tw(&args).ok();
    let traced: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("tark_wasmer::trace::legacy-provider"))
        .collect();
    assert!(
        traced.iter().any(|l| l.contains(
            "[plugin:legacy-provider] storage.set(\"api_key\", \"k-secret-value\") -> ok"
        )),
        "{}",
        r.stderr
    );
    // --trace=ID traces that plugin only.
    let mut args = vec!["--trace=someone-else"];
    args.extend(init);
    let r = env.tw(&args).ok();
    assert!(!r.stderr.contains("storage.set("), "{}", r.stderr);
    // RUST_LOG does the same without the flag.
    let mut cmd = env.cmd();
    cmd.env("RUST_LOG", "tark_wasmer::trace=trace").args(init);
    let r = env.run(cmd).ok();
    assert!(r.stderr.contains("storage.set("), "{}", r.stderr);

    // -vv: this crate's trace lines only, never the compilers'.
    let mut args = vec!["-vv", "--no-cache"];
    args.extend(init);
    let r = env.tw(&args).ok();
    assert!(r.stderr.contains("storage.set("), "{}", r.stderr);
    for line in r.stderr.lines().filter(|l| l.starts_with('[')) {
        let target = line.split_whitespace().nth(1).unwrap_or("");
        assert!(
            target.starts_with("tark_wasmer"),
            "foreign log line: {line}"
        );
    }

    // -q: nothing on stderr for a successful call; -q and -v conflict.
    let mut args = vec!["-q"];
    args.extend(init);
    let r = env.tw(&args).ok();
    assert_eq!(r.stderr, "");
    assert_eq!(env.tw(&["-q", "-v", "plugin", "list"]).code, Some(2));
}

#[test]
fn long_trace_arguments_are_truncated() {
    let env = Env::new();
    env.add_example("legacy-provider");
    let long_key = "x".repeat(500);
    let creds = format!(r#"{{"api_key":"{long_key}"}}"#);
    let r = env
        .tw(&["--trace", "call", "legacy-provider", "auth-init", &creds])
        .ok();
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("storage.set(\"api_key\""))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    assert!(line.contains("...+420"), "{line}");
    assert!(line.chars().count() < 300, "{line}");
}

#[test]
fn bench_measures_each_compiler_with_and_without_metering() {
    let env = Env::new();
    env.add_example("legacy-provider");
    let v = env
        .tw(&[
            "bench",
            "legacy-provider",
            "info",
            "--time",
            "0.5",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(v["plugin"], "legacy-provider");
    assert_eq!(v["function"], "info");
    let results = v["results"].as_array().unwrap();
    let configs: Vec<(String, bool)> = results
        .iter()
        .map(|r| {
            (
                r["compiler"].as_str().unwrap().to_string(),
                r["metering"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        configs,
        [
            ("singlepass".to_string(), true),
            ("singlepass".to_string(), false),
            ("cranelift".to_string(), true),
            ("cranelift".to_string(), false)
        ]
    );
    for r in results {
        for key in ["compile_us", "cache_load_us", "first_call_us"] {
            assert!(r[key].as_f64().unwrap() > 0.0, "{key}: {r}");
        }
        let call = &r["call"];
        let (min, med, p99) = (
            call["min_us"].as_f64().unwrap(),
            call["median_us"].as_f64().unwrap(),
            call["p99_us"].as_f64().unwrap(),
        );
        assert!(min > 0.0 && min <= med && med <= p99, "{call}");
        assert!(call["samples"].as_u64().unwrap() >= 1);
    }
    // --iterations bounds the warm calls.
    let v = env
        .tw(&[
            "bench",
            "legacy-provider",
            "info",
            "--time",
            "0.5",
            "--iterations",
            "3",
            "--json",
        ])
        .ok()
        .json();
    for r in v["results"].as_array().unwrap() {
        assert_eq!(r["call"]["samples"], 3);
    }
    // Options after the arguments are options, not arguments.
    let r = env
        .tw(&[
            "bench",
            "legacy-provider",
            "auth-init",
            r#"{"api_key":"k"}"#,
            "--time",
            "0.3",
            "--json",
        ])
        .ok();
    assert_eq!(r.json()["results"].as_array().unwrap().len(), 4);
    // Piped: a header and four rows in plain columns; the plugin's own data directory is
    // not touched.
    let r = env
        .tw(&[
            "bench",
            "legacy-provider",
            "auth-init",
            r#"{"api_key":"k"}"#,
            "--time",
            "0.3",
        ])
        .ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{}", r.stdout);
    assert!(
        lines[0].starts_with("Compiler    Metering  Compile"),
        "{}",
        r.stdout
    );
    assert!(lines[0].ends_with("Call p99  Calls"), "{}", r.stdout);
    assert!(lines[1].starts_with("singlepass  on "), "{}", r.stdout);
    assert!(lines[4].starts_with("cranelift   off"), "{}", r.stdout);
    assert!(!r.stdout.contains('│'));
    assert!(!env
        .plugins()
        .join("legacy-provider/data/storage.json")
        .exists());
    // A failing function is an error naming it.
    let r = env
        .tw(&[
            "bench",
            "legacy-provider",
            "chat",
            "[]",
            "panic",
            "--time",
            "0.2",
        ])
        .fails_with(4);
    assert!(
        r.stderr.contains("legacy-provider chat failed"),
        "{}",
        r.stderr
    );
}

#[test]
fn demo_script_runs_legacy_sdk_streaming_denial_runaway_and_bench() {
    ensure_plugins_built();
    // The script finds the binary under CARGO_TARGET_DIR (here a relative one, resolved
    // against the directory the script is started from), not ./target.
    let start = tempfile::tempdir().unwrap();
    let release = start.path().join("elsewhere/release");
    fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_tark-wasmer"),
        release.join("tark-wasmer"),
    )
    .unwrap();
    let out = Command::new("bash")
        .arg(repo_root().join("scripts/demo.sh"))
        .current_dir(start.path())
        .env("CARGO_TARGET_DIR", "elsewhere")
        .env("DEMO_SKIP_BUILD", "1")
        .env_remove("DEMO_BIN")
        .env("DEMO_BENCH_TIME", "0.5")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("bash runs the demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed\n{stdout}\n{stderr}");
    for needle in [
        "## 1. Legacy plugins",
        "\"display_name\"",
        "## 2. SDK plugins",
        r#"{"ok":{"text":" stream","done":false"#,
        r#""done":true"#,
        "## 4. A blocked capability",
        "## 5. A runaway plugin",
        "CPU budget",
        "## 6. Which compiler",
        "demo finished",
    ] {
        assert!(
            stdout.contains(needle) || stderr.contains(needle),
            "demo output lacks {needle:?}\n{stdout}\n{stderr}"
        );
    }
}

#[test]
fn new_commands_have_help_with_examples() {
    let env = Env::new();
    for args in [
        vec!["bench", "--help"],
        vec!["config", "show", "--help"],
        vec!["completions", "--help"],
        vec!["man", "--help"],
        vec!["cache", "clear", "--help"],
    ] {
        let r = env.tw(&args).ok();
        assert!(
            r.stdout.contains("Examples:\n  tark-wasmer "),
            "{args:?}: {}",
            r.stdout
        );
    }
    let r = env.tw(&["config", "show", "--help"]).ok();
    assert!(
        r.stdout.contains("[limits]"),
        "the file format is shown: {}",
        r.stdout
    );
}

#[test]
fn canonical_plugins_are_traced_at_the_same_boundary() {
    let env = Env::new();
    env.add_example("openai-provider");
    let r = env
        .tw(&[
            "--trace=openai-provider",
            "call",
            "openai-provider",
            "auth-init",
            r#"{"api_key":"sk-1","base_url":"http://127.0.0.1:9"}"#,
        ])
        .ok();
    assert!(
        r.stderr
            .contains("[plugin:openai-provider] storage.set(\"api_key\", \"sk-1\") -> ok"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("storage.set(\"base_url\""),
        "{}",
        r.stderr
    );
}

#[test]
fn failed_add_and_update_leave_stdout_empty_when_piped() {
    let env = Env::new();
    let src = env.source("narrated", "tool", "Narrated");
    // Not a module: the install gate refuses it, and a script reading stdout sees nothing.
    fs::write(src.join("plugin.wasm"), b"not wasm at all").unwrap();
    let r = env
        .tw(&["plugin", "add", src.to_str().unwrap(), "--yes"])
        .fails();
    assert_eq!(r.stdout, "", "stdout of a failed add:\n{}", r.stdout);
    assert!(r.stderr.contains("Nothing was installed"), "{}", r.stderr);
    assert!(!env.plugins().join("narrated").exists());

    // A good add narrates on stdout; a failed update of it prints nothing there.
    fs::write(src.join("plugin.wasm"), common::fixtures::stub_wasm("tool")).unwrap();
    let r = env
        .tw(&["plugin", "add", src.to_str().unwrap(), "--yes"])
        .ok();
    assert!(
        r.stdout.contains("=== Installing Plugin ==="),
        "{}",
        r.stdout
    );
    fs::write(src.join("plugin.wasm"), b"broken again").unwrap();
    let r = env.tw(&["plugin", "update", "narrated"]).fails();
    assert_eq!(r.stdout, "", "stdout of a failed update:\n{}", r.stdout);
    assert!(!r.stderr.is_empty());
}
