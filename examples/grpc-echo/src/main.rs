//! Runs the gRPC echo service behind a trustgate layer.
//!
//! ```text
//! grpc-echo --listen 127.0.0.1:50051 --mode internal-tokens \
//!     --issuer http://127.0.0.1:9901 --audience echo
//! ```
//!
//! The layer is built (issuer keys fetched) before the port is bound; a bad configuration exits
//! with status 64, a port that cannot be bound or an unreadable TLS file with 71. When it is
//! ready it prints one line, `grpc-echo listening on ADDR` (the bound address, so `--listen
//! 127.0.0.1:0` works), and it stops on SIGTERM or Ctrl-C after the calls in flight.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use grpc_echo::TlsPem;
use trustgate_service::TrustgateLayer;

const EX_USAGE: u8 = 64;
const EX_OSERR: u8 = 71;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    /// No authentication: replies have an empty subject.
    None,
    /// Patterns 1/2: validate the external JWT (`--issuer` is the IdP).
    Jwt,
    /// Pattern 2: trust the gateway assertion (`--issuer` is the gateway's internal issuer).
    GatewayAssertion,
    /// Pattern 3: identity headers bound by the gateway assertion.
    IdentityHeaders,
    /// Pattern 4: internal tokens minted by the gateway.
    InternalTokens,
}

/// A gRPC echo service (trustgate.echo.v1.Echo) behind trustgate-service.
#[derive(Debug, Parser)]
#[command(name = "grpc-echo")]
struct Args {
    /// Where to listen (port 0: any free port, printed when ready).
    #[arg(long, default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// How callers are authenticated.
    #[arg(long, value_enum, default_value = "none")]
    mode: ModeArg,
    /// The issuer URL: the external IdP (jwt), or the gateway's internal issuer.
    #[arg(long)]
    issuer: Option<String>,
    /// This service's audience: its service id in the gateway modes.
    #[arg(long)]
    audience: Option<String>,
    /// PEM certificate chain: serve TLS instead of h2c (with --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

async fn layer(args: &Args) -> Result<Option<TrustgateLayer>, String> {
    if args.mode == ModeArg::None {
        return Ok(None);
    }
    let (Some(issuer), Some(audience)) = (args.issuer.as_deref(), args.audience.as_deref()) else {
        return Err("--issuer and --audience are required in this mode".to_owned());
    };
    let built = match args.mode {
        ModeArg::None => return Ok(None),
        ModeArg::Jwt => TrustgateLayer::jwt(issuer, audience).await,
        ModeArg::GatewayAssertion => TrustgateLayer::gateway_assertion(issuer, audience).await,
        ModeArg::IdentityHeaders => TrustgateLayer::identity_headers(issuer, audience).await,
        ModeArg::InternalTokens => TrustgateLayer::internal_tokens(issuer, audience).await,
    };
    built.map(Some).map_err(|e| e.to_string())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
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
            return ExitCode::from(EX_USAGE);
        }
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match TlsPem::from_files(cert, key) {
            Ok(tls) => Some(tls),
            Err(error) => {
                tracing::error!(%error, cert = %cert.display(), key = %key.display(), "cannot read the TLS files");
                return ExitCode::from(EX_OSERR);
            }
        },
        _ => None,
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::error!(%error, listen = %args.listen, "cannot listen");
            return ExitCode::from(EX_OSERR);
        }
    };
    let addr = listener.local_addr().unwrap_or(args.listen);
    // The one line on stdout: tests and scripts wait for it and read the port from it.
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "grpc-echo listening on {addr}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);
    tracing::info!(mode = ?args.mode, tls = tls.is_some(), listen = %addr, "serving");
    if let Err(error) = grpc_echo::serve(listener, layer, tls, shutdown_signal()).await {
        tracing::error!(%error, "server failed");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
