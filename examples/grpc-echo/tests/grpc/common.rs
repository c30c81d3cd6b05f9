//! Fixtures: the two real issuers from test-support, a real tonic server with the layer on
//! 127.0.0.1, a real tonic client over h2c, and each mode's credentials for one call.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use grpc_echo::pb::echo_client::EchoClient;
use grpc_echo::pb::{EchoReply, EchoRequest};
use serde_json::{Value, json};
use test_support::{Issuers, alice_headers};
use tokio::sync::oneshot;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use trustgate_service::TrustgateLayer;

/// The service id (the audience of every credential).
pub const SERVICE: &str = "echo-api";

/// The four trust patterns, as the service sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Jwt,
    GatewayAssertion,
    IdentityHeaders,
    InternalTokens,
}

pub const MODES: [Mode; 4] = [
    Mode::Jwt,
    Mode::GatewayAssertion,
    Mode::IdentityHeaders,
    Mode::InternalTokens,
];

impl Mode {
    pub async fn layer(self, issuers: &Issuers) -> TrustgateLayer {
        let internal = issuers.internal.url();
        match self {
            Mode::Jwt => TrustgateLayer::jwt(&issuers.external.url(), SERVICE).await,
            Mode::GatewayAssertion => TrustgateLayer::gateway_assertion(&internal, SERVICE).await,
            Mode::IdentityHeaders => TrustgateLayer::identity_headers(&internal, SERVICE).await,
            Mode::InternalTokens => TrustgateLayer::internal_tokens(&internal, SERVICE).await,
        }
        .unwrap()
    }

    /// The metadata that admits one call to `method` (`Unary`, `ServerStream`, …) in this mode,
    /// with `extra` claims on the credential and the credential's audience `aud`.
    pub fn credentials_for(
        self,
        issuers: &Issuers,
        method: &str,
        aud: &str,
        extra: Value,
    ) -> Vec<(&'static str, String)> {
        let path = path(method);
        match self {
            Mode::Jwt => vec![(
                "authorization",
                format!(
                    "Bearer {}",
                    issuers.external_token(
                        aud,
                        merged(
                            json!({"roles": ["admin", "user"], "tenant_id": "t1"}),
                            extra
                        )
                    )
                ),
            )],
            Mode::InternalTokens => vec![(
                "authorization",
                format!("Bearer {}", issuers.internal_token(aud, extra)),
            )],
            Mode::GatewayAssertion => vec![(
                "x-trustgate-assertion",
                issuers.assertion(aud, "POST", &path, json!({}), extra),
            )],
            Mode::IdentityHeaders => vec![
                ("x-user-id", "alice".to_owned()),
                ("x-user-roles", "admin,user".to_owned()),
                ("x-tenant-id", "t1".to_owned()),
                (
                    "x-trustgate-assertion",
                    issuers.assertion(aud, "POST", &path, alice_headers(), extra),
                ),
            ],
        }
    }

    /// Valid credentials for one call to `method`.
    pub fn credentials(self, issuers: &Issuers, method: &str) -> Vec<(&'static str, String)> {
        self.credentials_for(issuers, method, SERVICE, json!({}))
    }
}

fn merged(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

/// The HTTP/2 path of a call, which the gateway's assertion binds (`htu`).
pub fn path(method: &str) -> String {
    format!("/trustgate.echo.v1.Echo/{method}")
}

/// `message` with `metadata` added.
pub fn request<T>(message: T, metadata: &[(&'static str, String)]) -> Request<T> {
    let mut request = Request::new(message);
    for (name, value) in metadata {
        let value: MetadataValue<_> = value.parse().unwrap();
        request.metadata_mut().append(*name, value);
    }
    request
}

/// A unary request of `text` with `payload_bytes` bytes of the pattern.
pub fn message(text: &str, payload_bytes: usize) -> EchoRequest {
    EchoRequest {
        message: text.to_owned(),
        payload: grpc_echo::pattern(payload_bytes),
        delay_ms: 0,
    }
}

/// One unary call of `message` with `metadata`.
pub async fn unary(
    client: &mut EchoClient<Channel>,
    message: EchoRequest,
    metadata: &[(&'static str, String)],
) -> Result<EchoReply, Status> {
    client
        .unary(request(message, metadata))
        .await
        .map(tonic::Response::into_inner)
}

/// A running server; it stops when this is dropped.
pub struct Running {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Running {
    pub fn new(addr: SocketAddr, stop: oneshot::Sender<()>) -> Self {
        Self { addr, _stop: stop }
    }

    pub async fn client(&self) -> EchoClient<Channel> {
        grpc_echo::connect(&format!("http://{}", self.addr))
            .await
            .unwrap()
    }

    /// One unary call on a new connection.
    pub async fn unary(
        &self,
        message: EchoRequest,
        metadata: &[(&'static str, String)],
    ) -> Result<EchoReply, Status> {
        unary(&mut self.client().await, message, metadata).await
    }
}

/// Serves `grpc_echo::serve` (the example's own server) with `layer` on 127.0.0.1.
pub async fn serve_echo(layer: Option<TrustgateLayer>, tls: Option<grpc_echo::TlsPem>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        grpc_echo::serve(listener, layer, tls, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Running::new(addr, stop)
}

/// The issuers and a client of the echo service behind `mode`'s layer.
pub async fn start(mode: Mode) -> (Issuers, Running) {
    let issuers = Issuers::start().await;
    let layer = mode.layer(&issuers).await;
    let running = serve_echo(Some(layer), None).await;
    (issuers, running)
}

/// Asserts a refusal's exact code, message and `www-authenticate` metadata.
#[track_caller]
pub fn assert_refused(status: &Status, code: Code, message: &str, challenge: &str, context: &str) {
    assert_eq!(status.code(), code, "{context}: {status:?}");
    assert_eq!(status.message(), message, "{context}");
    assert_eq!(
        status
            .metadata()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some(challenge),
        "{context}"
    );
}

#[track_caller]
pub fn assert_unauthenticated(status: &Status, context: &str) {
    assert_refused(
        status,
        Code::Unauthenticated,
        "unauthenticated",
        "Bearer",
        context,
    );
}

#[track_caller]
pub fn assert_invalid_token(status: &Status, context: &str) {
    assert_refused(
        status,
        Code::Unauthenticated,
        "invalid_token",
        r#"Bearer error="invalid_token""#,
        context,
    );
}
