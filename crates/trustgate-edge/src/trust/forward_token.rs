//! Pattern 2: the gateway validates the token and forwards it.

use super::{Assertion, Validation};

/// Validate, then forward exactly the token that was checked, and no other credential.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardToken {
    /// What the token must satisfy.
    pub validation: Validation,
    /// Whether a request without a token passes (without identity).
    pub allow_anonymous: bool,
    /// An assertion binding method and path, for services that check the gateway.
    pub assertion: Option<Assertion>,
}

impl ForwardToken {
    /// Whether the Authorization header must be removed: it is forwarded only when it carried
    /// the checked token. Any other value (another scheme on an anonymous request, or one next
    /// to a cookie token) was never checked, so an upstream must not see it.
    pub(crate) fn drops_authorization(token_in_header: bool) -> bool {
        !token_in_header
    }
}
