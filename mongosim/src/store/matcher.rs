//! Query matching: evaluates a MongoDB filter document against a document. Supports equality on
//! dotted paths (with array element matching), `$eq $ne $gt $gte $lt $lte $in $nin $exists $not
//! $size $elemMatch $type` (names, numbers, "number", and lists of them) and the logical
//! `$and $or $nor`. Range operators are type-bracketed like MongoDB's.

use super::order::{compare, same_bracket, values_equal};
use super::value::lookup;
use crate::error::CommandError;
use bson::{Bson, Document};
use std::cmp::Ordering;

/// Returns whether `doc` matches `filter`.
pub(crate) fn matches(doc: &Document, filter: &Document) -> Result<bool, CommandError> {
    for (key, cond) in filter {
        let ok = match key.as_str() {
            "$and" => all_of(doc, cond, |r| r.iter().all(|b| *b))?,
            "$or" => all_of(doc, cond, |r| r.iter().any(|b| *b))?,
            "$nor" => all_of(doc, cond, |r| !r.iter().any(|b| *b))?,
            "$comment" => true,
            k if k.starts_with('$') => {
                return Err(CommandError::bad_value(format!(
                    "unknown top level operator: {k}"
                )))
            }
            path => field_matches(doc, path, cond)?,
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn all_of(
    doc: &Document,
    cond: &Bson,
    combine: impl Fn(&[bool]) -> bool,
) -> Result<bool, CommandError> {
    let Bson::Array(items) = cond else {
        return Err(CommandError::bad_value(
            "$and/$or/$nor must be a nonempty array",
        ));
    };
    let mut results = Vec::with_capacity(items.len());
    for item in items {
        let Bson::Document(sub) = item else {
            return Err(CommandError::bad_value(
                "$and/$or/$nor entries must be objects",
            ));
        };
        results.push(matches(doc, sub)?);
    }
    Ok(combine(&results))
}

fn is_operator_doc(cond: &Bson) -> Option<&Document> {
    match cond {
        Bson::Document(d) if d.keys().next().is_some_and(|k| k.starts_with('$')) => Some(d),
        _ => None,
    }
}

/// Matches the condition for one (possibly dotted) field.
fn field_matches(doc: &Document, path: &str, cond: &Bson) -> Result<bool, CommandError> {
    let values = lookup(doc, path);
    match is_operator_doc(cond) {
        Some(ops) => {
            for (op, arg) in ops {
                if !operator_matches(&values, op, arg)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        None => Ok(eq_matches(&values, cond)),
    }
}

/// Candidate values: each found value, plus the elements of found arrays.
fn for_each_candidate(values: &[&Bson], mut f: impl FnMut(&Bson) -> bool) -> bool {
    for v in values {
        if f(v) {
            return true;
        }
        if let Bson::Array(items) = v {
            if items.iter().any(&mut f) {
                return true;
            }
        }
    }
    false
}

fn eq_matches(values: &[&Bson], target: &Bson) -> bool {
    if matches!(target, Bson::Null)
        && (values.is_empty() || values.iter().any(|v| matches!(v, Bson::Null)))
    {
        return true;
    }
    for_each_candidate(values, |v| values_equal(v, target))
}

fn cmp_matches(values: &[&Bson], target: &Bson, want: fn(Ordering) -> bool) -> bool {
    // Comparisons with MinKey / MaxKey cross type brackets; all others stay inside theirs.
    let unbracketed = matches!(target, Bson::MinKey | Bson::MaxKey);
    for_each_candidate(values, |v| {
        (unbracketed || same_bracket(v, target)) && want(compare(v, target))
    })
}

fn in_matches(values: &[&Bson], arg: &Bson) -> Result<bool, CommandError> {
    let Bson::Array(items) = arg else {
        return Err(CommandError::bad_value("$in/$nin needs an array"));
    };
    Ok(items.iter().any(|t| eq_matches(values, t)))
}

fn operator_matches(values: &[&Bson], op: &str, arg: &Bson) -> Result<bool, CommandError> {
    Ok(match op {
        "$eq" => eq_matches(values, arg),
        "$ne" => !eq_matches(values, arg),
        "$gt" => cmp_matches(values, arg, |o| o == Ordering::Greater),
        "$gte" => cmp_matches(values, arg, |o| o != Ordering::Less),
        "$lt" => cmp_matches(values, arg, |o| o == Ordering::Less),
        "$lte" => cmp_matches(values, arg, |o| o != Ordering::Greater),
        "$in" => in_matches(values, arg)?,
        "$nin" => !in_matches(values, arg)?,
        "$exists" => {
            let want = match arg {
                Bson::Boolean(b) => *b,
                other => super::value::as_f64(other).is_some_and(|n| n != 0.0),
            };
            want != values.is_empty()
        }
        "$not" => match arg {
            Bson::Document(ops) => {
                let mut all = true;
                for (op, a) in ops {
                    all &= operator_matches(values, op, a)?;
                }
                !all
            }
            _ => return Err(CommandError::bad_value("$not needs an object")),
        },
        "$size" => {
            let n = super::value::as_i64(arg).unwrap_or(-1);
            values
                .iter()
                .any(|v| matches!(v, Bson::Array(a) if a.len() as i64 == n))
        }
        "$elemMatch" => {
            let Bson::Document(sub) = arg else {
                return Err(CommandError::bad_value("$elemMatch needs an object"));
            };
            let mut found = false;
            for v in values {
                if let Bson::Array(items) = v {
                    for item in items {
                        found |= elem_matches(item, sub)?;
                    }
                }
            }
            found
        }
        "$type" => {
            let operands: Vec<&Bson> = match arg {
                Bson::Array(items) => items.iter().collect(),
                one => vec![one],
            };
            let mut wanted = Vec::with_capacity(operands.len());
            for o in operands {
                wanted.push(type_code(o).ok_or_else(|| {
                    CommandError::bad_value(format!("Unknown type name alias: {o}"))
                })?);
            }
            for_each_candidate(values, |v| wanted.iter().any(|w| type_matches(v, *w)))
        }
        other => {
            return Err(CommandError::bad_value(format!(
                "unknown operator: {other}"
            )))
        }
    })
}

fn elem_matches(item: &Bson, sub: &Document) -> Result<bool, CommandError> {
    if sub
        .keys()
        .next()
        .is_some_and(|k| k.starts_with('$') && k != "$and" && k != "$or")
    {
        for (op, a) in sub {
            if !operator_matches(&[item], op, a)? {
                return Ok(false);
            }
        }
        return Ok(true);
    }
    match item {
        Bson::Document(d) => matches(d, sub),
        _ => Ok(false),
    }
}

/// The BSON type number a `$type` operand names (0 stands for the "number" alias).
fn type_code(operand: &Bson) -> Option<i64> {
    if let Some(n) = super::value::as_i64(operand) {
        return Some(n);
    }
    Some(match operand.as_str()? {
        "number" => 0,
        "double" => 1,
        "string" => 2,
        "object" => 3,
        "array" => 4,
        "binData" => 5,
        "undefined" => 6,
        "objectId" => 7,
        "bool" => 8,
        "date" => 9,
        "null" => 10,
        "regex" => 11,
        "dbPointer" => 12,
        "javascript" => 13,
        "symbol" => 14,
        "javascriptWithScope" => 15,
        "int" => 16,
        "timestamp" => 17,
        "long" => 18,
        "decimal" => 19,
        "minKey" => -1,
        "maxKey" => 127,
        _ => return None,
    })
}

fn type_matches(v: &Bson, code: i64) -> bool {
    if code == 0 {
        return matches!(
            v,
            Bson::Double(_) | Bson::Int32(_) | Bson::Int64(_) | Bson::Decimal128(_)
        );
    }
    i64::from(v.element_type() as u8 as i8) == code
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn m(d: &Document, f: Document) -> bool {
        matches(d, &f).unwrap_or(false)
    }

    #[test]
    fn filters_cover_equality_ranges_and_logic() {
        let d = doc! { "a": 5, "tags": ["x", "y"], "n": { "k": "v" }, "z": null };
        assert!(m(&d, doc! { "a": 5.0 }));
        assert!(m(&d, doc! { "tags": "y" }));
        assert!(m(&d, doc! { "n.k": "v" }));
        assert!(m(&d, doc! { "a": { "$gt": 4, "$lte": 5 } }));
        assert!(!m(&d, doc! { "a": { "$gt": "4" } }));
        assert!(m(
            &d,
            doc! { "a": { "$in": [1, 5] }, "tags": { "$nin": ["q"] } }
        ));
        assert!(m(&d, doc! { "missing": null, "z": { "$exists": true } }));
        assert!(m(&d, doc! { "$or": [ { "a": 1 }, { "a": 5 } ] }));
        assert!(!m(
            &d,
            doc! { "$and": [ { "a": 5 }, { "a": { "$ne": 5 } } ] }
        ));
    }
}
