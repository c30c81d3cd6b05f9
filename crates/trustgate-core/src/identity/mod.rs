//! Turning validated claims into an [`Identity`] whose every value is safe to put in a header.
//!
//! Values are checked byte by byte once, when the token is verified, and kept as ready-made
//! `HeaderValue`s so that a cache hit injects headers without re-encoding. Encoding rules:
//! - control bytes (0x00–0x1F, 0x7F: CR, LF, NUL, TAB, …) make the token fail with
//!   [`Reason::UnsafeClaimValue`]; they are never passed through or silently dropped;
//! - bytes outside printable ASCII (UTF-8 text) and `%` itself are percent-encoded (RFC 3986), so
//!   the header is plain ASCII and decoding is unambiguous;
//! - array members are joined with `,` (roles, other claims) or a space (scopes). A member that
//!   contains the separator is refused, so one role can never read as two.

mod mapping;

pub use mapping::{ClaimMapping, ClaimPath, NumericClaims};

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::HeaderValue;

use crate::error::Reason;
use crate::json::{Json, Object};
use crate::percent::percent_escape;

/// A text value that has passed the header checks, kept in its encoded header form.
#[derive(Debug, Clone)]
struct Safe {
    header: HeaderValue,
    /// The text, only when encoding changed it; otherwise the header's bytes are the text. This
    /// keeps the usual value (printable ASCII) to one allocation per token.
    decoded: Option<Box<str>>,
}

impl Safe {
    fn new(text: &str) -> Result<Self, Reason> {
        let (header, changed) = encoded(text)?;
        Ok(Self {
            header,
            decoded: changed.then(|| text.into()),
        })
    }

    /// [`Safe::new`] for a string built for it: an unchanged value moves into the header.
    fn from_owned(text: String) -> Result<Self, Reason> {
        Ok(match percent_encoded(&text)? {
            Some(encoded) => Self {
                header: header_from(encoded)?,
                decoded: Some(text.into_boxed_str()),
            },
            None => Self {
                header: header_from(text)?,
                decoded: None,
            },
        })
    }

    fn text(&self) -> &str {
        match &self.decoded {
            Some(text) => text,
            // Invariant: an unchanged value passed `encode_header`, so it is printable ASCII and
            // `to_str` cannot fail.
            None => self.header.to_str().unwrap_or_default(),
        }
    }
}

/// Who the caller is, built only from a verified token (or a verified gateway assertion).
///
/// There is no public constructor: holding an `Identity` means validation succeeded.
#[derive(Debug, Clone)]
pub struct Identity {
    issuer: Arc<str>,
    issuer_header: Option<HeaderValue>,
    subject: Option<Safe>,
    roles: List,
    scopes: List,
    tenant: Option<Safe>,
    client: Option<Safe>,
    extra: Vec<(String, Safe)>,
    /// The issuer's rule for numbers, for anything else that reads claims as text.
    numbers: NumericClaims,
}

/// A field of the identity that can be injected as a header.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityField {
    /// The subject.
    Subject,
    /// Roles, comma-joined.
    Roles,
    /// Scopes, space-joined.
    Scopes,
    /// The tenant.
    Tenant,
    /// The OAuth client id.
    Client,
    /// The issuer.
    Issuer,
    /// A claim from [`ClaimMapping::extra`], by its name.
    Claim(String),
}

impl Identity {
    /// Builds the identity from verified claims. `issuer_header` is the issuer's header form,
    /// encoded once per issuer rather than per token.
    pub(crate) fn from_claims(
        issuer: Arc<str>,
        issuer_header: Option<HeaderValue>,
        claims: &Object<'_>,
        mapping: &ClaimMapping,
    ) -> Result<Self, Reason> {
        let numbers = mapping.numbers;
        // An empty string is no value: the field is left out, as if the claim were absent. An
        // injected `X-User-Id: ` would read as "someone, called nothing" to a service that
        // checks only that the header is there, and could match whatever it stores with an
        // empty owner.
        let single = |value: Option<&Json<'_>>| -> Result<Option<Safe>, Reason> {
            match value {
                None => Ok(None),
                Some(Json::String(text)) if text.is_empty() => Ok(None),
                Some(value) => Safe::new(&scalar(value, numbers)?).map(Some),
            }
        };
        let subject = single(mapping.subject.lookup(claims))?;
        let roles = List::from_claim(
            mapping.roles.as_ref().and_then(|p| p.lookup(claims)),
            ',',
            numbers,
        )?;
        let scopes = List::from_claim(
            mapping.scopes.iter().find_map(|p| p.lookup(claims)),
            ' ',
            numbers,
        )?;
        let tenant = single(mapping.tenant.as_ref().and_then(|p| p.lookup(claims)))?;
        let client = single(mapping.client.iter().find_map(|p| p.lookup(claims)))?;
        let mut extra = Vec::with_capacity(mapping.extra.len());
        for (name, path) in &mapping.extra {
            let safe = match path.lookup(claims) {
                // An empty array is no value either, as for roles and scopes.
                Some(Json::Array(items)) if items.is_empty() => None,
                Some(Json::Array(items)) => Some(Safe::from_owned(joined(items, ',', numbers)?)?),
                other => single(other)?,
            };
            if let Some(safe) = safe {
                extra.push((name.clone(), safe));
            }
        }
        Ok(Self {
            issuer,
            issuer_header,
            subject,
            roles,
            scopes,
            tenant,
            client,
            extra,
            numbers,
        })
    }

    /// The issuer that vouched for this identity.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The subject (`sub` by default).
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_ref().map(Safe::text)
    }

    /// The roles.
    pub fn roles(&self) -> &[String] {
        self.roles.items()
    }

    /// Whether the identity has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains(role)
    }

    /// The scopes.
    pub fn scopes(&self) -> &[String] {
        self.scopes.items()
    }

    /// Whether the identity has `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// The tenant.
    pub fn tenant(&self) -> Option<&str> {
        self.tenant.as_ref().map(Safe::text)
    }

    /// The OAuth client id.
    pub fn client(&self) -> Option<&str> {
        self.client.as_ref().map(Safe::text)
    }

    /// How the issuer's numbers read as text ([`ClaimMapping::numbers`]): a check comparing a
    /// claim with text uses [`NumericClaims::integer_text`] with it, as the identity did.
    pub fn numeric_claims(&self) -> NumericClaims {
        self.numbers
    }

    /// A mapped extra claim, as text.
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.text())
    }

    /// The ready-to-inject header value for `field`, if the identity has it.
    pub fn header_value(&self, field: &IdentityField) -> Option<HeaderValue> {
        match field {
            IdentityField::Subject => self.subject.as_ref().map(|s| s.header.clone()),
            IdentityField::Roles => self.roles.joined.as_ref().map(|s| s.header.clone()),
            IdentityField::Scopes => self.scopes.joined.as_ref().map(|s| s.header.clone()),
            IdentityField::Tenant => self.tenant.as_ref().map(|s| s.header.clone()),
            IdentityField::Client => self.client.as_ref().map(|s| s.header.clone()),
            IdentityField::Issuer => self.issuer_header.clone(),
            IdentityField::Claim(name) => self
                .extra
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.header.clone()),
        }
    }
}

fn scalar<'a>(value: &'a Json<'_>, numbers: NumericClaims) -> Result<Cow<'a, str>, Reason> {
    match value {
        Json::String(s) => Ok(Cow::Borrowed(s)),
        Json::Number(n) => numbers
            .integer_text(n)
            .map(Cow::Owned)
            .ok_or(Reason::UnsafeClaimValue),
        Json::Bool(b) => Ok(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => Err(Reason::UnsafeClaimValue),
    }
}

/// Roles or scopes: kept as their joined header form, which is all the gateway injects. The
/// list of items is built only if something asks for it, which saves an allocation per item on
/// every uncached token. Splitting the joined text gives the items back exactly, because an item
/// that is empty or contains the separator is refused when the list is built.
#[derive(Debug, Clone)]
struct List {
    joined: Option<Safe>,
    separator: char,
    items: OnceLock<Vec<String>>,
}

impl List {
    /// From a claim that is an array of scalars, one scalar, or (for scopes) a space-separated
    /// string, whose empty pieces are skipped.
    fn from_claim(
        value: Option<&Json<'_>>,
        separator: char,
        numbers: NumericClaims,
    ) -> Result<Self, Reason> {
        let joined = match value {
            None => None,
            Some(Json::Array(items)) if items.is_empty() => None,
            Some(Json::Array(items)) => Some(joined(items, separator, numbers)?),
            Some(Json::String(text)) if separator == ' ' => {
                // The usual scope string is already in joined form: single spaces between
                // non-empty items, none at either end. It is then taken as it is; its control
                // bytes are refused with the header encoding below, as any item's would be.
                let single_spaced = !text.starts_with(' ')
                    && !text.ends_with(' ')
                    && !text.as_bytes().windows(2).any(|pair| pair == b"  ");
                if single_spaced && !text.is_empty() {
                    Some(String::from(&**text))
                } else {
                    let mut out = String::with_capacity(text.len());
                    for piece in text.split(' ').filter(|piece| !piece.is_empty()) {
                        push_item(&mut out, piece, separator)?;
                    }
                    (!out.is_empty()).then_some(out)
                }
            }
            Some(other) => {
                let item = scalar(other, numbers)?;
                check_item(&item, separator)?;
                Some(item.into_owned())
            }
        };
        Ok(Self {
            joined: joined.map(Safe::from_owned).transpose()?,
            separator,
            items: OnceLock::new(),
        })
    }

    /// The items, read back from the joined text.
    fn pieces(&self) -> impl Iterator<Item = &str> {
        self.joined
            .iter()
            .flat_map(|joined| joined.text().split(self.separator))
    }

    fn items(&self) -> &[String] {
        self.items
            .get_or_init(|| self.pieces().map(str::to_owned).collect())
    }

    fn contains(&self, item: &str) -> bool {
        self.pieces().any(|have| have == item)
    }
}

/// The scalars of an array, joined with `separator`.
fn joined(items: &[Json<'_>], separator: char, numbers: NumericClaims) -> Result<String, Reason> {
    // Exact for the usual array of strings: a string whose length equals its capacity becomes a
    // header without another allocation.
    let capacity = items
        .iter()
        .map(|item| match item {
            Json::String(text) => text.len() + 1,
            _ => 8,
        })
        .sum::<usize>();
    let mut out = String::with_capacity(capacity.saturating_sub(1));
    for item in items {
        push_item(&mut out, &scalar(item, numbers)?, separator)?;
    }
    Ok(out)
}

/// Appends one list item, refusing an item that is empty, contains the separator (it would read
/// as two), starts or ends with a space (a reader splitting the list trims it, and would read
/// another item than the one checked here) or has a control byte.
fn push_item(out: &mut String, item: &str, separator: char) -> Result<(), Reason> {
    check_item(item, separator)?;
    if !out.is_empty() {
        out.push(separator);
    }
    out.push_str(item);
    Ok(())
}

fn check_item(item: &str, separator: char) -> Result<(), Reason> {
    // One pass for both byte rules. The separators are ASCII, so comparing bytes is exact.
    let refused = |b: u8| b < 0x20 || b == 0x7f || u32::from(b) == u32::from(separator);
    if item.is_empty() || item.starts_with(' ') || item.ends_with(' ') || item.bytes().any(refused)
    {
        return Err(Reason::UnsafeClaimValue);
    }
    Ok(())
}

/// Encodes `text` for a header value: control bytes are refused, non-ASCII and `%` are
/// percent-encoded, and so is a space at either end (HTTP drops it from a field value, RFC 9110
/// §5.5, so the receiver would read another value); other printable ASCII passes unchanged.
pub fn encode_header(text: &str) -> Result<HeaderValue, Reason> {
    encoded(text).map(|(header, _)| header)
}

/// [`encode_header`], and whether encoding changed the text.
fn encoded(text: &str) -> Result<(HeaderValue, bool), Reason> {
    match percent_encoded(text)? {
        Some(encoded) => Ok((header_from(encoded)?, true)),
        None => HeaderValue::from_str(text)
            .map(|header| (header, false))
            .map_err(|_| Reason::UnsafeClaimValue),
    }
}

fn header_from(text: String) -> Result<HeaderValue, Reason> {
    HeaderValue::from_maybe_shared(Bytes::from(text)).map_err(|_| Reason::UnsafeClaimValue)
}

/// Refuses control bytes; returns the percent-encoded form if `text` needs one.
fn percent_encoded(text: &str) -> Result<Option<String>, Reason> {
    let bytes = text.as_bytes();
    let (control, needs_encoding) = classify(bytes);
    if control {
        return Err(Reason::UnsafeClaimValue);
    }
    let edge_space = text.starts_with(' ') || text.ends_with(' ');
    if !needs_encoding && !edge_space {
        return Ok(None);
    }
    let last = bytes.len().saturating_sub(1);
    let mut encoded = String::with_capacity(text.len() + 16);
    for (i, &b) in bytes.iter().enumerate() {
        if b >= 0x80 || b == b'%' || (b == b' ' && (i == 0 || i == last)) {
            percent_escape(&mut encoded, b);
        } else {
            encoded.push(char::from(b));
        }
    }
    Ok(Some(encoded))
}

/// Whether `bytes` holds a control byte (below 0x20, or DEL), and whether it holds a byte that
/// is percent-encoded (non-ASCII, or `%`). Eight bytes per step ([`crate::swar`]), because this
/// runs over every claim value of every uncached token.
fn classify(bytes: &[u8]) -> (bool, bool) {
    use crate::swar::{below, load, splat, zero_bytes};
    let (mut control, mut encode) = (0, 0);
    let mut test = |word: u64| {
        control |= below(word, 0x20) | zero_bytes(word ^ splat(0x7f));
        encode |= (word & splat(0x80)) | zero_bytes(word ^ splat(b'%'));
    };
    let words = bytes.chunks_exact(8);
    // The last few bytes, padded with a letter, which is neither kind.
    let mut last = [b'a'; 8];
    last.iter_mut()
        .zip(words.remainder())
        .for_each(|(to, from)| *to = *from);
    for chunk in words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        test(load(&word));
    }
    test(load(&last));
    (control != 0, encode != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn identity(claims: Value, mapping: &ClaimMapping) -> Result<Identity, Reason> {
        let text = claims.to_string();
        let object = crate::json::parse_borrowed(text.as_bytes())?;
        Identity::from_claims(Arc::from("https://idp"), None, &object, mapping)
    }

    #[test]
    fn classify_matches_a_byte_by_byte_reference() {
        let reference = |bytes: &[u8]| {
            (
                bytes.iter().any(|&b| b < 0x20 || b == 0x7f),
                bytes.iter().any(|&b| b >= 0x80 || b == b'%'),
            )
        };
        // Every byte value at every position of every length across two words, among letters;
        // then next to each byte value that borrows or carries at a word's edge.
        for len in 1..=17 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'm'; len];
                    bytes[at] = b;
                    assert_eq!(classify(&bytes), reference(&bytes), "{bytes:?}");
                    for neighbour in [0x00, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff, b'%'] {
                        if at + 1 < len {
                            bytes[at + 1] = neighbour;
                            assert_eq!(classify(&bytes), reference(&bytes), "{bytes:?}");
                        }
                    }
                }
            }
        }
        assert_eq!(classify(b""), (false, false));
    }

    #[test]
    fn maps_defaults_and_dotted_paths() {
        let mapping = ClaimMapping {
            roles: Some(ClaimPath::parse("realm_access.roles").unwrap()),
            extra: vec![("email".into(), ClaimPath::parse("email").unwrap())],
            ..ClaimMapping::default()
        };
        let id = identity(
            json!({"sub":"u1","realm_access":{"roles":["admin","user"]},"scope":"read write",
                   "tenant_id":"t1","azp":"web","email":"a@b.c"}),
            &mapping,
        )
        .unwrap();
        assert_eq!(id.subject(), Some("u1"));
        assert_eq!(id.roles(), ["admin", "user"]);
        assert_eq!(
            id.header_value(&IdentityField::Roles).unwrap(),
            "admin,user"
        );
        assert_eq!(
            id.header_value(&IdentityField::Scopes).unwrap(),
            "read write"
        );
        assert!(id.has_scope("write") && !id.has_scope("admin"));
        assert_eq!(id.tenant(), Some("t1"));
        assert_eq!(id.client(), Some("web"));
        assert_eq!(id.claim("email"), Some("a@b.c"));
        assert_eq!(
            id.header_value(&IdentityField::Claim("email".into()))
                .unwrap(),
            "a@b.c"
        );
    }

    #[test]
    fn control_bytes_fail_the_token() {
        let mapping = ClaimMapping::default();
        for bad in ["a\r\nX-Admin: 1", "a\n", "a\0", "a\tb", "a\u{7f}"] {
            assert_eq!(
                identity(json!({"sub": bad}), &mapping).err(),
                Some(Reason::UnsafeClaimValue),
                "{bad:?}"
            );
            assert_eq!(
                identity(json!({"sub":"ok","roles":["x", bad]}), &mapping).err(),
                Some(Reason::UnsafeClaimValue)
            );
            assert_eq!(
                identity(json!({"sub":"ok","tenant_id": bad}), &mapping).err(),
                Some(Reason::UnsafeClaimValue)
            );
            // A scope string taken whole (single-spaced) and one split into items.
            for scope in [format!("read {bad}"), format!(" read  {bad}")] {
                assert_eq!(
                    identity(json!({"sub":"ok","scope": scope}), &mapping).err(),
                    Some(Reason::UnsafeClaimValue),
                    "{scope:?}"
                );
            }
        }
    }

    #[test]
    fn separators_inside_members_are_refused() {
        let mapping = ClaimMapping::default();
        assert_eq!(
            identity(json!({"roles":["admin,user"]}), &mapping).err(),
            Some(Reason::UnsafeClaimValue)
        );
        assert_eq!(
            identity(json!({"scp":["a b"]}), &mapping).err(),
            Some(Reason::UnsafeClaimValue)
        );
        assert_eq!(
            identity(json!({"sub":{"id":1}}), &mapping).err(),
            Some(Reason::UnsafeClaimValue)
        );
        // A reader splitting `X-User-Roles` trims each item: " admin" would read as "admin",
        // which the gateway's own role checks do not see.
        for roles in [
            json!([" admin"]),
            json!(["user", "admin "]),
            json!(" admin"),
        ] {
            assert_eq!(
                identity(json!({"roles": roles}), &mapping).err(),
                Some(Reason::UnsafeClaimValue),
                "{roles}"
            );
        }
        // A single value keeps its spaces, encoded where HTTP would drop them.
        let id = identity(json!({"sub":" alice "}), &mapping).unwrap();
        assert_eq!(id.subject(), Some(" alice "));
        assert_eq!(
            id.header_value(&IdentityField::Subject).unwrap(),
            "%20alice%20"
        );
    }

    /// A number never reads as the string of its digits unless the operator opts in, and then
    /// only an integer kept exactly is written; nothing is rounded.
    #[test]
    fn numbers_are_refused_by_default_and_written_exactly_when_allowed() {
        let unsafe_value = Some(Reason::UnsafeClaimValue);
        let strict = ClaimMapping::default();
        let integers = ClaimMapping {
            numbers: NumericClaims::Integers,
            ..ClaimMapping::default()
        };
        let claims = |tenant: serde_json::Value| json!({"sub":"u","tenant_id": tenant});
        assert_eq!(identity(claims(json!(12345)), &strict).err(), unsafe_value);
        assert_eq!(
            identity(json!({"sub":"u","roles":["a", 7]}), &strict).err(),
            unsafe_value
        );
        let text = identity(claims(json!("12345")), &strict).unwrap();
        assert_eq!(text.tenant(), Some("12345"));
        let number = identity(claims(json!(12345)), &integers).unwrap();
        assert_eq!(number.tenant(), Some("12345"));
        let big = identity(claims(json!(u64::MAX)), &integers).unwrap();
        assert_eq!(
            big.header_value(&IdentityField::Tenant).unwrap(),
            "18446744073709551615"
        );
        let negative = identity(claims(json!(i64::MIN)), &integers).unwrap();
        assert_eq!(negative.tenant(), Some("-9223372036854775808"));
        // The identity carries its rule, for checks that compare claims with text.
        assert_eq!(text.numeric_claims(), NumericClaims::Refuse);
        assert_eq!(number.numeric_claims(), NumericClaims::Integers);
        let n = serde_json::Number::from(12345);
        assert_eq!(NumericClaims::Refuse.integer_text(&n), None);
        assert_eq!(
            NumericClaims::Integers.integer_text(&n).as_deref(),
            Some("12345")
        );
        let float = serde_json::Number::from_f64(1.2345678901234568e29).unwrap();
        assert_eq!(NumericClaims::Integers.integer_text(&float), None);
        // Through the real parser: a 30-digit integer, a fraction and an exponent are refused,
        // never rounded.
        for text in [
            "123456789012345678901234567890",
            "1.5",
            "1e3",
            "18446744073709551616",
        ] {
            let claims = format!(r#"{{"sub":"u","tenant_id":{text}}}"#);
            let parsed = crate::json::parse_borrowed(claims.as_bytes()).unwrap();
            let result = Identity::from_claims("iss".into(), None, &parsed, &integers);
            assert_eq!(result.err(), unsafe_value, "{text}");
        }
    }

    #[test]
    fn lists_read_back_from_their_joined_form() {
        let mapping = ClaimMapping {
            extra: vec![("groups".into(), ClaimPath::parse("groups").unwrap())],
            numbers: NumericClaims::Integers,
            ..ClaimMapping::default()
        };
        let id = identity(
            json!({"roles":["ops",7,true,"Zoë"],"scope":"  read   write ","groups":[]}),
            &mapping,
        )
        .unwrap();
        assert_eq!(id.roles(), ["ops", "7", "true", "Zoë"]);
        assert!(id.has_role("Zoë") && id.has_role("7") && !id.has_role("op"));
        assert_eq!(
            id.header_value(&IdentityField::Roles).unwrap(),
            "ops,7,true,Zo%C3%AB"
        );
        assert_eq!(id.scopes(), ["read", "write"]);
        assert_eq!(
            id.header_value(&IdentityField::Scopes).unwrap(),
            "read write"
        );
        assert!(!id.has_scope("") && !id.has_scope("read write"));
        // An empty array is no value, as for roles and scopes.
        assert_eq!(id.claim("groups"), None);
        assert_eq!(
            id.header_value(&IdentityField::Claim("groups".into())),
            None
        );
        // No roles, an empty array and a blank scope string all mean no list and no header.
        for claims in [json!({}), json!({"roles":[],"scope":"  "})] {
            let id = identity(claims, &mapping).unwrap();
            assert!(id.roles().is_empty() && id.scopes().is_empty());
            assert!(!id.has_role("") && !id.has_scope(""));
            assert_eq!(id.header_value(&IdentityField::Roles), None);
            assert_eq!(id.header_value(&IdentityField::Scopes), None);
        }
        // One scalar is a list of one.
        let id = identity(json!({"roles":"admin"}), &mapping).unwrap();
        assert_eq!(id.roles(), ["admin"]);
    }

    #[test]
    fn empty_strings_are_no_value_and_no_header() {
        let mapping = ClaimMapping {
            extra: vec![("email".into(), ClaimPath::parse("email").unwrap())],
            ..ClaimMapping::default()
        };
        let id = identity(
            json!({"sub":"","tenant_id":"","client_id":"","email":""}),
            &mapping,
        )
        .unwrap();
        assert_eq!(id.subject(), None);
        assert_eq!(id.tenant(), None);
        assert_eq!(id.client(), None);
        assert_eq!(id.claim("email"), None);
        for field in [
            IdentityField::Subject,
            IdentityField::Tenant,
            IdentityField::Client,
            IdentityField::Claim("email".into()),
        ] {
            assert_eq!(id.header_value(&field), None, "{field:?}");
        }
        // The first client path present is the one read, even when it is empty: an empty
        // `client_id` does not fall through to `azp`.
        let id = identity(json!({"client_id":"","azp":"web"}), &mapping).unwrap();
        assert_eq!(id.client(), None);
        // A space is a value (encoded, so HTTP does not trim it away).
        let id = identity(json!({"sub":" "}), &mapping).unwrap();
        assert_eq!(id.subject(), Some(" "));
        assert_eq!(id.header_value(&IdentityField::Subject).unwrap(), "%20");
    }

    #[test]
    fn non_ascii_and_percent_are_encoded() {
        assert_eq!(encode_header("José").unwrap(), "Jos%C3%A9");
        assert_eq!(encode_header("50%").unwrap(), "50%25");
        assert_eq!(encode_header("plain value").unwrap(), "plain value");
        // HTTP trims a field value: a space at either end is encoded, so it reaches the
        // receiver, and only there.
        assert_eq!(encode_header(" alice ").unwrap(), "%20alice%20");
        assert_eq!(encode_header("  a b  ").unwrap(), "%20 a b %20");
        assert_eq!(encode_header(" ").unwrap(), "%20");
        // The identity keeps the text as the token had it, and the header encoded.
        let id = identity(
            json!({"sub":"José","tenant_id":"t-1"}),
            &ClaimMapping::default(),
        )
        .unwrap();
        assert_eq!(id.subject(), Some("José"));
        assert_eq!(
            id.header_value(&IdentityField::Subject).unwrap(),
            "Jos%C3%A9"
        );
        assert_eq!(id.tenant(), Some("t-1"));
    }
}
