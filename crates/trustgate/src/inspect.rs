//! `trustgate check` and `trustgate explain`: operator tools that print to stdout.
//!
//! `explain` shows what the gateway would do by asking the proxy's own functions, never a copy
//! of their rules: `proxy::internal_endpoint_on_edge` (documents answered on the edge),
//! `RequestTracing::begin` and `RequestTrace::begin_upstream` (the trace context forwarded),
//! `proxy::prepare` (the decision and the upstream request) and `proxy::Exchange::response` (a
//! refusal, as gRPC status for a gRPC call). The rate limiter alone is left out.
//!
//! Neither prints a secret: token values, cookies and Authorization headers, and an
//! `access_token` in a query, are shown only as their length. Neither lets a string from
//! outside the configuration (a key id from a JWKS, a request's path) write control characters
//! to the terminal: they are printed escaped.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Request};
use serde_json::{Value, json};
use trustgate_core::{BAGGAGE, TRACEPARENT, TRACESTATE};
use trustgate_edge::Trust;
use trustgate_edge::trust::Requirements;

use crate::config::{self, ConfigError};
use crate::metrics::Metrics;
use crate::proxy::{self, ConnInfo};
use crate::reader_safe::{self, Keep};
use crate::record::Door;
use crate::runtime::Runtime;
use crate::server::StartError;
use crate::telemetry::{RequestTrace, RequestTracing};

/// Validates the file, fetches keys and prints what it found: issuers (key source, algorithms,
/// readiness), the internal issuer, and every route with its pattern, service, assertion and
/// `require`. `json` prints the same as one JSON document, for tools. Returns whether all is
/// well.
pub(crate) async fn check(path: &Path, json: bool) -> Result<bool, StartError> {
    let config = config::load(path)?;
    // The certificate and key `serve` would load: one it could not read (not yet issued, say)
    // makes `serve` exit 69, so `check` says so and is not ready, rather than passing.
    let tls_usable = match config.server.tls.as_ref().map(crate::server::tls_acceptor) {
        Some(Err(err)) => {
            eprintln!("trustgate: {err}");
            false
        }
        _ => true,
    };
    let ids = config::issuer_ids(&config);
    let signer = signer_for(&config)?;
    let runtime = runtime_for(config, signer.clone(), crate::fleet::Mode::Offline).await?;
    let issuers_ready = runtime.start().await;
    let ready = issuers_ready && tls_usable;
    let mut summary = summary(path, &runtime, &ids, signer.as_deref(), ready);
    // Each reason on its own, so a tool (and the text) can tell a missing key from a missing
    // certificate.
    summary["issuers_ready"] = json!(issuers_ready);
    summary["tls_usable"] = json!(tls_usable);
    if json {
        println!("{}", json_for_terminal(&summary));
    } else {
        print!("{}", escape_controls(&text(&summary)));
    }
    Ok(ready)
}

fn key_source(source: &trustgate_core::KeySource) -> Value {
    use trustgate_core::KeySource;
    match source {
        KeySource::Discovery => json!({"kind": "discovery"}),
        KeySource::JwksUrl(url) => json!({"kind": "jwks_url", "url": url}),
        KeySource::JwksFile(path) => {
            json!({"kind": "jwks_file", "path": path.display().to_string()})
        }
        KeySource::Jwks(_) => json!({"kind": "jwks"}),
        KeySource::Pem(keys) => json!({"kind": "pem_keys", "count": keys.len()}),
        _ => json!({"kind": "other"}),
    }
}

fn summary(
    path: &Path,
    runtime: &Runtime,
    ids: &std::collections::BTreeMap<String, String>,
    signer: Option<&trustgate_core::InternalSigner>,
    ready: bool,
) -> Value {
    let config = &runtime.config;
    let status = runtime.engine.validator.issuer_status();
    let issuers: Vec<Value> = config
        .issuers
        .iter()
        .map(|entry| {
            let live = status.iter().find(|s| s.issuer == entry.config.issuer);
            json!({
                "id": entry.id,
                "issuer": entry.config.issuer,
                "key_source": key_source(&entry.config.source),
                "algorithms": entry.config.algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
                "audiences": entry.config.claims.audiences,
                "ready": live.is_some_and(|s| s.usable),
                "keys": live.map_or(0, |s| s.keys),
                "kids": live.map(|s| s.kids.clone()).unwrap_or_default(),
            })
        })
        .collect();
    let internal = config.internal.as_ref().map(|internal| {
        json!({
            "issuer": signer.map(trustgate_core::InternalSigner::issuer),
            "algorithm": internal.algorithm.name(),
            "rotation_interval": format!("{:?}", internal.rotation_interval),
            "max_ttl": format!("{:?}", internal.max_ttl),
            "keys": if internal.key_files.is_empty() { "generated" } else { "key_files" },
        })
    });
    let routes: Vec<Value> = config
        .routes
        .iter()
        .map(|route| {
            let validation = route.trust.validation();
            let issuers: Vec<&str> = validation
                .map(|v| v.issuers.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|iss| ids.get(iss).map_or(iss.as_str(), String::as_str))
                .collect();
            let no_requirements = Requirements::default();
            let require = validation.map_or(&no_requirements, |v| &v.require);
            let service = match &route.trust {
                Trust::InternalToken(pattern) => Some(&pattern.service),
                other => other.assertion().map(|a| &a.service),
            };
            json!({
                "name": route.name,
                "host": route.host,
                "prefix": route.prefix,
                "pattern": route.trust.name(),
                "upstream": route.upstream,
                "issuers": issuers,
                "service": service,
                "assertion": route.trust.assertion().is_some(),
                "allow_anonymous": route.trust.allows_anonymous(),
                "require": (!require.is_empty()).then(|| json!({
                    "mode": format!("{:?}", require.mode).to_ascii_lowercase(),
                    "scopes": require.scopes,
                    "roles": require.roles,
                    "claims": require.claims.iter()
                        .map(|(path, values)| (path.as_str().to_owned(), json!(values)))
                        .collect::<serde_json::Map<String, Value>>(),
                })),
            })
        })
        .collect();
    json!({
        "configuration": path.display().to_string(),
        "ready": ready,
        "listen": config.server.listen.to_string(),
        "admin": config.admin_listen.to_string(),
        "issuers": issuers,
        "internal_issuer": internal,
        "routes": routes,
        "warnings": config::warnings(&config.routes),
    })
}

/// The summary as text for a person.
fn text(summary: &Value) -> String {
    // Every value is escaped on its own, the line feed too: `escape_controls` over the whole
    // text must keep the line feeds `text` writes, so a kid's `\n` would otherwise begin a line.
    let str_of = |v: &Value| escape_all_controls(v.as_str().unwrap_or("-"));
    let list = |v: &Value| {
        v.as_array()
            .map(|items| items.iter().map(&str_of).collect::<Vec<_>>().join(", "))
            .unwrap_or_default()
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "configuration: ok ({})",
        str_of(&summary["configuration"])
    );
    let _ = writeln!(
        out,
        "listen: {}  admin: {}",
        str_of(&summary["listen"]),
        str_of(&summary["admin"])
    );
    let _ = writeln!(out, "\nissuers:");
    for issuer in summary["issuers"].as_array().into_iter().flatten() {
        let source = &issuer["key_source"];
        let where_ = source["url"]
            .as_str()
            .or(source["path"].as_str())
            .map_or(String::new(), |w| format!(" {}", escape_all_controls(w)));
        let _ = writeln!(
            out,
            "  {:<12} {:<40} {:<10} keys={} kids=[{}]",
            str_of(&issuer["id"]),
            str_of(&issuer["issuer"]),
            if issuer["ready"] == true {
                "ready"
            } else {
                "NOT READY"
            },
            issuer["keys"],
            list(&issuer["kids"]),
        );
        let _ = writeln!(
            out,
            "  {:<12} keys from {}{where_}; algorithms {}; audiences {}",
            "",
            str_of(&source["kind"]),
            list(&issuer["algorithms"]),
            list(&issuer["audiences"]),
        );
    }
    match summary["internal_issuer"].as_object() {
        Some(internal) => {
            let _ = writeln!(
                out,
                "\ninternal issuer: {} ({}, {} keys, rotation {}, max_ttl {})",
                internal.get("issuer").map_or("-".into(), str_of),
                internal.get("algorithm").map_or("-".into(), str_of),
                internal.get("keys").map_or("-".into(), str_of),
                internal.get("rotation_interval").map_or("-".into(), str_of),
                internal.get("max_ttl").map_or("-".into(), str_of),
            );
        }
        None => {
            let _ = writeln!(out, "\ninternal issuer: none");
        }
    }
    let _ = writeln!(out, "\nroutes:");
    let _ = writeln!(
        out,
        "  {:<16} {:<20} {:<24} {:<18} {:<14} issuers",
        "name", "host", "prefix", "pattern", "upstream"
    );
    for route in summary["routes"].as_array().into_iter().flatten() {
        let issuers = list(&route["issuers"]);
        let _ = writeln!(
            out,
            "  {:<16} {:<20} {:<24} {:<18} {:<14} {}",
            str_of(&route["name"]),
            escape_all_controls(route["host"].as_str().unwrap_or("*")),
            str_of(&route["prefix"]),
            str_of(&route["pattern"]),
            str_of(&route["upstream"]),
            if issuers.is_empty() {
                "-".to_owned()
            } else {
                issuers
            },
        );
        let mut notes = Vec::new();
        if let Some(service) = route["service"].as_str() {
            notes.push(format!("service {}", escape_all_controls(service)));
        }
        if route["assertion"] == true {
            notes.push("assertion".to_owned());
        }
        if route["allow_anonymous"] == true {
            notes.push("anonymous allowed".to_owned());
        }
        if let Some(require) = route["require"].as_object() {
            let mut parts = Vec::new();
            for key in ["scopes", "roles"] {
                let items = require.get(key).map(list).unwrap_or_default();
                if !items.is_empty() {
                    parts.push(format!("{key} {items}"));
                }
            }
            for (claim, values) in require
                .get("claims")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                parts.push(format!(
                    "{} in [{}]",
                    escape_all_controls(claim),
                    list(values)
                ));
            }
            let mode = require.get("mode").map_or("all".into(), str_of);
            notes.push(format!("require {mode} of: {}", parts.join("; ")));
        }
        if !notes.is_empty() {
            let _ = writeln!(out, "  {:<16} {}", "", notes.join("; "));
        }
    }
    for warning in summary["warnings"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "\nwarning: {}", str_of(warning));
    }
    if summary["issuers_ready"] == false {
        let _ = writeln!(
            out,
            "\nwarning: not every issuer has usable keys; the gateway would not be ready"
        );
    }
    if summary["tls_usable"] == false {
        let _ = writeln!(
            out,
            "\nwarning: the TLS certificate or key (server.tls) cannot be loaded; the gateway would not start"
        );
    }
    out
}

/// `text` with every control character but the line feed escaped (`\u{1b}`), so that a string
/// the configuration did not choose (a `kid` from a fetched JWKS, an issuer's or a request's
/// text) cannot move the cursor, retitle or clear the terminal. The line feeds are kept: a value
/// that may hold one is escaped whole first ([`escape_all_controls`], or `{:?}`), so that it
/// cannot fake a line of the output.
fn escape_controls(text: &str) -> String {
    reader_safe::escaped(text, Keep::LineFeeds, |c, out| out.extend(c.escape_debug()))
}

/// `value` as pretty JSON that writes no control character to a terminal: see
/// [`reader_safe::json`].
fn json_for_terminal(value: &Value) -> String {
    reader_safe::json(&serde_json::to_string_pretty(value).unwrap_or_default())
}

/// `value`, printed inside a line, with every control character escaped, the line feed too.
fn escape_all_controls(value: &str) -> String {
    reader_safe::escaped(value, Keep::Nothing, |c, out| out.extend(c.escape_debug()))
}

/// `line` with the value of every query parameter that `trustgate_core::query_has_access_token`
/// would find (any spelling it matches) shown only as its length. A query is what follows the
/// first `?` of a word (a URI holds no whitespace), so this covers the request line, the trace's
/// `path:` and `forward:` steps, the decision and any header holding a URL. A public route
/// forwards such a request, and a validating one refuses it, but explain prints the token in
/// neither case.
fn redact_query(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for piece in line.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end_matches(char::is_whitespace);
        let space = piece.get(word.len()..).unwrap_or_default();
        match word.split_once('?') {
            Some((before, query)) => {
                out.push_str(before);
                out.push('?');
                for pair in query.split_inclusive(['&', ';']) {
                    let (body, separator) = match pair.strip_suffix(['&', ';']) {
                        Some(body) => (body, pair.get(body.len()..).unwrap_or_default()),
                        None => (pair, ""),
                    };
                    match body.split_once('=') {
                        Some((name, value)) if trustgate_core::query_has_access_token(body) => {
                            // A debug-quoted target (the `path:` step) ends in a quote that is
                            // not part of the value.
                            let (value, quote) = match value.strip_suffix('"') {
                                Some(value) => (value, "\""),
                                None => (value, ""),
                            };
                            let _ = write!(
                                out,
                                "{name}=<redacted, {} bytes>{quote}{separator}",
                                value.len()
                            );
                        }
                        _ => {
                            out.push_str(pair);
                        }
                    }
                }
            }
            None => out.push_str(word),
        }
        out.push_str(space);
    }
    out
}

/// Prints one line of `explain`'s output: no query token, no control characters.
fn say(line: &str) {
    println!("{}", escape_controls(&redact_query(line)));
}

/// A runtime for an operator tool, its fleet state made as `mode` says (no background tasks).
async fn runtime_for(
    config: config::Config,
    signer: Option<Arc<trustgate_core::InternalSigner>>,
    mode: crate::fleet::Mode,
) -> Result<Runtime, StartError> {
    let metrics = Metrics::new();
    let fleet =
        crate::fleet::Fleet::start(&config, Arc::clone(&metrics.fleet), signer.as_ref(), mode)
            .await?;
    Ok(Runtime::build(
        config,
        metrics,
        signer,
        &fleet,
        &Default::default(),
    )?)
}

fn signer_for(
    config: &config::Config,
) -> Result<Option<Arc<trustgate_core::InternalSigner>>, ConfigError> {
    config
        .internal
        .as_ref()
        .map(|internal| crate::signer::build_signer(internal, config.admin_listen))
        .transpose()
}

fn redact(name: &HeaderName, value: &HeaderValue) -> String {
    match name.as_str() {
        "authorization" | "cookie" | "proxy-authorization" | "x-trustgate-assertion" => {
            format!("<redacted, {} bytes>", value.len())
        }
        _ => String::from_utf8_lossy(value.as_bytes()).into_owned(),
    }
}

/// The trace step: what `[telemetry]` does with the request's trace context (the proxy's own
/// [`RequestTracing::begin`] decided it).
fn trace_step(trace: &RequestTrace, headers: &http::HeaderMap, peer: IpAddr) -> String {
    let sampled = if trace.sampled() {
        "sampled"
    } else {
        "not sampled"
    };
    if !trace.replaces_client_context() {
        format!("trace: continues the client's traceparent (telemetry.trust_incoming); {sampled}")
    } else if [TRACEPARENT, TRACESTATE, BAGGAGE]
        .iter()
        .any(|name| headers.contains_key(*name))
    {
        format!(
            "trace: the client's trace context is not believed from {peer} (telemetry.trust_incoming): its traceparent, tracestate and baggage are removed; a new trace, {sampled}"
        )
    } else {
        format!("trace: a new trace, {sampled}")
    }
}

/// The `--header` arguments as names and values. One without a `:` is named by its place and
/// length only: it may be a credential written without its name (`-H "Bearer eyJ…"`).
fn split_headers(headers: &[String]) -> Result<Vec<(&str, &str)>, ConfigError> {
    headers
        .iter()
        .enumerate()
        .map(|(index, header)| {
            header
                .split_once(':')
                .map(|(name, value)| (name.trim(), value.trim()))
                .ok_or_else(|| {
                    ConfigError(format!(
                        "--header number {} ({} bytes, not shown): write it as 'Name: value'",
                        index + 1,
                        header.len()
                    ))
                })
        })
        .collect()
}

/// The revocation step with the memory store, in place of "not revoked".
const MEMORY_REVOCATIONS: &str = "revocation: not checked: with the memory store the list is in the running gateway's memory, which explain cannot read; a revoked token is refused there";

/// Runs the request pipeline on a synthetic request and prints every step.
pub(crate) async fn explain(
    path: &Path,
    method: &str,
    target: &str,
    host: Option<&str>,
    token: Option<&str>,
    headers: &[String],
) -> Result<bool, StartError> {
    let config = config::load(path)?;
    let extra = split_headers(headers)?;
    // One Host header, as a client sends: a second next to a `-H Host` would be refused (400)
    // where the gateway forwards the real request.
    let header_host = extra
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("host"))
        .map(|&(_, value)| value);
    let default_host = match (host, header_host) {
        (Some(flag), Some(header)) if !flag.trim().eq_ignore_ascii_case(header) => {
            return Err(ConfigError(format!(
                "--host {flag:?} and --header 'Host: {header}' differ; give one of them"
            ))
            .into());
        }
        (_, Some(_)) => None,
        (flag, None) => Some(flag.unwrap_or("localhost")),
    };
    let signer = signer_for(&config)?;
    // With a Redis store, explain reads the revocation list once, so it shows a revocation hit
    // as every replica would.
    let runtime = Arc::new(runtime_for(config, signer, crate::fleet::Mode::Once).await?);
    runtime.start().await;
    let mut builder = Request::builder().method(method).uri(target);
    if let Some(host) = default_host {
        builder = builder.header("host", host);
    }
    if let Some(token) = token {
        // As `-H` values are: HTTP parsers strip the whitespace around a field value, so
        // `--token "$(cat token) "` is the token the gateway would see.
        let token = token.trim_matches([' ', '\t']);
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for (name, value) in extra {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(())
        .map_err(|err| ConfigError(format!("cannot build the request: {err}")))?;
    say(&format!("request: {} {}", request.method(), request.uri()));
    for (name, value) in request.headers() {
        say(&format!("  {name}: {}", redact(name, value)));
    }
    // As in the proxy, before anything else: the internal issuer's documents on the edge.
    if let Some(response) = proxy::internal_endpoint_on_edge(&runtime, &request) {
        say("\nsteps:");
        say(&format!(
            "  1. internal issuer: GET {} is served on the public listener (internal_issuer.serve_on_edge), before routing",
            request.uri().path()
        ));
        say(&format!(
            "\ndecision: answer itself with {}, the internal issuer's document",
            response.status()
        ));
        for (name, value) in response.headers() {
            say(&format!("  {name}: {}", redact(name, value)));
        }
        return Ok(true);
    }
    // Made from the request as it came, as the gateway makes it: a gRPC call is refused with
    // HTTP 200 and `grpc-status`.
    let exchange = proxy::Exchange::new(&request, None);
    let (mut parts, ()) = request.into_parts();
    let mut trace = Vec::new();
    let conn = ConnInfo {
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        // The listener's scheme, as the server sets it: it becomes X-Forwarded-Proto.
        proto: if runtime.config.server.tls.is_some() {
            "https"
        } else {
            "http"
        },
        raw_framing: Ok(()),
    };
    // With `[telemetry]`, the request's trace begins as the proxy begins it: whether the
    // client's trace context is believed (`trust_incoming`) decides whether it is forwarded.
    let tracing = runtime.config.telemetry.as_ref().map(RequestTracing::new);
    let mut request_trace = tracing.as_ref().map(|tracing| {
        tracing.begin(
            Door::Proxy,
            &parts.method,
            &parts.headers,
            conn.peer,
            &runtime.config.server.trusted_proxies,
        )
    });
    if let Some(request_trace) = &request_trace {
        trace.push(trace_step(request_trace, &parts.headers, conn.peer));
    }
    let drop_trace_context = request_trace
        .as_ref()
        .is_some_and(RequestTrace::replaces_client_context);
    // The rate limiter is left out: running it would spend the caller's budget, with a Redis
    // store on every replica, for a request that is never sent.
    let result = proxy::prepare(
        &runtime,
        &mut parts,
        conn,
        drop_trace_context,
        proxy::RateLimitStep::Skip,
        Some(&mut trace),
    )
    .await;
    // With the memory store, the revocation list lives in the running gateway and explain's own
    // is empty: "not revoked" would be said of every token, revoked ones too.
    let mut revocation_unseen = false;
    if runtime.config.revocation.is_some()
        && matches!(runtime.config.store.backend, config::Backend::Memory)
    {
        for step in &mut trace {
            if step == "revocation: not revoked" {
                *step = MEMORY_REVOCATIONS.to_owned();
                revocation_unseen = true;
            }
        }
    }
    say("\nsteps:");
    for (n, step) in trace.iter().enumerate() {
        say(&format!("  {}. {step}", n + 1));
    }
    match result {
        Ok(prepared) => {
            if let Some(request_trace) = request_trace.as_mut() {
                // The upstream request's `traceparent`, set as the proxy sets it.
                let upstream = runtime
                    .route(&prepared.decision.route)
                    .map_or("", |route| route.upstream.config.id.as_str());
                request_trace.begin_upstream(upstream, &mut parts.headers);
                if request_trace.sampled() {
                    // Explain exports no spans: the value, the upstream span's id, is made only
                    // when the request is sent.
                    parts.headers.insert(
                        TRACEPARENT,
                        HeaderValue::from_static("<the gateway's upstream span, sampled>"),
                    );
                }
            }
            say(&format!("\ndecision: forward to {}", parts.uri));
            if revocation_unseen {
                say("  unless the running gateway has revoked the token (see the revocation step)");
            }
            say("headers the upstream receives:");
            for (name, value) in &parts.headers {
                say(&format!("  {name}: {}", redact(name, value)));
            }
            Ok(true)
        }
        Err(refusal) => {
            let response = exchange.response(refusal.error);
            // A gRPC client reads the refusal from `grpc-status`, under HTTP 200.
            let status = match response.headers().get("grpc-status") {
                Some(code) => format!(
                    "{}, grpc-status {}",
                    response.status(),
                    String::from_utf8_lossy(code.as_bytes())
                ),
                None => response.status().to_string(),
            };
            say(&format!("\ndecision: refuse with {status}"));
            for (name, value) in response.headers() {
                say(&format!("  {name}: {}", redact(name, value)));
            }
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_query_token_is_shown_as_its_length() {
        for (line, want) in [
            (
                "request: GET /a?access_token=secret",
                "request: GET /a?access_token=<redacted, 6 bytes>",
            ),
            (
                r#"3. path: "/a?x=1&Access%5Ftoken=secret;y=2" normalized to "/a""#,
                r#"3. path: "/a?x=1&Access%5Ftoken=<redacted, 6 bytes>;y=2" normalized to "/a""#,
            ),
            (
                "forward: GET http://u/a?access.token=s&access[token=ss&access_token[]=sss",
                "forward: GET http://u/a?access.token=<redacted, 1 bytes>&access[token=<redacted, 2 bytes>&access_token[]=<redacted, 3 bytes>",
            ),
            (
                "  referer: https://app/?%20access-token=secret",
                "  referer: https://app/?%20access-token=<redacted, 6 bytes>",
            ),
            // Not the name, or not in a query: as it is.
            (
                "/a?access_tokens=x&my_access_token=y&a=access_token",
                "/a?access_tokens=x&my_access_token=y&a=access_token",
            ),
            ("access_token=x ?", "access_token=x ?"),
            ("\nsteps:", "\nsteps:"),
        ] {
            assert_eq!(redact_query(line), want, "{line}");
        }
    }

    /// A `kid` is whatever the JWKS URL answers: its line feed must not start a line of `check`'s
    /// output (a forged "ready" issuer, a forged route).
    #[test]
    fn a_line_feed_in_a_fetched_kid_cannot_fake_a_line_of_check() {
        let summary = json!({
            "issuers": [{
                "id": "idp",
                "issuer": "https://idp.example",
                "key_source": {"kind": "jwks_url", "url": "https://idp.example/jwks"},
                "ready": false,
                "keys": 1,
                "kids": ["k1]\n  other        https://forged.example                   ready      keys=1 kids=[k2"],
                "algorithms": ["ES256"],
                "audiences": [],
            }],
        });
        let out = escape_controls(&text(&summary));
        let issuer_lines: Vec<&str> = out
            .lines()
            .skip_while(|line| *line != "issuers:")
            .skip(1)
            .take_while(|line| !line.is_empty())
            .collect();
        assert_eq!(
            issuer_lines,
            [
                r"  idp          https://idp.example                      NOT READY  keys=1 kids=[k1]\n  other        https://forged.example                   ready      keys=1 kids=[k2]",
                "               keys from jwks_url https://idp.example/jwks; algorithms ES256; audiences ",
            ]
        );
    }

    /// serde_json leaves DEL and the C1 controls raw; `check --json` goes to terminals too.
    #[test]
    fn check_json_escapes_the_controls_serde_json_leaves_raw() {
        let summary = json!({"kids": ["\u{1b}[2J\u{7f}\u{85}\u{9b}31mred\n"]});
        let out = json_for_terminal(&summary);
        assert_eq!(
            out,
            "{\n  \"kids\": [\n    \"\\u001b[2J\\u007f\\u0085\\u009b31mred\\n\"\n  ]\n}"
        );
        // The same value to a JSON reader.
        assert_eq!(serde_json::from_str::<Value>(&out).ok(), Some(summary));
    }

    /// A `--header` without its `:` may be a credential: the error names it without printing it.
    #[test]
    fn a_header_without_a_colon_is_not_echoed() {
        let headers = ["Accept: */*".to_owned(), "Bearer eyJ.secret.sig".to_owned()];
        let err = split_headers(&headers).err().map(|err| err.to_string());
        assert_eq!(
            err.as_deref(),
            Some("--header number 2 (21 bytes, not shown): write it as 'Name: value'")
        );
        let headers = ["Accept : */* ".to_owned()];
        assert_eq!(split_headers(&headers).ok(), Some(vec![("Accept", "*/*")]));
    }

    #[test]
    fn control_characters_but_the_line_feed_are_escaped() {
        assert_eq!(
            escape_controls("kid=[\u{1b}]0;x\u{7}\u{1b}[2J\tok\r\u{85}]\n"),
            "kid=[\\u{1b}]0;x\\u{7}\\u{1b}[2J\\tok\\r\\u{85}]\n"
        );
        assert_eq!(escape_controls("plain é ✓\n"), "plain é ✓\n");
    }
}
