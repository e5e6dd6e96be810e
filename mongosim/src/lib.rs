//! mongosim: a MongoDB wire-protocol simulator for tests and demos. It presents itself as the
//! primary of a single-node replica set so the official drivers (Rust, pymongo, Node) run
//! unmodified against it, keeps data in memory, and serves change streams with resume tokens,
//! a bounded history and fault injection. It is not a database: no persistence, no auth, no TLS.
//!
//! Start it in-process with [`start`] and drive it through the returned [`SimHandle`].

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
mod token;
mod wire;

pub use error::CommandError;

use state::Shared;
use std::net::SocketAddr;
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
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            host: "127.0.0.1".to_owned(),
            port: 0,
            set_name: "rs0".to_owned(),
            window: 1_000_000,
            start_time: None,
        }
    }
}

/// A running simulator. Cheap to clone; every clone controls the same server.
#[derive(Debug, Clone)]
pub struct SimHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Binds the listener and starts serving in the background.
pub async fn start(config: SimConfig) -> std::io::Result<SimHandle> {
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
    ));
    tracing::info!(address = %addr, set_name = %config.set_name, window = config.window, "mongosim listening");
    let task = tokio::spawn(server::accept_loop(listener, Arc::clone(&shared)));
    Ok(SimHandle {
        shared,
        addr,
        task: Arc::new(Mutex::new(Some(task))),
    })
}

impl SimHandle {
    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mongodb://HOST:PORT/?directConnection=true`.
    pub fn uri(&self) -> String {
        format!(
            "mongodb://{}/?directConnection=true",
            self.shared.advertised
        )
    }

    /// `mongodb://HOST:PORT/?replicaSet=<set name>`.
    pub fn replica_set_uri(&self) -> String {
        format!(
            "mongodb://{}/?replicaSet={}",
            self.shared.advertised, self.shared.set_name
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
