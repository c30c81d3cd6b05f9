//! An upstream that records the raw bytes of every request it receives and answers with a JSON
//! description of it. It parses HTTP/1.1 by hand, so what it records is exactly what crossed the
//! wire: header names in their original case, duplicates, order and body bytes.
//!
//! Requests with `Upgrade` are answered `101` and then echo bytes back. Request headers steer the
//! answer, for fault tests:
//! - `x-echo-delay-ms: N` delays it;
//! - `x-echo-close: 1` answers with `Connection: close`, then closes the connection;
//! - `x-echo-hangup: 1` answers as if the connection stayed open, then closes it;
//! - `x-echo-stall-body: 1` sends the head and half the body, then nothing more;
//! - `x-echo-no-upgrade: 1` answers a request with `Upgrade` like any other (200, no `101`), and
//!   the connection stays HTTP;
//! - `x-echo-trailers: 1` answers with a chunked body, declares `Trailer: X-Echo-Trailer,
//!   Keep-Alive` and sends both trailer fields after it;
//! - `x-echo-framing: double-length` answers with its `Content-Length` field twice (equal values),
//!   `x-echo-framing: length-list` with one field `N, N`, and `x-echo-framing: chunked-and-length`
//!   with a chunked body and a `Content-Length: 1` that disagrees with it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The request line and header block, byte for byte (up to and including the blank line).
    pub raw_head: Vec<u8>,
    pub method: String,
    pub target: String,
    /// Header names as sent (original case), in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The trailer fields of a chunked body, names as sent, in order.
    pub trailers: Vec<(String, String)>,
    /// Which TCP connection it came on: connections are numbered from 1 in the order accepted.
    pub connection: u64,
}

/// Every value of the header `name` among `headers` (names as sent), compared
/// case-insensitively, in order.
pub fn values_of<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .collect()
}

impl RecordedRequest {
    /// Every value of the header `name`, compared case-insensitively.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        values_of(&self.headers, name)
    }

    /// The only value of `name`; panics if it appears more than once.
    pub fn header(&self, name: &str) -> Option<&str> {
        let values = self.header_values(name);
        assert!(
            values.len() <= 1,
            "header {name} appears {} times",
            values.len()
        );
        values.first().copied()
    }

    /// Header names normalised the way CGI does (`X-User_Id` and `x-user-id` both become
    /// `HTTP_X_USER_ID`), for sanitization checks.
    pub fn cgi_names(&self) -> Vec<String> {
        self.headers
            .iter()
            .map(|(n, _)| format!("HTTP_{}", n.to_ascii_uppercase().replace('-', "_")))
            .collect()
    }
}

pub struct EchoUpstream {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<RecordedRequest>>>,
    /// Numbers of the connections that have ended (see [`RecordedRequest::connection`]).
    ended: Arc<Mutex<Vec<u64>>>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for EchoUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&received);
        let ended = Arc::new(Mutex::new(Vec::new()));
        let ended_sink = Arc::clone(&ended);
        let accepted_count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::clone(&accepted_count);
        let task = tokio::spawn(async move {
            let mut accepted = 0;
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepted += 1;
                counter.store(accepted, std::sync::atomic::Ordering::SeqCst);
                let sink = Arc::clone(&sink);
                let ended = Arc::clone(&ended_sink);
                tokio::spawn(async move {
                    let _ = serve(stream, accepted, sink).await;
                    ended.lock().unwrap().push(accepted);
                });
            }
        });
        Self {
            addr,
            received,
            ended,
            accepted: accepted_count,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Option<RecordedRequest> {
        self.received.lock().unwrap().last().cloned()
    }

    /// Whether connection `number` has ended (closed by the gateway, or by this upstream).
    pub fn connection_ended(&self, number: u64) -> bool {
        self.ended.lock().unwrap().contains(&number)
    }

    /// How many connections the upstream has accepted.
    pub fn connections(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    pub fn clear(&self) {
        self.received.lock().unwrap().clear();
    }
}

async fn serve(
    mut stream: TcpStream,
    connection: u64,
    sink: Arc<Mutex<Vec<RecordedRequest>>>,
) -> std::io::Result<()> {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let head_end = loop {
            if let Some(pos) = find(&buffer, b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 8192];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let raw_head: Vec<u8> = buffer.drain(..head_end).collect();
        let text = String::from_utf8_lossy(&raw_head).to_string();
        let mut lines = text.split("\r\n");
        let request_line = lines.next().unwrap_or_default().to_owned();
        let mut parts = request_line.split(' ');
        let method = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| {
                l.split_once(':')
                    .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
            })
            .collect();
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        let mut trailers = Vec::new();
        if get("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            loop {
                let line_end = read_until(&mut stream, &mut buffer, b"\r\n").await?;
                let size_line: Vec<u8> = buffer.drain(..line_end).collect();
                let size_text = String::from_utf8_lossy(&size_line);
                let size =
                    usize::from_str_radix(size_text.trim().split(';').next().unwrap_or("0"), 16)
                        .unwrap_or(0);
                if size == 0 {
                    // Trailer lines up to the blank line that ends the body.
                    loop {
                        let end = read_until(&mut stream, &mut buffer, b"\r\n").await?;
                        let line: Vec<u8> = buffer.drain(..end).collect();
                        let line = String::from_utf8_lossy(&line[..end - 2]).into_owned();
                        if line.is_empty() {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            trailers.push((name.to_owned(), value.trim().to_owned()));
                        }
                    }
                    break;
                }
                fill(&mut stream, &mut buffer, size + 2).await?;
                body.extend(buffer.drain(..size));
                buffer.drain(..2);
            }
        } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
            fill(&mut stream, &mut buffer, len).await?;
            body.extend(buffer.drain(..len));
        }
        let record = RecordedRequest {
            raw_head,
            method: method.clone(),
            target: target.clone(),
            headers: headers.clone(),
            body: body.clone(),
            trailers,
            connection,
        };
        sink.lock().unwrap().push(record);

        if let Some(ms) = get("x-echo-delay-ms").and_then(|v| v.parse::<u64>().ok()) {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if get("upgrade").is_some() && get("x-echo-no-upgrade").is_none() {
            stream
                .write_all(b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: echo\r\n\r\n")
                .await?;
            if !buffer.is_empty() {
                stream.write_all(&buffer).await?;
            }
            let (mut reader, mut writer) = stream.into_split();
            tokio::io::copy(&mut reader, &mut writer).await?;
            return Ok(());
        }
        let description = json!({
            "method": method,
            "target": target,
            "headers": headers,
            "body_len": body.len(),
        })
        .to_string();
        if get("x-echo-stall-body").is_some() {
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf.")
                .await?;
            std::future::pending::<()>().await;
        }
        if get("x-echo-trailers").is_some() {
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
                 Trailer: X-Echo-Trailer, Keep-Alive\r\n\r\n{:x}\r\n{description}\r\n0\r\n\
                 X-Echo-Trailer: yes\r\nKeep-Alive: timeout=5\r\n\r\n",
                description.len(),
            );
            stream.write_all(response.as_bytes()).await?;
            continue;
        }
        let n = description.len();
        let framed = match get("x-echo-framing").as_deref() {
            Some("double-length") => Some(format!(
                "Content-Length: {n}\r\nContent-Length: {n}\r\n\r\n{description}"
            )),
            Some("length-list") => Some(format!("Content-Length: {n}, {n}\r\n\r\n{description}")),
            Some("chunked-and-length") => Some(format!(
                "Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n{n:x}\r\n{description}\r\n0\r\n\r\n"
            )),
            _ => None,
        };
        if let Some(framed) = framed {
            let response = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framed}");
            stream.write_all(response.as_bytes()).await?;
            continue;
        }
        let close = get("x-echo-close").is_some();
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{}",
            description.len(),
            if close { "Connection: close\r\n" } else { "" },
            description
        );
        stream.write_all(response.as_bytes()).await?;
        if close || get("x-echo-hangup").is_some() {
            return Ok(());
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

async fn read_until(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
    needle: &[u8],
) -> std::io::Result<usize> {
    loop {
        if let Some(pos) = find(buffer, needle) {
            return Ok(pos + needle.len());
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

async fn fill(stream: &mut TcpStream, buffer: &mut Vec<u8>, len: usize) -> std::io::Result<()> {
    while buffer.len() < len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(())
}
