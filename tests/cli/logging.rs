//! Log output in both formats: lines are written, levels are filtered, and a password in a
//! message, a field, an error or a panic message never reaches the output.

use std::io::Write;
use std::sync::{Arc, Mutex};

use mongo2pg::logging::{subscriber, LogFormat, Redacting};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Collects everything written, like stderr would.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot reach {url}")]
struct ConnectError {
    url: String,
}

fn log_a_run(format: LogFormat, filter: &str) -> String {
    let buffer = Buffer::default();
    let sub = subscriber(format, EnvFilter::new(filter), buffer.clone(), false);
    tracing::subscriber::with_default(sub, || {
        let span = tracing::info_span!("stream", collection = "payments");
        let _entered = span.enter();
        tracing::info!(
            pg_url = "postgres://app:pg-Pa55@db:5432/market",
            "connecting"
        );
        let err = ConnectError {
            url: "mongodb://root:mongo-Pa55@m1:27017/?replicaSet=rs0".into(),
        };
        tracing::error!(error = %err, "stream failed");
        tracing::warn!("libpq string host=db user=app password=kv-Pa55 dbname=market");
        tracing::debug!("debug line only with a debug filter");
    });
    buffer.text()
}

#[test]
fn text_logs_keep_hosts_but_never_passwords() {
    let out = log_a_run(LogFormat::Text, "info");
    assert!(!out.contains("Pa55"), "{out}");
    assert!(out.contains("postgres://app:***@db:5432/market"), "{out}");
    assert!(
        out.contains("mongodb://root:***@m1:27017/?replicaSet=rs0"),
        "{out}"
    );
    assert!(out.contains("password=*** dbname=market"), "{out}");
    assert!(
        out.contains("stream{collection=\"payments\"}"),
        "span is named in the line: {out}"
    );
    assert_eq!(
        out.lines().count(),
        3,
        "debug is filtered out at info: {out}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_and_redacted() {
    let out = log_a_run(LogFormat::Json, "debug");
    assert!(!out.contains("Pa55"), "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[1]["level"], "ERROR");
    assert_eq!(lines[1]["fields"]["message"], "stream failed");
    assert_eq!(
        lines[1]["fields"]["error"],
        "cannot reach mongodb://root:***@m1:27017/?replicaSet=rs0"
    );
    assert_eq!(lines[0]["span"]["collection"], "payments");
}

#[test]
fn redacting_writer_passes_clean_bytes_through_unchanged() {
    let buffer = Buffer::default();
    let mut writer = Redacting(buffer.clone());
    let line = "batch committed collection=users events=42\n";
    assert_eq!(writer.write(line.as_bytes()).unwrap(), line.len());
    assert_eq!(buffer.text(), line);
}

#[test]
fn a_panic_message_is_printed_without_the_password() {
    let out = Buffer::default();
    let writer = out.clone();
    mongo2pg::logging::install_panic_hook(move || writer.clone());
    let panicked = std::thread::spawn(|| {
        panic!("cannot use postgres://app:Panic-Pa55@db:5432/market and password=Panic-Pa55")
    })
    .join();
    // Back to the default hook, so other tests' panics print as usual.
    let _ = std::panic::take_hook();
    assert!(panicked.is_err());
    let text = out.text();
    assert!(text.contains("panicked at"), "{text}");
    assert!(text.contains("postgres://app:***@db:5432/market"), "{text}");
    assert!(!text.contains("Panic-Pa55"), "{text}");
}
