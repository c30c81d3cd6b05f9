//! End-to-end: the audit log (`[audit]`). One JSON event per decision, with exact fields, the
//! subject hashed unless configured otherwise, from every front door; the hash chain that
//! `trustgate audit verify` checks, continued across a restart, and naming an edited line; a full
//! queue that drops and counts instead of blocking requests.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{
    Config, Fixture, Gateway, Pattern, Route, TempDir, bearer, cli, raw, wait_until,
};

fn sha256(text: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn routes(f: &Fixture, path: &Path) -> Config {
    f.config()
        .route(Route::new("fwd", "/fwd", "echo", Pattern::ForwardToken))
        .route(Route::new("pub", "/pub", "echo", Pattern::Public))
        .section("audit", "enabled", true)
        .section("audit", "path", path.display().to_string())
}

/// The file's events, once it has `count` lines.
fn events(path: &Path, count: usize) -> Vec<Value> {
    let read = || {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        wait_until(Duration::from_secs(10), || read().len() >= count),
        "expected {count} events, got {:#?}",
        read()
    );
    let events = read();
    assert_eq!(events.len(), count, "{events:#?}");
    events
}

/// The event without the fields that vary (time, chain), checking their form.
fn fields(event: &Value) -> Value {
    let mut event = event.clone();
    let object = event.as_object_mut().unwrap();
    let time = object.remove("time").unwrap();
    let time = time.as_str().unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{time}"
    );
    object.remove("prev");
    object.remove("hash");
    event
}

#[test]
fn every_decision_is_one_event_and_the_chain_verifies_across_a_restart() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let path = dir.0.join("audit.jsonl");
    let config = routes(&f, &path);
    let gateway = Gateway::start(&config);
    let token = f.token_with("alice", json!({"jti": "token-1"}));
    let expired = f.expired_token("bob");
    assert_eq!(
        gateway
            .get("/fwd/x", &[("Authorization", &bearer(&token))])
            .status,
        200
    );
    assert_eq!(
        gateway
            .get("/fwd/x", &[("Authorization", &bearer(&expired))])
            .status,
        401
    );
    assert_eq!(gateway.get("/nowhere", &[]).status, 404);
    assert_eq!(gateway.get("/pub/x", &[]).status, 200);
    let written = events(&path, 4);

    let common = |outcome: &str| {
        json!({"client": "127.0.0.1", "door": "proxy", "method": "GET", "outcome": outcome,
               "trace_id": null, "issuer": null, "kid": null, "subject": null, "jti": null,
               "reason": null, "step": null, "route": null, "pattern": null})
    };
    let merged = |mut base: Value, extra: Value| {
        for (k, v) in extra.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    assert_eq!(
        fields(&written[0]),
        merged(
            common("allowed"),
            json!({"route": "fwd", "pattern": "forward-token", "issuer": f.iss, "kid": "k1",
                   "subject": format!("sha256:{}", sha256("alice")),
                   "jti": format!("sha256:{}", sha256("token-1"))})
        )
    );
    assert_eq!(
        fields(&written[1]),
        merged(
            common("unauthorized"),
            json!({"route": "fwd", "pattern": "forward-token", "reason": "expired", "step": "validate"})
        )
    );
    assert_eq!(
        fields(&written[2]),
        merged(
            common("bad_request"),
            json!({"reason": "no_route", "step": "route"})
        )
    );
    assert_eq!(
        fields(&written[3]),
        merged(
            common("allowed"),
            json!({"route": "pub", "pattern": "public"})
        )
    );
    // The chain: each prev is the hash of the event before.
    assert_eq!(written[0]["prev"], GENESIS);
    for pair in written.windows(2) {
        assert_eq!(pair[1]["prev"], pair[0]["hash"]);
    }
    // Never the token, and the subject only hashed.
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [token.as_str(), expired.as_str(), "alice", "token-1"] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    // Apart from the access log (stderr).
    assert!(!gateway.log_text().contains(r#""jti""#));

    let output = cli(&["audit", "verify", path.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(": 4 events, chain intact"),
        "{output:?}"
    );

    // A restart continues the chain from the file's last event.
    drop(gateway);
    let gateway = Gateway::start(&config);
    assert_eq!(gateway.get("/pub/y", &[]).status, 200);
    let written = events(&path, 5);
    assert_eq!(written[4]["prev"], written[3]["hash"]);
    drop(gateway);
    let output = cli(&["audit", "verify", path.to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains(": 5 events, chain intact"));
    // A hash kept from earlier: the chain must still hold its event; the last hash is printed to
    // be kept for the next check.
    let kept = written[2]["hash"].as_str().unwrap();
    let output = cli(&["audit", "verify", path.to_str().unwrap(), "--expect", kept]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = written[4]["hash"].as_str().unwrap();
    assert!(
        stdout.contains(&format!(
            "last hash {last})\nthe expected hash is line 3's\n"
        )),
        "{stdout}"
    );
    let unknown = "ab".repeat(32);
    let output = cli(&[
        "audit",
        "verify",
        path.to_str().unwrap(),
        "--expect",
        &unknown,
    ]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains(
            ": line 5: the chain ends here and no event has the hash given with --expect"
        ),
        "{output:?}"
    );
    let output = cli(&[
        "audit",
        "verify",
        path.to_str().unwrap(),
        "--expect",
        "\u{1b}[2J",
    ]);
    assert_eq!(output.status.code(), Some(64), "{output:?}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains('\u{1b}'));

    // One event edited in a copy: verify names its line and fails.
    let copy = dir.0.join("edited.jsonl");
    let edited: Vec<String> = text_lines(&path)
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            if i == 1 {
                line.replace(r#""outcome":"unauthorized""#, r#""outcome":"allowed""#)
            } else {
                line
            }
        })
        .collect();
    assert_ne!(edited, text_lines(&path), "the edit changed nothing");
    std::fs::write(&copy, edited.join("\n") + "\n").unwrap();
    let output = cli(&["audit", "verify", copy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("edited.jsonl: line 2: its hash does not match"),
        "{stderr}"
    );

    // One event removed: the next one no longer follows.
    let mut removed = text_lines(&path);
    removed.remove(2);
    std::fs::write(&copy, removed.join("\n") + "\n").unwrap();
    let output = cli(&["audit", "verify", copy.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 3: its prev is not the hash"));
}

fn text_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_decision_endpoint_writes_the_same_events_and_a_clear_subject_when_configured() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let path = dir.0.join("audit.jsonl");
    let config = routes(&f, &path)
        .section("audit", "subject", "clear")
        .section("audit", "chain", false)
        .section("forward_auth", "listen", "127.0.0.1:0")
        .section("forward_auth", "trusted_proxies", json!(["127.0.0.1"]))
        .section("forward_auth", "convention", "forwarded-headers");
    let gateway = Gateway::start(&config);
    let decisions = gateway.decisions.unwrap();
    let token = f.token("carol");
    let check = |authorization: &str| {
        let request = format!(
            "GET /check HTTP/1.1\r\nHost: trustgate\r\nX-Forwarded-Method: GET\r\n\
             X-Forwarded-Uri: /fwd/x\r\nX-Forwarded-Host: app.test\r\n{authorization}Connection: close\r\n\r\n"
        );
        raw(decisions, request.as_bytes()).status
    };
    assert_eq!(
        check(&format!("Authorization: {}\r\n", bearer(&token))),
        200
    );
    assert_eq!(check(""), 401);
    let written = events(&path, 2);
    assert_eq!(written[0]["door"], "forward_auth");
    assert_eq!(written[0]["outcome"], "allowed");
    assert_eq!(written[0]["subject"], "carol");
    assert_eq!(written[0]["route"], "fwd");
    assert_eq!(written[1]["outcome"], "unauthorized");
    assert_eq!(written[1]["reason"], "missing_token");
    assert_eq!(written[1]["step"], "token");
    assert!(written[0].get("hash").is_none() && written[0].get("prev").is_none());
    // Without a chain there is nothing to verify, and verify says so.
    let output = cli(&["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("line 1: no hash"));
}

/// A clear subject is the one field a client's issuer chooses freely. One holding a C1 CSI (a
/// terminal's escape), a bidirectional override and a line separator reaches the file as `\u`
/// escapes: `tail` on the log cannot be driven by it, the parsed subject is exact, and the chain
/// verifies. (A `sub` with C0 controls or DEL is refused before it gets here: 401.)
#[test]
fn a_clear_subject_cannot_drive_the_operators_terminal() {
    let f = Fixture::new();
    let dir = TempDir::new();
    let path = dir.0.join("audit.jsonl");
    let config = routes(&f, &path).section("audit", "subject", "clear");
    let gateway = Gateway::start(&config);
    let subject = "eve\u{9b}2J\u{202e}gnp.exe\u{2028}ok";
    let token = f.token(subject);
    assert_eq!(
        gateway
            .get("/fwd/x", &[("Authorization", &bearer(&token))])
            .status,
        200
    );
    let written = events(&path, 1);
    assert_eq!(written[0]["subject"], subject);
    let bytes = std::fs::read(&path).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains(r#""subject":"eve\u009b2J\u202egnp.exe\u2028ok""#),
        "{text}"
    );
    for raw in ['\u{9b}', '\u{202e}', '\u{2028}'] {
        assert!(!text.contains(raw), "{raw:?} raw in {text}");
    }
    let output = cli(&["audit", "verify", path.to_str().unwrap()]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_full_queue_drops_and_counts_without_holding_requests() {
    let f = Fixture::new();
    let dir = TempDir::new();
    // A FIFO that the test reads only when told: once the pipe's buffer is full the writer
    // blocks, the queue of 2 fills, and further events are dropped.
    let fifo = dir.0.join("audit.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (lines_tx, lines) = std::sync::mpsc::channel::<usize>();
    let reader_path = fifo.clone();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&reader_path).unwrap();
        let _ = wait.recv();
        let mut count = 0;
        for line in BufReader::new(file).lines() {
            if line.is_err() {
                break;
            }
            count += 1;
            let _ = lines_tx.send(count);
        }
    });
    let config = routes(&f, &fifo).section("audit", "queue", 2);
    let gateway = Gateway::start(&config);
    const SENT: usize = 600;
    let started = std::time::Instant::now();
    for _ in 0..SENT {
        assert_eq!(gateway.get("/pub/x", &[]).status, 200);
    }
    let elapsed = started.elapsed();
    let dropped = gateway
        .metric("trustgate_audit_dropped_total")
        .expect("the dropped counter is exported");
    assert!(dropped > 0.0, "nothing was dropped");
    assert!(
        elapsed < Duration::from_secs(60),
        "requests waited for the audit writer: {elapsed:?}"
    );
    // Read everything: what was queued is written, and written + dropped is every decision.
    go.send(()).unwrap();
    let mut read = 0;
    let settled = wait_until(Duration::from_secs(15), || {
        while let Ok(count) = lines.try_recv() {
            read = count;
        }
        read + dropped as usize == SENT
    });
    assert!(settled, "read {read}, dropped {dropped}, sent {SENT}");
    assert_eq!(
        gateway.metric("trustgate_audit_dropped_total"),
        Some(dropped)
    );
    assert!(
        gateway.wait_for_log("audit events dropped", Duration::from_secs(10)),
        "the drops were not logged:\n{}",
        gateway.log_text()
    );
}
