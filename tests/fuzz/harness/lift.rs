//! Random guest results for every lifted type (the libFuzzer form of tests/fuzz_abi.rs
//! part 2): a WAT guest whose exports (every function of every plugin interface in the
//! contract, conformance included) return a value or pointer read from a memory image
//! the input fills through a setter export. The image is a structure-aware encoding of a
//! value of the result type, drawn from the input, with corruptions (pointers, lengths,
//! discriminants, chars, UTF-8, aliasing that exhausts the per-call budget). Property:
//! the host's answer equals what an independent decoder written here from the canonical
//! ABI says (the value, or the exact `AbiError`), on each compiler, and the host never
//! holds more than a small multiple of the per-call limit while lifting.

use std::cell::RefCell;

use tark_wasmer::engine::Compiler;
use tark_wasmer::lowlevel::{AbiError, Contract, Ty, Val};
use tark_wasmer::{CallError, Error, GuestMemoryError, PluginHost};
use wasmer::Type;

use super::alloc_track;
use super::env::Env;
use super::gen::{words, Gen};
use super::{wat_sig, wat_types, Outcome};

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

struct Fixture {
    _env: Env,
    hosts: Vec<(Compiler, PluginHost)>,
    targets: Vec<(String, String)>,
}

impl Fixture {
    fn new() -> Self {
        let targets = lift_targets();
        assert!(targets.len() >= 40, "{} targets", targets.len());
        let mut env = Env::new();
        env.config.limits.guest_read_max = LIFT_LIMIT;
        env.install_wat("lift", "tool", "", &lift_guest(&targets));
        let hosts = super::compilers()
            .into_iter()
            .map(|c| (c, env.host(c)))
            .collect();
        Fixture {
            _env: env,
            hosts,
            targets,
        }
    }
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

/// One input: `[target function][corruption rate][choices...]`.
pub fn run(data: &[u8]) -> Outcome {
    let index = data.first().copied().unwrap_or(0) as usize;
    let rate = u32::from(data.get(1).copied().unwrap_or(0)) % 12;
    let choices = words(data.get(2..).unwrap_or(&[]));
    FIXTURE.with(|fx| {
        let mut fx = fx.borrow_mut();
        let fx = fx.get_or_insert_with(Fixture::new);
        let (iface, func) = fx.targets[index % fx.targets.len()].clone();
        let contract = Contract::get();
        let sig = contract.func(&iface, &func).expect("target");
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
        let image_words: Vec<Val> = bytes[..used]
            .chunks(4)
            .map(|c| Val::U32(u32::from_le_bytes(c.try_into().expect("4"))))
            .collect();
        let args: Vec<Val> = sig.params.iter().map(|(_, t)| default_val(t)).collect();
        let expected = Decoder {
            image: &bytes,
            budget: LIFT_LIMIT as u64,
        }
        .result(ty, core);
        let name = format!("tark:plugin/{iface}#{func}");
        let mut refused = false;
        for (compiler, host) in &mut fx.hosts {
            let p = host.get_mut("lift").expect("loaded");
            let set = p
                .call_canonical("conformance", "sum-u32s", &[Val::List(image_words.clone())])
                .unwrap_or_else(|e| panic!("{name} on {compiler}: setter: {e}"));
            assert_eq!(set, Some(Val::U64(0)), "{name} on {compiler}: setter");
            let (got, peak) = alloc_track::peak_during(|| p.call_canonical(&iface, &func, &args));
            refused |= got.is_err();
            match (&expected, got) {
                (Ok(v), Ok(Some(got))) => assert_eq!(&got, v, "{name} on {compiler}"),
                (
                    Err(Stop::Err(e)),
                    Err(Error::Call {
                        source: CallError::Abi { function, message },
                        ..
                    }),
                ) => {
                    assert_eq!(function, name, "{name} on {compiler}");
                    assert_eq!(message, e.to_string(), "{name} on {compiler}");
                }
                (Err(Stop::Unknown), Ok(Some(_))) => {}
                (
                    Err(Stop::Unknown),
                    Err(Error::Call {
                        source: CallError::Abi { .. },
                        ..
                    }),
                ) => {}
                (expected, got) => {
                    let expected = match expected {
                        Ok(v) => format!("Ok({v:?})"),
                        Err(Stop::Err(e)) => format!("Err({e})"),
                        Err(Stop::Unknown) => "unknown".into(),
                    };
                    panic!("{name} on {compiler}: expected {expected}, host answered {got:?}");
                }
            }
            // Copies and values are charged against the limit: the host never holds
            // much more than it while lifting.
            assert!(
                peak <= 2 * LIFT_LIMIT + 64 * 1024,
                "{name} on {compiler}: the host held {peak} bytes (limit {LIFT_LIMIT})"
            );
        }
        Outcome {
            well_formed: expected.is_ok(),
            refused,
        }
    })
}
