//! Index keys: a compact, totally ordered key for one BSON value (the `_id` index and unique
//! secondary indexes), ordered exactly like MongoDB compares values, plus the sentinels that bound
//! a type bracket in range scans. Equal keys are equal values (so `1`, `1.0` and `NumberLong(1)`
//! are one `_id`, as in MongoDB). It knows nothing about documents or collections.

use super::order::{compare, type_rank, NUMBER_RANK};
use bson::{oid::ObjectId, Bson};
use std::cmp::Ordering;

/// An ordered index key.
#[derive(Debug, Clone)]
pub(crate) enum IdKey {
    /// Int32, Int64, or a double with an exact 64-bit integer value.
    Int(i64),
    Oid([u8; 12]),
    Str(Box<str>),
    Other(Box<Bson>),
    /// Below every value of the bracket with this rank (a range bound, never stored).
    Low(u8),
    /// Above every value of the bracket with this rank (a range bound, never stored).
    High(u8),
}

impl IdKey {
    /// The key of a value.
    pub(crate) fn of(v: &Bson) -> IdKey {
        match v {
            Bson::Int32(i) => IdKey::Int(i64::from(*i)),
            Bson::Int64(i) => IdKey::Int(*i),
            Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => IdKey::Int(*d as i64),
            Bson::ObjectId(o) => IdKey::Oid(o.bytes()),
            Bson::String(s) => IdKey::Str(s.as_str().into()),
            other => IdKey::Other(Box::new(other.clone())),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            IdKey::Int(_) => NUMBER_RANK,
            IdKey::Oid(_) => type_rank(&Bson::ObjectId(ObjectId::from_bytes([0; 12]))),
            IdKey::Str(_) => type_rank(&Bson::String(String::new())),
            IdKey::Other(b) => type_rank(b),
            IdKey::Low(r) | IdKey::High(r) => *r,
        }
    }

    /// 0 below the bracket, 1 a value, 2 above the bracket.
    fn phase(&self) -> u8 {
        match self {
            IdKey::Low(_) => 0,
            IdKey::High(_) => 2,
            _ => 1,
        }
    }

    fn to_bson(&self) -> Bson {
        match self {
            IdKey::Int(i) => Bson::Int64(*i),
            IdKey::Oid(b) => Bson::ObjectId(ObjectId::from_bytes(*b)),
            IdKey::Str(s) => Bson::String(s.to_string()),
            IdKey::Other(b) => (**b).clone(),
            IdKey::Low(_) | IdKey::High(_) => Bson::Null,
        }
    }
}

impl Ord for IdKey {
    fn cmp(&self, other: &Self) -> Ordering {
        let o = self
            .rank()
            .cmp(&other.rank())
            .then_with(|| self.phase().cmp(&other.phase()));
        if o != Ordering::Equal || self.phase() != 1 {
            return o;
        }
        match (self, other) {
            (IdKey::Int(a), IdKey::Int(b)) => a.cmp(b),
            (IdKey::Oid(a), IdKey::Oid(b)) => a.cmp(b),
            (IdKey::Str(a), IdKey::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
            (IdKey::Other(a), IdKey::Other(b)) => compare(a, b),
            (IdKey::Other(a), b) => compare(a, &b.to_bson()),
            (a, IdKey::Other(b)) => compare(&a.to_bson(), b),
            _ => Ordering::Equal,
        }
    }
}

impl PartialOrd for IdKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for IdKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for IdKey {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::str::FromStr;

    #[test]
    fn equal_numbers_of_different_types_are_one_key_and_brackets_stay_apart() {
        let mut m = BTreeMap::new();
        m.insert(IdKey::of(&Bson::Int32(1)), "int");
        assert!(m.contains_key(&IdKey::of(&Bson::Double(1.0))));
        assert!(m.contains_key(&IdKey::of(&Bson::Int64(1))));
        let one = bson::Decimal128::from_str("1.00").expect("decimal");
        assert!(m.contains_key(&IdKey::of(&Bson::Decimal128(one))));
        m.insert(IdKey::of(&Bson::String("1".into())), "string");
        m.insert(IdKey::of(&Bson::ObjectId(ObjectId::new())), "oid");
        m.insert(IdKey::of(&Bson::Double(1.5)), "double");
        let strings: Vec<_> = m
            .range(IdKey::Low(4)..=IdKey::High(4))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(strings, vec!["string"]);
        let numbers: Vec<_> = m
            .range(IdKey::Low(NUMBER_RANK)..=IdKey::High(NUMBER_RANK))
            .map(|(_, v)| *v)
            .collect();
        assert_eq!(numbers, vec!["int", "double"]);
    }
}
