//! `[[upstream]]`: a URL with a scheme and authority only, and its TLS and pool settings.

use std::path::Path;

use http::Uri;

use super::file;
use super::{ConfigError, UpstreamConfig, UpstreamProtocol, resolve};

/// The most `http2_connections`: enough to reach every replica behind a balancer that a
/// gateway should be spreading over, and each connection costs a socket and its buffers.
const MAX_HTTP2_CONNECTIONS: usize = 64;

pub(super) fn upstream_config(
    upstream: file::FileUpstream,
    base: &Path,
) -> Result<UpstreamConfig, ConfigError> {
    let id = &upstream.id;
    let uri: Uri = upstream.url.parse().map_err(|_| {
        ConfigError::new(format!(
            "upstream {id:?}: url {:?} does not parse; write e.g. \"http://127.0.0.1:9000\"",
            upstream.url
        ))
    })?;
    let scheme = uri.scheme().cloned().ok_or_else(|| {
        ConfigError::new(format!(
            "upstream {id:?}: url needs a scheme (http:// or https://)"
        ))
    })?;
    if scheme != http::uri::Scheme::HTTP && scheme != http::uri::Scheme::HTTPS {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: scheme must be http or https"
        )));
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| ConfigError::new(format!("upstream {id:?}: url needs a host")))?;
    // Userinfo would become the upstream's Host (and HTTP/2 :authority) and print in logs.
    if authority.as_str().contains('@') {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: url carries credentials (user@ or user:password@); remove them"
        )));
    }
    if uri.path() != "/" && !uri.path().is_empty() {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: url must not have a path; use the route's rewrite_prefix instead"
        )));
    }
    if upstream.client_cert.is_some() != upstream.client_key.is_some() {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: set both client_cert and client_key for mTLS, or neither"
        )));
    }
    if scheme == http::uri::Scheme::HTTP
        && (upstream.ca_file.is_some() || upstream.client_cert.is_some())
    {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: ca_file/client_cert need an https:// url"
        )));
    }
    if upstream.max_concurrent_streams == 0 || upstream.max_concurrent_streams > super::MAX_COUNT {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: max_concurrent_streams must be between 1 and 1000000000"
        )));
    }
    if !(1..=MAX_HTTP2_CONNECTIONS).contains(&upstream.http2_connections) {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: http2_connections must be from 1 to {MAX_HTTP2_CONNECTIONS}"
        )));
    }
    // Said rather than ignored: an HTTP/1 upstream has a pool of its own, and whoever set this
    // expected its requests spread over that many connections.
    if upstream.http2_connections > 1 && upstream.protocol != UpstreamProtocol::Http2 {
        return Err(ConfigError::new(format!(
            "upstream {id:?}: http2_connections needs protocol = \"http2\" (an HTTP/1 \
             upstream already uses a connection per request in flight)"
        )));
    }
    let host_header = http::HeaderValue::from_str(authority.as_str()).map_err(|_| {
        ConfigError::new(format!(
            "upstream {id:?}: the url's host cannot be sent as a Host header"
        ))
    })?;
    Ok(UpstreamConfig {
        id: upstream.id.clone(),
        scheme,
        authority,
        host_header,
        connect_timeout: upstream.connect_timeout.0,
        response_timeout: upstream.response_timeout.0,
        ca_file: upstream.ca_file.map(|p| resolve(base, &p)),
        client_cert: upstream.client_cert.map(|p| resolve(base, &p)),
        client_key: upstream.client_key.map(|p| resolve(base, &p)),
        preserve_host: upstream.preserve_host,
        pool_idle_timeout: upstream.pool_idle_timeout.0,
        pool_max_idle_per_host: upstream.pool_max_idle_per_host,
        protocol: upstream.protocol,
        max_concurrent_streams: upstream.max_concurrent_streams,
        http2_connections: upstream.http2_connections,
    })
}
