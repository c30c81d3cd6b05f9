//! An OTLP receiver for the tests, built from the published OpenTelemetry protos
//! (`opentelemetry-proto`): OTLP/HTTP (`POST /v1/traces`, protobuf) and OTLP/gRPC (the generated
//! `TraceService`), each on its own port. It decodes every export into spans and keeps every
//! export's bytes, so a test can check the span tree and that no token byte was exported.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as ProtoValue;
use prost::Message as _;
use tokio::net::TcpListener;

use super::rt;

/// One exported span, flattened for assertions. Ids are lower-case hex; `parent` is empty for a
/// root.
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    /// 2 = server, 3 = client (the protos' `SpanKind`).
    pub kind: i32,
    /// 2 = error (the protos' `StatusCode`), 0 = unset.
    pub status: i32,
    /// The resource's `service.name`.
    pub service: String,
    /// Every attribute, its value as text.
    pub attributes: BTreeMap<String, String>,
    /// Which transport brought it: "http" or "grpc".
    pub via: &'static str,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<Span>,
    /// The headers of the last OTLP/HTTP export request.
    http_headers: Vec<(String, String)>,
    /// OTLP/HTTP export requests still to answer 503 (with `Retry-After: 0`), then counted.
    unavailable: usize,
    refused: usize,
    /// Every export request's protobuf bytes, as received (HTTP, decompressed) or re-encoded
    /// (gRPC).
    raw: Vec<u8>,
    /// Each export's transport and its body's coding as received: `Content-Encoding` (HTTP) or
    /// `grpc-encoding` (gRPC), "identity" when there is none.
    encodings: Vec<(&'static str, String)>,
}

/// The running receiver.
pub struct Collector {
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Collector {
    pub fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let (http, grpc) = rt().block_on(async {
            let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
            (http, grpc)
        });
        let addrs = (http.local_addr().unwrap(), grpc.local_addr().unwrap());
        let shared = Arc::clone(&state);
        rt().spawn(async move {
            loop {
                let Ok((stream, _)) = http.accept().await else {
                    continue;
                };
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let state = Arc::clone(&state);
                        async move {
                            {
                                let mut state = state.lock().unwrap();
                                state.http_headers = req
                                    .headers()
                                    .iter()
                                    .map(|(name, value)| {
                                        (
                                            name.to_string(),
                                            String::from_utf8_lossy(value.as_bytes()).into_owned(),
                                        )
                                    })
                                    .collect();
                                if state.unavailable > 0 {
                                    state.unavailable -= 1;
                                    state.refused += 1;
                                    let mut response = http::Response::new(Full::new(Bytes::new()));
                                    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                                    response.headers_mut().insert(
                                        http::header::RETRY_AFTER,
                                        http::HeaderValue::from_static("0"),
                                    );
                                    return Ok::<_, Infallible>(response);
                                }
                            }
                            let ok = req.method() == http::Method::POST
                                && req.uri().path() == "/v1/traces";
                            let coding = req
                                .headers()
                                .get(http::header::CONTENT_ENCODING)
                                .map_or("identity".to_owned(), |value| {
                                    String::from_utf8_lossy(value.as_bytes()).into_owned()
                                });
                            let received = req.into_body().collect().await.unwrap().to_bytes();
                            // As a collector does: gzip is decoded, any other coding refused.
                            let body = match coding.as_str() {
                                "identity" => Some(received),
                                "gzip" => {
                                    let mut plain = Vec::new();
                                    flate2::read::GzDecoder::new(&received[..])
                                        .read_to_end(&mut plain)
                                        .ok()
                                        .map(|_| Bytes::from(plain))
                                }
                                _ => None,
                            };
                            let mut response = http::Response::new(Full::new(Bytes::new()));
                            let Some(body) = body else {
                                *response.status_mut() = http::StatusCode::UNSUPPORTED_MEDIA_TYPE;
                                return Ok::<_, Infallible>(response);
                            };
                            state.lock().unwrap().encodings.push(("http", coding));
                            match ExportTraceServiceRequest::decode(body.clone()) {
                                Ok(export) if ok => {
                                    keep(&state, &export, &body, "http");
                                    *response.body_mut() = Full::new(Bytes::from(
                                        ExportTraceServiceResponse::default().encode_to_vec(),
                                    ));
                                    response.headers_mut().insert(
                                        http::header::CONTENT_TYPE,
                                        http::HeaderValue::from_static("application/x-protobuf"),
                                    );
                                }
                                _ => *response.status_mut() = http::StatusCode::BAD_REQUEST,
                            }
                            Ok::<_, Infallible>(response)
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let shared = Arc::clone(&state);
        rt().spawn(async move {
            loop {
                let Ok((stream, _)) = grpc.accept().await else {
                    continue;
                };
                let service = TraceServiceServer::new(Grpc {
                    state: Arc::clone(&shared),
                })
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                        .await;
                });
            }
        });
        Self {
            http: addrs.0,
            grpc: addrs.1,
            state,
        }
    }

    /// The headers of the last OTLP/HTTP export request, as received.
    pub fn http_headers(&self) -> Vec<(String, String)> {
        self.state.lock().unwrap().http_headers.clone()
    }

    /// Answers the next `count` OTLP/HTTP exports 503 (`Retry-After: 0`).
    pub fn refuse_next(&self, count: usize) {
        self.state.lock().unwrap().unavailable = count;
    }

    /// How many exports were answered 503.
    pub fn refused(&self) -> usize {
        self.state.lock().unwrap().refused
    }

    /// The base URL for `protocol` ("http" or "grpc").
    pub fn endpoint(&self, protocol: &str) -> String {
        match protocol {
            "grpc" => format!("http://{}", self.grpc),
            _ => format!("http://{}", self.http),
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.state.lock().unwrap().spans.clone()
    }

    /// Each export so far: its transport ("http" or "grpc") and its body's coding as received.
    pub fn encodings(&self) -> Vec<(&'static str, String)> {
        self.state.lock().unwrap().encodings.clone()
    }

    /// Every exported byte so far.
    pub fn raw(&self) -> Vec<u8> {
        self.state.lock().unwrap().raw.clone()
    }

    /// Waits up to 15 s until `ready` holds for the spans received, and returns them.
    pub fn wait_for(&self, ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let mut spans = Vec::new();
        let done = super::wait_until(Duration::from_secs(15), || {
            spans = self.spans();
            ready(&spans)
        });
        assert!(done, "the expected spans never arrived; got:\n{spans:#?}");
        spans
    }

    /// Waits for a span named `name` and returns the whole trace it belongs to.
    pub fn trace_with(&self, name: &str, matches: impl Fn(&Span) -> bool) -> Vec<Span> {
        let spans = self.wait_for(|spans| spans.iter().any(|s| s.name == name && matches(s)));
        let trace_id = spans
            .iter()
            .find(|s| s.name == name && matches(s))
            .map(|s| s.trace_id.clone())
            .unwrap();
        spans
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

struct Grpc {
    state: Arc<Mutex<State>>,
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let coding = request
            .metadata()
            .get("grpc-encoding")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("identity")
            .to_owned();
        self.state.lock().unwrap().encodings.push(("grpc", coding));
        let export = request.into_inner();
        let bytes = export.encode_to_vec();
        keep(&self.state, &export, &bytes, "grpc");
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn keep(state: &Mutex<State>, export: &ExportTraceServiceRequest, bytes: &[u8], via: &'static str) {
    let mut state = state.lock().unwrap();
    state.raw.extend_from_slice(bytes);
    for resource in &export.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .map(value_text)
            .unwrap_or_default();
        for scope in &resource.scope_spans {
            for span in &scope.spans {
                state.spans.push(Span {
                    name: span.name.clone(),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    kind: span.kind,
                    status: span.status.as_ref().map_or(0, |s| s.code),
                    service: service.clone(),
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), value_text(kv)))
                        .collect(),
                    via,
                });
            }
        }
    }
}

fn value_text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(ProtoValue::StringValue(s)) => s.clone(),
        Some(ProtoValue::BoolValue(b)) => b.to_string(),
        Some(ProtoValue::IntValue(i)) => i.to_string(),
        Some(ProtoValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
