//! mongosim: a MongoDB wire-protocol simulator for tests and demos. It presents itself as the
//! primary of a single-node replica set so the official drivers (Rust, pymongo, Node) run
//! unmodified against it, keeps data in memory, and serves change streams with resume tokens,
//! a bounded history and fault injection; optionally it requires SCRAM authentication and TLS.
//! It is not a database: no persistence, no authorization roles.
//!
//! Start it in-process with [`start`] and drive it through the returned [`SimHandle`].

mod auth;
mod clock;
mod commands;
pub mod control;
mod error;
mod failpoint;
mod oplog;
mod pipeline;
mod rawdoc;
mod server;
mod session;
mod state;
mod store;
mod tls;
mod token;
mod wire;

pub use auth::{CredentialError, SimUser, UserSpecError};
pub use error::CommandError;
pub use tls::TlsSetupError;

use state::Shared;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Simulator configuration.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Interface to bind (`127.0.0.1` by default).
    pub host: String,
    /// Port to bind; 0 picks a free port (the bound port is advertised).
    pub port: u16,
    /// Replica-set name reported in hello.
    pub set_name: String,
    /// History ("oplog window") size in entries; resuming from before it fails with 286.
    pub window: usize,
    /// Unix seconds the simulator's clock reads at start (cluster time, wallTime, localTime);
    /// it then advances with real time. `None` follows the real clock.
    pub start_time: Option<u64>,
    /// Users clients must authenticate as (SCRAM-SHA-1 / SCRAM-SHA-256); empty: no
    /// authentication.
    pub users: Vec<SimUser>,
    /// PEM certificate chain for TLS; with `tls_key_file`, every connection must use TLS.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key_file: Option<PathBuf>,
    /// PEM CA file clients should trust; only used to build [`SimHandle::uri`].
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: "127.0.0.1".to_owned(),
            port: 0,
            set_name: "rs0".to_owned(),
            window: 1_000_000,
            start_time: None,
            users: Vec::new(),
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
        }
    }
}

/// A running simulator. Cheap to clone; every clone controls the same server.
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// The URI options TLS clients need (`&tls=true[&tlsCAFile=...]`), empty without TLS.
    tls_options: String,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Percent-encodes a URI option value (unreserved characters and `/` stay as they are).
fn uri_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Binds the listener and starts serving in the background. Fails when the address cannot be
/// bound, a user's password cannot be prepared, or the TLS files cannot be used (the error's
/// source says which).
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
    let users = auth::Users::new(&config.users).map_err(std::io::Error::other)?;
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key).map_err(std::io::Error::other)?),
        (None, None) => None,
        _ => return Err(std::io::Error::other(TlsSetupError::Incomplete)),
    };
    let tls_options = match (&tls, &config.tls_ca_file) {
        (None, _) => String::new(),
        (Some(_), None) => "&tls=true".to_owned(),
        (Some(_), Some(ca)) => format!("&tls=true&tlsCAFile={}", uri_encode(&ca.to_string_lossy())),
    };
    let listener = TcpListener::bind((config.host.as_str(), config.port)).await?;
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        addr.ip().to_string()
    };
    let advertised = format!("{host}:{}", addr.port());
    let shared = Arc::new(Shared::new(
        advertised,
        config.set_name.clone(),
        config.window,
        clock::WallClock::starting_at(config.start_time),
        users,
    ));
    tracing::info!(
        address = %addr,
        set_name = %config.set_name,
        window = config.window,
        users = config.users.len(),
        tls = tls.is_some(),
        "mongosim listening"
    );
    let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared), tls));
    Ok(SimHandle {
        shared,
        addr,
        tls_options,
        task: Arc::new(Mutex::new(Some(task))),
    })
}

impl SimHandle {
    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mongodb://HOST:PORT/?directConnection=true`, plus `&tls=true&tlsCAFile=<ca>` when TLS is
    /// on (the CA file only when configured).
    pub fn uri(&self) -> String {
        format!(
            "mongodb://{}/?directConnection=true{}",
            self.shared.advertised, self.tls_options
        )
    }

    /// `mongodb://HOST:PORT/?replicaSet=<set name>` (plus the TLS options, as [`uri`](Self::uri)).
    pub fn replica_set_uri(&self) -> String {
        format!(
            "mongodb://{}/?replicaSet={}{}",
            self.shared.advertised, self.shared.set_name, self.tls_options
        )
    }

    /// [`uri`](Self::uri) with credentials: `mongodb://USER:PASSWORD@HOST:PORT/?...&authSource=DB`.
    pub fn uri_with_credentials(&self, user: &str, password: &str, auth_db: &str) -> String {
        format!(
            "mongodb://{}:{}@{}/?directConnection=true&authSource={}{}",
            uri_encode(user),
            uri_encode(password),
            self.shared.advertised,
            uri_encode(auth_db),
            self.tls_options
        )
    }

    /// Stops accepting, closes every connection and waits for the listener to finish.
    pub async fn shutdown(self) {
        self.shared.resume();
        self.shared.shutdown.send_replace(true);
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    /// Forgets all history: resuming from any earlier token or time fails with 286.
    pub fn truncate_history(&self) {
        self.shared.truncate_history();
    }

    /// Resizes the history window (entries; at least 1).
    pub fn set_window(&self, entries: usize) {
        self.shared.set_window(entries);
    }

    /// Closes every open client connection (pending getMores get no reply).
    pub fn drop_connections(&self) {
        self.shared.drop_connections();
    }

    /// Steps down: hello reports a secondary and writes fail with 10107 NotWritablePrimary.
    pub fn step_down(&self) {
        self.shared.step_down();
    }

    /// Becomes primary again with a higher electionId.
    pub fn reelect(&self) {
        self.shared.reelect();
    }

    /// Stops answering: requests (including pending getMores) block until [`resume`](Self::resume).
    pub fn pause(&self) {
        self.shared.pause();
    }

    /// Answers requests again.
    pub fn resume(&self) {
        self.shared.resume();
    }
}
