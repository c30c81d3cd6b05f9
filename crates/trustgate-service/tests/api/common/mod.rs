//! Shared fixtures: two real issuers on 127.0.0.1 (the external IdP and the gateway's internal
//! issuer), a small axum app behind the layer on a real socket, and a real HTTP client.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Json;
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use test_support::{TestIssuer, TestKey, claims, now_secs};
use trustgate_service::{Caller, Rejection, TrustgateLayer};

pub const SERVICE: &str = "users-api";

/// The external IdP and the gateway's internal issuer, each with its own key.
pub struct Issuers {
    pub external: TestIssuer,
    pub external_key: TestKey,
    pub internal: TestIssuer,
    pub internal_key: TestKey,
}

impl Issuers {
    pub async fn start() -> Self {
        let external = TestIssuer::start().await;
        let external_key = TestKey::es256("ext-1");
        external.set_keys(&[&external_key]);
        let internal = TestIssuer::start().await;
        let internal_key = TestKey::ed25519("int-1");
        internal.set_keys(&[&internal_key]);
        Self {
            external,
            external_key,
            internal,
            internal_key,
        }
    }

    /// An external access token for `aud`, with the standard claims plus `extra`.
    pub fn external_token(&self, aud: &str, extra: Value) -> String {
        let mut payload = claims(&self.external.url(), aud, "alice");
        merge(&mut payload, extra);
        self.external_key.sign(&payload)
    }

    /// An internal token as the gateway mints it (pattern 4), plus `extra`.
    pub fn internal_token(&self, aud: &str, extra: Value) -> String {
        let now = now_secs();
        let mut payload = json!({
            "iss": self.internal.url(), "aud": aud, "sub": "alice",
            "roles": ["admin", "user"], "scope": "profile:read payments:read",
            "tenant_id": "t1", "client_id": "web", "ext_iss": self.external.url(),
            "iat": now, "nbf": now, "exp": now + 300, "jti": "int-jti-1",
        });
        merge(&mut payload, extra);
        self.internal_signed("internal+jwt", &payload)
    }

    /// A gateway assertion for `method` and `htu`, listing `hdr`, plus `extra`. Each has its own
    /// `jti`, as the gateway's do.
    pub fn assertion(&self, method: &str, htu: &str, hdr: Value, extra: Value) -> String {
        static MINTED: AtomicU64 = AtomicU64::new(0);
        let now = now_secs();
        let serial = MINTED.fetch_add(1, Ordering::Relaxed);
        let mut payload = json!({
            "iss": self.internal.url(), "aud": SERVICE,
            "iat": now, "exp": now + 30, "jti": format!("a-{serial}-{method}-{htu}"),
            "htm": method, "htu": htu, "hdr": hdr,
            "sub": "alice", "roles": ["admin", "user"], "scope": "profile:read",
            "tenant_id": "t1", "client_id": "web", "ext_iss": self.external.url(),
        });
        merge(&mut payload, extra);
        self.internal_signed("trustgate-assertion+jwt", &payload)
    }

    pub fn internal_signed(&self, typ: &str, payload: &Value) -> String {
        let header = json!({"alg": "EdDSA", "kid": self.internal_key.kid, "typ": typ});
        self.internal_key
            .sign_with_header(&header.to_string(), &payload.to_string())
    }
}

/// The identity headers the gateway injects for alice, as `hdr` lists them.
pub fn alice_headers() -> Value {
    json!({"x-user-id": "alice", "x-user-roles": "admin,user", "x-tenant-id": "t1"})
}

fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        for (key, value) in extra {
            if value.is_null() {
                target.remove(&key);
            } else {
                target.insert(key, value);
            }
        }
    }
}

/// What the handler saw.
pub async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({
        "mode": caller.mode().as_str(),
        "subject": caller.subject(),
        "roles": caller.roles(),
        "scopes": caller.scopes(),
        "tenant": caller.tenant(),
        "client": caller.client(),
        "issuer": caller.issuer(),
        "external_issuer": caller.external_issuer(),
        "verified": caller.token().is_some(),
    }))
}

async fn admin(caller: Caller) -> Result<Json<Value>, Rejection> {
    caller.require_role("admin")?;
    Ok(Json(json!({"admin": true})))
}

async fn auditor(caller: Caller) -> Result<Json<Value>, Rejection> {
    caller.require_role("auditor")?;
    Ok(Json(json!({"auditor": true})))
}

async fn reports(caller: Caller) -> Result<Json<Value>, Rejection> {
    caller.require_scope("reports:read")?;
    Ok(Json(json!({"reports": []})))
}

async fn tenant_t1(caller: Caller) -> Result<Json<Value>, Rejection> {
    caller.require_tenant("t1")?;
    Ok(Json(json!({"tenant": "t1"})))
}

/// The test app: every route behind `layer`.
pub fn app(layer: TrustgateLayer) -> Router {
    Router::new()
        .route("/users/me", get(whoami).post(whoami))
        .route("/admin", get(admin))
        .route("/audit", get(auditor))
        .route("/reports", get(reports))
        .route("/tenants/t1", get(tenant_t1))
        .layer(layer)
}

/// Serves `router` on 127.0.0.1 and returns its address.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// Asserts the exact RFC 6750 refusal for `status`.
    pub fn assert_refused(&self, status: u16, challenge: Option<&str>, error: &str) {
        assert_eq!(
            self.status,
            status,
            "body: {:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(self.header("www-authenticate"), challenge);
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.header("cache-control"), Some("no-store"));
        assert_eq!(self.json(), json!({"error": error}));
    }

    pub fn assert_invalid_token(&self) {
        self.assert_refused(
            401,
            Some(r#"Bearer error="invalid_token""#),
            "invalid_token",
        );
    }
}

/// Sends a real HTTP/1.1 request with `headers` (appended, so a name may repeat).
pub async fn call(addr: SocketAddr, method: Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client
        .request(builder.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get_with(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Reply {
    call(addr, Method::GET, path, headers).await
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
