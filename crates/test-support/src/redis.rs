//! Real Redis servers for the fleet tests: Debian's `redis-server`, started on a free loopback
//! port with no persistence (a restart loses everything, the hardest case for the gateway), and
//! a three-master Redis Cluster made with `redis-cli --cluster create`, and Redis Sentinel (the
//! same binary with `--sentinel`) watching a master and its replica. A machine without
//! `redis-server` fails the test that asks for one (`scripts/install-test-deps.sh` installs it);
//! nothing is skipped.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A free loopback port whose cluster bus port (port + 10000) is free too.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// One `redis-server` process.
pub struct RedisServer {
    child: Option<Child>,
    /// The port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    cluster: bool,
    /// `requirepass`, for `redis-cli`.
    password: Option<String>,
    /// More `redis-server` arguments, kept for a restart.
    extra: Vec<String>,
    /// TLS only (no plaintext port), with these files.
    tls: Option<RedisTls>,
}

/// A CA and a certificate for 127.0.0.1 it signed, as files for `redis-server` and `redis-cli`.
#[derive(Clone)]
pub struct RedisTls {
    dir: std::sync::Arc<TlsDir>,
}

/// The files' directory, removed when the last server using it is gone.
struct TlsDir(PathBuf);

impl Drop for TlsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl RedisTls {
    /// A fresh CA and certificate (`TestCerts`), written to a directory of their own.
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "trustgate-redis-tls-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = crate::TestCerts::generate();
        std::fs::write(dir.join("ca.pem"), &certs.ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), &certs.cert_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &certs.key_pem).unwrap();
        Self {
            dir: std::sync::Arc::new(TlsDir(dir)),
        }
    }

    /// The CA certificate (PEM), for a client's `ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.0.join("ca.pem")
    }

    /// `redis-server` directives for a TLS-only listener on `port` (clients need no certificate).
    fn directives(&self, port: u16) -> Vec<String> {
        let file = |name: &str| self.dir.0.join(name).display().to_string();
        [
            ("port", "0".to_owned()),
            ("tls-port", port.to_string()),
            ("tls-cert-file", file("cert.pem")),
            ("tls-key-file", file("key.pem")),
            ("tls-ca-cert-file", file("ca.pem")),
            ("tls-auth-clients", "no".to_owned()),
        ]
        .into_iter()
        .flat_map(|(key, value)| [key.to_owned(), value])
        .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisServer {
    /// A standalone server.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// A standalone server with `requirepass password` and the `redis-server` arguments `extra`
    /// (`--replicaof`, `--masterauth`, …).
    pub fn start_configured(password: &str, extra: &[&str]) -> Self {
        let mut server = Self::new_stopped(false);
        server.password = Some(password.to_owned());
        server.extra = ["--requirepass", password]
            .iter()
            .chain(extra)
            .map(|a| (*a).to_owned())
            .collect();
        server.spawn();
        server
    }

    /// A standalone server with `requirepass password`, listening only with TLS.
    pub fn start_tls(password: &str, tls: &RedisTls) -> Self {
        let mut server = Self::new_stopped(false);
        server.password = Some(password.to_owned());
        server.extra = vec!["--requirepass".to_owned(), password.to_owned()];
        server.tls = Some(tls.clone());
        server.spawn();
        server
    }

    fn start_with(cluster: bool) -> Self {
        let mut server = Self::new_stopped(cluster);
        server.spawn();
        server
    }

    fn new_stopped(cluster: bool) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "trustgate-redis-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self {
            child: None,
            port: free_port(),
            dir,
            cluster,
            password: None,
            extra: Vec::new(),
            tls: None,
        }
    }

    fn spawn(&mut self) {
        let mut command = Command::new("redis-server");
        match &self.tls {
            Some(tls) => command.args(tls.directives(self.port).iter().enumerate().map(
                // Directives as `--name value` arguments.
                |(i, a)| {
                    if i % 2 == 0 {
                        format!("--{a}")
                    } else {
                        a.clone()
                    }
                },
            )),
            None => command.args(["--port", &self.port.to_string()]),
        };
        command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if self.cluster {
            command
                .args(["--cluster-enabled", "yes"])
                .args(["--cluster-node-timeout", "2000"])
                .arg("--cluster-config-file")
                .arg(self.dir.join("nodes.conf"));
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!("cannot start redis-server ({err}); run scripts/install-test-deps.sh")
        });
        self.child = Some(child);
        wait_for_pong(&format!("redis-server on port {}", self.port), |args| {
            self.cli(args)
        });
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` with TLS).
    pub fn url(&self) -> String {
        url(self.port, self.tls.as_ref())
    }

    /// Runs `redis-cli -p <port> ARGS`, returning its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, self.password.as_deref(), self.tls.as_ref(), args)
    }

    /// Kills the server (SIGKILL: nothing is saved, clients see the connection drop).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.dir.join("dump.rdb"));
        self.spawn();
    }

    /// Takes an RDB snapshot now (`SAVE`), for [`RedisServer::restart_from_last_save`].
    pub fn save(&self) {
        assert_eq!(
            self.cli(&["SAVE"]).trim(),
            "OK",
            "SAVE on port {}",
            self.port
        );
    }

    /// Kills the server and starts it again from its last [`RedisServer::save`]: what a Redis
    /// with RDB persistence (or an `everysec` AOF, or a failover onto a replica that lagged)
    /// comes back with, the same data as some time ago, without what was written since.
    pub fn restart_from_last_save(&mut self) {
        assert!(
            self.dir.join("dump.rdb").exists(),
            "no snapshot to restart from"
        );
        self.kill();
        self.spawn();
    }
}

/// Three masters in a Redis Cluster, no replicas.
pub struct RedisCluster {
    /// The nodes.
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts three cluster-enabled servers and joins them with `redis-cli --cluster create`.
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3).map(|_| RedisServer::start_with(true)).collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .unwrap_or_else(|err| panic!("cannot run redis-cli ({err})"));
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { nodes }
    }

    /// The seed node URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }
}

/// `redis://127.0.0.1:<port>`, or `rediss://` with TLS.
fn url(port: u16, tls: Option<&RedisTls>) -> String {
    let scheme = if tls.is_some() { "rediss" } else { "redis" };
    format!("{scheme}://127.0.0.1:{port}")
}

/// Waits up to 10 s for `cli(["PING"])` to answer PONG.
fn wait_for_pong(what: &str, cli: impl Fn(&[&str]) -> String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while cli(&["PING"]).trim() != "PONG" {
        assert!(Instant::now() < deadline, "{what} did not answer PING");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `redis-cli -p <port> [-a password] [--tls] ARGS`, returning its standard output.
fn redis_cli(port: u16, password: Option<&str>, tls: Option<&RedisTls>, args: &[&str]) -> String {
    let mut command = Command::new("redis-cli");
    command.args(["-p", &port.to_string()]);
    if let Some(tls) = tls {
        command.arg("--tls").arg("--cacert").arg(tls.ca_file());
    }
    if let Some(password) = password {
        command.args(["-a", password, "--no-auth-warning"]);
    }
    let output = command.args(args).output().unwrap_or_else(|err| {
        panic!("cannot run redis-cli ({err}); run scripts/install-test-deps.sh")
    });
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One Redis Sentinel (`redis-server sentinel.conf --sentinel`) watching one master, with a
/// quorum of one and short timeouts, so that a killed master is failed over in seconds.
pub struct RedisSentinel {
    child: Option<Child>,
    /// The port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    password: Option<String>,
    tls: Option<RedisTls>,
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisSentinel {
    /// Watches the master on `master_port` as `name`; `master_password` is the master's
    /// `requirepass`, `password` the sentinel's own.
    pub fn start(name: &str, master_port: u16, master_password: &str, password: &str) -> Self {
        Self::start_with(name, master_port, master_password, password, None)
    }

    /// [`RedisSentinel::start`], listening with TLS only and speaking TLS to the master
    /// (`tls-replication yes`) when `tls` is given.
    pub fn start_with(
        name: &str,
        master_port: u16,
        master_password: &str,
        password: &str,
        tls: Option<&RedisTls>,
    ) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "trustgate-sentinel-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port();
        // Sentinel rewrites its configuration file as it learns the topology: it must be its own.
        let conf = dir.join("sentinel.conf");
        let listen = match tls {
            Some(tls) => {
                let mut lines = String::new();
                for pair in tls.directives(port).chunks(2) {
                    lines.push_str(&pair.join(" "));
                    lines.push('\n');
                }
                lines + "tls-replication yes\n"
            }
            None => format!("port {port}\n"),
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 127.0.0.1\ndir {dir}\nrequirepass {password}\n\
                 sentinel monitor {name} 127.0.0.1 {master_port} 1\n\
                 sentinel auth-pass {name} {master_password}\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n",
                dir = dir.display(),
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!(
                    "cannot start redis-server --sentinel ({err}); run scripts/install-test-deps.sh"
                )
            });
        let sentinel = Self {
            child: Some(child),
            port,
            dir,
            password: Some(password.to_owned()),
            tls: tls.cloned(),
        };
        wait_for_pong(&format!("redis sentinel on port {port}"), |args| {
            sentinel.cli(args)
        });
        sentinel
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` with TLS).
    pub fn url(&self) -> String {
        url(self.port, self.tls.as_ref())
    }

    /// Runs `redis-cli` against the sentinel, authenticated.
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, self.password.as_deref(), self.tls.as_ref(), args)
    }

    /// The port of the master the sentinel names for `name` now.
    pub fn master_port(&self, name: &str) -> Option<u16> {
        self.cli(&["SENTINEL", "get-master-addr-by-name", name])
            .lines()
            .nth(1)
            .and_then(|port| port.trim().parse().ok())
    }
}
