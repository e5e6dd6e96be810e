//! Splits a Postgres connection string (a `postgres://` URL or a libpq `key=value` string) into
//! the TLS options tokio-postgres does not understand (`sslmode` beyond `require`, `sslrootcert`,
//! `sslcert`, `sslkey`, and the libpq options we refuse) and the rest, which is handed to
//! tokio-postgres unchanged. Pure text handling: it reads no file and never includes a value in
//! an error, so a password cannot leak through it.

use std::borrow::Cow;

/// The TLS settings of a connection string, as written (not yet checked).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
}

/// libpq options mongo2pg does not implement; naming one is an error instead of being ignored.
pub const UNSUPPORTED: [&str; 5] = ["sslpassword", "sslcrl", "sslcrldir", "sslsni", "requiressl"];

/// A connection string mongo2pg cannot take apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConninfoError {
    #[error("the value of `{0}` has no closing quote")]
    UnterminatedQuote(String),
    #[error("`{0}` has no value (expected key=value)")]
    MissingValue(String),
    #[error("`{0}` is not supported by mongo2pg")]
    Unsupported(String),
    #[error("`{0}` is given twice")]
    Duplicate(String),
}

/// The connection string without the TLS options, and the TLS options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// What tokio-postgres parses (same form as the input).
    pub rest: String,
    pub tls: TlsOptions,
}

/// Splits `input`; URLs and `key=value` strings keep their form.
pub fn split(input: &str) -> Result<Split, ConninfoError> {
    if ["postgres://", "postgresql://"]
        .iter()
        .any(|p| input.starts_with(p))
    {
        split_url(input)
    } else {
        split_keywords(input)
    }
}

/// Records `key` in `tls` when it is a TLS option; Ok(false) when it belongs to tokio-postgres.
fn take(tls: &mut TlsOptions, key: &str, value: String) -> Result<bool, ConninfoError> {
    if UNSUPPORTED.contains(&key) {
        return Err(ConninfoError::Unsupported(key.to_string()));
    }
    let slot = match key {
        "sslmode" => &mut tls.sslmode,
        "sslrootcert" => &mut tls.sslrootcert,
        "sslcert" => &mut tls.sslcert,
        "sslkey" => &mut tls.sslkey,
        _ => return Ok(false),
    };
    if slot.is_some() {
        return Err(ConninfoError::Duplicate(key.to_string()));
    }
    *slot = Some(value);
    Ok(true)
}

/// `postgres://user:password@host:port/db?key=value&...`: the query's TLS options are removed,
/// every other byte is kept as written.
fn split_url(input: &str) -> Result<Split, ConninfoError> {
    // Like tokio-postgres: the credentials end at the first '@', the query starts at the first
    // '?' after them.
    let after_creds = input.find('@').map_or(0, |at| at + 1);
    let Some(q) = input[after_creds..].find('?').map(|q| after_creds + q) else {
        return Ok(Split {
            rest: input.to_string(),
            tls: TlsOptions::default(),
        });
    };
    let mut tls = TlsOptions::default();
    let mut kept: Vec<&str> = Vec::new();
    for pair in input[q + 1..].split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(key);
        if !take(&mut tls, &key, decode(value).into_owned())? {
            kept.push(pair);
        }
    }
    let mut rest = input[..q].to_string();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok(Split { rest, tls })
}

fn decode(s: &str) -> Cow<'_, str> {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy()
}

/// libpq `key = value` pairs separated by white space; values may be single-quoted with `\'`
/// and `\\` escapes. The kept pairs are written back quoted.
fn split_keywords(input: &str) -> Result<Split, ConninfoError> {
    let mut tls = TlsOptions::default();
    let mut kept: Vec<String> = Vec::new();
    let mut chars = input.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            if chars.peek().is_none() {
                break;
            }
            // A '=' without a key: let tokio-postgres report it.
            kept.push(chars.by_ref().collect());
            break;
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return Err(ConninfoError::MissingValue(key));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    None => return Err(ConninfoError::UnterminatedQuote(key)),
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(ConninfoError::UnterminatedQuote(key)),
                    },
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(ConninfoError::MissingValue(key));
            }
        }
        if !take(&mut tls, &key, value.clone())? {
            kept.push(format!("{key}='{}'", quote(&value)));
        }
    }
    Ok(Split {
        rest: kept.join(" "),
        tls,
    })
}

fn quote(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: &str, root: Option<&str>) -> TlsOptions {
        TlsOptions {
            sslmode: Some(mode.to_string()),
            sslrootcert: root.map(str::to_string),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn url_loses_only_its_tls_parameters() {
        let s = split(
            "postgres://app:p%40ss@db:5433/market?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem",
        )
        .expect("splits");
        assert_eq!(
            s.rest,
            "postgres://app:p%40ss@db:5433/market?application_name=x"
        );
        assert_eq!(s.tls, tls("verify-full", Some("/etc/ca.pem")));
    }

    #[test]
    fn url_without_tls_parameters_is_unchanged() {
        let url = "postgresql://u@h/db?connect_timeout=5";
        let s = split(url).expect("splits");
        assert_eq!(s.rest, url);
        assert_eq!(s.tls, TlsOptions::default());
        let s = split("postgres://u:pw?x@h/db?sslmode=require").expect("splits");
        assert_eq!(s.rest, "postgres://u:pw?x@h/db");
        assert_eq!(s.tls.sslmode.as_deref(), Some("require"));
    }

    #[test]
    fn keyword_string_keeps_other_pairs_quoted_and_escaped() {
        let s = split(
            "host=db  user = app password='it\\'s a \\\\secret' sslmode=verify-ca sslcert='/c d/client.pem' sslkey=/k.pem",
        )
        .expect("splits");
        assert_eq!(
            s.rest,
            "host='db' user='app' password='it\\'s a \\\\secret'"
        );
        assert_eq!(s.tls.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(s.tls.sslcert.as_deref(), Some("/c d/client.pem"));
        assert_eq!(s.tls.sslkey.as_deref(), Some("/k.pem"));
        let parsed: tokio_postgres::Config = s.rest.parse().expect("tokio-postgres parses it");
        assert_eq!(parsed.get_password(), Some(&b"it's a \\secret"[..]));
    }

    #[test]
    fn broken_keyword_strings_name_the_key_and_never_the_value() {
        assert_eq!(
            split("host=db password='unterminated"),
            Err(ConninfoError::UnterminatedQuote("password".into()))
        );
        assert_eq!(
            split("host=db password"),
            Err(ConninfoError::MissingValue("password".into()))
        );
        assert_eq!(
            split("host=db sslpassword=x"),
            Err(ConninfoError::Unsupported("sslpassword".into()))
        );
        assert_eq!(
            split("postgres://h/db?sslmode=require&sslmode=disable"),
            Err(ConninfoError::Duplicate("sslmode".into()))
        );
        let shown = split("password='s3cret").unwrap_err().to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
