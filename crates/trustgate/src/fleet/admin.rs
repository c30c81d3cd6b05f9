//! The admin API on the admin listener: `GET /revocations` lists, `POST /revocations` revokes.
//! Every call needs `Authorization: Bearer <admin.token_file's token>`; without a configured
//! token the API is off (404), so the unauthenticated admin port never gains a write.
//!
//! `POST /revocations` takes one JSON object:
//! - `{"jti": "…", "issuer": "<id or iss>", "exp": <seconds>}`: one token (`exp` optional; the
//!   entry is kept until `exp` plus the largest leeway, or for `revocation.max_token_lifetime`);
//! - `{"sub": "…", "issuer": "<id or iss>", "before": <seconds>}`: every token of the subject
//!   issued at or before `before` (default: now), "log out everywhere";
//! - `{"internal_token": "…"}`: an internal token this gateway minted (checked with its key
//!   ring, even when expired): its subject's external tokens issued up to the time it was
//!   minted.

use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};
use trustgate_core::{
    Algorithm, INTERNAL_TOKEN_TYP, IssuerConfig, KeySource, ManualClock, Validator,
    ValidatorOptions,
};

use super::revocation::{Entry, Kind};
use super::store::wall_ms;
use crate::gateway::Gateway;

/// The leeway ceiling without `danger_allow_long_leeway`: a token is accepted this long past
/// its `exp`, so its entry is kept as long.
const MAX_LEEWAY_SECS: i64 = 300;

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

/// Whether the request carries the admin token. Compared in constant time.
fn authorized(gateway: &Gateway, req: &Request<Incoming>) -> Option<bool> {
    let runtime = gateway.runtime.load();
    let expected = runtime.config.admin_token.as_ref()?;
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Digests first, so that the comparison's time does not depend on the lengths either.
    let digest =
        |text: &str| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    Some(
        aws_lc_rs::constant_time::verify_slices_are_equal(
            digest(presented).as_ref(),
            digest(expected.expose()).as_ref(),
        )
        .is_ok(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    jti: Option<String>,
    sub: Option<String>,
    internal_token: Option<String>,
    issuer: Option<String>,
    exp: Option<i64>,
    before: Option<i64>,
}

pub(crate) async fn handle(gateway: Arc<Gateway>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    match authorized(&gateway, &req) {
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "the admin API is off; set admin.token_file",
            );
        }
        Some(false) => {
            let mut response = error(StatusCode::UNAUTHORIZED, "unauthorized");
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
        Some(true) => {}
    }
    let Some(revocations) = gateway.fleet.revocations.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "revocation is off; add a [revocation] section",
        );
    };
    match *req.method() {
        Method::GET => {
            let (version, entries) = revocations.entries();
            json_response(
                StatusCode::OK,
                &json!({ "version": version, "fresh": revocations.is_fresh(), "entries": entries }),
            )
        }
        Method::POST => {
            let body = match Limited::new(req.into_body(), 16 * 1024).collect().await {
                Ok(body) => body.to_bytes(),
                Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"),
            };
            let request: Revoke = match serde_json::from_slice(&body) {
                Ok(request) => request,
                Err(err) => {
                    return error(StatusCode::BAD_REQUEST, &format!("bad request: {err}"));
                }
            };
            let entry = match entry(&gateway, request).await {
                Ok(entry) => entry,
                Err(message) => return error(StatusCode::BAD_REQUEST, &message),
            };
            match revocations.add(entry.clone()).await {
                Ok(()) => {
                    tracing::info!(target: "trustgate::audit", kind = ?entry.kind, iss = %entry.iss, "revocation added");
                    json_response(StatusCode::CREATED, &json!({ "revoked": entry }))
                }
                Err(err) => {
                    tracing::warn!(error = %err, "revocation not stored");
                    error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the store cannot be reached; nothing was revoked",
                    )
                }
            }
        }
        _ => error(StatusCode::METHOD_NOT_ALLOWED, "use GET or POST"),
    }
}

/// The configured issuer named by `id_or_iss`.
fn issuer(gateway: &Gateway, id_or_iss: Option<&str>) -> Result<String, String> {
    let runtime = gateway.runtime.load();
    let name = id_or_iss.ok_or("\"issuer\" is required (an issuer id or its iss)")?;
    runtime
        .config
        .issuers
        .iter()
        .find(|i| i.id == name || i.config.issuer == name)
        .map(|i| i.config.issuer.clone())
        .ok_or_else(|| format!("issuer {name:?} is not configured"))
}

async fn entry(gateway: &Gateway, request: Revoke) -> Result<Entry, String> {
    let now = wall_ms() / 1000;
    let max_lifetime = gateway
        .fleet
        .revocation_config
        .as_ref()
        .map_or(86_400, |r| {
            i64::try_from(r.max_token_lifetime.as_secs()).unwrap_or(i64::MAX)
        });
    match (request.jti, request.sub, request.internal_token) {
        (Some(jti), None, None) if request.before.is_none() => Ok(Entry {
            kind: Kind::Jti,
            iss: issuer(gateway, request.issuer.as_deref())?,
            value: jti,
            cutoff: None,
            expires_at: request
                .exp
                .unwrap_or_else(|| now.saturating_add(max_lifetime))
                .saturating_add(MAX_LEEWAY_SECS),
            created_at: now,
        }),
        (None, Some(sub), None) if request.exp.is_none() => {
            let cutoff = request.before.unwrap_or(now);
            Ok(Entry {
                kind: Kind::Sub,
                iss: issuer(gateway, request.issuer.as_deref())?,
                value: sub,
                cutoff: Some(cutoff),
                expires_at: cutoff
                    .saturating_add(max_lifetime)
                    .saturating_add(MAX_LEEWAY_SECS),
                created_at: now,
            })
        }
        (None, None, Some(token)) if request.issuer.is_none() => {
            let (ext_iss, sub, iat) = internal_token_subject(gateway, &token).await?;
            Ok(Entry {
                kind: Kind::Sub,
                iss: ext_iss,
                value: sub,
                cutoff: Some(iat),
                expires_at: iat
                    .saturating_add(max_lifetime)
                    .saturating_add(MAX_LEEWAY_SECS),
                created_at: now,
            })
        }
        _ => Err(
            "send one of {\"jti\", \"issuer\", \"exp\"?}, {\"sub\", \"issuer\", \"before\"?} or {\"internal_token\"}"
                .into(),
        ),
    }
}

/// The external issuer, subject and mint time of an internal token this gateway signed. Checked
/// against the gateway's own key set as of the token's `iat`, so an expired token (the usual
/// case by the time it is read from a log) still counts while its key is published.
async fn internal_token_subject(
    gateway: &Gateway,
    token: &str,
) -> Result<(String, String, i64), String> {
    let signer = gateway
        .signer
        .as_ref()
        .ok_or("this gateway has no [internal_issuer]")?;
    let unverified = token
        .split('.')
        .nth(1)
        .and_then(|p| base64_simd::URL_SAFE_NO_PAD.decode_to_vec(p).ok())
        .and_then(|p| serde_json::from_slice::<Value>(&p).ok())
        .ok_or("not an internal token of this gateway")?;
    let (Some(aud), Some(iat)) = (unverified["aud"].as_str(), unverified["iat"].as_i64()) else {
        return Err("not an internal token of this gateway".into());
    };
    let jwks = String::from_utf8(signer.jwks().to_vec()).map_err(|_| "key set unreadable")?;
    let mut config = IssuerConfig::new(signer.issuer(), [aud], KeySource::Jwks(jwks));
    config.algorithms = vec![Algorithm::EdDSA, Algorithm::ES256];
    config.claims.required_typ = Some(INTERNAL_TOKEN_TYP.to_owned());
    let mut options = ValidatorOptions::default();
    options.cache.enabled = false;
    let validator = Validator::new(vec![config], options, Arc::new(ManualClock::at_secs(iat)))
        .map_err(|err| err.to_string())?;
    let verified = validator.validate(token).await.map_err(|_| {
        "not an internal token of this gateway (or its key is no longer published)".to_owned()
    })?;
    let claims = verified.claims();
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .ok_or("the internal token carries no sub (internal_claims without \"sub\")")?;
    let ext_iss = claims
        .get("ext_iss")
        .and_then(Value::as_str)
        .ok_or("the internal token carries no ext_iss")?;
    Ok((ext_iss.to_owned(), sub.to_owned(), iat))
}
