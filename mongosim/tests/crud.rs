//! CRUD round trips through the official driver: every query and update operator the simulator
//! claims, cursors, findAndModify, counts, indexes and DDL.

mod common;

use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{FindOptions, IndexOptions, ReturnDocument};
use mongodb::IndexModel;

async fn ids(coll: &mongodb::Collection<Document>, filter: Document) -> Vec<i32> {
    let docs: Vec<Document> = coll
        .find(filter)
        .sort(doc! { "_id": 1 })
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor");
    docs.iter()
        .map(|d| d.get_i32("_id").expect("int id"))
        .collect()
}

#[tokio::test]
async fn query_operators_select_exactly_the_matching_documents() {
    let sim = common::start().await;
    let c = sim.client.database("crud").collection::<Document>("q");
    c.insert_many(vec![
        doc! { "_id": 1, "n": 1, "tags": ["a", "b"], "sub": { "k": "x" } },
        doc! { "_id": 2, "n": 2, "tags": ["b"], "sub": { "k": "y" } },
        doc! { "_id": 3, "n": 3, "opt": null },
        doc! { "_id": 4, "n": 4.5, "opt": 7 },
    ])
    .await
    .expect("insert_many");
    assert_eq!(ids(&c, doc! { "sub.k": "y" }).await, vec![2]);
    assert_eq!(ids(&c, doc! { "n": { "$eq": 3 } }).await, vec![3]);
    assert_eq!(ids(&c, doc! { "n": { "$ne": 3 } }).await, vec![1, 2, 4]);
    assert_eq!(ids(&c, doc! { "n": { "$gt": 2 } }).await, vec![3, 4]);
    assert_eq!(
        ids(&c, doc! { "n": { "$gte": 2, "$lt": 4 } }).await,
        vec![2, 3]
    );
    assert_eq!(ids(&c, doc! { "n": { "$lte": 1 } }).await, vec![1]);
    assert_eq!(
        ids(&c, doc! { "tags": { "$in": ["a", "z"] } }).await,
        vec![1]
    );
    assert_eq!(
        ids(&c, doc! { "tags": { "$nin": ["b"] } }).await,
        vec![3, 4]
    );
    assert_eq!(
        ids(&c, doc! { "opt": { "$exists": true } }).await,
        vec![3, 4]
    );
    assert_eq!(
        ids(&c, doc! { "opt": { "$exists": false } }).await,
        vec![1, 2]
    );
    assert_eq!(
        ids(
            &c,
            doc! { "$and": [ { "n": { "$gt": 1 } }, { "tags": "b" } ] }
        )
        .await,
        vec![2]
    );
    assert_eq!(
        ids(&c, doc! { "$or": [ { "n": 1 }, { "opt": 7 } ] }).await,
        vec![1, 4]
    );
    assert_eq!(ids(&c, doc! { "tags": "b" }).await, vec![1, 2]);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn find_honours_sort_skip_limit_projection_and_batches_through_get_more() {
    let sim = common::start().await;
    let c = sim.client.database("crud").collection::<Document>("cursor");
    let docs: Vec<Document> = (0..250)
        .map(|i| doc! { "_id": i, "v": 250 - i, "pad": "x" })
        .collect();
    c.insert_many(docs).await.expect("insert_many");
    let all: Vec<Document> = c
        .find(doc! {})
        .batch_size(7)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor");
    assert_eq!(all.len(), 250);
    let opts = FindOptions::builder()
        .sort(doc! { "v": 1 })
        .skip(10)
        .limit(3)
        .projection(doc! { "v": 1, "_id": 0 })
        .build();
    let page: Vec<Document> = c
        .find(doc! {})
        .with_options(opts)
        .await
        .expect("find")
        .try_collect()
        .await
        .expect("cursor");
    assert_eq!(
        page,
        vec![doc! { "v": 11 }, doc! { "v": 12 }, doc! { "v": 13 }]
    );
    let excl = c
        .find_one(doc! { "_id": 5 })
        .projection(doc! { "pad": 0 })
        .await
        .expect("find_one");
    assert_eq!(excl, Some(doc! { "_id": 5, "v": 245 }));
    assert_eq!(
        c.count_documents(doc! { "v": { "$gt": 200 } })
            .await
            .expect("count"),
        50
    );
    assert_eq!(c.count_documents(doc! { "v": -1 }).await.expect("count"), 0);
    assert_eq!(c.estimated_document_count().await.expect("estimate"), 250);
    let distinct = c.distinct("pad", doc! {}).await.expect("distinct");
    assert_eq!(distinct, vec![Bson::String("x".into())]);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn inserts_report_duplicate_keys_for_ordered_and_unordered_batches() {
    let sim = common::start().await;
    let c = sim.client.database("crud").collection::<Document>("dups");
    let generated = c
        .insert_one(doc! { "x": 1 })
        .await
        .expect("insert without _id");
    assert!(matches!(generated.inserted_id, Bson::ObjectId(_)));
    c.insert_one(doc! { "_id": 1 }).await.expect("first insert");
    let err = c
        .insert_one(doc! { "_id": 1 })
        .await
        .expect_err("duplicate");
    match *err.kind {
        ErrorKind::Write(WriteFailure::WriteError(ref e)) => assert_eq!(e.code, 11000),
        ref other => panic!("unexpected error {other:?}"),
    }
    let ordered = c
        .insert_many(vec![
            doc! { "_id": 2 },
            doc! { "_id": 1 },
            doc! { "_id": 3 },
        ])
        .await;
    assert!(ordered.is_err());
    assert_eq!(ids(&c, doc! { "_id": { "$gte": 1 } }).await, vec![1, 2]);
    let unordered = c
        .insert_many(vec![doc! { "_id": 1 }, doc! { "_id": 4 }])
        .ordered(false)
        .await;
    match unordered.map_err(|e| *e.kind) {
        Err(ErrorKind::InsertMany(f)) => {
            let errs = f.write_errors.expect("write errors");
            assert_eq!(errs.len(), 1);
            assert_eq!((errs[0].index, errs[0].code), (0, 11000));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(ids(&c, doc! { "_id": { "$gte": 1 } }).await, vec![1, 2, 4]);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn update_operators_replacements_upserts_and_multi_apply_like_mongodb() {
    let sim = common::start().await;
    let c = sim.client.database("crud").collection::<Document>("upd");
    c.insert_many(vec![
        doc! { "_id": 1, "a": 1, "gone": true, "list": [1, 2, 3], "set": ["x"] },
        doc! { "_id": 2, "a": 1 },
    ])
    .await
    .expect("seed");
    let r = c
        .update_one(
            doc! { "_id": 1 },
            doc! {
                "$set": { "b.c": "deep" }, "$unset": { "gone": "" }, "$inc": { "a": 5 },
                "$push": { "list": 4 }, "$addToSet": { "set": { "$each": ["x", "y"] } },
            },
        )
        .await
        .expect("update");
    assert_eq!((r.matched_count, r.modified_count), (1, 1));
    c.update_one(
        doc! { "_id": 1 },
        doc! { "$pull": { "list": { "$gte": 3 } } },
    )
    .await
    .expect("pull");
    let d = c
        .find_one(doc! { "_id": 1 })
        .await
        .expect("find")
        .expect("doc");
    assert_eq!(
        d,
        doc! { "_id": 1, "a": 6, "list": [1, 2], "set": ["x", "y"], "b": { "c": "deep" } }
    );
    let noop = c
        .update_one(doc! { "_id": 2 }, doc! { "$set": { "a": 1 } })
        .await
        .expect("noop");
    assert_eq!((noop.matched_count, noop.modified_count), (1, 0));
    let multi = c
        .update_many(doc! {}, doc! { "$set": { "m": true } })
        .await
        .expect("multi");
    assert_eq!(multi.modified_count, 2);
    let up = c
        .update_one(
            doc! { "_id": 9, "k": "v" },
            doc! { "$set": { "s": 1 }, "$setOnInsert": { "created": true } },
        )
        .upsert(true)
        .await
        .expect("upsert");
    assert_eq!(up.upserted_id, Some(Bson::Int32(9)));
    assert_eq!(
        c.find_one(doc! { "_id": 9 }).await.expect("find"),
        Some(doc! { "_id": 9, "k": "v", "s": 1, "created": true })
    );
    let again = c
        .update_one(
            doc! { "_id": 9 },
            doc! { "$set": { "s": 2 }, "$setOnInsert": { "created": false } },
        )
        .upsert(true)
        .await
        .expect("upsert existing");
    assert_eq!((again.matched_count, again.upserted_id), (1, None));
    c.replace_one(doc! { "_id": 2 }, doc! { "whole": "new" })
        .await
        .expect("replace");
    assert_eq!(
        c.find_one(doc! { "_id": 2 }).await.expect("find"),
        Some(doc! { "_id": 2, "whole": "new" })
    );
    let pipeline = vec![doc! { "$set": { "p": "$whole" } }];
    c.update_one(doc! { "_id": 2 }, pipeline)
        .await
        .expect("pipeline update");
    assert_eq!(
        c.find_one(doc! { "_id": 2 }).await.expect("find"),
        Some(doc! { "_id": 2, "whole": "new", "p": "new" })
    );
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn deletes_and_find_and_modify_return_the_expected_documents() {
    let sim = common::start().await;
    let c = sim.client.database("crud").collection::<Document>("fam");
    c.insert_many((1..=5).map(|i| doc! { "_id": i, "g": i % 2 }))
        .await
        .expect("seed");
    assert_eq!(
        c.delete_one(doc! { "g": 1 })
            .await
            .expect("delete_one")
            .deleted_count,
        1
    );
    assert_eq!(ids(&c, doc! {}).await, vec![2, 3, 4, 5]);
    let before = c
        .find_one_and_update(doc! { "_id": 2 }, doc! { "$inc": { "g": 10 } })
        .await
        .expect("fam");
    assert_eq!(before, Some(doc! { "_id": 2, "g": 0 }));
    let after = c
        .find_one_and_update(doc! { "_id": 2 }, doc! { "$inc": { "g": 1 } })
        .return_document(ReturnDocument::After)
        .await
        .expect("fam");
    assert_eq!(after, Some(doc! { "_id": 2, "g": 11 }));
    let replaced = c
        .find_one_and_replace(doc! { "_id": 3 }, doc! { "r": 1 })
        .return_document(ReturnDocument::After)
        .await
        .expect("far");
    assert_eq!(replaced, Some(doc! { "_id": 3, "r": 1 }));
    let removed = c.find_one_and_delete(doc! { "_id": 4 }).await.expect("fad");
    assert_eq!(removed, Some(doc! { "_id": 4, "g": 0 }));
    let missing = c
        .find_one_and_delete(doc! { "_id": 40 })
        .await
        .expect("fad missing");
    assert_eq!(missing, None);
    let upserted = c
        .find_one_and_update(doc! { "_id": 7 }, doc! { "$set": { "u": 1 } })
        .upsert(true)
        .return_document(ReturnDocument::After)
        .await
        .expect("fam upsert");
    assert_eq!(upserted, Some(doc! { "_id": 7, "u": 1 }));
    assert_eq!(
        c.delete_many(doc! {})
            .await
            .expect("delete_many")
            .deleted_count,
        4
    );
    assert_eq!(c.count_documents(doc! {}).await.expect("count"), 0);
    sim.handle.shutdown().await;
}

#[tokio::test]
async fn unique_indexes_and_collection_ddl_behave_like_mongodb() {
    let sim = common::start().await;
    let db = sim.client.database("ddl");
    let c = db.collection::<Document>("users");
    let model = IndexModel::builder()
        .keys(doc! { "email": 1 })
        .options(IndexOptions::builder().unique(true).build())
        .build();
    let created = c.create_index(model).await.expect("create index");
    assert_eq!(created.index_name, "email_1");
    c.insert_one(doc! { "_id": 1, "email": "a@x" })
        .await
        .expect("insert");
    let dup = c
        .insert_one(doc! { "_id": 2, "email": "a@x" })
        .await
        .expect_err("unique violated");
    assert!(
        matches!(*dup.kind, ErrorKind::Write(WriteFailure::WriteError(ref e)) if e.code == 11000)
    );
    let names = c.list_index_names().await.expect("list indexes");
    assert_eq!(names, vec!["_id_".to_owned(), "email_1".to_owned()]);
    db.create_collection("other").await.expect("create");
    let err = db.create_collection("other").await.expect_err("exists");
    assert!(matches!(*err.kind, ErrorKind::Command(ref e) if e.code == 48));
    assert_eq!(
        db.list_collection_names().await.expect("list"),
        vec!["other".to_owned(), "users".to_owned()]
    );
    sim.client
        .database("admin")
        .run_command(doc! { "renameCollection": "ddl.other", "to": "ddl.renamed" })
        .await
        .expect("rename");
    assert_eq!(
        db.list_collection_names().await.expect("list"),
        vec!["renamed".to_owned(), "users".to_owned()]
    );
    db.collection::<Document>("renamed")
        .drop()
        .await
        .expect("drop");
    assert_eq!(
        db.list_collection_names().await.expect("list"),
        vec!["users".to_owned()]
    );
    assert!(sim
        .client
        .list_database_names()
        .await
        .expect("dbs")
        .contains(&"ddl".to_owned()));
    db.drop().await.expect("drop database");
    assert!(!sim
        .client
        .list_database_names()
        .await
        .expect("dbs")
        .contains(&"ddl".to_owned()));
    let unknown = db
        .run_command(doc! { "noSuchCommand": 1 })
        .await
        .expect_err("unknown command");
    assert!(matches!(*unknown.kind, ErrorKind::Command(ref e) if e.code == 59));
    sim.handle.shutdown().await;
}
