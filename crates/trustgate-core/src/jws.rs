//! Parsing of untrusted compact JWS text, before any key is involved.
//!
//! Order matters: the size limit comes before any decoding, the shape (exactly three segments)
//! before base64, and strict base64url before JSON. Nothing here trusts the token: `alg` is only
//! used to pick candidate keys whose own algorithm must equal it, and `jku`, `x5u`, `x5c` and `jwk`
//! are never read at all.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use crate::alg::Algorithm;
use crate::error::Reason;
use crate::json::{self, Json};

/// The default maximum token length in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The protected header fields trustgate acts on.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// A compact JWS whose shape and encoding are valid; its signature is not yet checked.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'a> {
    pub(crate) header: Header,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: Vec<u8>,
    pub(crate) signature: Decoded,
}

/// Strict base64url: no padding, only the URL-safe alphabet, no whitespace, and the unused bits of
/// the last character must be zero, so each byte string has exactly one accepted encoding.
///
/// Written out rather than taken from the `base64` crate: this runs over every byte of every
/// uncached token, where the crate's general engine cost about three times as many instructions.
/// A property test checks it against that engine, which stays the reference.
pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, Reason> {
    let mut out = vec![0u8; decoded_len(segment.as_bytes())?];
    decode_into(segment.as_bytes(), &mut out)?;
    Ok(out)
}

/// Decoded bytes kept inline when they fit: a signature of any supported algorithm (at most
/// 1,024 bytes, RSA-8192) and the usual header need no allocation.
// The inline variant is large on purpose: it lives on the stack for one parse, instead of a heap
// allocation per token.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoded {
    Inline {
        bytes: [u8; INLINE_BYTES],
        len: usize,
    },
    Heap(Vec<u8>),
}

const INLINE_BYTES: usize = 1024;

impl Decoded {
    /// [`decode_segment`] without an allocation for segments up to [`INLINE_BYTES`].
    pub(crate) fn new(segment: &str) -> Result<Self, Reason> {
        let input = segment.as_bytes();
        let len = decoded_len(input)?;
        if len > INLINE_BYTES {
            return decode_segment(segment).map(Decoded::Heap);
        }
        let mut bytes = [0u8; INLINE_BYTES];
        decode_into(input, bytes.get_mut(..len).ok_or(Reason::Malformed)?)?;
        Ok(Decoded::Inline { bytes, len })
    }
}

impl std::ops::Deref for Decoded {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Decoded::Inline { bytes, len } => bytes.get(..*len).unwrap_or_default(),
            Decoded::Heap(bytes) => bytes,
        }
    }
}

impl fmt::Debug for Decoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

/// The decoded length of `input`, or `Malformed` for a length no encoding has.
fn decoded_len(input: &[u8]) -> Result<usize, Reason> {
    let tail = match input.len() % 4 {
        0 => 0,
        2 => 1,
        3 => 2,
        // One character left over encodes no whole byte.
        _ => return Err(Reason::Malformed),
    };
    Ok(input.len() / 4 * 3 + tail)
}

/// Decodes `input` into `out`, which is exactly [`decoded_len`] bytes long.
fn decode_into(input: &[u8], out: &mut [u8]) -> Result<(), Reason> {
    let quads = input.chunks_exact(4);
    let tail = quads.remainder();
    let (body, end) = out.split_at_mut(input.len() / 4 * 3);
    // Fixed-size steps over both sides, so the loop has no bounds checks or capacity checks.
    for (quad, triple) in quads.zip(body.chunks_exact_mut(3)) {
        let (a, b, c, d) = (
            sextet(quad[0]),
            sextet(quad[1]),
            sextet(quad[2]),
            sextet(quad[3]),
        );
        // Valid sextets are below 64; `INVALID` has its top bits set.
        if (a | b | c | d) & !0x3f != 0 {
            return Err(Reason::Malformed);
        }
        let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        let [_, x, y, z] = n.to_be_bytes();
        triple.copy_from_slice(&[x, y, z]);
    }
    match (tail, end) {
        ([], []) => Ok(()),
        (&[a, b], [first]) => {
            let (a, b) = (sextet(a), sextet(b));
            // The last character carries 4 unused bits, which must be zero.
            if (a | b) & !0x3f != 0 || b & 0x0f != 0 {
                return Err(Reason::Malformed);
            }
            *first = a << 2 | b >> 4;
            Ok(())
        }
        (&[a, b, c], [first, second]) => {
            let (a, b, c) = (sextet(a), sextet(b), sextet(c));
            // The last character carries 2 unused bits, which must be zero.
            if (a | b | c) & !0x3f != 0 || c & 0x03 != 0 {
                return Err(Reason::Malformed);
            }
            *first = a << 2 | b >> 4;
            *second = b << 4 | c >> 2;
            Ok(())
        }
        // `out` has the length `decoded_len` gave for this input.
        _ => Err(Reason::Malformed),
    }
}

const INVALID: u8 = 0xff;

/// The value of one base64url character, or [`INVALID`].
fn sextet(byte: u8) -> u8 {
    BASE64URL[usize::from(byte)]
}

static BASE64URL: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < alphabet.len() {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Parses a compact JWS without verifying it.
pub(crate) fn parse_compact(token: &str, max_bytes: usize) -> Result<UnverifiedJws<'_>, Reason> {
    if token.len() > max_bytes {
        return Err(Reason::TooLarge);
    }
    if token.starts_with('{') {
        // JWS JSON serialization (general or flattened).
        return Err(Reason::UnsupportedSerialization);
    }
    let mut segments = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64)) =
        (segments.next(), segments.next(), segments.next())
    else {
        return Err(Reason::Malformed);
    };
    let extra = segments.count();
    if extra == 2 {
        // Five segments: a JWE. trustgate never decrypts.
        return Err(Reason::UnsupportedSerialization);
    }
    if extra != 0 || header_b64.is_empty() || signature_b64.is_empty() {
        return Err(Reason::Malformed);
    }

    let header = parse_header(&Decoded::new(header_b64)?)?;
    let payload = decode_segment(payload_b64)?;
    let signature = Decoded::new(signature_b64)?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    Ok(UnverifiedJws {
        header,
        signing_input,
        payload,
        signature,
    })
}

fn parse_header(bytes: &[u8]) -> Result<Header, Reason> {
    // The whole header is parsed first, so malformed JSON and duplicate names anywhere win over
    // every rule below, whose order then decides which reason is reported.
    let members: HeaderMembers = json::parse_strict(bytes)?;
    // A `b64` of anything but `true` (RFC 7797) means the payload is not base64url-encoded, which
    // this implementation does not support. `b64: true` is the default and harmless.
    match members.b64 {
        None | Some(Json::Bool(true)) => {}
        Some(_) => return Err(Reason::UnsupportedSerialization),
    }
    // trustgate understands no JWS extension, so any `crit` is unsupported. RFC 7515 §4.1.11 also
    // forbids an empty or non-array `crit`.
    if members.crit {
        return Err(Reason::UnsupportedCritical);
    }
    let alg = match &members.alg {
        Some(Json::String(name)) => {
            Algorithm::from_name(name).ok_or(Reason::UnsupportedAlgorithm)?
        }
        Some(_) => return Err(Reason::BadJson),
        None => return Err(Reason::UnsupportedAlgorithm),
    };
    // `enc` marks a JWE header even when the segment count was forged to three.
    if members.enc {
        return Err(Reason::UnsupportedSerialization);
    }
    Ok(Header {
        alg,
        kid: optional_string(members.kid)?,
        typ: optional_string(members.typ)?,
    })
}

fn optional_string(value: Option<Json<'_>>) -> Result<Option<String>, Reason> {
    match value {
        None => Ok(None),
        Some(Json::String(value)) => Ok(Some(value.into_owned())),
        Some(_) => Err(Reason::BadJson),
    }
}

/// The header members the rules read, collected in one pass.
///
/// Performance: this runs for every uncached token. Collecting the few members we act on, rather
/// than building a whole `Map` and cloning out of it, saves about six allocations and the map's
/// comparisons per token. Strictness is unchanged: every member value, read or not, is parsed as
/// a borrowed [`Json`] (duplicate names refused at every depth), and the top-level names are
/// checked for duplicates here.
#[derive(Default)]
struct HeaderMembers<'a> {
    alg: Option<Json<'a>>,
    kid: Option<Json<'a>>,
    typ: Option<Json<'a>>,
    b64: Option<Json<'a>>,
    crit: bool,
    enc: bool,
}

/// A top-level header member name; known names need no allocation.
enum HeaderName {
    Alg,
    Kid,
    Typ,
    B64,
    Crit,
    Enc,
    Other(String),
}

impl<'de> Deserialize<'de> for HeaderName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl Visitor<'_> for NameVisitor {
            type Value = HeaderName;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            // Called with the name after unescaping, so `"\u0061lg"` is `alg`.
            fn visit_str<E: de::Error>(self, name: &str) -> Result<HeaderName, E> {
                Ok(match name {
                    "alg" => HeaderName::Alg,
                    "kid" => HeaderName::Kid,
                    "typ" => HeaderName::Typ,
                    "b64" => HeaderName::B64,
                    "crit" => HeaderName::Crit,
                    "enc" => HeaderName::Enc,
                    other => HeaderName::Other(other.to_owned()),
                })
            }
        }
        deserializer.deserialize_str(NameVisitor)
    }
}

impl<'de> Deserialize<'de> for HeaderMembers<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MembersVisitor;
        impl<'de> Visitor<'de> for MembersVisitor {
            type Value = HeaderMembers<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<HeaderMembers<'de>, A::Error> {
                let mut members = HeaderMembers::default();
                // A set, not a list: a header can carry a thousand short names within 8 KiB.
                let mut others: BTreeSet<String> = BTreeSet::new();
                while let Some(name) = access.next_key::<HeaderName>()? {
                    let value: Json<'de> = access.next_value()?;
                    let duplicate = match name {
                        HeaderName::Alg => members.alg.replace(value).is_some(),
                        HeaderName::Kid => members.kid.replace(value).is_some(),
                        HeaderName::Typ => members.typ.replace(value).is_some(),
                        HeaderName::B64 => members.b64.replace(value).is_some(),
                        HeaderName::Crit => std::mem::replace(&mut members.crit, true),
                        HeaderName::Enc => std::mem::replace(&mut members.enc, true),
                        HeaderName::Other(name) => !others.insert(name),
                    };
                    if duplicate {
                        return Err(json::duplicate_member());
                    }
                }
                Ok(members)
            }
        }
        deserializer.deserialize_map(MembersVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The hand-written decoder accepts exactly what the `base64` crate's strict URL-safe,
        /// no-padding engine accepts, and decodes it to the same bytes.
        #[test]
        fn decoder_matches_the_reference_engine(text in "[A-Za-z0-9_+/=\\- .\n]{0,24}") {
            prop_assert_eq!(decode_segment(&text).ok(), URL_SAFE_NO_PAD.decode(&text).ok());
        }

        /// Both the heap and the inline form, on either side of the inline size.
        #[test]
        fn decoder_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert_eq!(Decoded::new(&text).map(|d| d.to_vec()), Ok(bytes.clone()));
            prop_assert_eq!(decode_segment(&text), Ok(bytes));
        }
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn token(header: &str, payload: &str) -> String {
        format!(
            "{}.{}.{}",
            b64(header.as_bytes()),
            b64(payload.as_bytes()),
            b64(b"sig")
        )
    }

    #[test]
    fn parses_a_well_formed_token() {
        let t = token(
            r#"{"alg":"ES256","kid":"k1","typ":"at+jwt"}"#,
            r#"{"sub":"a"}"#,
        );
        let jws = parse_compact(&t, DEFAULT_MAX_TOKEN_BYTES).unwrap();
        assert_eq!(jws.header.alg, Algorithm::ES256);
        assert_eq!(jws.header.kid.as_deref(), Some("k1"));
        assert_eq!(jws.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(jws.payload, br#"{"sub":"a"}"#);
        assert_eq!(&*jws.signature, b"sig");
        let dot = t.rfind('.').unwrap();
        assert_eq!(jws.signing_input, &t.as_bytes()[..dot]);
    }

    #[test]
    fn size_limit_applies_before_decoding() {
        let big = "!".repeat(DEFAULT_MAX_TOKEN_BYTES + 1);
        assert_eq!(
            parse_compact(&big, DEFAULT_MAX_TOKEN_BYTES).unwrap_err(),
            Reason::TooLarge
        );
        let t = token(r#"{"alg":"ES256"}"#, "{}");
        assert_eq!(
            parse_compact(&t, t.len() - 1).unwrap_err(),
            Reason::TooLarge
        );
        assert!(parse_compact(&t, t.len()).is_ok());
    }

    #[test]
    fn segment_counts() {
        let h = b64(br#"{"alg":"ES256"}"#);
        assert_eq!(parse_compact(&h, 9999).unwrap_err(), Reason::Malformed);
        assert_eq!(
            parse_compact(&format!("{h}.e30"), 9999).unwrap_err(),
            Reason::Malformed
        );
        assert_eq!(
            parse_compact(&format!("{h}.e30."), 9999).unwrap_err(),
            Reason::Malformed
        );
        assert_eq!(
            parse_compact(&format!("{h}.e30.c2ln.x"), 9999).unwrap_err(),
            Reason::Malformed
        );
        assert_eq!(
            parse_compact(&format!("{h}.a.b.c.d"), 9999).unwrap_err(),
            Reason::UnsupportedSerialization
        );
        assert_eq!(
            parse_compact(r#"{"payload":"e30","signatures":[]}"#, 9999).unwrap_err(),
            Reason::UnsupportedSerialization
        );
        assert_eq!(
            parse_compact(".e30.c2ln", 9999).unwrap_err(),
            Reason::Malformed
        );
        assert_eq!(parse_compact("", 9999).unwrap_err(), Reason::Malformed);
    }

    #[test]
    fn base64_is_strict() {
        let h = b64(br#"{"alg":"ES256"}"#);
        for bad_payload in ["e30=", "e3 0", "e3\n0", "e3+0", "e3/0", "e31", "e3%30"] {
            let t = format!("{h}.{bad_payload}.c2ln");
            assert_eq!(
                parse_compact(&t, 9999).unwrap_err(),
                Reason::Malformed,
                "{bad_payload}"
            );
        }
        // "e31" and "e30" differ only in unused bits: only the canonical form is accepted.
        assert!(parse_compact(&format!("{h}.e30.c2ln"), 9999).is_ok());
        assert!(parse_compact(&format!("{h}.e30.c2k"), 9999).is_ok());
        assert_eq!(
            parse_compact(&format!("{h}.e30.c2l"), 9999).unwrap_err(),
            Reason::Malformed
        );
    }

    #[test]
    fn header_rules() {
        let cases: &[(&str, Reason)] = &[
            (r#"{"alg":"none"}"#, Reason::UnsupportedAlgorithm),
            (r#"{"alg":"NONE"}"#, Reason::UnsupportedAlgorithm),
            (r#"{"alg":"HS256"}"#, Reason::UnsupportedAlgorithm),
            (r#"{"alg":"ES512"}"#, Reason::UnsupportedAlgorithm),
            (r#"{}"#, Reason::UnsupportedAlgorithm),
            (r#"{"alg":256}"#, Reason::BadJson),
            (r#"{"alg":"ES256","alg":"none"}"#, Reason::DuplicateMember),
            (r#"{"alg":"none","alg":"ES256"}"#, Reason::DuplicateMember),
            (
                r#"{"alg":"ES256","crit":["exp"],"exp":1}"#,
                Reason::UnsupportedCritical,
            ),
            (r#"{"alg":"ES256","crit":[]}"#, Reason::UnsupportedCritical),
            (
                r#"{"alg":"ES256","b64":false,"crit":["b64"]}"#,
                Reason::UnsupportedSerialization,
            ),
            (
                r#"{"alg":"ES256","b64":false}"#,
                Reason::UnsupportedSerialization,
            ),
            (r#"{"alg":"ES256","kid":7}"#, Reason::BadJson),
            (
                r#"{"alg":"ES256","enc":"A128GCM"}"#,
                Reason::UnsupportedSerialization,
            ),
            (r#"["alg"]"#, Reason::BadJson),
        ];
        for (header, want) in cases {
            let t = token(header, "{}");
            assert_eq!(parse_compact(&t, 9999).unwrap_err(), *want, "{header}");
        }
    }

    #[test]
    fn key_carrying_headers_are_ignored_not_used() {
        let t = token(
            r#"{"alg":"ES256","jku":"http://127.0.0.1:1/","x5u":"http://127.0.0.1:1/","jwk":{"kty":"EC"},"x5c":["AA"]}"#,
            "{}",
        );
        let jws = parse_compact(&t, 9999).unwrap();
        assert_eq!(jws.header.alg, Algorithm::ES256);
        assert_eq!(jws.header.kid, None);
    }
}
