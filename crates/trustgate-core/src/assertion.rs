//! The gateway assertion contract, written once for both of its sides.
//!
//! The gateway signs an assertion per forwarded request (patterns 2 and 3) that binds the
//! request's method (`htm`), its path and query (`htu`) and the identity headers it injected
//! (`hdr`, name to exact value). A service verifies the signature with a [`Validator`] and then
//! checks the binding with [`check_assertion_binding`]. Both sides read the header name, the claim
//! names and the lifetimes from here, so they cannot drift apart.
//!
//! [`Validator`]: crate::Validator

use std::time::Duration;

use http::{HeaderMap, HeaderName, Method};
use serde_json::{Map, Value};

use crate::error::{AuthError, Reason};
use crate::mint::{InternalSigner, MintError, Minted};

/// The request header that carries a gateway assertion.
pub const ASSERTION_HEADER: &str = "x-trustgate-assertion";
/// The `typ` of gateway assertions (pattern 3 with proof).
pub const ASSERTION_TYP: &str = "trustgate-assertion+jwt";
/// The claim that binds the request method.
pub const ASSERTION_METHOD_CLAIM: &str = "htm";
/// The claim that binds the exact path and query the service receives.
pub const ASSERTION_TARGET_CLAIM: &str = "htu";
/// The claim that binds the injected identity headers: an object of lowercase name to value.
pub const ASSERTION_HEADERS_CLAIM: &str = "hdr";
/// The claims a service requires on every assertion, besides the time claims.
pub const ASSERTION_REQUIRED_CLAIMS: [&str; 4] =
    ["iat", "jti", ASSERTION_METHOD_CLAIM, ASSERTION_TARGET_CLAIM];

/// How long the gateway's assertions are valid: long enough for one hop, short enough that a
/// captured assertion is useless soon after.
pub const ASSERTION_TTL: Duration = Duration::from_secs(30);
/// The longest `exp - iat` a service accepts: twice what the gateway signs, so a gateway with a
/// longer TTL is refused rather than trusted for longer than the contract says.
pub const ASSERTION_MAX_LIFETIME: Duration = Duration::from_secs(60);
/// The clock skew a service allows on an assertion.
pub const ASSERTION_LEEWAY: Duration = Duration::from_secs(5);

/// The request an assertion binds: as the gateway forwards it, or as the service received it.
#[derive(Debug, Clone, Copy)]
pub struct BoundRequest<'a> {
    /// The method.
    pub method: &'a Method,
    /// The exact path and query (the `htu`).
    pub path_and_query: &'a str,
    /// The request headers, identity headers included.
    pub headers: &'a HeaderMap,
}

impl InternalSigner {
    /// Signs a gateway assertion for `audience` (the service) that binds `request`: its method,
    /// its path and query, and the value in `request.headers` of each header in `bound` (a header
    /// that is absent or not visible ASCII is left out). `identity` holds the identity claims to
    /// vouch for. The lifetime is [`ASSERTION_TTL`], capped at `not_after` (seconds since the
    /// epoch): an assertion that vouches for an external token's identity must not vouch for it
    /// longer than that token was valid.
    ///
    /// # Errors
    /// [`MintError::TooShort`] if less than one second of lifetime would remain;
    /// [`MintError::Crypto`] if signing fails.
    pub fn mint_assertion<'n>(
        &self,
        audience: &str,
        request: &BoundRequest<'_>,
        bound: impl IntoIterator<Item = &'n HeaderName>,
        mut identity: Map<String, Value>,
        not_after: Option<i64>,
    ) -> Result<Minted, MintError> {
        let mut listed = Map::new();
        for name in bound {
            if let Some(value) = request.headers.get(name).and_then(|v| v.to_str().ok()) {
                listed.insert(name.as_str().to_owned(), Value::from(value));
            }
        }
        identity.insert(
            ASSERTION_METHOD_CLAIM.into(),
            Value::from(request.method.as_str()),
        );
        identity.insert(
            ASSERTION_TARGET_CLAIM.into(),
            Value::from(request.path_and_query),
        );
        identity.insert(ASSERTION_HEADERS_CLAIM.into(), Value::Object(listed));
        self.mint_within(ASSERTION_TYP, audience, ASSERTION_TTL, not_after, identity)
    }
}

/// Why a verified assertion does not bind a request. For logs ([`BindingMismatch::as_str`]); the
/// client only ever gets the coarse [`AuthError`] it converts into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindingMismatch {
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

impl BindingMismatch {
    /// A stable label for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingMismatch::MissingMethod => "assertion_htm_missing",
            BindingMismatch::Method => "assertion_htm_mismatch",
            BindingMismatch::MissingTarget => "assertion_htu_missing",
            BindingMismatch::Target => "assertion_htu_mismatch",
            BindingMismatch::MissingHeaders => "assertion_hdr_missing",
            BindingMismatch::BadHeaders => "assertion_hdr_malformed",
            BindingMismatch::HeaderAbsent => "assertion_header_absent",
            BindingMismatch::HeaderDuplicated => "assertion_header_duplicated",
            BindingMismatch::HeaderValue => "assertion_header_value_mismatch",
        }
    }
}

impl From<BindingMismatch> for AuthError {
    /// Always 401 `invalid_token`; the precise cause is for the caller to log with
    /// [`BindingMismatch::as_str`].
    fn from(mismatch: BindingMismatch) -> Self {
        match mismatch {
            BindingMismatch::BadHeaders => Reason::UnsafeClaimValue.into(),
            BindingMismatch::MissingMethod
            | BindingMismatch::MissingTarget
            | BindingMismatch::MissingHeaders
            | BindingMismatch::Method
            | BindingMismatch::Target
            | BindingMismatch::HeaderAbsent
            | BindingMismatch::HeaderDuplicated
            | BindingMismatch::HeaderValue => Reason::RequestBinding.into(),
        }
    }
}

/// Checks `htm`, `htu` and `hdr` of verified assertion claims against the request. With
/// `require_headers` (identity-header mode) `hdr` must be present; each header it lists must then
/// appear exactly once with exactly that value.
///
/// # Errors
/// The first [`BindingMismatch`] found.
pub fn check_assertion_binding(
    claims: &Map<String, Value>,
    request: &BoundRequest<'_>,
    require_headers: bool,
) -> Result<(), BindingMismatch> {
    match claims.get(ASSERTION_METHOD_CLAIM) {
        Some(Value::String(htm)) if htm == request.method.as_str() => {}
        Some(Value::String(_)) => return Err(BindingMismatch::Method),
        _ => return Err(BindingMismatch::MissingMethod),
    }
    match claims.get(ASSERTION_TARGET_CLAIM) {
        Some(Value::String(htu)) if !htu.is_empty() => {
            if htu != request.path_and_query {
                return Err(BindingMismatch::Target);
            }
        }
        _ => return Err(BindingMismatch::MissingTarget),
    }
    let listed = match claims.get(ASSERTION_HEADERS_CLAIM) {
        None | Some(Value::Null) if require_headers => {
            return Err(BindingMismatch::MissingHeaders);
        }
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(listed)) => listed,
        Some(_) => return Err(BindingMismatch::BadHeaders),
    };
    for (name, expected) in listed {
        let Value::String(expected) = expected else {
            return Err(BindingMismatch::BadHeaders);
        };
        // The contract lists lowercase names; anything else is not what the gateway writes.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(BindingMismatch::BadHeaders);
        }
        let name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| BindingMismatch::BadHeaders)?;
        let mut values = request.headers.get_all(&name).iter();
        let value = values.next().ok_or(BindingMismatch::HeaderAbsent)?;
        if values.next().is_some() {
            return Err(BindingMismatch::HeaderDuplicated);
        }
        if value.as_bytes() != expected.as_bytes() {
            return Err(BindingMismatch::HeaderValue);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use test_support::header_map as headers;

    use super::*;
    use crate::alg::Algorithm;
    use crate::clock::ManualClock;
    use crate::mint::SignerConfig;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!(),
        }
    }

    fn payload(token: &str) -> Map<String, Value> {
        let segment = token.split('.').nth(1).unwrap();
        let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(segment).unwrap();
        claims(serde_json::from_slice(&bytes).unwrap())
    }

    /// What the builder signs is exactly what the checker accepts, for the same request.
    #[test]
    fn minted_assertions_bind_what_the_checker_checks() {
        let clock = ManualClock::at_secs(1_700_000_000);
        let signer = InternalSigner::generate(
            SignerConfig {
                issuer: "https://trustgate.internal".into(),
                algorithm: Algorithm::EdDSA,
                rotation_interval: Duration::from_secs(3600),
                max_token_ttl: Duration::from_secs(300),
            },
            Arc::new(clock),
        )
        .unwrap();
        let h = headers(&[("x-user-id", "alice"), ("x-user-roles", "admin,user")]);
        let request = BoundRequest {
            method: &Method::POST,
            path_and_query: "/users/me?x=1",
            headers: &h,
        };
        let bound = [
            HeaderName::from_static("x-user-id"),
            HeaderName::from_static("x-tenant-id"),
        ];
        let mut identity = Map::new();
        identity.insert("sub".into(), json!("alice"));
        let minted = signer
            .mint_assertion("users", &request, &bound, identity, Some(1_700_000_010))
            .unwrap();
        assert_eq!(minted.expires_at_ms, 1_700_000_010_000);
        let signed = payload(&minted.token);
        assert_eq!(signed["htm"], json!("POST"));
        assert_eq!(signed["htu"], json!("/users/me?x=1"));
        // An absent bound header is left out, not listed empty.
        assert_eq!(signed["hdr"], json!({"x-user-id": "alice"}));
        assert_eq!(signed["sub"], json!("alice"));
        assert_eq!(signed["aud"], json!("users"));
        assert_eq!(check_assertion_binding(&signed, &request, true), Ok(()));
        let unbounded = signer
            .mint_assertion("users", &request, &bound, Map::new(), None)
            .unwrap();
        assert_eq!(unbounded.expires_at_ms, (1_700_000_000 + 30) * 1000);
    }

    #[test]
    fn binding_checks_method_target_and_each_listed_header() {
        let h = headers(&[("x-user-id", "alice"), ("x-user-roles", "admin,user")]);
        let get = Method::GET;
        let request = BoundRequest {
            method: &get,
            path_and_query: "/users/me?x=1",
            headers: &h,
        };
        let ok = json!({"htm":"GET","htu":"/users/me?x=1",
                        "hdr":{"x-user-id":"alice","x-user-roles":"admin,user"}});
        assert_eq!(
            check_assertion_binding(&claims(ok.clone()), &request, true),
            Ok(())
        );
        let cases = [
            (
                json!({"htu":"/users/me?x=1","hdr":{}}),
                BindingMismatch::MissingMethod,
            ),
            (
                json!({"htm":"get","htu":"/users/me?x=1","hdr":{}}),
                BindingMismatch::Method,
            ),
            (
                json!({"htm":"GET","hdr":{}}),
                BindingMismatch::MissingTarget,
            ),
            (
                json!({"htm":"GET","htu":"/users/me","hdr":{}}),
                BindingMismatch::Target,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1"}),
                BindingMismatch::MissingHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":["x"]}),
                BindingMismatch::BadHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"X-User-Id":"alice"}}),
                BindingMismatch::BadHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":1}}),
                BindingMismatch::BadHeaders,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-tenant-id":"t1"}}),
                BindingMismatch::HeaderAbsent,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":"bob"}}),
                BindingMismatch::HeaderValue,
            ),
            (
                json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":"alice "}}),
                BindingMismatch::HeaderValue,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                check_assertion_binding(&claims(value.clone()), &request, true),
                Err(expected),
                "{value}"
            );
        }
        let dup = headers(&[("x-user-id", "alice"), ("x-user-id", "alice")]);
        let request = BoundRequest {
            headers: &dup,
            ..request
        };
        assert_eq!(
            check_assertion_binding(
                &claims(json!({"htm":"GET","htu":"/users/me?x=1","hdr":{"x-user-id":"alice"}})),
                &request,
                true
            ),
            Err(BindingMismatch::HeaderDuplicated)
        );
        assert_eq!(
            check_assertion_binding(
                &claims(json!({"htm":"GET","htu":"/users/me?x=1"})),
                &request,
                false
            ),
            Ok(())
        );
    }

    #[test]
    fn mismatches_are_coarse_for_the_client() {
        assert_eq!(
            AuthError::from(BindingMismatch::BadHeaders),
            AuthError::InvalidToken(Reason::UnsafeClaimValue)
        );
        assert_eq!(
            AuthError::from(BindingMismatch::Target),
            AuthError::InvalidToken(Reason::RequestBinding)
        );
    }
}
