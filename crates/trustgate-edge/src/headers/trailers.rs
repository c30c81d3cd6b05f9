//! Trailers: fields sent after a message's body (HTTP/1.1 chunked trailers, an HTTP/2 trailing
//! HEADERS frame). gRPC needs them both ways.
//!
//! The decision is made on the request head, before any trailer exists, so the gateway never
//! reads a trailer for identity. It must not let one carry identity past it either: a service
//! that merges trailers into its headers (several frameworks do) would otherwise read a client's
//! `X-User-Id` as if the gateway had set it. So a request trailer is removed when its name is one
//! the head would lose ([`IdentityHeaderPolicy::is_identity_name`], URI overrides, with the same
//! case and `_`/`-` folding), a credential (`Authorization`, `Cookie`, the gateway's assertion),
//! a field the gateway sets itself (forwarding), or a field RFC 9110 §6.5.1 forbids in trailers
//! (framing, routing, hop-by-hop). A response trailer loses its hop-by-hop fields, as response
//! headers do.

use http::HeaderMap;

use super::hop_by_hop::HOP_BY_HOP;
use super::{FoldedNames, IdentityHeaderPolicy, Message, is_uri_override_name, remove_where};

/// Fields a request trailer never carries on: credentials, forwarding, and what RFC 9110 §6.5.1
/// says a trailer must not hold (framing, routing, request modifiers, content metadata).
const NOT_IN_REQUEST_TRAILERS: FoldedNames = FoldedNames::new(&[
    "authorization",
    "cookie",
    "x-trustgate-assertion",
    "host",
    "content-length",
    "content-type",
    "content-encoding",
    "content-range",
    "expect",
    "max-forwards",
    "range",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
]);

/// Removes from a request's trailers every field the upstream must not take from the client
/// (see the module documentation), and returns how many values were removed.
pub fn sanitize_request_trailers(policy: &IdentityHeaderPolicy, trailers: &mut HeaderMap) -> usize {
    remove_where(trailers, |name| {
        let bytes = name.as_str().as_bytes();
        policy.is_identity_name(bytes)
            || is_uri_override_name(bytes)
            || HOP_BY_HOP.contains(bytes)
            || NOT_IN_REQUEST_TRAILERS.contains(bytes)
    })
}

/// Removes hop-by-hop fields from a response's trailers, as from its headers.
pub fn sanitize_response_trailers(trailers: &mut HeaderMap) {
    let _ = super::remove_hop_by_hop(trailers, Message::Response);
}
