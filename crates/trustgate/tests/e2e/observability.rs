//! End-to-end: what operators see. `/metrics` counters and gauges, `/readyz` with and without
//! keys, and JSON access logs that never contain a token.

use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Config, Fixture, Gateway, Issuer, Pattern, Route, Upstream, bearer, wait_until,
};

fn routes(f: &Fixture) -> Config {
    f.config()
        .route(Route::new("fwd", "/fwd", "echo", Pattern::ForwardToken))
        .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders))
        .route(Route::new("pub", "/pub", "echo", Pattern::Public))
}

#[test]
fn metrics_count_outcomes_failures_keys_and_cache_hits() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f));
    let t = f.token("alice");
    for _ in 0..3 {
        assert_eq!(
            gateway
                .get("/fwd/x", &[("Authorization", &bearer(&t))])
                .status,
            200
        );
    }
    let expired = f.expired_token("bob");
    assert_eq!(
        gateway
            .get("/fwd/x", &[("Authorization", &bearer(&expired))])
            .status,
        401
    );
    assert_eq!(gateway.get("/fwd/x", &[]).status, 401);
    assert_eq!(gateway.get("/pub/x", &[]).status, 200);
    assert_eq!(gateway.get("/nowhere", &[]).status, 404);

    let (status, body) = gateway.admin_get("/metrics");
    assert_eq!(status, 200);
    let expect = [
        (
            r#"trustgate_requests_total{route="fwd",outcome="allowed"}"#,
            3.0,
        ),
        (
            r#"trustgate_requests_total{route="fwd",outcome="unauthorized"}"#,
            2.0,
        ),
        (
            r#"trustgate_requests_total{route="fwd",outcome="forbidden"}"#,
            0.0,
        ),
        (
            r#"trustgate_requests_total{route="pub",outcome="allowed"}"#,
            1.0,
        ),
        (
            r#"trustgate_requests_total{route="ids",outcome="allowed"}"#,
            0.0,
        ),
        (
            r#"trustgate_validation_failures_total{reason="expired"}"#,
            1.0,
        ),
        (
            r#"trustgate_rejected_before_routing_total{reason="no_route"}"#,
            1.0,
        ),
        (r#"trustgate_token_cache_hits_total"#, 2.0),
    ];
    for (series, value) in expect {
        assert_eq!(gateway.metric(series), Some(value), "{series} in:\n{body}");
    }
    let keys = format!(r#"trustgate_jwks_keys{{issuer="{}"}}"#, f.iss);
    assert_eq!(gateway.metric(&keys), Some(1.0), "{body}");
    let ready = format!(r#"trustgate_issuer_ready{{issuer="{}"}}"#, f.iss);
    assert_eq!(gateway.metric(&ready), Some(1.0), "{body}");
    assert!(
        body.contains("trustgate_upstream_duration_seconds_bucket{"),
        "{body}"
    );
    assert!(!body.contains(&t), "a token in the metrics");
}

/// The admin listener takes `[server]`'s limits too: a head sent too slowly is cut off at
/// `header_read_timeout`, and connections over `max_connections` are closed at once (a scraper or
/// any peer reaching the port cannot hold descriptors).
#[test]
fn the_admin_listener_cuts_off_slow_heads_and_caps_connections() {
    use std::io::Write as _;
    let f = Fixture::new();
    let gateway = Gateway::start(
        &routes(&f)
            .server("header_read_timeout", "1s")
            .server("max_connections", 2),
    );
    let mut slow = std::net::TcpStream::connect(gateway.admin).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nX-Slow: ")
        .unwrap();
    let (_, closed) = crate::common::read_until_closed(&mut slow, Duration::from_secs(5));
    assert!(
        closed,
        "the admin listener kept a half-sent head open for 5 s"
    );

    // Kept-alive connections, each after one answered request; then one over the limit.
    let healthz = || {
        let mut stream = std::net::TcpStream::connect(gateway.admin).unwrap();
        let _ = stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\n\r\n");
        let mut first = [0u8; 12];
        let answered =
            std::io::Read::read_exact(&mut stream, &mut first).is_ok() && &first == b"HTTP/1.1 200";
        (stream, answered)
    };
    // The slow connection's slot is given back when its task ends, just after the close.
    let mut held: Vec<std::net::TcpStream> = Vec::new();
    for _ in 0..2 {
        assert!(wait_until(Duration::from_secs(5), || {
            let (stream, answered) = healthz();
            if answered {
                held.push(stream);
            }
            answered
        }));
    }
    let (mut over, answered) = healthz();
    assert!(!answered);
    let (rest, closed) = crate::common::read_until_closed(&mut over, Duration::from_secs(5));
    assert!(closed && rest.is_empty(), "{rest:?}");
    // Closing them frees their places.
    drop(held);
    assert!(wait_until(Duration::from_secs(5), || healthz().1));
}

#[test]
fn readyz_is_200_with_keys() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f));
    let (status, body) = gateway.admin_get("/readyz");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!("ready\nready {} keys=1\n", f.iss));
    let (status, body) = gateway.admin_get("/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
}

#[test]
fn issuer_down_at_start_means_not_ready_and_503_never_2xx_until_it_recovers() {
    let down = crate::common::closed_port();
    let iss = format!("http://{down}");
    let upstream = crate::common::echo();
    let key = test_support::TestKey::es256("k1");
    let gateway = Gateway::start(
        &Config::new()
            .issuer(
                Issuer::discovery("idp", &iss)
                    .audiences(&["api"])
                    .refresh(json!({"retry_base": "100ms"})),
            )
            .upstream(Upstream::new("echo", &upstream.url()))
            .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders))
            .route(Route::new("pub", "/pub", "echo", Pattern::Public)),
    );
    let (status, body) = gateway.admin_get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready\n"), "{body}");
    assert!(body.contains(&format!("not-ready {iss} keys=0")), "{body}");

    let t = key.sign(&test_support::claims(&iss, "api", "alice"));
    let r = gateway.get("/ids/x", &[("Authorization", &bearer(&t))]);
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.body_text(), r#"{"error":"temporarily_unavailable"}"#);
    assert_eq!(upstream.count(), 0);
    // A route that does not validate is not affected.
    assert_eq!(gateway.get("/pub/x", &[]).status, 200);
    assert_eq!(
        gateway.metric(r#"trustgate_requests_total{route="ids",outcome="unavailable"}"#),
        Some(1.0)
    );

    // The issuer comes up at that address: the gateway picks its keys up in the background.
    let issuer = crate::common::rt().block_on(test_support::TestIssuer::start_on(down));
    issuer.set_keys(&[&key]);
    assert!(
        wait_until(Duration::from_secs(10), || gateway.admin_get("/readyz").0
            == 200),
        "never became ready: {}",
        gateway.admin_get("/readyz").1
    );
    let r = gateway.get("/ids/x", &[("Authorization", &bearer(&t))]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(
        upstream.last().unwrap().header_values("x-user-id"),
        ["alice"]
    );
}

fn access_lines(gateway: &Gateway) -> Vec<Value> {
    gateway
        .log_lines("trustgate::access")
        .iter()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect()
}

#[test]
fn access_logs_are_json_lines_without_tokens() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f));
    let t = f.token_with("alice", json!({"roles": ["admin"]}));
    let expired = f.expired_token("bob");
    let cookie_like = format!("session={t}");
    assert_eq!(
        gateway
            .get(
                "/ids/a",
                &[("Authorization", &bearer(&t)), ("Cookie", &cookie_like)]
            )
            .status,
        200
    );
    assert_eq!(
        gateway
            .get("/fwd/b", &[("Authorization", &bearer(&expired))])
            .status,
        401
    );
    assert_eq!(
        gateway
            .get("/pub/c", &[("Authorization", "Bearer opaque-secret")])
            .status,
        200
    );
    assert!(wait_until(Duration::from_secs(5), || access_lines(
        &gateway
    )
    .len()
        >= 3));
    let lines = access_lines(&gateway);
    let find = |route: &str| {
        lines
            .iter()
            .find(|l| l["route"] == route)
            .unwrap_or_else(|| panic!("no access line for {route}: {lines:?}"))
    };
    let ids = find("ids");
    assert_eq!(ids["subject"], "alice");
    assert_eq!(ids["decision"], "allowed");
    assert_eq!(ids["status"], 200);
    assert_eq!(ids["method"], "GET");
    assert_eq!(ids["issuer"], f.iss.as_str());
    let fwd = find("fwd");
    assert_eq!(fwd["decision"], "expired");
    assert_eq!(fwd["status"], 401);
    assert_eq!(fwd["subject"], "-");
    let public = find("pub");
    assert_eq!(public["decision"], "allowed");
    assert_eq!(public["subject"], "-");

    let log = gateway.log_text();
    assert!(!log.contains(&t), "the token is in the log");
    assert!(!log.contains(&expired), "the expired token is in the log");
    assert!(
        !log.contains("opaque-secret"),
        "an opaque token is in the log"
    );
    // Not even the signature part alone.
    let signature = t.rsplit('.').next().unwrap();
    assert!(!log.contains(signature));
}
