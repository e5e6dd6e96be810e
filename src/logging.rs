//! Log output: `init(format)` installs the global tracing subscriber (text or JSON lines on
//! stderr, levels from `RUST_LOG`, default `info`), and every line passes through
//! `redact_secrets` before it is written, so a connection string that slips into a message or an
//! error still never reaches the log with its password; panic messages too (`install_panic_hook`).
//!
//! Spans are the callers' business (one `info_span!("stream", collection)` per stream task).
//! Stdout is left to commands that print machine-readable output (`gaps list --json`).

use std::io::{self, IsTerminal, Write};

use crate::config::redact_secrets;
use tracing_subscriber::filter::{EnvFilter, FromEnvError, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

/// Log line format, chosen with `--log-format` / `MONGO2PG_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = LoggingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(LoggingError::UnknownFormat(s.to_string())),
        }
    }
}

/// Failure to set up logging.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("unknown log format {0:?}: expected text or json")]
    UnknownFormat(String),
    #[error("RUST_LOG holds an invalid filter directive")]
    Filter(#[source] FromEnvError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] TryInitError),
}

/// The level filter: `RUST_LOG` when set, `info` otherwise.
pub fn env_filter() -> Result<EnvFilter, LoggingError> {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env()
        .map_err(LoggingError::Filter)
}

/// Installs the global subscriber writing redacted lines to stderr. Call once, early in `main`.
pub fn init(format: LogFormat) -> Result<(), LoggingError> {
    install_panic_hook(std::io::stderr);
    let filter = env_filter()?;
    let colors = format == LogFormat::Text && io::stderr().is_terminal();
    subscriber(format, filter, std::io::stderr, colors)
        .try_init()
        .map_err(LoggingError::AlreadyInstalled)
}

/// Prints every panic (location and message) to `writer` with secrets redacted, instead of the
/// default hook's unredacted message; `init` installs it for stderr.
pub fn install_panic_hook<W, F>(writer: F)
where
    W: Write,
    F: Fn() -> W + Send + Sync + 'static,
{
    std::panic::set_hook(Box::new(move |info| {
        let _ = writeln!(writer(), "{}", redact_secrets(&info.to_string()));
    }));
}

/// A subscriber writing redacted lines to `writer`; `init` uses stderr, tests a buffer.
/// `colors` adds ANSI colors to text lines (only for a terminal).
pub fn subscriber<W>(
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
    colors: bool,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Redacting(writer))
        .with_ansi(colors)
        .with_target(true);
    match format {
        LogFormat::Text => Box::new(builder.finish()),
        LogFormat::Json => Box::new(builder.json().with_current_span(true).finish()),
    }
}

/// Wraps a writer (or a `MakeWriter`) so that every write is redacted.
///
/// The fmt layer renders a whole line before writing it once, so a secret is never split across
/// two writes.
#[derive(Debug, Clone)]
pub struct Redacting<W>(pub W);

impl<'w, M: MakeWriter<'w>> MakeWriter<'w> for Redacting<M> {
    type Writer = Redacting<M::Writer>;
    fn make_writer(&'w self) -> Self::Writer {
        Redacting(self.0.make_writer())
    }
}

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact_secrets(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_format_parses_case_insensitively_and_rejects_others() {
        assert_eq!("JSON".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>().ok(), Some(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
