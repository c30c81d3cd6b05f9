//! OpenTelemetry traces (`[telemetry]`, off by default) and the process's log subscriber.
//!
//! The request path and the decision steps are `tracing` spans (`trustgate.request`, then
//! `sanitize`, `route`, `token`, `validate` with `cache`, `jwks_fetch`, `signature` and `claims`,
//! `require`, `mint`, `assertion`, `upstream`), in trustgate-edge and trustgate-core. They carry
//! reason codes, the route and pattern, the issuer and the key id: never a token, and a claim
//! value only when `telemetry.span_claims` names the claim.
//!
//! **Off costs next to nothing.** The steps' spans are made with `trustgate_core::step_span!`,
//! which without telemetry makes none (`StepSpans::Never`: one relaxed load per step, the
//! subscriber never asked); the log layer's filter refuses them too. No request allocates for
//! tracing. On, an unsampled request's trace is a few bytes in its future (which hyper moves),
//! and only a sampled one's spans and decision are boxed.
//!
//! **On, sampling is decided once, at the front door** ([`RequestTracing::begin`]):
//! parent-based, then by ratio. A `traceparent` is believed only per `trust_incoming` (by default
//! from `server.trusted_proxies`), and its sampled flag decides; otherwise the request starts a
//! trace of its own and is sampled with probability `sample_ratio`. An unsampled request creates
//! no span and asks the subscriber nothing: the steps' spans are made only while a sampled
//! request's decision is polled (`StepSpans::InTracedScopes`, [`RequestTrace::run`]), and a
//! global filter ([`UnderSampledRequests`]) still lets a step's span exist only under a sampled
//! request's root. Every forwarded request gets a `traceparent` (unsampled ones
//! too, with the sampled flag clear, so the services agree), and a client's own `traceparent`,
//! `tracestate` and `baggage` never reach the upstream unless believed.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, Method};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider};
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::trace::{
    IdGenerator, RandomIdGenerator, Sampler, SdkTracerProvider, SpanExporter as _,
};
use tracing::field::Empty;
use tracing::subscriber::Interest;
use tracing::{Metadata, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, LevelFilter};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use trustgate_core::steps::StepSpans;
use trustgate_core::{BAGGAGE, TRACEPARENT, TRACESTATE, TraceParent, VerifiedToken};
use trustgate_edge::headers::TrustedProxies;

use crate::config::{OtlpProtocol, TelemetryConfig, TrustIncoming};
use crate::record::Door;

mod batch;
mod otlp;

/// The root span of a request at any front door; the one span [`UnderSampledRequests`] admits without a parent.
const ROOT_SPAN: &str = "trustgate.request";

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Spans from trustgate's crates (trustgate, trustgate_core, trustgate_edge, trustgate_service).
fn is_our_span(meta: &Metadata<'_>) -> bool {
    meta.is_span() && meta.target().starts_with("trustgate")
}

/// Installs the process's subscriber: the log as `[log]` says (JSON or text; colour only at a
/// terminal) and, with `[telemetry]`, the OpenTelemetry layer. Returns the span exporter to shut
/// down at exit, which sends what is still queued.
///
/// # Errors
/// The exporter could not be built (an endpoint tonic or hyper refuses); the message is for the
/// operator.
pub(crate) fn init(
    level: &str,
    json: bool,
    colour: bool,
    telemetry: Option<&TelemetryConfig>,
) -> Result<Option<Exporter>, String> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let log = tracing_subscriber::fmt::layer()
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    // The steps' spans are for traces, not for the log: refused at the callsite, so that with
    // telemetry off they are never even built.
    let log = if json {
        log.json()
            .flatten_event(true)
            .with_filter(filter.and(OurSpans::Refused))
            .boxed()
    } else {
        log.with_filter(filter.and(OurSpans::Refused)).boxed()
    };
    // The decision steps' spans are made only for a sampled request (see `RequestTrace::run`),
    // and never without telemetry: an unsampled request then never asks the subscriber about
    // them.
    trustgate_core::steps::set_step_spans(if telemetry.is_some() {
        StepSpans::InTracedScopes
    } else {
        StepSpans::Never
    });
    let Some(telemetry) = telemetry else {
        let _ = tracing_subscriber::registry().with(log).try_init();
        return Ok(None);
    };
    let provider = provider(telemetry)?;
    let tracer = provider.tracer("trustgate");
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Only what the spans say: no source locations, threads, targets or busy/idle timings
        // (cost per span, and nothing an operator diagnosing a refusal needs).
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(OurSpans::Only);
    // The gate is the outermost layer: it is asked first, and its "no" stops a span before the
    // registry allocates anything for it.
    let _ = tracing_subscriber::registry()
        .with(log)
        .with(spans)
        .with(UnderSampledRequests)
        .try_init();
    Ok(Some(Exporter { provider }))
}

/// The OpenTelemetry pipeline: the OTLP exporter (gRPC: `opentelemetry-otlp`'s; HTTP: [`otlp`]),
/// behind a batch processor that runs as a task on the gateway's runtime ([`batch`]; `OTEL_BSP_*`
/// tune it). Built inside the runtime (`init` runs there).
fn provider(telemetry: &TelemetryConfig) -> Result<SdkTracerProvider, String> {
    let resource = opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(telemetry.service_name.clone())
        .build();
    let limits = batch::Limits::from_env(|name| std::env::var(name).ok());
    let compression = otlp::compression(|name| std::env::var(name).ok())?;
    let processor = match telemetry.protocol {
        OtlpProtocol::Grpc => {
            let builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(telemetry.endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT);
            let builder = match compression {
                otlp::Compression::Gzip => {
                    builder.with_compression(opentelemetry_otlp::Compression::Gzip)
                }
                otlp::Compression::None => builder,
            };
            let builder = if telemetry.endpoint.starts_with("https://") {
                builder.with_tls_config(
                    opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                        .with_webpki_roots(),
                )
            } else {
                builder
            };
            let mut exporter = builder
                .build()
                .map_err(|err| format!("telemetry: cannot build the OTLP exporter: {err}"))?;
            exporter.set_resource(&resource);
            batch::Batcher::start(exporter, limits)
        }
        OtlpProtocol::Http => {
            let headers = std::env::var("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
                .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_HEADERS"))
                .ok();
            let mut exporter = otlp::HttpExporter::new(
                http_client()?,
                &telemetry.endpoint,
                headers,
                EXPORT_TIMEOUT,
                compression,
            )?;
            exporter.set_resource(&resource);
            batch::Batcher::start(exporter, limits)
        }
    };
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        // The front door has sampled already (`RequestTracing::begin`): a span that exists is
        // exported, and a request it did not sample has none.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(resource)
        .build())
}

/// The span exporter, to shut down when the gateway stops.
pub(crate) struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Sends what is queued, then stops. The SDK blocks while it does; on a blocking thread, so
    /// that the runtime (which drives the gRPC channel and the HTTP client) keeps running.
    pub(crate) async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// A per-layer filter on whether a span is trustgate's: the log layer takes none of them
/// ([`OurSpans::Refused`], beside `log.level`), the OpenTelemetry layer nothing else
/// ([`OurSpans::Only`]: whatever `log.level` lets the log see, another crate's spans are never
/// exported).
enum OurSpans {
    Refused,
    Only,
}

impl OurSpans {
    fn admits(&self, meta: &Metadata<'_>) -> bool {
        is_our_span(meta) == matches!(self, Self::Only)
    }
}

impl<S> Filter<S> for OurSpans {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        self.admits(meta)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        match self {
            // A hint, so that `log.level` stays the process's maximum level: without one, every
            // `debug!` and `trace!` in hyper and tokio would pass the static level check on
            // each call and fall through to its callsite's cached interest (callgrind).
            Self::Refused => Some(LevelFilter::TRACE),
            // trustgate's spans are all at INFO.
            Self::Only => Some(LevelFilter::INFO),
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if self.admits(meta) {
            Interest::always()
        } else {
            Interest::never()
        }
    }
}

/// A global filter: trustgate's spans exist only as a sampled request's root (made only for a
/// sampled request) and under it; anything else it leaves to the layers' own filters.
///
/// Global, not per-layer: a span that every per-layer filter refuses is still created by the
/// registry (tracing-subscriber 0.3 skips it only when all 64 filter slots refused it), which
/// cost each unsampled request six span allocations (callgrind); a layer's `enabled` returning
/// `false` stops it first.
struct UnderSampledRequests;

impl<S> Layer<S> for UnderSampledRequests
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        if is_our_span(meta) && meta.name() != ROOT_SPAN {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        !is_our_span(meta) || meta.name() == ROOT_SPAN || cx.current_span().id().is_some()
    }

    /// It only refuses; what is enabled, and so the maximum level, is the other layers' to say.
    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::OFF)
    }
}

/// Trace context in formats other than W3C's that services' propagators read: B3 (Zipkin, Envoy,
/// Istio), Jaeger, OpenTracing's basic tracer, Datadog, Google Cloud, AWS X-Ray, gRPC's binary
/// context and Sentry. Exact names, or a prefix ending in `-`.
const OTHER_TRACE_CONTEXT: [&str; 13] = [
    "b3",
    "x-b3-",
    "uber-trace-id",
    "uberctx-",
    "jaeger-debug-id",
    "ot-tracer-",
    "ot-baggage-",
    "x-datadog-",
    "x-cloud-trace-context",
    "x-amzn-trace-id",
    "grpc-trace-bin",
    "sentry-trace",
    "elastic-apm-traceparent",
];

/// Whether a request header (its lower-case name) is a client's trace context: W3C's
/// `traceparent`, `tracestate` and `baggage`, or another format's ([`OTHER_TRACE_CONTEXT`]).
/// Removed together when the gateway does not believe the client's context, so that no
/// propagator of the service's continues the client's trace instead of the gateway's.
pub(crate) fn is_client_trace_context(name: &[u8]) -> bool {
    // Most names are ruled out by their first byte (every name below starts with one of these).
    if !matches!(
        name.first(),
        Some(b't' | b'b' | b'x' | b'u' | b'j' | b'o' | b'g' | b's' | b'e')
    ) {
        return false;
    }
    name == TRACEPARENT.as_bytes()
        || name == TRACESTATE.as_bytes()
        || name == BAGGAGE.as_bytes()
        || OTHER_TRACE_CONTEXT.iter().any(|known| {
            let known = known.as_bytes();
            if known.ends_with(b"-") {
                name.starts_with(known)
            } else {
                name == known
            }
        })
}

/// The per-request side of `[telemetry]`: sampling and propagation. Lives as long as the process
/// (the subscriber is installed once), like the exporter.
pub(crate) struct RequestTracing {
    /// A fresh trace is sampled when its draw is below this; `None` samples every one.
    threshold: Option<u64>,
    trust: TrustIncoming,
    span_claims: Box<[String]>,
    ids: RandomIdGenerator,
}

impl std::fmt::Debug for RequestTracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTracing")
            .field("threshold", &self.threshold)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// How this request's trace reaches the upstream.
#[derive(Debug, Clone, Copy)]
enum Propagate {
    /// A believed `traceparent` we do not sample: passed on as it came, with its `tracestate`.
    AsReceived,
    /// A trace of our own we do not sample: the trace id and this parent id, sampled flag clear.
    Unsampled { parent_id: [u8; 8] },
    /// Sampled: the upstream span's own context; `tracestate` kept only if believed.
    FromSpan { believed: bool },
}

/// One request's trace: its id, how to propagate it and, when sampled, its spans.
///
/// Kept in every traced request's future: an unsampled request's trace is these few bytes, with
/// no allocation; the spans of a sampled one are boxed.
#[derive(Debug)]
pub(crate) struct RequestTrace {
    trace_id: [u8; 16],
    propagate: Propagate,
    spans: Option<Box<SampledSpans>>,
}

/// A sampled request's spans.
#[derive(Debug)]
struct SampledSpans {
    request: Span,
    /// The upstream exchange's span, once begun.
    upstream: Option<Span>,
}

/// What an unsampled request's span is: disabled, so that recording on it does nothing.
static NO_SPAN: Span = Span::none();

impl RequestTracing {
    pub(crate) fn new(config: &TelemetryConfig) -> Self {
        // The ratio as a bound on a uniform 64-bit draw; 1.0 samples all (no bound).
        let threshold = (config.sample_ratio < 1.0).then(|| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let bound = (config.sample_ratio * 18_446_744_073_709_551_616.0) as u64;
            bound
        });
        Self {
            threshold,
            trust: config.trust_incoming,
            span_claims: config.span_claims.clone().into_boxed_slice(),
            ids: RandomIdGenerator::default(),
        }
    }

    /// Starts a request's trace: continues a believed `traceparent`, or starts one and samples it
    /// by ratio. The root span exists only when sampled.
    pub(crate) fn begin(
        &self,
        door: Door,
        method: &Method,
        headers: &HeaderMap,
        peer: IpAddr,
        trusted_proxies: &TrustedProxies,
    ) -> RequestTrace {
        let believe = match self.trust {
            TrustIncoming::Never => false,
            TrustIncoming::Always => true,
            TrustIncoming::TrustedProxies => trusted_proxies.contains(peer),
        };
        // Only a `traceparent` sent once: of several, which is the caller's is anyone's guess
        // (a proxy that added its own after the client's; a service that reads another one), so
        // none is continued, as W3C trace-context's test suite asks.
        let believed = believe
            .then(|| {
                let mut values = headers.get_all(TRACEPARENT).iter();
                values.next().filter(|_| values.next().is_none())
            })
            .flatten()
            .and_then(|value| TraceParent::parse(value.as_bytes()));
        let (sampled, trace_id) = match &believed {
            Some(parent) => (parent.sampled(), parent.trace_id),
            None => {
                let trace_id = self.ids.new_trace_id().to_bytes();
                let mut low = [0u8; 8];
                low.copy_from_slice(&trace_id[8..]);
                let draw = u64::from_be_bytes(low);
                (self.threshold.is_none_or(|bound| draw < bound), trace_id)
            }
        };
        if !sampled {
            let propagate = match believed {
                Some(_) => Propagate::AsReceived,
                None => Propagate::Unsampled {
                    parent_id: self.ids.new_span_id().to_bytes(),
                },
            };
            return RequestTrace {
                trace_id,
                propagate,
                spans: None,
            };
        }
        let span = tracing::info_span!(
            "trustgate.request",
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = method.as_str(),
            http.response.status_code = Empty,
            trustgate.door = door.as_str(),
            trustgate.route = Empty,
            trustgate.pattern = Empty,
            trustgate.outcome = Empty,
            trustgate.step = Empty,
            trustgate.reason = Empty,
            trustgate.issuer = Empty,
            trustgate.kid = Empty,
        );
        let trace_id = match believed {
            Some(parent) => {
                let _ = span.set_parent(parent.remote_context());
                parent.trace_id
            }
            None => {
                let context = span.context();
                let ours = context.span().span_context().trace_id();
                // The SDK made the trace id; without a layer (never here) keep the drawn one.
                if ours == TraceId::INVALID {
                    trace_id
                } else {
                    ours.to_bytes()
                }
            }
        };
        RequestTrace {
            trace_id,
            propagate: Propagate::FromSpan {
                believed: believed.is_some(),
            },
            spans: Some(Box::new(SampledSpans {
                request: span,
                upstream: None,
            })),
        }
    }

    /// The claims `telemetry.span_claims` names, as attributes of the request's span.
    pub(crate) fn record_claims(&self, trace: &RequestTrace, token: &VerifiedToken) {
        let Some(spans) = trace.spans.as_deref() else {
            return;
        };
        if self.span_claims.is_empty() {
            return;
        }
        let span = &spans.request;
        let claims = token.claims();
        for name in &self.span_claims {
            let key = format!("trustgate.claim.{name}");
            match claims.get(name) {
                Some(serde_json::Value::String(text)) => {
                    span.set_attribute(key, text.clone());
                }
                Some(serde_json::Value::Bool(flag)) => span.set_attribute(key, *flag),
                Some(serde_json::Value::Number(number)) => {
                    if let Some(int) = number.as_i64() {
                        span.set_attribute(key, int);
                    }
                }
                _ => {}
            }
        }
    }
}

impl RequestTrace {
    /// Runs `future` (a decision) in this trace: when sampled, inside the request's span and with
    /// the decision steps' spans made (`trustgate_core::steps`); as it is otherwise.
    pub(crate) async fn run<F: Future>(&self, future: F) -> F::Output {
        if let Some(spans) = self.spans.as_deref() {
            let mut future = Box::pin(future);
            trustgate_core::steps::traced(&spans.request, future.as_mut()).await
        } else {
            future.await
        }
    }

    /// Whether this request is sampled (its spans exist).
    pub(crate) fn sampled(&self) -> bool {
        self.spans.is_some()
    }

    /// The request's span: disabled when not sampled.
    pub(crate) fn span(&self) -> &Span {
        self.spans
            .as_deref()
            .map_or(&NO_SPAN, |spans| &spans.request)
    }

    /// Whether the client's `traceparent` and `tracestate` are to go: they were not believed. The
    /// proxy removes them with the identity headers, in the pass it makes over every name
    /// anyway, before [`RequestTrace::begin_upstream`].
    pub(crate) fn replaces_client_context(&self) -> bool {
        !matches!(
            self.propagate,
            Propagate::AsReceived | Propagate::FromSpan { believed: true }
        )
    }

    /// The trace id, for the audit log (also when not sampled: the services see the same one).
    pub(crate) fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// Begins the upstream exchange: its span, under the request's (when sampled), and the
    /// upstream request's `traceparent` ([`RequestTrace::inject`]). `headers` no longer carry
    /// the client's trace context when [`RequestTrace::replaces_client_context`] says so.
    pub(crate) fn begin_upstream(&mut self, upstream: &str, headers: &mut HeaderMap) {
        if let Some(spans) = self.spans.as_deref_mut() {
            // Made inside the request's span (contextual parent), which is what the gate
            // (`UnderSampledRequests`) admits.
            spans.upstream = Some(spans.request.in_scope(|| {
                tracing::info_span!(
                    "upstream",
                    otel.kind = "client",
                    trustgate.upstream = upstream,
                    http.response.status_code = Empty,
                    trustgate.reason = Empty,
                )
            }));
        }
        self.inject(headers);
    }

    /// The upstream exchange's span, once begun for a sampled request.
    pub(crate) fn upstream_span(&self) -> Option<&Span> {
        self.spans.as_deref()?.upstream.as_ref()
    }

    /// Sets the upstream request's `traceparent` (and `tracestate`) for this trace: the upstream
    /// span's context when sampled, a fresh unsampled one otherwise, or the believed ones as
    /// they came. A client's own values are gone already unless they were believed (the proxy's
    /// header pass); a sampled request removes them once more, as cheap as it is rare.
    fn inject(&self, headers: &mut HeaderMap) {
        // Constants: `from_static` at run time would check the names' bytes on every request.
        const TRACEPARENT_NAME: HeaderName = HeaderName::from_static(TRACEPARENT);
        const TRACESTATE_NAME: HeaderName = HeaderName::from_static(TRACESTATE);
        let traceparent = TRACEPARENT_NAME;
        let tracestate = TRACESTATE_NAME;
        match self.propagate {
            Propagate::AsReceived => {}
            Propagate::Unsampled { parent_id } => {
                let parent = TraceParent {
                    trace_id: self.trace_id,
                    parent_id,
                    flags: 0,
                };
                headers.insert(traceparent, parent.to_header());
            }
            Propagate::FromSpan { believed } => {
                // Without a span context (none here, or not valid) no `traceparent` at all:
                // never the client's.
                let value = self.upstream_span().and_then(|span| {
                    let context = span.context();
                    let span_context = context.span().span_context().clone();
                    span_context.is_valid().then(|| {
                        TraceParent {
                            trace_id: span_context.trace_id().to_bytes(),
                            parent_id: span_context.span_id().to_bytes(),
                            flags: 1,
                        }
                        .to_header()
                    })
                });
                match value {
                    Some(value) => {
                        headers.insert(traceparent, value);
                    }
                    None => {
                        headers.remove(&traceparent);
                    }
                }
                if !believed {
                    headers.remove(tracestate);
                }
            }
        }
    }
}

/// The OTLP/HTTP exporter's client: hyper-util's, on the connector the JWKS fetcher uses
/// (rustls on aws-lc-rs, the web PKI roots).
fn http_client() -> Result<Client<HttpsConnector<HttpConnector>, Full<Bytes>>, String> {
    let connector = trustgate_core::https_connector(EXPORT_TIMEOUT, &[])
        .map_err(|err| format!("telemetry: TLS: {err}"))?;
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

/// An environment holding only `pairs`, for the `var` functions the setup takes (tests).
#[cfg(test)]
fn test_env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| (*value).to_owned())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use http::HeaderValue;

    fn tracing(ratio: f64, trust: TrustIncoming) -> RequestTracing {
        RequestTracing::new(&TelemetryConfig {
            endpoint: "http://localhost:4317".into(),
            protocol: OtlpProtocol::Grpc,
            sample_ratio: ratio,
            trust_incoming: trust,
            service_name: "t".into(),
            span_claims: Vec::new(),
        })
    }

    fn sampled(trace: &RequestTrace) -> bool {
        matches!(trace.propagate, Propagate::FromSpan { .. })
    }

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn fresh_traces_are_sampled_by_ratio() {
        let peer = IpAddr::from([192, 0, 2, 1]);
        let nobody = TrustedProxies::new(&[]).unwrap();
        for (ratio, low, high) in [(0.0, 0, 0), (0.25, 2200, 2800), (1.0, 10_000, 10_000)] {
            let tracing = tracing(ratio, TrustIncoming::TrustedProxies);
            let count = (0..10_000)
                .filter(|_| {
                    let trace =
                        tracing.begin(Door::Proxy, &Method::GET, &HeaderMap::new(), peer, &nobody);
                    sampled(&trace)
                })
                .count();
            assert!((low..=high).contains(&count), "{ratio}: {count}");
        }
    }

    #[test]
    fn a_traceparent_is_believed_per_trust_incoming() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(PARENT));
        let proxy = IpAddr::from([10, 0, 0, 1]);
        let client = IpAddr::from([192, 0, 2, 1]);
        let proxies = TrustedProxies::new(&["10.0.0.0/8".to_owned()]).unwrap();
        let parent = TraceParent::parse(PARENT.as_bytes()).unwrap().trace_id;
        // Ratio 0: only a believed sampled parent can make a request sampled.
        for (trust, peer, believed) in [
            (TrustIncoming::TrustedProxies, proxy, true),
            (TrustIncoming::TrustedProxies, client, false),
            (TrustIncoming::Never, proxy, false),
            (TrustIncoming::Always, client, true),
        ] {
            let trace =
                tracing(0.0, trust).begin(Door::Proxy, &Method::GET, &headers, peer, &proxies);
            assert_eq!(trace.trace_id() == parent, believed, "{trust:?} {peer}");
            assert_eq!(sampled(&trace), believed, "{trust:?} {peer}");
        }
        // A believed unsampled parent is passed on as it came.
        headers.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
        );
        let trace = tracing(1.0, TrustIncoming::Always).begin(
            Door::Proxy,
            &Method::GET,
            &headers,
            client,
            &proxies,
        );
        assert!(matches!(trace.propagate, Propagate::AsReceived));
        assert!(!trace.replaces_client_context());
        let mut upstream = headers.clone();
        trace.inject(&mut upstream);
        assert_eq!(upstream, headers);
    }

    #[test]
    fn a_duplicated_traceparent_is_not_believed() {
        // Two `traceparent` fields: which one is the caller's is anyone's guess (a proxy that
        // appended its own after the client's, a service that reads the last), so neither is
        // continued (W3C trace-context's `test_traceparent_duplicated`: a new trace id).
        let proxies = TrustedProxies::new(&["10.0.0.0/8".to_owned()]).unwrap();
        let proxy = IpAddr::from([10, 0, 0, 1]);
        let parent = TraceParent::parse(PARENT.as_bytes()).unwrap().trace_id;
        let other = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        for second in [PARENT, other] {
            let mut headers = HeaderMap::new();
            headers.append(TRACEPARENT, HeaderValue::from_static(PARENT));
            headers.append(TRACEPARENT, HeaderValue::from_static(second));
            for trust in [TrustIncoming::TrustedProxies, TrustIncoming::Always] {
                // Ratio 0: only a believed sampled parent can make the request sampled.
                let trace =
                    tracing(0.0, trust).begin(Door::Proxy, &Method::GET, &headers, proxy, &proxies);
                assert!(!sampled(&trace), "{trust:?} {second}");
                assert_ne!(trace.trace_id(), parent, "{trust:?} {second}");
                assert!(trace.replaces_client_context(), "{trust:?} {second}");
                let mut upstream = headers.clone();
                upstream.remove(TRACEPARENT);
                trace.inject(&mut upstream);
                assert_eq!(upstream.get_all(TRACEPARENT).iter().count(), 1);
            }
        }
    }

    #[test]
    fn an_unsampled_fresh_trace_replaces_the_clients_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(PARENT));
        let nobody = TrustedProxies::new(&[]).unwrap();
        let trace = tracing(0.0, TrustIncoming::TrustedProxies).begin(
            Door::Proxy,
            &Method::GET,
            &headers,
            IpAddr::from([192, 0, 2, 1]),
            &nobody,
        );
        // Not believed: the proxy's header pass removes the client's values (e2e), and the
        // `traceparent` is this trace's.
        assert!(trace.replaces_client_context());
        trace.inject(&mut headers);
        let sent = TraceParent::parse(headers[TRACEPARENT].as_bytes()).unwrap();
        assert!(!sent.sampled());
        assert_eq!(sent.trace_id, trace.trace_id());
        assert_ne!(headers[TRACEPARENT], PARENT);
    }
}

#[cfg(test)]
mod filter_tests {
    #![allow(clippy::unwrap_used)]
    use tracing_subscriber::Layer;
    use tracing_subscriber::filter::FilterExt;
    use tracing_subscriber::layer::SubscriberExt;

    use super::{OurSpans, UnderSampledRequests};

    /// The subscriber `init` installs, with a tracer that keeps nothing.
    fn subscriber() -> impl tracing::Subscriber + Send + Sync {
        let log = tracing_subscriber::fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(tracing_subscriber::EnvFilter::new("error").and(OurSpans::Refused));
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let spans = tracing_opentelemetry::layer()
            .with_tracer(opentelemetry::trace::TracerProvider::tracer(&provider, "t"))
            .with_filter(OurSpans::Only);
        tracing_subscriber::registry()
            .with(log)
            .with(spans)
            .with(UnderSampledRequests)
    }

    #[test]
    fn a_step_span_exists_only_under_a_request_span() {
        tracing::subscriber::with_default(subscriber(), || {
            let step = tracing::info_span!(target: "trustgate_edge::decision", "route");
            assert!(step.is_disabled(), "a step's span without a request span");
            let root = tracing::info_span!("trustgate.request");
            assert!(!root.is_disabled());
            let entered = root.enter();
            let step = tracing::info_span!(target: "trustgate_edge::decision", "route");
            assert!(!step.is_disabled(), "a step's span under a request span");
            drop(entered);
            // Another crate's span that the log level lets through is left to the log layer.
            let other = tracing::error_span!(target: "hyper", "conn");
            assert!(!other.is_disabled(), "the log layer still sees other spans");
        });
        // The process's maximum level is the log's (ERROR) or our spans' (INFO), never more.
        assert_eq!(
            tracing::Subscriber::max_level_hint(&subscriber()),
            Some(tracing::level_filters::LevelFilter::INFO)
        );
    }

    #[test]
    fn client_trace_context_is_every_common_format_and_nothing_else() {
        for name in [
            "traceparent",
            "tracestate",
            "baggage",
            "b3",
            "x-b3-traceid",
            "x-b3-sampled",
            "uber-trace-id",
            "uberctx-user",
            "jaeger-debug-id",
            "ot-tracer-traceid",
            "ot-baggage-user",
            "x-datadog-trace-id",
            "x-datadog-sampling-priority",
            "x-cloud-trace-context",
            "x-amzn-trace-id",
            "grpc-trace-bin",
            "sentry-trace",
            "elastic-apm-traceparent",
        ] {
            assert!(super::is_client_trace_context(name.as_bytes()), "{name}");
        }
        // The first-byte filter lets every listed name through, a prefix with any suffix.
        for known in super::OTHER_TRACE_CONTEXT {
            let name = format!("{known}{}", if known.ends_with('-') { "id" } else { "" });
            assert!(super::is_client_trace_context(name.as_bytes()), "{name}");
        }
        for name in [
            "",
            "b",
            "b3x",
            "x-b3",
            "accept",
            "authorization",
            "x-request-id",
            "x-forwarded-for",
            "user-agent",
            "x-datadog",
            "grpc-timeout",
            "traceparents",
            "etag",
        ] {
            assert!(!super::is_client_trace_context(name.as_bytes()), "{name}");
        }
    }
}
