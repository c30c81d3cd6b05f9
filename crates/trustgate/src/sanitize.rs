//! Request header sanitization: framing checks, identity-header stripping,
//! hop-by-hop removal, URI-override stripping and forwarding headers.
//!
//! This runs on every request, before routing, on every route (public,
//! health, CORS preflight, error paths). None of it is optional: an upstream
//! behind the gateway trusts identity and forwarding headers *because* the
//! gateway sets them, so a client must never be able to supply them.
//!
//! Order in the request path:
//!
//! 1. [`check_framing`] on the headers as parsed, before anything reads the
//!    body (request smuggling);
//! 2. [`IdentityHeaderPolicy::strip`] (or [`IdentityHeaderPolicy::contains_any`]
//!    in reject mode);
//! 3. [`remove_hop_by_hop`];
//! 4. [`strip_uri_overrides`] and [`set_forwarding_headers`];
//! 5. only then does the gateway insert its own identity headers, with
//!    `insert` (replace), never `append`.
//!
//! Header names are matched case-insensitively and with `_` equal to `-`:
//! CGI, WSGI, PHP and several frameworks map both `X-User-Id` and
//! `X_User_Id` to `HTTP_X_USER_ID`, so a client could otherwise slip an
//! identity header past an exact-name filter. (nginx drops such names by
//! default for the same reason; we cannot rely on what sits behind us.)
//!
//! Obsolete line folding (a header line starting with a space or tab) never
//! reaches this module: hyper rejects it at parse time with a 400. The
//! gateway's end-to-end tests check that over the wire.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// === name folding ===

/// Folds one byte of a header name for comparison: lower case, `_` as `-`.
fn fold(byte: u8) -> u8 {
    if byte == b'_' {
        b'-'
    } else {
        byte.to_ascii_lowercase()
    }
}

/// Whether `name` equals the already folded `pattern` after folding.
/// Compares byte by byte, so the hot path never allocates.
fn folded_eq(name: &[u8], pattern: &[u8]) -> bool {
    name.len() == pattern.len() && name.iter().zip(pattern).all(|(&n, &p)| fold(n) == p)
}

/// Whether `name` starts with the already folded `pattern` after folding.
fn folded_starts_with(name: &[u8], pattern: &[u8]) -> bool {
    name.get(..pattern.len())
        .is_some_and(|head| folded_eq(head, pattern))
}

/// A fixed list of folded header names, with the set of their lengths.
///
/// Every request and response header is looked up in several of these lists; one bit test on
/// the name's length rules out nearly every name without comparing it to each entry.
struct FoldedNames {
    names: &'static [&'static str],
    /// Bit `n` is set if some entry is `n` bytes long.
    lengths: u64,
}

impl FoldedNames {
    /// Entries must already be folded (lower case, `-`) and shorter than 64 bytes; a longer one
    /// fails the build.
    const fn new(names: &'static [&'static str]) -> Self {
        let mut lengths = 0u64;
        let mut i = 0;
        while i < names.len() {
            assert!(
                names[i].len() < 64,
                "folded names are shorter than 64 bytes"
            );
            lengths |= 1 << names[i].len();
            i += 1;
        }
        Self { names, lengths }
    }

    /// Whether `name` folds to one of the entries.
    fn contains(&self, name: &[u8]) -> bool {
        name.len() < 64
            && self.lengths >> name.len() & 1 != 0
            && self
                .names
                .iter()
                .any(|entry| folded_eq(name, entry.as_bytes()))
    }

    fn contains_name(&self, name: &HeaderName) -> bool {
        self.contains(name.as_str().as_bytes())
    }
}

/// Removes every header whose name satisfies `doomed`, with all its values,
/// and returns how many values were removed.
///
/// Looks again from the start after each removal instead of collecting the
/// names first: a match is usual (every upstream response names
/// `Connection`), a collected list would allocate for it, and the rescans are
/// bounded by `max_headers`.
fn remove_where(headers: &mut HeaderMap, mut doomed: impl FnMut(&HeaderName) -> bool) -> usize {
    let mut removed = 0;
    while let Some(name) = headers.keys().find(|name| doomed(name)).cloned() {
        removed += headers.get_all(&name).iter().count();
        headers.remove(&name);
    }
    removed
}

/// Trims optional whitespace (RFC 9110 `OWS`: spaces and tabs) around a list
/// element.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

// === identity headers ===

/// Exact identity header names that are always stripped, folded.
const DEFAULT_IDENTITY_NAMES: &[&str] = &[
    // Generic conventions of home-grown gateways and services.
    "x-user",
    "x-tenant",
    "x-id-token",
    "x-access-token",
    "x-client-id",
    "x-roles",
    "x-scopes",
    "x-email",
    // Kong OIDC plugins (`X-Userinfo`, `X-Id-Token`, `X-Access-Token`).
    "x-userinfo",
    // oauth2-proxy in reverse-proxy mode (`--pass-user-headers`,
    // `--pass-access-token`).
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-groups",
    "x-forwarded-preferred-username",
    "x-forwarded-access-token",
    // Apache `mod_auth_*` / CGI `REMOTE_USER`, and the Kubernetes API
    // server's request-header authentication (`X-Remote-User`,
    // `X-Remote-Group`).
    "x-remote-user",
    "remote-user",
    "x-remote-group",
    // Kong `X-Credential-Identifier`.
    "x-credential-identifier",
    // Google Cloud Endpoints / API Gateway pass verified JWT claims here.
    "x-endpoint-api-userinfo",
    "x-apigateway-api-userinfo",
];

/// Identity header name prefixes that are always stripped, folded.
const DEFAULT_IDENTITY_PREFIXES: &[&str] = &[
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
];

/// Headers that describe the request itself. Stripping them would break
/// framing, routing or authentication, so no configured identity name or
/// prefix may cover them. (`x-auth-token` is deliberately absent from the
/// defaults as well: OpenStack and others use it as a client credential.)
const NOT_IDENTITY: &[&str] = &[
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
pub(crate) struct IdentityHeaderPolicy {
    /// Folded exact names, defaults first, without duplicates.
    exact: Vec<Box<str>>,
    /// Folded prefixes, defaults first, without duplicates.
    prefixes: Vec<Box<str>>,
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
    pub(crate) fn new(names: &[String], prefixes: &[String]) -> Result<Self, String> {
        let mut policy = Self {
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
        Ok(policy)
    }

    /// Whether `name` is an identity header, ignoring case and treating `_`
    /// as `-`. Does not allocate.
    pub(crate) fn is_identity_header(&self, name: &HeaderName) -> bool {
        let name = name.as_str().as_bytes();
        self.exact.iter().any(|e| folded_eq(name, e.as_bytes()))
            || self
                .prefixes
                .iter()
                .any(|p| folded_starts_with(name, p.as_bytes()))
    }

    /// Removes every identity header, with all duplicate values, and returns
    /// how many values were removed (for audit logging).
    pub(crate) fn strip(&self, headers: &mut HeaderMap) -> usize {
        remove_where(headers, |name| self.is_identity_header(name))
    }

    /// Whether any identity header is present, for the reject mode that
    /// answers 400 instead of stripping.
    pub(crate) fn contains_any(&self, headers: &HeaderMap) -> bool {
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

// === hop-by-hop headers ===

/// Connection-specific headers, removed from every forwarded request
/// (RFC 9110 §7.6.1, plus the legacy `proxy-connection` and `keep-alive`,
/// the proxy credentials, and `http2-settings` of h2c upgrades).
const HOP_BY_HOP: FoldedNames = FoldedNames::new(&[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
]);

/// Headers a `Connection` token can never remove, whatever the caller's
/// `protected` says: they decide routing and framing.
const ALWAYS_PROTECTED: FoldedNames =
    FoldedNames::new(&["host", "content-length", "authorization"]);

/// What [`remove_hop_by_hop`] removed that the proxy may need to restore.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HopByHop {
    /// The `Upgrade` value of a genuine upgrade request: exactly one
    /// `Upgrade` header and `upgrade` listed in `Connection`, as RFC 9110
    /// §7.8 requires. The proxy re-adds `Connection: upgrade` and this value
    /// when it supports the protocol.
    pub(crate) upgrade: Option<HeaderValue>,
    /// Whether the client sent `TE: trailers` (gRPC needs it upstream).
    pub(crate) te_trailers: bool,
}

/// Hop-by-hop processing per RFC 9110 §7.6.1. Must run before the gateway
/// injects identity headers.
///
/// Removes the fixed hop-by-hop headers and every header named in a
/// `Connection` value, except names for which `protected` returns true and
/// `host`, `content-length` and `authorization`: those tokens are ignored,
/// so a client cannot make the gateway drop a header it relies on
/// (`Connection: close, Authorization`). Tokens that are not valid header
/// names are ignored too.
pub(crate) fn remove_hop_by_hop(
    headers: &mut HeaderMap,
    protected: &dyn Fn(&HeaderName) -> bool,
) -> HopByHop {
    let mut listed: Vec<HeaderName> = Vec::new();
    let mut upgrade_listed = false;
    let mut te_trailers = false;
    let mut any_hop_by_hop = false;
    // One pass finds `Connection`, `TE` and whether there is anything to remove at all: most
    // requests have no hop-by-hop header, and most responses only `Connection`.
    for (name, value) in headers.iter() {
        if !HOP_BY_HOP.contains_name(name) {
            continue;
        }
        any_hop_by_hop = true;
        if name == header::CONNECTION {
            for token in value.as_bytes().split(|&b| b == b',').map(trim_ows) {
                if token.eq_ignore_ascii_case(b"upgrade") {
                    upgrade_listed = true;
                }
                // The usual tokens (`keep-alive`, `upgrade`) name headers removed below anyway;
                // skipping them spares a name parse and an allocation on most responses.
                if HOP_BY_HOP.contains(token) {
                    continue;
                }
                // `from_bytes` lowercases and refuses anything that is not a
                // token, including the empty string.
                let Ok(name) = HeaderName::from_bytes(token) else {
                    continue;
                };
                if protected(&name) || ALWAYS_PROTECTED.contains_name(&name) {
                    continue;
                }
                listed.push(name);
            }
        } else if name == header::TE {
            te_trailers |= value.as_bytes().split(|&b| b == b',').any(|element| {
                // `trailers` takes no parameters, but tolerate `;q=1`-style ones.
                let coding = element.split(|&b| b == b';').next().unwrap_or_default();
                trim_ows(coding).eq_ignore_ascii_case(b"trailers")
            });
        }
    }

    let upgrade = if upgrade_listed {
        let mut values = headers.get_all(header::UPGRADE).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value.clone()),
            _ => None,
        }
    } else {
        None
    };

    for name in listed {
        headers.remove(name);
    }
    if any_hop_by_hop {
        remove_where(headers, |name| HOP_BY_HOP.contains_name(name));
    }
    HopByHop {
        upgrade,
        te_trailers,
    }
}

// === framing ===

/// Why a request's message framing was refused. Every variant maps to
/// `400 Bad Request` and closing the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum FramingError {
    /// Both `Content-Length` and `Transfer-Encoding`: the classic CL.TE /
    /// TE.CL smuggling set-up (RFC 9112 §6.3 allows a server to reject it).
    BothContentLengthAndTransferEncoding,
    /// More than one `Content-Length` field or value, even if identical.
    DuplicateContentLength,
    /// A `Content-Length` that is not 1 to 19 ASCII digits (no sign, no
    /// spaces, no hex, no list).
    InvalidContentLength,
    /// More than one `Transfer-Encoding` field.
    DuplicateTransferEncoding,
    /// A `Transfer-Encoding` other than exactly `chunked` (any case): this
    /// covers smuggling spellings such as `xchunked`, `chunked, identity`,
    /// `chunked;x`, ` chunked` or a vertical tab, as well as legitimate but
    /// unsupported codings such as `gzip, chunked`, which no client of an
    /// API gateway needs.
    ObfuscatedTransferEncoding,
    /// A header name that differs from `Content-Length` or
    /// `Transfer-Encoding` only by `_` for `-`, which CGI-style upstreams
    /// read as the real thing.
    AmbiguousFramingHeader,
    /// A chunked body whose framing is malformed (a bad size line, a bare LF, no CRLF after the
    /// data): hyper fails on it too, but only once the body is read, after the request was sent
    /// on. Seen by `h1_framing` when it arrives with the head.
    MalformedChunkedBody,
    /// The raw bytes of this HTTP/1 request were not checked: the raw-head check has no verdict
    /// for it, a verdict for another request, or a poisoned lock. Refused, never passed.
    Unchecked,
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Self::BothContentLengthAndTransferEncoding => {
                "both content-length and transfer-encoding"
            }
            Self::DuplicateContentLength => "duplicate content-length",
            Self::InvalidContentLength => "invalid content-length",
            Self::DuplicateTransferEncoding => "duplicate transfer-encoding",
            Self::ObfuscatedTransferEncoding => "unsupported transfer-encoding",
            Self::AmbiguousFramingHeader => "ambiguous framing header name",
            Self::MalformedChunkedBody => "malformed chunked body",
            Self::Unchecked => "request bytes not checked",
        };
        f.write_str(text)
    }
}

impl std::error::Error for FramingError {}

/// Longest accepted `Content-Length`, in digits: 19 digits always fit in a
/// `u64`, so no upstream can overflow while parsing it.
const MAX_CONTENT_LENGTH_DIGITS: usize = 19;

/// Request smuggling defence: run on the request headers as parsed, before
/// anything else reads them or the body.
///
/// hyper already refuses or drops some of these cases itself; this check
/// does not depend on that, holds the same rules for HTTP/2, and makes sure
/// that whatever we forward has one unambiguous framing.
///
/// # Errors
///
/// Returns the first [`FramingError`] found.
pub(crate) fn check_framing(headers: &HeaderMap) -> Result<(), FramingError> {
    check_framing_fields(
        headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
    )
}

/// [`check_framing`] on header fields as `(name, value)` bytes, names in any case, values without
/// surrounding whitespace. The raw-head check (`h1_framing`) runs it on a head's fields as
/// `httparse` gives them, without building a `HeaderMap`. Other fields are ignored.
///
/// # Errors
///
/// Returns the first [`FramingError`] found, in the order of [`check_framing`]'s rules.
pub(crate) fn check_framing_fields<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<(), FramingError> {
    const CONTENT_LENGTH: &[u8] = b"content-length";
    const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
    let mut look_alike = false;
    let (mut lengths, mut length) = (0usize, None);
    let (mut codings, mut coding) = (0usize, None);
    for (name, value) in fields {
        if name.len() != CONTENT_LENGTH.len() && name.len() != TRANSFER_ENCODING.len() {
            continue;
        }
        if name.eq_ignore_ascii_case(CONTENT_LENGTH) {
            lengths += 1;
            length.get_or_insert(value);
        } else if name.eq_ignore_ascii_case(TRANSFER_ENCODING) {
            codings += 1;
            coding.get_or_insert(value);
        } else if folded_eq(name, CONTENT_LENGTH) || folded_eq(name, TRANSFER_ENCODING) {
            // Equal once `_` is read as `-`, not as written: a look-alike.
            look_alike = true;
        }
    }
    if look_alike {
        return Err(FramingError::AmbiguousFramingHeader);
    }
    if length.is_some() && coding.is_some() {
        return Err(FramingError::BothContentLengthAndTransferEncoding);
    }
    if let Some(digits) = length {
        if lengths > 1 {
            return Err(FramingError::DuplicateContentLength);
        }
        if digits.is_empty()
            || digits.len() > MAX_CONTENT_LENGTH_DIGITS
            || !digits.iter().all(u8::is_ascii_digit)
        {
            return Err(FramingError::InvalidContentLength);
        }
    }
    if let Some(value) = coding {
        if codings > 1 {
            return Err(FramingError::DuplicateTransferEncoding);
        }
        // Exact match only: no OWS, no list, no parameters. Anything else
        // is a coding some hop may parse differently.
        if !value.eq_ignore_ascii_case(b"chunked") {
            return Err(FramingError::ObfuscatedTransferEncoding);
        }
    }
    Ok(())
}

// === forwarding headers ===

/// Headers through which a client (or a proxy) tells the upstream who the
/// client is and how it connected. Only a trusted proxy may send them.
const FORWARDING_HEADERS: FoldedNames = FoldedNames::new(&[
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    // Honoured by Rack, Rails and others to decide the scheme.
    "x-forwarded-scheme",
    "x-forwarded-ssl",
    "front-end-https",
    "x-url-scheme",
    "x-forwarded",
    "forwarded",
    "forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-cluster-client-ip",
    "x-original-forwarded-for",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    // Envoy trusts these from "internal" peers.
    "x-envoy-external-address",
    "x-envoy-internal",
]);

/// Headers that make some frameworks route or dispatch on something other
/// than the request line (IIS/ASP.NET URL rewrite, Symfony, Laravel,
/// method-override middleware, Envoy). Removed from every request, whoever
/// sent it: the gateway authorized the request line, nothing else.
const URI_OVERRIDE_HEADERS: FoldedNames = FoldedNames::new(&[
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-uri",
    "x-original-uri",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-forwarded-path",
    "x-envoy-original-path",
]);

/// A network in CIDR notation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Peers whose forwarding headers the gateway believes (load balancers,
/// CDNs in front of it). Empty by default: trust nobody.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrustedProxies {
    cidrs: Vec<Cidr>,
}

// === impl TrustedProxies ===

impl TrustedProxies {
    /// Trusts no peer.
    #[cfg(test)]
    pub(crate) fn none() -> Self {
        Self::default()
    }

    /// Parses entries such as `10.0.0.0/8`, `127.0.0.1` or `::1/128`. A bare
    /// address means that single host. IPv4-mapped IPv6 entries
    /// (`::ffff:10.0.0.0/104`) are treated as the IPv4 network.
    ///
    /// # Errors
    ///
    /// Returns a message for the operator on a malformed address or prefix
    /// length, or when the address has bits set beyond the prefix
    /// (`10.0.0.1/8`), which is usually a typo for a narrower range.
    pub(crate) fn new(entries: &[String]) -> Result<Self, String> {
        let cidrs = entries
            .iter()
            .enumerate()
            .map(|(index, entry)| parse_cidr(entry, index + 1))
            .collect::<Result<_, _>>()?;
        Ok(Self { cidrs })
    }

    /// Whether `peer` is in one of the trusted networks. IPv4-mapped IPv6
    /// peers (as seen on dual-stack sockets) match IPv4 entries.
    pub(crate) fn contains(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.cidrs.iter().any(|cidr| match (cidr.network, peer) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = v4_mask(cidr.prefix_len);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = v6_mask(cidr.prefix_len);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }
}

fn v4_mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

fn v6_mask(prefix_len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(prefix_len.min(128)))
        .unwrap_or(0)
}

fn parse_cidr(entry: &str, position: usize) -> Result<Cidr, String> {
    let (address, prefix) = match entry.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (entry, None),
    };
    let address: IpAddr = address.parse().map_err(|_| {
        format!(
            "trusted proxy #{position} ({entry:?}) is not an IP address or CIDR range; write it \
             as \"10.0.0.0/8\", \"192.0.2.7\" or \"2001:db8::/32\""
        )
    })?;
    let max_len: u8 = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len = match prefix {
        None => max_len,
        Some(text) => text
            .parse::<u8>()
            .ok()
            .filter(|len| text.bytes().all(|b| b.is_ascii_digit()) && *len <= max_len)
            .ok_or_else(|| {
                format!(
                    "trusted proxy #{position} ({entry:?}) has an invalid prefix length; use a \
                     number from 0 to {max_len} after the '/'"
                )
            })?,
    };
    let (network, prefix_len) = match address {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) if prefix_len >= 96 => (IpAddr::V4(v4), prefix_len - 96),
            _ => (address, prefix_len),
        },
        IpAddr::V4(_) => (address, prefix_len),
    };
    let host_bits_set = match network {
        IpAddr::V4(v4) => u32::from(v4) & !v4_mask(prefix_len) != 0,
        IpAddr::V6(v6) => u128::from(v6) & !v6_mask(prefix_len) != 0,
    };
    if host_bits_set {
        let masked = match network {
            IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4) & v4_mask(prefix_len))),
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & v6_mask(prefix_len))),
        };
        return Err(format!(
            "trusted proxy #{position} ({entry:?}) has bits set after the /{prefix_len} prefix; \
             write the network as \"{masked}/{prefix_len}\", or \"{address}\" for the single host"
        ));
    }
    Ok(Cidr {
        network,
        prefix_len,
    })
}

/// Removes every URI- and method-override header (see the list in the
/// source), from any peer, and returns how many values were removed.
/// [`set_forwarding_headers`] calls this too; call it directly to audit the
/// count.
pub(crate) fn strip_uri_overrides(headers: &mut HeaderMap) -> usize {
    remove_where(headers, |name| URI_OVERRIDE_HEADERS.contains_name(name))
}

// Constants, so that these names are not parsed again on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Sets `X-Forwarded-For`, `-Proto` and `-Host`, which upstreams may trust
/// because only the gateway sets them.
///
/// From an untrusted `peer`, every client-sent forwarding header
/// (`x-forwarded-*`, `forwarded`, `x-real-ip`, `true-client-ip`, ...) is
/// removed and the gateway's own values are set: `x-forwarded-for: <peer>`,
/// `x-forwarded-proto: <proto>` and, when `host` is given,
/// `x-forwarded-host: <host>`.
///
/// From a trusted proxy, its headers are kept: `<peer>` is appended to its
/// `X-Forwarded-For` (as a single combined field), and its proto and host
/// are kept when present, else set. `_` spellings of forwarding headers are
/// removed even then, since a genuine proxy never sends them.
///
/// URI-override headers are removed in both cases, see
/// [`strip_uri_overrides`].
pub(crate) fn set_forwarding_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    proto: &str,
    host: Option<&HeaderValue>,
    trusted: &TrustedProxies,
) {
    let peer = peer.to_canonical();
    let mut ipv4_text = [0u8; IPV4_TEXT_MAX];
    let peer_text: Cow<'_, [u8]> = match peer {
        IpAddr::V4(v4) => Cow::Borrowed(write_ipv4(v4, &mut ipv4_text)),
        IpAddr::V6(_) => Cow::Owned(peer.to_string().into_bytes()),
    };
    let peer_text = &*peer_text;

    let trust = trusted.contains(peer);
    let forwarded_for = if trust {
        // URI overrides go in the same pass over the names as the forwarding headers.
        remove_where(headers, |name| {
            URI_OVERRIDE_HEADERS.contains_name(name)
                || (name.as_str().contains('_') && FORWARDING_HEADERS.contains_name(name))
        });
        let mut chain = Vec::new();
        for value in headers.get_all(&X_FORWARDED_FOR) {
            let value = trim_ows(value.as_bytes());
            if !value.is_empty() {
                chain.extend_from_slice(value);
                chain.extend_from_slice(b", ");
            }
        }
        chain.extend_from_slice(peer_text);
        HeaderValue::from_bytes(&chain).ok()
    } else {
        remove_where(headers, |name| {
            URI_OVERRIDE_HEADERS.contains_name(name) || FORWARDING_HEADERS.contains_name(name)
        });
        None
    };
    // The peer's own address is always a valid header value; the fallback
    // only matters if a trusted chain somehow is not.
    match forwarded_for.or_else(|| HeaderValue::from_bytes(peer_text).ok()) {
        Some(value) => {
            headers.insert(X_FORWARDED_FOR, value);
        }
        None => {
            headers.remove(X_FORWARDED_FOR);
        }
    }
    // A trusted proxy's proto and host win; ours fill the gaps.
    if !(trust && headers.contains_key(&X_FORWARDED_PROTO)) {
        let value = match proto {
            // The server's two schemes, without a copy.
            "https" => Ok(HeaderValue::from_static("https")),
            "http" => Ok(HeaderValue::from_static("http")),
            other => HeaderValue::from_str(other),
        };
        if let Ok(value) = value {
            headers.insert(X_FORWARDED_PROTO, value);
        }
    }
    if !(trust && headers.contains_key(&X_FORWARDED_HOST)) {
        if let Some(host) = host {
            headers.insert(X_FORWARDED_HOST, host.clone());
        }
    }
}

/// The longest dotted-quad text: `255.255.255.255`.
const IPV4_TEXT_MAX: usize = 15;

/// Writes `address` in dotted-quad form into `out` and returns the text, as `Display` would.
/// Every request from an IPv4 peer needs it; `Display` goes through the formatting machinery,
/// which cost more instructions than the rest of this module's work on a request.
fn write_ipv4(address: Ipv4Addr, out: &mut [u8; IPV4_TEXT_MAX]) -> &[u8] {
    let mut len = 0;
    for (index, octet) in address.octets().into_iter().enumerate() {
        if index > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    &out[..len]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn defaults() -> IdentityHeaderPolicy {
        IdentityHeaderPolicy::new(&[], &[]).unwrap()
    }

    fn name(s: &str) -> HeaderName {
        HeaderName::from_bytes(s.as_bytes()).unwrap()
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (n, v) in pairs {
            headers.append(name(n), HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    fn values(headers: &HeaderMap, n: &str) -> Vec<String> {
        headers
            .get_all(n)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    // === identity headers ===

    /// Every default family, in the spellings a client could use.
    const IDENTITY_SPELLINGS: &[&str] = &[
        "x-user-id",
        "X-User-Id",
        "x_user_id",
        "X-USER_ID",
        "x-user_id",
        "X_USER-EMAIL",
        "x-user",
        "X_User",
        "x-tenant-id",
        "X_Tenant_Id",
        "x-tenant",
        "x-forwarded-user",
        "X_Forwarded_User",
        "x-forwarded-email",
        "x-forwarded-groups",
        "x-forwarded-preferred-username",
        "X_FORWARDED_PREFERRED_USERNAME",
        "x-forwarded-access-token",
        "x_forwarded_access_token",
        "x-auth-request-user",
        "X-Auth-Request-Email",
        "x_auth_request_access_token",
        "x-remote-user",
        "X_Remote_User",
        "remote-user",
        "REMOTE_USER",
        "x-remote-group",
        "x-remote-extra-scopes",
        "x-internal-anything",
        "X_INTERNAL_ROUTE",
        "x-trustgate-identity",
        "X-Trustgate-Assertion",
        "x_trustgate_sub",
        "x-id-token",
        "X_ID_TOKEN",
        "x-access-token",
        "x-client-id",
        "x_client_id",
        "x-roles",
        "X-Roles",
        "x-scopes",
        "x-email",
        "X_Email",
        "x-userinfo",
        "X-UserInfo",
        "x-jwt-assertion",
        "X_JWT_Payload",
        "x-authenticated-userid",
        "X-Authenticated-Scope",
        "x_authenticated_groups",
        "x-consumer-id",
        "x-consumer-username",
        "x-credential-identifier",
        "x-ms-client-principal",
        "X-MS-CLIENT-PRINCIPAL-NAME",
        "x_ms_client_principal_id",
        "x-goog-authenticated-user-email",
        "X_Goog_Authenticated_User_Id",
        "x-amzn-oidc-data",
        "X-Amzn-Oidc-Identity",
        "x_amzn_oidc_accesstoken",
        "cf-access-jwt-assertion",
        "Cf-Access-Authenticated-User-Email",
        "x-pomerium-jwt-assertion",
        "x-vouch-user",
        "x-endpoint-api-userinfo",
        "x-apigateway-api-userinfo",
    ];

    const NOT_IDENTITY_SPELLINGS: &[&str] = &[
        "accept",
        "content-type",
        "content-length",
        "authorization",
        "cookie",
        "host",
        "user-agent",
        "x-request-id",
        "x-userx",
        "x-users",
        "x-use",
        "x-tenants",
        "x-internalx",
        "x-jwt",
        "x-auth-token",
        "x-auth-request",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-users",
        "x-remote-users",
        "remote-users",
        "x-amzn-trace-id",
        "x-ms-request-id",
        "x-goog-api-key",
        "x-trustgatex",
        "x-email2",
        "x-client-ids",
        "traceparent",
        "x-b3-traceid",
        "x-correlation-id",
        "if-none-match",
    ];

    #[test]
    fn default_families_match_in_every_spelling() {
        let policy = defaults();
        for n in IDENTITY_SPELLINGS {
            assert!(
                policy.is_identity_header(&name(n)),
                "{n} should be an identity header"
            );
        }
    }

    #[test]
    fn unrelated_names_do_not_match() {
        let policy = defaults();
        for n in NOT_IDENTITY_SPELLINGS {
            assert!(
                !policy.is_identity_header(&name(n)),
                "{n} should not be an identity header"
            );
        }
    }

    #[test]
    fn configured_names_and_prefixes_are_folded() {
        let policy =
            IdentityHeaderPolicy::new(&strings(&["X-Acme_Sub"]), &strings(&["X_Acme_Claim-"]))
                .unwrap();
        for n in [
            "x-acme-sub",
            "X_ACME_SUB",
            "x-acme-claim-role",
            "x_acme_claim_x",
        ] {
            assert!(policy.is_identity_header(&name(n)), "{n}");
        }
        for n in ["x-acme-subx", "x-acme-claim", "x-acme"] {
            assert!(!policy.is_identity_header(&name(n)), "{n}");
        }
        // Defaults stay on.
        assert!(policy.is_identity_header(&name("x-user-id")));
    }

    #[test]
    fn duplicate_configuration_is_deduplicated() {
        let policy = IdentityHeaderPolicy::new(
            &strings(&["x-user-id", "X-USER-ID", "x-acme"]),
            &strings(&["x-user-", "x-acme-", "X-ACME-"]),
        )
        .unwrap();
        assert_eq!(policy.exact.len(), DEFAULT_IDENTITY_NAMES.len() + 2);
        assert_eq!(policy.prefixes.len(), DEFAULT_IDENTITY_PREFIXES.len() + 1);
    }

    #[test]
    fn bad_configuration_is_explained() {
        let cases: &[(&[&str], &[&str], &str)] = &[
            (&[""], &[], "name #1 is empty"),
            (
                &["x-a", " x-b"],
                &[],
                "name #2 (\" x-b\") has surrounding whitespace",
            ),
            (&["x a"], &[], "contains ' '"),
            (&["x:a"], &[], "contains ':'"),
            (&["x-\u{e9}"], &[], "cannot appear in a header name"),
            (&["Authorization"], &[], "is `authorization`"),
            (&["content_length"], &[], "is `content-length`"),
            (&[], &[""], "prefix #1 is empty"),
            (&[], &["x-"], ""),
            (&[], &["c"], "would also strip `cookie`"),
            (&[], &["content-"], "would also strip `content-length`"),
            (&[], &["Auth"], "would also strip `authorization`"),
            (&[], &["h"], "would also strip `host`"),
        ];
        for (names, prefixes, message) in cases {
            let result = IdentityHeaderPolicy::new(&strings(names), &strings(prefixes));
            if message.is_empty() {
                assert!(result.is_ok(), "{names:?} {prefixes:?}");
            } else {
                let error = result.unwrap_err();
                assert!(error.contains(message), "{names:?} {prefixes:?}: {error}");
            }
        }
    }

    #[test]
    fn strip_removes_all_duplicates_and_counts_values() {
        let policy = defaults();
        let mut headers = map(&[
            ("x-user-id", "attacker"),
            ("x-user-id", "admin"),
            ("x-user-id", "root"),
            ("x_user_id", "underscore"),
            ("x-roles", "admin"),
            ("x-request-id", "keep"),
            ("accept", "*/*"),
        ]);
        assert!(policy.contains_any(&headers));
        assert_eq!(policy.strip(&mut headers), 5);
        assert!(!policy.contains_any(&headers));
        assert_eq!(headers.len(), 2);
        assert_eq!(values(&headers, "x-request-id"), ["keep"]);
        assert_eq!(values(&headers, "accept"), ["*/*"]);
        assert_eq!(policy.strip(&mut headers), 0);
    }

    #[test]
    fn contains_any_is_false_for_clean_requests() {
        let headers = map(&[("accept", "*/*"), ("authorization", "Bearer x")]);
        assert!(!defaults().contains_any(&headers));
        assert!(!defaults().contains_any(&HeaderMap::new()));
    }

    // === hop-by-hop ===

    fn nothing_protected(_: &HeaderName) -> bool {
        false
    }

    #[test]
    fn fixed_hop_by_hop_headers_are_removed() {
        let mut headers = map(&[
            ("connection", "keep-alive"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "gzip"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic eA=="),
            ("proxy-authenticate", "Basic"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("proxy_connection", "keep-alive"),
            ("accept", "*/*"),
        ]);
        let hop = remove_hop_by_hop(&mut headers, &nothing_protected);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(values(&headers, "accept"), ["*/*"]);
        // No `upgrade` token in Connection: not a genuine upgrade.
        assert_eq!(hop, HopByHop::default());
    }

    #[test]
    fn connection_tokens_remove_named_headers() {
        let mut headers = map(&[
            ("connection", "close, X-Foo ,\tx-bar"),
            ("connection", "X-Baz"),
            ("x-foo", "1"),
            ("x-bar", "2"),
            ("x-bar", "3"),
            ("x-baz", "4"),
            ("x-qux", "5"),
        ]);
        remove_hop_by_hop(&mut headers, &nothing_protected);
        assert_eq!(
            headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-qux"]
        );
    }

    #[test]
    fn connection_cannot_remove_protected_headers() {
        let protected = |n: &HeaderName| n == "x-user-id" || n == "x-trustgate-assertion";
        let mut headers = map(&[
            ("connection", "X-User-Id, x-trustgate-assertion, x-foo"),
            ("x-user-id", "set-by-gateway"),
            ("x-trustgate-assertion", "jwt"),
            ("x-foo", "1"),
        ]);
        remove_hop_by_hop(&mut headers, &protected);
        assert_eq!(values(&headers, "x-user-id"), ["set-by-gateway"]);
        assert_eq!(values(&headers, "x-trustgate-assertion"), ["jwt"]);
        assert!(!headers.contains_key("x-foo"));
    }

    #[test]
    fn connection_cannot_remove_authorization_host_or_content_length() {
        let protected = |n: &HeaderName| n == header::AUTHORIZATION;
        let mut headers = map(&[
            ("connection", "close, Authorization"),
            ("authorization", "Bearer t"),
        ]);
        remove_hop_by_hop(&mut headers, &protected);
        assert_eq!(values(&headers, "authorization"), ["Bearer t"]);

        // Even when the caller's closure forgets them.
        let mut headers = map(&[
            ("connection", "authorization, host, content-length"),
            ("authorization", "Bearer t"),
            ("host", "example.com"),
            ("content-length", "3"),
        ]);
        remove_hop_by_hop(&mut headers, &nothing_protected);
        assert_eq!(headers.len(), 3);
    }

    #[test]
    fn connection_ignores_invalid_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_bytes(b",,  , x y, \xff, x-a:b, x-ok").unwrap(),
        );
        headers.insert("x-ok", HeaderValue::from_static("1"));
        headers.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut headers, &nothing_protected);
        assert_eq!(
            headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-keep"]
        );
    }

    #[test]
    fn genuine_upgrade_is_reported() {
        let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        let hop = remove_hop_by_hop(&mut headers, &nothing_protected);
        assert_eq!(hop.upgrade, Some(HeaderValue::from_static("websocket")));
        assert!(headers.is_empty());

        let mut headers = map(&[("connection", "keep-alive, upgrade"), ("upgrade", "h2c")]);
        let hop = remove_hop_by_hop(&mut headers, &nothing_protected);
        assert_eq!(hop.upgrade, Some(HeaderValue::from_static("h2c")));
    }

    #[test]
    fn upgrade_without_connection_token_or_duplicated_is_ignored() {
        let mut headers = map(&[("upgrade", "websocket")]);
        assert_eq!(
            remove_hop_by_hop(&mut headers, &nothing_protected).upgrade,
            None
        );
        assert!(headers.is_empty());

        let mut headers = map(&[("connection", "upgrade")]);
        assert_eq!(
            remove_hop_by_hop(&mut headers, &nothing_protected).upgrade,
            None
        );

        let mut headers = map(&[
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("upgrade", "h2c"),
        ]);
        assert_eq!(
            remove_hop_by_hop(&mut headers, &nothing_protected).upgrade,
            None
        );
        assert!(headers.is_empty());
    }

    #[test]
    fn te_trailers_is_reported() {
        for (te, expected) in [
            ("trailers", true),
            ("Trailers", true),
            ("gzip, trailers", true),
            (" trailers ;q=1", true),
            ("gzip", false),
            ("trailersx", false),
            ("", false),
        ] {
            let mut headers = map(&[("te", te)]);
            let hop = remove_hop_by_hop(&mut headers, &nothing_protected);
            assert_eq!(hop.te_trailers, expected, "{te:?}");
            assert!(headers.is_empty());
        }
    }

    // === framing ===

    fn framing(pairs: &[(&str, &[u8])]) -> Result<(), FramingError> {
        let mut headers = HeaderMap::new();
        for (n, v) in pairs {
            headers.append(name(n), HeaderValue::from_bytes(v).unwrap());
        }
        check_framing(&headers)
    }

    /// Control bytes other than tab (vertical tab, form feed, ...) cannot
    /// even be stored in a `HeaderValue`, so hyper refuses them before this
    /// module runs. Returns whether `value` is such a value.
    fn unrepresentable(value: &[u8]) -> bool {
        let refused = HeaderValue::from_bytes(value).is_err();
        if refused {
            assert!(value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f));
        }
        refused
    }

    #[test]
    fn valid_framing_is_accepted() {
        assert_eq!(framing(&[]), Ok(()));
        assert_eq!(framing(&[("content-length", b"0")]), Ok(()));
        assert_eq!(framing(&[("content-length", b"42")]), Ok(()));
        assert_eq!(framing(&[("content-length", b"007")]), Ok(()));
        assert_eq!(
            framing(&[("content-length", b"9999999999999999999")]),
            Ok(())
        );
        assert_eq!(framing(&[("transfer-encoding", b"chunked")]), Ok(()));
        assert_eq!(framing(&[("transfer-encoding", b"Chunked")]), Ok(()));
        assert_eq!(framing(&[("transfer-encoding", b"CHUNKED")]), Ok(()));
        assert_eq!(
            framing(&[("x-content-length", b"x"), ("accept", b"*/*")]),
            Ok(())
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_refused() {
        use FramingError::BothContentLengthAndTransferEncoding as Both;
        assert_eq!(
            framing(&[("content-length", b"5"), ("transfer-encoding", b"chunked")]),
            Err(Both)
        );
        assert_eq!(
            framing(&[("transfer-encoding", b"chunked"), ("content-length", b"0")]),
            Err(Both)
        );
        assert_eq!(
            framing(&[("content-length", b"5"), ("transfer-encoding", b"identity")]),
            Err(Both)
        );
    }

    #[test]
    fn duplicate_content_length_is_refused() {
        use FramingError::DuplicateContentLength as Dup;
        assert_eq!(
            framing(&[("content-length", b"5"), ("content-length", b"5")]),
            Err(Dup)
        );
        assert_eq!(
            framing(&[("content-length", b"5"), ("content-length", b"6")]),
            Err(Dup)
        );
    }

    #[test]
    fn invalid_content_length_is_refused() {
        for value in [
            &b""[..],
            b"-1",
            b"+5",
            b"5 ",
            b" 5",
            b"1 2",
            b"0x10",
            b"1e3",
            b"5,5",
            b"5, 5",
            b"abc",
            b"5\x0b",
            b"\xd9\xa5",
            b"10000000000000000000",
            b"00000000000000000001",
        ] {
            if unrepresentable(value) {
                continue;
            }
            assert_eq!(
                framing(&[("content-length", value)]),
                Err(FramingError::InvalidContentLength),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn transfer_encoding_other_than_chunked_is_refused() {
        for value in [
            &b"xchunked"[..],
            b"chunkedx",
            b"chunked, identity",
            b"identity, chunked",
            b"chunked, chunked",
            b"chunked,",
            b"gzip, chunked",
            b"identity",
            b"gzip",
            b"chunked;x",
            b"chunked ;q=1",
            b" chunked",
            b"chunked ",
            b"\tchunked",
            b"chunked\t",
            b"chunked\x0b",
            b"\x0cchunked",
            b"chu nked",
            b"\"chunked\"",
            b"ch\xc3\xbcnked",
            b"",
        ] {
            if unrepresentable(value) {
                continue;
            }
            assert_eq!(
                framing(&[("transfer-encoding", value)]),
                Err(FramingError::ObfuscatedTransferEncoding),
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn duplicate_transfer_encoding_is_refused() {
        assert_eq!(
            framing(&[
                ("transfer-encoding", b"chunked"),
                ("transfer-encoding", b"chunked")
            ]),
            Err(FramingError::DuplicateTransferEncoding)
        );
        assert_eq!(
            framing(&[
                ("transfer-encoding", b"identity"),
                ("transfer-encoding", b"chunked")
            ]),
            Err(FramingError::DuplicateTransferEncoding)
        );
    }

    #[test]
    fn underscore_framing_headers_are_refused() {
        for n in [
            "transfer_encoding",
            "content_length",
            "Transfer_Encoding",
            "content-length_",
        ] {
            let result = framing(&[(n, b"chunked")]);
            if n == "content-length_" {
                assert_eq!(result, Ok(()));
            } else {
                assert_eq!(result, Err(FramingError::AmbiguousFramingHeader), "{n}");
            }
        }
    }

    // === trusted proxies ===

    fn proxies(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::new(&strings(entries)).unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn trusted_proxies_parse_and_match() {
        let trusted = proxies(&[
            "10.0.0.0/8",
            "127.0.0.1",
            "::1/128",
            "2001:db8::/32",
            "0.0.0.0/0",
        ]);
        assert_eq!(trusted.cidrs.len(), 5);
        let narrow = proxies(&[
            "10.0.0.0/8",
            "192.0.2.7",
            "::1",
            "2001:db8::/32",
            "::ffff:172.16.0.0/108",
        ]);
        for (peer, expected) in [
            ("10.1.2.3", true),
            ("10.255.255.255", true),
            ("11.0.0.0", false),
            ("9.255.255.255", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("::1", true),
            ("::2", false),
            ("2001:db8:1::5", true),
            ("2001:db9::", false),
            ("::ffff:10.0.0.1", true),
            ("::ffff:192.0.2.7", true),
            ("172.16.3.4", true),
            ("172.32.0.0", false),
            ("127.0.0.1", false),
        ] {
            assert_eq!(narrow.contains(ip(peer)), expected, "{peer}");
        }
        assert!(trusted.contains(ip("203.0.113.9")));
        assert!(!TrustedProxies::none().contains(ip("127.0.0.1")));
        assert!(proxies(&["::/0"]).contains(ip("2001:db8::1")));
        assert!(!proxies(&["::/0"]).contains(ip("10.0.0.1")));
    }

    #[test]
    fn bad_trusted_proxies_are_explained() {
        for (entry, message) in [
            ("", "is not an IP address"),
            ("10.0.0", "is not an IP address"),
            ("localhost", "is not an IP address"),
            ("fe80::1%eth0", "is not an IP address"),
            ("10.0.0.0/33", "number from 0 to 32"),
            ("::1/129", "number from 0 to 128"),
            ("10.0.0.0/", "invalid prefix length"),
            ("10.0.0.0/+8", "invalid prefix length"),
            ("10.0.0.0/ 8", "invalid prefix length"),
            ("10.0.0.0/8/8", "invalid prefix length"),
            ("10.0.0.1/8", "\"10.0.0.0/8\", or \"10.0.0.1\""),
            ("2001:db8::1/32", "\"2001:db8::/32\""),
        ] {
            let error = TrustedProxies::new(&strings(&["127.0.0.1", entry])).unwrap_err();
            assert!(error.contains("#2"), "{entry}: {error}");
            assert!(error.contains(message), "{entry}: {error}");
        }
    }

    // === forwarding headers ===

    const SPOOFED: &[(&str, &str)] = &[
        ("x-forwarded-for", "1.2.3.4"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-port", "443"),
        ("x-forwarded-prefix", "/admin"),
        ("x-forwarded-ssl", "on"),
        ("forwarded", "for=1.2.3.4;proto=https"),
        ("x-real-ip", "1.2.3.4"),
        ("x-client-ip", "1.2.3.4"),
        ("true-client-ip", "1.2.3.4"),
        ("cf-connecting-ip", "1.2.3.4"),
        ("x-cluster-client-ip", "1.2.3.4"),
        ("x-original-forwarded-for", "1.2.3.4"),
        ("x_forwarded_for", "1.2.3.4"),
        ("X_Real_IP", "1.2.3.4"),
    ];

    #[test]
    fn untrusted_peer_forwarding_headers_are_replaced() {
        let mut headers = map(SPOOFED);
        headers.append("accept", HeaderValue::from_static("*/*"));
        let host = HeaderValue::from_static("api.example.com");
        set_forwarding_headers(
            &mut headers,
            ip("198.51.100.7"),
            "https",
            Some(&host),
            &TrustedProxies::none(),
        );
        assert_eq!(values(&headers, "x-forwarded-for"), ["198.51.100.7"]);
        assert_eq!(values(&headers, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&headers, "x-forwarded-host"), ["api.example.com"]);
        assert_eq!(headers.len(), 4, "{headers:?}");
        assert_eq!(values(&headers, "accept"), ["*/*"]);
    }

    #[test]
    fn untrusted_peer_without_host() {
        let mut headers = map(&[("x-forwarded-host", "evil.example")]);
        set_forwarding_headers(
            &mut headers,
            ip("2001:db8::7"),
            "http",
            None,
            &TrustedProxies::none(),
        );
        assert_eq!(values(&headers, "x-forwarded-for"), ["2001:db8::7"]);
        assert_eq!(values(&headers, "x-forwarded-proto"), ["http"]);
        assert!(!headers.contains_key("x-forwarded-host"));
    }

    #[test]
    fn mapped_ipv6_peer_is_written_as_ipv4() {
        let mut headers = HeaderMap::new();
        let peer = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        set_forwarding_headers(&mut headers, peer, "http", None, &TrustedProxies::none());
        assert_eq!(values(&headers, "x-forwarded-for"), ["192.0.2.1"]);
    }

    #[test]
    fn ipv4_text_matches_display_for_every_octet_value() {
        let mut out = [0u8; IPV4_TEXT_MAX];
        for octet in 0..=u8::MAX {
            for address in [
                Ipv4Addr::new(octet, 0, 0, 0),
                Ipv4Addr::new(1, octet, 10, 100),
                Ipv4Addr::new(255, 9, octet, 99),
                Ipv4Addr::new(0, 255, 199, octet),
                Ipv4Addr::new(octet, octet, octet, octet),
            ] {
                assert_eq!(
                    write_ipv4(address, &mut out),
                    address.to_string().as_bytes()
                );
            }
        }
        // IPv6 peers still get `Display`'s compressed form.
        let mut headers = HeaderMap::new();
        let peer = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1));
        set_forwarding_headers(&mut headers, peer, "http", None, &TrustedProxies::none());
        assert_eq!(values(&headers, "x-forwarded-for"), ["2001:db8::1"]);
    }

    #[test]
    fn trusted_peer_chain_is_extended() {
        let trusted = proxies(&["10.0.0.0/8"]);
        let mut headers = map(&[
            ("x-forwarded-for", "203.0.113.5, 10.1.1.1"),
            ("x-forwarded-for", " 198.51.100.2 "),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "public.example"),
            ("forwarded", "for=203.0.113.5"),
            ("x-real-ip", "203.0.113.5"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x-original-url", "/admin"),
        ]);
        let host = HeaderValue::from_static("internal:8080");
        set_forwarding_headers(&mut headers, ip("10.0.0.9"), "http", Some(&host), &trusted);
        assert_eq!(
            values(&headers, "x-forwarded-for"),
            ["203.0.113.5, 10.1.1.1, 198.51.100.2, 10.0.0.9"]
        );
        assert_eq!(values(&headers, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&headers, "x-forwarded-host"), ["public.example"]);
        assert_eq!(values(&headers, "forwarded"), ["for=203.0.113.5"]);
        assert_eq!(values(&headers, "x-real-ip"), ["203.0.113.5"]);
        assert!(!headers.contains_key("x_forwarded_for"));
        assert!(!headers.contains_key("x-original-url"));
    }

    #[test]
    fn trusted_peer_without_headers_gets_ours() {
        let trusted = proxies(&["::1"]);
        let mut headers = HeaderMap::new();
        let host = HeaderValue::from_static("api.example.com");
        set_forwarding_headers(
            &mut headers,
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "https",
            Some(&host),
            &trusted,
        );
        assert_eq!(values(&headers, "x-forwarded-for"), ["::1"]);
        assert_eq!(values(&headers, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&headers, "x-forwarded-host"), ["api.example.com"]);
    }

    #[test]
    fn uri_overrides_are_stripped_from_everyone() {
        let overrides = [
            ("x-original-url", "/admin"),
            ("X-Rewrite-URL", "/admin"),
            ("x-forwarded-uri", "/admin"),
            ("x-original-uri", "/admin"),
            ("x-http-method-override", "DELETE"),
            ("x-http-method", "PUT"),
            ("x-method-override", "PATCH"),
            ("x-forwarded-path", "/admin"),
            ("x-envoy-original-path", "/admin"),
            ("x_original_url", "/admin"),
            ("x-original-url", "/second"),
        ];
        let mut headers = map(&overrides);
        headers.append("accept", HeaderValue::from_static("*/*"));
        assert_eq!(strip_uri_overrides(&mut headers), overrides.len());
        assert_eq!(headers.len(), 1);

        for trusted in [TrustedProxies::none(), proxies(&["0.0.0.0/0"])] {
            let mut headers = map(&overrides);
            set_forwarding_headers(&mut headers, ip("10.0.0.1"), "http", None, &trusted);
            assert_eq!(headers.len(), 2, "{headers:?}");
        }
    }

    // === property tests ===

    /// A default identity name or prefix (with a suffix) in random case and
    /// with random `_`/`-` substitution.
    fn identity_spelling() -> impl Strategy<Value = String> {
        let exact = prop::sample::select(DEFAULT_IDENTITY_NAMES).prop_map(str::to_owned);
        let prefixed = (
            prop::sample::select(DEFAULT_IDENTITY_PREFIXES),
            "[a-z0-9_-]{0,12}",
        )
            .prop_map(|(prefix, suffix)| format!("{prefix}{suffix}"));
        (prop_oneof![exact, prefixed], any::<u64>(), any::<u64>()).prop_map(|(base, case, sep)| {
            base.bytes()
                .enumerate()
                .map(|(i, b)| {
                    let b = if case >> (i % 64) & 1 == 1 {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    };
                    let b = if b == b'-' && sep >> (i % 64) & 1 == 1 {
                        b'_'
                    } else {
                        b
                    };
                    char::from(b)
                })
                .collect()
        })
    }

    /// Names built from fragments of identity names, so that many are near
    /// misses.
    fn fragment_name() -> impl Strategy<Value = String> {
        let parts = prop::sample::select(vec![
            "x",
            "-",
            "_",
            "user",
            "users",
            "tenant",
            "id",
            "remote",
            "auth",
            "request",
            "jwt",
            "ms",
            "client",
            "principal",
            "amzn",
            "oidc",
            "goog",
            "authenticated",
            "internal",
            "trustgate",
            "forwarded",
            "email",
            "cf",
            "access",
            "token",
            "a",
            "X",
            "USER",
            "Id",
        ]);
        prop::collection::vec(parts, 1..7).prop_map(|v| v.concat())
    }

    /// The obvious, allocating definition of an identity header.
    fn reference_is_identity(n: &str) -> bool {
        let folded: String = n.to_ascii_lowercase().replace('_', "-");
        DEFAULT_IDENTITY_NAMES.contains(&folded.as_str())
            || DEFAULT_IDENTITY_PREFIXES
                .iter()
                .any(|p| folded.starts_with(p))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn identity_spellings_always_match(n in identity_spelling()) {
            prop_assert!(defaults().is_identity_header(&name(&n)), "{}", n);
        }

        #[test]
        fn unrelated_names_never_match(
            n in "[abd-qs-wyz][a-z0-9]{0,8}(-[a-z0-9]{1,6}){0,3}",
        ) {
            prop_assert!(!defaults().is_identity_header(&name(&n)), "{}", n);
        }

        #[test]
        fn matcher_agrees_with_reference(n in fragment_name()) {
            let header = name(&n);
            prop_assert_eq!(defaults().is_identity_header(&header), reference_is_identity(&n), "{}", n);
        }

        #[test]
        fn strip_never_leaves_an_identity_header(
            entries in prop::collection::vec(
                (prop_oneof![identity_spelling(), fragment_name()], 1..4usize),
                0..12,
            ),
        ) {
            let policy = defaults();
            let mut headers = HeaderMap::new();
            for (n, copies) in &entries {
                for copy in 0..*copies {
                    headers.append(name(n), HeaderValue::from(copy));
                }
            }
            let before = headers.clone();
            let expected_removed: usize = before
                .keys()
                .filter(|k| policy.is_identity_header(k))
                .map(|k| before.get_all(k).iter().count())
                .sum();
            prop_assert_eq!(policy.strip(&mut headers), expected_removed);
            prop_assert!(!policy.contains_any(&headers));
            prop_assert!(headers.keys().all(|k| !reference_is_identity(k.as_str())));
            for k in before.keys().filter(|k| !policy.is_identity_header(k)) {
                prop_assert_eq!(before.get_all(k).iter().count(), headers.get_all(k).iter().count());
            }
        }

        #[test]
        fn framing_matches_the_rules(
            content_lengths in prop::collection::vec(
                prop_oneof![
                    "[0-9]{1,21}",
                    prop::collection::vec(any::<u8>(), 0..8).prop_map(|v| String::from_utf8_lossy(&v).into_owned()),
                    "[0-9 +\\-xa-f,\t]{0,6}",
                ],
                0..3,
            ),
            transfer_encodings in prop::collection::vec(
                prop_oneof![
                    prop::sample::select(vec!["chunked", "Chunked", "CHUNKED"]).prop_map(str::to_owned),
                    "[a-zA-Z ,;\t\x0b\x0c=]{0,12}",
                ],
                0..3,
            ),
        ) {
            let mut headers = HeaderMap::new();
            for v in &content_lengths {
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.append(header::CONTENT_LENGTH, v);
                }
            }
            for v in &transfer_encodings {
                if let Ok(v) = HeaderValue::from_str(v) {
                    headers.append(header::TRANSFER_ENCODING, v);
                }
            }
            let cl: Vec<&[u8]> = headers.get_all(header::CONTENT_LENGTH).iter().map(HeaderValue::as_bytes).collect();
            let te: Vec<&[u8]> = headers.get_all(header::TRANSFER_ENCODING).iter().map(HeaderValue::as_bytes).collect();
            let acceptable = match (cl.as_slice(), te.as_slice()) {
                ([], []) => true,
                ([v], []) => (1..=19).contains(&v.len()) && v.iter().all(u8::is_ascii_digit),
                ([], [v]) => std::str::from_utf8(v).is_ok_and(|s| s.eq_ignore_ascii_case("chunked")),
                _ => false,
            };
            prop_assert_eq!(check_framing(&headers).is_ok(), acceptable, "cl {:?} te {:?}", cl, te);
        }

        #[test]
        fn hop_by_hop_never_leaks_and_never_drops_protected(
            tokens in prop::collection::vec(
                prop_oneof![
                    fragment_name(),
                    prop::sample::select(vec!["close", "upgrade", "keep-alive", "x-keep", "authorization", "host", ""]).prop_map(str::to_owned),
                ],
                0..6,
            ),
            present in prop::collection::vec(fragment_name(), 0..6),
        ) {
            let protected = |n: &HeaderName| n == "x-keep" || n.as_str().starts_with("x-user");
            let mut headers = HeaderMap::new();
            headers.append(header::CONNECTION, HeaderValue::from_str(&tokens.join(", ")).unwrap());
            for n in present.iter().chain(&tokens).filter(|n| !n.is_empty()) {
                headers.append(name(n), HeaderValue::from_static("v"));
            }
            for n in ["x-keep", "authorization", "host", "content-length", "upgrade", "te"] {
                headers.append(n, HeaderValue::from_static("1"));
            }
            let before = headers.clone();
            remove_hop_by_hop(&mut headers, &protected);
            for n in before.keys() {
                let hop = HOP_BY_HOP.contains_name(n);
                let listed = tokens.iter().any(|t| t.eq_ignore_ascii_case(n.as_str()));
                let kept = protected(n) || ALWAYS_PROTECTED.contains_name(n);
                let should_remain = !hop && (!listed || kept);
                prop_assert_eq!(headers.contains_key(n), should_remain, "{}", n);
            }
        }

        #[test]
        fn trusted_proxies_never_panic(entry in any::<String>()) {
            let _ = TrustedProxies::new(&[entry]);
        }

        #[test]
        fn cidr_contains_its_network_and_nothing_else(
            addr in any::<u32>(),
            len in 0u8..=32,
            flip in 0u8..32,
        ) {
            let network = Ipv4Addr::from(addr & v4_mask(len));
            let trusted = TrustedProxies::new(&[format!("{network}/{len}")]).unwrap();
            prop_assert!(trusted.contains(IpAddr::V4(Ipv4Addr::from(addr))));
            let other = Ipv4Addr::from(addr ^ (1u32 << flip));
            // Flipping a bit of the network part leaves the range; flipping a
            // host bit does not.
            let network_bit = u32::from(flip) >= 32 - u32::from(len);
            prop_assert_eq!(trusted.contains(IpAddr::V4(other)), !network_bit);
        }

        #[test]
        fn untrusted_forwarding_is_always_ours(
            spoofed in prop::collection::vec(
                (prop::sample::select(FORWARDING_HEADERS.names), "[ -~]{0,16}"),
                0..8,
            ),
            peer in any::<u32>(),
        ) {
            let mut headers = HeaderMap::new();
            for (n, v) in &spoofed {
                headers.append(*n, HeaderValue::from_str(v).unwrap());
            }
            let peer = IpAddr::V4(Ipv4Addr::from(peer));
            set_forwarding_headers(&mut headers, peer, "https", None, &TrustedProxies::none());
            let peer_text = peer.to_string();
            prop_assert_eq!(values(&headers, "x-forwarded-for"), [peer_text]);
            prop_assert_eq!(values(&headers, "x-forwarded-proto"), ["https"]);
            prop_assert_eq!(headers.len(), 2);
        }
    }
}
