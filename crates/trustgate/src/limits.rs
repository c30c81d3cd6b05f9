//! The limits every listener facing the network puts on a peer before it is answered.

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

use crate::config;

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
