//! Each type conversion and its edge values, straight through `convert`.

use bson::spec::BinarySubtype;
use bson::{doc, Binary, Bson, DateTime, Decimal128};
use serde_json::json;

use crate::mapping::convert::{
    convert, PgTimestamp, PG_TIMESTAMP_MAX_MILLIS, PG_TIMESTAMP_MIN_MILLIS,
};
use crate::mapping::rules::{Conversion, IntWidth};
use crate::mapping::{GapKind, MappingError, SqlValue};

fn text() -> Conversion {
    Conversion::Text {
        enum_labels: None,
        enum_type: None,
    }
}
fn money() -> Conversion {
    Conversion::Numeric {
        precision_scale: Some((38, 18)),
    }
}
fn dec(s: &str) -> Bson {
    Bson::Decimal128(s.parse::<Decimal128>().expect("valid decimal128 literal"))
}
fn kind(result: Result<SqlValue, MappingError>) -> GapKind {
    result.expect_err("conversion should fail").kind
}
fn numeric(value: Bson, conversion: &Conversion) -> String {
    match convert(&value, conversion, "amount") {
        Ok(SqlValue::Numeric(s)) => s,
        other => panic!("expected a numeric, got {other:?}"),
    }
}

#[test]
fn text_takes_strings_only_and_rejects_nul() {
    assert_eq!(
        convert(&Bson::String("héllo".into()), &text(), "t"),
        Ok(SqlValue::Text("héllo".into()))
    );
    let err = convert(&Bson::String("a\0b".into()), &text(), "profile.name").unwrap_err();
    assert_eq!(err.kind, GapKind::NulInText);
    assert_eq!(
        err.reason,
        "profile.name: text contains a NUL character at byte 1"
    );
    let err = convert(&Bson::Int32(5), &text(), "title").unwrap_err();
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::WrongType,
            "title: expected a string, found BSON int"
        )
    );
}

#[test]
fn text_for_an_enum_column_must_be_one_of_its_labels() {
    let conv = Conversion::Text {
        enum_labels: Some(vec!["new".into(), "paid".into()]),
        enum_type: Some("order_status".into()),
    };
    assert_eq!(
        convert(&Bson::String("paid".into()), &conv, "status"),
        Ok(SqlValue::Text("paid".into()))
    );
    let err = convert(&Bson::String("Paid".into()), &conv, "status").unwrap_err();
    assert_eq!(err.kind, GapKind::WrongType);
    assert_eq!(
        err.reason,
        "status: \"Paid\" is not a label of order_status (allowed: new, paid)"
    );
}

#[test]
fn integers_accept_int_long_and_integral_doubles_within_the_column_range() {
    let small = Conversion::Int(IntWidth::I16);
    let int = Conversion::Int(IntWidth::I32);
    let big = Conversion::Int(IntWidth::I64);
    assert_eq!(
        convert(&Bson::Int32(32767), &small, "q"),
        Ok(SqlValue::Int(32767))
    );
    assert_eq!(
        convert(&Bson::Int32(-32768), &small, "q"),
        Ok(SqlValue::Int(-32768))
    );
    assert_eq!(
        kind(convert(&Bson::Int32(32768), &small, "q")),
        GapKind::InvalidNumber
    );
    assert_eq!(
        convert(&Bson::Int64(2_147_483_647), &int, "q"),
        Ok(SqlValue::Int(2_147_483_647))
    );
    let err = convert(&Bson::Int64(2_147_483_648), &int, "count").unwrap_err();
    assert_eq!(
        err.reason,
        "count: 2147483648 is outside the integer range -2147483648..=2147483647"
    );
    assert_eq!(
        convert(&Bson::Int64(i64::MIN), &big, "q"),
        Ok(SqlValue::Int(i64::MIN))
    );
    assert_eq!(
        convert(&Bson::Double(42.0), &int, "q"),
        Ok(SqlValue::Int(42))
    );
    assert_eq!(
        convert(&Bson::Double(i64::MIN as f64), &big, "q"),
        Ok(SqlValue::Int(i64::MIN))
    );
    for bad in [42.5, f64::NAN, f64::INFINITY, -(i64::MIN as f64)] {
        assert_eq!(
            kind(convert(&Bson::Double(bad), &big, "q")),
            GapKind::InvalidNumber,
            "{bad}"
        );
    }
    assert_eq!(
        kind(convert(&Bson::String("5".into()), &int, "q")),
        GapKind::WrongType
    );
    assert_eq!(kind(convert(&dec("5"), &int, "q")), GapKind::WrongType);
}

#[test]
fn booleans_take_bson_booleans_only() {
    assert_eq!(
        convert(&Bson::Boolean(true), &Conversion::Bool, "f"),
        Ok(SqlValue::Bool(true))
    );
    assert_eq!(
        kind(convert(&Bson::Int32(1), &Conversion::Bool, "f")),
        GapKind::WrongType
    );
    assert_eq!(
        kind(convert(
            &Bson::String("true".into()),
            &Conversion::Bool,
            "f"
        )),
        GapKind::WrongType
    );
}

#[test]
fn decimal128_reaches_numeric_exactly_including_34_digit_values() {
    let unconstrained = Conversion::Numeric {
        precision_scale: None,
    };
    assert_eq!(
        numeric(dec("1234567890123456789012345678901234"), &unconstrained),
        "1234567890123456789012345678901234"
    );
    assert_eq!(
        numeric(dec("1234567890123456.789012345678901234"), &money()),
        "1234567890123456.789012345678901234"
    );
    assert_eq!(
        numeric(dec("-0.000000000000000001"), &money()),
        "-0.000000000000000001"
    );
    assert_eq!(numeric(dec("1E-18"), &money()), "0.000000000000000001");
    assert_eq!(
        numeric(
            dec("9.999999999999999999999999999999999E+6144"),
            &unconstrained
        )
        .len(),
        6145
    );
    assert_eq!(numeric(dec("-0"), &money()), "0");
    assert_eq!(numeric(dec("1.000000000000000000000000"), &money()), "1");
    // 38 digits exceed Decimal128, but a decimal string can carry the full numeric(38,18) range.
    let widest = "99999999999999999999.999999999999999999";
    assert_eq!(numeric(Bson::String(widest.into()), &money()), widest);
}

#[test]
fn decimals_that_do_not_fit_precision_or_scale_are_invalid_not_rounded() {
    let err = convert(&dec("100000000000000000000"), &money(), "amount.value").unwrap_err();
    assert_eq!(err.kind, GapKind::InvalidNumber);
    assert_eq!(
        err.reason,
        "amount.value: 100000000000000000000 has 21 integer digits but numeric(38,18) allows 20"
    );
    let err = convert(&dec("1E-19"), &money(), "amount.value").unwrap_err();
    assert_eq!(err.kind, GapKind::InvalidNumber);
    assert!(
        err.reason
            .contains("19 fractional digits but numeric(38,18) keeps 18 (no rounding)"),
        "{}",
        err.reason
    );
    let cents = Conversion::Numeric {
        precision_scale: Some((10, 2)),
    };
    assert_eq!(
        kind(convert(&Bson::Double(0.125), &cents, "p")),
        GapKind::InvalidNumber
    );
    assert_eq!(numeric(Bson::Double(0.12), &cents), "0.12");
}

#[test]
fn nan_and_infinities_are_never_money() {
    for special in ["NaN", "Infinity", "-Infinity"] {
        let err = convert(&dec(special), &money(), "amount").unwrap_err();
        assert_eq!(err.kind, GapKind::InvalidNumber, "{special}");
        assert_eq!(
            err.reason,
            format!("amount: decimal {special} is not a finite number")
        );
    }
    for special in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            kind(convert(&Bson::Double(special), &money(), "amount")),
            GapKind::InvalidNumber
        );
    }
    assert_eq!(
        kind(convert(&Bson::String("NaN".into()), &money(), "amount")),
        GapKind::InvalidNumber
    );
}

#[test]
fn doubles_use_their_shortest_round_trip_decimal_form() {
    assert_eq!(numeric(Bson::Double(0.1), &money()), "0.1");
    assert_eq!(
        numeric(Bson::Double(0.1 + 0.2), &money()),
        "0.30000000000000004"
    );
    assert_eq!(
        numeric(Bson::Double(1e-18), &money()),
        "0.000000000000000001"
    );
    assert_eq!(numeric(Bson::Double(-2.5), &money()), "-2.5");
    assert_eq!(numeric(Bson::Double(-0.0), &money()), "0");
    assert_eq!(
        numeric(
            Bson::Double(1e20),
            &Conversion::Numeric {
                precision_scale: None
            }
        ),
        "100000000000000000000"
    );
    assert_eq!(
        kind(convert(&Bson::Double(1e21), &money(), "amount")),
        GapKind::InvalidNumber
    );
}

#[test]
fn decimal_strings_and_integers_reach_numeric_exactly() {
    assert_eq!(numeric(Bson::String("12.50".into()), &money()), "12.5");
    assert_eq!(numeric(Bson::String("-3e2".into()), &money()), "-300");
    assert_eq!(numeric(Bson::Int32(-7), &money()), "-7");
    assert_eq!(
        numeric(Bson::Int64(i64::MAX), &money()),
        "9223372036854775807"
    );
    let err = convert(&Bson::String("12,50".into()), &money(), "price").unwrap_err();
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::InvalidNumber,
            "price: string \"12,50\" is not a decimal number"
        )
    );
    assert_eq!(
        kind(convert(&Bson::Boolean(true), &money(), "price")),
        GapKind::WrongType
    );
}

#[test]
fn dates_are_bson_dates_within_the_postgres_range() {
    let at = |ms: i64| {
        convert(
            &Bson::DateTime(DateTime::from_millis(ms)),
            &Conversion::Timestamptz,
            "createdAt",
        )
    };
    let ts = |ms: i64| SqlValue::Timestamptz(PgTimestamp::from_millis(ms).expect("in range"));
    assert_eq!(at(1_700_000_000_123), Ok(ts(1_700_000_000_123)));
    let earliest = "-4713-11-24T00:00:00Z"
        .parse::<chrono::DateTime<chrono::Utc>>()
        .expect("valid");
    assert_eq!(earliest.timestamp_millis(), PG_TIMESTAMP_MIN_MILLIS);
    assert_eq!(at(PG_TIMESTAMP_MIN_MILLIS), Ok(ts(PG_TIMESTAMP_MIN_MILLIS)));
    let err = at(PG_TIMESTAMP_MIN_MILLIS - 1).unwrap_err();
    assert_eq!(err.kind, GapKind::InvalidDate);
    assert_eq!(
        err.reason,
        "createdAt: date -210866803200001 ms since the epoch is outside the timestamptz range"
    );
    // Years past chrono's reach (262142) but inside Postgres' (294276) land.
    let beyond_chrono = chrono::DateTime::<chrono::Utc>::MAX_UTC.timestamp_millis() + 1;
    assert_eq!(at(beyond_chrono), Ok(ts(beyond_chrono)));
    assert_eq!(at(PG_TIMESTAMP_MAX_MILLIS), Ok(ts(PG_TIMESTAMP_MAX_MILLIS)));
    assert_eq!(kind(at(PG_TIMESTAMP_MAX_MILLIS + 1)), GapKind::InvalidDate);
    assert_eq!(kind(at(i64::MAX)), GapKind::InvalidDate);
    assert_eq!(kind(at(i64::MIN)), GapKind::InvalidDate);
    let iso = convert(
        &Bson::String("2024-01-01T00:00:00Z".into()),
        &Conversion::Timestamptz,
        "createdAt",
    );
    assert_eq!(kind(iso), GapKind::WrongType);
}

#[test]
fn uuids_come_from_binary_subtype_4_or_hyphenated_strings() {
    let id = uuid::Uuid::parse_str("6f1c2a4e-8b3d-4f5a-9c7e-0123456789ab").expect("valid");
    let bin = Bson::Binary(Binary {
        subtype: BinarySubtype::Uuid,
        bytes: id.as_bytes().to_vec(),
    });
    assert_eq!(
        convert(&bin, &Conversion::Uuid, "u"),
        Ok(SqlValue::Uuid(id))
    );
    assert_eq!(
        convert(&Bson::String(id.to_string()), &Conversion::Uuid, "u"),
        Ok(SqlValue::Uuid(id))
    );
    let generic = Bson::Binary(Binary {
        subtype: BinarySubtype::Generic,
        bytes: id.as_bytes().to_vec(),
    });
    assert_eq!(
        kind(convert(&generic, &Conversion::Uuid, "u")),
        GapKind::WrongType
    );
    assert_eq!(
        kind(convert(
            &Bson::String(id.simple().to_string()),
            &Conversion::Uuid,
            "u"
        )),
        GapKind::WrongType
    );
    assert_eq!(
        kind(convert(
            &Bson::String("not-a-uuid-but-thirty-six-chars-long".into()),
            &Conversion::Uuid,
            "u"
        )),
        GapKind::WrongType
    );
}

#[test]
fn jsonb_is_relaxed_extended_json_and_keeps_decimals_exact() {
    let value = Bson::Document(doc! {
        "txHash": "0xabc",
        "confirmations": 12,
        "fee": dec("0.000000000000000001"),
        "seenAt": DateTime::from_millis(0),
        "hops": [1_i64, "two"],
    });
    let expected = json!({
        "txHash": "0xabc",
        "confirmations": 12,
        "fee": {"$numberDecimal": "1E-18"},
        "seenAt": {"$date": "1970-01-01T00:00:00Z"},
        "hops": [1, "two"],
    });
    assert_eq!(
        convert(&value, &Conversion::Jsonb, "blockchain"),
        Ok(SqlValue::Jsonb(expected))
    );
}

#[test]
fn jsonb_rejects_nul_anywhere_in_keys_or_values() {
    let nested = Bson::Document(doc! { "a": { "b": ["ok", "bad\0"] } });
    let err = convert(&nested, &Conversion::Jsonb, "metadata").unwrap_err();
    assert_eq!(err.kind, GapKind::NulInText);
    assert_eq!(
        err.reason,
        "metadata.a.b[1]: text contains a NUL character at byte 3"
    );
    let key = Bson::Document(doc! { "k\0": 1 });
    assert_eq!(
        kind(convert(&key, &Conversion::Jsonb, "metadata")),
        GapKind::NulInText
    );
}

#[test]
fn text_arrays_take_arrays_of_strings_only() {
    let tags = Bson::Array(vec![Bson::String("a".into()), Bson::String("b".into())]);
    assert_eq!(
        convert(&tags, &Conversion::TextArray, "tags"),
        Ok(SqlValue::TextArray(vec!["a".into(), "b".into()]))
    );
    assert_eq!(
        convert(&Bson::Array(vec![]), &Conversion::TextArray, "tags"),
        Ok(SqlValue::TextArray(vec![]))
    );
    let mixed = Bson::Array(vec![Bson::String("a".into()), Bson::Int32(1)]);
    let err = convert(&mixed, &Conversion::TextArray, "tags").unwrap_err();
    assert_eq!(
        (err.kind, err.reason.as_str()),
        (
            GapKind::WrongType,
            "tags[1]: expected a string, found BSON int"
        )
    );
    let nul = Bson::Array(vec![Bson::String("a\0".into())]);
    assert_eq!(
        kind(convert(&nul, &Conversion::TextArray, "tags")),
        GapKind::NulInText
    );
    assert_eq!(
        kind(convert(
            &Bson::String("a".into()),
            &Conversion::TextArray,
            "tags"
        )),
        GapKind::WrongType
    );
}
