//! Problems that are not about one event stop the batch instead of turning every event into a
//! gap: a mapping that names an unknown column, or a schema changed under the running sink.

use crate::support::sink_fixtures::*;
use mongo2pg::event::Operation;
use mongo2pg::mapping::RowOp;
use mongo2pg::sink::SinkError;

async fn count(client: &tokio_postgres::Client, table: &str) -> Vec<String> {
    rows(client, &format!("SELECT count(*) FROM {table}")).await
}

#[tokio::test]
async fn a_row_operation_naming_an_unknown_column_fails_the_batch_as_fatal() {
    let mut env = env("unknown_column").await;
    let mut op = user(1, "a@x", "1", 10, &[]);
    if let RowOp::Upsert { columns, .. } = &mut op {
        columns.push(cv("nickname", text("x")));
    }
    let items = vec![
        ops_item(
            "users",
            Operation::Insert,
            2,
            10,
            vec![user(2, "b@x", "1", 10, &[])],
        ),
        ops_item("users", Operation::Insert, 1, 10, vec![op]),
    ];
    let err = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(10)))
        .await
        .unwrap_err();
    match &err {
        SinkError::UnknownColumn { table, column } => {
            assert_eq!((table.as_str(), column.as_str()), ("users", "nickname"));
        }
        other => panic!("expected UnknownColumn, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(count(&env.client, "users").await, vec!["0"]);
    assert_eq!(count(&env.client, "pg_dualwrite_gaps").await, vec!["0"]);
    assert_eq!(
        env.sink
            .load_checkpoint(&env.client, "users")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_column_dropped_under_the_running_sink_is_fatal_not_a_gap_per_event() {
    let mut env = env("schema_drift").await;
    env.client
        .batch_execute("ALTER TABLE users DROP COLUMN balance")
        .await
        .unwrap();
    let items = (1..=3)
        .map(|n| {
            ops_item(
                "users",
                Operation::Insert,
                n,
                10,
                vec![user(n, &format!("{n}@x"), "1", 10, &[])],
            )
        })
        .collect();
    let err = env
        .sink
        .apply_batch(&mut env.client, "users", 0, items, Some(position(10)))
        .await
        .unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert_eq!(err.sqlstate(), Some("42703"));
    assert!(
        err.to_string()
            .contains("column \"balance\" of relation \"users\" does not exist"),
        "{err}"
    );
    assert_eq!(count(&env.client, "pg_dualwrite_gaps").await, vec!["0"]);
    assert_eq!(count(&env.client, "id_map").await, vec!["0"]);
}
