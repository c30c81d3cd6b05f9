//! Tests of header sanitization and framing rules.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::forwarded::*;
use super::hop_by_hop::*;
use super::identity::*;
use super::*;
use crate::framing::*;
use http::header::{self, HeaderValue};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
    "x-userid",
    "X_UserName",
    "Remote-Groups",
    "remote_email",
    "REMOTE-NAME",
    "X-Authentik-Username",
    "x_authentik_groups",
    "x-authentik-meta-app",
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
    "remote",
    "remoteuser",
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
        IdentityHeaderPolicy::new(&strings(&["X-Acme_Sub"]), &strings(&["X_Acme_Claim-"])).unwrap();
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
    let hop = remove_hop_by_hop(&mut headers, Message::Response);
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(values(&headers, "accept"), ["*/*"]);
    // No `upgrade` token in Connection: not a genuine upgrade. `TE: gzip` is not `trailers`.
    assert_eq!(
        hop,
        HopByHop {
            trailer_names: vec![name("x-checksum")],
            ..HopByHop::default()
        }
    );
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
    remove_hop_by_hop(&mut headers, Message::Response);
    assert_eq!(
        headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
        ["x-qux"]
    );
}

#[test]
fn connection_cannot_remove_what_the_gateway_reads_from_a_request() {
    let pairs = [
        ("connection", "Cookie, content-type, x-foo"),
        ("cookie", "at=t"),
        ("content-type", "application/json"),
        ("x-foo", "1"),
    ];
    let mut headers = map(&pairs);
    remove_hop_by_hop(&mut headers, Message::Request);
    assert_eq!(values(&headers, "cookie"), ["at=t"]);
    assert_eq!(values(&headers, "content-type"), ["application/json"]);
    assert!(!headers.contains_key("x-foo"));

    // A response's Connection may name them.
    let mut headers = map(&pairs);
    remove_hop_by_hop(&mut headers, Message::Response);
    assert!(!headers.contains_key("cookie"));
    assert!(!headers.contains_key("content-type"));
}

#[test]
fn connection_cannot_remove_authorization_host_or_content_length() {
    let mut headers = map(&[
        ("connection", "close, Authorization"),
        ("authorization", "Bearer t"),
    ]);
    remove_hop_by_hop(&mut headers, Message::Request);
    assert_eq!(values(&headers, "authorization"), ["Bearer t"]);

    // Not from a response either.
    let mut headers = map(&[
        ("connection", "authorization, host, content-length"),
        ("authorization", "Bearer t"),
        ("host", "example.com"),
        ("content-length", "3"),
    ]);
    remove_hop_by_hop(&mut headers, Message::Response);
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
    remove_hop_by_hop(&mut headers, Message::Response);
    assert_eq!(
        headers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
        ["x-keep"]
    );
}

#[test]
fn genuine_upgrade_is_reported() {
    let mut headers = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
    let hop = remove_hop_by_hop(&mut headers, Message::Response);
    assert_eq!(hop.upgrade, Some(HeaderValue::from_static("websocket")));
    assert!(headers.is_empty());

    let mut headers = map(&[("connection", "keep-alive, upgrade"), ("upgrade", "h2c")]);
    let hop = remove_hop_by_hop(&mut headers, Message::Response);
    assert_eq!(hop.upgrade, Some(HeaderValue::from_static("h2c")));
}

#[test]
fn upgrade_without_connection_token_or_duplicated_is_ignored() {
    let mut headers = map(&[("upgrade", "websocket")]);
    assert_eq!(
        remove_hop_by_hop(&mut headers, Message::Response).upgrade,
        None
    );
    assert!(headers.is_empty());

    let mut headers = map(&[("connection", "upgrade")]);
    assert_eq!(
        remove_hop_by_hop(&mut headers, Message::Response).upgrade,
        None
    );

    let mut headers = map(&[
        ("connection", "upgrade"),
        ("upgrade", "websocket"),
        ("upgrade", "h2c"),
    ]);
    assert_eq!(
        remove_hop_by_hop(&mut headers, Message::Response).upgrade,
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
        let hop = remove_hop_by_hop(&mut headers, Message::Response);
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
    assert_eq!(trusted.networks.len(), 5);
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
    // URI overrides are the decision's to remove (`Decision::apply`), from every peer.
    assert_eq!(values(&headers, "x-original-url"), ["/admin"]);
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
    assert_eq!(remove_where(&mut headers, is_uri_override), overrides.len());
    assert_eq!(headers.len(), 1);
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

    /// The first-byte filter never changes the answer: the policy agrees with comparing the
    /// name against every exact name and prefix.
    #[test]
    fn the_first_byte_filter_agrees_with_a_full_comparison(
        name in "[A-Za-z0-9_!#$%&'*+.^`|~-]{1,40}",
    ) {
        let policy = IdentityHeaderPolicy::new(&["x-acme-employee".into()], &["acme-".into()]).unwrap();
        let bytes = name.as_bytes();
        let full = policy.exact.iter().any(|e| folded_eq(bytes, e.as_bytes()))
            || policy.prefixes.iter().any(|p| folded_starts_with(bytes, p.as_bytes()));
        prop_assert_eq!(policy.is_identity_name(bytes), full);
    }

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

    /// `remove_where` (one `HeaderMap::retain` pass) against the obvious definition: the
    /// values whose names are doomed go, every other value stays in its order, and the count is
    /// right. Up to 42 names in up to 80 fields, so the map grows and removals shift entries.
    #[test]
    fn remove_where_agrees_with_filtering_the_fields(
        fields in prop::collection::vec("[a-f]{1,2}", 0..80),
        doomed in prop::collection::vec("[a-f]{1,2}", 0..12),
    ) {
        let mut headers = HeaderMap::new();
        // Each value its field's position, so that order is checked too.
        for (position, n) in (0u32..).zip(&fields) {
            headers.append(name(n), HeaderValue::from(position));
        }
        let is_doomed = |n: &HeaderName| doomed.iter().any(|d| d == n.as_str());
        let values_of = |map: &HeaderMap, n: &HeaderName| -> Vec<HeaderValue> {
            map.get_all(n).iter().cloned().collect()
        };
        let before = headers.clone();
        let removed = remove_where(&mut headers, is_doomed);
        let expected_removed = fields.iter().filter(|n| doomed.contains(n)).count();
        prop_assert_eq!(removed, expected_removed);
        prop_assert_eq!(headers.len(), fields.len() - expected_removed);
        for n in before.keys() {
            if is_doomed(n) {
                prop_assert!(!headers.contains_key(n), "{}", n);
            } else {
                prop_assert_eq!(values_of(&headers, n), values_of(&before, n), "{}", n);
            }
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
        let mut headers = HeaderMap::new();
        headers.append(header::CONNECTION, HeaderValue::from_str(&tokens.join(", ")).unwrap());
        for n in present.iter().chain(&tokens).filter(|n| !n.is_empty()) {
            headers.append(name(n), HeaderValue::from_static("v"));
        }
        for n in ["cookie", "authorization", "host", "content-length", "upgrade", "te"] {
            headers.append(n, HeaderValue::from_static("1"));
        }
        let before = headers.clone();
        remove_hop_by_hop(&mut headers, Message::Request);
        for n in before.keys() {
            let hop = HOP_BY_HOP.contains_name(n);
            let listed = tokens.iter().any(|t| t.eq_ignore_ascii_case(n.as_str()));
            let kept = PROTECTED_IN_REQUESTS.contains_name(n);
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
        let network = ipnet::Ipv4Net::new(Ipv4Addr::from(addr), len).unwrap().trunc().addr();
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

// === trailers ===

#[test]
fn request_trailers_lose_identity_credentials_and_framing_in_every_spelling() {
    let mut trailers = map(&[
        ("x-user-id", "admin"),
        ("X_User_Roles", "admin"),
        ("x-trustgate-assertion", "forged"),
        ("authorization", "Bearer forged"),
        ("cookie", "at=forged"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-original-url", "/admin"),
        ("content-length", "5"),
        ("host", "evil"),
        ("te", "trailers"),
        ("grpc-status", "0"),
        ("x-checksum", "abc"),
    ]);
    let removed = sanitize_request_trailers(&defaults(), &mut trailers);
    assert_eq!(removed, 10);
    let mut left: Vec<_> = trailers.keys().map(|k| k.as_str().to_owned()).collect();
    left.sort();
    assert_eq!(left, strings(&["grpc-status", "x-checksum"]));
}

/// Every forwarding header the head loses from an untrusted peer is a field the gateway sets
/// itself, so a client must not get it to a trailer-merging service as a trailer either: not
/// only the `X-Forwarded-*` few, but `True-Client-IP`, `X-Client-IP`, `X-Forwarded-Ssl`, ...
#[test]
fn request_trailers_lose_every_forwarding_header() {
    for &forwarding in FORWARDING_HEADERS.names {
        let underscored = forwarding.replace('-', "_");
        for spelling in [forwarding, underscored.as_str()] {
            let mut trailers = map(&[(spelling, "203.0.113.9"), ("grpc-status", "0")]);
            sanitize_request_trailers(&defaults(), &mut trailers);
            assert_eq!(
                trailers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
                ["grpc-status"],
                "{spelling} passed as a request trailer"
            );
        }
        let mut headers = map(&[("trailer", forwarding)]);
        let hop = remove_hop_by_hop(&mut headers, Message::Request);
        restate_request_trailers(&defaults(), &mut headers, &hop.trailer_names);
        assert!(
            headers.get(header::TRAILER).is_none(),
            "{forwarding} declared to the upstream"
        );
    }
}

/// Trace context is read from the head only, and the head loses a client's unless it is believed
/// (`telemetry.trust_incoming`); as a trailer, which no tracer sends, a service that merges
/// trailers would take a client's `baggage: user.id=admin` or chosen trace id from it.
#[test]
fn request_trailers_lose_trace_context_in_every_spelling() {
    for spelling in ["traceparent", "Tracestate", "baggage", "BAGGAGE"] {
        let mut trailers = map(&[(spelling, "user.id=admin"), ("grpc-status", "0")]);
        sanitize_request_trailers(&defaults(), &mut trailers);
        assert_eq!(
            trailers.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["grpc-status"],
            "{spelling} passed as a request trailer"
        );
    }
    let mut headers = map(&[("trailer", "traceparent, baggage, x-checksum")]);
    let hop = remove_hop_by_hop(&mut headers, Message::Request);
    restate_request_trailers(&defaults(), &mut headers, &hop.trailer_names);
    assert_eq!(values(&headers, "trailer"), ["x-checksum"]);
}

#[test]
fn response_trailers_lose_hop_by_hop_fields_only() {
    let mut trailers = map(&[
        ("grpc-status", "0"),
        ("grpc-message", "ok"),
        ("connection", "close"),
        ("x-user-id", "set-by-service"),
    ]);
    sanitize_response_trailers(&mut trailers);
    let mut left: Vec<_> = trailers.keys().map(|k| k.as_str().to_owned()).collect();
    left.sort();
    assert_eq!(left, strings(&["grpc-message", "grpc-status", "x-user-id"]));
}

#[test]
fn a_request_trailer_declaration_is_restated_with_the_fields_that_pass() {
    let mut headers = map(&[
        ("trailer", "X-Checksum, X_User_Id,authorization"),
        (
            "trailer",
            " grpc-status ,x-checksum,, bad name ,Content-Length",
        ),
        ("accept", "*/*"),
    ]);
    let hop = remove_hop_by_hop(&mut headers, Message::Request);
    // Lower case, once each, in order; what is not a field name is dropped.
    assert_eq!(
        hop.trailer_names,
        [
            "x-checksum",
            "x_user_id",
            "authorization",
            "grpc-status",
            "content-length"
        ]
        .map(name)
    );
    assert!(headers.get(header::TRAILER).is_none());
    restate_request_trailers(&defaults(), &mut headers, &hop.trailer_names);
    assert_eq!(values(&headers, "trailer"), ["x-checksum, grpc-status"]);
    assert_eq!(values(&headers, "accept"), ["*/*"]);
}

#[test]
fn a_declaration_with_nothing_that_passes_is_not_restated() {
    let mut headers = map(&[("trailer", "X-User-Id, Cookie")]);
    let hop = remove_hop_by_hop(&mut headers, Message::Request);
    restate_request_trailers(&defaults(), &mut headers, &hop.trailer_names);
    assert!(headers.is_empty(), "{headers:?}");

    let mut headers = HeaderMap::new();
    restate_request_trailers(&defaults(), &mut headers, &[]);
    restate_response_trailers(&mut headers, &[]);
    assert!(headers.is_empty(), "{headers:?}");
}

#[test]
fn a_response_trailer_declaration_loses_hop_by_hop_names_only() {
    let mut headers = map(&[("trailer", "grpc-status, Keep-Alive, x-user-id, TE")]);
    let hop = remove_hop_by_hop(&mut headers, Message::Response);
    restate_response_trailers(&mut headers, &hop.trailer_names);
    assert_eq!(values(&headers, "trailer"), ["grpc-status, x-user-id"]);
}

#[test]
fn a_message_framed_by_transfer_encoding_loses_its_content_length() {
    let mut headers = map(&[
        ("transfer-encoding", "chunked"),
        ("content-length", "1"),
        ("content-type", "text/plain"),
    ]);
    remove_hop_by_hop(&mut headers, Message::Response);
    assert_eq!(headers.len(), 1, "{headers:?}");
    assert_eq!(values(&headers, "content-type"), ["text/plain"]);

    // Without Transfer-Encoding, Content-Length is the framing and stays.
    let mut headers = map(&[("content-length", "12"), ("connection", "keep-alive")]);
    remove_hop_by_hop(&mut headers, Message::Response);
    assert_eq!(values(&headers, "content-length"), ["12"]);
}

#[test]
fn equal_content_lengths_of_a_response_become_one() {
    for fields in [
        &[("content-length", "42"), ("content-length", "42")][..],
        &[("content-length", "42, 42")],
        &[("content-length", "42 ,42"), ("content-length", "042")],
    ] {
        let mut headers = map(fields);
        headers.append("x-other", HeaderValue::from_static("1"));
        assert_eq!(single_content_length(&mut headers), Ok(()), "{fields:?}");
        assert_eq!(values(&headers, "content-length"), ["42"], "{fields:?}");
        assert_eq!(values(&headers, "x-other"), ["1"]);
    }
    // One plain field, or none, is left as it is.
    let mut headers = map(&[("content-length", "7")]);
    assert_eq!(single_content_length(&mut headers), Ok(()));
    assert_eq!(values(&headers, "content-length"), ["7"]);
    let mut headers = HeaderMap::new();
    assert_eq!(single_content_length(&mut headers), Ok(()));
    assert!(headers.is_empty());
}

#[test]
fn disagreeing_or_malformed_content_lengths_of_a_response_are_refused() {
    for (fields, expected) in [
        (
            &[("content-length", "42"), ("content-length", "43")][..],
            FramingError::DuplicateContentLength,
        ),
        (
            &[("content-length", "1, 2")],
            FramingError::DuplicateContentLength,
        ),
        (
            &[("content-length", "1, ")],
            FramingError::InvalidContentLength,
        ),
        (
            &[("content-length", "1, +1")],
            FramingError::InvalidContentLength,
        ),
        (
            &[("content-length", "1"), ("content-length", "0x1")],
            FramingError::InvalidContentLength,
        ),
        (
            &[("content-length", "12345678901234567890, 1")],
            FramingError::InvalidContentLength,
        ),
    ] {
        let mut headers = map(fields);
        assert_eq!(
            single_content_length(&mut headers),
            Err(expected),
            "{fields:?}"
        );
    }
}

#[test]
fn cookie_fields_are_joined_into_one() {
    let mut headers = map(&[
        ("cookie", "a=1"),
        ("accept", "*/*"),
        ("cookie", "b=2; c=3"),
        ("cookie", "d=4"),
    ]);
    join_cookie_fields(&mut headers);
    assert_eq!(values(&headers, "cookie"), ["a=1; b=2; c=3; d=4"]);
    assert_eq!(values(&headers, "accept"), ["*/*"]);
    assert!(!headers.get("cookie").unwrap().is_sensitive());

    let mut headers = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
    if let http::header::Entry::Occupied(mut entry) = headers.entry("cookie") {
        entry.iter_mut().nth(1).unwrap().set_sensitive(true);
    }
    join_cookie_fields(&mut headers);
    assert_eq!(values(&headers, "cookie"), ["a=1; b=2"]);
    assert!(headers.get("cookie").unwrap().is_sensitive());

    let mut headers = map(&[("cookie", "a=1; b=2")]);
    join_cookie_fields(&mut headers);
    assert_eq!(values(&headers, "cookie"), ["a=1; b=2"]);
}

#[test]
fn the_hop_by_hop_pass_tells_when_content_length_needs_collapsing() {
    let repeated = |fields: &[(&str, &str)]| {
        let mut headers = map(fields);
        remove_hop_by_hop(&mut headers, Message::Response).content_length_repeated
    };
    assert!(!repeated(&[("content-length", "2")]));
    assert!(!repeated(&[("accept", "*/*")]));
    assert!(repeated(&[
        ("content-length", "2"),
        ("content-length", "2")
    ]));
    assert!(repeated(&[("content-length", "2, 2")]));
    // Framed by Transfer-Encoding: the Content-Length is gone, nothing to collapse.
    assert!(!repeated(&[
        ("transfer-encoding", "chunked"),
        ("content-length", "2, 2")
    ]));
}
