//! # grpc-echo
//!
//! A gRPC service behind [`trustgate_service::TrustgateLayer`], for trustgate's gRPC tests and
//! load benchmarks: unary, server streaming, client streaming and bidirectional calls
//! (`proto/echo.proto`, package `trustgate.echo.v1`), each reply saying who the service thinks
//! is calling and which metadata it received.
//!
//! - [`pb`]: the generated messages, client ([`pb::echo_client::EchoClient`]) and server
//!   ([`pb::echo_server::EchoServer`]), committed (`scripts/regen-grpc-echo.sh` regenerates
//!   them), so building needs no `protoc`.
//! - [`Echo`]: the service.
//! - [`serve`]: serves it on a listener, behind an optional layer, over h2c or TLS.
//! - [`connect`]: an h2c client that accepts [`MAX_MESSAGE_BYTES`] both ways.
//!
//! ```no_run
//! use grpc_echo::pb::EchoRequest;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let layer = trustgate_service::TrustgateLayer::jwt("https://idp.example", "echo").await?;
//! tokio::spawn(grpc_echo::serve(listener, Some(layer), None, std::future::pending()));
//!
//! let mut client = grpc_echo::connect(&format!("http://{addr}")).await?;
//! let mut request = tonic::Request::new(EchoRequest { message: "hi".into(), ..Default::default() });
//! request.metadata_mut().insert("authorization", "Bearer eyJ...".parse()?);
//! let reply = client.unary(request).await?.into_inner();
//! assert_eq!(reply.message, "hi");
//! # Ok(()) }
//! ```

use std::future::Future;
use std::path::Path;

use bytes::Bytes;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Identity, Server, ServerTlsConfig};
use trustgate_service::TrustgateLayer;

mod echo;

pub use echo::Echo;

/// The generated protobuf messages and gRPC client and server of `trustgate.echo.v1`.
#[path = "pb/trustgate.echo.v1.rs"]
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
pub mod pb;

/// The largest message the server and [`connect`]'s client send or accept: 32 MiB, so a test can
/// send a 10 MiB payload (tonic's default limit is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 32 << 20;

/// A server certificate chain and its private key, PEM-encoded, for [`serve`] over TLS.
#[derive(Clone)]
pub struct TlsPem {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The private key never appears in logs.
        f.debug_struct("TlsPem")
            .field("cert_bytes", &self.cert.len())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl TlsPem {
    /// A certificate chain and its key, both PEM.
    pub fn new(cert: impl Into<Vec<u8>>, key: impl Into<Vec<u8>>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }

    /// Reads both PEM files.
    ///
    /// # Errors
    /// Either file cannot be read.
    pub fn from_files(cert: &Path, key: &Path) -> std::io::Result<Self> {
        Ok(Self::new(std::fs::read(cert)?, std::fs::read(key)?))
    }
}

/// Serves [`Echo`] on `listener` until `shutdown` resolves, then finishes the calls in flight.
///
/// With `layer`, every call passes through it first (the [`trustgate_service::Caller`] it
/// establishes is what replies report); without, replies have an empty subject. Without `tls`
/// the server speaks HTTP/2 in cleartext with prior knowledge (h2c, no HTTP/1 upgrade); with it,
/// TLS (rustls, ALPN `h2`). Messages up to [`MAX_MESSAGE_BYTES`] are accepted and sent, and
/// accepted connections have `TCP_NODELAY` set.
///
/// # Errors
/// The TLS certificate or key cannot be used, or the server fails.
pub async fn serve<F>(
    listener: TcpListener,
    layer: Option<TrustgateLayer>,
    tls: Option<TlsPem>,
    shutdown: F,
) -> Result<(), tonic::transport::Error>
where
    F: Future<Output = ()>,
{
    let echo = pb::echo_server::EchoServer::new(Echo)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let mut server = Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(tls.cert, tls.key)))?;
    }
    // Without it a small reply waits for the client's delayed ACK (Nagle's algorithm).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    match layer {
        Some(layer) => {
            server
                .layer(layer)
                .add_service(echo)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
        None => {
            server
                .add_service(echo)
                .serve_with_incoming_shutdown(incoming, shutdown)
                .await
        }
    }
}

/// A client for `url` (`http://host:port`: h2c with prior knowledge) that sends and accepts
/// messages up to [`MAX_MESSAGE_BYTES`]. For TLS, build the [`Channel`] with tonic's
/// `ClientTlsConfig` and pass it to [`client`].
///
/// # Errors
/// The URL is invalid or the connection fails.
pub async fn connect(
    url: &str,
) -> Result<pb::echo_client::EchoClient<Channel>, tonic::transport::Error> {
    let channel = Endpoint::from_shared(url.to_owned())?.connect().await?;
    Ok(client(channel))
}

/// An [`EchoClient`](pb::echo_client::EchoClient) on `channel` with the limits of [`connect`].
pub fn client(channel: Channel) -> pb::echo_client::EchoClient<Channel> {
    pb::echo_client::EchoClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// `len` bytes of a fixed pattern (byte `i` is `i % 251`), the payload of server-streamed
/// replies: a test can tell a shifted, truncated or reordered payload from the right one.
pub fn pattern(len: usize) -> Bytes {
    // 251 is prime, so the pattern does not line up with any power-of-two frame or buffer size.
    (0..len).map(|i| (i % 251) as u8).collect()
}
