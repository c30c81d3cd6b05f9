//! End-to-end: the process lifecycle. Reload under traffic (SIGHUP after the file changes), a
//! refused reload, and graceful drain on SIGTERM.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{Config, Fixture, Gateway, Pattern, Route, wait_until};

/// A public route `a`, and with `with_b` a forward-token route `b`.
fn routes(f: &Fixture, with_b: bool) -> Config {
    let config = f
        .config()
        .route(Route::new("a", "/a", "echo", Pattern::Public));
    if with_b {
        config.route(Route::new("b", "/b", "echo", Pattern::ForwardToken))
    } else {
        config
    }
}

fn status_of(addr: SocketAddr, path: &str) -> u16 {
    crate::common::raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .status
}

/// Sends requests to `/a/load` until stopped; counts successes and anything else.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<u16>>,
}

impl Load {
    fn start(addr: SocketAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, o, f) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failed));
        let thread = std::thread::spawn(move || {
            let mut bad = Vec::new();
            while !s.load(Ordering::SeqCst) {
                let status = status_of(addr, "/a/load");
                if status == 200 {
                    o.fetch_add(1, Ordering::SeqCst);
                } else {
                    f.fetch_add(1, Ordering::SeqCst);
                    bad.push(status);
                }
            }
            bad
        });
        Self {
            stop,
            ok,
            failed,
            thread,
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    fn finish(self) -> (usize, usize, Vec<u16>) {
        self.stop.store(true, Ordering::SeqCst);
        let bad = self.thread.join().unwrap();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            bad,
        )
    }
}

#[test]
fn reload_under_traffic_loses_no_request_and_applies_the_new_route() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f, false));
    assert_eq!(gateway.get("/b/x", &[]).status, 404);
    let load = Load::start(gateway.proxy);
    assert!(wait_until(Duration::from_secs(5), || load.ok() >= 20));

    gateway.rewrite_config(&routes(&f, true));
    gateway.sighup();
    let t = f.token("alice");
    let auth = crate::common::bearer(&t);
    assert!(
        wait_until(Duration::from_secs(5), || gateway
            .get("/b/x", &[("Authorization", &auth)])
            .status
            == 200),
        "the new route never appeared; log:\n{}",
        gateway.log_text()
    );
    // The new route is a validating one: without a token it is 401, not a public pass.
    assert_eq!(gateway.get("/b/x", &[]).status, 401);
    let after = load.ok();
    assert!(wait_until(Duration::from_secs(5), || load.ok() >= after + 20));
    let (ok, failed, bad) = load.finish();
    assert_eq!(failed, 0, "requests failed during the reload: {bad:?}");
    assert!(ok >= 40);
    assert!(gateway.log_text().contains("configuration reloaded"));
}

/// A reload keeps a route's rate limiter when neither the route's name nor its limit changed:
/// a caller who used up the burst stays limited across an unrelated reload (without Redis, the
/// process's limiter is the only one). A changed limit starts afresh.
#[test]
fn a_reload_keeps_unchanged_rate_limits() {
    let f = Fixture::new();
    let limited = |requests: u64, with_b: bool| {
        routes(&f, with_b).route(Route::new("rl", "/rl", "echo", Pattern::ForwardToken).set(
            "rate_limit",
            serde_json::json!({"by": "sub", "requests": requests, "per": "1h", "burst": requests}),
        ))
    };
    let gateway = Gateway::start(&limited(3, false));
    let t = f.token("alice");
    let auth = crate::common::bearer(&t);
    let status = || gateway.get("/rl/x", &[("Authorization", &auth)]).status;
    assert_eq!(
        [status(), status(), status(), status()],
        [200, 200, 200, 429]
    );

    // An unrelated change: route b appears, alice is still limited.
    gateway.rewrite_config(&limited(3, true));
    gateway.sighup();
    assert!(wait_until(Duration::from_secs(5), || gateway
        .get("/b/x", &[("Authorization", &auth)])
        .status
        == 200));
    assert_eq!(status(), 429);

    // A new limit: a new bucket.
    gateway.rewrite_config(&limited(5, true));
    gateway.sighup();
    assert!(wait_until(Duration::from_secs(5), || status() == 200));
}

/// A reload warns about exactly the settings it cannot apply, once each: a moved proxy address
/// (the old one serves on), and another `[server]` setting read at start. `trusted_proxies`, read
/// per request, is applied without a warning. Each rewrite sets off two reloads, SIGHUP's and the
/// file watcher's; they run one at a time, so the second finds nothing new to warn about.
#[test]
fn a_reload_warns_once_about_each_setting_it_cannot_apply() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f, false));
    let reloads = || gateway.log_lines("configuration reloaded").len();
    let warnings = || gateway.log_lines("restart to apply");
    // The watcher looks once a second: past this, both reloads of a rewrite have run.
    let settle = || std::thread::sleep(Duration::from_millis(1500));

    let moved = crate::common::closed_port();
    let config = routes(&f, false).server("listen", moved.to_string());
    gateway.rewrite_config(&config);
    gateway.sighup();
    assert!(
        wait_until(Duration::from_secs(5), || !warnings().is_empty()),
        "{}",
        gateway.log_text()
    );
    settle();
    assert_eq!(warnings().len(), 1, "{}", gateway.log_text());
    assert!(
        warnings()[0].contains("listen addresses changed"),
        "{}",
        gateway.log_text()
    );
    assert_eq!(status_of(gateway.proxy, "/a/x"), 200);
    assert!(
        TcpStream::connect(moved).is_err(),
        "the new address was bound without a restart"
    );

    let before = reloads();
    let config = config.server("trusted_proxies", vec!["10.0.0.0/8"]);
    gateway.rewrite_config(&config);
    gateway.sighup();
    assert!(
        wait_until(Duration::from_secs(5), || reloads() > before),
        "{}",
        gateway.log_text()
    );
    settle();
    assert_eq!(warnings().len(), 1, "{}", gateway.log_text());

    gateway.rewrite_config(&config.server("idle_timeout", "7s"));
    gateway.sighup();
    assert!(
        wait_until(Duration::from_secs(5), || warnings().len() > 1),
        "{}",
        gateway.log_text()
    );
    settle();
    assert_eq!(warnings().len(), 2, "{}", gateway.log_text());
    assert!(
        warnings()[1].contains("[server], [log], [telemetry] or [audit] settings changed"),
        "{}",
        gateway.log_text()
    );
}

#[test]
fn an_invalid_reload_is_refused_and_the_old_routes_keep_working() {
    let f = Fixture::new();
    let gateway = Gateway::start(&routes(&f, false));
    let load = Load::start(gateway.proxy);
    assert!(wait_until(Duration::from_secs(5), || load.ok() >= 10));

    // A typo: refused, with the reason in the log.
    gateway.rewrite_config(&routes(&f, true).edit_route("b", |r| r.set("listen_typo", true)));
    gateway.sighup();
    assert!(
        gateway.wait_for_log("configuration reload refused", Duration::from_secs(5)),
        "{}",
        gateway.log_text()
    );
    let refused = gateway.log_lines("configuration reload refused").join("\n");
    assert!(refused.contains("listen_typo"), "{refused}");
    assert_eq!(
        gateway.get("/b/x", &[]).status,
        404,
        "the refused route was applied"
    );
    assert_eq!(gateway.get("/a/x", &[]).status, 200);

    // An issuer that cannot be reached: refused too (a config without keys is not applied).
    let down = crate::common::refused_addr();
    let unreachable =
        routes(&f, true).edit_issuer("idp", |i| i.set("issuer", format!("http://{down}")));
    gateway.rewrite_config(&unreachable);
    gateway.sighup();
    assert!(
        gateway.wait_for_log("not every issuer has usable keys", Duration::from_secs(10)),
        "{}",
        gateway.log_text()
    );
    assert_eq!(gateway.get("/b/x", &[]).status, 404);
    let (ok, failed, bad) = load.finish();
    assert_eq!(failed, 0, "{bad:?}");
    assert!(ok >= 10);
    assert!(
        gateway
            .metric(r#"trustgate_config_reloads_total{result="refused"}"#)
            .is_some_and(|n| n >= 2.0)
    );
    assert_eq!(
        gateway.metric(r#"trustgate_config_reloads_total{result="applied"}"#),
        None
    );
}

#[test]
fn sigterm_drains_the_request_in_flight_then_exits_zero() {
    let f = Fixture::new();
    let mut gateway = Gateway::start(&routes(&f, false));
    let addr = gateway.proxy;
    let slow = std::thread::spawn(move || {
        let started = Instant::now();
        let r = crate::common::raw(
            addr,
            b"GET /a/slow HTTP/1.1\r\nHost: gw.test\r\nx-echo-delay-ms: 1500\r\nConnection: close\r\n\r\n",
        );
        (r, started.elapsed())
    });
    assert!(wait_until(Duration::from_secs(5), || f.upstream.count() == 1));
    gateway.sigterm();

    // New connections are refused while the slow request is still running.
    assert!(
        wait_until(Duration::from_secs(1), || TcpStream::connect(addr).is_err()),
        "the listener still accepts after SIGTERM"
    );
    assert!(
        gateway.child.try_wait().unwrap().is_none(),
        "exited before draining"
    );

    let (r, elapsed) = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.json()["target"], "/a/slow");
    assert!(elapsed >= Duration::from_millis(1400), "{elapsed:?}");

    let status = gateway
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit");
    assert_eq!(status.code(), Some(0), "{}", gateway.log_text());
    let log = gateway.log_text();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        gateway
            .log_lines("shutdown complete")
            .iter()
            .any(|l| l.contains("\"drained\":true")),
        "{log}"
    );
    assert_eq!(f.upstream.count(), 1);
}

/// An idle keep-alive connection is closed as soon as the gateway stops, not held open until
/// `shutdown_grace` runs out: each connection watches the stop signal even when nothing else
/// happens on it.
#[test]
fn sigterm_closes_an_idle_keep_alive_connection_at_once() {
    let f = Fixture::new();
    let mut gateway = Gateway::start(&routes(&f, false).server("shutdown_grace", "20s"));
    let mut idle = TcpStream::connect(gateway.proxy).unwrap();
    idle.write_all(b"GET /a/x HTTP/1.1\r\nHost: gw.test\r\n\r\n")
        .unwrap();
    let r = crate::common::read_response(&mut idle);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None, "keep-alive expected");

    let stopped = Instant::now();
    gateway.sigterm();
    let (data, closed) = crate::common::read_until_closed(&mut idle, Duration::from_secs(5));
    assert!(closed, "the idle connection stayed open after SIGTERM");
    assert!(data.is_empty(), "{:?}", String::from_utf8_lossy(&data));
    let status = gateway
        .wait_exit(Duration::from_secs(5))
        .expect("did not exit");
    assert_eq!(status.code(), Some(0), "{}", gateway.log_text());
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(
        gateway
            .log_lines("shutdown complete")
            .iter()
            .any(|l| l.contains("\"drained\":true")),
        "{}",
        gateway.log_text()
    );
    assert_eq!(f.upstream.count(), 1);
}
