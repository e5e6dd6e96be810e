//! Property tests: decimal text round-trips exactly and mapping is a pure function.

use bson::{doc, Bson, Decimal128};
use proptest::prelude::*;

use super::fixture::{compiled, event, oid};
use crate::event::Operation;
use crate::mapping::convert::convert;
use crate::mapping::decimal::parse_decimal;
use crate::mapping::rules::Conversion;
use crate::mapping::{map_event, SqlValue};

/// The canonical text a sign + digit strings must map to, computed independently.
fn expected_text(negative: bool, int_digits: &str, frac_digits: &str) -> String {
    let int = int_digits.trim_start_matches('0');
    let frac = frac_digits.trim_end_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let body = if frac.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{frac}")
    };
    if negative && body != "0" {
        format!("-{body}")
    } else {
        body
    }
}

fn any_value() -> impl Strategy<Value = Bson> {
    prop_oneof![
        Just(Bson::Null),
        any::<i32>().prop_map(Bson::Int32),
        any::<i64>().prop_map(Bson::Int64),
        any::<f64>().prop_map(Bson::Double),
        "[a-z0-9\\.\\-]{0,12}".prop_map(Bson::String),
        any::<bool>().prop_map(Bson::Boolean),
        any::<u8>().prop_map(|n| Bson::ObjectId(oid(n))),
        any::<i64>().prop_map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms))),
        Just(Bson::Document(doc! { "value": "1.5", "city": "x" })),
        Just(Bson::Array(vec![Bson::String("a".into())])),
    ]
}

proptest! {
    #[test]
    fn decimal_strings_round_trip_exactly(negative in any::<bool>(), int in "[0-9]{1,20}", frac in "[0-9]{0,18}") {
        let input = format!("{}{int}.{frac}", if negative { "-" } else { "" });
        let text = parse_decimal(&input).expect("decimal syntax").to_text();
        prop_assert_eq!(&text, &expected_text(negative, &int, &frac));
        prop_assert_eq!(parse_decimal(&text).expect("canonical parses").to_text(), text.clone());
        let numeric = Conversion::Numeric { precision_scale: Some((38, 18)) };
        prop_assert_eq!(convert(&Bson::String(input.clone()), &numeric, "v"), Ok(SqlValue::Numeric(text.clone())));
        if int.trim_start_matches('0').len() + frac.len() <= 34 {
            let d: Decimal128 = input.parse().expect("fits decimal128");
            prop_assert_eq!(convert(&Bson::Decimal128(d), &numeric, "v"), Ok(SqlValue::Numeric(text)));
        }
    }

    #[test]
    fn doubles_map_to_text_that_parses_back_to_the_same_double(d in any::<f64>().prop_filter("finite", |d| d.is_finite())) {
        let numeric = Conversion::Numeric { precision_scale: None };
        let Ok(SqlValue::Numeric(text)) = convert(&Bson::Double(d), &numeric, "v") else {
            return Err(TestCaseError::fail("finite doubles convert"));
        };
        prop_assert_eq!(text.parse::<f64>().expect("decimal text"), d);
    }

    #[test]
    fn mixed_ids_always_satisfy_the_exactly_one_check(value in any_value(), hex in "[0-9a-fA-F]{24}", pick_hex in any::<bool>()) {
        let value = if pick_hex { Bson::String(hex) } else { value };
        let mapping = compiled();
        let rules = mapping.rules("orders").expect("mapped");
        let document = doc! { "_id": oid(1), "amount": { "value": "1" }, "sellerId": value.clone() };
        match map_event(rules, &event("orders", Operation::Insert, Some(document))) {
            Ok(crate::mapping::Mapped::Ops(ops)) => {
                let crate::mapping::RowOp::Upsert { columns, .. } = &ops[0] else {
                    return Err(TestCaseError::fail("expected an upsert"));
                };
                let get = |c: &str| columns.iter().find(|v| v.column == c).map(|v| v.value.clone());
                let (kind, fk, ext) = (get("seller_kind"), get("seller_id"), get("seller_ref"));
                let null = Some(SqlValue::Null);
                match kind {
                    Some(SqlValue::Text(k)) if k == "entity" => prop_assert!(fk != null && ext == null),
                    Some(SqlValue::Text(k)) if k == "template" => prop_assert!(fk == null && ext != null),
                    _ => prop_assert!(kind == null && fk == null && ext == null && value == Bson::Null),
                }
            }
            Ok(other) => return Err(TestCaseError::fail(format!("unexpected {other:?}"))),
            Err(e) => prop_assert!(!matches!(value, Bson::ObjectId(_) | Bson::String(_) | Bson::Null), "{e}"),
        }
    }

    #[test]
    fn mapping_is_deterministic(values in proptest::collection::vec(any_value(), 8)) {
        let fields = ["title", "qty", "amount", "at", "buyerId", "sellerId", "lines", "shipping"];
        let mut document = doc! { "_id": oid(1) };
        for (field, value) in fields.iter().zip(values) {
            document.insert(*field, value);
        }
        let mapping = compiled();
        let rules = mapping.rules("orders").expect("mapped");
        let e = event("orders", Operation::Insert, Some(document));
        prop_assert_eq!(map_event(rules, &e), map_event(rules, &e.clone()));
    }
}
