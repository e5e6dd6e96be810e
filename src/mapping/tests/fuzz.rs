//! Property tests over arbitrary BSON: every value of every BSON type, nested, with hostile
//! strings (NUL, decimal text with extreme exponents) and dates anywhere in the `i64` range, goes
//! through every column conversion and through whole-document mapping. Whatever the input, mapping
//! never panics, its output stays bounded (Postgres' own limits, not the input's exponent), and
//! the result is either a value or a gap with a data kind and a reason.

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, Decimal128, Document, JavaScriptCodeWithScope, Regex, Timestamp};
use proptest::prelude::*;

use super::fixture::{compiled, event, oid};
use crate::event::Operation;
use crate::mapping::convert::convert;
use crate::mapping::decimal::{PG_NUMERIC_MAX_FRACTION_DIGITS, PG_NUMERIC_MAX_INTEGER_DIGITS};
use crate::mapping::rules::{Conversion, IntWidth};
use crate::mapping::{map_event, GapKind, Mapped, RowOp, SqlValue};
use crate::sink::text::pg_text;

/// Decimal-looking text, including exponents at and beyond the `i64` range.
fn number_text() -> impl Strategy<Value = String> {
    let exponent = prop_oneof![
        Just(String::new()),
        (-20i64..20).prop_map(|e| format!("e{e}")),
        any::<i64>().prop_map(|e| format!("e{e}")),
        Just("e-9223372036854775808".to_string()),
        Just("e9223372036854775807".to_string()),
        Just("e99999999999999999999999".to_string()),
        Just("E+131071".to_string()),
        Just("e-16383".to_string()),
    ];
    (
        "[+-]?",
        "[0-9]{0,6}",
        proptest::option::of("[0-9]{0,6}"),
        exponent,
    )
        .prop_map(|(sign, int, frac, exp)| match frac {
            Some(f) => format!("{sign}{int}.{f}{exp}"),
            None => format!("{sign}{int}{exp}"),
        })
}

fn hostile_string() -> impl Strategy<Value = String> {
    prop_oneof![
        number_text(),
        "[a-z0-9 ,\"\\\\{}]{0,16}",
        "\\PC{0,8}",
        Just("a\u{0}b".to_string()),
        Just("NaN".to_string()),
        Just("-Infinity".to_string()),
        "[0-9a-f]{24}",
        Just("0190f0f0-0000-7000-8000-00000000abcd".to_string()),
    ]
}

fn leaf() -> impl Strategy<Value = Bson> {
    prop_oneof![
        Just(Bson::Null),
        Just(Bson::Undefined),
        Just(Bson::MinKey),
        Just(Bson::MaxKey),
        any::<bool>().prop_map(Bson::Boolean),
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        any::<[u8; 16]>().prop_map(|b| Bson::Decimal128(Decimal128::from_bytes(b))),
        hostile_string().prop_map(Bson::String),
        hostile_string().prop_map(Bson::Symbol),
        any::<u8>().prop_map(|n| Bson::ObjectId(oid(n))),
        any::<i64>().prop_map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms))),
        (any::<u32>(), any::<u32>())
            .prop_map(|(time, increment)| Bson::Timestamp(Timestamp { time, increment })),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|bytes| Bson::Binary(Binary {
            subtype: BinarySubtype::Generic,
            bytes
        })),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(|bytes| Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes
        })),
        ("[a-z]{0,4}", "[imsx]{0,2}")
            .prop_map(|(pattern, options)| Bson::RegularExpression(Regex { pattern, options })),
        "[a-z]{0,6}".prop_map(Bson::JavaScriptCode),
        "[a-z]{0,6}".prop_map(
            |code| Bson::JavaScriptCodeWithScope(JavaScriptCodeWithScope {
                code,
                scope: doc! {"x": 1}
            })
        ),
    ]
}

fn any_bson() -> impl Strategy<Value = Bson> {
    leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Bson::Array),
            proptest::collection::btree_map("[a-zA-Z]{1,6}", inner, 0..4)
                .prop_map(|m| Bson::Document(m.into_iter().collect::<Document>())),
        ]
    })
}

fn every_conversion() -> Vec<Conversion> {
    vec![
        Conversion::Text {
            enum_labels: None,
            enum_type: None,
        },
        Conversion::Text {
            enum_labels: Some(vec!["open".into(), "closed".into()]),
            enum_type: Some("shop_status".into()),
        },
        Conversion::Int(IntWidth::I16),
        Conversion::Int(IntWidth::I32),
        Conversion::Int(IntWidth::I64),
        Conversion::Bool,
        Conversion::Numeric {
            precision_scale: None,
        },
        Conversion::Numeric {
            precision_scale: Some((38, 18)),
        },
        Conversion::Timestamptz,
        Conversion::Uuid,
        Conversion::Jsonb,
        Conversion::TextArray,
    ]
}

/// The gap kinds a value conversion may produce: data problems only.
const VALUE_GAPS: [GapKind; 5] = [
    GapKind::WrongType,
    GapKind::InvalidNumber,
    GapKind::InvalidDate,
    GapKind::NulInText,
    GapKind::InvalidReference,
];

/// Upper bound of the Postgres text of one converted value: numeric's own digit limits (an
/// exponent cannot make it larger), or a small multiple of the input's size.
fn text_bound(input: &Bson) -> usize {
    let numeric_max = PG_NUMERIC_MAX_INTEGER_DIGITS + PG_NUMERIC_MAX_FRACTION_DIGITS + 3;
    let input_size = input.clone().into_relaxed_extjson().to_string().len();
    numeric_max.max(8 * input_size + 64)
}

fn check_value(value: &Bson, conversion: &Conversion) -> Result<(), TestCaseError> {
    match convert(value, conversion, "f") {
        Ok(sql) => {
            prop_assert!(!matches!(sql, SqlValue::Ref(_)));
            let text = pg_text(&sql, &Default::default())
                .map_err(|r| TestCaseError::fail(format!("unresolved reference {r:?}")))?;
            let len = text.as_deref().map_or(0, str::len);
            prop_assert!(
                len <= text_bound(value),
                "{conversion:?} of {value:?} produced {len} bytes"
            );
            prop_assert!(text.as_deref().is_none_or(|t| !t.contains('\0')));
        }
        Err(e) => {
            prop_assert!(VALUE_GAPS.contains(&e.kind), "{conversion:?}: {e}");
            prop_assert!(
                e.reason.starts_with("f"),
                "reason names the field: {}",
                e.reason
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_bson_value_converts_to_a_bounded_value_or_a_data_gap(value in any_bson()) {
        for conversion in every_conversion() {
            check_value(&value, &conversion)?;
        }
    }

    #[test]
    fn decimal_text_with_any_exponent_is_a_bounded_number_or_a_gap(text in number_text()) {
        let value = Bson::String(text);
        for precision_scale in [None, Some((38, 18)), Some((5, 0))] {
            check_value(&value, &Conversion::Numeric { precision_scale })?;
        }
    }

    #[test]
    fn any_document_maps_to_row_operations_or_a_gap(
        fields in proptest::collection::btree_map(
            prop_oneof![
                Just("title".to_string()), Just("qty".to_string()), Just("count".to_string()),
                Just("big".to_string()), Just("flag".to_string()), Just("amount".to_string()),
                Just("free".to_string()), Just("at".to_string()), Just("token".to_string()),
                Just("meta".to_string()), Just("tags".to_string()), Just("buyerId".to_string()),
                Just("sellerId".to_string()), Just("lines".to_string()),
                Just("shipping".to_string()), Just("watcherIds".to_string()),
                Just("labels".to_string()), Just("body".to_string()), Just("deleted".to_string()),
                "[a-z]{1,5}",
            ],
            any_bson(),
            0..12,
        ),
        id in prop_oneof![
            any::<u8>().prop_map(|n| Bson::ObjectId(oid(n))),
            hostile_string().prop_map(Bson::String),
            any_bson(),
        ],
        collection in prop_oneof![Just("orders"), Just("ledger"), Just("notes")],
        operation in prop_oneof![
            Just(Operation::Insert), Just(Operation::Update), Just(Operation::Replace),
            Just(Operation::Delete), Just(Operation::Snapshot),
        ],
    ) {
        let mut document: Document = fields.into_iter().collect();
        document.insert("_id", id.clone());
        let mapping = compiled();
        let rules = mapping.rules(collection).expect("mapped");
        let mut e = event(collection, operation.clone(), Some(document));
        e.document_key = Some(id);
        match map_event(rules, &e) {
            Ok(Mapped::Skip) => {}
            Ok(Mapped::Ops(ops)) => {
                prop_assert!(!ops.is_empty());
                for op in &ops {
                    let (RowOp::Upsert { table, .. } | RowOp::Delete { table, .. } | RowOp::SoftDelete { table, .. }) = op;
                    prop_assert_eq!(table, &rules.table);
                }
            }
            Err(err) => prop_assert!(!err.reason.is_empty(), "{err:?}"),
        }
    }
}
