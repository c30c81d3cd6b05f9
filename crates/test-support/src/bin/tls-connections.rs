//! New TLS connections per second against a gateway: every connection makes one request and
//! closes, so each one pays a handshake. For `bench/peers/run.sh`.
//!
//! `tls-connections --addr 127.0.0.1:8443 --ca cert.pem --secs 5 --conns 16 [--resume]
//! [--warmup 1] [--header 'Authorization: Bearer …']`
//!
//! Without `--resume` the client keeps no sessions, so every handshake is a full one (certificate,
//! signature, key exchange). With it, each of the `--conns` clients keeps its own sessions in
//! memory, as a real client does, and offers them again: after a client's first connection the
//! server may resume. Prints one line:
//! `connections=N secs=S per_sec=R resumed=K failed=F`, where `resumed` counts the handshakes the
//! server did resume and `failed` the connections that did not end in a 200 answer.
//!
//! The client runs on one thread (tokio's current-thread runtime) with rustls on aws-lc-rs: one
//! core of client can then be compared with one core of server, and `openssl s_time`, which
//! opens one connection at a time, would measure the round trips rather than the server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr,
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustls::client::Resumption;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Args {
    addr: SocketAddr,
    ca: String,
    secs: f64,
    warmup: f64,
    conns: usize,
    resume: bool,
    headers: Vec<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        addr: "127.0.0.1:8443".parse().unwrap(),
        ca: String::new(),
        secs: 5.0,
        warmup: 1.0,
        conns: 16,
        resume: false,
        headers: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value().parse().expect("--addr host:port"),
            "--ca" => args.ca = value(),
            "--secs" => args.secs = value().parse().expect("--secs"),
            "--warmup" => args.warmup = value().parse().expect("--warmup"),
            "--conns" => args.conns = value().parse().expect("--conns"),
            "--header" => args.headers.push(value()),
            "--resume" => args.resume = true,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!args.ca.is_empty(), "--ca is required");
    args
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
}

/// One connection: handshake, one request with `Connection: close`, the answer read to the end.
async fn one(
    connector: &TlsConnector,
    addr: SocketAddr,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<bool, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(addr.ip().into());
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    tls.write_all(request).await.map_err(|e| e.to_string())?;
    buf.clear();
    // A peer may close without close_notify after `Connection: close`: what was read counts.
    let _ = tls.read_to_end(buf).await;
    let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    if buf.starts_with(b"HTTP/1.1 200 ") {
        Ok(resumed)
    } else {
        Err(format!(
            "answer: {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(60)])
        ))
    }
}

fn main() {
    let args = parse_args();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&args.ca).expect("--ca file") {
        roots
            .add(cert.expect("--ca PEM"))
            .expect("--ca certificate");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // One connector per client: clients sharing one session cache would take each other's
    // tickets (rustls keeps 8 per server), and some would find none and start over.
    let connector = move || {
        let mut config = config.clone();
        config.resumption = if args.resume {
            Resumption::in_memory_sessions(16)
        } else {
            Resumption::disabled()
        };
        TlsConnector::from(Arc::new(config))
    };
    let mut request = format!("GET / HTTP/1.1\r\nHost: {}\r\n", args.addr);
    for header in &args.headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    let request: Arc<[u8]> = request.into_bytes().into();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (counts, elapsed) = runtime.block_on(async move {
        let counts = Arc::new(Counts::default());
        let started = Instant::now();
        let measure_from = started + Duration::from_secs_f64(args.warmup);
        let end = measure_from + Duration::from_secs_f64(args.secs);
        let mut tasks = Vec::new();
        for _ in 0..args.conns {
            let (connector, request, counts) =
                (connector(), Arc::clone(&request), Arc::clone(&counts));
            tasks.push(tokio::spawn(async move {
                let mut buf = Vec::with_capacity(4096);
                let mut last_error = None;
                loop {
                    let result = one(&connector, args.addr, &request, &mut buf).await;
                    let now = Instant::now();
                    if now >= end {
                        break;
                    }
                    if now < measure_from {
                        continue;
                    }
                    match result {
                        Ok(resumed) => {
                            counts.done.fetch_add(1, Ordering::Relaxed);
                            if resumed {
                                counts.resumed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(err) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            last_error = Some(err);
                        }
                    }
                }
                last_error
            }));
        }
        for task in tasks {
            if let Some(err) = task.await.unwrap() {
                eprintln!("tls-connections: a connection failed: {err}");
            }
        }
        (counts, Instant::now() - measure_from)
    });
    let done = counts.done.load(Ordering::Relaxed);
    let secs = elapsed.as_secs_f64().min(args.secs);
    println!(
        "connections={done} secs={secs:.2} per_sec={:.0} resumed={} failed={}",
        done as f64 / secs,
        counts.resumed.load(Ordering::Relaxed),
        counts.failed.load(Ordering::Relaxed)
    );
}
