//! A fleet on Redis: three replicas of the real binary on loopback (no load balancer; the test
//! spreads requests), Debian's `redis-server` started by the test (standalone, a three-master
//! cluster, and Sentinel with a failover), revocations, the shared key ring, rate limits and assertion replay
//! across replicas. Timings are reported on stderr; only generous bounds (the documented
//! staleness bound, signing limits) are asserted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_support::{RedisCluster, RedisSentinel, RedisServer, RedisTls};

use crate::common::{
    Config, Fixture, Gateway, Pattern, RawResponse, Route, TempDir, bearer, cli, jwt_payload, raw,
    rt, wait_until,
};

/// The key-encryption key every replica shares (32 bytes, base64).
const KEK: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
pub(crate) const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-admin-token";
const INTERNAL_ISS: &str = "https://trustgate.fleet.test";

/// A fleet's configuration: the store, revocation, the shared ring and three routes (`/rev`
/// checks revocations, `/int` mints internal tokens, `/rl` is rate limited).
fn fleet_config(fx: &Fixture, dir: &TempDir, store: Value, rotation: &str) -> Config {
    let token_file = dir.write("admin-token", ADMIN_TOKEN);
    let mut config = fx
        .config()
        .admin("token_file", token_file.to_str().unwrap())
        .section("revocation", "staleness_bound", "2s")
        .section("internal_issuer", "issuer", INTERNAL_ISS)
        .section("internal_issuer", "kek_env", "TG_KEK")
        .section("internal_issuer", "rotation_interval", rotation)
        .section("internal_issuer", "danger_fast_rotation", true)
        .section("internal_issuer", "max_ttl", "10s")
        .section("internal_issuer", "cache_minted_tokens", false)
        .section("log", "access", false)
        .route(Route::new("rev", "/rev", "echo", Pattern::ForwardToken))
        .route(
            Route::new("int", "/int", "echo", Pattern::InternalToken)
                .service("svc")
                .internal_ttl("5s"),
        )
        .route(Route::new("rl", "/rl", "echo", Pattern::ForwardToken).set(
            "rate_limit",
            json!({"by": "sub", "requests": 20, "per": "10s", "burst": 20}),
        ));
    for (key, value) in store.as_object().unwrap() {
        config = config.section("store", key, value.clone());
    }
    config
}

/// A fleet's configuration for tests of the key ring, rotating every 3 s. `/int` checks
/// revocations too: the default staleness bound (10 s), not the fleet tests' 2 s, keeps a
/// loaded machine's late poll (or a paused store) from failing a test about keys.
fn keyring_config(fx: &Fixture, dir: &TempDir, redis: &RedisServer, ns: &str) -> Config {
    fleet_config(fx, dir, standalone(redis, ns), "3s").section(
        "revocation",
        "staleness_bound",
        "10s",
    )
}

fn standalone(redis: &RedisServer, ns: &str) -> Value {
    json!({"backend": "redis", "url": redis.url(), "namespace": ns, "poll_interval": "250ms"})
}

fn start_fleet(config: &Config, n: usize) -> Vec<Gateway> {
    (0..n)
        .map(|_| Gateway::start_with_env(config, &[("TG_KEK", KEK)]))
        .collect()
}

/// An admin API call: (status, JSON body).
pub(crate) fn admin(gw: &Gateway, method: &str, body: Option<Value>, token: &str) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} /revocations HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw(gw.admin, request.as_bytes());
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

fn get(gw: &Gateway, path: &str, token: &str) -> RawResponse {
    gw.get(path, &[("Authorization", &bearer(token))])
}

/// Wall-clock milliseconds since the epoch, the time the ring's windows are in.
fn wall_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The `kid` of a token's header.
fn kid_of(token: &str) -> String {
    let header: Value = serde_json::from_slice(
        &base64_simd::URL_SAFE_NO_PAD
            .decode_to_vec(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// The key ids of a JWK Set.
fn kids_of_set(set: &Value) -> BTreeSet<String> {
    set["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// The key ids of a replica's internal JWK Set.
fn published_kids(gw: &Gateway) -> BTreeSet<String> {
    kids_of_set(&serde_json::from_str(&gw.admin_get("/.well-known/jwks.json").1).unwrap())
}

/// Waits until every replica serves `token` on `/rev` (200): it has reached the store.
fn wait_serving(fleet: &[Gateway], token: &str) {
    for gw in fleet {
        assert!(
            wait_until(Duration::from_secs(5), || get(gw, "/rev/x", token).status
                == 200),
            "a replica did not reach the store"
        );
    }
}

/// A replica that cannot reach the store answers 503 on `/rev`, for two seconds: never 200.
fn assert_fails_closed(gw: &Gateway, token: &str) {
    for _ in 0..10 {
        assert_eq!(get(gw, "/rev/x", token).status, 503);
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * p).round() as usize;
    values[index]
}

#[test]
fn a_revocation_made_through_one_replica_is_enforced_by_all_three() {
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = fleet_config(&fx, &dir, standalone(&redis, "rev"), "1h");
    let fleet = start_fleet(&config, 3);

    // The admin API needs its token; the list starts empty.
    assert_eq!(admin(&fleet[0], "GET", None, "wrong").0, 401);
    let (status, list) = admin(&fleet[0], "GET", None, ADMIN_TOKEN);
    assert_eq!(
        (status, list["entries"].as_array().unwrap().len()),
        (200, 0)
    );

    // Revoke by jti, one token at a time, through replica i % 3, and time until all three
    // refuse it. Each token was used (and so cached) on every replica first.
    let mut lags = Vec::new();
    for i in 0..30 {
        let token = fx.token_with("alice", json!({"jti": format!("j{i}")}));
        for gw in &fleet {
            assert_eq!(get(gw, "/rev/x", &token).status, 200);
        }
        let started = Instant::now();
        let (status, body) = admin(
            &fleet[i % 3],
            "POST",
            Some(json!({"jti": format!("j{i}"), "issuer": "idp"})),
            ADMIN_TOKEN,
        );
        assert_eq!(status, 201, "{body}");
        let mut pending: Vec<usize> = (0..3).collect();
        while !pending.is_empty() {
            pending.retain(|&r| get(&fleet[r], "/rev/x", &token).status != 401);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "not enforced within 2 s"
            );
        }
        lags.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let p50 = percentile(&mut lags, 0.5);
    let p99 = percentile(&mut lags, 0.99);
    eprintln!(
        "revocation by jti through one replica, enforced by all three (admin call included), n=30: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        lags.last().unwrap()
    );

    // The refusal is RFC 6750's, and another token of the same subject still passes.
    let revoked = get(
        &fleet[2],
        "/rev/x",
        &fx.token_with("alice", json!({"jti": "j0"})),
    );
    assert_eq!(revoked.status, 401);
    assert!(
        revoked
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(get(&fleet[2], "/rev/x", &fx.token("alice")).status, 200);

    // "Log out everywhere": bob's tokens issued before the cut-off are refused on every
    // replica; one issued after it passes. Through the CLI this time.
    let now = test_support::now_secs();
    let old = fx.token_with("bob", json!({"iat": now - 10}));
    for gw in &fleet {
        assert_eq!(get(gw, "/rev/x", &old).status, 200);
    }
    let token_file = dir.0.join("admin-token");
    let admin_url = format!("http://{}", fleet[1].admin);
    let out = cli(&[
        "revoke",
        "--admin",
        &admin_url,
        "--token-file",
        token_file.to_str().unwrap(),
        "sub",
        "bob",
        "--issuer",
        "idp",
        "--before",
        &(now - 5).to_string(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for gw in &fleet {
        assert!(wait_until(Duration::from_secs(2), || get(
            gw, "/rev/x", &old
        )
        .status
            == 401));
    }
    let fresh = fx.token_with("bob", json!({"iat": now}));
    for gw in &fleet {
        assert_eq!(get(gw, "/rev/x", &fresh).status, 200);
    }

    // Every replica lists the same 31 entries, and counts them in its metrics.
    for gw in &fleet {
        let (_, list) = admin(gw, "GET", None, ADMIN_TOKEN);
        assert_eq!(list["entries"].as_array().unwrap().len(), 31, "{list}");
        assert_eq!(gw.metric("trustgate_revocations"), Some(31.0));
    }
    let list = cli(&[
        "revoke",
        "--admin",
        &admin_url,
        "--token-file",
        token_file.to_str().unwrap(),
        "list",
    ]);
    assert!(list.status.success());
    assert!(String::from_utf8_lossy(&list.stdout).contains("\"bob\""));

    // explain reads the list from the store and shows the hit.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(["explain", "-c", fleet[0].config_path.to_str().unwrap()])
        .args(["--path", "/rev/x", "--token"])
        .arg(fx.token_with("alice", json!({"jti": "j7"})))
        .env("TG_KEK", KEK)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("revocation: refused (revoked by jti)"),
        "{text}"
    );
    assert!(text.contains("refuse with 401"), "{text}");
}

#[test]
fn an_internal_token_revokes_its_subject_on_every_replica() {
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = fleet_config(&fx, &dir, standalone(&redis, "revint"), "1h")
        .edit_route("int", |r| r.set("check_revocation", true));
    let fleet = start_fleet(&config, 2);
    let now = test_support::now_secs();
    let carol = fx.token_with("carol", json!({"iat": now - 2}));
    assert_eq!(get(&fleet[0], "/int/x", &carol).status, 200);
    let internal = fx.upstream.last().unwrap();
    let internal = internal
        .header("authorization")
        .unwrap()
        .strip_prefix("Bearer ")
        .unwrap()
        .to_owned();
    assert_eq!(jwt_payload(&internal)["sub"], "carol");
    let (status, body) = admin(
        &fleet[1],
        "POST",
        Some(json!({"internal_token": internal})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["revoked"]["value"], "carol");
    // Up to its mint time plus the issuer's 60 s leeway: the external token behind it may have
    // been stamped that far ahead by the issuer's clock.
    assert_eq!(
        body["revoked"]["cutoff"].as_i64(),
        jwt_payload(&internal)["iat"].as_i64().map(|iat| iat + 60),
        "{body}"
    );
    for gw in &fleet {
        assert!(wait_until(Duration::from_secs(2), || {
            get(gw, "/int/x", &carol).status == 401
        }));
    }
    // A forged internal token is refused by the API.
    let forged = fx.token("carol");
    let (status, _) = admin(
        &fleet[0],
        "POST",
        Some(json!({"internal_token": forged})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 400);
}

/// One request's outcome in a load thread.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    route: &'static str,
    status: u16,
    took: Duration,
}

/// Client threads; stopped and joined when finished or dropped (a failing test must not leave
/// them holding the gateways, whose processes would then outlive the test).
struct Load {
    stop: Arc<AtomicBool>,
    handles: Vec<std::thread::JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        std::mem::take(&mut self.handles)
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for handle in std::mem::take(&mut self.handles) {
            let _ = handle.join();
        }
    }
}

/// Runs `threads` clients until stopped, each sending to the replicas in turn, alternating the
/// paths given.
fn load(
    fleet: &Arc<Vec<Gateway>>,
    token: &str,
    paths: &'static [(&'static str, &'static str)],
    threads: usize,
    start: Instant,
) -> Load {
    let stop = Arc::new(AtomicBool::new(false));
    let handles = (0..threads)
        .map(|t| {
            let fleet = Arc::clone(fleet);
            let stop = Arc::clone(&stop);
            let token = token.to_owned();
            std::thread::spawn(move || {
                let mut samples = Vec::new();
                let mut n = t;
                while !stop.load(Ordering::Relaxed) {
                    let (route, path) = paths[n % paths.len()];
                    let gw = &fleet[n % fleet.len()];
                    let sent = Instant::now();
                    let status = get(gw, path, &token).status;
                    samples.push(Sample {
                        at: sent - start,
                        route,
                        status,
                        took: sent.elapsed(),
                    });
                    n += 1;
                }
                samples
            })
        })
        .collect();
    Load { stop, handles }
}

#[test]
fn keys_rotate_under_load_for_a_minute_and_every_token_verifies_on_every_replica() {
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = keyring_config(&fx, &dir, &redis, "ring");
    let fleet = Arc::new(start_fleet(&config, 3));
    let token = fx.token("dave");
    let start = Instant::now();
    let workers = load(&fleet, &token, &[("int", "/int/x")], 3, start);
    // Every 500 ms: the JWK Set of each replica, kept with the time it was read.
    let mut snapshots: Vec<(Duration, Vec<Value>)> = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        let sets = fleet
            .iter()
            .map(|gw| serde_json::from_str(&gw.admin_get("/.well-known/jwks.json").1).unwrap())
            .collect();
        snapshots.push((start.elapsed(), sets));
    }
    let samples = workers.finish();
    let failed = samples.iter().filter(|s| s.status != 200).count();
    let slowest = samples.iter().map(|s| s.took).max().unwrap();
    // Which statuses, and when: a failure's cause is in the replicas' logs at those moments.
    let mut failures: BTreeMap<u16, Vec<Duration>> = BTreeMap::new();
    for s in samples.iter().filter(|s| s.status != 200) {
        failures.entry(s.status).or_default().push(s.at);
    }
    eprintln!(
        "key rotation every 3 s for 60 s, 3 replicas: {} requests, {failed} failed, slowest {slowest:?}",
        samples.len()
    );
    if failed != 0 {
        // The replicas' own account of those moments, before the assertion hides it.
        for (i, gw) in fleet.iter().enumerate() {
            for line in gw.log_lines("WARN").iter().chain(&gw.log_lines("ERROR")) {
                eprintln!("replica {i}: {line}");
            }
        }
    }
    let counts: BTreeMap<u16, usize> = failures.iter().map(|(s, at)| (*s, at.len())).collect();
    assert_eq!(failed, 0, "failed, by status: {counts:?}; at: {failures:?}");

    // The minted tokens, with the moment each was received upstream (approximately: the echo
    // records in order, and the samples are in time order per thread).
    let tokens: Vec<String> = fx
        .upstream
        .requests()
        .iter()
        .filter_map(|r| r.header("authorization").map(|v| v[7..].to_owned()))
        .collect();
    assert_eq!(tokens.len(), samples.len());
    let kids: BTreeSet<String> = tokens.iter().map(|t| kid_of(t)).collect();
    eprintln!("signing keys seen: {}", kids.len());
    assert!(kids.len() >= 15, "keys did not rotate: {kids:?}");

    // Each token against the three replicas' JWK Sets read after it was minted (the first
    // snapshot at least 500 ms after its request started, so it has certainly been minted),
    // with joserfc. Tokens are sampled one in five to keep the run short.
    let mut sorted = samples.clone();
    sorted.sort_by_key(|s| s.at);
    let iat_to_snapshot = |iat: i64, base: i64| {
        let offset = Duration::from_secs(u64::try_from((iat - base).max(0)).unwrap_or(0));
        snapshots
            .iter()
            .find(|(at, _)| *at > offset + Duration::from_millis(1500))
            .or(snapshots.last())
            .unwrap()
    };
    let base = test_support::now_secs() - i64::try_from(start.elapsed().as_secs()).unwrap();
    let cases: Vec<Value> = tokens
        .iter()
        .step_by(5)
        .map(|t| {
            let iat = jwt_payload(t)["iat"].as_i64().unwrap();
            let (_, sets) = iat_to_snapshot(iat, base);
            json!({"token": t, "jwks": sets})
        })
        .collect();
    let file = dir.write("cases.json", &Value::from(cases.clone()).to_string());
    let output = std::process::Command::new("python3")
        .arg(
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../tests/interop/joserfc_verify.py"),
        )
        .arg(&file)
        .output()
        .expect("run python3 (scripts/install-test-deps.sh installs joserfc)");
    let report = String::from_utf8_lossy(&output.stdout);
    eprintln!("joserfc: {}", report.trim());
    assert!(
        output.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains(&format!("verified {}, failed 0", cases.len() * 3)));

    // The replicas served the same key set nearly always (they read the ring within one poll).
    let differing = snapshots
        .iter()
        .filter(|(_, sets)| {
            kids_of_set(&sets[0]) != kids_of_set(&sets[1])
                || kids_of_set(&sets[1]) != kids_of_set(&sets[2])
        })
        .count();
    eprintln!(
        "JWK Set snapshots where replicas differed: {differing} of {}",
        snapshots.len()
    );
    // The store holds the ring sealed: no PKCS#8 private key in clear.
    let ring = redis.cli(&["GET", "{trustgate:ring}:keyring"]);
    assert!(ring.contains("\"sealed\""), "{ring}");
    assert!(!ring.contains("\"d\""), "{ring}");
}

/// A store that answers late across a key switch (a loaded machine, a slow network) does not
/// stop minting: a replica signs for one rotation interval after its last sync, and switches to
/// the next key, which it already holds, on time. `CLIENT PAUSE` holds every replica's reads
/// from 900 ms before a switch to 600 ms after it; a sign limit at the switch would refuse
/// every request after it until the store answered again.
#[test]
fn a_store_that_stalls_across_a_key_switch_does_not_stop_minting() {
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = keyring_config(&fx, &dir, &redis, "stall");
    let fleet = start_fleet(&config, 2);
    let token = fx.token("gina");
    let mints = |gw: &Gateway| get(gw, "/int/x", &token).status == 200;
    for gw in &fleet {
        assert!(wait_until(Duration::from_secs(5), || mints(gw)));
    }
    // The first switch at least 1.5 s away: the end of a signing window in the stored ring.
    let ring: Value =
        serde_json::from_str(&redis.cli(&["GET", "{trustgate:stall}:keyring"])).unwrap();
    let now = wall_ms();
    let switch = ring["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["signs_until"].as_i64().unwrap())
        .filter(|&until| until > now + 1500)
        .min()
        .unwrap();
    let until = |at: i64| Duration::from_millis(u64::try_from(at - wall_ms()).unwrap_or(0));
    std::thread::sleep(until(switch - 900));
    assert_eq!(redis.cli(&["CLIENT", "PAUSE", "1500", "ALL"]).trim(), "OK");
    let before = fx.upstream.requests().len();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    let mut sent = 0;
    while wall_ms() < switch + 550 {
        for gw in &fleet {
            *statuses
                .entry(get(gw, "/int/x", &token).status)
                .or_default() += 1;
            sent += 1;
        }
    }
    assert_eq!(statuses, BTreeMap::from([(200, sent)]));
    // Both keys signed while the store was paused: the switch came on time.
    let kids: BTreeSet<String> = fx.upstream.requests()[before..]
        .iter()
        .filter_map(|r| r.header("authorization").map(|v| kid_of(&v[7..])))
        .collect();
    assert_eq!(kids.len(), 2, "{kids:?}");
}

#[test]
fn redis_killed_and_restarted_mid_load_fails_closed_in_bounds_and_recovers() {
    let mut redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = fleet_config(&fx, &dir, standalone(&redis, "outage"), "3s");
    let fleet = Arc::new(start_fleet(&config, 2));
    // A revocation made before the outage must hold after Redis comes back empty.
    let revoked = fx.token_with("erin", json!({"jti": "before-outage"}));
    let (status, _) = admin(
        &fleet[0],
        "POST",
        Some(json!({"jti": "before-outage", "issuer": "idp"})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 201);
    let token = fx.token("frank");
    let start = Instant::now();
    let workers = load(
        &fleet,
        &token,
        &[("rev", "/rev/x"), ("int", "/int/x")],
        2,
        start,
    );
    std::thread::sleep(Duration::from_secs(3));
    let killed_at = start.elapsed();
    redis.kill();
    // Stale and not signing: both replicas answer 503 and say so in /readyz.
    assert!(wait_until(Duration::from_secs(12), || {
        fleet.iter().all(|gw| {
            let (status, text) = gw.admin_get("/readyz");
            status == 503 && text.contains("keyring not signing")
        })
    }));
    let (_, readyz) = fleet[0].admin_get("/readyz");
    eprintln!("readyz during the outage:\n{readyz}");
    assert!(readyz.contains("store down"), "{readyz}");
    assert!(readyz.contains("stale revocations"), "{readyz}");
    assert!(readyz.contains("keyring not signing"), "{readyz}");
    assert_eq!(fleet[0].metric("trustgate_store_up"), Some(0.0));
    std::thread::sleep(Duration::from_secs(1));
    let restarted_at = start.elapsed();
    redis.restart();
    assert!(wait_until(Duration::from_secs(10), || {
        fleet.iter().all(|gw| gw.admin_get("/readyz").0 == 200)
    }));
    let recovered_at = start.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let samples = workers.finish();

    let slowest = samples.iter().map(|s| s.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(2),
        "a request took {slowest:?}"
    );
    let mut first_503: HashMap<&str, Duration> = HashMap::new();
    for sample in &samples {
        assert!(
            sample.status == 200 || sample.status == 503,
            "unexpected {sample:?}"
        );
        if sample.status == 503 {
            first_503.entry(sample.route).or_insert(sample.at);
        }
        if sample.at < killed_at {
            assert_eq!(sample.status, 200, "before the outage: {sample:?}");
        }
        if sample.at > recovered_at + Duration::from_millis(500) {
            assert_eq!(sample.status, 200, "after recovery: {sample:?}");
        }
    }
    let rev = first_503["rev"] - killed_at;
    let int = first_503["int"] - killed_at;
    eprintln!(
        "outage: revocation route first 503 after {rev:?} (bound 2 s), minting refused after {int:?} (every route checks revocations here: stale after 2 s; the signing limit is one 3 s rotation interval after the last sync), Redis restarted at +{:?}, ready again +{:?} later; {} requests, slowest {slowest:?}",
        restarted_at - killed_at,
        recovered_at - restarted_at,
        samples.len()
    );
    // Fresh until the last confirmation + 2 s: the confirmation comes at most one poll (250 ms)
    // before the kill, or earlier when a loaded machine delays a poll, so the lower bound only
    // shows that the list is used until its bound, not refused at once.
    assert!(
        rev >= Duration::from_millis(1000) && rev <= Duration::from_millis(3000),
        "{rev:?}"
    );
    // Signing goes on for one rotation interval (3 s) after the last sync, which came at most
    // a poll (250 ms) before the kill; the rest is slack for a loaded machine.
    assert!(int <= Duration::from_secs(5), "{int:?}");

    // Recovered without a restart; the revocation made before the outage was written back.
    for gw in fleet.iter() {
        assert_eq!(get(gw, "/rev/x", &revoked).status, 401);
        assert_eq!(get(gw, "/int/x", &token).status, 200);
    }
    assert_eq!(redis.cli(&["ZCARD", "{trustgate:outage}:rev"]).trim(), "1");
}

/// Redis back from an older copy of its data: an RDB snapshot here, the same as an `everysec`
/// AOF or a failover onto a replica that lagged. The epoch is the one the replicas know, the
/// version older, a revocation and two keys of the ring missing. The replicas write them back:
/// the revoked token stays refused, the key that signed stays published, and what signs next
/// was published before.
#[test]
fn redis_back_from_an_older_snapshot_loses_no_revocation_and_no_published_key() {
    let mut redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = fleet_config(&fx, &dir, standalone(&redis, "older"), "3s");
    let fleet = start_fleet(&config, 2);
    let revoke = |jti: &str| {
        let (status, body) = admin(
            &fleet[0],
            "POST",
            Some(json!({"jti": jti, "issuer": "idp"})),
            ADMIN_TOKEN,
        );
        assert_eq!(status, 201, "{body}");
    };
    revoke("before-save");
    redis.save();
    let ring_saved = redis.cli(&["GET", "{trustgate:older}:keyring"]);
    revoke("after-save");
    let revoked = fx.token_with("erin", json!({"jti": "after-save"}));
    for gw in &fleet {
        assert!(wait_until(Duration::from_secs(2), || get(
            gw, "/rev/x", &revoked
        )
        .status
            == 401));
    }
    // Two rotations after the snapshot: a key the snapshot does not hold signs.
    std::thread::sleep(Duration::from_millis(6500));
    let token = fx.token("frank");
    // The `kid` of the internal token `gw` mints for `token`, as the upstream received it.
    let minted_kid = |gw: &Gateway| minted_kid(&fx, gw, &token);
    let signing = minted_kid(&fleet[0]);
    let published_before = published_kids(&fleet[0]);
    assert!(published_before.contains(&signing));
    assert!(!ring_saved.contains(&signing), "{ring_saved}");

    // The replicas poll every 250 ms: they write back within a few polls.
    redis.restart_from_last_save();
    assert!(
        wait_until(Duration::from_secs(5), || {
            redis.cli(&["ZCARD", "{trustgate:older}:rev"]).trim() == "2"
                && redis
                    .cli(&["GET", "{trustgate:older}:keyring"])
                    .contains(&signing)
        }),
        "not written back: {}",
        redis.cli(&["GET", "{trustgate:older}:keyring"])
    );
    std::thread::sleep(Duration::from_millis(600));
    for gw in &fleet {
        assert_eq!(get(gw, "/rev/x", &revoked).status, 401);
        let (_, list) = admin(gw, "GET", None, ADMIN_TOKEN);
        assert_eq!(list["entries"].as_array().unwrap().len(), 2, "{list}");
        assert!(published_kids(gw).contains(&signing));
        assert!(
            published_before.contains(&minted_kid(gw)),
            "signs with a key that was not published before it signed"
        );
    }
}

/// The ring in Redis with `edit` applied to the entry of the key `kid`.
/// The `kid` of the internal token `gw` mints for `token` on `/int` (answered 200).
fn minted_kid(fx: &Fixture, gw: &Gateway, token: &str) -> String {
    assert_eq!(get(gw, "/int/x", token).status, 200);
    let requests = fx.upstream.requests();
    kid_of(&requests.last().unwrap().header("authorization").unwrap()[7..])
}

fn edit_stored_key(redis: &RedisServer, ns: &str, kid: &str, edit: impl Fn(&mut Value)) {
    let ring_key = format!("{{trustgate:{ns}}}:keyring");
    let mut ring: Value = serde_json::from_str(&redis.cli(&["GET", &ring_key])).unwrap();
    let entry = ring["keys"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|k| k["kid"] == kid)
        .unwrap();
    edit(entry);
    assert_eq!(
        redis.cli(&["SET", &ring_key, &ring.to_string()]).trim(),
        "OK"
    );
}

/// A writer of Redis cannot take the key that signs out of the JWK Set. A stored key's
/// `published_until` is not sealed: set a second ahead, every replica installed it, dropped the
/// key from its JWK Set when that second passed while still signing with it, then pruned it and
/// signed with a key made on the spot, so services refused every internal token minted before.
/// A key's publication now follows from its sealed window alone; an entry whose window was
/// altered does not open, is ignored, and the replicas write the key back.
#[test]
fn a_writer_of_redis_cannot_unpublish_the_key_that_signs() {
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = fleet_config(&fx, &dir, standalone(&redis, "tamper"), "1h");
    let fleet = start_fleet(&config, 2);
    let token = fx.token("grace");
    let minted_kid = |gw: &Gateway| minted_kid(&fx, gw, &token);
    let signing = minted_kid(&fleet[0]);
    for gw in &fleet {
        assert!(published_kids(gw).contains(&signing));
    }
    let now_ms = wall_ms();
    edit_stored_key(&redis, "tamper", &signing, |k| {
        k["published_until"] = json!(now_ms + 1000);
    });
    // Past the altered end and several polls (250 ms).
    std::thread::sleep(Duration::from_millis(2500));
    for gw in &fleet {
        assert!(
            published_kids(gw).contains(&signing),
            "the signing key left the JWK Set: {:?}",
            published_kids(gw)
        );
        assert_eq!(minted_kid(gw), signing);
    }

    // The window altered (to make the key look retired): the entry does not open, so it counts
    // as missing, and a replica that holds the key writes it back as it was sealed.
    let sealed_until = |ring: &str| {
        let ring: Value = serde_json::from_str(ring).unwrap();
        ring["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == signing.as_str())
            .map(|k| k["signs_until"].clone())
    };
    let ring_key = "{trustgate:tamper}:keyring";
    let until = sealed_until(&redis.cli(&["GET", ring_key])).unwrap();
    edit_stored_key(&redis, "tamper", &signing, |k| {
        k["signs_until"] = json!(now_ms - 60_000);
    });
    assert!(
        wait_until(Duration::from_secs(5), || sealed_until(
            &redis.cli(&["GET", ring_key])
        )
        .as_ref()
            == Some(&until)),
        "not written back: {}",
        redis.cli(&["GET", ring_key])
    );
    std::thread::sleep(Duration::from_millis(600));
    for gw in &fleet {
        assert!(published_kids(gw).contains(&signing));
        assert_eq!(minted_kid(gw), signing);
    }
}

#[test]
fn a_key_ring_overwritten_with_garbage_is_written_back() {
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = fleet_config(&fx, &dir, standalone(&redis, "garbage"), "1h");
    let fleet = start_fleet(&config, 2);
    let token = fx.token("grace");
    let minted_kid = |gw: &Gateway| minted_kid(&fx, gw, &token);
    let signing = minted_kid(&fleet[0]);
    let ring_key = "{trustgate:garbage}:keyring";
    let ring = redis.cli(&["GET", ring_key]);
    assert_eq!(redis.cli(&["SET", ring_key, "not a ring"]).trim(), "OK");
    // A replica writes its copy back, the same ciphertexts (polls every 250 ms).
    assert!(
        wait_until(Duration::from_secs(5), || redis.cli(&["GET", ring_key])
            == ring),
        "not written back: {}",
        redis.cli(&["GET", ring_key])
    );
    for gw in &fleet {
        assert_eq!(minted_kid(gw), signing);
        assert!(published_kids(gw).contains(&signing));
    }
}

#[test]
fn rate_limits_hold_across_replicas() {
    let redis = RedisServer::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let config = fleet_config(&fx, &dir, standalone(&redis, "rl"), "1h");
    let fleet = start_fleet(&config, 3);
    let alice = fx.token("alice");
    let started = Instant::now();
    let mut statuses = BTreeMap::new();
    let mut limited = None;
    for i in 0..60 {
        let response = get(&fleet[i % 3], "/rl/x", &alice);
        *statuses.entry(response.status).or_insert(0) += 1;
        if response.status == 429 && limited.is_none() {
            limited = Some(response);
        }
    }
    let elapsed = started.elapsed();
    // 20 at once, then 2 per second.
    let allowed = statuses[&200];
    let refill = (elapsed.as_secs_f64() * 2.0).floor() as u32 + 1;
    eprintln!(
        "rate limit 20 per 10 s across 3 replicas: 60 requests in {elapsed:?}, {allowed} allowed (tolerance: 20 + {refill} refilled)"
    );
    assert!(allowed >= 20 && allowed <= 20 + refill, "{statuses:?}");
    let limited = limited.unwrap();
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some("\"caller\";q=20;w=10")
    );
    assert!(
        limited
            .header("ratelimit")
            .unwrap()
            .starts_with("\"caller\";r=0;t=")
    );
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry), "{retry}");
    assert_eq!(limited.json()["error"], "too_many_requests");
    // An allowed answer states the limit too; another caller has a bucket of its own.
    let bob = get(&fleet[0], "/rl/x", &fx.token("bob"));
    assert_eq!(bob.status, 200);
    assert_eq!(bob.header("ratelimit"), Some("\"caller\";r=19;t=1"));
    let counted: f64 = fleet
        .iter()
        .map(|gw| {
            gw.metric(r#"trustgate_rate_limit_decisions_total{route="rl",decision="limited",source="redis"}"#)
                .unwrap_or(0.0)
        })
        .sum();
    assert_eq!(counted, f64::from(statuses[&429]));
}

/// A service with two replicas sharing assertion ids in Redis: what one accepted, the other
/// refuses.
#[test]
fn an_assertion_replayed_to_another_replica_is_refused() {
    use axum::routing::get as get_route;
    let redis = RedisServer::start();
    let fx = Fixture::new();
    // Two service replicas; each answers with the headers it received.
    let (replica_addrs, gateway) = {
        let redis_url = redis.url();
        let listeners: Vec<std::net::TcpListener> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<std::net::SocketAddr> =
            listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let gateway = Gateway::start(
            &fx.config()
                .empty_section("internal_issuer")
                .upstream(crate::common::Upstream::new(
                    "svc",
                    &format!("http://{}", addrs[0]),
                ))
                .route(
                    Route::new("svc", "/svc", "svc", Pattern::IdentityHeaders)
                        .assertion()
                        .service("svc"),
                ),
        );
        let issuer = format!("http://{}", gateway.admin);
        for listener in listeners {
            let issuer = issuer.clone();
            let redis_url = redis_url.clone();
            rt().block_on(async move {
                let connection = redis::Client::open(redis_url)
                    .unwrap()
                    .get_connection_manager()
                    .await
                    .unwrap();
                let store = trustgate_service::RedisReplayStore::new(
                    connection,
                    "svc",
                    Duration::from_millis(250),
                );
                let layer = trustgate_service::Builder::identity_headers(&issuer, "svc")
                    .shared_replay_store(Arc::new(store))
                    .build()
                    .await
                    .unwrap();
                let app = axum::Router::new()
                    .route(
                        "/svc/x",
                        get_route(|headers: http::HeaderMap| async move {
                            let map: BTreeMap<String, String> = headers
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap().to_owned())
                                })
                                .collect();
                            axum::Json(map)
                        }),
                    )
                    .layer(layer);
                listener.set_nonblocking(true).unwrap();
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                tokio::spawn(async move { axum::serve(listener, app).await });
            });
        }
        (addrs, gateway)
    };
    let through = gateway.get("/svc/x", &[("Authorization", &bearer(&fx.token("gina")))]);
    assert_eq!(through.status, 200, "{}", through.body_text());
    let received: BTreeMap<String, String> = serde_json::from_slice(&through.body).unwrap();
    assert!(received.contains_key("x-trustgate-assertion"));
    // The same request, byte for byte, to the other replica, then to the first again.
    let replay = |addr: std::net::SocketAddr| {
        let mut text = "GET /svc/x HTTP/1.1\r\n".to_owned();
        for (name, value) in &received {
            if !matches!(name.as_str(), "connection" | "content-length") {
                text.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        text.push_str("Connection: close\r\n\r\n");
        raw(addr, text.as_bytes())
    };
    let other = replay(replica_addrs[1]);
    assert_eq!(other.status, 401, "{}", other.body_text());
    assert!(
        other
            .header("www-authenticate")
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(replay(replica_addrs[0]).status, 401);
    // A fresh request through the gateway passes.
    let again = gateway.get("/svc/x", &[("Authorization", &bearer(&fx.token("gina")))]);
    assert_eq!(again.status, 200);
}

#[test]
fn a_three_master_cluster_carries_revocations_keys_and_limits() {
    let cluster = RedisCluster::start();
    let fx = Fixture::new();
    let dir = TempDir::new();
    let store = json!({"backend": "redis", "cluster_nodes": cluster.urls(), "namespace": "cl", "poll_interval": "250ms"});
    let config = fleet_config(&fx, &dir, store, "1h");
    let fleet = start_fleet(&config, 2);
    let token = fx.token_with("hank", json!({"jti": "cluster-1"}));
    assert_eq!(get(&fleet[1], "/rev/x", &token).status, 200);
    let (status, body) = admin(
        &fleet[0],
        "POST",
        Some(json!({"jti": "cluster-1", "issuer": "idp"})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 201, "{body}");
    let started = Instant::now();
    assert!(wait_until(Duration::from_secs(2), || {
        get(&fleet[1], "/rev/x", &token).status == 401
    }));
    eprintln!(
        "cluster: revocation enforced by the other replica after {:?}",
        started.elapsed()
    );
    // Both replicas sign with the same key and serve the same key set.
    let jwks: Vec<String> = fleet
        .iter()
        .map(|gw| gw.admin_get("/.well-known/jwks.json").1)
        .collect();
    assert_eq!(jwks[0], jwks[1]);
    assert_eq!(get(&fleet[0], "/int/x", &fx.token("ivy")).status, 200);
    assert_eq!(get(&fleet[1], "/int/x", &fx.token("ivy")).status, 200);
    let kids: BTreeSet<String> = fx
        .upstream
        .requests()
        .iter()
        .filter(|r| r.target.starts_with("/int"))
        .filter_map(|r| r.header("authorization").map(|v| v[7..].to_owned()))
        .map(|t| {
            let header = t.split('.').next().unwrap();
            let header: Value = serde_json::from_slice(
                &base64_simd::URL_SAFE_NO_PAD.decode_to_vec(header).unwrap(),
            )
            .unwrap();
            header["kid"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kids.len(), 1, "{kids:?}");
    // The limit holds across both replicas.
    let jane = fx.token("jane");
    let allowed = (0..30)
        .filter(|i| get(&fleet[i % 2], "/rl/x", &jane).status == 200)
        .count();
    assert!((20..=22).contains(&allowed), "{allowed}");
}

/// Redis Sentinel, with passwords on the master and on the sentinel (different ones), a replica,
/// and a failover: the master is killed, the sentinel promotes the replica, and the fleet follows
/// it. A revocation made before the failover still holds after it, one made after it reaches
/// both replicas, and a gateway without the sentinel's password never serves a route that
/// checks revocations.
#[test]
fn sentinel_with_passwords_fails_over_and_the_fleet_follows_the_new_master() {
    const NAME: &str = "tgmaster";
    const MASTER_PASSWORD: &str = "master-secret-7f3a";
    const SENTINEL_PASSWORD: &str = "sentinel-secret-91c2";
    let mut master =
        RedisServer::start_configured(MASTER_PASSWORD, &["--masterauth", MASTER_PASSWORD]);
    let master_port = master.port.to_string();
    let replica = RedisServer::start_configured(
        MASTER_PASSWORD,
        &[
            "--replicaof",
            "127.0.0.1",
            &master_port,
            "--masterauth",
            MASTER_PASSWORD,
        ],
    );
    assert!(
        wait_until(Duration::from_secs(10), || replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")),
        "the replica did not sync"
    );
    let sentinel = RedisSentinel::start(NAME, master.port, MASTER_PASSWORD, SENTINEL_PASSWORD);
    // The sentinel learns the replica from the master's INFO: failover needs it known.
    let replica_port = replica.port.to_string();
    assert!(
        wait_until(Duration::from_secs(15), || sentinel
            .cli(&["SENTINEL", "replicas", NAME])
            .contains(&replica_port)),
        "the sentinel did not learn the replica"
    );

    let fx = Fixture::new();
    let dir = TempDir::new();
    let master_password = dir.write("redis-password", MASTER_PASSWORD);
    let sentinel_password = dir.write("sentinel-password", SENTINEL_PASSWORD);
    let store = json!({
        "backend": "redis",
        "sentinel_nodes": [sentinel.url()],
        "sentinel_master": NAME,
        "password_file": master_password.to_str().unwrap(),
        "sentinel_password_file": sentinel_password.to_str().unwrap(),
        "namespace": "sent",
        "poll_interval": "250ms",
    });
    let config = fleet_config(&fx, &dir, store.clone(), "1h");
    let fleet = start_fleet(&config, 2);
    let fresh = fx.token("kim");
    wait_serving(&fleet, &fresh);

    // Before the failover: revoked through one replica, enforced by the other.
    let before = fx.token_with("kim", json!({"jti": "sent-1"}));
    let (status, body) = admin(
        &fleet[0],
        "POST",
        Some(json!({"jti": "sent-1", "issuer": "idp"})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 201, "{body}");
    assert!(wait_until(Duration::from_secs(2), || get(
        &fleet[1], "/rev/x", &before
    )
    .status
        == 401));
    // On the replica before the master goes: what a failover keeps.
    assert_eq!(master.cli(&["WAIT", "1", "2000"]).trim(), "1");

    master.kill();
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(30), || sentinel.master_port(NAME)
            == Some(replica.port)),
        "the sentinel did not promote the replica"
    );
    let promoted = started.elapsed();

    // After it: the admin API reaches the new master once a call has failed over to it.
    let after = fx.token_with("kim", json!({"jti": "sent-2"}));
    let mut status = 0;
    assert!(
        wait_until(Duration::from_secs(20), || {
            status = admin(
                &fleet[1],
                "POST",
                Some(json!({"jti": "sent-2", "issuer": "idp"})),
                ADMIN_TOKEN,
            )
            .0;
            status == 201
        }),
        "revoking after the failover: last status {status}"
    );
    let followed = started.elapsed();
    for gw in &fleet {
        assert!(
            wait_until(Duration::from_secs(5), || get(gw, "/rev/x", &after).status
                == 401),
            "a revocation made after the failover is not enforced"
        );
        assert_eq!(get(gw, "/rev/x", &before).status, 401);
        assert!(wait_until(Duration::from_secs(5), || get(
            gw, "/rev/x", &fresh
        )
        .status
            == 200));
    }
    assert!(
        replica
            .cli(&["INFO", "replication"])
            .contains("role:master")
    );
    eprintln!(
        "sentinel: replica promoted {promoted:?} after the master was killed; the fleet wrote to it {followed:?} after"
    );

    // Without the sentinel's password the store is never reached: routes that check
    // revocations answer 503, and the admin API cannot revoke.
    let mut store = store;
    store
        .as_object_mut()
        .unwrap()
        .remove("sentinel_password_file");
    let lost = fleet_config(&fx, &dir, store, "1h");
    let lost = Gateway::start_with_env(&lost, &[("TG_KEK", KEK)]);
    assert_fails_closed(&lost, &fresh);
    assert_eq!(
        admin(
            &lost,
            "POST",
            Some(json!({"jti": "sent-3", "issuer": "idp"})),
            ADMIN_TOKEN
        )
        .0,
        503
    );
}

/// `rediss://` sentinels: TLS to the sentinel and to the master it names (whose address carries
/// no scheme), both checked against `ca_file`, with both passwords. The fleet's state is in the
/// TLS-only master; a gateway that trusts another CA never reaches the store and fails closed.
#[test]
fn sentinel_over_tls_reaches_the_master_over_tls_and_checks_the_certificate() {
    const NAME: &str = "tlsmaster";
    let tls = RedisTls::generate();
    let master = RedisServer::start_tls("master-secret-tls", &tls);
    let sentinel = RedisSentinel::start_with(
        NAME,
        master.port,
        "master-secret-tls",
        "sentinel-secret-tls",
        Some(&tls),
    );
    assert!(sentinel.url().starts_with("rediss://"));
    assert!(
        wait_until(Duration::from_secs(10), || sentinel.master_port(NAME)
            == Some(master.port)),
        "the sentinel does not name the master"
    );

    let fx = Fixture::new();
    let dir = TempDir::new();
    let master_password = dir.write("redis-password", "master-secret-tls");
    let sentinel_password = dir.write("sentinel-password", "sentinel-secret-tls");
    let store = |ca: &std::path::Path| {
        json!({
            "backend": "redis",
            "sentinel_nodes": [sentinel.url()],
            "sentinel_master": NAME,
            "password_file": master_password.to_str().unwrap(),
            "sentinel_password_file": sentinel_password.to_str().unwrap(),
            "ca_file": ca.to_str().unwrap(),
            "namespace": "tls",
            "poll_interval": "250ms",
        })
    };
    let fleet = start_fleet(&fleet_config(&fx, &dir, store(&tls.ca_file()), "1h"), 2);
    let fresh = fx.token("lena");
    wait_serving(&fleet, &fresh);
    let token = fx.token_with("lena", json!({"jti": "tls-1"}));
    let (status, body) = admin(
        &fleet[0],
        "POST",
        Some(json!({"jti": "tls-1", "issuer": "idp"})),
        ADMIN_TOKEN,
    );
    assert_eq!(status, 201, "{body}");
    assert!(wait_until(Duration::from_secs(2), || get(
        &fleet[1], "/rev/x", &token
    )
    .status
        == 401));
    assert!(
        master.cli(&["KEYS", "*"]).contains("{trustgate:tls}:rev"),
        "the revocation is not in the TLS master"
    );

    // Another CA: the sentinel's certificate does not verify, nothing is reached.
    let other = RedisTls::generate();
    let distrusting = Gateway::start_with_env(
        &fleet_config(&fx, &dir, store(&other.ca_file()), "1h"),
        &[("TG_KEK", KEK)],
    );
    assert_fails_closed(&distrusting, &fresh);
}
