//! An HTTP/2 upstream (h2c with prior knowledge, or TLS with ALPN `h2`) that records every
//! request's headers, `:authority`, body size and trailers, and answers like a gRPC server would:
//! the body echoed back, then trailers (`grpc-status: 0` and `x-echo-trailer: yes`).
//!
//! Request headers steer the answer: `x-echo-delay-ms: N` waits N ms after the body has been read
//! before answering (a slow method).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// One request as the HTTP/2 upstream received it.
#[derive(Debug, Clone)]
pub struct H2Request {
    pub method: String,
    /// The path and query.
    pub path: String,
    pub authority: Option<String>,
    pub version: http::Version,
    pub headers: Vec<(String, String)>,
    /// `None` when the request ended without trailers.
    pub trailers: Option<Vec<(String, String)>>,
    pub body_len: usize,
    /// Which connection it came on: 1 for the first accepted, 2 for the next, and so on.
    pub connection: usize,
}

impl H2Request {
    /// Every value of `name` (lower case) among the headers.
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        pairs_named(&self.headers, name)
    }

    /// Every value of `name` (lower case) among the trailers.
    pub fn trailer_values(&self, name: &str) -> Vec<&str> {
        self.trailers
            .as_ref()
            .map(|t| pairs_named(t, name))
            .unwrap_or_default()
    }
}

fn pairs_named<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn pairs(map: &HeaderMap) -> Vec<(String, String)> {
    map.iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<H2Request>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    connections: AtomicUsize,
}

pub struct H2Echo {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for H2Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl H2Echo {
    /// h2c with prior knowledge.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// TLS with ALPN `h2`, with the certificate chain and key given as PEM.
    pub async fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> Self {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let connection = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
                let state = Arc::clone(&shared);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move {
                            Ok::<_, std::convert::Infallible>(answer(state, req, connection).await)
                        }
                    });
                    let builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                    }
                });
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<H2Request> {
        self.state.received.lock().unwrap().clone()
    }

    pub fn last(&self) -> Option<H2Request> {
        self.state.received.lock().unwrap().last().cloned()
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    /// How many connections were accepted.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }
}

/// A body of one data frame, then trailers: the echo's answers, and a test client's requests.
pub struct DataThenTrailers {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl DataThenTrailers {
    pub fn new(data: impl Into<Bytes>, trailers: Option<HeaderMap>) -> Self {
        Self {
            data: Some(data.into()),
            trailers,
        }
    }
}

impl http_body::Body for DataThenTrailers {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match self.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        std::task::Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }
}

async fn answer(
    state: Arc<State>,
    req: Request<Incoming>,
    connection: usize,
) -> Response<DataThenTrailers> {
    let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    state.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let (parts, mut body) = req.into_parts();
    let mut data = Vec::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        match frame.into_data() {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(pairs(&t));
                }
            }
        }
    }
    let delay = parts
        .headers
        .get("x-echo-delay-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    state.received.lock().unwrap().push(H2Request {
        method: parts.method.to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        authority: parts.uri.authority().map(|a| a.as_str().to_owned()),
        version: parts.version,
        headers: pairs(&parts.headers),
        trailers,
        body_len: data.len(),
        connection,
    });
    state.in_flight.fetch_sub(1, Ordering::SeqCst);
    let mut end = HeaderMap::new();
    end.insert("grpc-status", HeaderValue::from_static("0"));
    end.insert("x-echo-trailer", HeaderValue::from_static("yes"));
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Response::builder()
        .header(http::header::CONTENT_TYPE, content_type)
        .body(DataThenTrailers::new(data, Some(end)))
        .unwrap()
}
