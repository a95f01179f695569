//! Host imports of both ABIs with fuzzed pointers, lengths and bytes (the libFuzzer
//! form of tests/fuzz_abi.rs part 1): WAT guests whose export forwards raw arguments from
//! its input to the selected import. Properties: the host never panics; a legacy import
//! returns one of its documented codes (never traps), and never refuses well-formed
//! arguments as bad; a canonical import returns or traps with a clean `host function`
//! message, and answers well-formed arguments; the storage file stays a JSON map of
//! strings; a normal call works right after.

use std::cell::RefCell;
use std::collections::BTreeMap;

use tark_wasmer::engine::Compiler;
use tark_wasmer::lowlevel::{Contract, Ty, Val, LEGACY_IMPORTS};
use tark_wasmer::{CallError, Error, PluginHost};
use wasmer::Type;

use super::env::Env;
use super::gen::{split, Gen};
use super::server::HttpServer;
use super::{wat_sig, Outcome};

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

fn known_strings(server: &HttpServer) -> Vec<String> {
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

fn data_block(server: &HttpServer, noise: &[u8], canonical: bool) -> DataBlock {
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

/// The errors a canonical import may trap with (AbiError texts).
const CLEAN_ABI_ERRORS: &[&str] = &[
    "guest memory range out of bounds: ",
    "misaligned guest pointer ",
    "invalid UTF-8 in guest string ",
    "guest data too large: ",
    "cabi_realloc(",
    "cabi_realloc trapped: ",
];

const CAPS: &str =
    "storage = true\nhttp = [\"127.0.0.1\"]\nenv = [\"HOME\"]\nfs_read = [\"allowed.txt\"]";

/// Both fuzz guests installed in a plugins directory, one host per compiler, an HTTP
/// server they may reach and a file they may read.
struct Fixture {
    env: Env,
    hosts: Vec<(Compiler, PluginHost)>,
    server: HttpServer,
    legacy: Vec<HostImport>,
    canonical: Vec<HostImport>,
}

impl Fixture {
    fn new() -> Self {
        let server = HttpServer::start();
        let env = Env::new();
        std::fs::write(env.tmp.path().join("allowed.txt"), "file contents ✓").expect("write");
        let legacy = legacy_imports();
        let canonical = canonical_imports();
        assert_eq!(legacy.len(), 15);
        assert_eq!(
            canonical.len(),
            16,
            "storage 4, http 2, env 1, fs 1, log 4, ws 4"
        );
        env.install_wat("fuzz-legacy", "tool", CAPS, &legacy_guest(&legacy));
        env.install_wat("fuzz-canon", "tool", CAPS, &canonical_guest(&canonical));
        let hosts = super::compilers()
            .into_iter()
            .map(|c| (c, env.host(c)))
            .collect();
        Fixture {
            env,
            hosts,
            server,
            legacy,
            canonical,
        }
    }
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fn with_fixture<R>(f: impl FnOnce(&mut Fixture) -> R) -> R {
    FIXTURE.with(|fx| {
        let mut fx = fx.borrow_mut();
        f(fx.get_or_insert_with(Fixture::new))
    })
}

/// Read a plugin's storage file: it must be absent or a JSON map of strings.
fn check_storage_file(env: &Env, id: &str) {
    let path = env.plugins_dir.join(id).join("data/storage.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            if let Err(e) = serde_json::from_str::<BTreeMap<String, String>>(&text) {
                panic!("{} is not a JSON map of strings: {e}", path.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// One legacy-import input: `[import][noise length][noise][argument choices...]`.
pub fn run_legacy(data: &[u8]) -> Outcome {
    let input = split(data);
    with_fixture(|fx| {
        let sel = u32::from(input.sel) % fx.legacy.len() as u32;
        let imp = fx.legacy[sel as usize].clone();
        let block = data_block(&fx.server, &input.bytes, false);
        let mut g = Gen::new(&input.words);
        let (args, well_formed) = core_args(&mut g, &imp, &block, 8 * 65536);
        let mut text = format!("{:016x}", u64::from(sel));
        for j in 0..7 {
            text.push_str(&format!("{:016x}", args.get(j).copied().unwrap_or(0)));
        }
        text.push_str(std::str::from_utf8(&block.bytes).expect("legacy data is text"));
        let what = format!("{}.{}{args:?}", imp.module, imp.name);
        let mut refused = false;
        for (compiler, host) in &mut fx.hosts {
            let p = host.get_mut("fuzz-legacy").expect("loaded");
            let code = match p.legacy_code("fuzz", Some(&text)) {
                Ok(c) => c,
                Err(e) => {
                    panic!("{what} on {compiler}: a legacy import must answer with a code: {e}")
                }
            };
            refused |= code < 0;
            assert!(
                legacy_code_allowed(&imp, code),
                "{what} on {compiler}: returned {code}"
            );
            // Well-formed arguments are never refused as bad (-1, fs.read -4).
            assert!(
                !well_formed || (code != -1 && code != -4),
                "{what} on {compiler}: well-formed arguments refused with {code}"
            );
            if code > 0 && imp.roles.last() == Some(&Role::Ret) {
                let ret = *args.last().expect("ret") as u32;
                assert!(
                    u64::from(ret) + code as u64 <= 8 * 65536,
                    "{what} on {compiler}: answer of {code} bytes at {ret} past memory"
                );
            }
            check_storage_file(&fx.env, "fuzz-legacy");
            let back = p
                .legacy_text_with_input("normal", "normal-check ✓")
                .unwrap_or_else(|e| panic!("{what} on {compiler}: normal call failed: {e}"));
            assert_eq!(back, "normal-check ✓", "{what} on {compiler}");
            assert_eq!(p.instances_created(), 1, "{what} on {compiler}");
        }
        Outcome {
            well_formed,
            refused,
        }
    })
}

/// One canonical-import input: `[import][noise length][noise][realloc mode and argument
/// choices...]`.
pub fn run_canonical(data: &[u8]) -> Outcome {
    let input = split(data);
    with_fixture(|fx| {
        let sel = u32::from(input.sel) % fx.canonical.len() as u32;
        let imp = fx.canonical[sel as usize].clone();
        let block = data_block(&fx.server, &input.bytes, true);
        let mut g = Gen::new(&input.words);
        let mode: u32 = match g.below(16) {
            m @ 1..=4 => m,
            _ => 0,
        };
        let (args, well_formed) = core_args(&mut g, &imp, &block, 16 * 65536);
        // Well-formed arguments and a correct allocator: the import must answer.
        let must_answer = well_formed && mode == 0;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&sel.to_le_bytes());
        bytes.extend_from_slice(&mode.to_le_bytes());
        for j in 0..7 {
            bytes.extend_from_slice(&args.get(j).copied().unwrap_or(0).to_le_bytes());
        }
        bytes.extend_from_slice(&block.bytes);
        let what = format!("{}.{}{args:?} (realloc mode {mode})", imp.module, imp.name);
        let mut refused = false;
        for (compiler, host) in &mut fx.hosts {
            let p = host.get_mut("fuzz-canon").expect("loaded");
            let r = p.call_canonical("conformance", "echo-bytes", &[Val::Bytes(bytes.clone())]);
            match r {
                Ok(Some(Val::Bytes(b))) if b.is_empty() => {}
                Err(Error::Call {
                    source: CallError::Trap { function, message },
                    ..
                }) => {
                    refused = true;
                    assert!(
                        !must_answer,
                        "{what} on {compiler}: well-formed call refused: {message}"
                    );
                    assert_eq!(
                        function, "tark:plugin/conformance#echo-bytes",
                        "{what} on {compiler}"
                    );
                    let prefix = format!("host function {}.{}: ", imp.module, imp.name);
                    let Some(rest) = message.strip_prefix(&prefix) else {
                        panic!("{what} on {compiler}: unexpected trap {message}");
                    };
                    assert!(
                        CLEAN_ABI_ERRORS.iter().any(|k| rest.starts_with(*k)),
                        "{what} on {compiler}: unclean trap: {message}"
                    );
                    assert!(
                        !message.contains("panic"),
                        "{what} on {compiler}: {message}"
                    );
                }
                other => panic!("{what} on {compiler}: {other:?}"),
            }
            check_storage_file(&fx.env, "fuzz-canon");
            let back = p
                .call_canonical("conformance", "echo-string", &[Val::string("normal ✓")])
                .unwrap_or_else(|e| panic!("{what} on {compiler}: normal call: {e}"));
            assert_eq!(back, Some(Val::string("normal ✓")), "{what} on {compiler}");
        }
        Outcome {
            well_formed: must_answer,
            refused,
        }
    })
}
