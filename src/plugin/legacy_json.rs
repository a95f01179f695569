//! The legacy ABI's JSON seen through the WIT types: a legacy plugin's own JSON is passed
//! through, laid out like the WIT record it stands for, so `tark-wasmer call` prints the
//! same shape for both ABIs.

use serde_json::{Map, Value};

use crate::abi::canonical::types::{snake, Ty};

/// `v` laid out like `ty`: record fields in WIT order (missing ones as their zero value
/// where they have one), fields the WIT does not know kept after them; lists, tuples and
/// options shaped element by element; anything else as it is.
pub(crate) fn shape(ty: &Ty, v: Value) -> Value {
    match (ty, v) {
        (Ty::Record(fields), Value::Object(mut obj)) => {
            let mut out = Map::new();
            for (name, t) in fields {
                let key = snake(name);
                match obj.shift_remove(&key) {
                    Some(x) => {
                        out.insert(key, shape(t, x));
                    }
                    None => {
                        if let Some(z) = zero(t) {
                            out.insert(key, z);
                        }
                    }
                }
            }
            out.extend(obj);
            Value::Object(out)
        }
        (Ty::List(t), Value::Array(items)) => {
            Value::Array(items.into_iter().map(|x| shape(t, x)).collect())
        }
        (Ty::Tuple(ts), Value::Array(items)) if ts.len() == items.len() => {
            Value::Array(ts.iter().zip(items).map(|(t, x)| shape(t, x)).collect())
        }
        (Ty::Option(t), v) if !v.is_null() && !matches!(**t, Ty::Option(_)) => shape(t, v),
        (_, v) => v,
    }
}

/// The value serde's defaults give a missing field of type `ty`, when it has one.
fn zero(ty: &Ty) -> Option<Value> {
    Some(match ty {
        Ty::Option(_) => Value::Null,
        Ty::Bool => Value::Bool(false),
        Ty::String => Value::String(String::new()),
        Ty::List(_) => Value::Array(Vec::new()),
        Ty::U8 | Ty::S8 | Ty::U16 | Ty::S16 | Ty::U32 | Ty::S32 | Ty::U64 | Ty::S64 => {
            Value::from(0)
        }
        _ => return None,
    })
}

/// A legacy status code as its WIT enum case: codes are the case indexes; unknown codes
/// mean `not-authenticated`, as in tark.
pub(crate) fn status(cases: &[String], code: i32) -> Value {
    let case = usize::try_from(code)
        .ok()
        .and_then(|i| cases.get(i))
        .map(String::as_str)
        .unwrap_or("not-authenticated");
    Value::String(case.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_follow_the_wit_layout() {
        let ty = Ty::Record(vec![
            ("id".into(), Ty::String),
            ("display-name".into(), Ty::String),
            ("requires-auth".into(), Ty::Bool),
            ("note".into(), Ty::Option(Box::new(Ty::String))),
        ]);
        let v = json!({"requires_auth": true, "extra": 1, "id": "x"});
        assert_eq!(
            shape(&ty, v).to_string(),
            r#"{"id":"x","display_name":"","requires_auth":true,"note":null,"extra":1}"#
        );
        assert_eq!(shape(&ty, json!([1])), json!([1]));
    }

    #[test]
    fn status_codes_are_case_indexes() {
        let cases: Vec<String> = ["not-authenticated", "authenticated", "expired"]
            .map(String::from)
            .to_vec();
        assert_eq!(status(&cases, 1), json!("authenticated"));
        assert_eq!(status(&cases, 7), json!("not-authenticated"));
        assert_eq!(status(&cases, -1), json!("not-authenticated"));
    }
}
