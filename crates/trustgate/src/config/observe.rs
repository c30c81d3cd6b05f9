//! `[telemetry]` (OpenTelemetry traces) and `[audit]` (the decision log): from the file, and for
//! telemetry the standard `OTEL_*` environment variables, to validated settings.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// `[telemetry]`: OpenTelemetry traces, exported over OTLP. Off unless `enabled = true`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileTelemetry {
    pub(crate) enabled: bool,
    /// The collector's base URL; else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as it is) or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; else the protocol's default on localhost.
    pub(crate) endpoint: Option<String>,
    /// Else `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`; else gRPC.
    pub(crate) protocol: Option<OtlpProtocol>,
    /// Else from `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` ([`env_sample_ratio`]); else 1.0.
    pub(crate) sample_ratio: Option<f64>,
    pub(crate) trust_incoming: TrustIncoming,
    /// Else `OTEL_SERVICE_NAME`; else "trustgate".
    pub(crate) service_name: Option<String>,
    /// Claims whose values may be span attributes (`trustgate.claim.<name>`). None by default:
    /// claim values are personal data.
    pub(crate) span_claims: Vec<String>,
}

/// How spans are exported.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum OtlpProtocol {
    /// OTLP/gRPC (tonic), default port 4317.
    Grpc,
    /// OTLP/HTTP with protobuf bodies (`POST /v1/traces`), default port 4318.
    Http,
}

/// Whose `traceparent` the gateway continues.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum TrustIncoming {
    /// Only from a peer in `server.trusted_proxies`; anyone else's is replaced.
    #[default]
    TrustedProxies,
    /// Never: every request starts a trace of its own.
    Never,
    /// From any client.
    Always,
}

/// `[audit]`: one JSON event per decision.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct FileAudit {
    pub(crate) enabled: bool,
    pub(crate) path: String,
    pub(crate) subject: SubjectMode,
    pub(crate) chain: bool,
    pub(crate) queue: usize,
}

impl Default for FileAudit {
    fn default() -> Self {
        Self {
            enabled: false,
            path: "-".into(),
            subject: SubjectMode::Hash,
            chain: true,
            queue: 8192,
        }
    }
}

/// How the token's subject is written in an audit event.
#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SubjectMode {
    /// Hex SHA-256 of the subject.
    #[default]
    Hash,
    /// As it is.
    Clear,
}

/// Validated `[telemetry]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TelemetryConfig {
    /// Where spans go: for gRPC the collector's URL, for HTTP the full `/v1/traces` URL.
    pub(crate) endpoint: String,
    pub(crate) protocol: OtlpProtocol,
    pub(crate) sample_ratio: f64,
    pub(crate) trust_incoming: TrustIncoming,
    pub(crate) service_name: String,
    pub(crate) span_claims: Vec<String>,
}

/// Where audit events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuditPath {
    Stdout,
    File(PathBuf),
}

/// Validated `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuditConfig {
    pub(crate) path: AuditPath,
    pub(crate) subject: SubjectMode,
    pub(crate) chain: bool,
    pub(crate) queue: usize,
}

/// `[telemetry]`, with the `OTEL_*` variables filling what the file leaves out. `None` when off
/// (the default, or `OTEL_SDK_DISABLED=true`).
pub(crate) fn telemetry(
    file: FileTelemetry,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<TelemetryConfig>, ConfigError> {
    let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    // A specification boolean: `true` in any case.
    if !file.enabled
        || var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return Ok(None);
    }
    let protocol = match file.protocol {
        Some(protocol) => protocol,
        None => match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
            .map(str::trim)
        {
            None | Some("grpc") => OtlpProtocol::Grpc,
            Some("http/protobuf") => OtlpProtocol::Http,
            Some(other) => {
                return Err(ConfigError::new(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL = {other:?} is not supported; use \"grpc\" or \"http/protobuf\" (or set telemetry.protocol)"
                )));
            }
        },
    };
    let (endpoint, field) = match (&file.endpoint, var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
        (Some(base), _) => (signal_url(base, protocol), "telemetry.endpoint"),
        // The signal's own variable is the full URL, as the specification says.
        (None, Some(full)) => (full.trim().to_owned(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
        (None, None) => match var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            Some(base) => (signal_url(&base, protocol), "OTEL_EXPORTER_OTLP_ENDPOINT"),
            None => (
                signal_url(
                    match protocol {
                        OtlpProtocol::Grpc => "http://localhost:4317",
                        OtlpProtocol::Http => "http://localhost:4318",
                    },
                    protocol,
                ),
                "telemetry.endpoint",
            ),
        },
    };
    let uri: http::Uri = endpoint.parse().map_err(|_| {
        ConfigError::new(format!(
            "{field} = {endpoint:?} is not a URL; write e.g. \"http://otel-collector:4317\""
        ))
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(ConfigError::new(format!(
            "{field} = {endpoint:?} must be an http:// or https:// URL with a host"
        )));
    }
    let sample_ratio = match file.sample_ratio {
        Some(ratio) => (ratio, "telemetry.sample_ratio"),
        None => env_sample_ratio(&var)?,
    };
    if !(0.0..=1.0).contains(&sample_ratio.0) {
        return Err(ConfigError::new(format!(
            "{} = {} must be between 0 and 1 (0.01 samples one request in a hundred)",
            sample_ratio.1, sample_ratio.0
        )));
    }
    let service_name = file
        .service_name
        .or_else(|| var("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "trustgate".into());
    for name in &file.span_claims {
        if name.is_empty() || name.chars().any(|c| c.is_control()) {
            return Err(ConfigError::new(format!(
                "telemetry.span_claims: {name:?} is not a claim name"
            )));
        }
    }
    Ok(Some(TelemetryConfig {
        endpoint,
        protocol,
        sample_ratio: sample_ratio.0,
        trust_incoming: file.trust_incoming,
        service_name,
        span_claims: file.span_claims,
    }))
}

/// The ratio `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` ask for, and the variable that
/// gave it. The gateway's sampler is always parent-based (a believed `traceparent` decides, see
/// `trust_incoming`), so each sampler counts as its parent-based form: `always_on` 1,
/// `always_off` 0, `traceidratio` its argument. Unset, the argument alone is read (as before this
/// variable was). A sampler the gateway does not have is refused rather than read as another.
fn env_sample_ratio(
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<(f64, &'static str), ConfigError> {
    let sampler = var("OTEL_TRACES_SAMPLER").map(|s| s.trim().to_ascii_lowercase());
    match sampler.as_deref() {
        Some("always_on" | "parentbased_always_on") => return Ok((1.0, "OTEL_TRACES_SAMPLER")),
        Some("always_off" | "parentbased_always_off") => return Ok((0.0, "OTEL_TRACES_SAMPLER")),
        None | Some("traceidratio" | "parentbased_traceidratio") => {}
        Some(other) => {
            return Err(ConfigError::new(format!(
                "OTEL_TRACES_SAMPLER = {other:?} is not supported; use always_on, always_off or traceidratio (each parent-based), or set telemetry.sample_ratio"
            )));
        }
    }
    match var("OTEL_TRACES_SAMPLER_ARG") {
        Some(text) => Ok((
            text.trim().parse::<f64>().map_err(|_| {
                ConfigError::new(format!(
                    "OTEL_TRACES_SAMPLER_ARG = {text:?} is not a number between 0 and 1"
                ))
            })?,
            "OTEL_TRACES_SAMPLER_ARG",
        )),
        None => Ok((1.0, "telemetry.sample_ratio")),
    }
}

/// The URL spans are sent to: gRPC uses the base URL, HTTP appends `/v1/traces` (as the
/// specification does for `OTEL_EXPORTER_OTLP_ENDPOINT`).
fn signal_url(base: &str, protocol: OtlpProtocol) -> String {
    let base = base.trim();
    match protocol {
        OtlpProtocol::Grpc => base.to_owned(),
        OtlpProtocol::Http => format!("{}/v1/traces", base.trim_end_matches('/')),
    }
}

/// `[audit]`, or `None` when off.
pub(crate) fn audit(file: FileAudit, base: &Path) -> Result<Option<AuditConfig>, ConfigError> {
    if !file.enabled {
        return Ok(None);
    }
    if file.queue == 0 || file.queue > super::MAX_COUNT {
        return Err(ConfigError::new(
            "audit.queue must be between 1 and 1000000000 (events waiting for the writer; the default is 8192)",
        ));
    }
    let path = match file.path.as_str() {
        "" => {
            return Err(ConfigError::new(
                "audit.path is empty; write a file path, or \"-\" for standard output",
            ));
        }
        "-" => AuditPath::Stdout,
        path => AuditPath::File(super::resolve(base, Path::new(path))),
    };
    Ok(Some(AuditConfig {
        path,
        subject: file.subject,
        chain: file.chain,
        queue: file.queue,
    }))
}
