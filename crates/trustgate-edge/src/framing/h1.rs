//! The framing check on the raw bytes of each HTTP/1 request head, tied to the request hyper
//! hands to the gateway.
//!
//! Why this exists: hyper repairs ambiguous framing before the request reaches the gateway. With
//! both Content-Length and Transfer-Encoding it drops Content-Length (and closes the connection
//! after the response); duplicate identical Content-Length lines become one. So
//! `sanitize::check_framing`, which sees only the parsed `HeaderMap`, never saw those requests.
//! [`Tracker`] is fed every byte a connection reads (by `server::ConnStream`), before hyper sees
//! them; it finds each request head, runs the same `check_framing` on its raw header lines and
//! queues a [`Verdict`] for it. The handler takes them in order with [`take_verdict`].
//!
//! The check must never disagree with hyper about where a request starts, or a request hidden
//! where the tracker saw a body would pass unchecked. So:
//! - heads are parsed with `httparse`, the parser hyper itself uses, with the same defaults;
//! - bodies are followed exactly as hyper follows them: Content-Length, or a chunked body read by
//!   a copy of hyper 1's chunked decoder states, byte by byte, with one deliberate difference:
//!   a bare LF anywhere in a chunked body (hyper passes one inside a trailer line) is refused;
//! - a request that asks for an upgrade is followed like any other: if the upstream does not
//!   answer 101, hyper goes on reading requests on this connection, and so does the tracker;
//! - each verdict carries the request's number on the connection and its shape (method, target
//!   length, header count); the handler refuses a request whose verdict is missing, out of order
//!   or of another shape, and so does a poisoned lock. Such a refusal breaks the queue: the
//!   tracker judges nothing more and every later request is refused, even if a later verdict
//!   happened to fit. Anything the tracker cannot follow stops it too: it fails closed.
//! - the queue is bounded: more verdicts waiting than hyper can have heads buffered means the
//!   bytes are not HTTP requests hyper will dispatch (an upgraded tunnel), so the tracker stops
//!   rather than grow the queue with the tunnel's traffic.
//! - a malformed chunked body (bad size line, a bare LF, a missing CRLF after the data) turns the
//!   verdict of its request into a refusal when the handler has not taken it yet, which is the
//!   case whenever the bad bytes came with the head.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

use crate::framing::{self as sanitize, FramingError};

/// The verdicts of one connection, shared by its tracker (which reads) and its request handler
/// (which takes them). The lock is never contended in practice: both sides run on the
/// connection's own task, and it is held only to push or pop one verdict, never across I/O.
pub type Verdicts = Arc<Mutex<Queue>>;

/// Verdicts of the heads read so far on one connection and not yet taken, oldest first.
#[derive(Debug, Default)]
pub struct Queue {
    verdicts: VecDeque<Verdict>,
    /// Set when a request found no verdict of its own, or the queue overflowed: the tracker and
    /// hyper may be out of step, so every later request on the connection is refused.
    broken: bool,
}

/// The framing verdict of one request head, and what identifies that request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The request's number on the connection, from 1.
    pub number: u64,
    /// What the head looked like, to tie the verdict to hyper's request.
    pub shape: Shape,
    /// The framing check's result on the raw head.
    pub result: Result<(), FramingError>,
}

/// What the tracker and hyper must agree on for a verdict to apply to a request: its method, the
/// length of an origin-form target (without a fragment, which hyper drops) and its number of
/// header fields. A request the tracker took for a body (or the reverse) would have to match all
/// three by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    method: [u8; 16],
    method_len: usize,
    target_len: Option<usize>,
    headers: usize,
}

impl Shape {
    fn new(method: &[u8], target: &[u8], headers: usize) -> Self {
        let mut stored = [0u8; 16];
        let kept = method.len().min(stored.len());
        stored[..kept].copy_from_slice(&method[..kept]);
        Self {
            method: stored,
            method_len: method.len(),
            // hyper's URI drops a fragment (`/a#b` is `/a`): compare what it keeps. Only the
            // raw side has one; a parsed target's length is unchanged by this.
            target_len: target
                .starts_with(b"/")
                .then(|| memchr::memchr(b'#', target).unwrap_or(target.len())),
            headers,
        }
    }

    /// The shape of a request as hyper parsed it.
    pub fn of<B>(request: &http::Request<B>) -> Self {
        let uri = request.uri();
        let target = match (uri.authority(), uri.path_and_query()) {
            (None, Some(pq)) => pq.as_str().as_bytes(),
            _ => b"",
        };
        Self::new(
            request.method().as_str().as_bytes(),
            target,
            request.headers().len(),
        )
    }
}

/// Takes the verdict for request `number` of a connection (counted from 1 by the caller) and
/// checks that it belongs to this request. A missing, out-of-order or mismatched verdict, or a
/// poisoned lock, is a refusal: the raw bytes of this request were not checked.
pub fn take_verdict(verdicts: &Verdicts, number: u64, shape: Shape) -> Result<(), FramingError> {
    let Ok(mut queue) = verdicts.lock() else {
        return Err(FramingError::Unchecked);
    };
    if queue.broken {
        return Err(FramingError::Unchecked);
    }
    match queue.verdicts.pop_front() {
        Some(verdict) if verdict.number == number && verdict.shape == shape => verdict.result,
        _ => {
            // Out of step: nothing later on this connection can be trusted either, not even a
            // later verdict that happens to fit its request.
            queue.verdicts = VecDeque::new();
            queue.broken = true;
            Err(FramingError::Unchecked)
        }
    }
}

/// The longest head the tracker buffers by default: hyper's default read buffer. The server
/// passes its own limit ([`Tracker::with_max_head`]).
const DEFAULT_MAX_HEAD: usize = 64 * 1024;

/// Most header fields the tracker parses in one head. `server.max_headers` may not exceed it, so
/// hyper refuses a head before the tracker would.
pub const MAX_HEADERS: usize = 512;

/// Where the tracker is in the byte stream. The chunked states mirror hyper 1's
/// `ChunkedState` one for one, so both read a chunked body identically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head (or the empty lines before one).
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Chunked: the first hex digit of a size.
    Start,
    /// Chunked: more hex digits, whitespace, `;` or CR.
    Size(u64),
    /// Chunked: whitespace after the size.
    SizeLws(u64),
    /// Chunked: an extension, up to CR.
    Extension(u64),
    /// Chunked: the LF after a size line.
    SizeLf(u64),
    /// Chunked: this many data bytes.
    ChunkData(u64),
    /// Chunked: the CR after data.
    DataCr,
    /// Chunked: the LF after data.
    DataLf,
    /// Chunked, after the last chunk: CR of the final empty line, or a trailer's first byte.
    EndCr,
    /// Chunked: inside a trailer line, up to its CR.
    Trailer,
    /// Chunked: the LF that ends a trailer line.
    TrailerLf,
    /// Chunked: the LF of the final empty line.
    EndLf,
    /// No longer following this connection: an HTTP/2 preface, a refused head, a malformed body
    /// or an upgrade's tunnel. No verdict follows, so any later HTTP/1 request is refused.
    Stopped,
}

#[derive(Debug)]
/// Follows a connection's bytes, request by request, and queues a verdict for each head.
pub struct Tracker {
    state: State,
    line: Vec<u8>,
    /// Whether a head has begun and not ended: a byte of it, or a blank line before it, has come.
    in_head: bool,
    /// Heads begun so far, counting the one in progress.
    begun: u64,
    /// Number of the last head seen.
    requests: u64,
    /// The longest head followed; a longer one stops the tracker (and so refuses the request).
    /// At least hyper's own limit, so that only heads hyper refuses anyway reach it.
    max_head: usize,
    /// Most verdicts waiting to be taken (see [`Tracker::with_max_head`]).
    max_queued: usize,
    verdicts: Verdicts,
    /// Every head seen, kept only for the differential fuzz target (`Tracker::recording`).
    heads: Option<Vec<Vec<u8>>>,
}

impl Tracker {
    /// A tracker that queues its verdicts in `verdicts`.
    pub fn new(verdicts: Verdicts) -> Self {
        Self::with_max_head(verdicts, DEFAULT_MAX_HEAD)
    }

    /// A tracker following heads of up to `max_head` bytes.
    ///
    /// A verdict waits in the queue from the read that brought its head until hyper dispatches
    /// the request, so no more verdicts wait than heads fit in hyper's read buffer. hyper reads
    /// into that buffer's spare capacity, which stays under twice `max_buf_size` (`max_head`
    /// here) or 128 KiB, and the shortest head hyper accepts (`A / HTTP/1.1\n\n`) has 14 bytes.
    /// One verdict per 8 of those bytes leaves a wide margin; more waiting means hyper is not
    /// reading HTTP requests any more (an upgraded tunnel), and the queue stops growing there:
    /// at most 16 Ki verdicts of 64 bytes by default.
    pub fn with_max_head(verdicts: Verdicts, max_head: usize) -> Self {
        Self {
            state: State::Head,
            line: Vec::new(),
            in_head: false,
            begun: 0,
            requests: 0,
            max_head,
            max_queued: max_head.max(128 * 1024) / 8,
            verdicts,
            heads: None,
        }
    }

    /// A tracker that also keeps the raw bytes of every head it judged, for the differential
    /// fuzz target to compare with what hyper parsed.
    #[allow(dead_code)]
    pub fn recording(verdicts: Verdicts) -> Self {
        Self {
            heads: Some(Vec::new()),
            ..Self::new(verdicts)
        }
    }

    /// The raw heads kept by [`Tracker::recording`], in order.
    #[allow(dead_code)]
    pub fn heads(&self) -> &[Vec<u8>] {
        self.heads.as_deref().unwrap_or_default()
    }

    /// The number of the head being read (1 for the connection's first), from its first byte
    /// (or a blank line before it) to its end; `None` between requests, in a body, or once the
    /// tracker stopped following. The gateway's header read timeout watches it: the same number
    /// for too long is a head that does not finish (hyper's own timer would cost every request a
    /// timer of its own).
    pub fn head_in_progress(&self) -> Option<u64> {
        (self.state == State::Head && self.in_head).then_some(self.begun)
    }

    /// Follows `bytes`, the next bytes read from the connection.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Body(left) | State::ChunkData(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = bytes.get(n..).unwrap_or_default();
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Body(_), 0) => State::Head,
                        (State::Body(_), _) => State::Body(left),
                        (_, 0) => State::DataCr,
                        _ => State::ChunkData(left),
                    };
                }
                State::Head => {
                    if !self.in_head {
                        self.in_head = true;
                        self.begun += 1;
                    }
                    // Empty lines before a request line are skipped, as httparse (and so hyper)
                    // skips them.
                    if self.line.is_empty() {
                        let blank = bytes
                            .iter()
                            .take_while(|&&b| b == b'\r' || b == b'\n')
                            .count();
                        bytes = bytes.get(blank..).unwrap_or_default();
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    // Jump from line break to line break rather than byte by byte: this runs on
                    // every byte a client sends.
                    let Some(end) = head_end(&self.line, bytes) else {
                        self.line.extend_from_slice(bytes);
                        if self.line.len() > self.max_head {
                            self.stop();
                        }
                        return;
                    };
                    let (tail, rest) = bytes.split_at(end);
                    bytes = rest;
                    self.in_head = false;
                    if self.line.len() + tail.len() > self.max_head {
                        self.stop();
                    } else if self.line.is_empty() {
                        // The usual case: the whole head arrived in one read, no copy.
                        self.state = self.on_head(tail);
                    } else {
                        self.line.extend_from_slice(tail);
                        let head = std::mem::take(&mut self.line);
                        self.state = self.on_head(&head);
                    }
                }
                _ => {
                    // Chunked framing, one byte at a time as hyper reads it; chunk data is
                    // skipped in bulk above.
                    let (&byte, rest) = bytes.split_first().unwrap_or((&0, &[]));
                    bytes = rest;
                    match self.chunked(byte) {
                        Some(next) => self.state = next,
                        None => {
                            self.refuse_current(FramingError::MalformedChunkedBody);
                            self.stop();
                        }
                    }
                }
            }
        }
    }

    /// One step of the chunked decoder; `None` where hyper errors (or, for a bare LF in a
    /// trailer, where hyper would read on but the tracker refuses).
    fn chunked(&self, byte: u8) -> Option<State> {
        let hex = |b: u8| char::from(b).to_digit(16).map(u64::from);
        Some(match (self.state, byte) {
            (State::Start, b) => State::Size(hex(b)?),
            (State::Size(size), b'\t' | b' ') => State::SizeLws(size),
            (State::Size(size), b';') | (State::SizeLws(size), b';') => State::Extension(size),
            (State::Size(size), b'\r')
            | (State::SizeLws(size), b'\r')
            | (State::Extension(size), b'\r') => State::SizeLf(size),
            (State::Size(size), b) => State::Size(size.checked_mul(16)?.checked_add(hex(b)?)?),
            (State::SizeLws(size), b'\t' | b' ') => State::SizeLws(size),
            (State::Extension(_), b'\n') => return None,
            (State::Extension(size), _) => State::Extension(size),
            (State::SizeLf(0), b'\n') => State::EndCr,
            (State::SizeLf(size), b'\n') => State::ChunkData(size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Start,
            (State::EndCr, b'\r') => State::EndLf,
            (State::EndCr | State::Trailer, b'\n') => return None,
            (State::Trailer, b'\r') => State::TrailerLf,
            (State::EndCr | State::Trailer, _) => State::Trailer,
            (State::TrailerLf, b'\n') => State::EndCr,
            (State::EndLf, b'\n') => State::Head,
            _ => return None,
        })
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.line = Vec::new();
    }

    /// Turns the verdict of the request being read into `error`, if the handler has not taken
    /// it yet. If it has, the body error reaches the handler through hyper instead.
    fn refuse_current(&self, error: FramingError) {
        if let Ok(mut queue) = self.verdicts.lock()
            && let Some(last) = queue.verdicts.back_mut()
            && last.number == self.requests
        {
            last.result = Err(error);
        }
    }

    /// Judges a complete head, queues the verdict and returns the state for its body.
    fn on_head(&mut self, head: &[u8]) -> State {
        if let Some(heads) = &mut self.heads {
            heads.push(head.to_vec());
        }
        let mut headers: [MaybeUninit<httparse::Header<'_>>; MAX_HEADERS] =
            [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut request,
            head,
            &mut headers,
        );
        let (Ok(httparse::Status::Complete(length)), Some(method), Some(target), Some(version)) =
            (parsed, request.method, request.path, request.version)
        else {
            // The HTTP/2 preface, or a head hyper refuses itself (it then closes the
            // connection): nothing more to follow.
            return State::Stopped;
        };
        if length != head.len() {
            // httparse ends a head at its first empty line, which is where `head_end` cut it;
            // should they ever differ, the tracker no longer knows where hyper is.
            return State::Stopped;
        }
        self.requests += 1;
        // The rules of `sanitize::check_framing`, on the head's own fields: no `HeaderMap` is
        // built, so judging a head allocates nothing.
        let fields = || {
            request
                .headers
                .iter()
                .map(|h| (h.name.as_bytes(), crate::headers::trim_ows(h.value)))
        };
        let mut result = sanitize::check_framing_fields(fields());
        let mut chunked = false;
        let mut length = None;
        for (name, value) in fields() {
            if name.eq_ignore_ascii_case(b"transfer-encoding") {
                // Passed the check only as exactly `chunked`, the one coding hyper decodes.
                chunked = true;
            } else if name.eq_ignore_ascii_case(b"content-length") {
                length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
            }
        }
        if result.is_ok() && version == 0 && chunked {
            // hyper refuses Transfer-Encoding in HTTP/1.0.
            result = Err(FramingError::ObfuscatedTransferEncoding);
        }
        let state = self.judged(method, target, request.headers.len(), result);
        if state == State::Stopped {
            // A refused head: nothing after it is followed (and its fields may be ambiguous).
            return state;
        }
        match (chunked, length) {
            (true, _) => State::Start,
            (false, Some(length)) if length > 0 => State::Body(length),
            _ => State::Head,
        }
    }

    /// Queues the verdict of request number `self.requests`. A refusal stops the tracker: the
    /// gateway answers it with `Connection: close`.
    fn judged(
        &mut self,
        method: &str,
        target: &str,
        headers: usize,
        result: Result<(), FramingError>,
    ) -> State {
        let verdict = Verdict {
            number: self.requests,
            shape: Shape::new(method.as_bytes(), target.as_bytes(), headers),
            result,
        };
        match self.verdicts.lock() {
            Ok(mut queue) if !queue.broken && queue.verdicts.len() < self.max_queued => {
                queue.verdicts.push_back(verdict);
            }
            Ok(mut queue) => {
                // Broken already, or more heads waiting than hyper can have buffered: not in
                // step with hyper, so this request and every later one is refused.
                queue.broken = true;
                return State::Stopped;
            }
            // No verdict queued: the handler refuses this request and every later one.
            Err(_) => return State::Stopped,
        }
        if result.is_err() {
            State::Stopped
        } else {
            State::Head
        }
    }
}

/// Where the head that `pending` began ends in `bytes`: the index just past the blank line
/// (`\n\n` or `\n\r\n`, counting bytes of `pending` before `bytes`).
fn head_end(pending: &[u8], bytes: &[u8]) -> Option<usize> {
    let before = |i: usize, back: usize| -> Option<u8> {
        match i.checked_sub(back) {
            Some(j) => bytes.get(j).copied(),
            None => pending
                .len()
                .checked_sub(back - i)
                .and_then(|j| pending.get(j).copied()),
        }
    };
    let mut from = 0;
    while let Some(offset) = memchr::memchr(b'\n', bytes.get(from..)?) {
        let i = from + offset;
        match before(i, 1) {
            Some(b'\n') => return Some(i + 1),
            Some(b'\r') if before(i, 2) == Some(b'\n') => return Some(i + 1),
            _ => from = i + 1,
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    fn verdicts_for(chunks: &[&[u8]]) -> (Vec<Result<(), FramingError>>, State) {
        let verdicts = Verdicts::default();
        let mut tracker = Tracker::new(Arc::clone(&verdicts));
        for chunk in chunks {
            tracker.feed(chunk);
        }
        let queue = verdicts.lock().unwrap();
        for (i, verdict) in queue.verdicts.iter().enumerate() {
            assert_eq!(verdict.number, i as u64 + 1);
        }
        (
            queue.verdicts.iter().map(|v| v.result).collect(),
            tracker.state,
        )
    }

    #[test]
    fn sees_what_hyper_repairs() {
        let (v, _) = verdicts_for(&[
            b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        ]);
        assert_eq!(v, [Err(FramingError::BothContentLengthAndTransferEncoding)]);
        let (v, _) =
            verdicts_for(&[b"POST / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"]);
        assert_eq!(v, [Err(FramingError::DuplicateContentLength)]);
        // Names are folded the way the sanitizer folds them: an underscore spelling is seen, and
        // refused as ambiguous.
        let (v, _) = verdicts_for(&[
            b"POST / HTTP/1.1\r\nContent_Length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
        ]);
        assert_eq!(v, [Err(FramingError::AmbiguousFramingHeader)]);
        // Bare LF line ends, and the blank line split from the head across reads.
        let (v, state) = verdicts_for(&[b"\r\nGET / HTTP/1.1\nHost: a\n", b"\n"]);
        assert_eq!((v, state), (vec![Ok(())], State::Head));
    }

    #[test]
    fn follows_bodies_across_reads_and_pipelining() {
        // A body that looks like a bad head must not be judged as one.
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\nA \t\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n";
        let mut all = head.into_bytes();
        all.extend_from_slice(body);
        all.extend_from_slice(chunked);
        all.extend_from_slice(b"\r\nGET /last HTTP/1.1\r\nHost: a\r\n\r\n");
        for split in [1, 3, 7, all.len()] {
            let chunks: Vec<&[u8]> = all.chunks(split).collect();
            let (v, state) = verdicts_for(&chunks);
            assert_eq!(v, [Ok(()), Ok(()), Ok(())], "split {split}");
            assert_eq!(state, State::Head);
        }
    }

    /// A head is in progress from its first byte, or a blank line before it, to its end: not
    /// between requests, nor in a body, nor once the tracker stopped. Each head has its own number.
    #[test]
    fn tells_which_head_is_in_progress() {
        let mut tracker = Tracker::new(Verdicts::default());
        let mut seen = Vec::new();
        let mut feed = |tracker: &mut Tracker, bytes: &[u8]| {
            tracker.feed(bytes);
            seen.push(tracker.head_in_progress());
        };
        feed(&mut tracker, b"GET / HT");
        feed(&mut tracker, b"TP/1.1\r\nHost: a\r");
        feed(&mut tracker, b"\n\r\n");
        // Blank lines before a request line are part of reading its head, as for hyper.
        feed(&mut tracker, b"\r\n");
        feed(
            &mut tracker,
            b"\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel",
        );
        feed(&mut tracker, b"lo");
        // Two pipelined heads in one read, the second unfinished.
        feed(&mut tracker, b"GET /a HTTP/1.1\r\n\r\nGET /b");
        feed(&mut tracker, b" HTTP/1.1\r\n\r\n");
        feed(&mut tracker, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        feed(&mut tracker, b"GET / HTTP/1.1\r\n");
        assert_eq!(
            seen,
            [
                Some(1),
                Some(1),
                None,
                Some(2),
                None,
                None,
                Some(4),
                None,
                None,
                None,
            ]
        );
    }

    /// The two ways the old check was thrown out of step with hyper on one connection.
    #[test]
    fn stays_in_step_after_trailers_and_unanswered_upgrades() {
        // A bare LF in the trailer section: hyper reads on to the next CRLF; the tracker refuses
        // the body, so the request after it gets no verdict and is refused.
        let smuggle =
            b"GET /x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let mut stream =
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: 1\n\r\n".to_vec();
        stream.extend_from_slice(smuggle);
        let (v, state) = verdicts_for(&[&stream]);
        assert_eq!(v, [Err(FramingError::MalformedChunkedBody)]);
        assert_eq!(state, State::Stopped);
        // An Upgrade the upstream did not answer with 101: hyper reads the next request, and so
        // does the tracker, which judges it.
        let mut stream =
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n".to_vec();
        stream.extend_from_slice(smuggle);
        let (v, _) = verdicts_for(&[&stream]);
        assert_eq!(
            v,
            [
                Ok(()),
                Err(FramingError::BothContentLengthAndTransferEncoding)
            ]
        );
    }

    #[test]
    fn malformed_chunked_bodies_refuse_their_request() {
        for body in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"-1\r\n",
            b"10000000000000000\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"5;a\nb\r\nhello\r\n",
            b"0\r\n\n",
            b" 5\r\n",
        ] {
            let mut stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            stream.extend_from_slice(body);
            let (v, state) = verdicts_for(&[&stream]);
            assert_eq!(v, [Err(FramingError::MalformedChunkedBody)], "{body:?}");
            assert_eq!(state, State::Stopped, "{body:?}");
        }
    }

    #[test]
    fn verdicts_belong_to_their_request_or_refuse() {
        let verdicts = Verdicts::default();
        let mut tracker = Tracker::new(Arc::clone(&verdicts));
        tracker.feed(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\nPOST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
        let request = |method: &str, target: &str, headers: &[(&str, &str)]| {
            let mut builder = http::Request::builder().method(method).uri(target);
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            builder.body(()).unwrap()
        };
        let first = request("GET", "/a?b", &[("host", "x")]);
        assert_eq!(take_verdict(&verdicts, 1, Shape::of(&first)), Ok(()));
        // Another shape for request 2 (its headers differ): refused, and nothing after it passes.
        let second = request("POST", "/c", &[("host", "x")]);
        assert_eq!(
            take_verdict(&verdicts, 2, Shape::of(&second)),
            Err(FramingError::Unchecked)
        );
        assert_eq!(
            take_verdict(&verdicts, 3, Shape::of(&first)),
            Err(FramingError::Unchecked)
        );
        // Out of step once, refused for good: a later head whose verdict would fit its request
        // is neither queued nor passed.
        tracker.feed(b"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(tracker.state, State::Stopped);
        assert_eq!(
            take_verdict(&verdicts, 3, Shape::of(&first)),
            Err(FramingError::Unchecked)
        );
        // A poisoned lock refuses.
        let poisoned = Verdicts::default();
        let clone = Arc::clone(&poisoned);
        let _ = std::thread::spawn(move || {
            let _guard = clone.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert_eq!(
            take_verdict(&poisoned, 1, Shape::of(&first)),
            Err(FramingError::Unchecked)
        );
    }

    /// hyper drops a fragment from the target (found by the framing fuzz target): the verdict
    /// still fits the request, which is not refused as out of step.
    #[test]
    fn a_fragment_in_the_target_keeps_the_verdict_in_step() {
        let verdicts = Verdicts::default();
        let mut tracker = Tracker::new(Arc::clone(&verdicts));
        tracker.feed(b"GET /a?b#c?d HTTP/1.1\r\nHost: x\r\n\r\nGET /e HTTP/1.1\r\nHost: x\r\n\r\n");
        let parsed = |target: &str| {
            http::Request::builder()
                .uri(target)
                .header("host", "x")
                .body(())
                .unwrap()
        };
        let first = parsed("/a?b#c?d");
        assert_eq!(first.uri(), "/a?b");
        assert_eq!(take_verdict(&verdicts, 1, Shape::of(&first)), Ok(()));
        assert_eq!(take_verdict(&verdicts, 2, Shape::of(&parsed("/e"))), Ok(()));
    }

    /// An upgraded tunnel whose bytes look like requests hyper never dispatches: the queue stops
    /// at its bound instead of growing with the tunnel's traffic, and nothing more passes.
    #[test]
    fn the_queue_is_bounded() {
        let verdicts = Verdicts::default();
        let mut tracker = Tracker::new(Arc::clone(&verdicts));
        let bound = tracker.max_queued;
        // The shortest head hyper accepts, which the bound is computed from.
        let shortest = b"A / HTTP/1.1\n\n";
        assert_eq!(shortest.len(), 14);
        for _ in 0..bound {
            tracker.feed(shortest);
        }
        assert_eq!(tracker.state, State::Head);
        assert_eq!(verdicts.lock().unwrap().verdicts.len(), bound);
        tracker.feed(shortest);
        assert_eq!(tracker.state, State::Stopped);
        assert_eq!(verdicts.lock().unwrap().verdicts.len(), bound);
        let request = http::Request::builder()
            .method("A")
            .uri("/")
            .body(())
            .unwrap();
        assert_eq!(
            take_verdict(&verdicts, 1, Shape::of(&request)),
            Err(FramingError::Unchecked)
        );
    }

    #[test]
    fn stops_where_it_cannot_follow() {
        let (v, state) = verdicts_for(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(v.is_empty());
        assert_eq!(state, State::Stopped);
    }
}
