//! Where a connection string comes from: a flag or environment variable (`--pg-url` / `PG_URL`)
//! or a file (`--pg-url-file` / `PG_URL_FILE`, e.g. a Kubernetes secret mounted as a file) —
//! exactly one of the two. A file's trailing line break is dropped; an empty file is an error.
//! Errors name the options and the file, never its content. It does not parse the string.

use std::path::{Path, PathBuf};

use super::Secret;

/// The options that give one connection string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UrlOption {
    /// What the string connects to, for messages (`Postgres`, `MongoDB`).
    pub database: &'static str,
    pub flag: &'static str,
    pub env: &'static str,
    pub file_flag: &'static str,
    pub file_env: &'static str,
}

impl UrlOption {
    /// `--pg-url / PG_URL`.
    pub fn direct(&self) -> String {
        format!("{} / {}", self.flag, self.env)
    }
    /// `--pg-url-file / PG_URL_FILE`.
    pub fn file(&self) -> String {
        format!("{} / {}", self.file_flag, self.file_env)
    }
}

/// The Postgres connection string's options.
pub const PG_URL: UrlOption = UrlOption {
    database: "Postgres",
    flag: "--pg-url",
    env: "PG_URL",
    file_flag: "--pg-url-file",
    file_env: "PG_URL_FILE",
};

/// The MongoDB connection string's options.
pub const MONGO_URL: UrlOption = UrlOption {
    database: "MongoDB",
    flag: "--mongo-url",
    env: "MONGO_URL",
    file_flag: "--mongo-url-file",
    file_env: "MONGO_URL_FILE",
};

/// A connection string that cannot be obtained.
#[derive(Debug, thiserror::Error)]
pub enum UrlSourceError {
    #[error(
        "{direct} and {file} are both given: give the {database} connection string one way only",
        direct = .0.direct(), file = .0.file(), database = .0.database
    )]
    Both(UrlOption),
    #[error(
        "no {database} connection string: give {direct} or {file}",
        direct = .0.direct(), file = .0.file(), database = .0.database
    )]
    Missing(UrlOption),
    #[error("{}: cannot read {}: {source}", .option.file(), .path.display())]
    Unreadable {
        option: UrlOption,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {} is empty", .option.file(), .path.display())]
    Empty { option: UrlOption, path: PathBuf },
}

/// The connection string given by `value` or `file`, or None when neither is given. An empty
/// `value` counts as not given.
pub fn resolve(
    option: UrlOption,
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Secret>, UrlSourceError> {
    let value = value.filter(|v| !v.is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(UrlSourceError::Both(option)),
        (Some(v), None) => Ok(Some(Secret::new(v))),
        (None, Some(path)) => read(option, path).map(Some),
        (None, None) => Ok(None),
    }
}

/// Like `resolve`, for a command that cannot do without the string.
pub fn require(
    option: UrlOption,
    value: Option<&str>,
    file: Option<&Path>,
) -> Result<Secret, UrlSourceError> {
    resolve(option, value, file)?.ok_or(UrlSourceError::Missing(option))
}

fn read(option: UrlOption, path: &Path) -> Result<Secret, UrlSourceError> {
    let text = std::fs::read_to_string(path).map_err(|source| UrlSourceError::Unreadable {
        option,
        path: path.to_owned(),
        source,
    })?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.trim().is_empty() {
        return Err(UrlSourceError::Empty {
            option,
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_gives_the_string_without_its_trailing_line_break() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pg-url");
        std::fs::write(&path, "postgres://u:pw@db/app\r\n").expect("write");
        let secret = require(PG_URL, None, Some(&path)).expect("read");
        assert_eq!(secret.expose(), "postgres://u:pw@db/app");
    }

    #[test]
    fn exactly_one_source_is_accepted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("url");
        std::fs::write(&path, "mongodb://h/").expect("write");
        assert_eq!(
            require(MONGO_URL, Some("mongodb://x/"), Some(&path))
                .unwrap_err()
                .to_string(),
            "--mongo-url / MONGO_URL and --mongo-url-file / MONGO_URL_FILE are both given: give the MongoDB connection string one way only"
        );
        assert_eq!(
            require(PG_URL, Some(""), None).unwrap_err().to_string(),
            "no Postgres connection string: give --pg-url / PG_URL or --pg-url-file / PG_URL_FILE"
        );
        assert!(resolve(PG_URL, None, None).expect("optional").is_none());
    }

    #[test]
    fn empty_and_unreadable_files_are_named_and_their_content_never_shown() {
        let dir = tempfile::tempdir().expect("temp dir");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let err = require(PG_URL, None, Some(&empty)).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("--pg-url-file / PG_URL_FILE: {} is empty", empty.display())
        );
        let missing = dir.path().join("missing");
        let err = require(PG_URL, None, Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "--pg-url-file / PG_URL_FILE: cannot read {}: ",
                missing.display()
            )),
            "{err}"
        );
    }
}
