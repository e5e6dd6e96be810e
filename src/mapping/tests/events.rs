//! `map_event` over the fixture mapping: row shape, defaults, references, mixed ids, children,
//! junctions, delete policies, append-only tables, versions and skips.

use bson::{doc, Bson, Decimal128, Document};

use super::fixture::{compiled, event, oid};
use crate::event::{ClusterTime, Operation};
use crate::mapping::{
    map_event, ChildRows, ColumnValue, GapKind, LegacyRef, Mapped, MappingError, RowOp, SqlValue,
};

fn map(
    collection: &str,
    operation: Operation,
    document: Option<Document>,
) -> Result<Mapped, MappingError> {
    let mapping = compiled();
    let rules = mapping.rules(collection).expect("collection is mapped");
    map_event(rules, &event(collection, operation, document))
}

fn upsert(document: Document) -> (Vec<ColumnValue>, Vec<ChildRows>) {
    match map("orders", Operation::Insert, Some(document)) {
        Ok(Mapped::Ops(mut ops)) if ops.len() == 1 => match ops.remove(0) {
            RowOp::Upsert {
                columns, children, ..
            } => (columns, children),
            other => panic!("expected an upsert, got {other:?}"),
        },
        other => panic!("expected one op, got {other:?}"),
    }
}

fn value<'a>(columns: &'a [ColumnValue], column: &str) -> &'a SqlValue {
    &columns
        .iter()
        .find(|c| c.column == column)
        .unwrap_or_else(|| panic!("no column {column}"))
        .value
}

fn reference(collection: &str, id: &str) -> SqlValue {
    SqlValue::Ref(LegacyRef {
        collection: collection.into(),
        legacy_id: id.into(),
    })
}

fn error(result: Result<Mapped, MappingError>) -> MappingError {
    result.expect_err("mapping should fail")
}

fn minimal() -> Document {
    doc! { "_id": oid(1), "amount": { "value": Bson::Decimal128("10.5".parse::<Decimal128>().expect("valid")) } }
}

const ORDER_COLUMNS: [&str; 16] = [
    "title",
    "status",
    "qty",
    "count",
    "big",
    "flag",
    "amount",
    "free",
    "at",
    "token",
    "meta",
    "tags",
    "buyer_id",
    "seller_kind",
    "seller_id",
    "seller_ref",
];

#[test]
fn insert_becomes_one_version_guarded_upsert_keyed_by_legacy_id() {
    let result = map("orders", Operation::Insert, Some(minimal())).expect("maps");
    let Mapped::Ops(ops) = result else {
        panic!("expected ops")
    };
    let RowOp::Upsert {
        table,
        id_column,
        legacy_column,
        key,
        version,
        insert_only,
        ..
    } = &ops[0]
    else {
        panic!("expected an upsert")
    };
    assert_eq!(
        (table.as_str(), id_column.as_str(), legacy_column.as_str()),
        ("orders", "id", "legacy_object_id")
    );
    assert_eq!(
        key,
        &LegacyRef {
            collection: "orders".into(),
            legacy_id: "010101010101010101010101".into()
        }
    );
    assert_eq!(
        version,
        &Some(("source_version".to_string(), ClusterTime::new(100, 7)))
    );
    assert!(!insert_only);
}

#[test]
fn every_configured_column_is_present_with_defaults_or_null_when_missing() {
    let (columns, children) = upsert(minimal());
    let names: Vec<&str> = columns.iter().map(|c| c.column.as_str()).collect();
    assert_eq!(names, ORDER_COLUMNS.to_vec());
    assert_eq!(value(&columns, "status"), &SqlValue::Text("new".into()));
    assert_eq!(value(&columns, "flag"), &SqlValue::Bool(false));
    assert_eq!(value(&columns, "amount"), &SqlValue::Numeric("10.5".into()));
    for column in [
        "title",
        "qty",
        "free",
        "at",
        "token",
        "meta",
        "tags",
        "buyer_id",
        "seller_kind",
        "seller_id",
        "seller_ref",
    ] {
        assert_eq!(value(&columns, column), &SqlValue::Null, "{column}");
    }
    let tables: Vec<(&str, usize)> = children
        .iter()
        .map(|c| (c.table.as_str(), c.rows.len()))
        .collect();
    assert_eq!(
        tables,
        vec![
            ("order_lines", 0),
            ("order_shipping", 0),
            ("order_watchers", 0),
            ("order_labels", 0)
        ]
    );
}

#[test]
fn explicit_null_reads_like_a_missing_field() {
    let mut d = minimal();
    d.insert("status", Bson::Null);
    d.insert("title", Bson::Null);
    let (columns, _) = upsert(d);
    assert_eq!(value(&columns, "status"), &SqlValue::Text("new".into()));
    assert_eq!(value(&columns, "title"), &SqlValue::Null);
}

#[test]
fn missing_required_field_is_a_missing_required_error_naming_the_path() {
    let err = error(map(
        "orders",
        Operation::Insert,
        Some(doc! { "_id": oid(1), "amount": {} }),
    ));
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::MissingRequired,
            "amount.value: required field is missing or null"
        )
    );
    let err = error(map(
        "orders",
        Operation::Insert,
        Some(doc! { "_id": oid(1), "amount": 5 }),
    ));
    assert_eq!(err.kind, GapKind::WrongType);
    assert_eq!(
        err.reason,
        "amount.value: amount is a int but the path needs a sub-document"
    );
}

#[test]
fn object_id_references_become_refs_and_strings_are_invalid_references() {
    let mut d = minimal();
    d.insert("buyerId", oid(2));
    let (columns, _) = upsert(d.clone());
    assert_eq!(
        value(&columns, "buyer_id"),
        &reference("users", "020202020202020202020202")
    );
    d.insert("buyerId", "020202020202020202020202");
    let err = error(map("orders", Operation::Insert, Some(d.clone())));
    assert_eq!(err.kind, GapKind::InvalidReference);
    assert_eq!(err.reason, "buyerId: string \"020202020202020202020202\" where a reference to users expects an ObjectId");
    d.insert("buyerId", 7);
    assert_eq!(
        error(map("orders", Operation::Insert, Some(d))).kind,
        GapKind::WrongType
    );
}

#[test]
fn mixed_object_id_is_an_entity_with_fk_and_no_external_ref() {
    let mut d = minimal();
    d.insert("sellerId", oid(3));
    let (columns, _) = upsert(d);
    assert_eq!(
        value(&columns, "seller_kind"),
        &SqlValue::Text("entity".into())
    );
    assert_eq!(
        value(&columns, "seller_id"),
        &reference("users", "030303030303030303030303")
    );
    assert_eq!(value(&columns, "seller_ref"), &SqlValue::Null);
}

#[test]
fn mixed_free_string_is_a_template_with_external_ref_and_no_fk() {
    let mut d = minimal();
    d.insert("sellerId", "template:shop-42");
    let (columns, _) = upsert(d);
    assert_eq!(
        value(&columns, "seller_kind"),
        &SqlValue::Text("template".into())
    );
    assert_eq!(value(&columns, "seller_id"), &SqlValue::Null);
    assert_eq!(
        value(&columns, "seller_ref"),
        &SqlValue::Text("template:shop-42".into())
    );
}

#[test]
fn mixed_24_hex_string_follows_the_switch() {
    let hex = "0A0B0C0D0E0F101112131415";
    let mut d = minimal();
    d.insert("sellerId", hex);
    let (columns, _) = upsert(d.clone());
    assert_eq!(
        value(&columns, "seller_kind"),
        &SqlValue::Text("entity".into())
    );
    assert_eq!(
        value(&columns, "seller_id"),
        &reference("users", "0a0b0c0d0e0f101112131415")
    );

    let mut mapping = compiled();
    let rules = mapping.collections.get_mut("orders").expect("mapped");
    rules.row.mixed[0].hex24_is_id = false;
    let Ok(Mapped::Ops(ops)) = map_event(rules, &event("orders", Operation::Insert, Some(d)))
    else {
        panic!("maps")
    };
    let RowOp::Upsert { columns, .. } = &ops[0] else {
        panic!("upsert")
    };
    assert_eq!(
        value(columns, "seller_kind"),
        &SqlValue::Text("template".into())
    );
    assert_eq!(value(columns, "seller_id"), &SqlValue::Null);
    assert_eq!(value(columns, "seller_ref"), &SqlValue::Text(hex.into()));
}

#[test]
fn mixed_of_another_type_is_wrong_type_and_missing_required_mixed_is_reported() {
    let mut d = minimal();
    d.insert("sellerId", 12.5);
    let err = error(map("orders", Operation::Insert, Some(d)));
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::WrongType,
            "sellerId: expected an ObjectId or a string, found BSON double"
        )
    );
    let mut mapping = compiled();
    let rules = mapping.collections.get_mut("orders").expect("mapped");
    rules.row.mixed[0].required = true;
    let err = map_event(rules, &event("orders", Operation::Insert, Some(minimal()))).unwrap_err();
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::MissingRequired,
            "sellerId: required field is missing or null"
        )
    );
}

#[test]
fn array_children_carry_ordinals_and_their_own_references() {
    let mut d = minimal();
    d.insert(
        "lines",
        vec![
            Bson::Document(doc! { "sku": "A", "price": "1.25", "productId": oid(9) }),
            Bson::Document(doc! { "sku": "B" }),
        ],
    );
    let (_, children) = upsert(d);
    let lines = &children[0];
    assert_eq!(
        (lines.table.as_str(), lines.parent_column.as_str()),
        ("order_lines", "order_id")
    );
    let cv = |c: &str, v: SqlValue| ColumnValue {
        column: c.into(),
        value: v,
    };
    assert_eq!(
        lines.rows,
        vec![
            vec![
                cv("sku", SqlValue::Text("A".into())),
                cv("price", SqlValue::Numeric("1.25".into())),
                cv(
                    "product_id",
                    reference("products", "090909090909090909090909")
                ),
                cv("position", SqlValue::Int(0))
            ],
            vec![
                cv("sku", SqlValue::Text("B".into())),
                cv("price", SqlValue::Null),
                cv("product_id", SqlValue::Null),
                cv("position", SqlValue::Int(1))
            ],
        ]
    );
}

#[test]
fn child_errors_name_the_element_and_path() {
    let mut d = minimal();
    d.insert(
        "lines",
        vec![
            Bson::Document(doc! { "sku": "A" }),
            Bson::Document(doc! { "price": "1" }),
        ],
    );
    let err = error(map("orders", Operation::Insert, Some(d.clone())));
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::MissingRequired,
            "lines[1].sku: required field is missing or null"
        )
    );
    d.insert(
        "lines",
        vec![Bson::Document(doc! { "sku": "A", "price": "0.125" })],
    );
    assert_eq!(
        error(map("orders", Operation::Insert, Some(d.clone()))).kind,
        GapKind::InvalidNumber
    );
    d.insert("lines", vec![Bson::String("A".into())]);
    let err = error(map("orders", Operation::Insert, Some(d.clone())));
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::WrongType,
            "lines[0]: expected a sub-document, found BSON string"
        )
    );
    d.insert("lines", "A");
    assert_eq!(
        error(map("orders", Operation::Insert, Some(d))).reason,
        "lines: expected an array, found BSON string"
    );
}

#[test]
fn one_to_one_sub_document_becomes_one_child_row_or_none() {
    let mut d = minimal();
    d.insert("shipping", doc! { "address": { "city": "Izmir" } });
    let (_, children) = upsert(d.clone());
    assert_eq!(
        children[1].rows,
        vec![vec![ColumnValue {
            column: "city".into(),
            value: SqlValue::Text("Izmir".into())
        }]]
    );
    d.insert("shipping", Bson::Null);
    assert_eq!(upsert(d.clone()).1[1].rows, Vec::<Vec<ColumnValue>>::new());
    d.insert("shipping", vec![Bson::Int32(1)]);
    assert_eq!(
        error(map("orders", Operation::Insert, Some(d))).kind,
        GapKind::WrongType
    );
}

#[test]
fn junctions_map_object_id_arrays_to_refs_and_scalar_arrays_to_values_as_sets() {
    let mut d = minimal();
    d.insert(
        "watcherIds",
        vec![
            Bson::ObjectId(oid(4)),
            Bson::ObjectId(oid(5)),
            Bson::ObjectId(oid(4)),
        ],
    );
    d.insert("labels", vec!["gift", "urgent"]);
    let (_, children) = upsert(d.clone());
    let user = |n: &str| {
        vec![ColumnValue {
            column: "user_id".into(),
            value: reference("users", n),
        }]
    };
    assert_eq!(
        children[2].rows,
        vec![
            user("040404040404040404040404"),
            user("050505050505050505050505")
        ]
    );
    let label = |s: &str| {
        vec![ColumnValue {
            column: "label".into(),
            value: SqlValue::Text(s.into()),
        }]
    };
    assert_eq!(children[3].rows, vec![label("gift"), label("urgent")]);
    d.insert("watcherIds", vec!["040404040404040404040404"]);
    let err = error(map("orders", Operation::Insert, Some(d.clone())));
    assert_eq!(err.kind, GapKind::InvalidReference);
    assert_eq!(err.reason, "watcherIds[0]: string \"040404040404040404040404\" where a reference to users expects an ObjectId");
    d.insert("watcherIds", Bson::Array(vec![]));
    d.insert("labels", vec![Bson::String("ok".into()), Bson::Null]);
    assert_eq!(
        error(map("orders", Operation::Insert, Some(d))).reason,
        "labels[1]: null element in an array of values"
    );
}

#[test]
fn replace_update_and_snapshot_map_like_insert() {
    let insert = map("orders", Operation::Insert, Some(minimal())).expect("maps");
    for op in [Operation::Replace, Operation::Update, Operation::Snapshot] {
        assert_eq!(
            map("orders", op.clone(), Some(minimal())).as_ref(),
            Ok(&insert),
            "{op:?}"
        );
    }
}

#[test]
fn update_whose_looked_up_document_is_gone_is_skipped_only_when_its_delete_removes_the_row() {
    assert_eq!(map("orders", Operation::Update, None), Ok(Mapped::Skip));
    assert_eq!(
        error(map("orders", Operation::Insert, None)).kind,
        GapKind::MalformedEvent
    );
    // A soft-deleted row outlives the delete: the unknown state is a gap, not a silent skip.
    assert_eq!(
        error(map("notes", Operation::Update, None)).kind,
        GapKind::PostImageMissing
    );
}

#[test]
fn a_pre_image_lands_before_the_delete_policy_of_a_row_that_outlives_its_delete() {
    let mapping = compiled();
    let rules = mapping.rules("notes").expect("mapped");
    let mut e = event("notes", Operation::Delete, None);
    e.full_document_before_change = Some(doc! {"_id": oid(1), "body": "last words"});
    let Ok(Mapped::Ops(ops)) = map_event(rules, &e) else {
        panic!("ops expected")
    };
    assert_eq!(ops.len(), 2);
    let RowOp::Upsert { columns, .. } = &ops[0] else {
        panic!("the pre-image's upsert comes first: {ops:?}")
    };
    assert_eq!(value(columns, "body"), &SqlValue::Text("last words".into()));
    assert!(matches!(ops[1], RowOp::SoftDelete { .. }));
    // Without a pre-image the soft delete is all there is; a hard delete never needs one.
    assert_eq!(
        map_event(rules, &event("notes", Operation::Delete, None)).map(|m| match m {
            Mapped::Ops(ops) => ops.len(),
            Mapped::Skip => 0,
        }),
        Ok(1)
    );
}

#[test]
fn delete_policy_delete_removes_the_row_with_its_version() {
    let expected = RowOp::Delete {
        table: "orders".into(),
        legacy_column: "legacy_object_id".into(),
        key: LegacyRef {
            collection: "orders".into(),
            legacy_id: "010101010101010101010101".into(),
        },
        version: Some(("source_version".into(), ClusterTime::new(100, 7))),
    };
    assert_eq!(
        map("orders", Operation::Delete, None),
        Ok(Mapped::Ops(vec![expected]))
    );
}

#[test]
fn delete_policy_soft_sets_the_configured_column() {
    let expected = RowOp::SoftDelete {
        table: "notes".into(),
        legacy_column: "legacy_object_id".into(),
        key: LegacyRef {
            collection: "notes".into(),
            legacy_id: "010101010101010101010101".into(),
        },
        column: "deleted".into(),
        value: SqlValue::Bool(true),
        version: None,
    };
    assert_eq!(
        map("notes", Operation::Delete, None),
        Ok(Mapped::Ops(vec![expected]))
    );
}

#[test]
fn append_only_tables_insert_only_and_turn_changes_into_immutable_change_errors() {
    let entry = doc! { "_id": oid(1), "amount": "5" };
    let Ok(Mapped::Ops(ops)) = map("ledger", Operation::Insert, Some(entry.clone())) else {
        panic!("maps")
    };
    assert!(matches!(
        &ops[0],
        RowOp::Upsert {
            insert_only: true,
            ..
        }
    ));
    for op in [Operation::Update, Operation::Replace, Operation::Delete] {
        let err = error(map("ledger", op.clone(), Some(entry.clone())));
        assert_eq!(err.kind, GapKind::ImmutableChange, "{op:?}");
    }
    assert_eq!(
        error(map("ledger", Operation::Delete, None)).reason,
        "delete of a document in append-only table ledger"
    );
}

#[test]
fn delete_policy_ignore_skips_outside_append_only_tables() {
    let mut mapping = compiled();
    let rules = mapping.collections.get_mut("notes").expect("mapped");
    rules.delete = crate::mapping::rules::DeleteRule::Ignore;
    assert_eq!(
        map_event(rules, &event("notes", Operation::Delete, None)),
        Ok(Mapped::Skip)
    );
}

#[test]
fn legacy_ids_are_lower_case_hex_or_the_string_itself() {
    let mapping = compiled();
    let rules = mapping.rules("notes").expect("mapped");
    let mut e = event("notes", Operation::Insert, Some(doc! { "_id": "note-7" }));
    e.document_key = Some(Bson::String("note-7".into()));
    let Ok(Mapped::Ops(ops)) = map_event(rules, &e) else {
        panic!("maps")
    };
    assert!(matches!(&ops[0], RowOp::Upsert { key, .. } if key.legacy_id == "note-7"));
    e.document_key = None;
    let Ok(Mapped::Ops(ops)) = map_event(rules, &e) else {
        panic!("falls back to fullDocument._id")
    };
    assert!(matches!(&ops[0], RowOp::Upsert { key, .. } if key.legacy_id == "note-7"));
    e.document_key = Some(Bson::Int32(7));
    assert_eq!(
        map_event(rules, &e).unwrap_err().kind,
        GapKind::MalformedEvent
    );
    e.document_key = None;
    e.full_document = Some(doc! {});
    assert_eq!(
        map_event(rules, &e).unwrap_err().reason,
        "_id: event has no document key"
    );
}

#[test]
fn stream_ending_events_are_left_to_the_pipeline_and_ddl_events_are_skipped() {
    for op in [
        Operation::Drop,
        Operation::Rename,
        Operation::DropDatabase,
        Operation::Invalidate,
    ] {
        assert_eq!(
            error(map("orders", op, None)).kind,
            GapKind::StreamInvalidated
        );
    }
    assert_eq!(
        map("orders", Operation::Other("createIndexes".into()), None),
        Ok(Mapped::Skip)
    );
}

#[test]
fn an_event_for_another_collection_is_malformed() {
    let mapping = compiled();
    let err = map_event(
        mapping.rules("orders").expect("mapped"),
        &event("notes", Operation::Delete, None),
    )
    .unwrap_err();
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::MalformedEvent,
            "event for collection notes given to the rules of orders"
        )
    );
}
