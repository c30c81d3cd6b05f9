//! Fixtures shared by the benchmark (`benches/layers.rs`) and the equivalence tests
//! (`tests/equivalence.rs`): one real issuer on 127.0.0.1 (test-support's, serving discovery and
//! the JWKS), one RS256 2048-bit key, the tokens, and one axum 0.8 router per system, each
//! configured the same way: RS256 only, `iss` and `aud` checked, `exp` required and checked,
//! `nbf` checked, 60 s of leeway, keys from the issuer's JWKS.
//!
//! Every router has one route, `GET /`, whose handler answers the authenticated subject as text.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey};
use axum::body::Body;
use axum::routing::get;
use axum::{Extension, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, Request, header::AUTHORIZATION};
use serde::Deserialize;
use serde_json::{Value, json};
use test_support::{TestIssuer, TestKey, b64, now_secs};
use trustgate_core::{Algorithm, ValidatorOptions};
use trustgate_service::{Builder, Caller, TrustgateLayer};

/// The service's audience, as every system is configured.
pub const AUDIENCE: &str = "users-api";
/// The subject of every valid token.
pub const SUBJECT: &str = "alice";
/// The key id the issuer publishes.
pub const KID: &str = "rs-1";
/// How many distinct valid tokens the uncached case cycles through.
pub const DISTINCT_TOKENS: usize = 1024;

/// The systems under test, as named in the criterion ids and the report.
pub const TRUSTGATE: &str = "trustgate-service";
pub const OAUTH2_RS: &str = "tower-oauth2-resource-server";
pub const AXUM_JWT_AUTH: &str = "axum-jwt-auth";

/// The issuer (on its own runtime, so it answers whatever runtime the routers run on) and its key.
pub struct Fixture {
    pub issuer: TestIssuer,
    pub key: TestKey,
    /// Keeps the issuer's runtime alive for the whole process.
    _runtime: tokio::runtime::Runtime,
}

impl Fixture {
    /// The process-wide fixture: one issuer, one key.
    pub fn get() -> &'static Fixture {
        static FIXTURE: OnceLock<Fixture> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            // Built on a plain thread: a runtime cannot be created or blocked on inside another.
            std::thread::spawn(|| {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("issuer")
                    .enable_all()
                    .build()
                    .unwrap();
                let issuer = runtime.block_on(TestIssuer::start());
                let key = TestKey::rsa(KID, "RS256");
                issuer.set_keys(&[&key]);
                // Nobody refetches during a run: every system is told keys last an hour.
                issuer.set_cache_control(Some("max-age=3600"));
                Fixture {
                    issuer,
                    key,
                    _runtime: runtime,
                }
            })
            .join()
            .unwrap()
        })
    }

    /// The issuer identifier, `http://127.0.0.1:PORT`.
    pub fn issuer_url(&self) -> String {
        self.issuer.url()
    }

    /// Realistic access-token claims: `iss`, `aud`, `sub`, `exp` in an hour, `iat`, `nbf`,
    /// `scope`, and a `jti` (`serial`) that makes each token distinct.
    pub fn claims(&self, serial: usize) -> Value {
        let now = now_secs();
        json!({
            "iss": self.issuer_url(),
            "aud": AUDIENCE,
            "sub": SUBJECT,
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "scope": "openid profile:read orders:read orders:write",
            "jti": format!("tok-{serial:08}"),
        })
    }

    /// A valid RS256 token (header `alg`, `kid`, `typ: JWT`).
    pub fn token(&self, serial: usize) -> String {
        self.key.sign(&self.claims(serial))
    }

    /// `claims` with `changes` applied, signed by the issuer's key.
    pub fn token_with(&self, changes: Value) -> String {
        let mut claims = self.claims(0);
        for (name, value) in changes.as_object().unwrap() {
            claims[name] = value.clone();
        }
        self.key.sign(&claims)
    }
}

/// The token each refusal case sends (`None`: no `Authorization` header).
pub fn refusal_cases(fixture: &Fixture) -> Vec<(&'static str, Option<String>)> {
    let now = now_secs();
    let valid = fixture.claims(0);
    let header = json!({"alg": "RS256", "kid": KID, "typ": "JWT"}).to_string();
    // Same kid, same header, another RSA key: the signature does not verify.
    let impostor = TestKey::rsa(KID, "RS256");
    let bad_signature = impostor.sign_with_header(&header, &valid.to_string());
    // `alg: none`, empty signature.
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": KID, "typ": "JWT"}).to_string()),
        b64(valid.to_string())
    );
    // HS256 keyed with the public key's bytes (the PEM text), the algorithm-confusion attack.
    let hs_input = format!(
        "{}.{}",
        b64(json!({"alg": "HS256", "kid": KID, "typ": "JWT"}).to_string()),
        b64(valid.to_string())
    );
    let hmac_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        fixture.key.public_pem().as_bytes(),
    );
    let tag = aws_lc_rs::hmac::sign(&hmac_key, hs_input.as_bytes());
    let hs256 = format!("{hs_input}.{}", b64(tag.as_ref()));
    vec![
        (
            "expired",
            Some(
                fixture
                    .token_with(json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600})),
            ),
        ),
        (
            "wrong aud",
            Some(fixture.token_with(json!({"aud": "payments-api"}))),
        ),
        (
            "wrong iss",
            Some(fixture.token_with(json!({"iss": "http://127.0.0.1:9"}))),
        ),
        ("bad signature", Some(bad_signature)),
        ("alg none", Some(none)),
        ("HS256 with the public key", Some(hs256)),
        ("no token", None),
    ]
}

/// `Bearer <token>` as a header value (built once, cloned per request: a `Bytes` clone).
pub fn bearer(token: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
}

/// `GET /` with this `Authorization` value, if any.
pub fn request(authorization: Option<&HeaderValue>) -> Request<Body> {
    let mut builder = Request::builder().uri("/");
    if let Some(value) = authorization {
        builder = builder.header(AUTHORIZATION, value.clone());
    }
    builder.body(Body::empty()).unwrap()
}

// ---- trustgate-service ------------------------------------------------------------------------

async fn trustgate_handler(caller: Caller) -> String {
    caller.subject().unwrap_or_default().to_owned()
}

/// `TrustgateLayer` for pattern 1, as `TrustgateLayer::jwt` builds it, with the algorithm list
/// narrowed to RS256 (the default also allows ES256) and the verified-token cache on or off
/// (`ValidatorOptions::cache.enabled`).
pub async fn trustgate_router(fixture: &Fixture, cache: bool) -> Router {
    Router::new()
        .route("/", get(trustgate_handler))
        .layer(trustgate_layer(fixture, cache).await)
}

/// The layer of [`trustgate_router`].
pub async fn trustgate_layer(fixture: &Fixture, cache: bool) -> TrustgateLayer {
    let mut options = ValidatorOptions::default();
    options.cache.enabled = cache;
    let layer = Builder::jwt(&fixture.issuer_url(), AUDIENCE)
        .algorithms([Algorithm::RS256])
        .leeway(Duration::from_secs(60))
        .validator_options(options)
        .build()
        .await
        .unwrap();
    assert!(layer.is_ready());
    layer
}

/// For information: the same route with no authentication, its handler answering the subject
/// as a constant (what the router, the request and the handler cost without any layer).
pub fn no_auth_router() -> Router {
    Router::new().route("/", get(|| async { SUBJECT.to_owned() }))
}

// ---- tower-oauth2-resource-server -------------------------------------------------------------

async fn oauth2_handler(
    Extension(claims): Extension<tower_oauth2_resource_server::claims::DefaultClaims>,
) -> String {
    claims.sub.unwrap_or_default()
}

/// tower-oauth2-resource-server's layer: discovery from the issuer, RS256 only, its recommended
/// claim checks spelt out (`exp`, `nbf`, `iss`, `aud`), keys refreshed hourly. Its leeway is
/// jsonwebtoken's default, 60 s.
pub async fn oauth2_router(fixture: &Fixture) -> Router {
    use tower_oauth2_resource_server::{
        claims::DefaultClaims, server::OAuth2ResourceServer, tenant::TenantConfiguration,
        validation::ClaimsValidationSpec,
    };
    let issuer = fixture.issuer_url();
    let tenant = TenantConfiguration::builder(issuer.clone())
        .audiences(&[AUDIENCE])
        .allowed_algorithms(&[jsonwebtoken11::Algorithm::RS256])
        .claims_validation(ClaimsValidationSpec::recommended(
            &issuer,
            &vec![AUDIENCE.to_owned()],
        ))
        .jwks_refresh_interval(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    let server = OAuth2ResourceServer::<DefaultClaims>::builder()
        .add_tenant(tenant)
        .build()
        .await
        .unwrap();
    let router = Router::new()
        .route("/", get(oauth2_handler))
        .layer(server.into_layer());
    // Its `build` returns before the keys are fetched: a spawned task fetches them. Until then
    // every token is refused with 401; wait (at most 5 s) until the valid token passes.
    let probe = bearer(&fixture.token(0));
    for _ in 0..500 {
        use tower::ServiceExt as _;
        let response = router.clone().oneshot(request(Some(&probe))).await.unwrap();
        if response.status() == http::StatusCode::OK {
            return router;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("tower-oauth2-resource-server: keys not loaded after 5 s");
}

// ---- axum-jwt-auth ----------------------------------------------------------------------------

/// The claims the axum-jwt-auth handler deserializes.
#[derive(Debug, Clone, Deserialize)]
pub struct PeerClaims {
    pub sub: String,
}

async fn axum_jwt_auth_handler(claims: axum_jwt_auth::Claims<PeerClaims>) -> String {
    claims.claims.sub
}

/// axum-jwt-auth's `Claims` extractor with its remote JWKS decoder (it has no discovery, so it
/// is given the issuer's `jwks_uri`), and a jsonwebtoken `Validation` for RS256, `iss`, `aud`,
/// `exp` (required) and `nbf`, 60 s of leeway.
pub async fn axum_jwt_auth_router(fixture: &Fixture) -> Router {
    use axum_jwt_auth::{Decoder, RemoteJwksDecoder, RemoteJwksDecoderConfig};
    use jsonwebtoken10::{Algorithm, Validation};
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[fixture.issuer_url()]);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = 60;
    let decoder = RemoteJwksDecoder::builder()
        .jwks_url(fixture.issuer.jwks_url())
        .validation(validation)
        .config(
            RemoteJwksDecoderConfig::builder()
                .cache_duration(Duration::from_secs(3600))
                .build(),
        )
        .build()
        .unwrap();
    // Fetches the keys and starts its refresh task (kept running: the token is dropped, not
    // cancelled).
    let _refresh = decoder.initialize().await.unwrap();
    let decoder: Decoder<PeerClaims> = Arc::new(decoder);
    Router::new()
        .route("/", get(axum_jwt_auth_handler))
        .with_state(decoder)
}

// ---- raw verify -------------------------------------------------------------------------------

/// The baseline: aws-lc-rs RSA PKCS#1 v1.5 SHA-256 verification of a token's signing input with
/// the public key parsed once and the signature already decoded. Nothing else: no base64, no JSON,
/// no claims, no HTTP.
pub struct RawVerify {
    key: ParsedPublicKey,
    /// (signing input, signature) per token.
    pub inputs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl RawVerify {
    pub fn new(fixture: &Fixture, tokens: &[String]) -> Self {
        let pem = fixture.key.public_pem();
        let body: String = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let key = UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, der)
            .parse()
            .unwrap();
        let inputs = tokens
            .iter()
            .map(|token| {
                let (input, sig) = token.rsplit_once('.').unwrap();
                (
                    input.as_bytes().to_vec(),
                    URL_SAFE_NO_PAD.decode(sig).unwrap(),
                )
            })
            .collect();
        Self { key, inputs }
    }

    /// Verifies entry `index`.
    pub fn verify(&self, index: usize) -> bool {
        let (input, sig) = &self.inputs[index];
        self.key.verify_sig(input, sig).is_ok()
    }
}
