//! `trustgate revoke`: the admin API from the command line. The admin token is read from a file,
//! and an internal token to revoke preferably from standard input: a secret on the command line
//! is in the process list (`ps`, `/proc/*/cmdline`) for other users to read, and in the shell's
//! history. Neither is ever printed.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What to revoke (or list).
#[derive(Debug, clap::Subcommand)]
pub(crate) enum What {
    /// One token, by its `jti`.
    Jti {
        /// The token's `jti`.
        jti: String,
        /// The issuer: its id in the configuration, or its `iss`.
        #[arg(long)]
        issuer: String,
        /// The token's `exp` (seconds since the epoch), so the entry can go when it expires.
        #[arg(long)]
        exp: Option<i64>,
    },
    /// Every token of a subject issued at or before a time ("log out everywhere").
    Sub {
        /// The subject.
        sub: String,
        /// The issuer: its id in the configuration, or its `iss`.
        #[arg(long)]
        issuer: String,
        /// The cut-off (seconds since the epoch); default now plus the issuer's leeway.
        #[arg(long)]
        before: Option<i64>,
    },
    /// The subject behind an internal token this gateway minted (its external tokens issued up
    /// to the time it was minted, plus the issuer's leeway). Give the token on standard input
    /// (`trustgate revoke … internal-token < token.txt`): on the command line it is in the
    /// process list (`ps`) for other users to read, and in the shell's history.
    InternalToken {
        /// The internal token; omitted or `-`, it is read from standard input (preferred).
        /// Surrounding whitespace is ignored.
        token: Option<String>,
    },
    /// List the revocations in force.
    List,
}

/// Sends the request; prints the answer. Returns whether the API accepted it.
/// Why `revoke` could not ask: the command line or its files (exit 64), or the admin API out of
/// reach (exit 69, which a script may retry).
#[derive(Debug)]
pub(crate) enum RevokeError {
    Usage(String),
    Unavailable(String),
}

impl From<String> for RevokeError {
    fn from(message: String) -> Self {
        RevokeError::Usage(message)
    }
}

impl From<&str> for RevokeError {
    fn from(message: &str) -> Self {
        RevokeError::Usage(message.to_owned())
    }
}

impl std::fmt::Display for RevokeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RevokeError::Usage(message) | RevokeError::Unavailable(message) => f.write_str(message),
        }
    }
}

pub(crate) async fn run(admin: &str, token_file: &Path, what: What) -> Result<bool, RevokeError> {
    let token = std::fs::read_to_string(token_file)
        .map_err(|err| format!("cannot read {}: {err}", token_file.display()))?;
    let token = token.trim();
    let body = match what {
        What::Jti { jti, issuer, exp } => Some(json!({"jti": jti, "issuer": issuer, "exp": exp})),
        What::Sub {
            sub,
            issuer,
            before,
        } => Some(json!({"sub": sub, "issuer": issuer, "before": before})),
        What::InternalToken { token: given } => {
            let internal = match given.filter(|given| given != "-") {
                Some(given) => given,
                None => read_stdin().await?,
            };
            let internal = internal.trim();
            if internal.is_empty() {
                return Err(
                    "internal-token: the token is empty; give it on standard input: trustgate revoke … internal-token < token.txt"
                        .into(),
                );
            }
            Some(json!({"internal_token": internal}))
        }
        What::List => None,
    };
    let body = body.map(|mut b| {
        if let Value::Object(map) = &mut b {
            map.retain(|_, v| !v.is_null());
        }
        b.to_string()
    });
    let authority = admin
        .strip_prefix("http://")
        .ok_or("--admin must be an http:// URL (the admin listener speaks plain HTTP)")?
        .trim_end_matches('/');
    let request = match &body {
        Some(body) => format!(
            "POST /revocations HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => format!(
            "GET /revocations HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
        ),
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| RevokeError::Unavailable(format!("{admin} did not answer within 10 s")))?
        .map_err(|err| RevokeError::Unavailable(format!("cannot reach {admin}: {err}")))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| RevokeError::Unavailable(format!("{admin} gave no HTTP response")))?;
    println!("{}", body.trim());
    Ok((200..300).contains(&status))
}

/// Standard input, whole: the internal token. At a terminal, a line on standard error says what
/// is awaited (the token itself is not echoed back).
async fn read_stdin() -> Result<String, String> {
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        eprintln!(
            "trustgate revoke: reading the internal token from standard input (end with Ctrl-D)"
        );
    }
    tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin()))
        .await
        .map_err(|err| err.to_string())
        .and_then(|read| read.map_err(|err| err.to_string()))
        .map_err(|err| format!("internal-token: cannot read standard input: {err}"))
}
