//! `wit/` is the host's parseable copy of tark's contract: it parses, and it differs
//! from `vendor-wit/` (the contract as published, which does not parse) only by the
//! documented fix and our additions.

use std::path::Path;

use wit_parser::Resolve;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn wit_dir_parses_with_every_world() {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(root().join("wit"))
        .unwrap_or_else(|e| panic!("wit/ does not parse: {e:#}"));
    let package = &resolve.packages[pkg];
    assert_eq!(package.name.to_string(), "tark:plugin");
    let mut worlds: Vec<&str> = package.worlds.keys().map(String::as_str).collect();
    worlds.sort();
    assert_eq!(
        worlds,
        [
            "auth-world",
            "channel-world",
            "conformance-world",
            "hook-world",
            "provider-world",
            "tool-world"
        ]
    );
}

#[test]
fn vendor_wit_has_the_published_defect() {
    let mut resolve = Resolve::default();
    let err = resolve
        .push_file(root().join("vendor-wit/tark.wit"))
        .expect_err("the published contract does not parse")
        .to_string();
    assert!(err.contains("auth-status"), "{err:#}");
}

/// Strip comments and blank lines so only WIT items are compared.
fn items(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn wit_differs_from_vendor_only_by_the_documented_fix() {
    let vendor = std::fs::read_to_string(root().join("vendor-wit/tark.wit")).expect("vendor");
    let ours = std::fs::read_to_string(root().join("wit/tark.wit")).expect("ours");
    let fixed: Vec<String> = items(&vendor)
        .into_iter()
        .scan(None::<String>, |iface, line| {
            if let Some(name) = line.strip_prefix("interface ") {
                *iface = Some(name.trim_end_matches(" {").to_string());
            }
            let renamed = match iface.as_deref() {
                Some("provider-plugin") => line
                    .replace("enum auth-status", "enum provider-auth-status")
                    .replace("-> auth-status;", "-> provider-auth-status;"),
                Some("channel-plugin") => line
                    .replace("enum auth-status", "enum channel-auth-status")
                    .replace("-> auth-status;", "-> channel-auth-status;"),
                _ => line,
            };
            Some(renamed)
        })
        .collect();
    assert_eq!(fixed, items(&ours));
    // The fix renamed types only: every function name of the contract is still there.
    assert_eq!(
        vendor.matches("auth-status: func()").count(),
        ours.matches("auth-status: func()").count()
    );
    // Additions live in their own files and define new names only.
    let dir: Vec<String> = std::fs::read_dir(root().join("wit"))
        .expect("wit dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut dir = dir;
    dir.sort();
    assert_eq!(dir, ["conformance.wit", "hook.wit", "tark.wit"]);
}
