//! Harness for end-to-end tests: starts the real `trustgate` binary with a config file, learns
//! its bound addresses from its log, and talks to it over real sockets.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod config;
pub mod otlp;

pub use config::{Config, Issuer, Pattern, Route, Upstream};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "trustgate-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The running gateway process.
pub struct Gateway {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The decision endpoint, with a `[forward_auth]` section.
    pub decisions: Option<SocketAddr>,
    /// Envoy's gRPC ext_authz, with `forward_auth.grpc_listen`.
    pub grpc: Option<SocketAddr>,
    pub config_path: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
    dir: TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `trustgate serve` with `config` (built with both listeners on port 0).
    pub fn start(config: &Config) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &Config, env: &[(&str, &str)]) -> Self {
        Self::start_in(TempDir::new(), config, env)
    }

    /// Starts with a config in `dir` (so the test can put certificates beside it).
    pub fn start_in(dir: TempDir, config: &Config, env: &[(&str, &str)]) -> Self {
        let config_path = dir.write("trustgate.toml", &config.to_toml());
        let mut command = Command::new(env!("CARGO_BIN_EXE_trustgate"));
        command
            .arg("serve")
            .arg("-c")
            .arg(&config_path)
            .env("RUST_LOG", "info,trustgate=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start trustgate");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("trustgate listening") {
                    let _ = tx.send(line.clone());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "trustgate did not start; log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        let proxy = json["proxy"].as_str().unwrap().parse().unwrap();
        let admin = json["admin"].as_str().unwrap().parse().unwrap();
        let decisions = json["decisions"].as_str().map(|a| a.parse().unwrap());
        let grpc = json["grpc"].as_str().map(|a| a.parse().unwrap());
        Self {
            child,
            proxy,
            admin,
            decisions,
            grpc,
            config_path,
            logs,
            dir,
        }
    }

    /// Replaces the config file atomically (write, then rename).
    pub fn rewrite_config(&self, config: &Config) {
        let tmp = self.dir.write("trustgate.toml.new", &config.to_toml());
        std::fs::rename(tmp, &self.config_path).unwrap();
    }

    /// Whether the log has a line containing `needle`, waiting up to `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.log_text().contains(needle))
    }

    /// Lines of the log that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A plain TCP connection to the proxy listener, with a read timeout.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.proxy).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Raw bytes to the proxy listener; reads the response until close or complete.
    pub fn raw(&self, request: &[u8]) -> RawResponse {
        raw(self.proxy, request)
    }

    /// The value of one sample line of `/metrics` (`name{labels}` exactly as exposed).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let (_, body) = self.admin_get("/metrics");
        body.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    pub fn log_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Sends SIGHUP.
    pub fn sighup(&self) {
        signal(self.child.id(), "HUP");
    }

    pub fn sigterm(&self) {
        signal(self.child.id(), "TERM");
    }

    /// A GET to the admin listener: (status, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        let response = raw(
            self.admin,
            format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        (response.status, response.body_text())
    }

    /// Sends a request with the given extra header lines; `Connection: close` is added.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        let mut text = format!("{method} {path} HTTP/1.1\r\nHost: gateway.test\r\n");
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        text.push_str("Connection: close\r\n\r\n");
        raw(self.proxy, text.as_bytes())
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> RawResponse {
        self.request("GET", path, headers)
    }
}

/// Polls `check` every 10 ms until it is true or `timeout` passes; returns the last result.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads from `stream` until the peer closes it. Returns the bytes read and whether it closed
/// (EOF or reset) before `timeout`.
pub fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + timeout;
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return (data, false);
        }
        stream.set_read_timeout(Some(left)).unwrap();
        match stream.read(&mut chunk) {
            Ok(0) => return (data, true),
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return (data, false);
            }
            Err(_) => return (data, true),
        }
    }
}

/// Runs the `trustgate` binary with `args` (for `check` and `explain`).
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run trustgate")
}

/// [`cli`] with `stdin` written to its standard input (then closed).
pub fn cli_with_stdin(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trustgate");
    // Dropped after the write: the child sees the end of its input.
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().expect("run trustgate")
}

/// A bare HTTP/1 upstream: on each connection (a thread of its own), reads every request head
/// (no body) and answers it with `response`, as fast as the gateway reads. Its threads live as
/// long as the test process.
pub fn canned_upstream(response: Vec<u8>) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let response = Arc::new(response);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let response = Arc::clone(&response);
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                loop {
                    head.clear();
                    while !head.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    if stream.write_all(&response).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An address whose connects are refused, for an upstream or issuer that is down: port 1
/// (tcpmux), which nothing here listens on and which lies below the ephemeral range every other
/// test's listener is given. A port from [`closed_port`] could be taken by a test running
/// alongside between its release and the connect (one was: a JWKS server answered 404).
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

/// A local port with nothing listening on it, free to listen on.
pub fn closed_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw: Vec<u8>,
}

impl RawResponse {
    /// Every value of the header `name`, compared case-insensitively, in order.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        test_support::echo::values_of(&self.headers, name)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body_text()))
    }
}

/// Writes `request` and reads until the peer closes (or a complete Content-Length body arrives).
pub fn raw(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(request).unwrap();
    read_response(&mut stream)
}

pub fn read_response(stream: &mut TcpStream) -> RawResponse {
    let mut data = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(response) = parse_complete(&data) {
            return response;
        }
        if Instant::now() > deadline {
            panic!(
                "timed out reading a response; got {:?}",
                String::from_utf8_lossy(&data)
            );
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(err) => panic!(
                "read failed: {err}; got {:?}",
                String::from_utf8_lossy(&data)
            ),
        }
    }
    parse_complete(&data)
        .or_else(|| {
            parse_head(&data).map(|(mut r, end)| {
                r.body = data[end..].to_vec();
                r
            })
        })
        .unwrap_or_else(|| panic!("no HTTP response; got {:?}", String::from_utf8_lossy(&data)))
}

fn parse_head(data: &[u8]) -> Option<(RawResponse, usize)> {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&data[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        })
        .collect();
    Some((
        RawResponse {
            status,
            headers,
            body: Vec::new(),
            raw: data.to_vec(),
        },
        end,
    ))
}

fn parse_complete(data: &[u8]) -> Option<RawResponse> {
    let (mut response, end) = parse_head(data)?;
    if let Some(len) = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        if data.len() >= end + len {
            response.body = data[end..end + len].to_vec();
            return Some(response);
        }
        return None;
    }
    if response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        let mut body = Vec::new();
        let mut rest = &data[end..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16)
                    .ok()?;
            rest = &rest[line_end + 2..];
            if size == 0 {
                response.body = body;
                return Some(response);
            }
            if rest.len() < size + 2 {
                return None;
            }
            body.extend_from_slice(&rest[..size]);
            rest = &rest[size + 2..];
        }
    }
    if response.status == 101 || response.status == 204 || response.status == 304 {
        return Some(response);
    }
    None
}

/// A runtime for in-process fixtures (issuer, echo upstream), so tests can use blocking sockets.
pub fn rt() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub fn issuer() -> test_support::TestIssuer {
    rt().block_on(test_support::TestIssuer::start())
}

pub fn echo() -> test_support::EchoUpstream {
    rt().block_on(test_support::EchoUpstream::start())
}

/// A running issuer with one ES256 key, an echo upstream, and config entries for both.
pub struct Fixture {
    pub issuer: test_support::TestIssuer,
    pub key: test_support::TestKey,
    pub upstream: test_support::EchoUpstream,
    pub iss: String,
}

impl Fixture {
    pub fn new() -> Self {
        let issuer = issuer();
        let key = test_support::TestKey::es256("k1");
        issuer.set_keys(&[&key]);
        let iss = issuer.url();
        Self {
            issuer,
            key,
            upstream: echo(),
            iss,
        }
    }

    /// The issuer as configured: id `idp`, audience `api`, keys by discovery.
    pub fn issuer_config(&self) -> Issuer {
        Issuer::discovery("idp", &self.iss).audiences(&["api"])
    }

    /// The echo upstream as configured: id `echo`.
    pub fn upstream_config(&self) -> Upstream {
        Upstream::new("echo", &self.upstream.url())
    }

    /// A config with [`Self::issuer_config`] and [`Self::upstream_config`] and no routes.
    pub fn config(&self) -> Config {
        Config::new()
            .issuer(self.issuer_config())
            .upstream(self.upstream_config())
    }

    /// [`Self::config`] with a public route at `/public` and an identity-headers route at
    /// `/admin`, both to `echo`.
    pub fn public_and_admin(&self) -> Config {
        self.config()
            .route(Route::new("public", "/public", "echo", Pattern::Public))
            .route(Route::new(
                "admin",
                "/admin",
                "echo",
                Pattern::IdentityHeaders,
            ))
    }

    /// A valid token for `sub`, with `extra` claims merged in.
    pub fn token_with(&self, sub: &str, extra: serde_json::Value) -> String {
        let mut claims = test_support::claims(&self.iss, "api", sub);
        if let serde_json::Value::Object(map) = extra {
            for (k, v) in map {
                claims[k] = v;
            }
        }
        self.key.sign(&claims)
    }

    pub fn token(&self, sub: &str) -> String {
        self.token_with(sub, serde_json::json!({}))
    }

    /// A token that expired an hour ago (well past the default leeway).
    pub fn expired_token(&self, sub: &str) -> String {
        let now = test_support::now_secs();
        self.token_with(
            sub,
            serde_json::json!({"iat": now - 7200, "nbf": now - 7200, "exp": now - 3600}),
        )
    }
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A JWT's payload as JSON, decoded without any check.
pub fn jwt_payload(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .unwrap(),
    )
    .unwrap()
}

/// Process-level views of the running gateway, read from `/proc` (Linux only).
impl Gateway {
    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in:\n{status}"))
    }

    /// Number of open file descriptors (entries of `/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }
}

/// The soft limit on open files of this (test) process, from `/proc/self/limits`.
pub fn open_files_soft_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// A keep-alive HTTP/1.1 client that reconnects when the gateway closes.
pub struct Client {
    addr: SocketAddr,
    stream: Option<TcpStream>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, stream: None }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// The status of `GET /ids/x` with `token`.
    pub fn status(&mut self, token: &str) -> u16 {
        let request = format!(
            "GET /ids/x HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        let mut stream = self.stream.take().unwrap_or_else(|| self.connect());
        if stream.write_all(request.as_bytes()).is_err() {
            stream = self.connect();
            stream.write_all(request.as_bytes()).unwrap();
        }
        let response = read_response(&mut stream);
        if !response
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.stream = Some(stream);
        }
        response.status
    }
}
