//! The `tark-wasmer` command line: tark's `plugin` management commands on tark's plugins
//! directory, plus `call` to run one plugin function and print its result as JSON.
//!
//! Errors are printed as `Error: <message>` (with a `Caused by:` list of the underlying
//! causes that the message does not already say) and exit with the status of
//! `call_cmd::EXIT_CODES` (1 error, 2 usage, 3 the plugin failed, 4 host or limit).
//!
//! Logging goes to stderr through `env_logger` ([`log_filter`]): by default warnings of
//! every crate plus plugin log lines (`[plugin:<id>] ...`, info and up); `-v`/`-vv` add
//! this crate's debug/trace lines, `-q` leaves errors only, `--trace[=ID]` logs host
//! calls; `RUST_LOG` is applied on top and wins.

mod bench_cmd;
mod cache_cmd;
mod call_cmd;
mod check_cmd;
mod config;
mod git;
mod new_cmd;
mod output;
mod plugin_cmd;
mod update_cmd;

use std::error::Error as StdError;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use tark_wasmer::cache::{parse_size, CacheConfig};
use tark_wasmer::engine::Compiler;
use tark_wasmer::manifest::PluginType;

use output::Out;

const MAIN_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin add ./my-plugin
  tark-wasmer plugin list
  tark-wasmer --compiler cranelift call my-provider models
  TARK_PLUGINS_DIR=/tmp/plugins tark-wasmer plugin list --json
  tark-wasmer bench my-provider models
  tark-wasmer config show
  tark-wasmer completions bash > ~/.local/share/bash-completion/completions/tark-wasmer

Settings come from a flag, else the environment, else the config file
(~/.config/tark-wasmer/config.toml, or $XDG_CONFIG_HOME/tark-wasmer/config.toml), else the
default; `tark-wasmer config show` prints each with its source.

Output: tables on a terminal (sized to its width), tab-separated lines when piped, --json
for scripts. Exit status: 0 success, 1 failure, 2 usage error.

Environment:
  TARK_WASMER_CONFIG     config file (same as --config)
  TARK_PLUGINS_DIR       plugins directory (same as --plugins-dir)
  TARK_WASMER_COMPILER   singlepass or cranelift (same as --compiler)
  TARK_WASMER_CA_FILE    PEM file of extra trusted root certificates for plugin HTTPS/WSS
  TARK_WASMER_CACHE_DIR  compiled-artifact cache directory (same as --cache-dir)
  TARK_WASMER_CACHE_MAX_SIZE  artifact cache size limit, e.g. 512M (same as --cache-max-size)
  RUST_LOG               log filter applied after -v/-q/--trace, e.g. RUST_LOG=debug (every
                         crate, compiler internals too) or RUST_LOG=tark_wasmer::trace=trace
                         (host calls of every plugin)
  NO_COLOR               disable colours (CLICOLOR_FORCE=1 forces them when piped)";

const PLUGIN_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin add ./my-plugin
  tark-wasmer plugin add https://github.com/me/tark-plugins.git#v1.2.0 --path gemini-auth
  tark-wasmer plugin list --json
  tark-wasmer plugin info my-plugin
  tark-wasmer plugin check ./my-plugin
  tark-wasmer plugin update --all
  tark-wasmer plugin new my-tool --type tool
  tark-wasmer plugin disable my-plugin";

const ADD_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin add ./my-plugin
  tark-wasmer plugin add ~/src/my-plugin --yes
  tark-wasmer plugin add https://github.com/me/my-plugin.git
  tark-wasmer plugin add https://github.com/me/plugins.git --branch dev --path auth/gemini
  tark-wasmer plugin add https://github.com/me/plugins.git#v1.2.0 -p auth/gemini
  tark-wasmer plugin add /srv/git/plugins.git#main --json --yes
  tark-wasmer plugin add ./my-plugin --link        # a rebuild is picked up

Sources:
  A path (an existing one, or one starting with /, ./, ../ or ~) is a local directory: it
  is copied whole, except target/ and .git/. --path is joined to it.
  Anything else is a git URL, cloned with the system git (shallow) into a temporary
  directory; only plugin.toml, the wasm module it names and README/LICENSE/COPYING/
  NOTICE/CHANGELOG files next to plugin.toml are installed. The module must be in the
  repository: installing never builds.
  A local path with --branch or #ref is cloned with git too (at that branch or tag).

Refs:
  URL#ref and --branch both name the branch or tag to clone. Giving both is allowed only
  when they are equal; different values are an error. With neither, the repository's
  default branch is cloned. .install.json records the URL as given (a local path as an
  absolute path), the ref as \"branch\" and --path as \"path\", for `plugin update`.

Confirmation:
  The plugin's capabilities are shown before installing. When stdin is a terminal you are
  asked to confirm (--yes skips the question); when stdin is not a terminal (scripts, CI)
  the plugin is installed without asking, as tark does. Nothing is left behind when the
  clone, the checks or the copy fail.

Checks:
  The checks of `plugin check` run first (with the selected compiler); a plugin with
  errors (not a wasm module, exports or world not matching its type, manifest errors, ...)
  is refused with the list of what is wrong, and nothing is installed.

Links:
  --link (or --dev) installs a local directory by reference: the plugins directory gets a
  symbolic link <plugins>/<id> -> the directory, so every rebuild of the module is what
  the next call (and tark) loads. tark follows the link like any plugin directory; the
  plugin's data/ and .disabled live in the linked directory; no .install.json is written,
  so `plugin update` skips it; `plugin remove` deletes only the link.";

const LIST_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin list
  tark-wasmer plugin list --json
  tark-wasmer plugin list | cut -f1        # ids only

On a terminal: a table sized to its width. Piped: one line per plugin, tab-separated
(id, version, type, enabled|disabled, description), no header.";

const INFO_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin info my-plugin
  tark-wasmer plugin info my-plugin --json";

const REMOVE_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin remove my-plugin
  tark-wasmer plugin remove my-plugin --yes --json

This deletes the plugin's directory, including its data/ (storage). On a terminal you are
asked to confirm (--yes skips the question); scripts (stdin not a terminal) are not asked.";

const ENABLE_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin enable my-plugin
  tark-wasmer plugin enable my-plugin --json";

const DISABLE_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin disable my-plugin
  tark-wasmer plugin disable my-plugin --json";

const UPDATE_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin update my-plugin
  tark-wasmer plugin update --all
  tark-wasmer plugin update --all --json

Each plugin is fetched again from its .install.json: git plugins are cloned again (same
URL, branch and --path), local plugins are copied again from the recorded directory (a
relative path written by tark is resolved against the current directory, then recorded
as absolute). data/, .disabled and .install.json are kept; the new version must declare
the same id. A failed update leaves the installed version untouched. --all ends with
`Done. updated=N, skipped=N, failed=N` (skipped: no .install.json) and exits 1 if any
update failed.";

const CHECK_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin check ./my-plugin
  tark-wasmer plugin check my-plugin            # an installed plugin
  tark-wasmer plugin check ./my-plugin --json

Reports manifest errors and warnings, the ABI (legacy or canonical) and world, exports
missing or mistyped for the plugin's type, imports this host does not provide, host
services used versus the capabilities declared, the wasm features the module needs,
whether it compiles with each compiler (and how long that takes), and its size.
Exits 1 when there are errors (the report is printed first).";

const NEW_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin new my-tool --type tool
  tark-wasmer plugin new my-provider --type provider --dir ~/src/my-provider
  cd my-tool && ./build.sh && tark-wasmer plugin check . && tark-wasmer plugin add . --yes

Creates a Rust crate (wit-bindgen 0.36, wasm32-wasip1) that implements the world of the
type with working example functions, a copy of this host's wit/, plugin.toml and
build.sh (rustup's wasm32-wasip1 target when installed, else Debian's Rust with
-Z build-std), which writes plugin.wasm. --dir is the directory to create (default
./NAME); it must not exist or be empty.";

const CALL_EXAMPLES: &str = "\
Examples:
  tark-wasmer call my-provider info
  tark-wasmer call my-provider auth-init '{\"api_key\":\"k\"}'
  tark-wasmer call my-provider chat '[{\"role\":\"user\",\"content\":\"hi\"}]' my-model
  tark-wasmer call --stream my-provider chat '[{\"role\":\"user\",\"content\":\"hi\"}]' my-model
  tark-wasmer call my-channel start -- poll -- poll       # three calls, one instance
  tark-wasmer call my-tool execute word_count '{\"text\":\"a b\"}'
  tark-wasmer call my-hook on-event '{\"kind\":\"session-start\",\"session_id\":\"s\",\"payload_json\":\"{}\"}'
  tark-wasmer call ./my-plugin get-tools              # a plugin directory, not installed
  tark-wasmer call my-provider provider_info          # raw legacy export: its raw text
  tark-wasmer plugin info my-provider                 # every function with its signature
";

const REPL_EXAMPLES: &str = "\
Examples:
  tark-wasmer repl my-provider
  printf '%s\\n' '{\"function\":\"info\"}' '{\"function\":\"models\",\"id\":2}' | tark-wasmer repl my-provider --jsonl

Each line is one call on the same live instance (state such as a stream id or a started
channel carries over). Interactive lines are FUNCTION [ARG]... with shell-like quoting;
`functions` lists what the plugin answers to. --jsonl answers one JSON object per line and
exits 0 at the end of input; each answer's error.code follows the exit status of `call`.";

/// `call --help`: the examples, the functions of each plugin type (from the function
/// table; `*` marks those legacy plugins have too), the argument rule and the exit codes.
fn call_help() -> String {
    use tark_wasmer::plugin::functions;
    let lists: Vec<String> = [
        PluginType::Auth,
        PluginType::Tool,
        PluginType::Provider,
        PluginType::Channel,
        PluginType::Hook,
    ]
    .into_iter()
    .map(|ty| {
        let names: Vec<String> = functions::of_type(ty)
            .filter_map(|f| {
                f.wit
                    .map(|w| format!("{w}{}", if f.legacy.is_some() { "*" } else { "" }))
            })
            .collect();
        let raw: Vec<&str> = functions::of_type(ty)
            .filter_map(|f| f.legacy.map(|l| l.name))
            .collect();
        let mut text = format!("{}: {}", ty.as_str(), names.join(", "));
        if !raw.is_empty() {
            text.push_str(&format!("; legacy exports: {}", raw.join(", ")));
        }
        text
    })
    .collect();
    let rule = "Each ARG is one parameter: text for a string parameter (a quoted JSON string \
                is unquoted), JSON of the parameter's WIT type for the others (invalid JSON \
                or a mismatch is a usage error naming the field). `--` starts another call on \
                the same live instance. Results are printed one JSON line each: records as \
                objects with snake_case keys, enums as strings, results as {\"ok\": v} or \
                {\"err\": e}. A plugin directory (containing a /) runs without installing; \
                its storage lives in the user's data directory (tark-wasmer/dev-data/ID).";
    format!(
        "{CALL_EXAMPLES}\nFunctions by plugin type (* = legacy plugins have it too):\n{}\n\n{}\n\n{}",
        lists
            .iter()
            .map(|l| {
                let w = wrap(l, 86);
                w.lines()
                    .enumerate()
                    .map(|(i, line)| format!("{}{line}", if i == 0 { "  " } else { "      " }))
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        wrap(rule, 90),
        call_cmd::EXIT_CODES
    )
}

/// Greedy word wrap at `width` columns.
fn wrap(text: &str, width: usize) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines.join("\n")
}

/// Run tark's WebAssembly plugins on wasmer.
#[derive(Debug, Parser)]
#[command(name = "tark-wasmer", version, after_help = format!("{MAIN_EXAMPLES}\n\n{}", call_cmd::EXIT_CODES))]
pub struct Cli {
    /// Plugins directory [default: $TARK_PLUGINS_DIR, else tark's, e.g.
    /// ~/.local/share/tark/plugins]
    #[arg(long, global = true, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,

    /// Compiler for plugin code [env: TARK_WASMER_COMPILER] [default: cranelift]
    #[arg(long, global = true, value_enum, value_name = "COMPILER")]
    compiler: Option<CompilerArg>,

    /// Config file [default: $TARK_WASMER_CONFIG, else
    /// $XDG_CONFIG_HOME/tark-wasmer/config.toml, else ~/.config/tark-wasmer/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// More log lines on stderr: -v this crate's debug lines, -vv trace lines (host calls)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr (no warnings, no plugin log lines)
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Log every host call (storage, http, ws, env, fs, log) of every plugin, or of plugin
    /// ID, with arguments truncated [also: RUST_LOG=tark_wasmer::trace=trace]
    #[arg(long, global = true, value_name = "ID", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    trace: Option<String>,

    /// Directory of the compiled-artifact cache [default: $TARK_WASMER_CACHE_DIR, else
    /// e.g. ~/.cache/tark-wasmer/artifacts]
    #[arg(long, global = true, value_name = "DIR")]
    cache_dir: Option<PathBuf>,

    /// Neither read nor write the compiled-artifact cache
    #[arg(long, global = true)]
    no_cache: bool,

    /// Size limit of the artifact cache, e.g. 512M or 2G [default:
    /// $TARK_WASMER_CACHE_MAX_SIZE, else 512M]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size_arg)]
    cache_max_size: Option<u64>,

    /// CPU budget of one plugin call in seconds of guest execution [default: 5]
    #[arg(long, global = true, value_name = "SECONDS")]
    cpu_seconds: Option<f64>,

    /// Wall-clock limit of one plugin call in seconds, 0 for none [default: 120]
    #[arg(long, global = true, value_name = "SECONDS")]
    time_limit: Option<f64>,

    /// Largest linear memory of a plugin instance, e.g. 256M [default: 256M]
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size_arg)]
    memory_max: Option<u64>,

    /// Compile plugins without CPU metering (faster code; only the wall-clock limit remains)
    #[arg(long, global = true)]
    no_metering: bool,

    #[command(subcommand)]
    command: Command,
}

fn parse_size_arg(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// `--compiler` values (clap lists them in errors and help).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum CompilerArg {
    /// Fast compile, slower code.
    Singlepass,
    /// Slower compile, faster code (the default).
    Cranelift,
}

impl From<CompilerArg> for Compiler {
    fn from(c: CompilerArg) -> Self {
        match c {
            CompilerArg::Singlepass => Compiler::Singlepass,
            CompilerArg::Cranelift => Compiler::Cranelift,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage installed plugins (tark's plugin commands)
    #[command(after_help = PLUGIN_EXAMPLES)]
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Call functions of a plugin and print each result as a line of JSON
    #[command(after_help = call_help())]
    Call(CallArgs),
    /// Call functions of a plugin interactively (or from JSON lines) on one live instance
    #[command(after_help = REPL_EXAMPLES)]
    Repl(ReplArgs),
    /// Inspect or empty the on-disk cache of compiled plugin code
    #[command(after_help = cache_cmd::CACHE_EXAMPLES)]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Measure a plugin function on each compiler: compile, cache load, instantiate, calls
    #[command(after_help = bench_cmd::BENCH_EXAMPLES)]
    Bench(bench_cmd::BenchArgs),
    /// Show the settings in effect and where each comes from
    #[command(after_help = CONFIG_EXAMPLES)]
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    #[command(after_help = COMPLETIONS_EXAMPLES)]
    Completions {
        /// Shell to complete for
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff, from these definitions)
    #[command(after_help = MAN_EXAMPLES)]
    Man,
}

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  tark-wasmer completions bash > ~/.local/share/bash-completion/completions/tark-wasmer
  tark-wasmer completions zsh > ~/.zfunc/_tark-wasmer
  tark-wasmer completions fish > ~/.config/fish/completions/tark-wasmer.fish";

const MAN_EXAMPLES: &str = "\
Examples:
  tark-wasmer man | man -l -
  tark-wasmer man > ~/.local/share/man/man1/tark-wasmer.1";

const CONFIG_EXAMPLES: &str = "\
Examples:
  tark-wasmer config show
  tark-wasmer --compiler singlepass config show --json
  tark-wasmer --config ./ci.toml config show

Precedence: flag > environment variable > config file > default.";

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print every setting with its value and source (flag, env, file or default)
    #[command(after_help = format!("{CONFIG_EXAMPLES}\n\n{}", config::CONFIG_EXAMPLE))]
    Show {
        /// Print a JSON object instead of a table
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Show the cache directory, entry count, total size and limit
    #[command(after_help = cache_cmd::CACHE_EXAMPLES)]
    Stats {
        /// Print a JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Remove every cached artifact
    #[command(after_help = cache_cmd::CACHE_EXAMPLES)]
    Clear {
        /// Print a JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

/// `--type` values of `plugin new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TypeArg {
    /// Authentication (auth-world).
    Auth,
    /// Tools the agent can run (tool-world).
    Tool,
    /// An LLM provider (provider-world).
    Provider,
    /// A messaging channel (channel-world).
    Channel,
    /// Lifecycle hooks (hook-world).
    Hook,
}

impl From<TypeArg> for PluginType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Auth => PluginType::Auth,
            TypeArg::Tool => PluginType::Tool,
            TypeArg::Provider => PluginType::Provider,
            TypeArg::Channel => PluginType::Channel,
            TypeArg::Hook => PluginType::Hook,
        }
    }
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Install a plugin from a git repository or a local directory
    #[command(after_help = ADD_EXAMPLES)]
    Add {
        /// Git URL (optionally URL#ref) or local directory holding plugin.toml
        #[arg(value_name = "URL|PATH")]
        source: String,
        /// Branch or tag to clone (same as URL#ref) [default: the repository's default branch]
        #[arg(short, long, value_name = "REF")]
        branch: Option<String>,
        /// Plugin directory inside the repository or local directory
        #[arg(short, long, value_name = "SUBDIR")]
        path: Option<String>,
        /// Install without asking for confirmation
        #[arg(short, long)]
        yes: bool,
        /// Link a local plugin directory instead of copying it: a rebuild is picked up
        /// without `plugin update` (see "Links" below)
        #[arg(long, visible_alias = "dev", conflicts_with_all = ["branch"])]
        link: bool,
        /// Print the installed plugin as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// List installed plugins, sorted by id
    #[command(after_help = LIST_EXAMPLES)]
    List {
        /// Print a JSON array instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's manifest, capabilities, ABI, world and paths
    #[command(after_help = INFO_EXAMPLES)]
    Info {
        /// Plugin id
        id: String,
        /// Print a JSON object instead of text
        #[arg(long)]
        json: bool,
    },
    /// Uninstall a plugin (including its data)
    #[command(after_help = REMOVE_EXAMPLES)]
    Remove {
        /// Plugin id
        id: String,
        /// Remove without asking for confirmation
        #[arg(short, long)]
        yes: bool,
        /// Print the removed plugin as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Enable a plugin (delete its .disabled marker)
    #[command(after_help = ENABLE_EXAMPLES)]
    Enable {
        /// Plugin id
        id: String,
        /// Print the plugin as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Disable a plugin (write its .disabled marker)
    #[command(after_help = DISABLE_EXAMPLES)]
    Disable {
        /// Plugin id
        id: String,
        /// Print the plugin as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Fetch installed plugins again from where they were installed from
    #[command(after_help = UPDATE_EXAMPLES)]
    Update {
        /// Plugin id (or --all)
        id: Option<String>,
        /// Update every installed plugin
        #[arg(long)]
        all: bool,
        /// Print a JSON summary instead of text
        #[arg(long)]
        json: bool,
    },
    /// Check a plugin: manifest, ABI, exports, imports vs capabilities, compilers
    #[command(after_help = CHECK_EXAMPLES)]
    Check {
        /// Plugin directory (or its plugin.toml), or the id of an installed plugin
        #[arg(value_name = "PATH|ID")]
        target: String,
        /// Print the report as JSON
        #[arg(long)]
        json: bool,
    },
    /// Create a new plugin crate that builds and passes `plugin check`
    #[command(after_help = NEW_EXAMPLES)]
    New {
        /// Plugin name (its id and cargo package name)
        name: String,
        /// Plugin type
        #[arg(short = 't', long = "type", value_enum, value_name = "TYPE")]
        plugin_type: TypeArg,
        /// Directory to create [default: ./NAME]
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Print what was created as JSON
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `call`.
#[derive(Debug, Args)]
pub struct CallArgs {
    /// Stream a provider's chat: chat-stream-start, then chat-stream-poll until done,
    /// one JSON line per chunk as it arrives
    #[arg(long)]
    stream: bool,
    /// Plugin id, or a plugin directory (not installed: runs its current build)
    #[arg(value_name = "ID|PATH")]
    id: String,
    /// The function (kebab-case interface name or raw legacy export), then its
    /// parameters, one per argument: text for string parameters, JSON for the others;
    /// `--` starts the next call on the same instance
    #[arg(
        value_name = "FUNCTION [ARG]...",
        required = true,
        allow_hyphen_values = true,
        trailing_var_arg = true
    )]
    call: Vec<String>,
}

/// Arguments of `repl`.
#[derive(Debug, Args)]
pub struct ReplArgs {
    /// Plugin id, or a plugin directory (not installed)
    #[arg(value_name = "ID|PATH")]
    id: String,
    /// Read one JSON request per line ({"function": "f", "args": [...], "id": any}) and
    /// answer one JSON line each ({"result": v} or {"error": {"code", "message"}})
    #[arg(long)]
    jsonl: bool,
}

/// Settings every command shares, resolved once.
pub struct Global {
    /// Absolute plugins directory.
    pub plugins_dir: PathBuf,
    /// Compiler: `--compiler`, `TARK_WASMER_COMPILER`, the config file, or the default.
    pub compiler: Option<Compiler>,
    /// Artifact cache from `--cache-dir`, `--no-cache`, `--cache-max-size`, the
    /// environment or the config file (every part resolved).
    pub cache: CacheConfig,
    /// Limits from `--cpu-seconds`, `--time-limit`, `--memory-max`, `--no-metering` or the
    /// config file.
    pub limits: tark_wasmer::Limits,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.quiet, cli.trace.as_deref());
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}", format_error(&e));
            ExitCode::from(call_cmd::exit_code(&e))
        }
    }
}

/// The log filter for `-v` count, `-q` and `--trace[=ID]`, before `RUST_LOG`: warnings
/// of every crate (never the compilers' debug output) plus plugin log lines; `-v` this
/// crate at debug, `-vv` at trace (host calls included); `-q` errors only.
pub fn log_filter(verbose: u8, quiet: bool, trace: Option<&str>) -> String {
    let mut filter = match (quiet, verbose) {
        (true, _) => "error".to_string(),
        (false, 0) => "warn,tark_wasmer::plugin=info".to_string(),
        (false, 1) => "warn,tark_wasmer=debug".to_string(),
        (false, _) => "warn,tark_wasmer=trace".to_string(),
    };
    match trace {
        Some("") => filter.push_str(&format!(",{}=trace", tark_wasmer::TRACE_TARGET)),
        Some(id) => filter.push_str(&format!(",{}::{id}=trace", tark_wasmer::TRACE_TARGET)),
        None => {}
    }
    filter
}

fn init_logging(verbose: u8, quiet: bool, trace: Option<&str>) {
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&log_filter(verbose, quiet, trace));
    if let Ok(user) = std::env::var("RUST_LOG") {
        builder.parse_filters(&user);
    }
    builder.format_timestamp(None).init();
}

/// The shared settings (flag > env > config file > default) as the commands use them.
fn resolve_global(cli: &Cli) -> anyhow::Result<(Global, config::Settings)> {
    let flags = config::Flags {
        config: cli.config.clone(),
        plugins_dir: cli.plugins_dir.clone(),
        compiler: cli.compiler.map(Compiler::from),
        cache_dir: cli.cache_dir.clone(),
        no_cache: cli.no_cache,
        cache_max_size: cli.cache_max_size,
        cpu_seconds: cli.cpu_seconds,
        time_limit: cli.time_limit,
        memory_max: cli.memory_max,
        no_metering: cli.no_metering,
    };
    let settings = config::resolve(&flags)?;
    let global = Global {
        plugins_dir: settings.plugins_dir.0.clone(),
        compiler: Some(settings.compiler.0),
        cache: settings.cache(),
        limits: settings.limits(),
    };
    Ok((global, settings))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let mut out = Out::stdout();
    // Generated from the definitions: no settings needed (a bad config must not break them).
    match &cli.command {
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut cmd, "tark-wasmer", &mut buf);
            out.raw(&buf)?;
            return Ok(out.flush()?);
        }
        Command::Man => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).render(&mut buf)?;
            out.raw(&buf)?;
            return Ok(out.flush()?);
        }
        _ => {}
    }
    let (global, settings) = resolve_global(&cli)?;
    match cli.command {
        Command::Plugin { command } => match command {
            PluginCommand::Add {
                source,
                branch,
                path,
                yes,
                link,
                json,
            } => {
                let req = plugin_cmd::AddRequest {
                    source,
                    branch,
                    path,
                    yes,
                    link,
                    json,
                };
                out.narrate(|out| plugin_cmd::add(&global, &req, out))?
            }
            PluginCommand::List { json } => plugin_cmd::list(&global, json, &mut out)?,
            PluginCommand::Info { id, json } => plugin_cmd::info(&global, &id, json, &mut out)?,
            PluginCommand::Remove { id, yes, json } => {
                plugin_cmd::remove(&global, &id, yes, json, &mut out)?
            }
            PluginCommand::Enable { id, json } => plugin_cmd::enable(&global, &id, json, &mut out)?,
            PluginCommand::Disable { id, json } => {
                plugin_cmd::disable(&global, &id, json, &mut out)?
            }
            PluginCommand::Update { id, all, json } => {
                if all {
                    // `--all` reports each plugin as it goes (tark's summary), failures too.
                    update_cmd::update(&global, id.as_deref(), all, json, &mut out)?
                } else {
                    out.narrate(|out| update_cmd::update(&global, id.as_deref(), all, json, out))?
                }
            }
            PluginCommand::Check { target, json } => {
                check_cmd::check(&global, &target, json, &mut out)?
            }
            PluginCommand::New {
                name,
                plugin_type,
                dir,
                json,
            } => new_cmd::new_plugin(&name, plugin_type.into(), dir.as_deref(), json, &mut out)?,
        },
        Command::Call(args) => {
            call_cmd::call(&global, &args.id, &args.call, args.stream, &mut out)?
        }
        Command::Repl(args) => call_cmd::repl(&global, &args.id, args.jsonl, &mut out)?,
        Command::Cache { command } => match command {
            CacheCommand::Stats { json } => cache_cmd::stats(&global, json, &mut out)?,
            CacheCommand::Clear { json } => cache_cmd::clear(&global, json, &mut out)?,
        },
        Command::Bench(args) => bench_cmd::bench(&global, &args, &mut out)?,
        Command::Config {
            command: ConfigCommand::Show { json },
        } => config_show(&settings, json, &mut out)?,
        Command::Completions { .. } | Command::Man => {}
    }
    out.flush()?;
    Ok(())
}

/// `config show [--json]`.
fn config_show(settings: &config::Settings, json: bool, out: &mut Out) -> anyhow::Result<()> {
    if json {
        out.json(&settings.to_json())?;
        return Ok(());
    }
    let rows: Vec<Vec<output::Cell>> = settings
        .rows()
        .into_iter()
        .map(|(k, v, s)| {
            vec![
                output::Cell::plain(k),
                output::Cell::plain(v),
                output::Cell::plain(s.to_string()),
            ]
        })
        .collect();
    if !out.is_terminal() {
        for line in output::tsv(&rows) {
            out.line(line)?;
        }
        return Ok(());
    }
    let file = match &settings.file {
        Some(p) if settings.file_found => p.display().to_string(),
        Some(p) => format!("{} (not found)", p.display()),
        None => "(none: no home directory)".into(),
    };
    out.line(format!("Config file: {}", output::printable(&file)))?;
    for line in output::table(out, &["Setting", "Value", "Source"], &rows) {
        out.line(line)?;
    }
    Ok(())
}

/// A closed stdout (`tark-wasmer plugin list | head -1`) ends the program quietly.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `Error: <message>` plus a `Caused by:` list of the causes whose text the message does
/// not already contain (library errors often quote their cause).
fn format_error(e: &anyhow::Error) -> String {
    let top = e.to_string();
    let mut shown = top.clone();
    let mut causes = Vec::new();
    let mut source: Option<&(dyn StdError + 'static)> = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !shown.contains(&text) {
            shown.push('\n');
            shown.push_str(&text);
            causes.push(text);
        }
        source = cause.source();
    }
    let mut msg = format!("Error: {top}");
    if !causes.is_empty() {
        msg.push_str("\n\nCaused by:");
        for (i, c) in causes.iter().enumerate() {
            if causes.len() == 1 {
                msg.push_str(&format!("\n    {c}"));
            } else {
                msg.push_str(&format!("\n    {i}: {c}"));
            }
        }
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn call_help_covers_every_plugin_type_and_the_exit_codes() {
        let help = call_help();
        for needle in [
            "  auth: display-name*, status*, start-device-flow, poll, get-token*, logout*;",
            "  tool: get-tools, get-risk-level, execute\n",
            "chat-stream-start, chat-stream-poll; legacy exports: provider_info",
            "  hook: name, subscriptions, on-event\n",
            "handle-webhook*",
            "  3  the plugin reported a failure",
        ] {
            assert!(help.contains(needle), "{needle:?} not in\n{help}");
        }
    }

    #[test]
    fn log_filters_keep_compiler_internals_out() {
        assert_eq!(log_filter(0, false, None), "warn,tark_wasmer::plugin=info");
        assert_eq!(log_filter(1, false, None), "warn,tark_wasmer=debug");
        assert_eq!(log_filter(3, false, None), "warn,tark_wasmer=trace");
        assert_eq!(log_filter(0, true, None), "error");
        assert_eq!(
            log_filter(0, false, Some("")),
            "warn,tark_wasmer::plugin=info,tark_wasmer::trace=trace"
        );
        assert_eq!(
            log_filter(0, true, Some("p1")),
            "error,tark_wasmer::trace::p1=trace"
        );
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn error_format_skips_causes_already_quoted() {
        let inner = std::io::Error::other("disk on fire");
        let e = anyhow::Error::new(inner).context("Failed to write x: disk on fire");
        assert_eq!(format_error(&e), "Error: Failed to write x: disk on fire");
        let e = anyhow::Error::new(std::io::Error::other("disk on fire")).context("Failed");
        assert_eq!(
            format_error(&e),
            "Error: Failed\n\nCaused by:\n    disk on fire"
        );
    }
}
