//! Pattern 3: the gateway validates the token and forwards identity headers built from it.

use http::{HeaderMap, HeaderName};
use trustgate_core::{Identity, IdentityField};

use super::{Assertion, Validation};

/// Validate, remove the token, inject headers from the verified identity.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityHeaders {
    /// What the token must satisfy.
    pub validation: Validation,
    /// Whether a request without a token passes (with no identity headers).
    pub allow_anonymous: bool,
    /// The headers injected, each from one identity field. Every name is also an identity
    /// header the sanitizer removes from clients.
    pub headers: Vec<(HeaderName, IdentityField)>,
    /// An assertion binding method, path and these headers' values.
    pub assertion: Option<Assertion>,
}

impl IdentityHeaders {
    /// The headers every identity-headers route injects unless configured otherwise.
    pub fn default_headers() -> Vec<(HeaderName, IdentityField)> {
        vec![
            (HeaderName::from_static("x-user-id"), IdentityField::Subject),
            (
                HeaderName::from_static("x-user-roles"),
                IdentityField::Roles,
            ),
            (
                HeaderName::from_static("x-tenant-id"),
                IdentityField::Tenant,
            ),
        ]
    }

    /// Sets each configured header from `identity`: `insert` replaces, so there is exactly one
    /// value, ours; a field the identity lacks leaves no header at all.
    pub fn inject(&self, identity: &Identity, headers: &mut HeaderMap) {
        for (name, field) in &self.headers {
            match identity.header_value(field) {
                Some(value) => {
                    headers.insert(name.clone(), value);
                }
                None => {
                    headers.remove(name);
                }
            }
        }
    }
}
