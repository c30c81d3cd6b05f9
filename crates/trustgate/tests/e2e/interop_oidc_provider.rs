//! Interoperability with a real, certified OpenID Provider: panva's `oidc-provider` (npm), run
//! by `tests/interop/oidc-provider/server.mjs`. The provider issues RFC 9068 JWT access tokens
//! (`typ: at+jwt`, RS256) for the `client_credentials` grant; trustgate finds its keys by OIDC
//! discovery. Then the provider rotates its signing key under traffic.
//!
//! Needs Node.js and `npm ci` in `tests/interop/oidc-provider` (`scripts/install-test-deps.sh`).
//! The test fails, never skips, when they are missing.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::common::{
    Config, Gateway, Issuer, Pattern, RawResponse, Route, TempDir, Upstream, bearer, closed_port,
    echo, read_response,
};

const CLIENT_ID: &str = "interop-client";
const CLIENT_SECRET: &str = "interop-secret-0123456789abcdef";
const RESOURCE: &str = "https://api.trustgate.test/";
const INSTALL_HINT: &str = "run scripts/install-test-deps.sh (it installs Node.js and runs \
     `npm ci` in tests/interop/oidc-provider)";

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/oidc-provider")
}

/// Runs `node` with `args` in the interop directory; panics (with the install hint) when Node.js
/// or the npm package is missing.
fn node(args: &[&std::ffi::OsStr]) -> Command {
    let dir = interop_dir();
    let package = dir.join("node_modules/oidc-provider/package.json");
    assert!(
        package.is_file(),
        "the npm package oidc-provider is not installed ({} is missing): {INSTALL_HINT}",
        package.display()
    );
    let mut command = Command::new("node");
    command.current_dir(&dir).args(args);
    command
}

fn node_output(args: &[&std::ffi::OsStr]) -> std::process::Output {
    node(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): {INSTALL_HINT}"))
}

/// A private JWK Set with one fresh RSA-2048 key, written by `genkeys.mjs`.
fn gen_key(dir: &TempDir, kid: &str) -> Value {
    let path = dir.0.join(format!("{kid}.json"));
    let out = node_output(&["genkeys.mjs".as_ref(), path.as_os_str(), kid.as_ref()]);
    assert!(
        out.status.success(),
        "genkeys.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let jwks: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let key = jwks["keys"][0].clone();
    assert_eq!(key["kid"], kid);
    assert!(key["d"].is_string(), "genkeys.mjs must write a private key");
    key
}

fn write_jwks(dir: &TempDir, name: &str, keys: &[&Value]) -> PathBuf {
    dir.write(name, &json!({ "keys": keys }).to_string())
}

/// The running provider; killed on drop.
struct Provider {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Provider {
    /// Starts `node server.mjs PORT JWKS_FILE` and waits until its discovery document is served.
    fn start(port: u16, jwks: &Path) -> Self {
        let mut child = node(&[
            "server.mjs".as_ref(),
            port.to_string().as_ref(),
            jwks.as_os_str(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `node` ({e}): {INSTALL_HINT}"));
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    sink.lock().unwrap().push(line);
                }
            });
        }
        let mut provider = Self { child, logs };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = provider.child.try_wait().unwrap() {
                panic!(
                    "oidc-provider exited ({status}) during start-up:\n{}",
                    provider.log_text()
                );
            }
            let discovery = http(
                addr,
                "GET /.well-known/openid-configuration HTTP/1.1\r\nHost: op\r\nConnection: close\r\n\r\n",
            );
            if discovery.is_some_and(|r| r.status == 200) {
                return provider;
            }
            if Instant::now() > deadline {
                provider.stop();
                panic!(
                    "oidc-provider did not serve its discovery document within 15 s:\n{}",
                    provider.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

/// One HTTP/1.1 exchange on a fresh connection; `None` when nothing listens.
fn http(addr: SocketAddr, request: &str) -> Option<RawResponse> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request.as_bytes()).ok()?;
    Some(read_response(&mut stream))
}

/// A fresh access token from the provider's token endpoint (`client_credentials`, HTTP Basic
/// client authentication, resource indicator).
fn fetch_token(port: u16) -> String {
    let body = format!(
        "grant_type=client_credentials&scope=api%3Aread&resource={}",
        RESOURCE.replace(':', "%3A").replace('/', "%2F")
    );
    let basic = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Basic {basic}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let response = http(SocketAddr::from(([127, 0, 0, 1], port)), &request)
        .expect("the provider's token endpoint is not reachable");
    assert_eq!(
        response.status,
        200,
        "token endpoint: {}",
        response.body_text()
    );
    let json = response.json();
    assert_eq!(json["token_type"], "Bearer", "{json}");
    json["access_token"].as_str().unwrap().to_owned()
}

fn segment(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn kid(token: &str) -> String {
    segment(token, 0)["kid"].as_str().unwrap().to_owned()
}

fn gateway_config(port: u16, upstream: &str) -> Config {
    Config::new()
        .issuer(
            Issuer::discovery("oidc-provider", &format!("http://127.0.0.1:{port}"))
                .audiences(&["trustgate-api"])
                .algorithms(&["RS256"])
                .set("required_typ", "at+jwt")
                .refresh(json!({
                    "default_interval": "1s",
                    "min_interval": "1s",
                    "max_interval": "1s",
                    "unknown_kid_cooldown": "1s",
                    "retry_base": "200ms",
                })),
        )
        .upstream(Upstream::new("echo", upstream))
        .route(
            Route::new("api", "/api", "echo", Pattern::IdentityHeaders).headers(&[
                ("X-User-Id", "subject"),
                ("X-Client-Id", "client"),
                ("X-Scopes", "scopes"),
            ]),
        )
}

/// GET /api/orders through the gateway with `token`; the status.
fn call(gateway: &Gateway, token: &str) -> RawResponse {
    gateway.get("/api/orders", &[("Authorization", &bearer(token))])
}

/// What the traffic thread saw: (phase before, phase after, old token?, kid, status).
type Outcome = (u8, u8, bool, String, u16);

/// Old key published (the provider's key sets are [old] then [new, old]).
const OLD_PUBLISHED: u8 = 1;
/// Old key removed (the provider's key set is [new]).
const OLD_REMOVED: u8 = 2;

struct Traffic {
    phase: AtomicU8,
    stop: AtomicBool,
    /// Held for reading while fetching a token, for writing while the provider restarts.
    provider: RwLock<()>,
    outcomes: Mutex<Vec<Outcome>>,
}

#[test]
fn oidc_provider_jwt_access_tokens_pass_and_key_rotation_under_traffic_drops_nothing() {
    let dir = TempDir::new();
    let old_key = gen_key(&dir, "old-rsa-1");
    let new_key = gen_key(&dir, "new-rsa-2");
    let only_old = write_jwks(&dir, "jwks-old.json", &[&old_key]);
    let both = write_jwks(&dir, "jwks-both.json", &[&new_key, &old_key]);
    let only_new = write_jwks(&dir, "jwks-new.json", &[&new_key]);

    let port = closed_port().port();
    let mut provider = Provider::start(port, &only_old);
    let upstream = echo();
    let gateway = Gateway::start(&gateway_config(port, &upstream.url()));

    // 1. A real JWT access token (RFC 9068) from the provider passes, with its identity.
    let old_token = fetch_token(port);
    let header = segment(&old_token, 0);
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert_eq!(header["kid"], "old-rsa-1", "{header}");
    let claims = segment(&old_token, 1);
    assert_eq!(
        claims["iss"],
        format!("http://127.0.0.1:{port}"),
        "{claims}"
    );
    assert_eq!(claims["aud"], "trustgate-api", "{claims}");
    assert_eq!(claims["sub"], CLIENT_ID, "{claims}");

    let r = call(&gateway, &old_token);
    assert_eq!(r.status, 200, "{}\n{}", r.body_text(), gateway.log_text());
    let got = upstream.last().unwrap();
    assert_eq!(got.header_values("x-user-id"), [CLIENT_ID]);
    assert_eq!(got.header_values("x-client-id"), [CLIENT_ID]);
    assert_eq!(got.header_values("x-scopes"), ["api:read"]);
    assert!(got.header_values("authorization").is_empty());

    // 2. Tampered tokens are refused and never reach the upstream.
    let forwarded = upstream.count();
    let mut parts: Vec<String> = old_token.split('.').map(str::to_owned).collect();
    let mut signature = parts[2].clone().into_bytes();
    signature[10] = if signature[10] == b'A' { b'B' } else { b'A' };
    let bad_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        String::from_utf8(signature).unwrap()
    );
    let mut forged = claims.clone();
    forged["sub"] = json!("admin");
    parts[1] = URL_SAFE_NO_PAD.encode(forged.to_string());
    let bad_payload = parts.join(".");
    for tampered in [&bad_signature, &bad_payload] {
        let r = call(&gateway, tampered);
        assert_eq!(r.status, 401, "{}", r.body_text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#)
        );
    }
    assert_eq!(
        upstream.count(),
        forwarded,
        "a tampered token was forwarded"
    );

    // 3. Key rotation under traffic: the traffic thread sends the old token and freshly fetched
    // tokens while the provider restarts with [new, old], then with [new].
    let traffic = Arc::new(Traffic {
        phase: AtomicU8::new(OLD_PUBLISHED),
        stop: AtomicBool::new(false),
        provider: RwLock::new(()),
        outcomes: Mutex::new(Vec::new()),
    });
    let gateway = Arc::new(gateway);
    let worker = {
        let traffic = Arc::clone(&traffic);
        let gateway = Arc::clone(&gateway);
        let old_token = old_token.clone();
        std::thread::spawn(move || {
            while !traffic.stop.load(Ordering::SeqCst) {
                let fresh = {
                    let _up = traffic.provider.read().unwrap();
                    fetch_token(port)
                };
                for (is_old, token) in [(true, &old_token), (false, &fresh)] {
                    let before = traffic.phase.load(Ordering::SeqCst);
                    let status = call(&gateway, token).status;
                    let after = traffic.phase.load(Ordering::SeqCst);
                    traffic.outcomes.lock().unwrap().push((
                        before,
                        after,
                        is_old,
                        kid(token),
                        status,
                    ));
                }
                std::thread::sleep(Duration::from_millis(15));
            }
        })
    };
    let count = |pred: &dyn Fn(&Outcome) -> bool| {
        traffic
            .outcomes
            .lock()
            .unwrap()
            .iter()
            .filter(|o| pred(o))
            .count()
    };
    let restart = |provider: &mut Provider, jwks: &Path| {
        let _down = traffic.provider.write().unwrap();
        provider.stop();
        *provider = Provider::start(port, jwks);
    };

    assert!(crate::common::wait_until(Duration::from_secs(5), || count(
        &|_| true
    ) >= 6));
    restart(&mut provider, &both);
    // New-key tokens pass, and at least one periodic refresh happens with both keys published.
    assert!(
        crate::common::wait_until(Duration::from_secs(5), || count(
            &|o| o.3 == "new-rsa-2" && o.4 == 200
        ) >= 5),
        "no new-key token passed\n{}",
        gateway.log_text()
    );
    std::thread::sleep(Duration::from_millis(1500));

    traffic.phase.store(OLD_REMOVED, Ordering::SeqCst);
    let removed_at = Instant::now();
    restart(&mut provider, &only_new);
    let dropped = crate::common::wait_until(Duration::from_secs(6), || {
        count(&|o| o.0 == OLD_REMOVED && o.2 && o.4 == 401) >= 1
    });
    let drop_latency = removed_at.elapsed();
    // Keep the traffic going a little after the old key's tokens started to fail.
    std::thread::sleep(Duration::from_millis(700));
    traffic.stop.store(true, Ordering::SeqCst);
    worker.join().expect("the traffic thread panicked");

    let outcomes = traffic.outcomes.lock().unwrap().clone();
    let summary = outcomes
        .iter()
        .map(|(b, a, old, kid, status)| {
            format!(
                "phase {b}->{a} {} {kid}: {status}",
                if *old { "old" } else { "fresh" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let context = format!(
        "traffic:\n{summary}\n--- gateway log:\n{}\n--- provider log:\n{}",
        gateway.log_text(),
        provider.log_text()
    );

    // Tokens signed by a key the provider published throughout the request must pass.
    for (before, after, is_old, kid, status) in &outcomes {
        let must_pass = !is_old || (*before == OLD_PUBLISHED && *after == OLD_PUBLISHED);
        if must_pass {
            assert_eq!(
                *status, 200,
                "a token signed by a published key ({kid}) failed\n{context}"
            );
        }
    }
    // Old-key tokens fail once the old key is gone, and keep failing.
    assert!(
        dropped,
        "old-key tokens still pass {drop_latency:?} after the key left the set\n{context}"
    );
    let after_removal: Vec<u16> = outcomes
        .iter()
        .filter(|o| o.2 && o.0 == OLD_REMOVED)
        .map(|o| o.4)
        .collect();
    let first_401 = after_removal.iter().position(|s| *s == 401).unwrap();
    assert!(
        after_removal[first_401..].iter().all(|s| *s == 401),
        "an old-key token passed again after it had been refused: {after_removal:?}\n{context}"
    );
    assert!(
        after_removal[..first_401].iter().all(|s| *s == 200),
        "unexpected status for an old-key token: {after_removal:?}\n{context}"
    );
    let r = call(&gateway, &old_token);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    // Both kinds of fresh tokens were exercised.
    assert!(outcomes.iter().any(|o| !o.2 && o.3 == "old-rsa-1"));
    assert!(
        outcomes
            .iter()
            .any(|o| !o.2 && o.3 == "new-rsa-2" && o.0 == OLD_REMOVED)
    );
}
