//! Route selection on the *normalized* path: the longest matching prefix wins, among routes bound
//! to the request's host and routes bound to no host; the host only breaks ties between equal
//! prefixes.
//!
//! The router is built once per configuration and only read afterwards. Matching is segment-aware
//! (`/api` matches `/api/x` but not `/apix`).

use std::sync::Arc;

use crate::path::prefix_matches;

/// An immutable route table.
#[derive(Debug)]
pub struct Router<R> {
    /// Sorted by descending prefix length, host-bound routes first among equals, so the first
    /// match is the best one.
    routes: Vec<(Option<String>, String, Arc<R>)>,
    /// Whether any route is bound to a host; if none is, the request's host is never needed.
    binds_hosts: bool,
}

impl<R> Router<R> {
    /// Builds the table from `(host, prefix, route)` entries.
    pub fn new(routes: impl IntoIterator<Item = (Option<String>, String, Arc<R>)>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().collect();
        routes.sort_by(|a, b| {
            b.1.len()
                .cmp(&a.1.len())
                .then_with(|| b.0.is_some().cmp(&a.0.is_some()))
        });
        let binds_hosts = routes.iter().any(|(host, _, _)| host.is_some());
        Self {
            routes,
            binds_hosts,
        }
    }

    /// Whether any route is bound to a host.
    pub fn binds_hosts(&self) -> bool {
        self.binds_hosts
    }

    /// The best route for `host` (lowercase, without port) and a normalized `path`.
    pub fn select(&self, host: Option<&str>, path: &str) -> Option<(&str, &Arc<R>)> {
        self.routes
            .iter()
            .find(|(route_host, prefix, _)| {
                let host_ok = match route_host {
                    None => true,
                    Some(want) => host.is_some_and(|h| h == want),
                };
                host_ok && prefix_matches(path, prefix)
            })
            .map(|(_, prefix, route)| (prefix.as_str(), route))
    }
}

/// Extracts the lowercase host without port from a Host header or `:authority`. Borrows when the
/// host is already lowercase, as it nearly always is.
pub fn host_without_port(authority: &str) -> std::borrow::Cow<'_, str> {
    let authority = authority.trim();
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        rest.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(host.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(host)
    }
}

/// The request's host, read once and used for both routing and forwarding: the request-target's
/// authority (absolute-form, HTTP/2 `:authority`) before the `Host` header (RFC 9112 §3.2.2).
///
/// Each one present must be exactly `host [":" port]` (RFC 9110 §7.2): a DNS-style name (labels
/// of 1 to 63 characters, at most one trailing dot), an IPv4 address or a bracketed IPv6
/// literal, and a port of at most five digits up to 65535. Userinfo
/// (`user@host`), a path, spaces, commas, an empty host or port, and two `Host` headers are
/// refused: an upstream or a log that reads such a value differently from the router would route,
/// or attribute, the request elsewhere. `Ok(None)` when the request names no host (HTTP/1.0).
///
/// # Errors
/// [`BadHost`] for any value outside that syntax; the caller answers 400.
pub fn request_host(
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> Result<Option<http::HeaderValue>, BadHost> {
    let mut host_headers = headers.get_all(http::header::HOST).iter();
    let header = host_headers.next();
    if host_headers.next().is_some() {
        return Err(BadHost);
    }
    if let Some(header) = header
        && !is_host_and_port(header.as_bytes())
    {
        return Err(BadHost);
    }
    match uri.authority() {
        Some(authority) if is_host_and_port(authority.as_str().as_bytes()) => {
            http::HeaderValue::from_str(authority.as_str())
                .map(Some)
                .map_err(|_| BadHost)
        }
        Some(_) => Err(BadHost),
        None => Ok(header.cloned()),
    }
}

/// A request whose host is not `host [":" port]`, or that names two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadHost;

/// `host [":" port]` with a strict host: see [`request_host`].
pub fn is_host_and_port(value: &[u8]) -> bool {
    let (host_ok, port) = if let Some(rest) = value.strip_prefix(b"[") {
        let Some(close) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = std::str::from_utf8(&rest[..close]).unwrap_or_default();
        let after = &rest[close + 1..];
        let port = match after {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        (literal.parse::<std::net::Ipv6Addr>().is_ok(), port)
    } else {
        let (name, port) = match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], Some(&value[colon + 1..])),
            None => (value, None),
        };
        // Labels of 1 to 63 letters, digits, `-` or `_`, with at most one trailing dot. An empty
        // label (`.a`, `a..b`, `a..`) is refused: the router would drop the dots
        // (`host_without_port`) where an upstream's virtual hosts may not.
        let labels = name.strip_suffix(b".").unwrap_or(name);
        let name_ok = !labels.is_empty()
            && name.len() <= 253
            && labels.split(|&b| b == b'.').all(|label| {
                (1..=63).contains(&label.len())
                    && label
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            });
        (name_ok, port)
    };
    let port_ok = port.is_none_or(|port| {
        !port.is_empty()
            && port.len() <= 5
            && port.iter().all(u8::is_ascii_digit)
            && std::str::from_utf8(port)
                .ok()
                .and_then(|p| p.parse::<u32>().ok())
                .is_some_and(|p| p <= 65_535)
    });
    host_ok && port_ok
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn router() -> Router<&'static str> {
        Router::new([
            (None, "/".to_string(), Arc::new("root")),
            (None, "/public".to_string(), Arc::new("public")),
            (None, "/admin".to_string(), Arc::new("admin")),
            (None, "/api".to_string(), Arc::new("api")),
            (None, "/api/v2".to_string(), Arc::new("api-v2")),
            (
                Some("a.example".to_string()),
                "/api".to_string(),
                Arc::new("api-on-a"),
            ),
        ])
    }

    fn pick(host: Option<&str>, path: &str) -> &'static str {
        router()
            .select(host, path)
            .map(|(_, r)| **r)
            .unwrap_or("none")
    }

    #[test]
    fn longest_prefix_wins_segment_aware() {
        assert_eq!(pick(None, "/api/v2/x"), "api-v2");
        assert_eq!(pick(None, "/api/v2"), "api-v2");
        assert_eq!(pick(None, "/api/v22"), "api");
        assert_eq!(pick(None, "/apix"), "root");
        assert_eq!(pick(None, "/admin"), "admin");
        assert_eq!(pick(None, "/public/x"), "public");
    }

    #[test]
    fn host_bound_routes_win_ties() {
        assert_eq!(pick(Some("a.example"), "/api/x"), "api-on-a");
        assert_eq!(pick(Some("b.example"), "/api/x"), "api");
        assert_eq!(pick(Some("a.example"), "/api/v2/x"), "api-v2");
    }

    #[test]
    fn host_parsing() {
        assert_eq!(host_without_port("A.Example:8080"), "a.example");
        assert_eq!(host_without_port("a.example."), "a.example");
        assert_eq!(host_without_port("[::1]:80"), "::1");
    }

    #[test]
    fn only_a_host_and_an_optional_port_is_a_host() {
        for ok in [
            "example.com",
            "Example.COM:8080",
            "a-b_c.example.",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:80",
            "[2001:db8::1]:65535",
            "localhost:0",
            "a.b.c.",
        ] {
            assert!(is_host_and_port(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            ":80",
            "x@host",
            "host:port@evil",
            "user:pw@host",
            "a b",
            "host/path",
            "host?x",
            "host#x",
            "host,other",
            "host:",
            "host:99999",
            "host:65536",
            "host:123456",
            "host:80:80",
            "host:+80",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[zz::1]",
            "::1",
            "h%6Fst",
            "host\t",
            "caf\u{e9}.example",
            ".",
            ".example.com",
            "example..com",
            "example.com..",
            "example.com..:80",
            "..",
        ] {
            assert!(!is_host_and_port(bad.as_bytes()), "{bad:?}");
        }
        let label = "a".repeat(63);
        assert!(is_host_and_port(format!("{label}.example").as_bytes()));
        assert!(!is_host_and_port(format!("{label}a.example").as_bytes()));
    }

    #[test]
    fn the_request_host_is_one_valid_value() {
        let uri = |s: &str| s.parse::<http::Uri>().unwrap();
        let headers = |values: &[&str]| {
            let mut map = http::HeaderMap::new();
            for v in values {
                map.append(http::header::HOST, http::HeaderValue::from_str(v).unwrap());
            }
            map
        };
        assert_eq!(request_host(&uri("/x"), &headers(&[])), Ok(None));
        assert_eq!(
            request_host(&uri("/x"), &headers(&["a.example:8080"]))
                .unwrap()
                .unwrap(),
            "a.example:8080"
        );
        // The authority wins, and both must be valid.
        assert_eq!(
            request_host(&uri("http://b.example/x"), &headers(&["a.example"]))
                .unwrap()
                .unwrap(),
            "b.example"
        );
        assert_eq!(
            request_host(&uri("http://b.example/x"), &headers(&["a@b"])),
            Err(BadHost)
        );
        assert_eq!(
            request_host(&uri("http://user@b.example/x"), &headers(&[])),
            Err(BadHost)
        );
        assert_eq!(
            request_host(&uri("/x"), &headers(&["a.example", "b.example"])),
            Err(BadHost)
        );
    }
}
