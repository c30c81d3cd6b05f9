//! End-to-end: TLS towards upstreams with a custom CA, and a client certificate (mTLS). The
//! upstream is `openssl s_server` requiring a client certificate signed by the test CA; the
//! openssl CLI is installed by scripts/install-test-deps.sh (missing is a failure, not a skip).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{
    Config, Gateway, Pattern, Route, TempDir, Upstream as UpstreamConfig, closed_port, wait_until,
};

fn openssl(dir: &TempDir, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl CLI is needed (run scripts/install-test-deps.sh)");
    assert!(status.success(), "openssl {args:?} failed");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
pub(crate) fn make_pki(dir: &TempDir) {
    dir.write(
        "ext.cnf",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    );
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=trustgate-test-ca",
    ]);
    openssl(dir, &ca);
    for name in ["server", "client"] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let subject = format!("/CN={name}");
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        );
    }
}

struct Upstream(Child);

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `openssl s_server` answering every GET with 200 and demanding a client certificate.
fn tls_upstream(dir: &TempDir) -> (Upstream, std::net::SocketAddr) {
    let addr = closed_port();
    let port = addr.port().to_string();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &port,
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-CAfile",
            "ca.pem",
            "-Verify",
            "1",
        ])
        .current_dir(&dir.0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(
            addr
        )
        .is_ok()),
        "openssl s_server did not start"
    );
    (Upstream(child), addr)
}

#[test]
fn upstream_tls_with_custom_ca_and_client_certificate() {
    let pki = TempDir::new();
    make_pki(&pki);
    let (_upstream, addr) = tls_upstream(&pki);
    let url = format!("https://{addr}");
    let ca = pki.0.join("ca.pem");
    let config = Config::new()
        .upstream(
            UpstreamConfig::new("mtls", &url)
                .path("ca_file", &ca)
                .path("client_cert", &pki.0.join("client.pem"))
                .path("client_key", &pki.0.join("client.key")),
        )
        .upstream(UpstreamConfig::new("no-client-cert", &url).path("ca_file", &ca))
        .upstream(UpstreamConfig::new("public-roots", &url))
        .route(Route::new("mtls", "/mtls", "mtls", Pattern::Public))
        .route(Route::new(
            "no-client-cert",
            "/no-client-cert",
            "no-client-cert",
            Pattern::Public,
        ))
        .route(Route::new(
            "public-roots",
            "/public-roots",
            "public-roots",
            Pattern::Public,
        ));
    let gateway = Gateway::start(&config);
    // The custom CA verifies the upstream, and the client certificate satisfies its mTLS demand.
    let r = gateway.get("/mtls/", &[]);
    assert_eq!(r.status, 200, "{}", r.body_text());
    // Without a client certificate the upstream refuses the handshake: 502, never a hang.
    assert_eq!(gateway.get("/no-client-cert/", &[]).status, 502);
    // Without the custom CA (public roots only) the upstream's certificate is not trusted.
    assert_eq!(gateway.get("/public-roots/", &[]).status, 502);
}
