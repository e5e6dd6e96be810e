//! The `mongo2pg` binary's command line: every command is listed in `--help`, token resets need
//! exactly one target and a reason, gap retries need an id or a filter, and connection secrets
//! never appear in help or error output. No database is needed: failures happen before any
//! connection, or against a port nobody listens on.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");
const PASSWORD: &str = "Sup3rS3cretPw";

fn mapping_path() -> String {
    format!(
        "{}/deploy/marketplace/mapping.toml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs the binary with a clean environment for the variables it reads.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("MONGO_URL")
        .env_remove("PG_URL")
        .env_remove("MONGO2PG_MAPPING")
        .env("USER", "ci")
        .output()
        .expect("run mongo2pg")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn reset_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "tokens",
        "reset",
        "payments",
        "--mongo-url",
        "mongodb://127.0.0.1:1/",
        "--pg-url",
        "host=127.0.0.1 port=1 user=postgres dbname=x",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn top_level_help_lists_every_command() {
    let out = run(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    for command in [
        "migrate", "run", "tokens", "gaps", "snapshot", "verify", "demo",
    ] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} missing from:\n{help}"
        );
    }
}

#[test]
fn subcommand_help_lists_tokens_and_gaps_actions() {
    let tokens = text(&run(&["tokens", "--help"]).stdout);
    for action in ["show", "reset"] {
        assert!(tokens.contains(&format!("  {action} ")), "{tokens}");
    }
    let gaps = text(&run(&["gaps", "--help"]).stdout);
    for action in ["list", "show", "retry", "resolve", "ignore"] {
        assert!(gaps.contains(&format!("  {action} ")), "{gaps}");
    }
    let reset = text(&run(&["tokens", "reset", "--help"]).stdout);
    for flag in [
        "--to-token",
        "--to-time",
        "--to-now",
        "--resnapshot",
        "--no-gap",
        "--dry-run",
        "--reason",
        "--actor",
    ] {
        assert!(reset.contains(flag), "{flag} missing from:\n{reset}");
    }
}

#[test]
fn a_reset_without_a_target_is_refused_before_connecting() {
    let mapping = mapping_path();
    let out = run(&reset_args(&["--mapping", &mapping, "--reason", "r"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--to-token"), "{err}");
}

#[test]
fn a_reset_with_two_targets_is_refused() {
    let mapping = mapping_path();
    let out = run(&reset_args(&[
        "--mapping",
        &mapping,
        "--reason",
        "r",
        "--to-now",
        "--resnapshot",
    ]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
}

#[test]
fn a_reset_requires_a_reason() {
    let mapping = mapping_path();
    let out = run(&reset_args(&["--mapping", &mapping, "--to-now"]));
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("--reason"), "{err}");
}

#[test]
fn no_gap_is_only_accepted_with_to_now() {
    let mapping = mapping_path();
    let out = run(&reset_args(&[
        "--mapping",
        &mapping,
        "--reason",
        "r",
        "--resnapshot",
        "--no-gap",
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--to-now"));
}

#[test]
fn a_gap_retry_needs_an_id_or_a_filter_but_not_both() {
    let mapping = mapping_path();
    let base = [
        "gaps",
        "retry",
        "--mapping",
        &mapping,
        "--mongo-url",
        "mongodb://127.0.0.1:1/",
        "--pg-url",
        "host=127.0.0.1 port=1",
    ];
    let neither = run(&base);
    assert_eq!(neither.status.code(), Some(2));
    let both: Vec<&str> = base
        .iter()
        .copied()
        .chain(["7", "--collection", "payments"])
        .collect();
    let out = run(&both);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot be used with"));
}

#[test]
fn a_snapshot_window_needs_both_field_and_since() {
    let mapping = mapping_path();
    let out = run(&[
        "snapshot",
        "payments",
        "--mapping",
        &mapping,
        "--mongo-url",
        "mongodb://127.0.0.1:1/",
        "--pg-url",
        "host=127.0.0.1 port=1",
        "--field",
        "updatedAt",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--since"));
}

#[test]
fn an_unreachable_postgres_fails_with_one_line_and_no_password() {
    let mapping = mapping_path();
    let url = format!("postgres://ops:{PASSWORD}@127.0.0.1:1/marketplace");
    for args in [
        vec!["tokens", "show", "--mapping", &mapping, "--pg-url", &url],
        vec!["gaps", "list", "--mapping", &mapping, "--pg-url", &url],
        vec![
            "verify",
            "--mapping",
            &mapping,
            "--pg-url",
            &url,
            "--mongo-url",
            "mongodb://ops:Sup3rS3cretPw@127.0.0.1:1/",
        ],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = text(&out.stderr);
        let stdout = text(&out.stdout);
        assert!(!err.contains(PASSWORD), "password leaked: {err}");
        assert!(!stdout.contains(PASSWORD), "password leaked: {stdout}");
        let error_lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(error_lines.len(), 1, "{err}");
        assert!(
            error_lines[0].starts_with("error: cannot connect to postgres"),
            "{err}"
        );
    }
}

#[test]
fn help_does_not_show_urls_from_the_environment() {
    let out = Command::new(BIN)
        .args(["tokens", "show", "--help"])
        .env(
            "PG_URL",
            format!("postgres://ops:{PASSWORD}@db.internal:5432/app"),
        )
        .env(
            "MONGO_URL",
            format!("mongodb://ops:{PASSWORD}@mongo:27017/"),
        )
        .output()
        .expect("run mongo2pg");
    assert_eq!(out.status.code(), Some(0));
    let help = text(&out.stdout);
    assert!(help.contains("--pg-url"), "{help}");
    assert!(!help.contains(PASSWORD), "{help}");
    assert!(!help.contains("db.internal"), "{help}");
}

#[test]
fn a_missing_mapping_file_is_a_configuration_error() {
    let out = run(&[
        "gaps",
        "list",
        "--mapping",
        "/nonexistent/mapping.toml",
        "--pg-url",
        "host=127.0.0.1 port=1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("error: invalid mapping configuration"),
        "{err}"
    );
}

#[test]
fn the_demo_refuses_to_drop_the_postgres_database() {
    let out = run(&[
        "demo",
        "--duration",
        "1s",
        "--pg-url",
        "host=127.0.0.1 port=1 user=postgres dbname=postgres",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("refusing to drop the database postgres"));
}
