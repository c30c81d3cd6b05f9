//! Strict JSON for untrusted token segments.
//!
//! serde_json keeps the last of two members with the same name. Two parsers that disagree on which
//! duplicate wins is how "the value validated is not the value used" bugs happen, so every object
//! at every depth is checked for duplicate member names here, and the whole text must be one
//! object. serde_json already rejects invalid UTF-8, lone surrogates, trailing data and nesting
//! deeper than 128 levels.
//!
//! Two representations share these rules. [`Json`] borrows from the text (strings without escapes
//! point into it, objects are member lists) and serves the per-token path, where building a
//! `serde_json::Map` of owned strings was most of the cost of validation after the signature.
//! [`StrictValue`] builds an owned `serde_json::Value` for everything else.

use std::borrow::Cow;
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

/// Parses `bytes` as a JSON object into a borrowed tree, rejecting duplicate member names at any
/// depth.
pub(crate) fn parse_borrowed(bytes: &[u8]) -> Result<Object<'_>, Reason> {
    parse_strict::<TopObject<'_>>(bytes).map(|top| top.0)
}

/// The top-level object of a claim set: sized up front for a typical access token, which saves
/// the member list's regrowth on every uncached token.
struct TopObject<'a>(Object<'a>);

impl<'de> Deserialize<'de> for TopObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TopVisitor;
        impl<'de> Visitor<'de> for TopVisitor {
            type Value = TopObject<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<TopObject<'de>, A::Error> {
                collect_members(access, Vec::with_capacity(16)).map(TopObject)
            }
        }
        deserializer.deserialize_map(TopVisitor)
    }
}

/// Reads an object's members into `members`, refusing duplicate names.
fn collect_members<'de, A: MapAccess<'de>>(
    mut access: A,
    mut members: Vec<(Cow<'de, str>, Json<'de>)>,
) -> Result<Object<'de>, A::Error> {
    while let Some(Name(name)) = access.next_key()? {
        members.push((name, access.next_value()?));
    }
    if has_duplicate_names(&members) {
        return Err(duplicate_member());
    }
    Ok(Object(members))
}

/// A JSON value borrowed from the text it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// A JSON object as its members in text order; names are unique (checked when parsed).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Object<'a>(Vec<(Cow<'a, str>, Json<'a>)>);

impl<'a> Object<'a> {
    /// The value of member `name`. A linear scan: claim sets are small, and a large one costs no
    /// more to search than it cost to parse.
    pub(crate) fn get(&self, name: &str) -> Option<&Json<'a>> {
        self.0
            .iter()
            .find(|(member, _)| member == name)
            .map(|(_, value)| value)
    }
}

impl Json<'_> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }
}

/// Whether two members share a name. Quadratic for the few members of a typical object, sorted
/// beyond that so that a token of a thousand short names cannot make parsing quadratic.
fn has_duplicate_names(members: &[(Cow<'_, str>, Json<'_>)]) -> bool {
    const LINEAR_MAX: usize = 16;
    if members.len() <= LINEAR_MAX {
        return members
            .iter()
            .enumerate()
            .any(|(i, (name, _))| members[..i].iter().any(|(earlier, _)| earlier == name));
    }
    let mut names: Vec<&str> = members.iter().map(|(name, _)| name.as_ref()).collect();
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BorrowedVisitor)
    }
}

/// A member name: borrowed when the text has no escapes.
struct Name<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_str(BorrowedVisitor)? {
            Json::String(name) => Ok(Name(name)),
            _ => Err(de::Error::custom("a member name")),
        }
    }
}

struct BorrowedVisitor;

impl<'de> Visitor<'de> for BorrowedVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Json<'de>, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Json<'de>, E> {
        Ok(Json::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json<'de>, E> {
        Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Json<'de>, E> {
        Ok(Json::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_none<E>(self) -> Result<Json<'de>, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json<'de>, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<Json<'de>, A::Error> {
        // No capacity up front for nested objects: an 8 KiB token can hold thousands of `{}`,
        // and those must stay free.
        collect_members(access, Vec::new()).map(Json::Object)
    }
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
    fn borrowed_parse_follows_the_same_rules() {
        let object = parse_borrowed(br#"{"a":"x","b\u0041":"y\n","c":[1,{"d":true}]}"#).unwrap();
        assert!(matches!(
            object.get("a"),
            Some(Json::String(Cow::Borrowed("x")))
        ));
        // Escapes are decoded, in names and values alike.
        assert_eq!(object.get("bA").and_then(Json::as_str), Some("y\n"));
        assert_eq!(object.get("b\\u0041"), None);
        for text in [
            &br#"{"a":1,"a":2}"#[..],
            br#"{"a":{"b":1,"b":1}}"#,
            br#"{"a":[{"b":1,"b":1}]}"#,
            br#"{"sub":"a","\u0073ub":"b"}"#,
        ] {
            assert_eq!(parse_borrowed(text), Err(Reason::DuplicateMember));
        }
        // Past the linear scan's size, the sorted check still finds a late duplicate.
        let many: Vec<String> = (0..40).map(|i| format!("\"m{i}\":{i}")).collect();
        let unique = format!("{{{}}}", many.join(","));
        assert_eq!(parse_borrowed(unique.as_bytes()).map(|o| o.0.len()), Ok(40));
        let duplicated = format!("{{{},\"m3\":0}}", many.join(","));
        assert_eq!(
            parse_borrowed(duplicated.as_bytes()),
            Err(Reason::DuplicateMember)
        );
        for text in [
            &b"[]"[..],
            b"1",
            b"{",
            b"{}x",
            b"{\"a\":\"\xff\"}",
            br#"{"a":"\ud800"}"#,
        ] {
            assert_eq!(parse_borrowed(text), Err(Reason::BadJson), "{text:?}");
        }
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
