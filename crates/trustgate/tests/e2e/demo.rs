//! End-to-end: `trustgate demo` as a newcomer runs it, every flow the page offers, over HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::raw;

struct Demo {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo() -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(["demo", "--port", "0", "--admin-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.trim().strip_prefix("Open http://") {
                let addr = rest.split('/').next().unwrap().to_owned();
                let _ = tx.send(addr);
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the demo printed its URL")
        .parse()
        .unwrap();
    Demo { child, addr }
}

fn get(demo: &Demo, path: &str, headers: &[(&str, &str)]) -> crate::common::RawResponse {
    let mut text = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", demo.addr);
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("Connection: close\r\n\r\n");
    raw(demo.addr, text.as_bytes())
}

fn token(demo: &Demo, user: &str, kind: &str) -> String {
    let r = get(demo, &format!("/demo/token?user={user}&kind={kind}"), &[]);
    assert_eq!(r.status, 200);
    r.json()["access_token"].as_str().unwrap().to_owned()
}

#[test]
fn demo_serves_the_page_and_every_pattern() {
    let demo = start_demo();
    let page = get(&demo, "/", &[]);
    assert_eq!(page.status, 200);
    assert!(page.body_text().contains("trustgate demo"));
    for asset in ["/demo.js", "/demo.css"] {
        assert_eq!(get(&demo, asset, &[]).status, 200, "{asset}");
    }
    let users: Value = get(&demo, "/demo/users", &[]).json();
    assert_eq!(users.as_array().unwrap().len(), 3);

    let alice = format!("Bearer {}", token(&demo, "alice", "valid"));
    let cases = [
        ("/p1/users/me", "external-jwt"),
        ("/p2/courses", "external-jwt"),
        ("/p3/payments", "identity-headers"),
        ("/p4/users/me", "internal-token"),
    ];
    for (path, mode) in cases {
        let r = get(&demo, path, &[("Authorization", &alice)]);
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        let body = r.json();
        assert_eq!(body["received"]["subject"], "alice", "{path}");
        assert_eq!(body["received"]["mode"], mode, "{path}");
        assert!(
            body["verdict"].as_str().unwrap().starts_with("allowed"),
            "{path}"
        );
    }
    // Pattern 4: the service saw the gateway's issuer, not the external one.
    let p4 = get(&demo, "/p4/users/me", &[("Authorization", &alice)]).json();
    assert_ne!(p4["received"]["issuer"], p4["received"]["external_issuer"]);
}

#[test]
fn demo_spoofed_identity_headers_are_stripped() {
    let demo = start_demo();
    let bob = format!("Bearer {}", token(&demo, "bob", "valid"));
    let r = get(
        &demo,
        "/p3/payments",
        &[
            ("Authorization", &bob),
            ("X-User-Id", "admin"),
            ("X-User-Roles", "admin"),
            ("X-Tenant-Id", "evil-corp"),
        ],
    );
    // bob lacks payments:read, so the service refuses him: as bob, not as "admin".
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope""#)
    );
    let alice = format!("Bearer {}", token(&demo, "alice", "valid"));
    let r = get(
        &demo,
        "/p3/payments",
        &[
            ("Authorization", &alice),
            ("X-User-Id", "admin"),
            ("x_user_roles", "admin"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body_text());
    let identity = &r.json()["received"]["headers"]["identity"];
    assert_eq!(identity["x-user-id"], "alice");
    assert_eq!(identity["x-user-roles"], "admin,instructor");
}

#[test]
fn demo_bad_tokens_get_rfc6750_answers() {
    let demo = start_demo();
    let r = get(&demo, "/p2/courses", &[]);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    for kind in ["expired", "forged"] {
        let t = format!("Bearer {}", token(&demo, "alice", kind));
        let r = get(&demo, "/p2/courses", &[("Authorization", &t)]);
        assert_eq!(r.status, 401, "{kind}");
        assert_eq!(
            r.header("www-authenticate"),
            Some(r#"Bearer error="invalid_token""#),
            "{kind}"
        );
        assert!(!r.body_text().contains(&t[7..]), "never echoes the token");
    }
}
