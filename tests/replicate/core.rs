//! End-to-end: mongosim (or MONGO_URL) -> mongo2pg in-process -> real Postgres, with the reference
//! marketplace schema and mapping. Exact rows for every mapping rule the domain uses.

use std::str::FromStr;
use std::time::Duration;

use crate::support::*;
use bson::{doc, oid::ObjectId, Decimal128};

const WAIT: Duration = Duration::from_secs(30);

async fn uuid_of(pg: &tokio_postgres::Client, collection: &str, legacy: &ObjectId) -> uuid::Uuid {
    pg.query_one(
        "SELECT new_id FROM public.id_map WHERE collection = $1 AND legacy_object_id = $2",
        &[&collection, &legacy.to_hex()],
    )
    .await
    .expect("id_map entry")
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_domain_rows_arrive_exactly_with_mixed_ids_children_and_money() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start("refdomain").await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;

    let (u1, u2, c1, pr1, so1, p1, p2, l1) = (
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
    );
    let created = bson::DateTime::from_millis(1_700_000_000_123);
    source
        .coll(&mdb, "users")
        .insert_many([
            doc! {"_id": u1, "email": "buyer@example.com", "points": 10, "isVerified": true, "createdAt": created,
                  "passkeys": [
                      {"credentialID": "cred-1", "publicKey": "pk-1", "counter": 3_i64, "transports": ["usb", "nfc"]},
                      {"credentialID": "cred-2", "publicKey": "pk-2"}],
                  "refreshTokens": [{"token": "rt-1", "userAgent": "ua"}]},
            doc! {"_id": u2, "email": "seller@example.com", "referredBy": u1},
        ])
        .await
        .expect("insert users");
    source
        .coll(&mdb, "categories")
        .insert_one(doc! {"_id": c1, "name": "Phones"})
        .await
        .expect("insert category");
    source
        .coll(&mdb, "purchaserequests")
        .insert_one(
            doc! {"_id": pr1, "title": "iPhone", "buyerId": u1, "categoryId": c1,
            "budget": Decimal128::from_str("1234.5").expect("decimal"), "tags": ["a", "b"],
            "deliveryInfo": {"method": "courier", "city": "Tbilisi"}, "preferredSellerIds": [u2]},
        )
        .await
        .expect("insert request");
    source
        .coll(&mdb, "selleroffers")
        .insert_one(doc! {"_id": so1, "purchaseRequestId": pr1, "sellerId": u2,
        "price": Decimal128::from_str("99.990000000000000001").expect("decimal")})
        .await
        .expect("insert offer");
    source
        .coll(&mdb, "payments")
        .insert_many([
            doc! {"_id": p1, "buyerId": u1, "purchaseRequestId": pr1, "sellerOfferId": so1, "sellerId": u2,
                  "amount": {"value": Decimal128::from_str("100.000000000000000001").expect("decimal"), "currency": "USDC"},
                  "status": "completed", "blockchain": {"txHash": "0xabc", "confirmations": 12}},
            doc! {"_id": p2, "buyerId": u1, "purchaseRequestId": "tmpl-checkout-7", "sellerOfferId": "tmpl-offer-7",
                  "sellerId": u2.to_hex(), "amount": {"value": 0.1}},
        ])
        .await
        .expect("insert payments");
    source
        .coll(&mdb, "fundsledgerentries")
        .insert_one(doc! {"_id": l1, "userId": u1, "type": "fee", "amount": Decimal128::from_str("5.25").expect("decimal"),
            "paymentId": p1, "purchaseRequestId": "tmpl-checkout-7", "idempotencyKey": "fee-p1"})
        .await
        .expect("insert ledger entry");

    wait_until("all rows replicated", WAIT, || async {
        count(&pg, "SELECT count(*) FROM funds_ledger_entries").await == 1
            && count(&pg, "SELECT count(*) FROM payments").await == 2
            && count(&pg, "SELECT count(*) FROM users").await == 2
    })
    .await;

    // Users and their child tables.
    let (u1_id, u2_id) = (
        uuid_of(&pg, "users", &u1).await,
        uuid_of(&pg, "users", &u2).await,
    );
    let row = pg
        .query_one("SELECT id, email, points, is_verified, created_at, referred_by_id FROM users WHERE legacy_object_id = $1", &[&u1.to_hex()])
        .await
        .expect("user row");
    assert_eq!(row.get::<_, uuid::Uuid>(0), u1_id);
    assert_eq!(row.get::<_, String>(1), "buyer@example.com");
    assert_eq!(row.get::<_, i32>(2), 10);
    assert!(row.get::<_, bool>(3));
    assert_eq!(
        row.get::<_, chrono::DateTime<chrono::Utc>>(4)
            .timestamp_millis(),
        1_700_000_000_123
    );
    assert_eq!(row.get::<_, Option<uuid::Uuid>>(5), None);
    let referred: Option<uuid::Uuid> = pg
        .query_one(
            "SELECT referred_by_id FROM users WHERE legacy_object_id = $1",
            &[&u2.to_hex()],
        )
        .await
        .expect("user 2")
        .get(0);
    assert_eq!(referred, Some(u1_id));
    let passkeys = pg
        .query("SELECT credential_id, counter, transports, position FROM user_passkeys WHERE user_id = $1 ORDER BY position", &[&u1_id])
        .await
        .expect("passkeys");
    assert_eq!(passkeys.len(), 2);
    assert_eq!(passkeys[0].get::<_, String>(0), "cred-1");
    assert_eq!(passkeys[0].get::<_, i64>(1), 3);
    assert_eq!(
        passkeys[0].get::<_, Option<Vec<String>>>(2),
        Some(vec!["usb".to_string(), "nfc".to_string()])
    );
    assert_eq!(passkeys[1].get::<_, String>(0), "cred-2");
    assert_eq!(
        count(&pg, "SELECT count(*) FROM user_refresh_tokens").await,
        1
    );

    // Purchase request: money exact, 1:1 child and junction.
    let pr_id = uuid_of(&pg, "purchaserequests", &pr1).await;
    let row = pg
        .query_one(
            "SELECT budget::text, tags, buyer_id, category_id FROM purchase_requests WHERE id = $1",
            &[&pr_id],
        )
        .await
        .expect("request row");
    assert_eq!(
        row.get::<_, String>(0)
            .trim_end_matches('0')
            .trim_end_matches('.'),
        "1234.5"
    );
    assert_eq!(
        row.get::<_, Option<Vec<String>>>(1),
        Some(vec!["a".to_string(), "b".to_string()])
    );
    assert_eq!(row.get::<_, uuid::Uuid>(2), u1_id);
    assert_eq!(
        row.get::<_, Option<uuid::Uuid>>(3),
        Some(uuid_of(&pg, "categories", &c1).await)
    );
    let city: Option<String> = pg
        .query_one(
            "SELECT city FROM purchase_request_delivery_info WHERE purchase_request_id = $1",
            &[&pr_id],
        )
        .await
        .expect("delivery info")
        .get(0);
    assert_eq!(city.as_deref(), Some("Tbilisi"));
    let preferred: uuid::Uuid = pg
        .query_one(
            "SELECT user_id FROM purchase_request_preferred_sellers WHERE purchase_request_id = $1",
            &[&pr_id],
        )
        .await
        .expect("preferred seller")
        .get(0);
    assert_eq!(preferred, u2_id);

    // Payments: entity kind with FKs, template kind with external refs, 24-hex seller string as id.
    let p1_row = pg
        .query_one(
            "SELECT amount::text, currency, purchase_request_ref_kind::text, purchase_request_id, purchase_request_external_ref,
                    seller_ref_kind::text, seller_id, blockchain->>'txHash' FROM payments WHERE legacy_object_id = $1",
            &[&p1.to_hex()],
        )
        .await
        .expect("payment 1");
    assert_eq!(p1_row.get::<_, String>(0), "100.000000000000000001");
    assert_eq!(p1_row.get::<_, String>(1), "USDC");
    assert_eq!(p1_row.get::<_, String>(2), "entity");
    assert_eq!(p1_row.get::<_, Option<uuid::Uuid>>(3), Some(pr_id));
    assert_eq!(p1_row.get::<_, Option<String>>(4), None);
    assert_eq!(p1_row.get::<_, String>(5), "entity");
    assert_eq!(p1_row.get::<_, Option<uuid::Uuid>>(6), Some(u2_id));
    assert_eq!(p1_row.get::<_, Option<String>>(7).as_deref(), Some("0xabc"));
    let p2_row = pg
        .query_one(
            "SELECT amount::text, purchase_request_ref_kind::text, purchase_request_id, purchase_request_external_ref,
                    seller_offer_external_ref, seller_ref_kind::text, seller_id FROM payments WHERE legacy_object_id = $1",
            &[&p2.to_hex()],
        )
        .await
        .expect("payment 2");
    assert_eq!(p2_row.get::<_, String>(0), "0.100000000000000000");
    assert_eq!(p2_row.get::<_, String>(1), "template");
    assert_eq!(p2_row.get::<_, Option<uuid::Uuid>>(2), None);
    assert_eq!(
        p2_row.get::<_, Option<String>>(3).as_deref(),
        Some("tmpl-checkout-7")
    );
    assert_eq!(
        p2_row.get::<_, Option<String>>(4).as_deref(),
        Some("tmpl-offer-7")
    );
    assert_eq!(
        p2_row.get::<_, String>(5),
        "entity",
        "24-hex seller string counts as a user id"
    );
    assert_eq!(p2_row.get::<_, Option<uuid::Uuid>>(6), Some(u2_id));

    // Ledger: mixed ids of both kinds in one row.
    let l_row = pg
        .query_one(
            "SELECT amount::text, payment_ref_kind::text, payment_id, purchase_request_ref_kind::text, purchase_request_external_ref
               FROM funds_ledger_entries WHERE legacy_object_id = $1",
            &[&l1.to_hex()],
        )
        .await
        .expect("ledger row");
    assert_eq!(l_row.get::<_, String>(0), "5.250000000000000000");
    assert_eq!(l_row.get::<_, String>(1), "entity");
    assert_eq!(
        l_row.get::<_, Option<uuid::Uuid>>(2),
        Some(uuid_of(&pg, "payments", &p1).await)
    );
    assert_eq!(l_row.get::<_, String>(3), "template");
    assert_eq!(
        l_row.get::<_, Option<String>>(4).as_deref(),
        Some("tmpl-checkout-7")
    );

    // Updates replace children atomically; soft delete keeps the request; ledger updates become gaps.
    source
        .coll(&mdb, "users")
        .update_one(
            doc! {"_id": u1},
            doc! {"$set": {"points": 20}, "$pull": {"passkeys": {"credentialID": "cred-1"}}},
        )
        .await
        .expect("update user");
    source
        .coll(&mdb, "purchaserequests")
        .delete_one(doc! {"_id": pr1})
        .await
        .expect("delete request");
    source
        .coll(&mdb, "fundsledgerentries")
        .update_one(
            doc! {"_id": l1},
            doc! {"$set": {"amount": Decimal128::from_str("6").expect("decimal")}},
        )
        .await
        .expect("update ledger");
    wait_until(
        "update, soft delete and ledger gap applied",
        WAIT,
        || async {
            count(&pg, "SELECT count(*) FROM users WHERE points = 20").await == 1
                && count(
                    &pg,
                    "SELECT count(*) FROM purchase_requests WHERE is_deleted",
                )
                .await
                    == 1
                && count(
                    &pg,
                    "SELECT count(*) FROM public.pg_dualwrite_gaps WHERE kind = 'immutable_change'",
                )
                .await
                    == 1
        },
    )
    .await;
    let creds: Vec<String> = pg
        .query(
            "SELECT credential_id FROM user_passkeys WHERE user_id = $1",
            &[&u1_id],
        )
        .await
        .expect("passkeys")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(creds, vec!["cred-2".to_string()]);
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM funds_ledger_entries WHERE amount = 5.25"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM public.pg_dualwrite_gaps WHERE status = 'open'"
        )
        .await,
        1,
        "no other open gap (cross-stream fk_missing gaps heal by retry)"
    );

    replicator.shutdown().await;
    source.stop().await;
    drop(db);
}

async fn idle_time(pg: &tokio_postgres::Client) -> Option<u64> {
    pg.query_opt(
        "SELECT cluster_time FROM mongo2pg.checkpoints WHERE stream = 'categories'",
        &[],
    )
    .await
    .ok()
    .flatten()
    .and_then(|r| r.get::<_, Option<i64>>(0))
    .map(|v| mongo2pg::event::ClusterTime::from_sql(v).packed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_collection_checkpoint_keeps_up_with_the_clock() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start("idle").await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    // Only users get writes; categories stay idle.
    source
        .coll(&mdb, "users")
        .insert_one(doc! {"email": "x@example.com"})
        .await
        .expect("insert");

    wait_until("the idle stream writes a checkpoint", WAIT, || async {
        idle_time(&pg).await.is_some()
    })
    .await;
    let first = idle_time(&pg).await.unwrap_or_default();
    wait_until(
        "the idle checkpoint advances by at least a second",
        WAIT,
        || async {
            idle_time(&pg)
                .await
                .is_some_and(|t| (t >> 32) > (first >> 32))
        },
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let latest = (idle_time(&pg).await.unwrap_or_default() >> 32) as i64;
    assert!(
        now - latest <= 5,
        "idle checkpoint is {}s behind the clock",
        now - latest
    );
    replicator.shutdown().await;
    source.stop().await;
    drop(db);
}

/// A gauge of `replicator`'s registry for `collection` (None when the series is absent).
fn gauge(
    replicator: &mongo2pg::replicator::Replicator,
    name: &str,
    collection: &str,
) -> Option<f64> {
    let text = replicator.context.metrics.render().expect("render metrics");
    let prefix = format!("{name}{{collection=\"{collection}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

/// The lag gauge of an idle stream follows the change stream's heartbeats, not only the idle
/// checkpoint writes: with checkpoints written once a minute, the lag stays around a second while
/// the checkpoint ages; and a write's lag is measured from its millisecond `wallTime`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_streams_lag_follows_heartbeats_between_checkpoint_writes() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start_with("idlelag", |c| c.stream.heartbeat_interval_ms = 60_000).await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    source
        .coll(&mdb, "users")
        .insert_one(doc! {"email": "lag@example.com"})
        .await
        .expect("insert");
    wait_until("the user is in Postgres", WAIT, || async {
        count(&pg, "SELECT count(*) FROM users").await == 1
    })
    .await;
    wait_until("the users checkpoint is 4 s old", WAIT, || async {
        gauge(&replicator, "mongo2pg_checkpoint_age_seconds", "users").is_some_and(|a| a >= 4.0)
    })
    .await;
    let lag = gauge(&replicator, "mongo2pg_replication_lag_seconds", "users").unwrap_or(f64::MAX);
    assert!(
        lag < 3.0,
        "the idle stream's lag is {lag}s although heartbeats keep arriving"
    );
    replicator.shutdown().await;
    source.stop().await;
    drop(db);
}
