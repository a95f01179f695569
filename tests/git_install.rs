//! `plugin add` from git and `plugin update`, against real git repositories created in
//! temporary directories with the system `git` (cloned through `file://` URLs and plain
//! paths), run as real `tark-wasmer` processes. Each process gets its own TMPDIR so the
//! tests can check that no temporary clone is left behind.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn fails(self) -> Self {
        assert_eq!(
            self.code,
            Some(1),
            "expected exit 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// A temporary root with a plugins directory, a TMPDIR and repositories inside.
struct Env {
    root: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        let env = Env {
            root: tempfile::tempdir().expect("tempdir"),
        };
        fs::create_dir_all(env.tmp()).unwrap();
        env
    }

    fn root(&self) -> &Path {
        self.root.path()
    }

    fn plugins(&self) -> PathBuf {
        self.root().join("plugins")
    }

    fn tmp(&self) -> PathBuf {
        self.root().join("tmp")
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tark-wasmer"));
        for var in [
            "TARK_PLUGINS_DIR",
            "TARK_WASMER_COMPILER",
            "NO_COLOR",
            "CLICOLOR_FORCE",
            "RUST_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.env("TMPDIR", self.tmp())
            .env("TARK_WASMER_CACHE_DIR", self.root().join("cache"))
            .arg("--plugins-dir")
            .arg(self.plugins());
        cmd
    }

    fn tw(&self, args: &[&str]) -> Run {
        let mut cmd = self.cmd();
        cmd.args(args);
        run(cmd)
    }

    /// Nothing left in TMPDIR and no hidden staging directories in the plugins directory.
    fn assert_no_leftovers(&self) {
        let tmp: Vec<_> = fs::read_dir(self.tmp()).unwrap().collect();
        assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
        if self.plugins().exists() {
            for e in fs::read_dir(self.plugins()).unwrap() {
                let name = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!name.starts_with('.'), "staging directory left: {name}");
            }
        }
    }

    fn install_json(&self, id: &str) -> Value {
        let text = fs::read_to_string(self.plugins().join(id).join(".install.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    }
}

fn run(mut cmd: Command) -> Run {
    let out = cmd.output().expect("run tark-wasmer");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

/// Run git in `dir` with a fixed identity and no user or system configuration.
fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wasm() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1))"#).expect("valid WAT")
}

/// Write plugin `id` at `version` into `<repo>/plugins/demo` with sources, a build tree
/// and documentation around it.
fn write_plugin(repo: &Path, id: &str, version: &str) {
    let dir = repo.join("plugins/demo");
    fs::create_dir_all(dir.join("src")).unwrap();
    fs::create_dir_all(dir.join("target/release")).unwrap();
    fs::write(
        dir.join("plugin.toml"),
        format!(
            "[plugin]\nname = \"{id}\"\nversion = \"{version}\"\ntype = \"tool\"\ndescription = \"demo\"\n\n[capabilities]\nstorage = true\nhttp = [\"api.example.com\"]\n"
        ),
    )
    .unwrap();
    fs::write(dir.join("plugin.wasm"), wasm()).unwrap();
    fs::write(dir.join("README.md"), format!("# demo {version}\n")).unwrap();
    fs::write(dir.join("LICENSE"), "MIT\n").unwrap();
    fs::write(dir.join("Cargo.toml"), "[package]\nname = \"demo\"\n").unwrap();
    fs::write(dir.join("src/lib.rs"), "// source\n").unwrap();
    fs::write(dir.join("target/release/junk.o"), "junk").unwrap();
    fs::write(repo.join("README.md"), "# plugins repo\n").unwrap();
}

/// A repository with `main` (demo 1.0.0, tagged v1.0), then `dev` (demo 2.0.0).
fn make_repo(env: &Env) -> PathBuf {
    let repo = env.root().join("repo");
    fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    fs::write(repo.join(".gitignore"), "").unwrap();
    write_plugin(&repo, "demo", "1.0.0");
    git(&repo, &["add", "-A", "-f"]);
    git(&repo, &["commit", "-q", "-m", "demo 1.0.0"]);
    git(&repo, &["tag", "v1.0"]);
    git(&repo, &["checkout", "-q", "-b", "dev"]);
    write_plugin(&repo, "demo", "2.0.0");
    git(&repo, &["commit", "-q", "-am", "demo 2.0.0"]);
    git(&repo, &["checkout", "-q", "main"]);
    repo
}

fn file_url(repo: &Path) -> String {
    format!("file://{}", repo.display())
}

fn installed_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn version_of(env: &Env, id: &str) -> String {
    let r = env.tw(&["plugin", "info", id, "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    v["version"].as_str().unwrap().to_string()
}

#[test]
fn add_from_a_file_url_installs_only_the_declared_files() {
    let env = Env::new();
    let repo = make_repo(&env);
    let url = file_url(&repo);
    let r = env
        .tw(&["plugin", "add", &url, "--path", "plugins/demo"])
        .ok();
    let out: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        &out[..7],
        [
            "=== Installing Plugin ===",
            "",
            &format!("Repository: {url}"),
            "Branch:     (default branch)",
            "Path:       plugins/demo",
            "",
            "Cloning repository...",
        ]
    );
    assert!(r.stdout.contains("Found plugin: demo v1.0.0\nType: tool\nCapabilities:\n  • Storage access\n  • HTTP to: api.example.com\n"), "{}", r.stdout);
    assert!(r.stdout.contains("✅ Successfully installed plugin: demo"));
    // Not a terminal: git ran quietly.
    assert!(!r.stderr.contains("Cloning into"), "{}", r.stderr);
    assert!(!r.stderr.contains("Receiving objects"), "{}", r.stderr);

    let dir = env.plugins().join("demo");
    assert_eq!(
        installed_files(&dir),
        [
            ".install.json",
            "LICENSE",
            "README.md",
            "plugin.toml",
            "plugin.wasm"
        ]
    );
    assert_eq!(fs::read(dir.join("plugin.wasm")).unwrap(), wasm());
    let install = env.install_json("demo");
    assert_eq!(install["is_git"], Value::Bool(true));
    assert_eq!(install["url"], Value::String(url.clone()));
    assert_eq!(install["branch"], "main", "the default branch is recorded");
    assert_eq!(install["path"], "plugins/demo");
    let text = fs::read_to_string(dir.join(".install.json")).unwrap();
    assert!(
        text.starts_with("{\n  \"is_git\": true,\n  \"url\": "),
        "{text}"
    );
    env.assert_no_leftovers();
}

#[test]
fn add_at_a_branch_a_tag_and_a_hash_ref() {
    let env = Env::new();
    let repo = make_repo(&env);
    let url = file_url(&repo);

    // URL#ref.
    env.tw(&["plugin", "add", &format!("{url}#dev"), "-p", "plugins/demo"])
        .ok();
    assert_eq!(version_of(&env, "demo"), "2.0.0");
    let install = env.install_json("demo");
    assert_eq!(install["url"], Value::String(url.clone()));
    assert_eq!(install["branch"], "dev");
    env.tw(&["plugin", "remove", "demo"]).ok();

    // --branch with a tag, on a plain path to the repository: cloned with git (not copied).
    let r = env
        .tw(&[
            "plugin",
            "add",
            repo.to_str().unwrap(),
            "--branch",
            "v1.0",
            "--path",
            "plugins/demo",
        ])
        .ok();
    assert!(r.stdout.contains("Branch:     v1.0"), "{}", r.stdout);
    assert_eq!(version_of(&env, "demo"), "1.0.0");
    let install = env.install_json("demo");
    assert_eq!(install["is_git"], Value::Bool(true));
    assert_eq!(install["url"], repo.to_str().unwrap());
    assert_eq!(install["branch"], "v1.0");
    assert!(!env.plugins().join("demo/src").exists());
    env.tw(&["plugin", "remove", "demo"]).ok();

    // Both forms, equal: fine.
    env.tw(&[
        "plugin",
        "add",
        &format!("{url}#dev"),
        "-b",
        "dev",
        "-p",
        "plugins/demo",
    ])
    .ok();
    assert_eq!(version_of(&env, "demo"), "2.0.0");
    env.tw(&["plugin", "remove", "demo"]).ok();

    // Both forms, different: refused before anything is cloned.
    let r = env
        .tw(&[
            "plugin",
            "add",
            &format!("{url}#dev"),
            "--branch",
            "main",
            "-p",
            "plugins/demo",
        ])
        .fails();
    assert!(
        r.stderr
            .starts_with("Error: Conflicting refs: the URL names '#dev' but --branch says 'main'"),
        "{}",
        r.stderr
    );
    assert!(!env.plugins().join("demo").exists());
    env.assert_no_leftovers();
}

#[test]
fn a_plain_path_without_a_ref_is_copied_like_tark_does() {
    let env = Env::new();
    let repo = make_repo(&env);
    let r = env
        .tw(&[
            "plugin",
            "add",
            repo.to_str().unwrap(),
            "--path",
            "plugins/demo",
        ])
        .ok();
    let src = repo.join("plugins/demo");
    assert!(
        r.stdout
            .contains(&format!("Source: {} (local)", src.display())),
        "{}",
        r.stdout
    );
    let install = env.install_json("demo");
    assert_eq!(install["is_git"], Value::Bool(false));
    assert_eq!(install["url"], src.to_str().unwrap());
    assert_eq!(install["branch"], Value::Null);
    assert_eq!(install["path"], Value::Null);
    // The working tree is copied whole, minus build output.
    let dir = env.plugins().join("demo");
    assert!(dir.join("src/lib.rs").exists());
    assert!(!dir.join("target").exists());
}

#[test]
fn failures_leave_nothing_behind_and_say_what_to_do() {
    let env = Env::new();
    let repo = make_repo(&env);
    let url = file_url(&repo);

    let r = env
        .tw(&["plugin", "add", &format!("{url}#no-such-branch")])
        .fails();
    assert!(
        r.stderr.starts_with("Error: git clone failed"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("no-such-branch"), "{}", r.stderr);
    assert!(
        r.stderr.contains("Check the repository URL"),
        "{}",
        r.stderr
    );
    env.assert_no_leftovers();

    let missing = file_url(&env.root().join("no-repo"));
    let r = env.tw(&["plugin", "add", &missing]).fails();
    assert!(
        r.stderr.starts_with("Error: git clone failed"),
        "{}",
        r.stderr
    );
    env.assert_no_leftovers();

    let r = env
        .tw(&["plugin", "add", &url, "--path", "plugins/nope"])
        .fails();
    assert!(
        r.stderr
            .starts_with("Error: Subdirectory 'plugins/nope' not found in repository"),
        "{}",
        r.stderr
    );
    env.assert_no_leftovers();

    let r = env.tw(&["plugin", "add", &url, "--path", "../x"]).fails();
    assert!(
        r.stderr.starts_with("Error: Invalid --path '../x'"),
        "{}",
        r.stderr
    );

    // No plugin.toml at the repository root.
    let r = env.tw(&["plugin", "add", &url]).fails();
    assert!(r.stderr.contains("No plugin.toml found in"), "{}", r.stderr);
    env.assert_no_leftovers();

    // Option injection: refused before git runs.
    let r = env
        .tw(&["plugin", "add", "--", "--upload-pack=touch x"])
        .fails();
    assert!(r.stderr.contains("starts with '-'"), "{}", r.stderr);
    let r = env
        .tw(&["plugin", "add", &url, "--branch=--upload-pack=touch"])
        .fails();
    assert!(r.stderr.contains("starts with '-'"), "{}", r.stderr);
    let r = env.tw(&["plugin", "add", &format!("{url}#-x")]).fails();
    assert!(r.stderr.contains("starts with '-'"), "{}", r.stderr);

    // A repository whose plugin was never built.
    fs::remove_file(repo.join("plugins/demo/plugin.wasm")).unwrap();
    git(&repo, &["commit", "-q", "-am", "drop the module"]);
    let r = env
        .tw(&["plugin", "add", &url, "-p", "plugins/demo"])
        .fails();
    assert!(r.stderr.contains("WASM module not found: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("Did you forget to build the plugin?"),
        "{}",
        r.stderr
    );
    assert!(!env.plugins().join("demo").exists());
    env.assert_no_leftovers();
}

#[test]
fn json_output_of_add() {
    let env = Env::new();
    let repo = make_repo(&env);
    let r = env
        .tw(&[
            "plugin",
            "add",
            &format!("{}#dev", file_url(&repo)),
            "-p",
            "plugins/demo",
            "--json",
            "--yes",
        ])
        .ok();
    let v: Value = serde_json::from_str(&r.stdout).expect("stdout is one JSON document");
    assert_eq!(v["id"], "demo");
    assert_eq!(v["version"], "2.0.0");
    assert_eq!(v["install"]["branch"], "dev");
    assert_eq!(v["capabilities"]["http"][0], "api.example.com");
}

#[test]
fn update_refetches_git_and_keeps_state() {
    let env = Env::new();
    let repo = make_repo(&env);
    let url = file_url(&repo);
    env.tw(&["plugin", "add", &url, "-p", "plugins/demo"]).ok();
    let dir = env.plugins().join("demo");
    let before = fs::read_to_string(dir.join(".install.json")).unwrap();
    fs::create_dir_all(dir.join("data")).unwrap();
    fs::write(dir.join("data/storage.json"), "{\n  \"k\": \"v\"\n}").unwrap();
    env.tw(&["plugin", "disable", "demo"]).ok();

    write_plugin(&repo, "demo", "1.1.0");
    git(&repo, &["commit", "-q", "-am", "demo 1.1.0"]);
    let r = env.tw(&["plugin", "update", "demo"]).ok();
    assert_eq!(
        r.stdout,
        format!(
            "=== Updating Plugin ===\n\nUpdating demo from {url} (main:plugins/demo)\n✅ Updated plugin: demo\n"
        )
    );
    assert_eq!(version_of(&env, "demo"), "1.1.0");
    assert_eq!(
        fs::read_to_string(dir.join("data/storage.json")).unwrap(),
        "{\n  \"k\": \"v\"\n}"
    );
    assert!(dir.join(".disabled").exists());
    assert_eq!(
        fs::read_to_string(dir.join(".install.json")).unwrap(),
        before
    );
    assert!(!dir.join("src").exists(), "still only the declared files");
    env.assert_no_leftovers();

    // The repository now declares another id: refused, the installed version stays.
    write_plugin(&repo, "other", "9.0.0");
    git(&repo, &["commit", "-q", "-am", "renamed"]);
    let r = env.tw(&["plugin", "update", "demo"]).fails();
    assert!(
        r.stderr
            .contains("Plugin ID mismatch: expected 'demo', found 'other'"),
        "{}",
        r.stderr
    );
    assert_eq!(version_of(&env, "demo"), "1.1.0");
    assert!(dir.join("data/storage.json").exists());
    env.assert_no_leftovers();
}

#[test]
fn update_all_summarises_like_tark() {
    let env = Env::new();
    let repo = make_repo(&env);
    env.tw(&["plugin", "add", &file_url(&repo), "-p", "plugins/demo"])
        .ok();
    // A local plugin whose source is then deleted (fails) and one without .install.json
    // (skipped).
    let gone = env.root().join("gone");
    fs::create_dir_all(&gone).unwrap();
    fs::write(
        gone.join("plugin.toml"),
        "[plugin]\nname = \"gone\"\nversion = \"1.0.0\"\ntype = \"tool\"\n",
    )
    .unwrap();
    fs::write(gone.join("plugin.wasm"), wasm()).unwrap();
    env.tw(&["plugin", "add", gone.to_str().unwrap()]).ok();
    fs::remove_dir_all(&gone).unwrap();
    let manual = env.plugins().join("manual");
    fs::create_dir_all(&manual).unwrap();
    fs::write(
        manual.join("plugin.toml"),
        "[plugin]\nname = \"manual\"\nversion = \"1.0.0\"\ntype = \"tool\"\n",
    )
    .unwrap();
    fs::write(manual.join("plugin.wasm"), wasm()).unwrap();

    write_plugin(&repo, "demo", "1.2.0");
    git(&repo, &["commit", "-q", "-am", "demo 1.2.0"]);
    let r = env.tw(&["plugin", "update", "--all"]).fails();
    assert!(
        r.stdout.starts_with("=== Updating Plugins ===\n\n"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("✅ Updated demo\n"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!(
            "Failed to update gone: Local plugin source path not found: {}",
            gone.display()
        )),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .ends_with("\nDone. updated=1, skipped=1, failed=1\n"),
        "{}",
        r.stdout
    );
    assert!(
        r.stderr.contains("1 plugin(s) failed to update"),
        "{}",
        r.stderr
    );
    assert_eq!(version_of(&env, "demo"), "1.2.0");

    // JSON form.
    env.tw(&["plugin", "remove", "gone"]).ok();
    let r = env.tw(&["plugin", "update", "--all", "--json"]).ok();
    let v: Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    assert_eq!(v["updated"][0]["id"], "demo");
    assert_eq!(v["updated"][0]["version"], "1.2.0");
    assert_eq!(v["skipped"][0]["id"], "manual");
    assert_eq!(v["failed"].as_array().unwrap().len(), 0);

    // Neither an id nor --all: tark's text.
    let r = env.tw(&["plugin", "update"]).fails();
    assert!(
        r.stderr
            .starts_with("Error: Specify a plugin ID or use --all"),
        "{}",
        r.stderr
    );
    let r = env.tw(&["plugin", "update", "manual"]).fails();
    assert!(
        r.stderr.starts_with(&format!(
            "Error: Missing install metadata: {}",
            manual.join(".install.json").display()
        )),
        "{}",
        r.stderr
    );
}

/// Run `tark-wasmer <args>` on a pseudo-terminal (util-linux `script`), answering `input`.
fn on_terminal(env: &Env, args: &[&str], input: &str) -> Run {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut line = vec![
        quote(env!("CARGO_BIN_EXE_tark-wasmer")),
        "--plugins-dir".into(),
        quote(env.plugins().to_str().unwrap()),
    ];
    line.extend(args.iter().map(|a| quote(a)));
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line.join(" "), "/dev/null"])
        .env("TMPDIR", env.tmp())
        .env("TARK_WASMER_CACHE_DIR", env.root().join("cache"))
        .env("NO_COLOR", "1")
        .env_remove("TARK_PLUGINS_DIR");
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("script runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_terminal_is_asked_to_confirm_the_capabilities() {
    let env = Env::new();
    let repo = make_repo(&env);
    let src = repo.join("plugins/demo");
    let r = on_terminal(&env, &["plugin", "add", src.to_str().unwrap()], "n\n");
    assert_eq!(r.code, Some(1), "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("HTTP to: api.example.com"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("Install plugin 'demo'? [y/N]"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("Installation cancelled"), "{}", r.stdout);
    assert!(!env.plugins().join("demo").exists());

    let r = on_terminal(&env, &["plugin", "add", src.to_str().unwrap()], "y\n");
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(env.plugins().join("demo/plugin.toml").exists());
    env.tw(&["plugin", "remove", "demo"]).ok();

    // A clone on a terminal shows git's own progress.
    let r = on_terminal(
        &env,
        &[
            "plugin",
            "add",
            &file_url(&repo),
            "-p",
            "plugins/demo",
            "--yes",
        ],
        "",
    );
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("Receiving objects"), "{}", r.stdout);
    env.tw(&["plugin", "remove", "demo"]).ok();

    // --yes: no question even on a terminal.
    let r = on_terminal(&env, &["plugin", "add", src.to_str().unwrap(), "-y"], "");
    assert_eq!(r.code, Some(0), "{}{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("[y/N]"), "{}", r.stdout);
    assert!(env.plugins().join("demo/plugin.toml").exists());
}
