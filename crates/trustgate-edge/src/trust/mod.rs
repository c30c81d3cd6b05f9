//! The route's trust pattern, as a type: each variant holds exactly the settings that pattern
//! uses, so a combination the pattern cannot honour cannot be written. One module per pattern
//! says what it does to a request the engine has accepted.
//!
//! | variant | the gateway validates | the upstream receives |
//! |---|---|---|
//! | [`Trust::Public`] | nothing | the request as sent (identity headers removed) |
//! | [`Trust::ServiceValidates`] | nothing | the client's token, for the service to check |
//! | [`Trust::ForwardToken`] | the token | exactly the checked token (and an assertion, if set) |
//! | [`Trust::IdentityHeaders`] | the token | identity headers from the verified claims, no token |
//! | [`Trust::InternalToken`] | the token | a short-lived internal token, no external token |

mod forward_token;
mod identity_headers;
mod internal_token;
mod requirements;

pub use forward_token::ForwardToken;
pub use identity_headers::IdentityHeaders;
pub use internal_token::{InternalClaim, InternalToken};
pub use requirements::{RequireMode, Requirements};

/// A route's trust pattern.
#[derive(Debug, Clone, PartialEq)]
pub enum Trust {
    /// No token is read; anyone may call.
    Public,
    /// Pattern 1: the service validates; the gateway passes Authorization untouched.
    ServiceValidates,
    /// Pattern 2: the gateway validates and forwards the token.
    ForwardToken(ForwardToken),
    /// Pattern 3: the gateway validates and forwards identity headers instead of the token.
    IdentityHeaders(IdentityHeaders),
    /// Pattern 4: the gateway validates and forwards an internal token of its own instead.
    InternalToken(InternalToken),
}

impl Trust {
    /// The pattern's name, as configured.
    pub fn name(&self) -> &'static str {
        match self {
            Trust::Public => "public",
            Trust::ServiceValidates => "service-validates",
            Trust::ForwardToken(_) => "forward-token",
            Trust::IdentityHeaders(_) => "identity-headers",
            Trust::InternalToken(_) => "internal-token",
        }
    }

    /// What the gateway checks on a validating pattern; `None` when it validates nothing.
    pub fn validation(&self) -> Option<&Validation> {
        match self {
            Trust::Public | Trust::ServiceValidates => None,
            Trust::ForwardToken(p) => Some(&p.validation),
            Trust::IdentityHeaders(p) => Some(&p.validation),
            Trust::InternalToken(p) => Some(&p.validation),
        }
    }

    /// Whether a request without a token may pass (validating patterns only).
    pub fn allows_anonymous(&self) -> bool {
        match self {
            Trust::ForwardToken(p) => p.allow_anonymous,
            Trust::IdentityHeaders(p) => p.allow_anonymous,
            Trust::Public | Trust::ServiceValidates | Trust::InternalToken(_) => false,
        }
    }

    /// The audience of the gateway's assertion, on routes that sign one.
    pub fn assertion(&self) -> Option<&Assertion> {
        match self {
            Trust::ForwardToken(p) => p.assertion.as_ref(),
            Trust::IdentityHeaders(p) => p.assertion.as_ref(),
            Trust::Public | Trust::ServiceValidates | Trust::InternalToken(_) => None,
        }
    }

    /// Whether this route needs the gateway's signer (internal tokens, assertions).
    pub fn needs_signer(&self) -> bool {
        matches!(self, Trust::InternalToken(_)) || self.assertion().is_some()
    }
}

/// What every validating pattern checks.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validation {
    /// The `iss` values accepted on this route; never empty on a built route.
    pub issuers: Vec<String>,
    /// A cookie that may carry the token instead of the Authorization header.
    pub token_cookie: Option<String>,
    /// Coarse authorization: scopes, roles and claim values the token must carry.
    pub require: Requirements,
}

/// A gateway assertion (`X-Trustgate-Assertion`) signed for the route's service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    /// The assertion's audience: the service behind the route.
    pub service: String,
}
