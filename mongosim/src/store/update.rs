//! Update operators: applies `$set $unset $inc $mul $min $max $rename $push $addToSet $pull
//! $pullAll $pop $currentDate $setOnInsert` to a copy of a document and records which paths
//! changed, from which the change event's `updateDescription` (updatedFields / removedFields /
//! truncatedArrays) is derived. Replacement documents and pipeline updates are classified here too.

use super::matcher;
use super::order::{compare, values_equal};
use super::value::{as_f64, get_path, get_path_mut, remove_path, set_path};
use crate::error::CommandError;
use bson::{doc, Bson, Document};
use std::cmp::Ordering;

/// The three shapes an update's `u` may take.
pub(crate) enum UpdateSpec {
    Operators(Document),
    Replacement(Document),
    Pipeline(Vec<Document>),
}

impl UpdateSpec {
    pub(crate) fn parse(u: &Bson) -> Result<UpdateSpec, CommandError> {
        match u {
            Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => {
                if let Some(k) = d.keys().find(|k| !k.starts_with('$')) {
                    return Err(CommandError::new(9, format!("unknown modifier field: {k}")));
                }
                Ok(UpdateSpec::Operators(d.clone()))
            }
            Bson::Document(d) => Ok(UpdateSpec::Replacement(d.clone())),
            Bson::Array(stages) => {
                let mut out = Vec::new();
                for s in stages {
                    match s {
                        Bson::Document(d) => out.push(d.clone()),
                        _ => {
                            return Err(CommandError::type_mismatch(
                                "pipeline stages must be objects",
                            ))
                        }
                    }
                }
                Ok(UpdateSpec::Pipeline(out))
            }
            _ => Err(CommandError::new(
                9,
                "update must be an object or a pipeline",
            )),
        }
    }
}

/// One recorded path modification.
enum PathChange {
    Set(String),
    Unset(String),
    Append(String, usize),
    Truncate(String),
}

/// Result of applying operators: the new document and its update description.
pub(crate) struct Applied {
    pub doc: Document,
    pub description: Document,
}

fn path_err(e: super::value::PathError) -> CommandError {
    CommandError::new(28, e.to_string())
}

fn array_at<'a>(
    doc: &'a mut Document,
    path: &str,
    op: &str,
) -> Result<(&'a mut Vec<Bson>, bool), CommandError> {
    let existed = get_path(doc, path).is_some();
    let slot = get_path_mut(doc, path, true).map_err(path_err)?;
    let Some(slot) = slot else {
        return Err(CommandError::bad_value(format!(
            "cannot apply {op} to '{path}'"
        )));
    };
    if !existed {
        *slot = Bson::Array(Vec::new());
    }
    match slot {
        Bson::Array(a) => Ok((a, existed)),
        _ => Err(CommandError::type_mismatch(format!(
            "The field '{path}' must be an array but is of a different type"
        ))),
    }
}

fn numeric_op(cur: Option<&Bson>, arg: &Bson, mul: bool, path: &str) -> Result<Bson, CommandError> {
    let zero = Bson::Int32(0);
    let cur = cur.unwrap_or(&zero);
    let bad = || {
        CommandError::type_mismatch(format!(
            "Cannot apply $inc/$mul to a non-numeric value at '{path}'"
        ))
    };
    if as_f64(cur).is_none() || as_f64(arg).is_none() {
        return Err(bad());
    }
    Ok(match (cur, arg) {
        (Bson::Int32(a), Bson::Int32(b)) => {
            let r = if mul {
                a.checked_mul(*b)
            } else {
                a.checked_add(*b)
            };
            match r {
                Some(v) => Bson::Int32(v),
                None => Bson::Int64(if mul {
                    i64::from(*a) * i64::from(*b)
                } else {
                    i64::from(*a) + i64::from(*b)
                }),
            }
        }
        (Bson::Int32(_) | Bson::Int64(_), Bson::Int32(_) | Bson::Int64(_)) => {
            let (a, b) = (
                super::value::as_i64(cur).unwrap_or(0),
                super::value::as_i64(arg).unwrap_or(0),
            );
            Bson::Int64(if mul {
                a.wrapping_mul(b)
            } else {
                a.wrapping_add(b)
            })
        }
        _ => {
            let (a, b) = (as_f64(cur).unwrap_or(0.0), as_f64(arg).unwrap_or(0.0));
            Bson::Double(if mul { a * b } else { a + b })
        }
    })
}

fn each_values(arg: &Bson) -> (Vec<Bson>, Option<&Document>) {
    match arg {
        Bson::Document(d) if d.contains_key("$each") => match d.get("$each") {
            Some(Bson::Array(items)) => (items.clone(), Some(d)),
            _ => (Vec::new(), Some(d)),
        },
        other => (vec![other.clone()], None),
    }
}

fn element_matches_pull(item: &Bson, cond: &Bson) -> Result<bool, CommandError> {
    match cond {
        Bson::Document(c) if c.keys().next().is_some_and(|k| k.starts_with('$')) => {
            let wrapper = doc! { "v": item.clone() };
            let mut filter = Document::new();
            filter.insert("v", Bson::Document(c.clone()));
            matcher::matches(&wrapper, &filter)
        }
        Bson::Document(c) => match item {
            Bson::Document(d) => matcher::matches(d, c),
            _ => Ok(false),
        },
        other => Ok(values_equal(item, other)),
    }
}

fn check_conflicts(ops: &Document) -> Result<(), CommandError> {
    let mut paths: Vec<&str> = Vec::new();
    for (op, arg) in ops {
        if let Bson::Document(fields) = arg {
            for (p, v) in fields {
                paths.push(p);
                if op == "$rename" {
                    if let Bson::String(to) = v {
                        paths.push(to);
                    }
                }
            }
        }
    }
    for (i, a) in paths.iter().enumerate() {
        if a.contains(".$") || a.starts_with('$') {
            return Err(CommandError::bad_value(format!(
                "positional updates are not supported: '{a}'"
            )));
        }
        for b in &paths[i + 1..] {
            let clash =
                a == b || b.starts_with(&format!("{a}.")) || a.starts_with(&format!("{b}."));
            if clash {
                return Err(CommandError::new(
                    40,
                    format!("Updating the path '{a}' would create a conflict at '{b}'"),
                ));
            }
        }
    }
    Ok(())
}

/// Applies update operators to `old`; `inserting` enables `$setOnInsert`; `now` is the
/// simulator's wall clock (for `$currentDate`).
pub(crate) fn apply_operators(
    old: &Document,
    ops: &Document,
    inserting: bool,
    now: bson::DateTime,
) -> Result<Applied, CommandError> {
    check_conflicts(ops)?;
    let mut doc = old.clone();
    let mut changes = Vec::new();
    for (op, arg) in ops {
        let Bson::Document(fields) = arg else {
            return Err(CommandError::new(
                9,
                format!("Modifiers operate on fields but we found type {arg} instead"),
            ));
        };
        for (path, v) in fields {
            apply_one(&mut doc, op, path, v, inserting, now, &mut changes)?;
        }
    }
    if !inserting
        && doc
            .get("_id")
            .zip(old.get("_id"))
            .is_some_and(|(a, b)| !values_equal(a, b))
    {
        return Err(CommandError::new(
            66,
            "Performing an update on the path '_id' would modify the immutable field '_id'",
        ));
    }
    let description = describe(old, &doc, &changes);
    Ok(Applied { doc, description })
}

fn apply_one(
    doc: &mut Document,
    op: &str,
    path: &str,
    v: &Bson,
    inserting: bool,
    now: bson::DateTime,
    changes: &mut Vec<PathChange>,
) -> Result<(), CommandError> {
    match op {
        "$set" => {
            set_path(doc, path, v.clone()).map_err(path_err)?;
            changes.push(PathChange::Set(path.to_owned()));
        }
        "$setOnInsert" => {
            if inserting {
                set_path(doc, path, v.clone()).map_err(path_err)?;
            }
        }
        "$unset" => {
            if remove_path(doc, path).is_some() {
                changes.push(PathChange::Unset(path.to_owned()));
            }
        }
        "$inc" | "$mul" => {
            let new = numeric_op(get_path(doc, path), v, op == "$mul", path)?;
            set_path(doc, path, new).map_err(path_err)?;
            changes.push(PathChange::Set(path.to_owned()));
        }
        "$min" | "$max" => {
            let replace = match get_path(doc, path) {
                None => true,
                Some(cur) => {
                    let o = compare(v, cur);
                    (op == "$min" && o == Ordering::Less)
                        || (op == "$max" && o == Ordering::Greater)
                }
            };
            if replace {
                set_path(doc, path, v.clone()).map_err(path_err)?;
                changes.push(PathChange::Set(path.to_owned()));
            }
        }
        "$currentDate" => {
            let value = match v {
                Bson::Document(d) if d.get_str("$type").ok() == Some("timestamp") => {
                    Bson::Timestamp(bson::Timestamp {
                        time: u32::try_from(now.timestamp_millis().max(0) / 1000)
                            .unwrap_or(u32::MAX),
                        increment: 1,
                    })
                }
                _ => Bson::DateTime(now),
            };
            set_path(doc, path, value).map_err(path_err)?;
            changes.push(PathChange::Set(path.to_owned()));
        }
        "$rename" => {
            let Bson::String(to) = v else {
                return Err(CommandError::bad_value("$rename target must be a string"));
            };
            if let Some(val) = remove_path(doc, path) {
                set_path(doc, to, val).map_err(path_err)?;
                changes.push(PathChange::Unset(path.to_owned()));
                changes.push(PathChange::Set(to.clone()));
            }
        }
        "$push" | "$addToSet" => {
            let (items, mods) = each_values(v);
            let (arr, existed) = array_at(doc, path, op)?;
            let before = arr.len();
            for item in items {
                if op == "$push" || !arr.iter().any(|x| values_equal(x, &item)) {
                    arr.push(item);
                }
            }
            let mut sliced = false;
            if let Some(n) = mods
                .and_then(|m| m.get("$slice"))
                .and_then(super::value::as_i64)
            {
                let len = arr.len() as i64;
                if n >= 0 && n < len {
                    arr.truncate(n as usize);
                    sliced = true;
                } else if n < 0 && -n < len {
                    arr.drain(..(len + n) as usize);
                    sliced = true;
                }
            }
            if !existed || sliced {
                changes.push(PathChange::Set(path.to_owned()));
            } else if arr.len() > before {
                changes.push(PathChange::Append(path.to_owned(), before));
            }
        }
        "$pull" | "$pullAll" => {
            if get_path(doc, path).is_none() {
                return Ok(());
            }
            let (arr, _) = array_at(doc, path, op)?;
            let before = arr.len();
            let mut kept = Vec::with_capacity(before);
            for item in arr.drain(..) {
                let drop = if op == "$pull" {
                    element_matches_pull(&item, v)?
                } else {
                    matches!(v, Bson::Array(vals) if vals.iter().any(|x| values_equal(x, &item)))
                };
                if !drop {
                    kept.push(item);
                }
            }
            *arr = kept;
            if arr.len() != before {
                changes.push(PathChange::Set(path.to_owned()));
            }
        }
        "$pop" => {
            if get_path(doc, path).is_none() {
                return Ok(());
            }
            let (arr, _) = array_at(doc, path, op)?;
            if arr.is_empty() {
                return Ok(());
            }
            if super::value::as_i64(v).unwrap_or(1) < 0 {
                arr.remove(0);
                changes.push(PathChange::Set(path.to_owned()));
            } else {
                arr.pop();
                changes.push(PathChange::Truncate(path.to_owned()));
            }
        }
        other => return Err(CommandError::new(9, format!("Unknown modifier: {other}"))),
    }
    Ok(())
}

fn describe(old: &Document, new: &Document, changes: &[PathChange]) -> Document {
    let mut updated = Document::new();
    let mut removed: Vec<Bson> = Vec::new();
    let mut truncated: Vec<Bson> = Vec::new();
    for change in changes {
        match change {
            PathChange::Set(p) => {
                if let Some(nv) = get_path(new, p) {
                    let same = get_path(old, p).is_some_and(|ov| ov == nv);
                    if !same {
                        updated.insert(p.clone(), nv.clone());
                    }
                }
            }
            PathChange::Unset(p) => {
                if get_path(new, p).is_none() {
                    removed.push(Bson::String(p.clone()));
                }
            }
            PathChange::Append(p, from) => {
                if let Some(Bson::Array(a)) = get_path(new, p) {
                    for (i, item) in a.iter().enumerate().skip(*from) {
                        updated.insert(format!("{p}.{i}"), item.clone());
                    }
                }
            }
            PathChange::Truncate(p) => {
                if let Some(Bson::Array(a)) = get_path(new, p) {
                    truncated.push(Bson::Document(
                        doc! { "field": p.clone(), "newSize": a.len() as i32 },
                    ));
                }
            }
        }
    }
    doc! { "updatedFields": updated, "removedFields": removed, "truncatedArrays": truncated }
}

/// Update description for a whole-document change (pipeline updates): top-level differences.
pub(crate) fn diff_top_level(old: &Document, new: &Document) -> Document {
    let mut updated = Document::new();
    for (k, v) in new {
        if old.get(k) != Some(v) {
            updated.insert(k.clone(), v.clone());
        }
    }
    let removed: Vec<Bson> = old
        .keys()
        .filter(|k| !new.contains_key(*k))
        .map(|k| Bson::String(k.clone()))
        .collect();
    doc! { "updatedFields": updated, "removedFields": removed, "truncatedArrays": [] }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_produce_the_update_description() {
        let old = doc! { "_id": 1, "a": 1, "arr": [1, 2, 3], "gone": true, "tags": ["x"] };
        let ops = doc! {
            "$set": { "b.c": "new" }, "$inc": { "a": 2 }, "$unset": { "gone": "" },
            "$push": { "tags": "y" }, "$pop": { "arr": 1 }
        };
        let applied =
            apply_operators(&old, &ops, false, bson::DateTime::now()).expect("valid update");
        assert_eq!(
            applied.doc,
            doc! { "_id": 1, "a": 3, "arr": [1, 2], "tags": ["x", "y"], "b": { "c": "new" } }
        );
        assert_eq!(
            applied.description,
            doc! {
                "updatedFields": { "b.c": "new", "a": 3, "tags.1": "y" },
                "removedFields": ["gone"],
                "truncatedArrays": [ { "field": "arr", "newSize": 2 } ]
            }
        );
    }

    #[test]
    fn conflicting_paths_are_rejected() {
        let err = apply_operators(
            &doc! {},
            &doc! { "$set": { "a": 1 }, "$inc": { "a.b": 1 } },
            false,
            bson::DateTime::now(),
        );
        assert!(matches!(err, Err(e) if e.code == 40));
    }
}
