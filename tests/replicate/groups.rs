//! Stream groups end to end: the money core (users, payments, ledger entries) on one group's
//! database-level change stream, applied in oplog order with one checkpoint row.

use std::str::FromStr;
use std::time::Duration;

use bson::{doc, oid::ObjectId, Decimal128};
use mongo2pg::config::{Config, GroupConfig, Members};

use crate::support::*;

const WAIT: Duration = Duration::from_secs(60);

/// The reference config with users, payments and ledger entries in the group `money`, and tiny
/// batches so a parent and its children land in different batches.
pub fn money_config(mdb: &str) -> Config {
    let mut config = reference_config(mdb);
    config.streams.insert(
        "money".into(),
        GroupConfig {
            collections: Members::List(vec![
                "users".into(),
                "payments".into(),
                "fundsledgerentries".into(),
            ]),
        },
    );
    config.stream.batch_max_events = 3;
    config.stream.channel_capacity = 2;
    config.validate().expect("valid group config");
    config
}

/// Writes user i, then its payment, then the payment's ledger entry, then a points update of the
/// user: every child right after its parent, at full speed.
pub async fn write_money(client: &mongodb::Client, mdb: &str, from: u32, to: u32) {
    let coll = |name: &str| client.database(mdb).collection::<bson::Document>(name);
    for i in from..to {
        let (u, p, l) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
        coll("users")
            .insert_one(doc! {"_id": u, "email": format!("u{i}@example.com"), "points": 0})
            .await
            .expect("insert user");
        coll("payments")
            .insert_one(doc! {"_id": p, "buyerId": u, "sellerId": u,
                "purchaseRequestId": format!("tmpl-{i}"), "sellerOfferId": format!("tmpl-offer-{i}"),
                "amount": {"value": Decimal128::from_str("10.5").expect("decimal"), "currency": "USDC"}})
            .await
            .expect("insert payment");
        coll("fundsledgerentries")
            .insert_one(doc! {"_id": l, "userId": u, "type": "fee", "paymentId": p,
            "amount": Decimal128::from_str("0.25").expect("decimal")})
            .await
            .expect("insert ledger entry");
        coll("users")
            .update_one(doc! {"_id": u}, doc! {"$set": {"points": i as i64}})
            .await
            .expect("update points");
    }
}

async fn stream_names(pg: &tokio_postgres::Client) -> Vec<String> {
    pg.query(
        "SELECT stream FROM mongo2pg.checkpoints ORDER BY stream",
        &[],
    )
    .await
    .expect("checkpoints")
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_applies_parents_before_children_across_restarts_without_fk_gaps() {
    init_tracing();
    let source = Source::start().await;
    let db = TestDb::create("group_order").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let config = money_config(&mdb);
    migrate(&db, &config).await;
    let pg = db.client().await;
    let total = 120_u32;

    let replicator = start_replicator(&source, &db, &config).await;
    let writer = {
        let client = source.client.clone();
        let mdb = mdb.clone();
        tokio::spawn(async move { write_money(&client, &mdb, 0, total).await })
    };
    // Stop the group's stream while the writes go on, then restart it from its checkpoint.
    wait_until("some payments replicated", WAIT, || async {
        count(&pg, "SELECT count(*) FROM payments").await >= 10
    })
    .await;
    replicator.shutdown().await;
    let replicator = start_replicator(&source, &db, &config).await;
    writer.await.expect("writer");
    wait_until("every row replicated", WAIT, || async {
        count(&pg, "SELECT count(*) FROM funds_ledger_entries").await == total as i64
            && count(
                &pg,
                "SELECT count(*) FROM users WHERE points = 0 AND email = 'u0@example.com'",
            )
            .await
                == 1
            && count(
                &pg,
                &format!("SELECT count(*) FROM users WHERE points = {}", total - 1),
            )
            .await
                == 1
    })
    .await;
    replicator.shutdown().await;

    assert_eq!(open_gaps(&pg).await, Vec::<(String, String)>::new());
    let gaps = count(&pg, "SELECT count(*) FROM public.pg_dualwrite_gaps").await;
    assert_eq!(
        gaps, 0,
        "no gap was ever recorded, not even one healed later"
    );
    let report = verify_reference(&source, &mdb, &db, &config).await;
    assert!(report.clean, "{report:#?}");
    let names = stream_names(&pg).await;
    assert!(names.contains(&"money".to_string()), "{names:?}");
    for member in ["users", "payments", "fundsledgerentries"] {
        assert!(!names.contains(&member.to_string()), "{names:?}");
    }
    assert!(names.contains(&"addresses".to_string()), "{names:?}");
}
