//! Every kind of bad input becomes exactly one gap with the right kind and the raw document, and
//! the stream keeps going: a good document written after all the bad ones still arrives.

use std::str::FromStr;
use std::time::Duration;

use crate::support::*;
use bson::{doc, oid::ObjectId, Decimal128};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_document_becomes_one_gap_and_the_stream_continues() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start("badinput").await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;

    let users = source.coll(&mdb, "users");
    let good_user = ObjectId::new();
    users
        .insert_one(doc! {"_id": good_user, "email": "taken@example.com"})
        .await
        .expect("good user");
    let user_of_offer = ObjectId::new();
    users
        .insert_one(doc! {"_id": user_of_offer})
        .await
        .expect("second good user");
    let pr = ObjectId::new();
    source
        .coll(&mdb, "purchaserequests")
        .insert_one(doc! {"_id": pr, "title": "t", "buyerId": good_user})
        .await
        .expect("good request");
    wait_until("good parents replicated", WAIT, || async {
        count(&pg, "SELECT count(*) FROM purchase_requests").await == 1
    })
    .await;

    // (kind, collection, document) — each must produce exactly one gap of that kind.
    let bad: Vec<(&str, &str, bson::Document)> = vec![
        (
            "wrong_type",
            "users",
            doc! {"_id": ObjectId::new(), "points": "ten"},
        ),
        (
            "invalid_reference",
            "addresses",
            doc! {"_id": ObjectId::new(), "userId": "not-an-object-id"},
        ),
        (
            "invalid_number",
            "selleroffers",
            doc! {"_id": ObjectId::new(), "purchaseRequestId": pr, "sellerId": user_of_offer,
            "price": Decimal128::from_str("NaN").expect("nan")},
        ),
        (
            "invalid_number",
            "requesttemplates",
            doc! {"_id": ObjectId::new(), "title": "x", "sellerId": good_user, "price": f64::INFINITY},
        ),
        (
            "invalid_number",
            "selleroffers",
            doc! {"_id": ObjectId::new(), "purchaseRequestId": pr, "sellerId": user_of_offer,
            "price": Decimal128::from_str("1E+30").expect("big")},
        ),
        (
            "missing_required",
            "categories",
            doc! {"_id": ObjectId::new(), "slug": "no-name"},
        ),
        (
            "invalid_date",
            "users",
            doc! {"_id": ObjectId::new(), "createdAt": bson::DateTime::from_millis(i64::MAX)},
        ),
        (
            "nul_in_text",
            "users",
            doc! {"_id": ObjectId::new(), "username": "a\u{0}b"},
        ),
        (
            "fk_missing",
            "addresses",
            doc! {"_id": ObjectId::new(), "userId": ObjectId::new()},
        ),
        (
            "unique_violation",
            "users",
            doc! {"_id": ObjectId::new(), "email": "taken@example.com"},
        ),
        (
            "check_violation",
            "selleroffers",
            doc! {"_id": ObjectId::new(), "purchaseRequestId": pr, "sellerId": user_of_offer,
            "price": Decimal128::from_str("-1").expect("negative")},
        ),
    ];
    for (_, coll, d) in &bad {
        source
            .coll(&mdb, coll)
            .insert_one(d.clone())
            .await
            .expect("insert bad document");
    }
    let after = ObjectId::new();
    users
        .insert_one(doc! {"_id": after, "email": "after@example.com"})
        .await
        .expect("good user after");

    wait_until(
        "the good document after the bad ones arrives",
        WAIT,
        || async {
            count(
                &pg,
                &format!(
                    "SELECT count(*) FROM users WHERE legacy_object_id = '{}'",
                    after.to_hex()
                ),
            )
            .await
                == 1
        },
    )
    .await;
    wait_until("every bad document has its gap", WAIT, || async {
        count(
            &pg,
            "SELECT count(*) FROM public.pg_dualwrite_gaps WHERE status = 'open'",
        )
        .await
            >= bad.len() as i64
    })
    .await;

    for (kind, coll, d) in &bad {
        let id = d.get_object_id("_id").expect("id").to_hex();
        let rows = pg
            .query(
                "SELECT kind, reason, raw_event, status FROM public.pg_dualwrite_gaps WHERE collection = $1 AND document_key LIKE '%' || $2 || '%'",
                &[coll, &id],
            )
            .await
            .expect("gap rows");
        assert_eq!(rows.len(), 1, "exactly one gap for {kind} in {coll}");
        assert_eq!(
            rows[0].get::<_, String>(0),
            *kind,
            "gap kind for {coll} {id}: {}",
            rows[0].get::<_, String>(1)
        );
        assert!(
            !rows[0].get::<_, String>(1).is_empty(),
            "a reason is recorded"
        );
        let raw: String = rows[0].get(2);
        assert!(raw.contains(&id), "raw event keeps the document: {raw}");
        assert_eq!(rows[0].get::<_, String>(3), "open");
    }
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM public.pg_dualwrite_gaps WHERE status = 'open'"
        )
        .await,
        bad.len() as i64,
        "no other open gap"
    );
    // The NUL document's raw event survived as text (jsonb would have refused it).
    assert_eq!(
        count(&pg, "SELECT count(*) FROM public.pg_dualwrite_gaps WHERE kind = 'nul_in_text' AND raw_event LIKE '%\\u0000%'").await,
        1
    );
    // Nothing bad reached the tables.
    assert_eq!(count(&pg, "SELECT count(*) FROM users").await, 3);
    assert_eq!(count(&pg, "SELECT count(*) FROM seller_offers").await, 0);
    assert_eq!(count(&pg, "SELECT count(*) FROM addresses").await, 0);

    replicator.shutdown().await;
    source.stop().await;
    drop(db);
}
