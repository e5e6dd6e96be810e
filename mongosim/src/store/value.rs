//! BSON value helpers shared by the matcher, the update operators and the pipeline stages:
//! numeric views, dotted-path lookup (with array traversal) and dotted-path assignment / removal.
//! Ordering and equality live in `order.rs`.

use bson::{Bson, Document};

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
}
