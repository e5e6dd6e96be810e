//! Secrets in configuration: connection strings whose passwords must never reach logs, metrics,
//! errors or the gaps table. `Secret` redacts itself in `Debug` and `Display`; `redact_uri` hides
//! passwords in `mongodb://` / `postgres://` URIs and in key=value Postgres conninfo strings.

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
            f.write_str(&redact_uri(&self.0))
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

/// Query-parameter / conninfo keys whose values are secret.
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

/// Hides passwords in a connection string: the `user:password@` part and secret query parameters
/// of URIs (`mongodb://`, `mongodb+srv://`, `postgres://`, `postgresql://`), or `password=...` in a
/// key=value conninfo (quoted values included). Over-redacts rather than leaking when unsure.
pub fn redact_uri(input: &str) -> String {
    match input.find("://") {
        Some(at) => redact_url(&input[..at + 3], &input[at + 3..]),
        None => redact_conninfo(input),
    }
}

fn redact_url(scheme: &str, rest: &str) -> String {
    let (before_query, query) = match rest.find('?') {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let mut out = String::from(scheme);
    // The last '@' before the query ends the userinfo, even when a password holds a raw '@'.
    match before_query.rfind('@') {
        Some(at) => {
            let userinfo = &before_query[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push(':');
                    out.push_str(REDACTED);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_key(k) => format!("{k}={REDACTED}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// `host=db user=app password='it''s secret' dbname=x`: values may be single-quoted with `\'`
/// or `''` escapes.
fn redact_conninfo(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let chars: Vec<char> = input.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        // Copy whitespace.
        if chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        // Key up to '=' (or a bare word).
        let key_start = i;
        while i < chars.len() && chars[i] != '=' && !chars[i].is_whitespace() {
            i += 1;
        }
        let key: String = chars[key_start..i].iter().collect();
        out.push_str(&key);
        // Optional spaces around '='.
        while i < chars.len()
            && chars[i].is_whitespace()
            && chars[i..].iter().find(|c| !c.is_whitespace()) == Some(&'=')
        {
            out.push(chars[i]);
            i += 1;
        }
        if i >= chars.len() || chars[i] != '=' {
            continue;
        }
        out.push('=');
        i += 1;
        while i < chars.len() && chars[i].is_whitespace() {
            out.push(chars[i]);
            i += 1;
        }
        // Value: quoted or bare.
        let value_start = i;
        if i < chars.len() && chars[i] == '\'' {
            i += 1;
            while i < chars.len() {
                match chars[i] {
                    '\\' => i += 2,
                    '\'' if chars.get(i + 1) == Some(&'\'') => i += 2,
                    '\'' => {
                        i += 1;
                        break;
                    }
                    _ => i += 1,
                }
            }
        } else {
            while i < chars.len() && !chars[i].is_whitespace() {
                i += 1;
            }
        }
        let end = i.min(chars.len());
        if is_secret_key(&key) {
            out.push_str(REDACTED);
        } else {
            out.extend(&chars[value_start..end]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongodb_uri_password_is_hidden_and_hosts_stay_visible() {
        assert_eq!(
            redact_uri(
                "mongodb://app:s3cr%40t@m1:27017,m2:27017/market?replicaSet=rs0&authSource=admin"
            ),
            "mongodb://app:***@m1:27017,m2:27017/market?replicaSet=rs0&authSource=admin"
        );
        assert_eq!(
            redact_uri("mongodb+srv://app:p@ss@cluster.example/db"),
            "mongodb+srv://app:***@cluster.example/db"
        );
        assert_eq!(
            redact_uri("mongodb://localhost:27017/?directConnection=true"),
            "mongodb://localhost:27017/?directConnection=true"
        );
    }

    #[test]
    fn postgres_uri_password_and_password_parameters_are_hidden() {
        assert_eq!(
            redact_uri("postgres://postgres:pw@127.0.0.1:5432/app"),
            "postgres://postgres:***@127.0.0.1:5432/app"
        );
        assert_eq!(
            redact_uri("postgresql://u@h/db?password=pw&sslmode=require"),
            "postgresql://u@h/db?password=***&sslmode=require"
        );
        assert_eq!(redact_uri("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn conninfo_password_values_are_hidden_quoted_or_not() {
        assert_eq!(
            redact_uri("host=db user=app password=pw dbname=x"),
            "host=db user=app password=*** dbname=x"
        );
        assert_eq!(
            redact_uri("host=db password='it\\'s a secret' dbname=x"),
            "host=db password=*** dbname=x"
        );
        assert_eq!(
            redact_uri("password = 'a b' host=db"),
            "password = *** host=db"
        );
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
}
