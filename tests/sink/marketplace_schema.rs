//! The reference marketplace schema applies to a fresh Postgres database, carries its CHECK
//! constraints, partial unique indexes and ledger immutability trigger, and agrees with the shipped
//! mapping: the mapping compiles against the live catalogue and mapped rows (mixed ids of both
//! kinds, children, junctions) insert cleanly while bad mixed rows are rejected by the CHECKs.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bson::{doc, oid::ObjectId, Bson, Decimal128, Document};
use mongo2pg::config::{CompiledMapping, Config};
use mongo2pg::event::{ChangeEvent, ClusterTime, Operation};
use mongo2pg::mapping::convert::{convert, timestamptz_text, PG_TIMESTAMP_MIN_MILLIS};
use mongo2pg::mapping::rules::Conversion;
use mongo2pg::mapping::{map_event, ColumnValue, LegacyRef, Mapped, RowOp, SqlValue};
use mongo2pg::sink::catalogue::{Catalogue, ColumnInfo, TableInfo};
use tokio_postgres::Client;

use crate::support::TestDb;

const SCHEMA: &str = include_str!("../../deploy/marketplace/schema.sql");

/// A fresh database with the schema applied, dropped when the guard drops.
async fn fresh_db(tag: &str) -> (Client, TestDb) {
    let db = TestDb::create(tag).await;
    let client = db.client().await;
    client
        .batch_execute(SCHEMA)
        .await
        .expect("schema.sql applies to an empty database");
    (client, db)
}

/// Reads the public tables into a `Catalogue` the way the sink's loader describes it.
async fn read_catalogue(client: &Client) -> Catalogue {
    let rows = client
        .query(
            "SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                    CASE WHEN t.typtype = 'e' THEN 'enum'
                         WHEN t.typcategory = 'A' THEN et.typname || '[]'
                         ELSE t.typname END,
                    NOT a.attnotnull, a.atthasdef, a.atttypmod, t.oid
               FROM pg_attribute a
               JOIN pg_class c ON c.oid = a.attrelid
               JOIN pg_namespace n ON n.oid = c.relnamespace
               JOIN pg_type t ON t.oid = a.atttypid
               LEFT JOIN pg_type et ON et.oid = t.typelem
              WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped",
            &[],
        )
        .await
        .expect("catalogue query");
    let mut tables: BTreeMap<String, TableInfo> = BTreeMap::new();
    for row in rows {
        let table: String = row.get(0);
        let kind: String = row.get(3);
        let typmod: i32 = row.get(6);
        let type_oid: u32 = row.get(7);
        let enum_labels = if kind == "enum" {
            client
                .query("SELECT enumlabel::text FROM pg_enum WHERE enumtypid = $1 ORDER BY enumsortorder", &[&type_oid])
                .await
                .expect("enum labels")
                .iter()
                .map(|r| r.get(0))
                .collect()
        } else {
            Vec::new()
        };
        let numeric_precision_scale = (kind == "numeric" && typmod >= 4).then(|| {
            (
                (((typmod - 4) >> 16) & 0xffff) as u32,
                ((typmod - 4) & 0xffff) as u32,
            )
        });
        let info = ColumnInfo {
            name: row.get(1),
            sql_type: row.get(2),
            kind,
            nullable: row.get(4),
            has_default: row.get(5),
            numeric_precision_scale,
            enum_labels,
        };
        let entry = tables.entry(table.clone()).or_insert_with(|| TableInfo {
            schema: "public".into(),
            name: table,
            columns: BTreeMap::new(),
        });
        entry.columns.insert(info.name.clone(), info);
    }
    Catalogue { tables }
}

fn compiled(catalogue: &Catalogue) -> CompiledMapping {
    let config = Config::from_path(Path::new("deploy/marketplace/mapping.toml"))
        .expect("shipped mapping is valid");
    config
        .compile(catalogue)
        .unwrap_or_else(|e| panic!("shipped mapping compiles against schema.sql: {e}"))
}

fn text_of(value: &SqlValue, ids: &mut HashMap<LegacyRef, uuid::Uuid>) -> Option<String> {
    match value {
        SqlValue::Null => None,
        SqlValue::Text(s) | SqlValue::Numeric(s) => Some(s.clone()),
        SqlValue::Bool(b) => Some(b.to_string()),
        SqlValue::Int(n) => Some(n.to_string()),
        SqlValue::Timestamptz(t) => Some(timestamptz_text(t)),
        SqlValue::Uuid(u) => Some(u.to_string()),
        SqlValue::Jsonb(j) => Some(j.to_string()),
        SqlValue::TextArray(items) => Some(
            serde_json::to_string(items)
                .expect("json")
                .replacen('[', "{", 1)
                .replacen(']', "}", 1),
        ),
        SqlValue::Ref(r) => Some(
            ids.entry(r.clone())
                .or_insert_with(uuid::Uuid::new_v4)
                .to_string(),
        ),
    }
}

/// Inserts one row, sending every value as text and casting it to the column's catalogue type.
async fn insert_row(
    client: &Client,
    catalogue: &Catalogue,
    table: &str,
    columns: &[(String, Option<String>)],
) -> Result<u64, tokio_postgres::Error> {
    let info = &catalogue.tables[table];
    let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
    let placeholders: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("${}::text::{}", i + 1, info.columns[c].sql_type))
        .collect();
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        placeholders.join(", ")
    );
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = columns
        .iter()
        .map(|(_, v)| v as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    client.execute(&sql, &params).await
}

/// A minimal sink for the test: applies an upsert as plain inserts of the row and its children.
async fn apply(
    client: &Client,
    catalogue: &Catalogue,
    ids: &mut HashMap<LegacyRef, uuid::Uuid>,
    mapped: Mapped,
) -> Result<(), tokio_postgres::Error> {
    let Mapped::Ops(ops) = mapped else {
        panic!("expected row operations")
    };
    for op in ops {
        let RowOp::Upsert {
            table,
            id_column,
            legacy_column,
            key,
            columns,
            children,
            version,
            ..
        } = op
        else {
            panic!("expected an upsert")
        };
        let id = *ids.entry(key.clone()).or_insert_with(uuid::Uuid::new_v4);
        let mut row = vec![
            (id_column, Some(id.to_string())),
            (legacy_column, Some(key.legacy_id.clone())),
        ];
        if let Some((column, time)) = version {
            row.push((column, Some(time.to_sql().to_string())));
        }
        for ColumnValue { column, value } in &columns {
            row.push((column.clone(), text_of(value, ids)));
        }
        insert_row(client, catalogue, &table, &row).await?;
        for child in children {
            for child_row in child.rows {
                let mut values = vec![(child.parent_column.clone(), Some(id.to_string()))];
                for ColumnValue { column, value } in &child_row {
                    values.push((column.clone(), text_of(value, ids)));
                }
                insert_row(client, catalogue, &child.table, &values).await?;
            }
        }
    }
    Ok(())
}

fn insert_event(collection: &str, document: Document) -> ChangeEvent {
    ChangeEvent {
        operation: Operation::Insert,
        collection: collection.into(),
        document_key: document.get("_id").cloned(),
        full_document: Some(document.clone()),
        full_document_before_change: None,
        cluster_time: ClusterTime::new(1_700_000_000, 1),
        resume_token: None,
        txn: None,
        raw: document,
    }
}

fn dec(s: &str) -> Bson {
    Bson::Decimal128(s.parse::<Decimal128>().expect("decimal literal"))
}

#[tokio::test]
async fn schema_applies_to_a_fresh_database_with_its_checks_partial_indexes_and_trigger() {
    let (client, db) = fresh_db("schema").await;
    let checks: Vec<String> = client
        .query(
            "SELECT conname::text FROM pg_constraint WHERE contype = 'c' ORDER BY conname",
            &[],
        )
        .await
        .expect("constraints")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for expected in [
        "funds_ledger_payment_ref_ck",
        "funds_ledger_pr_ref_ck",
        "payments_offer_ref_ck",
        "payments_pr_ref_ck",
        "payments_seller_ref_ck",
    ] {
        assert!(
            checks.contains(&expected.to_string()),
            "missing CHECK {expected} in {checks:?}"
        );
    }
    let partial: Vec<(String, String)> = client
        .query(
            "SELECT indexname::text, indexdef FROM pg_indexes WHERE schemaname = 'public' AND indexdef LIKE '% WHERE %' ORDER BY indexname",
            &[],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let names: Vec<&str> = partial.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "addresses_one_primary_per_user_uq",
            "categories_active_name_norm_uq",
            "funds_ledger_idempotency_uq",
            "uniq_pending_rn_by_buyer_offer",
            "users_email_uq",
            "users_referral_uq",
        ]
    );
    assert!(partial
        .iter()
        .all(|(_, def)| def.starts_with("CREATE UNIQUE INDEX")));
    let triggers: i64 = client
        .query_one("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'funds_ledger_entries'::regclass AND NOT tgisinternal", &[])
        .await
        .expect("triggers")
        .get(0);
    assert_eq!(triggers, 2);
    drop(client);
    drop(db);
}

#[tokio::test]
async fn shipped_mapping_compiles_and_its_rows_satisfy_the_schema() {
    let (client, db) = fresh_db("mapping").await;
    let catalogue = read_catalogue(&client).await;
    let mapping = compiled(&catalogue);
    let mut ids = HashMap::new();
    let (buyer, seller, request, offer) = (
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
        ObjectId::new(),
    );
    let events = [
        insert_event(
            "users",
            doc! { "_id": buyer, "email": "b@example.com", "role": "user", "points": 10,
            "passkeys": [{ "credentialID": "c1", "publicKey": "k1", "counter": 3.0, "transports": ["usb", "nfc"] }],
            "refreshTokens": [{ "token": "t1", "expiresAt": bson::DateTime::from_millis(1_800_000_000_000) }] },
        ),
        insert_event(
            "users",
            doc! { "_id": seller, "email": "s@example.com", "role": "seller" },
        ),
        insert_event(
            "purchaserequests",
            doc! { "_id": request, "buyerId": buyer, "title": "Laptop",
            "budget": dec("1500.25"), "tags": ["tech"], "preferredSellerIds": [seller, seller],
            "deliveryInfo": { "method": "courier", "city": "Izmir" } },
        ),
        insert_event(
            "selleroffers",
            doc! { "_id": offer, "purchaseRequestId": request, "sellerId": seller, "price": dec("1499.999999999999999999") },
        ),
        insert_event(
            "payments",
            doc! { "_id": ObjectId::new(), "purchaseRequestId": request, "sellerOfferId": offer,
            "buyerId": buyer, "sellerId": seller.to_hex(), "amount": { "value": dec("1499.999999999999999999"), "currency": "USDT" },
            "status": "pending", "blockchain": { "txHash": "0x1" } },
        ),
        insert_event(
            "payments",
            doc! { "_id": ObjectId::new(), "purchaseRequestId": "tpl-checkout-1", "sellerOfferId": "tpl-offer-1",
            "buyerId": buyer, "sellerId": "shop:42", "amount": { "value": "10" }, "status": "completed" },
        ),
        insert_event(
            "fundsledgerentries",
            doc! { "_id": ObjectId::new(), "userId": buyer, "type": "credit",
            "amount": dec("0.000000000000000001"), "purchaseRequestId": "tpl-checkout-1", "idempotencyKey": "k-1" },
        ),
    ];
    for event in &events {
        let rules = mapping.rules(&event.collection).expect("mapped collection");
        let mapped =
            map_event(rules, event).unwrap_or_else(|e| panic!("{}: {e}", event.collection));
        apply(&client, &catalogue, &mut ids, mapped)
            .await
            .unwrap_or_else(|e| panic!("{}: {e:?}", event.collection));
    }
    let kinds: Vec<(String, Option<uuid::Uuid>, Option<String>, String)> = client
        .query(
            "SELECT seller_ref_kind::text, seller_id, seller_external_ref, amount::text FROM payments ORDER BY amount DESC",
            &[],
        )
        .await
        .expect("payments")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let seller_uuid = ids[&LegacyRef {
        collection: "users".into(),
        legacy_id: seller.to_hex(),
    }];
    assert_eq!(
        kinds,
        [
            (
                "entity".to_string(),
                Some(seller_uuid),
                None,
                "1499.999999999999999999".to_string()
            ),
            (
                "template".to_string(),
                None,
                Some("shop:42".to_string()),
                "10.000000000000000000".to_string()
            ),
        ]
    );
    let counts: (i64, i64, i64) = {
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM user_passkeys), (SELECT count(*) FROM purchase_request_preferred_sellers),
                        (SELECT count(*) FROM purchase_request_delivery_info)",
                &[],
            )
            .await
            .expect("counts");
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(counts, (1, 1, 1));

    for statement in [
        "UPDATE funds_ledger_entries SET description = 'x'",
        "DELETE FROM funds_ledger_entries",
    ] {
        let err = client
            .execute(statement, &[])
            .await
            .expect_err("the ledger is immutable");
        let db = err.as_db_error().expect("rejected by the database");
        assert_eq!(
            db.code(),
            &tokio_postgres::error::SqlState::RESTRICT_VIOLATION,
            "{statement}"
        );
        assert!(
            db.message()
                .starts_with("funds_ledger_entries is append-only"),
            "{}",
            db.message()
        );
    }

    let bad_mixed = client
        .execute(
            "UPDATE payments SET seller_external_ref = 'both' WHERE seller_ref_kind = 'entity'",
            &[],
        )
        .await
        .expect_err("exactly one of FK / external ref");
    assert_eq!(
        bad_mixed.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION)
    );
    drop(client);
    drop(db);
}

#[tokio::test]
async fn dates_at_the_edges_of_the_accepted_range_reach_postgres_exactly() {
    let (client, db) = fresh_db("dates").await;
    let latest = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis();
    let year_zero = -62_167_219_200_000; // 0000-01-01 (1 BC)
    for millis in [
        PG_TIMESTAMP_MIN_MILLIS,
        year_zero - 1,
        year_zero,
        -1,
        0,
        1_700_000_000_123,
        253_402_300_800_000,
        latest,
    ] {
        let value = convert(
            &Bson::DateTime(bson::DateTime::from_millis(millis)),
            &Conversion::Timestamptz,
            "at",
        )
        .unwrap_or_else(|e| panic!("{millis}: {e}"));
        let SqlValue::Timestamptz(t) = value else {
            panic!("{millis}: not a timestamptz")
        };
        let text = timestamptz_text(&t);
        let row = client
            .query_one(
                "SELECT (extract(epoch from $1::text::timestamptz) * 1000)::bigint",
                &[&text],
            )
            .await
            .unwrap_or_else(|e| panic!("{millis} as {text}: {e:?}"));
        assert_eq!(row.get::<_, i64>(0), millis, "{text}");
    }
    drop(client);
    drop(db);
}
