//! Hop-by-hop headers (RFC 9110 §7.6.1).

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::{FoldedNames, remove_where, trim_ows};

// === hop-by-hop headers ===

/// Connection-specific headers, removed from every forwarded request
/// (RFC 9110 §7.6.1, plus the legacy `proxy-connection` and `keep-alive`,
/// the proxy credentials, and `http2-settings` of h2c upgrades).
pub(super) const HOP_BY_HOP: FoldedNames = FoldedNames::new(&[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
]);

/// Headers a `Connection` token can never remove from a response: they decide framing.
pub(super) const PROTECTED_IN_RESPONSES: FoldedNames =
    FoldedNames::new(&["host", "content-length", "authorization"]);

/// Headers a `Connection` token can never remove from a request: those above, and the ones the
/// gateway reads to decide (the token's header and cookie, the body's type).
pub(super) const PROTECTED_IN_REQUESTS: FoldedNames = FoldedNames::new(&[
    "host",
    "content-length",
    "authorization",
    "cookie",
    "content-type",
]);

/// Which message [`remove_hop_by_hop`] works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    /// A request on its way upstream.
    Request,
    /// A response on its way back.
    Response,
}

/// What [`remove_hop_by_hop`] removed that the proxy may need to restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HopByHop {
    /// The `Upgrade` value of a genuine upgrade request: exactly one
    /// `Upgrade` header and `upgrade` listed in `Connection`, as RFC 9110
    /// §7.8 requires. The proxy re-adds `Connection: upgrade` and this value
    /// when it supports the protocol.
    pub upgrade: Option<HeaderValue>,
    /// Whether the client sent `TE: trailers` (gRPC needs it upstream).
    pub te_trailers: bool,
    /// The field names a `Trailer` header declared, lower case, once each. Like `TE`, the
    /// declaration is restated for the next hop ([`restate_request_trailers`],
    /// [`restate_response_trailers`]) with only the names the trailer sanitizer lets through:
    /// hyper sends an HTTP/1 trailer field only when the message's head declares it.
    ///
    /// [`restate_request_trailers`]: super::restate_request_trailers
    /// [`restate_response_trailers`]: super::restate_response_trailers
    pub trailer_names: Vec<HeaderName>,
    /// Whether `Content-Length` is left more than once, or as a list (`2, 2`), so that a
    /// response needs
    /// [`single_content_length`](crate::framing::single_content_length). Found in this pass over
    /// the headers, so the common response costs no lookup of its own.
    pub content_length_repeated: bool,
}

/// Hop-by-hop processing per RFC 9110 §7.6.1. Must run before the gateway
/// injects identity headers.
///
/// Removes the fixed hop-by-hop headers and every header named in a
/// `Connection` value, except the protected ones of `message` (`host`,
/// `content-length`, `authorization`, and in requests `cookie` and
/// `content-type`): those tokens are ignored, so a client cannot make the
/// gateway drop a header it relies on (`Connection: close, Authorization`).
/// Tokens that are not valid header names are ignored too. A message that had
/// `Transfer-Encoding` also loses its `Content-Length` (RFC 9112 §6.3).
pub fn remove_hop_by_hop(headers: &mut HeaderMap, message: Message) -> HopByHop {
    let protected = match message {
        Message::Request => &PROTECTED_IN_REQUESTS,
        Message::Response => &PROTECTED_IN_RESPONSES,
    };
    let mut listed: Vec<HeaderName> = Vec::new();
    let mut upgrade_listed = false;
    let mut te_trailers = false;
    let mut trailer_names: Vec<HeaderName> = Vec::new();
    let mut transfer_encoding = false;
    let (mut lengths, mut length_list) = (0usize, false);
    let mut any_hop_by_hop = false;
    // One pass finds `Connection`, `TE`, `Trailer`, the `Content-Length` fields and
    // whether there is anything to remove at all: most requests have no hop-by-hop header, and
    // most responses only `Connection`.
    for (name, value) in headers.iter() {
        if !HOP_BY_HOP.contains_name(name) {
            // Counted in requests too, where a second one never gets here (the framing check
            // refuses it): testing the message kind in the loop cost more than the count.
            if name == header::CONTENT_LENGTH {
                lengths += 1;
                length_list |= value.as_bytes().contains(&b',');
            }
            continue;
        }
        any_hop_by_hop = true;
        if name == header::CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',').map(trim_ows) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    upgrade_listed = true;
                }
                // The usual tokens (`keep-alive`, `upgrade`) name headers removed below anyway;
                // skipping them spares a name parse and an allocation on most responses.
                if HOP_BY_HOP.contains(token) {
                    continue;
                }
                // `from_bytes` lowercases and refuses anything that is not a
                // token, including the empty string.
                let Ok(name) = HeaderName::from_bytes(token) else {
                    continue;
                };
                if protected.contains_name(&name) {
                    continue;
                }
                listed.push(name);
            }
        } else if name == header::TE {
            te_trailers |= value.as_bytes().split(|&b| b == b',').any(|element| {
                // `trailers` takes no parameters, but tolerate `;q=1`-style ones.
                let coding = element.split(|&b| b == b';').next().unwrap_or_default();
                trim_ows(coding).eq_ignore_ascii_case(b"trailers")
            });
        } else if name == header::TRANSFER_ENCODING {
            transfer_encoding = true;
        } else if name == header::TRAILER {
            for token in value.as_bytes().split(|&b| b == b',').map(trim_ows) {
                // Not a field name (empty, or with bytes a token cannot hold): not restated.
                let Ok(name) = HeaderName::from_bytes(token) else {
                    continue;
                };
                if !trailer_names.contains(&name) {
                    trailer_names.push(name);
                }
            }
        }
    }

    let upgrade = if upgrade_listed {
        let mut values = headers.get_all(header::UPGRADE).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value.clone()),
            _ => None,
        }
    } else {
        None
    };

    for name in listed {
        headers.remove(name);
    }
    if any_hop_by_hop {
        remove_where(headers, |name| HOP_BY_HOP.contains_name(name));
    }
    // A message with `Transfer-Encoding` was framed by it, whatever its `Content-Length` says, and
    // a proxy must drop that `Content-Length` before forwarding (RFC 9112 §6.3). hyper reads an
    // upstream response with both as chunked but keeps the field, which would then frame the
    // response to the client with the wrong length. (A request with both never gets here: the
    // framing check refuses it.)
    if transfer_encoding {
        headers.remove(header::CONTENT_LENGTH);
    }
    HopByHop {
        upgrade,
        te_trailers,
        trailer_names,
        content_length_repeated: !transfer_encoding && (lengths > 1 || length_list),
    }
}
