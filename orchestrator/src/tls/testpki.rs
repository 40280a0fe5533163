//! A throwaway PKI for tests, made by the `openssl` command (a peer nobody here wrote):
//! a CA, a server certificate for `127.0.0.1` and `localhost`, and a client
//! certificate, all P-256, in a temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// The files of a test PKI; the directory goes away when this is dropped.
pub struct TestPki {
    /// A fresh directory under the system's temporary directory.
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    /// `CN=bramble server 1`, valid 30 days, serial 1001.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// `CN=bramble client`, for client-certificate authentication.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// `serverAuth`, with the names `127.0.0.1` and `localhost`.
    Server,
    ClientAuth,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` with a fresh P-256 key written to `key`: `mode` is `-x509` (a
/// self-signed certificate) or `-new` (a request); `rest` names the output and subject,
/// `extensions` are `-addext` values.
fn req_with_new_key(dir: &Path, mode: &str, key: &str, rest: &[&str], extensions: &[&str]) {
    let mut args =
        vec!["req", mode, "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    args.extend(["-keyout", key]);
    args.extend_from_slice(rest);
    for ext in extensions {
        args.extend(["-addext", ext]);
    }
    openssl(dir, &args);
}

impl TestPki {
    pub fn new() -> TestPki {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bramble-pki-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the PKI directory");
        req_with_new_key(
            &dir,
            "-x509",
            "ca.key",
            &["-out", "ca.pem", "-days", "365", "-subj", "/CN=Bramble test CA"],
            &["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign"],
        );
        let p = dir.clone();
        let mut pki = TestPki {
            ca_cert: p.join("ca.pem"),
            ca_key: p.join("ca.key"),
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
            dir,
        };
        (pki.server_cert, pki.server_key) =
            pki.issue("server1", "bramble server 1", 30, 1001, Usage::Server);
        (pki.client_cert, pki.client_key) =
            pki.issue("client", "bramble client", 30, 2001, Usage::ClientAuth);
        pki
    }

    /// Issues `<stem>.pem` and `<stem>.key` signed by the CA, with a fresh key.
    pub fn issue(
        &self,
        stem: &str,
        cn: &str,
        days: u32,
        serial: u32,
        usage: Usage,
    ) -> (PathBuf, PathBuf) {
        let dir = self.dir.as_path();
        let ext = match usage {
            Usage::Server => {
                "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
            }
            Usage::ClientAuth => "extendedKeyUsage=clientAuth\n",
        };
        let ext_file = format!("{stem}.ext");
        std::fs::write(
            dir.join(&ext_file),
            format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{ext}"),
        )
        .expect("write extensions");
        let (key, csr, pem) = (format!("{stem}.key"), format!("{stem}.csr"), format!("{stem}.pem"));
        req_with_new_key(dir, "-new", &key, &["-out", &csr, "-subj", &format!("/CN={cn}")], &[]);
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
                "-set_serial",
                &serial.to_string(),
                "-days",
                &days.to_string(),
                "-extfile",
                &ext_file,
                "-out",
                &pem,
            ],
        );
        (dir.join(pem), dir.join(key))
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}
