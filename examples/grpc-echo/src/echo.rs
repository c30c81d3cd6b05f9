//! The echo service: every reply names the caller the layer established and the metadata the
//! handler saw, so a test can check both ends of the gateway.

use std::pin::Pin;
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
use tonic::metadata::{KeyAndValueRef, MetadataMap};
use tonic::{Request, Response, Status, Streaming};
use trustgate_service::Caller;

use crate::pb::{EchoReply, EchoRequest, Metadata, StreamRequest};
use crate::{MAX_MESSAGE_BYTES, pattern};

/// The `trustgate.echo.v1.Echo` service.
///
/// Every reply carries `subject`, `tenant` and `roles` from the [`Caller`] in the request's
/// extensions (empty without one: the service then runs without a layer) and `metadata`: every
/// request header the handler saw whose value is visible ASCII, names in lowercase, sorted by
/// name then value.
///
/// | call | replies |
/// |---|---|
/// | `Unary` | after sleeping `delay_ms`: the message and payload, `received_bytes` = payload size |
/// | `ServerStream` | `count` replies, `index` 0, 1, …, each with `payload_bytes` bytes of [`pattern`](crate::pattern) (produced one at a time as the stream is read; at most [`MAX_MESSAGE_BYTES`]) and the request's `message` |
/// | `ClientStream` | one reply when the client ends its stream: `received_bytes` = all payloads, `index` = the number of messages, `message` = the last one's |
/// | `Bidi` | one reply per message as it arrives: its message and payload, `received_bytes` = its payload size, `index` 0, 1, … |
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

/// A reply stream.
type Replies = Pin<Box<dyn Stream<Item = Result<EchoReply, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl crate::pb::echo_server::Echo for Echo {
    async fn unary(&self, request: Request<EchoRequest>) -> Result<Response<EchoReply>, Status> {
        let reply = seen(&request);
        let message = request.into_inner();
        if message.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(message.delay_ms.into())).await;
        }
        Ok(Response::new(echoed(reply, message, 0)))
    }

    type ServerStreamStream = Replies;

    async fn server_stream(
        &self,
        request: Request<StreamRequest>,
    ) -> Result<Response<Replies>, Status> {
        let reply = seen(&request);
        let StreamRequest {
            message,
            count,
            payload_bytes,
        } = request.into_inner();
        let size = usize::try_from(payload_bytes).unwrap_or(usize::MAX);
        // Checked before allocating: the size comes from the network.
        if size > MAX_MESSAGE_BYTES {
            return Err(Status::out_of_range(
                "payload_bytes exceeds the message limit",
            ));
        }
        // One buffer shared by every reply (`Bytes` clones are references), so memory does not
        // grow with `count`.
        let payload = pattern(size);
        let replies = tokio_stream::iter(0..count).map(move |index| {
            Ok(EchoReply {
                message: message.clone(),
                payload: payload.clone(),
                index,
                ..reply.clone()
            })
        });
        Ok(Response::new(Box::pin(replies)))
    }

    async fn client_stream(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<EchoReply>, Status> {
        let mut reply = seen(&request);
        let mut messages = request.into_inner();
        while let Some(message) = messages.message().await? {
            reply.received_bytes += byte_count(&message.payload);
            reply.index += 1;
            reply.message = message.message;
        }
        Ok(Response::new(reply))
    }

    type BidiStream = Replies;

    async fn bidi(
        &self,
        request: Request<Streaming<EchoRequest>>,
    ) -> Result<Response<Replies>, Status> {
        let reply = seen(&request);
        let mut index = 0;
        let replies = request.into_inner().map(move |message| {
            let answer = echoed(reply.clone(), message?, index);
            index += 1;
            Ok(answer)
        });
        Ok(Response::new(Box::pin(replies)))
    }
}

/// The reply's caller and metadata fields, from what the handler received.
fn seen<T>(request: &Request<T>) -> EchoReply {
    let caller = request.extensions().get::<Caller>();
    EchoReply {
        subject: caller
            .and_then(Caller::subject)
            .unwrap_or_default()
            .to_owned(),
        tenant: caller
            .and_then(Caller::tenant)
            .unwrap_or_default()
            .to_owned(),
        roles: caller.map(|c| c.roles().to_vec()).unwrap_or_default(),
        metadata: metadata(request.metadata()),
        ..EchoReply::default()
    }
}

fn echoed(reply: EchoReply, message: EchoRequest, index: u32) -> EchoReply {
    EchoReply {
        message: message.message,
        received_bytes: byte_count(&message.payload),
        payload: message.payload,
        index,
        ..reply
    }
}

fn byte_count(payload: &[u8]) -> u64 {
    // usize is at most 64 bits on every target tonic supports.
    payload.len() as u64
}

/// Every ASCII metadata entry with a visible-ASCII value, sorted; binary (`-bin`) entries are
/// left out.
fn metadata(map: &MetadataMap) -> Vec<Metadata> {
    let mut entries: Vec<Metadata> = map
        .iter()
        .filter_map(|entry| match entry {
            KeyAndValueRef::Ascii(name, value) => Some(Metadata {
                // Header names are stored in lowercase already.
                name: name.as_str().to_owned(),
                value: value.to_str().ok()?.to_owned(),
            }),
            KeyAndValueRef::Binary(..) => None,
        })
        .collect();
    entries.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value)));
    entries
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_sorted_and_ascii_only() {
        let mut map = MetadataMap::new();
        map.append("x-b", "2".parse().unwrap());
        map.append("x-a", "z".parse().unwrap());
        map.append("x-a", "y".parse().unwrap());
        map.append_bin(
            "x-c-bin",
            tonic::metadata::MetadataValue::from_bytes(b"\x00\x01"),
        );
        let seen: Vec<(String, String)> = metadata(&map)
            .into_iter()
            .map(|m| (m.name, m.value))
            .collect();
        let expected = [("x-a", "y"), ("x-a", "z"), ("x-b", "2")];
        assert_eq!(seen, expected.map(|(n, v)| (n.to_owned(), v.to_owned())),);
    }
}
