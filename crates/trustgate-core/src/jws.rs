//! Parsing of untrusted compact JWS text, before any key is involved.
//!
//! Order matters: the size limit comes before any decoding, the shape (exactly three segments)
//! before base64, and strict base64url before JSON. Nothing here trusts the token: `alg` is only
//! used to pick candidate keys whose own algorithm must equal it, and `jku`, `x5u`, `x5c` and `jwk`
//! are never read at all.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use crate::alg::Algorithm;
use crate::error::Reason;
use crate::json::{self, Json};

/// The default maximum token length in bytes.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The protected header fields trustgate acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
    pub(crate) typ: Option<String>,
}

/// A compact JWS whose shape and encoding are valid; its signature is not yet checked.
#[derive(Debug)]
pub(crate) struct UnverifiedJws<'a> {
    /// Shared with this thread's [`HEADER_MEMO`]: a reference count, not a copy.
    pub(crate) header: Rc<Header>,
    /// `BASE64URL(header) || '.' || BASE64URL(payload)`, the bytes the signature covers.
    pub(crate) signing_input: &'a [u8],
    pub(crate) payload: Vec<u8>,
    /// Still encoded: [`UnverifiedJws::signature`] decodes it into the caller's frame, so the
    /// inline buffer is not copied each time the parsed token moves.
    signature_b64: &'a str,
}

impl UnverifiedJws<'_> {
    /// The decoded signature. Its text was checked for shape (non-empty) when parsed; a bad
    /// encoding is refused here, as `Malformed`.
    pub(crate) fn signature(&self) -> Result<Decoded<SIGNATURE_INLINE>, Reason> {
        Decoded::new(self.signature_b64)
    }
}

/// Strict base64url: no padding, only the URL-safe alphabet, no whitespace, and the unused bits of
/// the last character must be zero, so each byte string has exactly one accepted encoding.
///
/// Decoded by `base64-simd`, which picks AVX2, SSSE3 or NEON at run time: this runs over every
/// byte of every uncached token, and its vector steps take 1.6 instructions per character where
/// this project's own table-driven loop took 3.7 (callgrind, RS256 signature). Its strict
/// configuration refuses padding, other alphabets and non-canonical trailing bits; property tests
/// check it against the `base64` crate's engine, which stays the reference.
pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, Reason> {
    // Into uninitialised capacity, which the crate fills before it sets the length: no zeroing
    // pass over a buffer that decoding overwrites anyway.
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(segment)
        .map_err(|_| Reason::Malformed)
}

/// Decoded bytes kept inline when they fit in `N` bytes, on the heap otherwise.
///
/// The inline form saves an allocation per token. It is zeroed when made and copied when the
/// parsed token moves, so `N` is sized to the segment rather than to the largest possible one:
/// [`SIGNATURE_INLINE`] holds an RSA-4096 signature (and every ECDSA and Ed25519 one), and
/// [`HEADER_INLINE`] a usual protected header.
// The inline variant is large on purpose: it lives on the stack for one parse, instead of a heap
// allocation per token.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Decoded<const N: usize> {
    Inline { bytes: [u8; N], len: usize },
    Heap(Vec<u8>),
}

/// Inline space for a signature: RSA-4096. Longer ones (RSA-8192) go to the heap.
pub(crate) const SIGNATURE_INLINE: usize = 512;
/// Inline space for a decoded protected header.
const HEADER_INLINE: usize = 256;

impl<const N: usize> Decoded<N> {
    /// [`decode_segment`] without an allocation for segments up to `N` bytes.
    pub(crate) fn new(segment: &str) -> Result<Self, Reason> {
        let input = segment.as_bytes();
        let len = decoded_len(input)?;
        if len > N {
            return decode_segment(segment).map(Decoded::Heap);
        }
        let mut bytes = [0u8; N];
        decode_into(input, bytes.get_mut(..len).ok_or(Reason::Malformed)?)?;
        Ok(Decoded::Inline { bytes, len })
    }
}

impl<const N: usize> std::ops::Deref for Decoded<N> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Decoded::Inline { bytes, len } => bytes.get(..*len).unwrap_or_default(),
            Decoded::Heap(bytes) => bytes,
        }
    }
}

impl<const N: usize> fmt::Debug for Decoded<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.len())
    }
}

/// The decoded length of `input`, or `Malformed` for a length no encoding has (one character
/// left over encodes no whole byte). The decoder's own rule, so the two cannot disagree.
fn decoded_len(input: &[u8]) -> Result<usize, Reason> {
    base64_simd::URL_SAFE_NO_PAD
        .decoded_length(input)
        .map_err(|_| Reason::Malformed)
}

/// Decodes `input` into `out`, which is exactly [`decoded_len`] bytes long.
fn decode_into(input: &[u8], out: &mut [u8]) -> Result<(), Reason> {
    // base64-simd asserts that `out` is long enough; checking the exact length here keeps a
    // mistake a refusal rather than a panic.
    if decoded_len(input)? != out.len() {
        return Err(Reason::Malformed);
    }
    base64_simd::URL_SAFE_NO_PAD
        .decode(input, base64_simd::Out::from_slice(out))
        .map(drop)
        .map_err(|_| Reason::Malformed)
}

/// Parses a compact JWS without verifying it.
pub(crate) fn parse_compact(token: &str, max_bytes: usize) -> Result<UnverifiedJws<'_>, Reason> {
    if token.len() > max_bytes {
        return Err(Reason::TooLarge);
    }
    if token.starts_with('{') {
        // JWS JSON serialization (general or flattened).
        return Err(Reason::UnsupportedSerialization);
    }
    // `memchr` scans the whole token a vector at a time; splitting on `'.'` went byte by byte.
    let mut dots = memchr::memchr_iter(b'.', token.as_bytes());
    let (Some(first_dot), Some(second_dot)) = (dots.next(), dots.next()) else {
        return Err(Reason::Malformed);
    };
    let extra = dots.count();
    // Dots are ASCII, so these are character boundaries; `get` keeps a mistake a refusal.
    let segment = |range: std::ops::Range<usize>| token.get(range).ok_or(Reason::Malformed);
    let header_b64 = segment(0..first_dot)?;
    let payload_b64 = segment(first_dot + 1..second_dot)?;
    let signature_b64 = segment(second_dot + 1..token.len())?;
    if extra == 2 {
        // Five segments: a JWE. trustgate never decrypts.
        return Err(Reason::UnsupportedSerialization);
    }
    if extra != 0 || header_b64.is_empty() || signature_b64.is_empty() {
        return Err(Reason::Malformed);
    }

    let header = memoized_header(header_b64)?;
    let payload = decode_segment(payload_b64)?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    Ok(UnverifiedJws {
        header,
        signing_input,
        payload,
        signature_b64,
    })
}

/// How many distinct headers each thread keeps: enough for a few issuers or keys in turn.
const HEADER_MEMO_ENTRIES: usize = 4;
/// The longest header text kept, in base64url characters: [`HEADER_INLINE`] decoded bytes.
const HEADER_MEMO_MAX_TEXT: usize = HEADER_INLINE / 3 * 4;

/// The headers this thread parsed last, by their exact base64url text, and the next entry to
/// replace.
///
/// Every token one key signs carries the same protected header, and decoding and parsing it again
/// was about an eighth of the work of an uncached validation. An entry holds what
/// [`parse_header`] returned for exactly that text, and parsing depends on nothing else (no
/// configuration, no key, no time), so a hit returns what parsing the text again would. Only
/// headers that parsed are kept, and a per-thread memo needs no lock.
struct HeaderMemo {
    entries: [Option<(Box<str>, Rc<Header>)>; HEADER_MEMO_ENTRIES],
    next: usize,
}

thread_local! {
    static HEADER_MEMO: RefCell<HeaderMemo> = const {
        RefCell::new(HeaderMemo { entries: [const { None }; HEADER_MEMO_ENTRIES], next: 0 })
    };
}

/// [`parse_header`] of the decoded `text`, through this thread's [`HEADER_MEMO`].
fn memoized_header(text: &str) -> Result<Rc<Header>, Reason> {
    // `try_borrow`: nothing here can re-enter, but a refused borrow only costs a parse.
    let hit = HEADER_MEMO.with(|memo| {
        let memo = memo.try_borrow().ok()?;
        memo.entries
            .iter()
            .flatten()
            .find(|(kept, _)| **kept == *text)
            .map(|(_, header)| Rc::clone(header))
    });
    if let Some(header) = hit {
        return Ok(header);
    }
    let header = Rc::new(parse_header(&Decoded::<HEADER_INLINE>::new(text)?)?);
    if text.len() <= HEADER_MEMO_MAX_TEXT {
        HEADER_MEMO.with(|memo| {
            if let Ok(mut memo) = memo.try_borrow_mut() {
                let next = memo.next;
                if let Some(entry) = memo.entries.get_mut(next) {
                    *entry = Some((text.into(), Rc::clone(&header)));
                }
                memo.next = (next + 1) % HEADER_MEMO_ENTRIES;
            }
        });
    }
    Ok(header)
}

fn parse_header(bytes: &[u8]) -> Result<Header, Reason> {
    // The whole header is parsed first, so malformed JSON and duplicate names anywhere win over
    // every rule below, whose order then decides which reason is reported.
    let members = json::parse_borrowed(bytes)?;
    let (mut alg, mut kid, mut typ, mut b64, mut crit, mut enc) =
        (None, None, None, None, false, false);
    // One pass over the members (names are unique, checked by the parser).
    for (name, value) in members.iter() {
        match name {
            "alg" => alg = Some(value),
            "kid" => kid = Some(value),
            "typ" => typ = Some(value),
            "b64" => b64 = Some(value),
            "crit" => crit = true,
            // `zip` (RFC 7516 §4.1.3) is a JWE header: compressed content is never a JWS payload
            // here, and a decompression step is an attack surface of its own.
            "enc" | "zip" => enc = true,
            _ => {}
        }
    }
    // A `b64` of anything but `true` (RFC 7797) means the payload is not base64url-encoded, which
    // this implementation does not support. `b64: true` is the default and harmless.
    match b64 {
        None | Some(Json::Bool(true)) => {}
        Some(_) => return Err(Reason::UnsupportedSerialization),
    }
    // trustgate understands no JWS extension, so any `crit` is unsupported. RFC 7515 §4.1.11 also
    // forbids an empty or non-array `crit`.
    if crit {
        return Err(Reason::UnsupportedCritical);
    }
    let alg = match alg {
        Some(Json::String(name)) => {
            Algorithm::from_name(name).ok_or(Reason::UnsupportedAlgorithm)?
        }
        Some(_) => return Err(Reason::BadJson),
        None => return Err(Reason::UnsupportedAlgorithm),
    };
    // `enc` or `zip` marks a JWE header even when the segment count was forged to three.
    if enc {
        return Err(Reason::UnsupportedSerialization);
    }
    Ok(Header {
        alg,
        kid: optional_string(kid)?,
        typ: optional_string(typ)?,
    })
}

fn optional_string(value: Option<&Json<'_>>) -> Result<Option<String>, Reason> {
    match value {
        None => Ok(None),
        Some(Json::String(value)) => Ok(Some(value.to_string())),
        Some(_) => Err(Reason::BadJson),
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

        /// Text from the alphabet alone: every length (1 mod 4 included) and every last
        /// character, canonical or not, through several vector steps and the scalar tail.
        #[test]
        fn decoder_matches_the_reference_engine_on_the_alphabet(text in "[A-Za-z0-9_-]{0,160}") {
            prop_assert_eq!(decode_segment(&text).ok(), URL_SAFE_NO_PAD.decode(&text).ok());
        }

        /// One byte of any value at any position of alphabet text, so a bad character is tried in
        /// each lane of a vector step, not only where a short random text happens to put it.
        #[test]
        fn decoder_matches_the_reference_engine_with_one_byte_replaced(
            text in "[A-Za-z0-9_-]{1,160}",
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut input = text.into_bytes();
            let at = at.index(input.len());
            input[at] = byte;
            prop_assert_eq!(decode_bytes(&input), URL_SAFE_NO_PAD.decode(&input).ok());
        }

        /// Both the heap and the inline form, on either side of both inline sizes.
        #[test]
        fn decoder_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            let signature = Decoded::<SIGNATURE_INLINE>::new(&text).map(|d| d.to_vec());
            prop_assert_eq!(signature, Ok(bytes.clone()));
            let header = Decoded::<HEADER_INLINE>::new(&text).map(|d| d.to_vec());
            prop_assert_eq!(header, Ok(bytes.clone()));
            prop_assert_eq!(decode_segment(&text), Ok(bytes));
        }
    }

    /// [`decode_into`] on raw bytes, which need not be UTF-8.
    fn decode_bytes(input: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; decoded_len(input).ok()?];
        decode_into(input, &mut out).ok()?;
        Some(out)
    }

    /// Exhaustive where the property tests sample: each of the 256 byte values at each position
    /// of valid texts up to 100 characters, which covers every lane of the 16- and 32-character
    /// vector steps, the scalar tail after them, and both partial-quad lengths.
    #[test]
    fn every_byte_at_every_position_matches_the_reference_engine() {
        for len in 0..75 {
            let bytes: Vec<u8> = (0..len).map(|i: u8| i.wrapping_mul(37) ^ 0xa5).collect();
            let text = b64(&bytes).into_bytes();
            for at in 0..text.len() {
                for byte in 0..=u8::MAX {
                    let mut input = text.clone();
                    input[at] = byte;
                    assert_eq!(
                        decode_bytes(&input),
                        URL_SAFE_NO_PAD.decode(&input).ok(),
                        "{byte:#04x} at {at} of {}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }
        }
    }

    /// An `out` of the wrong length is refused, not indexed out of bounds.
    #[test]
    fn decode_into_refuses_a_wrong_output_length() {
        for text in ["AAAA", "AAAAAAAA", "AAAAAAAAAAAA", "AAAAAAAAAAAAAA", "AAA"] {
            let len = decoded_len(text.as_bytes()).unwrap();
            for wrong in [0, len - 1, len + 1, len + 6] {
                assert_eq!(
                    decode_into(text.as_bytes(), &mut vec![0; wrong]),
                    Err(Reason::Malformed),
                    "{text} into {wrong} bytes"
                );
            }
            assert_eq!(decode_into(text.as_bytes(), &mut vec![0; len]), Ok(()));
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
        assert_eq!(&*jws.signature().unwrap(), b"sig");
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
        let signature = |sig: &str| {
            parse_compact(&format!("{h}.e30.{sig}"), 9999)
                .unwrap()
                .signature()
                .map(|decoded| decoded.to_vec())
        };
        assert_eq!(signature("c2ln"), Ok(b"sig".to_vec()));
        assert_eq!(signature("c2k"), Ok(b"si".to_vec()));
        for bad in ["c2l", "c2ln=", "c2l+", "c2 ln", "c2l\n"] {
            assert_eq!(signature(bad), Err(Reason::Malformed), "{bad}");
        }
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
            // `zip` (JWE compression) whatever its value, also spelled with an escape.
            (
                r#"{"alg":"ES256","zip":"DEF"}"#,
                Reason::UnsupportedSerialization,
            ),
            (
                r#"{"zip":null,"alg":"ES256"}"#,
                Reason::UnsupportedSerialization,
            ),
            (
                r#"{"alg":"ES256","\u007aip":"DEF"}"#,
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
    fn the_header_memo_returns_what_parsing_returns() {
        // More distinct headers than the memo holds, each seen several times in turn, with
        // texts one byte apart; and headers that fail between them.
        let headers = [
            r#"{"alg":"ES256","kid":"a"}"#,
            r#"{"alg":"ES256","kid":"b"}"#,
            r#"{"alg":"ES384","kid":"a"}"#,
            r#"{"alg":"RS256","kid":"a","typ":"at+jwt"}"#,
            r#"{"alg":"RS256","kid":"a","typ":"JWT"}"#,
            r#"{"alg":"EdDSA"}"#,
            r#"{"alg":"ES256","kid":"a","crit":["x"]}"#,
            r#"{"alg":"none","kid":"a"}"#,
        ];
        let direct = |header: &str| parse_header(header.as_bytes());
        for round in 0..3 {
            // Three is prime to eight: each round visits every header, in another order.
            for i in 0..headers.len() {
                let header = headers[(i * 3 + round) % headers.len()];
                let t = token(header, "{}");
                let memoized = parse_compact(&t, 9999).map(|jws| (*jws.header).clone());
                assert_eq!(memoized, direct(header), "{header}");
            }
        }
        let short = token(headers[0], "{}");
        let kept = parse_compact(&short, 9999).unwrap();
        let again = parse_compact(&short, 9999).unwrap();
        assert!(
            Rc::ptr_eq(&kept.header, &again.header),
            "a repeated header is a hit"
        );
        // A header longer than the memo keeps is parsed every time, and still parses.
        let long = token(
            &format!(r#"{{"alg":"ES256","kid":"{}"}}"#, "k".repeat(300)),
            "{}",
        );
        let first = parse_compact(&long, 9999).unwrap();
        let second = parse_compact(&long, 9999).unwrap();
        assert_eq!(first.header.kid.as_deref(), Some("k".repeat(300).as_str()));
        assert!(!Rc::ptr_eq(&first.header, &second.header));
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
