//! The `grpc-echo` binary, as the gateway's end-to-end tests and load benchmark start it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use test_support::Issuers;

use crate::common::*;

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the binary with `args` and reads the address from its one stdout line.
async fn start_binary(args: &[&str]) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_grpc-echo"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        line
    })
    .await
    .unwrap();
    let addr = line
        .strip_prefix("grpc-echo listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_owned();
    (Process(child), addr)
}

#[tokio::test]
async fn the_binary_serves_behind_the_chosen_mode() {
    let issuers = Issuers::start().await;
    let internal = issuers.internal.url();
    let (_process, addr) = start_binary(&[
        "--listen",
        "127.0.0.1:0",
        "--mode",
        "internal-tokens",
        "--issuer",
        &internal,
        "--audience",
        SERVICE,
    ])
    .await;
    let mut client = grpc_echo::connect(&format!("http://{addr}")).await.unwrap();
    let reply = unary(
        &mut client,
        message("hi", 0),
        &Mode::InternalTokens.credentials(&issuers, "Unary"),
    )
    .await
    .unwrap();
    assert_eq!(
        (reply.subject.as_str(), reply.message.as_str()),
        ("alice", "hi")
    );
    let refused = unary(&mut client, message("hi", 0), &[]).await.unwrap_err();
    assert_unauthenticated(&refused, "binary without a token");
}

#[tokio::test]
async fn the_binary_without_a_layer_answers_anyone() {
    let (_process, addr) = start_binary(&["--listen", "127.0.0.1:0"]).await;
    let mut client = grpc_echo::connect(&format!("http://{addr}")).await.unwrap();
    let reply = unary(&mut client, message("anon", 0), &[]).await.unwrap();
    assert_eq!(
        (reply.subject.as_str(), reply.message.as_str()),
        ("", "anon")
    );
}

#[test]
fn a_mode_without_its_issuer_exits_64() {
    let status = Command::new(env!("CARGO_BIN_EXE_grpc-echo"))
        .args(["--listen", "127.0.0.1:0", "--mode", "jwt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(64));
}
