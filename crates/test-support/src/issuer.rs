//! A real OIDC-style issuer on 127.0.0.1: discovery, a JWKS whose content, status, latency and
//! cache headers tests can change at any time, and fetch counters.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::keys::TestKey;

/// How the JWKS endpoint answers.
#[derive(Debug, Clone)]
pub enum Behavior {
    /// 200 with the current JWKS.
    Normal,
    /// This status with an empty body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// 200 with this body.
    Body(String),
    /// Close the connection without answering.
    Reset,
    /// 302 to this location.
    Redirect(String),
    /// 200 with the head (including a `Content-Length` for the whole JWKS) and the first half of
    /// the current JWKS, then nothing more: the body never completes and the connection stays open.
    Stall,
    /// 200 with the current JWKS, still valid JSON, padded with a `"padding"` member so that the
    /// body is exactly this many bytes (or the JWKS itself, if that is longer).
    Padded(usize),
}

struct State {
    jwks: Mutex<Value>,
    behavior: Mutex<Behavior>,
    cache_control: Mutex<Option<String>>,
    discovery_issuer: Mutex<Option<String>>,
    /// A second JWKS at another path, which discovery then names as its `jwks_uri`; the JWKS at
    /// `/jwks.json` keeps answering (an issuer that moved its keys and left the old URL up).
    moved_jwks: Mutex<Option<(String, Value)>>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    url: String,
}

/// A running issuer. Dropping it stops the listener.
pub struct TestIssuer {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener)
    }

    /// Starts on a fixed address (for restart-at-the-same-URL tests).
    pub async fn start_on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        Self::serve(listener)
    }

    fn serve(listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            jwks: Mutex::new(json!({"keys":[]})),
            behavior: Mutex::new(Behavior::Normal),
            cache_control: Mutex::new(None),
            discovery_issuer: Mutex::new(None),
            moved_jwks: Mutex::new(None),
            jwks_fetches: AtomicUsize::new(0),
            discovery_fetches: AtomicUsize::new(0),
            url: format!("http://{addr}"),
        });
        let serve_state = Arc::clone(&state);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&serve_state);
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve_request(Arc::clone(&state), req));
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state, task }
    }

    /// The issuer identifier, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.state.url.clone()
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.state.url)
    }

    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    pub fn set_keys(&self, keys: &[&TestKey]) {
        self.set_jwks(json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()}));
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        *self.state.behavior.lock().unwrap() = behavior;
    }

    pub fn set_cache_control(&self, value: Option<&str>) {
        *self.state.cache_control.lock().unwrap() = value.map(str::to_owned);
    }

    /// Makes discovery declare another `issuer`.
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *self.state.discovery_issuer.lock().unwrap() = issuer.map(str::to_owned);
    }

    /// Moves the keys: discovery names `path` as the `jwks_uri` from now on, which serves `keys`
    /// (counted in [`TestIssuer::jwks_fetches`]); `/jwks.json` keeps serving the old set.
    pub fn move_jwks(&self, path: &str, keys: &[&TestKey]) {
        assert!(path.starts_with('/') && path != "/jwks.json");
        let jwks = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
        *self.state.moved_jwks.lock().unwrap() = Some((path.to_owned(), jwks));
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    pub fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }
}

fn respond(status: u16, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    match req.uri().path() {
        "/.well-known/openid-configuration" => {
            state.discovery_fetches.fetch_add(1, Ordering::SeqCst);
            let issuer = state
                .discovery_issuer
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| state.url.clone());
            let jwks_path = state
                .moved_jwks
                .lock()
                .unwrap()
                .as_ref()
                .map_or_else(|| "/jwks.json".to_owned(), |(path, _)| path.clone());
            let doc = json!({
                "issuer": issuer,
                "jwks_uri": format!("{}{jwks_path}", state.url),
                "id_token_signing_alg_values_supported": ["RS256","ES256","EdDSA"],
            });
            Ok(respond(200, doc.to_string()))
        }
        "/jwks.json" => {
            state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
            let behavior = state.behavior.lock().unwrap().clone();
            let body = state.jwks.lock().unwrap().to_string();
            let cache_control = state.cache_control.lock().unwrap().clone();
            let mut response = match behavior {
                Behavior::Normal => respond(200, body),
                Behavior::Status(code) => respond(code, ""),
                Behavior::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    respond(200, body)
                }
                Behavior::Body(text) => respond(200, text),
                Behavior::Reset => {
                    return Err(std::io::Error::other("reset"));
                }
                // Answered by `serve_request`, which never calls this for them.
                Behavior::Stall | Behavior::Padded(_) => respond(200, body),
                Behavior::Redirect(location) => {
                    let mut r = respond(302, "");
                    r.headers_mut()
                        .insert(http::header::LOCATION, location.parse().unwrap());
                    r
                }
            };
            if let Some(cc) = cache_control {
                response
                    .headers_mut()
                    .insert(http::header::CACHE_CONTROL, cc.parse().unwrap());
            }
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        path => {
            let moved = state.moved_jwks.lock().unwrap().clone();
            match moved {
                Some((moved_path, jwks)) if moved_path == path => {
                    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    Ok(respond(200, jwks.to_string()))
                }
                _ => Ok(respond(404, "")),
            }
        }
    }
}

/// A response body that sends `first`, then stays pending forever while announcing `total` bytes.
struct StalledBody {
    first: Option<Bytes>,
    total: u64,
}

impl Body for StalledBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(chunk) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            // Never woken: the connection is held open until the client gives up.
            None => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total)
    }
}

type IssuerBody = Either<Full<Bytes>, StalledBody>;

/// Serves the behaviours that need a body other than [`Full`], and hands the rest to [`handle`].
async fn serve_request(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<IssuerBody>, std::io::Error> {
    if req.uri().path() == "/jwks.json" {
        let behavior = state.behavior.lock().unwrap().clone();
        let body = state.jwks.lock().unwrap().to_string();
        match behavior {
            Behavior::Stall => {
                state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let half = Bytes::from(body[..body.len() / 2].to_owned());
                let mut response = Response::new(Either::Right(StalledBody {
                    first: Some(half),
                    total: body.len() as u64,
                }));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Ok(response);
            }
            Behavior::Padded(size) => {
                state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                let mut doc: Value = serde_json::from_str(&body).unwrap();
                let overhead = body.len() + r#","padding":"""#.len();
                doc["padding"] = Value::String("x".repeat(size.saturating_sub(overhead)));
                let mut response = respond(200, doc.to_string());
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Ok(response.map(Either::Left));
            }
            _ => {}
        }
    }
    handle(state, req)
        .await
        .map(|response| response.map(Either::Left))
}
