//! The trust patterns a service can run in.

use std::fmt;

/// How a [`TrustgateLayer`](crate::TrustgateLayer) decides who the caller is.
///
/// Every mode but [`Mode::DangerTrustedHeaders`] accepts a request only on a signature it verified
/// itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Pattern 1 (and pattern 2 when the service validates the forwarded token again): a JWT from
    /// an external issuer in `Authorization: Bearer`, checked against the issuer's published keys.
    ExternalJwt,
    /// Pattern 2, trusting the gateway: the `X-Trustgate-Assertion` header, signed by the gateway's
    /// internal issuer for this service and bound to this request's method and path.
    GatewayAssertion,
    /// Pattern 3: identity headers injected by the gateway, accepted only with a gateway assertion
    /// that lists each of them with its exact value. The identity comes from the assertion.
    IdentityHeaders,
    /// Pattern 4: an internal token minted by the gateway (`typ: internal+jwt`) for this service.
    InternalToken,
    /// Identity headers trusted without any proof: whoever can reach the service can claim to be
    /// anyone. See
    /// [`TrustgateLayer::danger_trust_identity_headers_without_assertion`](crate::TrustgateLayer::danger_trust_identity_headers_without_assertion).
    DangerTrustedHeaders,
}

impl Mode {
    /// A stable label for logs, metrics and demo output.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::ExternalJwt => "external-jwt",
            Mode::GatewayAssertion => "gateway-assertion",
            Mode::IdentityHeaders => "identity-headers",
            Mode::InternalToken => "internal-token",
            Mode::DangerTrustedHeaders => "danger-trusted-headers",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
