//! The trustgate gateway binary. `main` stays thin: parse the command line, load and validate the
//! configuration before binding any port, then hand over. A bad configuration exits with 64
//! (EX_USAGE) and a message that says how to fix it.
#![allow(clippy::print_stderr)]

mod admin;
mod allocator;
mod audit;
mod cli;
mod config;
mod connections;
#[cfg(feature = "demo")]
mod demo;
mod ext_authz;
mod fleet;
mod forward_auth;
mod gateway;
mod inspect;
mod internal_issuer;
mod limits;
mod metrics;
mod proxy;
mod reader_safe;
mod record;
mod runtime;
mod server;
mod signer;
mod snippet;
mod telemetry;
mod upstream;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};

const EX_USAGE: u8 = 64;
/// A port that cannot be bound, or a store that cannot be reached, is not the file's fault
/// (sysexits' EX_UNAVAILABLE): a supervisor may retry it, where a configuration error needs a
/// person ([`start_failure`]).
const EX_UNAVAILABLE: u8 = 69;
/// A file to read that cannot be (sysexits' EX_NOINPUT).
const EX_NOINPUT: u8 = 66;

/// The log on standard error, for the commands that only log.
fn init_logging(level: &str, json: bool) {
    let _ = telemetry::init(level, json, colour_on_stderr(), None);
}

/// ANSI colour only for a person at a terminal: never into a file, a pipe or a log collector,
/// where escape codes are noise. `NO_COLOR` (no-color.org) turns it off, `CLICOLOR_FORCE=1`
/// forces it on.
fn colour_on_stderr() -> bool {
    use std::io::IsTerminal as _;
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    if set("NO_COLOR") {
        false
    } else {
        set("CLICOLOR_FORCE") || std::io::stderr().is_terminal()
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
        match term {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One worker thread gets Tokio's single-threaded scheduler: with nothing to steal from or hand
/// off to, the multi-threaded one only adds synchronisation to every wake-up.
fn build_runtime(worker_threads: usize) -> Result<tokio::runtime::Runtime, std::io::Error> {
    let mut builder = match worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    builder.enable_all().build()
}

fn main() -> ExitCode {
    // First, while this is the only thread.
    let purge_delay = allocator::shorten_purge_delay();
    let cli = Cli::parse();
    // `serve` reads its configuration before anything else: the worker count comes from it, and a
    // bad file must fail before any port is bound.
    let (worker_threads, loaded) = match &cli.command {
        Command::Serve { config: path } => match config::load(path) {
            Ok(config) => (config.server.worker_threads, Some(config)),
            Err(err) => {
                eprintln!("trustgate: {err}");
                return ExitCode::from(EX_USAGE);
            }
        },
        _ => (0, None),
    };
    let runtime = match build_runtime(worker_threads) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trustgate: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match cli.command {
            Command::Serve { config: path } => {
                let Some(config) = loaded else {
                    return ExitCode::FAILURE;
                };
                // The log as `[log]` says, and with `[telemetry]` the span exporter (built in the
                // runtime: its gRPC channel and HTTP client run on it).
                let exporter = match telemetry::init(
                    &config.log.level,
                    config.log.format == config::LogFormat::Json,
                    colour_on_stderr(),
                    config.telemetry.as_ref(),
                ) {
                    Ok(exporter) => exporter,
                    Err(err) => {
                        eprintln!("trustgate: {err}");
                        return ExitCode::from(EX_USAGE);
                    }
                };
                if let allocator::PurgeDelay::Unrecognised(value) = purge_delay {
                    tracing::warn!(
                        value,
                        "mimalloc's purge delay option read back an unexpected value; left as it is (memory is returned to the kernel later)"
                    );
                }
                let served = server::run(config, Some(path), |_| {}, shutdown_signal()).await;
                if let Some(exporter) = exporter {
                    exporter.shutdown().await;
                }
                match served {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => start_failure(&err),
                }
            }
            #[cfg(not(feature = "demo"))]
            Command::Demo { .. } => {
                // The development issuer signs a token for anyone: it is not in a production build.
                eprintln!(
                    "trustgate demo: this binary was built without the demo; run `cargo run --release --features demo -- demo`"
                );
                ExitCode::from(EX_USAGE)
            }
            #[cfg(feature = "demo")]
            Command::Demo { port, admin_port } => {
                init_logging("warn", false);
                match demo::run(port, admin_port, shutdown_signal()).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("trustgate demo: {err}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Snippet { proxy, config: path, dir } => {
                let written = config::load(&path)
                    .and_then(|config| snippet::write(&config, &proxy, dir.as_deref()));
                match written {
                    Ok(text) => {
                        #[allow(clippy::print_stdout)]
                        {
                            print!("{text}");
                        }
                        ExitCode::SUCCESS
                    }
                    Err(err) => {
                        eprintln!("trustgate: {err}");
                        ExitCode::from(EX_USAGE)
                    }
                }
            }
            Command::Audit {
                action: cli::AuditCommand::Verify { file, expect },
            } => match expect.as_deref() {
                // Not echoed: it is not a hash, so it may be anything, a terminal escape too.
                Some(hash) if !audit::is_hash(hash) => {
                    eprintln!(
                        "trustgate audit verify: --expect takes an event's hash: 64 lowercase hex digits"
                    );
                    ExitCode::from(EX_USAGE)
                }
                expect => match audit::verify_expecting(&file, expect) {
                    Ok(verified) => {
                        #[allow(clippy::print_stdout)]
                        {
                            println!(
                                "{}: {} events, chain intact (first prev {}, last hash {})",
                                file.display(),
                                verified.events,
                                verified.starts_from,
                                verified.last
                            );
                            if let Some(line) = verified.expected_at {
                                println!("the expected hash is line {line}'s");
                            }
                        }
                        ExitCode::SUCCESS
                    }
                Err(Ok(broken)) => {
                    eprintln!(
                        "trustgate audit verify: {}: line {}: {}",
                        file.display(),
                        broken.line,
                        broken.problem
                    );
                    ExitCode::FAILURE
                }
                    Err(Err(err)) => {
                        eprintln!("trustgate audit verify: {}: {err}", file.display());
                        ExitCode::from(EX_NOINPUT)
                    }
                },
            },
            Command::Completions { shell } => {
                let mut command = <Cli as clap::CommandFactory>::command();
                clap_complete::generate(shell, &mut command, "trustgate", &mut std::io::stdout());
                ExitCode::SUCCESS
            }
            Command::Man => {
                let command = <Cli as clap::CommandFactory>::command();
                match clap_mangen::Man::new(command).render(&mut std::io::stdout()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => {
                        eprintln!("trustgate: cannot write the manual page: {err}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Check { config: path, json } => {
                init_logging("warn", false);
                match inspect::check(&path, json).await {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::FAILURE,
                    Err(err) => start_failure(&err),
                }
            }
            Command::Revoke {
                admin,
                token_file,
                what,
            } => match fleet::revoke_cli::run(&admin, &token_file, what).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(err) => {
                    eprintln!("trustgate revoke: {err}");
                    ExitCode::from(match err {
                        fleet::revoke_cli::RevokeError::Usage(_) => EX_USAGE,
                        fleet::revoke_cli::RevokeError::Unavailable(_) => EX_UNAVAILABLE,
                    })
                }
            },
            Command::Explain {
                config: path,
                path: target,
                method,
                host,
                token,
                headers,
            } => {
                init_logging("warn", false);
                match inspect::explain(
                    &path,
                    &method,
                    &target,
                    host.as_deref(),
                    token.as_deref(),
                    &headers,
                )
                .await
                {
                    // Like `check`: a script can tell "would be forwarded" from "would be
                    // refused" without reading the output.
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => ExitCode::FAILURE,
                    Err(err) => start_failure(&err),
                }
            }
        }
    })
}

/// Prints why `serve` did not start, or `check` or `explain` could not build the gateway, and
/// exits as the reason says: 64 for the file (a person must fix it), 69 for the state of the
/// machine or the network (a port in use, TLS files not written yet, the store out of reach),
/// which a supervisor may retry. The one place these commands' failures become exit codes.
fn start_failure(err: &server::StartError) -> ExitCode {
    eprintln!("trustgate: {err}");
    ExitCode::from(match err {
        server::StartError::Config(_) => EX_USAGE,
        server::StartError::Bind { .. }
        | server::StartError::Tls(_)
        | server::StartError::StoreUnavailable(_) => EX_UNAVAILABLE,
    })
}
