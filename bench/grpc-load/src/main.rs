//! `grpc-load`: unary gRPC calls as fast as a fixed number of in-flight calls allows, for a
//! fixed time, over a fixed number of HTTP/2 connections; the bearer token of each call taken in
//! turn from a file (one token: the same-token workload; 2,000: the cache-off one). Prints one
//! JSON line: calls per second, latency percentiles, and every non-OK status by code, so a run
//! that measured refusals instead of calls is visible.
//!
//! The message is `trustgate.echo.v1.EchoRequest { message }` of examples/grpc-echo, written here
//! with prost's derive so the tool needs no generated code.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

#[derive(Clone, PartialEq, prost::Message)]
struct EchoRequest {
    #[prost(string, tag = "1")]
    message: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EchoReply {
    #[prost(string, tag = "1")]
    message: String,
}

#[derive(Debug, Parser)]
struct Args {
    /// `http://host:port` (h2c with prior knowledge).
    #[arg(long)]
    target: String,
    /// A file of bearer tokens, one per line, used in turn; none sends no Authorization.
    #[arg(long)]
    tokens: Option<std::path::PathBuf>,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight on each connection.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Seconds of calls before measuring, discarded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The method called.
    #[arg(long, default_value = "/trustgate.echo.v1.Echo/Unary")]
    method: String,
}

/// What one worker saw while measuring.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    failures: BTreeMap<String, u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tokens: Vec<MetadataValue<tonic::metadata::Ascii>> = match &args.tokens {
        Some(path) => std::fs::read_to_string(path)?
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| format!("Bearer {}", line.trim()).parse())
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&args, Arc::new(tokens)))?;
    println!("{report}");
    Ok(())
}

async fn run(
    args: &Args,
    tokens: Arc<Vec<MetadataValue<tonic::metadata::Ascii>>>,
) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let method = PathAndQuery::try_from(args.method.as_str())?;
    let warmup_end = Instant::now() + Duration::from_secs_f64(args.warmup);
    let end = warmup_end + Duration::from_secs_f64(args.seconds);
    let mut workers = Vec::new();
    for connection in 0..args.connections {
        // One endpoint per connection: tonic's Channel is one HTTP/2 connection.
        let channel = Endpoint::from_shared(args.target.clone())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        for stream in 0..args.streams {
            let worker = Worker {
                channel: channel.clone(),
                method: method.clone(),
                tokens: Arc::clone(&tokens),
                // Workers start at different tokens, so that at any moment they send different ones.
                next: connection * args.streams + stream,
                stride: args.connections * args.streams,
            };
            workers.push(tokio::spawn(worker.run(warmup_end, end)));
        }
    }
    let mut all = Tally::default();
    for worker in workers {
        let tally = worker.await?;
        all.latencies_us.extend(tally.latencies_us);
        for (code, count) in tally.failures {
            *all.failures.entry(code).or_default() += count;
        }
    }
    all.latencies_us.sort_unstable();
    let quantile = |q: f64| -> u32 {
        let n = all.latencies_us.len();
        if n == 0 {
            return 0;
        }
        let index = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
        all.latencies_us.get(index).copied().unwrap_or(0)
    };
    Ok(serde_json::json!({
        "ok": all.latencies_us.len(),
        "rps": all.latencies_us.len() as f64 / args.seconds,
        "p50_us": quantile(0.50),
        "p99_us": quantile(0.99),
        "failures": all.failures,
    }))
}

struct Worker {
    channel: Channel,
    method: PathAndQuery,
    tokens: Arc<Vec<MetadataValue<tonic::metadata::Ascii>>>,
    next: usize,
    stride: usize,
}

impl Worker {
    async fn run(mut self, warmup_end: Instant, end: Instant) -> Tally {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        let mut tally = Tally::default();
        loop {
            let started = Instant::now();
            if started >= end {
                return tally;
            }
            let mut request = tonic::Request::new(EchoRequest {
                message: "bench".to_owned(),
            });
            if !self.tokens.is_empty() {
                let token = &self.tokens[self.next % self.tokens.len()];
                self.next = self.next.wrapping_add(self.stride);
                request
                    .metadata_mut()
                    .insert("authorization", token.clone());
            }
            let result = match grpc.ready().await {
                Ok(()) => {
                    let codec = tonic_prost::ProstCodec::<EchoRequest, EchoReply>::default();
                    grpc.unary(request, self.method.clone(), codec)
                        .await
                        .map(|_| ())
                }
                Err(err) => Err(tonic::Status::unavailable(err.to_string())),
            };
            if started < warmup_end {
                continue;
            }
            match result {
                Ok(()) => {
                    let micros = started.elapsed().as_micros();
                    tally
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                }
                Err(status) => {
                    *tally
                        .failures
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                }
            }
        }
    }
}
