//! W3C Trace Context's `traceparent` header (<https://www.w3.org/TR/trace-context/>), read and
//! written by the gateway (to continue a trace from a trusted proxy and to hand it on upstream)
//! and by `trustgate-service` (to hang its spans under the gateway's).
//!
//! Hand-written rather than taken from an OpenTelemetry propagator: it is 55 bytes of fixed
//! layout, the gateway reads it from untrusted clients on every traced request, and this way the
//! parse allocates nothing and is tested here, apart from any tracing library.

use http::HeaderValue;

/// The header's name.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor-specific companion header, forwarded only with a `traceparent` that was believed.
pub const TRACESTATE: &str = "tracestate";
/// W3C Baggage: the context entries OpenTelemetry's default propagators extract along with the
/// trace (`user.id=…`). A client's is forwarded only with a `traceparent` that was believed.
pub const BAGGAGE: &str = "baggage";

/// The `sampled` bit of `trace-flags`.
const SAMPLED: u8 = 0x01;

/// A parsed `traceparent`: the trace, the caller's span in it, and its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never all zeros).
    pub trace_id: [u8; 16],
    /// The caller's span id (never all zeros).
    pub parent_id: [u8; 8],
    /// `trace-flags`; bit 0 is `sampled`.
    pub flags: u8,
}

impl TraceParent {
    /// Parses a header value. Version `00` must be exactly 55 bytes; a later version may carry
    /// more after a `-` (the specification's forward compatibility), which is ignored. Only
    /// lower-case hex is accepted, and an all-zero trace or span id, or version `ff`, is invalid.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < 55 {
            return None;
        }
        let version = hex_byte(value[0], value[1])?;
        if version == 0xff || (version == 0 && value.len() != 55) {
            return None;
        }
        if value.len() > 55 && value[55] != b'-' {
            return None;
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let mut trace_id = [0u8; 16];
        for (i, byte) in trace_id.iter_mut().enumerate() {
            *byte = hex_byte(value[3 + 2 * i], value[4 + 2 * i])?;
        }
        let mut parent_id = [0u8; 8];
        for (i, byte) in parent_id.iter_mut().enumerate() {
            *byte = hex_byte(value[36 + 2 * i], value[37 + 2 * i])?;
        }
        let flags = hex_byte(value[53], value[54])?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Whether the caller sampled this trace.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The trace id as 32 lower-case hex digits.
    pub fn trace_id_hex(&self) -> String {
        let mut text = String::with_capacity(32);
        push_hex(&mut text, &self.trace_id);
        text
    }

    /// This `traceparent` as OpenTelemetry's remote parent context.
    #[cfg(feature = "opentelemetry")]
    pub fn remote_context(&self) -> opentelemetry::Context {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        let remote = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.parent_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        );
        opentelemetry::Context::new().with_remote_span_context(remote)
    }

    /// The header value, version `00`. Written on the stack: one allocation, the value's own.
    pub fn to_header(&self) -> HeaderValue {
        // Written once per forwarded request when tracing is on: a byte's two digits per lookup,
        // over fixed ranges, so that the compiler drops the bounds checks.
        fn hex(out: &mut [u8], bytes: &[u8]) {
            for (pair, byte) in out.chunks_exact_mut(2).zip(bytes) {
                pair.copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
            }
        }
        let mut text = [b'-'; 55];
        text[0] = b'0';
        text[1] = b'0';
        hex(&mut text[3..35], &self.trace_id);
        hex(&mut text[36..52], &self.parent_id);
        hex(&mut text[53..55], &[self.flags]);
        // Only hex digits and '-': always a valid header value.
        HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Every byte's two lower-case hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut byte = 0;
    while byte < 256 {
        pairs[byte] = [DIGITS[byte >> 4], DIGITS[byte & 0x0f]];
        byte += 1;
    }
    pairs
};

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(high: u8, low: u8) -> Option<u8> {
    Some(hex_digit(high)? << 4 | hex_digit(low)?)
}

/// Appends `bytes` as lower-case hex.
pub(crate) fn push_hex(text: &mut String, bytes: &[u8]) {
    for byte in bytes {
        let [high, low] = HEX_PAIRS[usize::from(*byte)];
        text.push(char::from(high));
        text.push(char::from(low));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::TraceParent;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips() {
        let parsed = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        assert!(parsed.sampled());
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            parsed.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(parsed.to_header(), EXAMPLE);
    }

    #[test]
    fn invalid_values_are_refused() {
        let refused = [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            // Upper case, all-zero ids, version ff, extra bytes on version 00, bad separators.
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ];
        for value in refused {
            assert_eq!(TraceParent::parse(value.as_bytes()), None, "{value:?}");
        }
    }

    #[test]
    fn a_later_version_may_carry_more() {
        let value = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let parsed = TraceParent::parse(value.as_bytes()).unwrap();
        assert!(!parsed.sampled());
        // Written back as version 00, without what this version does not know.
        assert_eq!(
            parsed.to_header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            let _ = TraceParent::parse(&bytes);
        }

        #[test]
        fn written_values_parse_back(trace in proptest::array::uniform16(1u8..), span in proptest::array::uniform8(1u8..), flags: u8) {
            let original = TraceParent { trace_id: trace, parent_id: span, flags };
            let header = original.to_header();
            proptest::prop_assert_eq!(TraceParent::parse(header.as_bytes()), Some(original));
        }
    }
}
