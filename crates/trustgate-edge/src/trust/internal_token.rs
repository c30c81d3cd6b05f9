//! Pattern 4: the gateway validates the external token and forwards an internal one instead.

use std::time::Duration;

use serde::Deserialize;

use super::Validation;

/// Validate, then replace the external token with a short-lived internal JWT for the service.
/// A token is always needed: there is no anonymous internal token.
#[derive(Debug, Clone, PartialEq)]
pub struct InternalToken {
    /// What the external token must satisfy.
    pub validation: Validation,
    /// The internal token's audience.
    pub service: String,
    /// The internal token's lifetime (capped at the external token's `exp`).
    pub ttl: Duration,
    /// The identity claims carried over, besides `client_id` and `ext_iss`.
    pub claims: Vec<InternalClaim>,
}

impl InternalToken {
    /// The claims carried over unless configured otherwise.
    pub fn default_claims() -> Vec<InternalClaim> {
        vec![
            InternalClaim::Sub,
            InternalClaim::Tenant,
            InternalClaim::Roles,
            InternalClaim::Scopes,
        ]
    }
}

/// An identity claim an internal token may carry.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum InternalClaim {
    /// `sub`.
    Sub,
    /// `tenant_id`.
    Tenant,
    /// `roles`.
    Roles,
    /// `scope`, space-separated.
    Scopes,
}
