//! Control-table migrations: applied once, a no-op the second time, names configurable, history
//! kept in the private schema, and an application-created id_map left as it is.

use crate::support::TestDb;
use mongo2pg::sink::{migrate, ControlNames, SinkError};

async fn regclass_exists(client: &tokio_postgres::Client, name: &str) -> bool {
    client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn migrating_twice_creates_the_tables_once_and_then_does_nothing() {
    let db = TestDb::create("migrate_twice").await;
    let mut client = db.client().await;

    let names = ControlNames::default();
    let first = migrate(&mut client, &names).await.unwrap();
    assert_eq!(
        first,
        vec![
            "V1__id_map".to_string(),
            "V2__checkpoints".to_string(),
            "V3__gaps".to_string(),
            "V4__token_resets".to_string(),
            "V5__tombstones_identity_time_encoding".to_string(),
            "V6__verify".to_string(),
            "V7__stream_members".to_string(),
        ]
    );
    for table in [
        "public.id_map",
        "public.pg_dualwrite_gaps",
        "mongo2pg.checkpoints",
        "mongo2pg.token_resets",
        "mongo2pg.tombstones",
        "mongo2pg.version_encoding",
        "mongo2pg.verify_rounds",
        "mongo2pg.verify_mismatches",
        "mongo2pg.refinery_schema_history",
    ] {
        assert!(regclass_exists(&client, table).await, "{table} missing");
    }
    let second = migrate(&mut client, &names).await.unwrap();
    assert!(second.is_empty(), "second run applied {second:?}");
    let history: i64 = client
        .query_one("SELECT count(*) FROM mongo2pg.refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, 7);
}

#[tokio::test]
async fn configured_names_place_every_table_where_asked() {
    let db = TestDb::create("migrate_names").await;
    let mut client = db.client().await;
    let names = ControlNames {
        schema: "repl".to_string(),
        id_map: "bridge.ids".to_string(),
        gaps: "repl.failures".to_string(),
        checkpoints: "repl.positions".to_string(),
        audit: "repl.resets".to_string(),
    };
    migrate(&mut client, &names).await.unwrap();
    for table in [
        "bridge.ids",
        "repl.failures",
        "repl.positions",
        "repl.resets",
        "repl.tombstones",
        "repl.refinery_schema_history",
    ] {
        assert!(regclass_exists(&client, table).await, "{table} missing");
    }
    assert!(!regclass_exists(&client, "public.id_map").await);
    assert!(!regclass_exists(&client, "mongo2pg.checkpoints").await);
    // The gaps status CHECK is in force under the configured name.
    let err = client
        .execute(
            "INSERT INTO repl.failures (collection, kind, reason, status) VALUES ('c', 'k', 'r', 'bogus')",
            &[],
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23514");
}

#[tokio::test]
async fn an_existing_application_id_map_keeps_its_rows_and_constraints() {
    let db = TestDb::create("migrate_existing").await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "CREATE TABLE id_map (
               collection text NOT NULL,
               legacy_object_id text NOT NULL,
               new_id uuid NOT NULL DEFAULT gen_random_uuid(),
               created_at timestamptz DEFAULT now());
             CREATE UNIQUE INDEX id_map_collection_legacy_uq ON id_map (collection, legacy_object_id);
             INSERT INTO id_map (collection, legacy_object_id, new_id)
               VALUES ('users', '65a000000000000000000001', '0190aaaa-0000-7000-8000-000000000001');",
        )
        .await
        .unwrap();
    migrate(&mut client, &ControlNames::default())
        .await
        .unwrap();
    let constraints: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.id_map'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(constraints, 0, "migration altered the existing id_map");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM id_map", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 1);
    // It only gains the nullable column that records which `_id` type owns an entry.
    let owner: Option<String> = client
        .query_one("SELECT legacy_type FROM id_map", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(owner, None);
}

#[tokio::test]
async fn an_incompatible_id_map_is_reported() {
    let db = TestDb::create("migrate_incompatible").await;
    let mut client = db.client().await;
    client
        .batch_execute("CREATE TABLE id_map (collection text, legacy_object_id text, new_id text)")
        .await
        .unwrap();
    let err = migrate(&mut client, &ControlNames::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, SinkError::UnsupportedColumn { ref column, .. } if column == "new_id"),
        "{err:?}"
    );
}

#[tokio::test]
async fn names_that_are_not_plain_identifiers_are_refused() {
    let db = TestDb::create("migrate_badname").await;
    let mut client = db.client().await;
    let names = ControlNames {
        gaps: "public.gaps; DROP TABLE x".to_string(),
        ..ControlNames::default()
    };
    let err = migrate(&mut client, &names).await.unwrap_err();
    assert!(matches!(err, SinkError::InvalidName { .. }), "{err:?}");
}

#[tokio::test]
async fn upgrading_keeps_every_stored_cluster_time_in_order_under_the_new_encoding() {
    use mongo2pg::event::ClusterTime;
    let db = TestDb::create("migrate_encoding").await;
    let mut client = db.client().await;
    let names = ControlNames::default();
    // The control tables as the previous release left them: V1..V4, packed times stored as is.
    client
        .batch_execute("CREATE SCHEMA IF NOT EXISTS mongo2pg")
        .await
        .unwrap();
    let previous = mongo2pg::sink::migrate::migrations(&names).unwrap();
    refinery::Runner::new(&previous[..4])
        .set_migration_table_name("mongo2pg.refinery_schema_history")
        .run_async(&mut client)
        .await
        .unwrap();
    let early = ClusterTime::new(1_700_000_000, 7);
    let later = ClusterTime::new(1_700_000_000, 8);
    let old = |t: ClusterTime| t.packed() as i64;
    client
        .execute(
            "INSERT INTO mongo2pg.checkpoints (stream, cluster_time, snapshot_start_time) VALUES ('users', $1, $2)",
            &[&old(later), &old(early)],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO public.pg_dualwrite_gaps (collection, kind, reason, cluster_time) VALUES ('users', 'fk_missing', 'r', $1)",
            &[&old(early)],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO mongo2pg.token_resets (stream, actor, reason, mode, from_time, to_time) VALUES ('users', 'a', 'r', 'time', $1, $2)",
            &[&old(later), &old(early)],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "CREATE TABLE things (id uuid PRIMARY KEY, legacy_object_id text UNIQUE, v bigint);
             INSERT INTO things VALUES (gen_random_uuid(), 'a', 7301036477326557191), (gen_random_uuid(), 'b', NULL)",
        )
        .await
        .unwrap();

    let applied = migrate(&mut client, &names).await.unwrap();
    assert_eq!(
        applied,
        vec![
            "V5__tombstones_identity_time_encoding".to_string(),
            "V6__verify".to_string(),
            "V7__stream_members".to_string()
        ]
    );
    let tables = vec![("things".to_string(), "v".to_string())];
    let converted = mongo2pg::sink::migrate::upgrade_version_columns(&mut client, &names, &tables)
        .await
        .unwrap();
    assert_eq!(converted, vec!["things".to_string()]);
    // A second start converts nothing again.
    let again = mongo2pg::sink::migrate::upgrade_version_columns(&mut client, &names, &tables)
        .await
        .unwrap();
    assert!(again.is_empty());

    let row = client
        .query_one(
            "SELECT cluster_time, snapshot_start_time FROM mongo2pg.checkpoints",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(ClusterTime::from_sql(row.get(0)), later);
    assert_eq!(ClusterTime::from_sql(row.get(1)), early);
    let gap: i64 = client
        .query_one("SELECT cluster_time FROM public.pg_dualwrite_gaps", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(ClusterTime::from_sql(gap), early);
    let audit = client
        .query_one("SELECT from_time, to_time FROM mongo2pg.token_resets", &[])
        .await
        .unwrap();
    assert_eq!(ClusterTime::from_sql(audit.get(0)), later);
    assert_eq!(ClusterTime::from_sql(audit.get(1)), early);
    let versions = client
        .query("SELECT v FROM things ORDER BY legacy_object_id", &[])
        .await
        .unwrap();
    assert_eq!(
        versions[0]
            .get::<_, Option<i64>>(0)
            .map(ClusterTime::from_sql),
        Some(ClusterTime(7_301_036_477_326_557_191))
    );
    assert_eq!(versions[1].get::<_, Option<i64>>(0), None);
}

#[test]
fn the_stored_encoding_keeps_order_across_2038_and_the_whole_range() {
    use mongo2pg::event::ClusterTime;
    let times = [
        ClusterTime(0),
        ClusterTime::new(1, 0),
        ClusterTime::new(1_700_000_000, 1),
        ClusterTime::new(i32::MAX as u32, u32::MAX),
        ClusterTime::new(1 << 31, 0), // 2038-01-19T03:14:08Z
        ClusterTime::new(4_102_444_800, 3),
        ClusterTime(u64::MAX),
    ];
    for pair in times.windows(2) {
        assert!(pair[0].to_sql() < pair[1].to_sql(), "{pair:?}");
    }
    for t in times {
        assert_eq!(ClusterTime::from_sql(t.to_sql()), t);
    }
}
