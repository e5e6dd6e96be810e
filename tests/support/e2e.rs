//! End-to-end helpers: plain HTTP reads of the replicator's endpoints, a gauge read from a text
//! exposition, a TCP proxy in front of Postgres that can be cut and restored, and a log buffer
//! that captures everything the replicator logs in this test binary.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// GET `http://addr/path`: (status, body), or None when the server does not answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let resp = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.text().await.ok()?))
}

/// A gauge's value for one `collection` label in a Prometheus text exposition.
pub fn gauge_for(exposition: &str, name: &str, collection: &str) -> Option<f64> {
    let prefix = format!("{name}{{collection=\"{collection}\"}} ");
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// A TCP proxy to Postgres. `set_up(false)` plays a Postgres outage: every proxied connection is
/// dropped and new ones are closed as soon as they arrive; `set_up(true)` brings it back.
pub struct PgProxy {
    pub port: u16,
    up: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl PgProxy {
    pub async fn start(upstream: &'static str) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (up, up_rx) = watch::channel(true);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if !*up_rx.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut down = up_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        PgProxy { port, up, task }
    }

    pub fn set_up(&self, up: bool) {
        self.up.send_replace(up);
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.up.send_replace(false);
    }
}

static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Send every log line of this test binary (mongo2pg at debug, everything else at info) to a
/// shared buffer. Call before anything else installs a subscriber.
pub fn capture_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info,mongo2pg=debug"))
        .with_ansi(false)
        .with_writer(|| LogWriter)
        .try_init()
        .expect("this test binary installs the only log subscriber");
}

/// Everything logged so far.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
}
