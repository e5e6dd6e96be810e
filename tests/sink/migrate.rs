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
            "V6__verify".to_string()
        ]
    );
    for table in [
        "public.id_map",
        "public.pg_dualwrite_gaps",
        "mongo2pg.checkpoints",
        "mongo2pg.token_resets",
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
    assert_eq!(history, 5);
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
async fn an_existing_application_id_map_is_kept_unaltered() {
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
