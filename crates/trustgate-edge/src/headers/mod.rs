//! Request header sanitization: identity-header stripping, hop-by-hop
//! removal, URI-override stripping and forwarding headers.
//!
//! This runs on every request, before routing, on every route (public,
//! health, CORS preflight, error paths). None of it is optional: an upstream
//! behind the gateway trusts identity and forwarding headers *because* the
//! gateway sets them, so a client must never be able to supply them.
//!
//! Order in the request path:
//!
//! 1. `framing::check_framing` on the headers as parsed, before anything
//!    reads the body (request smuggling);
//! 2. [`IdentityHeaderPolicy::strip`] (or [`IdentityHeaderPolicy::contains_any`]
//!    in reject mode), by `Decision::apply`;
//! 3. [`remove_hop_by_hop`];
//! 4. URI-override headers ([`is_uri_override`]) go with the identity headers, and
//!    [`set_forwarding_headers`] sets X-Forwarded-*;
//! 5. only then does the gateway insert its own identity headers, with
//!    `insert` (replace), never `append`.
//!
//! Header names are matched case-insensitively and with `_` equal to `-`:
//! CGI, WSGI, PHP and several frameworks map both `X-User-Id` and
//! `X_User_Id` to `HTTP_X_USER_ID`, so a client could otherwise slip an
//! identity header past an exact-name filter. (nginx drops such names by
//! default for the same reason; we cannot rely on what sits behind us.)
//!
//! Obsolete line folding (a header line starting with a space or tab) never
//! reaches this module: hyper rejects it at parse time with a 400. The
//! gateway's end-to-end tests check that over the wire.

use http::header::{HeaderMap, HeaderName};

// === name folding ===

/// Folds one byte of a header name for comparison: lower case, `_` as `-`.
#[inline]
fn fold(byte: u8) -> u8 {
    if byte == b'_' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

/// Whether `name` equals the already folded `pattern` after folding.
/// Compares byte by byte, so the hot path never allocates.
#[inline]
pub(crate) fn folded_eq(name: &[u8], pattern: &[u8]) -> bool {
    name.len() == pattern.len() && name.iter().zip(pattern).all(|(&n, &p)| fold(n) == p)
}

/// Whether `name` starts with the already folded `pattern` after folding.
#[inline]
fn folded_starts_with(name: &[u8], pattern: &[u8]) -> bool {
    name.get(..pattern.len())
        .is_some_and(|head| folded_eq(head, pattern))
}

/// A fixed list of folded header names, with the set of their lengths.
///
/// Every request and response header is looked up in several of these lists; one bit test on
/// the name's length rules out nearly every name without comparing it to each entry.
struct FoldedNames {
    names: &'static [&'static str],
    /// Bit `n` is set if some entry is `n` bytes long.
    lengths: u64,
}

impl FoldedNames {
    /// Entries must already be folded (lower case, `-`) and shorter than 64 bytes; a longer one
    /// fails the build.
    const fn new(names: &'static [&'static str]) -> Self {
        let mut lengths = 0u64;
        let mut i = 0;
        while i < names.len() {
            assert!(
                names[i].len() < 64,
                "folded names are shorter than 64 bytes"
            );
            lengths |= 1 << names[i].len();
            i += 1;
        }
        Self { names, lengths }
    }

    /// Whether `name` folds to one of the entries.
    #[inline]
    fn contains(&self, name: &[u8]) -> bool {
        name.len() < 64
            && self.lengths >> name.len() & 1 != 0
            && self
                .names
                .iter()
                .any(|entry| folded_eq(name, entry.as_bytes()))
    }

    #[inline]
    fn contains_name(&self, name: &HeaderName) -> bool {
        self.contains(name.as_str().as_bytes())
    }
}

/// Removes every header whose name satisfies `doomed`, with all its values,
/// and returns how many values were removed.
///
/// One pass over the map, whatever it removes: `doomed` is asked once per
/// value (so it must answer the same for every value of a name), and a name
/// goes once its last value has. Every forwarded request and every response
/// runs this, and most responses name `Connection`.
pub(crate) fn remove_where(
    headers: &mut HeaderMap,
    mut doomed: impl FnMut(&HeaderName) -> bool,
) -> usize {
    let mut removed = 0;
    headers.retain(|name, _| {
        let remove = doomed(name);
        removed += usize::from(remove);
        !remove
    });
    removed
}

/// Trims optional whitespace (RFC 9110 `OWS`: spaces and tabs) around a list
/// element.
#[inline]
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// Joins a request's `Cookie` fields into one, the values separated by `; `, for an HTTP/1.1
/// upstream. HTTP/2 lets a client split the cookies over several fields to compress them better,
/// and says they must be joined before the request goes into an HTTP/1.1 connection
/// (RFC 9113 §8.2.3): a server reading HTTP/1.1 expects one `Cookie` line, and many read only the
/// first of several. The joined value is sensitive if any part was (it is never HPACK-indexed).
pub fn join_cookie_fields(headers: &mut HeaderMap) {
    // No name with a second value: nothing to join, known without hashing `cookie`.
    if headers.len() == headers.keys_len() {
        return;
    }
    let mut fields = headers.get_all(http::header::COOKIE).iter();
    let (Some(_), Some(_)) = (fields.next(), fields.next()) else {
        return;
    };
    let mut joined = Vec::new();
    let mut sensitive = false;
    for field in headers.get_all(http::header::COOKIE) {
        if !joined.is_empty() {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(field.as_bytes());
        sensitive |= field.is_sensitive();
    }
    // Valid field values joined by "; " are a valid field value; were it not, the fields would
    // stay as they came.
    if let Ok(mut value) = http::HeaderValue::from_bytes(&joined) {
        value.set_sensitive(sensitive);
        headers.insert(http::header::COOKIE, value);
    }
}

mod forwarded;
mod hop_by_hop;
mod identity;
mod trailers;

pub use forwarded::{
    TrustedProxies, forwarding_header_names, is_forwarding_header_name, is_uri_override,
    is_uri_override_name, set_forwarding_headers, uri_override_names,
};
pub use hop_by_hop::{HopByHop, Message, remove_hop_by_hop};
pub use identity::IdentityHeaderPolicy;
pub use trailers::{
    restate_request_trailers, restate_response_trailers, sanitize_request_trailers,
    sanitize_response_trailers,
};

#[cfg(test)]
mod tests;
