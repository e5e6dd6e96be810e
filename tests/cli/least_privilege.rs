//! Least privilege: an owner runs `migrate`, `deploy/postgres/grants.sql` (applied with psql, as
//! operators do) gives a fresh role exactly the documented grants, and that role replicates the
//! reference domain (`run`: upserts, child replacement, deletes, an append-only ledger, gaps) and
//! runs `tokens show/reset`, `gaps list/retry/ignore`, `snapshot` and `verify`. With a grant
//! taken away, every command that needs it fails at startup with one line naming each missing
//! table privilege, exit code 2.

use std::process::{Command, Output};
use std::str::FromStr;
use std::time::Duration;

use bson::{doc, oid::ObjectId, Decimal128};
use mongo2pg::config::Secret;
use mongo2pg::replicator::{self, RunSettings};

use crate::support::{
    migrate, reference_config, reference_mapping_file, repo_path, unique_name, wait_until, Source,
    TestDb, TestRole,
};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");
const WAIT: Duration = Duration::from_secs(30);

/// Applies deploy/postgres/grants.sql for `role` with psql.
fn apply_grants(db: &TestDb, role: &TestRole) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", &format!("role={}", role.name), "-f"])
        .arg(repo_path("deploy/postgres/grants.sql"))
        .arg(db.url())
        .output()
        .expect("run psql (install postgresql-client)");
    assert!(
        out.status.success(),
        "grants.sql failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The binary as the restricted role, with the mapping and both URLs in the environment.
struct AsRole {
    pg_url: String,
    mongo_url: String,
    mapping: String,
}

impl AsRole {
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("PG_URL", &self.pg_url)
            .env("MONGO_URL", &self.mongo_url)
            .env("MONGO2PG_MAPPING", &self.mapping)
            .env_remove("PG_URL_FILE")
            .env_remove("MONGO_URL_FILE")
            .env("USER", "ci")
            .env("RUST_LOG", "warn")
            .output()
            .expect("run mongo2pg")
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?} as the restricted role: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

async fn owner_count(pg: &tokio_postgres::Client, sql: &str) -> i64 {
    crate::support::count(pg, sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_with_exactly_the_documented_grants_replicates_and_runs_every_command() {
    let role = TestRole::create("lp").await;
    let db = TestDb::create("least_priv").await;
    db.apply_reference_schema().await;
    let mongo_db = unique_name("leastpriv");
    let config = reference_config(&mongo_db);
    migrate(&db, &config).await;
    apply_grants(&db, &role);
    let owner = db.client().await;
    let source = Source::start().await;

    let replicator = replicator::start(RunSettings {
        mongo_url: Secret::new(source.uri.clone()),
        pg_url: Secret::new(role.url(&db)),
        config,
        metrics_addr: None,
        holder: "least-privilege".into(),
    })
    .await
    .expect("the restricted role starts the replicator");
    let users = source.coll(&mongo_db, "users");
    let (u1, u2, u3) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    // A ledger entry of a user written after it: the entry waits as a gap, u3's id_map entry
    // exists before u3 does, and u3's insert claims it (an UPDATE of id_map.legacy_type).
    source
        .coll(&mongo_db, "fundsledgerentries")
        .insert_one(doc! {"userId": u3, "type": "credit",
        "amount": Decimal128::from_str("1.25").expect("decimal")})
        .await
        .expect("insert an early ledger entry");
    wait_until("the early ledger entry waits as a gap", WAIT, || async {
        owner_count(
            &owner,
            "SELECT count(*) FROM pg_dualwrite_gaps WHERE collection = 'fundsledgerentries' AND status = 'open'",
        )
        .await
            == 1
    })
    .await;
    users
        .insert_one(doc! {"_id": u3, "email": "c@example.com", "points": 3})
        .await
        .expect("insert the late user");
    users
        .insert_many([
            doc! {"_id": u1, "email": "a@example.com", "points": 1,
            "passkeys": [{"credentialID": "c1", "publicKey": "k1"}]},
            doc! {"_id": u2, "email": "b@example.com", "points": 2},
        ])
        .await
        .expect("insert users");
    users
        .update_one(
            doc! {"_id": u1},
            doc! {"$set": {"passkeys": [{"credentialID": "c2", "publicKey": "k2"},
            {"credentialID": "c3", "publicKey": "k3"}]}},
        )
        .await
        .expect("replace passkeys");
    users
        .delete_one(doc! {"_id": u2})
        .await
        .expect("delete user");
    source
        .coll(&mongo_db, "fundsledgerentries")
        .insert_one(doc! {"userId": u1, "type": "credit",
        "amount": Decimal128::from_str("10.50").expect("decimal")})
        .await
        .expect("insert ledger entry");
    // Addresses pointing at a string instead of a user: gaps.
    let (a1, a2) = (ObjectId::new(), ObjectId::new());
    let addresses = source.coll(&mongo_db, "addresses");
    addresses
        .insert_many([
            doc! {"_id": a1, "userId": "not-an-id", "city": "Izmir"},
            doc! {"_id": a2, "userId": "not-an-id", "city": "Ankara"},
        ])
        .await
        .expect("insert bad addresses");
    wait_until("the restricted role applied every change", WAIT, || async {
        owner_count(&owner, "SELECT count(*) FROM users").await == 2
            && owner_count(&owner, "SELECT count(*) FROM user_passkeys").await == 2
            && owner_count(&owner, "SELECT count(*) FROM funds_ledger_entries").await == 2
            && owner_count(
                &owner,
                "SELECT count(*) FROM pg_dualwrite_gaps WHERE collection = 'addresses'",
            )
            .await
                == 2
    })
    .await;
    replicator.shutdown().await;

    let mapping = reference_mapping_file(&mongo_db);
    let cli = AsRole {
        pg_url: role.url(&db),
        mongo_url: source.uri.clone(),
        mapping: mapping.path().display().to_string(),
    };
    let shown = cli.ok(&["tokens", "show", "--json"]);
    assert!(shown.contains("\"users\""), "{shown}");
    let gaps: serde_json::Value =
        serde_json::from_str(&cli.ok(&["gaps", "list", "--json"])).expect("gaps json");
    let gap_of = |id: &ObjectId| {
        gaps.as_array()
            .and_then(|all| {
                all.iter()
                    .find(|g| g["document_key"].to_string().contains(&id.to_hex()))
            })
            .and_then(|g| g["id"].as_i64())
            .unwrap_or_else(|| panic!("no gap for {id}: {gaps}"))
            .to_string()
    };
    let (g1, g2) = (gap_of(&a1), gap_of(&a2));
    // Repaired in MongoDB while nothing streams: the retry re-reads it and applies it.
    addresses
        .update_one(doc! {"_id": a1}, doc! {"$set": {"userId": u1}})
        .await
        .expect("fix address");
    let retried = cli.ok(&["gaps", "retry", &g1]);
    assert!(retried.contains("resolved"), "{retried}");
    cli.ok(&["gaps", "show", &g2]);
    cli.ok(&["gaps", "ignore", &g2, "--reason", "test"]);
    cli.ok(&["snapshot", "users"]);
    cli.ok(&["verify", "users", "fundsledgerentries", "addresses"]);
    cli.ok(&[
        "tokens",
        "reset",
        "users",
        "--to-now",
        "--reason",
        "least privilege",
    ]);
    assert_eq!(
        owner_count(&owner, "SELECT count(*) FROM mongo2pg.token_resets").await,
        1,
        "the reset was audited by the restricted role"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_grant_fails_at_startup_naming_every_table_and_privilege() {
    let role = TestRole::create("lpmiss").await;
    let db = TestDb::create("least_priv_missing").await;
    db.apply_reference_schema().await;
    let mongo_db = unique_name("lpmiss");
    migrate(&db, &reference_config(&mongo_db)).await;
    apply_grants(&db, &role);
    db.client()
        .await
        .batch_execute(&format!(
            "REVOKE INSERT ON public.pg_dualwrite_gaps FROM {r};
             REVOKE UPDATE ON mongo2pg.checkpoints FROM {r};
             REVOKE SELECT ON public.payments FROM {r};",
            r = role.name
        ))
        .await
        .expect("revoke");
    let mapping = reference_mapping_file(&mongo_db);
    let cli = AsRole {
        pg_url: role.url(&db),
        // Nobody listens there: the check must fail before MongoDB is needed.
        mongo_url: "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300".into(),
        mapping: mapping.path().display().to_string(),
    };
    for (args, named) in [
        (
            vec!["run", "--metrics-addr", "127.0.0.1:0"],
            vec![
                "INSERT on public.pg_dualwrite_gaps",
                "UPDATE on mongo2pg.checkpoints",
                "SELECT on public.payments",
            ],
        ),
        (vec!["verify"], vec!["SELECT on public.payments"]),
        (
            vec!["tokens", "reset", "users", "--to-now", "--reason", "r"],
            vec![
                "INSERT on public.pg_dualwrite_gaps",
                "UPDATE on mongo2pg.checkpoints",
            ],
        ),
        (
            vec!["snapshot", "users"],
            vec!["INSERT on public.pg_dualwrite_gaps"],
        ),
    ] {
        let out = cli.run(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line expected: {stderr}");
        assert!(
            lines[0].contains(&format!("the Postgres role {} lacks privileges", role.name)),
            "{stderr}"
        );
        for privilege in named {
            assert!(
                lines[0].contains(privilege),
                "{args:?}: {privilege} not named: {stderr}"
            );
        }
    }
    // What the role may still do works.
    cli.ok(&["tokens", "show"]);
    cli.ok(&["gaps", "list"]);
}
