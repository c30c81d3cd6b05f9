//! End-to-end: a hostile HTTP/2 client on the public listener, written frame by frame over a
//! real TCP connection: rapid reset (CVE-2023-44487) and streams the gateway must reset itself,
//! a CONTINUATION flood, an HPACK block that decodes far larger than it is sent, a flood of
//! empty DATA frames. Each must end with the GOAWAY h2 sends for it (or the stream's refusal),
//! no request for a refused stream may reach the upstream, and a new connection must still be
//! answered. Then the memory one connection can make the gateway hold with 256 streams that
//! stall: responses the client never reads, uploads an upstream never reads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::{Fixture, Gateway, Pattern, Route, Upstream, canned_upstream};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

const PROTOCOL_ERROR: u32 = 0x1;
const CANCEL: u32 = 0x8;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame: its 9-byte header, then `payload`.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap();
    assert!(len < 1 << 24);
    let mut out = len.to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// `:method GET` or `POST`, `:scheme http`, `:path /`, `:authority gw.test` (literal, not
/// indexed, so the HPACK table is left alone).
fn request_block(post: bool) -> Vec<u8> {
    let mut block = vec![if post { 0x83 } else { 0x82 }, 0x86, 0x84, 0x01, 7];
    block.extend_from_slice(b"gw.test");
    block
}

/// [`request_block`] for a GET, with one more field `name: value` (a literal without indexing,
/// new name; both shorter than 127 bytes).
fn get_with(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut block = request_block(false);
    block.extend_from_slice(&[0x00, u8::try_from(name.len()).unwrap()]);
    block.extend_from_slice(name);
    block.push(u8::try_from(value.len()).unwrap());
    block.extend_from_slice(value);
    block
}

/// A frame as read back: type, flags, stream, payload.
#[derive(Debug)]
struct Frame {
    kind: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// What the gateway sent on a connection until it closed it (or `within` passed), and whether
/// it closed it.
struct Seen {
    frames: Vec<Frame>,
    closed: bool,
    closed_after: Duration,
}

impl Seen {
    /// The error code of the first GOAWAY.
    fn goaway(&self) -> Option<u32> {
        self.frames
            .iter()
            .find(|f| f.kind == GOAWAY)
            .map(|f| u32::from_be_bytes([f.payload[4], f.payload[5], f.payload[6], f.payload[7]]))
    }

    /// The error codes of every RST_STREAM, in order.
    fn resets(&self) -> Vec<u32> {
        self.frames
            .iter()
            .filter(|f| f.kind == RST_STREAM)
            .map(|f| u32::from_be_bytes([f.payload[0], f.payload[1], f.payload[2], f.payload[3]]))
            .collect()
    }
}

/// A new HTTP/2 connection to the gateway: the preface and an empty SETTINGS sent.
fn open(gateway: &Gateway) -> TcpStream {
    let mut stream = gateway.connect();
    stream
        .write_all(&[PREFACE, &frame(SETTINGS, 0, 0, &[])].concat())
        .unwrap();
    stream
}

/// Opens an HTTP/2 connection and [`watch`]es it while `hostile` is sent.
fn send_and_watch(gateway: &Gateway, hostile: Vec<Vec<u8>>, within: Duration) -> Seen {
    watch(&mut open(gateway), hostile, within)
}

/// Sends `hostile` on `stream` from a thread of its own (write errors once the gateway has
/// closed are expected), and reads every frame until the gateway closes the connection or
/// `within` has passed.
fn watch(stream: &mut TcpStream, hostile: Vec<Vec<u8>>, within: Duration) -> Seen {
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        for chunk in hostile {
            if writer.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let seen = read_frames(stream, started, within);
    let _ = sender.join();
    seen
}

fn read_frames(stream: &mut TcpStream, started: Instant, within: Duration) -> Seen {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    let mut chunk = [0u8; 16384];
    let closed = loop {
        if started.elapsed() > within {
            break false;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            // Reset: the gateway closed with bytes of ours unread. Closed all the same.
            Err(_) => break true,
        }
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let raw: Vec<u8> = buf.drain(..9 + len).collect();
            frames.push(Frame {
                kind: raw[3],
                stream: u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff,
                payload: raw[9..].to_vec(),
            });
        }
    };
    Seen {
        frames,
        closed,
        closed_after: started.elapsed(),
    }
}

/// A public route to the echo upstream, and `max_header_bytes` at its default, written out: the
/// tests below size their header blocks against it.
fn config(f: &Fixture) -> crate::common::Config {
    f.config()
        .route(Route::new("root", "/", "echo", Pattern::Public))
        .server("max_header_bytes", 32768)
}

fn gateway(f: &Fixture) -> Gateway {
    Gateway::start(&config(f))
}

/// The connection ended with GOAWAY(ENHANCE_YOUR_CALM) and was closed, `reached` requests of
/// it reached the upstream, and a new connection is still answered (the gateway did not fall
/// over or lock up).
fn refused_with_goaway(f: &Fixture, gateway: &Gateway, seen: &Seen, reached: usize) {
    assert_eq!(seen.goaway(), Some(ENHANCE_YOUR_CALM), "{:?}", seen.frames);
    assert!(
        seen.closed,
        "still open {:?} after the GOAWAY",
        seen.closed_after
    );
    // Time for a request that did slip through to arrive.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        f.upstream.count(),
        reached,
        "requests that reached the upstream"
    );
    assert_eq!(gateway.get("/after", &[]).status, 200);
    assert_eq!(f.upstream.count(), reached + 1);
}

/// Rapid reset: HEADERS then RST_STREAM(CANCEL), 100 streams in a row. h2 counts streams reset
/// before they were handed to the service (`max_pending_accept_reset_streams`, 20 by default,
/// which hyper leaves alone) and answers the 21st with GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn rapid_reset_is_answered_with_goaway_and_reaches_no_upstream() {
    let f = Fixture::new();
    let gateway = gateway(&f);
    let mut burst = Vec::new();
    for i in 0..100u32 {
        let id = 2 * i + 1;
        burst.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block(false),
        ));
        burst.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
    }
    let seen = send_and_watch(&gateway, vec![burst], Duration::from_secs(5));
    refused_with_goaway(&f, &gateway, &seen, 0);
}

/// The other form of rapid reset: each stream reset a moment after its HEADERS (10 ms), once
/// hyper has taken it, so h2's count of streams reset before they were taken never moves, and
/// each costs a request's work (the upstream is sent it, and its connection is closed with the
/// cancelled request). The gateway drops a connection whose client cancelled 250 of its first
/// 500 exchanges: of 400 streams so reset, no more than about 250 reach the upstream.
#[test]
fn streams_reset_after_they_are_taken_end_the_connection_after_250() {
    let f = Fixture::new();
    let gateway = gateway(&f);
    // The upstream holds each request until long after its reset.
    let block = get_with(b"x-echo-delay-ms", b"1000");
    let mut stream = open(&gateway);
    let mut writer = stream.try_clone().unwrap();
    let started = Instant::now();
    let sender = std::thread::spawn(move || {
        for n in 0..400u32 {
            let id = 2 * n + 1;
            let headers = frame(HEADERS, END_HEADERS | END_STREAM, id, &block);
            let reset = frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes());
            if writer.write_all(&headers).is_err() {
                return n;
            }
            std::thread::sleep(Duration::from_millis(10));
            if writer.write_all(&reset).is_err() {
                return n;
            }
        }
        400
    });
    let seen = read_frames(&mut stream, started, Duration::from_secs(15));
    let sent = sender.join().unwrap();
    assert!(
        seen.closed,
        "still open after 400 streams reset after they were taken"
    );
    assert!(sent < 400, "all 400 streams were sent");
    // The last requests' delays over.
    std::thread::sleep(Duration::from_millis(1500));
    let reached = f.upstream.count();
    assert!(
        (200..=260).contains(&reached),
        "{reached} requests of reset streams reached the upstream"
    );
    assert_eq!(gateway.get("/after", &[]).status, 200);
}

/// Streams the gateway must reset itself (here a connection-specific `connection` field, which
/// HTTP/2 forbids: RST_STREAM(PROTOCOL_ERROR)) are bounded too: h2's
/// `max_local_error_reset_streams`, 1024 as hyper sets it, over the connection's life; the
/// 1025th gets GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn streams_the_gateway_must_reset_end_in_goaway_after_1024() {
    let f = Fixture::new();
    let gateway = gateway(&f);
    let block = get_with(b"connection", b"x");
    let malformed = |first: u32, count: u32| -> Vec<u8> {
        (first..first + count)
            .flat_map(|n| frame(HEADERS, END_HEADERS | END_STREAM, 2 * n + 1, &block))
            .collect()
    };
    let mut stream = open(&gateway);
    // 1024 in chunks of 128, so the reader keeps up with the resets coming back.
    let chunks = (0..8).map(|c| malformed(c * 128, 128)).collect();
    let seen = watch(&mut stream, chunks, Duration::from_secs(2));
    assert!(!seen.closed && seen.goaway().is_none(), "{:?}", seen.frames);
    let resets = seen.resets();
    assert_eq!(resets.len(), 1024);
    assert!(
        resets.iter().all(|&code| code == PROTOCOL_ERROR),
        "{resets:?}"
    );

    let seen = watch(
        &mut stream,
        vec![malformed(1024, 1)],
        Duration::from_secs(5),
    );
    refused_with_goaway(&f, &gateway, &seen, 0);
}

/// Sends `first`, then `each` `times` over, in one write on a new connection, and watches it
/// for 5 s at most.
fn flooded(gateway: &Gateway, mut first: Vec<u8>, each: &[u8], times: usize) -> Seen {
    for _ in 0..times {
        first.extend_from_slice(each);
    }
    send_and_watch(gateway, vec![first], Duration::from_secs(5))
}

/// CONTINUATION flood: HEADERS without END_HEADERS, then CONTINUATION frames that never end the
/// block. h2 allows as many as `max_header_list_size` (32 KiB here) needs in frames of its
/// `max_frame_size` (16 KiB), a quarter more, and at least 5; the next one gets
/// GOAWAY(ENHANCE_YOUR_CALM), however small the frames.
#[test]
fn a_continuation_flood_is_answered_with_goaway() {
    let f = Fixture::new();
    let gateway = gateway(&f);
    // A literal `x: y` field each (without indexing, new name): the block grows by 4 bytes a
    // frame, far below any size limit.
    let seen = flooded(
        &gateway,
        frame(HEADERS, END_STREAM, 1, &request_block(false)),
        &frame(CONTINUATION, 0, 1, &[0x00, 1, b'x', 1, b'y']),
        200,
    );
    refused_with_goaway(&f, &gateway, &seen, 0);
}

/// A HEADERS frame on stream `id` whose block puts a 4,000-byte field into the HPACK table,
/// then refers to it `copies` times with a one-byte index: 4 KiB sent, 4 KiB more decoded per
/// byte.
fn expanding_block(id: u32, copies: usize) -> Vec<u8> {
    let mut block = request_block(false);
    // Literal with incremental indexing, new name `x-big`; value length 4000 (7-bit prefix
    // integer: 127, then 3873 in base 128, low group first).
    block.extend_from_slice(&[0x40, 5]);
    block.extend_from_slice(b"x-big");
    block.extend_from_slice(&[0x7f, 0xa1, 0x1e]);
    block.extend(std::iter::repeat_n(b'a', 4000));
    // Indexed field 62: the dynamic table's newest entry.
    block.extend(std::iter::repeat_n(0xbe, copies));
    frame(HEADERS, END_HEADERS | END_STREAM, id, &block)
}

/// Decoded past `max_header_bytes` (10 copies: about 44 KB of 32 KiB), the request is refused
/// on its stream with `431`; the connection stays, and its next request is answered, though it
/// decodes to 24 KB (5 copies): over hyper's default of 16 KiB, under `max_header_bytes`.
#[test]
fn an_hpack_block_that_decodes_over_max_header_bytes_gets_431() {
    let f = Fixture::new();
    let gateway = gateway(&f);
    let mut stream = open(&gateway);
    let seen = watch(
        &mut stream,
        vec![expanding_block(1, 10)],
        Duration::from_secs(2),
    );
    assert!(!seen.closed, "closed: {:?}", seen.frames);
    let response = seen
        .frames
        .iter()
        .find(|f| f.kind == HEADERS && f.stream == 1)
        .expect("no response HEADERS on stream 1");
    // `:status 431` and nothing else: the static table has no 431, so it is a literal with
    // incremental indexing of name index 8 (`:status`), value "431" Huffman-coded (3 bytes).
    assert_eq!(response.payload, [0x48, 0x83, 0x69, 0x90, 0xff]);
    assert_eq!(f.upstream.count(), 0);

    let seen = watch(
        &mut stream,
        vec![expanding_block(3, 5)],
        Duration::from_secs(2),
    );
    let response = seen
        .frames
        .iter()
        .find(|f| f.kind == HEADERS && f.stream == 3)
        .expect("no response HEADERS on stream 3");
    // `:status 200`: static table index 8.
    assert_eq!(response.payload.first(), Some(&0x88));
    assert_eq!(f.upstream.count(), 1);
}

/// Decoded past four times `max_header_bytes` (40 copies: about 160 KB from 4.2 KB sent), the
/// connection is refused: GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn an_hpack_block_that_decodes_far_over_max_header_bytes_gets_goaway() {
    let f = Fixture::new();
    let gateway = gateway(&f);
    let seen = send_and_watch(
        &gateway,
        vec![expanding_block(1, 40)],
        Duration::from_secs(5),
    );
    refused_with_goaway(&f, &gateway, &seen, 0);
}

/// Empty DATA frames (no END_STREAM) move nothing, and cost the server a frame each: h2 takes
/// 100 on a connection, then GOAWAY(ENHANCE_YOUR_CALM).
#[test]
fn an_empty_data_flood_is_answered_with_goaway() {
    let f = Fixture::new();
    let gateway = gateway(&f);
    let seen = flooded(
        &gateway,
        frame(HEADERS, END_HEADERS, 1, &request_block(true)),
        &frame(DATA, 0, 1, &[]),
        300,
    );
    // The echo upstream records a request once its body has ended: this one's never does.
    refused_with_goaway(&f, &gateway, &seen, 0);
}

/// How much the gateway's resident memory has grown over `before` (KiB) once it stops growing:
/// after 3 s, when two readings a second apart differ by less than 512 KiB, or after 10 s.
fn settled_growth_mib(gateway: &Gateway, before: u64) -> u64 {
    let started = Instant::now();
    let mut last = gateway.rss_kib();
    while started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_secs(1));
        let now = gateway.rss_kib();
        if now.abs_diff(last) < 512 && started.elapsed() > Duration::from_secs(3) {
            break;
        }
        last = now;
    }
    gateway.rss_kib().saturating_sub(before) / 1024
}

/// A client that gives the gateway all the flow-control window there is (2^31-1 for the
/// connection and for every stream), asks for a 4 MiB response on each of 256 streams, and
/// never reads a byte. Flow control never stops the gateway, so only h2's send buffer per
/// stream (`max_send_buf_size`) bounds what it holds for the client, 256 times over; the rest
/// waits in the upstream's socket.
#[test]
fn a_client_that_never_reads_cannot_make_the_gateway_buffer_its_responses() {
    let f = Fixture::new();
    let body_len = 4 << 20;
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
    response.resize(response.len() + body_len, b'x');
    let bulk = canned_upstream(response);
    let gateway = Gateway::start(
        &f.config()
            .upstream(Upstream::new("bulk", &format!("http://{bulk}")))
            .route(Route::new("bulk", "/", "bulk", Pattern::Public)),
    );
    // A warm-up exchange, so what the first connection and request allocate is in the baseline.
    let mut warm = open(&gateway);
    let seen = watch(
        &mut warm,
        vec![frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request_block(false),
        )],
        Duration::from_secs(1),
    );
    assert!(
        seen.frames
            .iter()
            .any(|f| f.kind == HEADERS && f.stream == 1)
    );
    drop(warm);
    std::thread::sleep(Duration::from_millis(500));
    let before = gateway.rss_kib();

    let mut greedy = gateway.connect();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 2^31-1, and the connection window raised to match.
    let mut opening = [
        PREFACE,
        &frame(SETTINGS, 0, 0, &[0, 4, 0x7f, 0xff, 0xff, 0xff]),
    ]
    .concat();
    opening.extend(frame(
        WINDOW_UPDATE,
        0,
        0,
        &(0x7fff_ffff_u32 - 65_535).to_be_bytes(),
    ));
    for n in 0..256u32 {
        opening.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * n + 1,
            &request_block(false),
        ));
    }
    greedy.write_all(&opening).unwrap();
    // 261 MiB with h2's default send buffer of 400 KiB a stream; 36 to 42 MiB with 16 KiB, the
    // rest being each stream's chunk read from the upstream and the upstream connection's
    // buffers.
    let grown_mib = settled_growth_mib(&gateway, before);
    assert!(
        grown_mib < 96,
        "one connection that never reads made the gateway hold {grown_mib} MiB more"
    );
    drop(greedy);
}

/// An upstream that accepts connections and never reads from them (nor answers).
fn deaf_upstream() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            held.push(stream);
        }
    });
    addr
}

/// The other direction: 256 streams each uploading 4 MiB to an upstream that never reads. The
/// client keeps to flow control (hyper's client). The gateway's windows (hyper's 1 MiB for the
/// connection, which caps the sum of its streams' 1 MiB windows) bound only what waits in h2:
/// each stream's body is read on into its upstream connection's write buffer until that is full,
/// so that buffer's size (`upstream::UPSTREAM_BUF_BYTES`) counts 256 times.
#[test]
fn uploads_an_upstream_never_reads_are_held_to_a_small_buffer_per_stream() {
    use http_body_util::Full;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let f = Fixture::new();
    let deaf = deaf_upstream();
    let gateway = Gateway::start(
        &f.config()
            .upstream(Upstream::new("deaf", &format!("http://{deaf}")))
            .route(Route::new("echo", "/warm-up", "echo", Pattern::Public))
            .route(Route::new("deaf", "/", "deaf", Pattern::Public)),
    );
    assert_eq!(gateway.get("/warm-up", &[]).status, 200);
    std::thread::sleep(Duration::from_millis(500));
    let before = gateway.rss_kib();
    let addr = gateway.proxy;
    let body = bytes::Bytes::from(vec![b'x'; 4 << 20]);
    let _held = crate::common::rt().block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        let conn = tokio::spawn(conn);
        let uploads: Vec<_> = (0..256)
            .map(|n| {
                let mut sender = sender.clone();
                let request = http::Request::post(format!("http://gw.test/up/{n}"))
                    .body(Full::new(body.clone()))
                    .unwrap();
                tokio::spawn(async move { sender.send_request(request).await })
            })
            .collect();
        (conn, uploads)
    });
    // 113 to 124 MiB with hyper's default upstream buffer of about 400 KiB a connection; 26 MiB
    // with 64 KiB.
    let grown_mib = settled_growth_mib(&gateway, before);
    assert!(
        grown_mib < 64,
        "uploads to a deaf upstream made the gateway hold {grown_mib} MiB more"
    );
}

/// PING, SETTINGS and WINDOW_UPDATE frames without end, from a client that never reads: h2 reads
/// a frame only once the answer owed for the one before (a PING's, a SETTINGS' acknowledgement)
/// is written, so it stops reading when the client stops reading, and holds no queue of
/// answers. None of these frames is use for the idle watch (`limits::Use`), so the connection is
/// closed gracefully one idle timeout after it opened and dropped one more after that, however
/// fast the client sends.
#[test]
fn a_control_frame_flood_from_a_client_that_never_reads_is_dropped_at_the_idle_timeout() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("idle_timeout", "1s"));
    assert_eq!(gateway.get("/warm-up", &[]).status, 200);
    let before = gateway.rss_kib();
    let mut chunk = Vec::new();
    for n in 0..1000u64 {
        chunk.extend(frame(PING, 0, 0, &n.to_be_bytes()));
        chunk.extend(frame(SETTINGS, 0, 0, &[]));
        chunk.extend(frame(WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()));
    }
    let mut flooder = open(&gateway);
    let started = Instant::now();
    // Until a write fails (the gateway dropped the connection), 10 s at most.
    let dropped = loop {
        if started.elapsed() > Duration::from_secs(10) {
            break None;
        }
        if flooder.write_all(&chunk).is_err() {
            break Some(started.elapsed());
        }
    };
    let dropped =
        dropped.expect("a flooding client that never reads is still connected after 10 s");
    // Two idle timeouts, each checked every quarter of it, and the kernel's buffers between.
    assert!(dropped < Duration::from_secs(5), "{dropped:?}");
    let grown_mib = gateway.rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 16,
        "the flood made the gateway hold {grown_mib} MiB more"
    );
    assert_eq!(gateway.get("/after", &[]).status, 200);
}

/// Peers that never ask anything hold a slot on the public listener for at most two idle
/// timeouts: nothing, part of the preface, or the preface (and SETTINGS) then silence. The
/// preface's bytes, and SETTINGS, are no use (`limits::Use`); a silent connection is closed at
/// the idle close, an HTTP/2 one is sent GOAWAY then, and dropped one idle timeout later when the
/// client does not answer the GOAWAY's PING. (Here the idle timeout, 1 s, comes before
/// `header_read_timeout`, 10 s: see the next test for the other way round.)
#[test]
fn silent_and_preface_only_connections_are_closed_within_two_idle_timeouts() {
    let f = Fixture::new();
    let gateway = Gateway::start(&config(&f).server("idle_timeout", "1s"));
    for (peer, sends, within_ms) in [
        ("silent", Vec::new(), 2_500),
        ("half a preface", PREFACE[..10].to_vec(), 2_500),
        ("the preface", PREFACE.to_vec(), 4_500),
        (
            "the preface and SETTINGS",
            [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat(),
            4_500,
        ),
    ] {
        let seen = watch(&mut gateway.connect(), vec![sends], Duration::from_secs(8));
        assert!(seen.closed, "{peer}: still open after 8 s");
        assert!(
            seen.closed_after < Duration::from_millis(within_ms),
            "{peer}: closed after {:?}",
            seen.closed_after
        );
    }
    assert_eq!(gateway.get("/after", &[]).status, 200);
}

/// A connection whose first request has not reached the gateway `header_read_timeout` after it
/// connected is dropped, on the public listener as on the side ones: a peer that sends nothing,
/// part of the preface, the preface (and SETTINGS), or half an HTTP/1 head. hyper's own
/// `header_read_timeout` starts only at an HTTP/1 head's first byte, and HTTP/2 has none, so
/// without this such peers held their slots until the idle close. A connection that asked in time
/// is then held to `idle_timeout`, not to this.
#[test]
fn connections_without_a_request_are_dropped_at_the_header_read_timeout() {
    let f = Fixture::new();
    let gateway = Gateway::start(
        &config(&f)
            .server("header_read_timeout", "500ms")
            .server("idle_timeout", "30s"),
    );
    for (peer, sends) in [
        ("silent", Vec::new()),
        ("half a preface", PREFACE[..10].to_vec()),
        ("the preface", PREFACE.to_vec()),
        (
            "the preface and SETTINGS",
            [PREFACE, &frame(SETTINGS, 0, 0, &[])].concat(),
        ),
        (
            "half an HTTP/1 head",
            b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec(),
        ),
    ] {
        let seen = watch(&mut gateway.connect(), vec![sends], Duration::from_secs(8));
        assert!(seen.closed, "{peer}: still open after 8 s");
        assert!(
            seen.closed_after >= Duration::from_millis(400)
                && seen.closed_after < Duration::from_millis(2_000),
            "{peer}: closed after {:?}",
            seen.closed_after
        );
    }
    assert_eq!(f.upstream.count(), 0);

    // Asked at once, then quiet for three header_read_timeouts: still open, and answers again.
    // Over HTTP/2 (over HTTP/1:
    // `proxying.rs::an_idle_keep_alive_connection_outlives_the_header_read_timeout`).
    let mut asked = open(&gateway);
    for (id, quiet_ms) in [(1, 1_500), (3, 500)] {
        let request = frame(HEADERS, END_HEADERS | END_STREAM, id, &request_block(false));
        let seen = watch(&mut asked, vec![request], Duration::from_millis(quiet_ms));
        assert!(
            !seen.closed,
            "stream {id}: a connection that asked at once was closed after {:?}",
            seen.closed_after
        );
        assert!(
            seen.frames
                .iter()
                .any(|f| f.kind == HEADERS && f.stream == id),
            "stream {id}: no response: {:?}",
            seen.frames
        );
    }
    assert_eq!(f.upstream.count(), 2);
}
