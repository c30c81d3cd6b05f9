//! End-to-end: trustgate's decisions behind the proxy a platform already runs. Debian's nginx and
//! Debian's Caddy in front, each configured with the snippet `trustgate snippet` writes, ask the
//! decision endpoint (`[forward_auth]`) and forward to the recording echo upstream. Each check
//! runs against both proxies; where they differ (nginx drops `_` names and can remove only exact
//! names, Caddy removes prefixes but passes `_` names on), the check says which.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::common::{
    Config, Fixture, Gateway, Pattern, RawResponse, Route, TempDir, bearer, cli, closed_port,
    read_response, read_until_closed, wait_until,
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
        // Caddy's (and Traefik's) description; the nginx tests state theirs.
        .section("forward_auth", "convention", "forwarded-headers")
}

/// A proxy in front of the decision endpoint, on a free loopback port, configured with the
/// snippet `trustgate snippet` generates and forwarding to the echo upstream.
struct Front {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
    /// The proxy's own log in `dir`, for failure messages.
    log_name: &'static str,
    /// Whether the client gets trustgate's refusal body as it is (Caddy); nginx answers with
    /// its own.
    relays_body: bool,
}

impl Drop for Front {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Front {
    /// Debian's nginx, its temporary files in a scratch directory.
    fn nginx(gateway: &Gateway, f: &Fixture) -> Self {
        let (dir, addr, upstream) = prepare("nginx", gateway, f);
        let d = dir.0.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  include {d}/upstream.conf;\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
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
        Self::running(child, addr, dir, "error.log", false)
    }

    /// Debian's Caddy: admin endpoint off, its storage and HOME in a scratch directory.
    fn caddy(gateway: &Gateway, f: &Fixture) -> Self {
        let (dir, addr, upstream) = prepare("caddy", gateway, f);
        let d = dir.0.display();
        // `http://:port` with `bind`: a site for any Host (the tests send `api.example`).
        let caddyfile = format!(
            "{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/storage\n}}\n\
             http://:{port} {{\n\tbind 127.0.0.1\n\timport {d}/trustgate.caddy\n\
             \treverse_proxy {upstream}\n}}\n",
            port = addr.port()
        );
        let path = dir.write("Caddyfile", &caddyfile);
        let log = std::fs::File::create(dir.0.join("caddy.log")).unwrap();
        let child = Command::new("caddy")
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&path)
            .env("HOME", &dir.0)
            .env("XDG_CONFIG_HOME", dir.0.join("config"))
            .env("XDG_DATA_HOME", dir.0.join("data"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("caddy is installed by scripts/install-test-deps.sh");
        Self::running(child, addr, dir, "caddy.log", true)
    }

    /// Waits until the proxy accepts connections, or fails with its log.
    fn running(
        mut child: Child,
        addr: SocketAddr,
        dir: TempDir,
        log_name: &'static str,
        relays_body: bool,
    ) -> Self {
        let up = wait_until(Duration::from_secs(10), || {
            matches!(child.try_wait(), Ok(None)) && TcpStream::connect(addr).is_ok()
        });
        let front = Self {
            child,
            addr,
            dir,
            log_name,
            relays_body,
        };
        assert!(up, "{log_name}: the proxy did not start: {}", front.log());
        front
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join(self.log_name)).unwrap_or_default()
    }

    fn request(&self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        send(self.addr, "GET", path, headers)
    }
}

/// `trustgate snippet PROXY -c CONFIG --dir DIR` into a new scratch directory, a free port for
/// the proxy, and the echo upstream's `host:port`.
fn prepare(proxy: &str, gateway: &Gateway, f: &Fixture) -> (TempDir, SocketAddr, String) {
    let dir = TempDir::new();
    let out = cli(&[
        "snippet",
        proxy,
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
    let upstream = f.upstream.url();
    let upstream = upstream.trim_start_matches("http://").trim_end_matches('/');
    (dir, closed_port(), upstream.to_owned())
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

/// Forged identity in several spellings both proxies pass on (case, duplicates).
const FORGED: &[(&str, &str)] = &[
    ("X-User-Id", "mallory"),
    ("x-user-id", "mallory-2"),
    ("X-USER-ROLES", "admin"),
    ("X-Tenant-Id", "other-tenant"),
    ("X-Original-URL", "/admin"),
    ("X-Trustgate-Assertion", "forged"),
    ("X-Forwarded-Uri", "/public/forged"),
    ("X-Real-IP", "10.9.9.9"),
];

/// The gateway with every pattern's route, and a proxy in front of it.
fn behind(start: fn(&Gateway, &Fixture) -> Front, convention: &str) -> (Fixture, Gateway, Front) {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).section("forward_auth", "convention", convention));
    let front = start(&gateway, &f);
    (f, gateway, front)
}

/// A valid token reaches the upstream with the verified identity and none of the client's
/// forged identity, URI-override or forwarding headers; `extra` are more forged headers.
fn forwards_the_verified_identity(front: &Front, f: &Fixture, extra: &[(&str, &str)]) {
    let token = f.token_with("alice", json!({"roles": ["reader"], "tenant_id": "t1"}));
    let auth = bearer(&token);
    let mut headers = vec![("Authorization", auth.as_str())];
    headers.extend_from_slice(FORGED);
    headers.extend_from_slice(extra);
    let r = front.request("/users/1?x=y", &headers);
    assert_eq!(r.status, 200, "{}\n{}", r.body_text(), front.log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.target, "/users/1?x=y");
    assert_eq!(seen.header_values("x-user-id"), ["alice"]);
    assert_eq!(seen.header_values("x-user-roles"), ["reader"]);
    assert_eq!(seen.header_values("x-tenant-id"), ["t1"]);
    for name in [
        "authorization",
        "x-original-url",
        "x-trustgate-assertion",
        "x-forwarded-uri",
        "x-real-ip",
    ] {
        assert!(
            seen.header_values(name).is_empty(),
            "{name}: {:?}",
            seen.headers
        );
    }
    assert!(
        !seen.headers.iter().any(|(n, _)| n.contains('_')),
        "{:?}",
        seen.headers
    );
}

/// Pattern 4: the upstream gets the internal token, once, and never the external one.
fn gives_pattern_4_only_the_internal_token(front: &Front, f: &Fixture) {
    let token = f.token("bob");
    let r = front.request("/pay/charge", &[("Authorization", &bearer(&token))]);
    assert_eq!(r.status, 200, "{}", front.log());
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

/// Pattern 2 keeps the checked token and the cookies; a public route keeps Authorization but
/// still loses forged identity.
fn keeps_what_the_route_keeps(front: &Front, f: &Fixture) {
    let auth = bearer(&f.token("carol"));
    let r = front.request(
        "/fwd/x",
        &[("Authorization", &auth), ("Cookie", "theme=dark")],
    );
    assert_eq!(r.status, 200, "{}", front.log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.header_values("authorization"), [auth.as_str()]);
    assert_eq!(seen.header_values("cookie"), ["theme=dark"]);

    let r = front.request(
        "/public/p",
        &[("Authorization", "Basic eDp5"), ("X-User-Id", "mallory")],
    );
    assert_eq!(r.status, 200, "{}", front.log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.header_values("authorization"), ["Basic eDp5"]);
    assert!(seen.header_values("x-user-id").is_empty());
}

/// The client got trustgate's refusal: `status` with `challenge` (and trustgate's `body`, from a
/// proxy that relays it), and nothing reached the upstream since it was last cleared.
fn assert_refused(
    front: &Front,
    f: &Fixture,
    r: &RawResponse,
    status: u16,
    challenge: &str,
    body: &str,
) {
    assert_eq!(r.status, status, "{}", front.log());
    // Exactly one challenge: nginx's auth_request copies a 401's own, so its snippet adds one to
    // 403s only.
    assert_eq!(r.header_values("www-authenticate"), [challenge]);
    if front.relays_body {
        assert_eq!(r.body_text(), body);
    } else {
        // nginx's own fixed body is JSON, and says so.
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    assert_eq!(
        f.upstream.count(),
        0,
        "a refused request reached the upstream"
    );
}

const UNAUTHORIZED: &str = r#"{"error":"unauthorized"}"#;
const INVALID_TOKEN: (&str, &str) = (
    r#"Bearer error="invalid_token""#,
    r#"{"error":"invalid_token"}"#,
);

/// A missing or bad token gets trustgate's RFC 6750 answer at the client, also when the raw
/// target only reaches the protected route after normalization; the upstream sees nothing.
fn answers_refusals_the_rfc6750_way(front: &Front, f: &Fixture) {
    f.upstream.clear();
    let r = front.request("/users/1", &[]);
    assert_refused(front, f, &r, 401, "Bearer", UNAUTHORIZED);
    let (challenge, body) = INVALID_TOKEN;
    for token in [f.expired_token("dave"), "not.a.token".to_owned()] {
        let r = front.request("/users/1", &[("Authorization", &bearer(&token))]);
        assert_refused(front, f, &r, 401, challenge, body);
    }
    // A target that normalization would change is refused, whichever way it would route: the
    // proxy forwards it as written, so the path judged would not be the path served. The
    // second would be judged as the public `/public/x`, and reach an upstream that does not
    // resolve `%2e%2e` as `/users/...`. trustgate answers 400; nginx's auth_request turns any
    // answer but 2xx, 401 and 403 into its own 500.
    for target in [
        "/public/%2e%2e/users/1",
        "/users/%2e%2e/public/x",
        "/users//../public/x",
    ] {
        let r = front.request(target, &[]);
        let refused = if front.relays_body { 400 } else { 500 };
        assert_eq!(r.status, refused, "{target}: {}", front.log());
        assert_eq!(f.upstream.count(), 0, "{target} reached the upstream");
    }
}

#[test]
fn nginx_forwards_the_verified_identity_and_never_the_clients() {
    let (f, _gateway, nginx) = behind(Front::nginx, "nginx");
    // nginx drops names with `_` (underscores_in_headers off) before anything sees them.
    forwards_the_verified_identity(&nginx, &f, &[("X_User_Id", "underscore")]);
}

#[test]
fn nginx_gives_pattern_4_upstreams_only_the_internal_token() {
    let (f, _gateway, nginx) = behind(Front::nginx, "nginx");
    gives_pattern_4_only_the_internal_token(&nginx, &f);
}

#[test]
fn nginx_keeps_a_forward_token_routes_checked_token_and_a_public_routes_headers() {
    let (f, _gateway, nginx) = behind(Front::nginx, "nginx");
    keeps_what_the_route_keeps(&nginx, &f);
}

/// nginx picks the server on the host of an absolute-form target before `Host`; the check
/// states that host (`$host`), so a host-bound route is judged where nginx routed the request.
/// With `$http_host`, a request for `admin.example` that said `Host: api.example` was judged by
/// the host-less public route and reached the upstream without a token.
#[test]
fn nginx_checks_the_host_it_routed_on() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &config(&f)
            .section("forward_auth", "convention", "nginx")
            .route(
                Route::new("admin", "/admin", "echo", Pattern::IdentityHeaders)
                    .set("host", "admin.example"),
            )
            .route(Route::new("open", "/admin", "echo", Pattern::Public)),
    );
    let nginx = Front::nginx(&gateway, &f);
    let r = nginx.request("http://admin.example/admin", &[]);
    assert_eq!(r.status, 401, "{}", nginx.log());
    assert_eq!(f.upstream.count(), 0);
    // The same path for the host the request names: the host-less public route.
    let r = nginx.request("/admin", &[]);
    assert_eq!(r.status, 200, "{}", nginx.log());
    assert_eq!(f.upstream.count(), 1);
    // The upstream is told the host that was judged, not the Host header the client sent
    // (`$http_host`): an upstream reading X-Forwarded-Host would otherwise serve admin.example
    // for a request judged as public.example's.
    let r = nginx.request(
        "http://public.example/admin",
        &[("X-Forwarded-Host", "admin.example")],
    );
    assert_eq!(r.status, 200, "{}", nginx.log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.header_values("x-forwarded-host"), ["public.example"]);
}

/// A 403 through nginx carries trustgate's challenge once (the snippet adds it: auth_request
/// passes only a 401's own) and a JSON body.
#[test]
fn nginx_answers_a_missing_role_with_403_and_the_challenge() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &config(&f)
            .section("forward_auth", "convention", "nginx")
            .route(
                Route::new("ops", "/ops", "echo", Pattern::IdentityHeaders)
                    .require(json!({"roles": ["admin"]})),
            ),
    );
    let nginx = Front::nginx(&gateway, &f);
    let auth = bearer(&f.token_with("alice", json!({"roles": ["reader"]})));
    let r = nginx.request("/ops", &[("Authorization", &auth)]);
    assert_refused(
        &nginx,
        &f,
        &r,
        403,
        r#"Bearer error="insufficient_scope""#,
        "",
    );
    assert_eq!(r.body_text(), r#"{"error":"forbidden"}"#);
}

#[test]
fn nginx_answers_refusals_the_rfc6750_way() {
    let (f, _gateway, nginx) = behind(Front::nginx, "nginx");
    answers_refusals_the_rfc6750_way(&nginx, &f);
    // A header family nginx cannot remove by name is refused rather than passed on: 400 from
    // trustgate, which auth_request turns into 500.
    let r = nginx.request("/public/p", &[("X-User-Email", "mallory@example")]);
    assert_eq!(r.status, 500);
    assert_eq!(
        f.upstream.count(),
        0,
        "a refused request reached the upstream"
    );
}

#[test]
fn caddy_forwards_the_verified_identity_and_never_the_clients() {
    let (f, _gateway, caddy) = behind(Front::caddy, "forwarded-headers");
    // Caddy removes whole families by prefix, so a name only a prefix rule matches is removed.
    forwards_the_verified_identity(
        &caddy,
        &f,
        &[
            ("X-User-Email", "mallory@example"),
            ("x-auth-request-user", "mallory"),
            ("X-Forwarded-Method", "DELETE"),
        ],
    );
    let seen = f.upstream.last().unwrap();
    for name in ["x-user-email", "x-auth-request-user", "x-forwarded-method"] {
        assert!(seen.header_values(name).is_empty(), "{:?}", seen.headers);
    }
    // Caddy cannot remove `_` spellings (`-X-User-*` leaves `X_user_id`), so the decision
    // endpoint refuses them, with trustgate's answer; so too the URI-override and forwarding
    // headers' `_` spellings, which CGI-style upstreams read as the real thing.
    f.upstream.clear();
    let auth = bearer(&f.token("alice"));
    for name in [
        "X_User_Id",
        "x_user-email",
        "X_Original_Url",
        "X_Http_Method_Override",
        "X_Forwarded_For",
        "X_Real_Ip",
    ] {
        let r = caddy.request("/users/1", &[("Authorization", &auth), (name, "mallory")]);
        let challenge = r#"Bearer error="invalid_request""#;
        assert_refused(
            &caddy,
            &f,
            &r,
            400,
            challenge,
            r#"{"error":"invalid_request"}"#,
        );
    }
}

#[test]
fn caddy_gives_pattern_4_upstreams_only_the_internal_token() {
    let (f, _gateway, caddy) = behind(Front::caddy, "forwarded-headers");
    gives_pattern_4_only_the_internal_token(&caddy, &f);
}

#[test]
fn caddy_keeps_a_forward_token_routes_checked_token_and_a_public_routes_headers() {
    let (f, _gateway, caddy) = behind(Front::caddy, "forwarded-headers");
    keeps_what_the_route_keeps(&caddy, &f);
}

#[test]
fn caddy_answers_refusals_the_rfc6750_way() {
    let (f, _gateway, caddy) = behind(Front::caddy, "forwarded-headers");
    answers_refusals_the_rfc6750_way(&caddy, &f);
    // Caddy relays trustgate's refusal as it is, Content-Type included.
    let r = caddy.request("/users/1", &[("Authorization", "Bearer not.a.token")]);
    assert_eq!(r.header("content-type"), Some("application/json"));
}

/// Caddy describes the original request itself: a client's `X-Forwarded-Uri`, `-Method` or
/// `-Host` is replaced, not added to (two values would be refused as ambiguous, 400), so a
/// forged public target does not open a protected route.
#[test]
fn caddy_replaces_a_clients_description_of_the_request() {
    let (f, gateway, caddy) = behind(Front::caddy, "forwarded-headers");
    let r = caddy.request(
        "/users/1",
        &[
            ("X-Forwarded-Uri", "/public/p"),
            ("X-Forwarded-Method", "OPTIONS"),
            ("X-Forwarded-Host", "other.example"),
            // nginx's convention: Caddy drops it from the check, so it is not ambiguous either.
            ("X-Original-URI", "/public/p"),
        ],
    );
    assert_refused(&caddy, &f, &r, 401, "Bearer", UNAUTHORIZED);
    // The decision endpoint read one description, Caddy's, of a GET to /users/1.
    let r = caddy.request("/public/p", &[("X-Forwarded-Uri", "/users/1")]);
    assert_eq!(r.status, 200, "{}", caddy.log());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.target, "/public/p");
    assert!(seen.header_values("x-forwarded-uri").is_empty());
    assert!(!gateway.wait_for_log("ambiguous_description", Duration::from_millis(200)));
}

/// A Caddy the decision endpoint does not trust (its address is not in `trusted_proxies`) gets
/// every check refused, and passes the refusal on: a misdrawn trust boundary fails closed.
#[test]
fn caddy_outside_trusted_proxies_gets_every_request_refused() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).section(
        "forward_auth",
        "trusted_proxies",
        json!(["127.0.0.2"]),
    ));
    let caddy = Front::caddy(&gateway, &f);
    let r = caddy.request(
        "/public/p",
        &[("Authorization", &bearer(&f.token("frank")))],
    );
    assert_eq!(r.status, 403, "{}", caddy.log());
    assert_eq!(r.body_text(), r#"{"error":"forbidden"}"#);
    assert_eq!(f.upstream.count(), 0);
    assert!(gateway.wait_for_log("untrusted_forwarder", Duration::from_secs(5)));
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

/// A reload applies the endpoint's settings to the listener bound at start, and says that a new
/// address needs a restart instead of quietly keeping the old one.
#[test]
fn a_reload_applies_the_endpoint_settings_and_warns_that_a_new_address_needs_a_restart() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f));
    let decisions = gateway.decisions.unwrap();
    let public = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Host", "api.example"),
    ];
    assert_eq!(send(decisions, "GET", "/auth", &public).status, 200);

    let moved = closed_port();
    gateway.rewrite_config(
        &config(&f)
            .section("forward_auth", "listen", moved.to_string())
            .section("forward_auth", "trusted_proxies", json!(["127.0.0.2"])),
    );
    gateway.sighup();
    assert!(
        gateway.wait_for_log("configuration reloaded", Duration::from_secs(5)),
        "{}",
        gateway.log_text()
    );
    assert_eq!(
        gateway.log_lines("restart to apply").len(),
        1,
        "{}",
        gateway.log_text()
    );
    assert!(
        gateway.log_lines("restart to apply")[0].contains("listen addresses changed"),
        "{}",
        gateway.log_text()
    );
    // The listener bound at start serves on, with the new trusted proxies: loopback is no
    // longer one of them.
    let r = send(decisions, "GET", "/auth", &public);
    assert_eq!(r.status, 403);
    assert_eq!(r.body_text(), r#"{"error":"forbidden"}"#);
    assert!(
        TcpStream::connect(moved).is_err(),
        "the new address was bound without a restart"
    );
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
            ("X-Forwarded-Uri", "/users/7"),
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

/// The endpoint reads one convention, so a snippet for another proxy is refused at generation,
/// naming the setting, rather than written for checks that would all be refused.
#[test]
fn a_snippet_for_a_proxy_of_another_convention_is_refused() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let file = dir.write("trustgate.toml", &config(&f).to_toml());
    let out = cli(&["snippet", "nginx", "-c", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"forward_auth.convention is "forwarded-headers", but nginx describes requests as "nginx"; set convention = "nginx""#),
        "{stderr}"
    );
    let out = cli(&["snippet", "caddy", "-c", file.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Any peer can connect to the decision endpoint before its first check is refused, so the
/// endpoint takes the public listener's limits: a header block that never ends is cut off after
/// `header_read_timeout`, and connections past `max_connections` are closed at once.
#[test]
fn the_decision_endpoint_cuts_off_slow_headers_and_extra_connections() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &config(&f)
            .server("header_read_timeout", "1s")
            .server("idle_timeout", "30s")
            .server("max_connections", 2),
    );
    let decisions = gateway.decisions.unwrap();
    let mut slow = TcpStream::connect(decisions).unwrap();
    let started = std::time::Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: trustgate\r\nX-Forwarded-Uri: /")
        .unwrap();
    // A second connection holds the other slot; a third has none.
    let _held = TcpStream::connect(decisions).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut extra = TcpStream::connect(decisions).unwrap();
    let (data, closed) = read_until_closed(&mut extra, Duration::from_secs(2));
    assert!(closed && data.is_empty(), "a third connection was served");

    let (data, closed) = read_until_closed(&mut slow, Duration::from_secs(4));
    let elapsed = started.elapsed();
    assert!(closed, "the slow connection stayed open");
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    let text = String::from_utf8_lossy(&data);
    assert!(
        data.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text:?}"
    );
}

/// A peer that connects and sends nothing (or only the HTTP/2 preface) is closed about one
/// `header_read_timeout` after it connected, on every side listener: the decision endpoint, the
/// admin listener and the gRPC door. Before, hyper's HTTP/1-or-HTTP/2 detection waited for ever
/// and `max_connections` such peers locked the proxy in front out of its checks.
#[test]
fn side_listeners_close_connections_that_send_nothing() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &config(&f)
            .section("forward_auth", "grpc_listen", "127.0.0.1:0")
            .server("header_read_timeout", "1s")
            .server("idle_timeout", "30s")
            .server("max_connections", 2),
    );
    let decisions = gateway.decisions.unwrap();
    let grpc = gateway.grpc.unwrap();
    let started = std::time::Instant::now();
    let mut silent = vec![
        ("decision endpoint", TcpStream::connect(decisions).unwrap()),
        ("admin listener", TcpStream::connect(gateway.admin).unwrap()),
        ("gRPC door", TcpStream::connect(grpc).unwrap()),
    ];
    let mut preface = TcpStream::connect(decisions).unwrap();
    preface
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .unwrap();
    silent.push(("decision endpoint, HTTP/2 preface", preface));
    for (door, stream) in &mut silent {
        let (_, closed) = read_until_closed(stream, Duration::from_secs(4));
        assert!(closed, "{door}: a silent connection stayed open");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(3000),
        "{elapsed:?}"
    );
    // Their slots are back: a check is answered.
    assert!(wait_until(Duration::from_secs(5), || {
        let mut stream = TcpStream::connect(decisions).unwrap();
        let _ = stream.write_all(b"GET / HTTP/1.1\r\nHost: trustgate\r\nX-Forwarded-Uri: /public\r\nX-Forwarded-Method: GET\r\n\r\n");
        let mut first = [0u8; 9];
        std::io::Read::read_exact(&mut stream, &mut first).is_ok() && &first == b"HTTP/1.1 "
    }));
}

/// `trustgate snippet --help` names every file the snippet writes, so an operator knows where
/// each goes (nginx's `upstream.conf` is at http level, unlike the other two).
#[test]
fn the_snippet_help_names_every_file_it_writes() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let help = cli(&["snippet", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for (proxy, convention) in [("nginx", "nginx"), ("caddy", "forwarded-headers")] {
        let file = dir.write(
            &format!("{proxy}.toml"),
            &config(&f)
                .section("forward_auth", "convention", convention)
                .to_toml(),
        );
        let out_dir = dir.0.join(proxy);
        std::fs::create_dir(&out_dir).unwrap();
        let out = cli(&[
            "snippet",
            proxy,
            "-c",
            file.to_str().unwrap(),
            "--dir",
            out_dir.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut written = 0;
        for entry in std::fs::read_dir(&out_dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(
                help.contains(&format!("`{name}`")),
                "{name} not in:\n{help}"
            );
            written += 1;
        }
        assert!(written > 0, "{proxy} wrote nothing");
    }
}
