//! Which claims become the identity: claim paths, the per-issuer mapping, and how numbers read.

use crate::json::{Json, Object};

/// A dotted path into the claims, such as `realm_access.roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    segments: Vec<String>,
    text: String,
}

impl ClaimPath {
    /// Parses `a.b.c`. Empty segments are refused.
    ///
    /// # Errors
    /// Returns the path back if it is empty or has an empty segment.
    pub fn parse(path: &str) -> Result<Self, String> {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        if segments.iter().any(String::is_empty) {
            return Err(format!(
                "claim path {path:?} has an empty segment; write it like \"realm_access.roles\""
            ));
        }
        Ok(Self {
            segments,
            text: path.to_owned(),
        })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path in owned claims (`VerifiedToken::claims`), if every segment but the
    /// last names an object.
    pub fn find<'a>(
        &self,
        claims: &'a serde_json::Map<String, serde_json::Value>,
    ) -> Option<&'a serde_json::Value> {
        let (first, rest) = self.segments.split_first()?;
        let mut value = claims.get(first)?;
        for segment in rest {
            value = value.as_object()?.get(segment)?;
        }
        Some(value)
    }

    pub(crate) fn lookup<'a, 'j>(&self, claims: &'a Object<'j>) -> Option<&'a Json<'j>> {
        let (first, rest) = self.segments.split_first()?;
        let mut value = claims.get(first)?;
        for segment in rest {
            let Json::Object(object) = value else {
                return None;
            };
            value = object.get(segment)?;
        }
        Some(value)
    }
}

/// Which claims become the identity, per issuer.
#[derive(Debug, Clone)]
pub struct ClaimMapping {
    /// The subject (default `sub`).
    pub subject: ClaimPath,
    /// Roles: a string or an array of strings (default `roles`).
    pub roles: Option<ClaimPath>,
    /// Scopes: a space-separated string or an array (default `scope`, then `scp`).
    pub scopes: Vec<ClaimPath>,
    /// The tenant (default `tenant_id`).
    pub tenant: Option<ClaimPath>,
    /// The OAuth client (default `client_id`, then `azp`).
    pub client: Vec<ClaimPath>,
    /// More claims, by a name of the operator's choosing, for custom headers.
    pub extra: Vec<(String, ClaimPath)>,
    /// What a JSON number in a mapped claim becomes (default: the token is refused).
    pub numbers: NumericClaims,
}

/// What a JSON number in a claim bound for the identity becomes.
///
/// The default refuses it: a service reading `X-Tenant-Id: 12345` cannot tell whether the token
/// said `12345` or `"12345"`, and an issuer that types one claim two ways for two users would
/// otherwise give them one identity. An operator who knows the issuer writes numbers opts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NumericClaims {
    /// A number in a mapped claim makes the token fail with [`Reason::UnsafeClaimValue`].
    #[default]
    Refuse,
    /// An integer that fits in 64 bits is written with its exact decimal digits. Any other number
    /// (a fraction, an exponent, or an integer too large to be kept exactly) is refused, never
    /// rounded: `1.2345678901234568e+29` is not the claim the issuer signed.
    Integers,
}

impl NumericClaims {
    /// The exact decimal text of `number` under this rule, or `None` when it may not be used as
    /// text: always under [`NumericClaims::Refuse`], and for any number serde_json keeps as an
    /// `f64` (a fraction, an exponent, or an integer outside `i64`/`u64`), whose text is a
    /// rounding of what was signed. Identity values and the gateway's route `require` both read
    /// numbers through this, so the two can never disagree on what `12345` means.
    pub fn integer_text(self, number: &serde_json::Number) -> Option<String> {
        (self == Self::Integers && !number.is_f64()).then(|| number.to_string())
    }
}

impl Default for ClaimMapping {
    fn default() -> Self {
        let path = |p: &str| ClaimPath {
            segments: p.split('.').map(str::to_owned).collect(),
            text: p.to_owned(),
        };
        Self {
            subject: path("sub"),
            roles: Some(path("roles")),
            scopes: vec![path("scope"), path("scp")],
            tenant: Some(path("tenant_id")),
            client: vec![path("client_id"), path("azp")],
            extra: Vec::new(),
            numbers: NumericClaims::Refuse,
        }
    }
}
