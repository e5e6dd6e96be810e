//! The snapshot's correctness rules, each with the interleaving that used to break it:
//! every document is visited in `_id` order across BSON types (first run and resume), a copied
//! row carries the copy's start position as its version, a page read before a stream's update or
//! delete never overwrites it (in either order of application), and a resumed copy closes no gap
//! it never re-checked.

use crate::support::shop::{oid, order_doc, user_doc, Env};
use bson::{doc, Bson, Document};
use mongo2pg::event::{ChangeEvent, ClusterTime, Operation};
use mongo2pg::mapping::map_event;
use mongo2pg::sink::BatchItem;
use mongo2pg::snapshot::SnapshotOptions;
use mongo2pg::source::snapshot::SnapshotReader;

fn options(page_size: u32) -> SnapshotOptions {
    SnapshotOptions {
        page_size,
        ..SnapshotOptions::default()
    }
}

/// Users whose `_id`s mix numbers, strings and ObjectIds (numbers are not keyable: gaps).
fn mixed_users() -> Vec<Document> {
    let mut docs = Vec::new();
    for n in [3, 1, 2] {
        docs.push(doc! {"_id": n, "email": format!("int{n}@x")});
    }
    for s in ["b", "a", "c", "zz", "m"] {
        docs.push(doc! {"_id": s, "email": format!("{s}@x")});
    }
    for n in [5u32, 4, 6] {
        docs.push(user_doc(n));
    }
    docs
}

async fn legacy_ids(env: &Env) -> Vec<String> {
    env.pg
        .query("select legacy_object_id from users order by 1", &[])
        .await
        .expect("rows")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

fn expected_ids() -> Vec<String> {
    let mut ids: Vec<String> = ["a", "b", "c", "m", "zz"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    ids.extend([4u32, 5, 6].iter().map(|n| oid(*n).to_hex()));
    ids.sort();
    ids
}

async fn open_gaps(env: &Env, kind: &str) -> i64 {
    env.count(&format!(
        "select count(*) from pg_dualwrite_gaps where status = 'open' and kind = '{kind}'"
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_visits_every_document_across_mixed_id_types_on_first_run_and_on_resume() {
    for (name, page_size, pages_per_run) in [("one_run", 2u32, None), ("resumed", 2, Some(1u64))] {
        let env = Env::start(&format!("snap_mixed_{name}")).await;
        env.coll("users")
            .insert_many(mixed_users())
            .await
            .expect("seed");
        let mut runs = 0;
        loop {
            runs += 1;
            let mut o = options(page_size);
            o.max_pages = pages_per_run;
            let report = env.snapshot("users", &o).await;
            if report.complete || runs > 20 {
                assert!(report.complete, "{name}: copy never completed");
                break;
            }
        }
        assert_eq!(legacy_ids(&env).await, expected_ids(), "{name}");
        if pages_per_run.is_some() {
            assert!(runs >= 6, "{name}: the copy was resumed {runs} times");
        }
        // Number `_id`s cannot be keyed in id_map: each is a gap, none is lost silently.
        assert_eq!(open_gaps(&env, "malformed_event").await, 3, "{name}");
        assert!(env.verify(&["users"], &[]).await.clean, "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_rows_carry_the_copys_start_position_as_their_version() {
    let env = Env::start("snap_version").await;
    env.coll("users")
        .insert_many((0..7).map(user_doc))
        .await
        .expect("seed");
    let report = env.snapshot("users", &options(3)).await;
    let start = ClusterTime(report.start_cluster_time.expect("start"));
    let versions: Vec<i64> = env
        .pg
        .query("select distinct source_version from users", &[])
        .await
        .expect("versions")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![start.to_sql()]);
}

/// A stream event of `users` as the stream would apply it.
fn stream_event(op: Operation, id: Bson, full: Option<Document>, at: ClusterTime) -> ChangeEvent {
    ChangeEvent {
        operation: op.clone(),
        collection: "users".into(),
        document_key: Some(id.clone()),
        full_document: full,
        full_document_before_change: None,
        cluster_time: at,
        resume_token: None,
        txn: None,
        raw: doc! {"operationType": op.as_str(), "documentKey": {"_id": id}},
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_read_before_an_update_or_delete_never_undoes_it_in_either_order() {
    // 3 documents: a page written with array parameters; 100: a page staged with COPY.
    for (page_first, docs) in [(false, 3u32), (true, 3), (false, 100), (true, 100)] {
        let env = Env::start(&format!("snap_race_{page_first}_{docs}")).await;
        let users = env.coll("users");
        users
            .insert_many((0..docs).map(user_doc))
            .await
            .expect("seed");
        let start = env.mongo_now().await;
        // The page is read now, before the writes below.
        let mut reader = SnapshotReader::open(
            &env.mongo,
            &env.database,
            "users",
            &Default::default(),
            None,
            docs,
            start,
        )
        .await
        .expect("reader");
        let page = reader.next_page().await.expect("read").expect("a page");
        assert_eq!(page.events.len(), docs as usize);
        let rules = env.rules("users").clone();
        let page_items: Vec<BatchItem> = page
            .events
            .into_iter()
            .map(|event| {
                let mapped = map_event(&rules, &event);
                BatchItem { event, mapped }
            })
            .collect();
        users
            .update_one(doc! {"_id": oid(1)}, doc! {"$set": {"email": "new@x"}})
            .await
            .expect("update");
        users
            .delete_one(doc! {"_id": oid(2)})
            .await
            .expect("delete");
        let after = env.mongo_now().await;
        let changed = users
            .find_one(doc! {"_id": oid(1)})
            .await
            .expect("read")
            .expect("user 1");
        let stream_items: Vec<BatchItem> = [
            stream_event(
                Operation::Update,
                Bson::ObjectId(oid(1)),
                Some(changed),
                after,
            ),
            stream_event(Operation::Delete, Bson::ObjectId(oid(2)), None, after),
        ]
        .into_iter()
        .map(|event| {
            let mapped = map_event(&rules, &event);
            BatchItem { event, mapped }
        })
        .collect();
        let mut pg = env.connect().await;
        let mut sink = env.sink();
        let batches = if page_first {
            vec![page_items, stream_items]
        } else {
            vec![stream_items, page_items]
        };
        for items in batches {
            sink.apply_batch(&mut pg, "users", 0, items, None)
                .await
                .expect("apply");
        }
        let rows: Vec<(String, String)> = env
            .pg
            .query("select legacy_object_id, email from users order by 1", &[])
            .await
            .expect("rows")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut expected: Vec<(String, String)> = (0..docs)
            .filter(|n| *n != 2)
            .map(|n| {
                let email = if n == 1 {
                    "new@x".to_string()
                } else {
                    format!("u{n}@example.com")
                };
                (oid(n).to_hex(), email)
            })
            .collect();
        expected.sort();
        assert_eq!(
            rows, expected,
            "page applied first: {page_first}, {docs} documents"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_copy_leaves_open_the_gaps_recorded_before_it_stopped() {
    let env = Env::start("snap_resume_gaps").await;
    let mut docs: Vec<Document> = (0..6).map(user_doc).collect();
    // The second document cannot be mapped: its gap is recorded by the first page.
    docs[1].insert("email", 42);
    env.coll("users").insert_many(docs).await.expect("seed");
    let mut first = options(2);
    first.max_pages = Some(1);
    let stopped = env.snapshot("users", &first).await;
    assert!(!stopped.complete);
    assert_eq!(open_gaps(&env, "wrong_type").await, 1);
    let finished = env.snapshot("users", &options(2)).await;
    assert!(finished.complete && finished.handed_over);
    assert_eq!(
        open_gaps(&env, "wrong_type").await,
        1,
        "the document is still wrong in MongoDB: its gap stays open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_postgres_rejects_in_a_staged_page_becomes_a_gap_and_the_rest_lands() {
    let env = Env::start("snap_staged_bad_row").await;
    env.coll("users")
        .insert_many((0..10).map(user_doc))
        .await
        .expect("seed users");
    // 150 orders in pages of 100 (staged with COPY); order 37's amount overflows numeric(38,18).
    env.coll("orders")
        .insert_many((0..150).map(|n| {
            let amount = if n == 37 { "1E+25" } else { "12.5" };
            order_doc(n, n % 10, amount, "USDT", "paid")
        }))
        .await
        .expect("seed orders");
    env.snapshot("users", &options(100)).await;
    let report = env.snapshot("orders", &options(100)).await;
    assert!(report.complete && report.handed_over);
    assert_eq!((report.copied, report.pages, report.failed), (150, 2, 1));
    assert_eq!(env.count("select count(*) from orders").await, 149);
    assert_eq!(env.count("select count(*) from order_items").await, 298);
    let gaps = env
        .pg
        .query(
            "select document_key, kind, raw_event from pg_dualwrite_gaps where status = 'open'",
            &[],
        )
        .await
        .expect("gaps");
    assert_eq!(gaps.len(), 1);
    let key: String = gaps[0].get(0);
    let kind: String = gaps[0].get(1);
    let raw: String = gaps[0].get(2);
    assert!(key.contains(&oid(1_000_037).to_hex()), "{key}");
    assert_eq!(kind, "invalid_number");
    assert!(raw.contains("1E+25") && raw.contains("sku-37"), "{raw}");
    // Every other order landed with its exact amount and the copy's start version.
    assert_eq!(
        env.count("select count(*) from orders where amount = 12.5 and source_version is not null")
            .await,
        149
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_of_inserts_lands_whole_but_never_past_a_delete_or_over_a_newer_row() {
    let env = Env::start("insert_batch_copy").await;
    let rules = env.rules("users").clone();
    let mut sink = env.sink();
    let mut pg = env.connect().await;
    let t = |s: u32| ClusterTime::new(1_700_000_000 + s, 1);
    let apply = |events: Vec<ChangeEvent>| {
        events
            .into_iter()
            .map(|event| {
                let mapped = map_event(&rules, &event);
                BatchItem { event, mapped }
            })
            .collect::<Vec<_>>()
    };
    // User 7 was inserted and deleted at t(20) (a tombstone); user 8 has a newer row (t(30)).
    let first = apply(vec![
        stream_event(
            Operation::Insert,
            Bson::ObjectId(oid(7)),
            Some(user_doc(7)),
            t(10),
        ),
        stream_event(Operation::Delete, Bson::ObjectId(oid(7)), None, t(20)),
        stream_event(
            Operation::Insert,
            Bson::ObjectId(oid(8)),
            Some(user_doc(8)),
            t(30),
        ),
    ]);
    sink.apply_batch(&mut pg, "users", 0, first, None)
        .await
        .expect("first batch");
    // A replayed batch of 100 inserts at t(10) holding both: the 98 new users land, user 7 stays
    // deleted and user 8 keeps its newer row.
    let mut old_eight = user_doc(8);
    old_eight.insert("name", "older state");
    let inserts: Vec<ChangeEvent> = (100..198)
        .map(|n| {
            stream_event(
                Operation::Insert,
                Bson::ObjectId(oid(n)),
                Some(user_doc(n)),
                t(10),
            )
        })
        .chain([
            stream_event(
                Operation::Insert,
                Bson::ObjectId(oid(7)),
                Some(user_doc(7)),
                t(10),
            ),
            stream_event(
                Operation::Insert,
                Bson::ObjectId(oid(8)),
                Some(old_eight),
                t(10),
            ),
        ])
        .collect();
    let outcome = sink
        .apply_batch(&mut pg, "users", 0, apply(inserts), None)
        .await
        .expect("insert batch");
    assert!(outcome.gaps.is_empty(), "{:?}", outcome.gaps);
    assert_eq!(env.count("select count(*) from users").await, 1 + 98);
    assert_eq!(
        env.count("select count(*) from users where name = 'older state'")
            .await,
        0
    );
    // And 100 inserts Postgres has never seen all land (the COPY path).
    let fresh: Vec<ChangeEvent> = (300..400)
        .map(|n| {
            stream_event(
                Operation::Insert,
                Bson::ObjectId(oid(n)),
                Some(user_doc(n)),
                t(40),
            )
        })
        .collect();
    sink.apply_batch(&mut pg, "users", 0, apply(fresh), None)
        .await
        .expect("fresh batch");
    assert_eq!(env.count("select count(*) from users").await, 199);
}
