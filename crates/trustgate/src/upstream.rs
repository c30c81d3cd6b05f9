//! Upstream connections, each upstream with its own TLS settings.
//!
//! Each upstream keeps a list of idle HTTP/1 connections ([`IdleConnections`]). A request takes
//! the most recently used one (or connects), and its response body gives the connection back when
//! it has been read to its end ([`UpstreamBody`]), so a connection is never handed to a second
//! request while a first one's response is still on it. This costs a short lock on each side,
//! where a general-purpose pool (hyper-util's) costs a hashed pool key, a checkout future and a
//! spawned task per request.
//!
//! An HTTP/2 upstream (`protocol = "http2"`, gRPC's) has multiplexed connections instead
//! ([`Multiplexed`]): one by default, or `http2_connections` taken in turn, each made when first
//! needed and again when the upstream closes it. Several let an L4 balancer in front of the
//! upstream (a Kubernetes Service) spread the requests over its replicas, since it places each
//! connection once. A semaphore bounds the requests in flight to the upstream
//! (`max_concurrent_streams`), and h2 does flow control, so a stream is never buffered whole.
//!
//! Protocol upgrades go through hyper-util's pooled client instead: their upstream connection
//! becomes the tunnel and never returns to a list.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http::header::HOST;
use http::{HeaderMap, Request, Response, Uri, Version};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service as _;
use trustgate_edge::GatewayError;
use trustgate_edge::headers::sanitize_response_trailers;

use crate::config::{ConfigError, UpstreamConfig, UpstreamProtocol};

/// The buffers of an HTTP/1 upstream connection, each: what of a request body is queued for the
/// upstream, and the read buffer (so the largest response head). See [`Upstream::connect`].
const UPSTREAM_BUF_BYTES: usize = 64 * 1024;

/// Why an upstream exchange produced no response; for debug logs only.
pub(crate) type ExchangeError = Box<dyn std::error::Error + Send + Sync>;

/// A configured upstream and its connections.
pub(crate) struct Upstream {
    pub(crate) config: UpstreamConfig,
    /// For upgrades only (see the module documentation).
    upgrades: Client<HttpsConnector<HttpConnector>, RequestBody>,
    connector: HttpsConnector<HttpConnector>,
    /// `scheme://authority/`, what the connector needs to know where to connect.
    connect_to: Uri,
    /// HTTP/1 upstreams' connections.
    idle: Arc<IdleConnections>,
    /// HTTP/2 upstreams' connections.
    multiplexed: Option<Multiplexed>,
}

/// An HTTP/2 upstream's connections, shared by every request to it.
struct Multiplexed {
    /// `http2_connections` of them, at least one; each request takes the next in turn.
    slots: Box<[Slot]>,
    next: AtomicUsize,
    /// One permit per request in flight, held until its response body ends.
    streams: Arc<Semaphore>,
}

/// One of an HTTP/2 upstream's connections, and its replacement when the upstream closes it.
#[derive(Default)]
struct Slot {
    current: ArcSwapOption<http2::SendRequest<RequestBody>>,
    /// Held while a connection is being made, so that requests arriving meanwhile wait for it
    /// instead of each opening one. Never held while a request is sent.
    connecting: tokio::sync::Mutex<()>,
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
                // No certificate at all (a DER file, a key): every connection would fail, so the
                // mistake is said at load rather than as 502s.
                if roots.is_empty() {
                    return Err(err(format!(
                        "ca_file {} holds no PEM certificate",
                        ca.display()
                    )));
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
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    err(format!(
                        "cannot read client_key {}: {}",
                        key.display(),
                        crate::config::pem_key_error(&e)
                    ))
                })?;
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
        let http1_connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http.clone());
        let (connector, multiplexed) = match config.protocol {
            UpstreamProtocol::Http1 => (http1_connector.clone(), None),
            UpstreamProtocol::Http2 => {
                // ALPN offers `h2` alone: an upstream configured for HTTP/2 that cannot speak it
                // fails its first request instead of being spoken to in HTTP/1.
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_http2()
                    .wrap_connector(http);
                let multiplexed = Multiplexed {
                    slots: (0..config.http2_connections.max(1))
                        .map(|_| Slot::default())
                        .collect(),
                    next: AtomicUsize::new(0),
                    streams: Arc::new(Semaphore::new(config.max_concurrent_streams)),
                };
                (connector, Some(multiplexed))
            }
        };
        // An upgraded connection becomes the tunnel; one whose upgrade was refused is not kept.
        // Upgrades are HTTP/1 (`Connection: upgrade`) whatever the upstream's protocol.
        let upgrades = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(http1_connector);
        let connect_to = Uri::builder()
            .scheme(config.scheme.clone())
            .authority(config.authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| err(e.to_string()))?;
        let idle = Arc::new(IdleConnections {
            list: Mutex::new(VecDeque::new()),
            max: config.pool_max_idle_per_host,
            timeout: config.pool_idle_timeout,
            reaping: AtomicBool::new(false),
        });
        Ok(Self {
            config,
            upgrades,
            connector,
            connect_to,
            idle,
            multiplexed,
        })
    }

    /// Sends `request`, whose URI names this upstream, and returns the response head. `now` is
    /// the caller's reading of the clock, for the idle list's timeout.
    pub(crate) async fn send(
        &self,
        request: Request<RequestBody>,
        upgrade: bool,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, ExchangeError> {
        if upgrade {
            let response = self.upgrades.request(request).await?;
            return Ok(response.map(|body| UpstreamBody {
                body,
                connection: None,
                stream: None,
            }));
        }
        match &self.multiplexed {
            // Boxed: its state (a stream slot's wait, an HTTP/2 handshake) would otherwise be part
            // of every request's future, HTTP/1 ones too, and moving that future copies it: 8,000
            // instructions more per HTTP/1 request (callgrind, same-token workload).
            Some(multiplexed) => Box::pin(self.send_multiplexed(multiplexed, request)).await,
            None => self.send_pooled(request, now).await,
        }
    }

    /// Sends `request` on the upstream's HTTP/2 connection, once a stream slot is free.
    async fn send_multiplexed(
        &self,
        multiplexed: &Multiplexed,
        mut request: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, ExchangeError> {
        // The caller's timeout bounds this wait too: a full upstream is answered like a slow one.
        let stream = Arc::clone(&multiplexed.streams).acquire_owned().await?;
        // HTTP/2 carries the host as `:authority`, from the target URI; the connection is made to
        // the upstream whatever it says, so a preserved Host goes there.
        let authority = request
            .headers_mut()
            .remove(HOST)
            .and_then(|host| http::uri::Authority::try_from(host.as_bytes()).ok())
            .unwrap_or_else(|| self.config.authority.clone());
        let mut target = request.uri().clone().into_parts();
        target.authority = Some(authority);
        target.scheme = Some(self.config.scheme.clone());
        *request.uri_mut() = Uri::from_parts(target)?;
        *request.version_mut() = Version::HTTP_2;
        let slot = multiplexed.next_slot();
        let mut retried = false;
        loop {
            let mut sender = self.multiplexed_sender(slot).await?;
            match sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(response.map(|body| UpstreamBody {
                        body,
                        connection: None,
                        stream: Some(stream),
                    }));
                }
                Err(mut err) => match err.take_message() {
                    // Not sent (the connection was closing): once more, on a new connection.
                    Some(unsent) if !retried => {
                        retried = true;
                        request = unsent;
                        slot.forget_closed();
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// The slot's open HTTP/2 connection, made first if there is none.
    async fn multiplexed_sender(
        &self,
        slot: &Slot,
    ) -> Result<http2::SendRequest<RequestBody>, ExchangeError> {
        if let Some(open) = slot.open() {
            return Ok(open);
        }
        let _connecting = slot.connecting.lock().await;
        // Another request may have connected while this one waited.
        if let Some(open) = slot.open() {
            return Ok(open);
        }
        let io = self.connector.clone().call(self.connect_to.clone()).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            // A connection the upstream stopped answering is found and replaced.
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(10))
            .handshake(io)
            .await?;
        let upstream = self.config.id.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%upstream, error = %err, "upstream HTTP/2 connection ended with an error");
            }
        });
        slot.current.store(Some(Arc::new(sender.clone())));
        Ok(sender)
    }

    async fn send_pooled(
        &self,
        mut request: Request<RequestBody>,
        now: Instant,
    ) -> Result<Response<UpstreamBody>, ExchangeError> {
        // The connection already says where the request goes; on it the target is origin-form.
        let origin_form = match request.uri().path_and_query() {
            Some(path_and_query) => Uri::from(path_and_query.clone()),
            None => Uri::from_static("/"),
        };
        *request.uri_mut() = origin_form;
        let mut reused = self.idle.take(now);
        loop {
            let (mut sender, fresh) = match reused.take() {
                Some(sender) => (sender, false),
                // Boxed: connecting is rare next to reuse, and its future (connector, TLS and
                // handshake) would otherwise make every request's future larger, and so every
                // move of it dearer.
                None => (Box::pin(self.connect()).await?, true),
            };
            // An idle connection may have been closed by the upstream since its last response.
            if let Err(err) = sender.ready().await {
                if fresh {
                    return Err(err.into());
                }
                reused = self.idle.take(Instant::now());
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => return Ok(self.idle.lend(response, sender)),
                Err(mut err) => match err.take_message() {
                    // Nothing of it was written: it may go out on another connection. One that
                    // was written is not sent again, since it may have had an effect.
                    Some(unsent) if !fresh => {
                        request = unsent;
                        reused = self.idle.take(Instant::now());
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// A new HTTP/1 connection, driven by a task of its own.
    async fn connect(&self) -> Result<http1::SendRequest<RequestBody>, ExchangeError> {
        let io = self.connector.clone().call(self.connect_to.clone()).await?;
        // Flattened writes, as on the downstream side (see `server::run`): a request head and a
        // small body go out in one buffer.
        //
        // `max_buf_size` bounds both buffers of the connection: the request body queued for an
        // upstream that reads slowly or not at all, and the read buffer a response's chunks are
        // cut from. hyper's default, about 400 KiB, is held per exchange: 256 HTTP/2 streams
        // uploading to an upstream that never reads made one client connection hold 124 MiB
        // (`h2_abuse.rs`), 26 MiB with 64 KiB. It also bounds a response head: hyper refuses one
        // still unfinished after 64 KiB are read (502), and a read adds 64 KiB at most, so a head
        // under 64 KiB always passes and one of 128 KiB never does (Envoy's default limit is
        // 60 KiB).
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .max_buf_size(UPSTREAM_BUF_BYTES)
            .handshake(io)
            .await?;
        let upstream = self.config.id.clone();
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%upstream, error = %err, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }
}

impl Multiplexed {
    /// The connection slot for the next request: each in turn.
    fn next_slot(&self) -> &Slot {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        // Invariant: `slots` holds at least one (`Upstream::new` makes
        // `http2_connections.max(1)`), so the remainder is an index into it.
        &self.slots[turn % self.slots.len()]
    }
}

impl Slot {
    fn open(&self) -> Option<http2::SendRequest<RequestBody>> {
        self.current
            .load()
            .as_deref()
            .filter(|sender| !sender.is_closed())
            .cloned()
    }

    /// Drops the current connection if it is closed (unless another has replaced it already), so
    /// the next request makes a new one.
    fn forget_closed(&self) {
        self.current.rcu(|current| match current.as_deref() {
            Some(sender) if sender.is_closed() => None,
            _ => current.clone(),
        });
    }
}

/// What the proxy does to a request's trailers before they go upstream (see
/// `trustgate_edge::headers::sanitize_request_trailers`).
pub(crate) trait TrailerFilter: Send + Sync {
    fn sanitize(&self, trailers: &mut HeaderMap);
}

/// A request body on its way upstream: the client's body, with the frames read ahead by
/// [`RequestBody::read_ahead`] first, and its trailers sanitized.
pub(crate) struct RequestBody {
    ahead: std::collections::VecDeque<Frame<Bytes>>,
    rest: Incoming,
    /// Set when the client's body fails after the request went upstream, so the refusal is the
    /// client's 400 rather than the upstream's 502. Only chunked bodies have one.
    failed: Option<Arc<AtomicBool>>,
    /// `None` only for a body without trailers (an empty one): every trailer is sanitized.
    trailers: Option<Arc<dyn TrailerFilter>>,
}

/// How much of a chunked body [`RequestBody::read_ahead`] reads beyond its first frame, from
/// what has already arrived.
const READ_AHEAD_BYTES: usize = 64 * 1024;

impl RequestBody {
    /// The client's body; its trailers, if any, go through `trailers`.
    pub(crate) fn new(body: Incoming, trailers: impl FnOnce() -> Arc<dyn TrailerFilter>) -> Self {
        // An empty body has no trailers either: the filter is not even cloned for it.
        let trailers = (!body.is_end_stream()).then(trailers);
        Self {
            ahead: std::collections::VecDeque::new(),
            rest: body,
            failed: None,
            trailers,
        }
    }

    /// `frame`, with its fields sanitized if it is the trailers.
    fn filtered(&self, frame: Frame<Bytes>) -> Frame<Bytes> {
        match frame.into_trailers() {
            Ok(mut trailers) => {
                // Fail closed: a body that had no filter had no trailers to expect.
                match &self.trailers {
                    Some(filter) => filter.sanitize(&mut trailers),
                    None => trailers.clear(),
                }
                Frame::trailers(trailers)
            }
            Err(frame) => frame,
        }
    }

    /// For a body whose length is not known (chunked): waits for its first frame, then reads on
    /// through whatever has already arrived (up to 64 KiB), before the request goes upstream.
    /// So a malformed chunk that came with the request is refused (400) before any upstream
    /// connection is opened or any byte is sent. Reading also sends the `100 Continue` a client
    /// may wait for, which is right: the request was accepted. A body with a known length is
    /// left alone: hyper frames it by counting, there is nothing to be malformed.
    ///
    /// # Errors
    /// `Framing("bad_body")` for the body's own error (its framing is malformed, or the client
    /// went away); `RequestTimeout` when its first frame did not come within `first_within`.
    pub(crate) async fn read_ahead(mut self, first_within: Duration) -> Result<Self, GatewayError> {
        if self.rest.is_end_stream() || self.rest.size_hint().exact().is_some() {
            return Ok(self);
        }
        let refused = |err: hyper::Error| {
            tracing::debug!(error = %err, "request body refused");
            GatewayError::Framing("bad_body")
        };
        self.failed = Some(Arc::new(AtomicBool::new(false)));
        // A head promising a chunked body that never comes must not hold the connection, and
        // its `max_connections` slot, past every timeout: the first frame is owed within
        // `first_within`. (Only here, where a timer is needed: not on every request.)
        let first = tokio::time::timeout(
            first_within,
            std::future::poll_fn(|cx| Pin::new(&mut self.rest).poll_frame(cx)),
        )
        .await
        .map_err(|_| GatewayError::RequestTimeout)?;
        let Some(first) = first.transpose().map_err(refused)? else {
            return Ok(self);
        };
        let mut buffered = first.data_ref().map_or(0, Bytes::len);
        self.ahead.push_back(first);
        // Only what is already here: polled with a waker that is never woken, so this never
        // waits for the client. hyper decodes the body on the connection's task and hands it
        // over a channel, so that task gets two chances to run before "nothing yet" is believed.
        let mut chances = 2;
        while buffered < READ_AHEAD_BYTES {
            let polled = {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                Pin::new(&mut self.rest).poll_frame(&mut cx)
            };
            match polled {
                Poll::Ready(Some(frame)) => {
                    let frame = frame.map_err(refused)?;
                    buffered += frame.data_ref().map_or(0, Bytes::len);
                    self.ahead.push_back(frame);
                }
                Poll::Pending if chances > 0 => {
                    chances -= 1;
                    tokio::task::yield_now().await;
                }
                Poll::Ready(None) | Poll::Pending => break,
            }
        }
        Ok(self)
    }

    /// Whether the client's body failed while it was being sent upstream.
    pub(crate) fn failure_flag(&self) -> Option<Arc<AtomicBool>> {
        self.failed.clone()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(frame) = self.ahead.pop_front() {
            return Poll::Ready(Some(Ok(self.filtered(frame))));
        }
        match ready!(Pin::new(&mut self.rest).poll_frame(cx)) {
            Some(Ok(frame)) => Poll::Ready(Some(Ok(self.filtered(frame)))),
            Some(Err(err)) => {
                if let Some(failed) = &self.failed {
                    failed.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Err(err)))
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let ahead: u64 = self
            .ahead
            .iter()
            .filter_map(Frame::data_ref)
            .map(|data| data.len() as u64)
            .sum();
        let mut hint = self.rest.size_hint();
        hint.set_lower(hint.lower().saturating_add(ahead));
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(ahead));
        }
        hint
    }
}

/// An upstream's idle HTTP/1 connections, most recently used last.
struct IdleConnections {
    /// A deque: requests take from the back (the warmest connection) and a full list drops from
    /// the front (the coldest) in constant time, where a vector shifted every entry.
    list: Mutex<VecDeque<Idle>>,
    max: usize,
    timeout: Duration,
    /// Whether the task that closes connections idle past `timeout` is running.
    reaping: AtomicBool,
}

struct Idle {
    sender: http1::SendRequest<RequestBody>,
    since: Instant,
}

impl IdleConnections {
    /// The most recently used idle connection that is still open and not idle too long at `now`.
    fn take(&self, now: Instant) -> Option<http1::SendRequest<RequestBody>> {
        // A poisoned list only means that no connection is reused.
        let mut list = self.list.lock().ok()?;
        while let Some(idle) = list.pop_back() {
            if !idle.sender.is_closed() && now.saturating_duration_since(idle.since) < self.timeout
            {
                return Some(idle.sender);
            }
        }
        None
    }

    /// Puts a connection whose last response has been read to its end back on the list.
    fn put(self: &Arc<Self>, sender: http1::SendRequest<RequestBody>) {
        if sender.is_closed() || self.max == 0 {
            return;
        }
        if !self.reaping.load(Ordering::Relaxed) {
            self.start_reaping();
        }
        let Ok(mut list) = self.list.lock() else {
            return;
        };
        if list.len() >= self.max {
            // The least recently used makes room: the oldest on the list, so also the first to
            // be closed or idle past `timeout` if any is. Not a prune of the whole list, which
            // read the clock once per entry on every request while the list stayed full (a
            // burst of more concurrent requests than `max`); the reaping task prunes.
            list.pop_front();
        }
        list.push_back(Idle {
            sender,
            since: Instant::now(),
        });
    }

    /// Drops (and so closes) the connections idle past `timeout` or closed by the upstream.
    fn prune(&self, list: &mut VecDeque<Idle>) {
        list.retain(|idle| !idle.sender.is_closed() && idle.since.elapsed() < self.timeout);
    }

    /// Starts the task that prunes the list every half `timeout`, so that an idle connection is
    /// closed within one and a half `timeout`s even when no request comes. It is started by the
    /// first connection given back, on the runtime that serves requests, and ends with the
    /// upstream (a reload builds new ones).
    fn start_reaping(self: &Arc<Self>) {
        if self.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let list = Arc::downgrade(self);
        let period = (self.timeout / 2).max(Duration::from_millis(50));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(idle) = list.upgrade() else {
                    break;
                };
                if let Ok(mut list) = idle.list.lock() {
                    idle.prune(&mut list);
                }
            }
        });
    }

    /// Ties `sender` to `response`'s body, which gives it back when read to its end.
    fn lend(
        self: &Arc<Self>,
        response: Response<Incoming>,
        sender: http1::SendRequest<RequestBody>,
    ) -> Response<UpstreamBody> {
        let (parts, body) = response.into_parts();
        let mut body = UpstreamBody {
            body,
            connection: Some(Lent {
                home: Arc::downgrade(self),
                sender,
            }),
            stream: None,
        };
        // No body at all (`204`, `304`, a `HEAD` answer): nothing more will come on it.
        if body.body.is_end_stream() {
            body.give_back();
        }
        Response::from_parts(parts, body)
    }
}

/// A connection out of its idle list while a response comes on it.
struct Lent {
    /// Weak, so that a connection outliving a reload returns to no list and closes.
    home: Weak<IdleConnections>,
    sender: http1::SendRequest<RequestBody>,
}

/// A response body from an upstream. Read to its end, it gives its connection back to the idle
/// list; dropped before that (the client left, or an error), it takes the connection with it.
/// On an HTTP/2 upstream it holds its stream's slot instead, until its end or drop.
pub(crate) struct UpstreamBody {
    body: Incoming,
    connection: Option<Lent>,
    stream: Option<OwnedSemaphorePermit>,
}

impl UpstreamBody {
    fn give_back(&mut self) {
        self.stream = None;
        if let Some(lent) = self.connection.take()
            && let Some(home) = lent.home.upgrade()
        {
            home.put(lent.sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let mut frame = ready!(Pin::new(&mut this.body).poll_frame(cx));
        match &mut frame {
            // hyper stops asking once `is_end_stream` says so, so the last frame is the moment.
            Some(Ok(data)) if !this.body.is_end_stream() => {
                if let Some(trailers) = data.trailers_mut() {
                    sanitize_response_trailers(trailers);
                }
            }
            Some(Ok(data)) => {
                if let Some(trailers) = data.trailers_mut() {
                    sanitize_response_trailers(trailers);
                }
                this.give_back();
            }
            None => this.give_back(),
            Some(Err(_)) => {
                this.connection = None;
                this.stream = None;
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn webpki_roots_certs() -> impl Iterator<Item = rustls_pki_types::TrustAnchor<'static>> {
    webpki_roots::TLS_SERVER_ROOTS.iter().cloned()
}
