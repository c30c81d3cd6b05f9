//! A test CA and a server certificate for `localhost` and 127.0.0.1, made with the `openssl` CLI
//! (scripts/install-test-deps.sh installs it; missing is a failure, never a skip).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

/// PEM files of a fresh CA and of a P-256 leaf it signed, read into memory.
pub struct TestCerts {
    /// The CA certificate, for a client's trust store.
    pub ca_pem: Vec<u8>,
    /// The server certificate (`localhost`, IP 127.0.0.1).
    pub cert_pem: Vec<u8>,
    /// The server's private key (PKCS#8).
    pub key_pem: Vec<u8>,
}

impl TestCerts {
    pub fn generate() -> Self {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "trustgate-certs-{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let _cleanup = RemoveOnDrop(dir.clone());
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=trustgate test CA",
            "-days",
            "1",
        ]);
        openssl(&dir, &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ]);
        openssl(&dir, &csr);
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "leaf.pem",
                "-days",
                "1",
                "-extfile",
                "leaf.ext",
            ],
        );
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        Self {
            ca_pem: read("ca.pem"),
            cert_pem: read("leaf.pem"),
            key_pem: read("leaf.key"),
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("the openssl CLI is needed (run scripts/install-test-deps.sh)");
    assert!(status.success(), "openssl {args:?} failed");
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
