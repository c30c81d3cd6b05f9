//! Identity read from request headers, for the danger mode that trusts the network.
//!
//! The values are checked byte by byte, the same way trustgate-core writes them: printable ASCII
//! only (a control byte or a byte above 0x7E is refused), `%XX` escapes decoded strictly to UTF-8,
//! roles split on `,` (an empty member is refused) and scopes on spaces. A header that appears twice
//! is a malformed request (400 `invalid_request`), so one request cannot carry two identities.

use http::{HeaderMap, HeaderName, HeaderValue};
use trustgate_core::{AuthError, Reason, RequestProblem, percent_decode};

/// Which request headers carry the identity in
/// [danger mode](crate::TrustgateLayer::danger_trust_identity_headers_without_assertion).
///
/// The defaults are the gateway's default identity headers: `x-user-id` (subject), `x-user-roles`
/// (comma-separated roles) and `x-tenant-id`; scopes and client are not read unless named.
///
/// ```
/// use http::HeaderName;
/// use trustgate_service::HeaderMapping;
///
/// let mut mapping = HeaderMapping::default();
/// mapping.scopes = Some(HeaderName::from_static("x-user-scopes"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeaderMapping {
    /// The subject; a request without it has no identity (401).
    pub subject: HeaderName,
    /// Roles, comma-separated.
    pub roles: Option<HeaderName>,
    /// Scopes, space-separated.
    pub scopes: Option<HeaderName>,
    /// The tenant.
    pub tenant: Option<HeaderName>,
    /// The OAuth client id.
    pub client: Option<HeaderName>,
}

impl Default for HeaderMapping {
    fn default() -> Self {
        Self {
            subject: HeaderName::from_static("x-user-id"),
            roles: Some(HeaderName::from_static("x-user-roles")),
            scopes: None,
            tenant: Some(HeaderName::from_static("x-tenant-id")),
            client: None,
        }
    }
}

/// An identity taken from headers without any proof.
#[derive(Debug, Clone)]
pub(crate) struct HeaderIdentity {
    pub(crate) subject: String,
    pub(crate) roles: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) client: Option<String>,
}

impl HeaderIdentity {
    /// Reads the identity named by `mapping`.
    ///
    /// # Errors
    /// [`AuthError::MissingToken`] without a subject header; [`AuthError::InvalidRequest`] for a
    /// duplicated header; [`AuthError::InvalidToken`] for a value that fails the byte checks.
    pub(crate) fn from_headers(
        headers: &HeaderMap,
        mapping: &HeaderMapping,
    ) -> Result<Self, AuthError> {
        let subject = read(headers, &mapping.subject)?.ok_or(AuthError::MissingToken)?;
        let subject = decode(subject)?;
        if subject.is_empty() {
            return Err(Reason::UnsafeClaimValue.into());
        }
        let roles = match optional(headers, mapping.roles.as_ref())? {
            None => Vec::new(),
            Some(text) => text
                .split(',')
                .map(|role| {
                    if role.is_empty() {
                        Err(Reason::UnsafeClaimValue.into())
                    } else {
                        decode(role)
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let scopes = match optional(headers, mapping.scopes.as_ref())? {
            None => Vec::new(),
            Some(text) => text
                .split(' ')
                .filter(|scope| !scope.is_empty())
                .map(decode)
                .collect::<Result<_, _>>()?,
        };
        let tenant = optional(headers, mapping.tenant.as_ref())?
            .map(decode)
            .transpose()?;
        let client = optional(headers, mapping.client.as_ref())?
            .map(decode)
            .transpose()?;
        Ok(Self {
            subject,
            roles,
            scopes,
            tenant,
            client,
        })
    }
}

fn optional<'a>(
    headers: &'a HeaderMap,
    name: Option<&HeaderName>,
) -> Result<Option<&'a str>, AuthError> {
    match name {
        Some(name) => read(headers, name),
        None => Ok(None),
    }
}

/// The single value of `name` as printable ASCII.
fn read<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest(
            RequestProblem::DuplicateIdentityHeader,
        ));
    }
    printable(value).map(Some)
}

fn printable(value: &HeaderValue) -> Result<&str, AuthError> {
    let bytes = value.as_bytes();
    if bytes.iter().any(|&b| !(0x20..=0x7e).contains(&b)) {
        return Err(Reason::UnsafeClaimValue.into());
    }
    value.to_str().map_err(|_| Reason::UnsafeClaimValue.into())
}

/// Decodes `%XX` escapes strictly: two hex digits, UTF-8 result, no control characters.
fn decode(text: &str) -> Result<String, AuthError> {
    let bad = || AuthError::from(Reason::UnsafeClaimValue);
    if !text.contains('%') {
        return Ok(text.to_owned());
    }
    let decoded = percent_decode(text.as_bytes()).ok_or_else(bad)?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    if decoded.chars().any(char::is_control) {
        return Err(bad());
    }
    Ok(decoded)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn reads_the_default_headers() {
        let h = headers(&[
            ("x-user-id", b"Jos%C3%A9"),
            ("x-user-roles", b"admin,user"),
            ("x-tenant-id", b"t1"),
        ]);
        let id = HeaderIdentity::from_headers(&h, &HeaderMapping::default()).unwrap();
        assert_eq!(id.subject, "José");
        assert_eq!(id.roles, ["admin", "user"]);
        assert_eq!(id.tenant.as_deref(), Some("t1"));
        assert!(id.scopes.is_empty() && id.client.is_none());
    }

    #[test]
    fn refuses_what_the_gateway_never_writes() {
        let mapping = HeaderMapping::default();
        assert_eq!(
            HeaderIdentity::from_headers(&HeaderMap::new(), &mapping).err(),
            Some(AuthError::MissingToken)
        );
        let invalid = Some(AuthError::InvalidToken(Reason::UnsafeClaimValue));
        for bad in [
            vec![("x-user-id", &b"a\tb"[..])],
            vec![("x-user-id", &b"caf\xc3\xa9"[..])],
            vec![("x-user-id", &b"50%"[..])],
            vec![("x-user-id", &b"%zz"[..])],
            vec![("x-user-id", &b"%0A"[..])],
            vec![("x-user-id", &b"%C3"[..])],
            vec![("x-user-id", &b""[..])],
            vec![
                ("x-user-id", &b"a"[..]),
                ("x-user-roles", &b"admin,,user"[..]),
            ],
        ] {
            assert_eq!(
                HeaderIdentity::from_headers(&headers(&bad), &mapping).err(),
                invalid,
                "{bad:?}"
            );
        }
        // Two identities in one request: malformed (400), as two tokens are.
        let duplicate = Some(AuthError::InvalidRequest(
            RequestProblem::DuplicateIdentityHeader,
        ));
        for bad in [
            vec![("x-user-id", &b"a"[..]), ("x-user-id", &b"a"[..])],
            vec![
                ("x-user-id", &b"a"[..]),
                ("x-tenant-id", &b"t1"[..]),
                ("x-tenant-id", &b"t2"[..]),
            ],
        ] {
            assert_eq!(
                HeaderIdentity::from_headers(&headers(&bad), &mapping).err(),
                duplicate,
                "{bad:?}"
            );
        }
    }
}
