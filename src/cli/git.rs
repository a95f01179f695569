//! Git sources for `plugin add` and `plugin update`, through the system `git`.
//!
//! - The reference to clone is a branch or tag, from `--branch <ref>` or the documented
//!   `URL#ref` form. Giving both is fine when they agree and an error when they differ, so
//!   a URL copied from documentation never silently installs another ref. With neither,
//!   the repository's default branch is cloned (tark assumes `main`) and its name is
//!   recorded.
//! - `git` runs as `git clone --depth 1 [--branch=<ref>] (--progress|--quiet) -- <url> <dir>`:
//!   the URL comes after `--` and the ref is glued to its option, and URLs and refs starting
//!   with `-` are refused before git runs, so neither can be taken as an option
//!   (`tests/git_install.rs`, `failures_leave_nothing_behind_and_say_what_to_do`). Progress
//!   is shown only when stderr is a terminal.
//! - git may use only the transport the URL names ([`transport_of`]): no `ext::` or other
//!   remote helpers, no local clone for a network URL.
//! - Only the plugin's declared files are installed from a clone: `plugin.toml`, the wasm
//!   module at its declared path, and README / LICENSE / COPYING / NOTICE / CHANGELOG files
//!   next to `plugin.toml`. Nothing else of the repository (sources, build trees, `.git/`)
//!   ends up in the plugins directory. Local directories are still copied whole (tark's
//!   behaviour, minus `target/` and `.git/`).
//! - Everything happens in temporary directories that are removed on every path, so a
//!   failed clone leaves nothing behind.

use std::io::{IsTerminal, Read};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{anyhow, bail, Context};

use tark_wasmer::manifest::{PluginManifest, MANIFEST_FILE};

/// The URL and ref of `URL#ref` (`None` when there is no `#`).
pub fn split_ref(arg: &str) -> (&str, Option<&str>) {
    match arg.split_once('#') {
        Some((url, reference)) => (url, Some(reference)),
        None => (arg, None),
    }
}

/// The ref to clone from `URL#ref` and `--branch`: equal values are fine, different ones
/// are an error naming both.
pub fn resolve_ref(from_url: Option<&str>, branch: Option<&str>) -> anyhow::Result<Option<String>> {
    let out = match (from_url, branch) {
        (Some(a), Some(b)) if a != b => bail!(
            "Conflicting refs: the URL names '#{a}' but --branch says '{b}'\nGive the ref once, either as URL#ref or with --branch."
        ),
        (Some(r), _) | (None, Some(r)) => Some(r.to_string()),
        (None, None) => None,
    };
    if let Some(r) = &out {
        check_ref(r)?;
    }
    Ok(out)
}

/// A ref git will take as a branch or tag name and never as an option.
pub fn check_ref(reference: &str) -> anyhow::Result<()> {
    if reference.is_empty() {
        bail!("Empty git ref: write URL#<branch-or-tag> or use --branch <branch-or-tag>");
    }
    if reference.starts_with('-') {
        bail!("Refusing git ref '{reference}': it starts with '-' and would be read as an option");
    }
    if reference.chars().any(|c| c.is_control() || c == ' ') {
        bail!("Invalid git ref {reference:?}: refs contain no spaces or control characters");
    }
    Ok(())
}

/// A repository URL that git cannot take as an option.
pub fn check_url(url: &str) -> anyhow::Result<()> {
    if url.is_empty() {
        bail!("Empty repository URL");
    }
    if url.starts_with('-') {
        bail!("Refusing repository URL '{url}': it starts with '-' and would be read as an option");
    }
    if url.chars().any(|c| c.is_control()) {
        bail!("Invalid repository URL {url:?}: it contains control characters");
    }
    Ok(())
}

/// The one git transport `url` names, which is the only one git may use for it
/// (`GIT_ALLOW_PROTOCOL`): `https`, `http`, `ssh`, `git` or `file`. Refused: git's
/// remote-helper syntax `<helper>::<address>` (`ext::sh -c ...` runs a command, `fd::`
/// and the rest reach past the network), other URL schemes, and ssh hosts or users that
/// start with `-` (ssh would read them as options). So an `https://` URL can never be
/// turned into a local clone, a command or a file read (tests/redteam.rs,
/// `git_install_refuses_argument_and_transport_injection`).
pub fn transport_of(url: &str) -> anyhow::Result<&'static str> {
    check_url(url)?;
    let before_slash = url.split('/').next().unwrap_or("");
    if before_slash.contains("::") {
        bail!(
            "Refusing repository URL '{url}': git's '<helper>::' transports can run programs\nUse an https://, ssh://, git:// URL or a local path."
        );
    }
    let dash_host = |rest: &str| {
        let authority = rest.split(['/', ':']).next().unwrap_or("");
        let (user, host) = match authority.rsplit_once('@') {
            Some((u, h)) => (u, h),
            None => ("", authority),
        };
        user.starts_with('-') || host.starts_with('-')
    };
    if let Some((scheme, rest)) = url.split_once("://") {
        let transport = match scheme.to_ascii_lowercase().as_str() {
            "https" => "https",
            "http" => "http",
            "ssh" | "git+ssh" | "ssh+git" => "ssh",
            "git" => "git",
            "file" => "file",
            other => bail!(
                "Refusing repository URL '{url}': unsupported transport '{other}'\nUse an https://, ssh://, git:// or file:// URL, or a local path."
            ),
        };
        if transport != "file" && dash_host(rest) {
            bail!("Refusing repository URL '{url}': its host or user starts with '-' and would be read as an option");
        }
        return Ok(transport);
    }
    if url.starts_with('/') || url.starts_with('.') {
        return Ok("file");
    }
    // git's scp-like form `[user@]host:path` (a ':' before any '/') is ssh.
    if before_slash.contains(':') {
        if dash_host(url) {
            bail!("Refusing repository URL '{url}': its host or user starts with '-' and would be read as an option");
        }
        return Ok("ssh");
    }
    Ok("file")
}

/// `--path`: a relative path without `..`, so it stays inside the repository.
pub fn check_subdir(subdir: &str) -> anyhow::Result<PathBuf> {
    let p = Path::new(subdir);
    let ok = !subdir.is_empty()
        && !p.is_absolute()
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        bail!(
            "Invalid --path '{subdir}': give a directory inside the repository, relative to its root, without '..'"
        );
    }
    Ok(p.to_path_buf())
}

/// A directory under the system temporary directory, deleted (with its contents) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Create a fresh, uniquely named directory.
    pub fn new(kind: &str) -> anyhow::Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let mut last_err = None;
        for _ in 0..16 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = base.join(format!(
                "tark-wasmer-{kind}-{}-{nanos}-{n}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(TempDir { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!(
                            "Failed to create a temporary directory in {}",
                            base.display()
                        )
                    })
                }
            }
        }
        Err(last_err.unwrap_or_else(|| std::io::Error::other("name collision"))).with_context(
            || {
                format!(
                    "Failed to create a temporary directory in {}",
                    base.display()
                )
            },
        )
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("Failed to delete temporary {}: {e}", self.path.display());
            }
        }
    }
}

/// A shallow clone in a temporary directory.
pub struct Checkout {
    _tmp: TempDir,
    /// The repository's working tree.
    pub root: PathBuf,
    /// The ref that was cloned: the requested one, else the default branch's name (`None`
    /// when the remote's HEAD is detached).
    pub branch: Option<String>,
}

/// Clone `url` at `reference` (default branch when `None`). Git's progress goes to stderr
/// when stderr is a terminal; otherwise git runs quietly and its messages are part of the
/// error. Credentials prompts are only allowed when stdin is a terminal.
pub fn clone(url: &str, reference: Option<&str>) -> anyhow::Result<Checkout> {
    let transport = transport_of(url)?;
    if let Some(r) = reference {
        check_ref(r)?;
    }
    let tmp = TempDir::new("git")?;
    let root = tmp.path().join("repo");
    let progress = std::io::stderr().is_terminal();
    let mut cmd = Command::new("git");
    cmd.args(["-c", "advice.detachedHead=false", "clone", "--depth", "1"]);
    if let Some(r) = reference {
        cmd.arg(format!("--branch={r}"));
    }
    cmd.arg(if progress { "--progress" } else { "--quiet" });
    cmd.arg("--").arg(url).arg(&root);
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    // Only the transport the URL names (overrides any `protocol.allow` configuration).
    cmd.env("GIT_ALLOW_PROTOCOL", transport);
    if !std::io::stdin().is_terminal() {
        cmd.env("GIT_TERMINAL_PROMPT", "0");
    }
    if progress {
        cmd.stderr(Stdio::inherit());
    } else {
        cmd.stderr(Stdio::piped());
    }
    let mut child = cmd.spawn().map_err(|e| {
        anyhow!("Failed to run git clone: {e}\nInstall git (for example `apt-get install git`) and try again.")
    })?;
    let mut git_said = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        // Bounded: a hostile server cannot make us buffer without limit.
        let mut buf = Vec::new();
        let _ = stderr.by_ref().take(64 * 1024).read_to_end(&mut buf);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        git_said = String::from_utf8_lossy(&buf).trim().to_string();
    }
    let status = child.wait().context("Failed to wait for git clone")?;
    if !status.success() {
        let what = match reference {
            Some(r) => format!("that branch or tag '{r}' exists"),
            None => "that it has a default branch".to_string(),
        };
        let detail = if git_said.is_empty() {
            String::new()
        } else {
            format!(":\n{git_said}")
        };
        bail!(
            "git clone failed ({status}){detail}\nCheck the repository URL '{url}', your access to it, and {what}."
        );
    }
    let branch = match reference {
        Some(r) => Some(r.to_string()),
        None => current_branch(&root),
    };
    Ok(Checkout {
        _tmp: tmp,
        root,
        branch,
    })
}

/// `git symbolic-ref --short -q HEAD` of a working tree (`None` when detached or on error).
fn current_branch(root: &Path) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["symbolic-ref", "--short", "-q", "HEAD"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let name = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}

impl Checkout {
    /// The plugin directory inside the clone: the root, or `--path` (which must exist and
    /// stay inside the clone after resolving symlinks).
    pub fn plugin_dir(&self, subdir: Option<&str>) -> anyhow::Result<PathBuf> {
        let Some(subdir) = subdir else {
            return Ok(self.root.clone());
        };
        let rel = check_subdir(subdir)?;
        let dir = self.root.join(rel);
        let inside = match (dir.canonicalize(), self.root.canonicalize()) {
            (Ok(d), Ok(r)) => d.starts_with(r) && d.is_dir(),
            _ => false,
        };
        if !inside {
            bail!("Subdirectory '{subdir}' not found in repository");
        }
        Ok(dir)
    }
}

/// Whether `name` (a file next to `plugin.toml`) is documentation installed with the plugin.
fn is_doc_file(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "README",
        "LICENSE",
        "LICENCE",
        "COPYING",
        "NOTICE",
        "CHANGELOG",
    ]
    .iter()
    .any(|p| upper.starts_with(p))
}

/// Copy the plugin's declared files from `src` (a directory inside a clone) into a fresh
/// temporary directory and return it: `plugin.toml`, the declared wasm module (at the same
/// relative path) and documentation files next to `plugin.toml`. The manifest and module
/// must resolve inside `src`; documentation files are copied only when they are regular
/// files (never through a symlink).
pub fn stage_declared_files(
    src: &Path,
    manifest: &PluginManifest,
) -> anyhow::Result<(TempDir, PathBuf)> {
    let tmp = TempDir::new("stage")?;
    let stage = tmp.path().join("plugin");
    std::fs::create_dir(&stage).with_context(|| format!("Failed to create {}", stage.display()))?;
    let root = src
        .canonicalize()
        .with_context(|| format!("Failed to resolve {}", src.display()))?;
    let inside = |p: &Path| -> anyhow::Result<PathBuf> {
        let real = p
            .canonicalize()
            .with_context(|| format!("Failed to resolve {}", p.display()))?;
        if !real.starts_with(&root) || !real.is_file() {
            bail!(
                "{} resolves to {}, outside the plugin directory",
                p.display(),
                real.display()
            );
        }
        Ok(real)
    };
    let copy = |from: &Path, rel: &Path| -> anyhow::Result<()> {
        let to = stage.join(rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("Failed to create {}", parent.display()))?;
        }
        std::fs::copy(from, &to)
            .with_context(|| format!("Failed to copy {} to {}", from.display(), to.display()))?;
        Ok(())
    };
    copy(&inside(&src.join(MANIFEST_FILE))?, Path::new(MANIFEST_FILE))?;
    let wasm = manifest.wasm_path(src)?;
    copy(&inside(&wasm)?, Path::new(&manifest.plugin.wasm))?;
    let mut docs = Vec::new();
    for entry in
        std::fs::read_dir(src).with_context(|| format!("Failed to read {}", src.display()))?
    {
        let entry = entry.with_context(|| format!("Failed to read {}", src.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if is_file && is_doc_file(name) && name != MANIFEST_FILE {
            docs.push(name.to_string());
        }
    }
    docs.sort();
    for name in docs {
        if !stage.join(&name).exists() {
            copy(&src.join(&name), Path::new(&name))?;
        }
    }
    Ok((tmp, stage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_ref_and_branch_rules() {
        assert_eq!(
            split_ref("https://h/r.git#v1"),
            ("https://h/r.git", Some("v1"))
        );
        assert_eq!(split_ref("https://h/r.git"), ("https://h/r.git", None));
        assert_eq!(
            resolve_ref(Some("v1"), None).unwrap().as_deref(),
            Some("v1")
        );
        assert_eq!(
            resolve_ref(None, Some("dev")).unwrap().as_deref(),
            Some("dev")
        );
        assert_eq!(
            resolve_ref(Some("x"), Some("x")).unwrap().as_deref(),
            Some("x")
        );
        assert_eq!(resolve_ref(None, None).unwrap(), None);
        let e = resolve_ref(Some("a"), Some("b")).unwrap_err().to_string();
        assert!(
            e.starts_with("Conflicting refs: the URL names '#a' but --branch says 'b'"),
            "{e}"
        );
        assert!(resolve_ref(Some(""), None).is_err());
        assert!(resolve_ref(None, Some("--upload-pack=x"))
            .unwrap_err()
            .to_string()
            .contains("starts with '-'"));
        assert!(check_url("-oProxyCommand=x").is_err());
        assert!(check_url("file:///tmp/r").is_ok());
        assert!(check_ref("a b").is_err());
    }

    #[test]
    fn transport_is_the_one_the_url_names() {
        for (url, transport) in [
            ("https://h/r.git", "https"),
            ("HTTP://h/r.git", "http"),
            ("ssh://git@h/r.git", "ssh"),
            ("git+ssh://h/r", "ssh"),
            ("git@github.com:o/r.git", "ssh"),
            ("git://h/r", "git"),
            ("file:///tmp/r", "file"),
            ("/tmp/r", "file"),
            ("./r", "file"),
            ("relative/dir", "file"),
        ] {
            assert_eq!(transport_of(url).unwrap(), transport, "{url}");
        }
        for bad in [
            "ext::sh -c touch% /tmp/x",
            "fd::3",
            "hg::https://h/r",
            "ssh://-oProxyCommand=x/r",
            "ssh://-u@h/r",
            "-oProxyCommand=x:r",
            "u@-oProxyCommand=x:r",
            "gopher://h/r",
            "",
        ] {
            assert!(transport_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn subdir_must_stay_inside() {
        assert_eq!(
            check_subdir("plugins/a").unwrap(),
            PathBuf::from("plugins/a")
        );
        assert!(check_subdir("./a").is_ok());
        for bad in ["", "/abs", "../x", "a/../../x"] {
            assert!(check_subdir(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn doc_files() {
        for yes in [
            "README.md",
            "readme",
            "LICENSE",
            "LICENSE-MIT",
            "COPYING",
            "CHANGELOG.md",
        ] {
            assert!(is_doc_file(yes), "{yes}");
        }
        for no in ["Cargo.toml", "src", "plugin.wasm", "build.sh"] {
            assert!(!is_doc_file(no), "{no}");
        }
    }

    #[test]
    fn temp_dirs_are_removed_on_drop() {
        let t = TempDir::new("unit").unwrap();
        let p = t.path().to_path_buf();
        std::fs::write(p.join("f"), "x").unwrap();
        drop(t);
        assert!(!p.exists());
    }
}
