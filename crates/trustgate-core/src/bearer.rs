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
    let text = value.to_str().map_err(|_| malformed)?;
    let Some((scheme, rest)) = text.split_once(' ') else {
        return if text.eq_ignore_ascii_case("bearer") {
            Err(malformed)
        } else {
            Ok(None)
        };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    // A byte scan: `contains` with a char set decodes UTF-8 and was visible in request profiles.
    if token.is_empty() || token.bytes().any(|b| matches!(b, b' ' | b'\t' | b',')) {
        return Err(malformed);
    }
    Ok(Some(token))
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
        let binary = HeaderValue::from_bytes(b"Bearer \xff").unwrap();
        assert_eq!(bearer_token(&binary), Err(malformed));
    }
}
