//! gRPC's way of refusing a call, shared by the gateway and the service library.
//!
//! A gRPC client reads the outcome from `grpc-status`, not from the HTTP status: a refusal is an
//! HTTP 200 "trailers-only" response (headers and end of stream, no body) whose headers carry
//! `grpc-status` and `grpc-message`. The HTTP refusal's other headers are kept, so RFC 6750's
//! `WWW-Authenticate` (and `Retry-After`) still reach a client that looks for them. The message is
//! the RFC 6750 error code or another fixed text: never a token byte, a claim or a reason.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

/// The gRPC status codes a refusal or a failed upstream can have (see gRPC's `doc/statuscodes.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GrpcCode {
    /// 3: the request is malformed (two credentials, a token in the query).
    InvalidArgument,
    /// 4: the deadline passed before the upstream answered.
    DeadlineExceeded,
    /// 7: valid credentials without the required scope, role or claim.
    PermissionDenied,
    /// 8: a rate limit.
    ResourceExhausted,
    /// 12: no route for this method.
    Unimplemented,
    /// 13: a protocol error, or the gateway could not sign.
    Internal,
    /// 14: the upstream, or the issuer's keys, cannot be reached now; retrying may succeed.
    Unavailable,
    /// 16: no credentials, or invalid ones.
    Unauthenticated,
}

impl GrpcCode {
    /// The code's number, as `grpc-status` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            GrpcCode::InvalidArgument => "3",
            GrpcCode::DeadlineExceeded => "4",
            GrpcCode::PermissionDenied => "7",
            GrpcCode::ResourceExhausted => "8",
            GrpcCode::Unimplemented => "12",
            GrpcCode::Internal => "13",
            GrpcCode::Unavailable => "14",
            GrpcCode::Unauthenticated => "16",
        }
    }
}

/// Whether a request is a gRPC call: its `content-type` is `application/grpc`, alone or with a
/// `+codec` suffix (`application/grpc+proto`). gRPC-Web (`application/grpc-web…`) is not gRPC.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return false;
    };
    let bytes = content_type.as_bytes();
    const GRPC: &[u8] = b"application/grpc";
    bytes.len() >= GRPC.len()
        && bytes[..GRPC.len()].eq_ignore_ascii_case(GRPC)
        && matches!(bytes.get(GRPC.len()), None | Some(b'+' | b';'))
}

/// The deadline a gRPC client set (`grpc-timeout`: at most eight digits and a unit, `H`, `M`,
/// `S`, `m`, `u` or `n`), or `None` when absent or malformed. A malformed value is ignored rather
/// than refused: a deadline only ever shortens how long the gateway waits.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Eight digits fit in a u64 with room for any unit's multiplication below.
    let amount = digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// Turns an HTTP refusal into the gRPC one: HTTP 200, `content-type: application/grpc`,
/// `grpc-status: code`, `grpc-message: message`, no body, and the refusal's other headers kept.
/// `message` must be plain printable ASCII without `%`: it is sent as it is.
pub fn grpc_refusal(
    http: Response<Bytes>,
    code: GrpcCode,
    message: &'static str,
) -> Response<Bytes> {
    let (mut parts, _body) = http.into_parts();
    parts.status = StatusCode::OK;
    let headers = &mut parts.headers;
    headers.remove(header::CONNECTION);
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from_static(code.as_str()));
    headers.insert("grpc-message", HeaderValue::from_static(message));
    Response::from_parts(parts, Bytes::new())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with_content_type(value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn grpc_content_types() {
        for yes in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc;charset=utf-8",
        ] {
            assert!(is_grpc(&with_content_type(yes)), "{yes}");
        }
        for no in [
            "application/grpc-web",
            "application/grpc-web+proto",
            "application/grpcx",
            "application/json",
            "text/grpc",
        ] {
            assert!(!is_grpc(&with_content_type(no)), "{no}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_timeouts() {
        let timeout = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_static(value));
            grpc_timeout(&headers)
        };
        assert_eq!(timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(timeout("3S"), Some(Duration::from_secs(3)));
        assert_eq!(timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        assert_eq!(
            timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S", " 1S", "1s"] {
            assert_eq!(timeout(bad), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn a_refusal_keeps_its_headers_and_loses_its_body() {
        let mut http = Response::new(Bytes::from_static(b"{\"error\":\"invalid_token\"}"));
        *http.status_mut() = StatusCode::UNAUTHORIZED;
        http.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        http.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        let grpc = grpc_refusal(http, GrpcCode::Unauthenticated, "invalid_token");
        assert_eq!(grpc.status(), StatusCode::OK);
        assert!(grpc.body().is_empty());
        let h = grpc.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["grpc-status"], "16");
        assert_eq!(h["grpc-message"], "invalid_token");
        assert_eq!(h["www-authenticate"], "Bearer error=\"invalid_token\"");
        assert!(h.get("connection").is_none());
    }
}
