//! The three sample services on real sockets, behind real layers and a real local issuer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::SocketAddr;

use axum::Router;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use test_support::{TestIssuer, TestKey, now_secs};
use trustgate_service::{HeaderMapping, TrustgateLayer};

/// The gateway's internal issuer.
struct Gateway {
    issuer: TestIssuer,
    key: TestKey,
}

impl Gateway {
    async fn start() -> Self {
        let issuer = TestIssuer::start().await;
        let key = TestKey::ed25519("int-1");
        issuer.set_keys(&[&key]);
        Self { issuer, key }
    }

    fn sign(&self, typ: &str, payload: Value) -> String {
        let header = json!({"alg": "EdDSA", "kid": self.key.kid, "typ": typ});
        self.key
            .sign_with_header(&header.to_string(), &payload.to_string())
    }

    /// An internal token for `aud` with `identity` claims.
    fn token(&self, aud: &str, identity: Value) -> String {
        let now = now_secs();
        let mut payload = json!({"iss": self.issuer.url(), "aud": aud, "iat": now, "nbf": now,
                                 "exp": now + 300, "jti": "j1", "ext_iss": "https://idp.example"});
        for (k, v) in identity.as_object().unwrap() {
            payload[k] = v.clone();
        }
        self.sign("internal+jwt", payload)
    }

    async fn layer(&self, service: &str) -> TrustgateLayer {
        TrustgateLayer::internal_tokens(&self.issuer.url(), service)
            .await
            .unwrap()
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

const FORBIDDEN: (u16, &str) = (403, "insufficient_scope");

#[tokio::test]
async fn users_shows_what_the_service_received() {
    let gateway = Gateway::start().await;
    let addr = serve(demo_services::users(gateway.layer("users-api").await)).await;
    let token = gateway.token(
        "users-api",
        json!({"sub": "alice", "roles": ["admin"], "scope": "profile:read", "tenant_id": "acme"}),
    );
    let (status, body) = call(
        addr,
        Method::GET,
        "/users/me",
        &[("authorization", &bearer(&token))],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["service"], "users");
    assert_eq!(
        body["verdict"],
        "allowed: identity from a verified internal-token"
    );
    let received = &body["received"];
    assert_eq!(received["mode"], "internal-token");
    assert_eq!(received["subject"], "alice");
    assert_eq!(received["roles"], json!(["admin"]));
    assert_eq!(received["tenant"], "acme");
    assert_eq!(received["issuer"], gateway.issuer.url());
    assert_eq!(received["external_issuer"], "https://idp.example");
    assert_eq!(received["claims"]["aud"], "users-api");
    assert_eq!(received["claims"]["jti"], "j1");
    // The scheme, never the token.
    assert_eq!(received["headers"]["authorization"], "bearer");
    assert!(!body.to_string().contains(&token));
    // Unauthenticated health, authenticated everything else.
    assert_eq!(
        call(addr, Method::GET, "/healthz", &[], "").await,
        (200, json!("ok"))
    );
    let (status, body) = call(addr, Method::GET, "/users/me", &[], "").await;
    assert_eq!((status, body), (401, json!({"error": "unauthorized"})));
}

#[tokio::test]
async fn users_in_danger_mode_says_so() {
    let layer =
        TrustgateLayer::danger_trust_identity_headers_without_assertion(HeaderMapping::default());
    let addr = serve(demo_services::users(layer)).await;
    let (status, body) = call(
        addr,
        Method::GET,
        "/users/me",
        &[("x-user-id", "mallory"), ("x-user-roles", "admin")],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["verdict"],
        "allowed: identity taken from unproven headers (danger mode)"
    );
    assert_eq!(body["received"]["verified_signature"], false);
    assert_eq!(body["received"]["claims"], Value::Null);
    assert_eq!(
        body["received"]["headers"]["identity"],
        json!({"x-user-id": "mallory", "x-user-roles": "admin"})
    );
}

#[tokio::test]
async fn courses_are_filtered_by_tenant_and_creation_needs_instructor() {
    let gateway = Gateway::start().await;
    let addr = serve(demo_services::courses(gateway.layer("courses-api").await)).await;
    let student = gateway.token("courses-api", json!({"sub": "s", "tenant_id": "acme"}));
    let other = gateway.token("courses-api", json!({"sub": "o", "tenant_id": "globex"}));
    let teacher = gateway.token(
        "courses-api",
        json!({"sub": "t", "tenant_id": "globex", "roles": ["instructor"]}),
    );

    let (status, body) = call(
        addr,
        Method::GET,
        "/courses",
        &[("authorization", &bearer(&student))],
        "",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["verdict"], "allowed: 2 course(s) of tenant acme");
    let tenants: Vec<&str> = body["courses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["acme", "acme"]);

    let (status, body) = call(
        addr,
        Method::POST,
        "/courses",
        &[("authorization", &bearer(&student))],
        r#"{"title":"Hacking"}"#,
    )
    .await;
    assert_eq!((status, body["error"].as_str().unwrap()), FORBIDDEN);

    let (status, body) = call(
        addr,
        Method::POST,
        "/courses",
        &[("authorization", &bearer(&teacher))],
        r#"{"title":"Ledgers"}"#,
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        body["verdict"],
        "created: the caller has the role instructor"
    );
    assert_eq!(
        body["course"],
        json!({"id": 4, "title": "Ledgers", "tenant": "globex"})
    );

    let (_, body) = call(
        addr,
        Method::GET,
        "/courses",
        &[("authorization", &bearer(&other))],
        "",
    )
    .await;
    assert_eq!(body["verdict"], "allowed: 2 course(s) of tenant globex");
    // A token for the users service is not a token for courses.
    let foreign = gateway.token("users-api", json!({"sub": "s", "tenant_id": "acme"}));
    let (status, body) = call(
        addr,
        Method::GET,
        "/courses",
        &[("authorization", &bearer(&foreign))],
        "",
    )
    .await;
    assert_eq!((status, body), (401, json!({"error": "invalid_token"})));
}

#[tokio::test]
async fn payments_need_the_scope_and_a_matching_tenant() {
    let gateway = Gateway::start().await;
    let addr = serve(demo_services::payments(gateway.layer("payments-api").await)).await;
    let reader = gateway.token(
        "payments-api",
        json!({"sub": "a", "tenant_id": "acme", "scope": "payments:read"}),
    );
    let no_scope = gateway.token("payments-api", json!({"sub": "b", "tenant_id": "acme"}));
    let auth = |t: &str| [("authorization", bearer(t))];

    for path in ["/payments", "/payments?tenant=acme"] {
        let [(name, value)] = auth(&reader);
        let (status, body) = call(addr, Method::GET, path, &[(name, &value)], "").await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(
            body["verdict"],
            "allowed: scope payments:read present and tenant acme matches"
        );
        assert_eq!(
            body["tenant_check"],
            json!({"requested": "acme", "caller": "acme", "match": true})
        );
        assert_eq!(body["payments"][0]["id"], "p-100");
    }
    let [(name, value)] = auth(&reader);
    let (status, body) = call(
        addr,
        Method::GET,
        "/payments?tenant=globex",
        &[(name, &value)],
        "",
    )
    .await;
    assert_eq!((status, body["error"].as_str().unwrap()), FORBIDDEN);
    let [(name, value)] = auth(&no_scope);
    let (status, body) = call(addr, Method::GET, "/payments", &[(name, &value)], "").await;
    assert_eq!((status, body["error"].as_str().unwrap()), FORBIDDEN);
}
