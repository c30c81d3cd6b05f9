//! Three tiny sample services behind a [`TrustgateLayer`], for the demo and as usage examples.
//!
//! - [`users`]: `GET /users/me` answers the caller's identity as the service saw it;
//! - [`courses`]: `GET /courses` lists the caller's tenant's courses, `POST /courses` requires the
//!   role `instructor`;
//! - [`payments`]: `GET /payments[?tenant=T]` requires the scope `payments:read` and the caller's
//!   tenant to equal the one asked for.
//!
//! Every successful answer has a `"verdict"` and shows what the service received: the mode, the
//! identity, the claims as validated (never the token itself) and which credential headers
//! arrived. Refusals are the library's RFC 6750 answers. Each router also serves an
//! unauthenticated `GET /healthz`. Every answer, refusals by the library included, carries
//! `X-Demo-Answered-By: <service>`, so the demo page can tell a service's decision from the
//! gateway's (the gateway never adds it, and strips nothing from responses that would fake it).

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use trustgate_core::AuthError;
use trustgate_service::{Caller, Rejection, TrustgateLayer};

/// The users service.
pub fn users(layer: TrustgateLayer) -> Router {
    with_health(
        "users",
        Router::new().route("/users/me", get(me)).layer(layer),
    )
}

/// The courses service, with an in-memory catalogue.
pub fn courses(layer: TrustgateLayer) -> Router {
    let catalogue = Arc::new(Mutex::new(vec![
        course(1, "Rust for services", "acme"),
        course(2, "Distributed systems", "acme"),
        course(3, "Accounting basics", "globex"),
    ]));
    with_health(
        "courses",
        Router::new()
            .route("/courses", get(list_courses).post(create_course))
            .with_state(catalogue)
            .layer(layer),
    )
}

/// The payments service.
pub fn payments(layer: TrustgateLayer) -> Router {
    with_health(
        "payments",
        Router::new()
            .route("/payments", get(list_payments))
            .layer(layer),
    )
}

/// The answering service's name, on every response (outside the authentication layer, so its
/// refusals carry it too).
pub const ANSWERED_BY: &str = "x-demo-answered-by";

fn with_health(name: &'static str, protected: Router) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(protected)
        .layer(axum::middleware::map_response(
            move |mut response: axum::response::Response| async move {
                response
                    .headers_mut()
                    .insert(ANSWERED_BY, header::HeaderValue::from_static(name));
                response
            },
        ))
}

/// What the service received: mode, identity, validated claims and credential headers.
fn received(caller: &Caller, headers: &HeaderMap) -> Value {
    let identity_headers: serde_json::Map<String, Value> = headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            name.starts_with("x-user-") || name.starts_with("x-tenant-") || name == "x-client-id"
        })
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), Value::String(text))
        })
        .collect();
    // The scheme only: a service must never echo a credential.
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(' ').next().unwrap_or_default().to_ascii_lowercase());
    json!({
        "mode": caller.mode().as_str(),
        "verified_signature": caller.token().is_some(),
        "subject": caller.subject(),
        "roles": caller.roles(),
        "scopes": caller.scopes(),
        "tenant": caller.tenant(),
        "client": caller.client(),
        "issuer": caller.issuer(),
        "external_issuer": caller.external_issuer(),
        "claims": caller.claims(),
        // Which key verified the credential, and with which algorithm (never the token).
        "key": caller.token().map(|t| json!({"kid": t.key_id(), "alg": t.algorithm().name()})),
        "headers": {
            "authorization": authorization,
            "x-trustgate-assertion": headers.contains_key("x-trustgate-assertion"),
            "identity": identity_headers,
        },
    })
}

async fn me(caller: Caller, headers: HeaderMap) -> Json<Value> {
    let verdict = if caller.token().is_some() {
        format!("allowed: identity from a verified {}", caller.mode())
    } else {
        "allowed: identity taken from unproven headers (danger mode)".to_owned()
    };
    Json(json!({
        "service": "users",
        "verdict": verdict,
        "received": received(&caller, &headers),
    }))
}

type Catalogue = Arc<Mutex<Vec<Value>>>;

fn course(id: u64, title: &str, tenant: &str) -> Value {
    json!({"id": id, "title": title, "tenant": tenant})
}

async fn list_courses(
    caller: Caller,
    headers: HeaderMap,
    State(catalogue): State<Catalogue>,
) -> Json<Value> {
    let tenant = caller.tenant();
    let visible: Vec<Value> = catalogue
        .lock()
        .map(|all| {
            all.iter()
                .filter(|c| tenant.is_some() && c["tenant"].as_str() == tenant)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let verdict = match tenant {
        Some(t) => format!("allowed: {} course(s) of tenant {t}", visible.len()),
        None => "allowed: the caller has no tenant, so no courses".to_owned(),
    };
    Json(json!({
        "service": "courses",
        "verdict": verdict,
        "courses": visible,
        "received": received(&caller, &headers),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCourse {
    title: String,
}

async fn create_course(
    caller: Caller,
    headers: HeaderMap,
    State(catalogue): State<Catalogue>,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), Rejection> {
    caller.require_role("instructor")?;
    let Ok(new) = serde_json::from_slice::<NewCourse>(&body) else {
        return Ok((
            StatusCode::BAD_REQUEST,
            Json(json!({
                "service": "courses",
                "verdict": "refused: the body must be {\"title\": \"...\"}",
            })),
        ));
    };
    let tenant = caller.tenant().unwrap_or_default();
    let created = match catalogue.lock() {
        Ok(mut all) => {
            let id = all.len() as u64 + 1;
            let created = course(id, &new.title, tenant);
            all.push(created.clone());
            created
        }
        Err(_) => {
            return Ok((
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"verdict": "error"})),
            ));
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "service": "courses",
            "verdict": "created: the caller has the role instructor",
            "course": created,
            "received": received(&caller, &headers),
        })),
    ))
}

#[derive(Deserialize)]
struct PaymentsQuery {
    tenant: Option<String>,
}

async fn list_payments(
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<PaymentsQuery>,
) -> Result<Json<Value>, Rejection> {
    caller.require_scope("payments:read")?;
    let Some(requested) = query.tenant.as_deref().or(caller.tenant()) else {
        // Neither asked for nor carried: there is no tenant to show payments of.
        return Err(AuthError::InsufficientScope.into());
    };
    caller.require_tenant(requested)?;
    let payments = match requested {
        "acme" => json!([{"id": "p-100", "amount": 4200, "currency": "EUR"}]),
        "globex" => json!([{"id": "p-200", "amount": 990, "currency": "EUR"}]),
        _ => json!([]),
    };
    Ok(Json(json!({
        "service": "payments",
        "verdict": format!("allowed: scope payments:read present and tenant {requested} matches"),
        "tenant_check": {"requested": requested, "caller": caller.tenant(), "match": true},
        "payments": payments,
        "received": received(&caller, &headers),
    })))
}
