//! Identity headers: names only the gateway may set.

use http::header::{HeaderMap, HeaderName};

use super::{fold, folded_eq, folded_starts_with, remove_where};

// === identity headers ===

/// Exact identity header names that are always stripped, folded.
pub(super) const DEFAULT_IDENTITY_NAMES: &[&str] = &[
    // Generic conventions of home-grown gateways and services.
    "x-user",
    "x-tenant",
    "x-id-token",
    "x-access-token",
    "x-client-id",
    "x-roles",
    "x-scopes",
    "x-email",
    "x-userid",
    "x-username",
    // Kong OIDC plugins (`X-Userinfo`, `X-Id-Token`, `X-Access-Token`).
    "x-userinfo",
    // oauth2-proxy in reverse-proxy mode (`--pass-user-headers`,
    // `--pass-access-token`).
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    // The Kubernetes API server's request-header authentication
    // (`X-Remote-User`, `X-Remote-Group`); Apache's and CGI's `REMOTE_USER`
    // is under the `remote-` prefix.
    "x-remote-user",
    "x-remote-group",
    // Kong `X-Credential-Identifier`.
    "x-credential-identifier",
    // Google Cloud Endpoints / API Gateway pass verified JWT claims here.
    "x-endpoint-api-userinfo",
    "x-apigateway-api-userinfo",
];

/// Identity header name prefixes that are always stripped, folded.
pub(super) const DEFAULT_IDENTITY_PREFIXES: &[&str] = &[
    // Generic `X-User-Id`, `X-User-Email`, `X-Tenant-Id`, ...
    "x-user-",
    "x-tenant-",
    // oauth2-proxy behind nginx `auth_request` (`X-Auth-Request-User`,
    // `-Email`, `-Groups`, `-Access-Token`).
    "x-auth-request-",
    // Internal-only headers by convention, and our own identity and
    // assertion headers.
    "x-internal-",
    "x-trustgate-",
    // WSO2 / Envoy `jwt_authn` payload forwarding (`X-Jwt-Assertion`,
    // `X-Jwt-Payload`).
    "x-jwt-",
    // Kong (`X-Authenticated-Userid`, `X-Authenticated-Scope`,
    // `X-Authenticated-Groups`) and `X-Consumer-Id`/`-Username`.
    "x-authenticated-",
    "x-consumer-",
    // Azure App Service authentication (`X-MS-CLIENT-PRINCIPAL`,
    // `-NAME`, `-ID`, `-IDP`).
    "x-ms-client-principal",
    // Google Identity-Aware Proxy (`X-Goog-Authenticated-User-Email`, `-Id`).
    "x-goog-authenticated-user-",
    // AWS Application Load Balancer OIDC (`X-Amzn-Oidc-Data`,
    // `-Identity`, `-Accesstoken`).
    "x-amzn-oidc-",
    // Kubernetes request-header authentication (`X-Remote-Extra-*`).
    "x-remote-extra-",
    // Cloudflare Access (`Cf-Access-Jwt-Assertion`,
    // `Cf-Access-Authenticated-User-Email`).
    "cf-access-",
    // Pomerium (`X-Pomerium-Jwt-Assertion`, `X-Pomerium-Claim-*`).
    "x-pomerium-",
    // Vouch Proxy (`X-Vouch-User`, `X-Vouch-Idp-Claims-*`).
    "x-vouch-",
    // Authelia's forward-auth answer (`Remote-User`, `Remote-Groups`,
    // `Remote-Email`, `Remote-Name`), and Apache `mod_auth_*` / CGI
    // `REMOTE_USER`.
    "remote-",
    // authentik's proxy outpost (`X-Authentik-Username`, `-Groups`,
    // `-Email`, `-Uid`, `-Jwt`, `-Meta-*`).
    "x-authentik-",
];

/// Headers that describe the request itself. Stripping them would break
/// framing, routing or authentication, so no configured identity name or
/// prefix may cover them. (`x-auth-token` is deliberately absent from the
/// defaults as well: OpenStack and others use it as a client credential.)
pub(super) const NOT_IDENTITY: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "cookie",
    "content-length",
    "content-type",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "expect",
];

/// Compiled, case- and `_`/`-`-insensitive matcher for identity header
/// names: headers that carry a caller's identity and that only the gateway
/// may set.
#[derive(Debug, Clone)]
pub struct IdentityHeaderPolicy {
    /// Folded exact names, defaults first, without duplicates.
    pub(super) exact: Vec<Box<str>>,
    /// Folded prefixes, defaults first, without duplicates.
    pub(super) prefixes: Vec<Box<str>>,
    /// Bit `b` is set if some exact name or prefix starts with the folded byte `b`. Every
    /// request header is looked up here, and most (`host`, `accept`, `authorization`) start
    /// with a byte no identity name does: one bit test rules them out.
    first_bytes: u128,
}

// === impl IdentityHeaderPolicy ===

impl IdentityHeaderPolicy {
    /// Builds the matcher from the built-in defaults plus `names` (exact
    /// names, e.g. `x-user-id`, including every header the configuration
    /// injects) and `prefixes` (e.g. `x-acme-`).
    ///
    /// # Errors
    ///
    /// Returns a message for the operator when an entry is empty, has
    /// surrounding whitespace, contains a character that cannot appear in a
    /// header name, or would cover a header that describes the request
    /// itself (such as `authorization` or `content-length`).
    pub fn new(names: &[String], prefixes: &[String]) -> Result<Self, String> {
        let mut policy = Self {
            first_bytes: 0,
            exact: DEFAULT_IDENTITY_NAMES
                .iter()
                .map(|&n| Box::from(n))
                .collect(),
            prefixes: DEFAULT_IDENTITY_PREFIXES
                .iter()
                .map(|&p| Box::from(p))
                .collect(),
        };
        for (index, name) in names.iter().enumerate() {
            let folded = validate_entry(name, "name", index)?;
            if let Some(covered) = NOT_IDENTITY.iter().find(|n| **n == folded) {
                return Err(format!(
                    "identity header name #{} ({name:?}) is `{covered}`, which carries the request \
                     itself and must reach the gateway; remove it from the identity header names \
                     (the gateway replaces the headers it injects anyway)",
                    index + 1
                ));
            }
            if !policy.exact.iter().any(|e| **e == *folded) {
                policy.exact.push(folded.into_boxed_str());
            }
        }
        for (index, prefix) in prefixes.iter().enumerate() {
            let folded = validate_entry(prefix, "prefix", index)?;
            if let Some(covered) = NOT_IDENTITY.iter().find(|n| n.starts_with(folded.as_str())) {
                return Err(format!(
                    "identity header prefix #{} ({prefix:?}) would also strip `{covered}`, which \
                     carries the request itself; use a longer, more specific prefix such as \
                     \"x-acme-user-\"",
                    index + 1
                ));
            }
            if !policy.prefixes.iter().any(|p| **p == *folded) {
                policy.prefixes.push(folded.into_boxed_str());
            }
        }
        for entry in policy.exact.iter().chain(&policy.prefixes) {
            // Entries are validated tokens, so their first byte is ASCII (below 128).
            if let Some(&first) = entry.as_bytes().first() {
                policy.first_bytes |= 1u128 << (first & 0x7f);
            }
        }
        Ok(policy)
    }

    /// Whether `name` is an identity header, ignoring case and treating `_`
    /// as `-`. Does not allocate.
    #[inline]
    pub fn is_identity_header(&self, name: &HeaderName) -> bool {
        self.is_identity_name(name.as_str().as_bytes())
    }

    /// [`Self::is_identity_header`] on a name's bytes, for a caller that has them already.
    #[inline]
    pub fn is_identity_name(&self, name: &[u8]) -> bool {
        let Some(&first) = name.first() else {
            return false;
        };
        let first = fold(first);
        if first >= 128 || self.first_bytes >> first & 1 == 0 {
            return false;
        }
        self.exact.iter().any(|e| folded_eq(name, e.as_bytes()))
            || self
                .prefixes
                .iter()
                .any(|p| folded_starts_with(name, p.as_bytes()))
    }

    /// Whether `name` is one of the exact identity names (not only a prefix match), ignoring case
    /// and treating `_` as `-`. A proxy that can remove headers only by exact name (nginx)
    /// can be told these, and no others.
    pub fn is_exact_identity_header(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        self.exact.iter().any(|e| folded_eq(name, e.as_bytes()))
    }

    /// The exact identity names, folded (lower case, `-`): the defaults, then the configured and
    /// injected ones.
    pub fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.exact.iter().map(|name| &**name)
    }

    /// The identity name prefixes, folded.
    pub fn prefixes(&self) -> impl Iterator<Item = &str> {
        self.prefixes.iter().map(|prefix| &**prefix)
    }

    /// Removes every identity header, with all duplicate values, and returns
    /// how many values were removed (for audit logging).
    pub fn strip(&self, headers: &mut HeaderMap) -> usize {
        remove_where(headers, |name| self.is_identity_header(name))
    }

    /// Whether any identity header is present, for the reject mode that
    /// answers 400 instead of stripping.
    pub fn contains_any(&self, headers: &HeaderMap) -> bool {
        headers.keys().any(|name| self.is_identity_header(name))
    }
}

/// Checks one configured name or prefix and returns it folded.
fn validate_entry(entry: &str, kind: &str, index: usize) -> Result<String, String> {
    let position = index + 1;
    if entry.is_empty() {
        return Err(format!(
            "identity header {kind} #{position} is empty; remove it or give a header {kind} \
             such as \"x-acme-user-id\""
        ));
    }
    if entry.trim() != entry {
        return Err(format!(
            "identity header {kind} #{position} ({entry:?}) has surrounding whitespace; \
             write it as {:?}",
            entry.trim()
        ));
    }
    if let Some(bad) = entry.chars().find(|&c| !is_token_char(c)) {
        return Err(format!(
            "identity header {kind} #{position} ({entry:?}) contains {bad:?}, which cannot \
             appear in a header name; use letters, digits and '-'"
        ));
    }
    Ok(entry.bytes().map(|b| char::from(fold(b))).collect())
}

/// RFC 9110 `tchar`, the characters of a header name.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}
