//! A real Prometheus child process (Debian's `prometheus`; `PROMETHEUS_BIN` overrides the path)
//! scraping one target with the project's alert rules, and instant queries through its HTTP API.
//! The child is killed when its guard drops, however the test ends.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

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
            rules = super::repo_path("deploy/prometheus/alerts.yml").display(),
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
