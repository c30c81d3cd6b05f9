//! The HTTP client that fetches discovery documents and key sets.
//!
//! Every fetch has a deadline and a body size limit. A redirect is followed only within the same
//! origin (scheme, host and port), so a compromised or misconfigured endpoint cannot point trustgate
//! at keys on another host. Plain `http` is refused except to loopback addresses, which keeps local
//! development and tests working without letting a network attacker substitute keys.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;

/// The connector of trustgate's own outbound HTTP/1 calls (key sets here; span export in the
/// gateway): `http` or `https`, rustls on aws-lc-rs trusting the web PKI roots and
/// `extra_roots`, connections bounded by `connect_timeout`. Which URLs may be plain `http` is the
/// caller's to check ([`check_key_url`] for keys).
///
/// # Errors
/// An extra root rustls refuses, or no safe protocol version (neither happens with the bundled
/// provider and roots).
pub fn https_connector(
    connect_timeout: Duration,
    extra_roots: &[CertificateDer<'static>],
) -> Result<HttpsConnector<HttpConnector>, rustls::Error> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in extra_roots {
        roots.add(cert.clone())?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Limits and trust anchors for fetching keys.
#[derive(Clone)]
pub struct FetchOptions {
    /// Deadline for one fetch, connection and body included.
    pub timeout: Duration,
    /// The largest accepted response body.
    pub max_body_bytes: usize,
    /// Extra CA certificates (DER) trusted in addition to the bundled web PKI roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Allows plain `http` to non-loopback hosts. Only for closed test networks.
    pub danger_allow_http: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            max_body_bytes: 256 * 1024,
            extra_roots: Vec::new(),
            danger_allow_http: false,
        }
    }
}

impl std::fmt::Debug for FetchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchOptions")
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("extra_roots", &self.extra_roots.len())
            .field("danger_allow_http", &self.danger_allow_http)
            .finish()
    }
}

/// Why a fetch failed. The previous key set stays in force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL does not parse or has no host.
    #[error("invalid URL")]
    InvalidUrl,
    /// `http` to a non-loopback host.
    #[error("plain http is only allowed to loopback addresses; use https")]
    InsecureScheme,
    /// The deadline passed.
    #[error("timed out")]
    Timeout,
    /// Connecting or sending failed.
    #[error("request failed: {0}")]
    Transport(String),
    /// A status other than 200.
    #[error("unexpected HTTP status {0}")]
    Status(u16),
    /// The body exceeded the size limit.
    #[error("response body larger than the limit")]
    TooLarge,
    /// A redirect to another origin.
    #[error("redirect to another origin refused")]
    CrossOriginRedirect,
    /// More than three redirects.
    #[error("too many redirects")]
    TooManyRedirects,
}

/// A successful response.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) body: Bytes,
    /// `Cache-Control: max-age`, if present; `Some(ZERO)` for `no-cache`/`no-store`.
    pub(crate) max_age: Option<Duration>,
}

/// A pooled HTTPS client with fetch limits.
#[derive(Clone)]
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    options: Arc<FetchOptions>,
}

const MAX_REDIRECTS: usize = 3;

/// How long a connection to an issuer stays open unused. Fetches are minutes apart, so this mostly
/// serves a rotation's burst (discovery, then the JWKS, then an unknown kid's refetch).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

impl Fetcher {
    pub(crate) fn new(options: FetchOptions) -> Result<Self, rustls::Error> {
        Self::with_idle_timeout(options, IDLE_TIMEOUT)
    }

    fn with_idle_timeout(options: FetchOptions, idle: Duration) -> Result<Self, rustls::Error> {
        let connector = https_connector(options.timeout, &options.extra_roots)?;
        // The pool closes idle connections only on a timer; without one, an issuer's connection
        // stayed open (or half-closed by the issuer) until the next fetch, minutes later.
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            options: Arc::new(options),
        })
    }

    pub(crate) fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// GETs `url`, following same-origin redirects, within the deadline and size limit.
    pub(crate) async fn get(&self, url: &str) -> Result<Fetched, FetchError> {
        match tokio::time::timeout(self.options.timeout, self.get_inner(url)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout),
        }
    }

    async fn get_inner(&self, url: &str) -> Result<Fetched, FetchError> {
        let mut uri: Uri = url.parse().map_err(|_| FetchError::InvalidUrl)?;
        self.check_scheme(&uri)?;
        for _ in 0..=MAX_REDIRECTS {
            let request = Request::get(uri.clone())
                .header(header::ACCEPT, "application/json")
                .header(header::USER_AGENT, "trustgate")
                .body(Empty::new())
                .map_err(|_| FetchError::InvalidUrl)?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| FetchError::Transport(error_chain(&err)))?;
            let status = response.status();
            if status.is_redirection() {
                let location = response
                    .headers()
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::Status(status.as_u16()))?;
                uri = same_origin_target(&uri, location)?;
                continue;
            }
            if status != StatusCode::OK {
                return Err(FetchError::Status(status.as_u16()));
            }
            let max_age = cache_max_age(response.headers());
            let limited = Limited::new(response.into_body(), self.options.max_body_bytes);
            let body = match limited.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(err) if err.is::<http_body_util::LengthLimitError>() => {
                    return Err(FetchError::TooLarge);
                }
                Err(err) => return Err(FetchError::Transport(err.to_string())),
            };
            return Ok(Fetched { body, max_age });
        }
        Err(FetchError::TooManyRedirects)
    }

    fn check_scheme(&self, uri: &Uri) -> Result<(), FetchError> {
        check_key_url(uri, self.options.danger_allow_http)
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The one rule for where keys may be fetched from: `https`, or plain `http` only to a loopback
/// host unless `danger_allow_http`. Used by every fetch (redirects included) and by configuration
/// loading, so `trustgate check` refuses what fetching would refuse.
///
/// # Errors
/// [`FetchError::InsecureScheme`] for plain `http` elsewhere; [`FetchError::InvalidUrl`] for any
/// other scheme or a URL without a host.
pub fn check_key_url(uri: &Uri, danger_allow_http: bool) -> Result<(), FetchError> {
    let host = uri.host().ok_or(FetchError::InvalidUrl)?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if danger_allow_http || is_loopback(host) => Ok(()),
        Some("http") => Err(FetchError::InsecureScheme),
        _ => Err(FetchError::InvalidUrl),
    }
}

/// Whether `host` (a name or an IP literal, brackets allowed) is this machine: `localhost` or a
/// loopback address.
pub(crate) fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn same_origin_target(current: &Uri, location: &str) -> Result<Uri, FetchError> {
    if location.starts_with('/') && !location.starts_with("//") {
        let mut parts = current.clone().into_parts();
        parts.path_and_query = Some(location.parse().map_err(|_| FetchError::InvalidUrl)?);
        return Uri::from_parts(parts).map_err(|_| FetchError::InvalidUrl);
    }
    let target: Uri = location.parse().map_err(|_| FetchError::InvalidUrl)?;
    let same = target.scheme() == current.scheme()
        && target
            .authority()
            .zip(current.authority())
            .is_some_and(|(a, b)| a.as_str().eq_ignore_ascii_case(b.as_str()));
    if same {
        Ok(target)
    } else {
        Err(FetchError::CrossOriginRedirect)
    }
}

/// Reads `max-age` from Cache-Control. `no-store` and `no-cache` count as zero, which the caller
/// raises to its minimum refresh interval.
pub(crate) fn cache_max_age(headers: &http::HeaderMap) -> Option<Duration> {
    let mut max_age = None;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let directive = directive.trim();
            if directive.eq_ignore_ascii_case("no-store")
                || directive.eq_ignore_ascii_case("no-cache")
            {
                return Some(Duration::ZERO);
            }
            if let Some((name, secs)) = directive.split_once('=')
                && name.trim().eq_ignore_ascii_case("max-age")
                && let Ok(secs) = secs.trim().trim_matches('"').parse::<u64>()
            {
                max_age = Some(Duration::from_secs(secs));
            }
        }
    }
    max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The issuer side: accepts one connection, answers one keep-alive GET with a JWKS, then
    /// reports how long the client took to close the connection.
    #[tokio::test]
    async fn an_idle_connection_to_an_issuer_is_closed_after_the_idle_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        let issuer = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.unwrap();
                assert_ne!(n, 0, "closed before the request ended");
                head.extend_from_slice(&buf[..n]);
            }
            let body = br#"{"keys":[]}"#;
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
            stream.write_all(answer.as_bytes()).await.unwrap();
            stream.write_all(body).await.unwrap();
            let answered = tokio::time::Instant::now();
            // The client's close is a read of 0 bytes; nothing else comes on this connection.
            let n = stream.read(&mut buf).await.unwrap();
            (n, answered.elapsed())
        });
        let fetcher =
            Fetcher::with_idle_timeout(FetchOptions::default(), Duration::from_millis(200))
                .unwrap();
        let fetched = fetcher.get(&url).await.unwrap();
        assert_eq!(&fetched.body[..], br#"{"keys":[]}"#);
        // The fetcher lives on, idle: the pool's timer alone must close the connection.
        let (read, after) = tokio::time::timeout(Duration::from_secs(5), issuer)
            .await
            .expect("the idle connection was never closed")
            .unwrap();
        assert_eq!(read, 0);
        assert!(
            after >= Duration::from_millis(200),
            "closed after {after:?}"
        );
        drop(fetcher);
    }

    #[test]
    fn redirect_origin_rules() {
        let here: Uri = "https://idp.example/keys".parse().unwrap();
        assert_eq!(
            same_origin_target(&here, "/v2/keys").unwrap().to_string(),
            "https://idp.example/v2/keys"
        );
        assert!(same_origin_target(&here, "https://IDP.example/x").is_ok());
        for bad in [
            "https://evil.example/keys",
            "http://idp.example/keys",
            "https://idp.example:8443/keys",
            "//evil.example/keys",
        ] {
            assert_eq!(
                same_origin_target(&here, bad).unwrap_err(),
                FetchError::CrossOriginRedirect,
                "{bad}"
            );
        }
    }

    #[test]
    fn max_age_parsing() {
        let mut h = http::HeaderMap::new();
        assert_eq!(cache_max_age(&h), None);
        h.insert(
            header::CACHE_CONTROL,
            "public, max-age=600".parse().unwrap(),
        );
        assert_eq!(cache_max_age(&h), Some(Duration::from_secs(600)));
        h.insert(header::CACHE_CONTROL, "no-store".parse().unwrap());
        assert_eq!(cache_max_age(&h), Some(Duration::ZERO));
        h.insert(header::CACHE_CONTROL, "max-age=abc".parse().unwrap());
        assert_eq!(cache_max_age(&h), None);
    }

    #[test]
    fn loopback_detection() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "[::1]", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["10.0.0.1", "example.com", "127.0.0.1.nip.io", "0.0.0.0"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
