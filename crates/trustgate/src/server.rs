//! Listeners and connections: TLS termination, HTTP/1.1 and HTTP/2 (h2c and ALPN), connection
//! limits, header-read and idle timeouts, reload and graceful shutdown.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::admin;
use crate::config::{self, Config, ConfigError};
use crate::connections::{ConnectionSlot, PerClient};
use crate::gateway::Gateway;
use crate::limits::{Activity, Counted};
use crate::metrics::Metrics;
use crate::proxy::{self, ConnInfo};
use crate::runtime::{Observers, Runtime};
use crate::telemetry::RequestTracing;
use trustgate_edge::framing::h1 as h1_framing;

/// Listener addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub(crate) proxy: SocketAddr,
    pub(crate) admin: SocketAddr,
    /// The decision endpoint, with a `[forward_auth]` section.
    pub(crate) decisions: Option<SocketAddr>,
    /// Envoy's gRPC ext_authz, with `forward_auth.grpc_listen`.
    pub(crate) grpc: Option<SocketAddr>,
}

/// Why the gateway did not start, or `check` and `explain` could not build it: its configuration
/// (the operator's file), or the state of the machine or the network (a port it could not bind,
/// TLS files not there yet, the store out of reach). They exit with different codes
/// (`main.rs`), so a supervisor can tell "fix the file" from "try again".
#[derive(Debug)]
pub(crate) enum StartError {
    /// The configuration cannot be used (signer keys, runtime build).
    Config(ConfigError),
    /// The store (`[store]`) is down or out of reach. Not the file's fault either: the store may
    /// be back in a moment.
    StoreUnavailable(String),
    /// The TLS certificate or key cannot be read or used. Not always the file's fault: a
    /// certificate manager may not have written them yet, so it exits like a busy port.
    Tls(ConfigError),
    /// A listener could not be bound.
    Bind {
        /// The field that sets the address, e.g. `server.listen`.
        field: &'static str,
        addr: std::net::SocketAddr,
        source: io::Error,
    },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(err) | StartError::Tls(err) => err.fmt(f),
            StartError::StoreUnavailable(message) => f.write_str(message),
            StartError::Bind {
                field,
                addr,
                source,
            } => write!(
                f,
                "cannot listen on {addr} ({field}): {source}; set {field} to a free address, or stop the program that holds it"
            ),
        }
    }
}

impl From<ConfigError> for StartError {
    fn from(err: ConfigError) -> Self {
        StartError::Config(err)
    }
}

async fn bind(field: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            field,
            addr,
            source,
        })
}

pub(crate) async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    on_bound: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), StartError> {
    let metrics = Metrics::new();
    for warning in config::warnings(&config.routes) {
        tracing::warn!("{warning}");
    }
    let tls = config
        .server
        .tls
        .as_ref()
        .map(tls_acceptor)
        .transpose()
        .map_err(StartError::Tls)?;
    // The admin port is bound first: the internal issuer's default URL is its address. Every
    // other check has already run in `config::load`.
    let admin_listener = bind("admin.listen", config.admin_listen).await?;
    let admin_addr = admin_listener
        .local_addr()
        .map_err(|e| ConfigError(e.to_string()))?;
    let signer = config
        .internal
        .as_ref()
        .map(|internal| crate::signer::build_signer(internal, admin_addr))
        .transpose()?;
    let decisions_listener = match &config.forward_auth {
        Some(forward_auth) => Some(bind("forward_auth.listen", forward_auth.listen).await?),
        None => None,
    };
    let grpc_listener = match config.forward_auth.as_ref().and_then(|fa| fa.grpc_listen) {
        Some(addr) => Some(bind("forward_auth.grpc_listen", addr).await?),
        None => None,
    };
    let fleet = crate::fleet::Fleet::start(
        &config,
        Arc::clone(&metrics.fleet),
        signer.as_ref(),
        crate::fleet::Mode::Serve,
    )
    .await?;
    let observers = Observers {
        tracing: config
            .telemetry
            .as_ref()
            .map(|telemetry| Arc::new(RequestTracing::new(telemetry))),
        audit: config
            .audit
            .as_ref()
            .map(|audit| crate::audit::Sink::start(audit, metrics.audit_dropped()))
            .transpose()?,
    };
    let runtime = Runtime::build(
        config,
        Arc::clone(&metrics),
        signer.clone(),
        &fleet,
        &observers,
    )?;
    let server = runtime.config.server.clone();
    let proxy_listener = bind("server.listen", server.listen).await?;
    let bound = Bound {
        proxy: proxy_listener
            .local_addr()
            .map_err(|e| ConfigError(e.to_string()))?,
        admin: admin_addr,
        decisions: decisions_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok()),
        grpc: grpc_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok()),
    };
    let gateway = Arc::new(Gateway {
        runtime: ArcSwap::from_pointee(runtime),
        metrics,
        signer,
        config_path,
        fleet,
        observers,
        reloading: tokio::sync::Mutex::new(()),
    });
    tokio::spawn(admin::serve(admin_listener, Arc::clone(&gateway)));
    if let Some(listener) = decisions_listener {
        tokio::spawn(crate::forward_auth::serve(listener, Arc::clone(&gateway)));
    }
    if let Some(listener) = grpc_listener {
        tokio::spawn(crate::ext_authz::serve(listener, Arc::clone(&gateway)));
    }
    let ready = gateway.runtime.load().start().await;
    gateway.runtime.load().publish_metrics();
    // Optional fields are logged only when bound: the e2e harness reads them from this line.
    let decisions = bound.decisions.map(tracing::field::display);
    let grpc = bound.grpc.map(tracing::field::display);
    // Before the gateway says it listens: whoever waits for that line (a supervisor, the e2e
    // harness) may send SIGHUP or rewrite the file at once.
    spawn_reload_triggers(&gateway);
    tracing::info!(proxy = %bound.proxy, admin = %bound.admin, decisions, grpc, ready, "trustgate listening");
    on_bound(bound);

    let (stop_tx, stop_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(server.max_connections));
    let per_client = server.max_connections_per_client.map(PerClient::new);
    let connections_open = gateway.metrics.connections_open();
    let mut builder = crate::limits::limited_builder(&server);
    builder
        .http1()
        // Flattened writes: the response head and body are copied into one buffer and sent with
        // one `send`, instead of queued as separate buffers for `writev`. For the usual small API
        // response the queue's bookkeeping cost more than the copy (callgrind, same-token
        // workload, with the same for upstream requests: 650 instructions fewer per request); a
        // large body pays one extra memory copy per byte, which is cheap next to the socket.
        .writev(false)
        .keep_alive(true)
        // The header read timeout is the connection watchdog's (`serve_connection`), which reads
        // where each head starts and ends from the framing tracker. hyper's arms a boxed timer
        // for every request (1,449 of an HTTP/1 request's 45,257 instructions, callgrind), and
        // runs it while a keep-alive connection waits for its next request too, which closed
        // every idle HTTP/1 connection after `header_read_timeout` instead of `idle_timeout`.
        .header_read_timeout(None);
    // No keep-alive pings of our own: a dead peer is found by the idle timeout instead (see
    // `serve_connection`), which pings, ours or the client's, do not hold off (`limits::Use`).
    //
    // h2 buffers a response's data per stream until the client's flow-control window and the
    // socket take it, up to `max_send_buf_size` per stream: 400 KiB by default (hyper's
    // `DEFAULT_MAX_SEND_BUF_SIZE`). A client that grants windows of 2^31-1 and never reads made
    // one connection of 256 streams hold 261 MiB (`h2_abuse.rs`). One frame's worth per stream
    // is enough to keep the socket fed (the kernel's send buffer is the pipeline); with it that
    // client holds 36 to 42 MiB, the rest being each stream's chunk read from the upstream and
    // the upstream connection's buffers (see `upstream::Upstream::connect`).
    builder
        .http2()
        .max_concurrent_streams(256)
        .max_send_buf_size(16 * 1024);
    let builder = Arc::new(builder);

    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = proxy_listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Typically EMFILE: back off instead of spinning.
                        tracing::warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
                    tracing::debug!(%peer, "connection limit reached; closing");
                    gateway.metrics.connection_refused("max_connections");
                    drop(stream);
                    continue;
                };
                // Trusted proxies (a load balancer, an ingress) carry many clients' connections,
                // and are not counted as one client.
                let client = match &per_client {
                    Some(per_client)
                        if !gateway.runtime.load().config.server.trusted_proxies.contains(peer.ip()) =>
                    {
                        let Some(client) = per_client.try_acquire(peer.ip()) else {
                            tracing::debug!(%peer, "per-client connection limit reached; closing");
                            gateway.metrics.connection_refused("max_connections_per_client");
                            drop(stream);
                            continue;
                        };
                        Some(client)
                    }
                    _ => None,
                };
                let _ = stream.set_nodelay(true);
                let gateway = Arc::clone(&gateway);
                let builder = Arc::clone(&builder);
                let stop = stop_rx.clone();
                let tls = tls.clone();
                // The framing check follows heads up to twice hyper's buffer: hyper refuses a
                // longer head first, so the check never refuses one hyper would accept.
                let timeouts = Timeouts {
                    header_read: server.header_read_timeout,
                    idle: server.idle_timeout,
                    max_head: server.max_header_bytes.max(8192) * 2,
                };
                // Shared with an upgraded tunnel, which outlives the HTTP connection that made it:
                // the slot is free only when both have ended.
                let slot = Arc::new(ConnectionSlot::new(permit, client, connections_open.clone()));
                // One task type per listener kind, not one `match` inside a task: a task is
                // allocated at its future's size, and the TLS future (rustls' connection state
                // inline) is 5.9 KiB against 2.3 KiB for plain TCP. One `match` sized every plain
                // connection as a TLS one (1,000 keep-alive connections: 35 to 32 MiB RSS).
                match tls {
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(timeouts.header_read, acceptor.accept(stream)).await;
                            let Ok(Ok(tls_stream)) = handshake else {
                                tracing::debug!(%peer, "TLS handshake failed or timed out");
                                return;
                            };
                            let conn = ConnInfo { peer: peer.ip(), proto: "https", raw_framing: Ok(()) };
                            serve_connection(tls_stream, conn, slot, gateway, &builder, stop, timeouts).await;
                        });
                    }
                    None => {
                        tokio::spawn(async move {
                            let conn = ConnInfo { peer: peer.ip(), proto: "http", raw_framing: Ok(()) };
                            serve_connection(stream, conn, slot, gateway, &builder, stop, timeouts).await;
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    tracing::info!("shutting down: no new connections; draining requests in flight");
    drop(proxy_listener);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(
        server.shutdown_grace,
        all_slots_free(&limit, server.max_connections),
    )
    .await
    .is_ok();
    if let Some(audit) = &gateway.observers.audit {
        audit.flush(Duration::from_secs(5)).await;
    }
    tracing::info!(drained, "shutdown complete");
    Ok(())
}

/// Resolves once every slot under `max_connections` is back: each connection, from its TLS
/// handshake to its end, and each upgraded tunnel (which outlives its HTTP connection, so a
/// task tracker or hyper's graceful watcher would miss it) holds one. The semaphore wakes this
/// when slots return, instead of a loop looking at the count. Nothing else acquires once the
/// listener is gone; the slots taken here are kept, as the gateway is stopping anyway.
async fn all_slots_free(limit: &Semaphore, max: usize) {
    // `acquire_many` counts in u32; a larger limit is waited for in parts.
    let mut left = max;
    while left > 0 {
        let part = u32::try_from(left).unwrap_or(u32::MAX);
        match limit.acquire_many(part).await {
            Ok(permits) => permits.forget(),
            // Closed: nothing can hold a slot any more.
            Err(_) => return,
        }
        left = left.saturating_sub(part as usize);
    }
}

async fn serve_connection<S>(
    stream: S,
    conn: ConnInfo,
    slot: Arc<ConnectionSlot>,
    gateway: Arc<Gateway>,
    builder: &auto::Builder<TokioExecutor>,
    stop: watch::Receiver<bool>,
    Timeouts {
        header_read: header_read_timeout,
        idle: idle_timeout,
        max_head,
    }: Timeouts,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    // hyper repairs ambiguous HTTP/1 framing (CL+TE, duplicate CL) before the request reaches
    // us, so the framing check also runs on the raw head bytes; see `h1_framing`.
    let verdicts = h1_framing::Verdicts::default();
    let io = TokioIo::new(ConnStream {
        inner: Counted::new(stream, Arc::clone(&activity)),
        framing: h1_framing::Tracker::with_max_head(Arc::clone(&verdicts), max_head),
    });
    // HTTP/1 requests of this connection so far; hyper hands them over one at a time, in order.
    let requests = AtomicU64::new(0);
    // Before the service: each exchange tells it when its client cancelled it (see `Cancelled`).
    let watchdog = Arc::new(WatchdogWake::new());
    let exchanges = Arc::clone(&watchdog);
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let mut conn = conn;
        // Ends the wait for a first request (below); stored once, read by every request.
        if !exchanges.any_request.load(Ordering::Relaxed) {
            exchanges.any_request.store(true, Ordering::Relaxed);
        }
        // Only HTTP/2 exchanges are counted: an HTTP/1 client cancels one only by closing the
        // connection, which ends it anyway, and its requests skip the guard's atomic counts.
        let ending = (req.version() >= http::Version::HTTP_2).then(|| Cancelled {
            watchdog: Arc::clone(&exchanges),
            answered: false,
        });
        if req.version() < http::Version::HTTP_2 {
            let number = requests.fetch_add(1, Ordering::Relaxed) + 1;
            conn.raw_framing =
                h1_framing::take_verdict(&verdicts, number, h1_framing::Shape::of(&req));
        }
        let tunnel_slot = req
            .headers()
            .contains_key(http::header::UPGRADE)
            .then(|| Arc::clone(&slot));
        let runtime = gateway.runtime.load_full();
        // Boxed: the request's future carries the whole exchange (the request, the decision, the
        // upstream call), about 3.4 KiB. hyper keeps a slot of the service future's size in every
        // HTTP/1 connection, idle or not, and copies the future into a task of its own for every
        // HTTP/2 stream. Boxed, the slot is a pointer (1,000 idle keep-alive connections hold
        // 3 MiB less) and each stream's copies are a pointer's (HTTP/2: 3.3 % fewer instructions
        // per request), for one allocation per request (HTTP/1: unchanged, 47,140 instructions
        // against 47,260; measured with glibc malloc, before the binary took mimalloc).
        let exchange = Box::pin(proxy::handle(runtime, req, conn, tunnel_slot));
        async move {
            // Moved in whole: a closure captures only the fields it uses, and `ending` must be
            // dropped with the exchange, not when it is made.
            let mut ending = ending;
            let response = exchange.await;
            if let Some(ending) = &mut ending {
                ending.answered = true;
            }
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(connection);
    let mut stopping = std::pin::pin!(stopping(stop));
    // Often enough for either timeout: each is judged between one and one and a half of itself.
    let mut check = tokio::time::interval(
        (idle_timeout.min(header_read_timeout) / 4).max(Duration::from_millis(100)),
    );
    // The HTTP/1 head being read, as first seen by a check, and when: a head still unfinished
    // `header_read_timeout` later (a slowloris client, or blank lines dripped before a request
    // line) drops the connection. hyper would answer 408; a client that sends a head that
    // slowly is not waiting for an answer.
    let mut slow_head: Option<(u64, Instant)> = None;
    // The activity count as last seen, and when it was first seen at that value: the connection
    // has been idle at least that long. Activity is noticed one check late at most, so an idle
    // connection closes between one and one and a half idle timeouts after its last byte.
    //
    // That close is graceful: a request in flight may finish. One that makes no progress either
    // (an upstream stalled mid-body, a client that never reads its response or never sends the
    // body it announced) would hold the connection, its slot and its upstream stream for ever,
    // so after one more idle timeout without a byte the connection is dropped.
    let mut seen = (activity.events(), Instant::now());
    let mut closing = false;
    let mut idle_closed = false;
    // The head timer above starts at an HTTP/1 head's first byte, and HTTP/2 has no such timer:
    // a peer that connects and sends nothing, or only the HTTP/2 preface, would hold its slot
    // until the idle close and the drop after it (up to two and a half idle timeouts). So the
    // first request must reach the service `header_read_timeout` after serving starts (after the
    // TLS handshake, which has a timeout of its own), as on the side listeners
    // (`limits::serve_watched`).
    let serving_since = seen.1;
    // The stop signal and the idle check are polled only when one of them woke the task. Polled
    // on every wake, as `select!` does, they cost each request a lock in the stop signal's
    // notifier and a poll of the interval's timer (about 700 instructions of an HTTP/1
    // request's 46,000, callgrind).
    let watchdog_waker = Waker::from(Arc::clone(&watchdog));
    let result = std::future::poll_fn(|cx| {
        // Registered before the flag is read, so a wake between the two is not lost.
        watchdog.task.register(cx.waker());
        if watchdog.woken.swap(false, Ordering::AcqRel) {
            if watchdog.cancel_flood.load(Ordering::Acquire) {
                tracing::debug!(peer = %conn.peer, "client cancelled most of its requests; dropping");
                return Poll::Ready(Ok(()));
            }
            let mut watchdog_cx = Context::from_waker(&watchdog_waker);
            let was_closing = closing;
            if !closing && stopping.as_mut().poll(&mut watchdog_cx).is_ready() {
                closing = true;
            }
            while check.poll_tick(&mut watchdog_cx).is_ready() {
                if !watchdog.any_request.load(Ordering::Relaxed)
                    && serving_since.elapsed() >= header_read_timeout
                {
                    tracing::debug!(peer = %conn.peer, "no request within header_read_timeout; dropping");
                    return Poll::Ready(Ok(()));
                }
                match (activity.head(), slow_head) {
                    (None, _) => slow_head = None,
                    (Some(head), Some((seen_head, since))) if head == seen_head => {
                        if since.elapsed() >= header_read_timeout {
                            tracing::debug!(peer = %conn.peer, "a request head unfinished after header_read_timeout; dropping");
                            return Poll::Ready(Ok(()));
                        }
                    }
                    (Some(head), _) => slow_head = Some((head, Instant::now())),
                }
                let events = activity.events();
                if events != seen.0 {
                    seen = (events, Instant::now());
                } else if seen.1.elapsed() >= idle_timeout {
                    if idle_closed {
                        // Idle through a whole timeout since the graceful close: dropped.
                        return Poll::Ready(Ok(()));
                    }
                    // Graceful: a request in flight still completes; an idle keep-alive
                    // connection closes now.
                    closing = true;
                    idle_closed = true;
                    seen.1 = Instant::now();
                }
            }
            if closing && !was_closing {
                connection.as_mut().graceful_shutdown();
                activity.closing();
            }
        }
        connection.as_mut().poll(cx)
    })
    .await;
    if let Err(err) = result {
        tracing::debug!(peer = %conn.peer, error = %err, "connection ended with an error");
    }
}

/// The times a public connection is held to, from `[server]` (see `serve_connection`), and the
/// longest HTTP/1 head the raw framing check follows.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// `header_read_timeout`: for the TLS handshake, from serving's start to the first request
    /// at the service, and from an HTTP/1 head's first byte to its end.
    header_read: Duration,
    /// `idle_timeout`.
    idle: Duration,
    max_head: usize,
}

/// Resolves when the gateway stops (at once if it already has), or when the signal's sender is
/// gone.
async fn stopping(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// The connection task's second waker, given to the stop signal and the idle check: it marks
/// that one of them is ready, then wakes the task. It also counts the connection's exchanges
/// that ended, and those its client cancelled (see [`Cancelled`]).
struct WatchdogWake {
    /// Set by a wake, cleared when the stop signal and the idle check are polled.
    woken: AtomicBool,
    task: futures_util::task::AtomicWaker,
    /// Exchanges ended, and those of them cancelled by the client before their response.
    ended: AtomicU64,
    cancelled: AtomicU64,
    /// Set once the cancelled ones are too many: the connection is dropped.
    cancel_flood: AtomicBool,
    /// Set by the connection's first request, which ends the wait for one (checked with the idle
    /// timeout's ticks).
    any_request: AtomicBool,
}

impl WatchdogWake {
    /// Starts woken, so the first poll registers the stop signal and the idle check.
    fn new() -> Self {
        Self {
            woken: AtomicBool::new(true),
            task: futures_util::task::AtomicWaker::new(),
            ended: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            cancel_flood: AtomicBool::new(false),
            any_request: AtomicBool::new(false),
        }
    }
}

/// Exchanges a connection may see cancelled before it is judged: see [`Cancelled`].
const CANCELS_JUDGED_AFTER: u64 = 500;

/// One exchange of a connection, told to its [`WatchdogWake`] when it ends.
///
/// An exchange the client cancels before its response (over HTTP/2 a RST_STREAM, on which hyper
/// drops the exchange) has already cost a request's work: the token checked, often an upstream
/// request sent, and the upstream connection closed with it, since it cannot be reused with a
/// request cut off on it. h2 bounds only streams reset before hyper takes them (rapid reset);
/// a client that waits a moment before each reset, so each stream is taken first, goes on for
/// ever, 256 streams at a time freed as fast as it resets them: one connection made 500 upstream
/// connections in 500 resets (`h2_abuse.rs`). So, as Envoy does for "premature" resets, a
/// connection is dropped once its client has cancelled half of `CANCELS_JUDGED_AFTER` exchanges,
/// or later, half of all. A client cancels a request now and then (a page left, a
/// deadline passed); half of hundreds is an attack, or a client that would better reconnect.
/// An exchange counts as cancelled only until its response head is made: a stream cancelled
/// while its body flows (a gRPC watch ended by its client) is not. Made for HTTP/2 exchanges
/// only.
struct Cancelled {
    watchdog: Arc<WatchdogWake>,
    /// The response was made: the exchange was not cancelled.
    answered: bool,
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        let watchdog = &self.watchdog;
        let ended = watchdog.ended.fetch_add(1, Ordering::Relaxed) + 1;
        if self.answered {
            return;
        }
        let cancelled = watchdog.cancelled.fetch_add(1, Ordering::Relaxed) + 1;
        if cancelled.saturating_mul(2) >= ended.max(CANCELS_JUDGED_AFTER)
            && !watchdog.cancel_flood.swap(true, Ordering::AcqRel)
        {
            watchdog.wake_by_ref();
        }
    }
}

impl Wake for WatchdogWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// The downstream connection as hyper sees it: a [`Counted`] stream (what it reads and writes of
/// requests and responses is activity for the idle timeout, as on the side listeners) that also
/// feeds the raw bytes it reads to the HTTP/1 framing tracker (`h1_framing`).
struct ConnStream<S> {
    inner: Counted<S>,
    framing: h1_framing::Tracker,
}

impl<S: AsyncRead + Unpin> AsyncRead for ConnStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(new) = buf.filled().get(before..)
            && !new.is_empty()
        {
            self.framing.feed(new);
            let head = self.framing.head_in_progress();
            self.inner.activity().set_head(head);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ConnStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

pub(crate) fn tls_acceptor(tls: &config::FileTls) -> Result<TlsAcceptor, ConfigError> {
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| ConfigError(format!("server.tls.cert {}: {e}", tls.cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError(format!("server.tls.cert {}: {e}", tls.cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| {
        ConfigError(format!(
            "server.tls.key {}: {}",
            tls.key.display(),
            config::pem_key_error(&e)
        ))
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError(format!("server.tls: {e}")))?;
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption by stateless tickets (AES-256 + HMAC-SHA256, keys made at start and rotated
    // every 6 hours, never written anywhere): a returning client skips the certificate and its
    // signature, and no per-session state grows with the number of clients. rustls' default is
    // a 256-entry session cache, which a few hundred clients in between evict (two tickets per
    // connection are stored), so the returning client starts over with a full handshake.
    // TLS 1.3 resumption still runs an ECDHE exchange (rustls offers only psk_dhe_ke), so
    // resumed sessions keep forward secrecy; 0-RTT stays off (`max_early_data_size` 0).
    server.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
        .map_err(|e| ConfigError(format!("server.tls: session tickets: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// Reload on SIGHUP and when the configuration file changes. The SIGHUP handler and the file's
/// first stamp are in place when this returns, not when the spawned tasks first run: until the
/// handler is installed a SIGHUP ends the process (its default action), and a file rewritten
/// before the first stamp would look unchanged.
fn spawn_reload_triggers(gateway: &Arc<Gateway>) {
    let Some(path) = gateway.config_path.clone() else {
        return;
    };
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            let gateway = Arc::clone(gateway);
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reloading configuration");
                    let _ = gateway.reload().await;
                }
            });
        }
        Err(_) => tracing::warn!("cannot listen for SIGHUP; reload on file change only"),
    }
    let weak = Arc::downgrade(gateway);
    let mut last = file_stamp(&path);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(gateway) = weak.upgrade() else { break };
            let stamp = file_stamp(&path);
            if stamp != last && stamp.is_some() {
                last = stamp;
                tracing::info!(path = %path.display(), "configuration file changed: reloading");
                let _ = gateway.reload().await;
            }
        }
    });
}

fn file_stamp(path: &std::path::Path) -> Option<(std::time::SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::all_slots_free;

    /// True when `drain` finishes within 50 ms: a returned slot wakes it at once.
    async fn done(drain: std::pin::Pin<&mut impl std::future::Future<Output = ()>>) -> bool {
        tokio::time::timeout(Duration::from_millis(50), drain)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn the_drain_waits_for_a_tunnel_that_outlives_its_connection() {
        let limit = Arc::new(Semaphore::new(3));
        let connection = Arc::new(Arc::clone(&limit).try_acquire_owned().unwrap());
        let tunnel = Arc::clone(&connection);
        let drain = all_slots_free(&limit, 3);
        tokio::pin!(drain);
        assert!(!done(drain.as_mut()).await, "drained with two holders");
        drop(connection);
        assert!(
            !done(drain.as_mut()).await,
            "drained while the tunnel is open"
        );
        drop(tunnel);
        assert!(
            done(drain.as_mut()).await,
            "not drained after the last slot returned"
        );
    }

    #[tokio::test]
    async fn an_idle_gateway_drains_at_once() {
        let limit = Semaphore::new(2);
        let drain = all_slots_free(&limit, 2);
        tokio::pin!(drain);
        assert!(done(drain.as_mut()).await);
    }
}
