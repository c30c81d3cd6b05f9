//! The admin listener: `/metrics`, `/healthz`, `/readyz`, and, with an `[internal_issuer]`, the
//! internal issuer's `/.well-known/jwks.json` and `/.well-known/openid-configuration`. Bind it to
//! a private address.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::gateway::Gateway;
use crate::internal_issuer::internal_issuer_document;

/// Serves the admin listener until the process ends, with the public listener's limits
/// (`[server]`: `max_connections`, `header_read_timeout`, `idle_timeout`, `max_header_bytes`,
/// `max_headers`), read once at start: whoever reaches the port (a scraper, a service fetching
/// the internal JWKS) must not hold a connection, and its descriptor, with silence, a head it
/// never finishes, or idleness (`limits::serve_watched`).
pub(crate) async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    let server = gateway.runtime.load().config.server.clone();
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let builder = Arc::new(crate::limits::limited_builder(&server));
    let watch = crate::limits::Watch::of(&server);
    loop {
        let (stream, _, permit) = crate::limits::accept_within(&listener, &limit, "admin").await;
        let gateway = Arc::clone(&gateway);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req: Request<Incoming>| {
                let gateway = Arc::clone(&gateway);
                async move {
                    if req.uri().path() == "/revocations" {
                        return Ok::<_, Infallible>(
                            crate::fleet::admin::handle(gateway, req).await,
                        );
                    }
                    Ok::<_, Infallible>(respond(&gateway, &req))
                }
            });
            crate::limits::serve_watched(stream, watch, service, |io, service| {
                builder.serve_connection(io, service)
            })
            .await;
        });
    }
}

fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn respond(gateway: &Gateway, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" => {
            let runtime = gateway.runtime.load();
            let status = runtime.engine.validator.issuer_status();
            let mut body = String::new();
            for issuer in &status {
                body.push_str(&format!(
                    "{} {} keys={}\n",
                    if issuer.usable { "ready" } else { "not-ready" },
                    issuer.issuer,
                    issuer.keys
                ));
            }
            let (fleet_ready, fleet_text) = gateway.fleet.readiness();
            body.push_str(&fleet_text);
            if fleet_ready && status.iter().all(|i| i.usable) {
                text(StatusCode::OK, "text/plain", format!("ready\n{body}"))
            } else {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready\n{body}"),
                )
            }
        }
        path @ ("/.well-known/jwks.json" | "/.well-known/openid-configuration") => {
            match gateway
                .signer
                .as_deref()
                .and_then(|signer| internal_issuer_document(signer, path))
            {
                Some(response) => response.map(Full::new),
                None => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
            }
        }
        "/metrics" => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            gateway.metrics.encode(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}
