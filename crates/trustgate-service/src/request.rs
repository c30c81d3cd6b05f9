//! Reading credentials from a request. Whether a gateway assertion binds the request is checked
//! by trustgate-core's `check_assertion_binding`, the same module the gateway signs it with.
//!
//! A request carries at most one credential of each kind: two `Authorization` headers or two
//! assertion headers are refused with 400 `invalid_request`, so the credential checked is always
//! the only one a handler could see.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};
use trustgate_core::{AuthError, Reason, RequestProblem};

/// The header that carries the gateway assertion.
pub(crate) const ASSERTION_HEADER: HeaderName =
    HeaderName::from_static(trustgate_core::ASSERTION_HEADER);

/// The `Authorization: Bearer` token, if any. Another scheme (Basic, …) is not a bearer token.
pub(crate) fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = single(headers, &AUTHORIZATION)? else {
        return Ok(None);
    };
    // One parser for the gateway and the services: a request reads the same everywhere.
    trustgate_core::bearer_token(value)
}

/// Refuses an `access_token` query parameter (RFC 6750 §2.3): a service never takes a token from
/// the URL, and a handler must not find one there that nothing checked.
pub(crate) fn refuse_token_in_query(uri: &http::Uri) -> Result<(), AuthError> {
    if uri
        .query()
        .is_some_and(trustgate_core::query_has_access_token)
    {
        return Err(AuthError::InvalidRequest(RequestProblem::TokenInQuery));
    }
    Ok(())
}

/// The gateway assertion, if any.
pub(crate) fn assertion(headers: &HeaderMap) -> Result<Option<&str>, AuthError> {
    let Some(value) = single(headers, &ASSERTION_HEADER)? else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(text) if !text.is_empty() && !text.contains([' ', '\t', ',']) => Ok(Some(text)),
        _ => Err(Reason::Malformed.into()),
    }
}

/// The only value of `name`; two values are two credentials.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(RequestProblem::MultipleTokens));
    }
    Ok(first)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use test_support::header_map as headers;

    use super::*;

    #[test]
    fn bearer_forms() {
        for ok in ["Bearer abc", "bearer abc", "BEARER   abc"] {
            let h = headers(&[("authorization", ok)]);
            assert_eq!(bearer_token(&h).unwrap(), Some("abc"), "{ok}");
        }
        assert_eq!(
            bearer_token(&headers(&[("authorization", "Basic dTpw")])).unwrap(),
            None
        );
        assert_eq!(bearer_token(&HeaderMap::new()).unwrap(), None);
        for bad in ["Bearer", "Bearer ", "Bearer a b", "Bearer a,b"] {
            assert_eq!(
                bearer_token(&headers(&[("authorization", bad)])),
                Err(AuthError::InvalidRequest(
                    RequestProblem::MalformedAuthorization
                )),
                "{bad}"
            );
        }
        let two = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer a")]);
        assert_eq!(
            bearer_token(&two),
            Err(AuthError::InvalidRequest(RequestProblem::MultipleTokens))
        );
        let two = headers(&[
            ("x-trustgate-assertion", "a"),
            ("x-trustgate-assertion", "b"),
        ]);
        assert_eq!(
            assertion(&two),
            Err(AuthError::InvalidRequest(RequestProblem::MultipleTokens))
        );
    }
}
