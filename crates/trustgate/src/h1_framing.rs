//! The framing check on the raw bytes of each HTTP/1 request head.
//!
//! Why this exists: hyper repairs ambiguous framing before the request reaches the gateway. With
//! both Content-Length and Transfer-Encoding it drops Content-Length (and closes the connection
//! after the response); duplicate identical Content-Length lines become one. So
//! `sanitize::check_framing`, which sees only the parsed `HeaderMap`, never saw those requests, and
//! the gateway forwarded them instead of refusing them as documented (found by the end-to-end
//! smuggling tests). [`Tracker`] is fed every byte a connection reads (by `server::ConnStream`),
//! finds each request head, runs the same `check_framing` on its raw header lines and queues the
//! verdict; the request handler takes the verdicts in order ([`take_verdict`]).
//!
//! The tracker follows message boundaries the way hyper does (Content-Length, chunked bodies and
//! trailers). When it cannot follow them — an HTTP/2 preface, an upgrade, anything it does not
//! parse — it stops, and later requests fall back to the `HeaderMap` check: it can only add
//! refusals, never remove one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::sanitize::{self, FramingError};

/// Verdicts of the heads read so far on one connection, oldest first.
pub(crate) type Verdicts = Arc<Mutex<VecDeque<Result<(), FramingError>>>>;

/// Takes the verdict for the next HTTP/1 request of a connection, if the tracker produced one.
pub(crate) fn take_verdict(verdicts: &Verdicts) -> Option<Result<(), FramingError>> {
    verdicts.lock().ok()?.pop_front()
}

/// Longest head or chunk line the tracker buffers; hyper refuses longer ones anyway.
const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head (or the empty lines before one).
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping this many chunk bytes.
    ChunkData(u64),
    /// Reading the line break after chunk data.
    ChunkEnd,
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// No longer following this connection.
    Stopped,
}

#[derive(Debug)]
pub(crate) struct Tracker {
    state: State,
    line: Vec<u8>,
    verdicts: Verdicts,
}

impl Tracker {
    pub(crate) fn new(verdicts: Verdicts) -> Self {
        Self {
            state: State::Head,
            line: Vec::new(),
            verdicts,
        }
    }

    /// Follows `bytes`, the next bytes read from the connection.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
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
                        (_, 0) => State::ChunkEnd,
                        _ => State::ChunkData(left),
                    };
                }
                State::Head => {
                    // hyper skips empty lines before a request line.
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
                        if self.line.len() > MAX_LINE {
                            self.stop();
                        }
                        return;
                    };
                    let (tail, rest) = bytes.split_at(end);
                    bytes = rest;
                    if self.line.len() + tail.len() > MAX_LINE {
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
                State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    let Some(end) = bytes.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(bytes);
                        if self.line.len() > MAX_LINE {
                            self.stop();
                        }
                        return;
                    };
                    self.line
                        .extend_from_slice(bytes.get(..end).unwrap_or_default());
                    bytes = bytes.get(end + 1..).unwrap_or_default();
                    let line = std::mem::take(&mut self.line);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = match self.state {
                        State::ChunkSize => match chunk_size(line) {
                            Some(0) => State::Trailers,
                            Some(size) => State::ChunkData(size),
                            None => State::Stopped,
                        },
                        State::ChunkEnd if line.is_empty() => State::ChunkSize,
                        State::Trailers if line.is_empty() => State::Head,
                        State::Trailers => State::Trailers,
                        _ => State::Stopped,
                    };
                }
            }
        }
    }

    fn stop(&mut self) {
        self.state = State::Stopped;
        self.line = Vec::new();
    }

    /// Judges a complete head, queues the verdict and returns the state for its body.
    fn on_head(&mut self, head: &[u8]) -> State {
        let mut lines = lines(head);
        let request_line = lines.next().unwrap_or_default();
        let mut words = request_line.split(|&b| b == b' ');
        let method = words.next().unwrap_or_default();
        let version = request_line
            .rsplit(|&b| b == b' ')
            .next()
            .unwrap_or_default();
        if !version.starts_with(b"HTTP/1.") {
            // The HTTP/2 preface, or something hyper refuses: not ours to follow.
            return State::Stopped;
        }
        let mut framing = HeaderMap::new();
        let mut upgrade = method == b"CONNECT";
        for line in lines.filter(|l| !l.is_empty()) {
            let Some(colon) = memchr::memchr(b':', line) else {
                continue;
            };
            let (name, value) = line.split_at(colon);
            let value = value.get(1..).unwrap_or_default();
            if name.eq_ignore_ascii_case(b"upgrade") {
                upgrade = true;
            }
            if !is_named(name, b"content-length") && !is_named(name, b"transfer-encoding") {
                continue;
            }
            // Names or values hyper would refuse end the connection there anyway.
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name),
                HeaderValue::from_bytes(crate::sanitize::trim_ows(value)),
            ) {
                framing.append(name, value);
            }
        }
        let verdict = sanitize::check_framing(&framing);
        if let Ok(mut verdicts) = self.verdicts.lock() {
            verdicts.push_back(verdict);
        }
        if verdict.is_err() || upgrade {
            // A refused request closes the connection; an upgrade leaves HTTP/1.
            return State::Stopped;
        }
        if framing.contains_key(http::header::TRANSFER_ENCODING) {
            State::ChunkSize
        } else if let Some(length) = framing
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if length == 0 {
                State::Head
            } else {
                State::Body(length)
            }
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

/// The lines of `head`, without their `\n` or `\r\n`, as `split` on `\n` would give them. This
/// and [`head_end`] see every byte of every request head, so they jump from line break to line
/// break with `memchr` rather than test byte by byte.
fn lines(head: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(head);
    std::iter::from_fn(move || {
        let text = rest?;
        let line = match memchr::memchr(b'\n', text) {
            Some(end) => {
                let (line, after) = text.split_at(end);
                rest = after.get(1..);
                line
            }
            None => {
                rest = None;
                text
            }
        };
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

/// Whether header `name` is `target` (lowercase) once case and `_`/`-` are folded, the way the
/// sanitizer compares names.
fn is_named(name: &[u8], target: &[u8]) -> bool {
    name.len() == target.len()
        && name.iter().zip(target).all(|(&b, &t)| {
            let folded = if b == b'_' {
                b'-'
            } else {
                b.to_ascii_lowercase()
            };
            folded == t
        })
}

/// The size of a chunk-size line (`1a;ext=x`), as hyper reads it.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .map(crate::sanitize::trim_ows)
        .unwrap_or_default();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let text = std::str::from_utf8(digits).ok()?;
    u64::from_str_radix(text, 16).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn verdicts_for(chunks: &[&[u8]]) -> (Vec<Result<(), FramingError>>, State) {
        let verdicts = Verdicts::default();
        let mut tracker = Tracker {
            state: State::Head,
            line: Vec::new(),
            verdicts: Arc::clone(&verdicts),
        };
        for chunk in chunks {
            tracker.feed(chunk);
        }
        let out = verdicts.lock().unwrap().iter().copied().collect();
        (out, tracker.state)
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        /// `lines` is `split` on `\n` with one `\r` taken off each line, on any bytes.
        #[test]
        fn lines_split_like_the_byte_by_byte_version(
            head in proptest::collection::vec(
                proptest::sample::select(vec![b'\n', b'\r', b':', b'a', b' ', 0xff]),
                0..64,
            ),
        ) {
            let expected: Vec<&[u8]> = head
                .split(|&b| b == b'\n')
                .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
                .collect();
            proptest::prop_assert_eq!(lines(&head).collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn follows_bodies_across_reads_and_pipelining() {
        // A body that looks like a bad head must not be judged as one.
        let body = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n";
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

    #[test]
    fn stops_where_it_cannot_follow() {
        let (v, state) = verdicts_for(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]);
        assert!(v.is_empty());
        assert_eq!(state, State::Stopped);
        let (v, state) = verdicts_for(&[
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ]);
        assert_eq!(v, [Ok(())]);
        assert_eq!(state, State::Stopped);
    }
}
