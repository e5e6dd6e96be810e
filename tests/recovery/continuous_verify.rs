//! Continuous verification inside the running replicator (`[verify]` with a one-second interval)
//! on the reference domain: rows changed, deleted and money altered behind the replicator's back
//! are reported within a period — in the metrics, in the stored round and by `mongo2pg verify
//! --last` — and a clean system reports no mismatch while writes keep arriving (changes in
//! flight are re-checked, counts and sums are only compared over a quiet window).

use std::str::FromStr;
use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId, Decimal128};
use mongo2pg::config::{Config, VerifyConfig};
use mongo2pg::replicator::Replicator;

use crate::support::{
    count, migrate, reference_config, reference_mapping_file, start_replicator, unique_name,
    wait_until, wait_users_equal, Source, TestDb,
};

const BIN: &str = env!("CARGO_BIN_EXE_mongo2pg");
const WAIT: Duration = Duration::from_secs(45);

fn verifying_config(mongo_db: &str, sample: usize) -> Config {
    let mut config = reference_config(mongo_db);
    config.verify = Some(VerifyConfig {
        interval: Duration::from_secs(1),
        sample,
        counts: true,
        sums: true,
    });
    config
}

/// The value of the series `name{labels}` in the replicator's metrics (0 when absent).
fn metric(replicator: &Replicator, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = replicator.context.metrics.render().expect("render metrics");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// (mismatches, counts compared) of the last stored round of `collection`, if any.
async fn stored_round(pg: &tokio_postgres::Client, collection: &str) -> Option<(i32, bool)> {
    pg.query_opt(
        "SELECT mismatches, counts_compared FROM mongo2pg.verify_rounds WHERE collection = $1",
        &[&collection],
    )
    .await
    .ok()
    .flatten()
    .map(|r| (r.get(0), r.get(1)))
}

async fn seed(source: &Source, mongo_db: &str, users: &[ObjectId]) {
    source
        .coll(mongo_db, "users")
        .insert_many(users.iter().enumerate().map(|(i, id)| {
            doc! {"_id": *id, "email": format!("u{i}@example.com"), "points": i as i32}
        }))
        .await
        .expect("insert users");
    source
        .coll(mongo_db, "fundsledgerentries")
        .insert_many(users.iter().take(5).enumerate().map(|(i, id)| {
            doc! {"userId": *id, "type": "credit",
            "amount": Decimal128::from_str(&format!("{i}.25")).expect("decimal")}
        }))
        .await
        .expect("insert ledger entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_changed_behind_the_replicators_back_are_reported_within_one_period() {
    crate::support::init_tracing();
    let source = Source::start().await;
    let db = TestDb::create("cv_detects").await;
    db.apply_reference_schema().await;
    let mongo_db = unique_name("cvdetect");
    let config = verifying_config(&mongo_db, 100);
    migrate(&db, &config).await;
    let pg = db.client().await;
    let replicator = start_replicator(&source, &db, &config).await;
    let users: Vec<ObjectId> = (0..20).map(|_| ObjectId::new()).collect();
    seed(&source, &mongo_db, &users).await;
    wait_users_equal(&source, &mongo_db, &pg, WAIT).await;
    // The ledger stream may run ahead of the users stream: its entries then land through the gap
    // retry. Tamper only once they are all there.
    wait_until("every ledger entry in Postgres", WAIT, || async {
        count(&pg, "SELECT count(*) FROM funds_ledger_entries").await == 5
    })
    .await;
    wait_until(
        "a clean round with counts for users and the ledger",
        WAIT,
        || async {
            // The ledger entries may land after a gap retry (their users stream can commit
            // later): they must be there before they are altered.
            count(&pg, "SELECT count(*) FROM funds_ledger_entries").await == 5
                && stored_round(&pg, "users").await == Some((0, true))
                && stored_round(&pg, "fundsledgerentries").await == Some((0, true))
        },
    )
    .await;
    let clean_before = metric(
        &replicator,
        "mongo2pg_verify_last_clean_timestamp_seconds",
        &[("collection", "users")],
    );
    assert!(clean_before > 0.0);

    // Behind the replicator's back: an altered email, a deleted user, an altered amount.
    let (altered, deleted) = (users[3].to_hex(), users[17].to_hex());
    pg.batch_execute(&format!(
        "UPDATE users SET email = 'tampered@example.com' WHERE legacy_object_id = '{altered}';
         DELETE FROM users WHERE legacy_object_id = '{deleted}';
         ALTER TABLE funds_ledger_entries DISABLE TRIGGER funds_ledger_entries_immutable;
         UPDATE funds_ledger_entries SET amount = amount + 1 WHERE amount = 2.25;
         ALTER TABLE funds_ledger_entries ENABLE TRIGGER funds_ledger_entries_immutable;"
    ))
    .await
    .expect("tamper");
    let tampered = Instant::now();
    wait_until("the mismatches are reported", WAIT, || async {
        metric(
            &replicator,
            "mongo2pg_verify_mismatches",
            &[("collection", "users")],
        ) >= 3.0
            && metric(
                &replicator,
                "mongo2pg_verify_mismatches",
                &[("collection", "fundsledgerentries")],
            ) >= 2.0
    })
    .await;
    let took = tampered.elapsed();
    // One period is the interval plus the round itself (it waits for the stream to pass its
    // reads); anything far beyond means a round missed them.
    assert!(
        took < Duration::from_secs(20),
        "reported after {took:?}, interval 1s"
    );
    assert!(
        metric(
            &replicator,
            "mongo2pg_verify_rounds_total",
            &[("collection", "users"), ("outcome", "mismatch")]
        ) >= 1.0
    );
    assert_eq!(
        metric(
            &replicator,
            "mongo2pg_verify_last_clean_timestamp_seconds",
            &[("collection", "users")],
        ),
        clean_before,
        "no clean round since the tampering"
    );
    replicator.shutdown().await;

    // The stored round, through the binary.
    let mapping = reference_mapping_file(&mongo_db);
    let out = std::process::Command::new(BIN)
        .args([
            "verify",
            "--last",
            "users",
            "fundsledgerentries",
            "--mapping",
        ])
        .arg(mapping.path())
        .env("PG_URL", db.url())
        .env_remove("PG_URL_FILE")
        .env_remove("MONGO_URL")
        .env_remove("MONGO_URL_FILE")
        .output()
        .expect("run mongo2pg verify --last");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("users: MISMATCH"), "{stdout}");
    assert!(stdout.contains(&format!("document {altered}")), "{stdout}");
    assert!(stdout.contains("tampered@example.com"), "{stdout}");
    assert!(
        stdout.contains(&format!("document {deleted}: {{\"missing\":\"users\"}}")),
        "{stdout}"
    );
    assert!(
        stdout.contains("count -: {\"table\":\"users\",\"mongo\":20,\"postgres\":19}"),
        "{stdout}"
    );
    assert!(stdout.contains("fundsledgerentries: MISMATCH"), "{stdout}");
    assert!(stdout.contains("sum -:"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_system_reports_no_mismatch_while_writes_continue() {
    crate::support::init_tracing();
    let source = Source::start().await;
    let db = TestDb::create("cv_clean").await;
    db.apply_reference_schema().await;
    let mongo_db = unique_name("cvclean");
    let config = verifying_config(&mongo_db, 40);
    migrate(&db, &config).await;
    let pg = db.client().await;
    let replicator = start_replicator(&source, &db, &config).await;
    let users: Vec<ObjectId> = (0..30).map(|_| ObjectId::new()).collect();
    seed(&source, &mongo_db, &users).await;

    // Writes keep arriving (new users, updates of existing ones, ledger entries) until three
    // rounds of users have finished while they did.
    let writer_source = source.uri.clone();
    let writer_db = mongo_db.clone();
    let writer_users = users.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let client = mongodb::Client::with_uri_str(&writer_source)
            .await
            .expect("writer client");
        let db = client.database(&writer_db);
        let mut n: i32 = 0;
        while !*stop_rx.borrow() {
            n += 1;
            let target = writer_users[(n as usize * 7) % writer_users.len()];
            db.collection::<bson::Document>("users")
                .update_one(doc! {"_id": target}, doc! {"$inc": {"points": 1}})
                .await
                .expect("update user");
            db.collection::<bson::Document>("users")
                .insert_one(doc! {"email": format!("w{n}@example.com"), "points": n})
                .await
                .expect("insert user");
            db.collection::<bson::Document>("fundsledgerentries")
                .insert_one(doc! {"userId": target, "type": "fee",
                "amount": Decimal128::from_str("0.10").expect("decimal")})
                .await
                .expect("insert ledger entry");
            tokio::select! {
                _ = stop_rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        n
    });
    let rounds = |outcome: &'static str| {
        metric(
            &replicator,
            "mongo2pg_verify_rounds_total",
            &[("collection", "users"), ("outcome", outcome)],
        )
    };
    wait_until(
        "three rounds of users while writes continue",
        WAIT,
        || async { rounds("clean") + rounds("incomplete") + rounds("mismatch") >= 3.0 },
    )
    .await;
    let _ = stop_tx.send(true);
    let writes = writer.await.expect("writer");
    assert!(writes > 10, "the writer kept writing ({writes} rounds)");
    wait_users_equal(&source, &mongo_db, &pg, WAIT).await;
    // Once writes stop, a round also compares counts and sums.
    wait_until(
        "a clean round with counts after the writes",
        WAIT,
        || async {
            stored_round(&pg, "users").await == Some((0, true))
                && stored_round(&pg, "fundsledgerentries").await == Some((0, true))
        },
    )
    .await;
    for collection in ["users", "fundsledgerentries", "payments", "addresses"] {
        assert_eq!(
            metric(
                &replicator,
                "mongo2pg_verify_rounds_total",
                &[("collection", collection), ("outcome", "mismatch")]
            ),
            0.0,
            "{collection} reported a mismatch on a clean system"
        );
    }
    assert!(rounds("clean") >= 1.0);
    assert!(
        metric(
            &replicator,
            "mongo2pg_verify_documents_compared_total",
            &[("collection", "users")]
        ) > 0.0
    );
    replicator.shutdown().await;
}
