//! The walls of ARCHITECTURE.md, checked: the library's top-level modules form a layered
//! graph without cycles, host services and limit configuration know nothing of wasmer, and
//! only `src/abi/` touches guest memory. Read from the sources, so a new `use` that breaks
//! a wall fails here with the file that did it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file above its unit-test module (tests may reach anywhere).
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).expect("read source");
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Top-level module a file belongs to (`abi` for src/abi/legacy/imports.rs).
fn module_of(path: &Path) -> String {
    let rel = path.strip_prefix(src()).expect("under src");
    let first = rel
        .components()
        .next()
        .expect("non-empty")
        .as_os_str()
        .to_string_lossy()
        .to_string();
    first.trim_end_matches(".rs").to_string()
}

/// Lines of code without `//` comments.
fn code_lines(code: &str) -> impl Iterator<Item = &str> {
    code.lines().filter(|l| !l.trim_start().starts_with("//"))
}

/// `crate::<module>` references of each top-level library module.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let m = module_of(&f);
        if m == "main" || m == "cli" || m == "lib" {
            continue; // the binary sits on top; lib.rs is the table of contents
        }
        let deps = g.entry(m.clone()).or_default();
        let code = code_of(&f);
        for line in code_lines(&code) {
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                // `$crate::` in an exported macro names the public path a user's code
                // expands to, not a dependency of the module that defines the macro.
                let in_macro = rest[..i].ends_with('$');
                rest = &rest[i + "crate::".len()..];
                if in_macro {
                    continue;
                }
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty()
                    && name != m
                    && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                {
                    deps.insert(name);
                }
            }
        }
    }
    g
}

#[test]
fn module_graph_has_no_cycles() {
    let g = graph();
    // Depth-first search for a back edge; report the cycle's path.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in g.keys() {
        let cycle = visit(n, &g, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "module cycle: {}\ngraph: {g:#?}",
            cycle.unwrap_or_default().join(" -> ")
        );
    }
}

/// Files under `dir` (relative to src/) whose code (comments and unit tests aside)
/// contains one of `needles`.
fn offenders(dir: &str, needles: &[&str]) -> Vec<String> {
    let root = src().join(dir);
    let mut files = Vec::new();
    if root.is_dir() {
        rust_files(&root, &mut files);
    } else {
        files.push(root.with_extension("rs"));
    }
    let mut found = Vec::new();
    for f in files {
        let code = code_of(&f);
        for line in code_lines(&code) {
            // This crate's own name (log targets) is not a use of wasmer.
            let l = line.replace("tark_wasmer", "");
            if needles.iter().any(|n| l.contains(n)) {
                found.push(format!("{}: {}", f.display(), line.trim()));
            }
        }
    }
    found
}

#[test]
fn host_services_know_no_wasm() {
    let found = offenders("host", &["use wasmer", "wasmer::", "wasmparser"]);
    assert!(
        found.is_empty(),
        "host services must not use wasmer: {found:#?}"
    );
}

#[test]
fn limit_configuration_has_no_wasmer_in_it() {
    let found = offenders("limits", &["use wasmer", "wasmer::", "crate::abi"]);
    assert!(
        found.is_empty(),
        "limits.rs is plain configuration (enforcement lives in abi/enforce.rs): {found:#?}"
    );
}

#[test]
fn only_abi_touches_guest_memory() {
    let needles = ["MemoryView", ".view(", "wasmer::Memory", "data_unchecked"];
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let abi = src().join("abi");
    let mut found = Vec::new();
    for f in files.into_iter().filter(|f| !f.starts_with(&abi)) {
        let code = code_of(&f);
        for line in code_lines(&code) {
            if needles.iter().any(|n| line.contains(n)) {
                found.push(format!("{}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "guest memory is read outside src/abi: {found:#?}"
    );
}

#[test]
fn policy_is_the_only_place_that_decides_capabilities() {
    // Host services ask the policy; the allowlists of plugin.toml are read nowhere else.
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let allowed = ["policy.rs", "manifest", "tark", "check.rs", "cli"];
    let mut found = Vec::new();
    for f in files {
        let rel = f
            .strip_prefix(src())
            .expect("under src")
            .to_string_lossy()
            .to_string();
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let code = code_of(&f);
        for line in code_lines(&code) {
            if [
                ".capabilities.http",
                ".capabilities.env",
                ".capabilities.fs_read",
            ]
            .iter()
            .any(|n| line.contains(n))
            {
                found.push(format!("{rel}: {}", line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "capability lists read outside policy: {found:#?}"
    );
}

#[test]
fn the_graph_is_layered_as_architecture_md_says() {
    let g = graph();
    // Lower layers must not reach up: (module, modules it must not use).
    let rules: &[(&str, &[&str])] = &[
        (
            "limits",
            &[
                "abi", "engine", "host", "plugin", "registry", "manifest", "cache",
            ],
        ),
        (
            "manifest",
            &[
                "abi", "engine", "host", "plugin", "registry", "cache", "policy",
            ],
        ),
        (
            "policy",
            &["abi", "engine", "host", "plugin", "registry", "cache"],
        ),
        (
            "host",
            &[
                "abi", "engine", "plugin", "registry", "cache", "inspect", "check",
            ],
        ),
        ("cache", &["abi", "host", "plugin", "registry"]),
        ("engine", &["abi", "host", "plugin", "registry"]),
        ("abi", &["plugin", "registry", "cache", "check", "cli"]),
        ("plugin", &["check", "cli"]),
    ];
    for (m, forbidden) in rules {
        let deps = g.get(*m).cloned().unwrap_or_default();
        for f in *forbidden {
            assert!(
                !deps.contains(*f),
                "{m} must not depend on {f} (ARCHITECTURE.md); it uses {deps:?}"
            );
        }
    }
}
