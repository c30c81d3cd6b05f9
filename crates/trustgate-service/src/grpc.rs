//! The caller and the guards' refusals inside a tonic handler (feature `tonic`).
//!
//! tonic moves the HTTP request's extensions into `tonic::Request::extensions()`, so the
//! [`Caller`] the layer inserted is there. A refusal becomes a `tonic::Status` through the same
//! one mapping as the layer's own gRPC refusals (`AuthError::to_grpc_response`): code, message
//! and headers (`WWW-Authenticate` among them, as metadata) all come from it.

use trustgate_core::AuthError;

use crate::caller::{Caller, Rejection};

impl Caller {
    /// The caller of a gRPC call, as the [`TrustgateLayer`](crate::TrustgateLayer) in front of the
    /// tonic server established it.
    ///
    /// ```
    /// use tonic::{Request, Response, Status};
    /// use trustgate_service::Caller;
    ///
    /// async fn whoami(request: Request<()>) -> Result<Response<String>, Status> {
    ///     let caller = Caller::from_grpc(&request)?;
    ///     caller.require_scope("profile:read")?;
    ///     Ok(Response::new(caller.require_subject()?.to_owned()))
    /// }
    /// ```
    ///
    /// # Errors
    /// `UNAUTHENTICATED` (with `www-authenticate: Bearer` metadata) when the request carries no
    /// `Caller`: the service is not behind the layer. That is a wiring mistake, and it must not
    /// serve anyone.
    pub fn from_grpc<T>(request: &tonic::Request<T>) -> Result<&Caller, tonic::Status> {
        request.extensions().get::<Caller>().ok_or_else(|| {
            tracing::warn!("Caller requested on a gRPC service without TrustgateLayer; refusing");
            Rejection::from(AuthError::MissingToken).into()
        })
    }
}

/// A guard's refusal (`require_subject`, `require_role`, `require_scope`, `require_tenant`) as a
/// gRPC status: `PERMISSION_DENIED` with the message `insufficient_scope` and the metadata
/// `www-authenticate: Bearer error="insufficient_scope"` (for an anonymous caller,
/// `UNAUTHENTICATED` with `www-authenticate: Bearer`), so `?` works in a tonic handler.
impl From<Rejection> for tonic::Status {
    fn from(rejection: Rejection) -> Self {
        let response = rejection.error().to_grpc_response();
        // `to_grpc_response` always sets `grpc-status`; the fallback keeps this total without
        // ever admitting the call.
        tonic::Status::from_header_map(response.headers())
            .unwrap_or_else(|| tonic::Status::unauthenticated("unauthenticated"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tonic::Code;
    use trustgate_core::{Reason, RequestProblem};

    use super::*;

    fn status(error: AuthError) -> tonic::Status {
        Rejection::from(error).into()
    }

    #[test]
    fn rejections_keep_the_one_mapping() {
        let denied = status(AuthError::InsufficientScope);
        assert_eq!(denied.code(), Code::PermissionDenied);
        assert_eq!(denied.message(), "insufficient_scope");
        assert_eq!(
            denied.metadata().get("www-authenticate").unwrap(),
            r#"Bearer error="insufficient_scope""#
        );
        for (error, code, message) in [
            (
                AuthError::MissingToken,
                Code::Unauthenticated,
                "unauthenticated",
            ),
            (
                AuthError::InvalidToken(Reason::Expired),
                Code::Unauthenticated,
                "invalid_token",
            ),
            (
                AuthError::InvalidRequest(RequestProblem::MultipleTokens),
                Code::InvalidArgument,
                "invalid_request",
            ),
            (
                AuthError::KeysUnavailable,
                Code::Unavailable,
                "temporarily_unavailable",
            ),
        ] {
            let status = status(error);
            assert_eq!(status.code(), code, "{error:?}");
            assert_eq!(status.message(), message, "{error:?}");
            // The code travels in the status, never twice as metadata.
            assert!(status.metadata().get("grpc-status").is_none());
        }
    }

    #[test]
    fn no_caller_is_unauthenticated() {
        let request = tonic::Request::new(());
        let refused = Caller::from_grpc(&request).unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated);
        assert_eq!(
            refused.metadata().get("www-authenticate").unwrap(),
            "Bearer"
        );
    }
}
