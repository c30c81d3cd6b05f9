//! The response bodies a refusal can be written into.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::{BodyExt, Full};

/// A response body type that [`TrustgateService`](crate::TrustgateService) can answer a refusal
/// with, so that the refusal has the inner service's own response type.
///
/// The layer answers a refused request itself, with a fixed body from trustgate-core's one error
/// mapping (a short JSON document for HTTP, nothing for gRPC), and must return it as the inner
/// service's `Response<ResBody>`. Implemented for the bodies services use:
///
/// | body | for |
/// |---|---|
/// | [`Bytes`], [`String`], [`Full<Bytes>`](Full) | plain hyper or tower services |
/// | [`BoxBody<Bytes, E>`](BoxBody), [`UnsyncBoxBody<Bytes, E>`](UnsyncBoxBody) | services that box their bodies |
/// | `axum::body::Body` | axum (feature `axum`) |
/// | `tonic::body::Body` | tonic servers (feature `tonic`) |
///
/// Why a trait of its own rather than `From<Bytes>`: `tonic::body::Body` has no `From<Bytes>`,
/// and neither crate may add that impl for a foreign type. A blanket impl over every
/// `From<Bytes>` type next to a tonic impl would be refused by the compiler, since tonic could
/// add `From<Bytes>` later. So the list is explicit; a service with another body type implements
/// this trait for it (one line: wrap the bytes).
///
/// ```
/// use bytes::Bytes;
/// use trustgate_service::RefusalBody;
///
/// struct MyBody(Bytes);
///
/// impl RefusalBody for MyBody {
///     fn from_refusal(body: Bytes) -> Self {
///         MyBody(body)
///     }
/// }
/// ```
pub trait RefusalBody: Sized {
    /// The body holding `body`, the refusal's complete content (possibly empty).
    fn from_refusal(body: Bytes) -> Self;
}

impl RefusalBody for Bytes {
    fn from_refusal(body: Bytes) -> Self {
        body
    }
}

impl RefusalBody for String {
    fn from_refusal(body: Bytes) -> Self {
        // Refusal bodies are fixed ASCII JSON, so nothing is ever replaced.
        String::from_utf8_lossy(&body).into_owned()
    }
}

impl RefusalBody for Full<Bytes> {
    fn from_refusal(body: Bytes) -> Self {
        Full::new(body)
    }
}

impl<E: 'static> RefusalBody for BoxBody<Bytes, E> {
    fn from_refusal(body: Bytes) -> Self {
        Full::new(body).map_err(never).boxed()
    }
}

impl<E: 'static> RefusalBody for UnsyncBoxBody<Bytes, E> {
    fn from_refusal(body: Bytes) -> Self {
        Full::new(body).map_err(never).boxed_unsync()
    }
}

#[cfg(feature = "axum")]
impl RefusalBody for axum::body::Body {
    fn from_refusal(body: Bytes) -> Self {
        axum::body::Body::from(body)
    }
}

#[cfg(feature = "tonic")]
impl RefusalBody for tonic::body::Body {
    fn from_refusal(body: Bytes) -> Self {
        // An empty `Full` is the end of the stream, which tonic keeps as its empty body: a gRPC
        // refusal is then a trailers-only response.
        tonic::body::Body::new(Full::new(body))
    }
}

fn never<E>(never: Infallible) -> E {
    match never {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const JSON: &[u8] = br#"{"error":"invalid_token"}"#;

    async fn content<B>(body: B) -> Bytes
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::fmt::Debug,
    {
        body.collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn every_body_holds_exactly_the_refusal() {
        let bytes = Bytes::from_static(JSON);
        assert_eq!(Bytes::from_refusal(bytes.clone()), JSON);
        assert_eq!(String::from_refusal(bytes.clone()).as_bytes(), JSON);
        assert_eq!(content(Full::from_refusal(bytes.clone())).await, JSON);
        assert_eq!(
            content(BoxBody::<Bytes, std::io::Error>::from_refusal(
                bytes.clone()
            ))
            .await,
            JSON
        );
        assert_eq!(
            content(UnsyncBoxBody::<Bytes, std::io::Error>::from_refusal(
                bytes.clone()
            ))
            .await,
            JSON
        );
        #[cfg(feature = "axum")]
        assert_eq!(
            content(axum::body::Body::from_refusal(bytes.clone())).await,
            JSON
        );
        #[cfg(feature = "tonic")]
        {
            use http_body::Body as _;
            assert_eq!(content(tonic::body::Body::from_refusal(bytes)).await, JSON);
            // A gRPC refusal has no body at all: trailers-only.
            assert!(tonic::body::Body::from_refusal(Bytes::new()).is_end_stream());
        }
    }
}
