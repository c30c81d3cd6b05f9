//! The OTLP/HTTP span export: the protobuf body written straight from the SDK's span data.
//!
//! `opentelemetry-otlp` first converts every span into the generated message structs (a `String`
//! or `Vec` for each id, name, attribute key and value), hashes each span's scope to group them,
//! then has prost size and write the tree and drops it: some 60,000 instructions per sampled
//! request of eight spans (callgrind), as much as the request itself. Here each field is written
//! once into one buffer. The messages are those of `opentelemetry/proto/trace/v1` and
//! `collector/trace/v1`; `tests` decodes what this writes with the published protos and compares
//! it with what `opentelemetry-proto`'s own conversion makes of the same spans.
//!
//! gRPC export stays with `opentelemetry-otlp` (tonic).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry::{Array, InstrumentationScope, KeyValue, StringValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

// ---------------------------------------------------------------------------------------------
// Protobuf writing

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

/// A varint's bytes (at most ten for a u64) and how many there are.
fn varint_bytes(mut value: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut len = 0;
    for byte in &mut bytes {
        // Truncation intended: the low seven bits, with the continuation bit.
        #[allow(clippy::cast_possible_truncation)]
        let low = value as u8 & 0x7f;
        value >>= 7;
        len += 1;
        if value == 0 {
            *byte = low;
            break;
        }
        *byte = low | 0x80;
    }
    (bytes, len)
}

#[inline]
fn varint(out: &mut Vec<u8>, value: u64) {
    // Field keys, small counts and most lengths: one byte (callgrind: the general path for
    // every varint cost a batch of eight-span requests 14,000 instructions a request more).
    if let Ok(byte) = u8::try_from(value)
        && byte < 0x80
    {
        out.push(byte);
        return;
    }
    let (bytes, len) = varint_bytes(value);
    out.extend_from_slice(&bytes[..len]);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u32) {
    varint(out, u64::from(field << 3 | wire));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A `string` or `bytes` field: absent when empty (proto3's default).
fn non_empty(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        bytes_field(out, field, bytes);
    }
}

/// A `uint32`, `int64` or enum field: absent when zero.
fn non_zero(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, VARINT);
        varint(out, value);
    }
}

fn fixed64(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        key(out, field, FIXED64);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

fn fixed32(out: &mut Vec<u8>, field: u32, value: u32) {
    if value != 0 {
        key(out, field, FIXED32);
        out.extend_from_slice(&value.to_le_bytes());
    }
}

/// A message field: written in place after a one-byte length, which grows (the message moved
/// right) in the rare case it needs more. No buffer of its own, no sizing pass.
fn message(out: &mut Vec<u8>, field: u32, write: impl FnOnce(&mut Vec<u8>)) {
    key(out, field, LEN);
    let at = out.len();
    out.push(0);
    write(out);
    let len = out.len() - at - 1;
    if let Ok(short) = u8::try_from(len)
        && short < 0x80
    {
        out[at] = short;
    } else {
        let (prefix, prefix_len) = varint_bytes(len as u64);
        out.splice(at..=at, prefix[..prefix_len].iter().copied());
    }
}

// ---------------------------------------------------------------------------------------------
// The OTLP messages

/// `AnyValue`: a oneof, so written even when it is its type's default.
fn any_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Bool(flag) => {
            key(out, 2, VARINT);
            varint(out, u64::from(*flag));
        }
        Value::I64(int) => {
            key(out, 3, VARINT);
            // Two's complement, as protobuf's int64.
            #[allow(clippy::cast_sign_loss)]
            varint(out, *int as u64);
        }
        Value::F64(double) => {
            key(out, 4, FIXED64);
            out.extend_from_slice(&double.to_le_bytes());
        }
        Value::String(text) => bytes_field(out, 1, text.as_str().as_bytes()),
        Value::Array(array) => message(out, 5, |out| match array {
            Array::Bool(items) => array_values(out, items, |item| Value::Bool(*item)),
            Array::I64(items) => array_values(out, items, |item| Value::I64(*item)),
            Array::F64(items) => array_values(out, items, |item| Value::F64(*item)),
            Array::String(items) => {
                array_values(out, items, |item: &StringValue| Value::String(item.clone()))
            }
            // A kind this code does not know (the enum is non-exhaustive): an empty array.
            _ => {}
        }),
        // A kind of value this code does not know: no value (an empty `AnyValue`).
        _ => {}
    }
}

fn array_values<T>(out: &mut Vec<u8>, items: &[T], as_value: impl Fn(&T) -> Value) {
    for item in items {
        message(out, 1, |out| any_value(out, &as_value(item)));
    }
}

fn key_values<'a>(
    out: &mut Vec<u8>,
    field: u32,
    attributes: impl IntoIterator<Item = &'a KeyValue>,
) {
    for attribute in attributes {
        message(out, field, |out| {
            non_empty(out, 1, attribute.key.as_str().as_bytes());
            message(out, 2, |out| any_value(out, &attribute.value));
        });
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| {
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    })
}

/// `SpanFlags`: the W3C flags, and whether the parent's context was remote (known, and which).
fn span_flags(trace_flags: u8, parent_is_remote: bool) -> u32 {
    const HAS_IS_REMOTE: u32 = 0x100;
    const IS_REMOTE: u32 = 0x200;
    u32::from(trace_flags) | HAS_IS_REMOTE | if parent_is_remote { IS_REMOTE } else { 0 }
}

fn span_kind(kind: &SpanKind) -> u64 {
    match kind {
        SpanKind::Internal => 1,
        SpanKind::Server => 2,
        SpanKind::Client => 3,
        SpanKind::Producer => 4,
        SpanKind::Consumer => 5,
    }
}

fn span(out: &mut Vec<u8>, span: &SpanData) {
    let context = &span.span_context;
    bytes_field(out, 1, &context.trace_id().to_bytes());
    bytes_field(out, 2, &context.span_id().to_bytes());
    non_empty(out, 3, context.trace_state().header().as_bytes());
    if span.parent_span_id != opentelemetry::trace::SpanId::INVALID {
        bytes_field(out, 4, &span.parent_span_id.to_bytes());
    }
    non_empty(out, 5, span.name.as_bytes());
    non_zero(out, 6, span_kind(&span.span_kind));
    fixed64(out, 7, nanos(span.start_time));
    fixed64(out, 8, nanos(span.end_time));
    key_values(out, 9, &span.attributes);
    non_zero(out, 10, u64::from(span.dropped_attributes_count));
    for event in &span.events.events {
        message(out, 11, |out| {
            fixed64(out, 1, nanos(event.timestamp));
            non_empty(out, 2, event.name.as_bytes());
            key_values(out, 3, &event.attributes);
            non_zero(out, 4, u64::from(event.dropped_attributes_count));
        });
    }
    non_zero(out, 12, u64::from(span.events.dropped_count));
    for link in &span.links.links {
        message(out, 13, |out| {
            let context = &link.span_context;
            bytes_field(out, 1, &context.trace_id().to_bytes());
            bytes_field(out, 2, &context.span_id().to_bytes());
            non_empty(out, 3, context.trace_state().header().as_bytes());
            key_values(out, 4, &link.attributes);
            non_zero(out, 5, u64::from(link.dropped_attributes_count));
            fixed32(
                out,
                6,
                span_flags(context.trace_flags().to_u8(), context.is_remote()),
            );
        });
    }
    non_zero(out, 14, u64::from(span.links.dropped_count));
    message(out, 15, |out| {
        let (message, code) = match &span.status {
            Status::Unset => ("", 0),
            Status::Ok => ("", 1),
            Status::Error { description } => (description.as_ref(), 2),
        };
        non_empty(out, 2, message.as_bytes());
        non_zero(out, 3, code);
    });
    fixed32(
        out,
        16,
        span_flags(context.trace_flags().to_u8(), span.parent_span_is_remote),
    );
}

fn scope(out: &mut Vec<u8>, scope: &InstrumentationScope) {
    non_empty(out, 1, scope.name().as_bytes());
    non_empty(out, 2, scope.version().unwrap_or_default().as_bytes());
    key_values(out, 3, scope.attributes());
}

/// The resource's part of every request, written once.
#[derive(Debug, Clone, Default)]
pub(crate) struct EncodedResource {
    /// The `Resource` message's fields.
    attributes: Vec<u8>,
    schema_url: String,
}

impl EncodedResource {
    pub(crate) fn new(resource: &Resource) -> Self {
        let mut attributes = Vec::new();
        for (name, value) in resource.iter() {
            message(&mut attributes, 1, |out| {
                non_empty(out, 1, name.as_str().as_bytes());
                message(out, 2, |out| any_value(out, value));
            });
        }
        Self {
            attributes,
            schema_url: resource.schema_url().unwrap_or_default().to_owned(),
        }
    }
}

/// An `ExportTraceServiceRequest` of `spans`: one `ResourceSpans`, a `ScopeSpans` per distinct
/// scope (in order of first appearance), each span in its scope's in the order given.
pub(crate) fn export_request(resource: &EncodedResource, spans: &[SpanData]) -> Vec<u8> {
    // A few hundred bytes a span; one allocation for most batches.
    let mut out = Vec::with_capacity(64 + spans.len() * 384);
    if spans.is_empty() {
        return out;
    }
    // The distinct scopes: nearly always one ("trustgate"), so a list, not a hash map.
    let mut scopes: Vec<&InstrumentationScope> = Vec::new();
    for data in spans {
        if !scopes
            .iter()
            .any(|seen| **seen == data.instrumentation_scope)
        {
            scopes.push(&data.instrumentation_scope);
        }
    }
    message(&mut out, 1, |out| {
        message(out, 1, |out| out.extend_from_slice(&resource.attributes));
        for each in &scopes {
            message(out, 2, |out| {
                message(out, 1, |out| scope(out, each));
                for data in spans
                    .iter()
                    .filter(|data| data.instrumentation_scope == **each)
                {
                    message(out, 2, |out| span(out, data));
                }
                non_empty(out, 3, each.schema_url().unwrap_or_default().as_bytes());
            });
        }
        non_empty(out, 3, resource.schema_url.as_bytes());
    });
    out
}

// ---------------------------------------------------------------------------------------------
// The exporter

/// The largest collector response read (it is a small protobuf message).
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Attempts at one batch: the first and two retries, on a status that says to retry.
const ATTEMPTS: u32 = 3;
/// The first retry's wait; doubled for the next, or as the collector's `Retry-After` says.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest `Retry-After` followed within one export.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// OTLP/HTTP with protobuf bodies: `POST` to the traces URL, the headers of
/// `OTEL_EXPORTER_OTLP_TRACES_HEADERS` (else `OTEL_EXPORTER_OTLP_HEADERS`) on each request.
pub(crate) struct HttpExporter {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    endpoint: Uri,
    headers: HeaderMap,
    resource: EncodedResource,
    timeout: Duration,
    compression: Compression,
}

impl std::fmt::Debug for HttpExporter {
    // The headers are left out: they often carry the collector's credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Nor the endpoint's user information, if it has any: the host and path only.
        f.debug_struct("HttpExporter")
            .field("host", &self.endpoint.host())
            .field("path", &self.endpoint.path())
            .field("compression", &self.compression)
            .finish_non_exhaustive()
    }
}

impl HttpExporter {
    /// # Errors
    /// The endpoint is not a URL, or a configured header is not a valid header (the message
    /// names it, never its value).
    pub(crate) fn new(
        client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
        endpoint: &str,
        headers_var: Option<String>,
        timeout: Duration,
        compression: Compression,
    ) -> Result<Self, String> {
        let endpoint = endpoint
            .parse()
            .map_err(|_| format!("telemetry: the endpoint {endpoint:?} is not a URL"))?;
        let headers = match headers_var {
            Some(list) => parse_headers(&list)?,
            None => HeaderMap::new(),
        };
        Ok(Self {
            client,
            endpoint,
            headers,
            resource: EncodedResource::default(),
            timeout,
            compression,
        })
    }

    async fn post(&self, body: Bytes) -> Result<(), Failure> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(body))
            .map_err(|err| Failure::Final(err.to_string()))?;
        for (name, value) in &self.headers {
            request.headers_mut().append(name, value.clone());
        }
        // After the configured headers: the body's coding is not theirs to say.
        if self.compression == Compression::Gzip {
            request
                .headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let response = self
            .client
            .request(request)
            .await
            .map_err(|err| Failure::Retry(format!("network error: {err}"), None))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read (bounded) so that the connection is reused; the partial-success details of a
        // 200 are not acted on.
        let _ = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await;
        if status.is_success() {
            return Ok(());
        }
        let message = format!("the collector answered {status}");
        if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS
                | StatusCode::BAD_GATEWAY
                | StatusCode::SERVICE_UNAVAILABLE
                | StatusCode::GATEWAY_TIMEOUT
        ) {
            Err(Failure::Retry(message, retry_after))
        } else {
            Err(Failure::Final(message))
        }
    }
}

/// Why an attempt failed, and whether another may succeed.
enum Failure {
    Retry(String, Option<Duration>),
    Final(String),
}

impl SpanExporter for HttpExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let body = export_request(&self.resource, &batch);
        drop(batch);
        // Compressed once, before the attempts: a retry sends the same bytes.
        let body = match self.compression {
            Compression::None => Bytes::from(body),
            Compression::Gzip => Bytes::from(gzip(&body).map_err(|err| {
                OTelSdkError::InternalFailure(format!("gzip of the export body failed: {err}"))
            })?),
        };
        let attempts = async {
            let mut backoff = FIRST_BACKOFF;
            let mut attempt = 1;
            loop {
                match self.post(body.clone()).await {
                    Ok(()) => return Ok(()),
                    Err(Failure::Retry(message, retry_after)) if attempt < ATTEMPTS => {
                        tracing::debug!(attempt, %message, "telemetry: span export retried");
                        let wait = retry_after.map_or(backoff, |wait| wait.min(MAX_BACKOFF));
                        tokio::time::sleep(wait).await;
                        backoff *= 2;
                        attempt += 1;
                    }
                    Err(Failure::Retry(message, _) | Failure::Final(message)) => {
                        return Err(OTelSdkError::InternalFailure(message));
                    }
                }
            }
        };
        tokio::time::timeout(self.timeout, attempts)
            .await
            .unwrap_or(Err(OTelSdkError::Timeout(self.timeout)))
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = EncodedResource::new(resource);
    }
}

/// How export bodies are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
}

/// The compression asked for by `OTEL_EXPORTER_OTLP_TRACES_COMPRESSION` (else
/// `OTEL_EXPORTER_OTLP_COMPRESSION`; an empty variable counts as unset): `gzip`, else `none`.
/// Read the way `opentelemetry-otlp` reads them (case aside), and for both protocols, so that a
/// value neither does here (`zstd`) is refused at start with this message rather than silently
/// not done.
///
/// # Errors
/// The variable names a compression other than `gzip` or `none`.
pub(crate) fn compression(var: impl Fn(&str) -> Option<String>) -> Result<Compression, String> {
    let Some((name, value)) = [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ]
    .into_iter()
    .find_map(|name| {
        var(name)
            .map(|value| value.trim().to_owned())
            .filter(|value| !value.is_empty())
            .map(|value| (name, value))
    }) else {
        return Ok(Compression::None);
    };
    if value.eq_ignore_ascii_case("none") {
        Ok(Compression::None)
    } else if value.eq_ignore_ascii_case("gzip") {
        Ok(Compression::Gzip)
    } else {
        Err(format!(
            "telemetry: {name} = {value:?} is not supported; set \"gzip\" or \"none\", or unset it"
        ))
    }
}

/// `body` gzipped. The fastest level: the export runs on the gateway's runtime, next to the
/// requests, and span batches (ids, names, repeated attribute keys) shrink well even so.
fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    encoder.write_all(body)?;
    encoder.finish()
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `name=value` pairs separated by commas, values
/// percent-encoded (W3C baggage's format).
fn parse_headers(list: &str) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    // Errors name an entry by its place, never by its text: a malformed entry (`Authorization:
    // Bearer …`, a token with `=` in it) holds the credential wherever it was cut.
    for (place, pair) in list
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .enumerate()
    {
        let entry = place + 1;
        let Some((name, value)) = pair.split_once('=') else {
            return Err(format!(
                "telemetry: OTEL_EXPORTER_OTLP_HEADERS: entry {entry} is not name=value"
            ));
        };
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| {
            format!(
                "telemetry: OTEL_EXPORTER_OTLP_HEADERS: entry {entry} does not start with a \
                 header name"
            )
        })?;
        let value = trustgate_core::percent_decode_lenient(value.trim().as_bytes());
        let value = HeaderValue::from_bytes(&value).map_err(|_| {
            format!(
                "telemetry: OTEL_EXPORTER_OTLP_HEADERS: the value of {name} is not a valid \
                 header value"
            )
        })?;
        headers.append(name, value);
    }
    Ok(headers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::telemetry::test_env;
    use opentelemetry::trace::{Event, Link, SpanContext, SpanId, TraceFlags, TraceId, TraceState};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
    use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
    use prost::Message as _;
    use std::borrow::Cow;
    use std::str::FromStr;

    fn context(trace: u8, span: u8, sampled: bool, remote: bool, state: &str) -> SpanContext {
        SpanContext::new(
            TraceId::from_bytes([trace; 16]),
            SpanId::from_bytes([span; 8]),
            if sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            remote,
            TraceState::from_str(state).unwrap(),
        )
    }

    /// Spans that use every field and every kind of value the conversion knows.
    fn spans() -> Vec<SpanData> {
        let at = |nanos: u64| UNIX_EPOCH + Duration::from_nanos(nanos);
        let ours = InstrumentationScope::builder("trustgate").build();
        let theirs = InstrumentationScope::builder("trustgate-service")
            .with_version("1.2.3")
            .with_schema_url("https://opentelemetry.io/schemas/1.21.0")
            .with_attributes([KeyValue::new("scope.attr", 7_i64)])
            .build();
        let mut events = opentelemetry_sdk::trace::SpanEvents::default();
        events.events.push(Event::new(
            "refused",
            at(1_700_000_000_000_100_000),
            vec![KeyValue::new("reason", "expired")],
            1,
        ));
        events.dropped_count = 2;
        let mut links = opentelemetry_sdk::trace::SpanLinks::default();
        links.links.push(Link::new(
            context(9, 8, true, true, "k=v"),
            vec![KeyValue::new("link", true)],
            4,
        ));
        links.dropped_count = 5;
        let root = SpanData {
            span_context: context(1, 2, true, false, "vendor=a,other=b"),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("trustgate.request"),
            start_time: at(1_700_000_000_000_000_001),
            end_time: at(1_700_000_000_000_500_000),
            attributes: vec![
                KeyValue::new("http.request.method", "GET"),
                KeyValue::new("http.response.status_code", 200_i64),
                KeyValue::new("negative", -5_i64),
                KeyValue::new("flag", false),
                KeyValue::new("ratio", 0.25_f64),
                KeyValue::new("empty", ""),
                KeyValue::new("long", "x".repeat(300)),
                KeyValue::new("bools", Value::Array(Array::Bool(vec![true, false]))),
                KeyValue::new("ints", Value::Array(Array::I64(vec![0, 1, -1, i64::MAX]))),
                KeyValue::new("doubles", Value::Array(Array::F64(vec![0.0, -1.5]))),
                KeyValue::new(
                    "strings",
                    Value::Array(Array::String(vec!["a".into(), "".into()])),
                ),
                KeyValue::new("none", Value::Array(Array::I64(vec![]))),
            ],
            dropped_attributes_count: 3,
            events,
            links,
            status: Status::error("upstream unavailable"),
            instrumentation_scope: ours.clone(),
        };
        let child = SpanData {
            span_context: context(1, 3, true, false, ""),
            parent_span_id: SpanId::from_bytes([2; 8]),
            parent_span_is_remote: true,
            span_kind: SpanKind::Internal,
            name: Cow::Owned("validate".to_owned()),
            start_time: at(1_700_000_000_000_000_100),
            end_time: at(1_700_000_000_000_000_900),
            attributes: vec![KeyValue::new("trustgate.cache", "hit")],
            dropped_attributes_count: 0,
            events: opentelemetry_sdk::trace::SpanEvents::default(),
            links: opentelemetry_sdk::trace::SpanLinks::default(),
            status: Status::Ok,
            instrumentation_scope: ours,
        };
        let mut service = child.clone();
        service.name = Cow::Borrowed("service");
        service.span_kind = SpanKind::Client;
        service.status = Status::Unset;
        service.start_time = UNIX_EPOCH;
        service.instrumentation_scope = theirs;
        let mut producer = child.clone();
        producer.span_kind = SpanKind::Producer;
        let mut consumer = child.clone();
        consumer.span_kind = SpanKind::Consumer;
        vec![root, child, service, producer, consumer]
    }

    /// What `opentelemetry-otlp` sends for the same spans: the published conversion.
    fn reference(resource: &Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(
                spans,
                &ResourceAttributesWithSchema::from(resource),
            ),
        }
    }

    #[test]
    fn the_body_decodes_to_what_the_published_conversion_makes() {
        let resource = Resource::builder_empty()
            .with_service_name("trustgate")
            .with_attribute(KeyValue::new("deployment.environment", "test"))
            .with_schema_url([], "https://opentelemetry.io/schemas/1.21.0")
            .build();
        let ours = export_request(&EncodedResource::new(&resource), &spans());
        let decoded = ExportTraceServiceRequest::decode(ours.as_slice()).unwrap();
        let expected = reference(&resource, spans());
        assert_eq!(decoded, expected);
        // Written canonically: prost writes the same message to the same bytes.
        assert_eq!(ours, expected.encode_to_vec());
    }

    #[test]
    fn lengths_that_need_more_than_one_byte_are_written_whole() {
        let resource = Resource::builder_empty().with_service_name("gw").build();
        // Batches from one span up to many (lengths of one, two and three bytes).
        let template = spans().remove(1);
        for count in [1, 2, 50, 700] {
            let batch = vec![template.clone(); count];
            let ours = export_request(&EncodedResource::new(&resource), &batch);
            let expected = reference(&resource, batch);
            assert_eq!(ours, expected.encode_to_vec(), "{count} spans");
        }
    }

    #[test]
    fn an_empty_batch_is_an_empty_request() {
        let resource = Resource::builder_empty().build();
        assert!(export_request(&EncodedResource::new(&resource), &[]).is_empty());
    }

    #[test]
    fn gzip_or_none_is_chosen_and_any_other_compression_refused() {
        assert_eq!(compression(test_env(&[])), Ok(Compression::None));
        assert_eq!(
            compression(test_env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "none")])),
            Ok(Compression::None)
        );
        assert_eq!(
            compression(test_env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "")])),
            Ok(Compression::None)
        );
        assert_eq!(
            compression(test_env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", " GZip ")])),
            Ok(Compression::Gzip)
        );
        // An empty variable is unset: the general one is read next.
        assert_eq!(
            compression(test_env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", " "),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ])),
            Ok(Compression::Gzip)
        );
        let err = compression(test_env(&[("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd")])).unwrap_err();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_COMPRESSION = \"zstd\""),
            "{err}"
        );
        // The traces-specific variable is read first.
        assert_eq!(
            compression(test_env(&[
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ])),
            Ok(Compression::Gzip)
        );
        let err = compression(test_env(&[
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "br"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ]))
        .unwrap_err();
        assert!(err.contains("TRACES_COMPRESSION = \"br\""), "{err}");
    }

    #[test]
    fn a_gzipped_body_decodes_to_the_same_bytes() {
        use std::io::Read as _;
        let resource = Resource::builder_empty().build();
        let body = export_request(&EncodedResource::new(&resource), &spans());
        assert!(!body.is_empty());
        let zipped = gzip(&body).unwrap();
        assert_eq!(&zipped[..2], [0x1f, 0x8b], "the gzip magic");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, body);
    }

    #[test]
    fn headers_come_from_the_otel_list_with_percent_decoding() {
        let headers =
            parse_headers("api-key=se%3Dcret, x-tenant = acme ,x-multi=a,x-multi=b").unwrap();
        assert_eq!(headers["api-key"], "se=cret");
        assert_eq!(headers["x-tenant"], "acme");
        let multi: Vec<_> = headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);
        // Errors name the entry by its place: its text may be the credential.
        let err = parse_headers("authorization=Bearer%20secret,bad header=x").unwrap_err();
        assert_eq!(
            err,
            "telemetry: OTEL_EXPORTER_OTLP_HEADERS: entry 2 does not start with a header name"
        );
        for malformed in [
            "authorization:Bearer s3cr3t-key",
            "authorization: Bearer s3cr3t-key=",
        ] {
            let err = parse_headers(&format!("x-tenant=acme, {malformed}")).unwrap_err();
            assert!(err.contains("entry 2"), "{err}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
        // A `%` that starts no escape stays as it is.
        assert_eq!(parse_headers("x-odd=5%zz%4").unwrap()["x-odd"], "5%zz%4");
    }
}
