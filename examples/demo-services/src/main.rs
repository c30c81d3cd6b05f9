//! Runs one sample service behind a trustgate layer.
//!
//! ```text
//! demo-service --service users --mode internal-token \
//!     --issuer http://127.0.0.1:9901 --audience users-api --listen 127.0.0.1:8081
//! ```
//!
//! The layer is built (issuer keys fetched) before the port is bound; a bad configuration exits
//! with status 64.

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use trustgate_service::{HeaderMapping, TrustgateLayer};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Service {
    Users,
    Courses,
    Payments,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    /// Pattern 1/2: validate the external JWT (`--issuer` is the IdP).
    ExternalJwt,
    /// Pattern 2: trust the gateway assertion (`--issuer` is the gateway's internal issuer).
    GatewayAssertion,
    /// Pattern 3: identity headers bound by the gateway assertion.
    IdentityHeaders,
    /// Pattern 4: internal tokens minted by the gateway.
    InternalToken,
    /// DANGEROUS: identity headers with no proof at all.
    DangerTrustedHeaders,
}

/// One trustgate sample service.
#[derive(Debug, Parser)]
#[command(name = "demo-service")]
struct Args {
    /// Which service to run.
    #[arg(long, value_enum)]
    service: Service,
    /// How callers are authenticated.
    #[arg(long, value_enum)]
    mode: ModeArg,
    /// The issuer URL (external IdP, or the gateway's internal issuer). Not used in danger mode.
    #[arg(long)]
    issuer: Option<String>,
    /// This service's audience (its service id in the gateway modes). Not used in danger mode.
    #[arg(long)]
    audience: Option<String>,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
}

async fn layer(args: &Args) -> Result<TrustgateLayer, String> {
    let endpoints = || match (args.issuer.as_deref(), args.audience.as_deref()) {
        (Some(issuer), Some(audience)) => Ok((issuer, audience)),
        _ => Err("--issuer and --audience are required in this mode".to_owned()),
    };
    let built = match args.mode {
        ModeArg::ExternalJwt => {
            let (issuer, audience) = endpoints()?;
            TrustgateLayer::jwt(issuer, audience).await
        }
        ModeArg::GatewayAssertion => {
            let (issuer, audience) = endpoints()?;
            TrustgateLayer::gateway_assertion(issuer, audience).await
        }
        ModeArg::IdentityHeaders => {
            let (issuer, audience) = endpoints()?;
            TrustgateLayer::identity_headers(issuer, audience).await
        }
        ModeArg::InternalToken => {
            let (issuer, audience) = endpoints()?;
            TrustgateLayer::internal_tokens(issuer, audience).await
        }
        ModeArg::DangerTrustedHeaders => Ok(
            TrustgateLayer::danger_trust_identity_headers_without_assertion(
                HeaderMapping::default(),
            ),
        ),
    };
    built.map_err(|e| e.to_string())
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let layer = match layer(&args).await {
        Ok(layer) => layer,
        Err(error) => {
            tracing::error!(%error, "invalid configuration");
            return ExitCode::from(64);
        }
    };
    let router = match args.service {
        Service::Users => demo_services::users(layer),
        Service::Courses => demo_services::courses(layer),
        Service::Payments => demo_services::payments(layer),
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %args.listen, "cannot listen");
            return ExitCode::from(71);
        }
    };
    tracing::info!(service = ?args.service, mode = ?args.mode, listen = %args.listen, "serving");
    if let Err(error) = axum::serve(listener, router).await {
        tracing::error!(%error, "server failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
