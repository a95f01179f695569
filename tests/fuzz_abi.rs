//! Fuzzing over the ABI boundary (property tests with proptest), on both compilers:
//!
//! 1. Random pointers, lengths and bytes for every host import of both ABIs: WAT guests
//!    whose export forwards raw arguments from its input to the chosen import (the 15
//!    `tark:*` functions of the legacy ABI; storage, http, env, fs, log and ws of the
//!    canonical ABI). Arguments mix well-formed strings (storage keys, URLs of a local
//!    HTTP server, allowed files and variables, header lists) with out-of-bounds,
//!    overflowing, misaligned and invalid-UTF-8 ones; a canonical guest's
//!    `cabi_realloc` also misbehaves at random. Properties: the host never panics; a
//!    legacy import returns one of its documented codes (it never traps); a canonical
//!    import returns or traps with a clean `host function ...` message; the storage file
//!    stays a valid JSON map of strings; a normal call works right after.
//! 2. Random guest results for every lifted type: a WAT guest whose exports (every
//!    function of every plugin interface in the contract, conformance included) return a
//!    value or pointer read from a memory image the test fills through a setter export.
//!    The image is a structure-aware encoding of a random value of the result type with
//!    random corruptions (pointers, lengths, discriminants, chars, UTF-8, aliasing that
//!    exhausts the per-call budget). Property: the host's answer equals what an
//!    independent decoder written here from the canonical ABI says (the value, or the
//!    exact `AbiError`), and the host never holds more than a small multiple of the
//!    per-call limit while lifting.
//!
//! Cases per property and compiler: 1000 by default (a few seconds; sized for CI);
//! `TARK_WASMER_FUZZ_CASES=<n>` runs more.

mod alloc_track;
mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use wasmer::Type;

use common::fixtures::{compilers, TestEnv};
use common::servers::HttpTestServer;
use tark_wasmer::engine::Compiler;
use tark_wasmer::lowlevel::AbiError;
use tark_wasmer::lowlevel::Contract;
use tark_wasmer::lowlevel::LEGACY_IMPORTS;
use tark_wasmer::lowlevel::{Ty, Val};
use tark_wasmer::{CallError, GuestMemoryError};
use tark_wasmer::{Error, PluginHost};

#[global_allocator]
static ALLOC: alloc_track::Tracking = alloc_track::Tracking;

/// Cases per property and compiler.
fn cases() -> u32 {
    std::env::var("TARK_WASMER_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

fn config() -> Config {
    Config {
        cases: cases(),
        // Shrunk failures are printed; no regression files in the source tree.
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    }
}

/// Run `check` over `strategy` with the fuzz config; panic with the minimal failure.
fn run<S: Strategy>(
    what: &str,
    compiler: Compiler,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let start = Instant::now();
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, check) {
        panic!("{what} on {compiler}: {e}");
    }
    eprintln!(
        "fuzz {what} on {compiler}: {} cases in {:.1} s",
        cases(),
        start.elapsed().as_secs_f64()
    );
}

/// Draws decisions from a proptest-generated vector (zeros once it runs out), so that
/// shrinking the vector shrinks the case towards "no corruption, smallest sizes".
struct Gen<'a> {
    choices: &'a [u32],
    pos: usize,
}

impl<'a> Gen<'a> {
    fn new(choices: &'a [u32]) -> Self {
        Gen { choices, pos: 0 }
    }

    fn next(&mut self) -> u32 {
        let v = self.choices.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }

    fn below(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    /// True with probability `k / n` (false for a zero choice).
    fn chance(&mut self, k: u32, n: u32) -> bool {
        self.below(n) >= n.saturating_sub(k)
    }
}

fn wat_types(kind: &str, ts: &[Type]) -> String {
    if ts.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = ts
        .iter()
        .map(|t| match t {
            Type::I32 => "i32",
            Type::I64 => "i64",
            Type::F32 => "f32",
            Type::F64 => "f64",
            other => panic!("no core type {other:?} in the contract"),
        })
        .collect();
    format!("({kind} {})", names.join(" "))
}

fn wat_sig(ty: &wasmer::FunctionType) -> String {
    format!(
        "{} {}",
        wat_types("param", ty.params()),
        wat_types("result", ty.results())
    )
}

/// Read a plugin's storage file: it must be absent or a JSON map of strings.
fn check_storage_file(env: &TestEnv, id: &str) -> Result<usize, TestCaseError> {
    let path = env.plugins_dir.join(id).join("data/storage.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let map: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|e| {
                TestCaseError::fail(format!("{} is not a JSON map: {e}", path.display()))
            })?;
            Ok(map.len())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(TestCaseError::fail(format!("{}: {e}", path.display()))),
    }
}

// =====================================================================================
// 1. Host imports with random arguments
// =====================================================================================

/// What a core parameter (or pair) of an import means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `(ptr, len)` of a string.
    Str,
    /// `(ptr, len)` of a list (canonical header lists).
    List,
    /// A 64-bit value (WebSocket handle, timeout, size).
    I64,
    /// Where the host writes its answer.
    Ret,
}

/// One host import as the fuzz guest calls it.
#[derive(Debug, Clone)]
struct HostImport {
    module: String,
    name: String,
    params: Vec<Type>,
    results: Vec<Type>,
    roles: Vec<Role>,
}

/// The 15 legacy imports, with roles from their shapes: i64 values, then string pairs,
/// and a trailing answer pointer when the i32 count is odd.
fn legacy_imports() -> Vec<HostImport> {
    LEGACY_IMPORTS
        .iter()
        .map(|(module, name, params, results)| {
            let n32 = params.iter().filter(|t| **t == Type::I32).count();
            let mut roles = Vec::new();
            let mut seen32 = 0;
            for t in params.iter() {
                if *t == Type::I64 {
                    roles.push(Role::I64);
                    continue;
                }
                seen32 += 1;
                if n32 % 2 == 1 && seen32 == n32 {
                    roles.push(Role::Ret);
                } else if seen32 % 2 == 1 {
                    roles.push(Role::Str);
                }
            }
            HostImport {
                module: module.to_string(),
                name: name.to_string(),
                params: params.to_vec(),
                results: results.to_vec(),
                roles,
            }
        })
        .collect()
}

/// The canonical host imports (storage, http, env, fs, log, ws), roles from the WIT.
fn canonical_imports() -> Vec<HostImport> {
    let contract = Contract::get();
    let mut out = Vec::new();
    for iface in ["storage", "http", "env", "fs", "log", "ws"] {
        for (name, f) in &contract.interfaces[iface] {
            let sig = f.import_signature();
            let mut roles: Vec<Role> = f
                .params
                .iter()
                .map(|(_, t)| match t {
                    Ty::String => Role::Str,
                    Ty::List(_) => Role::List,
                    Ty::S64 => Role::I64,
                    other => panic!("{iface}.{name}: unexpected parameter type {other:?}"),
                })
                .collect();
            if sig.params().len() > f.flat_params().len() {
                roles.push(Role::Ret);
            }
            out.push(HostImport {
                module: format!("tark:plugin/{iface}"),
                name: name.clone(),
                params: sig.params().to_vec(),
                results: sig.results().to_vec(),
                roles,
            });
        }
    }
    out
}

/// Where the guests copy the test's data block.
const DATA: u32 = 0x1000;
/// A 16-byte block of invalid UTF-8 both guests carry.
const BAD_UTF8: u32 = 0x0f00;
const BAD_UTF8_DATA: &str = r#"\ff\fe\fd\c0\80\ed\a0\80\f8\88\80\80\80\c3\28\e2"#;
/// A scratch area for well-formed answer pointers.
const SCRATCH: u32 = 0x10000;

/// The legacy guest: `fuzz(input)` decodes a selector and 7 arguments (16 hex digits
/// each) from its input, copies the rest to DATA and calls the selected import;
/// `normal(key)` stores key=key and reads it back; `echo` echoes.
fn legacy_guest(imports: &[HostImport]) -> String {
    let mut decls = String::new();
    let mut dispatch = String::new();
    let find = |m: &str, n: &str| {
        imports
            .iter()
            .position(|i| i.module == m && i.name == n)
            .unwrap_or_else(|| panic!("{m}.{n} missing"))
    };
    let (get, set) = (find("tark:storage", "get"), find("tark:storage", "set"));
    for (k, imp) in imports.iter().enumerate() {
        decls.push_str(&format!(
            "  (import \"{}\" \"{}\" (func $i{k} {}))\n",
            imp.module,
            imp.name,
            wat_sig(&wasmer::FunctionType::new(
                imp.params.clone(),
                imp.results.clone()
            ))
        ));
        let args: String = imp
            .params
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let v = format!(
                    "(call $hex (i32.add (local.get $p) (i32.const {})))",
                    16 * (j + 1)
                );
                if *t == Type::I32 {
                    format!(" (i32.wrap_i64 {v})")
                } else {
                    format!(" {v}")
                }
            })
            .collect();
        let call = if imp.results.is_empty() {
            format!("(call $i{k}{args}) (return (i32.const 0))")
        } else {
            format!("(return (call $i{k}{args}))")
        };
        dispatch.push_str(&format!(
            "    (if (i32.eq (local.get $sel) (i32.const {k})) (then {call}))\n"
        ));
    }
    format!(
        r#"(module
{decls}
  (memory (export "memory") 8)
  (data (i32.const {BAD_UTF8}) "{BAD_UTF8_DATA}")
  (global $heap (mut i32) (i32.const 0x20000))
  (global $live (mut i32) (i32.const 0))
  (func (export "alloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.and (i32.add (i32.add (local.get $p) (local.get $n)) (i32.const 7)) (i32.const -8)))
    (global.set $live (i32.add (global.get $live) (i32.const 1)))
    (local.get $p))
  (func (export "dealloc") (param i32 i32)
    (global.set $live (i32.sub (global.get $live) (i32.const 1)))
    (if (i32.le_s (global.get $live) (i32.const 0))
      (then (global.set $live (i32.const 0)) (global.set $heap (i32.const 0x20000)))))
  (func $hex (param $p i32) (result i64) (local $i i32) (local $c i32) (local $v i64)
    (loop $l
      (local.set $c (i32.load8_u (i32.add (local.get $p) (local.get $i))))
      (local.set $c (if (result i32) (i32.ge_u (local.get $c) (i32.const 97))
        (then (i32.sub (local.get $c) (i32.const 87)))
        (else (i32.sub (local.get $c) (i32.const 48)))))
      (local.set $v (i64.or (i64.shl (local.get $v) (i64.const 4))
                            (i64.extend_i32_u (i32.and (local.get $c) (i32.const 15)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 16))))
    (local.get $v))
  (func (export "fuzz") (param $p i32) (param $n i32) (result i32) (local $sel i32)
    (if (i32.lt_u (local.get $n) (i32.const 128)) (then (return (i32.const -100))))
    (memory.copy (i32.const {DATA}) (i32.add (local.get $p) (i32.const 128))
                 (i32.sub (local.get $n) (i32.const 128)))
    (local.set $sel (i32.wrap_i64 (call $hex (local.get $p))))
{dispatch}
    (i32.const -100))
  (func (export "normal") (param $p i32) (param $n i32) (param $out i32) (result i32)
    (drop (call $i{set} (local.get $p) (local.get $n) (local.get $p) (local.get $n)))
    (call $i{get} (local.get $p) (local.get $n) (local.get $out)))
)"#
    )
}

/// The canonical guest: `conformance#echo-bytes(input)` reads a selector, a
/// `cabi_realloc` mode and 7 raw i64 arguments from its input, copies the rest to DATA
/// and calls the selected import; `conformance#echo-string(s)` stores s=s through
/// storage.set and returns storage.get(s).
fn canonical_guest(imports: &[HostImport]) -> String {
    let mut decls = String::new();
    let mut dispatch = String::new();
    let find = |m: &str, n: &str| {
        imports
            .iter()
            .position(|i| i.module == m && i.name == n)
            .unwrap_or_else(|| panic!("{m}.{n} missing"))
    };
    for (k, imp) in imports.iter().enumerate() {
        decls.push_str(&format!(
            "  (import \"{}\" \"{}\" (func $i{k} {}))\n",
            imp.module,
            imp.name,
            wat_sig(&wasmer::FunctionType::new(
                imp.params.clone(),
                imp.results.clone()
            ))
        ));
        let args: String = imp
            .params
            .iter()
            .enumerate()
            .map(|(j, t)| {
                let v = format!("(i64.load offset={} (local.get 0))", 8 + 8 * j);
                if *t == Type::I32 {
                    format!(" (i32.wrap_i64 {v})")
                } else {
                    format!(" {v}")
                }
            })
            .collect();
        assert!(imp.results.is_empty(), "{}.{}", imp.module, imp.name);
        dispatch.push_str(&format!(
            "    (if (i32.eq (local.get $sel) (i32.const {k})) (then (call $i{k}{args})))\n"
        ));
    }
    let set = find("tark:plugin/storage", "set");
    let get = find("tark:plugin/storage", "get");
    let conf = |f: &str| {
        wat_sig(
            &Contract::get()
                .func("conformance", f)
                .expect("conformance function")
                .export_signature(),
        )
    };
    let (bytes_sig, string_sig) = (conf("echo-bytes"), conf("echo-string"));
    format!(
        r#"(module
{decls}
  (memory (export "memory") 16)
  (data (i32.const {BAD_UTF8}) "{BAD_UTF8_DATA}")
  (global $heap (mut i32) (i32.const 0x40000))
  (global $mode (mut i32) (i32.const 0))
  ;; mode 0: correct; 1: null; 2: past memory; 3: misaligned when alignment > 1; 4: trap.
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $n i32) (result i32)
    (local $p i32)
    (if (i32.eq (global.get $mode) (i32.const 1)) (then (return (i32.const 0))))
    (if (i32.eq (global.get $mode) (i32.const 2)) (then (return (i32.const -16))))
    (if (i32.eq (global.get $mode) (i32.const 4)) (then unreachable))
    (if (i32.gt_u (local.get $n) (i32.const 0xb0000)) (then (return (i32.const 0))))
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $n)) (i32.const 0x100000))
      (then (local.set $p (i32.const 0x40000))))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (if (i32.and (i32.eq (global.get $mode) (i32.const 3)) (i32.gt_u (local.get $align) (i32.const 1)))
      (then (return (i32.add (local.get $p) (i32.const 1)))))
    (local.get $p))
  (func (export "tark:plugin/conformance#echo-bytes") {bytes_sig} (local $sel i32)
    (if (i32.lt_u (local.get 1) (i32.const 64)) (then unreachable))
    (local.set $sel (i32.load (local.get 0)))
    (global.set $mode (i32.load offset=4 (local.get 0)))
    (memory.copy (i32.const {DATA}) (i32.add (local.get 0) (i32.const 64))
                 (i32.sub (local.get 1) (i32.const 64)))
{dispatch}
    (global.set $mode (i32.const 0))
    (i64.store (i32.const 0x800) (i64.const 0))
    (i32.const 0x800))
  (func (export "cabi_post_tark:plugin/conformance#echo-bytes") (param i32))
  (func (export "tark:plugin/conformance#echo-string") {string_sig}
    (call $i{set} (local.get 0) (local.get 1) (local.get 0) (local.get 1) (i32.const 0x900))
    (call $i{get} (local.get 0) (local.get 1) (i32.const 0x920))
    (i32.const 0x924))
  (func (export "cabi_post_tark:plugin/conformance#echo-string") (param i32))
)"#
    )
}

/// Data the guests see at DATA: known strings (and, for the canonical guest, header
/// lists), followed by random bytes.
struct DataBlock {
    bytes: Vec<u8>,
    /// Known strings: (address, byte length); the last is the random tail.
    strings: Vec<(u32, u32)>,
    /// Which of them are valid UTF-8.
    strings_ok: Vec<bool>,
    /// Known lists: (address, element count).
    lists: Vec<(u32, u32)>,
    /// Which of them are well-formed.
    lists_ok: Vec<bool>,
}

fn known_strings(server: &HttpTestServer) -> Vec<String> {
    vec![
        "fuzz-key".into(),
        "fuzz-value".into(),
        server.url("/echo"),
        server.url("/big/300000"),
        server.url("/status/500"),
        "http://denied.example/".into(),
        "allowed.txt".into(),
        "/etc/passwd".into(),
        "HOME".into(),
        "NOT_ALLOWED_VAR".into(),
        r#"[["X-Fuzz","1"]]"#.into(),
        r#"{"not":"a list"}"#.into(),
        "wss://127.0.0.1:1/".into(),
        String::new(),
        "héllo wörld ✓ 😀".into(),
    ]
}

fn data_block(server: &HttpTestServer, noise: &[u8], canonical: bool) -> DataBlock {
    let mut bytes = Vec::new();
    let mut strings = Vec::new();
    for s in known_strings(server) {
        strings.push((DATA + bytes.len() as u32, s.len() as u32));
        bytes.extend_from_slice(s.as_bytes());
    }
    let mut lists = Vec::new();
    if canonical {
        // list<tuple<string, string>>: one well-formed header, and the same bytes read
        // as a longer list (garbage beyond).
        while bytes.len() % 4 != 0 {
            bytes.push(0);
        }
        let at = DATA + bytes.len() as u32;
        let (name, value) = (strings[0], strings[1]);
        for v in [name.0, name.1, value.0, value.1] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        lists.extend([(at, 1), (at, 0), (at, 3), (at + 2, 1)]);
    }
    let lists_ok = vec![true, true, false, false][..lists.len()].to_vec();
    let noise_at = DATA + bytes.len() as u32;
    if canonical {
        bytes.extend_from_slice(noise);
    } else {
        // The legacy input is text: the noise becomes (valid) UTF-8.
        bytes.extend_from_slice(String::from_utf8_lossy(noise).as_bytes());
    }
    strings.push((noise_at, (DATA + bytes.len() as u32) - noise_at));
    let mut strings_ok = vec![true; strings.len()];
    if let Some(last) = strings_ok.last_mut() {
        *last = std::str::from_utf8(&bytes[(noise_at - DATA) as usize..]).is_ok();
    }
    DataBlock {
        bytes,
        strings,
        strings_ok,
        lists,
        lists_ok,
    }
}

/// A `(ptr, len)` for a string or list argument, and whether it is well-formed.
fn arg_pair(g: &mut Gen, block: &DataBlock, mem: u32, list: bool) -> (u32, u32, bool) {
    let (known, ok) = if list {
        (&block.lists, &block.lists_ok)
    } else {
        (&block.strings, &block.strings_ok)
    };
    let end = DATA + block.bytes.len() as u32;
    let (p, l) = match g.below(14) {
        0..=5 => {
            let i = g.below(known.len() as u32) as usize;
            return (known[i].0, known[i].1, ok[i]);
        }
        6 => {
            let (p, l) = known[g.below(known.len() as u32) as usize];
            (p, l + 1 + g.below(8))
        }
        7 => {
            // A random slice of the data (short: keys stored this way stay few and small).
            let p = DATA + g.below(end - DATA);
            (p, g.below((end - p + 1).min(33)))
        }
        8 => (BAD_UTF8 + g.below(8), 1 + g.below(8)),
        9 => (mem - g.below(16), g.below(64)),
        10 => (g.next(), g.next()),
        11 => (known[0].0, u32::MAX - g.below(4)),
        12 => (u32::MAX - g.below(8), g.below(16)),
        _ => [(0, 0), (mem, 0), (0, 1)][g.below(3) as usize],
    };
    (p, l, false)
}

/// An answer pointer, and whether it is well-formed (aligned, in bounds).
fn arg_ret(g: &mut Gen, block: &DataBlock, mem: u32) -> (u32, bool) {
    let p = match g.below(12) {
        0..=5 => return (SCRATCH + (g.below(0x1000) & !7), true),
        6 => SCRATCH + (g.below(0x1000) | 1),
        7 => mem - g.below(64),
        8 => mem + g.below(64),
        9 => g.next(),
        10 => 0,
        _ => DATA + g.below(block.bytes.len() as u32 + 1),
    };
    (p, false)
}

fn arg_i64(g: &mut Gen) -> i64 {
    match g.below(6) {
        0 => 0,
        1 => i64::from(1 + g.below(1000)),
        2 => -i64::from(1 + g.below(1000)),
        3 => i64::MAX,
        4 => i64::MIN,
        _ => (i64::from(g.next()) << 32) | i64::from(g.next()),
    }
}

/// The core argument values of one call of `imp`, and whether all are well-formed.
fn core_args(g: &mut Gen, imp: &HostImport, block: &DataBlock, mem: u32) -> (Vec<i64>, bool) {
    let mut out = Vec::new();
    let mut well_formed = true;
    for role in &imp.roles {
        match role {
            Role::Str | Role::List => {
                let (p, l, ok) = arg_pair(g, block, mem, *role == Role::List);
                out.push(i64::from(p));
                out.push(i64::from(l));
                well_formed &= ok;
            }
            Role::Ret => {
                let (p, ok) = arg_ret(g, block, mem);
                out.push(i64::from(p));
                well_formed &= ok;
            }
            Role::I64 => out.push(arg_i64(g)),
        }
    }
    assert_eq!(out.len(), imp.params.len(), "{}.{}", imp.module, imp.name);
    (out, well_formed)
}

/// A plugins directory with both fuzz guests, an HTTP server they may reach, a file they
/// may read.
struct ImportFixture {
    env: TestEnv,
    host: PluginHost,
    server: HttpTestServer,
    legacy: Vec<HostImport>,
    canonical: Vec<HostImport>,
}

const CAPS: &str =
    "storage = true\nhttp = [\"127.0.0.1\"]\nenv = [\"HOME\"]\nfs_read = [\"allowed.txt\"]";

impl ImportFixture {
    fn new(compiler: Compiler) -> Self {
        let server = HttpTestServer::start();
        let env = TestEnv::new();
        std::fs::write(env.tmp.path().join("allowed.txt"), "file contents ✓").expect("write");
        let legacy = legacy_imports();
        let canonical = canonical_imports();
        env.install_wat("fuzz-legacy", "tool", CAPS, &legacy_guest(&legacy));
        env.install_wat("fuzz-canon", "tool", CAPS, &canonical_guest(&canonical));
        let host = env.host(compiler);
        ImportFixture {
            env,
            host,
            server,
            legacy,
            canonical,
        }
    }
}

/// The codes tark documents for each legacy import (legacy ABI spec §1.1).
fn legacy_code_allowed(imp: &HostImport, code: i32) -> bool {
    match (imp.module.as_str(), imp.name.as_str()) {
        ("tark:storage", "get") => code >= -1,
        ("tark:storage", _) => code == 0 || code == -1,
        ("tark:http", _) | ("tark:ws", "connect") => code > 0 || code == -1 || code == -2,
        ("tark:ws", _) => code > 0 || code == -1,
        ("tark:env", "get") => code >= -2,
        ("tark:log", _) => code == 0,
        ("tark:fs", "read") => code >= -4,
        _ => false,
    }
}

#[derive(Default, Debug)]
struct Tally {
    ok: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }
    fn total_errors(&self) -> u64 {
        self.errors.values().sum()
    }
}

#[test]
fn legacy_imports_survive_random_pointers_lengths_and_bytes() {
    for compiler in compilers() {
        let fx = RefCell::new(ImportFixture::new(compiler));
        let tally = RefCell::new(Tally::default());
        let n = fx.borrow().legacy.len() as u32;
        assert_eq!(n, 15);
        let well_formed_cases = RefCell::new(0u64);
        run(
            "legacy imports",
            compiler,
            (0..n, vec(any::<u32>(), 0..48), vec(any::<u8>(), 0..256)),
            |(sel, choices, noise)| {
                let mut fx = fx.borrow_mut();
                let fx = &mut *fx;
                let imp = fx.legacy[sel as usize].clone();
                let block = data_block(&fx.server, &noise, false);
                let mut g = Gen::new(&choices);
                let (args, well_formed) = core_args(&mut g, &imp, &block, 8 * 65536);
                let mut input = format!("{:016x}", u64::from(sel));
                for j in 0..7 {
                    input.push_str(&format!("{:016x}", args.get(j).copied().unwrap_or(0)));
                }
                input.push_str(std::str::from_utf8(&block.bytes).expect("legacy data is text"));
                let p = fx.host.get_mut("fuzz-legacy").expect("loaded");
                let code = match p.legacy_code("fuzz", Some(&input)) {
                    Ok(c) => c,
                    Err(e) => {
                        return Err(TestCaseError::fail(format!(
                            "{}.{}{args:?}: a legacy import must answer with a code: {e}",
                            imp.module, imp.name
                        )))
                    }
                };
                prop_assert!(
                    legacy_code_allowed(&imp, code),
                    "{}.{}{:?} returned {}",
                    imp.module,
                    imp.name,
                    args,
                    code
                );
                // Well-formed arguments are never refused as bad (-1, fs.read -4): only
                // policy (-2), missing files (-3) or absent values (0) remain.
                prop_assert!(
                    !well_formed || (code != -1 && code != -4),
                    "{}.{}{:?}: well-formed arguments refused with {}",
                    imp.module,
                    imp.name,
                    args,
                    code
                );
                if well_formed {
                    *well_formed_cases.borrow_mut() += 1;
                }
                if code > 0 && imp.roles.last() == Some(&Role::Ret) {
                    let ret = *args.last().expect("ret") as u32;
                    prop_assert!(u64::from(ret) + code as u64 <= 8 * 65536);
                }
                {
                    let mut t = tally.borrow_mut();
                    if code >= 0 {
                        t.ok += 1;
                    } else {
                        t.error(format!("{}.{} {code}", imp.module, imp.name));
                    }
                }
                check_storage_file(&fx.env, "fuzz-legacy")?;
                // A normal call right after: storage round trip.
                let p = fx.host.get_mut("fuzz-legacy").expect("loaded");
                let back = p
                    .legacy_text_with_input("normal", "normal-check ✓")
                    .map_err(|e| TestCaseError::fail(format!("normal call failed: {e}")))?;
                prop_assert_eq!(back, "normal-check ✓");
                prop_assert_eq!(p.instances_created(), 1);
                Ok(())
            },
        );
        let t = tally.into_inner();
        let wf = well_formed_cases.into_inner();
        eprintln!(
            "legacy imports on {compiler}: {} ok, {wf} with well-formed arguments, errors {:?}",
            t.ok, t.errors
        );
        if cases() >= 100 {
            assert!(
                t.ok > 0 && t.total_errors() > 0 && wf > 0,
                "degenerate generator: {t:?}"
            );
        }
    }
}

/// The errors a canonical import may trap with (AbiError texts).
const CLEAN_ABI_ERRORS: &[&str] = &[
    "guest memory range out of bounds: ",
    "misaligned guest pointer ",
    "invalid UTF-8 in guest string ",
    "guest data too large: ",
    "cabi_realloc(",
    "cabi_realloc trapped: ",
];

#[test]
fn canonical_imports_survive_random_pointers_lengths_and_bytes() {
    for compiler in compilers() {
        let fx = RefCell::new(ImportFixture::new(compiler));
        let tally = RefCell::new(Tally::default());
        let n = fx.borrow().canonical.len() as u32;
        assert_eq!(n, 16, "storage 4, http 2, env 1, fs 1, log 4, ws 4");
        let well_formed_cases = RefCell::new(0u64);
        let normal_calls = RefCell::new(0u64);
        run(
            "canonical imports",
            compiler,
            (0..n, vec(any::<u32>(), 0..48), vec(any::<u8>(), 0..256)),
            |(sel, choices, noise)| {
                let mut fx = fx.borrow_mut();
                let fx = &mut *fx;
                let imp = fx.canonical[sel as usize].clone();
                let block = data_block(&fx.server, &noise, true);
                let mut g = Gen::new(&choices);
                let mode = match g.below(16) {
                    m @ 1..=4 => m,
                    _ => 0,
                };
                let (args, well_formed) = core_args(&mut g, &imp, &block, 16 * 65536);
                // Well-formed arguments and a correct allocator: the import must answer.
                let must_answer = well_formed && mode == 0;
                if must_answer {
                    *well_formed_cases.borrow_mut() += 1;
                }
                let mut input = Vec::new();
                input.extend_from_slice(&sel.to_le_bytes());
                input.extend_from_slice(&mode.to_le_bytes());
                for j in 0..7 {
                    input.extend_from_slice(&args.get(j).copied().unwrap_or(0).to_le_bytes());
                }
                input.extend_from_slice(&block.bytes);
                let p = fx.host.get_mut("fuzz-canon").expect("loaded");
                let r = p.call_canonical("conformance", "echo-bytes", &[Val::Bytes(input)]);
                let what = format!("{}.{}{args:?} (realloc mode {mode})", imp.module, imp.name);
                match r {
                    Ok(Some(Val::Bytes(b))) if b.is_empty() => tally.borrow_mut().ok += 1,
                    Err(Error::Call {
                        source: CallError::Trap { function, message },
                        ..
                    }) => {
                        prop_assert!(
                            !must_answer,
                            "{}: well-formed call refused: {}",
                            what,
                            message
                        );
                        prop_assert_eq!(function, "tark:plugin/conformance#echo-bytes");
                        let prefix = format!("host function {}.{}: ", imp.module, imp.name);
                        let Some(rest) = message.strip_prefix(&prefix) else {
                            return Err(TestCaseError::fail(format!(
                                "{what}: unexpected trap {message}"
                            )));
                        };
                        let kind = CLEAN_ABI_ERRORS.iter().find(|k| rest.starts_with(**k));
                        prop_assert!(kind.is_some(), "{}: unclean trap: {}", what, message);
                        prop_assert!(!message.contains("panic"), "{}: {}", what, message);
                        tally
                            .borrow_mut()
                            .error(kind.map(|k| k.trim_end()).unwrap_or_default());
                    }
                    other => {
                        return Err(TestCaseError::fail(format!("{what}: {other:?}")));
                    }
                }
                check_storage_file(&fx.env, "fuzz-canon")?;
                let p = fx.host.get_mut("fuzz-canon").expect("loaded");
                let back = p
                    .call_canonical("conformance", "echo-string", &[Val::string("normal ✓")])
                    .map_err(|e| TestCaseError::fail(format!("{what}: normal call: {e}")))?;
                prop_assert_eq!(back, Some(Val::string("normal ✓")));
                *normal_calls.borrow_mut() += 1;
                Ok(())
            },
        );
        let t = tally.into_inner();
        let wf = well_formed_cases.into_inner();
        eprintln!(
            "canonical imports on {compiler}: {} ok ({wf} well-formed), errors {:?}, instances {}",
            t.ok,
            t.errors,
            fx.borrow_mut()
                .host
                .get("fuzz-canon")
                .map(|p| p.instances_created())
                .unwrap_or(0)
        );
        assert!(*normal_calls.borrow() >= u64::from(cases()));
        if cases() >= 100 {
            assert!(
                t.ok > 0 && t.total_errors() > 0 && wf > 0,
                "degenerate generator: {t:?}"
            );
        }
    }
}

// =====================================================================================
// 2. Random guest results for every lifted type
// =====================================================================================

/// The image the test controls: [0, IMAGE).
const IMAGE: u32 = 0x10000;
/// Zero memory nothing writes: [IMAGE, BUMP).
const BUMP: u32 = 0x80000;
/// The guest's memory: [BUMP, MEM) is the guest allocator's (argument lowering), whose
/// contents the decoder does not predict.
const MEM: u32 = 0x100000;
/// Per-call limit for the lift fuzz (small, so budget exhaustion is common).
const LIFT_LIMIT: usize = 16 * 1024;
/// What one lifted `Val` costs against the limit.
const VAL_COST: u64 = std::mem::size_of::<Val>() as u64;

/// Every (interface, function) of the plugin interfaces whose result the host lifts.
fn lift_targets() -> Vec<(String, String)> {
    let c = Contract::get();
    let mut out = Vec::new();
    for iface in [
        "auth-plugin",
        "tool-plugin",
        "provider-plugin",
        "channel-plugin",
        "hook-plugin",
        "conformance",
    ] {
        for (name, f) in &c.interfaces[iface] {
            if f.result.is_some() && !(iface == "conformance" && name == "sum-u32s") {
                out.push((iface.to_string(), name.clone()));
            }
        }
    }
    out
}

/// The lift guest: `conformance#sum-u32s(image)` zeroes [0, IMAGE) and copies the image
/// there; every target export returns the i32 or i64 stored at address 0.
fn lift_guest(targets: &[(String, String)]) -> String {
    let c = Contract::get();
    let mut funcs = String::new();
    for (iface, name) in targets {
        let sig = c.func(iface, name).expect("target").export_signature();
        let body = match sig.results() {
            [Type::I32] => "(i32.load (i32.const 0))",
            [Type::I64] => "(i64.load (i32.const 0))",
            other => panic!("{iface}#{name}: results {other:?}"),
        };
        funcs.push_str(&format!(
            "  (func (export \"tark:plugin/{iface}#{name}\") {} {body})\n  (func (export \"cabi_post_tark:plugin/{iface}#{name}\") {})\n",
            wat_sig(&sig),
            wat_types("param", sig.results())
        ));
    }
    let setter = wat_sig(
        &c.func("conformance", "sum-u32s")
            .expect("sum-u32s")
            .export_signature(),
    );
    format!(
        r#"(module
  (memory (export "memory") 16)
  (global $heap (mut i32) (i32.const {BUMP}))
  (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                           (i32.sub (i32.const 0) (local.get $align))))
    (if (i32.gt_u (i32.add (local.get $p) (local.get $n)) (i32.const {MEM}))
      (then (local.set $p (i32.const {BUMP}))))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (local.get $p))
  (func (export "tark:plugin/conformance#sum-u32s") {setter}
    (memory.fill (i32.const 0) (i32.const 0) (i32.const {IMAGE}))
    (memory.copy (i32.const 0) (local.get 0) (i32.shl (local.get 1) (i32.const 2)))
    (global.set $heap (i32.const {BUMP}))
    (i64.const 0))
{funcs})"#
    )
}

// ----- the decoder's own layout (canonical ABI: elem_size / alignment) -----

fn cases_of(t: &Ty) -> Option<Vec<Option<&Ty>>> {
    match t {
        Ty::Variant(cs) => Some(cs.iter().map(|(_, t)| t.as_ref()).collect()),
        Ty::Enum(names) => Some(vec![None; names.len()]),
        Ty::Option(t) => Some(vec![None, Some(&**t)]),
        Ty::Result(ok, err) => Some(vec![ok.as_deref(), err.as_deref()]),
        _ => None,
    }
}

fn fields_of(t: &Ty) -> Vec<&Ty> {
    match t {
        Ty::Record(fs) => fs.iter().map(|(_, t)| t).collect(),
        Ty::Tuple(ts) => ts.iter().collect(),
        _ => Vec::new(),
    }
}

fn disc_bytes(n: usize) -> u32 {
    match n {
        0..=256 => 1,
        257..=65536 => 2,
        _ => 4,
    }
}

fn align_up(x: u32, a: u32) -> u32 {
    x.div_ceil(a) * a
}

fn alignment(t: &Ty) -> u32 {
    match t {
        Ty::Bool | Ty::U8 | Ty::S8 => 1,
        Ty::U16 | Ty::S16 => 2,
        Ty::U32 | Ty::S32 | Ty::F32 | Ty::Char | Ty::String | Ty::List(_) => 4,
        Ty::U64 | Ty::S64 | Ty::F64 => 8,
        Ty::Record(_) | Ty::Tuple(_) => fields_of(t).into_iter().map(alignment).max().unwrap_or(1),
        _ => {
            let cs = cases_of(t).unwrap_or_default();
            cs.iter()
                .flatten()
                .map(|c| alignment(c))
                .fold(disc_bytes(cs.len()), u32::max)
        }
    }
}

fn payload_offset(t: &Ty) -> u32 {
    let cs = cases_of(t).unwrap_or_default();
    let max_align = cs.iter().flatten().map(|c| alignment(c)).max().unwrap_or(1);
    align_up(disc_bytes(cs.len()), max_align)
}

fn elem_size(t: &Ty) -> u32 {
    match t {
        Ty::Bool | Ty::U8 | Ty::S8 => 1,
        Ty::U16 | Ty::S16 => 2,
        Ty::U32 | Ty::S32 | Ty::F32 | Ty::Char => 4,
        Ty::U64 | Ty::S64 | Ty::F64 | Ty::String | Ty::List(_) => 8,
        Ty::Record(_) | Ty::Tuple(_) => {
            let mut s = 0;
            for f in fields_of(t) {
                s = align_up(s, alignment(f)) + elem_size(f);
            }
            align_up(s, alignment(t))
        }
        _ => {
            let cs = cases_of(t).unwrap_or_default();
            let max = cs.iter().flatten().map(|c| elem_size(c)).max().unwrap_or(0);
            align_up(payload_offset(t) + max, alignment(t))
        }
    }
}

fn flat_count(t: &Ty) -> usize {
    match t {
        Ty::String | Ty::List(_) => 2,
        Ty::Record(_) | Ty::Tuple(_) => fields_of(t).into_iter().map(flat_count).sum(),
        Ty::Variant(_) | Ty::Enum(_) | Ty::Option(_) | Ty::Result(..) => {
            1 + cases_of(t)
                .unwrap_or_default()
                .iter()
                .flatten()
                .map(|c| flat_count(c))
                .max()
                .unwrap_or(0)
        }
        _ => 1,
    }
}

// ----- the generator: a random, sometimes corrupted, encoding of a value -----

struct Image<'g, 'c> {
    g: &'g mut Gen<'c>,
    bytes: Vec<u8>,
    heap: u32,
    /// Corruption rate: out of 64 per site.
    rate: u32,
    strings: Vec<(u32, u32)>,
}

const CHARS: &[char] = &['a', 'Z', '0', ' ', '\n', 'é', 'ü', '✓', '😀', '日', '\0'];

impl Image<'_, '_> {
    fn corrupt(&mut self) -> bool {
        let rate = self.rate;
        self.g.chance(rate, 64)
    }

    fn alloc(&mut self, size: u32, align: u32) -> Option<u32> {
        let p = align_up(self.heap, align.max(1));
        let end = p.checked_add(size)?;
        if end > IMAGE {
            return None;
        }
        self.heap = end;
        Some(p)
    }

    fn put(&mut self, at: u32, data: &[u8]) {
        let at = at as usize;
        if let Some(dst) = self.bytes.get_mut(at..at + data.len()) {
            dst.copy_from_slice(data);
        }
    }

    fn bad_ptr(&mut self, p: u32) -> u32 {
        match self.g.below(7) {
            0 => p.wrapping_add(1),
            1 => MEM - self.g.below(16),
            2 => self.g.next(),
            3 => u32::MAX - self.g.below(16),
            4 => IMAGE + self.g.below(BUMP - IMAGE),
            5 => BUMP + self.g.below(MEM - BUMP),
            _ => self.g.below(IMAGE),
        }
    }

    fn bad_len(&mut self, l: u32) -> u32 {
        match self.g.below(6) {
            0 => u32::MAX - self.g.below(4),
            1 => 0x2000_0000 | self.g.below(16),
            2 => l.wrapping_add(1 + self.g.below(64)),
            3 => self.g.next(),
            4 => MEM,
            _ => l.wrapping_mul(2 + self.g.below(1000)),
        }
    }

    fn string(&mut self) -> (u32, u32) {
        // Aliasing (the same bytes referenced again) runs the per-call budget out.
        if !self.strings.is_empty() && self.g.chance(1, 4) {
            let i = self.g.below(self.strings.len() as u32) as usize;
            return self.strings[i];
        }
        let target = if self.g.chance(1, 6) {
            self.g.below(6000)
        } else {
            self.g.below(20)
        };
        // The text comes from one seed, so long strings cost few choices.
        let mut seed = self.g.next();
        let mut text = Vec::new();
        while (text.len() as u32) < target {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let c = CHARS[((seed >> 16) % CHARS.len() as u32) as usize];
            let mut b = [0u8; 4];
            text.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        if !text.is_empty() && self.corrupt() {
            let i = self.g.below(text.len() as u32) as usize;
            text[i] = [0xff, 0xc3, 0x80, 0xed, 0xf8][self.g.below(5) as usize];
        }
        let Some(p) = self.alloc(text.len() as u32, 1) else {
            return (0, 0);
        };
        self.put(p, &text);
        let s = (p, text.len() as u32);
        self.strings.push(s);
        s
    }

    fn pair_at(&mut self, at: u32, mut p: u32, mut l: u32) {
        if self.corrupt() {
            p = self.bad_ptr(p);
        }
        if self.corrupt() {
            l = self.bad_len(l);
        }
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&p.to_le_bytes());
        b[4..].copy_from_slice(&l.to_le_bytes());
        self.put(at, &b);
    }

    fn disc(&mut self, cases: usize) -> u32 {
        if self.corrupt() {
            let n = cases as u32;
            match self.g.below(3) {
                0 => n,
                1 => n + self.g.below(256 - n.min(255)),
                _ => self.g.next(),
            }
        } else {
            self.g.below(cases as u32)
        }
    }

    fn char_value(&mut self) -> u32 {
        if self.corrupt() {
            [0xd800, 0xdfff, 0x11_0000, u32::MAX, self.g.next()][self.g.below(5) as usize]
        } else {
            match self.g.below(4) {
                0 => u32::from(CHARS[self.g.below(CHARS.len() as u32) as usize]),
                1 => 0x10_ffff,
                _ => {
                    let v = self.g.below(0x11_0000);
                    if (0xd800..0xe000).contains(&v) {
                        v - 0x800
                    } else {
                        v
                    }
                }
            }
        }
    }

    /// Write a value of `t` at `at` (already reserved, aligned).
    fn value(&mut self, t: &Ty, at: u32, depth: u32) {
        match t {
            Ty::Bool => {
                let v = if self.corrupt() {
                    self.g.next() as u8
                } else {
                    self.g.below(2) as u8
                };
                self.put(at, &[v]);
            }
            Ty::U8 | Ty::S8 | Ty::U16 | Ty::S16 | Ty::U32 | Ty::S32 | Ty::F32 => {
                let v = self.g.next().to_le_bytes();
                self.put(at, &v[..elem_size(t) as usize]);
            }
            Ty::U64 | Ty::S64 | Ty::F64 => {
                let v = (u64::from(self.g.next()) << 32) | u64::from(self.g.next());
                self.put(at, &v.to_le_bytes());
            }
            Ty::Char => {
                let v = self.char_value();
                self.put(at, &v.to_le_bytes());
            }
            Ty::String => {
                let (p, l) = self.string();
                self.pair_at(at, p, l);
            }
            Ty::List(elem) => {
                let n = if depth > 3 {
                    0
                } else if self.g.chance(1, 6) {
                    self.g.below(200)
                } else {
                    self.g.below(5)
                };
                let size = elem_size(elem);
                let (p, n) = match self.alloc(size * n, alignment(elem)) {
                    Some(p) => (p, n),
                    None => (self.heap, 0),
                };
                if **elem == Ty::U8 {
                    let mut seed = self.g.next();
                    let bytes: Vec<u8> = (0..n)
                        .map(|_| {
                            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                            (seed >> 16) as u8
                        })
                        .collect();
                    self.put(p, &bytes);
                } else {
                    for i in 0..n {
                        self.value(elem, p + i * size, depth + 1);
                    }
                }
                self.pair_at(at, p, n);
            }
            Ty::Record(_) | Ty::Tuple(_) => {
                let mut o = 0;
                for f in fields_of(t) {
                    o = align_up(o, alignment(f));
                    self.value(f, at + o, depth + 1);
                    o += elem_size(f);
                }
            }
            _ => {
                let cs = cases_of(t).unwrap_or_default();
                let d = self.disc(cs.len());
                let db = disc_bytes(cs.len()) as usize;
                self.put(at, &d.to_le_bytes()[..db]);
                if let Some(Some(p)) = cs.get(d as usize) {
                    self.value(p, at + payload_offset(t), depth + 1);
                }
            }
        }
    }

    /// The core result of an export of type `t`: a flat value, or a pointer.
    fn result(&mut self, t: &Ty) -> u64 {
        if flat_count(t) == 1 {
            return match t {
                Ty::U64 | Ty::S64 => (u64::from(self.g.next()) << 32) | u64::from(self.g.next()),
                Ty::Char => u64::from(self.char_value()),
                Ty::Enum(_) | Ty::Variant(_) | Ty::Option(_) | Ty::Result(..) => {
                    let n = cases_of(t).unwrap_or_default().len();
                    u64::from(self.disc(n))
                }
                _ => u64::from(self.g.next()),
            };
        }
        let (size, align) = (elem_size(t), alignment(t));
        let p = self.alloc(size, align).expect("room for the result");
        self.value(t, p, 0);
        let p = if self.corrupt() { self.bad_ptr(p) } else { p };
        u64::from(p)
    }
}

// ----- the independent decoder -----

enum Stop {
    Err(AbiError),
    /// The value reads guest memory the test does not know.
    Unknown,
}

impl From<AbiError> for Stop {
    fn from(e: AbiError) -> Self {
        Stop::Err(e)
    }
}

impl From<GuestMemoryError> for Stop {
    fn from(e: GuestMemoryError) -> Self {
        Stop::Err(AbiError::Memory(e))
    }
}

struct Decoder<'a> {
    image: &'a [u8],
    budget: u64,
}

impl Decoder<'_> {
    fn charge(&mut self, n: u64) -> Result<(), Stop> {
        self.budget = self
            .budget
            .checked_sub(n)
            .ok_or(AbiError::TooLarge { limit: LIFT_LIMIT })?;
        Ok(())
    }

    /// Alignment, then bounds, then budget; then the bytes.
    fn read(&mut self, ptr: u32, len: u64, align: u32) -> Result<Vec<u8>, Stop> {
        if align > 1 && !ptr.is_multiple_of(align) {
            return Err(GuestMemoryError::Misaligned {
                ptr: u64::from(ptr),
                align,
            }
            .into());
        }
        if u64::from(ptr) + len > u64::from(MEM) {
            return Err(GuestMemoryError::OutOfBounds {
                ptr: u64::from(ptr),
                len,
                size: u64::from(MEM),
            }
            .into());
        }
        self.charge(len)?;
        if len > 0 && u64::from(ptr) + len > u64::from(BUMP) {
            return Err(Stop::Unknown);
        }
        Ok((u64::from(ptr)..u64::from(ptr) + len)
            .map(|a| self.image.get(a as usize).copied().unwrap_or(0))
            .collect())
    }

    fn u32_at(buf: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
    }

    fn decode(&mut self, t: &Ty, buf: &[u8], off: usize) -> Result<Val, Stop> {
        let b = |n: usize| &buf[off..off + n];
        Ok(match t {
            Ty::Bool => Val::Bool(buf[off] != 0),
            Ty::U8 => Val::U8(buf[off]),
            Ty::S8 => Val::S8(buf[off] as i8),
            Ty::U16 => Val::U16(u16::from_le_bytes(b(2).try_into().expect("2"))),
            Ty::S16 => Val::S16(i16::from_le_bytes(b(2).try_into().expect("2"))),
            Ty::U32 => Val::U32(Self::u32_at(buf, off)),
            Ty::S32 => Val::S32(Self::u32_at(buf, off) as i32),
            Ty::U64 => Val::U64(u64::from_le_bytes(b(8).try_into().expect("8"))),
            Ty::S64 => Val::S64(i64::from_le_bytes(b(8).try_into().expect("8"))),
            Ty::Char => {
                let v = Self::u32_at(buf, off);
                Val::Char(char::from_u32(v).ok_or(AbiError::InvalidChar(v))?)
            }
            Ty::String => {
                let (p, l) = (Self::u32_at(buf, off), Self::u32_at(buf, off + 4));
                let bytes = self.read(p, u64::from(l), 1)?;
                Val::String(String::from_utf8(bytes).map_err(|_| {
                    GuestMemoryError::InvalidUtf8 {
                        ptr: u64::from(p),
                        len: u64::from(l),
                    }
                })?)
            }
            Ty::List(elem) => {
                let (p, n) = (Self::u32_at(buf, off), Self::u32_at(buf, off + 4));
                let size = elem_size(elem);
                let total = u64::from(size) * u64::from(n);
                if **elem == Ty::U8 {
                    return Ok(Val::Bytes(self.read(p, total, 1)?));
                }
                let items = self.read(p, total, alignment(elem))?;
                self.charge(u64::from(n) * VAL_COST)?;
                let mut out = Vec::new();
                for i in 0..n as usize {
                    out.push(self.decode(elem, &items, i * size as usize)?);
                }
                Val::List(out)
            }
            Ty::Record(_) | Ty::Tuple(_) => {
                let fields = fields_of(t);
                self.charge(fields.len() as u64 * VAL_COST)?;
                let mut o = 0;
                let mut vals = Vec::new();
                for f in fields {
                    o = align_up(o, alignment(f));
                    vals.push(self.decode(f, buf, off + o as usize)?);
                    o += elem_size(f);
                }
                if matches!(t, Ty::Record(_)) {
                    Val::Record(vals)
                } else {
                    Val::Tuple(vals)
                }
            }
            _ => {
                let cs = cases_of(t).unwrap_or_default();
                let d = match disc_bytes(cs.len()) {
                    1 => u32::from(buf[off]),
                    2 => u32::from(u16::from_le_bytes(b(2).try_into().expect("2"))),
                    _ => Self::u32_at(buf, off),
                };
                let case = cs.get(d as usize).ok_or(AbiError::InvalidDiscriminant {
                    value: d,
                    cases: cs.len(),
                })?;
                let payload = match case {
                    Some(p) => {
                        self.charge(VAL_COST)?;
                        Some(Box::new(self.decode(
                            p,
                            buf,
                            off + payload_offset(t) as usize,
                        )?))
                    }
                    None => None,
                };
                case_value(t, d, payload)
            }
        })
    }

    /// A one-flat-value result.
    fn flat(&mut self, t: &Ty, v: u64) -> Result<Val, Stop> {
        let v32 = v as u32;
        Ok(match t {
            Ty::Bool => Val::Bool(v32 != 0),
            Ty::U8 => Val::U8(v32 as u8),
            Ty::S8 => Val::S8(v32 as i8),
            Ty::U16 => Val::U16(v32 as u16),
            Ty::S16 => Val::S16(v32 as i16),
            Ty::U32 => Val::U32(v32),
            Ty::S32 => Val::S32(v32 as i32),
            Ty::U64 => Val::U64(v),
            Ty::S64 => Val::S64(v as i64),
            Ty::Char => Val::Char(char::from_u32(v32).ok_or(AbiError::InvalidChar(v32))?),
            Ty::Enum(_) | Ty::Variant(_) | Ty::Option(_) | Ty::Result(..) => {
                let cs = cases_of(t).unwrap_or_default();
                match cs.get(v32 as usize) {
                    Some(None) => case_value(t, v32, None),
                    Some(Some(_)) => panic!("payload in a one-value flat variant: {t:?}"),
                    None => {
                        return Err(AbiError::InvalidDiscriminant {
                            value: v32,
                            cases: cs.len(),
                        }
                        .into())
                    }
                }
            }
            other => panic!("no one-value flat decoding for {other:?}"),
        })
    }

    fn result(&mut self, t: &Ty, core: u64) -> Result<Val, Stop> {
        if flat_count(t) == 1 {
            return self.flat(t, core);
        }
        let buf = self.read(core as u32, u64::from(elem_size(t)), alignment(t))?;
        self.decode(t, &buf, 0)
    }
}

fn case_value(t: &Ty, d: u32, payload: Option<Box<Val>>) -> Val {
    match t {
        Ty::Enum(_) => Val::Enum(d),
        Ty::Option(_) => Val::Option(payload),
        Ty::Result(..) if d == 0 => Val::Result(Ok(payload)),
        Ty::Result(..) => Val::Result(Err(payload)),
        _ => Val::Variant(d, payload),
    }
}

/// A well-formed argument of type `t` that allocates nothing in the guest.
fn default_val(t: &Ty) -> Val {
    match t {
        Ty::Bool => Val::Bool(false),
        Ty::U8 => Val::U8(0),
        Ty::S8 => Val::S8(0),
        Ty::U16 => Val::U16(0),
        Ty::S16 => Val::S16(0),
        Ty::U32 => Val::U32(0),
        Ty::S32 => Val::S32(0),
        Ty::U64 => Val::U64(0),
        Ty::S64 => Val::S64(0),
        Ty::F32 => Val::F32(0.0),
        Ty::F64 => Val::F64(0.0),
        Ty::Char => Val::Char('a'),
        Ty::String => Val::string(""),
        Ty::List(_) => Val::List(vec![]),
        Ty::Record(fs) => Val::Record(fs.iter().map(|(_, t)| default_val(t)).collect()),
        Ty::Tuple(ts) => Val::Tuple(ts.iter().map(default_val).collect()),
        Ty::Enum(_) => Val::Enum(0),
        Ty::Variant(cs) => Val::Variant(0, cs[0].1.as_ref().map(|t| Box::new(default_val(t)))),
        Ty::Option(_) => Val::Option(None),
        Ty::Result(ok, _) => Val::Result(Ok(ok.as_ref().map(|t| Box::new(default_val(t))))),
    }
}

fn abi_kind(message: &str) -> &'static str {
    for (prefix, kind) in [
        ("guest memory range out of bounds", "out of bounds"),
        ("misaligned guest pointer", "misaligned"),
        ("invalid UTF-8", "invalid UTF-8"),
        ("guest data too large", "too large"),
        ("invalid discriminant", "discriminant"),
        ("invalid char", "char"),
    ] {
        if message.starts_with(prefix) {
            return kind;
        }
    }
    "other"
}

#[test]
fn lifting_random_guest_results_matches_an_independent_decoder() {
    let targets = lift_targets();
    assert!(targets.len() >= 40, "{} targets", targets.len());
    let wat = lift_guest(&targets);
    let contract = Contract::get();
    for compiler in compilers() {
        let mut env = TestEnv::new();
        env.config.limits.guest_read_max = LIFT_LIMIT;
        env.install_wat("lift", "tool", "", &wat);
        let host = RefCell::new(env.host(compiler));
        let tally = RefCell::new(Tally::default());
        let max_peak = RefCell::new(0usize);
        run(
            "lifting",
            compiler,
            (0..targets.len(), vec(any::<u32>(), 0..600), 0u32..12),
            |(index, choices, rate)| {
                let (iface, func) = &targets[index];
                let sig = contract.func(iface, func).expect("target");
                let ty = sig.result.as_ref().expect("result");
                let mut g = Gen::new(&choices);
                let mut image = Image {
                    g: &mut g,
                    bytes: vec![0; IMAGE as usize],
                    heap: 16,
                    rate,
                    strings: Vec::new(),
                };
                let core = image.result(ty);
                image.put(0, &core.to_le_bytes());
                let used = align_up(image.heap.max(8), 4) as usize;
                let bytes = image.bytes;
                let words: Vec<Val> = bytes[..used]
                    .chunks(4)
                    .map(|c| Val::U32(u32::from_le_bytes(c.try_into().expect("4"))))
                    .collect();
                let mut h = host.borrow_mut();
                let p = h.get_mut("lift").expect("loaded");
                let set = p
                    .call_canonical("conformance", "sum-u32s", &[Val::List(words)])
                    .map_err(|e| TestCaseError::fail(format!("setter: {e}")))?;
                prop_assert_eq!(set, Some(Val::U64(0)));
                let args: Vec<Val> = sig.params.iter().map(|(_, t)| default_val(t)).collect();
                let (got, peak) = alloc_track::peak_during(|| p.call_canonical(iface, func, &args));
                let expected = Decoder {
                    image: &bytes,
                    budget: LIFT_LIMIT as u64,
                }
                .result(ty, core);
                let name = format!("tark:plugin/{iface}#{func}");
                let mut t = tally.borrow_mut();
                match (&expected, got) {
                    (Ok(v), Ok(Some(got))) => {
                        prop_assert_eq!(&got, v, "{}", name);
                        t.ok += 1;
                    }
                    (
                        Err(Stop::Err(e)),
                        Err(Error::Call {
                            source: CallError::Abi { function, message },
                            ..
                        }),
                    ) => {
                        prop_assert_eq!(&function, &name);
                        prop_assert_eq!(&message, &e.to_string(), "{}", name);
                        t.error(abi_kind(&message));
                    }
                    (Err(Stop::Unknown), Ok(Some(_))) => t.error("unpredicted region: ok"),
                    (
                        Err(Stop::Unknown),
                        Err(Error::Call {
                            source: CallError::Abi { message, .. },
                            ..
                        }),
                    ) => t.error(format!("unpredicted region: {}", abi_kind(&message))),
                    (expected, got) => {
                        let expected = match expected {
                            Ok(v) => format!("Ok({v:?})"),
                            Err(Stop::Err(e)) => format!("Err({e})"),
                            Err(Stop::Unknown) => "unknown".into(),
                        };
                        return Err(TestCaseError::fail(format!(
                            "{name}: expected {expected}, host answered {got:?}"
                        )));
                    }
                }
                // Copies and values are charged against the limit: the host never holds
                // much more than it while lifting.
                prop_assert!(
                    peak <= 2 * LIFT_LIMIT + 64 * 1024,
                    "{}: the host held {} bytes (limit {})",
                    name,
                    peak,
                    LIFT_LIMIT
                );
                let mut m = max_peak.borrow_mut();
                *m = (*m).max(peak);
                Ok(())
            },
        );
        let t = tally.into_inner();
        eprintln!(
            "lifting on {compiler}: {} ok, errors {:?}, max host bytes held {} (limit {LIFT_LIMIT}), instances {}",
            t.ok,
            t.errors,
            max_peak.borrow(),
            host.borrow().get("lift").map(|p| p.instances_created()).unwrap_or(0)
        );
        if cases() >= 100 {
            assert!(
                t.ok > 0 && t.total_errors() > 0,
                "degenerate generator: {t:?}"
            );
        }
    }
}
