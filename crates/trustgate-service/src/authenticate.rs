//! The per-mode decision: from a request's head to a [`Caller`] or a coarse [`AuthError`].

#[cfg(feature = "axum")]
use axum::extract::OriginalUri;
use http::request::Parts;
use serde_json::Value;
use trustgate_core::{AuthError, BoundRequest, Reason, Validator, check_assertion_binding};

use crate::caller::Caller;
use crate::headers::{HeaderIdentity, HeaderMapping};
use crate::mode::Mode;
use crate::replay::SeenAssertions;
use crate::request;

/// What a layer checks. Built only by the layer's constructors.
#[derive(Debug)]
pub(crate) enum Authenticator {
    /// A bearer token (external JWT or internal token; the validator's issuer config tells which).
    Bearer { mode: Mode, validator: Validator },
    /// A gateway assertion bound to the request, accepted once.
    Assertion {
        mode: Mode,
        validator: Validator,
        require_headers: bool,
        /// Whether an assertion that vouches for no token (an anonymous request on a gateway
        /// route with `allow_anonymous`) is admitted.
        allow_anonymous: bool,
        seen: SeenAssertions,
    },
    /// Headers trusted as they are.
    DangerHeaders(HeaderMapping),
}

impl Authenticator {
    pub(crate) fn mode(&self) -> Mode {
        match self {
            Authenticator::Bearer { mode, .. } | Authenticator::Assertion { mode, .. } => *mode,
            Authenticator::DangerHeaders(_) => Mode::DangerTrustedHeaders,
        }
    }

    pub(crate) fn validator(&self) -> Option<&Validator> {
        match self {
            Authenticator::Bearer { validator, .. }
            | Authenticator::Assertion { validator, .. } => Some(validator),
            Authenticator::DangerHeaders(_) => None,
        }
    }

    /// Runs every check of the mode. Nothing from the request reaches the handler unless this
    /// returns `Ok`.
    pub(crate) async fn authenticate(&self, parts: &Parts) -> Result<Caller, AuthError> {
        // Every mode, the danger one too: a handler must never find in the URL a token that
        // nothing checked, whatever the layer reads the identity from.
        request::refuse_token_in_query(&parts.uri)?;
        match self {
            Authenticator::Bearer { mode, validator } => {
                let token =
                    request::bearer_token(&parts.headers)?.ok_or(AuthError::MissingToken)?;
                let verified = validator.validate(token).await?;
                Ok(Caller::verified(*mode, verified))
            }
            Authenticator::Assertion {
                mode,
                validator,
                require_headers,
                allow_anonymous,
                seen,
            } => {
                let assertion =
                    request::assertion(&parts.headers)?.ok_or(AuthError::MissingToken)?;
                let verified = validator.validate(assertion).await?;
                // Behind `Router::nest` the URI is shortened; the gateway bound the full one.
                #[cfg(feature = "axum")]
                let uri = parts
                    .extensions
                    .get::<OriginalUri>()
                    .map_or(&parts.uri, |original| &original.0);
                #[cfg(not(feature = "axum"))]
                let uri = &parts.uri;
                let request = BoundRequest {
                    method: &parts.method,
                    path_and_query: uri.path_and_query().map_or("", |pq| pq.as_str()),
                    headers: &parts.headers,
                };
                if let Err(mismatch) =
                    check_assertion_binding(verified.claims(), &request, *require_headers)
                {
                    tracing::debug!(
                        mode = mode.as_str(),
                        reason = mismatch.as_str(),
                        "gateway assertion does not bind this request"
                    );
                    return Err(mismatch.into());
                }
                // The gateway signs an assertion for a request without a token too, on a route
                // with `allow_anonymous`: it proves the request came through the gateway, not that
                // anyone signed in. Handlers take a `Caller` to mean an authenticated caller, so
                // such a request is answered as one without a credential, unless the service
                // said it serves anonymous requests. Before the replay check, so that a refused
                // assertion does not use up its id.
                if crate::caller::vouches_for_no_token(&verified) && !*allow_anonymous {
                    tracing::debug!(
                        mode = mode.as_str(),
                        "gateway assertion for an anonymous request; refused (allow_anonymous is off)"
                    );
                    return Err(AuthError::MissingToken);
                }
                // Last, so that only an assertion valid for this very request uses up its id.
                let Some(Value::String(jti)) = verified.claims().get("jti") else {
                    tracing::debug!(
                        mode = mode.as_str(),
                        "gateway assertion without a string jti"
                    );
                    return Err(Reason::RequestBinding.into());
                };
                // An assertion always has an `exp` (a required claim of the mode), and its id is kept
                // until that plus the leeway.
                let Some(exp) = verified.expires_at() else {
                    return Err(Reason::MissingClaim.into());
                };
                match seen.first_use_anywhere(jti, exp).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::debug!(mode = mode.as_str(), "gateway assertion replayed");
                        return Err(Reason::Replayed.into());
                    }
                    Err(err) => {
                        tracing::warn!(mode = mode.as_str(), error = %err, "assertion replay store unavailable; refused");
                        return Err(AuthError::KeysUnavailable);
                    }
                }
                Ok(Caller::verified(*mode, verified))
            }
            Authenticator::DangerHeaders(mapping) => {
                let identity = HeaderIdentity::from_headers(&parts.headers, mapping)?;
                Ok(Caller::from_trusted_headers(identity))
            }
        }
    }
}
