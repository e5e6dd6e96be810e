//! MongoDB's total order over BSON values: type brackets (MinKey < Null < numbers < String/Symbol <
//! Object < Array < BinData < ObjectId < Boolean < Date < Timestamp < Regex < MaxKey), exact
//! numeric comparison across Int32 / Int64 / Double / Decimal128 (a double is compared by its
//! exact binary value, so `NumberDecimal("0.1") < 0.1`), and field-by-field document and array
//! comparison. It owns ordering only: no paths, no matching.

use bson::{Bson, Decimal128, Document};
use std::cmp::Ordering;

/// The rank of a value's comparison bracket (numbers share one, String and Symbol share one).
pub(crate) fn type_rank(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 0,
        Bson::Undefined => 1,
        Bson::Null => 2,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => NUMBER_RANK,
        Bson::String(_) | Bson::Symbol(_) => 4,
        Bson::Document(_) => 5,
        Bson::Array(_) => 6,
        Bson::Binary(_) => 7,
        Bson::ObjectId(_) => 8,
        Bson::Boolean(_) => 9,
        Bson::DateTime(_) => 10,
        Bson::Timestamp(_) => 11,
        Bson::RegularExpression(_) => 12,
        Bson::DbPointer(_) => 13,
        Bson::JavaScriptCode(_) => 14,
        Bson::JavaScriptCodeWithScope(_) => 15,
        Bson::MaxKey => MAX_RANK,
    }
}

/// Rank of the numbers bracket.
pub(crate) const NUMBER_RANK: u8 = 3;
/// Rank of MaxKey, the highest bracket.
pub(crate) const MAX_RANK: u8 = 16;

/// The bracket rank of the type a `$type` operand names (a name, a number, or "number"); `None`
/// when the operand names no known type.
pub(crate) fn rank_of_type(operand: &Bson) -> Option<u8> {
    let name = match operand {
        Bson::String(s) => s.clone(),
        other => format!("{}", crate::store::value::as_i64(other)?),
    };
    let rank = match name.as_str() {
        "number" | "double" | "1" | "int" | "16" | "long" | "18" | "decimal" | "19" => NUMBER_RANK,
        "minKey" | "-1" => 0,
        "undefined" | "6" => 1,
        "null" | "10" => 2,
        "string" | "2" | "symbol" | "14" => 4,
        "object" | "3" => 5,
        "array" | "4" => 6,
        "binData" | "5" => 7,
        "objectId" | "7" => 8,
        "bool" | "8" => 9,
        "date" | "9" => 10,
        "timestamp" | "17" => 11,
        "regex" | "11" => 12,
        "dbPointer" | "12" => 13,
        "javascript" | "13" => 14,
        "javascriptWithScope" | "15" => 15,
        "maxKey" | "127" => MAX_RANK,
        _ => return None,
    };
    Some(rank)
}

/// True when both values are in the same comparison bracket (numbers with numbers, ...).
pub(crate) fn same_bracket(a: &Bson, b: &Bson) -> bool {
    type_rank(a) == type_rank(b)
}

/// Total order over BSON values following MongoDB's comparison rules.
pub(crate) fn compare(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        _ if ra == NUMBER_RANK => compare_numbers(a, b),
        (Bson::String(x) | Bson::Symbol(x), Bson::String(y) | Bson::Symbol(y)) => x.cmp(y),
        (Bson::Document(x), Bson::Document(y)) => compare_docs(x, y),
        (Bson::Array(x), Bson::Array(y)) => {
            for (p, q) in x.iter().zip(y.iter()) {
                let o = compare(p, q);
                if o != Ordering::Equal {
                    return o;
                }
            }
            x.len().cmp(&y.len())
        }
        (Bson::Binary(x), Bson::Binary(y)) => (x.bytes.len(), u8::from(x.subtype), &x.bytes)
            .cmp(&(y.bytes.len(), u8::from(y.subtype), &y.bytes)),
        (Bson::ObjectId(x), Bson::ObjectId(y)) => x.bytes().cmp(&y.bytes()),
        (Bson::Boolean(x), Bson::Boolean(y)) => x.cmp(y),
        (Bson::DateTime(x), Bson::DateTime(y)) => x.cmp(y),
        (Bson::Timestamp(x), Bson::Timestamp(y)) => {
            (x.time, x.increment).cmp(&(y.time, y.increment))
        }
        (Bson::RegularExpression(x), Bson::RegularExpression(y)) => {
            (&x.pattern, &x.options).cmp(&(&y.pattern, &y.options))
        }
        (Bson::JavaScriptCode(x), Bson::JavaScriptCode(y)) => x.cmp(y),
        (Bson::JavaScriptCodeWithScope(x), Bson::JavaScriptCodeWithScope(y)) => x
            .code
            .cmp(&y.code)
            .then_with(|| compare_docs(&x.scope, &y.scope)),
        (Bson::DbPointer(_), Bson::DbPointer(_)) => serialized(a).cmp(&serialized(b)),
        _ => Ordering::Equal,
    }
}

fn serialized(v: &Bson) -> Vec<u8> {
    let mut buf = Vec::new();
    // Writing an in-memory document into a Vec cannot fail.
    let _ = bson::doc! { "": v.clone() }.to_writer(&mut buf);
    buf
}

/// Documents compare element by element: bracket, then field name, then value; a prefix is less.
pub(crate) fn compare_docs(x: &Document, y: &Document) -> Ordering {
    for ((ka, va), (kb, vb)) in x.iter().zip(y.iter()) {
        let o = type_rank(va)
            .cmp(&type_rank(vb))
            .then_with(|| ka.cmp(kb))
            .then_with(|| compare(va, vb));
        if o != Ordering::Equal {
            return o;
        }
    }
    x.len().cmp(&y.len())
}

/// MongoDB equality (numbers compare by value across types).
pub(crate) fn values_equal(a: &Bson, b: &Bson) -> bool {
    compare(a, b) == Ordering::Equal
}

/// A decoded number for exact comparison.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    NaN,
    Inf {
        neg: bool,
    },
    /// `(-1)^neg * coef * 10^exp`.
    Dec {
        neg: bool,
        coef: u128,
        exp: i32,
    },
}

/// 10^38: coefficients are kept below it so scaling to 38 digits fits in a u128.
const COEF_LIMIT: u128 = 100_000_000_000_000_000_000_000_000_000_000_000_000;
/// Largest canonical Decimal128 coefficient (34 digits).
const DEC128_MAX_COEF: u128 = 9_999_999_999_999_999_999_999_999_999_999_999;

fn decode_decimal(d: &Decimal128) -> Num {
    let bits = u128::from_le_bytes(d.bytes());
    let neg = bits >> 127 == 1;
    let combination = (bits >> 122) & 0x1F;
    if combination == 0x1F {
        return Num::NaN;
    }
    if combination == 0x1E {
        return Num::Inf { neg };
    }
    if (bits >> 125) & 0b11 == 0b11 {
        // The large-coefficient form always exceeds 34 digits: non-canonical, i.e. zero.
        let exp = ((bits >> 111) & 0x3FFF) as i32 - 6176;
        return Num::Dec { neg, coef: 0, exp };
    }
    let exp = ((bits >> 113) & 0x3FFF) as i32 - 6176;
    let coef = bits & ((1u128 << 113) - 1);
    let coef = if coef > DEC128_MAX_COEF { 0 } else { coef };
    Num::Dec { neg, coef, exp }
}

fn from_i64(i: i64) -> Num {
    Num::Dec {
        neg: i < 0,
        coef: u128::from(i.unsigned_abs()),
        exp: 0,
    }
}

/// The exact decimal value of a double, when it fits in 38 digits.
fn from_f64(f: f64) -> Option<Num> {
    if f.is_nan() {
        return Some(Num::NaN);
    }
    if f.is_infinite() {
        return Some(Num::Inf { neg: f < 0.0 });
    }
    let bits = f.to_bits();
    let neg = bits >> 63 == 1;
    let biased = ((bits >> 52) & 0x7FF) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (mut m, mut e) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    };
    if m == 0 {
        return Some(Num::Dec {
            neg,
            coef: 0,
            exp: 0,
        });
    }
    while m & 1 == 0 && e < 0 {
        m >>= 1;
        e += 1;
    }
    let mut coef = u128::from(m);
    if e >= 0 {
        for _ in 0..e {
            coef = coef.checked_mul(2).filter(|c| *c < COEF_LIMIT)?;
        }
        return Some(Num::Dec { neg, coef, exp: 0 });
    }
    // m * 2^e = m * 5^-e / 10^-e
    for _ in 0..(-e) {
        coef = coef.checked_mul(5).filter(|c| *c < COEF_LIMIT)?;
    }
    Some(Num::Dec { neg, coef, exp: e })
}

fn to_num(v: &Bson) -> Option<Num> {
    match v {
        Bson::Int32(i) => Some(from_i64(i64::from(*i))),
        Bson::Int64(i) => Some(from_i64(*i)),
        Bson::Double(f) => from_f64(*f),
        Bson::Decimal128(d) => Some(decode_decimal(d)),
        _ => None,
    }
}

fn digits(mut c: u128) -> i32 {
    let mut n = 0;
    while c > 0 {
        c /= 10;
        n += 1;
    }
    n
}

fn magnitude_cmp(c1: u128, e1: i32, c2: u128, e2: i32) -> Ordering {
    match (c1 == 0, c2 == 0) {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Less,
        (false, true) => return Ordering::Greater,
        _ => {}
    }
    let (d1, d2) = (digits(c1), digits(c2));
    let o = (e1 + d1).cmp(&(e2 + d2));
    if o != Ordering::Equal {
        return o;
    }
    // Same adjusted exponent: scale both coefficients to 38 digits and compare.
    let scale = |c: u128, d: i32| c * 10u128.pow((38 - d).max(0) as u32);
    scale(c1, d1).cmp(&scale(c2, d2))
}

fn num_cmp(a: Num, b: Num) -> Ordering {
    use Num::*;
    let class = |n: &Num| match n {
        NaN => 0,
        Inf { neg: true } => 1,
        Dec { .. } => 2,
        Inf { neg: false } => 3,
    };
    match (a, b) {
        (
            Dec {
                neg: n1,
                coef: c1,
                exp: e1,
            },
            Dec {
                neg: n2,
                coef: c2,
                exp: e2,
            },
        ) => {
            let n1 = n1 && c1 != 0;
            let n2 = n2 && c2 != 0;
            match (n1, n2) {
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => magnitude_cmp(c1, e1, c2, e2),
                (true, true) => magnitude_cmp(c2, e2, c1, e1),
            }
        }
        _ => class(&a).cmp(&class(&b)),
    }
}

/// The nearest double of a number (correctly rounded, so it is monotonic).
fn approx(v: &Bson) -> f64 {
    match v {
        Bson::Int32(i) => f64::from(*i),
        Bson::Int64(i) => *i as f64,
        Bson::Double(f) => *f,
        Bson::Decimal128(d) => match decode_decimal(d) {
            Num::NaN => f64::NAN,
            Num::Inf { neg } => {
                if neg {
                    f64::NEG_INFINITY
                } else {
                    f64::INFINITY
                }
            }
            Num::Dec { neg, coef, exp } => {
                let sign = if neg { "-" } else { "" };
                format!("{sign}{coef}e{exp}").parse().unwrap_or(f64::NAN)
            }
        },
        _ => f64::NAN,
    }
}

/// A little-endian big unsigned integer, just enough to compare c * 10^a * 2^b exactly.
struct Big(Vec<u32>);

impl Big {
    fn from_u128(mut v: u128) -> Big {
        let mut limbs = Vec::new();
        while v > 0 {
            limbs.push(v as u32);
            v >>= 32;
        }
        Big(limbs)
    }

    fn mul_small(&mut self, m: u32, times: u32) {
        for _ in 0..times {
            let mut carry = 0u64;
            for limb in &mut self.0 {
                let x = u64::from(*limb) * u64::from(m) + carry;
                *limb = x as u32;
                carry = x >> 32;
            }
            if carry > 0 {
                self.0.push(carry as u32);
            }
        }
    }

    fn cmp(&self, other: &Big) -> Ordering {
        let trim = |v: &[u32]| v.iter().rposition(|l| *l != 0).map_or(0, |p| p + 1);
        let (a, b) = (&self.0[..trim(&self.0)], &other.0[..trim(&other.0)]);
        a.len()
            .cmp(&b.len())
            .then_with(|| a.iter().rev().cmp(b.iter().rev()))
    }
}

/// Exact comparison of a Decimal128 with a finite, non-zero double whose nearest-double images
/// are equal (so both share a sign and a magnitude close enough for small big integers).
fn decimal_vs_double(d: &Decimal128, f: f64) -> Ordering {
    let Num::Dec { neg, coef, exp } = decode_decimal(d) else {
        return Ordering::Equal;
    };
    let bits = f.to_bits();
    let biased = ((bits >> 52) & 0x7FF) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (m, k) = if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    };
    // coef * 10^exp  vs  m * 2^k
    let mut left = Big::from_u128(coef);
    let mut right = Big::from_u128(u128::from(m));
    left.mul_small(10, exp.max(0) as u32);
    left.mul_small(2, (-k).max(0) as u32);
    right.mul_small(2, k.max(0) as u32);
    right.mul_small(10, (-exp).max(0) as u32);
    let o = left.cmp(&right);
    if neg {
        o.reverse()
    } else {
        o
    }
}

/// Compares two numbers exactly (NaN sorts below every number and equals NaN).
pub(crate) fn compare_numbers(a: &Bson, b: &Bson) -> Ordering {
    match (a, b) {
        (Bson::Int32(x), Bson::Int32(y)) => x.cmp(y),
        (Bson::Int64(x), Bson::Int64(y)) => x.cmp(y),
        (Bson::Int32(x), Bson::Int64(y)) => i64::from(*x).cmp(y),
        (Bson::Int64(x), Bson::Int32(y)) => x.cmp(&i64::from(*y)),
        (Bson::Double(x), Bson::Double(y)) => match (x.is_nan(), y.is_nan()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            _ => x.partial_cmp(y).unwrap_or(Ordering::Equal),
        },
        _ => match (to_num(a), to_num(b)) {
            (Some(x), Some(y)) => num_cmp(x, y),
            _ => {
                // A double without a short exact decimal form against a Decimal128: the
                // correctly rounded images decide unless they are equal.
                let (x, y) = (approx(a), approx(b));
                match (x.is_nan(), y.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Less,
                    (false, true) => Ordering::Greater,
                    _ if x != y => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
                    _ => match (a, b) {
                        (Bson::Decimal128(d), Bson::Double(f)) => decimal_vs_double(d, *f),
                        (Bson::Double(f), Bson::Decimal128(d)) => {
                            decimal_vs_double(d, *f).reverse()
                        }
                        _ => Ordering::Equal,
                    },
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId};
    use std::str::FromStr;

    fn dec(s: &str) -> Bson {
        Bson::Decimal128(Decimal128::from_str(s).expect("decimal"))
    }

    #[test]
    fn numbers_compare_exactly_across_types() {
        let big = 1i64 << 53;
        assert_eq!(
            compare(&Bson::Int64(big + 1), &Bson::Double(big as f64)),
            Ordering::Greater
        );
        assert_eq!(
            compare(&Bson::Int32(3), &Bson::Double(3.0)),
            Ordering::Equal
        );
        assert_eq!(compare(&dec("1.0"), &Bson::Int32(1)), Ordering::Equal);
        assert_eq!(compare(&dec("0.1"), &Bson::Double(0.1)), Ordering::Less);
        assert_eq!(compare(&dec("-2.5"), &Bson::Double(-2.5)), Ordering::Equal);
        assert_eq!(
            compare(
                &Bson::Double(-0.1),
                &dec("-0.1000000000000000055511151231257828")
            ),
            Ordering::Greater
        );
        assert_eq!(
            compare(&dec("1E+40"), &Bson::Int64(i64::MAX)),
            Ordering::Greater
        );
        assert_eq!(compare(&dec("-0"), &Bson::Int32(0)), Ordering::Equal);
        assert_eq!(
            compare(&Bson::Double(f64::NAN), &Bson::Double(f64::NEG_INFINITY)),
            Ordering::Less
        );
        assert_eq!(
            compare(&dec("NaN"), &Bson::Double(f64::NAN)),
            Ordering::Equal
        );
        assert_eq!(
            compare(&dec("Infinity"), &Bson::Double(f64::MAX)),
            Ordering::Greater
        );
    }

    #[test]
    fn brackets_follow_mongodb_type_order() {
        let ordered = vec![
            Bson::MinKey,
            Bson::Null,
            Bson::Int32(5),
            Bson::String("a".into()),
            Bson::Document(doc! {}),
            Bson::Array(vec![]),
            Bson::Binary(bson::Binary {
                subtype: bson::spec::BinarySubtype::Generic,
                bytes: vec![1],
            }),
            Bson::ObjectId(ObjectId::new()),
            Bson::Boolean(false),
            Bson::DateTime(bson::DateTime::from_millis(0)),
            Bson::Timestamp(bson::Timestamp {
                time: 0,
                increment: 0,
            }),
            Bson::RegularExpression(bson::Regex {
                pattern: "a".into(),
                options: String::new(),
            }),
            Bson::MaxKey,
        ];
        for pair in ordered.windows(2) {
            assert_eq!(compare(&pair[0], &pair[1]), Ordering::Less, "{pair:?}");
        }
    }

    #[test]
    fn documents_compare_by_bracket_then_name_then_value() {
        let a = Bson::Document(doc! { "a": 2 });
        let b = Bson::Document(doc! { "b": 1 });
        assert_eq!(compare(&a, &b), Ordering::Less);
        let c = Bson::Document(doc! { "z": 1 });
        let d = Bson::Document(doc! { "a": "x" });
        assert_eq!(compare(&c, &d), Ordering::Less);
        let e = Bson::Document(doc! { "a": 1 });
        let f = Bson::Document(doc! { "a": 1, "b": 0 });
        assert_eq!(compare(&e, &f), Ordering::Less);
    }
}
