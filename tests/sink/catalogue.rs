//! The catalogue loader reports every column's exact type, kind, nullability, default, numeric
//! precision/scale, enum labels and arrays, and names a missing table.

use crate::support::TestDb;
use mongo2pg::sink::catalogue::{self, ColumnInfo};
use mongo2pg::sink::SinkError;

const SCHEMA: &str = r#"
CREATE TYPE payment_status AS ENUM ('pending', 'completed', 'failed');
CREATE DOMAIN positive_money AS numeric(20,2) NOT NULL CHECK (VALUE > 0);
CREATE SCHEMA shop;
CREATE TABLE shop.payments (
    id uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    amount numeric(38,18) NOT NULL,
    fee numeric,
    fee_small positive_money,
    status payment_status NOT NULL DEFAULT 'pending',
    past_statuses payment_status[],
    tags text[] NOT NULL DEFAULT '{}',
    attempts integer,
    tiny smallint,
    big bigint GENERATED ALWAYS AS IDENTITY,
    paid boolean,
    paid_at timestamptz,
    metadata jsonb,
    note varchar(40),
    version bigint
);
CREATE TABLE users (id uuid PRIMARY KEY, email text);
"#;

fn col(
    name: &str,
    sql_type: &str,
    kind: &str,
    nullable: bool,
    has_default: bool,
    nps: Option<(u32, u32)>,
    labels: &[&str],
) -> ColumnInfo {
    ColumnInfo {
        name: name.to_string(),
        sql_type: sql_type.to_string(),
        kind: kind.to_string(),
        nullable,
        has_default,
        numeric_precision_scale: nps,
        enum_labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

#[tokio::test]
async fn catalogue_describes_every_column_exactly() {
    let db = TestDb::create("catalogue").await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.unwrap();

    let tables = vec!["shop.payments".to_string(), "users".to_string()];
    let cat = catalogue::load(&client, &tables).await.unwrap();

    assert_eq!(cat.tables.len(), 2);
    let users = &cat.tables["users"];
    assert_eq!(
        (users.schema.as_str(), users.name.as_str()),
        ("public", "users")
    );
    assert_eq!(
        users.columns["id"],
        col("id", "uuid", "uuid", false, false, None, &[])
    );

    let p = &cat.tables["shop.payments"];
    assert_eq!((p.schema.as_str(), p.name.as_str()), ("shop", "payments"));
    let statuses = ["pending", "completed", "failed"];
    let expected = vec![
        col(
            "amount",
            "numeric(38,18)",
            "numeric",
            false,
            false,
            Some((38, 18)),
            &[],
        ),
        col("attempts", "integer", "int4", true, false, None, &[]),
        col("big", "bigint", "int8", false, true, None, &[]),
        col("fee", "numeric", "numeric", true, false, None, &[]),
        col(
            "fee_small",
            "positive_money",
            "numeric",
            false,
            false,
            Some((20, 2)),
            &[],
        ),
        col("id", "uuid", "uuid", false, false, None, &[]),
        col("legacy_object_id", "text", "text", false, false, None, &[]),
        col("metadata", "jsonb", "jsonb", true, false, None, &[]),
        col(
            "note",
            "character varying(40)",
            "varchar",
            true,
            false,
            None,
            &[],
        ),
        col("paid", "boolean", "bool", true, false, None, &[]),
        col(
            "paid_at",
            "timestamp with time zone",
            "timestamptz",
            true,
            false,
            None,
            &[],
        ),
        col(
            "past_statuses",
            "payment_status[]",
            "enum[]",
            true,
            false,
            None,
            &statuses,
        ),
        col(
            "status",
            "payment_status",
            "enum",
            false,
            true,
            None,
            &statuses,
        ),
        col("tags", "text[]", "text[]", false, true, None, &[]),
        col("tiny", "smallint", "int2", true, false, None, &[]),
        col("version", "bigint", "int8", true, false, None, &[]),
    ];
    let actual: Vec<ColumnInfo> = p.columns.values().cloned().collect();
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn catalogue_names_a_missing_table() {
    let db = TestDb::create("catalogue_missing").await;
    let client = db.client().await;
    client.batch_execute(SCHEMA).await.unwrap();

    let err = catalogue::load(&client, &["users".to_string(), "payments".to_string()])
        .await
        .unwrap_err();
    match err {
        SinkError::TableNotFound { table } => assert_eq!(table, "payments"),
        other => panic!("expected TableNotFound, got {other:?}"),
    }
}
