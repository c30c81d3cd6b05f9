//! The limits every listener facing the network puts on a peer before it is answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config;

/// The next connection of a side listener (the admin listener, the decision endpoint, the gRPC
/// ext_authz door) within `limit` (`server.max_connections`), with the permit it holds while
/// open. A connection over the limit is closed at once; an accept error (out of descriptors)
/// waits 20 ms instead of spinning on the error.
pub(crate) async fn accept_within(
    listener: &TcpListener,
    limit: &Arc<Semaphore>,
    door: &'static str,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(limit).try_acquire_owned() else {
            tracing::debug!(%peer, door, "connection limit reached; closing");
            continue;
        };
        let _ = stream.set_nodelay(true);
        return (stream, peer, permit);
    }
}

/// A connection builder with `[server]`'s limits on what a peer may send before it is answered:
/// header bytes and count, and the time to send them. Every listener that faces the network
/// starts from it.
pub(crate) fn limited_builder(server: &config::ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes.max(8192))
        .max_headers(server.max_headers);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(server.max_header_bytes).unwrap_or(u32::MAX));
    builder
}
