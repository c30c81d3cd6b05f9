//! Guards in a tonic handler: `Caller::from_grpc` and `require_*` answer with the one mapping.
//! The layer is put on the one generated service here (`Layer::layer`), not on the server.

use grpc_echo::Echo;
use grpc_echo::pb::echo_server::{Echo as EchoService, EchoServer};
use grpc_echo::pb::{EchoReply, EchoRequest, StreamRequest};
use serde_json::json;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status, Streaming};
use tower_layer::Layer;
use trustgate_service::{Caller, TrustgateLayer};

use crate::common::*;

/// Echo, but `Unary` needs the scope `echo:write`, `ServerStream` the role `auditor` and
/// `ClientStream` the tenant `t1`.
struct Guarded;

#[tonic::async_trait]
impl EchoService for Guarded {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        Caller::from_grpc(&request)?.require_scope("echo:write")?;
        Echo.unary(request).await
    }

    type ServerStreamStream = <Echo as EchoService>::ServerStreamStream;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Self::ServerStreamStream>, Status> {
        Caller::from_grpc(&request)?.require_role("auditor")?;
        Echo.server_stream(request).await
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        Caller::from_grpc(&request)?.require_tenant("t1")?;
        Echo.client_stream(request).await
    }

    type BidiStream = <Echo as EchoService>::BidiStream;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Self::BidiStream>, Status> {
        Echo.bidi(request).await
    }
}

async fn serve_guarded(layer: Option<TrustgateLayer>) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let mut router = tonic::transport::Server::builder();
    let router = match layer {
        // The layered service keeps its gRPC name (`NamedService`), so the router finds it.
        Some(layer) => router.add_service(layer.layer(EchoServer::new(Guarded))),
        None => router.add_service(EchoServer::new(Guarded)),
    };
    tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running::new(addr, stop)
}

#[track_caller]
fn assert_permission_denied(status: &Status, context: &str) {
    assert_refused(
        status,
        Code::PermissionDenied,
        "insufficient_scope",
        r#"Bearer error="insufficient_scope""#,
        context,
    );
}

#[tokio::test]
async fn a_failed_guard_is_permission_denied_in_every_mode() {
    for mode in MODES {
        let issuers = test_support::Issuers::start().await;
        let server = serve_guarded(Some(mode.layer(&issuers).await)).await;
        let mut client = server.client().await;
        let context = format!("{mode:?}");
        // The default credentials carry roles admin and user, tenant t1, no echo:write.
        let refused = unary(
            &mut client,
            message("hello", 0),
            &mode.credentials(&issuers, "Unary"),
        )
        .await
        .unwrap_err();
        assert_permission_denied(&refused, &context);
        let ask = StreamRequest::default();
        let refused = client
            .server_stream(request(ask, &mode.credentials(&issuers, "ServerStream")))
            .await
            .unwrap_err();
        assert_permission_denied(&refused, &context);
        // The tenant guard passes: the refusals above are the guards', not the layer's.
        let sent = tokio_stream::iter([message("hello", 0)]);
        let reply = client
            .client_stream(request(sent, &mode.credentials(&issuers, "ClientStream")))
            .await
            .unwrap_or_else(|status| panic!("{context}: {status:?}"))
            .into_inner();
        assert_eq!(reply.subject, "alice", "{context}");
    }
}

#[tokio::test]
async fn a_granted_scope_passes_the_guard() {
    let issuers = test_support::Issuers::start().await;
    let server = serve_guarded(Some(Mode::Jwt.layer(&issuers).await)).await;
    let granted =
        Mode::Jwt.credentials_for(&issuers, "Unary", SERVICE, json!({"scope": "echo:write"}));
    let reply = server.unary(message("hello", 0), &granted).await.unwrap();
    assert_eq!(
        (reply.subject.as_str(), reply.message.as_str()),
        ("alice", "hello")
    );
    // The layer still answers first: no credential is 16, not 7.
    let refused = server.unary(message("hello", 0), &[]).await.unwrap_err();
    assert_unauthenticated(&refused, "no credential");
}

#[tokio::test]
async fn a_service_without_the_layer_fails_closed() {
    let server = serve_guarded(None).await;
    let forged = [("x-user-id", "alice".to_owned())];
    let refused = server
        .unary(message("hello", 0), &forged)
        .await
        .unwrap_err();
    assert_unauthenticated(&refused, "Caller::from_grpc without a layer");
}
