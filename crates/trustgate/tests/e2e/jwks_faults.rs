//! End-to-end: the issuer's JWKS endpoint misbehaving, through the real binary. Stale keys keep
//! serving when the issuer goes down later (and stop at `max_staleness`); a slow, stalled,
//! oversized or garbage key set at start means not ready and never 2xx, then recovery once it is
//! fixed; the same faults on a refresh never replace the good keys; and a flood of unknown `kid`s
//! costs exactly one fetch per cooldown while valid tokens keep passing.
//!
//! The issuer knobs (`[issuer.refresh]`, `[jwks_fetch]`) are set so every test runs in seconds.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::{Behavior, EchoUpstream, TestIssuer, TestKey};

use crate::common::{
    Client, Config, Gateway, Issuer, Pattern, RawResponse, Route, Upstream, bearer, rt, wait_until,
};

/// The default `[jwks_fetch] max_bytes`.
const MAX_JWKS_BYTES: usize = 262_144;

struct Setup {
    issuer: TestIssuer,
    key: TestKey,
    upstream: EchoUpstream,
    iss: String,
}

impl Setup {
    /// An issuer serving one ES256 key, then `behavior`.
    fn new(behavior: Behavior) -> Self {
        let issuer = crate::common::issuer();
        let key = TestKey::es256("k1");
        issuer.set_keys(&[&key]);
        issuer.set_behavior(behavior);
        let iss = issuer.url();
        Self {
            issuer,
            key,
            upstream: crate::common::echo(),
            iss,
        }
    }

    /// A gateway whose issuer uses `refresh` (the `[issuer.refresh]` knobs) and, if given, the
    /// `[jwks_fetch] timeout`, with one identity-headers route `/ids`.
    fn gateway(&self, refresh: Value, fetch_timeout: Option<&str>) -> Gateway {
        let mut config = Config::new()
            .issuer(
                Issuer::discovery("idp", &self.iss)
                    .audiences(&["api"])
                    .refresh(refresh),
            )
            .upstream(Upstream::new("echo", &self.upstream.url()))
            .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders));
        if let Some(timeout) = fetch_timeout {
            config = config.section("jwks_fetch", "timeout", timeout);
        }
        Gateway::start(&config)
    }

    /// A fresh valid token (a new subject each time, so it is never a cache hit).
    fn token(&self, sub: &str) -> String {
        self.key.sign(&test_support::claims(&self.iss, "api", sub))
    }

    fn series(&self, name: &str) -> String {
        format!(r#"{name}{{issuer="{}"}}"#, self.iss)
    }

    fn fetch_failures(&self, gateway: &Gateway) -> f64 {
        gateway
            .metric(&self.series("trustgate_jwks_fetch_failures_total"))
            .unwrap_or(0.0)
    }
}

fn get(gateway: &Gateway, token: &str) -> RawResponse {
    gateway.get("/ids/x", &[("Authorization", &bearer(token))])
}

/// Asserts a fresh token gets 200 with the identity forwarded.
fn assert_serves(gateway: &Gateway, setup: &Setup, sub: &str) {
    let r = get(gateway, &setup.token(sub));
    assert_eq!(r.status, 200, "{sub}: {}", r.body_text());
    assert_eq!(
        setup.upstream.last().unwrap().header_values("x-user-id"),
        [sub]
    );
}

/// Asserts the gateway is not ready and answers a valid token 503 (never 2xx), with nothing
/// reaching the upstream.
fn assert_unavailable(gateway: &Gateway, setup: &Setup, what: &str) {
    let (status, body) = gateway.admin_get("/readyz");
    assert_eq!(status, 503, "{what}: {body}");
    assert!(
        body.contains(&format!("not-ready {} keys=0", setup.iss)),
        "{what}: {body}"
    );
    let before = setup.upstream.count();
    for i in 0..3 {
        let r = get(gateway, &setup.token(&format!("u{i}")));
        assert_eq!(r.status, 503, "{what}: {}", r.body_text());
        assert_eq!(r.body_text(), r#"{"error":"temporarily_unavailable"}"#);
    }
    assert_eq!(
        setup.upstream.count(),
        before,
        "{what}: a request reached the upstream"
    );
}

/// Starts the gateway against an issuer answering `behavior`, checks it is unavailable, then
/// fixes the issuer with `fix` and waits for recovery.
fn fault_at_start_then_recovery(behavior: Behavior, fix: Behavior, what: &str) {
    let setup = Setup::new(behavior);
    let started = Instant::now();
    let gateway = setup.gateway(
        json!({"retry_base": "100ms", "default_interval": "400ms", "min_interval": "100ms"}),
        Some("300ms"),
    );
    // The first fetch is bounded by the fetch timeout: a stalled issuer cannot hold the start.
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{what}: start took {:?}",
        started.elapsed()
    );
    assert!(setup.issuer.jwks_fetches() >= 1, "{what}: no fetch");
    assert_unavailable(&gateway, &setup, what);
    assert!(setup.fetch_failures(&gateway) >= 1.0, "{what}");

    setup.issuer.set_behavior(fix);
    assert!(
        wait_until(Duration::from_secs(10), || gateway.admin_get("/readyz").0
            == 200),
        "{what}: never recovered: {}",
        gateway.admin_get("/readyz").1
    );
    assert_eq!(
        gateway.metric(&setup.series("trustgate_jwks_keys")),
        Some(1.0)
    );
    assert_serves(&gateway, &setup, "alice");
}

#[test]
fn a_slow_key_set_at_start_times_out_never_2xx_then_recovers() {
    fault_at_start_then_recovery(
        Behavior::Delay(Duration::from_secs(5)),
        Behavior::Normal,
        "slow",
    );
}

#[test]
fn a_stalled_key_set_at_start_times_out_never_2xx_then_recovers() {
    fault_at_start_then_recovery(Behavior::Stall, Behavior::Normal, "stalled");
}

/// One byte over `max_bytes` is refused; a valid key set of exactly `max_bytes` is accepted.
#[test]
fn an_oversized_key_set_at_start_is_refused_to_the_byte_then_recovers() {
    fault_at_start_then_recovery(
        Behavior::Padded(MAX_JWKS_BYTES + 1),
        Behavior::Padded(MAX_JWKS_BYTES),
        "oversized",
    );
}

#[test]
fn garbage_key_sets_at_start_are_never_2xx_then_recover() {
    let key_from_elsewhere = TestKey::es256("k1");
    for (what, body) in [
        ("html", "<html>502 Bad Gateway</html>".to_owned()),
        ("truncated", r#"{"keys":[{"kty":"EC","crv":"P-2"#.to_owned()),
        ("no keys", r#"{"keys":[]}"#.to_owned()),
        ("not an object", "[]".to_owned()),
        ("keys not an array", r#"{"keys":{"kty":"EC"}}"#.to_owned()),
        (
            "symmetric only",
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1"}]}"#.to_owned(),
        ),
        (
            "duplicate keys member",
            format!(r#"{{"keys":[],"keys":[{}]}}"#, key_from_elsewhere.jwk()),
        ),
    ] {
        fault_at_start_then_recovery(Behavior::Body(body), Behavior::Normal, what);
    }
}

/// The issuer fails, then disappears: keys keep serving (fresh tokens, not only cached ones)
/// until `max_staleness`, then 503 and not ready; when the issuer is back, traffic recovers.
#[test]
fn the_issuer_going_down_later_leaves_stale_keys_serving_until_max_staleness() {
    let setup = Setup::new(Behavior::Normal);
    let gateway = setup.gateway(json!({"default_interval": "200ms", "min_interval": "100ms", "retry_base": "100ms", "max_staleness": "3s"}), Some("300ms"));
    assert_eq!(gateway.admin_get("/readyz").0, 200);
    assert_serves(&gateway, &setup, "before");

    // First it answers errors (which also ends the gateway's pooled connection), then its port
    // closes for good.
    setup.issuer.set_behavior(Behavior::Reset);
    assert!(wait_until(Duration::from_secs(5), || setup
        .fetch_failures(&gateway)
        >= 1.0));
    let addr = setup.issuer.addr;
    let Setup {
        issuer,
        key,
        upstream,
        iss,
    } = setup;
    drop(issuer);
    let setup = Setup {
        issuer: rt().block_on(TestIssuer::start_on(crate::common::closed_port())),
        key,
        upstream,
        iss,
    };
    let failures = setup.fetch_failures(&gateway);
    assert!(
        wait_until(Duration::from_secs(5), || setup.fetch_failures(&gateway)
            >= failures + 2.0),
        "no refresh attempts while down"
    );
    // Stale but within max_staleness: fresh tokens verify with the old keys.
    assert_eq!(gateway.admin_get("/readyz").0, 200);
    assert_serves(&gateway, &setup, "while-down");
    assert_eq!(
        gateway.metric(&setup.series("trustgate_jwks_keys")),
        Some(1.0)
    );

    // Past max_staleness: 503 for fresh and for cached tokens alike, and not ready.
    let cached = setup.token("cached");
    assert_eq!(get(&gateway, &cached).status, 200);
    assert!(
        wait_until(Duration::from_secs(10), || gateway.admin_get("/readyz").0
            == 503),
        "never became stale"
    );
    let r = get(&gateway, &setup.token("too-stale"));
    assert_eq!(r.status, 503, "{}", r.body_text());
    assert_eq!(get(&gateway, &cached).status, 503);

    // The issuer comes back at its address: keys are fetched again and traffic recovers.
    let back = rt().block_on(TestIssuer::start_on(addr));
    back.set_keys(&[&setup.key]);
    assert!(
        wait_until(Duration::from_secs(10), || gateway.admin_get("/readyz").0
            == 200),
        "never recovered"
    );
    assert_serves(&gateway, &setup, "after");
    assert_eq!(get(&gateway, &cached).status, 200);
}

/// Every bad answer on a refresh is counted as a failure and leaves the good keys in place; a
/// good refresh afterwards is still applied.
#[test]
fn garbage_oversized_stalled_or_failing_refreshes_never_replace_the_good_keys() {
    let setup = Setup::new(Behavior::Normal);
    let gateway = setup.gateway(
        json!({"default_interval": "150ms", "min_interval": "100ms", "retry_base": "100ms"}),
        Some("300ms"),
    );
    assert_serves(&gateway, &setup, "start");
    for (i, (what, behavior)) in [
        ("garbage", Behavior::Body("not json at all".to_owned())),
        ("no keys", Behavior::Body(r#"{"keys":[]}"#.to_owned())),
        (
            "unusable keys",
            Behavior::Body(r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"k1"}]}"#.to_owned()),
        ),
        ("oversized", Behavior::Padded(MAX_JWKS_BYTES + 1)),
        ("stalled", Behavior::Stall),
        ("slow", Behavior::Delay(Duration::from_secs(5))),
        ("500", Behavior::Status(500)),
        ("reset", Behavior::Reset),
    ]
    .into_iter()
    .enumerate()
    {
        let failures = setup.fetch_failures(&gateway);
        setup.issuer.set_behavior(behavior);
        assert!(
            wait_until(Duration::from_secs(10), || setup.fetch_failures(&gateway)
                >= failures + 2.0),
            "{what}: the refresh did not fail"
        );
        assert_eq!(gateway.admin_get("/readyz").0, 200, "{what}");
        assert_eq!(
            gateway.metric(&setup.series("trustgate_jwks_keys")),
            Some(1.0),
            "{what}"
        );
        assert_serves(&gateway, &setup, &format!("during-{i}"));
        setup.issuer.set_behavior(Behavior::Normal);
    }
    // A good refresh is still applied: a second key appears.
    let k2 = TestKey::es256("k2");
    setup.issuer.set_keys(&[&setup.key, &k2]);
    assert!(
        wait_until(Duration::from_secs(5), || gateway
            .metric(&setup.series("trustgate_jwks_keys"))
            == Some(2.0)),
        "the good refresh was not applied"
    );
}

/// A request whose `kid` is unknown waits for the refetch it starts at most
/// `refresh.unknown_kid_wait` (1 s by default), however slow the issuer, then gets 401; before,
/// it waited the whole fetch timeout (5 s by default, twice with a refresh in flight).
#[test]
fn an_unknown_kid_waits_a_bounded_time_for_a_stalled_issuer() {
    let setup = Setup::new(Behavior::Normal);
    let gateway = setup.gateway(
        json!({"unknown_kid_cooldown": "100ms", "default_interval": "1h"}),
        Some("10s"),
    );
    assert_serves(&gateway, &setup, "start");
    setup.issuer.set_behavior(Behavior::Stall);
    let stranger = TestKey::es256("rotated-in");
    // The second one finds the first refetch still in flight and asks for one more after it.
    for i in 0..2 {
        let token = stranger.sign(&test_support::claims(&setup.iss, "api", "new"));
        let started = std::time::Instant::now();
        let r = get(&gateway, &token);
        let waited = started.elapsed();
        assert_eq!(r.status, 401, "{i}: {}", r.body_text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
        // A hang check with a wide margin, not a timing benchmark: the stall lasts far longer.
        assert!(waited < Duration::from_secs(3), "{i}: waited {waited:?}");
        std::thread::sleep(Duration::from_millis(150));
    }
    // Known keys keep working while the refetch is stuck.
    assert_serves(&gateway, &setup, "during");
    setup.issuer.set_behavior(Behavior::Normal);

    // Configurable, and refused when zero.
    let quick = setup.gateway(json!({"unknown_kid_wait": "200ms", "unknown_kid_cooldown": "100ms", "default_interval": "1h"}), Some("10s"));
    assert_serves(&quick, &setup, "quick");
    setup.issuer.set_behavior(Behavior::Stall);
    let token = stranger.sign(&test_support::claims(&setup.iss, "api", "new"));
    let started = std::time::Instant::now();
    assert_eq!(get(&quick, &token).status, 401);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

/// Floods `/ids` with tokens whose `kid`s are all unknown, from `threads` keep-alive clients,
/// while one more client sends fresh valid tokens. Returns (flood responses that were not
/// exactly 401, valid responses, valid responses that were not 200, flood duration).
fn kid_flood(
    gateway: &Gateway,
    setup: &Setup,
    threads: usize,
    per_thread: usize,
    min_duration: Duration,
) -> (usize, usize, usize, Duration) {
    let template = setup.token("flood");
    let not_401 = Arc::new(AtomicUsize::new(0));
    let valid_sent = Arc::new(AtomicUsize::new(0));
    let valid_failed = Arc::new(AtomicUsize::new(0));
    let flooding = Arc::new(AtomicBool::new(true));
    let barrier = Arc::new(Barrier::new(threads + 1));
    let started = Instant::now();
    std::thread::scope(|scope| {
        let mut floods = Vec::new();
        for t in 0..threads {
            let template = template.clone();
            let not_401 = Arc::clone(&not_401);
            let barrier = Arc::clone(&barrier);
            let addr = gateway.proxy;
            floods.push(scope.spawn(move || {
                let mut client = Client::new(addr);
                barrier.wait();
                let begin = Instant::now();
                let mut i = 0;
                // At least `per_thread` requests, and on until `min_duration` has passed however
                // fast the gateway answers: a count cap let a fast machine finish the flood inside
                // one cooldown window, so the test saw a single refetch.
                while i < per_thread || begin.elapsed() < min_duration {
                    let header = format!(r#"{{"alg":"ES256","kid":"flood-{t}-{i}"}}"#);
                    let token = test_support::token_with_header(&template, &header);
                    if client.status(&token) != 401 {
                        not_401.fetch_add(1, Ordering::SeqCst);
                    }
                    i += 1;
                }
            }));
        }
        let valid = {
            let valid_sent = Arc::clone(&valid_sent);
            let valid_failed = Arc::clone(&valid_failed);
            let flooding = Arc::clone(&flooding);
            let addr = gateway.proxy;
            scope.spawn(move || {
                let mut client = Client::new(addr);
                barrier.wait();
                let mut n = 0;
                while flooding.load(Ordering::SeqCst) && n < 10_000 {
                    let status = client.status(&setup.token(&format!("valid-{n}")));
                    valid_sent.fetch_add(1, Ordering::SeqCst);
                    if status != 200 {
                        valid_failed.fetch_add(1, Ordering::SeqCst);
                    }
                    n += 1;
                }
            })
        };
        for flood in floods {
            flood.join().unwrap();
        }
        flooding.store(false, Ordering::SeqCst);
        valid.join().unwrap();
    });
    (
        not_401.load(Ordering::SeqCst),
        valid_sent.load(Ordering::SeqCst),
        valid_failed.load(Ordering::SeqCst),
        started.elapsed(),
    )
}

/// With a cooldown longer than the test, a flood of 4,000 unknown kids costs exactly one extra
/// fetch (the first unknown kid may refetch at once), every flood token gets exactly 401, and
/// valid tokens sent during the flood all get 200.
#[test]
fn an_unknown_kid_flood_costs_exactly_one_fetch_within_the_cooldown() {
    let setup = Setup::new(Behavior::Normal);
    let gateway = setup.gateway(
        json!({"unknown_kid_cooldown": "10m", "default_interval": "1h"}),
        None,
    );
    assert_serves(&gateway, &setup, "start");
    assert_eq!(setup.issuer.jwks_fetches(), 1);
    let (not_401, valid, valid_failed, _) = kid_flood(&gateway, &setup, 4, 1000, Duration::ZERO);
    assert_eq!(not_401, 0, "flood responses other than 401");
    assert!(valid > 0, "no valid request ran during the flood");
    assert_eq!(
        valid_failed, 0,
        "{valid_failed} of {valid} valid requests failed"
    );
    assert_eq!(
        setup.issuer.jwks_fetches(),
        2,
        "start + one on-demand fetch"
    );
    assert_eq!(setup.issuer.discovery_fetches(), 1);
    assert_eq!(
        gateway.metric(&setup.series("trustgate_jwks_fetches_total")),
        Some(2.0)
    );
    assert_eq!(
        gateway.metric(r#"trustgate_validation_failures_total{reason="unknown_kid"}"#),
        Some(4000.0)
    );
}

/// With a short cooldown, on-demand fetches are spaced at least a cooldown apart, so a flood
/// lasting `T` causes at most `floor(T / cooldown) + 1` of them, and at least two once it outlasts
/// one cooldown.
#[test]
fn an_unknown_kid_flood_costs_at_most_one_fetch_per_cooldown() {
    let setup = Setup::new(Behavior::Normal);
    let gateway = setup.gateway(
        json!({"unknown_kid_cooldown": "500ms", "default_interval": "1h"}),
        None,
    );
    assert_serves(&gateway, &setup, "start");
    let before = setup.issuer.jwks_fetches();
    assert_eq!(before, 1);
    let (not_401, valid, valid_failed, elapsed) =
        kid_flood(&gateway, &setup, 3, 500, Duration::from_millis(1600));
    let on_demand = setup.issuer.jwks_fetches() - before;
    let bound = (elapsed.as_millis() / 500) as usize + 1;
    assert_eq!(not_401, 0, "flood responses other than 401");
    assert_eq!(
        valid_failed, 0,
        "{valid_failed} of {valid} valid requests failed"
    );
    assert!(
        on_demand <= bound,
        "{on_demand} on-demand fetches in {elapsed:?} (bound {bound})"
    );
    assert!(
        on_demand >= 2,
        "{on_demand} on-demand fetches in {elapsed:?}"
    );
}
