//! The one parser of `Authorization: Bearer` credentials, shared by the gateway and the service
//! library so that both read a request's token the same way.

use http::HeaderValue;

use crate::error::{AuthError, RequestProblem};
use crate::percent::percent_decode_lenient;

/// The token of an `Authorization` value in exactly the RFC 6750 §2.1 form:
/// `Bearer 1*SP b64token`, the scheme matched case-insensitively (RFC 9110 §11.1).
///
/// A value of another scheme (Basic, …) is not a bearer token: `Ok(None)`. A value that *looks*
/// like a bearer credential but is not exactly that form is a malformed request, never "no
/// token": a gateway that reads `Bearer<TAB>x` or `Basic a, Bearer x` as "no token" lets an
/// upstream, which may read it as a token, receive a credential nobody checked. It looks like one
/// when it starts with `bearer` (any case) or names `bearer` as one of several schemes.
///
/// # Errors
/// [`AuthError::InvalidRequest`] with [`RequestProblem::MalformedAuthorization`]: a bearer-like
/// value not in the exact form, an empty or non-`b64token` credential, or a value that is not
/// visible ASCII whatever its scheme.
pub fn bearer_token(value: &HeaderValue) -> Result<Option<&str>, AuthError> {
    let malformed = AuthError::InvalidRequest(RequestProblem::MalformedAuthorization);
    let bytes = value.as_bytes();
    if let Some(rest) = bytes
        .get(..7)
        .filter(|scheme| scheme[..6].eq_ignore_ascii_case(b"bearer") && scheme[6] == b' ')
        .and_then(|_| bytes.get(7..))
    {
        let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
        let token = rest.get(start..).unwrap_or_default();
        if !is_b64token(token) {
            return Err(malformed);
        }
        // ASCII by the check above, so this cannot fail; it is how safe code gets the `&str`.
        return std::str::from_utf8(token).map(Some).map_err(|_| malformed);
    }
    if names_bearer(bytes) {
        return Err(malformed);
    }
    // Not a bearer credential; but a value that is not visible ASCII is malformed whatever its
    // scheme.
    value.to_str().map_err(|_| malformed)?;
    Ok(None)
}

/// Whether a value that is not in the exact bearer form would still be read as one by someone:
/// it starts with `bearer` (`Bearer<TAB>x`, `Bearerx`, `Bearer`), or one of its words, split at
/// spaces, tabs and commas, is `bearer` (`Basic abc, Bearer x`).
fn names_bearer(bytes: &[u8]) -> bool {
    bytes
        .get(..6)
        .is_some_and(|start| start.eq_ignore_ascii_case(b"bearer"))
        || bytes
            .split(|&b| b == b' ' || b == b'\t' || b == b',')
            .any(|word| word.eq_ignore_ascii_case(b"bearer"))
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// This runs on every request with a token. The class check folds over all bytes with no early
/// exit, so the compiler checks a whole vector of bytes per step; a loop that stops at the first
/// bad byte tests them one at a time, about ten times the instructions for a typical 700-byte
/// token. `-`, `.`, `/` and the digits are one run of ASCII (0x2D..=0x39), so one range test
/// covers them: a quarter fewer instructions than testing the three marks one by one.
fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = token.get(..body_len).unwrap_or_default();
    !body.is_empty()
        && body.iter().fold(0u8, |bad, &b| {
            let letter = (b | 0x20).wrapping_sub(b'a') < 26;
            let dash_to_nine = b.wrapping_sub(b'-') <= b'9' - b'-';
            let mark = (b == b'+') | (b == b'_') | (b == b'~');
            bad | u8::from(!(letter | dash_to_nine | mark))
        }) == 0
}

/// Whether a query string carries an `access_token` parameter (RFC 6750 §2.3), under any
/// spelling an application framework may decode to that name: percent-encoded, any case, and
/// with `.`, `-`, space, `+` or `[` where the `_` is (PHP reads `access.token` and
/// `access[token` as `access_token`). `&` and `;` both separate parameters.
///
/// trustgate never takes a token from the URL: URLs end up in logs, browser history and
/// `Referer` headers. A request carrying one on a validating route is refused, so an upstream is
/// never handed a token the gateway did not check.
pub fn query_has_access_token(query: &str) -> bool {
    // Quick exit for the usual query: every spelling has `cess` or an escape in it.
    let bytes = query.as_bytes();
    if memchr::memchr(b'%', bytes).is_none() && !contains_ignore_case(bytes, b"cess") {
        return false;
    }
    bytes.split(|&b| b == b'&' || b == b';').any(|pair| {
        let name = pair.split(|&b| b == b'=').next().unwrap_or_default();
        is_access_token_name(name)
    })
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window.eq_ignore_ascii_case(needle))
}

fn is_access_token_name(raw: &[u8]) -> bool {
    // Decoded into a new buffer only when there is something to decode.
    let decoded = if raw.contains(&b'%') {
        std::borrow::Cow::Owned(percent_decode_lenient(raw))
    } else {
        std::borrow::Cow::Borrowed(raw)
    };
    let name = decoded.trim_ascii();
    let (Some(head), Some(&joint), Some(tail)) = (name.get(..6), name.get(6), name.get(7..)) else {
        return false;
    };
    let tail = tail.split(|&b| b == b'[').next().unwrap_or_default();
    head.eq_ignore_ascii_case(b"access")
        && matches!(joint, b'_' | b'.' | b'-' | b' ' | b'+' | b'[')
        && tail.eq_ignore_ascii_case(b"token")
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
        for ok in [
            "Bearer abc",
            "bearer abc",
            "BEARER abc",
            "Bearer   abc",
            "Bearer a-b.c_d~e+f/g==",
        ] {
            let token = ok.rsplit(' ').next().unwrap().to_owned();
            assert_eq!(parse(ok), Ok(Some(token)), "{ok}");
        }
        assert_eq!(parse("Basic dXNlcjpwdw=="), Ok(None));
        assert_eq!(parse("Digest username=\"a\", realm=\"b\""), Ok(None));
        // A scheme whose name merely contains the letters is not bearer-like.
        assert_eq!(parse("NotBearer abc"), Ok(None));
        let malformed = AuthError::InvalidRequest(RequestProblem::MalformedAuthorization);
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Bearer a,b",
            "Bearer a\tb",
            "Bearer a=b",
            "Bearer =",
            "Bearer a\"b",
            "Bearer {\"a\":1}",
            // Bearer-like, not the exact form: never "no token".
            "Bearer\tabc",
            "Bearerabc",
            "Bearer,abc",
            "Basic dXNlcjpwdw==, Bearer abc",
            "Basic x,Bearer abc",
            "Digest a=b, bearer abc",
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
    }

    #[test]
    fn access_token_in_the_query_in_every_spelling() {
        for found in [
            "access_token=x",
            "a=1&access_token=x",
            "a=1;access_token=x",
            "ACCESS_TOKEN=x",
            "access%5Ftoken=x",
            "%61ccess_token=x",
            "access%5ftoken",
            "access.token=x",
            "access-token=x",
            "access+token=x",
            "access%20token=x",
            "access[token=x",
            "access_token[]=x",
            "access_token",
            "access_token=",
        ] {
            assert!(query_has_access_token(found), "{found}");
        }
        for not in [
            "",
            "a=1",
            "access=x",
            "token=x",
            "x=access_token",
            "access_tokens=x",
            "my_access_token=x",
            "access__token=x",
            "%",
            "access%5",
        ] {
            assert!(!query_has_access_token(not), "{not}");
        }
    }

    /// The vectorized class check agrees with the byte-by-byte rule for every byte value, at
    /// every position of tokens long and short enough to cover whole vectors and the tail after
    /// them.
    #[test]
    fn every_byte_value_at_every_position() {
        let in_class = |b: u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
        let one_by_one = |t: &[u8]| {
            let body_len = t.len() - t.iter().rev().take_while(|&&b| b == b'=').count();
            body_len > 0 && t[..body_len].iter().all(|&b| in_class(b))
        };
        for len in [1, 7, 31, 33, 100] {
            for at in 0..len {
                for byte in 0..=u8::MAX {
                    let mut token = vec![b'A'; len];
                    token[at] = byte;
                    assert_eq!(
                        is_b64token(&token),
                        one_by_one(&token),
                        "byte {byte:#04x} at {at} of {len}"
                    );
                }
            }
        }
    }
}
