//! All four call kinds through the layer, in every mode; large messages; deadlines.

use std::time::{Duration, Instant};

use grpc_echo::pb::{EchoRequest, StreamRequest};
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::common::*;

#[tokio::test]
async fn every_call_kind_passes_through_the_layer_in_every_mode() {
    for mode in MODES {
        let (issuers, server) = start(mode).await;
        let mut client = server.client().await;

        // Server streaming: count replies, in order, each with the exact pattern.
        let ask = StreamRequest {
            message: "many".to_owned(),
            count: 5,
            payload_bytes: 70_000,
        };
        let mut replies = client
            .server_stream(request(ask, &mode.credentials(&issuers, "ServerStream")))
            .await
            .unwrap_or_else(|status| panic!("{mode:?}: {status:?}"))
            .into_inner();
        let mut indexes = Vec::new();
        while let Some(reply) = replies.message().await.unwrap() {
            assert_eq!(reply.subject, "alice", "{mode:?}");
            assert_eq!(reply.message, "many", "{mode:?}");
            assert_eq!(reply.payload, grpc_echo::pattern(70_000), "{mode:?}");
            indexes.push(reply.index);
        }
        assert_eq!(indexes, [0, 1, 2, 3, 4], "{mode:?}");

        // Client streaming: one reply summing every payload.
        let sent = tokio_stream::iter([message("a", 10), message("b", 0), message("c", 65_537)]);
        let reply = client
            .client_stream(request(sent, &mode.credentials(&issuers, "ClientStream")))
            .await
            .unwrap_or_else(|status| panic!("{mode:?}: {status:?}"))
            .into_inner();
        assert_eq!(
            (
                reply.subject.as_str(),
                reply.received_bytes,
                reply.index,
                reply.message.as_str()
            ),
            ("alice", 65_547, 3, "c"),
            "{mode:?}"
        );

        // Bidirectional: each reply comes back before the next message is sent.
        let (tx, rx) = mpsc::channel(1);
        let mut replies = client
            .bidi(request(
                ReceiverStream::new(rx),
                &mode.credentials(&issuers, "Bidi"),
            ))
            .await
            .unwrap_or_else(|status| panic!("{mode:?}: {status:?}"))
            .into_inner();
        for (index, size) in [(0u32, 3usize), (1, 100_000), (2, 0)] {
            tx.send(message(&format!("m{index}"), size)).await.unwrap();
            let reply = replies
                .message()
                .await
                .unwrap()
                .expect("a reply per message");
            assert_eq!(reply.index, index, "{mode:?}");
            assert_eq!(reply.message, format!("m{index}"), "{mode:?}");
            assert_eq!(reply.payload, grpc_echo::pattern(size), "{mode:?}");
            assert_eq!(reply.received_bytes, size as u64, "{mode:?}");
            assert_eq!(reply.subject, "alice", "{mode:?}");
        }
        drop(tx);
        assert!(replies.message().await.unwrap().is_none(), "{mode:?}");
    }
}

#[tokio::test]
async fn streaming_calls_without_a_credential_are_refused() {
    for mode in MODES {
        let (_issuers, server) = start(mode).await;
        let mut client = server.client().await;
        let context = format!("{mode:?}");
        let ask = StreamRequest {
            message: String::new(),
            count: 3,
            payload_bytes: 10,
        };
        let refused = client.server_stream(request(ask, &[])).await.unwrap_err();
        assert_unauthenticated(&refused, &context);
        let sent = tokio_stream::iter([message("a", 10)]);
        let refused = client.client_stream(request(sent, &[])).await.unwrap_err();
        assert_unauthenticated(&refused, &context);
        let sent = tokio_stream::iter([message("a", 10)]);
        let refused = client.bidi(request(sent, &[])).await.unwrap_err();
        assert_unauthenticated(&refused, &context);
    }
}

#[tokio::test]
async fn a_10_mib_message_goes_both_ways() {
    let (issuers, server) = start(Mode::InternalTokens).await;
    let size = 10 << 20;
    let reply = server
        .client()
        .await
        .unary(request(
            message("big", size),
            &Mode::InternalTokens.credentials(&issuers, "Unary"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.received_bytes, size as u64);
    assert!(reply.payload == grpc_echo::pattern(size), "payload differs");
    // A stream of large replies, produced one at a time.
    let ask = StreamRequest {
        message: String::new(),
        count: 3,
        payload_bytes: 10 << 20,
    };
    let total: usize = server
        .client()
        .await
        .server_stream(request(
            ask,
            &Mode::InternalTokens.credentials(&issuers, "ServerStream"),
        ))
        .await
        .unwrap()
        .into_inner()
        .map(|reply| reply.unwrap().payload.len())
        .fold(0, |sum, len| sum + len)
        .await;
    assert_eq!(total, 30 << 20);
}

#[tokio::test]
async fn the_delay_holds_the_reply_and_a_shorter_deadline_ends_the_call() {
    let (issuers, server) = start(Mode::Jwt).await;
    let mut client = server.client().await;
    let delayed = |delay_ms| EchoRequest {
        delay_ms,
        ..message("slow", 0)
    };
    let started = Instant::now();
    let reply = client
        .unary(request(
            delayed(300),
            &Mode::Jwt.credentials(&issuers, "Unary"),
        ))
        .await
        .unwrap();
    assert_eq!(reply.into_inner().message, "slow");
    assert!(started.elapsed() >= Duration::from_millis(300));
    // The deadline as the gateway forwards it: only the `grpc-timeout` header, no client timer.
    // tonic's server ends the call when it passes, with CANCELLED "Timeout expired" (tonic 0.14
    // does not say DEADLINE_EXCEEDED), long before the 5 s delay.
    let mut metadata = Mode::Jwt.credentials(&issuers, "Unary");
    metadata.push(("grpc-timeout", "200m".to_owned()));
    let started = Instant::now();
    let ended = client
        .unary(request(delayed(5_000), &metadata))
        .await
        .unwrap_err();
    assert_eq!(
        (ended.code(), ended.message()),
        (Code::Cancelled, "Timeout expired"),
        "{ended:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
