//! Log output: `init(format)` installs the global tracing subscriber (text or JSON lines on
//! stderr, levels from `RUST_LOG`, default `info`), and every line passes through
//! `redact_secrets` before it is written, so a connection string that slips into a message or an
//! error still never reaches the log with its password.
//!
//! Spans are the callers' business (one `info_span!("stream", collection)` per stream task).
//! Stdout is left to commands that print machine-readable output (`gaps list --json`).

use std::borrow::Cow;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::filter::{EnvFilter, FromEnvError, LevelFilter};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::{SubscriberInitExt, TryInitError};

/// What replaces a secret.
pub const REDACTED: &str = "***";

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
    let filter = env_filter()?;
    let colors = format == LogFormat::Text && io::stderr().is_terminal();
    subscriber(format, filter, std::io::stderr, colors)
        .try_init()
        .map_err(LoggingError::AlreadyInstalled)
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

fn ends_segment(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\')
}

/// Replaces passwords in free text: the password of every `scheme://user:password@host` URI and
/// every `password=value` pair (libpq key/value strings, query parameters), case-insensitively.
/// Errs on the side of hiding too much. Returns the input unchanged (borrowed) when nothing
/// looks like a secret.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    let uris = redact_uri_passwords(text);
    match redact_password_pairs(&uris) {
        Cow::Borrowed(_) => uris,
        Cow::Owned(s) => Cow::Owned(s),
    }
}

fn redact_uri_passwords(text: &str) -> Cow<'_, str> {
    if !text.contains("://") {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut changed = false;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let start = search + found + 3;
        let end = bytes[start..]
            .iter()
            .position(|&b| ends_segment(b))
            .map_or(bytes.len(), |p| start + p);
        let segment = &text[start..end];
        if let Some(at) = segment.rfind('@') {
            if let Some(colon) = segment[..at].find(':') {
                let secret_start = start + colon + 1;
                let secret_end = start + at;
                if &text[secret_start..secret_end] != REDACTED {
                    out.push_str(&text[copied..secret_start]);
                    out.push_str(REDACTED);
                    copied = secret_end;
                    changed = true;
                }
            }
        }
        search = end.max(start);
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

fn redact_password_pairs(text: &str) -> Cow<'_, str> {
    const KEY: &str = "password=";
    let lower = text.to_ascii_lowercase();
    if !lower.contains(KEY) {
        return Cow::Borrowed(text);
    }
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut changed = false;
    let mut search = 0;
    while let Some(found) = lower[search..].find(KEY) {
        let value_start = search + found + KEY.len();
        let value_end = bytes[value_start..]
            .iter()
            .position(|&b| ends_segment(b) || matches!(b, b'&' | b';' | b','))
            .map_or(bytes.len(), |p| value_start + p);
        let value = &text[value_start..value_end];
        if !value.is_empty() && value != REDACTED {
            out.push_str(&text[copied..value_start]);
            out.push_str(REDACTED);
            copied = value_end;
            changed = true;
        }
        search = value_end.max(value_start);
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_passwords_are_replaced_and_the_rest_is_kept() {
        assert_eq!(
            redact_secrets("connecting to postgres://app:s3cret@db:5432/market failed"),
            "connecting to postgres://app:***@db:5432/market failed"
        );
        assert_eq!(
            redact_secrets("mongodb://root:p%40ss@m1:27017,m2:27017/?replicaSet=rs0"),
            "mongodb://root:***@m1:27017,m2:27017/?replicaSet=rs0"
        );
    }

    #[test]
    fn quoted_uri_in_debug_output_is_redacted() {
        assert_eq!(
            redact_secrets(r#"url="postgresql://u:pw@h/db" next"#),
            r#"url="postgresql://u:***@h/db" next"#
        );
    }

    #[test]
    fn password_with_at_sign_is_hidden_entirely() {
        assert_eq!(
            redact_secrets("mongodb://u:a@b@host/db"),
            "mongodb://u:***@host/db"
        );
    }

    #[test]
    fn uris_without_password_are_untouched() {
        let text = "mongodb://host:27017/db and postgres://user@host/db";
        assert!(matches!(redact_secrets(text), Cow::Borrowed(_)));
    }

    #[test]
    fn key_value_passwords_are_replaced() {
        assert_eq!(
            redact_secrets("host=db user=app PASSWORD=hunter2 dbname=m"),
            "host=db user=app PASSWORD=*** dbname=m"
        );
        assert_eq!(
            redact_secrets("postgres://h/db?user=a&password=x1&sslmode=off"),
            "postgres://h/db?user=a&password=***&sslmode=off"
        );
    }

    #[test]
    fn redacting_twice_changes_nothing_more() {
        let once = redact_secrets("postgres://a:b@h/d password=c").into_owned();
        assert_eq!(redact_secrets(&once), once.as_str());
    }

    #[test]
    fn log_format_parses_case_insensitively_and_rejects_others() {
        assert_eq!("JSON".parse::<LogFormat>().ok(), Some(LogFormat::Json));
        assert_eq!("text".parse::<LogFormat>().ok(), Some(LogFormat::Text));
        assert!("yaml".parse::<LogFormat>().is_err());
    }
}
