//! Test fixtures for trustgate: real keys, token forging, a real local issuer, the issuer pair a
//! service trusts (with the gateway's internal tokens and assertions), an echo upstream that
//! records exactly what it received, and a test CA. Everything listens on 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

pub mod certs;
pub mod echo;
pub mod h2echo;
pub mod interleaved;
pub mod issuer;
pub mod keys;
pub mod redis;
pub mod service;

pub use certs::TestCerts;
pub use echo::{EchoUpstream, RecordedRequest};
pub use h2echo::{DataThenTrailers, H2Echo, H2Request};
pub use interleaved::{Interleaved, interleaved};
pub use issuer::{Behavior, TestIssuer};
pub use keys::{TestKey, b64, claims, now_secs, token_with_header};
pub use redis::{RedisCluster, RedisSentinel, RedisServer, RedisTls};
pub use service::{Issuers, alice_headers};

/// A header map with `pairs` appended in order, so a name may repeat.
pub fn header_map(pairs: &[(&str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}
