//! Reading credentials from a request, and checking that a gateway assertion binds this request.
//!
//! A request carries at most one credential of each kind: two `Authorization` headers or two
//! assertion headers are refused with 400 `invalid_request`, so the credential checked is always
//! the only one a handler could see.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde_json::{Map, Value};
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

/// Why a verified assertion does not bind this request. Logged at debug level, never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// `htm` is absent or not a string.
    MissingMethod,
    /// `htm` names another method.
    Method,
    /// `htu` is absent, empty or not a string.
    MissingTarget,
    /// `htu` names another path or query.
    Target,
    /// `hdr` is required (identity-header mode) and absent.
    MissingHeaders,
    /// `hdr` is not an object of strings, or names an invalid header.
    BadHeaders,
    /// A header listed in `hdr` is absent from the request.
    HeaderAbsent,
    /// A header listed in `hdr` appears more than once.
    HeaderDuplicated,
    /// A header listed in `hdr` has another value.
    HeaderValue,
}

impl Mismatch {
    /// A stable label for logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mismatch::MissingMethod => "assertion_htm_missing",
            Mismatch::Method => "assertion_htm_mismatch",
            Mismatch::MissingTarget => "assertion_htu_missing",
            Mismatch::Target => "assertion_htu_mismatch",
            Mismatch::MissingHeaders => "assertion_hdr_missing",
            Mismatch::BadHeaders => "assertion_hdr_malformed",
            Mismatch::HeaderAbsent => "assertion_header_absent",
            Mismatch::HeaderDuplicated => "assertion_header_duplicated",
            Mismatch::HeaderValue => "assertion_header_value_mismatch",
        }
    }

    /// The coarse error the client gets: always 401 `invalid_token`.
    pub(crate) fn to_error(self) -> AuthError {
        // The precise cause is logged by the caller with `as_str`.
        match self {
            Mismatch::BadHeaders => Reason::UnsafeClaimValue.into(),
            Mismatch::MissingMethod
            | Mismatch::MissingTarget
            | Mismatch::MissingHeaders
            | Mismatch::Method
            | Mismatch::Target
            | Mismatch::HeaderAbsent
            | Mismatch::HeaderDuplicated
            | Mismatch::HeaderValue => Reason::RequestBinding.into(),
        }
    }
}

/// What an assertion is checked against.
pub(crate) struct Binding<'a> {
    pub(crate) method: &'a Method,
    /// The exact path and query the service received.
    pub(crate) target: &'a str,
    pub(crate) headers: &'a HeaderMap,
    /// Whether `hdr` must be present (identity-header mode).
    pub(crate) require_headers: bool,
}

/// Checks `htm`, `htu` and `hdr` of verified assertion claims against the request.
pub(crate) fn check_binding(
    claims: &Map<String, Value>,
    request: &Binding<'_>,
) -> Result<(), Mismatch> {
    match claims.get("htm") {
        Some(Value::String(htm)) if htm == request.method.as_str() => {}
        Some(Value::String(_)) => return Err(Mismatch::Method),
        _ => return Err(Mismatch::MissingMethod),
    }
    match claims.get("htu") {
        Some(Value::String(htu)) if !htu.is_empty() => {
            if htu != request.target {
                return Err(Mismatch::Target);
            }
        }
        _ => return Err(Mismatch::MissingTarget),
    }
    let listed = match claims.get("hdr") {
        None | Some(Value::Null) if request.require_headers => {
            return Err(Mismatch::MissingHeaders);
        }
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(listed)) => listed,
        Some(_) => return Err(Mismatch::BadHeaders),
    };
    for (name, expected) in listed {
        let Value::String(expected) = expected else {
            return Err(Mismatch::BadHeaders);
        };
        // The contract lists lowercase names; anything else is not what the gateway writes.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(Mismatch::BadHeaders);
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| Mismatch::BadHeaders)?;
        let mut values = request.headers.get_all(&name).iter();
        let value = values.next().ok_or(Mismatch::HeaderAbsent)?;
        if values.next().is_some() {
            return Err(Mismatch::HeaderDuplicated);
        }
        if value.as_bytes() != expected.as_bytes() {
            return Err(Mismatch::HeaderValue);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

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

    #[test]
    fn binding_checks_method_target_and_each_listed_header() {
        let h = headers(&[("x-user-id", "alice"), ("x-user-roles", "admin,user")]);
        let get = Method::GET;
        let request = Binding {
            method: &get,
            target: "/users/me?x=1",
            headers: &h,
            require_headers: true,
        };
        let ok = json!({"htm":"GET","htu":"/users/me?x=1",
                        "hdr":{"x-user-id":"alice","x-user-roles":"admin,user"}});
        assert_eq!(check_binding(&claims(ok.clone()), &request), Ok(()));
        let cases = [
            (
                json!({"htu":"/users/me?x=1","hdr":{}}),
                Mismatch::MissingMethod,
            ),
            (
                json!({"htm":"get","htu":"/users/me?x=1","hdr":{}}),
                Mismatch::Method,
            ),
            (json!({"htm":"GET","hdr":{}}), Mismatch::MissingTarget),
            (
                json!({"htm":"GET","htu":"/users/me","hdr":{}}),
                Mismatch::Target,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1"}),
                Mismatch::MissingHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":["x"]}),
                Mismatch::BadHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"X-User-Id":"alice"}}),
                Mismatch::BadHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":1}}),
                Mismatch::BadHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-tenant-id":"t1"}}),
                Mismatch::HeaderAbsent,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":"bob"}}),
                Mismatch::HeaderValue,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":"alice "}}),
                Mismatch::HeaderValue,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                check_binding(&claims(value.clone()), &request),
                Err(expected),
                "{value}"
            );
        }
        let dup = headers(&[("x-user-id", "alice"), ("x-user-id", "alice")]);
        let request = Binding {
            headers: &dup,
            ..request
        };
        assert_eq!(
            check_binding(
                &claims(json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":"alice"}})),
                &request
            ),
            Err(Mismatch::HeaderDuplicated)
        );
        let optional = Binding {
            require_headers: false,
            ..request
        };
        assert_eq!(
            check_binding(
                &claims(json!({"htm":"GET","htu":"/users/me?x=1"})),
                &optional
            ),
            Ok(())
        );
    }
}
