//! Checkpoints (forward only, epoch-guarded), gaps (raw extended JSON, re-recording, superseding,
//! stream-level gaps) and the transient/fatal split, against real Postgres.

use crate::support::sink_fixtures::*;
use bson::{doc, Bson};
use mongo2pg::event::{ClusterTime, Operation};
use mongo2pg::mapping::{GapKind, Mapped, MappingError, SqlValue};
use mongo2pg::sink::{BatchItem, GapRecord, SinkError};

fn failed(n: u32, t: u32, kind: GapKind, reason: &str) -> BatchItem {
    BatchItem {
        event: event(
            "users",
            Operation::Update,
            n,
            t,
            Some(doc! { "_id": oid(n), "email": "e" }),
        ),
        mapped: Err(MappingError {
            kind,
            reason: reason.to_string(),
        }),
    }
}

#[tokio::test]
async fn mapping_errors_become_gaps_with_the_raw_event_even_with_a_nul_character() {
    let mut env = env("mapping_errors").await;
    let mut nul_event = event(
        "users",
        Operation::Insert,
        1,
        10,
        Some(
            doc! { "_id": oid(1), "name": "a\u{0}b", "amount": Bson::Decimal128("1.50".parse().unwrap()) },
        ),
    );
    nul_event.raw.insert("extra", "x\u{0}y");
    let items = vec![
        BatchItem {
            event: nul_event.clone(),
            mapped: Err(MappingError {
                kind: GapKind::NulInText,
                reason: "name: text \"a\u{0}b\" contains a NUL character".into(),
            }),
        },
        failed(
            2,
            10,
            GapKind::InvalidNumber,
            "amount: Decimal128 NaN is not money",
        ),
        ops_item(
            "users",
            Operation::Insert,
            3,
            10,
            vec![user(3, "ok@x", "1", 10, &[])],
        ),
    ];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(10)))
        .await
        .unwrap();
    assert_eq!(out.gapped.get("insert"), Some(&1));
    assert_eq!(out.gapped.get("update"), Some(&1));
    assert_eq!(out.applied.get("insert"), Some(&1));
    assert!(!out.per_event_fallback);

    let row = env
        .client
        .query_one(
            "SELECT kind, reason, raw_event, document_key, operation, cluster_time, resume_token, status, attempts
             FROM pg_dualwrite_gaps WHERE kind = 'nul_in_text'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(1),
        r#"name: text "a\u0000b" contains a NUL character"#
    );
    let raw: String = row.get(2);
    let back = Bson::try_from(serde_json::from_str::<serde_json::Value>(&raw).unwrap()).unwrap();
    assert_eq!(back, Bson::Document(nul_event.raw.clone()));
    assert!(raw.contains(r#""name":"a\u0000b""#), "{raw}");
    assert!(
        raw.contains(r#""amount":{"$numberDecimal":"1.50"}"#),
        "{raw}"
    );
    assert_eq!(
        row.get::<_, String>(3),
        format!(r#"{{"$oid":"{}"}}"#, oid(1).to_hex())
    );
    assert_eq!(row.get::<_, String>(4), "insert");
    assert_eq!(row.get::<_, i64>(5), ClusterTime::new(10, 1).to_sql());
    assert_eq!(row.get::<_, String>(6), r#"{"_data":"820000000A00000001"}"#);
    assert_eq!(row.get::<_, String>(7), "open");
    assert_eq!(row.get::<_, i32>(8), 1);
}

#[tokio::test]
async fn text_with_a_nul_character_rejected_by_postgres_becomes_a_nul_in_text_gap() {
    let mut env = env("nul_text").await;
    let items = vec![
        ops_item(
            "users",
            Operation::Insert,
            1,
            10,
            vec![user(1, "bad\u{0}@x", "1", 10, &[])],
        ),
        ops_item(
            "users",
            Operation::Insert,
            2,
            10,
            vec![user(2, "good@x", "1", 10, &[])],
        ),
    ];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(10)))
        .await
        .unwrap();
    assert_eq!(out.gaps.len(), 1);
    assert_eq!(out.gaps[0].kind, GapKind::NulInText);
    assert_eq!(
        rows(&env.client, "SELECT email FROM users").await,
        vec!["good@x"]
    );
}

#[tokio::test]
async fn recording_the_same_gap_again_bumps_attempts_instead_of_adding_a_row() {
    let mut env = env("gap_attempts").await;
    for _ in 0..3 {
        env.sink
            .apply_batch(
                &mut env.client,
                "users",
                0,
                vec![failed(
                    1,
                    10,
                    GapKind::WrongType,
                    "email: expected a string, got Int32",
                )],
                Some(position(10)),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        rows(
            &env.client,
            "SELECT kind, attempts, status, last_seen > first_seen FROM pg_dualwrite_gaps"
        )
        .await,
        vec!["wrong_type|3|open|true"]
    );
}

#[tokio::test]
async fn an_applied_newer_event_supersedes_older_open_gaps_of_that_document_only() {
    let mut env = env("supersede").await;
    let items = vec![
        failed(1, 10, GapKind::WrongType, "older gap of doc 1"),
        failed(1, 30, GapKind::WrongType, "newer gap of doc 1"),
        failed(2, 10, GapKind::WrongType, "gap of doc 2"),
    ];
    env.sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(30)))
        .await
        .unwrap();
    let items = vec![ops_item(
        "users",
        Operation::Update,
        1,
        20,
        vec![user(1, "a@x", "1", 20, &[])],
    )];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, None)
        .await
        .unwrap();
    assert_eq!(out.superseded_gaps, 1);
    assert_eq!(
        rows(
            &env.client,
            "SELECT reason, status, resolved_at IS NOT NULL FROM pg_dualwrite_gaps ORDER BY id"
        )
        .await,
        vec![
            "older gap of doc 1|superseded|true",
            "newer gap of doc 1|open|false",
            "gap of doc 2|open|false"
        ]
    );
}

#[tokio::test]
async fn a_stream_level_gap_keeps_its_window_and_is_recorded_once() {
    let env = env("stream_gap").await;
    let start = chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let end = chrono::DateTime::from_timestamp(1_700_003_600, 0).unwrap();
    let gap = GapRecord {
        cluster_time: Some(ClusterTime::new(1_700_000_000, 0)),
        window: Some((start, end)),
        ..GapRecord::stream_level("users", GapKind::WindowLost, "change stream history lost")
    };
    env.sink.record_stream_gap(&env.client, &gap).await.unwrap();
    env.sink.record_stream_gap(&env.client, &gap).await.unwrap();
    assert_eq!(
        rows(
            &env.client,
            "SELECT kind, document_key, window_start AT TIME ZONE 'UTC', window_end AT TIME ZONE 'UTC', attempts
             FROM pg_dualwrite_gaps"
        )
        .await,
        vec!["window_lost|∅|2023-11-14T22:13:20|2023-11-14T23:13:20|2"]
    );
}

#[tokio::test]
async fn the_checkpoint_only_moves_forward() {
    let mut env = env("forward_only").await;
    assert_eq!(
        env.sink
            .load_checkpoint(&env.client, "users")
            .await
            .unwrap(),
        None
    );
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, vec![], Some(position(20)))
        .await
        .unwrap();
    assert!(
        out.checkpoint_moved,
        "an idle heartbeat moves the checkpoint"
    );
    // An older position (a replay) writes its rows but leaves the checkpoint alone.
    let items = vec![ops_item(
        "users",
        Operation::Insert,
        1,
        10,
        vec![user(1, "a@x", "1", 10, &[])],
    )];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(10)))
        .await
        .unwrap();
    assert!(!out.checkpoint_moved);
    assert_eq!(
        rows(&env.client, "SELECT email FROM users").await,
        vec!["a@x"]
    );
    let cp = env
        .sink
        .load_checkpoint(&env.client, "users")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.position().unwrap(), Some(position(20)));
    assert_eq!((cp.epoch, cp.holder.as_deref()), (0, Some("test")));
    // Same cluster time, later token: moves; same position again: does not.
    let mut later = position(20);
    later.token = token(20, 2);
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, vec![], Some(later.clone()))
        .await
        .unwrap();
    assert!(out.checkpoint_moved);
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 0, vec![], Some(later.clone()))
        .await
        .unwrap();
    assert!(!out.checkpoint_moved);
    let cp = env
        .sink
        .load_checkpoint(&env.client, "users")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.position().unwrap(), Some(later));
}

#[tokio::test]
async fn an_operator_reset_aborts_the_in_flight_batch_and_is_never_overwritten() {
    let mut env = env("epoch").await;
    env.sink
        .apply_batch(&mut env.client, "users", 0, vec![], Some(position(50)))
        .await
        .unwrap();
    // An operator rewinds the stream to t=5 and bumps the epoch.
    env.client
        .execute(
            "UPDATE mongo2pg.checkpoints SET epoch = epoch + 1, cluster_time = $1,
               resume_token = '{\"_data\":\"8200000005\"}' WHERE stream = 'users'",
            &[&ClusterTime::new(5, 1).to_sql()],
        )
        .await
        .unwrap();
    let items = vec![
        ops_item(
            "users",
            Operation::Insert,
            1,
            60,
            vec![user(1, "a@x", "1", 60, &["k"])],
        ),
        failed(2, 60, GapKind::WrongType, "x"),
    ];
    let err = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(60)))
        .await
        .unwrap_err();
    match &err {
        SinkError::CheckpointMoved {
            stream,
            expected,
            found,
        } => {
            assert_eq!((stream.as_str(), *expected, *found), ("users", 0, 1));
        }
        other => panic!("expected CheckpointMoved, got {other:?}"),
    }
    assert!(
        err.is_transient(),
        "the stream restarts from the new position"
    );
    for table in ["users", "passkeys", "pg_dualwrite_gaps", "id_map"] {
        assert_eq!(
            rows(&env.client, &format!("SELECT count(*) FROM {table}")).await,
            vec!["0"],
            "{table} has rows from the aborted batch"
        );
    }
    let cp = env
        .sink
        .load_checkpoint(&env.client, "users")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.epoch, 1);
    assert_eq!(
        cp.position().unwrap().unwrap().cluster_time,
        ClusterTime::new(5, 1)
    );
    // Restarted with the new epoch, the stream writes again.
    let items = vec![ops_item(
        "users",
        Operation::Insert,
        1,
        60,
        vec![user(1, "a@x", "1", 60, &["k"])],
    )];
    let out = env
        .sink
        .apply_batch(&mut env.client, "users", 1, items, Some(position(60)))
        .await
        .unwrap();
    assert!(out.checkpoint_moved);
}

#[tokio::test]
async fn a_lost_connection_is_a_transient_error() {
    let mut env = env("transient").await;
    let killer = env.db.client().await;
    let pid: i32 = env
        .client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    killer
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let items = vec![ops_item(
        "users",
        Operation::Insert,
        1,
        10,
        vec![user(1, "a@x", "1", 10, &[])],
    )];
    let err = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(10)))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // A schema problem is not.
    let missing = SinkError::UnknownColumn {
        table: "users".into(),
        column: "nope".into(),
    };
    assert!(!missing.is_transient());
}

#[tokio::test]
async fn a_soft_delete_value_that_is_a_reference_is_resolved() {
    // Soft deletes may set a reference column (e.g. `deleted_by`): it is resolved like any Ref.
    let mut env = env("soft_ref").await;
    env.client
        .batch_execute("ALTER TABLE users ADD COLUMN deleted_by uuid")
        .await
        .unwrap();
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let cat = mongo2pg::sink::catalogue::load(&env.client, &tables)
        .await
        .unwrap();
    let mut sink = mongo2pg::sink::Sink::new(cat, Default::default());
    let items = vec![ops_item(
        "users",
        Operation::Insert,
        1,
        10,
        vec![user(1, "a@x", "1", 10, &[])],
    )];
    sink.apply_batch(&mut env.client, "users", 0, items, None)
        .await
        .unwrap();
    let soft = mongo2pg::mapping::RowOp::SoftDelete {
        table: "users".into(),
        legacy_column: "legacy_object_id".into(),
        key: key("users", 1),
        column: "deleted_by".into(),
        value: SqlValue::Ref(key("users", 1)),
        version: None,
    };
    let items = vec![BatchItem {
        event: event("users", Operation::Delete, 1, 11, None),
        mapped: Ok(Mapped::Ops(vec![soft])),
    }];
    sink.apply_batch(&mut env.client, "users", 0, items, None)
        .await
        .unwrap();
    assert_eq!(
        rows(&env.client, "SELECT deleted_by = id FROM users").await,
        vec!["true"]
    );
}
