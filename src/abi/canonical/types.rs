//! Canonical-ABI types and values, described once from the WIT contract: [`Ty`] is a
//! resolved WIT type with its memory layout and flattening; [`Val`] a dynamic value of
//! such a type; and the JSON mapping that typed handles and `tark-wasmer call` use.

use serde_json::{Map, Value};

/// The core wasm types values flatten to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flat {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

impl Flat {
    /// The wasmer type.
    pub fn wasm(self) -> wasmer::Type {
        match self {
            Flat::I32 => wasmer::Type::I32,
            Flat::I64 => wasmer::Type::I64,
            Flat::F32 => wasmer::Type::F32,
            Flat::F64 => wasmer::Type::F64,
        }
    }

    /// The canonical ABI's join of two flat types (variant payloads share slots).
    pub fn join(a: Flat, b: Flat) -> Flat {
        match (a, b) {
            (a, b) if a == b => a,
            (Flat::I32, Flat::F32) | (Flat::F32, Flat::I32) => Flat::I32,
            _ => Flat::I64,
        }
    }
}

/// A resolved WIT type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    /// `bool`
    Bool,
    /// `u8`
    U8,
    /// `s8`
    S8,
    /// `u16`
    U16,
    /// `s16`
    S16,
    /// `u32`
    U32,
    /// `s32`
    S32,
    /// `u64`
    U64,
    /// `s64`
    S64,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// `char`
    Char,
    /// `string`
    String,
    /// `list<T>`
    List(Box<Ty>),
    /// `record { name: T, ... }` (kebab-case field names).
    Record(Vec<(String, Ty)>),
    /// `tuple<T, ...>`
    Tuple(Vec<Ty>),
    /// `variant { case(T)?, ... }`
    Variant(Vec<(String, Option<Ty>)>),
    /// `enum { case, ... }`
    Enum(Vec<String>),
    /// `option<T>`
    Option(Box<Ty>),
    /// `result<T?, E?>`
    Result(Option<Box<Ty>>, Option<Box<Ty>>),
}

fn align_to(x: u32, align: u32) -> u32 {
    x.div_ceil(align) * align
}

/// Byte size of a discriminant for `n` cases.
fn disc_size(n: usize) -> u32 {
    if n <= 256 {
        1
    } else if n <= 65536 {
        2
    } else {
        4
    }
}

impl Ty {
    /// The payload types of a variant-like type (variant, enum, option, result).
    pub fn cases(&self) -> Option<Vec<Option<&Ty>>> {
        match self {
            Ty::Variant(cases) => Some(cases.iter().map(|(_, t)| t.as_ref()).collect()),
            Ty::Enum(names) => Some(names.iter().map(|_| None).collect()),
            Ty::Option(t) => Some(vec![None, Some(t)]),
            Ty::Result(ok, err) => Some(vec![ok.as_deref(), err.as_deref()]),
            _ => None,
        }
    }

    /// Alignment in linear memory.
    pub fn align(&self) -> u32 {
        match self {
            Ty::Bool | Ty::U8 | Ty::S8 => 1,
            Ty::U16 | Ty::S16 => 2,
            Ty::U32 | Ty::S32 | Ty::F32 | Ty::Char => 4,
            Ty::U64 | Ty::S64 | Ty::F64 => 8,
            Ty::String | Ty::List(_) => 4,
            Ty::Record(fields) => fields.iter().map(|(_, t)| t.align()).max().unwrap_or(1),
            Ty::Tuple(ts) => ts.iter().map(Ty::align).max().unwrap_or(1),
            _ => {
                let cases = self.cases().unwrap_or_default();
                let d = disc_size(cases.len());
                cases.iter().flatten().map(|t| t.align()).fold(d, u32::max)
            }
        }
    }

    /// Size in linear memory.
    pub fn size(&self) -> u32 {
        match self {
            Ty::Bool | Ty::U8 | Ty::S8 => 1,
            Ty::U16 | Ty::S16 => 2,
            Ty::U32 | Ty::S32 | Ty::F32 | Ty::Char => 4,
            Ty::U64 | Ty::S64 | Ty::F64 => 8,
            Ty::String | Ty::List(_) => 8,
            Ty::Record(_) | Ty::Tuple(_) => {
                let mut s = 0;
                for t in self.fields() {
                    s = align_to(s, t.align()) + t.size();
                }
                align_to(s, self.align())
            }
            _ => {
                let cases = self.cases().unwrap_or_default();
                let d = disc_size(cases.len());
                let off = self.payload_offset();
                let max = cases.iter().flatten().map(|t| t.size()).max().unwrap_or(0);
                let _ = d;
                align_to(off + max, self.align())
            }
        }
    }

    /// Offset of a variant's payload (after the discriminant).
    pub fn payload_offset(&self) -> u32 {
        let cases = self.cases().unwrap_or_default();
        let d = disc_size(cases.len());
        let max_align = cases.iter().flatten().map(|t| t.align()).max().unwrap_or(1);
        align_to(d, max_align)
    }

    /// Discriminant size of a variant-like type.
    pub fn disc_size(&self) -> u32 {
        disc_size(self.cases().map(|c| c.len()).unwrap_or(0))
    }

    /// Field types of a record or tuple, in order.
    pub fn fields(&self) -> Vec<&Ty> {
        match self {
            Ty::Record(fields) => fields.iter().map(|(_, t)| t).collect(),
            Ty::Tuple(ts) => ts.iter().collect(),
            _ => Vec::new(),
        }
    }

    /// The flat (core wasm) representation.
    pub fn flatten(&self, out: &mut Vec<Flat>) {
        match self {
            Ty::Bool | Ty::U8 | Ty::S8 | Ty::U16 | Ty::S16 | Ty::U32 | Ty::S32 | Ty::Char => {
                out.push(Flat::I32)
            }
            Ty::U64 | Ty::S64 => out.push(Flat::I64),
            Ty::F32 => out.push(Flat::F32),
            Ty::F64 => out.push(Flat::F64),
            Ty::String | Ty::List(_) => {
                out.push(Flat::I32);
                out.push(Flat::I32);
            }
            Ty::Record(_) | Ty::Tuple(_) => {
                for t in self.fields() {
                    t.flatten(out);
                }
            }
            _ => {
                let cases = self.cases().unwrap_or_default();
                let mut payload: Vec<Flat> = Vec::new();
                for t in cases.iter().flatten() {
                    let mut f = Vec::new();
                    t.flatten(&mut f);
                    for (i, ft) in f.into_iter().enumerate() {
                        match payload.get_mut(i) {
                            Some(p) => *p = Flat::join(*p, ft),
                            None => payload.push(ft),
                        }
                    }
                }
                out.push(Flat::I32);
                out.extend(payload);
            }
        }
    }

    /// The flat types as a vector.
    pub fn flat(&self) -> Vec<Flat> {
        let mut v = Vec::new();
        self.flatten(&mut v);
        v
    }

    /// Does a value of this type own guest memory (strings or lists anywhere inside)?
    pub fn owns_memory(&self) -> bool {
        match self {
            Ty::String | Ty::List(_) => true,
            Ty::Record(_) | Ty::Tuple(_) => self.fields().iter().any(|t| t.owns_memory()),
            _ => self
                .cases()
                .unwrap_or_default()
                .iter()
                .flatten()
                .any(|t| t.owns_memory()),
        }
    }
}

/// A value of a [`Ty`].
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    /// `bool`
    Bool(bool),
    /// `u8`
    U8(u8),
    /// `s8`
    S8(i8),
    /// `u16`
    U16(u16),
    /// `s16`
    S16(i16),
    /// `u32`
    U32(u32),
    /// `s32`
    S32(i32),
    /// `u64`
    U64(u64),
    /// `s64`
    S64(i64),
    /// `f32`
    F32(f32),
    /// `f64`
    F64(f64),
    /// `char`
    Char(char),
    /// `string`
    String(String),
    /// `list<u8>` (kept as bytes: large byte lists are common and cheap this way).
    Bytes(Vec<u8>),
    /// `list<T>`
    List(Vec<Val>),
    /// `record` fields in order.
    Record(Vec<Val>),
    /// `tuple` items in order.
    Tuple(Vec<Val>),
    /// `variant`: case index and payload.
    Variant(u32, Option<Box<Val>>),
    /// `enum`: case index.
    Enum(u32),
    /// `option`
    Option(Option<Box<Val>>),
    /// `result`: ok or error, each with an optional payload.
    Result(Result<Option<Box<Val>>, Option<Box<Val>>>),
}

impl Val {
    /// A string value.
    pub fn string(s: impl Into<String>) -> Val {
        Val::String(s.into())
    }

    /// `option::some(v)`
    pub fn some(v: Val) -> Val {
        Val::Option(Some(Box::new(v)))
    }

    /// `result::ok(v)`
    pub fn ok(v: Option<Val>) -> Val {
        Val::Result(Ok(v.map(Box::new)))
    }

    /// `result::err(v)`
    pub fn err(v: Option<Val>) -> Val {
        Val::Result(Err(v.map(Box::new)))
    }
}

/// A record value of type `ty` from its fields given by WIT name, in any order, so that
/// code building records does not depend on the field order of the WIT (which the
/// canonical ABI's layout does). Every field of `ty` must be given exactly once.
pub fn record_by_name(ty: &Ty, mut fields: Vec<(&str, Val)>) -> Result<Val, TypeMismatch> {
    let Ty::Record(defs) = ty else {
        return Err(mismatch(ty, "not a record type"));
    };
    let mut vals = Vec::with_capacity(defs.len());
    for (name, _) in defs {
        let pos = fields
            .iter()
            .position(|(n, _)| n == name)
            .ok_or_else(|| mismatch(ty, format!("field {name} not given")))?;
        vals.push(fields.swap_remove(pos).1);
    }
    if let Some((name, _)) = fields.first() {
        return Err(mismatch(ty, format!("no field {name}")));
    }
    Ok(Val::Record(vals))
}

/// A value did not match its type: where (`messages[2].role`, empty at the top), what
/// was wrong, and the type in WIT syntax (abbreviated), so a plugin author reads their
/// own language rather than the host's Rust.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{detail}; expected {ty}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct TypeMismatch {
    /// The type in WIT syntax, abbreviated.
    pub ty: String,
    /// What was wrong.
    pub detail: String,
    /// Path of the bad value below the top (`[2].role`), empty at the top.
    pub path: String,
}

impl TypeMismatch {
    /// The same mismatch with its path below `root` (a parameter name).
    pub fn under(mut self, root: &str) -> Self {
        self.path = format!("{root}{}", self.path);
        self
    }
}

fn mismatch(ty: &Ty, detail: impl Into<String>) -> TypeMismatch {
    TypeMismatch {
        ty: ty.to_string(),
        detail: detail.into(),
        path: String::new(),
    }
}

/// Prefix the path of a mismatch found inside an element or field.
fn inside(e: TypeMismatch, step: String) -> TypeMismatch {
    TypeMismatch {
        path: format!("{step}{}", e.path),
        ..e
    }
}

/// A JSON value as a short text for messages (long values cut on a char boundary).
fn short(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 40 {
        return text;
    }
    let cut: String = text.chars().take(37).collect();
    format!("{cut}...")
}

/// How many fields or cases of a record, variant or enum are spelled out before `...`.
const SHOWN_ITEMS: usize = 4;

impl Ty {
    fn write_wit(&self, out: &mut String, depth: usize) {
        use std::fmt::Write;
        let name = match self {
            Ty::Bool => "bool",
            Ty::U8 => "u8",
            Ty::S8 => "s8",
            Ty::U16 => "u16",
            Ty::S16 => "s16",
            Ty::U32 => "u32",
            Ty::S32 => "s32",
            Ty::U64 => "u64",
            Ty::S64 => "s64",
            Ty::F32 => "f32",
            Ty::F64 => "f64",
            Ty::Char => "char",
            Ty::String => "string",
            _ => "",
        };
        if !name.is_empty() {
            out.push_str(name);
            return;
        }
        let items = |out: &mut String, kw: &str, parts: Vec<String>| {
            if depth > 1 {
                let _ = write!(out, "{kw} {{ ... }}");
                return;
            }
            let n = parts.len();
            let mut shown: Vec<String> = parts.into_iter().take(SHOWN_ITEMS).collect();
            if n > SHOWN_ITEMS {
                shown.push("...".into());
            }
            let _ = write!(out, "{kw} {{ {} }}", shown.join(", "));
        };
        let sub = |t: &Ty| {
            let mut s = String::new();
            t.write_wit(&mut s, depth + 1);
            s
        };
        match self {
            Ty::List(t) => {
                let _ = write!(out, "list<{}>", sub(t));
            }
            Ty::Option(t) => {
                let _ = write!(out, "option<{}>", sub(t));
            }
            Ty::Tuple(ts) => {
                let parts: Vec<String> = ts.iter().map(sub).collect();
                let _ = write!(out, "tuple<{}>", parts.join(", "));
            }
            Ty::Result(ok, err) => {
                let part =
                    |t: &Option<Box<Ty>>| t.as_deref().map(sub).unwrap_or_else(|| "_".into());
                match (ok, err) {
                    (None, None) => out.push_str("result"),
                    (ok, None) => {
                        let _ = write!(out, "result<{}>", part(ok));
                    }
                    (ok, err) => {
                        let _ = write!(out, "result<{}, {}>", part(ok), part(err));
                    }
                }
            }
            Ty::Record(fields) => items(
                out,
                "record",
                fields
                    .iter()
                    .map(|(n, t)| format!("{n}: {}", sub(t)))
                    .collect(),
            ),
            Ty::Enum(cases) => items(out, "enum", cases.clone()),
            Ty::Variant(cases) => items(
                out,
                "variant",
                cases
                    .iter()
                    .map(|(n, t)| match t {
                        Some(t) => format!("{n}({})", sub(t)),
                        None => n.clone(),
                    })
                    .collect(),
            ),
            _ => {}
        }
    }
}

/// The type in WIT syntax (`list<u32>`, `record { conversation-id: string, ... }`), with
/// long records, variants and enums and deep nesting abbreviated by `...`.
impl std::fmt::Display for Ty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write_wit(&mut s, 0);
        f.write_str(&s)
    }
}

/// snake_case key of a kebab-case WIT name.
pub fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// Is `ty` a type whose JSON form may be `null` (so an enclosing option needs a wrapper)?
fn nullable(ty: &Ty) -> bool {
    matches!(ty, Ty::Option(_))
}

/// The JSON form of `val` (records: snake_case objects; enums: kebab-case names; options:
/// null or the value, `{"some": v}` when the payload is itself an option; results:
/// `{"ok": v}` / `{"err": e}`; variants: `"case"` or `{"case": payload}`).
pub fn to_json(ty: &Ty, val: &Val) -> Result<Value, TypeMismatch> {
    Ok(match (ty, val) {
        (Ty::Bool, Val::Bool(b)) => Value::Bool(*b),
        (Ty::U8, Val::U8(x)) => Value::from(*x),
        (Ty::S8, Val::S8(x)) => Value::from(*x),
        (Ty::U16, Val::U16(x)) => Value::from(*x),
        (Ty::S16, Val::S16(x)) => Value::from(*x),
        (Ty::U32, Val::U32(x)) => Value::from(*x),
        (Ty::S32, Val::S32(x)) => Value::from(*x),
        (Ty::U64, Val::U64(x)) => Value::from(*x),
        (Ty::S64, Val::S64(x)) => Value::from(*x),
        (Ty::F32, Val::F32(x)) => Value::from(*x),
        (Ty::F64, Val::F64(x)) => Value::from(*x),
        (Ty::Char, Val::Char(c)) => Value::String(c.to_string()),
        (Ty::String, Val::String(s)) => Value::String(s.clone()),
        (Ty::List(_), Val::Bytes(b)) => Value::Array(b.iter().map(|x| Value::from(*x)).collect()),
        (Ty::List(t), Val::List(items)) => Value::Array(
            items
                .iter()
                .map(|v| to_json(t, v))
                .collect::<Result<_, _>>()?,
        ),
        (Ty::Record(fields), Val::Record(vals)) if fields.len() == vals.len() => {
            let mut m = Map::new();
            for ((name, t), v) in fields.iter().zip(vals) {
                m.insert(snake(name), to_json(t, v)?);
            }
            Value::Object(m)
        }
        (Ty::Tuple(ts), Val::Tuple(vals)) if ts.len() == vals.len() => Value::Array(
            ts.iter()
                .zip(vals)
                .map(|(t, v)| to_json(t, v))
                .collect::<Result<_, _>>()?,
        ),
        (Ty::Enum(names), Val::Enum(i)) => Value::String(
            names
                .get(*i as usize)
                .ok_or_else(|| mismatch(ty, "enum case out of range"))?
                .clone(),
        ),
        (Ty::Variant(cases), Val::Variant(i, payload)) => {
            let (name, t) = cases
                .get(*i as usize)
                .ok_or_else(|| mismatch(ty, "variant case out of range"))?;
            match (t, payload) {
                (None, None) => Value::String(name.clone()),
                (Some(t), Some(p)) => {
                    let mut m = Map::new();
                    m.insert(name.clone(), to_json(t, p)?);
                    Value::Object(m)
                }
                _ => return Err(mismatch(ty, "variant payload does not match its case")),
            }
        }
        (Ty::Option(_), Val::Option(None)) => Value::Null,
        (Ty::Option(t), Val::Option(Some(v))) => {
            let inner = to_json(t, v)?;
            if nullable(t) {
                let mut m = Map::new();
                m.insert("some".into(), inner);
                Value::Object(m)
            } else {
                inner
            }
        }
        (Ty::Result(ok, err), Val::Result(r)) => {
            let (key, t, p) = match r {
                Ok(p) => ("ok", ok, p),
                Err(p) => ("err", err, p),
            };
            let v = match (t, p) {
                (None, None) => Value::Null,
                (Some(t), Some(p)) => to_json(t, p)?,
                _ => return Err(mismatch(ty, "result payload does not match its type")),
            };
            let mut m = Map::new();
            m.insert(key.into(), v);
            Value::Object(m)
        }
        _ => return Err(mismatch(ty, format!("got {}", val_kind(val)))),
    })
}

fn val_kind(v: &Val) -> &'static str {
    match v {
        Val::Bool(_) => "bool",
        Val::U8(_) | Val::S8(_) | Val::U16(_) | Val::S16(_) | Val::U32(_) | Val::S32(_) => {
            "integer"
        }
        Val::U64(_) | Val::S64(_) => "64-bit integer",
        Val::F32(_) | Val::F64(_) => "float",
        Val::Char(_) => "char",
        Val::String(_) => "string",
        Val::Bytes(_) | Val::List(_) => "list",
        Val::Record(_) => "record",
        Val::Tuple(_) => "tuple",
        Val::Variant(..) => "variant",
        Val::Enum(_) => "enum",
        Val::Option(_) => "option",
        Val::Result(_) => "result",
    }
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(ty: &Ty, v: &Value) -> Result<T, TypeMismatch> {
    if let Some(u) = v.as_u64() {
        return T::try_from(u).map_err(|_| mismatch(ty, format!("{u} is out of range")));
    }
    if let Some(i) = v.as_i64() {
        return T::try_from(i).map_err(|_| mismatch(ty, format!("{i} is out of range")));
    }
    Err(got(ty, v))
}

/// "got <value>" for a value of the wrong kind.
fn got(ty: &Ty, v: &Value) -> TypeMismatch {
    mismatch(ty, format!("got {}", short(v)))
}

/// The key of a JSON object field in a path: `.name`, or `["odd key"]`.
fn field_step(key: &str) -> String {
    if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        format!(".{key}")
    } else {
        format!("[{}]", Value::String(key.to_string()))
    }
}

/// The [`Val`] of a JSON value (the inverse of [`to_json`]). For a `string` parameter any
/// non-string JSON is refused; callers decide how to treat free text. A mismatch names
/// the path of the bad value below `v` (`[2].role`).
pub fn from_json(ty: &Ty, v: &Value) -> Result<Val, TypeMismatch> {
    Ok(match ty {
        Ty::Bool => Val::Bool(v.as_bool().ok_or_else(|| got(ty, v))?),
        Ty::U8 => Val::U8(int(ty, v)?),
        Ty::S8 => Val::S8(int(ty, v)?),
        Ty::U16 => Val::U16(int(ty, v)?),
        Ty::S16 => Val::S16(int(ty, v)?),
        Ty::U32 => Val::U32(int(ty, v)?),
        Ty::S32 => Val::S32(int(ty, v)?),
        Ty::U64 => Val::U64(int(ty, v)?),
        Ty::S64 => Val::S64(int(ty, v)?),
        Ty::F32 => Val::F32(v.as_f64().ok_or_else(|| got(ty, v))? as f32),
        Ty::F64 => Val::F64(v.as_f64().ok_or_else(|| got(ty, v))?),
        Ty::Char => {
            let s = v.as_str().ok_or_else(|| got(ty, v))?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    return Err(mismatch(
                        ty,
                        format!("got {} (a char is exactly one character)", short(v)),
                    ))
                }
            }
        }
        Ty::String => Val::String(v.as_str().ok_or_else(|| got(ty, v))?.to_string()),
        Ty::List(t) => {
            let items = v.as_array().ok_or_else(|| got(ty, v))?;
            let each = |(i, x): (usize, &Value)| -> Result<Val, TypeMismatch> {
                from_json(t, x).map_err(|e| inside(e, format!("[{i}]")))
            };
            if **t == Ty::U8 {
                Val::Bytes(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, x)| int::<u8>(t, x).map_err(|e| inside(e, format!("[{i}]"))))
                        .collect::<Result<_, _>>()?,
                )
            } else {
                Val::List(
                    items
                        .iter()
                        .enumerate()
                        .map(each)
                        .collect::<Result<_, _>>()?,
                )
            }
        }
        Ty::Record(fields) => {
            let obj = v.as_object().ok_or_else(|| got(ty, v))?;
            let mut vals = Vec::with_capacity(fields.len());
            for (name, t) in fields {
                let key = snake(name);
                let fv = obj.get(&key).or_else(|| obj.get(name));
                let fv = match (fv, t) {
                    (Some(x), _) => x,
                    (None, Ty::Option(_)) => &Value::Null,
                    (None, _) => {
                        return Err(inside(mismatch(t, "missing field"), field_step(&key)))
                    }
                };
                vals.push(from_json(t, fv).map_err(|e| inside(e, field_step(&key)))?);
            }
            Val::Record(vals)
        }
        Ty::Tuple(ts) => {
            let items = v.as_array().ok_or_else(|| got(ty, v))?;
            if items.len() != ts.len() {
                return Err(mismatch(
                    ty,
                    format!("got {} items, {}", items.len(), short(v)),
                ));
            }
            Val::Tuple(
                ts.iter()
                    .zip(items)
                    .enumerate()
                    .map(|(i, (t, x))| from_json(t, x).map_err(|e| inside(e, format!("[{i}]"))))
                    .collect::<Result<_, _>>()?,
            )
        }
        Ty::Enum(names) => {
            let s = v.as_str().ok_or_else(|| got(ty, v))?;
            let i = names
                .iter()
                .position(|n| n == s || snake(n) == s)
                .ok_or_else(|| mismatch(ty, format!("unknown case {}", short(v))))?;
            Val::Enum(i as u32)
        }
        Ty::Variant(cases) => {
            let (name, payload) = match v {
                Value::String(s) => (s.as_str(), None),
                Value::Object(m) if m.len() == 1 => match m.iter().next() {
                    Some((k, p)) => (k.as_str(), Some(p)),
                    None => return Err(got(ty, v)),
                },
                _ => {
                    return Err(mismatch(
                        ty,
                        format!("got {} (write \"case\" or {{\"case\": payload}})", short(v)),
                    ))
                }
            };
            let Some(i) = cases
                .iter()
                .position(|(n, _)| n == name || snake(n) == name)
            else {
                return Err(mismatch(ty, format!("unknown case \"{name}\"")));
            };
            let t = cases.get(i).and_then(|(_, t)| t.as_ref());
            let payload = match (t, payload) {
                (None, None) | (None, Some(Value::Null)) => None,
                (Some(t), Some(p)) => Some(Box::new(
                    from_json(t, p).map_err(|e| inside(e, field_step(name)))?,
                )),
                (Some(_), None) => {
                    return Err(mismatch(ty, format!("case \"{name}\" needs a payload")))
                }
                (None, Some(_)) => {
                    return Err(mismatch(ty, format!("case \"{name}\" takes no payload")))
                }
            };
            Val::Variant(i as u32, payload)
        }
        Ty::Option(t) => match v {
            Value::Null => Val::Option(None),
            other => {
                let inner = if nullable(t) {
                    other
                        .as_object()
                        .and_then(|m| m.get("some"))
                        .ok_or_else(|| {
                            mismatch(
                                ty,
                                format!(
                                    "got {} (a nested option is null or {{\"some\": v}})",
                                    short(v)
                                ),
                            )
                        })?
                } else {
                    other
                };
                Val::some(from_json(t, inner)?)
            }
        },
        Ty::Result(ok, err) => {
            let shape = || {
                mismatch(
                    ty,
                    format!("got {} (write {{\"ok\": v}} or {{\"err\": e}})", short(v)),
                )
            };
            let m = v.as_object().ok_or_else(shape)?;
            let (is_ok, p) = match (m.get("ok"), m.get("err")) {
                (Some(p), None) => (true, p),
                (None, Some(p)) => (false, p),
                _ => return Err(shape()),
            };
            let t = if is_ok { ok } else { err };
            let payload = match t {
                Some(t) => Some(Box::new(from_json(t, p).map_err(|e| {
                    inside(e, if is_ok { ".ok".into() } else { ".err".into() })
                })?)),
                None => None,
            };
            Val::Result(if is_ok { Ok(payload) } else { Err(payload) })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http_result() -> Ty {
        let resp = Ty::Record(vec![
            ("status".into(), Ty::U16),
            (
                "headers".into(),
                Ty::List(Box::new(Ty::Tuple(vec![Ty::String, Ty::String]))),
            ),
            ("body".into(), Ty::String),
        ]);
        let err = Ty::Record(vec![
            ("message".into(), Ty::String),
            ("status".into(), Ty::Option(Box::new(Ty::U16))),
        ]);
        Ty::Result(Some(Box::new(resp)), Some(Box::new(err)))
    }

    #[test]
    fn layout_matches_the_worked_example() {
        // result<http-response, http-error>: disc @0, payload @4, size 24, align 4.
        let t = http_result();
        assert_eq!(t.payload_offset(), 4);
        assert_eq!(t.size(), 24);
        assert_eq!(t.align(), 4);
        if let Ty::Result(_, Some(err)) = &t {
            assert_eq!(err.size(), 12);
        }
        let opt_str = Ty::Option(Box::new(Ty::String));
        assert_eq!((opt_str.size(), opt_str.payload_offset()), (12, 4));
        assert_eq!(opt_str.flat(), vec![Flat::I32, Flat::I32, Flat::I32]);
        let r = Ty::Result(Some(Box::new(Ty::U64)), Some(Box::new(Ty::String)));
        assert_eq!(r.flat(), vec![Flat::I32, Flat::I64, Flat::I32]);
        assert_eq!((r.size(), r.align()), (16, 8));
        assert!(t.owns_memory());
        assert!(!Ty::Enum(vec!["a".into()]).owns_memory());
    }

    #[test]
    fn json_round_trips() {
        let t = http_result();
        let v = Val::ok(Some(Val::Record(vec![
            Val::U16(200),
            Val::List(vec![Val::Tuple(vec![Val::string("a"), Val::string("b")])]),
            Val::string("body"),
        ])));
        let j = to_json(&t, &v).expect("to json");
        assert_eq!(
            j.to_string(),
            r#"{"ok":{"status":200,"headers":[["a","b"]],"body":"body"}}"#
        );
        assert_eq!(from_json(&t, &j).expect("from json"), v);
        let nested = Ty::Option(Box::new(Ty::Option(Box::new(Ty::String))));
        for v in [
            Val::Option(None),
            Val::some(Val::Option(None)),
            Val::some(Val::some(Val::string("x"))),
        ] {
            let j = to_json(&nested, &v).expect("json");
            assert_eq!(from_json(&nested, &j).expect("back"), v, "{j}");
        }
        assert!(from_json(&Ty::U8, &Value::from(256)).is_err());
        assert!(from_json(&Ty::Enum(vec!["a".into()]), &Value::from("b")).is_err());
    }
}
