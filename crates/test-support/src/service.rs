//! The two issuers a service behind trustgate trusts, and the credentials each mints: the
//! external IdP's access tokens, and the gateway's internal tokens and assertions, forged here
//! exactly as the gateway writes them. For tests of trustgate-service and of services built on it.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::{TestIssuer, TestKey, claims, now_secs};

/// The external IdP and the gateway's internal issuer, each a real issuer on 127.0.0.1 with its
/// own key.
pub struct Issuers {
    pub external: TestIssuer,
    pub external_key: TestKey,
    pub internal: TestIssuer,
    pub internal_key: TestKey,
}

impl Issuers {
    pub async fn start() -> Self {
        let external = TestIssuer::start().await;
        let external_key = TestKey::es256("ext-1");
        external.set_keys(&[&external_key]);
        let internal = TestIssuer::start().await;
        let internal_key = TestKey::ed25519("int-1");
        internal.set_keys(&[&internal_key]);
        Self {
            external,
            external_key,
            internal,
            internal_key,
        }
    }

    /// An external access token for `aud`, with the standard claims plus `extra` (a `null` member
    /// removes that claim).
    pub fn external_token(&self, aud: &str, extra: Value) -> String {
        let mut payload = claims(&self.external.url(), aud, "alice");
        merge(&mut payload, extra);
        self.external_key.sign(&payload)
    }

    /// An internal token as the gateway mints it (pattern 4), plus `extra`.
    pub fn internal_token(&self, aud: &str, extra: Value) -> String {
        let now = now_secs();
        let mut payload = json!({
            "iss": self.internal.url(), "aud": aud, "sub": "alice",
            "roles": ["admin", "user"], "scope": "profile:read payments:read",
            "tenant_id": "t1", "client_id": "web", "ext_iss": self.external.url(),
            "iat": now, "nbf": now, "exp": now + 300, "jti": "int-jti-1",
        });
        merge(&mut payload, extra);
        self.internal_signed("internal+jwt", &payload)
    }

    /// A gateway assertion for the service `aud`, binding `method` and `htu` (path and query)
    /// and listing `hdr`, plus `extra`. Each has its own `jti`, as the gateway's do.
    pub fn assertion(
        &self,
        aud: &str,
        method: &str,
        htu: &str,
        hdr: Value,
        extra: Value,
    ) -> String {
        static MINTED: AtomicU64 = AtomicU64::new(0);
        let now = now_secs();
        let serial = MINTED.fetch_add(1, Ordering::Relaxed);
        let mut payload = json!({
            "iss": self.internal.url(), "aud": aud,
            "iat": now, "exp": now + 30, "jti": format!("a-{serial}-{method}-{htu}"),
            "htm": method, "htu": htu, "hdr": hdr,
            "sub": "alice", "roles": ["admin", "user"], "scope": "profile:read",
            "tenant_id": "t1", "client_id": "web", "ext_iss": self.external.url(),
        });
        merge(&mut payload, extra);
        self.internal_signed("trustgate-assertion+jwt", &payload)
    }

    /// `payload` signed by the internal issuer's key with header `typ`.
    pub fn internal_signed(&self, typ: &str, payload: &Value) -> String {
        let header = json!({"alg": "EdDSA", "kid": self.internal_key.kid, "typ": typ});
        self.internal_key
            .sign_with_header(&header.to_string(), &payload.to_string())
    }
}

/// The identity headers the gateway injects for alice, as an assertion's `hdr` lists them.
pub fn alice_headers() -> Value {
    json!({"x-user-id": "alice", "x-user-roles": "admin,user", "x-tenant-id": "t1"})
}

/// Sets `extra`'s members on `target`; a `null` member removes the claim instead.
fn merge(target: &mut Value, extra: Value) {
    if let (Value::Object(target), Value::Object(extra)) = (target, extra) {
        for (key, value) in extra {
            if value.is_null() {
                target.remove(&key);
            } else {
                target.insert(key, value);
            }
        }
    }
}
