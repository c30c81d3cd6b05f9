//! End-to-end: load and connection faults against the real binary. Memory stays bounded under a
//! flood of distinct invalid tokens (read from `/proc/<pid>/status`), and bursts of connections
//! beyond `max_connections` are closed at once, never hang, never reach the upstream, and leave
//! the process's file descriptors where they were, while valid traffic gets through.
#![allow(clippy::print_stderr)]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use test_support::b64;

use crate::common::{
    Client, Config, Fixture, Gateway, Pattern, Route, bearer, read_until_closed, wait_until,
};

/// An `identity-headers` route `ids` to the fixture's upstream.
fn routes(f: &Fixture) -> Config {
    f.config()
        .route(Route::new("ids", "/ids", "echo", Pattern::IdentityHeaders))
}

/// The `i`-th distinct invalid token: a known `kid` with a signature over other bytes, an
/// unknown `kid`, an expired but validly signed token, or text that is not a JWS at all.
fn invalid_token(f: &Fixture, signature: &str, i: usize) -> String {
    let claims = test_support::claims(&f.iss, "api", &format!("flood-{i}"));
    match i % 8 {
        0 => {
            let now = test_support::now_secs();
            f.token_with(
                &format!("expired-{i}"),
                serde_json::json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
            )
        }
        1..=3 => format!(
            "{}.{}.{signature}",
            b64(br#"{"alg":"ES256","kid":"k1","typ":"JWT"}"#),
            b64(claims.to_string())
        ),
        4..=5 => format!(
            "{}.{}.{signature}",
            b64(format!(r#"{{"alg":"ES256","kid":"unknown-{i}"}}"#)),
            b64(claims.to_string())
        ),
        6 => format!("garbage-{i}.{}.x", b64(format!("{i:0>64}"))),
        _ => format!(
            "{}.{}",
            b64(format!("{{\"alg\":\"none\",\"n\":{i}}}")),
            b64(claims.to_string())
        ),
    }
}

/// Sends `tokens` from `threads` keep-alive clients; returns how many responses were not 401.
fn send_all(gateway: &Gateway, tokens: &[String], threads: usize) -> usize {
    let not_401 = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for chunk in tokens.chunks(tokens.len().div_ceil(threads)) {
            let not_401 = &not_401;
            let addr = gateway.proxy;
            scope.spawn(move || {
                let mut client = Client::new(addr);
                for token in chunk {
                    if client.status(token) != 401 {
                        not_401.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    not_401.into_inner()
}

/// The sum of every sample of one metric family.
fn metric_sum(gateway: &Gateway, family: &str) -> f64 {
    let (_, body) = gateway.admin_get("/metrics");
    body.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Growth allowed for the resident set across the flood. A per-token leak of even 1 KiB over
/// 20,000 tokens would exceed it (19.5 MiB); allocator arenas and buffers warmed up before.
const RSS_GROWTH_LIMIT_KIB: u64 = 16 * 1024;

#[test]
fn memory_stays_bounded_under_a_flood_of_distinct_invalid_tokens() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f));
    let valid = f.token("alice");
    let r = gateway.get("/ids/x", &[("Authorization", &bearer(&valid))]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    let signature = f
        .token("someone-else")
        .rsplit('.')
        .next()
        .unwrap()
        .to_owned();

    // Warm-up: the same mix, so allocator arenas, connection buffers and the bounded
    // unknown-kid memory reach their steady size before the first reading.
    let warm_up: Vec<String> = (0..4_000)
        .map(|i| invalid_token(&f, &signature, i))
        .collect();
    assert_eq!(
        send_all(&gateway, &warm_up, 4),
        0,
        "warm-up responses other than 401"
    );
    let rss_before = gateway.rss_kib();

    let flood: Vec<String> = (4_000..24_000)
        .map(|i| invalid_token(&f, &signature, i))
        .collect();
    let started = Instant::now();
    let not_401 = send_all(&gateway, &flood, 4);
    let elapsed = started.elapsed();
    let rss_after = gateway.rss_kib();
    eprintln!(
        "flood of {} invalid tokens in {elapsed:?}: VmRSS {rss_before} KiB -> {rss_after} KiB",
        flood.len()
    );
    assert_eq!(not_401, 0, "flood responses other than exactly 401");
    assert!(
        rss_after.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KIB,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );

    // Every invalid token was counted as a validation failure, none reached the upstream, and
    // the verified-token cache holds only the one valid token.
    let total = (warm_up.len() + flood.len()) as f64;
    assert_eq!(
        metric_sum(&gateway, "trustgate_validation_failures_total"),
        total
    );
    assert_eq!(
        gateway.metric(r#"trustgate_requests_total{route="ids",outcome="unauthorized"}"#),
        Some(total)
    );
    assert_eq!(gateway.metric("trustgate_token_cache_entries"), Some(1.0));
    assert_eq!(f.upstream.count(), 1);
    // Still serving valid tokens, and unknown kids cost one fetch per cooldown (30 s default).
    let r = gateway.get("/ids/x", &[("Authorization", &bearer(&f.token("bob")))]);
    assert_eq!(r.status, 200);
    assert!(f.issuer.jwks_fetches() <= 3, "{}", f.issuer.jwks_fetches());
}

/// Makes sure this process may open `want` files, raising the soft limit with `prlimit` if
/// needed. Returns the number that can be used for sockets.
fn fit_open_files(want: u64) -> u64 {
    let soft = crate::common::open_files_soft_limit();
    if soft >= want {
        return want;
    }
    let _ = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={want}:"))
        .status();
    let soft = crate::common::open_files_soft_limit();
    eprintln!("open files soft limit: {soft}");
    soft.min(want)
}

/// What happened to one burst connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Closed by the gateway without a byte.
    ClosedEmpty,
    /// Answered (a status line), then closed.
    Answered(u16),
    /// Still open after the deadline: hung.
    Hung,
}

/// How a burst connection behaves.
fn opening(i: usize, token: &str) -> Vec<u8> {
    match i % 3 {
        0 => Vec::new(),
        1 => b"GET /ids/x HTTP/1.1\r\nHost: gw".to_vec(),
        _ => format!(
            "GET /ids/burst-{i} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\
             Connection: close\r\n\r\n"
        )
        .into_bytes(),
    }
}

/// Opens `count` connections from 8 threads at once, each writing its opening; returns them.
fn burst(addr: SocketAddr, count: usize, token: &str) -> Vec<(usize, TcpStream)> {
    let opened = Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|scope| {
        for t in 0..8 {
            let opened = &opened;
            scope.spawn(move || {
                for i in (t..count).step_by(8) {
                    let Ok(mut stream) = TcpStream::connect(addr) else {
                        panic!("connect {i} failed");
                    };
                    let _ = stream.write_all(&opening(i, token));
                    opened.lock().unwrap().push((i, stream));
                }
            });
        }
    });
    opened.into_inner().unwrap()
}

/// Reads every connection until the gateway closes it or `deadline` passes.
fn fates(streams: Vec<(usize, TcpStream)>, deadline: Instant) -> Vec<(usize, Fate)> {
    let chunk = streams.len().div_ceil(8).max(1);
    let mut streams = streams;
    let mut groups = Vec::new();
    while !streams.is_empty() {
        let rest = streams.split_off(streams.len().saturating_sub(chunk));
        groups.push(rest);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .map(|group| {
                scope.spawn(move || {
                    group
                        .into_iter()
                        .map(|(i, mut stream)| {
                            let left = deadline.saturating_duration_since(Instant::now());
                            let (data, closed) =
                                read_until_closed(&mut stream, left.max(Duration::from_millis(1)));
                            let fate = if !closed {
                                Fate::Hung
                            } else if data.is_empty() {
                                Fate::ClosedEmpty
                            } else {
                                let status = String::from_utf8_lossy(&data)
                                    .split(' ')
                                    .nth(1)
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or(0);
                                Fate::Answered(status)
                            };
                            (i, fate)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// One request with a fresh connection: the status, or `None` if closed without an answer.
fn try_valid(addr: SocketAddr, token: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    let request = format!(
        "GET /ids/valid HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let (data, _) = read_until_closed(&mut stream, Duration::from_secs(5));
    String::from_utf8_lossy(&data)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
}

const LIMIT: usize = 256;

/// The gateway's descriptor count once it has stopped changing (a connection just used may still
/// be closing).
fn settled_fds(gateway: &Gateway) -> usize {
    let mut last = gateway.open_fds();
    for _ in 0..50 {
        std::thread::sleep(Duration::from_millis(100));
        let now = gateway.open_fds();
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

/// All slots are held by idle connections; a burst of more than a thousand connections (idle,
/// half a head, or a full valid request) is closed at once without a byte, nothing reaches the
/// upstream, and once the slots are free valid traffic flows and the descriptors are released.
#[test]
fn a_burst_beyond_max_connections_is_closed_at_once_and_nothing_reaches_the_upstream() {
    let usable = fit_open_files(4_096);
    let burst_size = (usable.saturating_sub(LIMIT as u64 + 200) as usize).min(1_244);
    assert!(
        burst_size >= 2 * LIMIT,
        "too few open files for the burst: {usable}"
    );
    let f = Fixture::new();
    // Long timeouts: the only thing that can close a burst connection quickly is the limit.
    let gateway = Gateway::start(
        &routes(&f)
            .server("max_connections", LIMIT)
            .server("header_read_timeout", "60s")
            .server("idle_timeout", "60s"),
    );
    let token = f.token("alice");
    assert_eq!(try_valid(gateway.proxy, &token), Some(200));
    let baseline = settled_fds(&gateway);

    let held: Vec<TcpStream> = (0..LIMIT)
        .map(|_| TcpStream::connect(gateway.proxy).unwrap())
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || gateway.open_fds()
            >= baseline + LIMIT),
        "the gateway did not accept the {LIMIT} held connections: {} fds",
        gateway.open_fds()
    );
    let upstream_before = f.upstream.count();

    let started = Instant::now();
    let streams = burst(gateway.proxy, burst_size, &token);
    eprintln!("burst of {burst_size} opened in {:?}", started.elapsed());
    // Generous: the limit closes them "at once"; anything else would wait for the 60 s timeouts.
    let fates = fates(streams, Instant::now() + Duration::from_secs(10));
    let hung = fates.iter().filter(|(_, f)| *f == Fate::Hung).count();
    let answered: Vec<_> = fates
        .iter()
        .filter(|(_, f)| matches!(f, Fate::Answered(_)))
        .collect();
    eprintln!("burst of {burst_size} closed in {:?}", started.elapsed());
    assert_eq!(fates.len(), burst_size);
    assert_eq!(
        hung, 0,
        "{hung} of {burst_size} over-limit connections hung"
    );
    assert!(
        answered.is_empty(),
        "over-limit connections answered: {answered:?}"
    );
    assert_eq!(
        f.upstream.count(),
        upstream_before,
        "a burst request reached the upstream"
    );
    assert_eq!(gateway.admin_get("/healthz").0, 200);

    // Free the slots: valid traffic flows again, and descriptors return to the baseline.
    drop(held);
    assert!(
        wait_until(Duration::from_secs(10), || try_valid(gateway.proxy, &token)
            == Some(200)),
        "no valid request succeeded after the burst"
    );
    assert!(
        wait_until(Duration::from_secs(10), || gateway.open_fds()
            <= baseline + 4),
        "fds: baseline {baseline}, now {}",
        gateway.open_fds()
    );
}

/// 1,500 connections at once against a limit of 256, a third idle, a third with half a head,
/// a third with a full valid request: every one is answered or closed (idle ones by the header
/// timeout), none hangs, a valid request gets through while the burst's sockets are still open,
/// the gateway stays alive, and its descriptors return to the baseline.
#[test]
fn a_burst_of_slow_and_idle_connections_does_not_stop_valid_traffic() {
    let usable = fit_open_files(4_096);
    let burst_size = (usable.saturating_sub(200) as usize).min(1_500);
    assert!(
        burst_size >= 3 * LIMIT,
        "too few open files for the burst: {usable}"
    );
    let f = Fixture::new();
    // A short upstream pool timeout, so that the upstream connections the served burst requests
    // opened are released too, and the descriptor count can return to its baseline.
    let gateway = Gateway::start(
        &routes(&f)
            .server("max_connections", LIMIT)
            .server("header_read_timeout", "1s")
            .server("idle_timeout", "2s")
            .edit_upstream("echo", |u| u.set("pool_idle_timeout", "500ms")),
    );
    let token = f.token("alice");
    assert_eq!(try_valid(gateway.proxy, &token), Some(200));
    let baseline = settled_fds(&gateway);

    let started = Instant::now();
    let streams = burst(gateway.proxy, burst_size, &token);
    // While every burst socket is still open on our side: valid traffic gets a slot.
    let during = Arc::new(AtomicBool::new(false));
    let fates = std::thread::scope(|scope| {
        let during = Arc::clone(&during);
        let proxy = gateway.proxy;
        let token = &token;
        let valid = scope.spawn(move || {
            let ok = wait_until(Duration::from_secs(15), || {
                try_valid(proxy, token) == Some(200)
            });
            during.store(ok, Ordering::SeqCst);
        });
        let fates = fates(streams, started + Duration::from_secs(20));
        valid.join().unwrap();
        fates
    });
    eprintln!("burst of {burst_size} settled in {:?}", started.elapsed());
    assert!(
        during.load(Ordering::SeqCst),
        "no valid request succeeded during the burst"
    );
    let hung: Vec<_> = fates.iter().filter(|(_, f)| *f == Fate::Hung).collect();
    assert!(
        hung.is_empty(),
        "{} connections hung: {:?}",
        hung.len(),
        &hung[..hung.len().min(10)]
    );
    for (i, fate) in &fates {
        match (i % 3, fate) {
            // Idle or half a head: closed without a response (over the limit, or the header
            // read timeout; hyper may answer 408 to a half-read head).
            (0 | 1, Fate::ClosedEmpty | Fate::Answered(408)) => {}
            // A full valid request: answered 200, or closed unanswered when over the limit.
            (2, Fate::ClosedEmpty | Fate::Answered(200)) => {}
            (kind, fate) => panic!("connection {i} (kind {kind}): {fate:?}"),
        }
    }
    let served = fates
        .iter()
        .filter(|(_, f)| *f == Fate::Answered(200))
        .count();
    assert!(served > 0, "no burst request was served");
    assert_eq!(gateway.admin_get("/healthz").0, 200);
    assert_eq!(try_valid(gateway.proxy, &token), Some(200));
    assert!(
        wait_until(Duration::from_secs(10), || gateway.open_fds()
            <= baseline + 4),
        "fds: baseline {baseline}, now {}",
        gateway.open_fds()
    );
}

/// A keep-alive `GET /ids/x` with `token` on `stream`: its status, or `None` when the gateway
/// closed the connection without a byte.
fn status_on(stream: &mut TcpStream, token: &str) -> Option<u16> {
    let request =
        format!("GET /ids/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    // Waits for the first byte, or the end of the connection.
    match stream.peek(&mut [0u8; 1]) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(crate::common::read_response(stream).status),
    }
}

/// A connection to `addr` from the loopback address `from` (all of 127.0.0.0/8 is this host).
fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let from: SocketAddr = format!("{from}:0").parse().unwrap();
    let stream = crate::common::rt().block_on(async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(from).unwrap();
        socket.connect(addr).await.unwrap().into_std().unwrap()
    });
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

/// `max_connections_per_client`: one client holding its share cannot open more (closed at once,
/// without a byte, counted), another client still can, and a slot given back is taken again. A
/// peer in `trusted_proxies` (a load balancer carrying many clients) is not counted.
#[test]
fn one_client_cannot_hold_more_than_max_connections_per_client() {
    let f = Fixture::new();
    let token = f.token("alice");
    let config = routes(&f)
        .server("max_connections_per_client", 2)
        .server("idle_timeout", "60s")
        .server("header_read_timeout", "60s");
    let gateway = Gateway::start(&config);
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = connect_from("127.0.0.1", gateway.proxy);
            assert_eq!(status_on(&mut stream, &token), Some(200));
            stream
        })
        .collect();
    assert_eq!(gateway.metric("trustgate_connections_open"), Some(2.0));

    let upstream_before = f.upstream.count();
    let mut third = connect_from("127.0.0.1", gateway.proxy);
    assert_eq!(status_on(&mut third, &token), None);
    let (rest, _) = read_until_closed(&mut third, Duration::from_secs(5));
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(f.upstream.count(), upstream_before);
    assert_eq!(
        gateway
            .metric("trustgate_connections_refused_total{reason=\"max_connections_per_client\"}"),
        Some(1.0)
    );

    // Another client is counted apart.
    let mut other = connect_from("127.0.0.2", gateway.proxy);
    assert_eq!(status_on(&mut other, &token), Some(200));
    assert_eq!(gateway.metric("trustgate_connections_open"), Some(3.0));

    // A held connection closes: its client gets the slot back.
    drop(held.pop());
    assert!(wait_until(Duration::from_secs(5), || gateway
        .metric("trustgate_connections_open")
        == Some(2.0)));
    let mut again = connect_from("127.0.0.1", gateway.proxy);
    assert_eq!(status_on(&mut again, &token), Some(200));
    // The held ones still work.
    assert_eq!(status_on(&mut held[0], &token), Some(200));
    drop((held, other, again));

    // A trusted proxy's connections are not counted against it.
    let gateway =
        Gateway::start(&config.server("trusted_proxies", serde_json::json!(["127.0.0.1"])));
    let mut streams: Vec<TcpStream> = (0..4)
        .map(|_| connect_from("127.0.0.1", gateway.proxy))
        .collect();
    for stream in &mut streams {
        assert_eq!(status_on(stream, &token), Some(200));
    }
    assert_eq!(
        gateway
            .metric("trustgate_connections_refused_total{reason=\"max_connections_per_client\"}"),
        None
    );
}
