//! The spans the layer makes, seen by a subscriber: `trustgate.service` at INFO, one per
//! request, and the validation steps under it at DEBUG, so that a service logging at INFO (the
//! usual `tracing_subscriber::fmt` set-up) makes no step span on any request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::Request;
use serde_json::json;
use tower_service::Service as _;
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use trustgate_service::TrustgateLayer;

use crate::common::*;

/// Records the name and level of every span it takes: those at `max` or less verbose.
struct Recorder {
    max: Level,
    spans: Arc<Mutex<Vec<(&'static str, Level)>>>,
    next_id: AtomicU64,
}

impl tracing::Subscriber for Recorder {
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max.into())
    }
    // `sometimes`: callsite interest is shared by every subscriber of the process, and other
    // tests run theirs at the same time; `enabled` decides each time.
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        *meta.level() <= self.max
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let meta = span.metadata();
        if meta.target().starts_with("trustgate") {
            self.spans
                .lock()
                .unwrap()
                .push((meta.name(), *meta.level()));
        }
        tracing::span::Id::from_u64(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The trustgate spans one request with a new token makes under a subscriber taking `max`.
async fn spans_of_one_request(
    router: &mut axum::Router,
    issuers: &Issuers,
    subject: &str,
    max: Level,
) -> Vec<(&'static str, Level)> {
    let token = issuers.external_token(SERVICE, json!({ "sub": subject }));
    let request = Request::builder()
        .uri("/users/me")
        .header("authorization", bearer(&token))
        .body(Body::empty())
        .unwrap();
    let spans = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder {
        max,
        spans: Arc::clone(&spans),
        next_id: AtomicU64::new(0),
    };
    // This test's runtime has one thread, so everything the request polls runs under the guard.
    let guard = tracing::subscriber::set_default(recorder);
    std::future::poll_fn(|cx| {
        <axum::Router as tower_service::Service<Request<Body>>>::poll_ready(router, cx)
    })
    .await
    .unwrap();
    let status = router.call(request).await.unwrap().status();
    drop(guard);
    assert_eq!(status, 200);
    spans.lock().unwrap().clone()
}

#[tokio::test(flavor = "current_thread")]
async fn a_service_logging_at_info_makes_one_span_per_request_and_no_step_spans() {
    let issuers = Issuers::start().await;
    let layer = TrustgateLayer::jwt(&issuers.external.url(), SERVICE)
        .await
        .unwrap();
    let mut router = app(layer);

    assert_eq!(
        spans_of_one_request(&mut router, &issuers, "alice", Level::INFO).await,
        [("trustgate.service", Level::INFO)]
    );
    // Asked for, the steps are there: each validation step of an uncached token, in order.
    assert_eq!(
        spans_of_one_request(&mut router, &issuers, "bob", Level::DEBUG).await,
        [
            ("trustgate.service", Level::INFO),
            ("validate", Level::DEBUG),
            ("cache", Level::DEBUG),
            ("signature", Level::DEBUG),
            ("claims", Level::DEBUG),
        ]
    );
}
