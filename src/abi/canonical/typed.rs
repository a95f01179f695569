//! Typed canonical-ABI calls: Rust values lowered straight into flat core values or guest
//! memory and lifted straight back, without the dynamic [`Val`](super::types::Val) tree
//! or JSON. Modelled on wasmtime's typed component functions
//! (`crates/wasmtime/src/runtime/component/func/typed.rs`):
//!
//! - [`ComponentType`] gives a Rust type's canonical layout at compile time and checks
//!   it against a contract [`Ty`] ([`ComponentType::typecheck`]). A function's
//!   parameter and result types are checked once, when its [`TypedExport`] is made, so a
//!   call does no type work.
//! - [`Lower`] writes a value as flat core values or into guest memory (strings and lists
//!   allocated through `cabi_realloc`); [`Lift`] reads one back.
//!
//! Every guest pointer, length, alignment, discriminant, char and string is checked by the
//! same primitives the dynamic path uses ([`Reader`] and [`Writer`] in `lift.rs`), with
//! the same errors and the same per-call read limit; lifted lists also count the host
//! memory their elements take.
//!
//! The tark records of `crate::types` implement these traits below; other records,
//! enums and variants can use [`canonical_record!`](crate::canonical_record),
//! [`canonical_enum!`](crate::canonical_enum) and
//! [`canonical_variant!`](crate::canonical_variant).

use std::any::TypeId;
use std::marker::PhantomData;

use wasmer::{AsStoreRef, RuntimeError, TypedFunction, Value};

use super::contract::{Contract, MAX_FLAT_PARAMS};
use super::instance::{export_name, CanonicalInstance};
use super::lift::{byte, bytes, char_from, list_bytes, pair_bytes, AbiError, Reader, Writer};
use super::types::{snake, Flat, Ty};
use crate::abi::CallError;
use crate::host::OwnerId;

pub use wasmer::AsStoreMut;

// ----- layout -----

const fn align_to(x: u32, align: u32) -> u32 {
    x.div_ceil(align) * align
}

/// The canonical-ABI layout of a type: size and alignment in linear memory, number of
/// flat core values, and (variants) discriminant size and payload offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Size in linear memory.
    pub size: u32,
    /// Alignment in linear memory.
    pub align: u32,
    /// Number of flat core values.
    pub flat: usize,
    /// Discriminant size (variant-like types; 0 otherwise).
    pub disc_size: u32,
    /// Payload offset (variant-like types; 0 otherwise).
    pub payload_offset: u32,
}

impl Layout {
    /// A type without a value (`()`, a case without payload).
    pub const EMPTY: Layout = Layout {
        size: 0,
        align: 1,
        flat: 0,
        disc_size: 0,
        payload_offset: 0,
    };

    /// A string or list: pointer and length.
    pub const POINTER_PAIR: Layout = Layout {
        size: 8,
        align: 4,
        flat: 2,
        disc_size: 0,
        payload_offset: 0,
    };

    /// A scalar of `size` bytes (aligned to its size, one flat value).
    pub const fn scalar(size: u32) -> Layout {
        Layout {
            size,
            align: size,
            flat: 1,
            disc_size: 0,
            payload_offset: 0,
        }
    }

    /// A record or tuple of `fields` in order.
    pub const fn record(fields: &[Layout]) -> Layout {
        let mut size = 0;
        let mut align = 1;
        let mut flat = 0;
        let mut i = 0;
        while i < fields.len() {
            let f = fields[i];
            size = align_to(size, f.align) + f.size;
            if f.align > align {
                align = f.align;
            }
            flat += f.flat;
            i += 1;
        }
        Layout {
            size: align_to(size, align),
            align,
            flat,
            disc_size: 0,
            payload_offset: 0,
        }
    }

    /// A variant of `cases` (a case without payload is [`Layout::EMPTY`]).
    pub const fn variant(cases: &[Layout]) -> Layout {
        let n = cases.len();
        let disc = if n <= 256 {
            1
        } else if n <= 65536 {
            2
        } else {
            4
        };
        let mut max_align = 1;
        let mut max_size = 0;
        let mut max_flat = 0;
        let mut i = 0;
        while i < n {
            let c = cases[i];
            if c.align > max_align {
                max_align = c.align;
            }
            if c.size > max_size {
                max_size = c.size;
            }
            if c.flat > max_flat {
                max_flat = c.flat;
            }
            i += 1;
        }
        let payload_offset = align_to(disc, max_align);
        let align = if disc > max_align { disc } else { max_align };
        Layout {
            size: align_to(payload_offset + max_size, align),
            align,
            flat: 1 + max_flat,
            disc_size: disc,
            payload_offset,
        }
    }

    /// An enum of `n` cases.
    pub const fn enumeration(n: usize) -> Layout {
        let disc = if n <= 256 {
            1
        } else if n <= 65536 {
            2
        } else {
            4
        };
        Layout {
            size: disc,
            align: disc,
            flat: 1,
            disc_size: disc,
            payload_offset: disc,
        }
    }

    /// The layout the contract gives `ty` (for the once-per-export consistency check).
    fn of(ty: Option<&Ty>) -> (u32, u32, usize) {
        match ty {
            Some(t) => (t.size(), t.align(), t.flat().len()),
            None => (0, 1, 0),
        }
    }
}

// ----- type checking -----

/// A Rust type does not match the WIT type it is used for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TypeCheckError(String);

impl TypeCheckError {
    /// An error with this text.
    pub fn new(message: impl Into<String>) -> Self {
        TypeCheckError(message.into())
    }

    /// The same error inside `place` (a field, case or item).
    pub fn within(self, place: impl std::fmt::Display) -> Self {
        TypeCheckError(format!("{place}: {}", self.0))
    }
}

/// The error for Rust type `T` used where the WIT has `ty`.
pub fn mismatch<T: ?Sized>(ty: &Ty) -> TypeCheckError {
    TypeCheckError(format!(
        "Rust type `{}` does not match WIT type `{}`",
        std::any::type_name::<T>(),
        describe(ty)
    ))
}

/// A WIT-like one-line description of `ty` (for messages).
pub fn describe(ty: &Ty) -> String {
    let list = |ts: &mut dyn Iterator<Item = String>| ts.collect::<Vec<_>>().join(", ");
    match ty {
        Ty::Bool => "bool".into(),
        Ty::U8 => "u8".into(),
        Ty::S8 => "s8".into(),
        Ty::U16 => "u16".into(),
        Ty::S16 => "s16".into(),
        Ty::U32 => "u32".into(),
        Ty::S32 => "s32".into(),
        Ty::U64 => "u64".into(),
        Ty::S64 => "s64".into(),
        Ty::F32 => "f32".into(),
        Ty::F64 => "f64".into(),
        Ty::Char => "char".into(),
        Ty::String => "string".into(),
        Ty::List(t) => format!("list<{}>", describe(t)),
        Ty::Record(fields) => format!(
            "record {{ {} }}",
            list(&mut fields.iter().map(|(n, _)| n.clone()))
        ),
        Ty::Tuple(ts) => format!("tuple<{}>", list(&mut ts.iter().map(describe))),
        Ty::Variant(cases) => format!(
            "variant {{ {} }}",
            list(&mut cases.iter().map(|(n, t)| match t {
                Some(t) => format!("{n}({})", describe(t)),
                None => n.clone(),
            }))
        ),
        Ty::Enum(names) => format!("enum {{ {} }}", names.join(", ")),
        Ty::Option(t) => format!("option<{}>", describe(t)),
        Ty::Result(ok, err) => {
            let d = |t: &Option<Box<Ty>>| t.as_deref().map(describe).unwrap_or("_".into());
            format!("result<{}, {}>", d(ok), d(err))
        }
    }
}

/// A type-check function of one field or case payload.
pub type Check = fn(&Ty) -> Result<(), TypeCheckError>;

/// Check record type `T` with `fields` (Rust name, check) against `ty`: same count,
/// same names (WIT kebab-case = Rust snake_case), same order, matching types.
pub fn check_record<T: ?Sized>(ty: &Ty, fields: &[(&str, Check)]) -> Result<(), TypeCheckError> {
    let Ty::Record(wit) = ty else {
        return Err(mismatch::<T>(ty));
    };
    let names = |it: &mut dyn Iterator<Item = String>| it.collect::<Vec<_>>().join(", ");
    if wit.len() != fields.len() {
        return Err(TypeCheckError(format!(
            "Rust record `{}` has {} fields ({}), WIT record has {} ({})",
            std::any::type_name::<T>(),
            fields.len(),
            names(&mut fields.iter().map(|(n, _)| n.to_string())),
            wit.len(),
            names(&mut wit.iter().map(|(n, _)| n.clone())),
        )));
    }
    for (i, ((wname, wty), (rname, check))) in wit.iter().zip(fields).enumerate() {
        if snake(wname) != *rname {
            return Err(TypeCheckError(format!(
                "Rust record `{}` field {i} is `{rname}`, WIT field {i} is `{wname}`",
                std::any::type_name::<T>()
            )));
        }
        check(wty).map_err(|e| e.within(format!("field `{wname}`")))?;
    }
    Ok(())
}

/// Check enum type `T` with WIT case `names` (in order) against `ty`.
pub fn check_enum<T: ?Sized>(ty: &Ty, names: &[&str]) -> Result<(), TypeCheckError> {
    match ty {
        Ty::Enum(wit) if wit.iter().map(String::as_str).eq(names.iter().copied()) => Ok(()),
        Ty::Enum(wit) => Err(TypeCheckError(format!(
            "Rust enum `{}` has cases ({}), WIT enum has ({})",
            std::any::type_name::<T>(),
            names.join(", "),
            wit.join(", ")
        ))),
        other => Err(mismatch::<T>(other)),
    }
}

/// Check variant type `T` with `cases` (WIT name, payload check) against `ty`.
pub fn check_variant<T: ?Sized>(
    ty: &Ty,
    cases: &[(&str, Option<Check>)],
) -> Result<(), TypeCheckError> {
    let Ty::Variant(wit) = ty else {
        return Err(mismatch::<T>(ty));
    };
    if wit.len() != cases.len() {
        return Err(TypeCheckError(format!(
            "Rust variant `{}` has {} cases, WIT `{}` has {}",
            std::any::type_name::<T>(),
            cases.len(),
            describe(ty),
            wit.len()
        )));
    }
    for (i, ((wname, wty), (rname, check))) in wit.iter().zip(cases).enumerate() {
        if wname != rname {
            return Err(TypeCheckError(format!(
                "Rust variant `{}` case {i} is `{rname}`, WIT case {i} is `{wname}`",
                std::any::type_name::<T>()
            )));
        }
        match (wty, check) {
            (Some(t), Some(check)) => check(t).map_err(|e| e.within(format!("case `{wname}`")))?,
            (None, None) => {}
            _ => {
                return Err(TypeCheckError(format!(
                    "Rust variant `{}` case `{wname}`: payload presence differs from the WIT",
                    std::any::type_name::<T>()
                )))
            }
        }
    }
    Ok(())
}

/// Check `T` against `ty` and its compile-time layout against the contract's (the
/// layout check catches a wrong hand-written impl; it runs once per export).
pub(super) fn check_top<T: ComponentType + ?Sized>(ty: Option<&Ty>) -> Result<(), TypeCheckError> {
    T::typecheck_payload(ty)?;
    let (size, align, flat) = Layout::of(ty);
    let l = T::LAYOUT;
    if (l.size, l.align, l.flat) != (size, align, flat) {
        return Err(TypeCheckError(format!(
            "Rust type `{}` has layout (size {}, align {}, {} flat), WIT `{}` has (size {size}, align {align}, {flat} flat)",
            std::any::type_name::<T>(),
            l.size,
            l.align,
            l.flat,
            ty.map(describe).unwrap_or("(nothing)".into())
        )));
    }
    Ok(())
}

// ----- flat values -----

/// Flat core values being lowered (at most `MAX_FLAT_PARAMS`), as raw bits: a variant's
/// joined slots hold whichever case's value, widened as the canonical ABI joins them.
#[derive(Debug, Clone)]
pub struct FlatOut {
    slots: [u64; MAX_FLAT_PARAMS],
    len: usize,
}

impl Default for FlatOut {
    fn default() -> Self {
        FlatOut {
            slots: [0; MAX_FLAT_PARAMS],
            len: 0,
        }
    }
}

impl FlatOut {
    /// Number of values so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No values yet?
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, raw: u64) -> Result<(), AbiError> {
        let slot = self.slots.get_mut(self.len).ok_or(AbiError::FlatMismatch)?;
        *slot = raw;
        self.len += 1;
        Ok(())
    }

    /// Push an `i32`.
    pub fn push_i32(&mut self, v: i32) -> Result<(), AbiError> {
        self.push(u64::from(v as u32))
    }

    /// Push an `i64`.
    pub fn push_i64(&mut self, v: i64) -> Result<(), AbiError> {
        self.push(v as u64)
    }

    /// Push an `f32`.
    pub fn push_f32(&mut self, v: f32) -> Result<(), AbiError> {
        self.push(u64::from(v.to_bits()))
    }

    /// Push an `f64`.
    pub fn push_f64(&mut self, v: f64) -> Result<(), AbiError> {
        self.push(v.to_bits())
    }

    /// Pad a variant's unused payload slots with zeros up to `n` values.
    pub fn pad_to(&mut self, n: usize) -> Result<(), AbiError> {
        while self.len < n {
            self.push(0)?;
        }
        if self.len > n {
            return Err(AbiError::FlatMismatch);
        }
        Ok(())
    }

    /// The values as wasmer values of the export's core parameter types.
    fn values(&self, types: &[Flat]) -> Result<[Value; MAX_FLAT_PARAMS], AbiError> {
        if types.len() != self.len {
            return Err(AbiError::FlatMismatch);
        }
        Ok(std::array::from_fn(|i| {
            let raw = self.slots.get(i).copied().unwrap_or(0);
            match types.get(i) {
                Some(Flat::I64) => Value::I64(raw as i64),
                Some(Flat::F32) => Value::F32(f32::from_bits(raw as u32)),
                Some(Flat::F64) => Value::F64(f64::from_bits(raw)),
                Some(Flat::I32) | None => Value::I32(raw as u32 as i32),
            }
        }))
    }
}

/// Flat core values being lifted. A variant's payload reads its joined slots as its own
/// flat types (i64 slots truncated to i32, bits reinterpreted as floats), as the dynamic
/// path's `coerce` does.
#[derive(Debug)]
pub struct FlatIn<'v> {
    vals: &'v [Value],
    pos: usize,
    end: usize,
}

impl<'v> FlatIn<'v> {
    /// Iterate `vals`.
    pub fn new(vals: &'v [Value]) -> Self {
        FlatIn {
            vals,
            pos: 0,
            end: vals.len(),
        }
    }

    fn raw(&mut self) -> Result<u64, AbiError> {
        if self.pos >= self.end {
            return Err(AbiError::FlatMismatch);
        }
        let v = self.vals.get(self.pos).ok_or(AbiError::FlatMismatch)?;
        self.pos += 1;
        Ok(match v {
            Value::I32(x) => u64::from(*x as u32),
            Value::I64(x) => *x as u64,
            Value::F32(x) => u64::from(x.to_bits()),
            Value::F64(x) => x.to_bits(),
            _ => return Err(AbiError::FlatMismatch),
        })
    }

    /// The next value as `i32`.
    pub fn i32(&mut self) -> Result<i32, AbiError> {
        Ok(self.raw()? as u32 as i32)
    }

    /// The next value as `i64`.
    pub fn i64(&mut self) -> Result<i64, AbiError> {
        Ok(self.raw()? as i64)
    }

    /// The next value as `f32`.
    pub fn f32(&mut self) -> Result<f32, AbiError> {
        Ok(f32::from_bits(self.raw()? as u32))
    }

    /// The next value as `f64`.
    pub fn f64(&mut self) -> Result<f64, AbiError> {
        Ok(f64::from_bits(self.raw()?))
    }

    /// The next `n` values (a variant's payload slots) as their own iterator.
    pub fn payload(&mut self, n: usize) -> Result<FlatIn<'v>, AbiError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.end)
            .ok_or(AbiError::FlatMismatch)?;
        let sub = FlatIn {
            vals: self.vals,
            pos: self.pos,
            end,
        };
        self.pos = end;
        Ok(sub)
    }
}

/// Write `data` at `off` of a host buffer being stored.
pub fn put<const N: usize>(buf: &mut [u8], off: usize, data: [u8; N]) -> Result<(), AbiError> {
    buf.get_mut(off..off + N)
        .ok_or(AbiError::FlatMismatch)?
        .copy_from_slice(&data);
    Ok(())
}

/// Store a discriminant of `size` bytes.
pub fn store_disc(buf: &mut [u8], off: usize, disc: u32, size: u32) -> Result<(), AbiError> {
    let d = disc.to_le_bytes();
    let n = size as usize;
    buf.get_mut(off..off + n)
        .ok_or(AbiError::FlatMismatch)?
        .copy_from_slice(d.get(..n).ok_or(AbiError::FlatMismatch)?);
    Ok(())
}

/// Load a discriminant of `size` bytes.
pub fn load_disc(buf: &[u8], off: usize, size: u32) -> Result<u32, AbiError> {
    Ok(match size {
        1 => u32::from(byte(buf, off)?),
        2 => u32::from(u16::from_le_bytes(bytes(buf, off)?)),
        _ => u32::from_le_bytes(bytes(buf, off)?),
    })
}

// ----- the traits -----

/// A Rust type with a canonical-ABI representation.
pub trait ComponentType {
    /// Layout in memory and as flat values.
    const LAYOUT: Layout;

    /// A `'static` type that lowers and lifts exactly like this one (`&T` and `T`,
    /// `&str` and `String`, `&[T]` and `Vec<T>` share one): the key of the per-instance
    /// cache of checked exports.
    type Static: 'static;

    /// Is this type usable for the contract type `ty`? Called once per export.
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError>;

    /// The same for a slot the WIT may leave empty (`result<_, E>`, a function without a
    /// result): only `()` accepts nothing.
    fn typecheck_payload(ty: Option<&Ty>) -> Result<(), TypeCheckError> {
        match ty {
            Some(t) => Self::typecheck(t),
            None => Err(TypeCheckError(format!(
                "Rust type `{}` has a value where the WIT has none (use `()`)",
                std::any::type_name::<Self>()
            ))),
        }
    }
}

/// A value that can be passed to the guest.
pub trait Lower: ComponentType {
    /// Append this value's flat core values.
    fn lower<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        out: &mut FlatOut,
    ) -> Result<(), AbiError>;

    /// Encode this value at `off` of a host buffer that is then copied into the guest
    /// (strings and lists inside are allocated in the guest first).
    fn store<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        buf: &mut [u8],
        off: usize,
    ) -> Result<(), AbiError>;

    /// Allocate a list of `items` in the guest; its pointer and length.
    fn store_list<S: AsStoreMut>(
        items: &[Self],
        cx: &mut Writer<'_, S>,
    ) -> Result<(u32, u32), AbiError>
    where
        Self: Sized,
    {
        let size = Self::LAYOUT.size as usize;
        let mut buf = vec![0u8; list_bytes(size, items.len())?];
        for (i, item) in items.iter().enumerate() {
            item.store(cx, &mut buf, i * size)?;
        }
        let (ptr, _) = cx.alloc_bytes(&buf, Self::LAYOUT.align)?;
        Ok((ptr, items.len() as u32))
    }
}

/// A value that can be read from the guest.
pub trait Lift: ComponentType + Sized {
    /// Read this value from flat core values.
    fn lift(cx: &mut Reader<'_>, src: &mut FlatIn<'_>) -> Result<Self, AbiError>;

    /// Decode this value at `off` of a host copy of guest memory.
    fn load(cx: &mut Reader<'_>, buf: &[u8], off: usize) -> Result<Self, AbiError>;

    /// Read a list of `len` elements at `ptr`. Besides the guest bytes, each element's
    /// host size counts against the per-call limit (before anything is allocated).
    fn load_list(cx: &mut Reader<'_>, ptr: u32, len: u32) -> Result<Vec<Self>, AbiError> {
        let l = Self::LAYOUT;
        let buf = cx.read_array(ptr, len, l.size, l.align)?;
        let host = std::mem::size_of::<Self>().max(1) as u64;
        cx.charge(u64::from(len).saturating_mul(host))?;
        let mut items = Vec::with_capacity(len as usize);
        for i in 0..len as usize {
            items.push(Self::load(cx, &buf, i * l.size as usize)?);
        }
        Ok(items)
    }
}

// ----- primitives -----

/// One WIT scalar type: its flat form (`lower`, `lift`), its bytes in memory (`store`,
/// `load`) and, for `u8`, list overrides (`lists { lower items } { lift items }`).
macro_rules! scalar_impl {
    (
        $t:ty, $wit:ident, $size:literal;
        lower($v:ident) => $push:ident($flat:expr);
        store($sv:ident) => $bytes:expr;
        lift($x:ident: $get:ident) => $lifted:expr;
        load($buf:ident, $off:ident) => $loaded:expr;
        $(lists { $($lower_list:item)* } { $($lift_list:item)* })?
    ) => {
        impl ComponentType for $t {
            const LAYOUT: Layout = Layout::scalar($size);
            type Static = $t;
            fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
                match ty {
                    Ty::$wit => Ok(()),
                    other => Err(mismatch::<Self>(other)),
                }
            }
        }
        impl Lower for $t {
            fn lower<S: AsStoreMut>(
                &self,
                _: &mut Writer<'_, S>,
                out: &mut FlatOut,
            ) -> Result<(), AbiError> {
                let $v = *self;
                out.$push($flat)
            }
            fn store<S: AsStoreMut>(
                &self,
                _: &mut Writer<'_, S>,
                buf: &mut [u8],
                off: usize,
            ) -> Result<(), AbiError> {
                let $sv = *self;
                put(buf, off, $bytes)
            }
            $($($lower_list)*)?
        }
        impl Lift for $t {
            fn lift(_: &mut Reader<'_>, src: &mut FlatIn<'_>) -> Result<Self, AbiError> {
                let $x = src.$get()?;
                $lifted
            }
            fn load(_: &mut Reader<'_>, $buf: &[u8], $off: usize) -> Result<Self, AbiError> {
                $loaded
            }
            $($($lift_list)*)?
        }
    };
}

/// A number: flat as its (widened) core value, little-endian in memory.
macro_rules! scalar {
    ($t:ty, $wit:ident, $size:literal, $push:ident, $get:ident) => {
        scalar_impl! {
            $t, $wit, $size;
            lower(v) => $push(v as _);
            store(v) => v.to_le_bytes();
            lift(x: $get) => Ok(x as $t);
            load(buf, off) => Ok(<$t>::from_le_bytes(bytes(buf, off)?));
        }
    };
}

scalar!(i8, S8, 1, push_i32, i32);
scalar!(u16, U16, 2, push_i32, i32);
scalar!(i16, S16, 2, push_i32, i32);
scalar!(u32, U32, 4, push_i32, i32);
scalar!(i32, S32, 4, push_i32, i32);
scalar!(u64, U64, 8, push_i64, i64);
scalar!(i64, S64, 8, push_i64, i64);
scalar!(f32, F32, 4, push_f32, f32);
scalar!(f64, F64, 8, push_f64, f64);

scalar_impl! {
    u8, U8, 1;
    lower(v) => push_i32(i32::from(v));
    store(v) => [v];
    lift(x: i32) => Ok(x as u8);
    load(buf, off) => byte(buf, off);
    lists {
        /// Bytes go into the guest in one copy.
        fn store_list<S: AsStoreMut>(
            items: &[Self],
            cx: &mut Writer<'_, S>,
        ) -> Result<(u32, u32), AbiError> {
            cx.alloc_bytes(items, 1)
        }
    } {
        /// Bytes come out in one copy (counted once: the copy is the list).
        fn load_list(cx: &mut Reader<'_>, ptr: u32, len: u32) -> Result<Vec<Self>, AbiError> {
            cx.read_array(ptr, len, 1, 1)
        }
    }
}

scalar_impl! {
    bool, Bool, 1;
    lower(v) => push_i32(i32::from(v));
    store(v) => [u8::from(v)];
    lift(x: i32) => Ok(x != 0);
    load(buf, off) => Ok(byte(buf, off)? != 0);
}

scalar_impl! {
    char, Char, 4;
    lower(v) => push_i32(u32::from(v) as i32);
    store(v) => u32::from(v).to_le_bytes();
    lift(x: i32) => char_from(x as u32);
    load(buf, off) => char_from(u32::from_le_bytes(bytes(buf, off)?));
}

// ----- strings and lists -----

/// Lower a `(pointer, length)` pair (a string or list) as two flat `i32`s.
#[inline(always)]
fn lower_pair(out: &mut FlatOut, p: u32, l: u32) -> Result<(), AbiError> {
    out.push_i32(p as i32)?;
    out.push_i32(l as i32)
}

/// Lift a `(pointer, length)` pair from two flat `i32`s.
#[inline(always)]
fn lift_pair(src: &mut FlatIn<'_>) -> Result<(u32, u32), AbiError> {
    let p = src.i32()? as u32;
    let l = src.i32()? as u32;
    Ok((p, l))
}

/// Load a `(pointer, length)` pair stored at `off`.
#[inline(always)]
fn load_pair(buf: &[u8], off: usize) -> Result<(u32, u32), AbiError> {
    let p = u32::from_le_bytes(bytes(buf, off)?);
    let l = u32::from_le_bytes(bytes(buf, off + 4)?);
    Ok((p, l))
}

/// Rust type `T` (`str` or `String`) where the WIT has `ty`: fits only a `string`.
fn check_string<T: ?Sized>(ty: &Ty) -> Result<(), TypeCheckError> {
    match ty {
        Ty::String => Ok(()),
        other => Err(mismatch::<T>(other)),
    }
}

impl ComponentType for str {
    const LAYOUT: Layout = Layout::POINTER_PAIR;
    type Static = String;
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        check_string::<Self>(ty)
    }
}

impl Lower for str {
    fn lower<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        out: &mut FlatOut,
    ) -> Result<(), AbiError> {
        let (p, l) = cx.alloc_bytes(self.as_bytes(), 1)?;
        lower_pair(out, p, l)
    }
    fn store<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        buf: &mut [u8],
        off: usize,
    ) -> Result<(), AbiError> {
        let (p, l) = cx.alloc_bytes(self.as_bytes(), 1)?;
        put(buf, off, pair_bytes(p, l))
    }
}

impl ComponentType for String {
    const LAYOUT: Layout = Layout::POINTER_PAIR;
    type Static = String;
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        check_string::<Self>(ty)
    }
}

/// `Lower` for a type that lowers as what it borrows: `lower_via!([generics] Type =>
/// Target, this => borrow of this as &Target)`.
macro_rules! lower_via {
    ([$($g:tt)*] $t:ty => $target:ty, $this:ident => $inner:expr) => {
        impl<$($g)*> Lower for $t {
            fn lower<S: AsStoreMut>(
                &self,
                cx: &mut Writer<'_, S>,
                out: &mut FlatOut,
            ) -> Result<(), AbiError> {
                let $this = self;
                <$target as Lower>::lower($inner, cx, out)
            }
            fn store<S: AsStoreMut>(
                &self,
                cx: &mut Writer<'_, S>,
                buf: &mut [u8],
                off: usize,
            ) -> Result<(), AbiError> {
                let $this = self;
                <$target as Lower>::store($inner, cx, buf, off)
            }
        }
    };
}

lower_via!([] String => str, s => s.as_str());

impl Lift for String {
    fn lift(cx: &mut Reader<'_>, src: &mut FlatIn<'_>) -> Result<Self, AbiError> {
        let (p, l) = lift_pair(src)?;
        cx.read_string(p, l)
    }
    fn load(cx: &mut Reader<'_>, buf: &[u8], off: usize) -> Result<Self, AbiError> {
        let (p, l) = load_pair(buf, off)?;
        cx.read_string(p, l)
    }
}

impl<T: ComponentType> ComponentType for [T] {
    const LAYOUT: Layout = Layout::POINTER_PAIR;
    type Static = Vec<T::Static>;
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        match ty {
            Ty::List(elem) => T::typecheck(elem).map_err(|e| e.within("list element")),
            other => Err(mismatch::<Self>(other)),
        }
    }
}

impl<T: Lower> Lower for [T] {
    fn lower<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        out: &mut FlatOut,
    ) -> Result<(), AbiError> {
        let (p, l) = T::store_list(self, cx)?;
        lower_pair(out, p, l)
    }
    fn store<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        buf: &mut [u8],
        off: usize,
    ) -> Result<(), AbiError> {
        let (p, l) = T::store_list(self, cx)?;
        put(buf, off, pair_bytes(p, l))
    }
}

impl<T: ComponentType> ComponentType for Vec<T> {
    const LAYOUT: Layout = Layout::POINTER_PAIR;
    type Static = Vec<T::Static>;
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        <[T]>::typecheck(ty)
    }
}

lower_via!([T: Lower] Vec<T> => [T], v => v.as_slice());

impl<T: Lift> Lift for Vec<T> {
    fn lift(cx: &mut Reader<'_>, src: &mut FlatIn<'_>) -> Result<Self, AbiError> {
        let (p, l) = lift_pair(src)?;
        T::load_list(cx, p, l)
    }
    fn load(cx: &mut Reader<'_>, buf: &[u8], off: usize) -> Result<Self, AbiError> {
        let (p, l) = load_pair(buf, off)?;
        T::load_list(cx, p, l)
    }
}

impl<T: ComponentType + ?Sized> ComponentType for &T {
    const LAYOUT: Layout = T::LAYOUT;
    type Static = T::Static;
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        T::typecheck(ty)
    }
    fn typecheck_payload(ty: Option<&Ty>) -> Result<(), TypeCheckError> {
        T::typecheck_payload(ty)
    }
}

lower_via!([T: Lower + ?Sized] &T => T, r => *r);

// ----- option and result -----

/// Lower case `disc` of a two-case variant (`option`, `result`) laid out as `layout`,
/// with its payload if it has one; padded to the variant's flat width.
#[inline(always)]
fn lower_case<S: AsStoreMut, V: Lower>(
    cx: &mut Writer<'_, S>,
    out: &mut FlatOut,
    layout: Layout,
    disc: i32,
    payload: Option<&V>,
) -> Result<(), AbiError> {
    let start = out.len();
    out.push_i32(disc)?;
    if let Some(v) = payload {
        v.lower(cx, out)?;
    }
    out.pad_to(start + layout.flat)
}

/// Store case `disc` of a two-case variant laid out as `layout` at `off`.
#[inline(always)]
fn store_case<S: AsStoreMut, V: Lower>(
    cx: &mut Writer<'_, S>,
    buf: &mut [u8],
    off: usize,
    layout: Layout,
    disc: u32,
    payload: Option<&V>,
) -> Result<(), AbiError> {
    store_disc(buf, off, disc, layout.disc_size)?;
    match payload {
        Some(v) => v.store(cx, buf, off + layout.payload_offset as usize),
        None => Ok(()),
    }
}

/// The discriminant of a two-case variant laid out as `layout` and its payload's flat
/// values (all of the variant's payload slots are taken, whichever case it is).
#[inline(always)]
fn lift_case<'v>(src: &mut FlatIn<'v>, layout: Layout) -> Result<(u32, FlatIn<'v>), AbiError> {
    let disc = src.i32()? as u32;
    let payload = src.payload(layout.flat.saturating_sub(1))?;
    Ok((disc, payload))
}

/// The discriminant of a two-case variant laid out as `layout` at `off`, and where its
/// payload is.
#[inline(always)]
fn load_case(buf: &[u8], off: usize, layout: Layout) -> Result<(u32, usize), AbiError> {
    let disc = load_disc(buf, off, layout.disc_size)?;
    Ok((disc, off + layout.payload_offset as usize))
}

impl<T: ComponentType> ComponentType for Option<T> {
    const LAYOUT: Layout = Layout::variant(&[Layout::EMPTY, T::LAYOUT]);
    type Static = Option<T::Static>;
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        match ty {
            Ty::Option(t) => T::typecheck(t).map_err(|e| e.within("option payload")),
            other => Err(mismatch::<Self>(other)),
        }
    }
}

impl<T: Lower> Lower for Option<T> {
    fn lower<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        out: &mut FlatOut,
    ) -> Result<(), AbiError> {
        match self {
            None => lower_case::<S, T>(cx, out, Self::LAYOUT, 0, None),
            Some(v) => lower_case(cx, out, Self::LAYOUT, 1, Some(v)),
        }
    }
    fn store<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        buf: &mut [u8],
        off: usize,
    ) -> Result<(), AbiError> {
        match self {
            None => store_case::<S, T>(cx, buf, off, Self::LAYOUT, 0, None),
            Some(v) => store_case(cx, buf, off, Self::LAYOUT, 1, Some(v)),
        }
    }
}

impl<T: Lift> Lift for Option<T> {
    fn lift(cx: &mut Reader<'_>, src: &mut FlatIn<'_>) -> Result<Self, AbiError> {
        let (disc, mut payload) = lift_case(src, Self::LAYOUT)?;
        match disc {
            0 => Ok(None),
            1 => Ok(Some(T::lift(cx, &mut payload)?)),
            value => Err(AbiError::InvalidDiscriminant { value, cases: 2 }),
        }
    }
    fn load(cx: &mut Reader<'_>, buf: &[u8], off: usize) -> Result<Self, AbiError> {
        let (disc, at) = load_case(buf, off, Self::LAYOUT)?;
        match disc {
            0 => Ok(None),
            1 => Ok(Some(T::load(cx, buf, at)?)),
            value => Err(AbiError::InvalidDiscriminant { value, cases: 2 }),
        }
    }
}

impl<T: ComponentType, E: ComponentType> ComponentType for Result<T, E> {
    const LAYOUT: Layout = Layout::variant(&[T::LAYOUT, E::LAYOUT]);
    type Static = Result<T::Static, E::Static>;
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        match ty {
            Ty::Result(ok, err) => {
                T::typecheck_payload(ok.as_deref()).map_err(|e| e.within("result ok"))?;
                E::typecheck_payload(err.as_deref()).map_err(|e| e.within("result err"))
            }
            other => Err(mismatch::<Self>(other)),
        }
    }
}

impl<T: Lower, E: Lower> Lower for Result<T, E> {
    fn lower<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        out: &mut FlatOut,
    ) -> Result<(), AbiError> {
        match self {
            Ok(v) => lower_case(cx, out, Self::LAYOUT, 0, Some(v)),
            Err(e) => lower_case(cx, out, Self::LAYOUT, 1, Some(e)),
        }
    }
    fn store<S: AsStoreMut>(
        &self,
        cx: &mut Writer<'_, S>,
        buf: &mut [u8],
        off: usize,
    ) -> Result<(), AbiError> {
        match self {
            Ok(v) => store_case(cx, buf, off, Self::LAYOUT, 0, Some(v)),
            Err(e) => store_case(cx, buf, off, Self::LAYOUT, 1, Some(e)),
        }
    }
}

impl<T: Lift, E: Lift> Lift for Result<T, E> {
    fn lift(cx: &mut Reader<'_>, src: &mut FlatIn<'_>) -> Result<Self, AbiError> {
        let (disc, mut payload) = lift_case(src, Self::LAYOUT)?;
        match disc {
            0 => Ok(Ok(T::lift(cx, &mut payload)?)),
            1 => Ok(Err(E::lift(cx, &mut payload)?)),
            value => Err(AbiError::InvalidDiscriminant { value, cases: 2 }),
        }
    }
    fn load(cx: &mut Reader<'_>, buf: &[u8], off: usize) -> Result<Self, AbiError> {
        let (disc, at) = load_case(buf, off, Self::LAYOUT)?;
        match disc {
            0 => Ok(Ok(T::load(cx, buf, at)?)),
            1 => Ok(Err(E::load(cx, buf, at)?)),
            value => Err(AbiError::InvalidDiscriminant { value, cases: 2 }),
        }
    }
}

// ----- tuples -----

impl ComponentType for () {
    const LAYOUT: Layout = Layout::EMPTY;
    type Static = ();
    fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
        match ty {
            Ty::Tuple(ts) if ts.is_empty() => Ok(()),
            other => Err(mismatch::<Self>(other)),
        }
    }
    fn typecheck_payload(ty: Option<&Ty>) -> Result<(), TypeCheckError> {
        match ty {
            None => Ok(()),
            Some(t) => Self::typecheck(t),
        }
    }
}

impl Lower for () {
    fn lower<S: AsStoreMut>(&self, _: &mut Writer<'_, S>, _: &mut FlatOut) -> Result<(), AbiError> {
        Ok(())
    }
    fn store<S: AsStoreMut>(
        &self,
        _: &mut Writer<'_, S>,
        _: &mut [u8],
        _: usize,
    ) -> Result<(), AbiError> {
        Ok(())
    }
}

impl Lift for () {
    fn lift(_: &mut Reader<'_>, _: &mut FlatIn<'_>) -> Result<Self, AbiError> {
        Ok(())
    }
    fn load(_: &mut Reader<'_>, _: &[u8], _: usize) -> Result<Self, AbiError> {
        Ok(())
    }
}

macro_rules! tuple {
    ($n:literal; $($i:tt $t:ident),+) => {
        impl<$($t: ComponentType),+> ComponentType for ($($t,)+) {
            const LAYOUT: Layout = Layout::record(&[$($t::LAYOUT),+]);
            type Static = ($($t::Static,)+);
            fn typecheck(ty: &Ty) -> Result<(), TypeCheckError> {
                match ty {
                    Ty::Tuple(ts) if ts.len() == $n => {
                        $(
                            if let Some(t) = ts.get($i) {
                                $t::typecheck(t).map_err(|e| e.within(concat!("item ", $i)))?;
                            }
                        )+
                        Ok(())
                    }
                    other => Err(mismatch::<Self>(other)),
                }
            }
        }
        impl<$($t: Lower),+> Lower for ($($t,)+) {
            fn lower<S: AsStoreMut>(
                &self,
                cx: &mut Writer<'_, S>,
                out: &mut FlatOut,
            ) -> Result<(), AbiError> {
                $( self.$i.lower(cx, out)?; )+
                Ok(())
            }
            #[allow(unused_assignments)]
            fn store<S: AsStoreMut>(
                &self,
                cx: &mut Writer<'_, S>,
                buf: &mut [u8],
                off: usize,
            ) -> Result<(), AbiError> {
                let mut o = 0u32;
                $(
                    o = align_to(o, $t::LAYOUT.align);
                    self.$i.store(cx, buf, off + o as usize)?;
                    o += $t::LAYOUT.size;
                )+
                Ok(())
            }
        }
        impl<$($t: Lift),+> Lift for ($($t,)+) {
            fn lift(cx: &mut Reader<'_>, src: &mut FlatIn<'_>) -> Result<Self, AbiError> {
                Ok(($( $t::lift(cx, src)?, )+))
            }
            #[allow(unused_assignments)]
            fn load(cx: &mut Reader<'_>, buf: &[u8], off: usize) -> Result<Self, AbiError> {
                let mut o = 0u32;
                Ok(($(
                    {
                        o = align_to(o, $t::LAYOUT.align);
                        let v = $t::load(cx, buf, off + o as usize)?;
                        o += $t::LAYOUT.size;
                        v
                    },
                )+))
            }
        }
    };
}

tuple!(1; 0 A);
tuple!(2; 0 A, 1 B);
tuple!(3; 0 A, 1 B, 2 C);
tuple!(4; 0 A, 1 B, 2 C, 3 D);
tuple!(5; 0 A, 1 B, 2 C, 3 D, 4 E);
tuple!(6; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F);
tuple!(7; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G);
tuple!(8; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H);
tuple!(9; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I);
tuple!(10; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J);
tuple!(11; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K);
tuple!(12; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K, 11 L);
tuple!(13; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K, 11 L, 12 M);
tuple!(14; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K, 11 L, 12 M, 13 N);
tuple!(15; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K, 11 L, 12 M, 13 N, 14 O);
tuple!(16; 0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H, 8 I, 9 J, 10 K, 11 L, 12 M, 13 N, 14 O, 15 P);

// ----- records, enums and variants -----

/// Implement the typed canonical ABI for a record struct: its fields in WIT order with
/// their types (`skip { f }`: Rust-only fields, `Default` when lifted). Field names are
/// checked against the WIT record (kebab-case there, snake_case here).
#[macro_export]
macro_rules! canonical_record {
    ($name:ident { $($field:ident : $t:ty),* $(,)? } $(skip { $($skip:ident),* $(,)? })?) => {
        impl $crate::lowlevel::typed::ComponentType for $name {
            const LAYOUT: $crate::lowlevel::typed::Layout =
                $crate::lowlevel::typed::Layout::record(&[$(
                    <$t as $crate::lowlevel::typed::ComponentType>::LAYOUT
                ),*]);
            type Static = $name;
            fn typecheck(
                ty: &$crate::lowlevel::types::Ty,
            ) -> ::std::result::Result<(), $crate::lowlevel::typed::TypeCheckError> {
                $crate::lowlevel::typed::check_record::<Self>(ty, &[$(
                    (
                        stringify!($field),
                        <$t as $crate::lowlevel::typed::ComponentType>::typecheck
                            as $crate::lowlevel::typed::Check,
                    )
                ),*])
            }
        }
        impl $crate::lowlevel::typed::Lower for $name {
            fn lower<S: $crate::lowlevel::typed::AsStoreMut>(
                &self,
                cx: &mut $crate::lowlevel::lift::Writer<'_, S>,
                out: &mut $crate::lowlevel::typed::FlatOut,
            ) -> ::std::result::Result<(), $crate::lowlevel::lift::AbiError> {
                $( <$t as $crate::lowlevel::typed::Lower>::lower(&self.$field, cx, out)?; )*
                Ok(())
            }
            #[allow(unused_assignments, unused_mut, unused_variables)]
            fn store<S: $crate::lowlevel::typed::AsStoreMut>(
                &self,
                cx: &mut $crate::lowlevel::lift::Writer<'_, S>,
                buf: &mut [u8],
                off: usize,
            ) -> ::std::result::Result<(), $crate::lowlevel::lift::AbiError> {
                let mut o = 0u32;
                $(
                    let l = <$t as $crate::lowlevel::typed::ComponentType>::LAYOUT;
                    o = o.div_ceil(l.align) * l.align;
                    <$t as $crate::lowlevel::typed::Lower>::store(
                        &self.$field, cx, buf, off + o as usize,
                    )?;
                    o += l.size;
                )*
                Ok(())
            }
        }
        impl $crate::lowlevel::typed::Lift for $name {
            fn lift(
                cx: &mut $crate::lowlevel::lift::Reader<'_>,
                src: &mut $crate::lowlevel::typed::FlatIn<'_>,
            ) -> ::std::result::Result<Self, $crate::lowlevel::lift::AbiError> {
                Ok($name {
                    $( $field: <$t as $crate::lowlevel::typed::Lift>::lift(cx, src)?, )*
                    $($( $skip: ::std::default::Default::default(), )*)?
                })
            }
            #[allow(unused_assignments, unused_mut, unused_variables)]
            fn load(
                cx: &mut $crate::lowlevel::lift::Reader<'_>,
                buf: &[u8],
                off: usize,
            ) -> ::std::result::Result<Self, $crate::lowlevel::lift::AbiError> {
                let mut o = 0u32;
                Ok($name {
                    $( $field: {
                        let l = <$t as $crate::lowlevel::typed::ComponentType>::LAYOUT;
                        o = o.div_ceil(l.align) * l.align;
                        let v = <$t as $crate::lowlevel::typed::Lift>::load(
                            cx, buf, off + o as usize,
                        )?;
                        o += l.size;
                        v
                    }, )*
                    $($( $skip: ::std::default::Default::default(), )*)?
                })
            }
        }
    };
}

/// Implement the typed canonical ABI for a fieldless `Copy` enum whose cases are declared
/// in WIT order: `Name { Case = "wit-case", ... }`.
#[macro_export]
macro_rules! canonical_enum {
    ($name:ident { $($case:ident = $wit:literal),+ $(,)? }) => {
        const _: () = {
            // Declaration order is WIT order: the discriminant is the case index.
            let mut i = 0u32;
            $(
                assert!($name::$case as u32 == i, "enum cases must be declared in WIT order");
                i += 1;
            )+
            let _ = i;
        };
        impl $name {
            const CANONICAL_CASES: &'static [$name] = &[$($name::$case),+];
        }
        impl $crate::lowlevel::typed::ComponentType for $name {
            const LAYOUT: $crate::lowlevel::typed::Layout =
                $crate::lowlevel::typed::Layout::enumeration(
                    $name::CANONICAL_CASES.len(),
                );
            type Static = $name;
            fn typecheck(
                ty: &$crate::lowlevel::types::Ty,
            ) -> ::std::result::Result<(), $crate::lowlevel::typed::TypeCheckError> {
                $crate::lowlevel::typed::check_enum::<Self>(ty, &[$($wit),+])
            }
        }
        impl $crate::lowlevel::typed::Lower for $name {
            fn lower<S: $crate::lowlevel::typed::AsStoreMut>(
                &self,
                _: &mut $crate::lowlevel::lift::Writer<'_, S>,
                out: &mut $crate::lowlevel::typed::FlatOut,
            ) -> ::std::result::Result<(), $crate::lowlevel::lift::AbiError> {
                out.push_i32(*self as u32 as i32)
            }
            fn store<S: $crate::lowlevel::typed::AsStoreMut>(
                &self,
                _: &mut $crate::lowlevel::lift::Writer<'_, S>,
                buf: &mut [u8],
                off: usize,
            ) -> ::std::result::Result<(), $crate::lowlevel::lift::AbiError> {
                $crate::lowlevel::typed::store_disc(
                    buf,
                    off,
                    *self as u32,
                    <Self as $crate::lowlevel::typed::ComponentType>::LAYOUT.disc_size,
                )
            }
        }
        impl $crate::lowlevel::typed::Lift for $name {
            fn lift(
                _: &mut $crate::lowlevel::lift::Reader<'_>,
                src: &mut $crate::lowlevel::typed::FlatIn<'_>,
            ) -> ::std::result::Result<Self, $crate::lowlevel::lift::AbiError> {
                let value = src.i32()? as u32;
                $name::CANONICAL_CASES.get(value as usize).copied().ok_or(
                    $crate::lowlevel::lift::AbiError::InvalidDiscriminant {
                        value,
                        cases: $name::CANONICAL_CASES.len(),
                    },
                )
            }
            fn load(
                _: &mut $crate::lowlevel::lift::Reader<'_>,
                buf: &[u8],
                off: usize,
            ) -> ::std::result::Result<Self, $crate::lowlevel::lift::AbiError> {
                let value = $crate::lowlevel::typed::load_disc(
                    buf,
                    off,
                    <Self as $crate::lowlevel::typed::ComponentType>::LAYOUT.disc_size,
                )?;
                $name::CANONICAL_CASES.get(value as usize).copied().ok_or(
                    $crate::lowlevel::lift::AbiError::InvalidDiscriminant {
                        value,
                        cases: $name::CANONICAL_CASES.len(),
                    },
                )
            }
        }
    };
}

/// Implement the typed canonical ABI for an enum with payloads, cases in WIT order:
/// `Name { Unit = "unit", WithPayload(Type) = "with-payload", ... }`.
#[macro_export]
macro_rules! canonical_variant {
    ($name:ident { $($case:ident $(($p:ty))? = $wit:literal),+ $(,)? }) => {
        impl $crate::lowlevel::typed::ComponentType for $name {
            const LAYOUT: $crate::lowlevel::typed::Layout =
                $crate::lowlevel::typed::Layout::variant(&[$(
                    $crate::__canonical_case!(layout $($p)?)
                ),+]);
            type Static = $name;
            fn typecheck(
                ty: &$crate::lowlevel::types::Ty,
            ) -> ::std::result::Result<(), $crate::lowlevel::typed::TypeCheckError> {
                $crate::lowlevel::typed::check_variant::<Self>(ty, &[$(
                    ($wit, $crate::__canonical_case!(check $($p)?))
                ),+])
            }
        }
        impl $crate::lowlevel::typed::Lower for $name {
            #[allow(unused_assignments)]
            fn lower<S: $crate::lowlevel::typed::AsStoreMut>(
                &self,
                cx: &mut $crate::lowlevel::lift::Writer<'_, S>,
                out: &mut $crate::lowlevel::typed::FlatOut,
            ) -> ::std::result::Result<(), $crate::lowlevel::lift::AbiError> {
                let start = out.len();
                let mut d = 0u32;
                $( $crate::__canonical_case!(lower self cx out d $name $case $($p)?); d += 1; )+
                out.pad_to(start + <Self as $crate::lowlevel::typed::ComponentType>::LAYOUT.flat)
            }
            #[allow(unused_assignments)]
            fn store<S: $crate::lowlevel::typed::AsStoreMut>(
                &self,
                cx: &mut $crate::lowlevel::lift::Writer<'_, S>,
                buf: &mut [u8],
                off: usize,
            ) -> ::std::result::Result<(), $crate::lowlevel::lift::AbiError> {
                let l = <Self as $crate::lowlevel::typed::ComponentType>::LAYOUT;
                let at = off + l.payload_offset as usize;
                let mut d = 0u32;
                $( $crate::__canonical_case!(store self cx buf off at l d $name $case $($p)?); d += 1; )+
                Err($crate::lowlevel::lift::AbiError::FlatMismatch)
            }
        }
        impl $crate::lowlevel::typed::Lift for $name {
            #[allow(unused_mut, unused_variables)]
            fn lift(
                cx: &mut $crate::lowlevel::lift::Reader<'_>,
                src: &mut $crate::lowlevel::typed::FlatIn<'_>,
            ) -> ::std::result::Result<Self, $crate::lowlevel::lift::AbiError> {
                let value = src.i32()? as u32;
                let mut payload = src.payload(
                    <Self as $crate::lowlevel::typed::ComponentType>::LAYOUT
                        .flat
                        .saturating_sub(1),
                )?;
                let mut d = 0u32;
                $(
                    if value == d {
                        return Ok($crate::__canonical_case!(lift cx payload $name $case $($p)?));
                    }
                    d += 1;
                )+
                Err($crate::lowlevel::lift::AbiError::InvalidDiscriminant {
                    value,
                    cases: d as usize,
                })
            }
            #[allow(unused_variables)]
            fn load(
                cx: &mut $crate::lowlevel::lift::Reader<'_>,
                buf: &[u8],
                off: usize,
            ) -> ::std::result::Result<Self, $crate::lowlevel::lift::AbiError> {
                let l = <Self as $crate::lowlevel::typed::ComponentType>::LAYOUT;
                let value = $crate::lowlevel::typed::load_disc(buf, off, l.disc_size)?;
                let at = off + l.payload_offset as usize;
                let mut d = 0u32;
                $(
                    if value == d {
                        return Ok($crate::__canonical_case!(load cx buf at $name $case $($p)?));
                    }
                    d += 1;
                )+
                Err($crate::lowlevel::lift::AbiError::InvalidDiscriminant {
                    value,
                    cases: d as usize,
                })
            }
        }
    };
}

/// One case of [`canonical_variant!`] (with or without payload).
#[doc(hidden)]
#[macro_export]
macro_rules! __canonical_case {
    (layout) => {
        $crate::lowlevel::typed::Layout::EMPTY
    };
    (layout $p:ty) => {
        <$p as $crate::lowlevel::typed::ComponentType>::LAYOUT
    };
    (check) => {
        None
    };
    (check $p:ty) => {
        Some(
            <$p as $crate::lowlevel::typed::ComponentType>::typecheck
                as $crate::lowlevel::typed::Check,
        )
    };
    (lower $self:ident $cx:ident $out:ident $d:ident $name:ident $case:ident) => {
        if let $name::$case = $self {
            $out.push_i32($d as i32)?;
        }
    };
    (lower $self:ident $cx:ident $out:ident $d:ident $name:ident $case:ident $p:ty) => {
        if let $name::$case(v) = $self {
            $out.push_i32($d as i32)?;
            <$p as $crate::lowlevel::typed::Lower>::lower(v, $cx, $out)?;
        }
    };
    (store $self:ident $cx:ident $buf:ident $off:ident $at:ident $l:ident $d:ident $name:ident $case:ident) => {
        if let $name::$case = $self {
            return $crate::lowlevel::typed::store_disc($buf, $off, $d, $l.disc_size);
        }
    };
    (store $self:ident $cx:ident $buf:ident $off:ident $at:ident $l:ident $d:ident $name:ident $case:ident $p:ty) => {
        if let $name::$case(v) = $self {
            $crate::lowlevel::typed::store_disc($buf, $off, $d, $l.disc_size)?;
            return <$p as $crate::lowlevel::typed::Lower>::store(v, $cx, $buf, $at);
        }
    };
    (lift $cx:ident $src:ident $name:ident $case:ident) => {
        $name::$case
    };
    (lift $cx:ident $src:ident $name:ident $case:ident $p:ty) => {
        $name::$case(<$p as $crate::lowlevel::typed::Lift>::lift($cx, &mut $src)?)
    };
    (load $cx:ident $buf:ident $at:ident $name:ident $case:ident) => {
        $name::$case
    };
    (load $cx:ident $buf:ident $at:ident $name:ident $case:ident $p:ty) => {
        $name::$case(<$p as $crate::lowlevel::typed::Lift>::load($cx, $buf, $at)?)
    };
}

// ----- tark's records (crate::types) -----

mod tark {
    use crate::types::*;

    canonical_enum!(AuthStatus {
        NotAuthenticated = "not-authenticated",
        Authenticated = "authenticated",
        Expired = "expired",
    });
    canonical_enum!(ProviderAuthStatus {
        NotRequired = "not-required",
        Authenticated = "authenticated",
        NotAuthenticated = "not-authenticated",
        Expired = "expired",
    });
    canonical_record!(DeviceCode {
        device_code: String,
        user_code: String,
        verification_url: String,
        expires_in: u64,
        interval: u64,
    });
    canonical_variant!(PollResult {
        Pending = "pending",
        Success(String) = "success",
        Expired = "expired",
        Error(String) = "error",
    });
    // `provider` is the legacy ABI's models.dev key: not in the WIT.
    canonical_record!(ProviderInfo {
        id: String,
        display_name: String,
        description: String,
        requires_auth: bool,
    } skip { provider });
    canonical_record!(ModelInfo {
        id: String,
        display_name: String,
        context_window: u32,
        supports_streaming: bool,
        supports_tools: bool,
    });
    canonical_enum!(Role {
        System = "system",
        User = "user",
        Assistant = "assistant",
        Tool = "tool",
    });
    canonical_record!(Message {
        role: Role,
        content: String,
    });
    canonical_record!(Usage {
        input_tokens: u32,
        output_tokens: u32,
    });
    canonical_record!(ChatResponse {
        text: String,
        usage: Option<Usage>,
        finish_reason: Option<String>,
    });
    canonical_record!(StreamChunk {
        text: String,
        done: bool,
        usage: Option<Usage>,
    });
    canonical_record!(ChannelInfo {
        id: String,
        display_name: String,
        description: String,
        supports_streaming: bool,
        supports_edits: bool,
    });
    canonical_record!(InboundMessage {
        conversation_id: String,
        user_id: String,
        text: String,
        metadata_json: String,
    });
    canonical_record!(WebhookRequest {
        method: String,
        path: String,
        query: Option<String>,
        headers: Vec<(String, String)>,
        body: String,
    });
    canonical_record!(WebhookResponse {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
        messages: Vec<InboundMessage>,
    });
    canonical_record!(OutboundMessage {
        conversation_id: String,
        text: String,
        message_id: Option<String>,
        is_final: bool,
        metadata_json: String,
    });
    canonical_record!(SendResult {
        success: bool,
        message_id: Option<String>,
        error: Option<String>,
    });
    canonical_record!(ToolDef {
        name: String,
        description: String,
        parameters_schema: String,
    });
    canonical_record!(ToolResult {
        success: bool,
        output: String,
        error: Option<String>,
    });
    canonical_enum!(RiskLevel {
        ReadOnly = "read-only",
        Write = "write",
        Risky = "risky",
        Dangerous = "dangerous",
    });
    canonical_enum!(HookEventKind {
        SessionStart = "session-start",
        SessionEnd = "session-end",
        UserMessage = "user-message",
        AssistantMessage = "assistant-message",
        BeforeToolCall = "before-tool-call",
        AfterToolCall = "after-tool-call",
    });
    canonical_record!(HookEvent {
        kind: HookEventKind,
        session_id: String,
        payload_json: String,
    });
    canonical_variant!(HookDecision {
        Allow = "allow",
        Rewrite(String) = "rewrite",
        Block(String) = "block",
    });
}

// ----- typed calls -----

/// An export resolved against the contract and type-checked for parameters `P` (a tuple)
/// and result `R`, for one instance. Made by [`CanonicalInstance::typed_func`].
pub struct TypedExport<P, R> {
    core: ExportCore,
    _types: PhantomData<fn(P) -> R>,
}

impl<P, R> Clone for TypedExport<P, R> {
    fn clone(&self) -> Self {
        TypedExport {
            core: self.core.clone(),
            _types: PhantomData,
        }
    }
}

impl<P, R> std::fmt::Debug for TypedExport<P, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedExport")
            .field("iface", &self.core.iface)
            .field("func", &self.core.func)
            .finish()
    }
}

// ----- calling the core export -----

/// `i32` for each listed index (the parameter types of a [`FastCall`] shape).
macro_rules! i32_each {
    ($($i:literal),*) => { ($(i32_each!(@one $i)),*) };
    (@one $i:literal) => { i32 };
}

/// The [`FastCall`] shapes: for each arity, the variant with an `i32` result and the one
/// without, and the indices of its parameters.
macro_rules! fast_shapes {
    ($($r:ident, $u:ident: [$($i:literal),*];)*) => {
        /// The core export as a typed wasmer function, resolved once per instance: up to
        /// [`MAX_FLAT_PARAMS`] `i32` parameters (what every tark interface flattens to:
        /// strings, lists, records, options and variants are `i32` slots, and more than 16
        /// are spilled to one pointer) with no result or one `i32` (past one flat value the
        /// result comes back through a return pointer), plus the `(i64)` shapes of a
        /// `u64`/`s64` parameter (`chat-stream-poll`). A call clones no signature, builds
        /// no `Vec<Value>` and boxes no results. Other core signatures (mixed `i64`/float
        /// parameters, which only the conformance test world has) take wasmer's dynamic
        /// call: wasmer 7.4 types a function only by a static list of its core types.
        #[derive(Clone)]
        #[allow(unused_parens)]
        pub(super) enum FastCall {
            $(
                $r(TypedFunction<i32_each!($($i),*), i32>),
                $u(TypedFunction<i32_each!($($i),*), ()>),
            )*
            /// `(i64) -> i32`.
            L1R(TypedFunction<i64, i32>),
            /// `(i64) -> ()`.
            L1U(TypedFunction<i64, ()>),
        }

        impl FastCall {
            /// The typed form of `f`, if its type is one of the fast shapes.
            pub(super) fn new(store: &impl AsStoreRef, f: &wasmer::Function) -> Option<Self> {
                use wasmer::Type::{I32, I64};
                let ty = f.ty(store);
                if !Self::covers(&ty) {
                    return None;
                }
                let with_result = match ty.results() {
                    [] => false,
                    [I32] => true,
                    _ => return None,
                };
                if ty.params() == [I64] {
                    return Some(if with_result {
                        FastCall::L1R(f.typed(store).ok()?)
                    } else {
                        FastCall::L1U(f.typed(store).ok()?)
                    });
                }
                if ty.params().iter().any(|t| *t != I32) {
                    return None;
                }
                let n = ty.params().len();
                $(
                    if n == <[usize]>::len(&[$($i),*]) {
                        return Some(if with_result {
                            FastCall::$r(f.typed(store).ok()?)
                        } else {
                            FastCall::$u(f.typed(store).ok()?)
                        });
                    }
                )*
                None
            }

            /// Is `ty` one of the fast shapes?
            pub(super) fn covers(ty: &wasmer::FunctionType) -> bool {
                use wasmer::Type::{I32, I64};
                matches!(ty.results(), [] | [I32])
                    && (ty.params() == [I64]
                        || (ty.params().len() <= MAX_FAST_PARAMS
                            && ty.params().iter().all(|t| *t == I32)))
            }

            /// Call with the raw flat slots `a` (each the value's bits, zero-extended);
            /// the result, if the export has one.
            pub(super) fn call(
                &self,
                store: &mut impl AsStoreMut,
                a: &[u64],
            ) -> Result<Option<i32>, RuntimeError> {
                #[allow(unused)]
                let g = |i: usize| a.get(i).copied().unwrap_or(0) as u32 as i32;
                Ok(match self {
                    $(
                        FastCall::$r(f) => Some(f.call(store, $(g($i)),*)?),
                        FastCall::$u(f) => f.call(store, $(g($i)),*).map(|()| None)?,
                    )*
                    FastCall::L1R(f) => Some(f.call(store, a.first().copied().unwrap_or(0) as i64)?),
                    FastCall::L1U(f) => {
                        f.call(store, a.first().copied().unwrap_or(0) as i64).map(|()| None)?
                    }
                })
            }
        }
    };
}

fast_shapes! {
    R0, U0: [];
    R1, U1: [0];
    R2, U2: [0, 1];
    R3, U3: [0, 1, 2];
    R4, U4: [0, 1, 2, 3];
    R5, U5: [0, 1, 2, 3, 4];
    R6, U6: [0, 1, 2, 3, 4, 5];
    R7, U7: [0, 1, 2, 3, 4, 5, 6];
    R8, U8: [0, 1, 2, 3, 4, 5, 6, 7];
    R9, U9: [0, 1, 2, 3, 4, 5, 6, 7, 8];
    R10, U10: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    R11, U11: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
    R12, U12: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
    R13, U13: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
    R14, U14: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
    R15, U15: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
    R16, U16: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
}

/// Most flat parameters of a [`FastCall`] (the canonical ABI's limit before spilling).
pub(super) const MAX_FAST_PARAMS: usize = MAX_FLAT_PARAMS;

/// What a typed call needs, resolved once: no lookups, names or types per call.
#[derive(Clone)]
struct ExportCore {
    owner: OwnerId,
    iface: &'static str,
    func: &'static str,
    export: wasmer::Function,
    post: Option<wasmer::Function>,
    params: [Flat; MAX_FLAT_PARAMS],
    nparams: usize,
    /// The export as a typed function (None: dynamic call).
    fast: Option<FastCall>,
    /// The post-return as a typed `(i32) -> ()` (None: dynamic call, or none).
    fast_post: Option<TypedFunction<i32, ()>>,
    spill_params: bool,
    spill_results: bool,
    owns_memory: bool,
}

impl ExportCore {
    fn name(&self) -> String {
        export_name(self.iface, self.func)
    }
}

/// Exports already checked for a (parameters, result) type pair, per instance.
#[derive(Default)]
pub(super) struct TypedCache {
    entries: Vec<(TypeId, ExportCore)>,
}

impl TypedCache {
    fn find(&self, key: TypeId, iface: &str, func: &str) -> Option<usize> {
        self.entries
            .iter()
            .position(|(k, c)| *k == key && c.func == func && c.iface == iface)
    }
}

/// How a typed call failed, named only on the error path.
enum Fail {
    Abi(AbiError),
    Trap(RuntimeError),
    PostTrap(RuntimeError),
    MissingPost,
    Call(CallError),
}

impl From<AbiError> for Fail {
    fn from(e: AbiError) -> Self {
        Fail::Abi(e)
    }
}

impl Fail {
    fn into_call_error(self, name: &str) -> CallError {
        match self {
            Fail::Abi(e) => CallError::Abi {
                function: name.to_string(),
                message: e.to_string(),
            },
            Fail::Trap(e) => CallError::Trap {
                function: name.to_string(),
                message: {
                    let m = e.message();
                    if m.is_empty() {
                        e.to_string()
                    } else {
                        m
                    }
                },
            },
            Fail::PostTrap(e) => CallError::Trap {
                function: format!("cabi_post_{name}"),
                message: e.message(),
            },
            Fail::MissingPost => CallError::MissingPostReturn(name.to_string()),
            Fail::Call(e) => e,
        }
    }
}

impl CanonicalInstance {
    /// Resolve `iface#func` and check `P` (the parameters as a tuple, e.g.
    /// `(&[Message], &str)`) and `R` (the result; `()` for none) against its contract
    /// signature, once. A mismatch is [`CallError::TypeMismatch`].
    pub fn typed_func<P, R>(
        &mut self,
        iface: &str,
        func: &str,
    ) -> Result<TypedExport<P, R>, CallError>
    where
        P: Lower,
        R: Lift,
    {
        let index = self.prepare(iface, func)?;
        let prepared = self
            .prepared
            .get(index)
            .ok_or_else(|| CallError::MissingExport(export_name(iface, func)))?;
        let sig = prepared.sig;
        let contract = Contract::get();
        let iface: &'static str = contract
            .interfaces
            .get_key_value(iface)
            .map(|(k, _)| k.as_str())
            .ok_or_else(|| CallError::MissingExport(export_name(iface, func)))?;
        let refuse = |what: &str, e: TypeCheckError| CallError::TypeMismatch {
            function: export_name(iface, &sig.name),
            message: format!("{what}: {e}"),
        };
        let params_ty = sig.params_tuple();
        check_top::<P>(Some(&params_ty)).map_err(|e| {
            let wit = sig
                .params
                .iter()
                .map(|(n, t)| format!("{n}: {}", describe(t)))
                .collect::<Vec<_>>()
                .join(", ");
            refuse(&format!("parameters ({wit})"), e)
        })?;
        check_top::<R>(sig.result.as_ref()).map_err(|e| refuse("result", e))?;
        let mut params = [Flat::I32; MAX_FLAT_PARAMS];
        let flat = if prepared.spill_params.is_some() {
            vec![Flat::I32]
        } else {
            sig.flat_params()
        };
        for (slot, f) in params.iter_mut().zip(&flat) {
            *slot = *f;
        }
        Ok(TypedExport {
            core: ExportCore {
                owner: self.core.owner(),
                iface,
                func: sig.name.as_str(),
                export: prepared.export.clone(),
                post: prepared.post.clone(),
                params,
                nparams: flat.len().min(MAX_FLAT_PARAMS),
                fast: FastCall::new(&self.store, &prepared.export),
                fast_post: prepared
                    .post
                    .as_ref()
                    .and_then(|p| p.typed::<i32, ()>(&self.store).ok()),
                spill_params: prepared.spill_params.is_some(),
                spill_results: prepared.spill_results,
                owns_memory: sig.result.as_ref().is_some_and(Ty::owns_memory),
            },
            _types: PhantomData,
        })
    }

    /// Call a typed export of this instance: `params` lowered straight into the guest,
    /// the result lifted straight into `R`, then the post-return. The same CPU budget,
    /// deadline and error mapping as [`CanonicalInstance::call`].
    pub fn call_typed<P: Lower, R: Lift>(
        &mut self,
        export: &TypedExport<P, R>,
        params: P,
    ) -> Result<R, CallError> {
        self.run_typed(&export.core, &params)
    }

    /// [`CanonicalInstance::typed_func`] then [`CanonicalInstance::call_typed`], with the
    /// checked export kept per instance and (`P`, `R`) pair, so only the first call
    /// resolves and type-checks.
    pub fn call_func<P: Lower, R: Lift>(
        &mut self,
        iface: &str,
        func: &str,
        params: P,
    ) -> Result<R, CallError> {
        let key = TypeId::of::<(P::Static, R::Static)>();
        let index = match self.typed.find(key, iface, func) {
            Some(i) => i,
            None => {
                let core = self.typed_func::<P, R>(iface, func)?.core;
                self.typed.entries.push((key, core));
                self.typed.entries.len() - 1
            }
        };
        // Borrow the checked export out of the cache for the call (no clone: moving the
        // vector is three words; a call never re-enters `call_func`).
        let entries = std::mem::take(&mut self.typed.entries);
        let r = match entries.get(index) {
            Some((_, core)) => self.run_typed(core, &params),
            None => Err(CallError::MissingExport(export_name(iface, func))),
        };
        self.typed.entries = entries;
        r
    }

    fn run_typed<P: Lower, R: Lift>(
        &mut self,
        core: &ExportCore,
        params: &P,
    ) -> Result<R, CallError> {
        if core.owner != self.core.owner() {
            return Err(CallError::Missing(format!(
                "typed export {} was made for another instance",
                core.name()
            )));
        }
        let guard = self.core.begin_call(&mut self.store);
        match self.typed_inner::<P, R>(core, params) {
            Ok(v) => Ok(v),
            Err(fail) => {
                let name = core.name();
                let e = fail.into_call_error(&name);
                Err(self.core.limit_error(&mut self.store, &guard, &name, e))
            }
        }
    }

    fn typed_inner<P: Lower, R: Lift>(&mut self, core: &ExportCore, params: &P) -> Result<R, Fail> {
        // WASI system calls need wasmer-wasix's tokio context; modules without WASI do not.
        let _rt = self.core.enter_wasi().map_err(Fail::Call)?;
        let mut flat = FlatOut::default();
        {
            let mut w = Writer::new(&mut self.store, self.memory.clone(), self.realloc.clone());
            if core.spill_params {
                let mut buf = vec![0u8; P::LAYOUT.size as usize];
                params.store(&mut w, &mut buf, 0)?;
                let (ptr, _) = w.alloc_bytes(&buf, P::LAYOUT.align)?;
                flat.push_i32(ptr as i32)?;
            } else {
                params.lower(&mut w, &mut flat)?;
            }
        }
        let types = core
            .params
            .get(..core.nparams)
            .ok_or(AbiError::FlatMismatch)?;
        let fast_results: [Value; 1];
        let dynamic_results: Box<[Value]>;
        let results: &[Value] = match &core.fast {
            Some(fast) => {
                if flat.len != core.nparams {
                    return Err(Fail::Abi(AbiError::FlatMismatch));
                }
                let raw = flat.slots.get(..flat.len).ok_or(AbiError::FlatMismatch)?;
                match fast.call(&mut self.store, raw).map_err(Fail::Trap)? {
                    Some(r) => {
                        fast_results = [Value::I32(r)];
                        &fast_results
                    }
                    None => &[],
                }
            }
            None => {
                let args = flat.values(types)?;
                let args = args.get(..core.nparams).ok_or(AbiError::FlatMismatch)?;
                dynamic_results = core
                    .export
                    .call(&mut self.store, args)
                    .map_err(Fail::Trap)?;
                &dynamic_results
            }
        };
        let value = {
            let mut reader = Reader::new(
                &self.store,
                &self.memory,
                self.core.ctx().limits.guest_read_max,
            );
            if core.spill_results {
                let ptr = match results.first() {
                    Some(Value::I32(p)) => *p as u32,
                    _ => return Err(Fail::Abi(AbiError::FlatMismatch)),
                };
                let buf = reader.read(ptr, u64::from(R::LAYOUT.size), R::LAYOUT.align)?;
                R::load(&mut reader, &buf, 0)?
            } else {
                R::lift(&mut reader, &mut FlatIn::new(results))?
            }
        };
        // Let the guest free what it returned.
        match (&core.fast_post, results, &core.post) {
            (Some(pf), [Value::I32(r)], _) => {
                pf.call(&mut self.store, *r).map_err(Fail::PostTrap)?;
            }
            (_, _, Some(pf)) => {
                pf.call(&mut self.store, results).map_err(Fail::PostTrap)?;
            }
            (_, _, None) if core.owns_memory => {
                let name = core.name();
                log::warn!(
                    "[plugin:{}] {name} returns guest memory but exports no cabi_post_{name}",
                    self.core.ctx().plugin_id
                );
                return Err(Fail::MissingPost);
            }
            (_, _, None) => {}
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use wasmer::{imports, Instance, Memory, Module, Store};

    use super::*;
    use crate::abi::canonical::lift::Realloc;
    use crate::abi::canonical::types::Val;
    use crate::types::*;

    fn result_of(iface: &str, func: &str) -> Option<&'static Ty> {
        Contract::get()
            .func(iface, func)
            .unwrap_or_else(|| panic!("{iface}.{func}"))
            .result
            .as_ref()
    }

    fn params_of(iface: &str, func: &str) -> Ty {
        Contract::get()
            .func(iface, func)
            .unwrap_or_else(|| panic!("{iface}.{func}"))
            .params_tuple()
    }

    #[test]
    fn every_tark_type_matches_its_contract_type_and_layout() {
        let r = |i, f| result_of(i, f);
        check_top::<AuthStatus>(r("auth-plugin", "status")).expect("auth-status");
        check_top::<Result<DeviceCode, String>>(r("auth-plugin", "start-device-flow"))
            .expect("device-code");
        check_top::<PollResult>(r("auth-plugin", "poll")).expect("poll-result");
        check_top::<Result<(), String>>(r("auth-plugin", "logout")).expect("logout");
        check_top::<ProviderInfo>(r("provider-plugin", "info")).expect("provider-info");
        check_top::<Vec<ModelInfo>>(r("provider-plugin", "models")).expect("models");
        check_top::<ProviderAuthStatus>(r("provider-plugin", "auth-status")).expect("status");
        check_top::<Result<ChatResponse, String>>(r("provider-plugin", "chat")).expect("chat");
        check_top::<(&[Message], &str)>(Some(&params_of("provider-plugin", "chat")))
            .expect("chat params");
        check_top::<(Vec<Message>, String)>(Some(&params_of("provider-plugin", "chat")))
            .expect("owned chat params");
        check_top::<Result<u64, String>>(r("provider-plugin", "chat-stream-start"))
            .expect("stream start");
        check_top::<Result<StreamChunk, String>>(r("provider-plugin", "chat-stream-poll"))
            .expect("stream chunk");
        check_top::<ChannelAuthStatus>(r("channel-plugin", "auth-status")).expect("channel");
        check_top::<ChannelInfo>(r("channel-plugin", "info")).expect("channel-info");
        check_top::<(WebhookRequest,)>(Some(&params_of("channel-plugin", "handle-webhook")))
            .expect("webhook-request");
        check_top::<Result<WebhookResponse, String>>(r("channel-plugin", "handle-webhook"))
            .expect("webhook-response");
        check_top::<Result<Vec<InboundMessage>, String>>(r("channel-plugin", "poll"))
            .expect("inbound");
        check_top::<(&OutboundMessage,)>(Some(&params_of("channel-plugin", "send")))
            .expect("outbound");
        check_top::<Result<SendResult, String>>(r("channel-plugin", "send")).expect("send");
        check_top::<Vec<ToolDef>>(r("tool-plugin", "get-tools")).expect("tool-def");
        check_top::<RiskLevel>(r("tool-plugin", "get-risk-level")).expect("risk");
        check_top::<ToolResult>(r("tool-plugin", "execute")).expect("tool-result");
        check_top::<Vec<HookEventKind>>(r("hook-plugin", "subscriptions")).expect("kinds");
        check_top::<(HookEvent,)>(Some(&params_of("hook-plugin", "on-event"))).expect("event");
        check_top::<HookDecision>(r("hook-plugin", "on-event")).expect("decision");
        check_top::<()>(r("log", "info")).expect("no result");
        // The many-params signature (15 parameters, spilled).
        check_top::<(
            u8,
            u16,
            u32,
            u64,
            i8,
            i16,
            i32,
            i64,
            bool,
            char,
            &str,
            &[u8],
            u32,
            u32,
            &str,
        )>(Some(&params_of("conformance", "many-params")))
        .expect("many params");
        check_top::<Result<Result<String, u32>, String>>(r("conformance", "echo-result"))
            .expect("nested result");
        check_top::<Option<Option<String>>>(r("conformance", "echo-option")).expect("options");
        check_top::<(String, u64, i8, bool)>(r("conformance", "echo-tuple")).expect("tuple");
    }

    #[test]
    fn mismatches_name_the_place_and_both_types() {
        let r = |i, f| result_of(i, f);
        let e = check_top::<Vec<ToolDef>>(r("provider-plugin", "models")).expect_err("models");
        assert!(
            e.to_string().starts_with("list element: Rust record `"),
            "{e}"
        );
        assert!(e.to_string().contains("has 3 fields"), "{e}");
        let e =
            check_top::<Result<String, String>>(r("provider-plugin", "chat")).expect_err("chat");
        assert_eq!(
            e.to_string(),
            "result ok: Rust type `alloc::string::String` does not match WIT type \
             `record { text, usage, finish-reason }`"
        );
        let e = check_top::<Result<u32, String>>(r("auth-plugin", "logout")).expect_err("_");
        assert!(
            e.to_string().contains("has a value where the WIT has none"),
            "{e}"
        );
        let e = check_top::<String>(r("log", "info")).expect_err("no result");
        assert!(e.to_string().contains("use `()`"), "{e}");
        let e = check_top::<ProviderAuthStatus>(r("auth-plugin", "status")).expect_err("enum");
        assert!(e.to_string().contains("not-required"), "{e}");
        let e = check_top::<(u32,)>(Some(&params_of("tool-plugin", "execute"))).expect_err("n");
        assert!(e.to_string().contains("tuple<string, string>"), "{e}");
        let e = check_top::<u32>(r("conformance", "sum-u32s")).expect_err("u32 for u64");
        assert_eq!(
            e.to_string(),
            "Rust type `u32` does not match WIT type `u64`"
        );
    }

    /// A record whose Rust field order differs from the WIT's.
    #[derive(Debug, Clone, PartialEq)]
    struct Swapped {
        b: u32,
        a: u32,
    }
    canonical_record!(Swapped { b: u32, a: u32 });

    #[test]
    fn record_field_names_and_order_are_checked() {
        let wit = Ty::Record(vec![("a".into(), Ty::U32), ("b".into(), Ty::U32)]);
        let e = Swapped::typecheck(&wit).expect_err("order");
        assert!(
            e.to_string().contains("field 0 is `b`, WIT field 0 is `a`"),
            "{e}"
        );
        let ok = Ty::Record(vec![("b".into(), Ty::U32), ("a".into(), Ty::U32)]);
        Swapped::typecheck(&ok).expect("same order");
        let deeper = Ty::Record(vec![("b".into(), Ty::U32), ("a".into(), Ty::String)]);
        let e = Swapped::typecheck(&deeper).expect_err("field type");
        assert_eq!(
            e.to_string(),
            "field `a`: Rust type `u32` does not match WIT type `string`"
        );
    }

    /// A module with memory and a bump `cabi_realloc` (no imports).
    fn guest() -> (Store, Memory, Option<Realloc>) {
        let wat = r#"(module (memory (export "memory") 2)
          (global $heap (mut i32) (i32.const 1024))
          (func (export "cabi_realloc") (param i32 i32) (param $align i32) (param $n i32) (result i32)
            (local $p i32)
            (local.set $p (i32.and (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
                                   (i32.sub (i32.const 0) (local.get $align))))
            (global.set $heap (i32.add (local.get $p) (local.get $n)))
            (local.get $p)))"#;
        let engine =
            crate::engine::WasmEngine::shared(crate::engine::Compiler::default()).expect("engine");
        let mut store = engine.new_store();
        let module = Module::new(&store, wat::parse_str(wat).expect("wat")).expect("module");
        let instance = Instance::new(&mut store, &module, &imports! {}).expect("instance");
        let memory = instance
            .exports
            .get_memory("memory")
            .expect("memory")
            .clone();
        let realloc = instance
            .exports
            .get_typed_function::<(i32, i32, i32, i32), i32>(&store, "cabi_realloc")
            .ok();
        (store, memory, realloc)
    }

    /// Store `v` in guest memory and load it back; lower it flat and lift it back; and
    /// check the typed bytes and flat values equal the dynamic path's for `val`.
    fn round_trip<T: Lower + Lift + PartialEq + std::fmt::Debug>(ty: &Ty, v: &T, val: &Val) {
        let (mut store, memory, realloc) = guest();
        T::typecheck(ty).expect("typecheck");
        assert_eq!(
            (T::LAYOUT.size, T::LAYOUT.align, T::LAYOUT.flat),
            (ty.size(), ty.align(), ty.flat().len())
        );
        // Memory.
        let ptr = {
            let mut w = Writer::new(&mut store, memory.clone(), realloc.clone());
            let mut buf = vec![0u8; T::LAYOUT.size as usize];
            v.store(&mut w, &mut buf, 0).expect("store");
            w.alloc_bytes(&buf, T::LAYOUT.align).expect("alloc").0
        };
        let dynamic_ptr = {
            let mut w = Writer::new(&mut store, memory.clone(), realloc.clone());
            w.store_new(ty, val).expect("dynamic store")
        };
        let mut r = Reader::new(&store, &memory, 1 << 20);
        let buf = r
            .read(ptr, u64::from(T::LAYOUT.size), T::LAYOUT.align)
            .expect("read");
        assert_eq!(&T::load(&mut r, &buf, 0).expect("load"), v);
        assert_eq!(&r.load(ty, ptr).expect("dynamic load of typed"), val);
        let dbuf = r
            .read(dynamic_ptr, u64::from(T::LAYOUT.size), T::LAYOUT.align)
            .expect("read");
        assert_eq!(
            &T::load(&mut r, &dbuf, 0).expect("typed load of dynamic"),
            v
        );
        // Flat (when it fits).
        if T::LAYOUT.flat <= MAX_FLAT_PARAMS {
            let mut out = FlatOut::default();
            let mut dyn_out = Vec::new();
            {
                let mut w = Writer::new(&mut store, memory.clone(), realloc.clone());
                v.lower(&mut w, &mut out).expect("lower");
                w.lower_flat(ty, val, &mut dyn_out).expect("dynamic lower");
            }
            let values = out.values(&ty.flat()).expect("values");
            let values = &values[..out.len()];
            assert_eq!(values.len(), dyn_out.len());
            let mut r = Reader::new(&store, &memory, 1 << 20);
            let back = T::lift(&mut r, &mut FlatIn::new(values)).expect("lift");
            assert_eq!(&back, v);
            let dyn_back = T::lift(&mut r, &mut FlatIn::new(&dyn_out)).expect("lift dynamic");
            assert_eq!(&dyn_back, v);
            let mut it = crate::abi::canonical::lift::FlatIter::new(values);
            assert_eq!(&r.lift_flat(ty, &mut it).expect("dynamic lift"), val);
        }
    }

    #[test]
    fn values_round_trip_and_agree_with_the_dynamic_path() {
        let chat = result_of("provider-plugin", "chat").expect("chat").clone();
        let resp = ChatResponse {
            text: "héllo ✓".into(),
            usage: Some(Usage {
                input_tokens: 3,
                output_tokens: u32::MAX,
            }),
            finish_reason: None,
        };
        let val = Val::ok(Some(Val::Record(vec![
            Val::string("héllo ✓"),
            Val::some(Val::Record(vec![Val::U32(3), Val::U32(u32::MAX)])),
            Val::Option(None),
        ])));
        round_trip::<Result<ChatResponse, String>>(&chat, &Ok(resp), &val);
        round_trip::<Result<ChatResponse, String>>(
            &chat,
            &Err("bad".into()),
            &Val::err(Some(Val::string("bad"))),
        );
        let r = result_of("conformance", "echo-result").expect("r").clone();
        for (v, val) in [
            (
                Ok(Ok("x".to_string())),
                Val::ok(Some(Val::ok(Some(Val::string("x"))))),
            ),
            (Ok(Err(7u32)), Val::ok(Some(Val::err(Some(Val::U32(7)))))),
            (Err("e".to_string()), Val::err(Some(Val::string("e")))),
        ] {
            round_trip::<Result<Result<String, u32>, String>>(&r, &v, &val);
        }
        let r = result_of("conformance", "echo-tuple").expect("t").clone();
        round_trip::<(String, u64, i8, bool)>(
            &r,
            &("t".into(), u64::MAX, -5, true),
            &Val::Tuple(vec![
                Val::string("t"),
                Val::U64(u64::MAX),
                Val::S8(-5),
                Val::Bool(true),
            ]),
        );
        let joined = Ty::Result(Some(Box::new(Ty::F32)), Some(Box::new(Ty::U64)));
        round_trip::<Result<f32, u64>>(&joined, &Ok(1.5), &Val::ok(Some(Val::F32(1.5))));
        round_trip::<Result<f32, u64>>(
            &joined,
            &Err(u64::MAX),
            &Val::err(Some(Val::U64(u64::MAX))),
        );
        let poll = result_of("auth-plugin", "poll").expect("poll").clone();
        round_trip(
            &poll,
            &PollResult::Error("no".into()),
            &Val::Variant(3, Some(Box::new(Val::string("no")))),
        );
        round_trip(&poll, &PollResult::Expired, &Val::Variant(2, None));
        let subs = result_of("hook-plugin", "subscriptions")
            .expect("subs")
            .clone();
        round_trip(
            &subs,
            &vec![HookEventKind::AfterToolCall, HookEventKind::SessionStart],
            &Val::List(vec![Val::Enum(5), Val::Enum(0)]),
        );
        let bytes = Ty::List(Box::new(Ty::U8));
        round_trip(&bytes, &vec![0u8, 255, 7], &Val::Bytes(vec![0, 255, 7]));
        let webhook = params_of("channel-plugin", "handle-webhook");
        let req = WebhookRequest {
            method: "POST".into(),
            path: "/h".into(),
            query: Some("a=1".into()),
            headers: vec![("k".into(), "v".into())],
            body: String::new(),
        };
        round_trip(
            &webhook,
            &(req,),
            &Val::Tuple(vec![Val::Record(vec![
                Val::string("POST"),
                Val::string("/h"),
                Val::some(Val::string("a=1")),
                Val::List(vec![Val::Tuple(vec![Val::string("k"), Val::string("v")])]),
                Val::string(""),
            ])]),
        );
        round_trip(&Ty::Char, &'😀', &Val::Char('😀'));
        round_trip(&Ty::F64, &-0.25f64, &Val::F64(-0.25));
        round_trip(&Ty::S16, &i16::MIN, &Val::S16(i16::MIN));
    }

    #[test]
    fn guest_values_are_checked_like_the_dynamic_path() {
        let (mut store, memory, realloc) = guest();
        {
            let mut w = Writer::new(&mut store, memory.clone(), realloc.clone());
            // @64: a bad enum byte, a bad char, invalid UTF-8, a (ptr, len) past memory.
            w.write(64, &[9, 0, 0, 0]).expect("w");
            w.write(68, &0xd800u32.to_le_bytes()).expect("w");
            w.write(72, &[0xff, 0xfe]).expect("w");
            w.write(80, &pair_bytes(72, 2)).expect("w");
            w.write(88, &pair_bytes(131_000, 100)).expect("w");
        }
        let mut r = Reader::new(&store, &memory, 1 << 20);
        let buf = r.read(64, 40, 4).expect("read");
        assert_eq!(
            Role::load(&mut r, &buf, 0),
            Err(AbiError::InvalidDiscriminant { value: 9, cases: 4 })
        );
        assert_eq!(
            char::load(&mut r, &buf, 4),
            Err(AbiError::InvalidChar(0xd800))
        );
        assert_eq!(
            String::load(&mut r, &buf, 16),
            Err(AbiError::Memory(
                crate::abi::GuestMemoryError::InvalidUtf8 { ptr: 72, len: 2 }
            ))
        );
        assert_eq!(
            Vec::<u32>::load(&mut r, &buf, 24),
            Err(AbiError::Memory(
                crate::abi::GuestMemoryError::OutOfBounds {
                    ptr: 131_000,
                    len: 400,
                    size: 131_072
                }
            ))
        );
        assert_eq!(
            u32::load_list(&mut r, 2, 1),
            Err(AbiError::Memory(crate::abi::GuestMemoryError::Misaligned {
                ptr: 2,
                align: 4
            }))
        );
        // Flat: a bad option discriminant; a bad char.
        let vals = [Value::I32(2), Value::I32(0), Value::I32(0)];
        assert_eq!(
            Option::<String>::lift(&mut r, &mut FlatIn::new(&vals)),
            Err(AbiError::InvalidDiscriminant { value: 2, cases: 2 })
        );
        assert_eq!(
            char::lift(&mut r, &mut FlatIn::new(&[Value::I32(-1)])),
            Err(AbiError::InvalidChar(u32::MAX))
        );
        assert_eq!(
            HookDecision::lift(
                &mut r,
                &mut FlatIn::new(&[Value::I32(3), Value::I32(0), Value::I32(0)])
            ),
            Err(AbiError::InvalidDiscriminant { value: 3, cases: 3 })
        );
        // Host size counts: 1000 ToolDefs of empty strings are 24 KB of guest data but
        // 72 KB of host values.
        let mut r = Reader::new(&store, &memory, 50_000);
        assert_eq!(
            ToolDef::load_list(&mut r, 1024, 1000),
            Err(AbiError::TooLarge { limit: 50_000 })
        );
    }

    #[test]
    fn every_tark_export_has_a_fast_call_shape() {
        // The typed plugin handles never take wasmer's dynamic call: every export of a
        // tark world flattens to a shape `FastCall` has.
        let contract = Contract::get();
        let mut checked = 0;
        for world in contract.worlds.values() {
            for iface in &world.exports {
                if iface == "conformance" {
                    continue;
                }
                let funcs = contract.interfaces.get(iface).expect("exported interface");
                for sig in funcs.values() {
                    let ty = sig.export_signature();
                    assert!(
                        FastCall::covers(&ty),
                        "{iface}#{}: core type {ty} has no fast shape",
                        sig.name
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 30, "only {checked} exports checked");
    }

    #[test]
    fn layouts_are_the_canonical_abis() {
        assert_eq!(
            <Option<String>>::LAYOUT,
            Layout {
                size: 12,
                align: 4,
                flat: 3,
                disc_size: 1,
                payload_offset: 4
            }
        );
        assert_eq!(<Result<u64, String>>::LAYOUT.size, 16);
        assert_eq!(<Result<u64, String>>::LAYOUT.align, 8);
        assert_eq!(<()>::LAYOUT, Layout::EMPTY);
        assert_eq!(<Result<(), String>>::LAYOUT.flat, 3);
        assert_eq!(AuthStatus::LAYOUT.size, 1);
    }
}
