//! `plugin new <NAME> --type <TYPE> [--dir DIR]`: a plugin crate that builds to a working
//! canonical-ABI plugin as generated, so authors start from something that passes
//! `plugin check` and can be installed and called at once.
//!
//! The crate implements the world of its type (`auth-world`, `tool-world`,
//! `provider-world`, `channel-world`, `hook-world`) with wit-bindgen 0.36 against a copy of
//! this host's `wit/` (embedded in the binary, so the copy always matches the host), and
//! carries `build.sh`, which builds for wasm32-wasip1 through rustup when it has the target
//! and otherwise through Debian's Rust with `-Z build-std` (the same two routes as
//! `scripts/build-plugins.sh`), then copies the module to `plugin.wasm`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::json;

use tark_wasmer::manifest::PluginType;

use super::output::{Out, Style};

/// The WIT files written to `<crate>/wit/` (the host's contract; the conformance test
/// world is left out).
const WIT_FILES: &[(&str, &str)] = &[
    ("tark.wit", include_str!("../../wit/tark.wit")),
    ("hook.wit", include_str!("../../wit/hook.wit")),
];

const CARGO_TOML: &str = r#"[package]
name = "{{NAME}}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]
path = "src/lib.rs"

[dependencies]
wit-bindgen = { version = "0.36", default-features = false, features = ["macros", "realloc"] }

# A crate of its own, even when created inside another cargo workspace.
[workspace]

# Small modules; panic = "abort" turns a panic into a wasm trap, which the host reports as
# an error for that call.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
debug = false
strip = true

[profile.dev]
panic = "abort"
"#;

const BUILD_SH: &str = r#"#!/usr/bin/env bash
# Builds this plugin for wasm32-wasip1 and copies the module to plugin.wasm (where
# plugin.toml expects it).
#
# Route: rustup's cargo when `rustup target list --installed` has wasm32-wasip1 (run
# `rustup target add wasm32-wasip1` once); otherwise Debian's Rust with the standard
# library built from source (`apt-get install rustc-web cargo-web rust-web-src lld
# wasi-libc`), with RUSTC_BOOTSTRAP=1 -Z build-std=std,panic_abort and wasm-ld.
# Target directory: CARGO_TARGET_DIR when set, else one directory shared by every
# scaffolded plugin, ${XDG_CACHE_HOME:-~/.cache}/tark-wasmer/plugin-target, so the
# standard library and wit-bindgen are built once for all of them (minutes), not once per
# plugin. Plugins are told apart by their package names. Works from any current directory.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
cd "$HERE"
TARGET=wasm32-wasip1

die() {
    echo "build.sh: error: $*" >&2
    exit 1
}

PKG="$(sed -n '/^\[package\]/,/^\[/s/^name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' Cargo.toml | head -n1)"
[[ -n $PKG ]] || die "Cargo.toml has no [package] name"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tark-wasmer/plugin-target}"

rustup_has_target=0
if command -v rustup >/dev/null 2>&1; then
    if rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        rustup_has_target=1
    fi
fi

if [[ $rustup_has_target == 1 ]]; then
    # The cargo proxy next to rustup (PATH may put Debian's /usr/bin/cargo first).
    cargo_bin="$(dirname "$(command -v rustup)")/cargo"
    [[ -x $cargo_bin ]] || cargo_bin=cargo
    echo "build.sh: $TARGET via rustup"
    "$cargo_bin" build --release --target "$TARGET"
else
    missing=()
    [[ -x /usr/bin/cargo && -x /usr/bin/rustc ]] || missing+=("rustc-web" "cargo-web")
    [[ -d /usr/lib/rustlib/src/rust/library ]] || missing+=("rust-web-src")
    PATH="/usr/bin:$PATH" command -v wasm-ld >/dev/null 2>&1 || missing+=("lld")
    [[ -f /usr/lib/wasm32-wasi/libc.a ]] || missing+=("wasi-libc")
    if [[ ${#missing[@]} -gt 0 ]]; then
        die "rustup has no $TARGET target and Debian's wasm toolchain is incomplete.
  Either run:  rustup target add $TARGET
  or install:  apt-get install ${missing[*]}"
    fi
    echo "build.sh: $TARGET via Debian rustc + build-std"
    # Debian's rustc/cargo must be used as a pair with their std source; clear variables
    # an outer cargo/rustup may have set that would override the compiler or flags.
    env -u CARGO_ENCODED_RUSTFLAGS -u RUSTC_WRAPPER -u RUSTC_WORKSPACE_WRAPPER \
        -u CARGO_BUILD_RUSTC -u CARGO_BUILD_TARGET -u RUSTUP_TOOLCHAIN \
        PATH="/usr/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
        RUSTFLAGS="-C linker=wasm-ld -C link-self-contained=no -L /usr/lib/wasm32-wasi" \
        /usr/bin/cargo build --release --target "$TARGET" -Z build-std=std,panic_abort
fi

OUT="$CARGO_TARGET_DIR/$TARGET/release/${PKG//-/_}.wasm"
[[ -f $OUT ]] || die "cargo succeeded but $OUT does not exist"
cp "$OUT" "plugin.wasm.tmp.$$"
mv -f "plugin.wasm.tmp.$$" plugin.wasm
echo "build.sh: wrote $HERE/plugin.wasm ($(wc -c <plugin.wasm | tr -d '[:space:]') bytes)"
"#;

const GITIGNORE: &str = "/target\n";

const README: &str = r#"# {{NAME}}

A tark {{TYPE}} plugin (world `{{WORLD}}`), generated by `tark-wasmer plugin new`.

    ./build.sh                            # builds plugin.wasm
    tark-wasmer plugin check .            # exports, imports, capabilities, compilers
    tark-wasmer plugin add . --yes        # installs it into tark's plugins directory
    tark-wasmer call {{NAME}} {{CALL}}

- `src/lib.rs` implements the world against `wit/` (this host's copy of tark's contract).
- `plugin.toml` declares what the plugin may reach: add hosts to `[capabilities] http`
  before importing `tark::plugin::http`, names to `env` before reading variables, paths to
  `fs_read` before reading files.
- Commit `plugin.wasm` if the plugin is to be installed from git (`plugin add <url>`):
  installing never builds.
"#;

const LIB_HEADER: &str = r#"//! {{NAME}}: a tark {{TYPE}} plugin (world `{{WORLD}}`), built with wit-bindgen 0.36 for
//! wasm32-wasip1 (./build.sh). The host calls the functions of `impl Guest` below; the
//! imports it offers are in `wit/tark.wit` (storage, http, env, log, fs; ws for channels).

wit_bindgen::generate!({
    world: "{{WORLD}}",
    path: "wit",
});

"#;

const LIB_AUTH: &str = r#"use exports::tark::plugin::auth_plugin::{AuthStatus, DeviceCode, Guest, PollResult};
use tark::plugin::{log, storage};

/// Storage key of the token.
const TOKEN_KEY: &str = "access_token";

struct Plugin;

impl Guest for Plugin {
    fn display_name() -> String {
        "{{NAME}}".to_string()
    }

    fn status() -> AuthStatus {
        match storage::get(TOKEN_KEY) {
            Some(_) => AuthStatus::Authenticated,
            None => AuthStatus::NotAuthenticated,
        }
    }

    fn start_device_flow() -> Result<DeviceCode, String> {
        // Ask your authorization server for a device code here (import `http` and add its
        // host to [capabilities] http in plugin.toml).
        Err("device flow not implemented yet".to_string())
    }

    fn poll(_device_code: String) -> PollResult {
        PollResult::Error("device flow not implemented yet".to_string())
    }

    fn get_token() -> Result<String, String> {
        storage::get(TOKEN_KEY).ok_or_else(|| "not authenticated".to_string())
    }

    fn logout() -> Result<(), String> {
        log::info("logging out");
        storage::delete(TOKEN_KEY)
    }
}

export!(Plugin);
"#;

const LIB_TOOL: &str = r##"use exports::tark::plugin::tool_plugin::{Guest, RiskLevel, ToolDef, ToolResult};

struct Plugin;

impl Guest for Plugin {
    fn get_tools() -> Vec<ToolDef> {
        vec![ToolDef {
            name: "echo".to_string(),
            description: "Returns its arguments unchanged".to_string(),
            parameters_schema: r#"{"type":"object","properties":{"text":{"type":"string"}}}"#
                .to_string(),
        }]
    }

    fn get_risk_level(_tool_name: String) -> RiskLevel {
        RiskLevel::ReadOnly
    }

    fn execute(tool_name: String, arguments: String) -> ToolResult {
        match tool_name.as_str() {
            "echo" => ToolResult {
                success: true,
                output: arguments,
                error: None,
            },
            other => ToolResult {
                success: false,
                output: String::new(),
                error: Some(format!("unknown tool: {other}")),
            },
        }
    }
}

export!(Plugin);
"##;

const LIB_PROVIDER: &str = r#"use exports::tark::plugin::provider_plugin::{
    ChatResponse, Guest, Message, ModelInfo, ProviderAuthStatus, ProviderInfo, Role, StreamChunk,
};

struct Plugin;

impl Guest for Plugin {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "{{NAME}}".to_string(),
            display_name: "{{NAME}}".to_string(),
            description: "Answers with the last user message".to_string(),
            requires_auth: false,
        }
    }

    fn models() -> Vec<ModelInfo> {
        vec![ModelInfo {
            id: "echo".to_string(),
            display_name: "Echo".to_string(),
            context_window: 8192,
            supports_streaming: false,
            supports_tools: false,
        }]
    }

    fn auth_status() -> ProviderAuthStatus {
        ProviderAuthStatus::NotRequired
    }

    fn auth_init(_credentials_json: String) -> Result<(), String> {
        Ok(())
    }

    fn auth_logout() -> Result<(), String> {
        Ok(())
    }

    fn chat(messages: Vec<Message>, _model: String) -> Result<ChatResponse, String> {
        // Call your model's API here (import `http` and add its host to
        // [capabilities] http in plugin.toml).
        let last = messages
            .iter()
            .rev()
            .find(|m| matches!(m.role, Role::User))
            .map(|m| m.content.clone())
            .unwrap_or_default();
        Ok(ChatResponse {
            text: format!("echo: {last}"),
            usage: None,
            finish_reason: Some("stop".to_string()),
        })
    }

    fn chat_stream_start(_messages: Vec<Message>, _model: String) -> Result<u64, String> {
        Err("streaming is not supported by this provider".to_string())
    }

    fn chat_stream_poll(_stream_id: u64) -> Result<StreamChunk, String> {
        Err("streaming is not supported by this provider".to_string())
    }
}

export!(Plugin);
"#;

const LIB_CHANNEL: &str = r#"use exports::tark::plugin::channel_plugin::{
    ChannelAuthStatus, ChannelInfo, Guest, InboundMessage, OutboundMessage, SendResult,
    WebhookRequest, WebhookResponse,
};
use tark::plugin::log;

struct Plugin;

impl Guest for Plugin {
    fn info() -> ChannelInfo {
        ChannelInfo {
            id: "{{NAME}}".to_string(),
            display_name: "{{NAME}}".to_string(),
            description: "Turns webhook bodies into messages".to_string(),
            supports_streaming: false,
            supports_edits: false,
        }
    }

    fn start() -> Result<(), String> {
        log::info("channel started");
        Ok(())
    }

    fn stop() -> Result<(), String> {
        Ok(())
    }

    fn auth_status() -> ChannelAuthStatus {
        ChannelAuthStatus::NotRequired
    }

    fn auth_init(_credentials_json: String) -> Result<(), String> {
        Ok(())
    }

    fn auth_logout() -> Result<(), String> {
        Ok(())
    }

    fn widget_state() -> Result<String, String> {
        Ok("{}".to_string())
    }

    fn handle_webhook(request: WebhookRequest) -> Result<WebhookResponse, String> {
        // Every webhook body becomes one inbound message.
        Ok(WebhookResponse {
            status: 200,
            headers: Vec::new(),
            body: "ok".to_string(),
            messages: vec![InboundMessage {
                conversation_id: "webhook".to_string(),
                user_id: "webhook".to_string(),
                text: request.body,
                metadata_json: String::new(),
            }],
        })
    }

    fn handle_gateway_event(_payload_json: String) -> Result<Vec<InboundMessage>, String> {
        Ok(Vec::new())
    }

    fn poll() -> Result<Vec<InboundMessage>, String> {
        Ok(Vec::new())
    }

    fn send(message: OutboundMessage) -> Result<SendResult, String> {
        // Deliver the message here (import `http` or `ws` and add the host to
        // [capabilities] http in plugin.toml).
        log::info(&format!(
            "send to {}: {} bytes",
            message.conversation_id,
            message.text.len()
        ));
        Ok(SendResult {
            success: true,
            message_id: message.message_id,
            error: None,
        })
    }
}

export!(Plugin);
"#;

const LIB_HOOK: &str = r#"use exports::tark::plugin::hook_plugin::{Guest, HookDecision, HookEvent, HookEventKind};

struct Plugin;

impl Guest for Plugin {
    fn name() -> String {
        "{{NAME}}".to_string()
    }

    fn subscriptions() -> Vec<HookEventKind> {
        vec![HookEventKind::UserMessage]
    }

    fn on_event(_event: HookEvent) -> HookDecision {
        // Return HookDecision::Rewrite(new_payload_json) or HookDecision::Block(reason) to
        // change or stop the event.
        HookDecision::Allow
    }
}

export!(Plugin);
"#;

/// Per-type parts: world, body, capabilities section, an example `call`.
fn parts(ty: PluginType) -> (&'static str, &'static str, &'static str, &'static str) {
    match ty {
        PluginType::Auth => ("auth-world", LIB_AUTH, "storage = true\n", "display-name"),
        PluginType::Tool => ("tool-world", LIB_TOOL, "", "get-tools"),
        PluginType::Provider => ("provider-world", LIB_PROVIDER, "", "info"),
        PluginType::Channel => ("channel-world", LIB_CHANNEL, "", "info"),
        PluginType::Hook => ("hook-world", LIB_HOOK, "", "name"),
    }
}

fn plugin_toml(name: &str, ty: PluginType, caps: &str) -> String {
    format!(
        r#"# {name}: a tark {ty} plugin. Build with ./build.sh, check with
# `tark-wasmer plugin check .`, install with `tark-wasmer plugin add .`.
[plugin]
name = "{name}"
version = "0.1.0"
type = "{ty}"
description = "A {ty} plugin"
api_version = "0.2"
wasm = "plugin.wasm"

# What the plugin may reach. Uncomment and fill in what it uses.
[capabilities]
{caps}# http = ["api.example.com"]      # hosts for tark:plugin/http and ws
# env = ["MY_API_KEY"]            # environment variables for tark:plugin/env
# fs_read = ["~/.config/x.json"]  # files for tark:plugin/fs
"#
    )
}

/// A plugin name that is also a valid cargo package and a plugin id: an ASCII letter,
/// then ASCII letters, digits, `-` and `_`.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        bail!(
            "Invalid plugin name '{name}': start with a letter and use only ASCII letters, digits, '-' and '_' (at most 64 characters); it is the plugin id and the cargo package name"
        );
    }
    if ["std", "core", "alloc", "test", "proc_macro", "proc-macro"].contains(&name) {
        bail!("Invalid plugin name '{name}': it is reserved by Rust; choose another name");
    }
    Ok(())
}

fn fill(template: &str, name: &str, ty: PluginType, world: &str, call: &str) -> String {
    template
        .replace("{{NAME}}", name)
        .replace("{{TYPE}}", ty.as_str())
        .replace("{{WORLD}}", world)
        .replace("{{CALL}}", call)
}

/// Every file of the scaffold: (relative path, contents, executable).
pub fn files(name: &str, ty: PluginType) -> Vec<(PathBuf, String, bool)> {
    let (world, body, caps, call) = parts(ty);
    let f = |t: &str| fill(t, name, ty, world, call);
    let mut v = vec![
        (PathBuf::from("Cargo.toml"), f(CARGO_TOML), false),
        (
            PathBuf::from("plugin.toml"),
            plugin_toml(name, ty, caps),
            false,
        ),
        (
            PathBuf::from("src/lib.rs"),
            format!("{}{}", f(LIB_HEADER), f(body)),
            false,
        ),
        (PathBuf::from("build.sh"), BUILD_SH.to_string(), true),
        (PathBuf::from("README.md"), f(README), false),
        (PathBuf::from(".gitignore"), GITIGNORE.to_string(), false),
    ];
    for (file, text) in WIT_FILES {
        v.push((Path::new("wit").join(file), (*text).to_string(), false));
    }
    v
}

/// `plugin new <NAME> --type <TYPE> [--dir DIR] [--json]`.
pub fn new_plugin(
    name: &str,
    ty: PluginType,
    dir: Option<&Path>,
    as_json: bool,
    out: &mut Out,
) -> anyhow::Result<()> {
    check_name(name)?;
    out.set_quiet(as_json);
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => PathBuf::from(name),
    };
    let dir = std::path::absolute(&dir)
        .with_context(|| format!("Failed to resolve {}", dir.display()))?;
    if dir.exists() {
        let empty = std::fs::read_dir(&dir)
            .map(|mut it| it.next().is_none())
            .unwrap_or(false);
        if !dir.is_dir() || !empty {
            bail!(
                "{} already exists and is not an empty directory\nChoose another --dir, or remove it first.",
                dir.display()
            );
        }
    }
    let files = files(name, ty);
    // Write into a sibling temporary directory and rename, so a failure leaves nothing.
    let parent = dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("Failed to create {}", parent.display()))?;
    let leaf = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    let tmp = parent.join(format!(".{leaf}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = (|| -> anyhow::Result<()> {
        for (rel, text, exec) in &files {
            let path = tmp.join(rel);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p)
                    .with_context(|| format!("Failed to create {}", p.display()))?;
            }
            std::fs::write(&path, text)
                .with_context(|| format!("Failed to write {}", path.display()))?;
            #[cfg(unix)]
            if *exec {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .with_context(|| format!("Failed to make {} executable", path.display()))?;
            }
            #[cfg(not(unix))]
            let _ = exec;
        }
        if dir.exists() {
            std::fs::remove_dir(&dir)
                .with_context(|| format!("Failed to replace {}", dir.display()))?;
        }
        std::fs::rename(&tmp, &dir)
            .with_context(|| format!("Failed to move {} to {}", tmp.display(), dir.display()))?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let (world, _, _, call) = parts(ty);
    if as_json {
        out.json(&json!({
            "name": name,
            "type": ty.as_str(),
            "world": world,
            "dir": dir.to_string_lossy(),
            "files": files.iter().map(|(p, _, _)| p.to_string_lossy().into_owned()).collect::<Vec<_>>(),
        }))?;
        return Ok(());
    }
    out.heading("=== New Plugin ===")?;
    out.blank()?;
    out.line(format!(
        "Created {} plugin {} (world {world}) in {}",
        ty,
        out.paint(name, Style::Green),
        dir.display()
    ))?;
    for (p, _, _) in &files {
        out.line(format!("  {}", p.display()))?;
    }
    out.blank()?;
    out.line("Next steps:")?;
    out.line(format!("  cd {}", dir.display()))?;
    out.line("  ./build.sh                         # writes plugin.wasm")?;
    out.line("  tark-wasmer plugin check .         # everything tark would trip on")?;
    out.line(format!(
        "  tark-wasmer call . {call}{}# run it without installing",
        " ".repeat(17usize.saturating_sub(call.len()).max(1))
    ))?;
    out.line(
        "  tark-wasmer plugin add . --link    # install by reference: rebuilds are picked up",
    )?;
    out.line(format!("  tark-wasmer plugin info {name}"))?;
    out.blank()?;
    out.line(
        "build.sh shares one target directory between plugins (CARGO_TARGET_DIR, else\n\
         ~/.cache/tark-wasmer/plugin-target): the first build compiles the standard\n\
         library, later ones reuse it.",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["my-plugin", "a", "Tool_2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2x", "-x", "a b", "ñ", "a/b", "..", "std"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_type_fills_every_placeholder() {
        for ty in PluginType::ALL {
            for (path, text, _) in files("demo-x", ty) {
                assert!(!text.contains("{{"), "{ty} {}: {text}", path.display());
            }
            let toml = plugin_toml("demo-x", ty, parts(ty).2);
            let m =
                tark_wasmer::manifest::PluginManifest::from_str_at(&toml, Path::new("plugin.toml"))
                    .expect("the scaffold's manifest parses");
            assert_eq!(m.plugin_type(), ty);
            assert!(m.warnings().is_empty(), "{:?}", m.warnings());
        }
    }
}
