//! The gateway's one mapping from errors to HTTP responses. Authentication errors are delegated to
//! `AuthError::to_response` in trustgate-core, the single RFC 6750 mapping shared with the service
//! library. No response body ever contains a token, a claim or an internal error message.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use trustgate_core::{AuthError, GrpcCode, grpc_refusal};

/// Why the gateway answered a request itself instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayError {
    /// Authentication or authorization failed, or the request's credentials were malformed.
    Auth(AuthError),
    /// Ambiguous or invalid message framing (a smuggling attempt). The connection is closed.
    Framing(&'static str),
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
}

impl GatewayError {
    /// The outcome this error counts as in metrics.
    pub fn outcome(self) -> Outcome {
        match self {
            GatewayError::Auth(AuthError::InsufficientScope) => Outcome::Forbidden,
            GatewayError::Auth(AuthError::InvalidRequest(_)) => Outcome::BadRequest,
            GatewayError::Auth(AuthError::KeysUnavailable) => Outcome::Unavailable,
            GatewayError::Auth(_) => Outcome::Unauthorized,
            GatewayError::Framing(_) | GatewayError::BadPath(_) | GatewayError::NoRoute => {
                Outcome::BadRequest
            }
            GatewayError::UpstreamUnavailable | GatewayError::UpstreamTimeout => {
                Outcome::UpstreamError
            }
            GatewayError::Internal => Outcome::Unavailable,
        }
    }

    /// A stable label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            GatewayError::Auth(err) => err.label(),
            GatewayError::Framing(what) | GatewayError::BadPath(what) => what,
            GatewayError::NoRoute => "no_route",
            GatewayError::UpstreamUnavailable => "upstream_unavailable",
            GatewayError::UpstreamTimeout => "upstream_timeout",
            GatewayError::Internal => "internal_error",
        }
    }

    /// The response the client gets: the one mapping from errors to HTTP.
    pub fn to_response(self) -> Response<Bytes> {
        let (status, body) = match self {
            GatewayError::Auth(err) => return err.to_response(),
            GatewayError::Framing(_) | GatewayError::BadPath(_) => {
                (StatusCode::BAD_REQUEST, r#"{"error":"bad_request"}"#)
            }
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
        };
        let mut response = Response::new(Bytes::from_static(body.as_bytes()));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if matches!(self, GatewayError::Framing(_)) {
            // The rest of the connection's bytes cannot be trusted to be framed as we think.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
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
            GatewayError::NoRoute => (GrpcCode::Unimplemented, "not_found"),
            GatewayError::UpstreamUnavailable => (GrpcCode::Unavailable, "upstream_unavailable"),
            GatewayError::UpstreamTimeout => (GrpcCode::DeadlineExceeded, "deadline_exceeded"),
            GatewayError::Internal => (GrpcCode::Internal, "internal_error"),
        };
        grpc_refusal(self.to_response(), code, message)
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trustgate_core::Reason;

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
