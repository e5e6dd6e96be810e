//! The sink tests' fixture: a small marketplace-like schema (users with passkeys, payments, an
//! append-only ledger), a migrated database per test with a sink over it, and builders for
//! events, positions and row operations.

use bson::{doc, oid::ObjectId, Bson, Document};
use mongo2pg::event::{ChangeEvent, ClusterTime, Operation, Position};
use mongo2pg::mapping::{ChildRows, ColumnValue, LegacyRef, Mapped, RowOp, SqlValue};
use mongo2pg::sink::{catalogue, migrate, BatchItem, ControlNames, Sink};
use tokio_postgres::Client;

use super::TestDb;

pub const SCHEMA: &str = r#"
CREATE TABLE users (
    id uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    email text,
    balance numeric(38,18),
    tags text[],
    meta jsonb,
    created_at timestamptz,
    deleted_at timestamptz,
    version bigint,
    CONSTRAINT users_balance_nonneg CHECK (balance >= 0)
);
CREATE UNIQUE INDEX users_email_uq ON users (email);
CREATE TABLE passkeys (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    credential text NOT NULL,
    position integer NOT NULL
);
CREATE TABLE payments (
    id uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    buyer_id uuid NOT NULL REFERENCES users(id),
    amount numeric(20,2) NOT NULL,
    version bigint
);
CREATE TABLE ledger (
    id uuid PRIMARY KEY,
    legacy_object_id text NOT NULL UNIQUE,
    amount numeric(20,2) NOT NULL,
    note text,
    version bigint
);
CREATE FUNCTION ledger_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'ledger entries are immutable'; END $$;
CREATE TRIGGER ledger_immutable BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_immutable();
"#;

pub const TABLES: [&str; 4] = ["users", "passkeys", "payments", "ledger"];

/// A migrated test database with the schema above and a sink over it.
pub struct Env {
    pub db: TestDb,
    pub client: Client,
    pub sink: Sink,
}

pub async fn env(test: &str) -> Env {
    let db = TestDb::create(test).await;
    let mut client = db.client().await;
    migrate(&mut client, &ControlNames::default())
        .await
        .unwrap();
    client.batch_execute(SCHEMA).await.unwrap();
    let tables: Vec<String> = TABLES.iter().map(|t| t.to_string()).collect();
    let cat = catalogue::load(&client, &tables).await.unwrap();
    let sink = Sink::new(cat, ControlNames::default()).with_holder("test");
    Env { db, client, sink }
}

/// Deterministic 24-hex ObjectId number `n`.
pub fn oid(n: u32) -> ObjectId {
    ObjectId::parse_str(format!("65a0000000000000{n:08x}")).unwrap()
}

pub fn key(collection: &str, n: u32) -> LegacyRef {
    LegacyRef {
        collection: collection.to_string(),
        legacy_id: oid(n).to_hex(),
    }
}

pub fn token(t: u32, i: u32) -> Document {
    doc! { "_data": format!("82{t:08X}{i:08X}") }
}

pub fn position(t: u32) -> Position {
    Position {
        token: token(t, 1),
        cluster_time: ClusterTime::new(t, 1),
    }
}

pub fn event(
    collection: &str,
    op: Operation,
    n: u32,
    t: u32,
    full: Option<Document>,
) -> ChangeEvent {
    let raw = doc! {
        "_id": token(t, 1),
        "operationType": op.as_str(),
        "ns": { "db": "shop", "coll": collection },
        "documentKey": { "_id": oid(n) },
        "fullDocument": full.clone().map(Bson::Document).unwrap_or(Bson::Null),
    };
    ChangeEvent {
        operation: op,
        collection: collection.to_string(),
        document_key: Some(Bson::ObjectId(oid(n))),
        full_document: full,
        full_document_before_change: None,
        cluster_time: ClusterTime::new(t, 1),
        resume_token: Some(token(t, 1)),
        txn: None,
        raw,
    }
}

pub fn cv(column: &str, value: SqlValue) -> ColumnValue {
    ColumnValue {
        column: column.to_string(),
        value,
    }
}

pub fn text(s: &str) -> SqlValue {
    SqlValue::Text(s.to_string())
}

pub fn num(s: &str) -> SqlValue {
    SqlValue::Numeric(s.to_string())
}

/// Upsert of user `n` with email, balance and passkeys (child rows), versioned at `t`.
pub fn user(n: u32, email: &str, balance: &str, t: u32, passkeys: &[&str]) -> RowOp {
    RowOp::Upsert {
        table: "users".into(),
        id_column: "id".into(),
        legacy_column: "legacy_object_id".into(),
        key: key("users", n),
        columns: vec![cv("email", text(email)), cv("balance", num(balance))],
        children: vec![ChildRows {
            table: "passkeys".into(),
            parent_column: "user_id".into(),
            rows: passkeys
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    vec![
                        cv("credential", text(p)),
                        cv("position", SqlValue::Int(i as i64)),
                    ]
                })
                .collect(),
        }],
        version: Some(("version".into(), ClusterTime::new(t, 1))),
        insert_only: false,
    }
}

pub fn payment(n: u32, buyer: u32, amount: &str, t: u32) -> RowOp {
    RowOp::Upsert {
        table: "payments".into(),
        id_column: "id".into(),
        legacy_column: "legacy_object_id".into(),
        key: key("payments", n),
        columns: vec![
            cv("buyer_id", SqlValue::Ref(key("users", buyer))),
            cv("amount", num(amount)),
        ],
        children: vec![],
        version: Some(("version".into(), ClusterTime::new(t, 1))),
        insert_only: false,
    }
}

pub fn ledger(n: u32, amount: &str, note: &str, t: u32) -> RowOp {
    RowOp::Upsert {
        table: "ledger".into(),
        id_column: "id".into(),
        legacy_column: "legacy_object_id".into(),
        key: key("ledger", n),
        columns: vec![cv("amount", num(amount)), cv("note", text(note))],
        children: vec![],
        version: Some(("version".into(), ClusterTime::new(t, 1))),
        insert_only: true,
    }
}

pub fn delete(table: &str, collection: &str, n: u32, t: u32) -> RowOp {
    RowOp::Delete {
        table: table.into(),
        legacy_column: "legacy_object_id".into(),
        key: key(collection, n),
        version: Some(("version".into(), ClusterTime::new(t, 1))),
    }
}

/// An item whose mapping produced `ops` for document `n` of `collection` at time `t`.
pub fn ops_item(collection: &str, op: Operation, n: u32, t: u32, ops: Vec<RowOp>) -> BatchItem {
    BatchItem {
        event: event(collection, op, n, t, Some(doc! { "_id": oid(n) })),
        mapped: Ok(Mapped::Ops(ops)),
    }
}

/// Rows of `sql` rendered as text columns joined by `|` (NULL as `∅`), in query order.
pub async fn rows(client: &Client, sql: &str) -> Vec<String> {
    let wrapped = format!("SELECT concat_ws('|', VARIADIC ARRAY(SELECT COALESCE(x::text, '∅') FROM json_each_text(row_to_json(q)) AS j(k, x))) FROM ({sql}) q");
    client
        .query(&wrapped, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}
