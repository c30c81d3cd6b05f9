//! End-to-end: OpenTelemetry traces. The real gateway exports over OTLP (HTTP and gRPC) to a
//! receiver built from the published protos (`common/otlp.rs`); a service behind it runs
//! `trustgate-service` with its own OTLP exporter. The tests check the span tree (names, parents,
//! attributes) of an allowed request, a refused one, a JWKS fetch, a pattern-4 mint and the
//! service's span, that `traceparent` is believed only from trusted proxies, and that no token
//! byte is ever exported.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::get;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use serde_json::json;
use tracing::instrument::WithSubscriber as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::common::otlp::{Collector, Span};
use crate::common::{Config, Fixture, Gateway, Pattern, Route, Upstream, bearer, rt};

/// Spans leave the gateway's batch processor every 100 ms instead of 5 s.
const FAST_EXPORT: &[(&str, &str)] = &[("OTEL_BSP_SCHEDULE_DELAY", "100")];

fn with_telemetry(config: Config, collector: &Collector, protocol: &str) -> Config {
    config
        .section("telemetry", "enabled", true)
        .section("telemetry", "protocol", protocol)
        .section("telemetry", "endpoint", collector.endpoint(protocol))
        .section("telemetry", "service_name", "gw")
}

/// A gateway exporting to a new receiver over `protocol`.
fn traced(config: Config, protocol: &str) -> (Collector, Gateway) {
    let collector = Collector::start();
    let gateway =
        Gateway::start_with_env(&with_telemetry(config, &collector, protocol), FAST_EXPORT);
    (collector, gateway)
}

/// The fixture's issuer and echo upstream, with a forward-token route at `/fwd`.
/// One public route (no token), traced to `collector` over `protocol`.
fn public_route(f: &Fixture, collector: &Collector, protocol: &str) -> Config {
    with_telemetry(
        f.config()
            .route(Route::new("pub", "/pub", "echo", Pattern::Public)),
        collector,
        protocol,
    )
}

fn forward_token(f: &Fixture) -> Config {
    f.config()
        .route(Route::new("fwd", "/fwd", "echo", Pattern::ForwardToken))
}

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span expected in {spans:#?}");
    found[0]
}

/// The spans one service exported.
fn of(spans: &[Span], service: &str) -> Vec<Span> {
    spans
        .iter()
        .filter(|s| s.service == service)
        .cloned()
        .collect()
}

fn children<'a>(spans: &'a [Span], parent: &Span) -> Vec<&'a str> {
    let mut names: Vec<&str> = spans
        .iter()
        .filter(|s| s.parent == parent.span_id)
        .map(|s| s.name.as_str())
        .collect();
    names.sort_unstable();
    names
}

/// No exported byte holds the token, nor any of its segments (the signature above all).
fn assert_no_token_bytes(collector: &Collector, token: &str) {
    let raw = collector.raw();
    assert!(!raw.is_empty(), "nothing was exported");
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(token.as_bytes()), "the token was exported");
    for segment in token.split('.') {
        assert!(
            !contains(segment.as_bytes()),
            "a token segment was exported: {segment}"
        );
    }
}

/// A service behind the gateway: axum with `trustgate-service`, tracing into `collector` over
/// gRPC as service "svc". `/p4/x` takes the gateway's internal tokens for "svc"; `/p2/x`
/// validates the forwarded token itself, for audience "other", which the gateway's tokens do
/// not have (so the service refuses what the gateway let through). It records each
/// Authorization it receives.
struct Service {
    seen: Arc<Mutex<Vec<String>>>,
    _provider: SdkTracerProvider,
}

impl Service {
    fn bind() -> (tokio::net::TcpListener, SocketAddr) {
        let listener = rt()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    fn start(
        listener: tokio::net::TcpListener,
        collector: &Collector,
        internal_issuer: &str,
        external_issuer: &str,
    ) -> Self {
        let provider = {
            let _runtime = rt().enter();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(collector.endpoint("grpc"))
                .build()
                .unwrap();
            let processor = BatchSpanProcessor::builder(exporter)
                .with_batch_config(
                    BatchConfigBuilder::default()
                        .with_scheduled_delay(Duration::from_millis(100))
                        .build(),
                )
                .build();
            SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_resource(
                    opentelemetry_sdk::Resource::builder_empty()
                        .with_service_name("svc")
                        .build(),
                )
                .build()
        };
        let dispatch = tracing::Dispatch::new(
            tracing_subscriber::registry()
                .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("svc"))),
        );
        let (p4, p2) = rt().block_on(async {
            (
                trustgate_service::TrustgateLayer::internal_tokens(internal_issuer, "svc")
                    .await
                    .unwrap(),
                trustgate_service::TrustgateLayer::jwt(external_issuer, "other")
                    .await
                    .unwrap(),
            )
        });
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = {
            let seen = Arc::clone(&seen);
            move |headers: http::HeaderMap| {
                let seen = Arc::clone(&seen);
                async move {
                    if let Some(value) = headers.get("authorization") {
                        seen.lock()
                            .unwrap()
                            .push(value.to_str().unwrap().to_owned());
                    }
                    "ok"
                }
            }
        };
        let app = axum::Router::new()
            .route("/p4/x", get(record.clone()).layer(p4))
            .route("/p2/x", get(record).layer(p2));
        rt().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                // The service's subscriber, for this connection's requests only: the test
                // process's other servers stay untraced.
                let connection = async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                };
                tokio::spawn(connection.with_subscriber(dispatch.clone()));
            }
        });
        Self {
            seen,
            _provider: provider,
        }
    }
}

/// A gateway with `route` to a [`Service`], both tracing into a new receiver.
fn with_service(f: &Fixture, route: Route, protocol: &str) -> (Collector, Gateway, Service) {
    let (listener, addr) = Service::bind();
    let config = f
        .config()
        .upstream(Upstream::new("svc", &format!("http://{addr}")))
        .route(route)
        .empty_section("internal_issuer");
    let (collector, gateway) = traced(config, protocol);
    let internal_issuer = format!("http://{}", gateway.admin);
    let service = Service::start(listener, &collector, &internal_issuer, &f.iss);
    (collector, gateway, service)
}

#[test]
fn an_allowed_pattern_4_request_is_one_trace_from_the_gateway_into_the_service() {
    let f = Fixture::new();
    let route = Route::new("p4", "/p4", "svc", Pattern::InternalToken).set("service", "svc");
    let (collector, gateway, service) = with_service(&f, route, "http");
    let token = f.token("alice");
    let response = gateway.get("/p4/x", &[("Authorization", &bearer(&token))]);
    assert_eq!(response.status, 200, "{}", response.body_text());

    let all = collector.trace_with("trustgate.service", |_| true);
    // The service validates too, with spans of the same names: the gateway's first.
    let spans = of(&all, "gw");
    let root = named(&spans, "trustgate.request");
    assert_eq!(root.parent, "", "the request span is the trace's root");
    assert_eq!(root.service, "gw");
    assert_eq!(root.via, "http");
    assert_eq!(root.kind, 2, "server");
    assert_eq!(root.attr("trustgate.door"), Some("proxy"));
    assert_eq!(root.attr("trustgate.route"), Some("p4"));
    assert_eq!(root.attr("trustgate.pattern"), Some("internal-token"));
    assert_eq!(root.attr("trustgate.outcome"), Some("allowed"));
    assert_eq!(root.attr("trustgate.issuer"), Some(f.iss.as_str()));
    assert_eq!(root.attr("trustgate.kid"), Some("k1"));
    assert_eq!(root.attr("http.request.method"), Some("GET"));
    assert_eq!(root.attr("http.response.status_code"), Some("200"));
    assert_eq!(root.attr("trustgate.reason"), None);
    assert_eq!(
        children(&spans, root),
        [
            "mint", "require", "route", "sanitize", "token", "upstream", "validate"
        ]
    );
    assert_eq!(
        named(&spans, "route").attr("trustgate.pattern"),
        Some("internal-token")
    );
    assert_eq!(
        named(&spans, "token").attr("trustgate.token.source"),
        Some("header")
    );
    let validate = named(&spans, "validate");
    assert_eq!(children(&spans, validate), ["cache", "claims", "signature"]);
    assert_eq!(named(&spans, "cache").attr("trustgate.cache"), Some("miss"));
    let signature = named(&spans, "signature");
    assert_eq!(signature.attr("trustgate.kid"), Some("k1"));
    assert_eq!(signature.attr("trustgate.alg"), Some("ES256"));
    assert_eq!(signature.attr("trustgate.issuer"), Some(f.iss.as_str()));
    assert_eq!(named(&spans, "mint").attr("trustgate.reason"), None);
    let upstream = named(&spans, "upstream");
    assert_eq!(upstream.kind, 3, "client");
    assert_eq!(upstream.attr("trustgate.upstream"), Some("svc"));
    assert_eq!(upstream.attr("http.response.status_code"), Some("200"));

    // The service's span continues the gateway's trace under its upstream span.
    let service_spans = of(&all, "svc");
    let served = named(&service_spans, "trustgate.service");
    assert_eq!(served.parent, upstream.span_id);
    assert_eq!(served.trace_id, root.trace_id);
    assert_eq!(served.attr("trustgate.mode"), Some("internal-token"));
    assert_eq!(served.attr("trustgate.outcome"), Some("allowed"));
    assert_eq!(
        served.attr("trustgate.issuer"),
        Some(format!("http://{}", gateway.admin).as_str())
    );
    assert_eq!(
        children(&service_spans, served),
        ["validate"],
        "the service's own validation is under its span"
    );

    // A second request hits the gateway's cache.
    assert_eq!(
        gateway
            .get("/p4/x", &[("Authorization", &bearer(&token))])
            .status,
        200
    );
    collector.wait_for(|spans| {
        spans.iter().any(|s| {
            s.name == "cache" && s.service == "gw" && s.attr("trustgate.cache") == Some("hit")
        })
    });

    let internal = service.seen.lock().unwrap().clone();
    assert_eq!(internal.len(), 2);
    assert_no_token_bytes(&collector, &token);
    for minted in internal {
        assert_no_token_bytes(&collector, minted.trim_start_matches("Bearer "));
    }
}

#[test]
fn the_service_span_shows_when_the_service_refuses_what_the_gateway_allowed() {
    let f = Fixture::new();
    let route = Route::new("p2", "/p2", "svc", Pattern::ForwardToken);
    let (collector, gateway, _service) = with_service(&f, route, "grpc");
    let token = f.token("alice");
    assert_eq!(
        gateway
            .get("/p2/x", &[("Authorization", &bearer(&token))])
            .status,
        401
    );
    let all = collector.trace_with("trustgate.service", |_| true);
    let spans = of(&all, "gw");
    let root = named(&spans, "trustgate.request");
    assert_eq!(root.via, "grpc");
    assert_eq!(root.attr("trustgate.outcome"), Some("allowed"));
    assert_eq!(root.attr("http.response.status_code"), Some("401"));
    let served = named(&all, "trustgate.service");
    assert_eq!(served.parent, named(&spans, "upstream").span_id);
    assert_eq!(served.attr("trustgate.outcome"), Some("refused"));
    assert_eq!(served.attr("trustgate.reason"), Some("bad_audience"));
    assert_no_token_bytes(&collector, &token);
}

#[test]
fn a_refused_request_names_its_step_and_reason() {
    let f = Fixture::new();
    let (collector, gateway) = traced(forward_token(&f), "grpc");

    let expired = f.expired_token("bob");
    let response = gateway.get("/fwd/x", &[("Authorization", &bearer(&expired))]);
    assert_eq!(response.status, 401);
    let spans = collector.trace_with("trustgate.request", |s| {
        s.attr("trustgate.reason") == Some("expired")
    });
    let root = named(&spans, "trustgate.request");
    assert_eq!(root.attr("trustgate.outcome"), Some("unauthorized"));
    assert_eq!(root.attr("trustgate.step"), Some("validate"));
    assert_eq!(root.attr("trustgate.route"), Some("fwd"));
    assert_eq!(root.attr("trustgate.pattern"), Some("forward-token"));
    assert_eq!(root.attr("http.response.status_code"), Some("401"));
    assert_eq!(
        children(&spans, root),
        ["route", "sanitize", "token", "validate"],
        "no upstream span for a refusal"
    );
    assert_eq!(
        named(&spans, "validate").attr("trustgate.reason"),
        Some("expired")
    );
    assert_eq!(
        named(&spans, "claims").attr("trustgate.reason"),
        Some("expired")
    );
    assert_eq!(named(&spans, "signature").attr("trustgate.reason"), None);

    // A key the issuer never published under a published kid: the signature step refuses.
    let forged =
        test_support::TestKey::es256("k1").sign(&test_support::claims(&f.iss, "api", "eve"));
    assert_eq!(
        gateway
            .get("/fwd/x", &[("Authorization", &bearer(&forged))])
            .status,
        401
    );
    let spans = collector.trace_with("trustgate.request", |s| {
        s.attr("trustgate.reason") == Some("bad_signature")
    });
    // The key under that kid may have been replaced at the issuer: one refetch (in its own
    // window), then the signature step refuses.
    let mut signatures: Vec<Option<&str>> = spans
        .iter()
        .filter(|s| s.name == "signature")
        .map(|s| s.attr("trustgate.reason"))
        .collect();
    signatures.sort_unstable();
    assert_eq!(signatures, [None, Some("bad_signature")]);
    assert_eq!(
        named(&spans, "jwks_fetch").attr("trustgate.jwks.outcome"),
        Some("found")
    );
    assert!(
        spans.iter().all(|s| s.name != "claims"),
        "claims are not read after a bad signature"
    );

    // No token at all: the token step.
    assert_eq!(gateway.get("/fwd/x", &[]).status, 401);
    let spans = collector.trace_with("trustgate.request", |s| {
        s.attr("trustgate.reason") == Some("missing_token")
    });
    assert_eq!(
        named(&spans, "trustgate.request").attr("trustgate.step"),
        Some("token")
    );
    assert_eq!(
        named(&spans, "token").attr("trustgate.token.source"),
        Some("none")
    );

    assert_no_token_bytes(&collector, &expired);
    assert_no_token_bytes(&collector, &forged);
}

#[test]
fn an_unknown_kid_shows_the_jwks_fetch_inside_the_request() {
    let f = Fixture::new();
    let (collector, gateway) = traced(forward_token(&f), "http");
    // The issuer rotates in a second key after the gateway fetched the first.
    let k2 = test_support::TestKey::es256("k2");
    f.issuer.set_keys(&[&f.key, &k2]);
    let token = k2.sign(&test_support::claims(&f.iss, "api", "carol"));
    assert_eq!(
        gateway
            .get("/fwd/x", &[("Authorization", &bearer(&token))])
            .status,
        200
    );
    let spans = collector.trace_with("jwks_fetch", |_| true);
    let validate = named(&spans, "validate");
    let fetch = named(&spans, "jwks_fetch");
    assert_eq!(fetch.parent, validate.span_id);
    assert_eq!(fetch.attr("trustgate.jwks.outcome"), Some("found"));
    assert_eq!(fetch.attr("trustgate.issuer"), Some(f.iss.as_str()));
    assert_eq!(named(&spans, "jwks_refresh").parent, fetch.span_id);
    // Tried against the published keys, then again after the fetch.
    let signatures: Vec<&Span> = spans.iter().filter(|s| s.name == "signature").collect();
    assert_eq!(signatures.len(), 2, "{spans:#?}");
    assert!(
        signatures
            .iter()
            .any(|s| s.attr("trustgate.kid") == Some("k2"))
    );
    assert_eq!(
        named(&spans, "trustgate.request").attr("trustgate.kid"),
        Some("k2")
    );
    assert_no_token_bytes(&collector, &token);
}

/// The `traceparent` a client sends: trace id, parent span id, flags.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_PARENT: &str = "00f067aa0ba902b7";

fn traceparent(flags: &str) -> String {
    format!("00-{CLIENT_TRACE}-{CLIENT_PARENT}-{flags}")
}

#[test]
fn a_traceparent_is_believed_only_from_a_trusted_proxy() {
    let f = Fixture::new();
    let collector = Collector::start();
    let base = public_route(&f, &collector, "grpc");
    let sent = traceparent("01");
    let headers = [
        ("traceparent", sent.as_str()),
        ("tracestate", "vendor=x"),
        ("baggage", "user.id=admin,tenant=acme"),
    ];

    // From an untrusted client: a trace of the gateway's own, the client's values replaced, and
    // its baggage (entries a service's propagator would take as context) gone.
    let gateway = Gateway::start_with_env(&base, FAST_EXPORT);
    assert_eq!(gateway.get("/pub/x", &headers).status, 200);
    let forwarded = f.upstream.last().unwrap();
    let value = forwarded.header("traceparent").unwrap().to_owned();
    assert!(!value.contains(CLIENT_TRACE), "{value}");
    assert!(value.ends_with("-01"), "sampled: {value}");
    assert_eq!(forwarded.header("tracestate"), None);
    assert!(forwarded.header_values("baggage").is_empty());
    let spans = collector.trace_with("trustgate.request", |_| true);
    let root = named(&spans, "trustgate.request");
    assert_eq!(root.parent, "");
    assert_eq!(
        value,
        format!(
            "00-{}-{}-01",
            root.trace_id,
            named(&spans, "upstream").span_id
        ),
        "the upstream is told the upstream span's context"
    );
    drop(gateway);

    // From a trusted proxy: the trace continues under the caller's span, tracestate kept.
    let trusted = base.clone().server("trusted_proxies", json!(["127.0.0.1"]));
    let gateway = Gateway::start_with_env(&trusted, FAST_EXPORT);
    assert_eq!(gateway.get("/pub/x", &headers).status, 200);
    let spans = collector.trace_with("trustgate.request", |s| s.trace_id == CLIENT_TRACE);
    let root = named(&spans, "trustgate.request");
    assert_eq!(root.parent, CLIENT_PARENT);
    let forwarded = f.upstream.last().unwrap();
    assert_eq!(
        forwarded.header("traceparent"),
        Some(format!("00-{CLIENT_TRACE}-{}-01", named(&spans, "upstream").span_id).as_str())
    );
    assert_eq!(forwarded.header("tracestate"), Some("vendor=x"));
    assert_eq!(
        forwarded.header("baggage"),
        Some("user.id=admin,tenant=acme")
    );

    // An unsampled trace from a trusted proxy: no span, and its values passed on as they came.
    let unsampled = traceparent("00");
    let before = collector.spans().len();
    assert_eq!(
        gateway
            .get(
                "/pub/y",
                &[
                    ("traceparent", unsampled.as_str()),
                    ("tracestate", "vendor=y")
                ]
            )
            .status,
        200
    );
    let forwarded = f.upstream.last().unwrap();
    assert_eq!(forwarded.header("traceparent"), Some(unsampled.as_str()));
    assert_eq!(forwarded.header("tracestate"), Some("vendor=y"));
    std::thread::sleep(Duration::from_millis(500));
    drop(gateway);
    assert_eq!(
        collector.spans().len(),
        before,
        "an unsampled request exported spans"
    );

    // `trust_incoming = "never"`: even a trusted proxy's trace is not continued.
    let never = trusted.section("telemetry", "trust_incoming", "never");
    let gateway = Gateway::start_with_env(&never, FAST_EXPORT);
    assert_eq!(gateway.get("/pub/z", &headers).status, 200);
    let value = f
        .upstream
        .last()
        .unwrap()
        .header("traceparent")
        .unwrap()
        .to_owned();
    assert!(!value.contains(CLIENT_TRACE), "{value}");
}

#[test]
fn an_unsampled_request_exports_nothing_and_still_propagates_its_trace() {
    let f = Fixture::new();
    let collector = Collector::start();
    let config = public_route(&f, &collector, "http")
        .server("trusted_proxies", json!(["127.0.0.1"]))
        .section("telemetry", "sample_ratio", 0.0);
    let gateway = Gateway::start_with_env(&config, FAST_EXPORT);
    let mut seen = Vec::new();
    for _ in 0..5 {
        assert_eq!(gateway.get("/pub/x", &[]).status, 200);
        let value = f
            .upstream
            .last()
            .unwrap()
            .header("traceparent")
            .unwrap()
            .to_owned();
        assert!(
            value.ends_with("-00"),
            "not sampled, and the service is told: {value}"
        );
        seen.push(value);
    }
    seen.dedup();
    assert_eq!(
        seen.len(),
        5,
        "each request is a trace of its own: {seen:?}"
    );
    // Parent-based first: a caller's sampled trace is recorded whatever the ratio.
    let sent = traceparent("01");
    assert_eq!(
        gateway
            .get("/pub/y", &[("traceparent", sent.as_str())])
            .status,
        200
    );
    collector.trace_with("trustgate.request", |s| s.trace_id == CLIENT_TRACE);
    std::thread::sleep(Duration::from_millis(500));
    let spans = collector.spans();
    assert!(
        spans.iter().all(|s| s.trace_id == CLIENT_TRACE),
        "an unsampled request exported spans: {spans:#?}"
    );
}

#[test]
fn an_unsampled_untrusted_clients_trace_context_never_reaches_the_upstream() {
    let f = Fixture::new();
    let collector = Collector::start();
    let config = public_route(&f, &collector, "http").section("telemetry", "sample_ratio", 0.0);
    let gateway = Gateway::start_with_env(&config, FAST_EXPORT);
    let sent = traceparent("01");
    // Each spelling and duplicate of the names: all are the same header to HTTP.
    let response = gateway.get(
        "/pub/x",
        &[
            ("TraceParent", sent.as_str()),
            ("traceparent", sent.as_str()),
            ("TRACESTATE", "vendor=x"),
            ("tracestate", "other=y"),
            // Other formats' context: a service reading one of them first would continue the
            // client's trace, not the gateway's.
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("X-B3-Sampled", "1"),
            ("uber-trace-id", "80f198ee56343ba8:e457b5a2e4d86bd1:0:1"),
            ("x-datadog-sampling-priority", "2"),
        ],
    );
    assert_eq!(response.status, 200);
    let forwarded = f.upstream.last().unwrap();
    for name in [
        "b3",
        "x-b3-traceid",
        "x-b3-sampled",
        "uber-trace-id",
        "x-datadog-sampling-priority",
    ] {
        assert!(
            forwarded.header_values(name).is_empty(),
            "{name}: {:?}",
            forwarded.headers
        );
    }
    let values = forwarded.header_values("traceparent");
    assert_eq!(values.len(), 1, "{values:?}");
    let ours = values[0];
    assert!(!ours.contains(CLIENT_TRACE), "{ours}");
    assert!(ours.starts_with("00-") && ours.ends_with("-00"), "{ours}");
    assert_eq!(ours.len(), 55, "{ours}");
    assert!(
        forwarded
            .headers
            .iter()
            .all(|(name, _)| !name.eq_ignore_ascii_case("tracestate")),
        "{:?}",
        forwarded.headers
    );
}

#[test]
fn otlp_http_export_sends_the_otel_headers_and_retries_an_unavailable_collector() {
    let f = Fixture::new();
    let collector = Collector::start();
    let config = public_route(&f, &collector, "http");
    // The traces-specific list wins over the general one.
    let env = [
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-general=ignored"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "x-collector-key=k%3D1, x-tenant=acme",
        ),
    ];
    collector.refuse_next(2);
    let gateway = Gateway::start_with_env(&config, &env);
    assert_eq!(gateway.get("/pub/x", &[]).status, 200);
    // Two 503s, then the same batch again: its spans arrive once.
    let spans = collector.trace_with("trustgate.request", |_| true);
    assert_eq!(collector.refused(), 2);
    assert_eq!(
        spans
            .iter()
            .filter(|span| span.name == "trustgate.request")
            .count(),
        1,
        "{spans:#?}"
    );
    let headers = collector.http_headers();
    let header = |name: &str| {
        headers
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(header("content-type"), ["application/x-protobuf"]);
    assert_eq!(header("x-collector-key"), ["k=1"]);
    assert_eq!(header("x-tenant"), ["acme"]);
    assert!(header("x-general").is_empty(), "{headers:?}");
}

/// `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`, the variable a platform sets for every workload, is
/// done over both protocols: the receiver decodes the bodies it is sent (a collector refuses an
/// unknown coding) and sees which coding each export came in.
#[test]
fn otlp_export_gzips_its_bodies_when_asked_over_http_and_grpc() {
    for protocol in ["http", "grpc"] {
        let f = Fixture::new();
        let collector = Collector::start();
        let config = public_route(&f, &collector, protocol);
        let env = [
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ];
        let gateway = Gateway::start_with_env(&config, &env);
        assert_eq!(gateway.get("/pub/x", &[]).status, 200);
        let spans = collector.trace_with("trustgate.request", |_| true);
        assert!(
            spans.iter().all(|span| span.via == protocol),
            "{protocol}: {spans:#?}"
        );
        let encodings = collector.encodings();
        assert!(!encodings.is_empty(), "{protocol}");
        for (via, coding) in &encodings {
            assert_eq!((*via, coding.as_str()), (protocol, "gzip"), "{encodings:?}");
        }
        if protocol == "http" {
            let headers = collector.http_headers();
            let coding: Vec<_> = headers
                .iter()
                .filter(|(name, _)| name == "content-encoding")
                .map(|(_, value)| value.as_str())
                .collect();
            assert_eq!(coding, ["gzip"], "{headers:?}");
        }
    }
}

/// Without the variable the bodies go uncompressed, and a compression neither protocol does here
/// stops the start with a message naming the variable, rather than being ignored.
#[test]
fn otlp_export_is_uncompressed_by_default_and_an_unknown_compression_stops_the_start() {
    let f = Fixture::new();
    let (collector, gateway) = traced(
        f.config()
            .route(Route::new("pub", "/pub", "echo", Pattern::Public)),
        "http",
    );
    assert_eq!(gateway.get("/pub/x", &[]).status, 200);
    collector.trace_with("trustgate.request", |_| true);
    let encodings = collector.encodings();
    assert!(!encodings.is_empty());
    assert!(
        encodings
            .iter()
            .all(|(via, coding)| *via == "http" && coding == "identity"),
        "{encodings:?}"
    );
    drop(gateway);

    let dir = crate::common::TempDir::new();
    for protocol in ["http", "grpc"] {
        let file = dir.write(
            &format!("{protocol}.toml"),
            &public_route(&f, &collector, protocol).to_toml(),
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_trustgate"))
            .args(["serve", "-c", file.to_str().unwrap()])
            .env_remove("RUST_LOG")
            .env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{protocol}: {stderr}");
        assert!(
            stderr.contains(
                "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION = \"zstd\" is not supported; \
                 set \"gzip\" or \"none\""
            ),
            "{protocol}: {stderr}"
        );
    }
}

#[test]
fn with_telemetry_off_a_traceparent_passes_as_any_header() {
    let f = Fixture::new();
    let gateway =
        Gateway::start(
            &f.config()
                .route(Route::new("pub", "/pub", "echo", Pattern::Public)),
        );
    let sent = traceparent("01");
    assert_eq!(
        gateway
            .get("/pub/x", &[("traceparent", sent.as_str())])
            .status,
        200
    );
    assert_eq!(
        f.upstream.last().unwrap().header("traceparent"),
        Some(sent.as_str())
    );
}

#[test]
fn named_claims_are_span_attributes_and_no_other_claim_is() {
    let f = Fixture::new();
    let config = forward_token(&f).section("telemetry", "span_claims", json!(["tenant"]));
    let (collector, gateway) = traced(config, "grpc");
    let token = f.token_with(
        "dave-subject",
        json!({"tenant": "acme", "email": "dave@example.test"}),
    );
    assert_eq!(
        gateway
            .get("/fwd/x", &[("Authorization", &bearer(&token))])
            .status,
        200
    );
    let spans = collector.trace_with("trustgate.request", |_| true);
    let root = named(&spans, "trustgate.request");
    assert_eq!(root.attr("trustgate.claim.tenant"), Some("acme"));
    let raw = collector.raw();
    let contains = |needle: &[u8]| raw.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"dave-subject"), "the subject is a claim value");
    assert!(!contains(b"dave@example.test"));
    assert_no_token_bytes(&collector, &token);
}

/// A request's trailers are the client's too: its trace context there (after a chunked body,
/// declared in `Trailer`) reaches the upstream no more than in the head. A service that merges
/// trailers into its headers would otherwise read a trace context the gateway did not believe.
#[test]
fn an_untrusted_clients_trace_context_in_request_trailers_never_reaches_the_upstream() {
    let f = Fixture::new();
    let collector = Collector::start();
    let config = public_route(&f, &collector, "http").section("telemetry", "sample_ratio", 0.0);
    let gateway = Gateway::start_with_env(&config, FAST_EXPORT);
    let sent = traceparent("01");
    let request = format!(
        "POST /pub/x HTTP/1.1\r\nHost: gw.test\r\n\
         Trailer: X-Checksum, TraceParent, tracestate, Baggage\r\nTransfer-Encoding: chunked\r\n\r\n\
         5\r\nhello\r\n0\r\nX-Checksum: abc\r\nTraceParent: {sent}\r\ntracestate: vendor=x\r\n\
         Baggage: user.id=admin\r\n\r\n"
    );
    let response = gateway.raw(request.as_bytes());
    assert_eq!(response.status, 200, "{}", response.body_text());
    let seen = f.upstream.last().unwrap();
    assert_eq!(seen.body, b"hello");
    let ours = seen.header("traceparent").unwrap();
    assert!(!ours.contains(CLIENT_TRACE), "{ours}");
    assert_eq!(seen.trailers, [("x-checksum".to_owned(), "abc".to_owned())]);
    assert_eq!(seen.header_values("trailer"), ["x-checksum"]);
}
