//! The operator commands end to end through the real binary, against a fresh Postgres database
//! and mongosim: migrate, targeted re-syncs that record bad documents as gaps, `gaps retry` by id
//! and by filter (an fk_missing gap resolving once its parent is copied), `tokens
//! reset` (dry run and real) and `tokens show --json`, `gaps list/show/ignore --json`, and
//! `verify` exiting 0 when clean and 1 after a row is altered behind the replicator's back.

use std::process::Output;

use crate::support::{reference_mapping_file, Source, TestDb};
use bson::{doc, oid::ObjectId};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");

struct Cli {
    mapping: String,
    pg_url: String,
    mongo_url: String,
}

impl Cli {
    async fn run(&self, args: &[&str]) -> Output {
        tokio::process::Command::new(BIN)
            .args(args)
            .env("MONGO2PG_MAPPING", &self.mapping)
            .env("PG_URL", &self.pg_url)
            .env("MONGO_URL", &self.mongo_url)
            .env("USER", "ci")
            .output()
            .await
            .expect("run mongo2pg")
    }

    /// Runs and returns stdout, asserting the exit code.
    async fn ok(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn json(&self, args: &[&str]) -> serde_json::Value {
        let text = self.ok(args, 0).await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_commands_show_reset_list_ignore_and_verify_through_the_binary() {
    let source = Source::start().await;
    let db = TestDb::create("cli_ops").await;
    db.apply_reference_schema().await;
    let mongo_db = crate::support::unique_name("cliops");
    let mapping = reference_mapping_file(&mongo_db);
    let cli = Cli {
        mapping: mapping.path().to_string_lossy().into_owned(),
        pg_url: db.url().clone(),
        mongo_url: source.uri.clone(),
    };

    let migrated = cli.ok(&["migrate"], 0).await;
    assert!(migrated.contains("applied"), "{migrated}");

    let user = ObjectId::parse_str("650000000000000000000001").expect("hex");
    source
        .coll(&mongo_db, "users")
        .insert_one(doc! { "_id": user, "email": "a@example.com", "points": 5 })
        .await
        .expect("insert user");
    source
        .coll(&mongo_db, "addresses")
        .insert_one(
            doc! { "_id": ObjectId::parse_str("650000000000000000000002").expect("hex"),
            "userId": "not-an-object-id", "city": "Izmir" },
        )
        .await
        .expect("insert bad address");

    let users = cli.json(&["snapshot", "users", "--json"]).await;
    assert_eq!(users["copied"], 1);
    assert_eq!(users["failed"], 0);
    let addresses = cli.json(&["snapshot", "addresses", "--json"]).await;
    assert_eq!(addresses["copied"], 1);
    assert_eq!(addresses["failed"], 1);

    let gaps = cli.json(&["gaps", "list", "--json"]).await;
    let gaps = gaps.as_array().expect("array");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert_eq!(gaps[0]["collection"], "addresses");
    assert_eq!(gaps[0]["kind"], "invalid_reference");
    assert_eq!(gaps[0]["status"], "open");
    let id = gaps[0]["id"].as_i64().expect("gap id").to_string();
    let shown = cli.json(&["gaps", "show", &id, "--json"]).await;
    assert!(
        shown["raw"]
            .as_str()
            .is_some_and(|r| r.contains("not-an-object-id")),
        "{shown}"
    );
    let filtered = cli
        .json(&["gaps", "list", "--collection", "users", "--json"])
        .await;
    assert_eq!(filtered, serde_json::json!([]));
    let ignored = cli
        .ok(&["gaps", "ignore", &id, "--reason", "test fixture"], 0)
        .await;
    assert!(ignored.contains("ignored by ci: test fixture"), "{ignored}");
    let open = cli
        .json(&["gaps", "list", "--status", "open", "--json"])
        .await;
    assert_eq!(open, serde_json::json!([]));

    let dry = cli
        .json(&[
            "tokens",
            "reset",
            "users",
            "--to-time",
            "Timestamp(1700000000, 3)",
            "--reason",
            "replay check",
            "--dry-run",
            "--json",
        ])
        .await;
    assert_eq!(dry["dry_run"], true);
    // The re-syncs registered both streams without a position; the dry run changed nothing.
    let before = cli.json(&["tokens", "show", "--json"]).await;
    let streams: Vec<(&str, &serde_json::Value, &serde_json::Value)> = before
        .as_array()
        .expect("array")
        .iter()
        .map(|t| {
            (
                t["stream"].as_str().unwrap_or(""),
                &t["position"]["cluster_time"],
                &t["epoch"],
            )
        })
        .collect();
    let (null, zero) = (serde_json::Value::Null, serde_json::json!(0));
    assert_eq!(
        streams,
        [("addresses", &null, &zero), ("users", &null, &zero)]
    );
    let reset = cli
        .json(&[
            "tokens",
            "reset",
            "users",
            "--to-time",
            "Timestamp(1700000000, 3)",
            "--reason",
            "replay check",
            "--json",
        ])
        .await;
    assert_eq!(reset["epoch_to"], 1);
    assert_eq!(reset["actor"], "ci");
    let tokens = cli.json(&["tokens", "show", "--json"]).await;
    let tokens: Vec<&serde_json::Value> = tokens
        .as_array()
        .expect("array")
        .iter()
        .filter(|t| t["stream"] == "users")
        .collect();
    assert_eq!(tokens.len(), 1, "{tokens:?}");
    assert_eq!(
        tokens[0]["position"]["cluster_time"],
        (1_700_000_000i64 << 32) | 3
    );
    assert_eq!(
        tokens[0]["position"]["cluster_time_text"],
        "Timestamp(1700000000, 3)"
    );
    assert_eq!(tokens[0]["epoch"], 1);
    assert!(tokens[0]["lag_seconds"].as_i64().is_some_and(|l| l > 0));

    // An address whose user is not in Postgres yet: fk_missing, retried by id (still open,
    // exit 1), then, once the user is copied, retried by filter and resolved.
    let late_user = ObjectId::parse_str("650000000000000000000003").expect("hex");
    let early_address = "650000000000000000000004";
    source
        .coll(&mongo_db, "addresses")
        .insert_one(
            doc! { "_id": ObjectId::parse_str(early_address).expect("hex"),
            "userId": late_user, "city": "Ankara" },
        )
        .await
        .expect("insert address");
    let copied = cli
        .json(&[
            "snapshot",
            "addresses",
            "--from-id",
            early_address,
            "--to-id",
            early_address,
            "--json",
        ])
        .await;
    assert_eq!(
        (copied["copied"].as_i64(), copied["failed"].as_i64()),
        (Some(1), Some(1))
    );
    let fk = cli
        .json(&["gaps", "list", "--kind", "fk_missing", "--json"])
        .await;
    let fk_id = fk[0]["id"].as_i64().expect("fk_missing gap").to_string();
    let still_open = cli.ok(&["gaps", "retry", &fk_id], 1).await;
    assert!(
        still_open.contains(&format!("gap {fk_id}: still open")),
        "{still_open}"
    );
    source
        .coll(&mongo_db, "users")
        .insert_one(doc! { "_id": late_user, "email": "late@example.com", "points": 1 })
        .await
        .expect("insert user");
    cli.json(&["snapshot", "users", "--json"]).await;
    let retried = cli
        .json(&["gaps", "retry", "--collection", "addresses", "--json"])
        .await;
    assert_eq!(
        (retried["attempted"].as_i64(), retried["resolved"].as_i64()),
        (Some(1), Some(1)),
        "{retried}"
    );
    let resolved = cli
        .json(&["gaps", "list", "--status", "resolved", "--json"])
        .await;
    assert_eq!(
        resolved[0]["id"].as_i64().map(|i| i.to_string()),
        Some(fk_id)
    );

    let clean = cli.ok(&["verify", "users", "addresses"], 0).await;
    assert!(clean.contains("verify: clean"), "{clean}");
    db.client()
        .await
        .batch_execute(
            "UPDATE users SET points = 999 WHERE legacy_object_id = '650000000000000000000001'",
        )
        .await
        .expect("alter a row");
    let report = cli.run(&["verify", "users", "--json"]).await;
    assert_eq!(report.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_slice(&report.stdout).expect("verify JSON report");
    assert_eq!(report["clean"], false);
    assert_eq!(report["collections"][0]["differing_count"], 1);
    assert_eq!(
        report["collections"][0]["differing"][0]["columns"][0]["column"],
        "points"
    );

    drop(db);
    source.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reset_of_a_grouped_collection_moves_its_group_only_when_confirmed() {
    use std::io::Write;
    let source = Source::start().await;
    let db = TestDb::create("cli_group_reset").await;
    db.apply_reference_schema().await;
    let mongo_db = crate::support::unique_name("cligroup");
    let mapping = reference_mapping_file(&mongo_db);
    std::fs::OpenOptions::new()
        .append(true)
        .open(mapping.path())
        .and_then(|mut f| {
            f.write_all(b"\n[streams.money]\ncollections = [\"users\", \"payments\"]\n")
        })
        .expect("append the group");
    let cli = Cli {
        mapping: mapping.path().to_string_lossy().into_owned(),
        pg_url: db.url().clone(),
        mongo_url: source.uri.clone(),
    };
    cli.ok(&["migrate"], 0).await;
    let reset = |name: &'static str, yes: bool| {
        let mut args = vec![
            "tokens",
            "reset",
            name,
            "--to-time",
            "Timestamp(1700000000, 3)",
            "--reason",
            "group check",
            "--json",
        ];
        if yes {
            args.push("--yes");
        }
        args
    };
    // No terminal and no --yes: refused, naming the group and its collections.
    let refused = cli.run(&reset("payments", false)).await;
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("stream group money")
            && stderr.contains("users, payments")
            && stderr.contains("--yes"),
        "{stderr}"
    );
    let moved = cli.json(&reset("payments", true)).await;
    assert_eq!(moved["stream"], "money");
    let by_name = cli.json(&reset("money", false)).await;
    assert_eq!(by_name["stream"], "money");
    assert_eq!(by_name["epoch_to"], 2);
    let unknown = cli.run(&reset("nothing", true)).await;
    assert_eq!(unknown.status.code(), Some(2));
}
