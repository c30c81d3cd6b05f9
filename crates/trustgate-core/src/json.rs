//! Strict JSON for untrusted token segments.
//!
//! serde_json keeps the last of two members with the same name. Two parsers that disagree on which
//! duplicate wins is how "the value validated is not the value used" bugs happen, so every object
//! at every depth is checked for duplicate member names here, and the whole text must be one
//! object. Invalid UTF-8, lone surrogates, trailing data and nesting deeper than 128 levels are
//! refused as serde_json refuses them.
//!
//! Two representations share these rules. [`Json`] borrows from the text (strings without escapes
//! point into it, objects are member lists) and serves the per-token path; its parser is written
//! out here and checked against serde_json by property tests. [`StrictValue`] builds an owned
//! `serde_json::Value` through serde_json for everything else (JWKS, discovery documents).

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
///
/// Written out rather than driven through serde's visitor protocol: this runs on every uncached
/// token, and the serde path cost more than every claim check put together. It accepts exactly
/// the texts serde_json accepts (RFC 8259, at most 128 levels deep), which a property test
/// checks, and builds the same numbers, except that decimals are rounded correctly where
/// serde_json's default parser may be a few units in the last place off. That parser also
/// overflows on some decimals that round to ±`f64::MAX` (`1.7976931348623158e308`), which this
/// one reads; so the verified claims are built from this tree ([`Object::to_map`]), never parsed
/// again by serde_json.
pub(crate) fn parse_borrowed(bytes: &[u8]) -> Result<Object<'_>, Reason> {
    // One UTF-8 check over the whole text: every string taken between two quotes is then valid.
    let text = std::str::from_utf8(bytes).map_err(|_| Reason::BadJson)?;
    let mut parser = Parser {
        text,
        pos: 0,
        depth_left: MAX_DEPTH,
    };
    parser.skip_whitespace();
    parser.expect(b'{')?;
    // Sized for a typical access token, which saves the member list's regrowth per token. Nested
    // objects start empty: an 8 KiB token can hold thousands of `{}`, and those must stay free.
    let object = parser.object(Vec::with_capacity(16))?;
    parser.skip_whitespace();
    if parser.pos != text.len() {
        return Err(Reason::BadJson);
    }
    Ok(object)
}

/// serde_json's nesting limit, kept so that both parsers accept the same texts.
const MAX_DEPTH: u32 = 128;

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth_left: u32,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Result<u8, Reason> {
        let byte = self.peek().ok_or(Reason::BadJson)?;
        self.pos += 1;
        Ok(byte)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), Reason> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(Reason::BadJson)
        }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// The text from `start` to the current position. Both ends sit next to ASCII delimiters, so
    /// this never splits a character; `get` keeps that a refusal rather than a panic regardless.
    fn slice_from(&self, start: usize) -> Result<&'a str, Reason> {
        self.text.get(start..self.pos).ok_or(Reason::BadJson)
    }

    fn value(&mut self) -> Result<Json<'a>, Reason> {
        self.skip_whitespace();
        match self.next_byte()? {
            b'"' => self.string().map(Json::String),
            b'{' => self.object(Vec::new()).map(Json::Object),
            b'[' => self.array().map(Json::Array),
            b't' => self.rest_of(b"rue", Json::Bool(true)),
            b'f' => self.rest_of(b"alse", Json::Bool(false)),
            b'n' => self.rest_of(b"ull", Json::Null),
            b'-' | b'0'..=b'9' => {
                self.pos -= 1;
                self.number().map(Json::Number)
            }
            _ => Err(Reason::BadJson),
        }
    }

    fn rest_of(&mut self, rest: &[u8], value: Json<'a>) -> Result<Json<'a>, Reason> {
        let end = self.pos + rest.len();
        if self.text.as_bytes().get(self.pos..end) != Some(rest) {
            return Err(Reason::BadJson);
        }
        self.pos = end;
        Ok(value)
    }

    /// Counts one level of nesting in; the caller gives it back with [`Parser::leave`].
    fn enter(&mut self) -> Result<(), Reason> {
        self.depth_left = self.depth_left.saturating_sub(1);
        if self.depth_left == 0 {
            return Err(Reason::BadJson);
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth_left += 1;
    }

    /// An object, after its `{`. Duplicates are judged once the object is complete, as serde_json
    /// does, so both report the same reason for the same text.
    fn object(&mut self, mut members: Vec<Member<'a>>) -> Result<Object<'a>, Reason> {
        self.enter()?;
        self.skip_whitespace();
        if !self.eat(b'}') {
            loop {
                self.skip_whitespace();
                self.expect(b'"')?;
                let name = self.string()?;
                self.skip_whitespace();
                self.expect(b':')?;
                let value = self.value()?;
                members.push(Member {
                    word: name_word(&name),
                    name,
                    value,
                });
                self.skip_whitespace();
                if !self.eat(b',') {
                    self.expect(b'}')?;
                    break;
                }
            }
        }
        self.leave();
        if has_duplicate_names(&members) {
            return Err(Reason::DuplicateMember);
        }
        Ok(Object(members))
    }

    /// An array, after its `[`.
    fn array(&mut self) -> Result<Vec<Json<'a>>, Reason> {
        self.enter()?;
        let mut items = Vec::new();
        self.skip_whitespace();
        if !self.eat(b']') {
            loop {
                items.push(self.value()?);
                self.skip_whitespace();
                if !self.eat(b',') {
                    self.expect(b']')?;
                    break;
                }
            }
        }
        self.leave();
        Ok(items)
    }

    /// A string, after its opening quote: borrowed from the text unless it has escapes.
    // Inlined into its two callers (member names and values): most strings of a claim set are a
    // few bytes long, and the call itself cost about as much as scanning them.
    #[inline(always)]
    fn string(&mut self) -> Result<Cow<'a, str>, Reason> {
        let start = self.pos;
        self.skip_plain();
        if self.peek() == Some(b'"') {
            let text = self.slice_from(start)?;
            self.pos += 1;
            return Ok(Cow::Borrowed(text));
        }
        let mut owned = String::from(self.slice_from(start)?);
        loop {
            let run = self.pos;
            self.skip_plain();
            owned.push_str(self.slice_from(run)?);
            match self.next_byte()? {
                b'"' => return Ok(Cow::Owned(owned)),
                b'\\' => owned.push(self.escape()?),
                _ => return Err(Reason::BadJson),
            }
        }
    }

    /// Skips string content up to the next quote, backslash or control character (or the end).
    ///
    /// Eight bytes per step: string content is most of a claim set, and a byte-at-a-time loop
    /// was the parser's largest cost. The step that meets the closing quote also finds its
    /// position, so a short string (most claim names) costs one step, not a byte loop.
    fn skip_plain(&mut self) {
        use crate::swar::{load, splat, zero_bytes};
        let bytes = self.text.as_bytes();
        while let Some(chunk) = bytes.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let word = load(&word);
            // A byte below 0x20 has its top three bits clear; `& 0xe0` makes exactly those zero.
            let special = zero_bytes(word ^ splat(b'"'))
                | zero_bytes(word ^ splat(b'\\'))
                | zero_bytes(word & splat(0xe0));
            if special != 0 {
                // Each test's lowest flag is exact, so the lowest of all is the first special byte.
                self.pos += (special.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while let Some(byte) = self.peek() {
            if matches!(byte, b'"' | b'\\' | 0x00..=0x1f) {
                break;
            }
            self.pos += 1;
        }
    }

    /// One escape, after its backslash. Surrogates must come as a high-low pair: a lone one
    /// names no character.
    fn escape(&mut self) -> Result<char, Reason> {
        let code = match self.next_byte()? {
            b'"' => return Ok('"'),
            b'\\' => return Ok('\\'),
            b'/' => return Ok('/'),
            b'b' => return Ok('\u{8}'),
            b'f' => return Ok('\u{c}'),
            b'n' => return Ok('\n'),
            b'r' => return Ok('\r'),
            b't' => return Ok('\t'),
            b'u' => self.hex4()?,
            _ => return Err(Reason::BadJson),
        };
        let code = match code {
            0xd800..=0xdbff => {
                if !(self.eat(b'\\') && self.eat(b'u')) {
                    return Err(Reason::BadJson);
                }
                let low = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&low) {
                    return Err(Reason::BadJson);
                }
                0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(Reason::BadJson),
            other => other,
        };
        char::from_u32(code).ok_or(Reason::BadJson)
    }

    fn hex4(&mut self) -> Result<u32, Reason> {
        let mut code = 0;
        for _ in 0..4 {
            let digit = char::from(self.next_byte()?)
                .to_digit(16)
                .ok_or(Reason::BadJson)?;
            code = code << 4 | digit;
        }
        Ok(code)
    }

    /// Skips `[0-9]*`; whether it skipped any.
    fn digits(&mut self) -> bool {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos > start
    }

    /// A number, built as serde_json builds it: an integer that fits is a `u64` (or, if negative,
    /// an `i64`); anything else, `-0` included, is the nearest `f64`, and one too large for an
    /// `f64` is refused.
    fn number(&mut self) -> Result<Number, Reason> {
        let start = self.pos;
        let negative = self.eat(b'-');
        // The integer part's value is built while it is scanned (None once it overflows a
        // `u64`): claim sets are mostly times, and scanning then parsing cost twice.
        let magnitude = match self.next_byte()? {
            b'0' => Some(0),
            first @ b'1'..=b'9' => {
                let mut magnitude = Some(u64::from(first - b'0'));
                while let Some(digit @ b'0'..=b'9') = self.peek() {
                    self.pos += 1;
                    magnitude = magnitude
                        .and_then(|m| m.checked_mul(10))
                        .and_then(|m| m.checked_add(u64::from(digit - b'0')));
                }
                magnitude
            }
            _ => return Err(Reason::BadJson),
        };
        let mut integer = true;
        if self.eat(b'.') {
            integer = false;
            if !self.digits() {
                return Err(Reason::BadJson);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !self.digits() {
                return Err(Reason::BadJson);
            }
        }
        if integer && let Some(magnitude) = magnitude {
            if !negative {
                return Ok(Number::from(magnitude));
            }
            if magnitude != 0
                && let Some(value) = 0i64.checked_sub_unsigned(magnitude)
            {
                return Ok(Number::from(value));
            }
        }
        let value: f64 = self
            .slice_from(start)?
            .parse()
            .map_err(|_| Reason::BadJson)?;
        Number::from_f64(value).ok_or(Reason::BadJson)
    }
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
pub(crate) struct Object<'a>(Vec<Member<'a>>);

/// One member of an [`Object`], with its name's [`name_word`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Member<'a> {
    word: u64,
    name: Cow<'a, str>,
    value: Json<'a>,
}

/// A member name's length (up to 255) and first seven bytes, as one word. Two names that differ
/// in either have different words, so most comparisons of two names are one comparison of
/// integers; only names longer than seven bytes whose words match are compared in full
/// ([`same_name`]). Claim names are short, and most registered ones are three letters long, so
/// comparing them as strings was a `memcmp` call for nearly every pair: in the duplicate check,
/// and in each of the dozen lookups (`iss`, `exp`, `sub`, the identity's claims) that validation
/// makes in a claim set.
#[inline]
fn name_word(name: &str) -> u64 {
    // Built with shifts rather than in a byte array: the array's byte-wide stores, read back as
    // one word, stalled the load on every member.
    name.bytes()
        .take(7)
        .fold((name.len().min(255) as u64, 8), |(word, shift), byte| {
            (word | u64::from(byte) << shift, shift + 8)
        })
        .0
}

/// Whether `a` (whose word is `a_word`) and the member `b` have the same name.
#[inline]
fn same_name(a_word: u64, a: &str, b: &Member<'_>) -> bool {
    // Equal words and at most seven bytes: equal lengths (below 255) and equal bytes.
    a_word == b.word && (a.len() <= 7 || *a == *b.name)
}

impl<'a> Object<'a> {
    /// The members, in text order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.0
            .iter()
            .map(|member| (member.name.as_ref(), &member.value))
    }

    /// The members as serde_json's map, with the values this parser read: what a caller that
    /// needs a `Value` sees is what the checks saw. (A second parse with serde_json could differ:
    /// it refuses some decimals near `f64::MAX` that round to it.)
    pub(crate) fn to_map(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|member| (member.name.to_string(), member.value.to_value()))
            .collect()
    }

    /// The value of member `name`. A linear scan: claim sets are small, and a large one costs no
    /// more to search than it cost to parse.
    pub(crate) fn get(&self, name: &str) -> Option<&Json<'a>> {
        let word = name_word(name);
        self.0
            .iter()
            .find(|member| same_name(word, name, member))
            .map(|member| &member.value)
    }
}

impl Json<'_> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(text) => Some(text),
            _ => None,
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.to_string()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(object) => Value::Object(object.to_map()),
        }
    }
}

/// Whether two members share a name. Quadratic for the few members of a typical object, sorted
/// beyond that so that a token of a thousand short names cannot make parsing quadratic.
fn has_duplicate_names(members: &[Member<'_>]) -> bool {
    const LINEAR_MAX: usize = 16;
    if members.len() <= LINEAR_MAX {
        return (1..members.len()).any(|i| {
            members[..i]
                .iter()
                .any(|other| same_name(members[i].word, &members[i].name, other))
        });
    }
    let mut names: Vec<&str> = members.iter().map(|member| member.name.as_ref()).collect();
    names.sort_unstable();
    names.windows(2).any(|pair| pair[0] == pair[1])
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
    fn duplicate_check_compares_long_names_in_full() {
        // Same length and same first seven bytes: only the full comparison tells them apart.
        let distinct = br#"{"tenant_a":1,"tenant_b":2,"x":3}"#;
        assert_eq!(parse_borrowed(distinct).map(|o| o.0.len()), Ok(3));
        let same = br#"{"tenant_a":1,"x":3,"tenant_a":2}"#;
        assert_eq!(parse_borrowed(same), Err(Reason::DuplicateMember));
        // Short names of different lengths are different names, even with a shared prefix.
        assert_eq!(
            parse_borrowed(br#"{"a":1,"ab":2,"":3}"#).map(|o| o.0.len()),
            Ok(3)
        );
        assert_eq!(
            parse_borrowed(br#"{"":1,"a":2,"":3}"#),
            Err(Reason::DuplicateMember)
        );
    }

    #[test]
    fn lookups_compare_names_in_full() {
        let long = |last: char| format!("{}{last}", "n".repeat(300));
        let text = format!(
            r#"{{"tenant_a":1,"tenant_b":2,"a":3,"ab":4,"":5,"{}":6,"{}":7}}"#,
            long('a'),
            long('b')
        );
        let object = parse_borrowed(text.as_bytes()).unwrap();
        let number = |name: &str| match object.get(name) {
            Some(Json::Number(n)) => n.as_u64(),
            _ => None,
        };
        for (name, value) in [
            ("tenant_a", 1),
            ("tenant_b", 2),
            ("a", 3),
            ("ab", 4),
            ("", 5),
            (long('a').as_str(), 6),
            (long('b').as_str(), 7),
        ] {
            assert_eq!(number(name), Some(value), "{name}");
        }
        for absent in [
            "tenant_",
            "tenant_c",
            "tenant_ab",
            "b",
            "abc",
            &long('c'),
            &"n".repeat(300),
        ] {
            assert_eq!(object.get(absent), None, "{absent}");
        }
        // Names of 255 bytes and more share the word's length byte: compared in full.
        let text = format!(r#"{{"{}":1,"{}":2}}"#, "m".repeat(255), "m".repeat(400));
        let object = parse_borrowed(text.as_bytes()).unwrap();
        assert!(object.get(&"m".repeat(255)).is_some());
        assert!(object.get(&"m".repeat(300)).is_none());
        let duplicate = format!(r#"{{"{0}":1,"{0}":2}}"#, "m".repeat(400));
        assert_eq!(
            parse_borrowed(duplicate.as_bytes()),
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

    /// The hand-written parser against serde_json, the reference: the same texts are accepted,
    /// with the same values, and a text serde_json reads but whose names repeat is refused as a
    /// duplicate by both.
    mod against_serde_json {
        use super::*;
        use proptest::prelude::*;

        fn reference(text: &[u8]) -> Result<Value, Reason> {
            match parse_strict::<StrictValue>(text)? {
                StrictValue(value @ Value::Object(_)) => Ok(value),
                _ => Err(Reason::BadJson),
            }
        }

        /// Equal, except that a decimal may differ in its last places: serde_json's default
        /// float parser is not always correctly rounded (long inputs can be a few units off), and
        /// this one is.
        fn same(a: &Value, b: &Value) -> bool {
            match (a, b) {
                (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                    let (Some(x), Some(y)) = (x.as_f64(), y.as_f64()) else {
                        return false;
                    };
                    x.close_to(y) && (x.is_sign_negative() == y.is_sign_negative())
                }
                (Value::Array(x), Value::Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
                }
                (Value::Object(x), Value::Object(y)) => {
                    x.len() == y.len()
                        && x.iter()
                            .all(|(name, v)| y.get(name).is_some_and(|w| same(v, w)))
                }
                _ => a == b,
            }
        }

        trait CloseTo {
            fn close_to(self, other: f64) -> bool;
        }

        impl CloseTo for f64 {
            /// Within 4 ULPs: relative for normal numbers, and for subnormals (below
            /// `f64::MIN_POSITIVE`, where one ULP is the fixed 4.9e-324) absolute, since a
            /// relative bound there is smaller than one ULP (a CI run found 2.67e-309 one ULP
            /// off). No claim the validator reads as a number is anywhere near that small.
            fn close_to(self, other: f64) -> bool {
                let ulp_of_subnormals = f64::MIN_POSITIVE * f64::EPSILON;
                let difference = (self - other).abs();
                self == other
                    || difference <= 4.0 * f64::EPSILON * self.abs().max(other.abs())
                    || difference <= 4.0 * ulp_of_subnormals
            }
        }

        fn check(text: &[u8]) {
            let expected = reference(text);
            let found = parse_borrowed(text);
            match (&expected, &found) {
                (Ok(expected), Ok(found)) => {
                    assert!(
                        same(expected, &Value::Object(found.to_map())),
                        "{:?}: {expected:?} != {found:?}",
                        String::from_utf8_lossy(text)
                    );
                    if let Value::Object(members) = expected {
                        check_lookups(members, found);
                    }
                }
                // serde_json's float parser overflows on a few decimals that round to f64::MAX.
                (Err(_), Ok(_))
                    if serde_json::from_slice::<Value>(text)
                        .is_err_and(|e| e.to_string().starts_with("number out of range")) => {}
                (Err(_), Err(reason)) => {
                    // Readable JSON with repeated names: both must call it a duplicate.
                    if serde_json::from_slice::<Value>(text).is_ok_and(|v| v.is_object()) {
                        assert_eq!(*reason, Reason::DuplicateMember, "{text:?}");
                    }
                }
                _ => panic!(
                    "{:?}: serde_json {expected:?}, parser {found:?}",
                    String::from_utf8_lossy(text)
                ),
            }
        }

        /// `get` finds each member by its exact name, and a name one byte longer or shorter
        /// only if the object has it too.
        fn check_lookups(members: &Map<String, Value>, found: &Object<'_>) {
            for (name, value) in members {
                let got = found.get(name).map(Json::to_value);
                assert!(
                    got.as_ref().is_some_and(|got| same(value, got)),
                    "get({name:?}): {got:?}, expected {value:?}"
                );
                let mut near = vec![format!("{name}x")];
                if let Some(last) = name.char_indices().last() {
                    near.push(name[..last.0].to_owned());
                }
                for other in near {
                    assert_eq!(
                        found.get(&other).map(Json::to_value).is_some(),
                        members.contains_key(&other),
                        "get({other:?})"
                    );
                }
            }
        }

        fn number() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                any::<u64>().prop_map(|n| n.to_string()),
                any::<f64>().prop_map(|n| format!("{n:e}")),
                any::<f64>().prop_map(|n| n.to_string()),
                "-?(0|[1-9][0-9]{0,25})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?",
                "-?[0-9.eE+-]{1,6}",
                prop::sample::select(vec![
                    "-0",
                    "0",
                    "-0.0",
                    "1e400",
                    "-1e400",
                    "1.7976931348623158e308",
                    "-1.7976931348623157081e308",
                    "1.7976931348623159e308",
                    "1e-400",
                    "18446744073709551615",
                    "18446744073709551616",
                    "-9223372036854775808",
                    "-9223372036854775809",
                    "01",
                    "1.",
                    ".5",
                    "+1",
                    "1e",
                    "-",
                    "2.5E+3",
                    "1E-2",
                ])
                .prop_map(str::to_owned),
            ]
        }

        fn string() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                "[a-z0-9 ]{0,6}",
                prop::sample::select(vec![
                    "\\n",
                    "\\\"",
                    "\\\\",
                    "\\/",
                    "\\b",
                    "\\f",
                    "\\r",
                    "\\t",
                    "\\u0041",
                    "\\u00e9",
                    "\\ud83d\\ude00",
                    "\\ud800",
                    "\\udc00",
                    "\\udfff",
                    "\\ud800x",
                    "\\u12",
                    "\\x",
                    "é",
                    "😀",
                    "\u{7f}",
                    "\t",
                    "\u{1}",
                    "\\u0000",
                    "\\uDBFF\\uDFFF",
                ])
                .prop_map(str::to_owned),
            ];
            prop::collection::vec(piece, 0..4).prop_map(|pieces| format!("\"{}\"", pieces.concat()))
        }

        fn name() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::sample::select(vec![
                    "\"a\"",
                    "\"b\"",
                    "\"sub\"",
                    "\"\\u0073ub\"",
                    "\"\\u0061\"",
                    "\"\"",
                    // Seven bytes alike, then different: only a full comparison tells them apart.
                    "\"tenant_a\"",
                    "\"tenant_b\"",
                    "\"tenant_\"",
                    "\"tenant_ab\"",
                ])
                .prop_map(str::to_owned),
                string(),
            ]
        }

        fn whitespace() -> impl Strategy<Value = String> {
            "[ \t\n\r]{0,2}"
        }

        fn value() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                number(),
                string(),
                prop::sample::select(vec!["true", "false", "null", "tru", "nul", "NaN", "x"])
                    .prop_map(str::to_owned),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    (
                        prop::collection::vec((whitespace(), inner.clone()), 0..6),
                        any::<bool>()
                    )
                        .prop_map(|(items, trailing)| {
                            let items: Vec<String> =
                                items.into_iter().map(|(ws, v)| ws + &v).collect();
                            let comma = if trailing && !items.is_empty() {
                                ","
                            } else {
                                ""
                            };
                            format!("[{}{comma}]", items.join(","))
                        }),
                    object(inner),
                ]
            })
        }

        fn object(value: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
            prop::collection::vec((name(), whitespace(), value), 0..6).prop_map(|members| {
                let members: Vec<String> = members
                    .into_iter()
                    .map(|(name, ws, value)| format!("{ws}{name}{ws}:{value}"))
                    .collect();
                format!("{{{}}}", members.join(","))
            })
        }

        /// A text with one byte changed, inserted or removed.
        fn mutated() -> impl Strategy<Value = Vec<u8>> {
            (
                object(value()),
                any::<prop::sample::Index>(),
                any::<u8>(),
                0..3u8,
            )
                .prop_map(|(text, at, byte, how)| {
                    let mut bytes = text.into_bytes();
                    let at = at.index(bytes.len() + 1);
                    match how {
                        0 if at < bytes.len() => bytes[at] = byte,
                        1 => bytes.insert(at, byte),
                        _ if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => {}
                    }
                    bytes
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 4096, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn generated_texts(text in (whitespace(), object(value()), whitespace(), "[ x,}]{0,1}")
                .prop_map(|(a, b, c, d)| a + &b + &c + &d)) {
                check(text.as_bytes());
            }

            #[test]
            fn mutated_texts(bytes in mutated()) {
                check(&bytes);
            }

            #[test]
            fn values_at_top_level(text in value()) {
                check(text.as_bytes());
            }
        }

        /// The input a CI run's random cases found: a subnormal that the parser reads one ULP
        /// away from serde_json.
        #[test]
        fn subnormal_numbers_agree_within_a_few_ulps() {
            let text = format!("{{\"a\":0.{}26737943449254}}", "0".repeat(308));
            check(text.as_bytes());
            check(b"{\"a\":4.9e-324}");
            check(b"{\"a\":2.2250738585072009e-308}");
        }

        #[test]
        fn nesting_limit_is_serde_jsons() {
            for depth in 120..=132 {
                let text = format!("{{\"a\":{}1{}}}", "[".repeat(depth), "]".repeat(depth));
                check(text.as_bytes());
                let text = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
                check(text.as_bytes());
                assert_eq!(
                    parse_borrowed(text.as_bytes()).is_ok(),
                    depth < 128,
                    "{depth}"
                );
            }
        }
    }
}
