//! Conversions between `yrs::Any` (the values Yjs stores) and `serde_json::Value`, written to
//! produce exactly what `JSON.stringify` produces in JavaScript for the same Yjs value.
//! No schema knowledge lives here.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Number as JsonNumber, Value};
use yrs::{Any, Number};

/// Largest integer a JavaScript number holds exactly (2^53 - 1).
pub(crate) const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A JS number as JSON: integral values in the safe range print as integers (like JS), other
/// finite values as floats, and NaN/±Infinity as `null` (like `JSON.stringify`).
pub(crate) fn f64_to_json(f: f64) -> Value {
    if f.is_finite() && f.trunc() == f && f.abs() <= MAX_SAFE_INTEGER as f64 {
        Value::Number(JsonNumber::from(f as i64))
    } else {
        JsonNumber::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// The value of a yrs number as JavaScript would see it, if it is a finite JS number.
/// `Int`s beyond 2^53 only arise from Yjs BigInt values, which JS does not read as numbers.
pub(crate) fn number_as_f64(n: &Number) -> Option<f64> {
    match *n {
        Number::Int(i) if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&i) => Some(i as f64),
        Number::Int(_) => None,
        Number::Float(f) if f.is_finite() => Some(f),
        Number::Float(_) => None,
    }
}

/// `Any` → JSON, as `JSON.parse(JSON.stringify(value))` would give in JS.
pub(crate) fn any_to_json(any: &Any) -> Value {
    match any {
        Any::Null | Any::Undefined => Value::Null,
        Any::Bool(b) => Value::Bool(*b),
        Any::Number(Number::Int(i)) => Value::Number(JsonNumber::from(*i)),
        Any::Number(Number::Float(f)) => f64_to_json(*f),
        Any::String(s) => Value::String(s.to_string()),
        // JSON.stringify(Uint8Array) is an object keyed by index.
        Any::Buffer(b) => Value::Object(
            b.iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), Value::Number(JsonNumber::from(*v))))
                .collect(),
        ),
        Any::Array(a) => Value::Array(a.iter().map(any_to_json).collect()),
        Any::Map(m) => Value::Object(
            m.iter()
                // JSON.stringify drops object keys whose value is undefined.
                .filter(|(_, v)| !matches!(v, Any::Undefined))
                .map(|(k, v)| (k.clone(), any_to_json(v)))
                .collect::<Map<String, Value>>(),
        ),
    }
}

/// JSON → `Any`, storing integers in the JS-safe range as integers (Yjs writes those compactly,
/// as JS would for an integral number) and everything else as a float.
pub(crate) fn json_to_any(v: &Value) -> Any {
    match v {
        Value::Null => Any::Null,
        Value::Bool(b) => Any::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64().filter(|i| i.abs() <= MAX_SAFE_INTEGER) {
                Any::Number(Number::Int(i))
            } else {
                Any::Number(Number::Float(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Value::String(s) => Any::String(Arc::from(s.as_str())),
        Value::Array(a) => Any::Array(a.iter().map(json_to_any).collect::<Vec<_>>().into()),
        Value::Object(m) => Any::Map(Arc::new(
            m.iter()
                .map(|(k, v)| (k.clone(), json_to_any(v)))
                .collect::<HashMap<_, _>>(),
        )),
    }
}

/// Serializes an `f64` the way JS `JSON.stringify` would (integral values without `.0`).
pub(crate) fn serialize_js_number<S: serde::Serializer>(
    v: &Option<f64>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    match v {
        None => s.serialize_none(),
        Some(f) => f64_to_json(*f).serialize(s),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_like_js() {
        assert_eq!(f64_to_json(3.0), json!(3));
        assert_eq!(f64_to_json(1.5), json!(1.5));
        assert_eq!(f64_to_json(1763900000000.0), json!(1763900000000_i64));
        assert_eq!(f64_to_json(f64::NAN), Value::Null);
    }

    #[test]
    fn json_any_round_trip() {
        let v = json!({"a": [1, 2.5, "x", null, true], "b": {"c": -7}, "big": 1e300});
        assert_eq!(any_to_json(&json_to_any(&v)), v);
    }

    #[test]
    fn undefined_and_buffers_match_json_stringify() {
        let m = Any::Map(Arc::new(HashMap::from([
            ("u".to_string(), Any::Undefined),
            ("b".to_string(), Any::Buffer(Arc::from(&[7u8, 8][..]))),
        ])));
        assert_eq!(any_to_json(&m), json!({"b": {"0": 7, "1": 8}}));
        let a = Any::Array(vec![Any::Undefined].into());
        assert_eq!(any_to_json(&a), json!([null]));
    }
}
