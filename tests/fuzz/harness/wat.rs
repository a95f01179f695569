//! WAT signature clauses for hand-written guests; also used by tests/common/wat.rs.

/// A WAT `(param ...)` or `(result ...)` clause.
pub fn wat_types(kind: &str, ts: &[wasmer::Type]) -> String {
    if ts.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = ts
        .iter()
        .map(|t| match t {
            wasmer::Type::I32 => "i32",
            wasmer::Type::I64 => "i64",
            wasmer::Type::F32 => "f32",
            wasmer::Type::F64 => "f64",
            other => panic!("no core type {other:?} in the contract"),
        })
        .collect();
    format!("({kind} {})", names.join(" "))
}

/// A WAT function signature.
pub fn wat_sig(ty: &wasmer::FunctionType) -> String {
    format!(
        "{} {}",
        wat_types("param", ty.params()),
        wat_types("result", ty.results())
    )
}
