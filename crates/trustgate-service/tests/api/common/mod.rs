//! Shared fixtures: two real issuers on 127.0.0.1 (the external IdP and the gateway's internal
//! issuer, from test-support), a small axum app behind the layer on a real socket, and a real
//! HTTP client.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;

use axum::Json;
use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
pub use test_support::{Issuers, alice_headers};
use trustgate_service::{Caller, Rejection, TrustgateLayer};

pub const SERVICE: &str = "users-api";

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

async fn profile(caller: Caller) -> Result<Json<Value>, Rejection> {
    let subject = caller.require_subject()?;
    Ok(Json(json!({"subject": subject})))
}

/// The caller's expiry, in seconds since the epoch.
async fn expiry(caller: Caller) -> Json<Value> {
    let secs = caller.expires_at().map(|at| {
        at.duration_since(std::time::SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    });
    Json(json!({"expires_at": secs}))
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
        .route("/profile", get(profile))
        .route("/expiry", get(expiry))
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
