//! Front doors that answer for another proxy (nginx `auth_request`, Traefik ForwardAuth, Caddy
//! `forward_auth`, Envoy ext_authz): read the original request that proxy describes, ask the
//! engine, and turn its decision into the header edits the proxy applies.
//!
//! The proxy, not the client, describes the request, so those descriptions are believed only from
//! a trusted peer; from anyone else the front door refuses. The described method, target and host
//! then go through the same engine as a request to the reverse proxy: the same normalization
//! before routing (the bypasses of other forward-auth tools came from routing on an
//! un-normalized `X-Forwarded-Uri`), the same sanitization, the same patterns.

use http::header::{AUTHORIZATION, COOKIE, HOST};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::decision::{Decision, Engine, HeaderEdit};
use crate::token::remove_cookie;

/// How the calling proxy describes the original request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// nginx `auth_request`: `X-Original-Method`, `X-Original-URI` and `X-Original-Host` (nginx's
    /// `$host`, the host it routed on), as the nginx configuration sets them.
    Nginx,
    /// Traefik ForwardAuth and Caddy `forward_auth`: `X-Forwarded-Method`, `-Uri`, `-Host`.
    ForwardedHeaders,
    /// Envoy's HTTP ext_authz service: the check request is the original request itself (its
    /// method, path and headers), under an optional path prefix.
    Envoy,
}

impl Convention {
    /// A stable name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Convention::Nginx => "nginx",
            Convention::ForwardedHeaders => "forwarded-headers",
            Convention::Envoy => "envoy",
        }
    }
}

/// Why the original request cannot be read from a check request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescribeError {
    /// The peer is not a trusted proxy: its description of a request proves nothing.
    UntrustedPeer,
    /// Both conventions' headers, or one of them twice: which request is meant is ambiguous.
    Ambiguous,
    /// A described method, target or host that does not parse.
    Malformed,
}

/// The original request, as the proxy described it.
#[derive(Debug)]
pub struct Described {
    /// Which convention described it.
    pub convention: Convention,
    /// The original method.
    pub method: Method,
    /// The original target (path and query), before normalization.
    pub uri: Uri,
    /// The original headers: the check request's, without the description headers, with the
    /// original Host.
    pub headers: HeaderMap,
}

const X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
const X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
const X_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-original-host");
const X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
const X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The header through which Envoy's HTTP ext_authz filter lets an authorization server remove
/// request headers; the other proxies' snippets read it too.
pub const HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");

/// The one value of `name`, if present; two values are ambiguous.
fn single<'h>(
    headers: &'h HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'h HeaderValue>, DescribeError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(value), None) => Ok(Some(value)),
        (Some(_), Some(_)) => Err(DescribeError::Ambiguous),
    }
}

/// Reads the original request from a check request `method uri headers` sent by `peer_trusted`.
/// `envoy_prefix` is the path prefix Envoy's `http_service.path_prefix` puts before the original
/// path (`""` for none).
///
/// # Errors
/// [`DescribeError`]: an untrusted peer, an ambiguous or a malformed description.
pub fn describe(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    peer_trusted: bool,
    convention: Convention,
    envoy_prefix: &str,
) -> Result<Described, DescribeError> {
    if !peer_trusted {
        return Err(DescribeError::UntrustedPeer);
    }
    // Only the configured convention describes the request. Detecting it from the headers would
    // let a client choose: a proxy that passes a client's `X-Forwarded-Uri` through (Envoy's
    // HTTP filter with a broad `allowed_headers`) would have the endpoint judge a path the
    // client named instead of the one forwarded. Another convention's headers are refused.
    let nginx = [&X_ORIGINAL_METHOD, &X_ORIGINAL_URI, &X_ORIGINAL_HOST]
        .iter()
        .any(|name| headers.contains_key(*name));
    let forwarded = [&X_FORWARDED_METHOD, &X_FORWARDED_URI]
        .iter()
        .any(|name| headers.contains_key(*name));
    let (method, target, host) = match convention {
        Convention::Nginx if forwarded => return Err(DescribeError::Ambiguous),
        Convention::ForwardedHeaders if nginx => return Err(DescribeError::Ambiguous),
        Convention::Envoy if nginx || forwarded => return Err(DescribeError::Ambiguous),
        Convention::Nginx => (
            single(headers, &X_ORIGINAL_METHOD)?,
            single(headers, &X_ORIGINAL_URI)?,
            // Required: the check's own Host names trustgate's upstream in nginx, not the host
            // nginx routed the request on, and judging that one let a host-bound route be
            // bypassed (a request without Host, or whose target's host differs from it).
            Some(single(headers, &X_ORIGINAL_HOST)?.ok_or(DescribeError::Malformed)?),
        ),
        Convention::ForwardedHeaders => (
            single(headers, &X_FORWARDED_METHOD)?,
            single(headers, &X_FORWARDED_URI)?,
            single(headers, &X_FORWARDED_HOST)?,
        ),
        Convention::Envoy => {
            let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
            let original = path_and_query
                .strip_prefix(envoy_prefix)
                .filter(|rest| rest.starts_with('/'))
                .ok_or(DescribeError::Malformed)?;
            let original = original
                .parse::<Uri>()
                .map_err(|_| DescribeError::Malformed)?;
            let mut described = headers.clone();
            described.remove(http::header::CONTENT_LENGTH);
            described.remove(http::header::TRANSFER_ENCODING);
            // Over HTTP/2 Envoy's check carries the original host as `:authority`, which hyper
            // keeps in the URI and not as a Host header. Without it, a host-bound route would
            // never match and the check would be judged on a host-less route.
            if !described.contains_key(HOST) {
                let authority = uri.authority().ok_or(DescribeError::Malformed)?;
                let host = HeaderValue::from_str(authority.as_str())
                    .map_err(|_| DescribeError::Malformed)?;
                described.insert(HOST, host);
            }
            return Ok(Described {
                convention: Convention::Envoy,
                method: method.clone(),
                uri: original,
                headers: described,
            });
        }
    };
    // Both the method and the target must be described: a default would authorize a request
    // the proxy did not mean.
    let (Some(method), Some(target)) = (method, target) else {
        return Err(DescribeError::Malformed);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| DescribeError::Malformed)?;
    let target = std::str::from_utf8(target.as_bytes()).map_err(|_| DescribeError::Malformed)?;
    // A request target never has a fragment (RFC 9112 §3.2), and parsing drops one: judged
    // without it, `/public#/../admin` passed as `/public`, while the proxy forwards it whole.
    if !target.starts_with('/') || target.contains('#') {
        return Err(DescribeError::Malformed);
    }
    let uri = target
        .parse::<Uri>()
        .map_err(|_| DescribeError::Malformed)?;
    let host = host.cloned();
    let mut described = headers.clone();
    for name in [
        &X_ORIGINAL_METHOD,
        &X_ORIGINAL_URI,
        &X_ORIGINAL_HOST,
        &X_FORWARDED_METHOD,
        &X_FORWARDED_URI,
        &X_FORWARDED_HOST,
        &http::header::CONTENT_LENGTH,
        &http::header::TRANSFER_ENCODING,
    ] {
        described.remove(name);
    }
    described.remove(HOST);
    if let Some(host) = host {
        described.insert(HOST, host);
    }
    Ok(Described {
        convention,
        method,
        uri,
        headers: described,
    })
}

/// Reads the original request from the attributes Envoy's gRPC ext_authz filter sends
/// (`CheckRequest.attributes.request.http`): its `method`, its `path` (the request target as
/// received: path and query, not decoded), its `host` (Host or `:authority`) and its headers,
/// given as (name, value) pairs from either `headers` or `header_map`. `peer_trusted`: the gRPC
/// peer is in the trusted proxies.
///
/// Unlike [`describe`], no header of the original request is a description: the fields are, so
/// a client's `X-Forwarded-Uri` or `X-Original-URI` stays an ordinary header. Pseudo-headers
/// (`:path`, `:authority`, …) and any `host` entry are skipped, since the fields state them.
///
/// # Errors
/// [`DescribeError::UntrustedPeer`]; [`DescribeError::Malformed`] for a method, target, host or
/// header that does not parse (refused rather than dropped: a header the engine cannot see is
/// one it cannot remove).
pub fn describe_attributes<'a>(
    method: &str,
    path: &str,
    host: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    peer_trusted: bool,
) -> Result<Described, DescribeError> {
    if !peer_trusted {
        return Err(DescribeError::UntrustedPeer);
    }
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| DescribeError::Malformed)?;
    // Only origin-form: `*` and authority-form targets name no route. No fragment either: parsing
    // would drop it, and the engine would judge less than the proxy forwards.
    if !path.starts_with('/') || path.contains('#') {
        return Err(DescribeError::Malformed);
    }
    let uri = path.parse::<Uri>().map_err(|_| DescribeError::Malformed)?;
    let mut described = HeaderMap::new();
    for (name, value) in headers {
        if name.starts_with(':') {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| DescribeError::Malformed)?;
        if name == HOST
            || name == http::header::CONTENT_LENGTH
            || name == http::header::TRANSFER_ENCODING
        {
            continue;
        }
        let value = HeaderValue::from_bytes(value).map_err(|_| DescribeError::Malformed)?;
        described.append(name, value);
    }
    if !host.is_empty() {
        let host = HeaderValue::from_str(host).map_err(|_| DescribeError::Malformed)?;
        described.insert(HOST, host);
    }
    Ok(Described {
        convention: Convention::Envoy,
        method,
        uri,
        headers: described,
    })
}

/// The values of `name` in `headers` as one field, for a proxy that sets it from one answer
/// header: Cookie headers are one list joined with `; ` (as HTTP/2 allows), any other field
/// with `, ` (as RFC 9110 folds fields). `None` when absent, or when the joined bytes are not a
/// header value.
pub fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let values: Vec<&[u8]> = headers
        .get_all(name)
        .iter()
        .map(HeaderValue::as_bytes)
        .collect();
    let separator: &[u8] = if name == COOKIE { b"; " } else { b", " };
    match values.as_slice() {
        [] => None,
        [one] => HeaderValue::from_bytes(one).ok(),
        many => HeaderValue::from_bytes(&many.join(separator)).ok(),
    }
}

/// What the calling proxy must do to the original request before it goes upstream: remove these
/// headers, then set these. The removals are every client identity and URI-override header the
/// request carries, and the credentials the pattern takes away; the sets are the pattern's
/// (identity headers, the internal token as Authorization, the assertion, the Cookie header
/// without the token cookie).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Edits {
    /// Header names to remove, lower case, each once, sorted.
    pub remove: Vec<HeaderName>,
    /// Headers to set, replacing any value the request has.
    pub set: Vec<(HeaderName, HeaderValue)>,
}

impl Edits {
    /// The edits that turn the described request into what the reverse proxy would forward.
    pub fn of(engine: &Engine, decision: &Decision, described: &HeaderMap) -> Self {
        let mut edits = Edits::default();
        for name in engine.client_headers_removed(described) {
            edits.remove_once(name.clone());
        }
        for edit in decision.header_edits() {
            match edit {
                HeaderEdit::Remove(name) => edits.remove_once(name),
                HeaderEdit::Set(name, value) => {
                    edits.remove.retain(|removed| *removed != name);
                    edits.set.retain(|(set, _)| *set != name);
                    edits.set.push((name, value));
                }
                HeaderEdit::RemoveCookie(cookie) => {
                    let mut rest = described.clone();
                    remove_cookie(&mut rest, &cookie);
                    match joined(&rest, &COOKIE) {
                        Some(value) => edits.set.push((COOKIE, value)),
                        None => edits.remove_once(COOKIE),
                    }
                }
            }
        }
        // One order whatever the request's header order: the answer is stable, and so are logs.
        edits.remove.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        edits
    }

    /// For Envoy (both doors): the client's own forwarding headers are removed too, but for the
    /// ones Envoy states itself (`X-Forwarded-For` and `-Proto`, `x-envoy-*`). nginx, Caddy and
    /// Traefik set or drop every forwarding header themselves; Envoy sets only those, so a
    /// client's `X-Forwarded-Host`, `X-Real-IP` or `Forwarded` would reach the service, which may
    /// read another host or address from them than the one judged. The reverse proxy removes
    /// them too.
    pub fn remove_client_forwarding_headers(&mut self, described: &HeaderMap) {
        for name in described.keys() {
            let envoy_sets = matches!(
                name.as_str(),
                "x-forwarded-for"
                    | "x-forwarded-proto"
                    | "x-envoy-external-address"
                    | "x-envoy-internal"
            );
            if !envoy_sets && crate::headers::is_forwarding_header_name(name.as_str().as_bytes()) {
                self.remove_once(name.clone());
            }
        }
        self.remove.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    }

    fn remove_once(&mut self, name: HeaderName) {
        if !self.remove.contains(&name) && !self.set.iter().any(|(set, _)| *set == name) {
            self.remove.push(name);
        }
    }

    /// Whether the edits take the caller's Authorization away (patterns 2's unchecked value, 3
    /// and 4) or replace it.
    pub fn touches_authorization(&self) -> bool {
        self.remove.contains(&AUTHORIZATION) || self.set.iter().any(|(n, _)| *n == AUTHORIZATION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn get() -> (Method, Uri) {
        (Method::GET, "/auth".parse().unwrap())
    }

    #[test]
    fn nginx_and_forwarded_descriptions_are_read_and_consumed() {
        let (m, u) = get();
        let nginx = headers(&[
            ("x-original-method", "POST"),
            ("x-original-uri", "/admin?x=1"),
            ("x-original-host", "api.example"),
            ("host", "trustgate:9902"),
            ("authorization", "Bearer t"),
        ]);
        let d = describe(&m, &u, &nginx, true, Convention::Nginx, "").unwrap();
        assert_eq!(d.convention, Convention::Nginx);
        assert_eq!(d.method, Method::POST);
        assert_eq!(d.uri, "/admin?x=1");
        assert_eq!(d.headers.get("host").unwrap(), "api.example");
        assert_eq!(d.headers.get("authorization").unwrap(), "Bearer t");
        assert!(!d.headers.contains_key("x-original-uri"));

        let forwarded = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/users/1"),
            ("x-forwarded-host", "api.example"),
            ("x-forwarded-proto", "https"),
        ]);
        let d = describe(&m, &u, &forwarded, true, Convention::ForwardedHeaders, "").unwrap();
        assert_eq!(d.convention, Convention::ForwardedHeaders);
        assert_eq!(d.uri, "/users/1");
        assert_eq!(d.headers.get("host").unwrap(), "api.example");
        assert!(!d.headers.contains_key("x-forwarded-uri"));
    }

    /// The proxy in front forwards the target as the client wrote it, so a target normalization
    /// would change is refused on every door: judged as `/public`, `/admin/%2e%2e/public` would
    /// reach an upstream that does not resolve `%2e%2e` as `/admin/...`.
    #[test]
    fn for_envoy_the_clients_forwarding_headers_are_removed_but_those_envoy_sets() {
        let described = headers(&[
            ("x-forwarded-host", "admin.example"),
            ("x-real-ip", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("x-envoy-internal", "true"),
            ("x-user-id", "mallory"),
            ("accept", "*/*"),
        ]);
        let mut edits = Edits {
            remove: vec![HeaderName::from_static("x-user-id")],
            set: vec![(
                HeaderName::from_static("x-forwarded-port"),
                HeaderValue::from_static("1"),
            )],
        };
        edits.remove_client_forwarding_headers(&described);
        let removed: Vec<&str> = edits.remove.iter().map(HeaderName::as_str).collect();
        // Sorted; what is set is not also removed.
        assert_eq!(
            removed,
            ["forwarded", "x-forwarded-host", "x-real-ip", "x-user-id"]
        );
    }

    /// Every door describes the target exactly as the proxy in front will forward it, never a
    /// normalized form: the engine judges it as received (`TargetForwarding::AsReceived`) and
    /// refuses it if normalization would change it.
    #[test]
    fn every_door_describes_the_target_as_received() {
        let (m, u) = get();
        for target in [
            "/admin/%2e%2e/public",
            "/admin//../public",
            "/%61dmin",
            "/admin/users?q=a%2Fb",
        ] {
            let nginx = headers(&[
                ("x-original-method", "GET"),
                ("x-original-uri", target),
                ("x-original-host", "api.example"),
            ]);
            let d = describe(&m, &u, &nginx, true, Convention::Nginx, "").unwrap();
            assert_eq!(d.uri, target);
            let forwarded = headers(&[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", target),
                ("x-forwarded-host", "api.example"),
            ]);
            let d = describe(&m, &u, &forwarded, true, Convention::ForwardedHeaders, "").unwrap();
            assert_eq!(d.uri, target);
            let d = envoy_get(&format!("/ext{target}"), &[("host", "api.example")]).unwrap();
            assert_eq!(d.uri, target);
            let d = describe_attributes("GET", target, "api.example", [], true).unwrap();
            assert_eq!(d.uri, target);
        }
    }

    /// A `#` in a described target: parsing it as a `Uri` drops the `#` and all after it, so the
    /// engine judged `/public`, in normal form, while the proxy forwards `/public#/../admin` as
    /// the client wrote it (nginx's `$request_uri`, Caddy's `{http.request.uri}`), and an
    /// upstream that keeps the `#` in the path (Go's `ParseRequestURI`, then `path.Clean`)
    /// resolves `/admin`. The path judged must be the path served: refused.
    #[test]
    fn a_described_target_with_a_fragment_is_refused() {
        let (m, u) = get();
        for target in ["/public#/../admin", "/public?x=1#/../../admin", "/public#"] {
            let nginx = headers(&[
                ("x-original-method", "GET"),
                ("x-original-uri", target),
                ("x-original-host", "api.example"),
            ]);
            assert_eq!(
                describe(&m, &u, &nginx, true, Convention::Nginx, "").unwrap_err(),
                DescribeError::Malformed,
                "{target}"
            );
            let forwarded = headers(&[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", target),
                ("x-forwarded-host", "api.example"),
            ]);
            assert_eq!(
                describe(&m, &u, &forwarded, true, Convention::ForwardedHeaders, "").unwrap_err(),
                DescribeError::Malformed,
                "{target}"
            );
            assert_eq!(
                describe_attributes("GET", target, "api.example", [], true).unwrap_err(),
                DescribeError::Malformed,
                "{target}"
            );
        }
    }

    /// A GET check from Envoy's HTTP filter under the path prefix `/ext`.
    fn envoy_get(target: &str, pairs: &[(&str, &str)]) -> Result<Described, DescribeError> {
        let uri: Uri = target.parse().unwrap();
        describe(
            &Method::GET,
            &uri,
            &headers(pairs),
            true,
            Convention::Envoy,
            "/ext",
        )
    }

    /// Over HTTP/2, Envoy's check carries the original host as `:authority` only: it becomes
    /// the described Host, so host-bound routes still match. A check with neither is refused.
    #[test]
    fn an_envoy_check_over_http2_keeps_its_host() {
        let d = envoy_get("http://admin.example/ext/secret", &[]).unwrap();
        assert_eq!(d.uri, "/secret");
        assert_eq!(d.headers.get(HOST).unwrap(), "admin.example");
        // A Host header, as HTTP/1.1 sends, is kept as it is.
        let d = envoy_get("/ext/secret", &[("host", "admin.example:8443")]).unwrap();
        assert_eq!(d.headers.get(HOST).unwrap(), "admin.example:8443");
        assert_eq!(
            envoy_get("/ext/secret", &[]).unwrap_err(),
            DescribeError::Malformed
        );
    }

    #[test]
    fn envoy_checks_are_the_original_request_under_a_prefix() {
        let uri: Uri = "/ext/users/1?q=2".parse().unwrap();
        let d = describe(
            &Method::DELETE,
            &uri,
            &headers(&[("host", "api")]),
            true,
            Convention::Envoy,
            "/ext",
        )
        .unwrap();
        assert_eq!(d.convention, Convention::Envoy);
        assert_eq!(d.method, Method::DELETE);
        assert_eq!(d.uri, "/users/1?q=2");
        // A description another proxy would give is not this convention's: refused, never
        // believed (a client could send it through Envoy's HTTP filter).
        for forged in [
            ("x-forwarded-uri", "/public"),
            ("x-original-uri", "/public"),
        ] {
            assert_eq!(
                describe(
                    &Method::GET,
                    &uri,
                    &headers(&[forged]),
                    true,
                    Convention::Envoy,
                    "/ext"
                )
                .unwrap_err(),
                DescribeError::Ambiguous
            );
        }
        let forwarded_to_nginx = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert_eq!(
            describe(
                &Method::GET,
                &uri,
                &forwarded_to_nginx,
                true,
                Convention::Nginx,
                ""
            )
            .unwrap_err(),
            DescribeError::Ambiguous
        );
        assert_eq!(
            describe(
                &Method::GET,
                &"/other/x".parse().unwrap(),
                &HeaderMap::new(),
                true,
                Convention::Envoy,
                "/ext"
            )
            .unwrap_err(),
            DescribeError::Malformed
        );
    }

    #[test]
    fn grpc_attributes_are_the_original_request_and_headers_describe_nothing() {
        let pairs: &[(&str, &[u8])] = &[
            (":authority", b"ignored"),
            (":path", b"/ignored"),
            ("host", b"ignored"),
            ("X-User-Id", b"mallory"),
            ("x-forwarded-uri", b"/public"),
            ("cookie", b"a=1"),
            ("cookie", b"b=2"),
            ("content-length", b"3"),
        ];
        let d = describe_attributes(
            "POST",
            "/users/x?q=1",
            "api.example",
            pairs.iter().copied(),
            true,
        )
        .unwrap();
        assert_eq!(d.convention, Convention::Envoy);
        assert_eq!(d.method, Method::POST);
        assert_eq!(d.uri, "/users/x?q=1");
        assert_eq!(d.headers.get("host").unwrap(), "api.example");
        assert_eq!(d.headers.get("x-user-id").unwrap(), "mallory");
        assert_eq!(d.headers.get("x-forwarded-uri").unwrap(), "/public");
        assert_eq!(d.headers.get_all("cookie").iter().count(), 2);
        assert!(!d.headers.contains_key("content-length"));
        assert_eq!(d.headers.len(), 5);
    }

    #[test]
    fn grpc_attributes_from_an_untrusted_peer_or_that_do_not_parse_are_refused() {
        let none = || std::iter::empty::<(&str, &[u8])>();
        assert_eq!(
            describe_attributes("GET", "/public", "h", none(), false).unwrap_err(),
            DescribeError::UntrustedPeer
        );
        for (method, path, host) in [
            ("", "/a", "h"),
            ("G E T", "/a", "h"),
            ("GET", "", "h"),
            ("GET", "*", "h"),
            ("GET", "http://evil/a", "h"),
            ("GET", "/a b", "h"),
            ("GET", "/a", "h\n"),
        ] {
            assert_eq!(
                describe_attributes(method, path, host, none(), true).unwrap_err(),
                DescribeError::Malformed,
                "{method:?} {path:?} {host:?}"
            );
        }
        for pair in [("bad name", &b"v"[..]), ("x-a", &b"v\r\n"[..])] {
            assert_eq!(
                describe_attributes("GET", "/a", "h", [pair], true).unwrap_err(),
                DescribeError::Malformed,
                "{pair:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// Any attributes an Envoy (or anything at the gRPC port) sends: no panic, and what is
        /// read is an origin-form target, the host from its field, and no pseudo-header.
        #[test]
        fn grpc_attributes_never_panic_and_describe_only_the_fields(
            method in "[A-Z]{0,3}|.{0,4}",
            path in "/[ -~]{0,12}|.{0,6}",
            host in "[a-z.:0-9]{0,8}|.{0,4}",
            pairs in proptest::collection::vec(
                ("(:?[a-z_-]{1,6}|host|.{0,3})", proptest::collection::vec(proptest::prelude::any::<u8>(), 0..6)),
                0..6,
            ),
        ) {
            let headers = pairs.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
            if let Ok(d) = describe_attributes(&method, &path, &host, headers, true) {
                proptest::prop_assert!(d.uri.path().starts_with('/'));
                proptest::prop_assert!(d.uri.authority().is_none());
                let described_host = d.headers.get(HOST).map(HeaderValue::as_bytes);
                proptest::prop_assert_eq!(described_host, (!host.is_empty()).then_some(host.as_bytes()));
                proptest::prop_assert!(d.headers.keys().all(|n| !n.as_str().starts_with(':')));
            }
        }
    }

    #[test]
    fn an_nginx_description_without_its_host_is_refused() {
        let (m, u) = get();
        // The check's own Host is trustgate's upstream name in nginx, never the client's host.
        let hostless = headers(&[
            ("x-original-method", "GET"),
            ("x-original-uri", "/admin"),
            ("host", "trustgate_decisions"),
        ]);
        assert_eq!(
            describe(&m, &u, &hostless, true, Convention::Nginx, "").unwrap_err(),
            DescribeError::Malformed
        );
    }

    #[test]
    fn descriptions_from_untrusted_ambiguous_or_incomplete_sources_are_refused() {
        let (m, u) = get();
        let forged = headers(&[
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/public"),
        ]);
        assert_eq!(
            describe(&m, &u, &forged, false, Convention::ForwardedHeaders, "").unwrap_err(),
            DescribeError::UntrustedPeer
        );
        for pairs in [
            &[
                ("x-original-uri", "/a"),
                ("x-forwarded-uri", "/b"),
                ("x-original-method", "GET"),
            ][..],
            &[
                ("x-forwarded-uri", "/a"),
                ("x-forwarded-uri", "/b"),
                ("x-forwarded-method", "GET"),
            ][..],
        ] {
            assert_eq!(
                describe(
                    &m,
                    &u,
                    &headers(pairs),
                    true,
                    Convention::ForwardedHeaders,
                    ""
                )
                .unwrap_err(),
                DescribeError::Ambiguous,
                "{pairs:?}"
            );
        }
        for pairs in [
            &[("x-forwarded-uri", "/a")][..],
            &[("x-forwarded-method", "GET")][..],
            &[
                ("x-forwarded-method", "GET"),
                ("x-forwarded-uri", "http://evil/a"),
            ][..],
            &[("x-forwarded-method", "G E T"), ("x-forwarded-uri", "/a")][..],
        ] {
            assert_eq!(
                describe(
                    &m,
                    &u,
                    &headers(pairs),
                    true,
                    Convention::ForwardedHeaders,
                    ""
                )
                .unwrap_err(),
                DescribeError::Malformed,
                "{pairs:?}"
            );
        }
    }
}
