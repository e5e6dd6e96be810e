//! The gap lifecycle and foreign-key cycles on the reference domain, end to end: a gap closes only
//! when the state of its document it stood for has landed. Existing requests and offers that refer
//! to each other land completely at snapshot; a soft delete or an ignored delete never makes an
//! unapplied insert disappear; a parent update that waits for a row of another collection is not
//! lost to a later event that does not carry it; two documents never share a row.

use std::str::FromStr;
use std::time::Duration;

use crate::support::*;
use bson::{doc, oid::ObjectId, Decimal128};
use mongo2pg::config::SnapshotMode;

const WAIT: Duration = Duration::from_secs(60);

fn dec(s: &str) -> Decimal128 {
    Decimal128::from_str(s).expect("decimal")
}

async fn no_open_gaps(pg: &tokio_postgres::Client) -> bool {
    open_gaps(pg).await.is_empty()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_offers_that_refer_to_each_other_land_completely_at_snapshot() {
    let source = Source::start().await;
    let db = TestDb::create("cycle").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mut config = reference_config(&mdb);
    config.snapshot.mode = SnapshotMode::Initial;
    config.snapshot.page_size = 2;
    migrate(&db, &config).await;
    let (buyer, seller) = (ObjectId::new(), ObjectId::new());
    let requests: Vec<ObjectId> = (0..3).map(|_| ObjectId::new()).collect();
    let offers: Vec<ObjectId> = (0..6).map(|_| ObjectId::new()).collect();
    let (pay, entry) = (ObjectId::new(), ObjectId::new());
    source
        .coll(&mdb, "users")
        .insert_many([
            doc! {"_id": buyer, "email": "b@x"},
            doc! {"_id": seller, "email": "s@x"},
        ])
        .await
        .expect("users");
    source
        .coll(&mdb, "purchaserequests")
        .insert_many(requests.iter().enumerate().map(|(i, r)| {
            doc! {"_id": r, "title": format!("r{i}"), "buyerId": buyer,
            "offers": [offers[2 * i], offers[2 * i + 1]], "selectedOfferId": offers[2 * i]}
        }))
        .await
        .expect("requests");
    source
        .coll(&mdb, "selleroffers")
        .insert_many(offers.iter().enumerate().map(|(i, o)| {
            doc! {"_id": o, "purchaseRequestId": requests[i / 2], "sellerId": seller, "price": dec("10.5")}
        }))
        .await
        .expect("offers");
    source
        .coll(&mdb, "payments")
        .insert_one(
            doc! {"_id": pay, "buyerId": buyer, "purchaseRequestId": requests[0],
            "sellerOfferId": offers[0], "sellerId": seller, "amount": {"value": dec("10.5")}},
        )
        .await
        .expect("payment");
    source
        .coll(&mdb, "fundsledgerentries")
        .insert_one(
            doc! {"_id": entry, "userId": buyer, "type": "fee", "amount": dec("0.25"),
            "paymentId": pay, "purchaseRequestId": requests[0]},
        )
        .await
        .expect("ledger entry");

    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    wait_until(
        "every row, junction row and reference landed, with no open gap",
        WAIT,
        || async {
            count(&pg, "SELECT count(*) FROM purchase_request_offers").await == 6
                && count(
                    &pg,
                    "SELECT count(*) FROM purchase_requests WHERE selected_offer_id IS NOT NULL",
                )
                .await
                    == 3
                && count(&pg, "SELECT count(*) FROM funds_ledger_entries").await == 1
                && no_open_gaps(&pg).await
        },
    )
    .await;
    assert_eq!(count(&pg, "SELECT count(*) FROM seller_offers").await, 6);
    assert_eq!(count(&pg, "SELECT count(*) FROM payments").await, 1);
    // Every selected offer is the request's own first offer.
    assert_eq!(
        count(
            &pg,
            "SELECT count(*) FROM purchase_requests r JOIN seller_offers o ON o.id = r.selected_offer_id
             WHERE o.purchase_request_id = r.id"
        )
        .await,
        3
    );
    let report = verify_reference(&source, &mdb, &db, &config).await;
    assert!(report.clean, "{report:#?}");
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_deleted_request_that_never_landed_lands_with_its_last_state_and_the_flag() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start("softgap").await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    let (buyer, request) = (ObjectId::new(), ObjectId::new());
    // The request refers to a buyer that does not exist yet: its insert is an fk_missing gap.
    source
        .coll(&mdb, "purchaserequests")
        .insert_one(doc! {"_id": request, "title": "kept for the money trail", "buyerId": buyer})
        .await
        .expect("request");
    wait_until("the request's insert is gapped", WAIT, || async {
        open_gaps(&pg).await == vec![("purchaserequests".to_string(), "fk_missing".to_string())]
    })
    .await;
    source
        .coll(&mdb, "purchaserequests")
        .delete_one(doc! {"_id": request})
        .await
        .expect("delete");
    source
        .coll(&mdb, "users")
        .insert_one(doc! {"_id": buyer, "email": "late@x"})
        .await
        .expect("buyer");
    wait_until("the request lands, flagged deleted, and no gap stays open", WAIT, || async {
        count(
            &pg,
            "SELECT count(*) FROM purchase_requests WHERE is_deleted AND title = 'kept for the money trail'",
        )
        .await
            == 1
            && no_open_gaps(&pg).await
    })
    .await;
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_entry_whose_user_arrives_late_lands_as_inserted_and_its_changes_stay_gaps() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start("ledgergap").await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    let (user, entry) = (ObjectId::new(), ObjectId::new());
    let ledger = source.coll(&mdb, "fundsledgerentries");
    ledger
        .insert_one(doc! {"_id": entry, "userId": user, "type": "fee", "amount": dec("1.50")})
        .await
        .expect("entry");
    wait_until("the entry's insert is gapped", WAIT, || async {
        open_gaps(&pg).await == vec![("fundsledgerentries".to_string(), "fk_missing".to_string())]
    })
    .await;
    ledger
        .update_one(doc! {"_id": entry}, doc! {"$set": {"amount": dec("9.99")}})
        .await
        .expect("forbidden update");
    ledger
        .delete_one(doc! {"_id": entry})
        .await
        .expect("forbidden delete");
    source
        .coll(&mdb, "users")
        .insert_one(doc! {"_id": user, "email": "late@x"})
        .await
        .expect("user");
    wait_until("the entry lands as it was inserted", WAIT, || async {
        count(
            &pg,
            "SELECT count(*) FROM funds_ledger_entries WHERE amount = 1.50",
        )
        .await
            == 1
            && open_gaps(&pg).await
                == vec![
                    (
                        "fundsledgerentries".to_string(),
                        "immutable_change".to_string(),
                    ),
                    (
                        "fundsledgerentries".to_string(),
                        "immutable_change".to_string(),
                    ),
                ]
    })
    .await;
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_update_waiting_for_a_user_is_not_lost_to_a_later_soft_delete() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start("stalechild").await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    let (buyer, late, request) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
    source
        .coll(&mdb, "users")
        .insert_one(doc! {"_id": buyer, "email": "b@x"})
        .await
        .expect("buyer");
    let requests = source.coll(&mdb, "purchaserequests");
    requests
        .insert_one(
            doc! {"_id": request, "title": "v1", "buyerId": buyer, "preferredSellerIds": [buyer]},
        )
        .await
        .expect("request");
    wait_until("the request landed", WAIT, || async {
        count(
            &pg,
            "SELECT count(*) FROM purchase_requests WHERE title = 'v1'",
        )
        .await
            == 1
    })
    .await;
    // The update names a seller whose user row does not exist yet: the request row takes the
    // update, the junction row waits.
    requests
        .update_one(
            doc! {"_id": request},
            doc! {"$set": {"title": "v2", "preferredSellerIds": [buyer, late]}},
        )
        .await
        .expect("update");
    wait_until(
        "the update landed with a deferred junction row",
        WAIT,
        || async {
            count(
                &pg,
                "SELECT count(*) FROM purchase_requests WHERE title = 'v2'",
            )
            .await
                == 1
                && open_gaps(&pg).await
                    == vec![("purchaserequests".to_string(), "fk_deferred".to_string())]
        },
    )
    .await;
    requests
        .delete_one(doc! {"_id": request})
        .await
        .expect("delete");
    source
        .coll(&mdb, "users")
        .insert_one(doc! {"_id": late, "email": "late@x"})
        .await
        .expect("late user");
    wait_until("the last state lands whole and flagged", WAIT, || async {
        count(
            &pg,
            "SELECT count(*) FROM purchase_request_preferred_sellers",
        )
        .await
            == 2
            && count(
                &pg,
                "SELECT count(*) FROM purchase_requests WHERE is_deleted AND title = 'v2'",
            )
            .await
                == 1
            && no_open_gaps(&pg).await
    })
    .await;
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_id_with_an_object_ids_text_is_a_collision_gap_and_verify_reports_it() {
    let RefEnv {
        source,
        db,
        mdb,
        config,
    } = RefEnv::start("collision").await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    let oid = ObjectId::new();
    let categories = source.coll(&mdb, "categories");
    categories
        .insert_one(doc! {"_id": oid, "name": "object"})
        .await
        .expect("object id category");
    categories
        .insert_one(doc! {"_id": oid.to_hex(), "name": "string"})
        .await
        .expect("string id category");
    wait_until("one row and a collision gap", WAIT, || async {
        open_gaps(&pg).await == vec![("categories".to_string(), "id_collision".to_string())]
    })
    .await;
    let names: Vec<String> = pg
        .query("SELECT name FROM categories", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(names, vec!["object".to_string()]);
    let reason: String = pg
        .query_one(
            "SELECT reason FROM public.pg_dualwrite_gaps WHERE kind = 'id_collision'",
            &[],
        )
        .await
        .expect("gap")
        .get(0);
    assert!(
        reason.contains(&format!("the string _id \"{}\"", oid.to_hex()))
            && reason.contains(&format!("ObjectId(\"{}\")", oid.to_hex())),
        "{reason}"
    );
    let report = verify_reference(&source, &mdb, &db, &config).await;
    let categories = report
        .collections
        .iter()
        .find(|c| c.collection == "categories")
        .expect("categories report");
    assert_eq!(categories.id_collisions, vec![oid.to_hex()]);
    assert!(!categories.clean && !report.clean);
    replicator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_when_available_an_update_without_a_post_image_is_read_from_mongodb() {
    let source = Source::start().await;
    let db = TestDb::create("whenavailable").await;
    db.apply_reference_schema().await;
    let mdb = unique_name("mdb");
    let mut config = reference_config(&mdb);
    config.stream.full_document = mongo2pg::config::FullDocument::WhenAvailable;
    migrate(&db, &config).await;
    let replicator = start_replicator(&source, &db, &config).await;
    let pg = db.client().await;
    let user = ObjectId::new();
    let users = source.coll(&mdb, "users");
    // The collection keeps no post-images, so the update event carries none.
    users
        .insert_one(doc! {"_id": user, "email": "before@x", "points": 1})
        .await
        .expect("insert");
    users
        .update_one(
            doc! {"_id": user},
            doc! {"$set": {"email": "after@x", "points": 2}},
        )
        .await
        .expect("update");
    wait_until("the update's state landed", WAIT, || async {
        count(
            &pg,
            "SELECT count(*) FROM users WHERE email = 'after@x' AND points = 2",
        )
        .await
            == 1
    })
    .await;
    assert!(no_open_gaps(&pg).await);
    replicator.shutdown().await;
}
