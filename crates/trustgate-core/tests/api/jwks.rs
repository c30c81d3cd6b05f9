//! Key-set behaviour against a real HTTP issuer on 127.0.0.1 ([`TestIssuer`]): start-up,
//! discovery, rotation, outage and stale serving, kid floods, redirects, timeouts and size limits.
//!
//! Claim times, staleness and the unknown-kid cooldown run on a [`ManualClock`]; only the
//! background refresh loop uses real (short) intervals, and tests wait for it by polling with a
//! deadline. Fetch counts are read from the issuer itself, so "no fetch" means no HTTP request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use test_support::{Behavior, TestIssuer, TestKey, b64};
use trustgate_core::{
    Algorithm, AuthError, FetchOptions, IssuerConfig, IssuerStatus, KeySource, ManualClock, Reason,
    RefreshPolicy, Validator, ValidatorOptions,
};

use crate::common::{AUD, NOW, clock, sign};

const COOLDOWN: Duration = Duration::from_secs(30);
const MAX_STALENESS: Duration = Duration::from_secs(600);

/// Long intervals: only on-demand refetches happen, so fetch counts are exact.
fn quiet_policy() -> RefreshPolicy {
    RefreshPolicy {
        default_interval: Duration::from_secs(3600),
        min_interval: Duration::from_secs(3600),
        max_interval: Duration::from_secs(3600),
        unknown_kid_cooldown: COOLDOWN,
        max_staleness: MAX_STALENESS,
        retry_base: Duration::from_secs(3600),
        unknown_kid_wait: Duration::from_secs(1),
    }
}

/// Short intervals for tests of the background loop itself.
fn busy_policy() -> RefreshPolicy {
    RefreshPolicy {
        default_interval: Duration::from_millis(100),
        min_interval: Duration::from_millis(20),
        max_interval: Duration::from_millis(200),
        unknown_kid_cooldown: COOLDOWN,
        max_staleness: MAX_STALENESS,
        retry_base: Duration::from_millis(20),
        unknown_kid_wait: Duration::from_secs(1),
    }
}

fn fetch_options() -> FetchOptions {
    FetchOptions {
        timeout: Duration::from_secs(2),
        ..FetchOptions::default()
    }
}

fn remote_issuer(issuer: &TestIssuer, source: KeySource, policy: RefreshPolicy) -> IssuerConfig {
    let mut config = IssuerConfig::new(issuer.url(), [AUD], source);
    config.algorithms = vec![Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];
    config.refresh = policy;
    config
}

fn build(configs: Vec<IssuerConfig>, fetch: FetchOptions, clock: &ManualClock) -> Validator {
    let options = ValidatorOptions {
        fetch,
        ..ValidatorOptions::default()
    };
    Validator::new(configs, options, Arc::new(clock.clone())).unwrap()
}

/// A validator on the issuer's JWKS URL with quiet intervals.
fn jwks_url_validator(issuer: &TestIssuer, clock: &ManualClock) -> Validator {
    let source = KeySource::JwksUrl(issuer.jwks_url());
    build(
        vec![remote_issuer(issuer, source, quiet_policy())],
        fetch_options(),
        clock,
    )
}

/// A fresh token (distinct text, so never a cache hit) from `key` for `issuer`.
fn fresh(key: &TestKey, issuer: &TestIssuer, sub: &str) -> String {
    let claims =
        json!({"iss": issuer.url(), "aud": AUD, "sub": sub, "iat": NOW, "exp": NOW + 3600});
    sign(key, &json!({"alg": key.alg, "kid": key.kid}), &claims)
}

/// A token with a given kid, signed by `key`.
fn with_kid(key: &TestKey, issuer: &TestIssuer, kid: &str) -> String {
    let claims = json!({"iss": issuer.url(), "aud": AUD, "sub": "x", "exp": NOW + 3600});
    sign(key, &json!({"alg": key.alg, "kid": kid}), &claims)
}

async fn check(validator: &Validator, token: &str) -> Result<(), AuthError> {
    validator.validate(token).await.map(|_| ())
}

fn status(validator: &Validator) -> IssuerStatus {
    validator.issuer_status().remove(0)
}

fn random_kid() -> String {
    let mut bytes = [0u8; 12];
    SystemRandom::new().fill(&mut bytes).unwrap();
    b64(bytes)
}

/// Polls `condition` every 10 ms until it holds, failing after `timeout`.
async fn eventually(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

const UNAVAILABLE: Result<(), AuthError> = Err(AuthError::KeysUnavailable);

fn invalid(reason: Reason) -> Result<(), AuthError> {
    Err(AuthError::InvalidToken(reason))
}

// === start-up and readiness ===

#[tokio::test]
async fn start_up_fetches_once_and_becomes_ready() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    let clock = clock();
    let v = jwks_url_validator(&issuer, &clock);
    // Before start: not ready, and requests are told to retry, not that their token is bad.
    assert!(!v.is_ready());
    assert_eq!(check(&v, &fresh(&key, &issuer, "a")).await, UNAVAILABLE);
    assert_eq!(issuer.jwks_fetches(), 0);
    assert!(v.start().await);
    assert!(v.is_ready());
    assert_eq!(issuer.jwks_fetches(), 1);
    assert_eq!(check(&v, &fresh(&key, &issuer, "a")).await, Ok(()));
    let s = status(&v);
    assert_eq!(
        (s.keys, s.usable, s.fetches, s.fetch_failures, s.kids),
        (1, true, 1, 0, vec!["k1".to_owned()])
    );
}

/// An issuer publishing `k1` (returned), and a started validator that finds its keys by
/// discovery (one discovery and one JWKS fetch so far).
async fn started_by_discovery(
    policy: RefreshPolicy,
) -> (TestIssuer, ManualClock, Validator, TestKey) {
    let issuer = TestIssuer::start().await;
    let k1 = TestKey::es256("k1");
    issuer.set_keys(&[&k1]);
    let clock = clock();
    let config = remote_issuer(&issuer, KeySource::Discovery, policy);
    let v = build(vec![config], fetch_options(), &clock);
    assert!(v.start().await);
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 1));
    (issuer, clock, v, k1)
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_is_not_repeated_for_refetches() {
    let (issuer, _clock, v, k1) = started_by_discovery(quiet_policy()).await;
    let k2 = TestKey::es256("k2");
    assert_eq!(check(&v, &fresh(&k1, &issuer, "a")).await, Ok(()));
    // A new kid refetches the JWKS from the discovered URI, without discovering again.
    issuer.set_keys(&[&k1, &k2]);
    assert_eq!(check(&v, &fresh(&k2, &issuer, "a")).await, Ok(()));
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 2));
}

/// Quiet, but discovery's answer is read again once it is `max_interval` (300 s) old, which stays
/// within the maximum staleness.
fn rediscovery_policy() -> RefreshPolicy {
    RefreshPolicy {
        default_interval: Duration::from_secs(300),
        min_interval: Duration::from_secs(300),
        max_interval: Duration::from_secs(300),
        ..quiet_policy()
    }
}

#[tokio::test]
async fn discovery_is_read_again_after_max_interval_and_follows_a_moved_jwks_uri() {
    let (issuer, clock, v, k1) = started_by_discovery(rediscovery_policy()).await;
    let k2 = TestKey::es256("k2");
    // The issuer moves its keys, and the old URL keeps answering with the old set.
    issuer.move_jwks("/v2/jwks.json", &[&k1, &k2]);
    clock.advance_secs(COOLDOWN.as_secs() as i64 + 1);
    // Within max_interval the refetch goes to the URI discovered before.
    assert_eq!(
        check(&v, &fresh(&k2, &issuer, "a")).await,
        invalid(Reason::UnknownKey)
    );
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 2));
    // Past it, the document is read again and its new jwks_uri fetched.
    clock.advance_secs(300);
    assert_eq!(check(&v, &fresh(&k2, &issuer, "b")).await, Ok(()));
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (2, 3));
    assert_eq!(status(&v).kids, vec!["k1".to_owned(), "k2".to_owned()]);
}

#[tokio::test]
async fn a_failed_rediscovery_keeps_fetching_the_known_jwks_uri() {
    let (issuer, clock, v, k1) = started_by_discovery(rediscovery_policy()).await;
    let k2 = TestKey::es256("k2");
    // The document now names another issuer: refused, and the jwks_uri known before is fetched.
    issuer.set_discovery_issuer(Some("https://evil.example"));
    issuer.set_keys(&[&k1, &k2]);
    clock.advance_secs(301);
    assert_eq!(check(&v, &fresh(&k2, &issuer, "a")).await, Ok(()));
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (2, 2));
    // The document is not tried again before another max_interval.
    let k3 = TestKey::es256("k3");
    issuer.set_keys(&[&k1, &k2, &k3]);
    clock.advance_secs(COOLDOWN.as_secs() as i64 + 1);
    assert_eq!(check(&v, &fresh(&k3, &issuer, "b")).await, Ok(()));
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (2, 3));
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    issuer.set_discovery_issuer(Some("https://evil.example"));
    let clock = clock();
    let config = remote_issuer(&issuer, KeySource::Discovery, quiet_policy());
    let v = build(vec![config], fetch_options(), &clock);
    assert!(!v.start().await);
    // The JWKS the document points at is never fetched.
    assert_eq!((issuer.discovery_fetches(), issuer.jwks_fetches()), (1, 0));
    assert_eq!(check(&v, &fresh(&key, &issuer, "a")).await, UNAVAILABLE);
    let s = status(&v);
    assert_eq!((s.usable, s.fetches, s.fetch_failures), (false, 1, 1));
}

#[tokio::test]
async fn an_issuer_down_at_start_is_retried_until_ready() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    issuer.set_behavior(Behavior::Status(503));
    let clock = clock();
    // A second, static issuer is ready from the start; readiness needs both.
    let other = TestKey::es256("s1");
    let static_issuer = crate::common::issuer("https://static.example", &[&other]);
    let remote = remote_issuer(
        &issuer,
        KeySource::JwksUrl(issuer.jwks_url()),
        busy_policy(),
    );
    let v = build(vec![static_issuer, remote], fetch_options(), &clock);
    assert!(!v.start().await);
    assert!(!v.is_ready());
    let statuses = v.issuer_status();
    assert_eq!(
        statuses.iter().map(|s| s.usable).collect::<Vec<_>>(),
        vec![true, false]
    );
    assert_eq!(check(&v, &fresh(&key, &issuer, "a")).await, UNAVAILABLE);
    // Retries continue in the background, with backoff.
    eventually("two more failed attempts", Duration::from_secs(5), || {
        issuer.jwks_fetches() >= 3
    })
    .await;
    assert!(!v.is_ready());
    issuer.set_behavior(Behavior::Normal);
    eventually("readiness", Duration::from_secs(5), || v.is_ready()).await;
    assert_eq!(check(&v, &fresh(&key, &issuer, "a")).await, Ok(()));
}

// === rotation ===

#[tokio::test]
async fn rotation_new_kid_refetches_once_and_removed_keys_drop_cached_tokens() {
    let issuer = TestIssuer::start().await;
    let k1 = TestKey::es256("k1");
    let k2 = TestKey::es256("k2");
    issuer.set_keys(&[&k1]);
    let clock = clock();
    let v = jwks_url_validator(&issuer, &clock);
    assert!(v.start().await);
    let t1 = fresh(&k1, &issuer, "a");
    assert_eq!(check(&v, &t1).await, Ok(()));
    assert_eq!(check(&v, &t1).await, Ok(()));
    assert_eq!(v.cache_stats().hits, 1);

    // The issuer adds k2: the first k2 token causes exactly one refetch, then validates.
    issuer.set_keys(&[&k1, &k2]);
    let t2 = fresh(&k2, &issuer, "b");
    assert_eq!(check(&v, &t2).await, Ok(()));
    assert_eq!(issuer.jwks_fetches(), 2);
    assert_eq!(check(&v, &fresh(&k2, &issuer, "c")).await, Ok(()));
    assert_eq!(issuer.jwks_fetches(), 2);

    // The issuer drops k1. The next refetch (an unknown kid, after the cooldown) publishes it.
    issuer.set_keys(&[&k2]);
    clock.advance_secs(COOLDOWN.as_secs() as i64 + 1);
    assert_eq!(
        check(&v, &with_kid(&k2, &issuer, "k3")).await,
        invalid(Reason::UnknownKey)
    );
    assert_eq!(issuer.jwks_fetches(), 3);
    assert_eq!(status(&v).kids, vec!["k2".to_owned()]);
    // The cached k1 token is dropped with its key, and refused; k2's cached token survives.
    let entries = v.cache_stats().entries;
    assert_eq!(check(&v, &t1).await, invalid(Reason::UnknownKey));
    assert_eq!(v.cache_stats().entries, entries - 1);
    let hits = v.cache_stats().hits;
    assert_eq!(check(&v, &t2).await, Ok(()));
    assert_eq!(v.cache_stats().hits, hits + 1);
    // Within the cooldown the dropped kid causes no further fetch.
    assert_eq!(issuer.jwks_fetches(), 3);
}

/// An issuer that keeps a fixed `kid` ("1", "default") and replaces the key under it: the first
/// token signed with the new key does not verify with the cached one, causes one refetch, and
/// validates. A forged signature under a known `kid` costs no more than a made-up `kid`: at most
/// one fetch per cooldown, and it is still refused as a bad signature. Its window is its own, so
/// forgeries never delay the refetch a new `kid` needs.
#[tokio::test]
async fn a_key_replaced_under_the_same_kid_refetches_once_per_cooldown() {
    let issuer = TestIssuer::start().await;
    let old = TestKey::es256("fixed");
    let new = TestKey::es256("fixed");
    issuer.set_keys(&[&old]);
    let clock = clock();
    let v = jwks_url_validator(&issuer, &clock);
    assert!(v.start().await);
    assert_eq!(check(&v, &fresh(&old, &issuer, "a")).await, Ok(()));
    assert_eq!(issuer.jwks_fetches(), 1);

    issuer.set_keys(&[&new]);
    assert_eq!(check(&v, &fresh(&new, &issuer, "b")).await, Ok(()));
    assert_eq!(issuer.jwks_fetches(), 2);
    assert_eq!(check(&v, &fresh(&new, &issuer, "c")).await, Ok(()));
    assert_eq!(issuer.jwks_fetches(), 2);

    // Forged signatures under the known kid, within the cooldown: no fetch, a bad signature.
    let forger = TestKey::es256("fixed");
    for i in 0..20 {
        assert_eq!(
            check(&v, &fresh(&forger, &issuer, &format!("f{i}"))).await,
            invalid(Reason::BadSignature)
        );
    }
    assert_eq!(issuer.jwks_fetches(), 2);
    // In a new cooldown window, the first forgery costs one fetch, the rest none.
    clock.advance_secs(COOLDOWN.as_secs() as i64 + 1);
    for i in 0..20 {
        assert_eq!(
            check(&v, &fresh(&forger, &issuer, &format!("g{i}"))).await,
            invalid(Reason::BadSignature)
        );
    }
    assert_eq!(issuer.jwks_fetches(), 3);
    assert_eq!(check(&v, &fresh(&new, &issuer, "d")).await, Ok(()));
    // Those forgeries used their own window: a new kid published now still gets its refetch.
    let next = TestKey::es256("next");
    issuer.set_keys(&[&new, &next]);
    assert_eq!(check(&v, &fresh(&next, &issuer, "e")).await, Ok(()));
    assert_eq!(issuer.jwks_fetches(), 4);
}

/// A background refresh in flight when a new kid's first token arrives may have read the key set
/// before the issuer added that key. It does not count as the token's refetch: the token gets a
/// fetch that starts after it, instead of a negative cache entry that would refuse the new key
/// for a whole cooldown.
#[tokio::test]
async fn a_new_kid_during_an_older_background_refresh_gets_a_fetch_of_its_own() {
    let issuer = TestIssuer::start().await;
    let k1 = TestKey::es256("k1");
    let k2 = TestKey::es256("k2");
    issuer.set_keys(&[&k1]);
    let clock = clock();
    let every_second = RefreshPolicy {
        default_interval: Duration::from_secs(1),
        min_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(1),
        // The token waits for the delayed refresh and one more: allow it that long.
        unknown_kid_wait: Duration::from_secs(5),
        ..quiet_policy()
    };
    let source = KeySource::JwksUrl(issuer.jwks_url());
    let v = build(
        vec![remote_issuer(&issuer, source, every_second)],
        fetch_options(),
        &clock,
    );
    assert!(v.start().await);
    // The next background refresh reads the key set with k1 only, then answers a second later.
    issuer.set_behavior(Behavior::Delay(Duration::from_secs(1)));
    eventually(
        "the background refresh to reach the issuer",
        Duration::from_secs(5),
        || issuer.jwks_fetches() == 2,
    )
    .await;
    issuer.set_behavior(Behavior::Normal);
    issuer.set_keys(&[&k1, &k2]);

    assert_eq!(check(&v, &fresh(&k2, &issuer, "b")).await, Ok(()));
    // The refresh in flight, then exactly one more for the token.
    assert_eq!(issuer.jwks_fetches(), 3);
    assert_eq!(status(&v).kids, vec!["k1".to_owned(), "k2".to_owned()]);
    // That used the cooldown window: another unknown kid now costs no fetch.
    assert_eq!(
        check(&v, &with_kid(&k2, &issuer, "k3")).await,
        invalid(Reason::UnknownKey)
    );
    assert_eq!(issuer.jwks_fetches(), 3);
}

// === outage ===

#[tokio::test]
async fn failed_or_empty_refreshes_never_replace_a_good_key_set() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    let good_jwks: Value = json!({"keys": [key.jwk()]});
    let clock = clock();
    let v = jwks_url_validator(&issuer, &clock);
    assert!(v.start().await);
    let dup_keys = format!(r#"{{"keys":[],"keys":{good_jwks}}}"#);
    let bad: Vec<(&str, Behavior)> = vec![
        ("500", Behavior::Status(500)),
        ("404", Behavior::Status(404)),
        ("reset", Behavior::Reset),
        ("garbage", Behavior::Body("<html>maintenance</html>".into())),
        ("empty body", Behavior::Body(String::new())),
        ("empty set", Behavior::Body(r#"{"keys":[]}"#.into())),
        ("not a set", Behavior::Body(r#"[{"kty":"EC"}]"#.into())),
        ("keys not an array", Behavior::Body(r#"{"keys":{}}"#.into())),
        (
            "only unusable keys",
            Behavior::Body(
                json!({"keys":[{"kty":"oct","k":"AAAA","kid":"k1"},{"kty":"EC","kid":"k1"}]})
                    .to_string(),
            ),
        ),
        ("duplicate members", Behavior::Body(dup_keys)),
        (
            "truncated",
            Behavior::Body(good_jwks.to_string()[..40].to_owned()),
        ),
    ];
    for (i, (what, behavior)) in bad.into_iter().enumerate() {
        issuer.set_behavior(behavior);
        clock.advance_secs(COOLDOWN.as_secs() as i64);
        let before = status(&v);
        // An unknown kid makes the validator refetch now.
        assert_eq!(
            check(&v, &with_kid(&key, &issuer, &random_kid())).await,
            invalid(Reason::UnknownKey),
            "{what}"
        );
        let after = status(&v);
        assert_eq!(issuer.jwks_fetches(), i + 2, "{what}");
        assert_eq!(after.fetch_failures, before.fetch_failures + 1, "{what}");
        assert_eq!((after.keys, after.usable), (1, true), "{what}");
        assert_eq!(
            check(&v, &fresh(&key, &issuer, what)).await,
            Ok(()),
            "{what}"
        );
        assert!(v.is_ready(), "{what}");
    }
}

#[tokio::test]
async fn stale_keys_serve_until_max_staleness_then_recover() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    let clock = clock();
    let config = remote_issuer(
        &issuer,
        KeySource::JwksUrl(issuer.jwks_url()),
        busy_policy(),
    );
    let v = build(vec![config], fetch_options(), &clock);
    assert!(v.start().await);
    let cached = fresh(&key, &issuer, "cached");
    assert_eq!(check(&v, &cached).await, Ok(()));

    issuer.set_behavior(Behavior::Reset);
    eventually(
        "failed background refreshes",
        Duration::from_secs(5),
        || status(&v).fetch_failures >= 2,
    )
    .await;
    // Stale but within the maximum staleness: still served.
    clock.advance_secs(MAX_STALENESS.as_secs() as i64);
    assert_eq!(check(&v, &fresh(&key, &issuer, "stale")).await, Ok(()));
    assert!(v.is_ready());
    // Beyond it: unavailable, for new and cached tokens alike, and not ready.
    clock.advance_secs(1);
    assert_eq!(
        check(&v, &fresh(&key, &issuer, "too stale")).await,
        UNAVAILABLE
    );
    assert_eq!(check(&v, &cached).await, UNAVAILABLE);
    assert!(!v.is_ready());
    assert!(!status(&v).usable);
    // The issuer comes back: the background loop recovers without help.
    issuer.set_behavior(Behavior::Normal);
    eventually("recovery", Duration::from_secs(5), || v.is_ready()).await;
    assert_eq!(check(&v, &fresh(&key, &issuer, "again")).await, Ok(()));
    assert_eq!(check(&v, &cached).await, Ok(()));
}

// === kid flood ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_flood_costs_at_most_one_fetch_per_cooldown() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    let attacker = TestKey::es256("attacker");
    issuer.set_keys(&[&key]);
    let clock = clock();
    let v = jwks_url_validator(&issuer, &clock);
    assert!(v.start().await);
    assert_eq!(issuer.jwks_fetches(), 1);

    for (round, expected_fetches) in [(0, 2), (1, 2), (2, 3)] {
        if round == 2 {
            // A new cooldown window.
            clock.advance_millis(COOLDOWN.as_millis() as i64);
        }
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..500 {
            let v = v.clone();
            let flood = with_kid(&attacker, &issuer, &random_kid());
            // Every tenth request is a legitimate one, interleaved with the flood.
            let legit = (i % 10 == 0).then(|| fresh(&key, &issuer, &format!("{round}-{i}")));
            tasks.spawn(async move {
                let flood = check(&v, &flood).await;
                let legit = match legit {
                    Some(t) => Some(check(&v, &t).await),
                    None => None,
                };
                (flood, legit)
            });
        }
        let mut legit_ok = 0;
        while let Some(joined) = tasks.join_next().await {
            let (flood, legit) = joined.unwrap();
            assert_eq!(flood, invalid(Reason::UnknownKey));
            if let Some(legit) = legit {
                assert_eq!(legit, Ok(()));
                legit_ok += 1;
            }
        }
        assert_eq!(legit_ok, 50);
        assert_eq!(issuer.jwks_fetches(), expected_fetches, "round {round}");
    }
}

/// The on-demand budget is one refetch per cooldown for each of its two causes (an unknown `kid`,
/// and a known `kid` whose key does not verify), so that forgeries cannot use up a rotation's
/// refetch: a flood of both costs two fetches per cooldown, never more.
#[tokio::test]
async fn a_flood_of_unknown_kids_and_forged_signatures_costs_two_fetches_per_cooldown() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    let forger = TestKey::es256("k1");
    let attacker = TestKey::es256("attacker");
    issuer.set_keys(&[&key]);
    let clock = clock();
    let v = jwks_url_validator(&issuer, &clock);
    assert!(v.start().await);
    assert_eq!(issuer.jwks_fetches(), 1);

    for (round, expected_fetches) in [(0, 3), (1, 3), (2, 5)] {
        if round == 2 {
            // A new cooldown window.
            clock.advance_millis(COOLDOWN.as_millis() as i64);
        }
        for i in 0..20 {
            let unknown = with_kid(&attacker, &issuer, &random_kid());
            assert_eq!(check(&v, &unknown).await, invalid(Reason::UnknownKey));
            let forged = fresh(&forger, &issuer, &format!("{round}-{i}"));
            assert_eq!(check(&v, &forged).await, invalid(Reason::BadSignature));
        }
        assert_eq!(issuer.jwks_fetches(), expected_fetches, "round {round}");
    }
    assert_eq!(check(&v, &fresh(&key, &issuer, "legit")).await, Ok(()));
}

#[tokio::test]
async fn tokens_that_cannot_be_valid_never_cause_a_fetch() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    let clock = clock();
    let mut config = remote_issuer(
        &issuer,
        KeySource::JwksUrl(issuer.jwks_url()),
        quiet_policy(),
    );
    config.algorithms = vec![Algorithm::ES256];
    let v = build(vec![config], fetch_options(), &clock);
    assert!(v.start().await);
    let claims = json!({"iss": issuer.url(), "aud": AUD, "exp": NOW + 60});
    let rsa = TestKey::rsa("unknown-rsa", "RS256");
    let ed = TestKey::ed25519("unknown-ed");
    let es384 = TestKey::es384("unknown-384");
    let payload = b64(claims.to_string());
    let cases = [
        // Supported algorithms the issuer does not allow, with unknown kids.
        (
            sign(&rsa, &json!({"alg":"RS256","kid":"unknown-rsa"}), &claims),
            Reason::AlgorithmNotAllowed,
        ),
        (
            sign(&ed, &json!({"alg":"EdDSA","kid":"unknown-ed"}), &claims),
            Reason::AlgorithmNotAllowed,
        ),
        (
            sign(&es384, &json!({"alg":"ES384","kid":"unknown-384"}), &claims),
            Reason::AlgorithmNotAllowed,
        ),
        // Algorithms that do not exist here at all.
        (
            format!(
                "{}.{payload}.AAAA",
                b64(r#"{"alg":"HS256","kid":"unknown-h"}"#)
            ),
            Reason::UnsupportedAlgorithm,
        ),
        (
            format!(
                "{}.{payload}.AAAA",
                b64(r#"{"alg":"none","kid":"unknown-n"}"#)
            ),
            Reason::UnsupportedAlgorithm,
        ),
        // Another issuer's token.
        (
            sign(
                &key,
                &json!({"alg":"ES256","kid":"unknown-i"}),
                &json!({"iss":"https://other.example","aud":AUD,"exp":NOW + 60}),
            ),
            Reason::UnknownIssuer,
        ),
        // Malformed tokens.
        (
            format!("{}.{payload}", b64(r#"{"alg":"ES256","kid":"unknown-m"}"#)),
            Reason::Malformed,
        ),
    ];
    // Each round starts a new cooldown window, so the first case to cause a fetch would show.
    for _ in 0..3 {
        clock.advance_secs(COOLDOWN.as_secs() as i64);
        for (token, reason) in &cases {
            assert_eq!(check(&v, token).await, invalid(*reason), "{token}");
        }
    }
    assert_eq!(issuer.jwks_fetches(), 1);
    // Control: an allowed algorithm with an unknown kid does refetch.
    assert_eq!(
        check(&v, &with_kid(&key, &issuer, "unknown-allowed")).await,
        invalid(Reason::UnknownKey)
    );
    assert_eq!(issuer.jwks_fetches(), 2);
}

// === fetch limits ===

#[tokio::test]
async fn redirects_are_followed_only_within_the_same_origin() {
    let key = TestKey::es256("k1");
    let elsewhere = TestIssuer::start().await;
    elsewhere.set_keys(&[&key]);
    let port = elsewhere.addr.port();
    for target in [
        elsewhere.jwks_url(),
        format!("http://localhost:{port}/jwks.json"),
        format!("//127.0.0.1:{port}/jwks.json"),
    ] {
        let issuer = TestIssuer::start().await;
        issuer.set_keys(&[&key]);
        issuer.set_behavior(Behavior::Redirect(target.clone()));
        let clock = clock();
        let v = jwks_url_validator(&issuer, &clock);
        assert!(!v.start().await, "{target}");
        assert_eq!(issuer.jwks_fetches(), 1, "{target}");
        assert_eq!(status(&v).fetch_failures, 1, "{target}");
    }
    assert_eq!(elsewhere.jwks_fetches(), 0);
    // Same-origin redirects are followed, up to three: a redirect loop costs four requests.
    let issuer = TestIssuer::start().await;
    issuer.set_keys(&[&key]);
    issuer.set_behavior(Behavior::Redirect("/jwks.json".into()));
    let clock = clock();
    let v = jwks_url_validator(&issuer, &clock);
    assert!(!v.start().await);
    assert_eq!(issuer.jwks_fetches(), 4);
}

/// A started validator for one ES256 key `k1` behind a JWKS URL, whose issuer then answers only
/// after 10 s; `timeout` is the fetch timeout.
async fn behind_a_slow_issuer(
    timeout: Duration,
) -> (TestIssuer, TestKey, Validator, IssuerConfig, FetchOptions) {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    let fetch = FetchOptions {
        timeout,
        ..FetchOptions::default()
    };
    let config = remote_issuer(
        &issuer,
        KeySource::JwksUrl(issuer.jwks_url()),
        quiet_policy(),
    );
    let v = build(vec![config.clone()], fetch.clone(), &clock());
    assert!(v.start().await);
    issuer.set_behavior(Behavior::Delay(Duration::from_secs(10)));
    (issuer, key, v, config, fetch)
}

/// However slow the issuer, a request with an unknown kid waits at most `unknown_kid_wait` (here
/// the default 1 s, under a 5 s fetch timeout and a 10 s stall), then is refused.
#[tokio::test]
async fn an_unknown_kid_waits_at_most_unknown_kid_wait_however_slow_the_issuer() {
    assert_eq!(
        RefreshPolicy::default().unknown_kid_wait,
        Duration::from_secs(1)
    );
    let (issuer, key, v, _, _) = behind_a_slow_issuer(Duration::from_secs(5)).await;
    let started = Instant::now();
    assert_eq!(
        check(&v, &with_kid(&key, &issuer, "new")).await,
        invalid(Reason::UnknownKey)
    );
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    // Known keys are not held up by the refetch still running.
    assert_eq!(check(&v, &fresh(&key, &issuer, "a")).await, Ok(()));
}

#[tokio::test]
async fn a_slow_issuer_times_out_and_the_old_keys_stay() {
    let (issuer, key, v, config, fetch) = behind_a_slow_issuer(Duration::from_millis(300)).await;
    let clock = clock();
    // An unknown kid waits for the refetch at most about the fetch timeout.
    let started = Instant::now();
    assert_eq!(
        check(&v, &with_kid(&key, &issuer, "new")).await,
        invalid(Reason::UnknownKey)
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    eventually(
        "the timed-out fetch to be counted",
        Duration::from_secs(2),
        || status(&v).fetch_failures == 1,
    )
    .await;
    assert_eq!(check(&v, &fresh(&key, &issuer, "a")).await, Ok(()));
    // At start-up, the same timeout bounds the first fetch.
    let cold = build(vec![config], fetch, &clock);
    let started = Instant::now();
    assert!(!cold.start().await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status(&cold).fetch_failures, 1);
}

#[tokio::test]
async fn an_oversized_key_set_is_refused() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_jwks(json!({"keys": [key.jwk()], "padding": "x".repeat(4096)}));
    let clock = clock();
    let config = remote_issuer(
        &issuer,
        KeySource::JwksUrl(issuer.jwks_url()),
        quiet_policy(),
    );
    let small = FetchOptions {
        max_body_bytes: 4096,
        ..fetch_options()
    };
    let v = build(vec![config.clone()], small, &clock);
    assert!(!v.start().await);
    assert_eq!(status(&v).fetch_failures, 1);
    // The same document within the limit is accepted.
    let roomy = FetchOptions {
        max_body_bytes: 8192,
        ..fetch_options()
    };
    let v = build(vec![config], roomy, &clock);
    assert!(v.start().await);
}

#[tokio::test]
async fn plain_http_is_only_for_loopback() {
    let clock = clock();
    let mut config = IssuerConfig::new(
        "https://idp.example",
        [AUD],
        KeySource::JwksUrl("http://idp.example/jwks.json".into()),
    );
    config.refresh = quiet_policy();
    let v = build(vec![config], fetch_options(), &clock);
    let started = Instant::now();
    assert!(!v.start().await);
    // Refused before any connection attempt.
    assert!(started.elapsed() < Duration::from_secs(1));
    let s = status(&v);
    assert_eq!((s.fetches, s.fetch_failures), (1, 1));
}

// === refresh intervals ===

#[tokio::test]
async fn cache_control_is_honoured_within_bounds() {
    let key = TestKey::es256("k1");
    let clock = clock();
    // max-age=0 is raised to min_interval: refreshes continue, but never faster than that.
    let issuer = TestIssuer::start().await;
    issuer.set_keys(&[&key]);
    issuer.set_cache_control(Some("max-age=0"));
    let mut policy = quiet_policy();
    policy.min_interval = Duration::from_millis(250);
    let config = remote_issuer(&issuer, KeySource::JwksUrl(issuer.jwks_url()), policy);
    let v = build(vec![config], fetch_options(), &clock);
    let started = Instant::now();
    assert!(v.start().await);
    eventually("three refreshes", Duration::from_secs(10), || {
        issuer.jwks_fetches() >= 4
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(750),
        "{:?}",
        started.elapsed()
    );
    drop(v);

    // A day-long max-age is cut to max_interval, so rotations are noticed in time.
    let issuer = TestIssuer::start().await;
    issuer.set_keys(&[&key]);
    issuer.set_cache_control(Some("public, max-age=86400"));
    let mut policy = quiet_policy();
    policy.min_interval = Duration::from_millis(10);
    policy.max_interval = Duration::from_millis(200);
    let config = remote_issuer(&issuer, KeySource::JwksUrl(issuer.jwks_url()), policy);
    let v = build(vec![config], fetch_options(), &clock);
    assert!(v.start().await);
    eventually("two refreshes", Duration::from_secs(5), || {
        issuer.jwks_fetches() >= 3
    })
    .await;
    drop(v);

    // Within bounds, max-age is used as given: 1 s here, against a 1 h default.
    let issuer = TestIssuer::start().await;
    issuer.set_keys(&[&key]);
    issuer.set_cache_control(Some("max-age=1"));
    let mut policy = quiet_policy();
    policy.min_interval = Duration::from_millis(10);
    let config = remote_issuer(&issuer, KeySource::JwksUrl(issuer.jwks_url()), policy);
    let v = build(vec![config], fetch_options(), &clock);
    assert!(v.start().await);
    eventually("a refresh after max-age", Duration::from_secs(5), || {
        issuer.jwks_fetches() >= 2
    })
    .await;
}

#[tokio::test]
async fn dropping_the_validator_stops_its_refresh_loop() {
    let issuer = TestIssuer::start().await;
    let key = TestKey::es256("k1");
    issuer.set_keys(&[&key]);
    let clock = clock();
    let config = remote_issuer(
        &issuer,
        KeySource::JwksUrl(issuer.jwks_url()),
        busy_policy(),
    );
    let v = build(vec![config], fetch_options(), &clock);
    assert!(v.start().await);
    eventually("background refreshes", Duration::from_secs(5), || {
        issuer.jwks_fetches() >= 3
    })
    .await;
    drop(v);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = issuer.jwks_fetches();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(issuer.jwks_fetches(), after_drop);
}
