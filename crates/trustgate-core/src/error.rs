//! Request-time errors and the single place where they become RFC 6750 responses.
//!
//! Two error worlds: configuration errors ([`crate::ConfigError`]) are detailed and written for the
//! operator; request errors ([`AuthError`]) are coarse. The fine-grained [`Reason`] is for logs and
//! metrics only, and [`AuthError::to_response`] never puts it, the token or any claim in a response.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::GrpcCode;

/// Why a request was refused, as coarse as the client is allowed to learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The request carried no token where one is required.
    #[error("no bearer token")]
    MissingToken,
    /// The token failed validation; the reason is for logs and metrics only.
    #[error("invalid token: {0}")]
    InvalidToken(Reason),
    /// The token is valid but lacks a required scope, role or claim value.
    #[error("insufficient scope")]
    InsufficientScope,
    /// The request itself is malformed (for example, two tokens, or a client-sent identity header
    /// in `reject` mode).
    #[error("invalid request: {0}")]
    InvalidRequest(RequestProblem),
    /// No usable keys are available for the token's issuer (the issuer has never been reachable, or
    /// its keys are older than the configured maximum staleness). Retrying later may succeed.
    #[error("keys unavailable")]
    KeysUnavailable,
}

/// Fine-grained cause of an [`AuthError::InvalidToken`]. Logged at debug level and counted in
/// metrics; never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Longer than the configured size limit; rejected before any decoding.
    TooLarge,
    /// Not three base64url segments, or a segment is not strict base64url.
    Malformed,
    /// JWE, JWS JSON serialization or an unencoded (`b64: false`) payload.
    UnsupportedSerialization,
    /// Header or payload is not strict UTF-8 JSON object text.
    BadJson,
    /// A JSON object has the same member name twice.
    DuplicateMember,
    /// `crit` names an extension this implementation does not understand.
    UnsupportedCritical,
    /// `alg` is `none`, HMAC or otherwise unknown.
    UnsupportedAlgorithm,
    /// `alg` is known but not on the issuer's allow-list.
    AlgorithmNotAllowed,
    /// `iss` is missing, not a string, or not a configured issuer.
    UnknownIssuer,
    /// No key with the token's `kid` (after a rate-limited refetch).
    UnknownKey,
    /// Keys exist, but none matches the token's `alg`.
    NoMatchingKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is required and absent.
    MissingExpiry,
    /// `exp` is in the past (beyond leeway).
    Expired,
    /// `nbf` is in the future (beyond leeway).
    NotYetValid,
    /// `iat` is in the future (beyond leeway).
    IssuedInFuture,
    /// A date claim is not a number in range.
    BadDateClaim,
    /// `exp - iat` (or `exp - now`) exceeds the configured maximum lifetime.
    LifetimeTooLong,
    /// `aud` is absent, wrongly typed, or names none of the configured audiences.
    BadAudience,
    /// The header `typ` is not the required one.
    BadType,
    /// A required claim is absent.
    MissingClaim,
    /// A claim bound for an HTTP header contains control bytes, or is of the wrong type.
    UnsafeClaimValue,
    /// `sub` is present but not a JSON string (RFC 7519 §4.1.2: a StringOrURI). A number there
    /// would otherwise read as the same identity as its digits in a string.
    BadSubject,
    /// The token's issuer is not accepted on this route.
    IssuerNotAccepted,
    /// A gateway assertion does not match this request (method, path or bound headers), or lacks
    /// the claims that bind it.
    RequestBinding,
    /// A gateway assertion whose `jti` this service has already accepted once.
    Replayed,
    /// A valid token that an operator revoked before its `exp` (by its `jti`, or every token of
    /// its subject issued before a cut-off).
    Revoked,
}

impl Reason {
    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::UnsupportedSerialization => "unsupported_serialization",
            Reason::BadJson => "bad_json",
            Reason::DuplicateMember => "duplicate_member",
            Reason::UnsupportedCritical => "unsupported_crit",
            Reason::UnsupportedAlgorithm => "unsupported_alg",
            Reason::AlgorithmNotAllowed => "alg_not_allowed",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::UnknownKey => "unknown_kid",
            Reason::NoMatchingKey => "no_matching_key",
            Reason::BadSignature => "bad_signature",
            Reason::MissingExpiry => "missing_exp",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "iat_in_future",
            Reason::BadDateClaim => "bad_date_claim",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::BadAudience => "bad_audience",
            Reason::BadType => "bad_typ",
            Reason::MissingClaim => "missing_claim",
            Reason::UnsafeClaimValue => "unsafe_claim_value",
            Reason::BadSubject => "bad_sub",
            Reason::IssuerNotAccepted => "issuer_not_accepted",
            Reason::RequestBinding => "request_binding",
            Reason::Replayed => "replayed",
            Reason::Revoked => "revoked",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Reason> for AuthError {
    fn from(reason: Reason) -> Self {
        AuthError::InvalidToken(reason)
    }
}

/// What was wrong with a request (as opposed to its token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RequestProblem {
    /// More than one token: two Authorization headers, or a header and a cookie.
    MultipleTokens,
    /// An Authorization header that is not a well-formed `Bearer` credential.
    MalformedAuthorization,
    /// A client sent an identity header and the route is in `reject` mode.
    ClientIdentityHeader,
    /// An `access_token` query parameter (RFC 6750 §2.3) on a route that checks tokens:
    /// trustgate never takes a token from the URL, and never forwards one it did not check.
    TokenInQuery,
    /// A `Cookie` header that is not visible text, on a route that reads its token from a cookie:
    /// what it holds cannot be checked, so it cannot be forwarded.
    UnreadableCookie,
    /// An identity header sent twice to a service that reads the identity from headers: one
    /// request carries one identity, and which of two a handler would see is not for it to guess.
    DuplicateIdentityHeader,
}

impl RequestProblem {
    /// A stable label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestProblem::MultipleTokens => "multiple_tokens",
            RequestProblem::MalformedAuthorization => "malformed_authorization",
            RequestProblem::ClientIdentityHeader => "client_identity_header",
            RequestProblem::TokenInQuery => "token_in_query",
            RequestProblem::UnreadableCookie => "unreadable_cookie",
            RequestProblem::DuplicateIdentityHeader => "duplicate_identity_header",
        }
    }
}

impl std::fmt::Display for RequestProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AuthError {
    /// A stable label for metrics: the coarse kind, or the fine reason for invalid tokens.
    pub fn label(&self) -> &'static str {
        match self {
            AuthError::MissingToken => "missing_token",
            AuthError::InvalidToken(reason) => reason.as_str(),
            AuthError::InsufficientScope => "insufficient_scope",
            AuthError::InvalidRequest(problem) => problem.as_str(),
            AuthError::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The HTTP status this error maps to.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            AuthError::InsufficientScope => StatusCode::FORBIDDEN,
            AuthError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            AuthError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The gRPC status code this error maps to: 16 UNAUTHENTICATED for missing or invalid
    /// credentials, 7 PERMISSION_DENIED for insufficient scope, 3 INVALID_ARGUMENT for a
    /// malformed request, 14 UNAVAILABLE when the issuer's keys are.
    pub fn grpc_code(&self) -> GrpcCode {
        match self {
            AuthError::MissingToken | AuthError::InvalidToken(_) => GrpcCode::Unauthenticated,
            AuthError::InsufficientScope => GrpcCode::PermissionDenied,
            AuthError::InvalidRequest(_) => GrpcCode::InvalidArgument,
            AuthError::KeysUnavailable => GrpcCode::Unavailable,
        }
    }

    /// [`AuthError::to_response`] for a gRPC call (see [`crate::is_grpc`]): the same headers,
    /// `WWW-Authenticate` included, as an HTTP 200 trailers-only response with
    /// [`AuthError::grpc_code`] and the RFC 6750 error code as `grpc-message`.
    pub fn to_grpc_response(&self) -> Response<Bytes> {
        let message = match self {
            AuthError::MissingToken => "unauthenticated",
            AuthError::InvalidToken(_) => "invalid_token",
            AuthError::InsufficientScope => "insufficient_scope",
            AuthError::InvalidRequest(_) => "invalid_request",
            AuthError::KeysUnavailable => "temporarily_unavailable",
        };
        crate::grpc_refusal(self.to_response(), self.grpc_code(), message)
    }

    /// The one mapping from request errors to RFC 6750 responses, shared by the gateway and the
    /// service library.
    ///
    /// - no token: 401 with `WWW-Authenticate: Bearer` and no `error` attribute (RFC 6750 §3.1);
    /// - invalid token: 401 `error="invalid_token"`;
    /// - insufficient scope: 403 `error="insufficient_scope"`;
    /// - malformed request: 400 `error="invalid_request"`;
    /// - no usable keys: 503 with `Retry-After`, because the client did nothing wrong.
    ///
    /// The body is a fixed JSON document naming only the RFC 6750 error code.
    pub fn to_response(&self) -> Response<Bytes> {
        let (challenge, body): (&'static str, &'static str) = match self {
            AuthError::MissingToken => ("Bearer", r#"{"error":"unauthorized"}"#),
            AuthError::InvalidToken(_) => (
                r#"Bearer error="invalid_token""#,
                r#"{"error":"invalid_token"}"#,
            ),
            AuthError::InsufficientScope => (
                r#"Bearer error="insufficient_scope""#,
                r#"{"error":"insufficient_scope"}"#,
            ),
            AuthError::InvalidRequest(_) => (
                r#"Bearer error="invalid_request""#,
                r#"{"error":"invalid_request"}"#,
            ),
            AuthError::KeysUnavailable => ("", r#"{"error":"temporarily_unavailable"}"#),
        };
        let mut response = Response::new(Bytes::from_static(body.as_bytes()));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        if !challenge.is_empty() {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        } else {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(err: AuthError) -> Option<String> {
        err.to_response()
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    }

    #[test]
    fn grpc_mapping_keeps_the_challenge() {
        for (err, code, message, challenge) in [
            (
                AuthError::MissingToken,
                "16",
                "unauthenticated",
                Some("Bearer"),
            ),
            (
                AuthError::InvalidToken(Reason::Expired),
                "16",
                "invalid_token",
                Some(r#"Bearer error="invalid_token""#),
            ),
            (
                AuthError::InsufficientScope,
                "7",
                "insufficient_scope",
                Some(r#"Bearer error="insufficient_scope""#),
            ),
            (
                AuthError::InvalidRequest(RequestProblem::MultipleTokens),
                "3",
                "invalid_request",
                Some(r#"Bearer error="invalid_request""#),
            ),
            (
                AuthError::KeysUnavailable,
                "14",
                "temporarily_unavailable",
                None,
            ),
        ] {
            let response = err.to_grpc_response();
            assert_eq!(response.status(), StatusCode::OK, "{err:?}");
            assert!(response.body().is_empty(), "{err:?}");
            let h = response.headers();
            assert_eq!(h["grpc-status"], code, "{err:?}");
            assert_eq!(h["grpc-message"], message, "{err:?}");
            assert_eq!(h["content-type"], "application/grpc", "{err:?}");
            assert_eq!(
                h.get(header::WWW_AUTHENTICATE).map(|v| v.to_str().unwrap()),
                challenge,
                "{err:?}"
            );
        }
    }

    #[test]
    fn rfc6750_mapping() {
        assert_eq!(AuthError::MissingToken.status(), 401);
        assert_eq!(
            challenge(AuthError::MissingToken).as_deref(),
            Some("Bearer")
        );
        assert_eq!(
            challenge(AuthError::InvalidToken(Reason::Expired)).as_deref(),
            Some(r#"Bearer error="invalid_token""#)
        );
        assert_eq!(AuthError::InsufficientScope.status(), 403);
        assert_eq!(
            challenge(AuthError::InsufficientScope).as_deref(),
            Some(r#"Bearer error="insufficient_scope""#)
        );
        let bad = AuthError::InvalidRequest(RequestProblem::MultipleTokens);
        assert_eq!(bad.status(), 400);
        assert_eq!(
            challenge(bad).as_deref(),
            Some(r#"Bearer error="invalid_request""#)
        );
        let unavailable = AuthError::KeysUnavailable.to_response();
        assert_eq!(unavailable.status(), 503);
        assert_eq!(unavailable.headers()[header::RETRY_AFTER], "5");
    }

    #[test]
    fn body_never_names_the_reason() {
        for reason in [Reason::BadSignature, Reason::Expired, Reason::UnknownKey] {
            let body = AuthError::InvalidToken(reason).to_response().into_body();
            assert_eq!(&body[..], br#"{"error":"invalid_token"}"#);
        }
    }
}
