//! The admin API on the admin listener: `GET /revocations` lists, `POST /revocations` revokes.
//! Every call needs `Authorization: Bearer <admin.token_file's token>`; without a configured
//! token the API is off (404), so the unauthenticated admin port never gains a write.
//!
//! `POST /revocations` takes one JSON object:
//! - `{"jti": "…", "issuer": "<id or iss>", "exp": <seconds>}`: one token (`exp` optional; the
//!   entry is kept until `exp` plus the issuer's leeway and 5 minutes, or for
//!   `revocation.max_token_lifetime`; an `exp` further ahead than that is refused);
//! - `{"sub": "…", "issuer": "<id or iss>", "before": <seconds>}`: every token of the subject
//!   issued at or before `before` (default: now plus the issuer's leeway, for an issuer whose
//!   clock runs ahead; a `before` given is not in the future), "log out everywhere";
//! - `{"internal_token": "…"}`: an internal token this gateway minted (checked with its key
//!   ring, even when expired): its subject's external tokens issued up to the time it was
//!   minted, plus the issuer's leeway.
//!
//! An entry that would already have lapsed (it covers only tokens that have expired) is refused
//! with 400 rather than answered 201 for nothing.

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

use super::revocation::{Entry, Kind, LEEWAY_SECS};
use super::store::wall_ms;
use crate::config::IssuerEntry;
use crate::gateway::Gateway;

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

/// How an issuer is named to the API.
#[derive(Debug, Clone, Copy)]
enum IssuerName<'a> {
    /// A request's `"issuer"`: an issuer's id or its `iss`.
    IdOrIss(Option<&'a str>),
    /// An internal token's `ext_iss`: the external token's `iss`, never an id (an issuer whose
    /// id happened to be that text would otherwise be taken for it).
    Iss(&'a str),
}

/// The issuer `name` names.
fn find_issuer<'a>(
    issuers: &'a [IssuerEntry],
    name: IssuerName<'_>,
) -> Result<&'a IssuerEntry, String> {
    let (found, name) = match name {
        IssuerName::IdOrIss(name) => {
            let name = name.ok_or("\"issuer\" is required (an issuer id or its iss)")?;
            (
                issuers
                    .iter()
                    .find(|i| i.id == name || i.config.issuer == name),
                name,
            )
        }
        IssuerName::Iss(iss) => (issuers.iter().find(|i| i.config.issuer == iss), iss),
    };
    found.ok_or_else(|| format!("issuer {name:?} is not configured"))
}

/// The issuer `name` names, as an entry against it needs it.
struct Issuer {
    iss: String,
    /// The issuer's leeway (seconds): how far ahead of the gateway's clock a token's `iat` may
    /// be and still be accepted (an issuer whose clock runs fast).
    leeway: i64,
    /// How long after a token's `exp` (or a cut-off's `max_token_lifetime`) an entry is kept:
    /// the leeway, during which the issuer still accepts the token, and [`LEEWAY_SECS`] more.
    kept: i64,
}

fn issuer(gateway: &Gateway, name: IssuerName<'_>) -> Result<Issuer, String> {
    let runtime = gateway.runtime.load();
    let issuer = find_issuer(&runtime.config.issuers, name)?;
    let leeway = i64::try_from(issuer.config.claims.leeway.as_secs()).unwrap_or(i64::MAX);
    Ok(Issuer {
        iss: issuer.config.issuer.clone(),
        leeway,
        kept: leeway.saturating_add(LEEWAY_SECS),
    })
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
    // Routes that check revocations refuse tokens living longer than `max_token_lifetime`
    // (`Revocations::outlives_revocations`), and the issuer's leeway lets a token's `iat` be
    // that far ahead of now, so no token they accept expires later than this (`kept` is the
    // leeway and `LEEWAY_SECS`).
    let latest_exp = |kept: i64| now.saturating_add(max_lifetime).saturating_add(kept);
    // An empty value matches no token (an empty `sub` is no subject): refused, not answered 201.
    if request.jti.as_deref() == Some("") || request.sub.as_deref() == Some("") {
        return Err("\"jti\" and \"sub\" must not be empty".into());
    }
    let entry = match (request.jti, request.sub, request.internal_token) {
        (Some(jti), None, None) if request.before.is_none() => {
            let Issuer { iss, kept, .. } =
                issuer(gateway, IssuerName::IdOrIss(request.issuer.as_deref()))?;
            let exp = request
                .exp
                .unwrap_or_else(|| now.saturating_add(max_lifetime));
            if exp > latest_exp(kept) {
                return Err(format!(
                    "\"exp\" {exp} is more than revocation.max_token_lifetime ({max_lifetime} s) and the issuer's leeway from now, which no token accepted on a route that checks revocations outlives; is it in milliseconds? (seconds since the epoch)"
                ));
            }
            Entry {
                kind: Kind::Jti,
                iss,
                value: jti,
                cutoff: None,
                expires_at: exp.saturating_add(kept),
                created_at: now,
            }
        }
        (None, Some(sub), None) if request.exp.is_none() => {
            let Issuer { iss, leeway, kept } =
                issuer(gateway, IssuerName::IdOrIss(request.issuer.as_deref()))?;
            // By default every token issued until now, by the issuer's clock too: one running
            // ahead by up to the leeway stamps a token issued a moment ago with an `iat` that far
            // ahead, and the gateway accepts it. So the cut-off is now plus the leeway (a token
            // the subject gets within the leeway after this is refused too). A `before` given is
            // taken as it is.
            let cutoff = request.before.unwrap_or_else(|| now.saturating_add(leeway));
            // A cut-off in the future would revoke tokens not yet issued, and could not be
            // withdrawn; a few minutes allow for the caller's clock.
            if request.before.is_some() && cutoff > now.saturating_add(LEEWAY_SECS) {
                return Err(format!(
                    "\"before\" {cutoff} is in the future (now is {now}); is it in milliseconds? (seconds since the epoch)"
                ));
            }
            sub_entry(iss, sub, cutoff, max_lifetime, kept, now)
        }
        (None, None, Some(token)) if request.issuer.is_none() => {
            let (ext_iss, sub, iat) = internal_token_subject(gateway, &token).await?;
            let Issuer { iss, leeway, kept } = issuer(gateway, IssuerName::Iss(&ext_iss))?;
            // The external token behind it was accepted at `iat` by the gateway's clock, so its
            // own `iat` may be up to the leeway later (see the cut-off of `sub` above).
            sub_entry(
                iss,
                sub,
                iat.saturating_add(leeway),
                max_lifetime,
                kept,
                now,
            )
        }
        _ => {
            return Err(
                "send one of {\"jti\", \"issuer\", \"exp\"?}, {\"sub\", \"issuer\", \"before\"?} or {\"internal_token\"}"
                    .into(),
            );
        }
    };
    // An entry that has already lapsed covers no token a route that checks revocations would
    // accept: saying 201 for it would say something was revoked when nothing was.
    if entry.expires_at < now {
        return Err(format!(
            "nothing to revoke: every token this covers has expired (the entry would have lapsed at {}); tokens living longer than revocation.max_token_lifetime are refused where revocations are checked",
            entry.expires_at
        ));
    }
    Ok(entry)
}

/// Every token of `sub` issued at or before `cutoff`: kept until the last of them has expired
/// (it lives at most `max_lifetime` and [`LEEWAY_SECS`], and is accepted for the issuer's leeway
/// after its `exp`; `kept` is both margins).
fn sub_entry(
    iss: String,
    sub: String,
    cutoff: i64,
    max_lifetime: i64,
    kept: i64,
    now: i64,
) -> Entry {
    Entry {
        kind: Kind::Sub,
        iss,
        value: sub,
        cutoff: Some(cutoff),
        expires_at: cutoff.saturating_add(max_lifetime).saturating_add(kept),
        created_at: now,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use super::*;

    /// Two issuers, the first with an id that is the second's `iss`.
    const ISSUERS: &str = r#"
[[issuer]]
id = "https://idp.example"
issuer = "https://other.example"
jwks_url = "https://other.example/jwks"
audiences = ["api"]

[[issuer]]
id = "idp"
issuer = "https://idp.example"
jwks_url = "https://idp.example/jwks"
audiences = ["api"]

[[upstream]]
id = "app"
url = "http://127.0.0.1:9001"

[[route]]
name = "app"
prefix = "/"
upstream = "app"
pattern = "forward-token"
"#;

    /// An internal token's `ext_iss` is an `iss`: it names the issuer with that `iss`, even
    /// when another issuer's id is the same text. A request's `"issuer"` may be either, and an
    /// id is found first.
    #[test]
    fn an_ext_iss_names_an_issuer_by_its_iss_only() {
        let config = crate::config::parse(ISSUERS, Path::new("/etc/trustgate"), &|_| None).unwrap();
        let by_iss = find_issuer(&config.issuers, IssuerName::Iss("https://idp.example")).unwrap();
        assert_eq!(by_iss.id, "idp");
        let named = find_issuer(
            &config.issuers,
            IssuerName::IdOrIss(Some("https://idp.example")),
        )
        .unwrap();
        assert_eq!(named.id, "https://idp.example");
        assert!(find_issuer(&config.issuers, IssuerName::Iss("idp")).is_err());
        assert!(find_issuer(&config.issuers, IssuerName::IdOrIss(None)).is_err());
    }
}
