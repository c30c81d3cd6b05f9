//! The layer on a TLS server: rustls with ALPN h2, a test CA, a client that verifies the name.

use grpc_echo::TlsPem;
use grpc_echo::pb::EchoRequest;
use test_support::{Issuers, TestCerts};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use crate::common::*;

#[tokio::test]
async fn calls_over_tls_are_authenticated_like_h2c() {
    let certs = TestCerts::generate();
    let issuers = Issuers::start().await;
    let layer = Mode::InternalTokens.layer(&issuers).await;
    let tls = TlsPem::new(certs.cert_pem.clone(), certs.key_pem.clone());
    assert!(
        !format!("{tls:?}").contains("PRIVATE"),
        "the key stays out of Debug"
    );
    let server = serve_echo(Some(layer), Some(tls)).await;
    let channel = Endpoint::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&certs.ca_pem))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = grpc_echo::client(channel);
    let reply = unary(
        &mut client,
        message("over tls", 100_000),
        &Mode::InternalTokens.credentials(&issuers, "Unary"),
    )
    .await
    .unwrap();
    assert_eq!(reply.subject, "alice");
    assert_eq!(reply.payload, grpc_echo::pattern(100_000));
    let refused = unary(&mut client, message("over tls", 0), &[])
        .await
        .unwrap_err();
    assert_unauthenticated(&refused, "over TLS without a token");
    // The TLS port does not speak h2c.
    assert!(
        grpc_echo::connect(&format!("http://{}", server.addr))
            .await
            .unwrap()
            .unary(EchoRequest::default())
            .await
            .is_err()
    );
}
