//! BSON value helpers shared by the matcher, the update operators and the pipeline stages:
//! MongoDB's cross-type ordering, numeric-aware equality, dotted-path lookup (with array
//! traversal), dotted-path assignment / removal, and the hashable `_id` key.

use bson::{Bson, Document};
use std::cmp::Ordering;

/// MongoDB's canonical type order rank.
fn type_rank(v: &Bson) -> u8 {
    match v {
        Bson::MinKey => 0,
        Bson::Null | Bson::Undefined => 1,
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) | Bson::Decimal128(_) => 2,
        Bson::String(_) | Bson::Symbol(_) => 3,
        Bson::Document(_) => 4,
        Bson::Array(_) => 5,
        Bson::Binary(_) => 6,
        Bson::ObjectId(_) => 7,
        Bson::Boolean(_) => 8,
        Bson::DateTime(_) => 9,
        Bson::Timestamp(_) => 10,
        Bson::RegularExpression(_) => 11,
        Bson::MaxKey => 13,
        _ => 12,
    }
}

/// Numeric view of a value, when it is a number.
pub(crate) fn as_f64(v: &Bson) -> Option<f64> {
    match v {
        Bson::Int32(i) => Some(f64::from(*i)),
        Bson::Int64(i) => Some(*i as f64),
        Bson::Double(d) => Some(*d),
        _ => None,
    }
}

/// Integer view of a value, when it is an integral number.
pub(crate) fn as_i64(v: &Bson) -> Option<i64> {
    match v {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(d) if d.fract() == 0.0 && d.abs() < 9.0e15 => Some(*d as i64),
        _ => None,
    }
}

/// True when both values are in the same comparison bracket (numbers with numbers, ...).
pub(crate) fn same_bracket(a: &Bson, b: &Bson) -> bool {
    type_rank(a) == type_rank(b)
}

/// Total order over BSON values following MongoDB's sort rules.
pub(crate) fn compare(a: &Bson, b: &Bson) -> Ordering {
    let (ra, rb) = (type_rank(a), type_rank(b));
    if ra != rb {
        return ra.cmp(&rb);
    }
    match (a, b) {
        (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
            as_i64(a).cmp(&as_i64(b))
        }
        _ if ra == 2 => {
            let (x, y) = (as_f64(a).unwrap_or(0.0), as_f64(b).unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(Ordering::Equal)
        }
        (Bson::String(x), Bson::String(y)) => x.cmp(y),
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
        _ => Ordering::Equal,
    }
}

fn compare_docs(x: &Document, y: &Document) -> Ordering {
    for ((ka, va), (kb, vb)) in x.iter().zip(y.iter()) {
        let o = compare(va, vb).then_with(|| ka.cmp(kb));
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

/// Collects every value reachable through a dotted path, descending into arrays of documents and
/// honouring numeric array indexes. Arrays found at the end are pushed as-is (callers expand them).
pub(crate) fn collect_path<'a>(v: &'a Bson, parts: &[&str], out: &mut Vec<&'a Bson>) {
    let Some((head, rest)) = parts.split_first() else {
        out.push(v);
        return;
    };
    match v {
        Bson::Document(d) => {
            if let Some(child) = d.get(*head) {
                collect_path(child, rest, out);
            }
        }
        Bson::Array(items) => {
            if let Ok(i) = head.parse::<usize>() {
                if let Some(child) = items.get(i) {
                    collect_path(child, rest, out);
                }
            }
            for item in items {
                if let Bson::Document(d) = item {
                    if let Some(child) = d.get(*head) {
                        collect_path(child, rest, out);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Values at a dotted path in a document (see [`collect_path`]).
pub(crate) fn lookup<'a>(doc: &'a Document, path: &str) -> Vec<&'a Bson> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut out = Vec::new();
    if let Some((head, rest)) = parts.split_first() {
        if let Some(v) = doc.get(*head) {
            collect_path(v, rest, &mut out);
        }
    }
    out
}

/// The single value at a dotted path without array fan-out (numeric parts index arrays).
pub(crate) fn get_path<'a>(doc: &'a Document, path: &str) -> Option<&'a Bson> {
    let mut parts = path.split('.');
    let mut cur = doc.get(parts.next()?)?;
    for part in parts {
        cur = match cur {
            Bson::Document(d) => d.get(part)?,
            Bson::Array(a) => a.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Error raised when a path cannot be created (e.g. it crosses a scalar).
#[derive(Debug, thiserror::Error)]
#[error("cannot create field '{part}' in path '{path}'")]
pub(crate) struct PathError {
    pub path: String,
    pub part: String,
}

/// Mutable access to the value at a dotted path, creating intermediate documents when `create`.
pub(crate) fn get_path_mut<'a>(
    doc: &'a mut Document,
    path: &str,
    create: bool,
) -> Result<Option<&'a mut Bson>, PathError> {
    let parts: Vec<&str> = path.split('.').collect();
    let err = |part: &str| PathError {
        path: path.to_owned(),
        part: part.to_owned(),
    };
    let (first, rest) = match parts.split_first() {
        Some(x) => x,
        None => return Ok(None),
    };
    if !doc.contains_key(*first) {
        if !create {
            return Ok(None);
        }
        doc.insert(
            *first,
            if rest.is_empty() {
                Bson::Null
            } else {
                Bson::Document(Document::new())
            },
        );
    }
    let mut cur = match doc.get_mut(*first) {
        Some(v) => v,
        None => return Ok(None),
    };
    for (i, part) in rest.iter().enumerate() {
        let last = i + 1 == rest.len();
        cur = match cur {
            Bson::Document(d) => {
                if !d.contains_key(*part) {
                    if !create {
                        return Ok(None);
                    }
                    d.insert(
                        *part,
                        if last {
                            Bson::Null
                        } else {
                            Bson::Document(Document::new())
                        },
                    );
                }
                match d.get_mut(*part) {
                    Some(v) => v,
                    None => return Ok(None),
                }
            }
            Bson::Array(a) => {
                let idx: usize = part.parse().map_err(|_| err(part))?;
                if idx >= a.len() {
                    if !create {
                        return Ok(None);
                    }
                    a.resize(idx + 1, Bson::Null);
                    if !last {
                        a[idx] = Bson::Document(Document::new());
                    }
                }
                &mut a[idx]
            }
            _ => return Err(err(part)),
        };
    }
    Ok(Some(cur))
}

/// Sets the value at a dotted path, creating intermediate documents.
pub(crate) fn set_path(doc: &mut Document, path: &str, value: Bson) -> Result<(), PathError> {
    if let Some(slot) = get_path_mut(doc, path, true)? {
        *slot = value;
    }
    Ok(())
}

/// Removes the value at a dotted path; returns it when it existed.
pub(crate) fn remove_path(doc: &mut Document, path: &str) -> Option<Bson> {
    match path.rsplit_once('.') {
        None => doc.remove(path),
        Some((parent, leaf)) => match get_path_mut(doc, parent, false).ok()?? {
            Bson::Document(d) => d.remove(leaf),
            Bson::Array(a) => {
                let i: usize = leaf.parse().ok()?;
                let slot = a.get_mut(i)?;
                Some(std::mem::replace(slot, Bson::Null))
            }
            _ => None,
        },
    }
}

/// Hashable identity of an `_id` value (numbers normalised so 1, 1i64 and 1.0 collide).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum IdKey {
    Oid([u8; 12]),
    Int(i64),
    Str(String),
    Other(Vec<u8>),
}

impl IdKey {
    pub(crate) fn of(v: &Bson) -> IdKey {
        match v {
            Bson::ObjectId(o) => IdKey::Oid(o.bytes()),
            Bson::String(s) => IdKey::Str(s.clone()),
            other => match as_i64(other) {
                Some(i) => IdKey::Int(i),
                None => {
                    let mut buf = Vec::new();
                    let wrapped = bson::doc! { "": canonical(other) };
                    // Serialising an in-memory document into a Vec cannot fail.
                    let _ = wrapped.to_writer(&mut buf);
                    IdKey::Other(buf)
                }
            },
        }
    }
}

/// Normalises numbers inside composite values so equal values serialise identically.
fn canonical(v: &Bson) -> Bson {
    match v {
        Bson::Document(d) => {
            Bson::Document(d.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        Bson::Array(a) => Bson::Array(a.iter().map(canonical).collect()),
        other => match as_i64(other) {
            Some(i) => Bson::Int64(i),
            None => other.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    #[test]
    fn dotted_paths_descend_into_arrays_of_documents() {
        let d = doc! { "a": [ { "b": 1 }, { "b": 2 } ], "c": { "d": 3 } };
        assert_eq!(lookup(&d, "a.b"), vec![&Bson::Int32(1), &Bson::Int32(2)]);
        assert_eq!(get_path(&d, "c.d"), Some(&Bson::Int32(3)));
        assert_eq!(get_path(&d, "a.1.b"), Some(&Bson::Int32(2)));
    }

    #[test]
    fn numbers_compare_across_types() {
        assert!(values_equal(&Bson::Int32(3), &Bson::Double(3.0)));
        assert_eq!(
            compare(&Bson::Int64(2), &Bson::String("a".into())),
            Ordering::Less
        );
        assert_eq!(IdKey::of(&Bson::Int32(7)), IdKey::of(&Bson::Double(7.0)));
    }
}
