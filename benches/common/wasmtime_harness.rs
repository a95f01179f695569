// A minimal wasmtime host for the bench modules: the peer every wasmer figure is compared
// with. Included once per wasmtime version by benches/common/mod.rs (`include!`), inside a
// module where the name `wasmtime` is that version's crate; the APIs used here are the
// same in wasmtime 27 and 48.
//
// It does what a careful hand-written wasmtime host would: exports and the guest's
// memory and `cabi_realloc` are looked up once per instance, host imports are the few
// the bench modules use (`tark:plugin/storage.get`, `.set`, `tark:plugin/log.*`,
// `tark:plugin/conformance-host.echo-string[s]`, legacy `tark:storage.get` and
// `tark:log.*`) and every other import (WASI included) is a trap. Guest memory is
// bounds-checked and strings are UTF-8-checked, as the canonical ABI requires; nothing
// panics on guest data.

use std::collections::HashMap;
use std::path::Path;

use wasmtime::{Caller, Config, Engine, Instance, Linker, Memory, Module, Store, TypedFunc};

/// Errors as text: the two wasmtime versions have different error types.
pub type Res<T> = Result<T, String>;

fn text<E: std::fmt::Display>(e: E) -> String {
    format!("{e:#}")
}

fn trap(msg: &str) -> wasmtime::Error {
    wasmtime::Error::msg(msg.to_string())
}

type Realloc = TypedFunc<(i32, i32, i32, i32), i32>;

/// An engine with wasmtime's default settings (Cranelift, speed), optionally with fuel.
pub fn engine(fuel: bool) -> Engine {
    let mut config = Config::new();
    config.consume_fuel(fuel);
    Engine::new(&config).unwrap_or_else(|e| panic!("wasmtime engine: {e:#}"))
}

/// Compile (and validate) a module.
pub fn compile(engine: &Engine, wasm: &[u8]) -> Res<Module> {
    Module::new(engine, wasm).map_err(text)
}

/// The module's artifact, as wasmtime caches it.
pub fn serialize(module: &Module) -> Res<Vec<u8>> {
    module.serialize().map_err(text)
}

/// Load an artifact written by [`serialize`] on the same engine settings.
pub fn deserialize_file(engine: &Engine, path: &Path) -> Res<Module> {
    // SAFETY: the benches only load files they wrote with `serialize` in this process.
    unsafe { Module::deserialize_file(engine, path) }.map_err(text)
}

/// Per-store host state.
#[derive(Default)]
pub struct HostState {
    memory: Option<Memory>,
    realloc: Option<Realloc>,
    /// The plugin's key-value storage.
    pub storage: HashMap<String, String>,
}

fn range(len: usize, ptr: i32, n: i32) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start
        .checked_add(n as u32 as usize)
        .filter(|e| *e <= len)
        .ok_or_else(|| trap("out of bounds"))?;
    Ok(start..end)
}

fn read_str(mem: &[u8], ptr: i32, len: i32) -> wasmtime::Result<String> {
    let bytes = mem
        .get(range(mem.len(), ptr, len)?)
        .ok_or_else(|| trap("out of bounds"))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| trap("invalid UTF-8"))
}

fn write(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> wasmtime::Result<()> {
    let n = i32::try_from(bytes.len()).map_err(|_| trap("too large"))?;
    let r = range(mem.len(), ptr, n)?;
    mem.get_mut(r)
        .ok_or_else(|| trap("out of bounds"))?
        .copy_from_slice(bytes);
    Ok(())
}

fn read_u32(mem: &[u8], ptr: i32) -> wasmtime::Result<i32> {
    let b = mem
        .get(range(mem.len(), ptr, 4)?)
        .ok_or_else(|| trap("out of bounds"))?;
    Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn parts(caller: &Caller<'_, HostState>) -> wasmtime::Result<(Memory, Option<Realloc>)> {
    let d = caller.data();
    Ok((
        d.memory.ok_or_else(|| trap("no memory"))?,
        d.realloc.clone(),
    ))
}

/// Copy `bytes` into a fresh guest allocation (`cabi_realloc`); returns its pointer.
fn lower_in_host(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    align: i32,
) -> wasmtime::Result<i32> {
    let (mem, realloc) = parts(caller)?;
    let realloc = realloc.ok_or_else(|| trap("no cabi_realloc"))?;
    let n = i32::try_from(bytes.len()).map_err(|_| trap("too large"))?;
    let ptr = realloc.call(&mut *caller, (0, 0, align, n))?;
    write(mem.data_mut(&mut *caller), ptr, bytes)?;
    Ok(ptr)
}

fn pair(ptr: i32, len: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&ptr.to_le_bytes());
    b[4..].copy_from_slice(&len.to_le_bytes());
    b
}

/// Read a `list<string>` (pairs of pointer and length) from guest memory.
fn read_strings(mem: &[u8], ptr: i32, n: i32) -> wasmtime::Result<Vec<String>> {
    let bytes = n.checked_mul(8).ok_or_else(|| trap("too large"))?;
    let _ = range(mem.len(), ptr, bytes)?;
    (0..n)
        .map(|i| {
            let at = ptr.wrapping_add(i * 8);
            read_str(mem, read_u32(mem, at)?, read_u32(mem, at.wrapping_add(4))?)
        })
        .collect()
}

/// Lower a `list<string>` into fresh guest allocations; returns (list pointer, length).
fn lower_strings_in_host(
    caller: &mut Caller<'_, HostState>,
    items: &[String],
) -> wasmtime::Result<(i32, i32)> {
    let mut table = Vec::with_capacity(items.len() * 8);
    for s in items {
        let p = lower_in_host(caller, s.as_bytes(), 1)?;
        table.extend_from_slice(&pair(p, s.len() as i32));
    }
    let list = lower_in_host(caller, &table, 4)?;
    Ok((list, items.len() as i32))
}

/// The linker with the bench modules' host imports; every other import of `module` traps.
pub fn linker(engine: &Engine, module: &Module) -> Res<Linker<HostState>> {
    let mut l: Linker<HostState> = Linker::new(engine);
    // Canonical `storage.get: func(key: string) -> option<string>`: (key ptr, len, retptr).
    l.func_wrap(
        "tark:plugin/storage",
        "get",
        |mut caller: Caller<'_, HostState>, kp: i32, kl: i32, ret: i32| -> wasmtime::Result<()> {
            let (mem, _) = parts(&caller)?;
            let key = read_str(mem.data(&caller), kp, kl)?;
            let value = caller.data().storage.get(&key).cloned();
            let mut area = [0u8; 12];
            if let Some(v) = value {
                let p = lower_in_host(&mut caller, v.as_bytes(), 1)?;
                area[0] = 1;
                area[4..].copy_from_slice(&pair(p, v.len() as i32));
            }
            write(mem.data_mut(&mut caller), ret, &area)
        },
    )
    .map_err(text)?;
    // Canonical `storage.set: func(key: string, value: string) -> result<_, string>`:
    // (key ptr, len, value ptr, len, retptr); always `ok` (the cross-engine check's hook).
    l.func_wrap(
        "tark:plugin/storage",
        "set",
        |mut caller: Caller<'_, HostState>,
         kp: i32,
         kl: i32,
         vp: i32,
         vl: i32,
         ret: i32|
         -> wasmtime::Result<()> {
            let (mem, _) = parts(&caller)?;
            let key = read_str(mem.data(&caller), kp, kl)?;
            let value = read_str(mem.data(&caller), vp, vl)?;
            caller.data_mut().storage.insert(key, value);
            write(mem.data_mut(&mut caller), ret, &[0u8; 12])
        },
    )
    .map_err(text)?;
    for level in ["debug", "info", "warn", "error"] {
        // Logging is disabled in the benches (as in our host without a logger).
        l.func_wrap(
            "tark:plugin/log",
            level,
            |_: Caller<'_, HostState>, _: i32, _: i32| {},
        )
        .map_err(text)?;
        l.func_wrap(
            "tark:log",
            level,
            |_: Caller<'_, HostState>, _: i32, _: i32| {},
        )
        .map_err(text)?;
    }
    // `conformance-host.echo-string: func(s: string) -> string`: (ptr, len, retptr).
    l.func_wrap(
        "tark:plugin/conformance-host",
        "echo-string",
        |mut caller: Caller<'_, HostState>, p: i32, n: i32, ret: i32| -> wasmtime::Result<()> {
            let (mem, _) = parts(&caller)?;
            let s = read_str(mem.data(&caller), p, n)?;
            let out = lower_in_host(&mut caller, s.as_bytes(), 1)?;
            write(mem.data_mut(&mut caller), ret, &pair(out, s.len() as i32))
        },
    )
    .map_err(text)?;
    // `conformance-host.echo-strings: func(l: list<string>) -> list<string>`.
    l.func_wrap(
        "tark:plugin/conformance-host",
        "echo-strings",
        |mut caller: Caller<'_, HostState>, p: i32, n: i32, ret: i32| -> wasmtime::Result<()> {
            let (mem, _) = parts(&caller)?;
            let items = read_strings(mem.data(&caller), p, n)?;
            let (list, len) = lower_strings_in_host(&mut caller, &items)?;
            write(mem.data_mut(&mut caller), ret, &pair(list, len))
        },
    )
    .map_err(text)?;
    // Legacy `tark:storage.get(key ptr, len, out ptr) -> len` (0: absent).
    l.func_wrap(
        "tark:storage",
        "get",
        |mut caller: Caller<'_, HostState>, kp: i32, kl: i32, out: i32| -> wasmtime::Result<i32> {
            let (mem, _) = parts(&caller)?;
            let key = read_str(mem.data(&caller), kp, kl)?;
            let value = caller.data().storage.get(&key).cloned();
            match value {
                None => Ok(0),
                Some(v) => {
                    write(mem.data_mut(&mut caller), out, v.as_bytes())?;
                    i32::try_from(v.len()).map_err(|_| trap("too large"))
                }
            }
        },
    )
    .map_err(text)?;
    l.define_unknown_imports_as_traps(module).map_err(text)?;
    Ok(l)
}

/// One instance with its store, memory and allocator.
pub struct Guest {
    /// The store (host state inside).
    pub store: Store<HostState>,
    /// The instance.
    pub instance: Instance,
    memory: Memory,
    realloc: Option<Realloc>,
}

impl Guest {
    /// Instantiate `module` (running `_initialize` if it exports one).
    pub fn new(engine: &Engine, linker: &Linker<HostState>, module: &Module) -> Res<Self> {
        let mut store = Store::new(engine, HostState::default());
        // Fails (harmlessly) on engines without fuel.
        let _ = store.set_fuel(u64::MAX);
        let instance = linker.instantiate(&mut store, module).map_err(text)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| "no memory export".to_string())?;
        let realloc = instance
            .get_typed_func::<(i32, i32, i32, i32), i32>(&mut store, "cabi_realloc")
            .ok();
        store.data_mut().memory = Some(memory);
        store.data_mut().realloc = realloc.clone();
        if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            init.call(&mut store, ()).map_err(text)?;
        }
        Ok(Guest {
            store,
            instance,
            memory,
            realloc,
        })
    }

    /// A typed export.
    pub fn func<P, R>(&mut self, name: &str) -> Res<TypedFunc<P, R>>
    where
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        self.instance
            .get_typed_func::<P, R>(&mut self.store, name)
            .map_err(text)
    }

    /// Copy `bytes` into a fresh guest allocation; returns (pointer, length).
    pub fn lower(&mut self, bytes: &[u8], align: i32) -> Res<(i32, i32)> {
        let realloc = self.realloc.clone().ok_or("no cabi_realloc")?;
        let n = i32::try_from(bytes.len()).map_err(text)?;
        let ptr = realloc
            .call(&mut self.store, (0, 0, align, n))
            .map_err(text)?;
        write(self.memory.data_mut(&mut self.store), ptr, bytes).map_err(text)?;
        Ok((ptr, n))
    }

    /// Lower a `list<string>`; returns (list pointer, length).
    pub fn lower_strings(&mut self, items: &[String]) -> Res<(i32, i32)> {
        let mut table = Vec::with_capacity(items.len() * 8);
        for s in items {
            let (p, n) = self.lower(s.as_bytes(), 1)?;
            table.extend_from_slice(&pair(p, n));
        }
        let (list, _) = self.lower(&table, 4)?;
        Ok((list, items.len() as i32))
    }

    /// Read the (pointer, length) pair at `at`.
    pub fn pair_at(&self, at: i32) -> Res<(i32, i32)> {
        let mem = self.memory.data(&self.store);
        Ok((
            read_u32(mem, at).map_err(text)?,
            read_u32(mem, at.wrapping_add(4)).map_err(text)?,
        ))
    }

    /// Copy `len` bytes at `ptr` out of guest memory.
    pub fn bytes(&self, ptr: i32, len: i32) -> Res<Vec<u8>> {
        let mem = self.memory.data(&self.store);
        let r = range(mem.len(), ptr, len).map_err(text)?;
        mem.get(r)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| "out of bounds".into())
    }

    /// A string at `ptr` (UTF-8 checked).
    pub fn string(&self, ptr: i32, len: i32) -> Res<String> {
        String::from_utf8(self.bytes(ptr, len)?).map_err(text)
    }

    /// A `list<string>` at `ptr`.
    pub fn strings(&self, ptr: i32, n: i32) -> Res<Vec<String>> {
        read_strings(self.memory.data(&self.store), ptr, n).map_err(text)
    }

    /// Fuel consumed so far (fuel engines only).
    pub fn fuel_left(&self) -> Option<u64> {
        self.store.get_fuel().ok()
    }
}

/// Export names of the hook-plugin interface.
const HOOK: &str = "tark:plugin/hook-plugin";

/// The bench hook plugin (`tests/plugins/bench-hook`, hook-world), exports held.
pub struct Hook {
    /// The instance.
    pub guest: Guest,
    name: TypedFunc<(), i32>,
    post_name: TypedFunc<i32, ()>,
    on_event: TypedFunc<(i32, i32, i32, i32, i32), i32>,
    post_on_event: TypedFunc<i32, ()>,
}

impl Hook {
    /// Instantiate and look the exports up.
    pub fn new(engine: &Engine, linker: &Linker<HostState>, module: &Module) -> Res<Self> {
        let mut guest = Guest::new(engine, linker, module)?;
        Ok(Hook {
            name: guest.func(&format!("{HOOK}#name"))?,
            post_name: guest.func(&format!("cabi_post_{HOOK}#name"))?,
            on_event: guest.func(&format!("{HOOK}#on-event"))?,
            post_on_event: guest.func(&format!("cabi_post_{HOOK}#on-event"))?,
            guest,
        })
    }

    /// `name() -> string`, then its post-return.
    pub fn name(&mut self) -> Res<String> {
        let ret = self.name.call(&mut self.guest.store, ()).map_err(text)?;
        let (p, n) = self.guest.pair_at(ret)?;
        let s = self.guest.string(p, n)?;
        self.post_name
            .call(&mut self.guest.store, ret)
            .map_err(text)?;
        Ok(s)
    }

    /// `on-event({kind, session-id, payload-json}) -> hook-decision`: (case, payload).
    pub fn on_event(
        &mut self,
        kind: u8,
        session_id: &str,
        payload: &str,
    ) -> Res<(u8, Option<String>)> {
        let (sp, sn) = self.guest.lower(session_id.as_bytes(), 1)?;
        let (pp, pn) = self.guest.lower(payload.as_bytes(), 1)?;
        let ret = self
            .on_event
            .call(&mut self.guest.store, (i32::from(kind), sp, sn, pp, pn))
            .map_err(text)?;
        let case = *self.guest.bytes(ret, 1)?.first().ok_or("empty")?;
        let text_out = if case == 0 {
            None
        } else {
            let (p, n) = self.guest.pair_at(ret.wrapping_add(4))?;
            Some(self.guest.string(p, n)?)
        };
        self.post_on_event
            .call(&mut self.guest.store, ret)
            .map_err(text)?;
        Ok((case, text_out))
    }
}

/// Export names of the conformance interface.
const CONF: &str = "tark:plugin/conformance";

/// An export taking one pointer/length pair and returning a pointer, with its post-return.
struct PtrFn {
    f: TypedFunc<(i32, i32), i32>,
    post: TypedFunc<i32, ()>,
}

impl PtrFn {
    fn new(guest: &mut Guest, func: &str) -> Res<Self> {
        Ok(PtrFn {
            f: guest.func(&format!("{CONF}#{func}"))?,
            post: guest.func(&format!("cabi_post_{CONF}#{func}"))?,
        })
    }
}

/// The conformance test module (`tests/plugins/conformance`), exports held.
pub struct Conformance {
    /// The instance.
    pub guest: Guest,
    echo_string: PtrFn,
    relay_string: PtrFn,
    echo_bytes: PtrFn,
    echo_strings: PtrFn,
    relay_strings: PtrFn,
}

impl Conformance {
    /// Instantiate and look the exports up.
    pub fn new(engine: &Engine, linker: &Linker<HostState>, module: &Module) -> Res<Self> {
        let mut guest = Guest::new(engine, linker, module)?;
        Ok(Conformance {
            echo_string: PtrFn::new(&mut guest, "echo-string")?,
            relay_string: PtrFn::new(&mut guest, "relay-string")?,
            echo_bytes: PtrFn::new(&mut guest, "echo-bytes")?,
            echo_strings: PtrFn::new(&mut guest, "echo-strings")?,
            relay_strings: PtrFn::new(&mut guest, "relay-strings")?,
            guest,
        })
    }

    fn call_pair(guest: &mut Guest, f: &PtrFn, p: i32, n: i32) -> Res<(i32, i32, i32)> {
        let ret = f.f.call(&mut guest.store, (p, n)).map_err(text)?;
        let (rp, rn) = guest.pair_at(ret)?;
        Ok((ret, rp, rn))
    }

    fn string_call(&mut self, relay: bool, s: &str) -> Res<String> {
        let (p, n) = self.guest.lower(s.as_bytes(), 1)?;
        let f = if relay {
            &self.relay_string
        } else {
            &self.echo_string
        };
        let (ret, rp, rn) = Self::call_pair(&mut self.guest, f, p, n)?;
        let out = self.guest.string(rp, rn)?;
        f.post.call(&mut self.guest.store, ret).map_err(text)?;
        Ok(out)
    }

    /// `echo-string` (host -> guest -> host).
    pub fn echo_string(&mut self, s: &str) -> Res<String> {
        self.string_call(false, s)
    }

    /// `relay-string` (host -> guest -> host import -> guest -> host).
    pub fn relay_string(&mut self, s: &str) -> Res<String> {
        self.string_call(true, s)
    }

    /// `echo-bytes` (`list<u8>`).
    pub fn echo_bytes(&mut self, b: &[u8]) -> Res<Vec<u8>> {
        let (p, n) = self.guest.lower(b, 1)?;
        let (ret, rp, rn) = Self::call_pair(&mut self.guest, &self.echo_bytes, p, n)?;
        let out = self.guest.bytes(rp, rn)?;
        self.echo_bytes
            .post
            .call(&mut self.guest.store, ret)
            .map_err(text)?;
        Ok(out)
    }

    fn strings_call(&mut self, relay: bool, items: &[String]) -> Res<Vec<String>> {
        let (p, n) = self.guest.lower_strings(items)?;
        let f = if relay {
            &self.relay_strings
        } else {
            &self.echo_strings
        };
        let (ret, rp, rn) = Self::call_pair(&mut self.guest, f, p, n)?;
        let out = self.guest.strings(rp, rn)?;
        f.post.call(&mut self.guest.store, ret).map_err(text)?;
        Ok(out)
    }

    /// `echo-strings` (`list<string>`).
    pub fn echo_strings(&mut self, items: &[String]) -> Res<Vec<String>> {
        self.strings_call(false, items)
    }

    /// `relay-strings` (`list<string>` through the host import).
    pub fn relay_strings(&mut self, items: &[String]) -> Res<Vec<String>> {
        self.strings_call(true, items)
    }
}

/// A legacy-ABI module's `() -> i32` exports (S convention), held by name.
pub struct Legacy {
    /// The instance.
    pub guest: Guest,
    funcs: HashMap<String, TypedFunc<(), i32>>,
}

impl Legacy {
    /// Instantiate and look `exports` up.
    pub fn new(
        engine: &Engine,
        linker: &Linker<HostState>,
        module: &Module,
        exports: &[&str],
    ) -> Res<Self> {
        let mut guest = Guest::new(engine, linker, module)?;
        let mut funcs = HashMap::new();
        for name in exports {
            funcs.insert(name.to_string(), guest.func::<(), i32>(name)?);
        }
        Ok(Legacy { guest, funcs })
    }

    /// The held export `name`: call it through [`Legacy::call`].
    pub fn get(&self, name: &str) -> Res<TypedFunc<(), i32>> {
        self.funcs
            .get(name)
            .cloned()
            .ok_or_else(|| format!("export {name} not held"))
    }

    /// Call a held `() -> i32` export.
    pub fn call(&mut self, f: &TypedFunc<(), i32>) -> Res<i32> {
        f.call(&mut self.guest.store, ()).map_err(text)
    }
}
