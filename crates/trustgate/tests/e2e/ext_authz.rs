//! End-to-end: Envoy's gRPC ext_authz (`forward_auth.grpc_listen`). A tonic client built from the
//! same official Envoy protos (`envoy-types`) sends `Authorization/Check` as Envoy does, and the
//! answers are checked field by field. Envoy itself is not installable here (no Debian package).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use serde_json::json;
use tonic::transport::Endpoint;

use crate::common::{Config, Fixture, Gateway, Pattern, Route, bearer, jwt_payload, rt};

/// gRPC codes (google.rpc.Code).
const OK: i32 = 0;
const INVALID_ARGUMENT: i32 = 3;
const PERMISSION_DENIED: i32 = 7;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

/// The decision endpoint's routes and trust (127.0.0.1 only), a route that requires a role, and
/// the gRPC door.
fn config(f: &Fixture) -> Config {
    crate::forward_auth::config(f)
        .route(
            Route::new("admin", "/admin", "echo", Pattern::IdentityHeaders)
                .require(json!({"roles": ["admin"]})),
        )
        .section("forward_auth", "grpc_listen", "127.0.0.1:0")
}

/// A check as Envoy sends it: header names lower case, Host in `host`, pseudo-headers in the map.
fn check_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.insert(":authority".into(), "api.example".into());
    map.insert(":path".into(), path.into());
    map.insert(":method".into(), method.into());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    host: "api.example".into(),
                    scheme: "http".into(),
                    protocol: "HTTP/1.1".into(),
                    headers: map,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Sends one check to `addr`, from `local` when given.
fn send(addr: SocketAddr, local: Option<IpAddr>, request: CheckRequest) -> CheckResponse {
    rt().block_on(async {
        let channel = Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .local_address(local)
            .connect()
            .await
            .unwrap();
        AuthorizationClient::new(channel)
            .check(request)
            .await
            .unwrap()
            .into_inner()
    })
}

fn ok_response(r: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(r.status.as_ref().unwrap().code, OK, "{r:?}");
    match &r.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("not an ok_response: {other:?}"),
    }
}

/// The denied response, after checking its gRPC code and HTTP status.
fn denied_response(r: &CheckResponse, code: i32, http_status: i32) -> &DeniedHttpResponse {
    assert_eq!(r.status.as_ref().unwrap().code, code, "{r:?}");
    let denied = match &r.http_response {
        Some(HttpResponse::DeniedResponse(denied)) => denied,
        other => panic!("not a denied_response: {other:?}"),
    };
    assert_eq!(denied.status.unwrap().code, http_status, "{r:?}");
    denied
}

/// The headers of an RFC 6750 refusal with `challenge`.
fn challenge_headers(challenge: &str) -> Vec<(String, String)> {
    [
        ("www-authenticate", challenge),
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ]
    .map(|(name, value)| (name.to_owned(), value.to_owned()))
    .to_vec()
}

/// (name, value) of each header option, after checking each replaces the request's value.
fn set_headers(options: &[HeaderValueOption]) -> Vec<(String, String)> {
    options
        .iter()
        .map(|option| {
            assert_eq!(
                option.append_action,
                HeaderAppendAction::OverwriteIfExistsOrAdd as i32
            );
            let header = option.header.as_ref().unwrap();
            (header.key.clone(), header.value.clone())
        })
        .collect()
}

/// Pattern 3: the verified identity is set, and the client's token and forged identity headers
/// (any spelling) are removed or replaced.
#[test]
fn a_valid_token_is_allowed_with_the_identity_set_and_forgeries_removed() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let grpc = gateway.grpc.expect("grpc_listen is bound and logged");
    let auth = bearer(&f.token_with("alice", json!({"roles": ["reader"]})));
    let r = send(
        grpc,
        None,
        check_request(
            "GET",
            "/users/1?x=y",
            &[
                ("authorization", &auth),
                ("x-user-id", "mallory"),
                ("x_user_id", "mallory-2"),
                ("x-user-email", "mallory@example"),
                ("x-original-url", "/admin"),
                ("x-forwarded-uri", "/public"),
                ("x_forwarded_for", "10.9.9.9"),
                ("x_real_ip", "10.9.9.9"),
                ("x-forwarded-for", "192.0.2.1"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "admin.example"),
                ("x-real-ip", "10.9.9.9"),
                ("forwarded", "for=10.9.9.9;host=admin.example"),
            ],
        ),
    );
    let ok = ok_response(&r);
    // `x-user-id` is replaced, the other identity headers and `x-forwarded-uri` (a client's, not
    // Envoy's description) are removed, and so is the external token. The `_` spellings of
    // forwarding headers, which CGI-style upstreams read as the real ones, go too, and so do the
    // client's forwarding headers Envoy does not state itself (`x-forwarded-host`, `x-real-ip`,
    // `forwarded`: a service reading them would see another host than the one judged). Envoy's
    // own `x-forwarded-for` and `x-forwarded-proto` stay.
    assert_eq!(
        set_headers(&ok.headers),
        [
            ("x-user-id".to_owned(), "alice".to_owned()),
            ("x-user-roles".to_owned(), "reader".to_owned()),
        ]
    );
    assert_eq!(
        ok.headers_to_remove,
        [
            "authorization",
            "forwarded",
            "x-forwarded-host",
            "x-forwarded-uri",
            "x-original-url",
            "x-real-ip",
            "x-tenant-id",
            "x-user-email",
            "x_forwarded_for",
            "x_real_ip",
            "x_user_id"
        ]
    );
}

/// Pattern 4: Authorization becomes an internal token for the route's service.
#[test]
fn an_internal_token_route_gets_a_minted_authorization() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let auth = bearer(&f.token("bob"));
    let r = send(
        gateway.grpc.unwrap(),
        None,
        check_request("POST", "/pay/charge", &[("authorization", &auth)]),
    );
    let ok = ok_response(&r);
    let set = set_headers(&ok.headers);
    let [(name, value)] = &set[..] else {
        panic!("{set:?}");
    };
    assert_eq!(name, "authorization");
    let internal = value.strip_prefix("Bearer ").unwrap();
    assert_ne!(value, &auth);
    let claims = jwt_payload(internal);
    assert_eq!(claims["aud"], "payments");
    assert_eq!(claims["sub"], "bob");
    assert!(ok.headers_to_remove.is_empty(), "{ok:?}");
}

/// Refusals carry the gRPC code and the HTTP answer Envoy sends the client.
#[test]
fn refusals_carry_the_code_and_the_http_answer() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let grpc = gateway.grpc.unwrap();

    let r = send(grpc, None, check_request("GET", "/users/1", &[]));
    let denied = denied_response(&r, UNAUTHENTICATED, 401);
    assert_eq!(set_headers(&denied.headers), challenge_headers("Bearer"));
    assert_eq!(denied.body, r#"{"error":"unauthorized"}"#);

    let auth = bearer(&f.token_with("carol", json!({"roles": ["reader"]})));
    let r = send(
        grpc,
        None,
        check_request("GET", "/admin/x", &[("authorization", &auth)]),
    );
    let denied = denied_response(&r, PERMISSION_DENIED, 403);
    assert_eq!(
        set_headers(&denied.headers),
        challenge_headers(r#"Bearer error="insufficient_scope""#)
    );
    assert_eq!(denied.body, r#"{"error":"insufficient_scope"}"#);

    // Envoy's `headers` joins repeated headers with `,`: two tokens become one malformed value.
    let joined = format!("{auth},{auth}");
    let r = send(
        grpc,
        None,
        check_request("GET", "/users/1", &[("authorization", &joined)]),
    );
    denied_response(&r, INVALID_ARGUMENT, 400);

    // A target that is not origin-form describes no route.
    let r = send(grpc, None, check_request("GET", "*", &[]));
    denied_response(&r, INVALID_ARGUMENT, 400);
}

/// The path is normalized before routing: `/public/%2e%2e/users` is the protected `/users`.
/// Envoy forwards the path as the client wrote it (unless `normalize_path` is on), so a path
/// that normalization would change is refused: judged as its normal form, `/users/%2e%2e/public`
/// would pass as the public `/public` and reach an upstream that serves it under `/users`.
#[test]
fn a_path_that_normalization_would_change_is_refused() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let grpc = gateway.grpc.unwrap();
    for path in [
        "/public/%2e%2e/users",
        "/users/%2e%2e/public",
        "/users/./../public/p",
        "/users//../public/p",
    ] {
        let r = send(grpc, None, check_request("GET", path, &[]));
        denied_response(&r, INVALID_ARGUMENT, 400);
    }
    // The public route itself needs no token.
    let r = send(grpc, None, check_request("GET", "/public/p", &[]));
    let ok = ok_response(&r);
    assert!(
        ok.headers.is_empty() && ok.headers_to_remove.is_empty(),
        "{ok:?}"
    );
}

/// A peer outside `forward_auth.trusted_proxies` is refused, even for a public route, with a
/// 403 Envoy enforces (not a gRPC error, which `failure_mode_allow` would let through).
#[test]
fn a_check_from_an_untrusted_peer_is_refused() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let grpc = gateway.grpc.unwrap();
    let r = send(
        grpc,
        Some("127.0.0.3".parse().unwrap()),
        check_request("GET", "/public/p", &[]),
    );
    let denied = denied_response(&r, PERMISSION_DENIED, 403);
    assert_eq!(denied.body, r#"{"error":"forbidden"}"#);
    assert!(gateway.wait_for_log("untrusted_forwarder", std::time::Duration::from_secs(5)));
}

/// A check over the gateway's 1 MiB limit (Envoy's `max_request_headers_kb` goes up to 8 MiB,
/// and `with_request_body` adds the body) is refused by tonic before the handler runs. It still
/// gets a `CheckResponse` that denies, not a gRPC error status, which an Envoy with
/// `failure_mode_allow: true` would take for "authorization down" and let through with the
/// forged identity header.
#[test]
fn an_oversized_check_gets_a_denial_not_an_error_status() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let grpc = gateway.grpc.unwrap();
    let padding = "a".repeat(1_100_000);
    let request = check_request(
        "GET",
        "/users/1",
        &[("x-user-id", "admin"), ("x-padding", &padding)],
    );
    let r = rt().block_on(async {
        let channel = Endpoint::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        AuthorizationClient::new(channel)
            .max_encoding_message_size(usize::MAX)
            .check(request)
            .await
            .expect("a CheckResponse, not a gRPC error status")
            .into_inner()
    });
    let denied = denied_response(&r, INVALID_ARGUMENT, 400);
    assert_eq!(denied.body, r#"{"error":"bad_request"}"#);
    assert!(gateway.wait_for_log("malformed_description", std::time::Duration::from_secs(5)));
    // The connection and the door still answer ordinary checks.
    let r = send(grpc, None, check_request("GET", "/public/p", &[]));
    ok_response(&r);
}

/// With `encode_raw_headers`, Envoy sends `header_map` (raw bytes, repeated names apart) instead
/// of `headers`; both at once is ambiguous and refused.
#[test]
fn raw_header_maps_are_read_and_both_forms_at_once_are_refused() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let grpc = gateway.grpc.unwrap();
    let auth = bearer(&f.token("dave"));
    // `keep`: the `headers` map stays filled too.
    let raw = |path: &str, pairs: &[(&str, &str)], keep: bool| {
        let mut request = check_request("GET", path, &[("x-a", "1")]);
        let http = request
            .attributes
            .as_mut()
            .and_then(|a| a.request.as_mut())
            .and_then(|r| r.http.as_mut())
            .unwrap();
        if !keep {
            http.headers.clear();
        }
        let headers = pairs.iter().map(|(key, value)| HeaderValue {
            key: (*key).to_owned(),
            raw_value: value.as_bytes().to_vec(),
            ..Default::default()
        });
        http.header_map = Some(HeaderMap {
            headers: headers.collect(),
        });
        request
    };

    let pairs = [
        (":authority", "api.example"),
        ("authorization", auth.as_str()),
        ("x-user-id", "a"),
        ("x-user-id", "b"),
    ];
    let r = send(grpc, None, raw("/users/1", &pairs, false));
    let ok = ok_response(&r);
    assert_eq!(
        set_headers(&ok.headers),
        [("x-user-id".to_owned(), "dave".to_owned())]
    );
    assert_eq!(
        ok.headers_to_remove,
        ["authorization", "x-tenant-id", "x-user-roles"]
    );

    // Two Authorization headers, kept apart in the raw map, are refused as the proxy refuses them.
    let pairs = [("authorization", auth.as_str()), ("authorization", &auth)];
    let r = send(grpc, None, raw("/users/1", &pairs, false));
    denied_response(&r, INVALID_ARGUMENT, 400);

    let r = send(grpc, None, raw("/public/p", &[("x-b", "2")], true));
    denied_response(&r, INVALID_ARGUMENT, 400);
}

/// Checks whose messages never finish hold at most 32 MiB across the door: one connection
/// starts 80 checks whose length prefix says 1,000,000 bytes, sends 900,000 of each and stops
/// (72 MB if every one were held, as tonic holds a message until it is whole). The checks past
/// the bound are answered at once with a denial (a `CheckResponse`, never an error status): 503
/// `temporarily_unavailable` with `Retry-After`, counted as `overloaded`; the rest wait; the
/// gateway's memory grows by less than the 72 MB; once the client ends its bodies, each of those
/// is denied as malformed (400) and an ordinary check is allowed again.
#[test]
fn unfinished_checks_are_held_to_a_bound_and_the_rest_denied() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, StreamBody};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use prost::Message;

    type Chunk = Result<http_body::Frame<Bytes>, std::convert::Infallible>;
    const CHECKS: usize = 80;

    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let grpc = gateway.grpc.unwrap();
    let before_kib = gateway.rss_kib();
    let rt = rt();
    let (feeders, mut answers) = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(grpc).await.unwrap();
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(connection);
        let mut feeders = Vec::new();
        let mut answers = Vec::new();
        for _ in 0..CHECKS {
            let (feeder, chunks) = tokio::sync::mpsc::channel::<Chunk>(2);
            let mut prefix = vec![0u8];
            prefix.extend_from_slice(&1_000_000u32.to_be_bytes());
            feeder
                .send(Ok(http_body::Frame::data(Bytes::from(prefix))))
                .await
                .unwrap();
            feeder
                .send(Ok(http_body::Frame::data(Bytes::from(vec![0u8; 900_000]))))
                .await
                .unwrap();
            let request = http::Request::post(format!(
                "http://{grpc}/envoy.service.auth.v3.Authorization/Check"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(StreamBody::new(
                tokio_stream::wrappers::ReceiverStream::new(chunks),
            ))
            .unwrap();
            sender.ready().await.unwrap();
            answers.push(tokio::spawn(sender.send_request(request)));
            feeders.push(feeder);
        }
        (feeders, answers)
    });
    // Time for every byte sent to arrive and be read.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let grown_mib = gateway.rss_kib().saturating_sub(before_kib) / 1024;

    // The denial in a response: one gRPC message, a CheckResponse.
    let denial = |response: http::Response<hyper::body::Incoming>, code, status, body_text| async move {
        assert_eq!(response.status(), 200);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let r = CheckResponse::decode(&body[5..]).unwrap();
        let denied = denied_response(&r, code, status);
        assert_eq!(denied.body, body_text);
        denied
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .any(|h| h.key == "retry-after" && h.value == "1")
    };
    let (answered_early, waiting): (Vec<_>, Vec<_>) =
        answers.drain(..).partition(|answer| answer.is_finished());
    // 32 MiB holds 37 of these bodies whole at most; which ones depends on how their frames
    // interleave, and some are held.
    assert!(
        (CHECKS - 37..CHECKS).contains(&answered_early.len()),
        "{} of {CHECKS} checks answered while their bodies were unfinished",
        answered_early.len()
    );
    // tonic's buffers round each body up, and h2 holds frames not yet read.
    assert!(
        grown_mib < 60,
        "{CHECKS} unfinished checks made the gateway hold {grown_mib} MiB more"
    );
    let early = answered_early.len();
    rt.block_on(async {
        for answer in answered_early {
            let response = answer.await.unwrap().unwrap();
            let retry = denial(
                response,
                UNAVAILABLE,
                503,
                r#"{"error":"temporarily_unavailable"}"#,
            )
            .await;
            assert!(retry, "a full door's denial says when to try again");
        }
        // The bodies end short of their messages: each remaining check is refused as well.
        drop(feeders);
        for answer in waiting {
            let response = answer.await.unwrap().unwrap();
            denial(
                response,
                INVALID_ARGUMENT,
                400,
                r#"{"error":"bad_request"}"#,
            )
            .await;
        }
    });
    assert_eq!(
        gateway.metric(r#"trustgate_rejected_before_routing_total{reason="overloaded"}"#),
        Some(early as f64)
    );
    let r = send(grpc, None, check_request("GET", "/public/p", &[]));
    ok_response(&r);
}
