//! The small aggregation subset the simulator understands: per-document stages (`$match $project
//! $addFields $set $unset $replaceRoot $replaceWith`) used after `$changeStream`, plus `$sort $skip
//! $limit $count $group` for ordinary aggregates (countDocuments). Expressions are field paths
//! (`"$a.b"`), `{$literal: v}` and literals (documents and arrays evaluated recursively).

use crate::error::CommandError;
use crate::store::matcher;
use crate::store::order::{compare, values_equal};
use crate::store::value::{get_path, remove_path, set_path};
use bson::{Bson, Document};
use std::cmp::Ordering;

/// A parsed pipeline stage.
#[derive(Debug, Clone)]
pub(crate) enum Stage {
    Match(Document),
    Project(Document),
    AddFields(Document),
    Unset(Vec<String>),
    ReplaceRoot(Bson),
    Sort(Document),
    Skip(u64),
    Limit(u64),
    Count(String),
    Group(Document),
}

impl Stage {
    /// True for stages allowed after `$changeStream`.
    pub(crate) fn per_document(&self) -> bool {
        matches!(
            self,
            Stage::Match(_)
                | Stage::Project(_)
                | Stage::AddFields(_)
                | Stage::Unset(_)
                | Stage::ReplaceRoot(_)
        )
    }
}

fn as_count(v: &Bson) -> Result<u64, CommandError> {
    crate::store::value::as_i64(v)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| CommandError::bad_value("expected a non-negative integer"))
}

/// Parses one stage document.
pub(crate) fn parse_stage(stage: &Document) -> Result<Stage, CommandError> {
    let Some((name, arg)) = stage.iter().next() else {
        return Err(CommandError::new(
            40323,
            "A pipeline stage specification object must contain exactly one field.",
        ));
    };
    let doc_arg = || match arg {
        Bson::Document(d) => Ok(d.clone()),
        _ => Err(CommandError::new(
            15974,
            format!("{name} specification must be an object"),
        )),
    };
    Ok(match name.as_str() {
        "$match" => Stage::Match(doc_arg()?),
        "$project" => Stage::Project(doc_arg()?),
        "$addFields" | "$set" => Stage::AddFields(doc_arg()?),
        "$unset" => Stage::Unset(match arg {
            Bson::String(s) => vec![s.clone()],
            Bson::Array(a) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => {
                return Err(CommandError::bad_value(
                    "$unset takes a string or an array of strings",
                ))
            }
        }),
        "$replaceRoot" => match arg {
            Bson::Document(d) => {
                Stage::ReplaceRoot(d.get("newRoot").cloned().unwrap_or(Bson::Null))
            }
            _ => return Err(CommandError::bad_value("$replaceRoot takes an object")),
        },
        "$replaceWith" => Stage::ReplaceRoot(arg.clone()),
        "$sort" => Stage::Sort(doc_arg()?),
        "$skip" => Stage::Skip(as_count(arg)?),
        "$limit" => Stage::Limit(as_count(arg)?),
        "$count" => Stage::Count(arg.as_str().unwrap_or("count").to_owned()),
        "$group" => Stage::Group(doc_arg()?),
        other => {
            return Err(CommandError::new(
                40324,
                format!("Unrecognized pipeline stage name: '{other}'"),
            ))
        }
    })
}

/// Parses a pipeline array.
pub(crate) fn parse_pipeline(stages: &[Bson]) -> Result<Vec<Stage>, CommandError> {
    stages
        .iter()
        .map(|s| match s {
            Bson::Document(d) => parse_stage(d),
            _ => Err(CommandError::type_mismatch(
                "pipeline stages must be objects",
            )),
        })
        .collect()
}

/// Evaluates an expression against a document; `None` means "missing".
pub(crate) fn eval(doc: &Document, expr: &Bson) -> Option<Bson> {
    match expr {
        Bson::String(s) if s.starts_with("$$ROOT") => Some(Bson::Document(doc.clone())),
        Bson::String(s) if s.starts_with('$') => get_path(doc, &s[1..]).cloned(),
        Bson::Document(d) if d.contains_key("$literal") => d.get("$literal").cloned(),
        Bson::Document(d) => {
            let mut out = Document::new();
            for (k, v) in d {
                if let Some(val) = eval(doc, v) {
                    out.insert(k.clone(), val);
                }
            }
            Some(Bson::Document(out))
        }
        Bson::Array(items) => Some(Bson::Array(
            items
                .iter()
                .map(|v| eval(doc, v).unwrap_or(Bson::Null))
                .collect(),
        )),
        other => Some(other.clone()),
    }
}

fn is_flag(v: &Bson) -> Option<bool> {
    match v {
        Bson::Boolean(b) => Some(*b),
        Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_) => {
            crate::store::value::as_f64(v).map(|n| n != 0.0)
        }
        _ => None,
    }
}

/// Applies a projection (inclusion, exclusion or computed fields). `{_id: 1}` alone is an
/// inclusion projection (only `_id`); `{_id: 0}` alone excludes `_id`; other fields decide the
/// mode, and `_id` is included unless excluded explicitly.
pub(crate) fn project(doc: &Document, spec: &Document) -> Result<Document, CommandError> {
    let others_include = spec
        .iter()
        .any(|(k, v)| k != "_id" && is_flag(v) != Some(false));
    let others_exclude = spec
        .iter()
        .any(|(k, v)| k != "_id" && is_flag(v) == Some(false));
    let id_flag = spec.get("_id").and_then(is_flag);
    let inclusion = others_include || (!others_exclude && id_flag == Some(true));
    if !inclusion {
        let mut out = doc.clone();
        for (k, v) in spec {
            if is_flag(v) == Some(false) {
                remove_path(&mut out, k);
            }
        }
        return Ok(out);
    }
    let mut out = Document::new();
    if id_flag != Some(false) {
        if let Some(id) = doc.get("_id") {
            out.insert("_id", id.clone());
        }
    }
    for (k, v) in spec {
        if k == "_id" && is_flag(v).is_some() {
            continue;
        }
        let value = match is_flag(v) {
            Some(true) => get_path(doc, k).cloned(),
            Some(false) => {
                return Err(CommandError::new(
                    31254,
                    format!("Cannot do exclusion on field {k} in inclusion projection"),
                ))
            }
            None => eval(doc, v),
        };
        if let Some(value) = value {
            set_path(&mut out, k, value).map_err(|e| CommandError::bad_value(e.to_string()))?;
        }
    }
    Ok(out)
}

/// Applies one per-document stage; `None` means the document was filtered out.
pub(crate) fn apply_doc_stage(
    stage: &Stage,
    doc: Document,
) -> Result<Option<Document>, CommandError> {
    Ok(match stage {
        Stage::Match(f) => matcher::matches(&doc, f)?.then_some(doc),
        Stage::Project(spec) => Some(project(&doc, spec)?),
        Stage::AddFields(spec) => {
            let mut out = doc.clone();
            for (k, v) in spec {
                let value = eval(&doc, v).unwrap_or(Bson::Null);
                set_path(&mut out, k, value).map_err(|e| CommandError::bad_value(e.to_string()))?;
            }
            Some(out)
        }
        Stage::Unset(fields) => {
            let mut out = doc;
            for f in fields {
                remove_path(&mut out, f);
            }
            Some(out)
        }
        Stage::ReplaceRoot(expr) => match eval(&doc, expr) {
            Some(Bson::Document(d)) => Some(d),
            _ => {
                return Err(CommandError::new(
                    40228,
                    "'newRoot' expression must evaluate to an object",
                ))
            }
        },
        _ => Some(doc),
    })
}

/// Sorts documents by a sort specification.
pub(crate) fn sort_docs(docs: &mut [Document], spec: &Document) {
    let keys: Vec<(String, bool)> = spec
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                crate::store::value::as_f64(v).unwrap_or(1.0) >= 0.0,
            )
        })
        .collect();
    docs.sort_by(|a, b| sort_cmp(a, b, &keys));
}

/// Compares two documents under parsed sort keys.
pub(crate) fn sort_cmp(a: &Document, b: &Document, keys: &[(String, bool)]) -> Ordering {
    for (k, asc) in keys {
        let null = Bson::Null;
        let va = get_path(a, k).unwrap_or(&null);
        let vb = get_path(b, k).unwrap_or(&null);
        let o = compare(va, vb);
        if o != Ordering::Equal {
            return if *asc { o } else { o.reverse() };
        }
    }
    Ordering::Equal
}

fn group(docs: Vec<Document>, spec: &Document) -> Result<Vec<Document>, CommandError> {
    let id_expr = spec.get("_id").cloned().unwrap_or(Bson::Null);
    let mut groups: Vec<(Bson, Document)> = Vec::new();
    for doc in docs {
        let key = eval(&doc, &id_expr).unwrap_or(Bson::Null);
        let idx = match groups.iter().position(|(k, _)| values_equal(k, &key)) {
            Some(i) => i,
            None => {
                let mut acc = Document::new();
                acc.insert("_id", key.clone());
                groups.push((key, acc));
                groups.len() - 1
            }
        };
        let acc = &mut groups[idx].1;
        for (field, op) in spec.iter().filter(|(k, _)| k.as_str() != "_id") {
            let Some((name, arg)) = op.as_document().and_then(|d| d.iter().next()) else {
                return Err(CommandError::new(
                    40234,
                    format!("The field '{field}' must be an accumulator object"),
                ));
            };
            let v = eval(&doc, arg);
            let cur = acc.get(field).cloned();
            let next = match name.as_str() {
                "$sum" => {
                    let add = v
                        .filter(|x| crate::store::value::as_f64(x).is_some())
                        .unwrap_or(Bson::Int32(0));
                    let base = cur.unwrap_or(Bson::Int32(0));
                    match (&base, &add) {
                        (Bson::Int32(a), Bson::Int32(b)) => a
                            .checked_add(*b)
                            .map(Bson::Int32)
                            .unwrap_or(Bson::Int64(i64::from(*a) + i64::from(*b))),
                        _ => match (
                            crate::store::value::as_i64(&base),
                            crate::store::value::as_i64(&add),
                            &base,
                            &add,
                        ) {
                            (
                                Some(x),
                                Some(y),
                                Bson::Int32(_) | Bson::Int64(_),
                                Bson::Int32(_) | Bson::Int64(_),
                            ) => Bson::Int64(x + y),
                            _ => Bson::Double(
                                crate::store::value::as_f64(&base).unwrap_or(0.0)
                                    + crate::store::value::as_f64(&add).unwrap_or(0.0),
                            ),
                        },
                    }
                }
                "$first" => cur.unwrap_or(v.unwrap_or(Bson::Null)),
                "$last" => v.unwrap_or(Bson::Null),
                "$min" | "$max" => match (cur, v) {
                    (None, Some(x)) | (Some(x), None) => x,
                    (Some(c), Some(x)) => {
                        let o = compare(&x, &c);
                        if (name == "$min" && o == Ordering::Less)
                            || (name == "$max" && o == Ordering::Greater)
                        {
                            x
                        } else {
                            c
                        }
                    }
                    (None, None) => Bson::Null,
                },
                "$push" => {
                    let mut arr = match cur {
                        Some(Bson::Array(a)) => a,
                        _ => Vec::new(),
                    };
                    arr.push(v.unwrap_or(Bson::Null));
                    Bson::Array(arr)
                }
                other => {
                    return Err(CommandError::new(
                        15952,
                        format!("unknown group operator '{other}'"),
                    ))
                }
            };
            acc.insert(field.clone(), next);
        }
    }
    Ok(groups.into_iter().map(|(_, d)| d).collect())
}

/// Runs a full pipeline over documents (ordinary aggregate).
pub(crate) fn run(
    mut docs: Vec<Document>,
    stages: &[Stage],
) -> Result<Vec<Document>, CommandError> {
    for stage in stages {
        docs = match stage {
            Stage::Sort(spec) => {
                sort_docs(&mut docs, spec);
                docs
            }
            Stage::Skip(n) => docs.into_iter().skip(*n as usize).collect(),
            Stage::Limit(n) => docs.into_iter().take(*n as usize).collect(),
            Stage::Count(field) => {
                if docs.is_empty() {
                    Vec::new()
                } else {
                    let mut d = Document::new();
                    d.insert(field.clone(), docs.len() as i32);
                    vec![d]
                }
            }
            Stage::Group(spec) => group(docs, spec)?,
            _ => {
                let mut out = Vec::with_capacity(docs.len());
                for d in docs {
                    if let Some(d) = apply_doc_stage(stage, d)? {
                        out.push(d);
                    }
                }
                out
            }
        };
    }
    Ok(docs)
}
