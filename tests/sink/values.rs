//! Every SQL value reaches its column exactly through the text-array path: big decimals, array
//! literals with quotes and commas, JSON, timestamps, enums, UUIDs, booleans and integers.

use crate::support::sink_fixtures::*;
use mongo2pg::event::{ClusterTime, Operation};
use mongo2pg::mapping::{RowOp, SqlValue};
use mongo2pg::sink::{catalogue, ControlNames, Sink};

#[tokio::test]
async fn every_value_kind_round_trips_exactly() {
    let mut env = env("values").await;
    env.client
        .batch_execute(
            "CREATE TYPE shop_status AS ENUM ('open', 'closed');
             CREATE TABLE everything (
               id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE,
               big numeric(38,18), plain numeric, tags text[], meta jsonb, at timestamptz,
               status shop_status, ext uuid, flag boolean, n bigint, small smallint, label text,
               version bigint)",
        )
        .await
        .unwrap();
    let cat = catalogue::load(&env.client, &["everything".to_string()])
        .await
        .unwrap();
    let mut sink = Sink::new(cat, ControlNames::default());
    let at = chrono::DateTime::parse_from_rfc3339("1999-12-31T23:59:59.999Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let ext = uuid::Uuid::parse_str("0190f0f0-0000-7000-8000-00000000abcd").unwrap();
    let op = RowOp::Upsert {
        table: "everything".into(),
        id_column: "id".into(),
        legacy_column: "legacy_object_id".into(),
        key: key("everything", 1),
        columns: vec![
            cv("big", num("-99999999999999999999.999999999999999999")),
            cv("plain", num("0.000000000000000000000000000001")),
            cv(
                "tags",
                SqlValue::TextArray(vec![
                    "a,b".into(),
                    "say \"hi\"".into(),
                    "back\\slash".into(),
                    "NULL".into(),
                    "{x}".into(),
                    "".into(),
                    "ünïcødé ✓".into(),
                ]),
            ),
            cv(
                "meta",
                SqlValue::Jsonb(serde_json::json!({"k": [1, 2.5, "x\"y"], "n": null})),
            ),
            cv("at", SqlValue::Timestamptz(at.into())),
            cv("status", text("closed")),
            cv("ext", SqlValue::Uuid(ext)),
            cv("flag", SqlValue::Bool(true)),
            cv("n", SqlValue::Int(i64::MIN)),
            cv("small", SqlValue::Int(-32768)),
            cv("label", SqlValue::Null),
        ],
        children: vec![],
        version: Some(("version".into(), ClusterTime::new(7, 3))),
        insert_only: false,
    };
    let out = sink
        .apply_batch(
            &mut env.client,
            "everything",
            0,
            vec![ops_item("everything", Operation::Insert, 1, 7, vec![op])],
            None,
        )
        .await
        .unwrap();
    assert!(out.gaps.is_empty(), "{:?}", out.gaps);
    let row = env
        .client
        .query_one(
            "SELECT big::text, plain::text, tags, meta::text, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
                    status::text, ext, flag, n, small, label, version
             FROM everything",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "-99999999999999999999.999999999999999999"
    );
    assert_eq!(row.get::<_, String>(1), "0.000000000000000000000000000001");
    assert_eq!(
        row.get::<_, Vec<String>>(2),
        vec![
            "a,b",
            "say \"hi\"",
            "back\\slash",
            "NULL",
            "{x}",
            "",
            "ünïcødé ✓"
        ]
    );
    assert_eq!(
        row.get::<_, String>(3),
        r#"{"k": [1, 2.5, "x\"y"], "n": null}"#
    );
    assert_eq!(row.get::<_, String>(4), "1999-12-31 23:59:59.999");
    assert_eq!(row.get::<_, String>(5), "closed");
    assert_eq!(row.get::<_, uuid::Uuid>(6), ext);
    assert!(row.get::<_, bool>(7));
    assert_eq!(row.get::<_, i64>(8), i64::MIN);
    assert_eq!(row.get::<_, i16>(9), -32768);
    assert_eq!(row.get::<_, Option<String>>(10), None);
    assert_eq!(row.get::<_, i64>(11), ClusterTime::new(7, 3).to_sql());
}

#[tokio::test]
async fn dates_anywhere_in_postgres_range_land_exactly_through_the_sink() {
    use mongo2pg::mapping::timestamp::{
        PgTimestamp, PG_TIMESTAMP_MAX_MILLIS, PG_TIMESTAMP_MIN_MILLIS,
    };
    let mut env = env("dates").await;
    env.client
        .batch_execute(
            "CREATE TABLE moments (
               id uuid PRIMARY KEY, legacy_object_id text NOT NULL UNIQUE, at timestamptz)",
        )
        .await
        .unwrap();
    let cat = catalogue::load(&env.client, &["moments".to_string()])
        .await
        .unwrap();
    let mut sink = Sink::new(cat, ControlNames::default());
    let year_10000 = 253_402_300_800_000;
    let beyond_chrono = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis() + 1;
    let instants = [
        PG_TIMESTAMP_MIN_MILLIS,
        -62_167_219_200_001, // the last millisecond of 2 BC
        -1,
        0,
        year_10000,
        year_10000 + 123,
        beyond_chrono,
        PG_TIMESTAMP_MAX_MILLIS,
    ];
    let items = instants
        .iter()
        .enumerate()
        .map(|(i, &millis)| {
            let n = i as u32 + 1;
            let op = RowOp::Upsert {
                table: "moments".into(),
                id_column: "id".into(),
                legacy_column: "legacy_object_id".into(),
                key: key("moments", n),
                columns: vec![cv(
                    "at",
                    SqlValue::Timestamptz(PgTimestamp::from_millis(millis).expect("in range")),
                )],
                children: vec![],
                version: None,
                insert_only: false,
            };
            ops_item("moments", Operation::Insert, n, n, vec![op])
        })
        .collect();
    let out = sink
        .apply_batch(&mut env.client, "moments", 0, items, None)
        .await
        .unwrap();
    assert!(out.gaps.is_empty(), "{:?}", out.gaps);
    let rows = env
        .client
        .query(
            "SELECT trunc(extract(epoch from at) * 1000)::text FROM moments ORDER BY at",
            &[],
        )
        .await
        .unwrap();
    let stored: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    let expected: Vec<String> = instants.iter().map(|m| m.to_string()).collect();
    assert_eq!(stored, expected);
}
