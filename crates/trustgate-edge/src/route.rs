//! A route as the decision engine reads it: where it matches, where it forwards, and its trust.

use crate::trust::Trust;

/// One configured route, immutable once built.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// Position in the configuration: the key of per-route state kept outside the engine
    /// (upstream, metrics) and part of the minted-token cache key.
    pub index: u32,
    /// Unique name; labels metrics and logs.
    pub name: String,
    /// Lowercased host without port; `None` matches any host.
    pub host: Option<String>,
    /// Normalized path prefix, segment-aware.
    pub prefix: String,
    /// The upstream's id.
    pub upstream: String,
    /// The prefix that replaces `prefix` in the forwarded path, if any.
    pub rewrite: Option<String>,
    /// What the gateway does with the caller's credentials on this route.
    pub trust: Trust,
}
