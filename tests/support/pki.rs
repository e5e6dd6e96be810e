//! Certificates generated for a test (rcgen): a CA, a server certificate for `localhost` and
//! `127.0.0.1` signed by it, and client certificates whose common name is a database user — all
//! written as PEM files into a directory of the test's own, removed with it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A CA with a server certificate; the files live in `dir`.
pub struct Pki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM): what clients trust.
    pub ca: PathBuf,
    /// The server certificate (PEM) for `localhost` and `127.0.0.1`, and its key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A client certificate and its key (PEM files).
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("mongo2pg test CA {name}"));
    CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key")).expect("CA")
}

fn write(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).expect("write PEM file");
    path
}

impl Pki {
    /// A fresh CA (named `name` in its subject) and server certificate.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::Builder::new()
            .prefix("m2p-pki-")
            .tempdir()
            .expect("PKI dir");
        let issuer = ca(name);
        let key = KeyPair::generate().expect("server key");
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("server params");
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &issuer).expect("server certificate");
        Pki {
            ca: write(dir.path(), "ca.crt", &issuer.pem()),
            server_cert: write(dir.path(), "server.crt", &cert.pem()),
            server_key: write(dir.path(), "server.key", &key.serialize_pem()),
            dir,
            issuer,
        }
    }

    /// A client certificate with `user` as its common name, signed by this CA.
    pub fn client(&self, user: &str) -> ClientCert {
        let key = KeyPair::generate().expect("client key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        params.distinguished_name.push(DnType::CommonName, user);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("client certificate");
        ClientCert {
            cert: write(self.dir.path(), &format!("{user}.crt"), &cert.pem()),
            key: write(
                self.dir.path(),
                &format!("{user}.key"),
                &key.serialize_pem(),
            ),
        }
    }

    /// The certificate of another CA: trusting it must fail.
    pub fn unrelated_ca(&self) -> PathBuf {
        write(self.dir.path(), "other-ca.crt", &ca("unrelated").pem())
    }
}
