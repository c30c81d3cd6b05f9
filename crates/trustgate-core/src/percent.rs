//! Percent-encoding (RFC 3986 §2.1), one implementation for the engine, the service library and
//! the gateway.
//!
//! Three decoders, because three callers need three different answers:
//! - [`percent_decode`] is strict: a `%` not followed by two hex digits is an error. For values we
//!   must read exactly as their writer meant (identity headers).
//! - [`percent_decode_lenient`] decodes as application frameworks do, leaving anything that is not
//!   an escape as it is. For recognising a name another parser would read as a credential's.
//! - [`percent_escaped_byte`] decodes one escape at a position, for a caller that walks the input
//!   itself and decides escape by escape (path normalization).

/// Upper-case hex digits: RFC 3986 §2.1 makes them the canonical spelling of an escape.
const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `byte` is in RFC 3986's unreserved set (`ALPHA / DIGIT / - . _ ~`), whose encoded and
/// decoded forms are equivalent.
pub fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// The value of one hex digit, either case.
pub fn hex_digit_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Appends the escape of `byte` (`%` and two upper-case hex digits) to `out`.
pub fn percent_escape(out: &mut String, byte: u8) {
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 0x0F)]));
}

/// The byte that the escape starting at `bytes[at]` encodes, when `bytes[at]` is `%` and two hex
/// digits follow; `None` otherwise.
pub fn percent_escaped_byte(bytes: &[u8], at: usize) -> Option<u8> {
    if bytes.get(at) != Some(&b'%') {
        return None;
    }
    let high = bytes.get(at + 1).copied().and_then(hex_digit_value)?;
    let low = bytes.get(at + 2).copied().and_then(hex_digit_value)?;
    Some((high << 4) | low)
}

/// Encodes every byte outside the unreserved set, so the result is safe in any URI component and
/// any header value.
pub fn percent_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if is_unreserved(byte) {
            out.push(char::from(byte));
        } else {
            percent_escape(&mut out, byte);
        }
    }
    out
}

/// Decodes `%XX` escapes strictly: `None` when a `%` is not followed by two hex digits. Other
/// bytes are kept as they are.
pub fn percent_decode(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            out.push(percent_escaped_byte(bytes, i)?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    Some(out)
}

/// One lenient percent-decoding, as application frameworks apply to parameter and cookie names:
/// `%` and two hex digits become that byte; anything else, a stray `%` included, stays as it is.
/// Used to recognise a name another parser would read as a credential's.
pub fn percent_decode_lenient(raw: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        // `from_str_radix`, not `hex_digit_value`: it also reads a sign (`%+a` is a newline), as
        // Java's `URLDecoder` (`Integer.parseInt(.., 16)`) does. Reading more escapes than
        // strictly valid ones only makes the look-alike checks refuse more.
        let escaped = (b == b'%')
            .then(|| raw.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                decoded.push(byte);
                i += 3;
            }
            None => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    decoded
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(percent_encode(b"a b/%\xc3\xa9~"), "a%20b%2F%25%C3%A9~");
        assert_eq!(
            percent_decode(b"Jos%C3%A9"),
            Some("José".as_bytes().to_vec())
        );
        assert_eq!(percent_decode(b"%e9%E9"), Some(vec![0xe9, 0xe9]));
        for bad in [&b"50%"[..], b"%", b"%4", b"%zz", b"%+a", b"a%4g"] {
            assert_eq!(percent_decode(bad), None, "{bad:?}");
        }
        assert_eq!(percent_decode_lenient(b"50%"), b"50%");
        assert_eq!(percent_decode_lenient(b"%zz%41"), b"%zzA");
        assert_eq!(percent_decode_lenient(b"%+a"), b"\n");
        assert_eq!(percent_escaped_byte(b"a%2F", 1), Some(b'/'));
        assert_eq!(percent_escaped_byte(b"a%2F", 0), None);
        assert_eq!(percent_escaped_byte(b"%2", 0), None);
    }

    proptest! {
        /// Encoding round-trips through both decoders, and writes only unreserved bytes and
        /// escapes with upper-case hex digits.
        #[test]
        fn encode_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let encoded = percent_encode(&bytes);
            prop_assert_eq!(percent_decode(encoded.as_bytes()), Some(bytes.clone()));
            prop_assert_eq!(percent_decode_lenient(encoded.as_bytes()), bytes);
            let out = encoded.as_bytes();
            let mut i = 0;
            while i < out.len() {
                if out[i] == b'%' {
                    let hex = &out[i + 1..i + 3];
                    prop_assert!(
                        hex.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)),
                        "{}", encoded
                    );
                    i += 3;
                } else {
                    prop_assert!(is_unreserved(out[i]), "{}", encoded);
                    i += 1;
                }
            }
        }

        /// Where the strict decoder succeeds, the lenient one reads the same bytes.
        #[test]
        fn strict_and_lenient_agree_on_valid_input(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'%'), Just(b'a'), Just(b'F'), Just(b'0'), Just(b'+'), any::<u8>()],
                0..32,
            )
        ) {
            if let Some(strict) = percent_decode(&bytes) {
                prop_assert_eq!(percent_decode_lenient(&bytes), strict);
            }
        }
    }
}
