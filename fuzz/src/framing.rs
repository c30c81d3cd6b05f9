//! The differential body for the gateway's HTTP/1 framing check (`h1_framing.rs`): a byte stream
//! goes through a real hyper HTTP/1 server connection over an in-memory duplex, with the check
//! fed every byte hyper reads, exactly as `server.rs` wires them. For every request hyper hands
//! to the service, the verdict the check gives must be its own: whenever the check lets a
//! request pass, the head it judged is the head hyper parsed (same method, target and header
//! fields). A request that passes with a head the check never saw would be a smuggled request.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use trustgate_edge::framing::h1::{Shape, Tracker, Verdicts, take_verdict};

/// What hyper parsed, and the verdict the check gave it.
#[derive(Debug, Clone)]
pub struct Dispatched {
    /// The request's number on the connection.
    pub number: u64,
    /// The method.
    pub method: String,
    /// The target as hyper parsed it.
    pub target: String,
    /// Header fields, lower-case names, sorted.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Whether the check let it pass.
    pub passed: bool,
}

/// The server's side of the duplex, tapped for the check like `server::ConnStream`.
struct Tapped<S> {
    inner: S,
    tracker: Arc<Mutex<Tracker>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(new) = buf.filled().get(before..)
            && !new.is_empty()
            && let Ok(mut tracker) = self.tracker.lock()
        {
            tracker.feed(new);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tapped<S> {
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
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|err| panic!("a runtime for the framing body: {err}"))
    })
}

/// Sends `stream` to a hyper HTTP/1 server guarded by the check, as one client would, and
/// returns what hyper dispatched with the check's verdicts, and the heads the check judged.
pub fn dispatch(stream: &[u8]) -> (Vec<Dispatched>, Vec<Vec<u8>>) {
    let verdicts = Verdicts::default();
    let tracker = Arc::new(Mutex::new(Tracker::recording(Arc::clone(&verdicts))));
    let seen: Arc<Mutex<Vec<Dispatched>>> = Arc::default();
    let (mut client, server) = tokio::io::duplex(1 << 16);
    let io = TokioIo::new(Tapped {
        inner: server,
        tracker: Arc::clone(&tracker),
    });
    let count = Arc::new(AtomicU64::new(0));
    let record = Arc::clone(&seen);
    let service = service_fn(move |req: http::Request<Incoming>| {
        let number = count.fetch_add(1, Ordering::SeqCst) + 1;
        let passed = take_verdict(&verdicts, number, Shape::of(&req)).is_ok();
        let mut headers: Vec<(String, Vec<u8>)> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect();
        headers.sort();
        if let Ok(mut seen) = record.lock() {
            seen.push(Dispatched {
                number,
                method: req.method().as_str().to_owned(),
                target: req.uri().to_string(),
                headers,
                passed,
            });
        }
        async move {
            // As the gateway: a refused request is answered at once and ends the connection; an
            // accepted one has its body read.
            let mut response = http::Response::new(Full::new(Bytes::new()));
            if passed {
                let _ = req.into_body().collect().await;
            } else {
                *response.status_mut() = http::StatusCode::BAD_REQUEST;
                response.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let input = stream.to_vec();
    runtime().block_on(async move {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .max_headers(100)
            .serve_connection(io, service)
            .with_upgrades();
        let talk = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = tokio::join!(connection, talk);
        })
        .await;
    });
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let heads = tracker
        .lock()
        .map(|t| t.heads().to_vec())
        .unwrap_or_default();
    (seen, heads)
}

/// The fuzz body: `data` as a raw stream, and `data` read as a recipe for a pipelined stream of
/// well-formed and malformed requests ([`recipe`]).
pub fn framing(data: &[u8]) {
    check_agreement(data);
    check_agreement(&recipe(data));
}

/// Asserts that the check and hyper agree on where every request starts: each request hyper
/// dispatched whose number the check also reached is exactly the head the check judged under that
/// number (same method, origin-form target and header fields), whatever the verdict; and every
/// request the check let pass had such a head. The verdict's own number-and-shape match would
/// refuse most requests that parted this way, so the first half is what finds a check that has
/// drifted out of step even where it failed closed.
pub fn check_agreement(stream: &[u8]) {
    let (dispatched, heads) = dispatch(stream);
    for request in &dispatched {
        let head = usize::try_from(request.number - 1)
            .ok()
            .and_then(|i| heads.get(i));
        let Some(head) = head else {
            assert!(
                !request.passed,
                "request {} passed without a judged head: {request:?}",
                request.number
            );
            continue;
        };
        let mut fields = [httparse::EMPTY_HEADER; 128];
        let mut parsed = httparse::Request::new(&mut fields);
        if !matches!(parsed.parse(head), Ok(httparse::Status::Complete(_))) {
            // The check stopped at a head it could not parse (it judges nothing after one).
            assert!(
                !request.passed,
                "request {} passed, but its judged head does not parse: {:?}",
                request.number,
                String::from_utf8_lossy(head)
            );
            continue;
        }
        assert_eq!(parsed.method, Some(request.method.as_str()), "{request:?}");
        // hyper's URI drops a fragment.
        let target = parsed.path.unwrap_or_default();
        let target = target.split('#').next().unwrap_or_default();
        if target.starts_with('/') {
            assert_eq!(target, request.target, "{request:?}");
        }
        let mut judged: Vec<(String, Vec<u8>)> = parsed
            .headers
            .iter()
            .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
            .collect();
        judged.sort();
        if request.passed {
            assert_eq!(
                judged, request.headers,
                "request {} passed with other header fields than the check judged",
                request.number
            );
        } else {
            // hyper drops Content-Length next to Transfer-Encoding and merges repeated ones, and
            // such heads are refused: compare the rest, and hyper's lengths must be the head's.
            let is_length = |(name, _): &&(String, Vec<u8>)| name == "content-length";
            let rest = |fields: &[(String, Vec<u8>)]| -> Vec<(String, Vec<u8>)> {
                fields.iter().filter(|f| !is_length(f)).cloned().collect()
            };
            assert_eq!(
                rest(&judged),
                rest(&request.headers),
                "request {} has other header fields than the head the check judged under its number",
                request.number
            );
            for length in request.headers.iter().filter(is_length) {
                assert!(judged.contains(length), "{request:?}");
            }
        }
    }
}

/// A pipelined HTTP/1 stream built from `recipe`'s bytes: each request picks a method, a target,
/// framing headers (Content-Length, Transfer-Encoding in straight and smuggling spellings,
/// Upgrade) and a body (counted, chunked with good and bad size lines, CRLF and bare LF, and
/// trailers), so that the random inputs reach the states where the check and hyper could part.
pub fn recipe(recipe: &[u8]) -> Vec<u8> {
    let mut bytes = recipe.iter().copied();
    let mut next = move |n: usize| usize::from(bytes.next().unwrap_or(0)) % n.max(1);
    let mut out = Vec::new();
    let requests = 1 + next(4);
    for _ in 0..requests {
        let method = ["GET", "POST", "PUT", "OPTIONS", "CONNECT"][next(5)];
        let target = ["/", "/a?b=1", "/admin", "http://h.test/x", "*", "/%2e"][next(6)];
        let version = ["HTTP/1.1", "HTTP/1.1", "HTTP/1.0"][next(3)];
        out.extend_from_slice(
            format!("{method} {target} {version}\r\nHost: h.test\r\n").as_bytes(),
        );
        let mut chunked = false;
        let mut length = None;
        for _ in 0..next(4) {
            let line = [
                "Content-Length: 5",
                "Content-Length: 0",
                "Content-Length: 5, 5",
                "Transfer-Encoding: chunked",
                "Transfer-Encoding: gzip, chunked",
                "Transfer-Encoding:\tchunked",
                "Transfer_Encoding: chunked",
                "Upgrade: websocket",
                "Connection: upgrade",
                "Expect: 100-continue",
                "X-Other: 1",
                "Content-Length: 12",
            ][next(12)];
            if line.starts_with("Transfer-Encoding") && line.ends_with("chunked") {
                chunked = true;
            }
            if let Some(n) = line.strip_prefix("Content-Length: ") {
                length = n.parse::<usize>().ok();
            }
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice([&b"\r\n"[..], b"\n"][usize::from(next(8) == 0)]);
        }
        out.extend_from_slice(b"\r\n");
        if chunked {
            for _ in 0..next(3) {
                let size_line = ["5", "5;ext=1", "5 ", "05", "zz", "-5", "5\t;x"][next(7)];
                out.extend_from_slice(size_line.as_bytes());
                out.extend_from_slice([&b"\r\n"[..], b"\n"][usize::from(next(6) == 0)]);
                out.extend_from_slice(b"hello");
                let end: [&[u8]; 8] = [
                    b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"",
                ];
                out.extend_from_slice(end[next(8)]);
            }
            out.extend_from_slice(b"0\r\n");
            for _ in 0..next(3) {
                out.extend_from_slice(b"X-Trailer: t");
                out.extend_from_slice([&b"\r\n"[..], b"\n"][usize::from(next(4) == 0)]);
            }
            out.extend_from_slice([&b"\r\n"[..], b"\n"][usize::from(next(6) == 0)]);
        } else if let Some(length) = length {
            // Sometimes a body that is itself a request with CL and TE.
            let smuggled: &[u8] =
                b"GET /s HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
            let body = if next(2) == 0 {
                smuggled
            } else {
                b"0123456789abcdef"
            };
            out.extend_from_slice(&body[..length.min(body.len())]);
        }
    }
    out
}
