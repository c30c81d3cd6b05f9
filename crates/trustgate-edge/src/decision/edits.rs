//! A decision's header edits: applied to the request that goes upstream, or listed for a front
//! door that answers instead of forwarding.

use http::HeaderMap;
use http::header::{AUTHORIZATION, Entry};

use super::{Credentials, Decision, Engine, HeaderEdit};
use crate::headers::is_uri_override_name;
use crate::mint;
use crate::token::remove_cookie;
use crate::trust::Trust;

impl Decision {
    /// Applies the decision's header edits to the request that goes upstream: client identity
    /// and URI-override headers out, the credentials as the pattern says, the identity in, the
    /// assertion on. Transport headers (hop-by-hop, X-Forwarded-*, Host) are the front door's.
    pub fn apply(&self, engine: &Engine, headers: &mut HeaderMap) {
        self.apply_removing(engine, headers, |_| false);
    }

    /// [`Decision::apply`], removing in the same pass the client headers whose (lower-case) names
    /// `front_door_removes` picks: the proxy's own, a `traceparent` and `tracestate` it does not
    /// believe, cost a hash lookup each when removed one by one.
    pub fn apply_removing(
        &self,
        engine: &Engine,
        headers: &mut HeaderMap,
        front_door_removes: impl Fn(&[u8]) -> bool,
    ) {
        // One pass, each name's text read once: this runs on every forwarded request.
        let stripped = crate::headers::remove_where(headers, |name| {
            let name = name.as_str().as_bytes();
            engine.identity_headers.is_identity_name(name)
                || is_uri_override_name(name)
                || front_door_removes(name)
        });
        if stripped > 0 {
            tracing::debug!(target: "trustgate::audit", stripped, "removed client identity, URI-override and front-door headers");
        }
        let cookie = self
            .route
            .trust
            .validation()
            .and_then(|v| v.token_cookie.as_deref());
        match &self.credentials {
            Credentials::Keep => {
                // The client's own token goes on: never indexed over HTTP/2, like the ones the
                // gateway mints (see `mint::credential_value`). `entry` would make room for an
                // insertion, so it is asked only when there is a token.
                if headers.contains_key(AUTHORIZATION)
                    && let Entry::Occupied(mut tokens) = headers.entry(AUTHORIZATION)
                {
                    tokens
                        .iter_mut()
                        .for_each(|token| token.set_sensitive(true));
                }
            }
            Credentials::DropAuthorization => {
                headers.remove(AUTHORIZATION);
            }
            Credentials::Identity => {
                // The raw token never crosses this boundary: identity travels as headers built
                // from the verified claims only.
                headers.remove(AUTHORIZATION);
                if let Some(cookie) = cookie {
                    remove_cookie(headers, cookie);
                }
                if let (Trust::IdentityHeaders(pattern), Some(token)) =
                    (&self.route.trust, &self.token)
                {
                    pattern.inject(token.identity(), headers);
                }
            }
            Credentials::Internal(value) => {
                // External identity never crosses into the mesh: the external token is replaced.
                headers.remove(AUTHORIZATION);
                if let Some(cookie) = cookie {
                    remove_cookie(headers, cookie);
                }
                headers.insert(AUTHORIZATION, value.clone());
            }
        }
        if let Some(assertion) = &self.assertion {
            headers.insert(mint::assertion_header(), assertion.clone());
        }
    }

    /// The route-specific header edits, in the order [`Decision::apply`] makes them (after the
    /// client headers of [`Engine::client_headers_removed`]).
    pub fn header_edits(&self) -> Vec<HeaderEdit> {
        let mut edits = Vec::new();
        let cookie = self
            .route
            .trust
            .validation()
            .and_then(|v| v.token_cookie.clone());
        match &self.credentials {
            Credentials::Keep => {}
            Credentials::DropAuthorization => edits.push(HeaderEdit::Remove(AUTHORIZATION)),
            Credentials::Identity | Credentials::Internal(_) => {
                edits.push(HeaderEdit::Remove(AUTHORIZATION));
                if let Some(cookie) = cookie {
                    edits.push(HeaderEdit::RemoveCookie(cookie));
                }
            }
        }
        if let (Trust::IdentityHeaders(pattern), Some(token)) = (&self.route.trust, &self.token) {
            let identity = token.identity();
            for (name, field) in &pattern.headers {
                edits.push(match identity.header_value(field) {
                    Some(value) => HeaderEdit::Set(name.clone(), value),
                    None => HeaderEdit::Remove(name.clone()),
                });
            }
        }
        if let Credentials::Internal(value) = &self.credentials {
            edits.push(HeaderEdit::Set(AUTHORIZATION, value.clone()));
        }
        if let Some(assertion) = &self.assertion {
            edits.push(HeaderEdit::Set(mint::assertion_header(), assertion.clone()));
        }
        edits
    }
}
