//! Unit tests of the pure mapping stage, with a hand-built catalogue and a small mapping that uses
//! every rule kind (`fixture`).

mod convert_values;
mod events;
mod fuzz;
mod properties;

pub(crate) mod fixture {
    //! A test mapping compiled against a hand-built catalogue.

    use std::collections::BTreeMap;
    use std::path::Path;

    use bson::{doc, oid::ObjectId, Document};

    use crate::config::{CompiledMapping, Config};
    use crate::event::{ChangeEvent, ClusterTime, Operation};
    use crate::sink::catalogue::{Catalogue, ColumnInfo, TableInfo};

    pub fn col(name: &str, kind: &str, sql_type: &str, nullable: bool) -> ColumnInfo {
        ColumnInfo {
            name: name.to_string(),
            sql_type: sql_type.to_string(),
            kind: kind.to_string(),
            nullable,
            has_default: false,
            numeric_precision_scale: None,
            enum_labels: Vec::new(),
        }
    }

    pub fn with_default(mut c: ColumnInfo) -> ColumnInfo {
        c.has_default = true;
        c
    }

    pub fn table(name: &str, columns: Vec<ColumnInfo>) -> (String, TableInfo) {
        let columns = columns.into_iter().map(|c| (c.name.clone(), c)).collect();
        (
            name.to_string(),
            TableInfo {
                schema: "public".into(),
                name: name.to_string(),
                columns,
            },
        )
    }

    fn mapped(name: &str, mut extra: Vec<ColumnInfo>) -> (String, TableInfo) {
        let mut columns = vec![
            col("id", "uuid", "uuid", false),
            col("legacy_object_id", "text", "text", false),
            col("source_version", "int8", "bigint", true),
        ];
        columns.append(&mut extra);
        table(name, columns)
    }

    /// The catalogue the fixture mapping compiles against.
    pub fn catalogue() -> Catalogue {
        let mut amount = col("amount", "numeric", "numeric(38,18)", false);
        amount.numeric_precision_scale = Some((38, 18));
        let mut status = col("status", "enum", "order_status", false);
        status.enum_labels = vec!["new".into(), "paid".into()];
        let mut kind = col("seller_kind", "enum", "ref_kind", true);
        kind.enum_labels = vec!["entity".into(), "template".into()];
        let mut line_price = col("price", "numeric", "numeric(10,2)", true);
        line_price.numeric_precision_scale = Some((10, 2));
        let mut ledger_amount = col("amount", "numeric", "numeric(38,18)", false);
        ledger_amount.numeric_precision_scale = Some((38, 18));
        let tables: BTreeMap<String, TableInfo> = [
            mapped(
                "orders",
                vec![
                    col("title", "text", "text", true),
                    status,
                    col("qty", "int2", "smallint", true),
                    col("count", "int4", "integer", true),
                    col("big", "int8", "bigint", true),
                    col("flag", "bool", "boolean", false),
                    amount,
                    col("free", "numeric", "numeric", true),
                    col("at", "timestamptz", "timestamp with time zone", true),
                    col("token", "uuid", "uuid", true),
                    col("meta", "jsonb", "jsonb", true),
                    col("tags", "text[]", "text[]", true),
                    col("buyer_id", "uuid", "uuid", true),
                    kind,
                    col("seller_id", "uuid", "uuid", true),
                    col("seller_ref", "text", "text", true),
                    with_default(col(
                        "created_on_pg",
                        "timestamptz",
                        "timestamp with time zone",
                        false,
                    )),
                ],
            ),
            table(
                "order_lines",
                vec![
                    with_default(col("id", "uuid", "uuid", false)),
                    col("order_id", "uuid", "uuid", false),
                    col("position", "int4", "integer", false),
                    col("sku", "text", "text", false),
                    line_price,
                    col("product_id", "uuid", "uuid", true),
                ],
            ),
            table(
                "order_shipping",
                vec![
                    col("order_id", "uuid", "uuid", false),
                    col("city", "text", "text", true),
                ],
            ),
            table(
                "order_watchers",
                vec![
                    col("order_id", "uuid", "uuid", false),
                    col("user_id", "uuid", "uuid", false),
                ],
            ),
            table(
                "order_labels",
                vec![
                    col("order_id", "uuid", "uuid", false),
                    col("label", "text", "text", false),
                ],
            ),
            mapped("ledger", vec![ledger_amount]),
            mapped(
                "notes",
                vec![
                    col("body", "text", "text", true),
                    col("deleted", "bool", "boolean", false),
                ],
            ),
        ]
        .into_iter()
        .collect();
        Catalogue { tables }
    }

    pub const MAPPING: &str = r#"
[source]
database = "shop"

[collections.orders]
table = "orders"
version_column = "source_version"
columns = [
  { column = "title", path = "title", type = "text" },
  { column = "status", path = "status", type = "text", default = "new" },
  { column = "qty", path = "qty", type = "smallint" },
  { column = "count", path = "count", type = "integer" },
  { column = "big", path = "big", type = "bigint" },
  { column = "flag", path = "flag", type = "boolean", default = false },
  { column = "amount", path = "amount.value", type = "numeric", required = true },
  { column = "free", path = "free", type = "numeric" },
  { column = "at", path = "at", type = "timestamptz" },
  { column = "token", path = "token", type = "uuid" },
  { column = "meta", path = "meta", type = "jsonb" },
  { column = "tags", path = "tags", type = "text[]" },
]
references = [{ column = "buyer_id", path = "buyerId", collection = "users" }]
mixed = [{ path = "sellerId", kind_column = "seller_kind", fk_column = "seller_id", ref_column = "seller_ref", collection = "users", hex24_is_id = true }]

[[collections.orders.children]]
table = "order_lines"
path = "lines"
parent_column = "order_id"
ordinal_column = "position"
columns = [
  { column = "sku", path = "sku", type = "text", required = true },
  { column = "price", path = "price", type = "numeric" },
]
references = [{ column = "product_id", path = "productId", collection = "products" }]

[[collections.orders.children]]
table = "order_shipping"
path = "shipping"
shape = "document"
parent_column = "order_id"
columns = [{ column = "city", path = "address.city", type = "text" }]

[[collections.orders.junctions]]
table = "order_watchers"
path = "watcherIds"
parent_column = "order_id"
value_column = "user_id"
collection = "users"

[[collections.orders.junctions]]
table = "order_labels"
path = "labels"
parent_column = "order_id"
value_column = "label"
type = "text"

[collections.ledger]
table = "ledger"
version_column = "source_version"
append_only = true
delete = { policy = "ignore" }
columns = [{ column = "amount", path = "amount", type = "numeric", required = true }]

[collections.notes]
table = "notes"
delete = { policy = "soft", column = "deleted", value = true }
columns = [
  { column = "body", path = "body", type = "text" },
  { column = "deleted", path = "deleted", type = "boolean", default = false },
]
"#;

    pub fn compiled() -> CompiledMapping {
        let config =
            Config::from_toml_str(MAPPING, Path::new("fixture.toml")).expect("fixture parses");
        config.compile(&catalogue()).expect("fixture compiles")
    }

    pub fn oid(n: u8) -> ObjectId {
        ObjectId::from_bytes([n; 12])
    }

    /// An event of `operation` on `collection` with `_id = oid(1)` at cluster time (100, 7).
    pub fn event(
        collection: &str,
        operation: Operation,
        full_document: Option<Document>,
    ) -> ChangeEvent {
        ChangeEvent {
            operation,
            collection: collection.to_string(),
            document_key: Some(bson::Bson::ObjectId(oid(1))),
            full_document,
            full_document_before_change: None,
            cluster_time: ClusterTime::new(100, 7),
            resume_token: Some(doc! { "_data": "00" }),
            txn: None,
            raw: doc! {},
        }
    }
}
