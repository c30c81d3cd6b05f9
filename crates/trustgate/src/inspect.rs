//! `trustgate check` and `trustgate explain`: operator tools that print to stdout.
//!
//! Neither prints a secret: token values, cookies and Authorization headers are shown only as
//! their length.
#![allow(clippy::print_stdout)]

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Request};

use crate::config::{self, ConfigError};
use crate::metrics::Metrics;
use crate::proxy::{self, ConnInfo};
use crate::runtime::Runtime;

/// Validates the file, fetches keys and prints the route table. Returns whether all is well.
pub(crate) async fn check(path: &Path) -> Result<bool, ConfigError> {
    let config = config::load(path)?;
    let ids = config::issuer_ids(&config);
    let signer = signer_for(&config)?;
    let runtime = Runtime::build(config, Metrics::new(), signer)?;
    let ready = runtime.start().await;
    let mut out = String::new();
    let _ = writeln!(out, "configuration: ok ({})", path.display());
    let _ = writeln!(
        out,
        "listen: {}  admin: {}",
        runtime.config.server.listen, runtime.config.admin_listen
    );
    let _ = writeln!(out, "\nissuers:");
    for status in runtime.validator.issuer_status() {
        let id = ids.get(&status.issuer).map_or("?", String::as_str);
        let _ = writeln!(
            out,
            "  {id:<12} {:<40} {:<10} keys={} kids={:?}",
            status.issuer,
            if status.usable { "ready" } else { "NOT READY" },
            status.keys,
            status.kids
        );
    }
    let _ = writeln!(out, "\nroutes:");
    let _ = writeln!(
        out,
        "  {:<16} {:<20} {:<24} {:<18} {:<14} issuers",
        "name", "host", "prefix", "pattern", "upstream"
    );
    for route in &runtime.config.routes {
        let issuers: Vec<&str> = route
            .issuers
            .iter()
            .map(|iss| ids.get(iss).map_or(iss.as_str(), String::as_str))
            .collect();
        let _ = writeln!(
            out,
            "  {:<16} {:<20} {:<24} {:<18} {:<14} {}",
            route.name,
            route.host.as_deref().unwrap_or("*"),
            route.prefix,
            route.pattern.name(),
            route.upstream,
            if route.pattern.validates() {
                issuers.join(",")
            } else {
                "-".into()
            }
        );
    }
    print!("{out}");
    if !ready {
        println!("\nwarning: not every issuer has usable keys; the gateway would not be ready");
    }
    Ok(ready)
}

fn signer_for(
    config: &config::Config,
) -> Result<Option<Arc<trustgate_core::InternalSigner>>, ConfigError> {
    config
        .internal
        .as_ref()
        .map(|internal| crate::internal::build_signer(internal, config.admin_listen))
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

/// Runs the request pipeline on a synthetic request and prints every step.
pub(crate) async fn explain(
    path: &Path,
    method: &str,
    target: &str,
    host: Option<&str>,
    token: Option<&str>,
    headers: &[String],
) -> Result<bool, ConfigError> {
    let config = config::load(path)?;
    let signer = signer_for(&config)?;
    let runtime = Arc::new(Runtime::build(config, Metrics::new(), signer)?);
    runtime.start().await;
    let mut builder = Request::builder().method(method).uri(target);
    builder = builder.header("host", host.unwrap_or("localhost"));
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    for header in headers {
        let (name, value) = header.split_once(':').ok_or_else(|| {
            ConfigError(format!("--header {header:?}: write it as 'Name: value'"))
        })?;
        builder = builder.header(name.trim(), value.trim());
    }
    let request = builder
        .body(())
        .map_err(|err| ConfigError(format!("cannot build the request: {err}")))?;
    let (mut parts, ()) = request.into_parts();
    println!("request: {} {}", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        println!("  {name}: {}", redact(name, value));
    }
    let mut trace = Vec::new();
    let conn = ConnInfo {
        peer: IpAddr::V4(Ipv4Addr::LOCALHOST),
        proto: "http",
        raw_framing: Ok(()),
    };
    let result = proxy::prepare(&runtime, &mut parts, conn, Some(&mut trace)).await;
    println!("\nsteps:");
    for (n, step) in trace.iter().enumerate() {
        println!("  {}. {step}", n + 1);
    }
    match result {
        Ok(_) => {
            println!("\ndecision: forward to {}", parts.uri);
            println!("headers the upstream receives:");
            for (name, value) in &parts.headers {
                println!("  {name}: {}", redact(name, value));
            }
            Ok(true)
        }
        Err(refusal) => {
            let response = refusal.error.to_response();
            println!("\ndecision: refuse with {}", response.status());
            for (name, value) in response.headers() {
                println!("  {name}: {}", redact(name, value));
            }
            Ok(false)
        }
    }
}
