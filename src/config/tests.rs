//! Configuration tests: the shipped marketplace mapping parses, defaults apply, `validate` and
//! `compile` name the collection, the field and the broken rule.

use std::path::Path;

use super::*;
use crate::mapping::rules::{Conversion, DeleteRule};
use crate::mapping::tests::fixture::{catalogue, col, table, MAPPING};

const MARKETPLACE: &str = include_str!("../../deploy/marketplace/mapping.toml");

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_str(text, Path::new("test.toml"))
}

fn problems(result: Result<impl std::fmt::Debug, ConfigError>) -> Vec<String> {
    match result {
        Err(ConfigError::Invalid(problems)) => problems.iter().map(|p| p.to_string()).collect(),
        other => panic!("expected validation problems, got {other:?}"),
    }
}

#[test]
fn shipped_marketplace_mapping_parses_and_validates() {
    let config = parse(MARKETPLACE).expect("deploy/marketplace/mapping.toml is valid");
    let names: Vec<&str> = config.collections.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "addresses",
            "categories",
            "fundsledgerentries",
            "payments",
            "purchaserequests",
            "requesttemplates",
            "selleroffers",
            "users"
        ]
    );
    assert_eq!(config.source.database, "marketplace");
    assert_eq!(config.target.checkpoints_table(), "mongo2pg.checkpoints");
    assert_eq!(config.target.audit_table(), "mongo2pg.token_resets");
    let ledger = &config.collections["fundsledgerentries"];
    assert!(ledger.append_only);
    assert_eq!(ledger.delete, DeletePolicy::Ignore);
    assert_eq!(config.collections["payments"].mixed.len(), 3);
    assert_eq!(
        config.mapped_tables(),
        [
            "addresses",
            "categories",
            "funds_ledger_entries",
            "payments",
            "purchase_requests",
            "purchase_request_delivery_info",
            "purchase_request_offers",
            "purchase_request_preferred_sellers",
            "request_templates",
            "seller_offers",
            "users",
            "user_passkeys",
            "user_refresh_tokens",
        ]
    );
    assert_eq!(
        config.snapshot_order(),
        [
            "users",
            "categories",
            "addresses",
            "purchaserequests",
            "selleroffers",
            "requesttemplates",
            "payments",
            "fundsledgerentries"
        ]
    );
}

#[test]
fn omitted_sections_take_their_documented_defaults() {
    let config = parse("[source]\ndatabase = \"db\"\n[collections.things]\ntable = \"things\"\n")
        .expect("valid");
    assert_eq!(config.target, TargetConfig::default());
    assert_eq!(config.target.id_map, "public.id_map");
    assert_eq!(config.target.gaps, "public.pg_dualwrite_gaps");
    assert_eq!(config.stream.batch_max_events, DEFAULT_BATCH_MAX_EVENTS);
    assert_eq!(config.stream.batch_max_wait_ms, DEFAULT_BATCH_MAX_WAIT_MS);
    assert_eq!(config.stream.full_document, FullDocument::UpdateLookup);
    assert_eq!(config.snapshot.mode, SnapshotMode::Initial);
    let things = &config.collections["things"];
    assert_eq!(
        (things.id_column.as_str(), things.legacy_column.as_str()),
        ("id", "legacy_object_id")
    );
    assert_eq!(things.delete, DeletePolicy::Delete);
    assert_eq!(things.version_column, None);
}

#[test]
fn unknown_keys_are_rejected_at_parse_time() {
    let err = parse("[source]\ndatabase = \"db\"\ndatabse = \"typo\"\n").unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(std::error::Error::source(&err)
        .expect("cause kept")
        .to_string()
        .contains("databse"));
}

#[test]
fn validate_names_collection_field_and_rule() {
    let text = r#"
[source]
database = ""
[stream]
batch_max_events = 0
[snapshot]
order = ["nope"]
[collections.ledger]
table = "ledger"
append_only = true
columns = [
  { column = "amount", path = "amount", type = "numeric", required = true, default = "0" },
  { column = "amount", path = "amount..x", type = "numeric" },
  { column = "bad name", path = "x", type = "text" },
]
[[collections.ledger.junctions]]
table = "ledger_tags"
path = "tags"
parent_column = "ledger_id"
value_column = "tag"
"#;
    assert_eq!(
        problems(parse(text)),
        [
            "source: database: must name the MongoDB database",
            "stream: batch_max_events: must be between 1 and 100000, got 0",
            "snapshot: order: \"nope\" is not a mapped collection",
            "collections.ledger: amount: a required column cannot also have a default",
            "collections.ledger: amount: column is assigned twice in table ledger",
            "collections.ledger: amount: path \"amount..x\" must be dot-separated non-empty field names",
            "collections.ledger: bad name: \"bad name\" is not a plain SQL identifier",
            "collections.ledger: delete: an append_only collection keeps its rows: the delete policy must be ignore",
            "collections.ledger: tag: set exactly one of `collection` (ObjectId array) or `type` (scalar array)",
        ]
    );
}

#[test]
fn snapshot_page_bytes_defaults_to_4_mib_and_is_bounded() {
    let base = "[source]\ndatabase = \"db\"\n[collections.users]\ntable = \"users\"\n\
                columns = [{ column = \"email\", path = \"email\", type = \"text\" }]\n[snapshot]\n";
    let config = parse(base).expect("parses");
    assert_eq!(config.snapshot.page_bytes, 4 * 1024 * 1024);
    let config = parse(&format!("{base}page_bytes = 1048576\n")).expect("valid");
    assert_eq!(config.snapshot.page_bytes, 1024 * 1024);
    for bad in [0usize, 1024, 2 * 1024 * 1024 * 1024] {
        assert_eq!(
            problems(parse(&format!("{base}page_bytes = {bad}\n"))),
            [format!(
                "snapshot: page_bytes: must be between 65536 and 1073741824 bytes, got {bad}"
            )]
        );
    }
}

#[test]
fn snapshot_writers_default_to_two_and_are_bounded() {
    let base = "[source]\ndatabase = \"db\"\n[collections.users]\ntable = \"users\"\n\
                columns = [{ column = \"email\", path = \"email\", type = \"text\" }]\n[snapshot]\n";
    let config = parse(base).expect("parses");
    assert_eq!(config.snapshot.writers, 2);
    let config = parse(&format!("{base}writers = 4\n")).expect("valid");
    assert_eq!(config.snapshot.writers, 4);
    for bad in [0usize, 17] {
        assert_eq!(
            problems(parse(&format!("{base}writers = {bad}\n"))),
            [format!(
                "snapshot: writers: must be between 1 and 16, got {bad}"
            )]
        );
    }
}

#[test]
fn stream_channel_bytes_has_a_default_and_is_bounded() {
    let base = "[source]\ndatabase = \"db\"\n[collections.users]\ntable = \"users\"\n\
                columns = [{ column = \"email\", path = \"email\", type = \"text\" }]\n[stream]\n";
    let config = parse(base).expect("parses");
    assert_eq!(config.stream.channel_bytes, DEFAULT_CHANNEL_BYTES);
    let config = parse(&format!("{base}channel_bytes = 4194304\n")).expect("valid");
    assert_eq!(config.stream.channel_bytes, 4 * 1024 * 1024);
    for bad in [0usize, 1024, 2 * 1024 * 1024 * 1024] {
        assert_eq!(
            problems(parse(&format!("{base}channel_bytes = {bad}\n"))),
            [format!(
                "stream: channel_bytes: must be between 65536 and 1073741824 bytes, got {bad}"
            )]
        );
    }
}

#[test]
fn fixture_compiles_with_types_labels_and_precision_captured() {
    let mapping = Config::from_toml_str(MAPPING, Path::new("fixture.toml"))
        .expect("valid")
        .compile(&catalogue())
        .expect("compiles");
    let orders = mapping.rules("orders").expect("orders");
    let conv = |column: &str| {
        orders
            .row
            .scalars
            .iter()
            .find(|s| s.column == column)
            .map(|s| s.conversion.clone())
    };
    assert_eq!(
        conv("amount"),
        Some(Conversion::Numeric {
            precision_scale: Some((38, 18))
        })
    );
    assert_eq!(
        conv("free"),
        Some(Conversion::Numeric {
            precision_scale: None
        })
    );
    assert_eq!(
        conv("status"),
        Some(Conversion::Text {
            enum_labels: Some(vec!["new".into(), "paid".into()]),
            enum_type: Some("order_status".into())
        })
    );
    assert_eq!(orders.children.len(), 4);
    let notes = mapping.rules("notes").expect("notes");
    assert_eq!(
        notes.delete,
        DeleteRule::Soft {
            column: "deleted".into(),
            value: crate::mapping::SqlValue::Bool(true)
        }
    );
}

#[test]
fn compile_reports_missing_tables_columns_and_type_mismatches() {
    let mut cat = catalogue();
    cat.tables.remove("order_labels");
    let orders = cat.tables.get_mut("orders").expect("orders");
    orders.columns.remove("qty");
    orders
        .columns
        .insert("count".into(), col("count", "text", "text", true));
    orders
        .columns
        .insert("buyer_id".into(), col("buyer_id", "text", "text", true));
    orders.columns.insert(
        "seller_ref".into(),
        col("seller_ref", "text", "text", false),
    );
    let config = parse(MAPPING).expect("valid");
    assert_eq!(
        problems(config.compile(&cat)),
        [
            "collections.orders: qty: column orders.qty does not exist",
            "collections.orders: count: column orders.count is text but the mapping needs integer",
            "collections.orders: buyer_id: column orders.buyer_id is text but the mapping needs uuid",
            "collections.orders: seller_ref: one of the FK / external-ref columns is always NULL: it must be nullable",
            "collections.orders: order_labels: table order_labels does not exist in Postgres",
        ]
    );
}

#[test]
fn compile_demands_that_not_null_columns_can_never_receive_null() {
    let mut cat = catalogue();
    let orders = cat.tables.get_mut("orders").expect("orders");
    orders
        .columns
        .insert("title".into(), col("title", "text", "text", false));
    orders.columns.insert(
        "seller_kind".into(),
        col("seller_kind", "text", "text", false),
    );
    orders
        .columns
        .insert("audit".into(), col("audit", "text", "text", false));
    let config = parse(MAPPING).expect("valid");
    assert_eq!(
        problems(config.compile(&cat)),
        [
            "collections.orders: title: column title is NOT NULL: mark the field required or give a default",
            "collections.orders: seller_kind: column seller_kind is NOT NULL: mark the field required or give a default",
            "collections.orders: audit: column orders.audit is NOT NULL without a default but nothing maps it",
        ]
    );
}

#[test]
fn compile_checks_defaults_and_soft_delete_values_against_the_column() {
    let text = MAPPING
        .replace(
            r#"type = "text", default = "new""#,
            r#"type = "text", default = "shipped""#,
        )
        .replace("value = true", "value = \"yes\"");
    let config = parse(&text).expect("valid");
    assert_eq!(
        problems(config.compile(&catalogue())),
        [
            "collections.notes: delete.value: deleted: expected a bool, found BSON string",
            "collections.orders: status: default is not valid: status: \"shipped\" is not a label of order_status (allowed: new, paid)",
        ]
    );
}

#[test]
fn mixed_kind_column_must_accept_entity_and_template() {
    let mut cat = catalogue();
    let mut kind = col("seller_kind", "enum", "seller_kind", true);
    kind.enum_labels = vec!["entity".into()];
    cat.tables
        .get_mut("orders")
        .expect("orders")
        .columns
        .insert("seller_kind".into(), kind);
    assert_eq!(
        problems(parse(MAPPING).expect("valid").compile(&cat)),
        ["collections.orders: seller_kind: column orders.seller_kind is seller_kind but the mapping needs text or an enum with labels entity and template"]
    );
}

#[test]
fn snapshot_order_puts_referenced_collections_first() {
    let text = r#"
[source]
database = "db"
[collections.a_orders]
table = "orders"
references = [{ column = "user_id", path = "userId", collection = "z_users" }]
[collections.z_users]
table = "users"
"#;
    let config = parse(text).expect("valid");
    assert_eq!(config.snapshot_order(), ["z_users", "a_orders"]);
    let (name, info) = table("users", vec![]);
    assert_eq!((name.as_str(), info.columns.len()), ("users", 0));
}

fn with_groups(groups: &str) -> Result<Config, ConfigError> {
    parse(&format!("{}\n{groups}", per_collection()))
}

/// The reference mapping without its stream group.
fn per_collection() -> String {
    super::without_stream_groups(MARKETPLACE)
}

#[test]
fn the_reference_mapping_runs_the_money_core_as_one_group() {
    let config = parse(MARKETPLACE).expect("valid");
    assert_eq!(
        config.stream_spec("money").map(|s| s.collections.clone()),
        Some(
            [
                "users",
                "purchaserequests",
                "selleroffers",
                "requesttemplates",
                "payments",
                "fundsledgerentries"
            ]
            .map(String::from)
            .to_vec()
        )
    );
    assert_eq!(config.stream_of("addresses"), "addresses");
    assert_eq!(config.stream_of("categories"), "categories");
    let plain = parse(&per_collection()).expect("valid");
    assert!(plain.streams.is_empty());
    assert_eq!(plain.collections.len(), config.collections.len());
}

#[test]
fn groups_make_one_stream_each_and_the_rest_keep_their_own() {
    let config = with_groups(
        "[streams.money]\ncollections = [\"payments\", \"users\", \"fundsledgerentries\"]\n",
    )
    .expect("valid group");
    let specs = config.stream_specs();
    assert_eq!(specs[0].name, "money");
    assert!(specs[0].group);
    // Copy order: referenced collections first.
    assert_eq!(
        specs[0].collections,
        ["users", "payments", "fundsledgerentries"]
    );
    let singles: Vec<&str> = specs[1..].iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        singles,
        [
            "addresses",
            "categories",
            "purchaserequests",
            "requesttemplates",
            "selleroffers"
        ]
    );
    assert!(specs[1..]
        .iter()
        .all(|s| !s.group && s.collections == [s.name.clone()]));
    assert_eq!(config.stream_of("payments"), "money");
    assert_eq!(config.stream_of("addresses"), "addresses");
    // Without groups: one stream per collection, as before.
    let plain = parse(&per_collection()).expect("valid");
    assert_eq!(plain.stream_specs().len(), plain.collections.len());
    assert_eq!(plain.stream_of("payments"), "payments");
}

#[test]
fn star_takes_every_collection_no_other_group_names() {
    let config = with_groups(
        "[streams.all]\ncollections = \"*\"\n[streams.geo]\ncollections = [\"addresses\"]\n",
    )
    .expect("valid groups");
    let specs = config.stream_specs();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].name, "all");
    assert_eq!(specs[0].collections.len(), 7);
    assert!(!specs[0].collections.contains(&"addresses".to_string()));
    assert_eq!(specs[1].collections, ["addresses"]);
    assert_eq!(config.stream_of("categories"), "all");
}

#[test]
fn group_validation_names_the_group() {
    let cases = [
        (
            "[streams.a]\ncollections = [\"users\"]\n[streams.b]\ncollections = [\"users\"]\n",
            "streams.b: collections: \"users\" is already in group \"a\"",
        ),
        (
            "[streams.a]\ncollections = [\"nope\"]\n",
            "streams.a: collections: \"nope\" is not a mapped collection",
        ),
        (
            "[streams.a]\ncollections = []\n",
            "streams.a: collections: a group needs at least one collection",
        ),
        (
            "[streams.users]\ncollections = [\"payments\"]\n",
            "streams.users: collections: the group is named like collection \"users\"",
        ),
        (
            "[streams.a]\ncollections = \"*\"\n[streams.b]\ncollections = \"*\"\n",
            "streams.b: collections: \"*\" is already used by group \"a\"",
        ),
        (
            "[streams.a]\ncollections = \"all\"\n",
            "streams.a: collections: must be a list of collections or \"*\"",
        ),
    ];
    for (toml, expected) in cases {
        let found = problems(with_groups(toml));
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "{toml}: expected {expected:?} in {found:?}"
        );
    }
    // A group may carry the name of one of its own members.
    with_groups("[streams.users]\ncollections = [\"users\", \"payments\"]\n").expect("valid");
}

#[test]
fn stream_resolve_ahead_is_on_by_default_and_can_be_turned_off() {
    let base = "[source]\ndatabase = \"db\"\n[collections.users]\ntable = \"users\"\n\
                columns = [{ column = \"email\", path = \"email\", type = \"text\" }]\n[stream]\n";
    assert!(parse(base).expect("parses").stream.resolve_ahead);
    let config = parse(&format!("{base}resolve_ahead = false\n")).expect("valid");
    assert!(!config.stream.resolve_ahead);
    match parse(&format!("{base}resolve_ahead = \"yes\"\n")) {
        Err(ConfigError::Parse { source, .. }) => {
            let message = source.to_string();
            assert!(message.contains("resolve_ahead"), "{message}");
        }
        other => panic!("a string is not a boolean: {other:?}"),
    }
}
