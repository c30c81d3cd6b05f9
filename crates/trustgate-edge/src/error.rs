//! The gateway's one mapping from errors to HTTP responses. Authentication errors are delegated to
//! `AuthError::to_response` in trustgate-core, the single RFC 6750 mapping shared with the service
//! library. No response body ever contains a token, a claim or an internal error message.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use trustgate_core::{AuthError, GrpcCode, grpc_refusal};

/// A caller's rate limit as the response states it (RFC 6585 and
/// draft-ietf-httpapi-ratelimit-headers-10): the policy's quota `q` per window `w`, what remains
/// `r`, the seconds `t` until the quota is whole again, and on a refusal `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitState {
    /// Requests allowed per window (`q`).
    pub quota: u64,
    /// The window in seconds (`w`).
    pub window_secs: u64,
    /// Requests left now (`r`).
    pub remaining: u64,
    /// Seconds until the quota is whole again (`t`).
    pub reset_secs: u64,
    /// Seconds until the next request may pass (`Retry-After` on a 429).
    pub retry_after_secs: u64,
}

impl RateLimitState {
    /// The policy's name in both fields.
    pub const POLICY: &'static str = "caller";

    /// Adds `RateLimit-Policy` and `RateLimit` (and `Retry-After` when `limited`).
    pub fn write_headers(&self, headers: &mut http::HeaderMap, limited: bool) {
        let policy = format!(
            "\"{}\";q={};w={}",
            Self::POLICY,
            self.quota,
            self.window_secs
        );
        let state = format!(
            "\"{}\";r={};t={}",
            Self::POLICY,
            self.remaining,
            self.reset_secs
        );
        // Digits, quotes and a fixed name: always a valid header value.
        if let Ok(value) = HeaderValue::from_str(&policy) {
            headers.insert(http::HeaderName::from_static("ratelimit-policy"), value);
        }
        if let Ok(value) = HeaderValue::from_str(&state) {
            headers.insert(http::HeaderName::from_static("ratelimit"), value);
        }
        if limited {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs),
            );
        }
    }
}

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// Authentication or authorization failed, or the request's credentials were malformed.
    Auth(AuthError),
    /// Ambiguous or invalid message framing (a smuggling attempt). The connection is closed.
    Framing(&'static str),
    /// The client sent a request head promising a body, then did not send it in time. The
    /// connection is closed.
    RequestTimeout,
    /// The path cannot be normalized safely.
    BadPath(&'static str),
    /// No route matches.
    NoRoute,
    /// The upstream could not be reached or failed mid-request.
    UpstreamUnavailable,
    /// The upstream did not answer within its response timeout.
    UpstreamTimeout,
    /// The gateway could not sign an internal token or assertion.
    Internal,
    /// The shared key ring was last read longer ago than the replica may sign for: this replica
    /// refuses to mint until it reaches the store again (fail closed).
    SigningUnavailable,
    /// The route checks revocations and this replica's copy of the revocation list is older than
    /// the staleness bound (fail closed).
    RevocationStale,
    /// The front door already holds as much of unfinished requests as it may (the ext_authz
    /// door's check bytes, every connection's together): refused at once, to be tried again.
    Overloaded,
    /// The caller exceeded the route's rate limit.
    RateLimited(RateLimitState),
}

impl GatewayError {
    /// The outcome this error counts as in metrics.
    pub fn outcome(self) -> Outcome {
        match self {
            GatewayError::Auth(AuthError::InsufficientScope) => Outcome::Forbidden,
            GatewayError::Auth(AuthError::InvalidRequest(_)) => Outcome::BadRequest,
            GatewayError::Auth(AuthError::KeysUnavailable) => Outcome::Unavailable,
            GatewayError::Auth(_) => Outcome::Unauthorized,
            GatewayError::Framing(_)
            | GatewayError::RequestTimeout
            | GatewayError::BadPath(_)
            | GatewayError::NoRoute => Outcome::BadRequest,
            GatewayError::UpstreamUnavailable | GatewayError::UpstreamTimeout => {
                Outcome::UpstreamError
            }
            GatewayError::Internal
            | GatewayError::SigningUnavailable
            | GatewayError::RevocationStale
            | GatewayError::Overloaded => Outcome::Unavailable,
            GatewayError::RateLimited(_) => Outcome::RateLimited,
        }
    }

    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            GatewayError::Auth(err) => err.label(),
            GatewayError::Framing(what) | GatewayError::BadPath(what) => what,
            GatewayError::RequestTimeout => "request_timeout",
            GatewayError::NoRoute => "no_route",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Internal => "internal_error",
            GatewayError::SigningUnavailable => "signing_unavailable",
            GatewayError::RevocationStale => "revocation_stale",
            GatewayError::Overloaded => "overloaded",
            GatewayError::RateLimited(_) => "rate_limited",
        }
    }

    /// The response the client gets: the one mapping from errors to HTTP.
    pub fn to_response(self) -> Response<Bytes> {
        let (status, body) = match self {
            GatewayError::Auth(err) => return err.to_response(),
            GatewayError::Framing(_) | GatewayError::BadPath(_) => {
                (StatusCode::BAD_REQUEST, r#"{"error":"bad_request"}"#)
            }
            GatewayError::RequestTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                r#"{"error":"request_timeout"}"#,
            ),
            GatewayError::NoRoute => (StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#),
            GatewayError::UpstreamUnavailable => {
                (StatusCode::BAD_GATEWAY, r#"{"error":"bad_gateway"}"#)
            }
            GatewayError::UpstreamTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                r#"{"error":"gateway_timeout"}"#,
            ),
            GatewayError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                r#"{"error":"internal_error"}"#,
            ),
            GatewayError::SigningUnavailable
            | GatewayError::RevocationStale
            | GatewayError::Overloaded => (
                StatusCode::SERVICE_UNAVAILABLE,
                r#"{"error":"temporarily_unavailable"}"#,
            ),
            GatewayError::RateLimited(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"error":"too_many_requests"}"#,
            ),
        };
        let mut response = Response::new(Bytes::from_static(body.as_bytes()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(
            self,
            GatewayError::Framing(_) | GatewayError::RequestTimeout
        ) {
            // The rest of the connection's bytes cannot be trusted to be framed as we think (or
            // the body they owe is abandoned, unread).
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        match self {
            GatewayError::RateLimited(state) => state.write_headers(headers, true),
            // The store is usually back within seconds, and a full door frees up as the checks
            // it holds finish; a client may retry soon.
            GatewayError::SigningUnavailable
            | GatewayError::RevocationStale
            | GatewayError::Overloaded => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        response
    }
}

impl GatewayError {
    /// [`GatewayError::to_response`] for a gRPC call (`trustgate_core::is_grpc`): HTTP 200 with
    /// `grpc-status` and `grpc-message`, and the HTTP refusal's headers (`WWW-Authenticate`) kept.
    /// An unreachable upstream is 14 UNAVAILABLE and a passed deadline 4 DEADLINE_EXCEEDED, so a
    /// client's retry policy sees what it expects; an unknown method is 12 UNIMPLEMENTED.
    pub fn to_grpc_response(self) -> Response<Bytes> {
        let (code, message) = match self {
            GatewayError::Auth(err) => return err.to_grpc_response(),
            GatewayError::Framing(_) | GatewayError::BadPath(_) => {
                (GrpcCode::Internal, "bad_request")
            }
            GatewayError::RequestTimeout => (GrpcCode::Internal, "request_timeout"),
            GatewayError::NoRoute => (GrpcCode::Unimplemented, "not_found"),
            GatewayError::UpstreamUnavailable => (GrpcCode::Unavailable, "upstream_unavailable"),
            GatewayError::UpstreamTimeout => (GrpcCode::DeadlineExceeded, "deadline_exceeded"),
            GatewayError::Internal => (GrpcCode::Internal, "internal_error"),
            GatewayError::SigningUnavailable
            | GatewayError::RevocationStale
            | GatewayError::Overloaded => (GrpcCode::Unavailable, "temporarily_unavailable"),
            GatewayError::RateLimited(_) => (GrpcCode::ResourceExhausted, "rate_limited"),
        };
        let framing = matches!(
            self,
            GatewayError::Framing(_) | GatewayError::RequestTimeout
        );
        let mut response = grpc_refusal(self.to_response(), code, message);
        if framing {
            // A claimed gRPC content type changes the answer, not the connection's fate: its
            // remaining bytes cannot be trusted (framing refusals are HTTP/1 only).
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl From<AuthError> for GatewayError {
    fn from(err: AuthError) -> Self {
        GatewayError::Auth(err)
    }
}

/// The outcomes a request can have, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Forwarded.
    Allowed,
    /// 401.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 400 or 404.
    BadRequest,
    /// 503, or 500 when the gateway could not sign.
    Unavailable,
    /// 502 or 504.
    UpstreamError,
    /// 429: the caller's rate limit.
    RateLimited,
}

impl Outcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::BadRequest => "bad_request",
            Outcome::Unavailable => "unavailable",
            Outcome::UpstreamError => "upstream_error",
            Outcome::RateLimited => "rate_limited",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustgate_core::Reason;

    const STATE: RateLimitState = RateLimitState {
        quota: 100,
        window_secs: 60,
        remaining: 0,
        reset_secs: 60,
        retry_after_secs: 1,
    };

    #[test]
    fn new_refusals_have_their_statuses_and_headers() {
        let revoked = GatewayError::Auth(AuthError::InvalidToken(Reason::Revoked)).to_response();
        assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
        assert!(
            revoked.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("invalid_token")
        );
        let stale = GatewayError::RevocationStale.to_response();
        assert_eq!(stale.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(stale.headers()["retry-after"], "1");
        let overloaded = GatewayError::Overloaded.to_response();
        assert_eq!(overloaded.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(overloaded.headers()["retry-after"], "1");
        assert_eq!(
            overloaded.body().as_ref(),
            br#"{"error":"temporarily_unavailable"}"#
        );
        let limited = GatewayError::RateLimited(STATE).to_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()["retry-after"], "1");
        assert_eq!(
            limited.headers()["ratelimit-policy"],
            "\"caller\";q=100;w=60"
        );
        assert_eq!(limited.headers()["ratelimit"], "\"caller\";r=0;t=60");
        assert_eq!(limited.body().as_ref(), br#"{"error":"too_many_requests"}"#);
        let grpc = GatewayError::RateLimited(STATE).to_grpc_response();
        assert_eq!(grpc.headers()["retry-after"], "1");
    }

    #[test]
    fn grpc_codes_for_gateway_errors() {
        for (err, code) in [
            (
                GatewayError::Auth(AuthError::InvalidToken(Reason::Expired)),
                "16",
            ),
            (GatewayError::Auth(AuthError::InsufficientScope), "7"),
            (GatewayError::NoRoute, "12"),
            (GatewayError::UpstreamUnavailable, "14"),
            (GatewayError::UpstreamTimeout, "4"),
            (GatewayError::Framing("bad_body"), "13"),
            (GatewayError::Internal, "13"),
            (GatewayError::SigningUnavailable, "14"),
            (GatewayError::RevocationStale, "14"),
            (GatewayError::Overloaded, "14"),
            (GatewayError::RateLimited(STATE), "8"),
        ] {
            let response = err.to_grpc_response();
            assert_eq!(response.status(), StatusCode::OK, "{err:?}");
            assert_eq!(response.headers()["grpc-status"], code, "{err:?}");
            assert_eq!(
                response.headers()["content-type"],
                "application/grpc",
                "{err:?}"
            );
            assert!(response.body().is_empty(), "{err:?}");
        }
    }
}
