//! Shared pieces of the end-to-end operator tests: a real Prometheus child process scraping the
//! replicator, instant queries through its HTTP API, plain HTTP reads of the replicator's
//! endpoints, a TCP proxy in front of Postgres that can be cut and restored, and a log buffer that
//! captures everything the replicator logs in this test binary.
#![allow(dead_code)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Kills a child process when the test ends, however it ends.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free port")
}

/// Start Prometheus scraping `target` every second with the project's alert rules and wait until
/// it is ready; returns the child and its base URL. A start that loses its port to another process
/// is retried on a fresh port. Fails loudly when the binary is missing.
pub async fn start_prometheus(target: SocketAddr, dir: &std::path::Path) -> (ChildGuard, String) {
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "prometheus".to_string());
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: mongo2pg\n    static_configs:\n      - targets: [\"{target}\"]\n",
            rules = super::common::repo_path("deploy/prometheus/alerts.yml").display(),
        ),
    )
    .expect("write prometheus.yml");
    let log_path = dir.join("prometheus.log");
    for attempt in 1..=3 {
        let port = free_port();
        let log = std::fs::File::create(&log_path).expect("create prometheus.log");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("data{attempt}")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {bin} ({e}): install it with `apt-get install prometheus` \
                     or set PROMETHEUS_BIN"
                )
            });
        let mut guard = ChildGuard(child);
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = guard.0.try_wait() {
                break;
            }
            if http_ready(&format!("{base}/-/ready")).await {
                return (guard, base);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    panic!(
        "prometheus never became ready; its log:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
}

async fn http_ready(url: &str) -> bool {
    reqwest::get(url)
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Prometheus' view of its scrape targets, for failure messages.
pub async fn prom_targets(base: &str) -> String {
    match reqwest::get(format!("{base}/api/v1/targets")).await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(e) => format!("targets unavailable: {e}"),
    }
}

fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The instant-query result vector, or None while Prometheus is not answering yet.
pub async fn prom_query(base: &str, promql: &str) -> Option<Vec<Value>> {
    let url = format!("{base}/api/v1/query?query={}", encode(promql));
    let body: Value = reqwest::get(url).await.ok()?.json().await.ok()?;
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"].as_array().cloned()
}

/// The single value of an instant query, if it returned exactly one sample.
pub async fn prom_scalar(base: &str, promql: &str) -> Option<f64> {
    let result = prom_query(base, promql).await?;
    match result.as_slice() {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

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
