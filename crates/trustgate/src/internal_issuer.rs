//! The gateway's own issuer as services see it: its JWKS and discovery documents, served on the
//! admin listener (and on the edge with `serve_on_edge`).

use bytes::Bytes;
use http::{Response, header};

/// The internal issuer's JWKS or discovery document, for `path`.
pub(crate) fn internal_issuer_document(
    signer: &trustgate_core::InternalSigner,
    path: &str,
) -> Option<Response<Bytes>> {
    let body = match path {
        "/.well-known/jwks.json" => signer.jwks(),
        "/.well-known/openid-configuration" => Bytes::from(signer.discovery_document()),
        _ => return None,
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    // Short, so services notice a rotation well before the pre-published key starts signing.
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(INTERNAL_JWKS_CACHE_CONTROL),
    );
    Some(response)
}

/// How long services may cache the internal JWKS; `rotation_interval` must exceed it
/// (`config::MIN_ROTATION_INTERVAL`). The header below says the same number (a unit test holds
/// them together).
pub(crate) const INTERNAL_JWKS_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(60);
const INTERNAL_JWKS_CACHE_CONTROL: &str = "public, max-age=60";

#[cfg(test)]
mod tests {
    #[test]
    fn the_cache_control_header_says_the_max_age_rotation_is_checked_against() {
        assert_eq!(
            super::INTERNAL_JWKS_CACHE_CONTROL,
            format!("public, max-age={}", super::INTERNAL_JWKS_MAX_AGE.as_secs())
        );
    }
}
