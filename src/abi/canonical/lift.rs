//! Lifting (guest -> host) and lowering (host -> guest) of canonical-ABI values, with
//! every guest pointer, length, alignment, discriminant, char and string checked.
//!
//! Memory is read in one piece per record, array or string into a host buffer and
//! decoded from there, so guest memory is never borrowed across a call into the guest;
//! lowering builds each block in a host buffer and writes it once, allocating strings and
//! lists through the guest's `cabi_realloc` first.

use wasmer::{AsStoreMut, AsStoreRef, Memory, MemoryView, TypedFunction, Value};

use super::types::{Flat, Ty, Val};
use crate::abi::memory::{check_align, check_range, GuestMemoryError};

/// A canonical-ABI value could not be lifted or lowered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AbiError {
    /// A pointer, length or alignment was invalid.
    #[error(transparent)]
    Memory(#[from] GuestMemoryError),
    /// A discriminant named no case.
    #[error("invalid discriminant {value} for a type with {cases} cases")]
    InvalidDiscriminant {
        /// The discriminant.
        value: u32,
        /// Number of cases.
        cases: usize,
    },
    /// A `char` that is not a Unicode scalar value.
    #[error("invalid char value {0:#x}")]
    InvalidChar(u32),
    /// More data than the host accepts in one call.
    #[error("guest data too large: over the limit of {limit} bytes in one call")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// `cabi_realloc` returned something unusable.
    #[error("cabi_realloc({align}, {size}) returned {ptr}: {detail}")]
    Realloc {
        /// Requested alignment.
        align: u32,
        /// Requested size.
        size: u32,
        /// What it returned.
        ptr: u32,
        /// What was wrong.
        detail: String,
    },
    /// `cabi_realloc` trapped.
    #[error("cabi_realloc trapped: {0}")]
    ReallocTrap(String),
    /// The module exports no `cabi_realloc` but a string or list must be passed in.
    #[error("plugin does not export cabi_realloc")]
    NoRealloc,
    /// A value does not match its type (host-side bug or bad caller input).
    #[error("{0}")]
    Mismatch(String),
    /// The flat values do not match the type.
    #[error("core values do not match the function's signature")]
    FlatMismatch,
}

/// What one decoded value costs the host besides the guest bytes it copies: its `Val`
/// (in a list's or record's vector, or boxed as a payload). Charged against the per-call
/// limit with the bytes, so the limit bounds the host memory a lift holds, not just the
/// guest bytes it reads.
const VAL_COST: u64 = std::mem::size_of::<Val>() as u64;

/// Reads values out of guest memory. One reader serves one call: its budget (the
/// per-call limit) covers every byte copied and every value built.
pub struct Reader<'a> {
    view: MemoryView<'a>,
    size: u64,
    budget: usize,
    limit: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `memory`, allowing at most `limit` bytes per call.
    pub fn new(store: &'a impl AsStoreRef, memory: &Memory, limit: usize) -> Self {
        let view = memory.view(store);
        let size = view.data_size();
        Reader {
            view,
            size,
            budget: limit,
            limit,
        }
    }

    /// The per-call limit this reader enforces.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Count `n` bytes of host memory a lift holds against the per-call limit (guest
    /// bytes copied are counted by [`Reader::read`]; callers add what they build).
    pub fn charge(&mut self, n: u64) -> Result<(), AbiError> {
        let n = usize::try_from(n).map_err(|_| AbiError::TooLarge { limit: self.limit })?;
        self.budget = self
            .budget
            .checked_sub(n)
            .ok_or(AbiError::TooLarge { limit: self.limit })?;
        Ok(())
    }

    /// Copy `len` bytes at `ptr` (aligned to `align`) out of guest memory.
    pub fn read(&mut self, ptr: u32, len: u64, align: u32) -> Result<Vec<u8>, AbiError> {
        check_align(ptr, align)?;
        check_range(ptr, len, self.size)?;
        self.charge(len)?;
        let mut buf = vec![0u8; len as usize];
        self.view
            .read(u64::from(ptr), &mut buf)
            .map_err(|_| GuestMemoryError::OutOfBounds {
                ptr: u64::from(ptr),
                len,
                size: self.size,
            })?;
        Ok(buf)
    }

    /// Load a value of `ty` stored at `ptr`.
    pub fn load(&mut self, ty: &Ty, ptr: u32) -> Result<Val, AbiError> {
        let buf = self.read(ptr, u64::from(ty.size()), ty.align())?;
        self.decode(ty, &buf, 0)
    }

    /// Copy a string at `ptr` out of guest memory (strict UTF-8).
    pub fn read_string(&mut self, ptr: u32, len: u32) -> Result<String, AbiError> {
        let bytes = self.read(ptr, u64::from(len), 1)?;
        String::from_utf8(bytes).map_err(|_| {
            AbiError::Memory(GuestMemoryError::InvalidUtf8 {
                ptr: u64::from(ptr),
                len: u64::from(len),
            })
        })
    }

    /// Copy the element array of a list (`len` elements of `size` bytes, aligned to
    /// `align`) out of guest memory; its byte size is computed without overflow.
    pub fn read_array(
        &mut self,
        ptr: u32,
        len: u32,
        size: u32,
        align: u32,
    ) -> Result<Vec<u8>, AbiError> {
        let total = u64::from(size)
            .checked_mul(u64::from(len))
            .ok_or(AbiError::TooLarge { limit: self.limit })?;
        self.read(ptr, total, align)
    }

    fn read_list(&mut self, elem: &Ty, ptr: u32, len: u32) -> Result<Val, AbiError> {
        let size = u64::from(elem.size());
        if *elem == Ty::U8 {
            return Ok(Val::Bytes(self.read_array(ptr, len, 1, 1)?));
        }
        let buf = self.read_array(ptr, len, elem.size(), elem.align())?;
        // Each element also costs the host a `Val` slot (32 bytes, however small the guest
        // element): charged before allocating, so a list of 1-byte enums cannot make the
        // host hold 32 times the limit.
        self.charge(u64::from(len).saturating_mul(VAL_COST))?;
        let mut items = Vec::with_capacity(len as usize);
        for i in 0..len as usize {
            items.push(self.decode(elem, &buf, i * size as usize)?);
        }
        Ok(Val::List(items))
    }

    /// Decode a value of `ty` from a host copy of guest memory at `off`.
    fn decode(&mut self, ty: &Ty, buf: &[u8], off: usize) -> Result<Val, AbiError> {
        Ok(match ty {
            Ty::Bool => Val::Bool(byte(buf, off)? != 0),
            Ty::U8 => Val::U8(byte(buf, off)?),
            Ty::S8 => Val::S8(byte(buf, off)? as i8),
            Ty::U16 => Val::U16(u16::from_le_bytes(bytes(buf, off)?)),
            Ty::S16 => Val::S16(i16::from_le_bytes(bytes(buf, off)?)),
            Ty::U32 => Val::U32(u32::from_le_bytes(bytes(buf, off)?)),
            Ty::S32 => Val::S32(i32::from_le_bytes(bytes(buf, off)?)),
            Ty::U64 => Val::U64(u64::from_le_bytes(bytes(buf, off)?)),
            Ty::S64 => Val::S64(i64::from_le_bytes(bytes(buf, off)?)),
            Ty::F32 => Val::F32(f32::from_le_bytes(bytes(buf, off)?)),
            Ty::F64 => Val::F64(f64::from_le_bytes(bytes(buf, off)?)),
            Ty::Char => char_of(u32::from_le_bytes(bytes(buf, off)?))?,
            Ty::String => {
                let p = u32::from_le_bytes(bytes(buf, off)?);
                let l = u32::from_le_bytes(bytes(buf, off + 4)?);
                Val::String(self.read_string(p, l)?)
            }
            Ty::List(elem) => {
                let p = u32::from_le_bytes(bytes(buf, off)?);
                let l = u32::from_le_bytes(bytes(buf, off + 4)?);
                self.read_list(elem, p, l)?
            }
            Ty::Record(_) | Ty::Tuple(_) => {
                let fields = ty.fields();
                self.charge((fields.len() as u64).saturating_mul(VAL_COST))?;
                let mut o = 0u32;
                let mut vals = Vec::with_capacity(fields.len());
                for t in fields {
                    o = o.div_ceil(t.align()) * t.align();
                    vals.push(self.decode(t, buf, off + o as usize)?);
                    o += t.size();
                }
                if matches!(ty, Ty::Record(_)) {
                    Val::Record(vals)
                } else {
                    Val::Tuple(vals)
                }
            }
            _ => {
                let cases = ty.cases().unwrap_or_default();
                let disc = match ty.disc_size() {
                    1 => u32::from(byte(buf, off)?),
                    2 => u32::from(u16::from_le_bytes(bytes(buf, off)?)),
                    _ => u32::from_le_bytes(bytes(buf, off)?),
                };
                let case = cases
                    .get(disc as usize)
                    .ok_or(AbiError::InvalidDiscriminant {
                        value: disc,
                        cases: cases.len(),
                    })?;
                let payload = match case {
                    Some(t) => {
                        self.charge(VAL_COST)?;
                        Some(Box::new(self.decode(
                            t,
                            buf,
                            off + ty.payload_offset() as usize,
                        )?))
                    }
                    None => None,
                };
                make_case(ty, disc, payload)
            }
        })
    }

    /// Lift a value of `ty` from flat core values.
    pub fn lift_flat(&mut self, ty: &Ty, it: &mut FlatIter<'_>) -> Result<Val, AbiError> {
        Ok(match ty {
            Ty::Bool => Val::Bool(it.i32()? != 0),
            Ty::U8 => Val::U8(it.i32()? as u8),
            Ty::S8 => Val::S8(it.i32()? as i8),
            Ty::U16 => Val::U16(it.i32()? as u16),
            Ty::S16 => Val::S16(it.i32()? as i16),
            Ty::U32 => Val::U32(it.i32()? as u32),
            Ty::S32 => Val::S32(it.i32()?),
            Ty::U64 => Val::U64(it.i64()? as u64),
            Ty::S64 => Val::S64(it.i64()?),
            Ty::F32 => Val::F32(it.f32()?),
            Ty::F64 => Val::F64(it.f64()?),
            Ty::Char => char_of(it.i32()? as u32)?,
            Ty::String => {
                let p = it.i32()? as u32;
                let l = it.i32()? as u32;
                Val::String(self.read_string(p, l)?)
            }
            Ty::List(elem) => {
                let p = it.i32()? as u32;
                let l = it.i32()? as u32;
                self.read_list(elem, p, l)?
            }
            Ty::Record(_) | Ty::Tuple(_) => {
                let vals = ty
                    .fields()
                    .into_iter()
                    .map(|t| self.lift_flat(t, it))
                    .collect::<Result<Vec<_>, _>>()?;
                if matches!(ty, Ty::Record(_)) {
                    Val::Record(vals)
                } else {
                    Val::Tuple(vals)
                }
            }
            _ => {
                let cases = ty.cases().unwrap_or_default();
                let flat = ty.flat();
                let disc = it.i32()? as u32;
                let payload_slots: Vec<Value> = it.take(flat.len().saturating_sub(1))?;
                let case = cases
                    .get(disc as usize)
                    .ok_or(AbiError::InvalidDiscriminant {
                        value: disc,
                        cases: cases.len(),
                    })?;
                let payload = match case {
                    Some(t) => {
                        // Reinterpret the joined slots as the case's own flat types.
                        let want = t.flat();
                        let mut vals = Vec::with_capacity(want.len());
                        for (slot, w) in payload_slots.iter().zip(want.iter()) {
                            vals.push(coerce(slot, *w)?);
                        }
                        let mut sub = FlatIter::new(&vals);
                        Some(Box::new(self.lift_flat(t, &mut sub)?))
                    }
                    None => None,
                };
                make_case(ty, disc, payload)
            }
        })
    }
}

fn make_case(ty: &Ty, disc: u32, payload: Option<Box<Val>>) -> Val {
    match ty {
        Ty::Enum(_) => Val::Enum(disc),
        Ty::Option(_) => Val::Option(if disc == 0 { None } else { payload }),
        Ty::Result(..) => Val::Result(if disc == 0 { Ok(payload) } else { Err(payload) }),
        _ => Val::Variant(disc, payload),
    }
}

fn char_of(v: u32) -> Result<Val, AbiError> {
    char_from(v).map(Val::Char)
}

/// A `char` from its core value, refusing surrogates and values past U+10FFFF.
pub fn char_from(v: u32) -> Result<char, AbiError> {
    char::from_u32(v).ok_or(AbiError::InvalidChar(v))
}

/// The byte at `off` of a host copy of guest memory.
pub fn byte(buf: &[u8], off: usize) -> Result<u8, AbiError> {
    buf.get(off).copied().ok_or(AbiError::FlatMismatch)
}

/// The `N` bytes at `off` of a host copy of guest memory.
pub fn bytes<const N: usize>(buf: &[u8], off: usize) -> Result<[u8; N], AbiError> {
    buf.get(off..off + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(AbiError::FlatMismatch)
}

/// Convert a joined variant slot to the flat type a case wants.
fn coerce(v: &Value, want: Flat) -> Result<Value, AbiError> {
    Ok(match (v, want) {
        (Value::I32(x), Flat::I32) => Value::I32(*x),
        (Value::I32(x), Flat::F32) => Value::F32(f32::from_bits(*x as u32)),
        (Value::I64(x), Flat::I64) => Value::I64(*x),
        (Value::I64(x), Flat::I32) => Value::I32(*x as i32),
        (Value::I64(x), Flat::F32) => Value::F32(f32::from_bits(*x as u32)),
        (Value::I64(x), Flat::F64) => Value::F64(f64::from_bits(*x as u64)),
        (Value::F32(x), Flat::F32) => Value::F32(*x),
        (Value::F64(x), Flat::F64) => Value::F64(*x),
        _ => return Err(AbiError::FlatMismatch),
    })
}

/// Iterates flat core values in order.
pub struct FlatIter<'v> {
    vals: &'v [Value],
    pos: usize,
}

impl<'v> FlatIter<'v> {
    /// Iterate `vals`.
    pub fn new(vals: &'v [Value]) -> Self {
        FlatIter { vals, pos: 0 }
    }
    fn next(&mut self) -> Result<&'v Value, AbiError> {
        let v = self.vals.get(self.pos).ok_or(AbiError::FlatMismatch)?;
        self.pos += 1;
        Ok(v)
    }
    fn take(&mut self, n: usize) -> Result<Vec<Value>, AbiError> {
        (0..n).map(|_| self.next().cloned()).collect()
    }
    fn i32(&mut self) -> Result<i32, AbiError> {
        match self.next()? {
            Value::I32(x) => Ok(*x),
            _ => Err(AbiError::FlatMismatch),
        }
    }
    fn i64(&mut self) -> Result<i64, AbiError> {
        match self.next()? {
            Value::I64(x) => Ok(*x),
            _ => Err(AbiError::FlatMismatch),
        }
    }
    fn f32(&mut self) -> Result<f32, AbiError> {
        match self.next()? {
            Value::F32(x) => Ok(*x),
            _ => Err(AbiError::FlatMismatch),
        }
    }
    fn f64(&mut self) -> Result<f64, AbiError> {
        match self.next()? {
            Value::F64(x) => Ok(*x),
            _ => Err(AbiError::FlatMismatch),
        }
    }
}

/// The guest's allocator.
pub type Realloc = TypedFunction<(i32, i32, i32, i32), i32>;

/// Writes values into guest memory, allocating through `cabi_realloc`.
pub struct Writer<'s, S: AsStoreMut> {
    store: &'s mut S,
    memory: Memory,
    realloc: Option<Realloc>,
}

fn mismatch(ty: &Ty, val: &Val) -> AbiError {
    let mut t = format!("{ty:?}");
    t.truncate(60);
    let mut v = format!("{val:?}");
    v.truncate(60);
    AbiError::Mismatch(format!("value {v} does not match type {t}"))
}

impl<'s, S: AsStoreMut> Writer<'s, S> {
    /// A writer into `memory` of `store`.
    pub fn new(store: &'s mut S, memory: Memory, realloc: Option<Realloc>) -> Self {
        Writer {
            store,
            memory,
            realloc,
        }
    }

    /// Allocate `size` bytes aligned to `align` in the guest; validated.
    pub fn alloc(&mut self, align: u32, size: u32) -> Result<u32, AbiError> {
        let realloc = self.realloc.clone().ok_or(AbiError::NoRealloc)?;
        let ptr = realloc
            .call(&mut *self.store, 0, 0, align as i32, size as i32)
            .map_err(|e| AbiError::ReallocTrap(e.message()))? as u32;
        let mem_size = self.memory.view(&*self.store).data_size();
        let bad = |detail: String| AbiError::Realloc {
            align,
            size,
            ptr,
            detail,
        };
        if size > 0 && ptr == 0 {
            return Err(bad("null pointer".into()));
        }
        check_align(ptr, align).map_err(|e| bad(e.to_string()))?;
        check_range(ptr, u64::from(size), mem_size).map_err(|e| bad(e.to_string()))?;
        Ok(ptr)
    }

    /// Write raw bytes at `ptr` (range checked).
    pub fn write(&mut self, ptr: u32, data: &[u8]) -> Result<(), AbiError> {
        let view = self.memory.view(&*self.store);
        check_range(ptr, data.len() as u64, view.data_size())?;
        view.write(u64::from(ptr), data)
            .map_err(|_| GuestMemoryError::OutOfBounds {
                ptr: u64::from(ptr),
                len: data.len() as u64,
                size: view.data_size(),
            })?;
        Ok(())
    }

    /// Allocate room for `data` in the guest (aligned to `align`) and copy it there;
    /// its pointer and length.
    pub fn alloc_bytes(&mut self, data: &[u8], align: u32) -> Result<(u32, u32), AbiError> {
        let len = u32::try_from(data.len()).map_err(|_| AbiError::TooLarge {
            limit: u32::MAX as usize,
        })?;
        let ptr = self.alloc(align, len)?;
        self.write(ptr, data)?;
        Ok((ptr, len))
    }

    fn lower_list(&mut self, elem: &Ty, val: &Val) -> Result<(u32, u32), AbiError> {
        match val {
            Val::Bytes(b) if *elem == Ty::U8 => self.alloc_bytes(b, 1),
            Val::List(items) => {
                let size = elem.size() as usize;
                let mut buf = vec![0u8; list_bytes(size, items.len())?];
                for (i, item) in items.iter().enumerate() {
                    self.encode(elem, item, &mut buf, i * size)?;
                }
                let (ptr, _) = self.alloc_bytes(&buf, elem.align())?;
                Ok((ptr, items.len() as u32))
            }
            other => Err(mismatch(&Ty::List(Box::new(elem.clone())), other)),
        }
    }

    /// Store `val` of `ty` at `ptr` (which must be aligned and in bounds).
    pub fn store(&mut self, ty: &Ty, val: &Val, ptr: u32) -> Result<(), AbiError> {
        check_align(ptr, ty.align())?;
        let mut buf = vec![0u8; ty.size() as usize];
        self.encode(ty, val, &mut buf, 0)?;
        self.write(ptr, &buf)
    }

    /// Allocate room for `val` in the guest and store it there.
    pub fn store_new(&mut self, ty: &Ty, val: &Val) -> Result<u32, AbiError> {
        let mut buf = vec![0u8; ty.size() as usize];
        self.encode(ty, val, &mut buf, 0)?;
        let (ptr, _) = self.alloc_bytes(&buf, ty.align())?;
        Ok(ptr)
    }

    /// Encode `val` into a host buffer (allocating nested strings and lists in the guest).
    fn encode(&mut self, ty: &Ty, val: &Val, buf: &mut [u8], off: usize) -> Result<(), AbiError> {
        let mut put = |data: &[u8]| -> Result<(), AbiError> {
            buf.get_mut(off..off + data.len())
                .ok_or(AbiError::FlatMismatch)?
                .copy_from_slice(data);
            Ok(())
        };
        match (ty, val) {
            (Ty::Bool, Val::Bool(b)) => put(&[u8::from(*b)]),
            (Ty::U8, Val::U8(x)) => put(&[*x]),
            (Ty::S8, Val::S8(x)) => put(&x.to_le_bytes()),
            (Ty::U16, Val::U16(x)) => put(&x.to_le_bytes()),
            (Ty::S16, Val::S16(x)) => put(&x.to_le_bytes()),
            (Ty::U32, Val::U32(x)) => put(&x.to_le_bytes()),
            (Ty::S32, Val::S32(x)) => put(&x.to_le_bytes()),
            (Ty::U64, Val::U64(x)) => put(&x.to_le_bytes()),
            (Ty::S64, Val::S64(x)) => put(&x.to_le_bytes()),
            (Ty::F32, Val::F32(x)) => put(&x.to_le_bytes()),
            (Ty::F64, Val::F64(x)) => put(&x.to_le_bytes()),
            (Ty::Char, Val::Char(c)) => put(&(*c as u32).to_le_bytes()),
            (Ty::String, Val::String(s)) => {
                let (p, l) = self.alloc_bytes(s.as_bytes(), 1)?;
                put(&pair_bytes(p, l))
            }
            (Ty::List(elem), v) => {
                let (p, l) = self.lower_list(elem, v)?;
                put(&pair_bytes(p, l))
            }
            (Ty::Record(_), Val::Record(vals)) | (Ty::Tuple(_), Val::Tuple(vals)) => {
                let fields = ty.fields();
                if fields.len() != vals.len() {
                    return Err(mismatch(ty, val));
                }
                let mut o = 0u32;
                for (t, v) in fields.into_iter().zip(vals) {
                    o = o.div_ceil(t.align()) * t.align();
                    self.encode(t, v, buf, off + o as usize)?;
                    o += t.size();
                }
                Ok(())
            }
            _ => {
                let (disc, payload) = case_of(ty, val)?;
                let cases = ty.cases().unwrap_or_default();
                let d = disc.to_le_bytes();
                let n = ty.disc_size() as usize;
                buf.get_mut(off..off + n)
                    .ok_or(AbiError::FlatMismatch)?
                    .copy_from_slice(d.get(..n).ok_or(AbiError::FlatMismatch)?);
                match (cases.get(disc as usize), payload) {
                    (Some(Some(t)), Some(p)) => {
                        self.encode(t, p, buf, off + ty.payload_offset() as usize)
                    }
                    (Some(None), None) => Ok(()),
                    _ => Err(mismatch(ty, val)),
                }
            }
        }
    }

    /// Lower `val` of `ty` to flat core values.
    pub fn lower_flat(&mut self, ty: &Ty, val: &Val, out: &mut Vec<Value>) -> Result<(), AbiError> {
        match (ty, val) {
            (Ty::Bool, Val::Bool(b)) => out.push(Value::I32(i32::from(*b))),
            (Ty::U8, Val::U8(x)) => out.push(Value::I32(i32::from(*x))),
            (Ty::S8, Val::S8(x)) => out.push(Value::I32(i32::from(*x))),
            (Ty::U16, Val::U16(x)) => out.push(Value::I32(i32::from(*x))),
            (Ty::S16, Val::S16(x)) => out.push(Value::I32(i32::from(*x))),
            (Ty::U32, Val::U32(x)) => out.push(Value::I32(*x as i32)),
            (Ty::S32, Val::S32(x)) => out.push(Value::I32(*x)),
            (Ty::U64, Val::U64(x)) => out.push(Value::I64(*x as i64)),
            (Ty::S64, Val::S64(x)) => out.push(Value::I64(*x)),
            (Ty::F32, Val::F32(x)) => out.push(Value::F32(*x)),
            (Ty::F64, Val::F64(x)) => out.push(Value::F64(*x)),
            (Ty::Char, Val::Char(c)) => out.push(Value::I32(*c as u32 as i32)),
            (Ty::String, Val::String(s)) => {
                let (p, l) = self.alloc_bytes(s.as_bytes(), 1)?;
                out.push(Value::I32(p as i32));
                out.push(Value::I32(l as i32));
            }
            (Ty::List(elem), v) => {
                let (p, l) = self.lower_list(elem, v)?;
                out.push(Value::I32(p as i32));
                out.push(Value::I32(l as i32));
            }
            (Ty::Record(_), Val::Record(vals)) | (Ty::Tuple(_), Val::Tuple(vals)) => {
                let fields = ty.fields();
                if fields.len() != vals.len() {
                    return Err(mismatch(ty, val));
                }
                for (t, v) in fields.into_iter().zip(vals) {
                    self.lower_flat(t, v, out)?;
                }
            }
            _ => {
                let (disc, payload) = case_of(ty, val)?;
                let flat = ty.flat();
                out.push(Value::I32(disc as i32));
                let cases = ty.cases().unwrap_or_default();
                let mut vals = Vec::new();
                match (cases.get(disc as usize), payload) {
                    (Some(Some(t)), Some(p)) => self.lower_flat(t, p, &mut vals)?,
                    (Some(None), None) => {}
                    _ => return Err(mismatch(ty, val)),
                }
                // Widen each payload value to the joined slot type; pad the rest with zeros.
                for (i, slot) in flat.iter().skip(1).enumerate() {
                    out.push(match (vals.get(i), slot) {
                        (None, Flat::I32) => Value::I32(0),
                        (None, Flat::I64) => Value::I64(0),
                        (None, Flat::F32) => Value::F32(0.0),
                        (None, Flat::F64) => Value::F64(0.0),
                        (Some(Value::I32(x)), Flat::I64) => Value::I64(i64::from(*x as u32)),
                        (Some(Value::F32(x)), Flat::I32) => Value::I32(x.to_bits() as i32),
                        (Some(Value::F32(x)), Flat::I64) => Value::I64(i64::from(x.to_bits())),
                        (Some(Value::F64(x)), Flat::I64) => Value::I64(x.to_bits() as i64),
                        (Some(v), _) => v.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Host bytes of a list of `len` elements of `size` bytes, refused past 4 GiB.
pub fn list_bytes(size: usize, len: usize) -> Result<usize, AbiError> {
    size.checked_mul(len)
        .filter(|t| *t <= u32::MAX as usize)
        .ok_or(AbiError::TooLarge {
            limit: u32::MAX as usize,
        })
}

/// The stored form of a string or list: pointer, then length (little-endian).
pub fn pair_bytes(ptr: u32, len: u32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&ptr.to_le_bytes());
    b[4..].copy_from_slice(&len.to_le_bytes());
    b
}

/// The case index and payload of a variant-like value.
fn case_of<'v>(ty: &Ty, val: &'v Val) -> Result<(u32, Option<&'v Val>), AbiError> {
    Ok(match (ty, val) {
        (Ty::Enum(_), Val::Enum(i)) => (*i, None),
        (Ty::Variant(_), Val::Variant(i, p)) => (*i, p.as_deref()),
        (Ty::Option(_), Val::Option(None)) => (0, None),
        (Ty::Option(_), Val::Option(Some(p))) => (1, Some(p)),
        (Ty::Result(..), Val::Result(Ok(p))) => (0, p.as_deref()),
        (Ty::Result(..), Val::Result(Err(p))) => (1, p.as_deref()),
        _ => return Err(mismatch(ty, val)),
    })
}
