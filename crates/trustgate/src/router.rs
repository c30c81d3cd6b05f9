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
pub(crate) struct Router<R> {
    /// Sorted by descending prefix length, host-bound routes first among equals, so the first
    /// match is the best one.
    routes: Vec<(Option<String>, String, Arc<R>)>,
    /// Whether any route is bound to a host; if none is, the request's host is never needed.
    binds_hosts: bool,
}

impl<R> Router<R> {
    pub(crate) fn new(routes: impl IntoIterator<Item = (Option<String>, String, Arc<R>)>) -> Self {
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
    pub(crate) fn binds_hosts(&self) -> bool {
        self.binds_hosts
    }

    /// The best route for `host` (lowercase, without port) and a normalized `path`.
    pub(crate) fn select(&self, host: Option<&str>, path: &str) -> Option<(&str, &Arc<R>)> {
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
pub(crate) fn host_without_port(authority: &str) -> std::borrow::Cow<'_, str> {
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
}
