//! Upstream connections, each upstream with its own TLS settings.
//!
//! Requests reach an upstream in one of two ways:
//! - **Kept per downstream connection** (HTTP/1 requests without `Upgrade`, the common case).
//!   HTTP/1 requests on one downstream connection come one at a time, so the upstream connection
//!   that served one request is kept in that connection's [`Affinity`] for the next. The next
//!   request goes straight onto it: no pool lookup, no hashing of a pool key, no lock shared with
//!   other connections. A connection is shared with other downstream connections only through
//!   the upstream's idle list, at the first request of a downstream connection (taken) and when
//!   it closes (given back). Upstream connections are never used by two downstream connections
//!   at once, so one client's requests are never interleaved with another's on one connection.
//! - **hyper-util's pooled client** for requests of HTTP/2 downstream connections, whose
//!   concurrent streams need several upstream connections at once, and for protocol upgrades,
//!   whose upstream connection becomes the tunnel.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::header::HOST;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tower_service::Service as _;

use crate::config::{ConfigError, UpstreamConfig};

/// Why an upstream exchange produced no response; for debug logs only.
pub(crate) type ExchangeError = Box<dyn std::error::Error + Send + Sync>;

/// A configured upstream and its connections.
pub(crate) struct Upstream {
    pub(crate) config: UpstreamConfig,
    /// For HTTP/2 downstream requests and upgrades (see the module documentation).
    pooled: Client<HttpsConnector<HttpConnector>, Incoming>,
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector needs to know where to connect.
    connect_to: Uri,
    idle: Arc<IdleConnections>,
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
        let pooled = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector.clone());
        let connect_to = Uri::builder()
            .scheme(config.scheme.clone())
            .authority(config.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| err(e.to_string()))?;
        let idle = Arc::new(IdleConnections {
            list: Mutex::new(Vec::new()),
            max: config.pool_max_idle_per_host,
            timeout: config.pool_idle_timeout,
        });
        Ok(Self {
            config,
            pooled,
            connector,
            connect_to,
            idle,
        })
    }

    /// Sends `request`, whose URI names this upstream, and returns the response head.
    ///
    /// `affinity` is the downstream HTTP/1 connection's [`Affinity`]; `None` sends through the
    /// shared pool (HTTP/2 downstream requests, upgrades).
    pub(crate) async fn send(
        &self,
        request: Request<Incoming>,
        affinity: Option<&Affinity>,
    ) -> Result<Response<Incoming>, ExchangeError> {
        match affinity {
            Some(affinity) => self.send_kept(request, affinity).await,
            None => Ok(self.pooled.request(request).await?),
        }
    }

    async fn send_kept(
        &self,
        mut request: Request<Incoming>,
        affinity: &Affinity,
    ) -> Result<Response<Incoming>, ExchangeError> {
        // The connection already says where the request goes; on it the target is origin-form.
        let origin_form = match request.uri().path_and_query() {
            Some(path_and_query) => Uri::from(path_and_query.clone()),
            None => Uri::from_static("/"),
        };
        *request.uri_mut() = origin_form;
        if !request.headers().contains_key(HOST) {
            request
                .headers_mut()
                .insert(HOST, self.config.host_header.clone());
        }
        let mut reused = affinity.take(&self.idle).or_else(|| self.idle.take());
        loop {
            let (mut kept, fresh) = match reused.take() {
                Some(kept) => (kept, false),
                None => (self.connect().await?, true),
            };
            // A reused connection may have been closed by the upstream since its last response.
            if let Err(err) = kept.sender.ready().await {
                if fresh {
                    return Err(err.into());
                }
                reused = self.idle.take();
                continue;
            }
            match kept.sender.try_send_request(request).await {
                Ok(response) => {
                    affinity.keep(kept);
                    return Ok(response);
                }
                Err(mut err) => match err.take_message() {
                    // Nothing of it was written: it may go out on another connection. One that
                    // was written is not sent again, since it may have had an effect.
                    Some(unsent) if !fresh => {
                        request = unsent;
                        reused = self.idle.take();
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// A new HTTP/1 connection, driven by a task of its own.
    async fn connect(&self) -> Result<Kept, ExchangeError> {
        let io = self.connector.clone().call(self.connect_to.clone()).await?;
        let (sender, connection) = http1::handshake(io).await?;
        let upstream = self.config.id.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%upstream, error = %err, "upstream connection ended with an error");
            }
        });
        Ok(Kept {
            home: Arc::downgrade(&self.idle),
            sender,
            since: Instant::now(),
        })
    }
}

/// An upstream's idle HTTP/1 connections, given back by downstream connections that closed.
struct IdleConnections {
    list: Mutex<Vec<Idle>>,
    max: usize,
    timeout: Duration,
}

struct Idle {
    sender: http1::SendRequest<Incoming>,
    since: Instant,
}

impl IdleConnections {
    /// The most recently used idle connection that is still open and not idle too long.
    fn take(self: &Arc<Self>) -> Option<Kept> {
        // A poisoned list only means that no connection is reused.
        let mut list = self.list.lock().ok()?;
        while let Some(idle) = list.pop() {
            if idle.sender.is_ready() && idle.since.elapsed() < self.timeout {
                return Some(Kept {
                    home: Arc::downgrade(self),
                    sender: idle.sender,
                    since: idle.since,
                });
            }
        }
        None
    }

    fn put(&self, sender: http1::SendRequest<Incoming>, since: Instant) {
        // Only a connection ready for its next request: one still busy with a response that its
        // client stopped reading could hold up whoever took it next.
        if !sender.is_ready() || since.elapsed() >= self.timeout {
            return;
        }
        let Ok(mut list) = self.list.lock() else {
            return;
        };
        // Pruned here rather than by a timer: idle connections matter only when one is wanted.
        list.retain(|idle| idle.sender.is_ready() && idle.since.elapsed() < self.timeout);
        if list.len() < self.max {
            list.push(Idle { sender, since });
        }
    }
}

/// An upstream connection held for a downstream connection, and the idle list it returns to.
struct Kept {
    /// Weak, so that a connection outliving a reload returns to no list and closes.
    home: Weak<IdleConnections>,
    sender: http1::SendRequest<Incoming>,
    /// When its last request was sent, for `pool_idle_timeout`.
    since: Instant,
}

impl Kept {
    fn give_back(self) {
        if let Some(home) = self.home.upgrade() {
            home.put(self.sender, self.since);
        }
    }
}

/// The upstream connection a downstream HTTP/1 connection keeps between its requests.
///
/// Only that connection's requests use it, one at a time, so its lock is never contended. When
/// the downstream connection closes, the upstream connection goes back to its upstream's idle
/// list.
#[derive(Default)]
pub(crate) struct Affinity(Mutex<Option<Kept>>);

impl Affinity {
    /// The kept connection, if it is one of `home`'s and still usable. One to another upstream
    /// (the previous request took another route) goes back to its own list.
    fn take(&self, home: &Arc<IdleConnections>) -> Option<Kept> {
        let kept = self.0.lock().ok()?.take()?;
        if !std::ptr::eq(kept.home.as_ptr(), Arc::as_ptr(home)) {
            kept.give_back();
            return None;
        }
        (!kept.sender.is_closed() && kept.since.elapsed() < home.timeout).then_some(kept)
    }

    fn keep(&self, mut kept: Kept) {
        kept.since = Instant::now();
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(kept);
        }
    }
}

impl Drop for Affinity {
    fn drop(&mut self) {
        if let Some(kept) = self.0.get_mut().ok().and_then(Option::take) {
            kept.give_back();
        }
    }
}

fn webpki_roots_certs() -> impl Iterator<Item = rustls_pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.iter().cloned()
}
