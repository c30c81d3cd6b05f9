//! The gateway's trace, continued (feature `opentelemetry`).

use http::HeaderMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use trustgate_core::{TRACEPARENT, TraceParent};

/// Makes `span` a child of the request's `traceparent`, unless a span of the application already
/// encloses it (the application then decided whose trace this is).
pub(crate) fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if span.is_none() || !tracing::Span::current().is_none() {
        return;
    }
    let Some(parent) = headers
        .get(TRACEPARENT)
        .and_then(|value| TraceParent::parse(value.as_bytes()))
    else {
        return;
    };
    let _ = span.set_parent(parent.remote_context());
}
