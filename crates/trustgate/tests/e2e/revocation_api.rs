//! Review finding: concurrent revocations on one replica overwrote each other (`Revocations::add`
//! and `apply` loaded the list and stored it back without a compare-and-swap).

use serde_json::{Value, json};

use test_support::RedisServer;

use crate::common::{Config, Fixture, Gateway, Pattern, Route, TempDir, bearer, raw};

const ADMIN_TOKEN: &str = "0123456789abcdef0123456789abcdef-admin-token";

fn config(f: &Fixture, dir: &TempDir) -> Config {
    let token_file = dir.write("admin-token", ADMIN_TOKEN);
    f.config()
        .admin("token_file", token_file.to_str().unwrap())
        .empty_section("revocation")
        .route(Route::new("rev", "/rev", "echo", Pattern::ForwardToken))
}

fn admin(gw: &Gateway, method: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} /revocations HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw(gw.admin, request.as_bytes());
    let json = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    (response.status, json)
}

/// Concurrent POSTs to a memory store: `Revocations::add` (and `apply`) load the list, add, and
/// store it back without a compare-and-swap, so two concurrent revocations can each answer 201
/// while one of them is overwritten by the other and never enforced.
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

/// With a Redis store, the same race between concurrent `add`s (and the subscriber's `apply`) on
/// one replica: a POST answers 201 and the token it revoked is still accepted right after, until
/// a snapshot repairs the list.
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
