//! End-to-end: trustgate's decisions behind the proxy a platform already runs. Debian's nginx in
//! front, configured with the snippet `trustgate snippet nginx` writes, asks the decision
//! endpoint (`[forward_auth]`) and forwards to the recording echo upstream.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{
    Config, Fixture, Gateway, Pattern, RawResponse, Route, TempDir, bearer, cli, closed_port,
    read_response, wait_until,
};

/// The routes of every pattern the tests use, and the decision endpoint, trusting loopback.
pub(crate) fn config(f: &Fixture) -> Config {
    f.config()
        .route(Route::new("public", "/public", "echo", Pattern::Public))
        .route(Route::new(
            "users",
            "/users",
            "echo",
            Pattern::IdentityHeaders,
        ))
        .route(Route::new("fwd", "/fwd", "echo", Pattern::ForwardToken))
        .route(Route::new("pay", "/pay", "echo", Pattern::InternalToken).set("service", "payments"))
        .empty_section("internal_issuer")
        // A fixed port: the nginx snippet is generated from this file.
        .section("forward_auth", "listen", closed_port().to_string())
        .section("forward_auth", "trusted_proxies", json!(["127.0.0.1"]))
}

/// nginx on a free loopback port, with the generated snippet, in front of the echo upstream.
struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    fn start(gateway: &Gateway, f: &Fixture) -> Self {
        let dir = TempDir::new();
        let out = cli(&[
            "snippet",
            "nginx",
            "-c",
            gateway.config_path.to_str().unwrap(),
            "--dir",
            dir.0.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = closed_port();
        let upstream = f.upstream.url();
        let upstream = upstream.trim_start_matches("http://").trim_end_matches('/');
        let d = dir.0.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             server {{\n    listen {addr};\n    include {d}/auth.conf;\n\
             location / {{\n      include {d}/protect.conf;\n      proxy_pass http://{upstream};\n    }}\n  }}\n}}\n"
        );
        let conf_path = dir.write("nginx.conf", &conf);
        let test = Command::new("nginx")
            .args(["-t", "-q", "-c"])
            .arg(&conf_path)
            .output()
            .expect("nginx is installed by scripts/install-test-deps.sh");
        assert!(
            test.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&test.stderr)
        );
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
            "nginx did not start: {}",
            std::fs::read_to_string(dir.0.join("error.log")).unwrap_or_default()
        );
        Self { child, addr, dir }
    }

    fn request(&self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        send(self.addr, "GET", path, headers)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("error.log")).unwrap_or_default()
    }
}

fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: api.example\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    read_response(&mut stream)
}

/// Forged identity in several spellings nginx passes on (case, duplicates) or drops (`_`).
const FORGED: &[(&str, &str)] = &[
    ("X-User-Id", "mallory"),
    ("x-user-id", "mallory-2"),
    ("X-USER-ROLES", "admin"),
    ("X-Tenant-Id", "other-tenant"),
    ("X-Original-URL", "/admin"),
    ("X-Trustgate-Assertion", "forged"),
];

#[test]
fn nginx_forwards_the_verified_identity_and_never_the_clients() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let nginx = Nginx::start(&gateway, &f);
    let token = f.token_with("alice", json!({"roles": ["reader"], "tenant_id": "t1"}));
    let auth = bearer(&token);
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("X_User_Id", "underscore"),
    ];
    headers.extend_from_slice(FORGED);
    let r = nginx.request("/users/1?x=y", &headers);
    assert_eq!(r.status, 200, "{}\n{}", r.body_text(), nginx.error_log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.target, "/users/1?x=y");
    assert_eq!(seen.header_values("x-user-id"), ["alice"]);
    assert_eq!(seen.header_values("x-user-roles"), ["reader"]);
    assert_eq!(seen.header_values("x-tenant-id"), ["t1"]);
    assert!(
        seen.header_values("authorization").is_empty(),
        "{:?}",
        seen.headers
    );
    assert!(seen.header_values("x-original-url").is_empty());
    assert!(seen.header_values("x-trustgate-assertion").is_empty());
    assert!(
        !seen.headers.iter().any(|(n, _)| n.contains('_')),
        "{:?}",
        seen.headers
    );
}

#[test]
fn nginx_gives_pattern_4_upstreams_only_the_internal_token() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let nginx = Nginx::start(&gateway, &f);
    let token = f.token("bob");
    let r = nginx.request("/pay/charge", &[("Authorization", &bearer(&token))]);
    assert_eq!(r.status, 200, "{}", nginx.error_log());
    let seen = f.upstream.last().unwrap();
    let authorization = seen.header_values("authorization");
    assert_eq!(authorization.len(), 1, "{:?}", seen.headers);
    let internal = authorization[0].strip_prefix("Bearer ").unwrap();
    assert_ne!(internal, token, "the external token reached the upstream");
    let payload = internal.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(claims["sub"], "bob");
    assert_eq!(claims["aud"], "payments");
    assert_eq!(claims["ext_iss"], f.iss.as_str());
}

#[test]
fn nginx_keeps_a_forward_token_routes_checked_token_and_a_public_routes_headers() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let nginx = Nginx::start(&gateway, &f);
    let auth = bearer(&f.token("carol"));
    let r = nginx.request(
        "/fwd/x",
        &[("Authorization", &auth), ("Cookie", "theme=dark")],
    );
    assert_eq!(r.status, 200, "{}", nginx.error_log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.header_values("authorization"), [auth.as_str()]);
    assert_eq!(seen.header_values("cookie"), ["theme=dark"]);

    let r = nginx.request(
        "/public/p",
        &[("Authorization", "Basic eDp5"), ("X-User-Id", "mallory")],
    );
    assert_eq!(r.status, 200, "{}", nginx.error_log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.header_values("authorization"), ["Basic eDp5"]);
    assert!(seen.header_values("x-user-id").is_empty());
}

#[test]
fn nginx_answers_refusals_the_rfc6750_way() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let nginx = Nginx::start(&gateway, &f);
    f.upstream.clear();

    let r = nginx.request("/users/1", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));

    let r = nginx.request(
        "/users/1",
        &[("Authorization", &bearer(&f.expired_token("dave")))],
    );
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );

    // The raw target is normalized before routing: `/public/%2e%2e/users` is `/users`.
    let r = nginx.request("/public/%2e%2e/users/1", &[]);
    assert_eq!(r.status, 401, "{}", nginx.error_log());
    // A header family nginx cannot remove by name is refused rather than passed on.
    let r = nginx.request("/public/p", &[("X-User-Email", "mallory@example")]);
    assert_ne!(r.status, 200);
    assert_eq!(
        f.upstream.count(),
        0,
        "a refused request reached the upstream"
    );
}

/// The decision endpoint believes a description only from `forward_auth.trusted_proxies`: from
/// another address, a forged `X-Forwarded-Uri` (or any check) is refused.
#[test]
fn a_description_from_an_untrusted_peer_is_refused() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let decisions = gateway
        .decisions
        .expect("the decision endpoint is listening");
    let forged = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/public/anything"),
        ("X-Forwarded-Host", "api.example"),
    ];
    // From 127.0.0.3, a loopback address outside trusted_proxies.
    let response = crate::common::rt().block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let stream = socket.connect(decisions).await.unwrap();
        stream.into_std().unwrap()
    });
    response.set_nonblocking(false).unwrap();
    let mut stream = response;
    let mut request =
        String::from("GET /auth HTTP/1.1\r\nHost: trustgate\r\nConnection: close\r\n");
    for (name, value) in forged {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let r = read_response(&mut stream);
    assert_eq!(r.status, 403);
    assert_eq!(r.body_text(), r#"{"error":"forbidden"}"#);

    // From a trusted peer the same description is read, and a public route is allowed.
    let r = send(decisions, "GET", "/auth", &forged);
    assert_eq!(r.status, 200);
    assert!(gateway.wait_for_log("untrusted_forwarder", Duration::from_secs(5)));
}

/// The endpoint's answer lists exactly the edits: identity headers to set, and the client's
/// identity headers, URI overrides and external token to remove.
#[test]
fn the_answer_lists_the_headers_to_set_and_to_remove() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let decisions = gateway.decisions.unwrap();
    let auth = bearer(&f.token_with("erin", json!({"roles": ["admin", "user"]})));
    let r = send(
        decisions,
        "GET",
        "/",
        &[
            ("X-Forwarded-Method", "POST"),
            ("X-Forwarded-Uri", "/users/../users/7"),
            ("X-Forwarded-Host", "api.example"),
            ("Authorization", &auth),
            ("X-User-Id", "mallory"),
            ("X-User-Email", "mallory@example"),
            ("X-Rewrite-URL", "/admin"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.header("x-user-id"), Some("erin"));
    assert_eq!(r.header("x-user-roles"), Some("admin,user"));
    assert_eq!(r.header("authorization"), None);
    assert_eq!(
        r.header("x-envoy-auth-headers-to-remove"),
        Some("authorization, x-rewrite-url, x-tenant-id, x-user-email")
    );
}
