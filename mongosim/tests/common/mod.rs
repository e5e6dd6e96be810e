//! Test helpers: start the simulator in-process on port 0 and connect the official driver;
//! generate a throwaway CA and server certificate for TLS tests.

#![allow(dead_code)]

use mongodb::Client;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Sim {
    pub handle: mongosim::SimHandle,
    pub client: Client,
}

pub async fn start() -> Sim {
    start_with(mongosim::SimConfig::default()).await
}

pub async fn start_with(config: mongosim::SimConfig) -> Sim {
    let handle = mongosim::start(config).await.expect("simulator starts");
    let client = Client::with_uri_str(handle.uri())
        .await
        .expect("driver accepts the URI");
    Sim { handle, client }
}

/// Polls `check` until it returns `Some`, failing after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `_data` string of a resume token.
pub fn token_data(token: &mongodb::change_stream::event::ResumeToken) -> String {
    match bson::to_bson(token) {
        Ok(bson::Bson::Document(d)) => d.get_str("_data").map(str::to_owned).unwrap_or_default(),
        _ => String::new(),
    }
}

/// Seconds of the cluster time encoded in a token's first 18 hex characters.
pub fn token_seconds(data: &str) -> u32 {
    u32::from_str_radix(&data[2..10], 16).unwrap_or(0)
}

pub fn unix_now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The error code of a driver error, if it carries one.
pub fn code_of(err: &mongodb::error::Error) -> Option<i32> {
    use mongodb::error::{ErrorKind, WriteFailure};
    match &*err.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        _ => None,
    }
}

/// PEM files of a CA and a server certificate it signed, removed on drop.
pub struct Pki {
    pub dir: PathBuf,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "mongosim-tls-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("mongosim test CA {name}"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("ca key"))
            .expect("ca certificate");
        let key = KeyPair::generate().expect("server key");
        let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params")
            .signed_by(&key, &ca)
            .expect("server certificate");
        let pki = Pki {
            ca: dir.join("ca.pem"),
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            dir,
        };
        std::fs::write(&pki.ca, ca.pem()).expect("write ca");
        std::fs::write(&pki.cert, cert.pem()).expect("write cert");
        std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
        pki
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
