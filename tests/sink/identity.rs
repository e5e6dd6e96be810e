//! Two MongoDB documents never share a row or an id_map entry: a string `_id` whose text is an
//! ObjectId's hex and that ObjectId are two documents; the one written first owns the legacy id,
//! the other is an `id_collision` gap naming both, in any batch layout.

use crate::support::sink_fixtures::*;
use bson::{doc, Bson};
use mongo2pg::event::Operation;
use mongo2pg::mapping::{LegacyRef, Mapped, RowOp};
use mongo2pg::sink::BatchItem;

/// An event of `users` whose `_id` is `id` (an ObjectId or a string with the same text).
fn user_item(id: Bson, email: &str, t: u32, op: Operation) -> BatchItem {
    let hex = match &id {
        Bson::ObjectId(o) => o.to_hex(),
        Bson::String(s) => s.clone(),
        other => panic!("unexpected id {other:?}"),
    };
    let mut row = user(1, email, "1", t, &[]);
    let key = LegacyRef {
        collection: "users".into(),
        legacy_id: hex,
    };
    if let RowOp::Upsert { key: k, .. } = &mut row {
        *k = key.clone();
    }
    let ops = match op {
        Operation::Delete => vec![RowOp::Delete {
            table: "users".into(),
            legacy_column: "legacy_object_id".into(),
            key,
            version: Some(("version".into(), mongo2pg::event::ClusterTime::new(t, 1))),
        }],
        _ => vec![row],
    };
    let mut ev = event(
        "users",
        op,
        1,
        t,
        Some(doc! {"_id": id.clone(), "email": email}),
    );
    ev.document_key = Some(id);
    BatchItem {
        event: ev,
        mapped: Ok(Mapped::Ops(ops)),
    }
}

async fn collisions(env: &Env) -> Vec<String> {
    rows(
        &env.client,
        "SELECT document_key, reason FROM pg_dualwrite_gaps WHERE kind = 'id_collision' AND status = 'open' ORDER BY id",
    )
    .await
}

#[tokio::test]
async fn a_string_id_and_the_object_id_with_its_text_never_share_a_row() {
    let oid = oid(7);
    let hex = oid.to_hex();
    for (name, batches) in [
        // The string document first, in one batch with the ObjectId document.
        (
            "one_batch",
            vec![vec![
                user_item(Bson::String(hex.clone()), "string@x", 10, Operation::Insert),
                user_item(Bson::ObjectId(oid), "object@x", 11, Operation::Insert),
            ]],
        ),
        // The same order across batches.
        (
            "two_batches",
            vec![
                vec![user_item(
                    Bson::String(hex.clone()),
                    "string@x",
                    10,
                    Operation::Insert,
                )],
                vec![user_item(
                    Bson::ObjectId(oid),
                    "object@x",
                    11,
                    Operation::Insert,
                )],
            ],
        ),
    ] {
        let mut env = env(&format!("identity_{name}")).await;
        for batch in batches {
            env.sink
                .apply_batch(&mut env.client, "users", 0, batch, None)
                .await
                .unwrap();
        }
        assert_eq!(
            rows(&env.client, "SELECT legacy_object_id, email FROM users").await,
            vec![format!("{hex}|string@x")],
            "{name}"
        );
        assert_eq!(
            rows(
                &env.client,
                "SELECT legacy_object_id, legacy_type FROM id_map WHERE collection = 'users'"
            )
            .await,
            vec![format!("{hex}|string")],
            "{name}"
        );
        let gaps = collisions(&env).await;
        assert_eq!(gaps.len(), 1, "{name}: {gaps:?}");
        assert!(
            gaps[0].starts_with(&format!(
                "{{\"$oid\":\"{hex}\"}}|ObjectId(\"{hex}\") and the string _id \"{hex}\""
            )),
            "{name}: {gaps:?}"
        );
        // The colliding document's later changes and its delete never touch the owner's row.
        env.sink
            .apply_batch(
                &mut env.client,
                "users",
                0,
                vec![
                    user_item(Bson::ObjectId(oid), "object2@x", 12, Operation::Update),
                    user_item(Bson::ObjectId(oid), "", 13, Operation::Delete),
                ],
                None,
            )
            .await
            .unwrap();
        assert_eq!(
            rows(&env.client, "SELECT legacy_object_id, email FROM users").await,
            vec![format!("{hex}|string@x")],
            "{name}"
        );
        assert_eq!(collisions(&env).await.len(), 3, "{name}");
    }
}

#[tokio::test]
async fn an_entry_allocated_by_a_reference_is_claimed_by_the_first_document_that_writes_it() {
    let mut env = env("identity_claim").await;
    let oid = oid(9);
    let hex = oid.to_hex();
    // A payment refers to the user before the user exists: the entry is allocated without owner.
    let mut pay = ops_item(
        "payments",
        Operation::Insert,
        1,
        5,
        vec![payment(1, 9, "1.00", 5)],
    );
    pay.mapped = Ok(Mapped::Ops(vec![payment(1, 9, "1.00", 5)]));
    env.sink
        .apply_batch(&mut env.client, "payments", 0, vec![pay], None)
        .await
        .unwrap();
    assert_eq!(
        rows(
            &env.client,
            &format!("SELECT legacy_type FROM id_map WHERE collection = 'users' AND legacy_object_id = '{hex}'")
        )
        .await,
        vec!["∅".to_string()]
    );
    env.sink
        .apply_batch(
            &mut env.client,
            "users",
            0,
            vec![
                user_item(Bson::ObjectId(oid), "object@x", 10, Operation::Insert),
                user_item(Bson::String(hex.clone()), "string@x", 11, Operation::Insert),
            ],
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        rows(&env.client, "SELECT legacy_object_id, email FROM users").await,
        vec![format!("{hex}|object@x")]
    );
    assert_eq!(
        rows(
            &env.client,
            &format!("SELECT legacy_type FROM id_map WHERE collection = 'users' AND legacy_object_id = '{hex}'")
        )
        .await,
        vec!["objectId".to_string()]
    );
    let gaps = collisions(&env).await;
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(
        gaps[0].starts_with(&format!("\"{hex}\"|the string _id")),
        "{gaps:?}"
    );
}
