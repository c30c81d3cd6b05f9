//! The revocation API on one replica: concurrent revocations, and the bounds on what it accepts
//! (an entry must outlast every token it covers, and a cut-off cannot be in the future). The
//! fleet's side (several replicas on Redis) is in `fleet.rs`.

use serde_json::{Value, json};

use test_support::RedisServer;

use crate::common::{Config, Fixture, Gateway, Pattern, Route, TempDir, bearer, cli};
use crate::fleet::ADMIN_TOKEN;

fn config(f: &Fixture, dir: &TempDir) -> Config {
    let token_file = dir.write("admin-token", ADMIN_TOKEN);
    f.config()
        .admin("token_file", token_file.to_str().unwrap())
        .empty_section("revocation")
        .route(Route::new("rev", "/rev", "echo", Pattern::ForwardToken))
}

fn admin(gw: &Gateway, method: &str, body: Option<Value>) -> (u16, Value) {
    crate::fleet::admin(gw, method, body, ADMIN_TOKEN)
}

/// Concurrent POSTs to a memory store: every one answered 201 is kept. (`Revocations::add` once
/// loaded the list, added and stored it back, so a concurrent revocation could be overwritten:
/// 480 answered 201, 283 kept.)
#[test]
fn concurrent_revocations_are_all_kept() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let gw = Gateway::start(&config(&f, &dir));
    let threads = 8;
    let per_thread = 60;
    std::thread::scope(|s| {
        for t in 0..threads {
            let gw = &gw;
            s.spawn(move || {
                for i in 0..per_thread {
                    let (status, body) = admin(
                        gw,
                        "POST",
                        Some(json!({"jti": format!("j-{t}-{i}"), "issuer": "idp"})),
                    );
                    assert_eq!(status, 201, "{body}");
                }
            });
        }
    });
    let (_, list) = admin(&gw, "GET", None);
    let kept = list["entries"].as_array().unwrap().len();
    assert_eq!(
        kept,
        threads * per_thread,
        "{} revocations answered 201, {kept} kept (version {})",
        threads * per_thread,
        list["version"]
    );
}

/// With the memory store the list lives in the running gateway, out of `explain`'s reach: explain
/// must not say "not revoked" of a token the gateway refuses as revoked.
#[test]
fn explain_does_not_call_a_token_not_revoked_when_it_cannot_see_the_list() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let gw = Gateway::start(&config(&f, &dir));
    let token = f.token_with("alice", json!({"jti": "stolen-2"}));
    let auth = bearer(&token);
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"jti": "stolen-2", "issuer": "idp"})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(gw.get("/rev", &[("Authorization", &auth)]).status, 401);
    let out = cli(&[
        "explain",
        "-c",
        gw.config_path.to_str().unwrap(),
        "--path",
        "/rev",
        "--token",
        &token,
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let steps: Vec<&str> = stdout
        .lines()
        .filter(|line| line.contains("revocation:"))
        .collect();
    assert_eq!(
        steps,
        [
            "  7. revocation: not checked: with the memory store the list is in the running gateway's memory, which explain cannot read; a revoked token is refused there"
        ],
        "{stdout}"
    );
    let decision: Vec<&str> = stdout
        .lines()
        .skip_while(|line| !line.starts_with("decision:"))
        .take(2)
        .collect();
    assert_eq!(
        decision.get(1).copied(),
        Some("  unless the running gateway has revoked the token (see the revocation step)"),
        "{stdout}"
    );
}

/// With a Redis store, the same between concurrent `add`s and the subscriber's `apply` on one
/// replica: a token is refused as soon as its revocation is answered (it was once accepted right
/// after, until a snapshot repaired the list).
#[test]
fn with_redis_a_token_is_refused_as_soon_as_its_revocation_is_answered() {
    let redis = RedisServer::start();
    let f = Fixture::new();
    let dir = TempDir::new();
    let config = config(&f, &dir)
        .section("store", "backend", "redis")
        .section("store", "url", redis.url())
        .section("store", "namespace", "race")
        .section("store", "poll_interval", "1s");
    let gw = Gateway::start(&config);
    let threads = 8;
    let per_thread = 40;
    let tokens: Vec<Vec<String>> = (0..threads)
        .map(|t| {
            (0..per_thread)
                .map(|i| bearer(&f.token_with("alice", json!({"jti": format!("r-{t}-{i}")}))))
                .collect()
        })
        .collect();
    let accepted = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (t, tokens) in tokens.iter().enumerate() {
            let (gw, accepted) = (&gw, &accepted);
            s.spawn(move || {
                for (i, auth) in tokens.iter().enumerate() {
                    let (status, body) = admin(
                        gw,
                        "POST",
                        Some(json!({"jti": format!("r-{t}-{i}"), "issuer": "idp"})),
                    );
                    assert_eq!(status, 201, "{body}");
                    let status = gw.get("/rev", &[("Authorization", auth)]).status;
                    if status != 401 {
                        accepted
                            .lock()
                            .unwrap()
                            .push((format!("r-{t}-{i}"), status));
                    }
                }
            });
        }
    });
    let accepted = accepted.into_inner().unwrap();
    assert!(
        accepted.is_empty(),
        "{} of {} tokens answered other than 401 right after their revocation's 201: {:?}",
        accepted.len(),
        threads * per_thread,
        &accepted[..accepted.len().min(10)]
    );
}

fn now() -> i64 {
    test_support::now_secs()
}

/// With an issuer leeway over 5 minutes (`danger_allow_long_leeway`), a token is accepted
/// `leeway` past its `exp`: its revocation is kept as long (it was kept `exp` + 300 s, so the API
/// answered 201 and the token was still accepted).
#[test]
fn a_revoked_jti_stays_refused_while_the_issuers_leeway_still_accepts_the_token() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let config = config(&f, &dir).edit_issuer("idp", |i| {
        i.set("leeway", "1h").set("danger_allow_long_leeway", true)
    });
    let gw = Gateway::start(&config);
    let t = now();
    let token = f.token_with(
        "alice",
        json!({"jti": "stolen-1", "iat": t - 1200, "nbf": t - 1200, "exp": t - 600}),
    );
    let auth = bearer(&token);
    assert_eq!(gw.get("/rev", &[("Authorization", &auth)]).status, 200);
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"jti": "stolen-1", "issuer": "idp", "exp": t - 600})),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        body["revoked"]["expires_at"].as_i64().unwrap() >= t - 600 + 3600 + 300,
        "{body}"
    );
    assert_eq!(gw.get("/rev", &[("Authorization", &auth)]).status, 401);
}

/// A gateway checking revocations (`max_token_lifetime` 1 h) for an issuer allowed an hour of
/// leeway: tokens stamped up to an hour ahead are accepted.
fn with_an_hour_of_leeway(f: &Fixture, dir: &TempDir) -> Gateway {
    let config = config(f, dir)
        .section("revocation", "max_token_lifetime", "1h")
        .edit_issuer("idp", |i| {
            i.set("leeway", "1h").set("danger_allow_long_leeway", true)
        });
    Gateway::start(&config)
}

/// The issuer's leeway lets a token's `iat` be ahead of the gateway's clock (an issuer whose
/// clock runs fast), and its `exp` then `max_token_lifetime` further: such a token is accepted,
/// so its `jti` can be revoked with its real `exp` (the API refused that `exp` as further ahead
/// than any accepted token lives).
#[test]
fn a_jti_can_be_revoked_with_its_exp_when_its_iat_is_ahead_within_the_leeway() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let gw = with_an_hour_of_leeway(&f, &dir);
    let t = now();
    let (iat, exp) = (t + 1800, t + 1800 + 3600);
    let token = f.token_with(
        "alice",
        json!({"jti": "ahead-1", "iat": iat, "nbf": t, "exp": exp}),
    );
    let auth = bearer(&token);
    assert_eq!(gw.get("/rev", &[("Authorization", &auth)]).status, 200);
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"jti": "ahead-1", "issuer": "idp", "exp": exp})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(gw.get("/rev", &[("Authorization", &auth)]).status, 401);
    // Still refused: an `exp` further ahead than the leeway allows for.
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"jti": "ahead-2", "issuer": "idp", "exp": t + 3600 + 300 + 3600 + 60})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("milliseconds"), "{body}");
}

/// An issuer whose clock runs ahead stamps a token issued just before a subject revocation with
/// an `iat` up to its leeway later, and the gateway accepts it: the default cut-off is now plus
/// the leeway (it was now, which left that token accepted), and the entry is kept until the last
/// covered token has expired. A `before` given is taken as it is.
#[test]
fn a_subject_revocation_covers_tokens_stamped_ahead_within_the_issuers_leeway() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let gw = with_an_hour_of_leeway(&f, &dir);
    let t = now();
    let ahead = |sub: &str| {
        bearer(&f.token_with(
            sub,
            json!({"iat": t + 1800, "nbf": t, "exp": t + 1800 + 3600}),
        ))
    };
    let (alice, bob) = (ahead("alice"), ahead("bob"));
    assert_eq!(gw.get("/rev", &[("Authorization", &alice)]).status, 200);
    let (status, body) = admin(&gw, "POST", Some(json!({"sub": "alice", "issuer": "idp"})));
    assert_eq!(status, 201, "{body}");
    let revoked = &body["revoked"];
    let (cutoff, made) = (
        revoked["cutoff"].as_i64().unwrap(),
        revoked["created_at"].as_i64().unwrap(),
    );
    assert_eq!(cutoff - made, 3600, "{body}");
    // max_token_lifetime, the 5 minutes a token may outlive it, and the leeway after its exp.
    assert_eq!(
        revoked["expires_at"].as_i64().unwrap() - cutoff,
        3600 + 300 + 3600,
        "{body}"
    );
    assert_eq!(gw.get("/rev", &[("Authorization", &alice)]).status, 401);
    // An explicit cut-off of now covers no token stamped later.
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"sub": "bob", "issuer": "idp", "before": t})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["revoked"]["cutoff"], t, "{body}");
    assert_eq!(gw.get("/rev", &[("Authorization", &bob)]).status, 200);
}

/// A subject revocation is kept `max_token_lifetime` past its cut-off, so a token that lives
/// longer would outlive it: routes that check revocations refuse such tokens outright, and a
/// revocation that would already have lapsed is refused rather than answered 201 for nothing.
#[test]
fn tokens_that_would_outlive_their_revocation_are_refused() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let gw = Gateway::start(&config(&f, &dir).section("revocation", "max_token_lifetime", "1h"));
    let t = now();
    // Issued three hours ago, valid for another hour: longer than the 1 h any entry is kept.
    let long = f.token_with(
        "alice",
        json!({"iat": t - 3 * 3600, "nbf": t - 3 * 3600, "exp": t + 3600}),
    );
    let r = gw.get("/rev", &[("Authorization", &bearer(&long))]);
    assert_eq!(r.status, 401);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .contains("invalid_token"),
        "{:?}",
        r.header("www-authenticate")
    );
    assert_eq!(
        gw.metric("trustgate_revocation_refusals_total{reason=\"lifetime\"}"),
        Some(1.0)
    );
    // Without `iat` the lifetime cannot be bounded: refused however soon it expires; the usual
    // hour (with `iat`) passes.
    let mut claims = test_support::claims(&f.iss, "api", "alice");
    claims.as_object_mut().unwrap().remove("iat");
    claims["exp"] = json!(t + 2 * 3600);
    let no_iat = f.key.sign(&claims);
    assert_eq!(
        gw.get("/rev", &[("Authorization", &bearer(&no_iat))])
            .status,
        401
    );
    assert_eq!(
        gw.get("/rev", &[("Authorization", &bearer(&f.token("alice")))])
            .status,
        200
    );
    // A cut-off whose entry would have lapsed already: every token it covers has expired.
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"sub": "alice", "issuer": "idp", "before": t - 2 * 3600})),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("nothing to revoke"), "{body}");
    assert_eq!(
        admin(&gw, "GET", None).1["entries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

/// A cut-off in the future (here milliseconds instead of seconds) would revoke every token the
/// subject will ever get, for good: refused with 400, as is an `exp` further ahead than any
/// token on these routes lives, and an empty `sub` or `jti`, which matches no token.
#[test]
fn cutoffs_in_the_future_and_empty_values_are_refused() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let gw = Gateway::start(&config(&f, &dir));
    let t = now();
    for (request, says) in [
        (
            json!({"sub": "bob", "issuer": "idp", "before": t * 1000}),
            "in the future",
        ),
        (
            json!({"sub": "bob", "issuer": "idp", "before": t + 3600}),
            "in the future",
        ),
        (
            json!({"jti": "j", "issuer": "idp", "exp": t * 1000}),
            "milliseconds",
        ),
        (json!({"sub": "", "issuer": "idp"}), "must not be empty"),
        (json!({"jti": "", "issuer": "idp"}), "must not be empty"),
    ] {
        let (status, body) = admin(&gw, "POST", Some(request.clone()));
        assert_eq!(status, 400, "{request}: {body}");
        assert!(body.to_string().contains(says), "{request}: {body}");
    }
    assert_eq!(
        admin(&gw, "GET", None).1["entries"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    // bob's tokens pass; a cut-off a moment ahead (the caller's clock) is still taken.
    let later = f.token_with("bob", json!({"iat": t, "nbf": t, "exp": t + 600}));
    assert_eq!(
        gw.get("/rev", &[("Authorization", &bearer(&later))]).status,
        200
    );
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"sub": "bob", "issuer": "idp", "before": t + 60})),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        gw.get("/rev", &[("Authorization", &bearer(&later))]).status,
        401
    );
}

/// A token without `iat` has no lifetime the gateway can bound (`exp - now` only says how
/// long it has left), so a subject revocation, kept `max_token_lifetime` past its cut-off, lapses
/// while such a token is still accepted. Here the entry for a cut-off 15 minutes ago (with
/// `max_token_lifetime` 1m) would already have lapsed: the API refuses it as covering only expired
/// tokens, yet the token it covers (no `iat`, so "issued before the cut-off") is still accepted.
/// The same happens with real time: revoke at T, the entry lapses at T + 1m + leeway + 5m, and a
/// token without `iat` whose `exp` is further ahead is accepted again once `exp - now` <= 6m.
#[test]
fn a_token_without_iat_cannot_outlive_its_subject_revocation() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let gw = Gateway::start(&config(&f, &dir).section("revocation", "max_token_lifetime", "1m"));
    let t = now();
    let mut claims = test_support::claims(&f.iss, "api", "alice");
    claims.as_object_mut().unwrap().remove("iat");
    claims["exp"] = json!(t + 300);
    let no_iat = bearer(&f.key.sign(&claims));
    let (status, body) = admin(
        &gw,
        "POST",
        Some(json!({"sub": "alice", "issuer": "idp", "before": t - 900})),
    );
    let after = gw.get("/rev", &[("Authorization", &no_iat)]).status;
    assert_eq!(
        after, 401,
        "a token covered by the subject revocation (POST answered {status}: {body}) is accepted"
    );
}
