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
    let mut command = Command::new(env!("CARGO_BIN_EXE_trustgate"));
    command.args(["demo", "--port", "0", "--admin-port", "0"]);
    start(command)
}

/// Starts `command` (the demo, perhaps through a shell that `exec`s it) and waits for its URL.
fn start(mut command: Command) -> Demo {
    let mut child = command
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

/// The demo issuer's address (not printed: the page and the commands go through the gateway),
/// from its discovery document, which the gateway's public route serves.
fn issuer_addr(demo: &Demo) -> SocketAddr {
    let doc = get(demo, "/.well-known/openid-configuration", &[]).json();
    let issuer = doc["issuer"].as_str().unwrap();
    issuer.strip_prefix("http://").unwrap().parse().unwrap()
}

/// The CPU time `pid` has used, in clock ticks (`/proc/<pid>/stat`: utime + stime).
#[cfg(target_os = "linux")]
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name, which is in parentheses: field 3 is the state, 14 and 15 the times.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Out of file descriptors, the demo issuer's accept loop waits before it tries again, as the
/// gateway's listeners do. It used to retry at once, for ever: a core at 100% for as long as
/// the descriptors stayed taken (here by idle connections to the issuer itself).
#[cfg(target_os = "linux")]
#[test]
fn demo_issuer_out_of_descriptors_waits_instead_of_spinning() {
    let mut command = Command::new("sh");
    command.args([
        "-c",
        r#"ulimit -n 64 && exec "$0" demo --port 0 --admin-port 0"#,
        env!("CARGO_BIN_EXE_trustgate"),
    ]);
    let demo = start(command);
    let issuer = issuer_addr(&demo);
    // More connections than the 64 descriptors: the issuer accepts until it has none left (an
    // accept error, EMFILE), and the rest wait in its listen backlog.
    let mut held = Vec::new();
    for _ in 0..120 {
        match std::net::TcpStream::connect_timeout(&issuer, Duration::from_secs(1)) {
            Ok(stream) => held.push(stream),
            Err(_) => break,
        }
    }
    assert!(held.len() > 64, "{} connections", held.len());
    std::thread::sleep(Duration::from_millis(500));
    let pid = demo.child.id();
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(pid) - before;
    // Spinning used about 200 ticks (100 a second) here; waiting 20 ms between tries, none.
    assert!(
        used < 40,
        "{used} ticks of CPU in 2 s with no descriptor left"
    );
}

/// The TCP addresses `pid` listens on: its socket descriptors' inodes (`/proc/<pid>/fd`) looked
/// up in `/proc/<pid>/net/tcp` (IPv4; state `0A` is LISTEN).
#[cfg(target_os = "linux")]
fn listening(pid: u32) -> Vec<SocketAddr> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.ok()?.path()).ok()?;
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_owned(),
            )
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields[3] != "0A" || !inodes.iter().any(|inode| inode == fields[9]) {
                return None;
            }
            // `0100007F:1F90`: the address as the kernel stores it (little-endian here), the port
            // big-endian.
            let (ip, port) = fields[1].split_once(':')?;
            let ip = u32::from_str_radix(ip, 16).ok()?;
            let ip = std::net::Ipv4Addr::from(ip.to_le_bytes());
            Some(SocketAddr::from((ip, u16::from_str_radix(port, 16).ok()?)))
        })
        .collect()
}

/// Every listener of the demo (the gateway's two, the issuer's, the four services') is on
/// 127.0.0.1. Each but the gateway's public one closes a connection that never sends a request
/// after `header_read_timeout` (10 s), as the admin listener does: idle connections must not
/// hold the process's descriptors for ever. The issuer's and the services' used to stay open
/// until the peer left. (The public listener closes it after its idle timeout, 60 s:
/// `proxying.rs`.)
#[cfg(target_os = "linux")]
#[test]
fn demo_every_listener_is_loopback_and_closes_a_silent_connection() {
    use std::io::Read;

    let demo = start_demo();
    let mut addrs = listening(demo.child.id());
    addrs.sort();
    assert_eq!(addrs.len(), 7, "{addrs:?}");
    assert!(addrs.contains(&demo.addr), "{addrs:?}");
    assert!(addrs.contains(&issuer_addr(&demo)), "{addrs:?}");
    for addr in &addrs {
        assert_eq!(addr.ip(), std::net::Ipv4Addr::LOCALHOST, "{addrs:?}");
    }
    let started = std::time::Instant::now();
    let silent: Vec<(SocketAddr, std::net::TcpStream)> = addrs
        .iter()
        .filter(|addr| **addr != demo.addr)
        .map(|addr| (*addr, std::net::TcpStream::connect(addr).unwrap()))
        .collect();
    for (addr, mut stream) in silent {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 16];
        let read = stream.read(&mut buf);
        assert!(matches!(read, Ok(0)), "{addr}: {read:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
}

/// DNS rebinding: a web page the user opens can give its own name the address 127.0.0.1 once it
/// has loaded, then read the demo through the user's browser, same-origin. Such requests name
/// the page's host, and the demo issuer (its token endpoint, its page) refuses them: it answers
/// only requests for `localhost` or a loopback address. It used to hand such a page a token for
/// any demo user.
#[test]
fn demo_issuer_answers_only_requests_for_a_loopback_host() {
    let demo = start_demo();
    let port = demo.addr.port();
    let request = |path: &str, host: &str| {
        let text = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw(demo.addr, text.as_bytes())
    };
    for host in [
        format!("attacker.example:{port}"),
        format!("127.0.0.1.nip.io:{port}"),
        "attacker.example".to_owned(),
    ] {
        for path in ["/demo/token?user=alice", "/"] {
            let r = request(path, &host);
            assert_eq!(r.status, 403, "{host}{path}");
            assert_eq!(
                r.body_text(),
                r#"{"error":"the demo issuer answers only requests for localhost or a loopback address"}"#,
                "{host}{path}"
            );
        }
    }
    for host in [
        format!("localhost:{port}"),
        format!("LocalHost:{port}"),
        format!("127.0.0.1:{port}"),
        "localhost".to_owned(),
    ] {
        let r = request("/demo/token?user=alice", &host);
        assert_eq!(r.status, 200, "{host}");
        assert!(r.json()["access_token"].is_string(), "{host}");
    }
}

/// The demo keeps running when its standard output cannot be written (here a full device; a
/// pipe whose reader has gone is the same): the banner is for the user only. It used to panic
/// (`println!`) and exit 101 as soon as it was ready.
#[cfg(target_os = "linux")]
#[test]
fn demo_runs_on_when_its_standard_output_fails() {
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_trustgate"))
        .args(["demo", "--port", "0", "--admin-port", "0"])
        .stdout(full)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut demo = Demo {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    let pid = demo.child.id();
    let started = std::time::Instant::now();
    let addrs = loop {
        let addrs = listening(pid);
        if addrs.len() == 7 {
            break addrs;
        }
        assert!(demo.child.try_wait().unwrap().is_none(), "the demo exited");
        assert!(started.elapsed() < Duration::from_secs(60), "{addrs:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    // The gateway is the listener whose /p1 reaches the users service (which refuses: no
    // token). A service's listener waits for its layer, then answers 404 to this path.
    for addr in addrs {
        let text =
            format!("GET /p1/users/me HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        let r = raw(addr, text.as_bytes());
        if r.status == 401 && r.header("x-demo-answered-by") == Some("users") {
            demo.addr = addr;
        }
    }
    assert_ne!(demo.addr.port(), 0, "no listener was the gateway");
    // The services are served just before the banner is printed.
    std::thread::sleep(Duration::from_secs(1));
    assert!(demo.child.try_wait().unwrap().is_none(), "the demo exited");
    assert_eq!(get(&demo, "/p1/users/me", &[]).status, 401);
}
