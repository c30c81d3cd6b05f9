//! Coarse authorization on validating routes: scopes, roles and claim values the token must
//! carry. Fine-grained authorization stays in the services.

use serde::Deserialize;
use serde_json::Value;
use trustgate_core::{AuthError, ClaimPath, NumericClaims, VerifiedToken};

/// What a route requires of a verified token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Requirements {
    /// Scopes the token must carry.
    pub scopes: Vec<String>,
    /// Roles the token must carry.
    pub roles: Vec<String>,
    /// Claims (by path) that must hold one of the listed values.
    pub claims: Vec<(ClaimPath, Vec<String>)>,
    /// Whether all of the above must hold, or any one.
    pub mode: RequireMode,
}

/// How [`Requirements`] combine.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RequireMode {
    /// Every requirement must hold.
    #[default]
    All,
    /// One requirement is enough.
    Any,
}

impl Requirements {
    /// Whether nothing is required.
    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty() && self.roles.is_empty() && self.claims.is_empty()
    }

    /// Checks `token` against the requirements.
    ///
    /// # Errors
    /// [`AuthError::InsufficientScope`] (403) when they are not met.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), AuthError> {
        if self.is_empty() {
            return Ok(());
        }
        let identity = token.identity();
        let mut checks = self
            .scopes
            .iter()
            .map(|scope| identity.has_scope(scope))
            .chain(self.roles.iter().map(|role| identity.has_role(role)))
            .chain(self.claims.iter().map(|(path, allowed)| {
                claim_matches(
                    path.find(token.claims()),
                    allowed,
                    identity.numeric_claims(),
                )
            }));
        let ok = match self.mode {
            RequireMode::All => checks.all(|ok| ok),
            RequireMode::Any => checks.any(|ok| ok),
        };
        if ok {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope)
        }
    }
}

/// Whether the claim (or a member of it) equals one of `allowed`. A number matches only as the
/// issuer's identity mapping would write it (`numbers`): by default never, so `12345` and
/// `"12345"` are not one value here either; with `numbers = "integers"`, by its exact digits.
fn claim_matches(value: Option<&Value>, allowed: &[String], numbers: NumericClaims) -> bool {
    let text_matches = |v: &Value| match v {
        Value::String(s) => allowed.iter().any(|a| a == s),
        Value::Number(n) => numbers
            .integer_text(n)
            .is_some_and(|text| allowed.contains(&text)),
        Value::Bool(b) => allowed.iter().any(|a| *a == b.to_string()),
        _ => false,
    };
    match value {
        Some(Value::Array(items)) => items.iter().any(text_matches),
        Some(other) => text_matches(other),
        None => false,
    }
}
