//! End-to-end: real gRPC through the real gateway. A tonic client, the `trustgate` binary, and
//! examples/grpc-echo (a tonic server behind `trustgate-service`'s layer) as the service, over h2c
//! and over TLS: every trust pattern, every streaming kind, forged identity metadata, expired and
//! insufficient tokens, an unreachable upstream, a deadline, and a 10 MiB message with the
//! gateway's memory measured. Trailers and the exact refusal headers are in `http2_upstream.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use grpc_echo::pb::echo_client::EchoClient;
use grpc_echo::pb::{EchoReply, EchoRequest, StreamRequest};
use serde_json::json;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use trustgate_service::TrustgateLayer;

use crate::common::{
    Config, Fixture, Gateway, Pattern, Route, TempDir, Upstream, refused_addr, rt,
};

/// The gRPC service's path prefix.
const SERVICE: &str = "/trustgate.echo.v1.Echo";

/// A bound listener for the echo service, whose address the gateway's config needs before the
/// service's layer can be built (the layer fetches the gateway's internal keys at start).
fn bind() -> (tokio::net::TcpListener, SocketAddr) {
    rt().block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    })
}

/// Serves the echo service behind `layer` on `listener`, until the test ends.
fn serve(
    listener: tokio::net::TcpListener,
    layer: Option<TrustgateLayer>,
    tls: Option<grpc_echo::TlsPem>,
) {
    rt().spawn(grpc_echo::serve(
        listener,
        layer,
        tls,
        std::future::pending(),
    ));
}

fn client(addr: SocketAddr) -> EchoClient<Channel> {
    rt().block_on(grpc_echo::connect(&format!("http://{addr}")))
        .unwrap()
}

/// A request carrying `authorization` (if any) and a forged identity header.
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
        .metadata_mut()
        .insert("x-user-id", "admin".parse().unwrap());
    request
        .metadata_mut()
        .insert("x-user-roles", "admin".parse().unwrap());
    request
}

fn unary(message: &str) -> EchoRequest {
    EchoRequest {
        message: message.to_owned(),
        ..Default::default()
    }
}

fn metadata<'a>(reply: &'a EchoReply, name: &str) -> Vec<&'a str> {
    reply
        .metadata
        .iter()
        .filter(|m| m.name == name)
        .map(|m| m.value.as_str())
        .collect()
}

/// The four kinds of call, each checked to reach the service as `alice` with nothing forged.
fn every_kind_of_call(client: &mut EchoClient<Channel>, token: &str, pattern: &str) {
    rt().block_on(async {
        let reply = client
            .unary(with_token(unary("one"), Some(token)))
            .await
            .unwrap_or_else(|s| panic!("{pattern}: unary refused: {s:?}"))
            .into_inner();
        assert_eq!(reply.message, "one", "{pattern}");
        assert_eq!(reply.subject, "alice", "{pattern}");
        assert!(
            !metadata(&reply, "x-user-id").contains(&"admin"),
            "{pattern}: forged x-user-id reached the service"
        );
        assert!(
            !metadata(&reply, "x-user-roles").contains(&"admin"),
            "{pattern}: forged x-user-roles reached the service"
        );

        let request = StreamRequest {
            message: "many".to_owned(),
            count: 3,
            payload_bytes: 1000,
        };
        let mut stream = client
            .server_stream(with_token(request, Some(token)))
            .await
            .unwrap()
            .into_inner();
        let mut indexes = Vec::new();
        while let Some(reply) = stream.message().await.unwrap() {
            assert_eq!(reply.subject, "alice", "{pattern}");
            assert_eq!(reply.payload, grpc_echo::pattern(1000), "{pattern}");
            indexes.push(reply.index);
        }
        assert_eq!(indexes, [0, 1, 2], "{pattern}");

        let messages = (0..4).map(|i| EchoRequest {
            message: format!("part {i}"),
            payload: vec![7u8; 100].into(),
            ..Default::default()
        });
        let reply = client
            .client_stream(with_token(tokio_stream::iter(messages), Some(token)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(reply.received_bytes, 400, "{pattern}");
        assert_eq!(reply.index, 4, "{pattern}");
        assert_eq!(reply.subject, "alice", "{pattern}");

        // Bidirectional: each reply comes back before the next message is sent.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let mut replies = client
            .bidi(with_token(
                tokio_stream::wrappers::ReceiverStream::new(rx),
                Some(token),
            ))
            .await
            .unwrap()
            .into_inner();
        for i in 0..3u32 {
            tx.send(unary(&format!("ping {i}"))).await.unwrap();
            let reply = replies.message().await.unwrap().unwrap();
            assert_eq!(reply.message, format!("ping {i}"), "{pattern}");
            assert_eq!(reply.index, i, "{pattern}");
            assert_eq!(reply.subject, "alice", "{pattern}");
        }
        drop(tx);
        assert!(replies.message().await.unwrap().is_none(), "{pattern}");
    });
}

fn code_of(
    client: &mut EchoClient<Channel>,
    request: tonic::Request<EchoRequest>,
) -> tonic::Status {
    rt().block_on(client.unary(request))
        .expect_err("the call should have been refused")
}

/// One gateway per pattern, each in front of an echo service with the layer of that pattern.
#[test]
fn every_trust_pattern_and_every_kind_of_call() {
    let f = Fixture::new();
    let internal = |gateway: &Gateway| format!("http://{}", gateway.admin);
    let cases: [(Pattern, &str); 4] = [
        (Pattern::ServiceValidates, "service-validates"),
        (Pattern::ForwardToken, "forward-token"),
        (Pattern::IdentityHeaders, "identity-headers"),
        (Pattern::InternalToken, "internal-token"),
    ];
    for (pattern, name) in cases {
        let (listener, addr) = bind();
        let mut route = Route::new("echo", SERVICE, "echo", pattern).service("echo");
        if pattern == Pattern::IdentityHeaders {
            route = route.assertion();
        }
        let config = Config::new()
            .empty_section("internal_issuer")
            .issuer(f.issuer_config())
            .upstream(Upstream::new("echo", &format!("http://{addr}")).set("protocol", "http2"))
            .route(route);
        let gateway = Gateway::start(&config);
        let layer = rt()
            .block_on(async {
                match pattern {
                    Pattern::ServiceValidates | Pattern::ForwardToken => {
                        TrustgateLayer::jwt(&f.iss, "api").await
                    }
                    Pattern::IdentityHeaders => {
                        TrustgateLayer::identity_headers(&internal(&gateway), "echo").await
                    }
                    Pattern::InternalToken => {
                        TrustgateLayer::internal_tokens(&internal(&gateway), "echo").await
                    }
                    Pattern::Public => unreachable!(),
                }
            })
            .unwrap();
        serve(listener, Some(layer), None);
        let mut client = client(gateway.proxy);
        let token = f.token("alice");
        every_kind_of_call(&mut client, &token, name);

        // What the service received for each pattern.
        let reply = rt()
            .block_on(client.unary(with_token(unary("seen"), Some(&token))))
            .unwrap()
            .into_inner();
        let authorization = metadata(&reply, "authorization");
        match pattern {
            Pattern::ServiceValidates | Pattern::ForwardToken => {
                assert_eq!(
                    authorization,
                    [format!("Bearer {token}").as_str()],
                    "{name}"
                );
            }
            Pattern::IdentityHeaders => {
                assert!(authorization.is_empty(), "{name}: the token was forwarded");
                assert_eq!(metadata(&reply, "x-user-id"), ["alice"], "{name}");
                assert_eq!(metadata(&reply, "x-trustgate-assertion").len(), 1, "{name}");
            }
            Pattern::InternalToken => {
                assert_eq!(authorization.len(), 1, "{name}");
                assert_ne!(authorization[0], format!("Bearer {token}"), "{name}");
            }
            Pattern::Public => unreachable!(),
        }

        // An expired token: the gateway refuses it (the service, on service-validates), the
        // gRPC way, with RFC 6750's challenge as metadata.
        let status = code_of(
            &mut client,
            with_token(unary("late"), Some(&f.expired_token("alice"))),
        );
        assert_eq!(status.code(), Code::Unauthenticated, "{name}");
        assert_eq!(
            status.metadata().get("www-authenticate").unwrap(),
            r#"Bearer error="invalid_token""#,
            "{name}"
        );
        let status = code_of(&mut client, with_token(unary("anonymous"), None));
        assert_eq!(status.code(), Code::Unauthenticated, "{name}");
        // A token for another audience: refused by whichever side validates.
        let mut claims = test_support::claims(&f.iss, "other-api", "alice");
        claims["exp"] = json!(test_support::now_secs() + 600);
        let status = code_of(
            &mut client,
            with_token(unary("aud"), Some(&f.key.sign(&claims))),
        );
        assert_eq!(status.code(), Code::Unauthenticated, "{name}");
    }
}

/// The fixture's issuer, the echo service at `addr` as the HTTP/2 upstream `grpc` (after
/// `upstream`'s edits), and an identity-headers route for the whole service.
fn identity_config(
    f: &Fixture,
    addr: SocketAddr,
    upstream: impl FnOnce(Upstream) -> Upstream,
) -> Config {
    f.config()
        .upstream(upstream(
            Upstream::new("grpc", &format!("http://{addr}")).set("protocol", "http2"),
        ))
        .route(Route::new(
            "echo",
            SERVICE,
            "grpc",
            Pattern::IdentityHeaders,
        ))
}

#[test]
fn require_per_method_is_permission_denied() {
    let f = Fixture::new();
    let (listener, addr) = bind();
    let config = identity_config(&f, addr, |u| u).route(
        Route::new(
            "bidi",
            &format!("{SERVICE}/Bidi"),
            "grpc",
            Pattern::IdentityHeaders,
        )
        .require(json!({"roles": ["admin"]})),
    );
    let gateway = Gateway::start(&config);
    serve(listener, None, None);
    let mut client = client(gateway.proxy);
    let token = f.token("alice");
    let reply = rt()
        .block_on(client.unary(with_token(unary("ok"), Some(&token))))
        .unwrap()
        .into_inner();
    assert_eq!(metadata(&reply, "x-user-id"), ["alice"]);
    let status = rt()
        .block_on(client.bidi(with_token(
            tokio_stream::iter(vec![unary("x")]),
            Some(&token),
        )))
        .expect_err("Bidi needs the admin role");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(status.message(), "insufficient_scope");
    assert_eq!(
        status.metadata().get("www-authenticate").unwrap(),
        r#"Bearer error="insufficient_scope""#
    );
    let admin = f.token_with("root", json!({"roles": ["admin"]}));
    rt().block_on(async {
        let mut replies = client
            .bidi(with_token(
                tokio_stream::iter(vec![unary("x")]),
                Some(&admin),
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(replies.message().await.unwrap().unwrap().subject, "");
    });
}

#[test]
fn unreachable_upstream_and_a_passed_deadline() {
    let f = Fixture::new();
    let (listener, addr) = bind();
    let config = identity_config(&f, addr, |u| u.set("response_timeout", "300ms"))
        .upstream(
            Upstream::new("down", &format!("http://{}", refused_addr())).set("protocol", "http2"),
        )
        .route(Route::new(
            "down",
            &format!("{SERVICE}/ServerStream"),
            "down",
            Pattern::IdentityHeaders,
        ));
    let gateway = Gateway::start(&config);
    serve(listener, None, None);
    let mut client = client(gateway.proxy);
    let token = f.token("alice");

    let request = StreamRequest {
        count: 1,
        ..Default::default()
    };
    let status = rt()
        .block_on(client.server_stream(with_token(request, Some(&token))))
        .expect_err("the upstream is down");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "upstream_unavailable");

    // An upstream slower than its `response_timeout` (300 ms here). A client's own
    // `grpc-timeout` is not used for this: tonic's server and client enforce it too, and answer
    // CANCELLED; `http2_upstream.rs` checks the gateway's deadline with an upstream that does not.
    let slow = with_token(
        EchoRequest {
            delay_ms: 3000,
            ..Default::default()
        },
        Some(&token),
    );
    let started = std::time::Instant::now();
    let status = code_of(&mut client, slow);
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(status.message(), "deadline_exceeded");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// TLS at both hops: the client to the gateway, and the gateway to the service (ALPN h2, the
/// test CA as the upstream's `ca_file`).
#[test]
fn over_tls_at_both_hops() {
    let f = Fixture::new();
    let dir = TempDir::new();
    crate::upstream_tls::make_pki(&dir);
    let read = |name: &str| std::fs::read(dir.0.join(name)).unwrap();
    let (listener, addr) = bind();
    let config = f
        .config()
        .server(
            "tls",
            json!({"cert": dir.0.join("server.pem").to_str().unwrap(),
                   "key": dir.0.join("server.key").to_str().unwrap()}),
        )
        .upstream(
            Upstream::new("grpc", &format!("https://127.0.0.1:{}", addr.port()))
                .set("protocol", "http2")
                .path("ca_file", &dir.0.join("ca.pem")),
        )
        .route(Route::new(
            "echo",
            SERVICE,
            "grpc",
            Pattern::IdentityHeaders,
        ));
    serve(
        listener,
        None,
        Some(grpc_echo::TlsPem::new(
            read("server.pem"),
            read("server.key"),
        )),
    );
    let ca = read("ca.pem");
    let gateway = Gateway::start_in(dir, &config, &[]);
    let channel = rt()
        .block_on(async {
            Endpoint::from_shared(format!("https://127.0.0.1:{}", gateway.proxy.port()))
                .unwrap()
                .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)))
                .unwrap()
                .connect()
                .await
        })
        .unwrap();
    let mut client = grpc_echo::client(channel);
    let token = f.token("alice");
    let reply = rt()
        .block_on(client.unary(with_token(unary("tls"), Some(&token))))
        .unwrap()
        .into_inner();
    assert_eq!(reply.message, "tls");
    assert_eq!(metadata(&reply, "x-user-id"), ["alice"]);
    let status = code_of(&mut client, with_token(unary("no"), None));
    assert_eq!(status.code(), Code::Unauthenticated);
}

/// A 10 MiB message each way, and 10 MiB streamed each way in 64 KiB messages. The gateway
/// forwards HTTP/2 frames under flow control, so its memory does not grow by the message: the
/// growth of its resident set is reported, and bounded well below the 10 MiB it would take to
/// hold one message.
#[test]
fn ten_mebibytes_flow_through_with_bounded_gateway_memory() {
    const TEN_MIB: usize = 10 << 20;
    let f = Fixture::new();
    let (listener, addr) = bind();
    let config = identity_config(&f, addr, |u| u);
    let gateway = Gateway::start(&config);
    serve(listener, None, None);
    let mut client = client(gateway.proxy);
    let token = f.token("alice");
    // Warm up (connections, the token cache) before the baseline reading.
    rt().block_on(client.unary(with_token(unary("warm"), Some(&token))))
        .unwrap();
    let before = gateway.rss_kib();

    let big = EchoRequest {
        payload: grpc_echo::pattern(TEN_MIB),
        ..Default::default()
    };
    let reply = rt()
        .block_on(client.unary(with_token(big, Some(&token))))
        .unwrap()
        .into_inner();
    assert_eq!(reply.received_bytes, TEN_MIB as u64);
    assert!(
        reply.payload == grpc_echo::pattern(TEN_MIB),
        "payload changed on the way"
    );
    let after_unary = gateway.rss_kib();

    let chunks = TEN_MIB / (64 << 10);
    let messages = (0..chunks).map(|_| EchoRequest {
        payload: grpc_echo::pattern(64 << 10),
        ..Default::default()
    });
    let reply = rt()
        .block_on(client.client_stream(with_token(tokio_stream::iter(messages), Some(&token))))
        .unwrap()
        .into_inner();
    assert_eq!(reply.received_bytes, TEN_MIB as u64);
    let request = StreamRequest {
        count: chunks as u32,
        payload_bytes: 64 << 10,
        ..Default::default()
    };
    let received = rt().block_on(async {
        let mut stream = client
            .server_stream(with_token(request, Some(&token)))
            .await
            .unwrap()
            .into_inner();
        let mut total = 0;
        while let Some(reply) = stream.message().await.unwrap() {
            total += reply.payload.len();
        }
        total
    });
    assert_eq!(received, TEN_MIB);
    let after_streams = gateway.rss_kib();
    eprintln!(
        "gateway RSS: {before} KiB before; {after_unary} KiB after a 10 MiB unary call each way; \
         {after_streams} KiB after 10 MiB streamed each way (growth {} KiB)",
        after_streams.saturating_sub(before)
    );
    assert!(
        after_streams.saturating_sub(before) < 8 * 1024,
        "the gateway's memory grew by {} KiB for 10 MiB messages",
        after_streams.saturating_sub(before)
    );
}
