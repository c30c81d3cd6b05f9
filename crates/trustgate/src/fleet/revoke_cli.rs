//! `trustgate revoke`: the admin API from the command line. The admin token is read from a file
//! (never from the command line, where other users could read it in the process list).
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
        /// The cut-off (seconds since the epoch); default now.
        #[arg(long)]
        before: Option<i64>,
    },
    /// The subject behind an internal token this gateway minted (its external tokens issued up
    /// to the time it was minted).
    InternalToken {
        /// The internal token.
        token: String,
    },
    /// List the revocations in force.
    List,
}

/// Sends the request; prints the answer. Returns whether the API accepted it.
pub(crate) async fn run(admin: &str, token_file: &Path, what: What) -> Result<bool, String> {
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
        What::InternalToken { token } => Some(json!({"internal_token": token})),
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
        .map_err(|_| format!("{admin} did not answer within 10 s"))?
        .map_err(|err| format!("cannot reach {admin}: {err}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no HTTP response")?;
    println!("{}", body.trim());
    Ok((200..300).contains(&status))
}
