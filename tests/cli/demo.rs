//! `mongo2pg demo` as a newcomer runs it, with a short duration and a database of its own: it
//! exits 0, prints a status line while writing, shows the deliberately bad documents as gaps,
//! says verify is clean, and drops its database at the end.

use std::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_replicates_the_marketplace_and_verifies_clean() {
    let name = crate::support::unique_name("demo");
    let url = format!("{} dbname={name}", crate::support::db::server_url());
    let started = Instant::now();
    let out = tokio::process::Command::new(BIN)
        .args([
            "demo",
            "--duration",
            "5s",
            "--metrics-addr",
            "127.0.0.1:0",
            "--pg-url",
            &url,
        ])
        .env_remove("PG_URL")
        .env_remove("MONGO_URL")
        .output()
        .await
        .expect("run mongo2pg demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("demo took {:?}", started.elapsed());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.contains(&"verify: clean"), "{stdout}");
    assert!(
        lines.contains(&"demo: done, MongoDB and Postgres agree"),
        "{stdout}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("demo: seeded 207 documents")),
        "{stdout}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("[   2s] writes")),
        "{stdout}"
    );
    for (collection, kind) in [
        ("categories", "nul_in_text"),
        ("addresses", "invalid_reference"),
        ("payments", "invalid_number"),
        ("fundsledgerentries", "invalid_number"),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("  gap ") && l.contains(collection) && l.contains(kind)),
            "no {kind} gap for {collection}:\n{stdout}"
        );
    }
    let transactions = lines
        .iter()
        .find_map(|l| {
            l.strip_prefix("demo: ")?
                .split_once(" MongoDB transactions written")
        })
        .and_then(|(n, _)| n.parse::<u64>().ok())
        .unwrap_or_default();
    assert!(
        transactions > 0,
        "no MongoDB transaction written:\n{stdout}"
    );
    let gap_lines = lines.iter().filter(|l| l.starts_with("  gap ")).count();
    assert_eq!(gap_lines, 4, "{stdout}");
    for collection in ["categories", "addresses", "payments", "fundsledgerentries"] {
        assert!(
            lines.iter().any(|l| l.starts_with(collection)
                && l.contains(" ok ")
                && l.contains("unmappable=1")),
            "{collection} is not clean with one rejected document:\n{stdout}"
        );
    }

    let admin = crate::support::connect(&crate::support::db::admin_url()).await;
    let left = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .expect("query pg_database")
        .get::<_, i64>(0);
    assert_eq!(left, 0, "the demo database {name} was not dropped");
}
