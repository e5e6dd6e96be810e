//! Wrong connection options through the binary: every one fails at startup — before any
//! connection — with exit code 2 and exactly one line on stderr that names the option, and the
//! password given alongside never appears. Also: the URL can come from a file
//! (`--pg-url-file` / `PG_URL_FILE`, `--mongo-url-file` / `MONGO_URL_FILE`) for every command that
//! takes it, and a file works where the URL itself would.

use std::path::Path;
use std::process::{Command, Output};

use crate::support::{reference_mapping_file, Source, TestDb};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");
const PASSWORD: &str = "Pr0d-S3cret-Pw";

fn mapping_path() -> String {
    format!(
        "{}/deploy/marketplace/mapping.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs the binary with none of the variables it reads inherited, plus `env`.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args).env("USER", "ci");
    for var in [
        "MONGO_URL",
        "MONGO_URL_FILE",
        "PG_URL",
        "PG_URL_FILE",
        "MONGO2PG_MAPPING",
    ] {
        command.env_remove(var);
    }
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("run mongo2pg")
}

/// A Postgres URL nobody listens on, with a password and `extra` options.
fn pg_url(extra: &str) -> String {
    format!("postgres://ops:{PASSWORD}@127.0.0.1:1/app{extra}")
}

/// A MongoDB URL nobody listens on, with a password.
fn mongo_url() -> String {
    format!("mongodb://ops:{PASSWORD}@127.0.0.1:1/?serverSelectionTimeoutMS=500")
}

/// Asserts exit code 2, one line on stderr starting with `error: ` and containing every one of
/// `names`, and no password anywhere.
#[track_caller]
fn assert_refused(out: &Output, names: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    for name in names {
        assert!(lines[0].contains(name), "{name} not named: {stderr}");
    }
    assert!(!stderr.contains(PASSWORD), "password leaked: {stderr}");
    assert!(!stdout.contains(PASSWORD), "password leaked: {stdout}");
}

/// `run` and `verify` (both URLs) plus `migrate` (Postgres only), with the Postgres URL given.
fn each_command_with_pg(url: &str, check: impl Fn(&Output)) {
    let mapping = mapping_path();
    let mongo = mongo_url();
    let with_both = [
        "run",
        "verify",
        "snapshot",
        "tokens reset",
        "gaps retry",
        "tokens show",
    ];
    for command in with_both {
        let mut args: Vec<&str> = command.split(' ').collect();
        match command {
            "snapshot" => args.push("users"),
            "tokens reset" => args.extend(["users", "--to-now", "--reason", "r"]),
            "gaps retry" => args.push("1"),
            _ => {}
        }
        args.extend([
            "--mapping",
            &mapping,
            "--mongo-url",
            &mongo,
            "--pg-url",
            url,
        ]);
        check(&run(&args, &[]));
    }
    check(&run(&["migrate", "--pg-url", url], &[]));
    check(&run(
        &["gaps", "list", "--mapping", &mapping, "--pg-url", url],
        &[],
    ));
}

#[test]
fn an_unknown_sslmode_is_named_by_every_command() {
    each_command_with_pg(&pg_url("?sslmode=verify-everything"), |out| {
        assert_refused(out, &["sslmode", "verify-everything", "verify-full"])
    });
}

#[test]
fn an_unreadable_certificate_file_is_named_with_its_option() {
    let missing = "/nonexistent/m2p/root.crt";
    let out = run(
        &[
            "migrate",
            "--pg-url",
            &pg_url(&format!("?sslmode=verify-full&sslrootcert={missing}")),
        ],
        &[],
    );
    assert_refused(&out, &["sslrootcert", missing]);

    let dir = tempfile::tempdir().expect("temp dir");
    let cert = dir.path().join("client.crt");
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n").expect("write");
    let conninfo = format!(
        "host=127.0.0.1 port=1 user=ops password={PASSWORD} sslmode=require sslcert={} sslkey=/nonexistent/m2p/client.key",
        cert.display()
    );
    let out = run(&["migrate"], &[("PG_URL", &conninfo)]);
    assert_refused(&out, &["sslcert"]);

    let out = run(
        &[
            "verify",
            "--mapping",
            &mapping_path(),
            "--pg-url",
            &pg_url(""),
            "--mongo-url",
            &format!(
                "{}&tls=true&tlsCAFile=/nonexistent/m2p/mongo-ca.pem",
                mongo_url()
            ),
        ],
        &[],
    );
    assert_refused(
        &out,
        &["MongoDB", "tlsCAFile", "/nonexistent/m2p/mongo-ca.pem"],
    );
}

#[test]
fn a_url_without_a_host_is_refused_on_both_sides() {
    each_command_with_pg(&format!("postgres://ops:{PASSWORD}@/app"), |out| {
        assert_refused(out, &["Postgres", "host"])
    });
    let out = run(
        &[
            "tokens",
            "reset",
            "users",
            "--to-now",
            "--reason",
            "r",
            "--mapping",
            &mapping_path(),
            "--pg-url",
            &pg_url(""),
            "--mongo-url",
            &format!("mongodb://ops:{PASSWORD}@/market"),
        ],
        &[],
    );
    assert_refused(&out, &["MongoDB", "hostname"]);
}

#[test]
fn an_unknown_option_and_an_unterminated_quote_are_named() {
    let out = run(
        &["migrate"],
        &[(
            "PG_URL",
            &format!("host=127.0.0.1 password={PASSWORD} colour=blue"),
        )],
    );
    assert_refused(&out, &["colour"]);
    let out = run(
        &["migrate"],
        &[("PG_URL", &format!("host=127.0.0.1 password='{PASSWORD}"))],
    );
    assert_refused(&out, &["password", "quote"]);
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write secret file");
    path.display().to_string()
}

#[test]
fn an_empty_secret_file_is_refused_naming_the_option_and_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = write(dir.path(), "pg-url", "\n");
    let out = run(&["migrate", "--pg-url-file", &empty], &[]);
    assert_refused(&out, &["--pg-url-file", "PG_URL_FILE", &empty]);
    let empty_mongo = write(dir.path(), "mongo-url", "");
    let out = run(
        &["run", "--mapping", &mapping_path(), "--pg-url", &pg_url("")],
        &[("MONGO_URL_FILE", &empty_mongo)],
    );
    assert_refused(&out, &["--mongo-url-file", "MONGO_URL_FILE", &empty_mongo]);
    let out = run(
        &["migrate", "--pg-url-file", "/nonexistent/m2p/pg-url"],
        &[],
    );
    assert_refused(
        &out,
        &["PG_URL_FILE", "/nonexistent/m2p/pg-url", "cannot read"],
    );
}

#[test]
fn a_url_and_a_file_for_the_same_database_are_refused_by_every_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(dir.path(), "pg-url", &format!("{}\n", pg_url("")));
    let mapping = mapping_path();
    let mongo = mongo_url();
    let url = pg_url("");
    for args in [
        vec!["migrate"],
        vec!["run", "--mapping", &mapping, "--mongo-url", &mongo],
        vec!["tokens", "show", "--mapping", &mapping],
        vec!["gaps", "list", "--mapping", &mapping],
        vec!["verify", "--mapping", &mapping, "--mongo-url", &mongo],
        vec!["demo", "--duration", "1s"],
    ] {
        let mut args = args.clone();
        args.extend(["--pg-url", &url]);
        let out = run(&args, &[("PG_URL_FILE", &file)]);
        assert_refused(&out, &["--pg-url", "--pg-url-file"]);
    }
    let mongo_file = write(dir.path(), "mongo-url", &mongo);
    let out = run(
        &[
            "snapshot",
            "users",
            "--mapping",
            &mapping,
            "--pg-url",
            &pg_url(""),
        ],
        &[("MONGO_URL", &mongo), ("MONGO_URL_FILE", &mongo_file)],
    );
    assert_refused(&out, &["--mongo-url", "--mongo-url-file"]);
}

#[test]
fn a_missing_url_names_both_ways_of_giving_it() {
    let out = run(
        &[
            "verify",
            "--mapping",
            &mapping_path(),
            "--pg-url",
            &pg_url(""),
        ],
        &[],
    );
    assert_refused(
        &out,
        &[
            "--mongo-url",
            "MONGO_URL",
            "--mongo-url-file",
            "MONGO_URL_FILE",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urls_from_secret_files_work_like_the_urls_themselves() {
    let source = Source::start().await;
    let db = TestDb::create("cli_files").await;
    db.apply_reference_schema().await;
    let mongo_db = crate::support::unique_name("clifiles");
    let mapping = reference_mapping_file(&mongo_db);
    let mapping = mapping.path().display().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    // Kubernetes secret files usually end with a line break.
    let pg_file = write(dir.path(), "pg-url", &format!("{}\n", db.url()));
    let mongo_file = write(dir.path(), "mongo-url", &format!("{}\n", source.uri));
    let files = [
        ("PG_URL_FILE", pg_file.as_str()),
        ("MONGO_URL_FILE", mongo_file.as_str()),
    ];
    let out = run(&["migrate", "--mapping", &mapping], &files);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run(&["tokens", "show", "--json", "--mapping", &mapping], &files);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(shown.is_array(), "{shown}");
    let out = run(
        &[
            "verify",
            "--mapping",
            &mapping,
            "--pg-url-file",
            &pg_file,
            "--mongo-url-file",
            &mongo_file,
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
