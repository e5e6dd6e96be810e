//! The batch apply against real Postgres: multi-row upserts, version guard, child replacement,
//! deletes and soft deletes, append-only rows, and rejected events turned into gaps while the
//! rest of the batch applies.

use crate::support::sink_fixtures::*;
use mongo2pg::event::{ClusterTime, Operation};
use mongo2pg::mapping::{GapKind, RowOp, SqlValue};

#[tokio::test]
async fn many_rows_are_upserted_in_one_batch_with_exact_values() {
    let mut env = env("many_rows").await;
    let items: Vec<_> = (1..=500)
        .map(|n| {
            let balance = format!("{n}.123456789012345678");
            ops_item(
                "users",
                Operation::Insert,
                n,
                100,
                vec![user(n, &format!("u{n}@x"), &balance, 100, &["k1", "k2"])],
            )
        })
        .collect();
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(100)))
        .await
        .unwrap();
    assert_eq!(out.applied.get("insert"), Some(&500));
    assert_eq!(out.rows_written.get("users"), Some(&500));
    assert_eq!(out.rows_written.get("passkeys"), Some(&1000));
    assert!(!out.per_event_fallback);
    assert!(out.checkpoint_moved);
    assert_eq!(out.ids_allocated, 500);
    // lock (3: the stream's first batch creates its checkpoint row) + id allocation (every id is
    // new: no lookup) + probe (no row, no tombstone) + savepoint + COPY + child delete + child
    // insert + supersede + checkpoint: the statement count does not grow with the number of rows.
    assert_eq!(out.statements, 11);
    // 125250 + 500 * 0.123456789012345678, exactly.
    assert_eq!(
        rows(&env.client, "SELECT count(*), sum(balance) FROM users").await,
        vec!["500|125311.728394506172839000".to_string()]
    );
    assert_eq!(
        rows(
            &env.client,
            "SELECT u.email, u.balance, u.version, m.new_id = u.id
             FROM users u JOIN id_map m ON m.collection = 'users' AND m.legacy_object_id = u.legacy_object_id
             WHERE u.email = 'u7@x'"
        )
        .await,
        vec![format!("u7@x|7.123456789012345678|{}|true", ClusterTime::new(100, 1).to_sql())]
    );
    // The same ids come from the cache next time (entries of committed transactions only).
    let again: Vec<_> = (1..=3)
        .map(|n| {
            ops_item(
                "users",
                Operation::Update,
                n,
                101,
                vec![user(n, &format!("u{n}@x"), "1", 101, &[])],
            )
        })
        .collect();
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, again, Some(position(101)))
        .await
        .unwrap();
    assert_eq!(
        (out.id_cache_hits, out.id_cache_misses, out.ids_allocated),
        (3, 0, 0)
    );

    // Updates after a restart (a cold cache): their entries are read, none is allocated again,
    // in one statement for the whole batch; the checkpoint row exists, so the lock is one
    // statement too.
    let ids_before = rows(
        &env.client,
        "SELECT string_agg(new_id::text, ',' ORDER BY legacy_object_id) FROM id_map",
    )
    .await;
    let mut sink = env.sink.fork();
    let updates: Vec<_> = (1..=500)
        .map(|n| {
            ops_item(
                "users",
                Operation::Update,
                n,
                102,
                vec![user(n, &format!("u{n}@x"), "2", 102, &["k1"])],
            )
        })
        .collect();
    let out = sink
        .apply_batch(&mut env.client, "users", 0, updates, Some(position(102)))
        .await
        .unwrap();
    assert_eq!(out.applied.get("update"), Some(&500));
    assert_eq!(
        (out.id_cache_hits, out.id_cache_misses, out.ids_allocated),
        (0, 500, 0)
    );
    // lock + id lookup + upsert + child delete + child insert + supersede + checkpoint.
    assert_eq!(out.statements, 7);
    assert_eq!(
        rows(
            &env.client,
            "SELECT string_agg(new_id::text, ',' ORDER BY legacy_object_id) FROM id_map",
        )
        .await,
        ids_before
    );
    assert_eq!(
        rows(
            &env.client,
            "SELECT count(*), sum(balance), count(*) FILTER (WHERE u.id = m.new_id) FROM users u
             JOIN id_map m ON m.collection = 'users' AND m.legacy_object_id = u.legacy_object_id"
        )
        .await,
        vec!["500|1000.000000000000000000|500".to_string()]
    );
}

#[tokio::test]
async fn an_older_event_never_overwrites_a_newer_row_and_equal_replays_are_idempotent() {
    let mut env = env("version_guard").await;
    let newer = vec![ops_item(
        "users",
        Operation::Update,
        1,
        200,
        vec![user(1, "new@x", "2", 200, &["new"])],
    )];
    env.sink
        .apply_batch(
            &mut env.client,
            "users",
            0,
            newer.clone(),
            Some(position(200)),
        )
        .await
        .unwrap();
    let older = vec![ops_item(
        "users",
        Operation::Update,
        1,
        150,
        vec![user(1, "old@x", "1", 150, &["old1", "old2"])],
    )];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, older, Some(position(150)))
        .await
        .unwrap();
    assert_eq!(out.rows_written.get("users"), None);
    assert_eq!(
        out.rows_written.get("passkeys"),
        None,
        "children of a skipped parent were touched"
    );
    assert!(!out.checkpoint_moved);
    let expected = vec!["new@x|2.000000000000000000|new".to_string()];
    let q = "SELECT u.email, u.balance, string_agg(p.credential, ',' ORDER BY p.position)
             FROM users u LEFT JOIN passkeys p ON p.user_id = u.id GROUP BY u.id";
    assert_eq!(rows(&env.client, q).await, expected);
    let passkey_ids_before = rows(&env.client, "SELECT id FROM passkeys").await;
    // Replaying the same event applies it again with the same result.
    env.sink
        .apply_batch(&mut env.client, "users", 0, newer, Some(position(200)))
        .await
        .unwrap();
    assert_eq!(rows(&env.client, q).await, expected);
    assert_ne!(
        rows(&env.client, "SELECT id FROM passkeys").await,
        passkey_ids_before
    );
    assert_eq!(
        rows(&env.client, "SELECT count(*) FROM passkeys").await,
        vec!["1"]
    );
}

#[tokio::test]
async fn child_rows_are_replaced_with_the_parent() {
    let mut env = env("children").await;
    let first = vec![
        ops_item(
            "users",
            Operation::Insert,
            1,
            10,
            vec![user(1, "a@x", "1", 10, &["a", "b", "c"])],
        ),
        ops_item(
            "users",
            Operation::Insert,
            2,
            10,
            vec![user(2, "b@x", "1", 10, &["z"])],
        ),
    ];
    env.sink
        .apply_batch(&mut env.client, "users", 0, first, Some(position(10)))
        .await
        .unwrap();
    let second = vec![ops_item(
        "users",
        Operation::Update,
        1,
        11,
        vec![user(1, "a@x", "1", 11, &["d"])],
    )];
    env.sink
        .apply_batch(&mut env.client, "users", 0, second, Some(position(11)))
        .await
        .unwrap();
    let q =
        "SELECT u.email, p.credential, p.position FROM passkeys p JOIN users u ON u.id = p.user_id
             ORDER BY u.email, p.position";
    assert_eq!(rows(&env.client, q).await, vec!["a@x|d|0", "b@x|z|0"]);
}

#[tokio::test]
async fn several_changes_to_one_row_in_a_batch_end_with_the_last() {
    let mut env = env("collapse").await;
    let items = vec![
        ops_item(
            "users",
            Operation::Insert,
            1,
            10,
            vec![user(1, "v1@x", "1", 10, &["a"])],
        ),
        ops_item(
            "users",
            Operation::Update,
            1,
            11,
            vec![user(1, "v2@x", "2", 11, &["b"])],
        ),
        ops_item(
            "users",
            Operation::Update,
            1,
            12,
            vec![user(1, "v3@x", "3", 12, &["c", "d"])],
        ),
    ];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(12)))
        .await
        .unwrap();
    assert!(!out.per_event_fallback);
    assert_eq!(out.applied.get("update"), Some(&2));
    let q = "SELECT u.email, u.balance, string_agg(p.credential, ',' ORDER BY p.position)
             FROM users u LEFT JOIN passkeys p ON p.user_id = u.id GROUP BY u.id";
    assert_eq!(
        rows(&env.client, q).await,
        vec!["v3@x|3.000000000000000000|c,d"]
    );
}

#[tokio::test]
async fn deletes_and_soft_deletes_respect_the_version_guard() {
    let mut env = env("deletes").await;
    let inserts = (1..=4)
        .map(|n| {
            ops_item(
                "users",
                Operation::Insert,
                n,
                10,
                vec![user(n, &format!("{n}@x"), "1", 10, &["k"])],
            )
        })
        .collect();
    env.sink
        .apply_batch(&mut env.client, "users", 0, inserts, Some(position(10)))
        .await
        .unwrap();
    let deleted_at = chrono::DateTime::parse_from_rfc3339("2025-01-02T03:04:05.678Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let soft = |n: u32, t: u32| RowOp::SoftDelete {
        table: "users".into(),
        legacy_column: "legacy_object_id".into(),
        key: key("users", n),
        column: "deleted_at".into(),
        value: SqlValue::Timestamptz(deleted_at.into()),
        version: Some(("version".into(), ClusterTime::new(t, 1))),
    };
    let items = vec![
        ops_item(
            "users",
            Operation::Delete,
            1,
            20,
            vec![delete("users", "users", 1, 20)],
        ),
        // Older than the stored row: ignored.
        ops_item(
            "users",
            Operation::Delete,
            2,
            5,
            vec![delete("users", "users", 2, 5)],
        ),
        ops_item("users", Operation::Delete, 3, 20, vec![soft(3, 20)]),
        ops_item("users", Operation::Delete, 4, 5, vec![soft(4, 5)]),
    ];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(20)))
        .await
        .unwrap();
    assert_eq!(out.applied.get("delete"), Some(&4));
    assert_eq!(out.rows_written.get("users"), Some(&2));
    let q = "SELECT email, deleted_at AT TIME ZONE 'UTC', version FROM users ORDER BY email";
    let v10 = ClusterTime::new(10, 1).to_sql();
    let v20 = ClusterTime::new(20, 1).to_sql();
    // A soft delete flags the row and keeps the version of its data (the tombstone holds the
    // delete's version).
    assert_eq!(
        rows(&env.client, q).await,
        vec![
            format!("2@x|∅|{v10}"),
            format!("3@x|2025-01-02T03:04:05.678|{v10}"),
            format!("4@x|∅|{v10}"),
        ]
    );
    // The deleted user's passkeys went with it (ON DELETE CASCADE).
    assert_eq!(
        rows(&env.client, "SELECT count(*) FROM passkeys").await,
        vec!["3"]
    );
    assert_eq!(
        rows(
            &env.client,
            "SELECT legacy_object_id, version, soft FROM mongo2pg.tombstones ORDER BY legacy_object_id"
        )
        .await,
        vec![
            format!("{}|{v20}|false", key("users", 1).legacy_id),
            format!("{}|{}|false", key("users", 2).legacy_id, ClusterTime::new(5, 1).to_sql()),
            format!("{}|{v20}|true", key("users", 3).legacy_id),
            format!("{}|{}|true", key("users", 4).legacy_id, ClusterTime::new(5, 1).to_sql()),
        ]
    );

    // Older states arriving after the deletes (a replay, a snapshot page read before them, a gap
    // retry): the hard-deleted row stays gone, the soft-deleted row takes the state and stays
    // flagged, and a state newer than the tombstone (a re-insert) lands normally.
    // The states carry `deleted_at` NULL, as a mapped "not deleted" field does.
    let with_deleted_at = |n: u32, email: &str, t: u32| {
        let mut op = user(n, email, "1", t, &["k"]);
        if let RowOp::Upsert { columns, .. } = &mut op {
            columns.push(cv("deleted_at", SqlValue::Null));
        }
        op
    };
    let late = vec![
        ops_item(
            "users",
            Operation::Snapshot,
            1,
            15,
            vec![with_deleted_at(1, "1@late", 15)],
        ),
        ops_item(
            "users",
            Operation::Snapshot,
            3,
            15,
            vec![with_deleted_at(3, "3@late", 15)],
        ),
        ops_item(
            "users",
            Operation::Insert,
            2,
            30,
            vec![with_deleted_at(2, "2@again", 30)],
        ),
    ];
    let mut sink = std::mem::replace(
        &mut env.sink,
        mongo2pg::sink::Sink::new(
            mongo2pg::sink::catalogue::load(&env.client, &[])
                .await
                .unwrap(),
            mongo2pg::sink::ControlNames::default(),
        ),
    )
    .with_soft_delete(
        "users",
        "deleted_at",
        SqlValue::Timestamptz(deleted_at.into()),
    );
    sink.apply_batch(&mut env.client, "users", 0, late, None)
        .await
        .unwrap();
    let v15 = ClusterTime::new(15, 1).to_sql();
    let v30 = ClusterTime::new(30, 1).to_sql();
    assert_eq!(
        rows(&env.client, q).await,
        vec![
            format!("2@again|∅|{v30}"),
            format!("3@late|2025-01-02T03:04:05.678|{v15}"),
            format!("4@x|∅|{v10}"),
        ]
    );
}

#[tokio::test]
async fn append_only_rows_are_inserted_once_and_a_change_becomes_a_gap() {
    let mut env = env("append_only").await;
    let insert = vec![ops_item(
        "ledger",
        Operation::Insert,
        1,
        10,
        vec![ledger(1, "10.50", "fee", 10)],
    )];
    env.sink
        .apply_batch(
            &mut env.client,
            "ledger",
            0,
            insert.clone(),
            Some(position(10)),
        )
        .await
        .unwrap();
    // Replayed insert: a no-op, no gap (the trigger would have refused an UPDATE).
    let out = env
        .sink
        .apply_batch(&mut env.client, "ledger", 0, insert, Some(position(10)))
        .await
        .unwrap();
    assert!(out.gaps.is_empty(), "{:?}", out.gaps);
    assert_eq!(out.applied.get("insert"), Some(&1));
    // A changed entry and a delete: both refused, each exactly one gap; the other insert applies.
    let items = vec![
        ops_item(
            "ledger",
            Operation::Update,
            1,
            11,
            vec![ledger(1, "99.00", "fee", 11)],
        ),
        ops_item(
            "ledger",
            Operation::Insert,
            2,
            11,
            vec![ledger(2, "1.00", "tip", 11)],
        ),
        ops_item(
            "ledger",
            Operation::Delete,
            1,
            12,
            vec![delete("ledger", "ledger", 1, 12)],
        ),
    ];
    let out = env
        .sink
        .apply_batch(&mut env.client, "ledger", 0, items, Some(position(12)))
        .await
        .unwrap();
    assert!(out.per_event_fallback);
    assert_eq!(out.gaps_by_kind.get(&GapKind::ImmutableChange), Some(&2));
    assert_eq!(out.applied.get("insert"), Some(&1));
    let q = "SELECT operation, kind, reason FROM pg_dualwrite_gaps ORDER BY cluster_time";
    let legacy = oid(1).to_hex();
    assert_eq!(
        rows(&env.client, q).await,
        vec![
            format!("update|immutable_change|append-only row {legacy} of ledger already exists with different values; append-only rows are never updated"),
            "delete|immutable_change|ledger entries are immutable".to_string(),
        ]
    );
    assert_eq!(
        rows(&env.client, "SELECT note, amount FROM ledger ORDER BY note").await,
        vec!["fee|10.50", "tip|1.00"]
    );
}

#[tokio::test]
async fn one_rejected_event_becomes_one_gap_and_the_rest_of_the_batch_applies() {
    let mut env = env("rejections").await;
    let setup = vec![ops_item(
        "users",
        Operation::Insert,
        1,
        10,
        vec![user(1, "taken@x", "1", 10, &[])],
    )];
    env.sink
        .apply_batch(&mut env.client, "users", 0, setup, Some(position(10)))
        .await
        .unwrap();
    let cases = [
        // Payment of a buyer that does not exist (yet).
        (
            "payments",
            vec![payment(1, 99, "5.00", 20)],
            GapKind::FkMissing,
            "insert or update on table \"payments\" violates foreign key constraint \"payments_buyer_id_fkey\"",
        ),
        (
            "users",
            vec![user(2, "taken@x", "1", 20, &[])],
            GapKind::UniqueViolation,
            "duplicate key value violates unique constraint \"users_email_uq\"",
        ),
        (
            "users",
            vec![user(3, "neg@x", "-1", 20, &[])],
            GapKind::CheckViolation,
            "new row for relation \"users\" violates check constraint \"users_balance_nonneg\"",
        ),
    ];
    for (i, (collection, bad_ops, kind, message)) in cases.into_iter().enumerate() {
        let t = 20 + i as u32;
        let items = vec![
            ops_item(
                "users",
                Operation::Insert,
                10 + i as u32,
                t,
                vec![user(10 + i as u32, &format!("ok{i}@x"), "1", t, &["p"])],
            ),
            ops_item(collection, Operation::Insert, 50 + i as u32, t, bad_ops),
            ops_item(
                "payments",
                Operation::Insert,
                60 + i as u32,
                t,
                vec![payment(60 + i as u32, 1, "7.25", t)],
            ),
        ];
        let out = env
            .sink
            .apply_batch(&mut env.client, "mixed", 0, items, Some(position(t)))
            .await
            .unwrap();
        assert_eq!(out.gaps.len(), 1, "case {kind:?}: {:?}", out.gaps);
        assert_eq!(out.gaps[0].kind, kind);
        assert!(
            out.gaps[0].reason.starts_with(message),
            "{}",
            out.gaps[0].reason
        );
        assert_eq!(out.applied.get("insert"), Some(&2));
        assert!(out.checkpoint_moved);
    }
    assert_eq!(
        rows(
            &env.client,
            "SELECT kind, count(*) FROM pg_dualwrite_gaps GROUP BY kind ORDER BY kind"
        )
        .await,
        vec!["check_violation|1", "fk_missing|1", "unique_violation|1"]
    );
    assert_eq!(
        rows(
            &env.client,
            "SELECT count(*) FROM users WHERE email LIKE 'ok%'"
        )
        .await,
        vec!["3"]
    );
    assert_eq!(
        rows(&env.client, "SELECT count(*), sum(amount) FROM payments").await,
        vec!["3|21.75"]
    );
    assert_eq!(
        rows(&env.client, "SELECT count(*) FROM passkeys").await,
        vec!["3"]
    );
}

#[tokio::test]
async fn old_tombstones_are_collected_unless_a_gap_still_needs_them() {
    use mongo2pg::event::ClusterTime;
    let mut env = env("tombstone_gc").await;
    let items: Vec<_> = (1..=3u32)
        .map(|n| {
            ops_item(
                "users",
                Operation::Delete,
                n,
                10 * n,
                vec![delete("users", "users", n, 10 * n)],
            )
        })
        .collect();
    env.sink
        .apply_batch(&mut env.client, "users", 0, items, None)
        .await
        .unwrap();
    // Document 1 still has an open gap: its tombstone stays.
    env.client
        .execute(
            "INSERT INTO pg_dualwrite_gaps (collection, document_key, kind, reason, cluster_time)
             VALUES ('users', $1, 'fk_missing', 'waiting', $2)",
            &[
                &format!(r#"{{"$oid":"{}"}}"#, oid(1).to_hex()),
                &ClusterTime::new(5, 1).to_sql(),
            ],
        )
        .await
        .unwrap();
    let removed = mongo2pg::sink::tombstones::collect_garbage(
        &env.client,
        "mongo2pg.tombstones",
        "public.pg_dualwrite_gaps",
        ClusterTime::new(25, 1),
        std::time::Duration::ZERO,
    )
    .await
    .unwrap();
    // Document 3 was deleted after every stream's position: kept too.
    assert_eq!(removed, 1);
    assert_eq!(
        rows(
            &env.client,
            "SELECT legacy_object_id FROM mongo2pg.tombstones ORDER BY version"
        )
        .await,
        vec![oid(1).to_hex(), oid(3).to_hex()]
    );
}
