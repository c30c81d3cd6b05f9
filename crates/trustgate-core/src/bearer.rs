//! The one parser of `Authorization: Bearer` credentials, shared by the gateway and the service
//! library so that both read a request's token the same way.

use http::HeaderValue;

use crate::error::{AuthError, RequestProblem};

/// The token of an `Authorization` value with the `Bearer` scheme (matched case-insensitively,
/// RFC 9110 §11.1).
///
/// Another scheme (Basic, …) is not a bearer token: `Ok(None)`. A `Bearer` credential that is
/// empty, not text, or has spaces, tabs or commas inside (RFC 6750 `token68`) is a malformed
/// request.
///
/// # Errors
/// [`AuthError::InvalidRequest`] with [`RequestProblem::MalformedAuthorization`].
pub fn bearer_token(value: &HeaderValue) -> Result<Option<&str>, AuthError> {
    let malformed = AuthError::InvalidRequest(RequestProblem::MalformedAuthorization);
    let bytes = value.as_bytes();
    let Some(space) = memchr::memchr(b' ', bytes) else {
        let text = value.to_str().map_err(|_| malformed)?;
        return if text.eq_ignore_ascii_case("bearer") {
            Err(malformed)
        } else {
            Ok(None)
        };
    };
    let (scheme, rest) = bytes.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Not a bearer token; but a value that is not visible ASCII is malformed whatever its
        // scheme.
        value.to_str().map_err(|_| malformed)?;
        return Ok(None);
    }
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = rest.get(start..).unwrap_or_default();
    // One pass over the token, the long part of the value: visible ASCII (the scheme and the
    // spaces already are, so this is the whole value's check), and no spaces, tabs or commas
    // inside (RFC 6750 `token68`).
    if token.is_empty() || has_byte_outside_token68(token) {
        return Err(malformed);
    }
    // ASCII by the check above, so this cannot fail; it is how safe code gets the `&str`.
    std::str::from_utf8(token).map(Some).map_err(|_| malformed)
}

/// Whether `token` has a control byte, a space, DEL, a non-ASCII byte or a comma.
///
/// This runs on every request with a token. It folds over all bytes with no early exit, so the
/// compiler checks a whole vector of bytes per step; a loop that stops at the first bad byte
/// tests them one at a time, about ten times the instructions for a typical 700-byte token.
fn has_byte_outside_token68(token: &[u8]) -> bool {
    token.iter().fold(0u8, |bad, &b| {
        bad | u8::from(b <= b' ') | u8::from(b >= 0x7f) | u8::from(b == b',')
    }) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str) -> Result<Option<String>, AuthError> {
        let value = HeaderValue::from_str(value).unwrap();
        bearer_token(&value).map(|token| token.map(str::to_owned))
    }

    #[test]
    fn bearer_forms() {
        for ok in ["Bearer abc", "bearer abc", "BEARER abc", "Bearer   abc"] {
            assert_eq!(parse(ok), Ok(Some("abc".to_owned())), "{ok}");
        }
        assert_eq!(parse("Basic dXNlcjpwdw=="), Ok(None));
        let malformed = AuthError::InvalidRequest(RequestProblem::MalformedAuthorization);
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer a\tb",
        ] {
            assert_eq!(parse(bad), Err(malformed), "{bad:?}");
        }
        for binary in [
            &b"Bearer \xff"[..],
            b"Bearer a\xffb",
            b"Basic \xff",
            b"\xff",
        ] {
            let binary = HeaderValue::from_bytes(binary).unwrap();
            assert_eq!(bearer_token(&binary), Err(malformed), "{binary:?}");
        }
        // Another scheme, or no scheme separator at all, is not a bearer token.
        assert_eq!(parse("Bearer\tabc"), Ok(None));
        assert_eq!(parse("Bearerabc"), Ok(None));
    }

    /// The vectorized byte check agrees with the byte-by-byte rule for every byte value, at every
    /// position of tokens long and short enough to cover whole vectors and the tail after them.
    #[test]
    fn every_byte_value_at_every_position() {
        let one_by_one = |t: &[u8]| t.iter().any(|&b| b <= b' ' || b >= 0x7f || b == b',');
        for len in [1, 7, 31, 33, 100] {
            for at in 0..len {
                for byte in 0..=u8::MAX {
                    let mut token = vec![b'A'; len];
                    token[at] = byte;
                    assert_eq!(
                        has_byte_outside_token68(&token),
                        one_by_one(&token),
                        "byte {byte:#04x} at {at} of {len}"
                    );
                }
            }
        }
    }
}
