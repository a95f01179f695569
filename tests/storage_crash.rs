//! Crash safety of plugin storage: a process killed (SIGKILL) in the middle of writes
//! leaves `storage.json` holding the old or the new map, never a broken file; and two
//! processes writing the same store lose no update (cross-process file lock); and a
//! write by another process is seen by a store that already cached the file within the
//! documented re-check interval.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tark_wasmer::lowlevel::{StoreRegistry, STORAGE_RECHECK_INTERVAL};

const CHILD_ENV: &str = "TARK_WASMER_STORAGE_CRASH_CHILD";

/// When run as the child: write to the store until killed (or `count` writes).
fn child_main(dir: &Path, prefix: &str, count: usize) {
    let reg = StoreRegistry::default();
    let store = reg.open(dir, "crash", 1 << 30).expect("open store");
    let big = "v".repeat(64 * 1024);
    for i in 0..count {
        store
            .set(&format!("{prefix}{}", i % 50), &format!("{i}:{big}"))
            .expect("set");
    }
}

/// Spawned by the tests below as the writer process (`CHILD_ENV` set). Run normally, it
/// checks the same writer path in-process: a fresh store persists what it is given.
#[test]
fn child_entry_point() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        let tmp = tempfile::tempdir().expect("tempdir");
        child_main(tmp.path(), "x", 3);
        let text = std::fs::read_to_string(tmp.path().join("storage.json")).expect("written");
        let map: std::collections::HashMap<String, String> =
            serde_json::from_str(&text).expect("valid");
        assert_eq!(map.len(), 3);
        return;
    };
    {
        let mut parts = spec.splitn(3, '|');
        let (dir, prefix, count) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
            parts
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(usize::MAX),
        );
        child_main(Path::new(dir), prefix, count);
    }
}

fn spawn_child(dir: &Path, prefix: &str, count: Option<usize>) -> std::process::Child {
    let exe = std::env::current_exe().expect("test binary");
    let spec = format!(
        "{}|{prefix}|{}",
        dir.display(),
        count.map(|c| c.to_string()).unwrap_or_default()
    );
    Command::new(exe)
        .args([
            "child_entry_point",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child")
}

#[test]
fn killed_writer_leaves_a_valid_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    for round in 0..12u64 {
        let mut child = spawn_child(&dir, "k", None);
        std::thread::sleep(Duration::from_millis(40 + round * 17));
        child.kill().expect("kill");
        let _ = child.wait();
        let path = dir.join("storage.json");
        if path.exists() {
            let text = std::fs::read_to_string(&path).expect("read");
            let map: std::collections::HashMap<String, String> = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("round {round}: storage.json is broken: {e}"));
            for v in map.values() {
                assert!(
                    v.ends_with(&"v".repeat(64 * 1024)),
                    "round {round}: torn value"
                );
            }
        }
        // No corrupt-file asides were ever needed.
        let asides = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(asides, 0, "round {round}");
    }
}

#[test]
fn two_processes_lose_no_update() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let mut a = spawn_child(&dir, "a", Some(50));
    let mut b = spawn_child(&dir, "b", Some(50));
    assert!(a.wait().expect("a").success());
    assert!(b.wait().expect("b").success());
    let text = std::fs::read_to_string(dir.join("storage.json")).expect("read");
    let map: std::collections::HashMap<String, String> =
        serde_json::from_str(&text).expect("valid");
    for p in ["a", "b"] {
        for i in 0..50 {
            assert!(map.contains_key(&format!("{p}{i}")), "lost {p}{i}");
        }
    }
}

#[test]
fn another_process_write_is_seen_within_the_recheck_interval() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let reg = StoreRegistry::default();
    let store = reg.open(&dir, "reader", 1 << 30).expect("open store");
    store.set("mine", "1").expect("set");
    // Cached: the snapshot now answers reads from memory.
    assert_eq!(store.get("p0", usize::MAX).expect("get"), None);
    let mut child = spawn_child(&dir, "p", Some(1));
    assert!(child.wait().expect("child").success());
    // The documented bound: reads that start RECHECK_INTERVAL after the commit see it.
    std::thread::sleep(STORAGE_RECHECK_INTERVAL + Duration::from_millis(5));
    let seen = store
        .get("p0", usize::MAX)
        .expect("get")
        .expect("p0 written by the child");
    assert!(seen.starts_with("0:"), "{}", &seen[..seen.len().min(10)]);
    assert_eq!(
        store.get("mine", usize::MAX).expect("get").as_deref(),
        Some("1")
    );
}
