//! The demo's development OIDC issuer. DEVELOPMENT ONLY: it hands out tokens for fixed demo users
//! to anyone who asks, binds to 127.0.0.1, answers only requests for a loopback host (no DNS
//! rebinding), and exists only under `trustgate demo`, never `serve`.
//!
//! It also serves the demo page, so that the page, its token requests and its API calls all go
//! through the gateway on one origin.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use trustgate_core::{Algorithm, Clock, InternalSigner, SharedClock, SignerConfig, SystemClock};

use crate::config;

/// The audience of demo tokens.
pub(crate) const AUDIENCE: &str = "demo-api";

/// A demo user.
pub(crate) struct DemoUser {
    pub(crate) name: &'static str,
    pub(crate) roles: &'static [&'static str],
    pub(crate) tenant: &'static str,
    pub(crate) scope: &'static str,
}

pub(crate) const USERS: [DemoUser; 3] = [
    DemoUser {
        name: "alice",
        roles: &["admin", "instructor"],
        tenant: "acme",
        scope: "courses:read payments:read",
    },
    DemoUser {
        name: "bob",
        roles: &["student"],
        tenant: "globex",
        scope: "courses:read",
    },
    DemoUser {
        name: "carol",
        roles: &["instructor"],
        tenant: "acme",
        scope: "courses:read",
    },
];

/// A clock two hours behind, so the same key can sign an already-expired token.
struct PastClock;

impl Clock for PastClock {
    fn now_millis(&self) -> i64 {
        SystemClock.now_millis() - 2 * 3600 * 1000
    }
}

struct Signers {
    valid: InternalSigner,
    expired: InternalSigner,
    /// A key that is not in the JWKS: its tokens are forgeries.
    forged: InternalSigner,
}

fn pkcs8_pem() -> Result<String, String> {
    let rng = SystemRandom::new();
    let der = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "cannot generate the demo issuer key".to_owned())?;
    let body = base64_simd::STANDARD.encode_to_string(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for chunk in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(chunk));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok(pem)
}

fn signer(issuer: &str, pem: &str, clock: SharedClock) -> Result<InternalSigner, String> {
    InternalSigner::from_pem(
        SignerConfig {
            issuer: issuer.to_owned(),
            algorithm: Algorithm::ES256,
            rotation_interval: Duration::from_secs(24 * 3600),
            max_token_ttl: Duration::from_secs(3600),
        },
        &[pem.to_owned()],
        clock,
    )
    .map_err(|err| format!("demo issuer: {err}"))
}

/// Starts the dev issuer on `listener`, whose URL is `url`, held to `server`'s limits
/// (`super::serve`).
pub(crate) fn start(
    listener: TcpListener,
    url: &str,
    server: &config::ServerConfig,
) -> Result<(), String> {
    let pem = pkcs8_pem()?;
    let signers = Arc::new(Signers {
        valid: signer(url, &pem, Arc::new(SystemClock))?,
        expired: signer(url, &pem, Arc::new(PastClock))?,
        forged: signer(url, &pkcs8_pem()?, Arc::new(SystemClock))?,
    });
    let service = service_fn(move |req| {
        let signers = Arc::clone(&signers);
        async move { Ok::<_, Infallible>(handle(&signers, &req)) }
    });
    super::serve(listener, service, server, "demo issuer");
    Ok(())
}

fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Whether `req` names a loopback host: `localhost` or a loopback address, in `Host` (or, with
/// none, the request target's authority, as HTTP/2 sends it). The issuer listens on 127.0.0.1
/// only, but a web page the user opens can still reach it through the browser by DNS rebinding:
/// it gives its own name the address 127.0.0.1 once loaded, then reads the demo same-origin.
/// Those requests name the page's host, so they get no token. The gateway forwards the client's
/// `Host` (`preserve_host`), and names the issuer's own address when the client sent none.
fn for_loopback(req: &Request<Incoming>) -> bool {
    let named = match req.headers().get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => req.uri().authority().map(http::uri::Authority::as_str),
    };
    let Some(authority) = named.and_then(|text| text.parse::<http::uri::Authority>().ok()) else {
        return false;
    };
    let host = authority.host();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn handle(signers: &Signers, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if !for_loopback(req) {
        return respond(
            StatusCode::FORBIDDEN,
            "application/json",
            r#"{"error":"the demo issuer answers only requests for localhost or a loopback address"}"#,
        );
    }
    match req.uri().path() {
        "/" | "/index.html" => respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            super::page::HTML,
        ),
        "/demo.css" => respond(StatusCode::OK, "text/css; charset=utf-8", super::page::CSS),
        "/demo.js" => respond(
            StatusCode::OK,
            "text/javascript; charset=utf-8",
            super::page::JS,
        ),
        "/favicon.svg" | "/favicon.ico" => {
            respond(StatusCode::OK, "image/svg+xml", super::page::FAVICON)
        }
        "/.well-known/openid-configuration" => {
            let issuer = signers.valid.issuer();
            let doc = json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
                "token_endpoint": format!("{issuer}/demo/token"),
                "id_token_signing_alg_values_supported": ["ES256"],
                "x-warning": "trustgate demo issuer: development only",
            });
            respond(StatusCode::OK, "application/json", doc.to_string())
        }
        "/.well-known/jwks.json" => {
            respond(StatusCode::OK, "application/json", signers.valid.jwks())
        }
        "/demo/users" => {
            let users: Vec<Value> = USERS
                .iter()
                .map(|u| json!({"name": u.name, "roles": u.roles, "tenant": u.tenant, "scope": u.scope}))
                .collect();
            respond(
                StatusCode::OK,
                "application/json",
                Value::Array(users).to_string(),
            )
        }
        "/demo/token" => {
            let name = query_param(req, "user").unwrap_or("alice");
            let Some(user) = USERS.iter().find(|u| u.name == name) else {
                return respond(
                    StatusCode::NOT_FOUND,
                    "application/json",
                    r#"{"error":"unknown demo user"}"#,
                );
            };
            let mut claims = Map::new();
            claims.insert("sub".into(), json!(user.name));
            claims.insert("roles".into(), json!(user.roles));
            claims.insert("tenant_id".into(), json!(user.tenant));
            claims.insert("scope".into(), json!(user.scope));
            claims.insert("client_id".into(), json!("demo-page"));
            let kind = query_param(req, "kind").unwrap_or("valid");
            let (signer, audience) = match kind {
                "expired" => (&signers.expired, AUDIENCE),
                "forged" => (&signers.forged, AUDIENCE),
                // Validly signed, for another API: the audience check must refuse it.
                "audience" => (&signers.valid, "another-api"),
                _ => (&signers.valid, AUDIENCE),
            };
            match signer.mint("JWT", audience, Duration::from_secs(900), claims.clone()) {
                Ok(minted) => {
                    let body = json!({"access_token": minted.token, "token_type": "Bearer", "kind": kind, "claims": claims});
                    respond(StatusCode::OK, "application/json", body.to_string())
                }
                Err(_) => respond(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "application/json",
                    r#"{"error":"mint failed"}"#,
                ),
            }
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"error":"not found"}"#,
        ),
    }
}
