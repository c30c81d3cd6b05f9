//! Strict JSON for untrusted token segments.
//!
//! serde_json keeps the last of two members with the same name. Two parsers that disagree on which
//! duplicate wins is how "the value validated is not the value used" bugs happen, so every object
//! at every depth is checked for duplicate member names here, and the whole text must be one
//! object. serde_json already rejects invalid UTF-8, lone surrogates, trailing data and nesting
//! deeper than 128 levels.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::error::Reason;

const DUPLICATE_MARKER: &str = "trustgate: duplicate member";

/// Parses `bytes` as a JSON object, rejecting duplicate member names at any depth.
pub(crate) fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, Reason> {
    match parse_strict(bytes)? {
        StrictValue(Value::Object(map)) => Ok(map),
        _ => Err(Reason::BadJson),
    }
}

/// Parses `bytes` as one JSON text into `T`, whose `Deserialize` must reject duplicate member
/// names with [`duplicate_member`] (as [`StrictValue`] does at every depth).
pub(crate) fn parse_strict<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Reason> {
    serde_json::from_slice::<T>(bytes).map_err(|err| {
        if err.to_string().starts_with(DUPLICATE_MARKER) {
            Reason::DuplicateMember
        } else {
            Reason::BadJson
        }
    })
}

/// The error a strict visitor returns for a member name it has already seen.
pub(crate) fn duplicate_member<E: de::Error>() -> E {
    E::custom(DUPLICATE_MARKER)
}

/// Any JSON value, with duplicate member names refused at every depth.
pub(crate) struct StrictValue(pub(crate) Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(StrictValue(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(name) = access.next_key::<String>()? {
            let StrictValue(value) = access.next_value()?;
            if map.insert(name, value).is_some() {
                return Err(duplicate_member());
            }
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_objects() {
        let map = parse_object(br#"{"a":1,"b":{"c":[1,2,{"d":null}]},"e":1.5}"#).unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map["e"], serde_json::json!(1.5));
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(Reason::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":1}}"#),
            Err(Reason::DuplicateMember)
        );
        assert_eq!(
            parse_object(br#"{"a":[{"b":1,"b":1}]}"#),
            Err(Reason::DuplicateMember)
        );
        // Escapes that decode to the same name are the same name.
        assert_eq!(
            parse_object(br#"{"sub":"a","\u0073ub":"b"}"#),
            Err(Reason::DuplicateMember)
        );
    }

    #[test]
    fn rejects_non_objects_and_bad_text() {
        for text in [
            &b"[]"[..],
            b"\"x\"",
            b"1",
            b"null",
            b"",
            b"{",
            b"{}x",
            b"{\"a\":\"\xff\"}",
            br#"{"a":"\ud800"}"#,
            b"{'a':1}",
            b"{\"a\":NaN}",
        ] {
            assert_eq!(parse_object(text), Err(Reason::BadJson), "{text:?}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_object(deep.as_bytes()), Err(Reason::BadJson));
    }
}
