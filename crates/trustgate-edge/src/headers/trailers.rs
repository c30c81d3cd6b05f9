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
//!
//! The `Trailer` header that declares a message's trailer fields is treated like `TE`: removed
//! with the hop-by-hop headers, then restated for the next hop with only the names that can pass
//! the sanitizer. hyper writes an HTTP/1 trailer field only when the head declares it, so without
//! the restatement no trailer would reach an HTTP/1 peer; with it, a declaration never names a
//! field the gateway would remove.

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

use super::hop_by_hop::HOP_BY_HOP;
use super::{
    FoldedNames, IdentityHeaderPolicy, Message, is_forwarding_header_name, is_uri_override_name,
    remove_where,
};

/// Fields a request trailer never carries on besides the forwarding headers
/// ([`is_forwarding_header_name`], the whole list the head loses from an untrusted peer):
/// credentials, trace context, and what RFC 9110 §6.5.1 says a trailer must not hold (framing,
/// routing, request modifiers, content metadata).
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
    // Trace context: read from the head only, and there only when believed.
    "traceparent",
    "tracestate",
    "baggage",
]);

/// Removes from a request's trailers every field the upstream must not take from the client
/// (see the module documentation), and returns how many values were removed.
pub fn sanitize_request_trailers(policy: &IdentityHeaderPolicy, trailers: &mut HeaderMap) -> usize {
    remove_where(trailers, |name| {
        !request_trailer_passes(policy, name.as_str().as_bytes())
    })
}

/// Whether a request trailer field named `name` reaches the upstream.
fn request_trailer_passes(policy: &IdentityHeaderPolicy, name: &[u8]) -> bool {
    !(policy.is_identity_name(name)
        || is_uri_override_name(name)
        || HOP_BY_HOP.contains(name)
        || is_forwarding_header_name(name)
        || NOT_IN_REQUEST_TRAILERS.contains(name))
}

/// Removes hop-by-hop fields from a response's trailers, as from its headers.
pub fn sanitize_response_trailers(trailers: &mut HeaderMap) {
    let _ = super::remove_hop_by_hop(trailers, Message::Response);
}

/// Declares to the upstream the request trailer fields the client declared (`declared`, from
/// [`HopByHop::trailer_names`](super::HopByHop::trailer_names)) that
/// [`sanitize_request_trailers`] lets through. Run after the hop-by-hop removal.
pub fn restate_request_trailers(
    policy: &IdentityHeaderPolicy,
    headers: &mut HeaderMap,
    declared: &[HeaderName],
) {
    restate(headers, declared, |name| {
        request_trailer_passes(policy, name)
    });
}

/// Declares to the client the response trailer fields the upstream declared that
/// [`sanitize_response_trailers`] lets through (all but hop-by-hop fields).
pub fn restate_response_trailers(headers: &mut HeaderMap, declared: &[HeaderName]) {
    restate(headers, declared, |name| !HOP_BY_HOP.contains(name));
}

fn restate(headers: &mut HeaderMap, declared: &[HeaderName], passes: impl Fn(&[u8]) -> bool) {
    if declared.is_empty() {
        return;
    }
    let mut value = String::new();
    for name in declared
        .iter()
        .filter(|name| passes(name.as_str().as_bytes()))
    {
        if !value.is_empty() {
            value.push_str(", ");
        }
        value.push_str(name.as_str());
    }
    // Header names are tokens, so the list is a valid header value; an empty one is left out.
    if let Ok(value) = HeaderValue::try_from(value)
        && !value.is_empty()
    {
        headers.insert(header::TRAILER, value);
    }
}
