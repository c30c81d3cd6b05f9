//! The command line: `serve`, `check`, `explain`, `snippet`, `audit` and `demo`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// trustgate: JWT validation where your trust model says it belongs.
#[derive(Debug, Parser)]
#[command(name = "trustgate", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the gateway.
    Serve {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate the configuration, resolve discovery, fetch keys and print what was found:
    /// issuers, the internal issuer and every route. Exits 0 when ready, 1 when an issuer has no
    /// usable keys or `server.tls`'s certificate or key cannot be loaded, 64 for a configuration
    /// error.
    Check {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Print the summary as JSON, for tools.
        #[arg(long)]
        json: bool,
    },
    /// Run the four trust patterns with a development issuer and sample services, and a page
    /// that shows them. Development only: needs a build with `--features demo`.
    Demo {
        /// The gateway port on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// The admin port on 127.0.0.1 (metrics, readiness, internal JWKS).
        #[arg(long, default_value_t = 9901)]
        admin_port: u16,
    },
    /// Write the configuration a proxy in front needs to ask the decision endpoint
    /// (`[forward_auth]`), generated from the trustgate configuration so that no identity
    /// header is forgotten. `nginx` writes `upstream.conf` (http level: the connections to the
    /// decision endpoint), `auth.conf` (server level) and `protect.conf` (each protected
    /// location); `caddy` writes `trustgate.caddy` (imported in each protected site or handle
    /// block, before reverse_proxy).
    Snippet {
        /// The proxy: `nginx` or `caddy`.
        proxy: String,
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// Write the files into this directory instead of printing them.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Work with the audit log (`[audit]`).
    Audit {
        #[command(subcommand)]
        action: AuditCommand,
    },
    /// Print a shell completion script: `trustgate completions bash > /etc/bash_completion.d/trustgate`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `trustgate man | man -l -`.
    Man,
    /// Add or list revocations through a gateway's admin API (`[revocation]` and
    /// `admin.token_file`); with a Redis store every replica enforces them. Exits 0 when the
    /// API accepted the request, 1 when it refused it, 64 for a usage error (an unreadable token
    /// file, an empty internal token, an admin URL that is not http://) or an admin API that
    /// cannot be reached.
    Revoke {
        /// The admin listener of any replica.
        #[arg(long, default_value = "http://127.0.0.1:9901")]
        admin: String,
        /// The file holding the admin API token (`admin.token_file`).
        #[arg(long)]
        token_file: PathBuf,
        #[command(subcommand)]
        what: crate::fleet::revoke_cli::What,
    },
    /// Show, step by step, what the gateway would do with a request. Exits 0 when it would be
    /// forwarded (or answered by the gateway itself), 1 when refused, 64 for a configuration or usage error, 69 when the Redis store
    /// it reads the revocation list from cannot be reached. The route's rate limit
    /// is not evaluated (that would spend the caller's budget), nor, with the memory store, the
    /// revocation list (it is in the running gateway's memory); tokens, also an `access_token`
    /// in the query, are printed only as their length.
    Explain {
        /// The configuration file.
        #[arg(short, long)]
        config: PathBuf,
        /// The request path (and query).
        #[arg(long)]
        path: String,
        /// The request method.
        #[arg(long, default_value = "GET")]
        method: String,
        /// The Host header (default `localhost`, or the one given with `-H`; the two must agree).
        #[arg(long)]
        host: Option<String>,
        /// A bearer token to send in Authorization (spaces and tabs around it are ignored, as
        /// HTTP parsers ignore them around a header value).
        #[arg(long)]
        token: Option<String>,
        /// Extra request headers, `Name: value`; repeatable.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check a chained audit log (`audit.chain = true`): every event's hash against its content
    /// and every `prev` against the event before. Exits 0 and prints the count when intact, 1
    /// naming the first broken line otherwise (an empty file too), 66 when the file cannot be
    /// read.
    Verify {
        /// The audit log file.
        file: PathBuf,
        /// A hash kept from this log earlier, away from whoever can write the file (the last
        /// hash `verify` printed, or a shipped event's `hash`): the chain must still hold that
        /// event. Without it, a rewrite of the file from some event on goes unnoticed, since the
        /// hash has no key.
        #[arg(long, value_name = "HASH")]
        expect: Option<String>,
    },
}
