//! The `tark-wasmer` command line: tark's `plugin` management commands on tark's plugins
//! directory, plus `call` to run one plugin function and print its result as JSON.
//!
//! Errors are printed as `Error: <message>` (with a `Caused by:` list of the underlying
//! causes that the message does not already say) and exit with status 1; usage errors
//! are clap's (status 2).
//!
//! Logging goes to stderr through `env_logger`: `RUST_LOG` is respected, and the default
//! level is `warn` for everything (tark shows warnings and errors by default), so plugin
//! log lines below warn (`[plugin:<id>] ...` at info) appear only with `RUST_LOG=info`.

mod cache_cmd;
mod call_cmd;
mod check_cmd;
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
use tark_wasmer::registry::resolve_plugins_dir;

use output::Out;

/// Environment equivalent of `--compiler`.
const COMPILER_ENV: &str = "TARK_WASMER_COMPILER";

const MAIN_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin add ./my-plugin
  tark-wasmer plugin list
  tark-wasmer --compiler cranelift call my-provider models
  TARK_PLUGINS_DIR=/tmp/plugins tark-wasmer plugin list --json

Environment:
  TARK_PLUGINS_DIR       plugins directory (same as --plugins-dir)
  TARK_WASMER_COMPILER   singlepass or cranelift (same as --compiler)
  TARK_WASMER_CA_FILE    PEM file of extra trusted root certificates for plugin HTTPS/WSS
  TARK_WASMER_CACHE_DIR  compiled-artifact cache directory (same as --cache-dir)
  TARK_WASMER_CACHE_MAX_SIZE  artifact cache size limit, e.g. 512M (same as --cache-max-size)
  RUST_LOG               log filter (default: warn; RUST_LOG=info shows plugin log lines)
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
  clone, the checks or the copy fail.";

const LIST_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin list
  tark-wasmer plugin list --json";

const INFO_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin info my-plugin
  tark-wasmer plugin info my-plugin --json";

const REMOVE_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin remove my-plugin
  tark-wasmer plugin remove my-plugin --json

This deletes the plugin's directory, including its data/ (storage).";

const ENABLE_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin enable my-plugin";

const DISABLE_EXAMPLES: &str = "\
Examples:
  tark-wasmer plugin disable my-plugin";

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
  tark-wasmer call my-auth display-name
  tark-wasmer call my-provider provider_info      # raw legacy export: its raw text
";

/// `call --help`: the examples, then the functions of each type both ABIs have (from
/// the function table).
fn call_help() -> String {
    use tark_wasmer::plugin::functions;
    let lists: Vec<String> = [PluginType::Auth, PluginType::Provider, PluginType::Channel]
        .into_iter()
        .map(|ty| {
            let names: Vec<&str> = functions::of_type(ty)
                .filter(|f| f.legacy.is_some())
                .filter_map(|f| f.wit)
                .collect();
            format!("{}: {}", ty.as_str(), names.join(", "))
        })
        .collect();
    let text = format!(
        "FUNCTION is a kebab-case function of the plugin's tark interface ({}) or a raw legacy \
         export name. Each ARG is one parameter as JSON; an ARG that is not valid JSON is \
         taken as a string. The result is printed as one line of JSON; any failure prints a \
         message on stderr and exits 1.",
        lists.join("; ")
    );
    format!("{CALL_EXAMPLES}\n{}", wrap(&text, 90))
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
#[command(name = "tark-wasmer", version, after_help = MAIN_EXAMPLES)]
pub struct Cli {
    /// Plugins directory [default: $TARK_PLUGINS_DIR, else tark's, e.g.
    /// ~/.local/share/tark/plugins]
    #[arg(long, global = true, value_name = "DIR")]
    plugins_dir: Option<PathBuf>,

    /// Compiler for plugin code [env: TARK_WASMER_COMPILER] [default: cranelift]
    #[arg(long, global = true, value_enum, value_name = "COMPILER")]
    compiler: Option<CompilerArg>,

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
    /// Fast compile, slower code (default).
    Singlepass,
    /// Slower compile, faster code.
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
    /// Call one function of an installed plugin and print the result as JSON
    #[command(after_help = call_help())]
    Call(CallArgs),
    /// Inspect or empty the on-disk cache of compiled plugin code
    #[command(after_help = cache_cmd::CACHE_EXAMPLES)]
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
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
    Clear,
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
        /// Print the removed plugin as JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Enable a plugin (delete its .disabled marker)
    #[command(after_help = ENABLE_EXAMPLES)]
    Enable {
        /// Plugin id
        id: String,
    },
    /// Disable a plugin (write its .disabled marker)
    #[command(after_help = DISABLE_EXAMPLES)]
    Disable {
        /// Plugin id
        id: String,
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
    /// Plugin id
    id: String,
    /// Function name (kebab-case interface name or raw legacy export)
    function: String,
    /// Parameters, one per argument, as JSON (non-JSON text is a string)
    #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
    args: Vec<String>,
}

/// Settings every command shares, resolved once.
pub struct Global {
    /// Absolute plugins directory.
    pub plugins_dir: PathBuf,
    /// Compiler from `--compiler` / `TARK_WASMER_COMPILER`, if given.
    pub compiler: Option<Compiler>,
    /// Artifact cache from `--cache-dir`, `--no-cache`, `--cache-max-size` (the library
    /// resolves what is not given from the environment).
    pub cache: CacheConfig,
    /// Limits from `--cpu-seconds`, `--time-limit`, `--memory-max`, `--no-metering`.
    pub limits: tark_wasmer::Limits,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("{}", format_error(&e));
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
}

/// `--compiler`, else `TARK_WASMER_COMPILER` when set and non-empty (an empty value means
/// unset, as in the library).
fn compiler_choice(flag: Option<CompilerArg>) -> anyhow::Result<Option<Compiler>> {
    if let Some(c) = flag {
        return Ok(Some(c.into()));
    }
    let Some(raw) = std::env::var_os(COMPILER_ENV).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let valid = CompilerArg::value_variants()
        .iter()
        .filter_map(|v| v.to_possible_value())
        .map(|v| v.get_name().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let text = raw.to_string_lossy();
    CompilerArg::from_str(text.trim(), true)
        .map(|c| Some(c.into()))
        .map_err(|_| {
            anyhow::anyhow!("invalid {COMPILER_ENV} value '{text}' (possible values: {valid})")
        })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = resolve_plugins_dir(cli.plugins_dir);
    let plugins_dir = std::path::absolute(&dir).unwrap_or(dir);
    let mut limits = tark_wasmer::Limits::default();
    if let Some(t) = cli.cpu_seconds {
        if !t.is_finite() || t <= 0.0 {
            anyhow::bail!("--cpu-seconds must be a number of seconds > 0, got {t}");
        }
        limits.cpu_time = std::time::Duration::try_from_secs_f64(t)
            .map_err(|e| anyhow::anyhow!("--cpu-seconds {t}: {e}"))?;
    }
    if let Some(t) = cli.time_limit {
        if !t.is_finite() || t < 0.0 {
            anyhow::bail!(
                "--time-limit must be a number of seconds >= 0 (0 for no limit), got {t}"
            );
        }
        limits.call_time_limit = (t > 0.0).then(|| std::time::Duration::from_secs_f64(t));
    }
    if let Some(m) = cli.memory_max {
        limits.memory_max = m;
    }
    if cli.no_metering {
        limits.cpu_metering = false;
    }
    let global = Global {
        limits,
        plugins_dir,
        compiler: compiler_choice(cli.compiler)?,
        cache: CacheConfig {
            disabled: cli.no_cache,
            dir: cli.cache_dir.map(|d| std::path::absolute(&d).unwrap_or(d)),
            max_bytes: cli.cache_max_size,
        },
    };
    let mut out = Out::stdout();
    match cli.command {
        Command::Plugin { command } => match command {
            PluginCommand::Add {
                source,
                branch,
                path,
                yes,
                json,
            } => {
                let req = plugin_cmd::AddRequest {
                    source,
                    branch,
                    path,
                    yes,
                    json,
                };
                plugin_cmd::add(&global, &req, &mut out)?
            }
            PluginCommand::List { json } => plugin_cmd::list(&global, json, &mut out)?,
            PluginCommand::Info { id, json } => plugin_cmd::info(&global, &id, json, &mut out)?,
            PluginCommand::Remove { id, json } => plugin_cmd::remove(&global, &id, json, &mut out)?,
            PluginCommand::Enable { id } => plugin_cmd::enable(&global, &id, &mut out)?,
            PluginCommand::Disable { id } => plugin_cmd::disable(&global, &id, &mut out)?,
            PluginCommand::Update { id, all, json } => {
                update_cmd::update(&global, id.as_deref(), all, json, &mut out)?
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
            call_cmd::call(&global, &args.id, &args.function, &args.args, &mut out)?
        }
        Command::Cache { command } => match command {
            CacheCommand::Stats { json } => cache_cmd::stats(&global, json, &mut out)?,
            CacheCommand::Clear => cache_cmd::clear(&global, &mut out)?,
        },
    }
    out.flush()?;
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
    fn call_help_lists_the_functions_of_both_abis() {
        let expected = "\
FUNCTION is a kebab-case function of the plugin's tark interface (auth: display-name,
status, get-token, logout; provider: info, models, auth-status, auth-init, auth-logout,
chat; channel: info, start, stop, auth-status, auth-init, auth-logout, widget-state,
handle-webhook, handle-gateway-event, poll, send) or a raw legacy export name. Each ARG is
one parameter as JSON; an ARG that is not valid JSON is taken as a string. The result is
printed as one line of JSON; any failure prints a message on stderr and exits 1.";
        assert_eq!(call_help(), format!("{CALL_EXAMPLES}\n{expected}"));
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
