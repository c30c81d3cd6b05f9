//! The limits every listener facing the network puts on a peer before it is answered, and the
//! watch the side listeners (the admin listener, the decision endpoint, the gRPC ext_authz door)
//! keep over each of their connections.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config;

/// The next connection of a side listener (the admin listener, the decision endpoint, the gRPC
/// ext_authz door) within `limit` (`server.max_connections`), with the permit it holds while
/// open. A connection over the limit is closed at once; an accept error (out of descriptors)
/// waits 20 ms instead of spinning on the error.
pub(crate) async fn accept_within(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    door: &'static str,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(limit).try_acquire_owned() else {
            tracing::debug!(%peer, door, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        return (stream, peer, permit);
    }
}

/// A connection builder with `[server]`'s limits on what a peer may send before it is answered:
/// header bytes and count, and the time to send them. Every listener that faces the network
/// starts from it.
///
/// `header_read_timeout` here covers only an HTTP/1 head whose first byte has come: hyper's
/// HTTP/1-or-HTTP/2 detection before it, and HTTP/2, have no timer of their own. A side
/// listener's connection is therefore served through [`serve_watched`], which bounds both.
pub(crate) fn limited_builder(server: &config::ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes.max(8192))
        .max_headers(server.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    builder
}

/// The two times a side connection is held to, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    /// `header_read_timeout`: from accept to the first request's head (HTTP/1), or to the
    /// preface, SETTINGS and first request HEADERS (HTTP/2).
    first_request: Duration,
    /// `idle_timeout`: see [`serve_watched`].
    idle: Duration,
}

impl Watch {
    pub(crate) fn of(server: &config::ServerConfig) -> Self {
        Self {
            first_request: server.header_read_timeout,
            idle: server.idle_timeout,
        }
    }
}

/// Serves one connection of a side listener: `connect` makes hyper's connection (HTTP/1 or
/// HTTP/2, any builder) from the stream and the service, both wrapped so the connection can be
/// watched. The one accept path of every side listener, so each gets the same bounds:
///
/// - A connection whose first request has not reached the service `header_read_timeout` after
///   accept is dropped. hyper has no such bound: its `header_read_timeout` starts after the
///   HTTP/1-or-HTTP/2 detection, which waits for bytes for ever, and HTTP/2 has none at all, so
///   `max_connections` peers that connect and say nothing (or only the HTTP/2 preface) would
///   hold every slot. Checks (`trusted_proxies`) are judged only once a request comes, too late
///   to help.
/// - A connection is idle while no request is in flight and none starts, or while a request is
///   in flight and no byte of use ([`Use`]) is read or written. Bytes alone are no sign of use
///   with nothing in flight: a half-sent HTTP/1 head moves bytes without a request. Idle
///   for `idle_timeout`, it is closed gracefully (an idle keep-alive connection at once, an
///   HTTP/2 one with GOAWAY); idle one more `idle_timeout` after that (a request that makes no
///   progress, a response nobody reads), it is dropped. This is the public listener's idle
///   watch (`server::serve_connection`) but for what counts as use; that one keeps its own loop,
///   tuned for the proxy's per-request cost.
pub(crate) async fn serve_watched<S, C>(
    stream: TcpStream,
    watch: Watch,
    service: S,
    connect: impl FnOnce(TokioIo<Counted<TcpStream>>, Tracked<S>) -> C,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let activity = Arc::new(Activity::new());
    let requests = Arc::new(Requests::default());
    let io = TokioIo::new(Counted::new(stream, Arc::clone(&activity)));
    let connection = connect(
        io,
        Tracked {
            inner: service,
            requests: Arc::clone(&requests),
        },
    );
    tokio::pin!(connection);
    let first_request = tokio::time::sleep(watch.first_request);
    tokio::pin!(first_request);
    // As often as the public listener looks: an idle connection closes between one and one and
    // a quarter idle timeouts after its last use.
    let mut check = tokio::time::interval((watch.idle / 4).max(Duration::from_millis(100)));
    // Requests started or ended, bytes moved, as last seen; and when the connection was last
    // seen in use.
    let mut seen = (requests.events(), activity.events());
    let mut used = Instant::now();
    let mut idle_closed = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "side connection ended with an error");
                }
                return;
            }
            // Disabled once a request has come, so the finished timer is not polled again.
            () = first_request.as_mut(), if requests.events() == 0 => {
                if requests.events() == 0 {
                    tracing::debug!("no request within header_read_timeout; closing");
                    return;
                }
            }
            _ = check.tick() => {
                let now = (requests.events(), activity.events());
                let in_use = now.0 != seen.0 || (requests.in_flight() > 0 && now.1 != seen.1);
                seen = now;
                if in_use {
                    used = Instant::now();
                } else if used.elapsed() >= watch.idle {
                    if idle_closed {
                        tracing::debug!("idle through a graceful close; dropping");
                        return;
                    }
                    connection.as_mut().graceful_shutdown();
                    activity.closing();
                    idle_closed = true;
                    used = Instant::now();
                }
            }
        }
    }
}

/// Reads and writes on a connection, counted. The idle check needs only to know whether anything
/// happened since it last looked; reading the clock on every read and write, as this once did,
/// showed in request profiles.
pub(crate) struct Activity {
    events: AtomicU64,
    closing: AtomicBool,
    /// The public listener's HTTP/1 head being read, by number (`h1_framing::Tracker::
    /// head_in_progress`), or 0 while none is: its header read timeout watches it.
    head: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Self {
            events: AtomicU64::new(0),
            closing: AtomicBool::new(false),
            head: AtomicU64::new(0),
        }
    }

    /// Says which HTTP/1 head is being read (`None`: none is).
    #[inline]
    pub(crate) fn set_head(&self, head: Option<u64>) {
        self.head.store(head.unwrap_or(0), Ordering::Relaxed);
    }

    /// The HTTP/1 head being read, as last set.
    pub(crate) fn head(&self) -> Option<u64> {
        Some(self.head.load(Ordering::Relaxed)).filter(|&head| head != 0)
    }

    /// Says the connection has been closed gracefully (its final GOAWAY sent): from then on an
    /// HTTP/2 client's HEADERS start nothing (h2 drops them, without a word), so only DATA of
    /// the streams still open is use.
    pub(crate) fn closing(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    // Inline: the public listener touches it on every read and write, from another module.
    #[inline]
    pub(crate) fn touch(&self) {
        // Only the connection's own task touches it, so a plain increment cannot lose a count
        // (and a lost count would only delay the idle close by one check).
        let events = self.events.load(Ordering::Relaxed);
        self.events.store(events.wrapping_add(1), Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }
}

/// A connection's stream as hyper sees it: every read and write that moves a byte of use counts
/// in its [`Activity`] ([`Use`] says which bytes are use). The public listener's stream wraps it
/// too (`server::ConnStream`).
pub(crate) struct Counted<S> {
    inner: S,
    activity: Arc<Activity>,
    used: Use,
}

impl<S> Counted<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self {
            inner,
            activity,
            used: Use::Detecting { matched: 0 },
        }
    }

    pub(crate) fn activity(&self) -> &Activity {
        &self.activity
    }
}

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Which bytes of a connection are use, for the idle watches.
///
/// HTTP/1: every byte; nothing moves but requests and responses. HTTP/2: only the bytes of
/// frames that carry requests and responses (HEADERS, CONTINUATION, DATA). A peer can send
/// PING, SETTINGS, WINDOW_UPDATE, PRIORITY or unknown frames for ever, and the server must
/// answer some of them (PING and SETTINGS acknowledgements), without a request moving: counted
/// as use, they would keep open an idle connection, or one whose exchange is stuck (a request
/// whose body never comes, a response nobody reads), with its slot and its upstream stream.
enum Use {
    /// The first bytes read, so far a prefix of HTTP/2's preface (nothing is written before).
    Detecting {
        matched: u8,
    },
    Http1,
    Http2 {
        reads: FrameScan,
        writes: FrameScan,
    },
}

impl Use {
    /// Whether `bytes`, just read, are use.
    #[inline]
    fn read(&mut self, bytes: &[u8]) -> bool {
        match self {
            Use::Http1 => true,
            Use::Http2 { reads, .. } => reads.feed(bytes),
            Use::Detecting { matched } => {
                let done = usize::from(*matched);
                let want = H2_PREFACE.get(done..).unwrap_or_default();
                let n = want.len().min(bytes.len());
                if bytes.get(..n) != want.get(..n) {
                    *self = Use::Http1;
                    return true;
                }
                if n < want.len() {
                    // `n` < 24: fits.
                    *matched = u8::try_from(done + n).unwrap_or(u8::MAX);
                    return false;
                }
                let mut reads = FrameScan::default();
                let used = reads.feed(bytes.get(n..).unwrap_or_default());
                *self = Use::Http2 {
                    reads,
                    writes: FrameScan::default(),
                };
                used
            }
        }
    }

    /// The connection was closed gracefully: a client's HEADERS are no longer use.
    fn closing(&mut self) {
        if let Use::Http2 { reads, .. } = self {
            reads.ignore_headers = true;
        }
    }

    /// Whether `bytes`, just written, are use.
    #[inline]
    fn written(&mut self, bytes: &[u8]) -> bool {
        match self {
            Use::Http2 { writes, .. } => writes.feed(bytes),
            Use::Http1 | Use::Detecting { .. } => true,
        }
    }
}

/// Follows one direction of an HTTP/2 connection frame by frame (RFC 9113 §4.1: a 9-byte
/// header, then as many payload bytes as it says), reading only the headers.
#[derive(Default)]
struct FrameScan {
    /// The header being read, and how much of it has come.
    header: [u8; 9],
    have: u8,
    /// Payload bytes of the current frame still to come, and whether that frame is use.
    payload_left: u32,
    payload_used: bool,
    /// The current frame is a PADDED DATA frame whose pad length (its first payload byte) has
    /// not come yet: whether it carries a byte of the body is not known before.
    pad_pending: bool,
    /// HEADERS and CONTINUATION are no use: the connection has sent its final GOAWAY, after
    /// which h2 drops a new stream's HEADERS silently.
    ignore_headers: bool,
}

impl FrameScan {
    /// Whether `bytes` hold any byte of a frame that carries a request or a response.
    fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut used = false;
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                if self.pad_pending
                    && let Some(&pad) = bytes.first()
                {
                    // Data bytes: the payload less the pad length byte and the padding.
                    self.pad_pending = false;
                    self.payload_used = self.payload_left > u32::from(pad) + 1;
                }
                let n = bytes
                    .len()
                    .min(usize::try_from(self.payload_left).unwrap_or(usize::MAX));
                used |= self.payload_used;
                // `n` ≤ `payload_left`, a u32.
                self.payload_left -= u32::try_from(n).unwrap_or(self.payload_left);
                bytes = bytes.get(n..).unwrap_or_default();
                continue;
            }
            let have = usize::from(self.have);
            let n = (9 - have).min(bytes.len());
            if let (Some(to), Some(from)) = (self.header.get_mut(have..have + n), bytes.get(..n)) {
                to.copy_from_slice(from);
            }
            bytes = bytes.get(n..).unwrap_or_default();
            if have + n < 9 {
                self.have = u8::try_from(have + n).unwrap_or(0);
                continue;
            }
            self.have = 0;
            let [l0, l1, l2, kind, flags, ..] = self.header;
            let len = u32::from_be_bytes([0, l0, l1, l2]);
            self.pad_pending = false;
            self.payload_used = match kind {
                // HEADERS, CONTINUATION.
                0x1 | 0x9 => !self.ignore_headers,
                // DATA, when it ends the stream or carries a byte of the body: an empty one, or
                // one of padding only (which h2 gives back to the flow-control window at once),
                // moves no more than a PING does.
                0x0 if flags & 0x1 != 0 => true,
                0x0 if flags & 0x8 != 0 => {
                    self.pad_pending = len > 0;
                    false
                }
                0x0 => len > 0,
                _ => false,
            };
            used |= self.payload_used;
            self.payload_left = len;
        }
        used
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    // Inline: the public listener reads and writes through it on every request.
    #[inline]
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let this = &mut *self;
        if let Some(new) = buf.filled().get(before..)
            && !new.is_empty()
        {
            if this.activity.closing.load(Ordering::Relaxed) {
                this.used.closing();
            }
            if this.used.read(new) {
                this.activity.touch();
            }
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    #[inline]
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
            && self.used.written(buf.get(..n).unwrap_or(buf))
        {
            self.activity.touch();
        }
        result
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    #[inline]
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result
            && n > 0
        {
            // Every written byte goes through the scan, in order, so it stays on frame bounds.
            let mut left = n;
            let mut used = false;
            for slice in bufs {
                if left == 0 {
                    break;
                }
                let part = slice.get(..left.min(slice.len())).unwrap_or_default();
                left -= part.len();
                used |= self.used.written(part);
            }
            if used {
                self.activity.touch();
            }
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The requests of one connection: how many are in flight, and a count that moves whenever one
/// starts or ends. HTTP/2 runs each request's future in a task of its own, so both are atomic.
#[derive(Default)]
struct Requests {
    events: AtomicU64,
    in_flight: AtomicUsize,
}

impl Requests {
    fn events(&self) -> u64 {
        self.events.load(Ordering::Acquire)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Marks one request in flight from the service's call until its response (head) is ready or
/// the request is dropped.
struct InFlightMark(Arc<Requests>);

impl InFlightMark {
    fn start(requests: &Arc<Requests>) -> Self {
        requests.in_flight.fetch_add(1, Ordering::AcqRel);
        requests.events.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(requests))
    }
}

impl Drop for InFlightMark {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.events.fetch_add(1, Ordering::AcqRel);
    }
}

/// A side listener's service, its requests counted for [`serve_watched`].
pub(crate) struct Tracked<S> {
    inner: S,
    requests: Arc<Requests>,
}

impl<S, R> hyper::service::Service<R> for Tracked<S>
where
    S: hyper::service::Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = InFlight<S::Future>;

    fn call(&self, req: R) -> Self::Future {
        // Not boxed: the decision endpoint's checks are a proxy's hot path too.
        InFlight {
            mark: Some(InFlightMark::start(&self.requests)),
            inner: self.inner.call(req),
        }
    }
}

pin_project_lite::pin_project! {
    /// One request's future, in flight until it resolves or is dropped.
    pub(crate) struct InFlight<F> {
        #[pin]
        inner: F,
        mark: Option<InFlightMark>,
    }
}

impl<F: Future> Future for InFlight<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let output = this.inner.poll(cx);
        if output.is_ready() {
            // Answered: no longer in flight, whenever hyper gets round to dropping the future.
            *this.mark = None;
        }
        output
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// `[server]` with two connection slots, a 300 ms `header_read_timeout`, and `idle`.
    fn server(idle: Duration) -> config::ServerConfig {
        config::ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls: None,
            max_connections: 2,
            max_connections_per_client: None,
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: idle,
            max_header_bytes: 16384,
            max_headers: 64,
            trusted_proxies: trustgate_edge::headers::TrustedProxies::new(&[]).unwrap(),
            double_slash: trustgate_edge::path::DoubleSlash::Merge,
            shutdown_grace: Duration::from_secs(1),
            worker_threads: 0,
        }
    }

    /// Answers 200 once the request's body has been read, as the gRPC door's check does.
    async fn answer(
        req: hyper::Request<hyper::body::Incoming>,
    ) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
        req.into_body().collect().await?;
        Ok(hyper::Response::new(http_body_util::Full::new(
            bytes::Bytes::new(),
        )))
    }

    /// The decision endpoint's and the admin listener's accept loop (`forward_auth::serve`,
    /// `admin::serve`), verbatim but for the service.
    async fn decision_like_listener(idle: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server(idle);
        let limit = Arc::new(Semaphore::new(server.max_connections));
        let builder = Arc::new(limited_builder(&server));
        let watch = Watch::of(&server);
        tokio::spawn(async move {
            loop {
                let (stream, _peer, permit) = accept_within(&listener, &limit, "test").await;
                let builder = Arc::clone(&builder);
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_watched(
                        stream,
                        watch,
                        hyper::service::service_fn(answer),
                        |io, service| builder.serve_connection(io, service),
                    )
                    .await;
                });
            }
        });
        addr
    }

    /// The gRPC ext_authz door's accept loop (`ext_authz::serve`): HTTP/2 only.
    async fn grpc_like_listener(idle: Duration) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = server(idle);
        let limit = Arc::new(Semaphore::new(server.max_connections));
        let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
        let http2 = Arc::new(http2);
        let watch = Watch::of(&server);
        tokio::spawn(async move {
            loop {
                let (stream, _peer, permit) = accept_within(&listener, &limit, "test").await;
                let http2 = Arc::clone(&http2);
                tokio::spawn(async move {
                    let _permit = permit;
                    serve_watched(
                        stream,
                        watch,
                        hyper::service::service_fn(answer),
                        |io, service| http2.serve_connection(io, service),
                    )
                    .await;
                });
            }
        });
        addr
    }

    /// Whether the server closed `stream` within `wait`.
    async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
        let mut buf = [0u8; 256];
        loop {
            match tokio::time::timeout(wait, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// An HTTP/2 frame of `kind` with `len` payload bytes on stream 1.
    fn frame(kind: u8, len: usize) -> Vec<u8> {
        let [_, l0, l1, l2] = u32::try_from(len).unwrap().to_be_bytes();
        let mut frame = vec![l0, l1, l2, kind, 0, 0, 0, 0, 1];
        frame.resize(9 + len, 0);
        frame
    }

    fn http2() -> Use {
        let mut used = Use::Detecting { matched: 0 };
        assert!(!used.read(&[&H2_PREFACE[..], &frame(4, 6)].concat()));
        used
    }

    #[test]
    fn http1_bytes_are_all_use() {
        let mut used = Use::Detecting { matched: 0 };
        assert!(used.read(b"GET / HTTP/1.1\r\n"));
        assert!(used.read(b"\r\n"));
        assert!(used.written(b"HTTP/1.1 200 OK\r\n"));
        // A lone `P` may start either POST or the HTTP/2 preface.
        let mut used = Use::Detecting { matched: 0 };
        assert!(!used.read(b"P"));
        assert!(used.read(b"OST / HTTP/1.1\r\n"));
        assert!(used.read(b"PRI * HTTP/2.0\r\n"));
    }

    #[test]
    fn http2_use_is_headers_continuation_and_data_only() {
        // The preface in pieces, then SETTINGS: no use yet.
        let mut used = Use::Detecting { matched: 0 };
        assert!(!used.read(&H2_PREFACE[..5]));
        assert!(!used.read(&[&H2_PREFACE[5..], &frame(4, 6)].concat()));
        // PING, SETTINGS, WINDOW_UPDATE, PRIORITY, RST_STREAM, GOAWAY, unknown types: no use,
        // read or written.
        for kind in [6, 4, 8, 2, 3, 7, 0x42] {
            assert!(!used.read(&frame(kind, 8)), "read {kind}");
            assert!(!used.written(&frame(kind, 8)), "written {kind}");
        }
        for kind in [0, 1, 9] {
            assert!(used.read(&frame(kind, 8)), "read {kind}");
            assert!(used.written(&frame(kind, 8)), "written {kind}");
        }
        // An empty DATA frame is use only when it ends the stream; one of padding only is none.
        assert!(!used.read(&frame(0, 0)));
        let mut end = frame(0, 0);
        end[4] = 0x1;
        assert!(used.read(&end));
        let mut padding_only = frame(0, 8);
        padding_only[4] = 0x8;
        padding_only[9] = 7;
        for cut in 0..=padding_only.len() {
            let mut used = http2();
            assert!(!used.read(&padding_only[..cut]), "cut at {cut}");
            assert!(!used.read(&padding_only[cut..]), "cut at {cut}");
            assert!(used.read(&frame(0, 1)));
        }
        let mut padded_data = frame(0, 8);
        padded_data[4] = 0x8;
        padded_data[9] = 6;
        for cut in 10..=padded_data.len() {
            let mut used = http2();
            assert!(used.read(&padded_data[..cut]), "cut at {cut}");
        }
    }

    /// Frames split anywhere, as reads and writes split them, are followed exactly.
    #[test]
    fn http2_frames_are_followed_across_any_split() {
        let bytes = [frame(6, 8), frame(1, 20), frame(6, 8)].concat();
        // The PING is bytes 0..17, the HEADERS frame 17..46 (its header 17..26), the PING 46..63.
        for cut in 0..=bytes.len() {
            let mut used = http2();
            let first = used.read(&bytes[..cut]);
            let second = used.read(&bytes[cut..]);
            assert_eq!(first, cut >= 26, "first part, cut at {cut}");
            assert_eq!(second, cut < 46, "second part, cut at {cut}");
        }
        // A large DATA frame in many reads is use all along; the PING after it is not.
        let mut used = http2();
        let data = frame(0, 40_000);
        for chunk in data.chunks(1_000) {
            assert!(used.read(chunk));
        }
        assert!(!used.read(&frame(6, 8)));
    }

    /// An HTTP/2 client connection that pings the server every 100 ms, idle or not, as any
    /// HTTP/2 client library can be told to.
    async fn pinging_h2_client<B>(
        addr: SocketAddr,
    ) -> (
        hyper::client::conn::http2::SendRequest<B>,
        tokio::task::JoinHandle<()>,
    )
    where
        B: hyper::body::Body + Send + Unpin + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(100))
            .keep_alive_while_idle(true)
            .handshake(TokioIo::new(stream))
            .await
            .unwrap();
        let ended = tokio::spawn(async move {
            let _ = conn.await;
        });
        (send, ended)
    }

    fn get() -> hyper::Request<http_body_util::Empty<bytes::Bytes>> {
        hyper::Request::builder()
            .uri("http://side/")
            .body(http_body_util::Empty::new())
            .unwrap()
    }

    #[tokio::test]
    async fn a_half_sent_http1_head_is_cut_off() {
        let addr = decision_like_listener(Duration::from_secs(60)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        assert!(closed_within(&mut slow, Duration::from_secs(3)).await);
    }

    /// hyper's HTTP/1-or-HTTP/2 detection waits for bytes for ever, before its
    /// `header_read_timeout` starts.
    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_cut_off() {
        let addr = decision_like_listener(Duration::from_secs(60)).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(3)).await,
            "a connection that sent nothing is still open 10 header_read_timeouts later"
        );
    }

    #[tokio::test]
    async fn an_http2_preface_then_silence_is_cut_off() {
        let addr = decision_like_listener(Duration::from_secs(60)).await;
        let mut h2 = TcpStream::connect(addr).await.unwrap();
        h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        assert!(
            closed_within(&mut h2, Duration::from_secs(3)).await,
            "an HTTP/2 preface without SETTINGS is still open 10 header_read_timeouts later"
        );
    }

    #[tokio::test]
    async fn silent_peers_give_their_slots_back() {
        let addr = decision_like_listener(Duration::from_secs(60)).await;
        let _a = TcpStream::connect(addr).await.unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut honest = TcpStream::connect(addr).await.unwrap();
        honest
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        let answered = tokio::time::timeout(Duration::from_secs(2), honest.read_exact(&mut first))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false);
        assert!(
            answered && &first == b"HTTP/1.1 200",
            "two peers that sent nothing hold every slot (max_connections = 2) 2 s later"
        );
    }

    /// An HTTP/1 keep-alive connection needs no watch once answered (hyper times the next
    /// head from the end of the last response); an HTTP/2 one has nothing of the kind.
    #[tokio::test]
    async fn an_http2_client_that_asked_once_then_only_pings_is_closed_once_idle() {
        let addr = decision_like_listener(Duration::from_millis(600)).await;
        let (mut send, ended) = pinging_h2_client(addr).await;
        let response = send.send_request(get()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            tokio::time::timeout(Duration::from_secs(3), ended)
                .await
                .is_ok(),
            "a connection idle but for pings is still open 5 idle_timeouts later"
        );
    }

    /// A request that never finishes its body holds the connection only two idle timeouts.
    #[tokio::test]
    async fn a_request_whose_body_never_comes_is_dropped() {
        let addr = decision_like_listener(Duration::from_millis(300)).await;
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab")
            .await
            .unwrap();
        assert!(
            closed_within(&mut stalled, Duration::from_secs(3)).await,
            "a request stalled mid-body is still open 10 idle_timeouts later"
        );
    }

    /// Nor does one over HTTP/2, however the client pings meanwhile.
    #[tokio::test]
    async fn an_http2_request_whose_body_never_comes_is_dropped_while_the_client_pings() {
        let addr = decision_like_listener(Duration::from_millis(300)).await;
        let (mut send, ended) = pinging_h2_client(addr).await;
        // A body that never sends a frame: the check waits for it for ever.
        let (_body_tx, body_rx) =
            tokio::sync::mpsc::channel::<Result<hyper::body::Frame<bytes::Bytes>, io::Error>>(1);
        let body = http_body_util::StreamBody::new(tokio_stream_like(body_rx));
        let request = hyper::Request::post("http://side/").body(body).unwrap();
        let _pending = tokio::spawn(send.send_request(request));
        assert!(
            tokio::time::timeout(Duration::from_secs(3), ended)
                .await
                .is_ok(),
            "a request stalled mid-body, with pings, is still open 10 idle_timeouts later"
        );
    }

    /// Asserts the server closed a connection whose request is stalled mid-body (`ended`: its
    /// reader's end) within 10 idle timeouts of 300 ms, while `feeder` sent `noise` on it.
    async fn closed_while_fed(
        ended: tokio::task::JoinHandle<()>,
        feeder: tokio::task::JoinHandle<()>,
        noise: &str,
    ) {
        let closed = tokio::time::timeout(Duration::from_secs(3), ended)
            .await
            .is_ok();
        feeder.abort();
        assert!(
            closed,
            "a request stalled mid-body, with {noise}, is still open 10 idle_timeouts later"
        );
    }

    /// `rx` as a stream, without a dependency for it.
    fn tokio_stream_like<T>(
        mut rx: tokio::sync::mpsc::Receiver<T>,
    ) -> impl futures_util::Stream<Item = T> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// An empty DATA frame (no END_STREAM) moves no byte of the body, as a PING moves none: it is
    /// no use, or a client would keep a request whose body never comes in flight, with its slot,
    /// for ever, sending 9 bytes every 100 ms.
    #[tokio::test]
    async fn empty_data_frames_do_not_keep_a_stalled_http2_request_open() {
        // An empty DATA frame on stream 1, flags 0.
        stalled_by(frame(0, 0)).await;
        // One of padding only (PADDED, pad length 200): h2 gives the padding back to the window.
        let mut padding = frame(0, 201);
        padding[4] = 0x8;
        padding[9] = 200;
        stalled_by(padding).await;
    }

    /// A request whose body never comes, on a side listener, while the client sends `noise`
    /// every 100 ms: dropped all the same.
    async fn stalled_by(noise: Vec<u8>) {
        let addr = decision_like_listener(Duration::from_millis(300)).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        // POST / with :scheme http and :authority side, END_HEADERS but no END_STREAM.
        let block = [0x83u8, 0x86, 0x84, 0x41, 4, b's', b'i', b'd', b'e'];
        let mut headers = vec![0, 0, u8::try_from(block.len()).unwrap(), 1, 0x4, 0, 0, 0, 1];
        headers.extend_from_slice(&block);
        // An empty SETTINGS frame (stream 0).
        let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
        wr.write_all(&[&H2_PREFACE[..], &settings[..], &headers[..]].concat())
            .await
            .unwrap();
        let ended = tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        let feeder = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if wr.write_all(&noise).await.is_err() {
                    return;
                }
            }
        });
        closed_while_fed(ended, feeder, "DATA frames of no data").await;
    }

    /// Once the idle close has sent its final GOAWAY (last stream 1), h2 ignores HEADERS on any
    /// later stream without a word (no RST_STREAM, nothing counted against its reset limits):
    /// they are no use, or a client would keep its stalled request, and the connection's slot,
    /// for ever.
    #[tokio::test]
    async fn headers_h2_ignores_after_goaway_do_not_keep_a_stalled_request_open() {
        let addr = decision_like_listener(Duration::from_millis(300)).await;
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut rd, wr) = stream.into_split();
        let wr = Arc::new(tokio::sync::Mutex::new(wr));
        // POST / (no END_STREAM: its body never comes).
        let block = [0x83u8, 0x86, 0x84, 0x01, 4, b's', b'i', b'd', b'e'];
        let headers = move |id: u8, flags: u8| {
            let mut f = vec![
                0,
                0,
                u8::try_from(block.len()).unwrap(),
                1,
                flags,
                0,
                0,
                0,
                id,
            ];
            f.extend_from_slice(&block);
            f
        };
        let settings = [0u8, 0, 0, 4, 0, 0, 0, 0, 0];
        wr.lock()
            .await
            .write_all(&[&H2_PREFACE[..], &settings[..], &headers(1, 0x4)[..]].concat())
            .await
            .unwrap();
        // Answers the server's pings (the graceful close's among them), as any client does.
        let acks = Arc::clone(&wr);
        let (final_goaway, goaway_seen) = tokio::sync::oneshot::channel::<()>();
        let mut final_goaway = Some(final_goaway);
        let ended = tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                match rd.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while buf.len() >= 9 {
                    let len =
                        usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
                    if buf.len() < 9 + len {
                        break;
                    }
                    let frame: Vec<u8> = buf.drain(..9 + len).collect();
                    // The final GOAWAY: last stream 1, not 2^31-1.
                    if frame[3] == 7
                        && frame.get(9..13) == Some(&[0, 0, 0, 1][..])
                        && let Some(tx) = final_goaway.take()
                    {
                        let _ = tx.send(());
                    }
                    if frame[3] == 6 && frame[4] & 1 == 0 {
                        let mut ack = frame.clone();
                        ack[4] = 1;
                        let _ = acks.lock().await.write_all(&ack).await;
                    }
                }
            }
        });
        let feeder = tokio::spawn(async move {
            let _ = goaway_seen.await;
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                // A GET on stream 3, END_STREAM | END_HEADERS: ignored once the GOAWAY is out.
                if wr.lock().await.write_all(&headers(3, 0x5)).await.is_err() {
                    return;
                }
            }
        });
        closed_while_fed(ended, feeder, "HEADERS h2 ignores").await;
    }

    #[tokio::test]
    async fn grpc_door_a_connection_that_sends_nothing_is_cut_off() {
        let addr = grpc_like_listener(Duration::from_secs(60)).await;
        let mut silent = TcpStream::connect(addr).await.unwrap();
        assert!(
            closed_within(&mut silent, Duration::from_secs(3)).await,
            "gRPC door: a connection that sent nothing is still open after 3 s"
        );
    }

    /// Any HTTP/2 client library acknowledges pings by itself, and can send its own: neither
    /// keeps a connection that never asks anything.
    #[tokio::test]
    async fn grpc_door_a_client_that_never_asks_is_cut_off() {
        let addr = grpc_like_listener(Duration::from_secs(60)).await;
        let (_send, ended) = pinging_h2_client::<http_body_util::Empty<bytes::Bytes>>(addr).await;
        assert!(
            tokio::time::timeout(Duration::from_secs(3), ended)
                .await
                .is_ok(),
            "gRPC door: an HTTP/2 connection without a single request is still open after 3 s"
        );
    }

    #[tokio::test]
    async fn grpc_door_a_client_that_asked_once_then_only_pings_is_closed_once_idle() {
        let addr = grpc_like_listener(Duration::from_millis(600)).await;
        let (mut send, ended) = pinging_h2_client(addr).await;
        let response = send.send_request(get()).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            tokio::time::timeout(Duration::from_secs(3), ended)
                .await
                .is_ok(),
            "gRPC door: a connection idle but for pings is still open 5 idle_timeouts later"
        );
    }

    /// The bounds close idle connections, not used ones: requests every 100 ms keep a connection
    /// open well past `header_read_timeout` and `idle_timeout`.
    #[tokio::test]
    async fn a_connection_in_use_stays_open() {
        let addr = grpc_like_listener(Duration::from_millis(300)).await;
        let (mut send, ended) = pinging_h2_client(addr).await;
        for _ in 0..15 {
            let response = send.send_request(get()).await.unwrap();
            assert_eq!(response.status(), 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!ended.is_finished());
    }
}
