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
    pub config_path: PathBuf,
    pub logs: Arc<Mutex<Vec<String>>>,
    _dir: TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    /// Starts `trustgate serve` with `config` (listen addresses are forced to port 0).
    pub fn start(config: &str) -> Self {
        Self::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new();
        let config = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[admin]\nlisten = \"127.0.0.1:0\"\n\n{config}"
        );
        let config_path = dir.write("trustgate.toml", &config);
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
        Self {
            child,
            proxy,
            admin,
            config_path,
            logs,
            _dir: dir,
        }
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
