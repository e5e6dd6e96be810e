//! The ordered `_id` index through the official driver: BSON order across `_id` types, type-
//! bracketed ranges, the snapshot's resume query, `$in` / `$type` / `$or` predicates, descending
//! order, counts and writes by range, long cursors, `_id` identity across number types, and
//! inclusion / exclusion projections.

mod common;

use bson::{doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, DateTime, Document, Timestamp};
use futures::TryStreamExt;
use std::str::FromStr;

/// One document per BSON type bracket an `_id` may take, in MongoDB's order.
fn ids_in_bson_order() -> Vec<Bson> {
    vec![
        Bson::MinKey,
        Bson::Null,
        Bson::Double(-1.5),
        Bson::Int32(1),
        Bson::Decimal128(bson::Decimal128::from_str("1.25").expect("decimal")),
        Bson::Int64(2),
        Bson::String("a".into()),
        Bson::String("b".into()),
        Bson::Document(doc! { "k": 1 }),
        Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes: vec![1, 2],
        }),
        Bson::ObjectId(ObjectId::parse_str("000000000000000000000001").expect("oid")),
        Bson::ObjectId(ObjectId::parse_str("ffffffffffffffffffffffff").expect("oid")),
        Bson::Boolean(false),
        Bson::Boolean(true),
        Bson::DateTime(DateTime::from_millis(5)),
        Bson::Timestamp(Timestamp {
            time: 7,
            increment: 1,
        }),
        Bson::MaxKey,
    ]
}

async fn ids(c: &mongodb::Collection<Document>, filter: Document, sort: i32) -> Vec<Bson> {
    let docs: Vec<Document> = c
        .find(filter)
        .sort(doc! { "_id": sort })
        .batch_size(3)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor");
    docs.iter()
        .map(|d| d.get("_id").cloned().unwrap_or(Bson::Null))
        .collect()
}

async fn mixed(sim: &common::Sim, name: &str) -> mongodb::Collection<Document> {
    let c = sim.client.database("idx").collection::<Document>(name);
    let mut all = ids_in_bson_order();
    all.reverse();
    for id in all {
        c.insert_one(doc! { "_id": id.clone(), "v": 1 })
            .await
            .expect("insert mixed _id");
    }
    c
}

#[tokio::test]
async fn sort_by_id_follows_bson_order_across_types_both_ways() {
    let sim = common::start().await;
    let c = mixed(&sim, "order").await;
    let want = ids_in_bson_order();
    assert_eq!(ids(&c, doc! {}, 1).await, want);
    let mut reversed = want.clone();
    reversed.reverse();
    assert_eq!(ids(&c, doc! {}, -1).await, reversed);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn id_ranges_are_type_bracketed_like_mongodb() {
    let sim = common::start().await;
    let c = mixed(&sim, "brackets").await;
    assert_eq!(
        ids(&c, doc! { "_id": { "$gt": "" } }, 1).await,
        vec![Bson::String("a".into()), Bson::String("b".into())]
    );
    assert_eq!(
        ids(&c, doc! { "_id": { "$gte": 1, "$lt": 2 } }, 1).await,
        vec![
            Bson::Int32(1),
            Bson::Decimal128(bson::Decimal128::from_str("1.25").expect("decimal"))
        ]
    );
    assert_eq!(
        ids(&c, doc! { "_id": { "$lte": 1.0 } }, -1).await,
        vec![Bson::Int32(1), Bson::Double(-1.5)]
    );
    let n = c
        .count_documents(doc! { "_id": { "$gt": ObjectId::parse_str("000000000000000000000001").expect("oid") } })
        .await
        .expect("count");
    assert_eq!(n, 1);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn the_snapshot_resume_query_returns_every_later_document_in_order() {
    let sim = common::start().await;
    let c = mixed(&sim, "resume").await;
    let all = ids_in_bson_order();
    let after = all
        .iter()
        .position(|i| i == &Bson::String("a".into()))
        .expect("a string id");
    let resume = doc! { "$or": [
        { "_id": { "$gt": "a" } },
        { "_id": { "$type": ["object", "array", "binData", "objectId", "bool", "date", "timestamp", "regex", "maxKey"] } },
    ] };
    assert_eq!(ids(&c, resume, 1).await, all[after + 1..].to_vec());
    let numbers = ids(&c, doc! { "_id": { "$type": "number" } }, 1).await;
    assert_eq!(numbers, all[2..6].to_vec());
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn in_lists_and_or_of_id_predicates_use_exact_values() {
    let sim = common::start().await;
    let c = sim.client.database("idx").collection::<Document>("in");
    let docs: Vec<Document> = (0..500).map(|i| doc! { "_id": i, "n": i % 7 }).collect();
    c.insert_many(docs).await.expect("insert");
    assert_eq!(
        ids(&c, doc! { "_id": { "$in": [499, 3, 1000, 3.0, 7i64] } }, 1).await,
        vec![Bson::Int32(3), Bson::Int32(7), Bson::Int32(499)]
    );
    assert_eq!(
        ids(
            &c,
            doc! { "$or": [ { "_id": { "$lt": 2 } }, { "_id": 401 } ], "n": { "$ne": 1 } },
            1
        )
        .await,
        vec![Bson::Int32(0), Bson::Int32(401)]
    );
    let counted = c
        .count_documents(doc! { "_id": { "$gte": 10 } })
        .skip(480)
        .limit(50)
        .await
        .expect("countDocuments with skip and limit");
    assert_eq!(counted, 10);
    assert_eq!(
        c.count_documents(doc! { "_id": { "$gt": 10_000 } })
            .await
            .expect("empty count"),
        0
    );
    assert_eq!(c.count_documents(doc! {}).await.expect("count all"), 500);
    let deleted = c
        .delete_many(doc! { "_id": { "$gte": 100, "$lt": 200 } })
        .await
        .expect("delete by range");
    assert_eq!(deleted.deleted_count, 100);
    let updated = c
        .update_many(
            doc! { "_id": { "$in": [1, 2, 150] } },
            doc! { "$set": { "x": true } },
        )
        .await
        .expect("update by $in");
    assert_eq!(updated.matched_count, 2);
    let last = c
        .find_one_and_delete(doc! { "_id": { "$lt": 300 } })
        .sort(doc! { "_id": -1 })
        .await
        .expect("findAndModify")
        .expect("a document");
    assert_eq!(last.get_i32("_id").ok(), Some(299));
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn one_cursor_reads_a_large_collection_in_order_across_get_mores() {
    let sim = common::start().await;
    let c = sim.client.database("idx").collection::<Document>("big");
    let n = 25_000i32;
    let docs: Vec<Document> = (0..n)
        .rev()
        .map(|i| doc! { "_id": i, "pad": "x" })
        .collect();
    c.insert_many(docs).await.expect("insert");
    let mut cursor = c
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .batch_size(10_000)
        .await
        .expect("find");
    let mut expected = 0i32;
    while let Some(d) = cursor.try_next().await.expect("next") {
        assert_eq!(d.get_i32("_id").ok(), Some(expected));
        if expected == 5 {
            // Writes behind and ahead of the cursor's position, as MongoDB cursors see them.
            c.insert_one(doc! { "_id": n + 1 })
                .await
                .expect("insert ahead");
            c.delete_one(doc! { "_id": 2 })
                .await
                .expect("delete behind");
        }
        expected += 1;
        if expected == n {
            expected = n + 1;
        }
    }
    assert_eq!(expected, n + 2);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn equal_numbers_are_one_id_and_arrays_are_refused_as_id() {
    let sim = common::start().await;
    let c = sim.client.database("idx").collection::<Document>("ident");
    c.insert_one(doc! { "_id": 1 }).await.expect("insert 1");
    let dup = c
        .insert_one(doc! { "_id": 1.0 })
        .await
        .expect_err("1.0 is 1");
    assert_eq!(common::code_of(&dup), Some(11000));
    let dup = c
        .insert_one(doc! { "_id": bson::Decimal128::from_str("1.00").expect("decimal") })
        .await
        .expect_err("1.00 is 1");
    assert_eq!(common::code_of(&dup), Some(11000));
    c.insert_one(doc! { "_id": "1" })
        .await
        .expect("a string is another id");
    let bad = c
        .insert_one(doc! { "_id": [1, 2] })
        .await
        .expect_err("array _id");
    assert_eq!(common::code_of(&bad), Some(53));
    assert_eq!(
        c.find_one(doc! { "_id": 1i64 })
            .await
            .expect("find")
            .and_then(|d| d.get("_id").cloned()),
        Some(Bson::Int32(1))
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn projections_include_or_exclude_id_as_asked() {
    let sim = common::start().await;
    let c = sim.client.database("idx").collection::<Document>("proj");
    c.insert_one(doc! { "_id": 1, "a": 2, "b": { "c": 3, "d": 4 } })
        .await
        .expect("insert");
    let project = |p: Document| {
        let c = c.clone();
        async move {
            c.find_one(doc! {})
                .projection(p)
                .await
                .expect("find")
                .expect("doc")
        }
    };
    assert_eq!(project(doc! { "_id": 1 }).await, doc! { "_id": 1 });
    assert_eq!(
        project(doc! { "_id": 0 }).await,
        doc! { "a": 2, "b": { "c": 3, "d": 4 } }
    );
    assert_eq!(project(doc! { "a": 1, "_id": 0 }).await, doc! { "a": 2 });
    assert_eq!(project(doc! { "a": 1 }).await, doc! { "_id": 1, "a": 2 });
    assert_eq!(
        project(doc! { "b.c": 1 }).await,
        doc! { "_id": 1, "b": { "c": 3 } }
    );
    assert_eq!(
        project(doc! { "a": 0 }).await,
        doc! { "_id": 1, "b": { "c": 3, "d": 4 } }
    );
    assert_eq!(
        project(doc! { "a": 0, "_id": 0 }).await,
        doc! { "b": { "c": 3, "d": 4 } }
    );
    assert_eq!(
        project(doc! { "b.d": 0, "_id": 1 }).await,
        doc! { "_id": 1, "a": 2, "b": { "c": 3 } }
    );
    sim.handle.shutdown().await;
}
