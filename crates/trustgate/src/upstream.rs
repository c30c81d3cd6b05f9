//! Upstream clients: one pooled keep-alive client per upstream, with its own TLS settings.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, UpstreamConfig};

/// A configured upstream and its connection pool.
pub(crate) struct Upstream {
    pub(crate) config: UpstreamConfig,
    pub(crate) client: Client<HttpsConnector<HttpConnector>, Incoming>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("id", &self.config.id)
            .field("authority", &self.config.authority)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub(crate) fn new(config: UpstreamConfig) -> Result<Self, ConfigError> {
        let id = config.id.clone();
        let err = move |what: String| ConfigError(format!("upstream {id:?}: {what}"));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        match &config.ca_file {
            // A custom CA replaces the public roots: an internal service should not be reachable
            // with any publicly issued certificate.
            Some(ca) => {
                let certs = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| err(format!("cannot read ca_file {}: {e}", ca.display())))?;
                for cert in certs {
                    let cert = cert.map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| err(format!("ca_file {}: {e}", ca.display())))?;
                }
            }
            None => roots.extend(webpki_roots_certs()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_root_certificates(roots);
        let tls = match (&config.client_cert, &config.client_key) {
            (Some(cert), Some(key)) => {
                let chain = CertificateDer::pem_file_iter(cert)
                    .map_err(|e| err(format!("cannot read client_cert {}: {e}", cert.display())))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| err(format!("client_cert {}: {e}", cert.display())))?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| err(format!("cannot read client_key {}: {e}", key.display())))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| err(format!("client certificate: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self { config, client })
    }
}

fn webpki_roots_certs() -> impl Iterator<Item = rustls_pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.iter().cloned()
}
