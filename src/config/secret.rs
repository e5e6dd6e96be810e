//! Secrets in configuration: connection strings whose passwords must never reach logs, metrics,
//! errors or the gaps table. `Secret` redacts itself in `Debug` and `Display`; `redact_secrets` (the
//! crate's one redaction) hides passwords in URIs, conninfo strings and any free text around them.

use std::borrow::Cow;
use std::fmt;

/// What a hidden password (or other secret value) is replaced with.
pub const REDACTED: &str = "***";

/// A secret string (typically a connection URL). Read it with `expose()` only where it is handed
/// to a driver.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The real value, for the database driver and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Shows the connection target with the password hidden; anything that is neither a URI nor a
/// conninfo string is hidden completely.
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains("://") || self.0.contains('=') {
            f.write_str(&redact_secrets(&self.0))
        } else {
            f.write_str(REDACTED)
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.to_string())
    }
}

/// Keys whose values are secret, in query parameters, conninfo strings and `key=value` text.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "sslkey",
        "authmechanismproperties",
    ]
    .iter()
    .any(|needle| key.contains(needle))
}

/// An error's text with its secrets hidden (see `redact_secrets`).
pub fn redact_error(e: &dyn fmt::Display) -> String {
    redact_secrets(&e.to_string()).into_owned()
}

/// Bytes that end a URI or an unquoted value inside free text (log lines, error messages).
fn ends_segment(b: u8) -> bool {
    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\')
}

/// Hides secrets anywhere in `text` (a connection string, an error message, a log line): the
/// password of every `scheme://user:password@host` URI (`mongodb://`, `mongodb+srv://`,
/// `postgres://`, ...; a raw `@` inside the password included) and the value of every
/// `key=value` pair whose key names a secret (`password`, `sslkey`, `authMechanismProperties`,
/// ...), in URI query strings and libpq conninfo alike, quoted conninfo values included. Errs on
/// the side of hiding too much. Returns the input unchanged (borrowed) when nothing looks secret.
/// This is the crate's only redaction: `Secret`, errors, logs and health endpoints all use it.
pub fn redact_secrets(text: &str) -> Cow<'_, str> {
    let uris = redact_uri_passwords(text);
    match redact_secret_values(&uris) {
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
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let start = search + found + 3;
        let end = bytes[start..]
            .iter()
            .position(|&b| ends_segment(b))
            .map_or(bytes.len(), |p| start + p);
        let authority_end = text[start..end].find('?').map_or(end, |q| start + q);
        // The last '@' before the query ends the userinfo, even when a password holds a raw '@'.
        if let Some(at) = text[start..authority_end].rfind('@') {
            if let Some(colon) = text[start..start + at].find(':') {
                let (secret_start, secret_end) = (start + colon + 1, start + at);
                if &text[secret_start..secret_end] != REDACTED {
                    out.push_str(&text[copied..secret_start]);
                    out.push_str(REDACTED);
                    copied = secret_end;
                }
            }
        }
        search = end.max(start);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// Replaces the values of secret `key=value` pairs (spaces around `=` allowed; a single-quoted
/// value may hold spaces and `\'` or `''` escapes).
fn redact_secret_values(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while let Some(eq) = bytes[i..].iter().position(|&b| b == b'=').map(|p| i + p) {
        i = eq + 1;
        let key_end = text[..eq].trim_end().len();
        let key_start = bytes[..key_end]
            .iter()
            .rposition(|&b| !(b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')))
            .map_or(0, |p| p + 1);
        if key_start == key_end || key_start < copied || !is_secret_key(&text[key_start..key_end]) {
            continue;
        }
        let value_start = eq + 1 + (text[eq + 1..].len() - text[eq + 1..].trim_start().len());
        let value_end = if bytes.get(value_start) == Some(&b'\'') {
            quoted_value_end(bytes, value_start)
        } else {
            bytes[value_start..]
                .iter()
                .position(|&b| ends_segment(b) || b == b'&')
                .map_or(bytes.len(), |p| value_start + p)
        };
        let value = &text[value_start..value_end];
        if value.is_empty() || value == REDACTED {
            continue;
        }
        out.push_str(&text[copied..value_start]);
        out.push_str(REDACTED);
        copied = value_end;
        i = value_end.max(i);
    }
    if copied == 0 {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

/// The end (exclusive) of a single-quoted value starting at `start`.
fn quoted_value_end(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        redact_secrets(text).into_owned()
    }

    #[test]
    fn mongodb_uri_password_is_hidden_and_hosts_stay_visible() {
        assert_eq!(
            redact(
                "mongodb://app:s3cr%40t@m1:27017,m2:27017/market?replicaSet=rs0&authSource=admin"
            ),
            "mongodb://app:***@m1:27017,m2:27017/market?replicaSet=rs0&authSource=admin"
        );
        assert_eq!(
            redact("mongodb+srv://app:p@ss@cluster.example/db"),
            "mongodb+srv://app:***@cluster.example/db"
        );
        assert_eq!(
            redact("mongodb://localhost:27017/?directConnection=true"),
            "mongodb://localhost:27017/?directConnection=true"
        );
    }

    #[test]
    fn postgres_uri_password_and_password_parameters_are_hidden() {
        assert_eq!(
            redact("postgres://postgres:pw@127.0.0.1:5432/app"),
            "postgres://postgres:***@127.0.0.1:5432/app"
        );
        assert_eq!(
            redact("postgresql://u@h/db?password=pw&sslmode=require"),
            "postgresql://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn conninfo_password_values_are_hidden_quoted_or_not() {
        assert_eq!(
            redact("host=db user=app password=pw dbname=x"),
            "host=db user=app password=*** dbname=x"
        );
        assert_eq!(
            redact("host=db password='it\\'s a secret' dbname=x"),
            "host=db password=*** dbname=x"
        );
        assert_eq!(redact("password = 'a b' host=db"), "password = *** host=db");
    }

    #[test]
    fn secret_debug_and_display_never_show_the_password() {
        let secret = Secret::new("postgres://app:hunter2@db/app");
        assert_eq!(secret.to_string(), "postgres://app:***@db/app");
        assert_eq!(
            format!("{secret:?}"),
            "Secret(\"postgres://app:***@db/app\")"
        );
        assert_eq!(secret.expose(), "postgres://app:hunter2@db/app");
        let token = Secret::new("hunter2");
        assert_eq!(token.to_string(), "***");
        assert!(!format!("{token:?}").contains("hunter2"));
    }

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
    fn secrets_inside_free_text_are_hidden_whatever_form_they_take() {
        assert_eq!(
            redact("connect failed (host=db password='s3 cr\\'et' dbname=x): timeout"),
            "connect failed (host=db password=*** dbname=x): timeout"
        );
        assert_eq!(
            redact("at mongodb://u:pw@h/db?authMechanismProperties=AWS_SESSION_TOKEN:x&w=1 then"),
            "at mongodb://u:***@h/db?authMechanismProperties=***&w=1 then"
        );
        assert_eq!(
            redact("user@example.com said a=b"),
            "user@example.com said a=b"
        );
    }
}
