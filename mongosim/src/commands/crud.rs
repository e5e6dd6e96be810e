//! CRUD commands: insert (ordered / unordered, duplicate-key write errors), update (operators,
//! replacement, pipeline, upsert, multi), delete, findAndModify, find, count, distinct and the
//! ordinary (non change-stream) aggregate used by countDocuments.

use super::cursors::{find_batch, first_batch, QueryCursor};
use super::{coll_arg, Body};
use crate::error::CommandError;
use crate::pipeline;
use crate::state::Inner;
use crate::store::order::values_equal;
use crate::store::query::{self, Query};
use crate::store::update::UpdateSpec;
use crate::store::value::{as_i64, lookup};
use crate::store::write::{self, Change};
use bson::{doc, Bson, Document};

type WriteResult = Result<(Body, Vec<Change>), CommandError>;

fn write_error(index: usize, e: &CommandError) -> Bson {
    Bson::Document(
        doc! { "index": index as i32, "code": e.code, "codeName": e.code_name.clone(), "errmsg": e.message.clone() },
    )
}

fn opt_doc(d: &Document, key: &str) -> Result<Document, CommandError> {
    match d.get(key) {
        None | Some(Bson::Null) => Ok(Document::new()),
        Some(Bson::Document(x)) => Ok(x.clone()),
        Some(_) => Err(CommandError::type_mismatch(format!(
            "'{key}' must be an object"
        ))),
    }
}

/// `insert`.
pub(crate) fn insert(
    inner: &mut Inner,
    db: &str,
    mut body: Document,
    keep_pre: bool,
) -> WriteResult {
    let coll = coll_arg(&body, "insert")?;
    let ordered = body.get_bool("ordered").unwrap_or(true);
    let docs = match body.remove("documents") {
        Some(Bson::Array(a)) => a,
        _ => {
            return Err(CommandError::type_mismatch(
                "insert needs a 'documents' array",
            ))
        }
    };
    let mut changes = Vec::with_capacity(docs.len());
    let mut errors = Vec::new();
    for (i, d) in docs.into_iter().enumerate() {
        let Bson::Document(d) = d else {
            errors.push(write_error(
                i,
                &CommandError::type_mismatch("documents must be objects"),
            ));
            if ordered {
                break;
            } else {
                continue;
            }
        };
        match write::insert_one(&mut inner.store, db, &coll, d, keep_pre) {
            Ok(c) => changes.push(c),
            Err(e) => {
                errors.push(write_error(i, &e));
                if ordered {
                    break;
                }
            }
        }
    }
    let mut reply = doc! { "n": changes.len() as i32 };
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Ok((Body::Doc(reply), changes))
}

/// `update`.
pub(crate) fn update(inner: &mut Inner, db: &str, body: &Document, keep_pre: bool) -> WriteResult {
    let coll = coll_arg(body, "update")?;
    let ordered = body.get_bool("ordered").unwrap_or(true);
    let stmts = body
        .get_array("updates")
        .map_err(|_| CommandError::type_mismatch("update needs an 'updates' array"))?;
    let (mut n, mut modified) = (0u64, 0u64);
    let mut upserted = Vec::new();
    let mut errors = Vec::new();
    let mut changes = Vec::new();
    for (i, stmt) in stmts.iter().enumerate() {
        let result = (|| {
            let Bson::Document(stmt) = stmt else {
                return Err(CommandError::type_mismatch(
                    "update statements must be objects",
                ));
            };
            let q = opt_doc(stmt, "q")?;
            let u = stmt
                .get("u")
                .ok_or_else(|| CommandError::new(9, "update statement needs 'u'"))?;
            if stmt.contains_key("arrayFilters") {
                return Err(CommandError::bad_value(
                    "arrayFilters are not supported by the simulator",
                ));
            }
            let spec = UpdateSpec::parse(u)?;
            let sort = stmt.get_document("sort").ok();
            write::update(
                &mut inner.store,
                db,
                &coll,
                &q,
                &spec,
                stmt.get_bool("multi").unwrap_or(false),
                stmt.get_bool("upsert").unwrap_or(false),
                sort,
                keep_pre,
            )
        })();
        match result {
            Ok(out) => {
                n += out.n;
                modified += out.modified;
                if let Some(id) = out.upserted {
                    upserted.push(Bson::Document(doc! { "index": i as i32, "_id": id }));
                }
                changes.extend(out.changes);
            }
            Err(e) => {
                errors.push(write_error(i, &e));
                if ordered {
                    break;
                }
            }
        }
    }
    let mut reply = doc! { "n": n as i32, "nModified": modified as i32 };
    if !upserted.is_empty() {
        reply.insert("upserted", upserted);
    }
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Ok((Body::Doc(reply), changes))
}

/// `delete`.
pub(crate) fn delete(inner: &mut Inner, db: &str, body: &Document, keep_pre: bool) -> WriteResult {
    let coll = coll_arg(body, "delete")?;
    let ordered = body.get_bool("ordered").unwrap_or(true);
    let stmts = body
        .get_array("deletes")
        .map_err(|_| CommandError::type_mismatch("delete needs a 'deletes' array"))?;
    let mut n = 0u64;
    let mut errors = Vec::new();
    let mut changes = Vec::new();
    for (i, stmt) in stmts.iter().enumerate() {
        let result = (|| {
            let Bson::Document(stmt) = stmt else {
                return Err(CommandError::type_mismatch(
                    "delete statements must be objects",
                ));
            };
            let q = opt_doc(stmt, "q")?;
            let one = stmt.get("limit").and_then(as_i64).unwrap_or(0) == 1;
            write::delete(&mut inner.store, db, &coll, &q, one, None, keep_pre)
        })();
        match result {
            Ok((count, c, _)) => {
                n += count;
                changes.extend(c);
            }
            Err(e) => {
                errors.push(write_error(i, &e));
                if ordered {
                    break;
                }
            }
        }
    }
    let mut reply = doc! { "n": n as i32 };
    if !errors.is_empty() {
        reply.insert("writeErrors", errors);
    }
    Ok((Body::Doc(reply), changes))
}

/// `findAndModify`.
pub(crate) fn find_and_modify(
    inner: &mut Inner,
    db: &str,
    body: &Document,
    keep_pre: bool,
) -> WriteResult {
    let coll = coll_arg(body, "findAndModify").or_else(|_| coll_arg(body, "findandmodify"))?;
    let query = opt_doc(body, "query")?;
    let sort = body.get_document("sort").ok();
    let fields = body.get_document("fields").ok();
    let project = |d: Option<Document>| -> Result<Bson, CommandError> {
        Ok(match (d, fields) {
            (Some(d), Some(f)) if !f.is_empty() => Bson::Document(pipeline::project(&d, f)?),
            (Some(d), _) => Bson::Document(d),
            (None, _) => Bson::Null,
        })
    };
    if body.get_bool("remove").unwrap_or(false) {
        let (n, changes, last) =
            write::delete(&mut inner.store, db, &coll, &query, true, sort, keep_pre)?;
        let reply = doc! { "lastErrorObject": { "n": n as i32 }, "value": project(last)? };
        return Ok((Body::Doc(reply), changes));
    }
    let u = body
        .get("update")
        .ok_or_else(|| CommandError::new(9, "Either an update or remove=true must be specified"))?;
    let spec = UpdateSpec::parse(u)?;
    let upsert = body.get_bool("upsert").unwrap_or(false);
    let out = write::update(
        &mut inner.store,
        db,
        &coll,
        &query,
        &spec,
        false,
        upsert,
        sort,
        keep_pre,
    )?;
    let want_new = body.get_bool("new").unwrap_or(false);
    let value = if want_new {
        out.last_post.clone()
    } else if out.upserted.is_some() {
        None
    } else {
        out.last_pre.clone()
    };
    let mut leo =
        doc! { "n": out.n as i32, "updatedExisting": out.n > 0 && out.upserted.is_none() };
    if let Some(id) = &out.upserted {
        leo.insert("upserted", id.clone());
    }
    let reply = doc! { "lastErrorObject": leo, "value": project(value)? };
    Ok((Body::Doc(reply), out.changes))
}

fn serialize(d: &Document) -> Vec<u8> {
    let mut b = Vec::new();
    // Writing an in-memory document into a Vec cannot fail.
    let _ = d.to_writer(&mut b);
    b
}

/// `find`.
pub(crate) fn find(inner: &mut Inner, db: &str, body: &Document) -> Result<Body, CommandError> {
    let coll = coll_arg(body, "find")?;
    let filter = opt_doc(body, "filter")?;
    let sort = body.get_document("sort").ok();
    let projection = body
        .get_document("projection")
        .ok()
        .filter(|p| !p.is_empty());
    let skip = body.get("skip").and_then(as_i64).unwrap_or(0).max(0) as usize;
    let limit = body.get("limit").and_then(as_i64).unwrap_or(0);
    let single = body.get_bool("singleBatch").unwrap_or(false) || limit < 0;
    let limit = if limit == 0 {
        None
    } else {
        Some(limit.unsigned_abs() as usize)
    };
    let batch = body
        .get("batchSize")
        .and_then(as_i64)
        .map(|b| b.max(0) as usize);
    let query = Query::new(&filter, sort, skip, limit);
    let cursor = QueryCursor::new(&inner.store, db, &coll, query, projection.cloned());
    find_batch(inner, cursor, batch, single)
}

/// `count`.
pub(crate) fn count(inner: &mut Inner, db: &str, body: &Document) -> Result<Body, CommandError> {
    let coll = coll_arg(body, "count")?;
    let query = opt_doc(body, "query")?;
    let skip = body.get("skip").and_then(as_i64).unwrap_or(0).max(0) as usize;
    let limit = body
        .get("limit")
        .and_then(as_i64)
        .unwrap_or(0)
        .unsigned_abs() as usize;
    let n = match inner.store.coll(db, &coll) {
        Some(c) => query::count(c, &query)?,
        None => 0,
    };
    let n = n.saturating_sub(skip);
    let n = if limit > 0 { n.min(limit) } else { n };
    Ok(Body::Doc(doc! { "n": n as i32 }))
}

/// `distinct`.
pub(crate) fn distinct(inner: &mut Inner, db: &str, body: &Document) -> Result<Body, CommandError> {
    let coll = coll_arg(body, "distinct")?;
    let key = body
        .get_str("key")
        .map_err(|_| CommandError::type_mismatch("distinct needs 'key'"))?;
    let query = opt_doc(body, "query")?;
    let mut values: Vec<Bson> = Vec::new();
    if let Some(c) = inner.store.coll(db, &coll) {
        for d in query::documents(c, &query)? {
            for v in lookup(&d, key) {
                let items: Vec<&Bson> = match v {
                    Bson::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for item in items {
                    if !values.iter().any(|x| values_equal(x, item)) {
                        values.push(item.clone());
                    }
                }
            }
        }
    }
    Ok(Body::Doc(doc! { "values": values }))
}

/// The countDocuments pipeline: `[$match, $skip?, $limit?, {$group: {_id: <c>, <f>: {$sum: 1}}}]`.
struct CountShape<'a> {
    filter: &'a Document,
    skip: usize,
    limit: Option<usize>,
    id: &'a Bson,
    field: &'a str,
}

fn count_shape(stages: &[pipeline::Stage]) -> Option<CountShape<'_>> {
    use pipeline::Stage;
    let (Stage::Match(filter), rest) = stages.split_first()? else {
        return None;
    };
    let (Stage::Group(group), middle) = rest.split_last()? else {
        return None;
    };
    let (mut skip, mut limit) = (0usize, None);
    for s in middle {
        match s {
            Stage::Skip(n) if limit.is_none() => skip += *n as usize,
            Stage::Limit(n) => {
                limit = Some(limit.map_or(*n as usize, |l: usize| l.min(*n as usize)))
            }
            _ => return None,
        }
    }
    if group.len() != 2 {
        return None;
    }
    let id = group.get("_id")?;
    if matches!(id, Bson::String(s) if s.starts_with('$')) || matches!(id, Bson::Document(_)) {
        return None;
    }
    let (field, acc) = group.iter().find(|(k, _)| k.as_str() != "_id")?;
    let sum = acc.as_document()?.get("$sum")?;
    if as_i64(sum) != Some(1) || acc.as_document()?.len() != 1 {
        return None;
    }
    Some(CountShape {
        filter,
        skip,
        limit,
        id,
        field,
    })
}

/// `$sum: 1` yields an Int32 while it fits, like MongoDB.
fn count_value(n: i64) -> Bson {
    i32::try_from(n).map_or(Bson::Int64(n), Bson::Int32)
}

/// Ordinary `aggregate` (not a change stream).
pub(crate) fn aggregate(
    inner: &mut Inner,
    db: &str,
    body: &Document,
) -> Result<Body, CommandError> {
    let stages = body
        .get_array("pipeline")
        .map_err(|_| CommandError::type_mismatch("aggregate needs a 'pipeline' array"))?;
    let stages = pipeline::parse_pipeline(stages)?;
    if let (Some(Bson::String(coll)), Some(shape)) = (body.get("aggregate"), count_shape(&stages)) {
        // countDocuments: count through the query engine without decoding documents.
        let n = match inner.store.coll(db, coll) {
            Some(c) => {
                let mut q = Query::new(shape.filter, None, shape.skip, shape.limit);
                let mut n = 0i64;
                while q.next(c)?.is_some() {
                    n += 1;
                }
                n
            }
            None => 0,
        };
        let out = if n == 0 {
            Vec::new()
        } else {
            let mut d = doc! { "_id": shape.id.clone() };
            d.insert(shape.field.to_owned(), count_value(n));
            vec![serialize(&d)]
        };
        return Ok(first_batch(
            inner,
            format!("{db}.{coll}"),
            out.into(),
            None,
            false,
        ));
    }
    let (ns, docs) = match body.get("aggregate") {
        Some(Bson::String(coll)) => {
            let mut docs = Vec::new();
            if let Some(c) = inner.store.coll(db, coll) {
                let empty = Document::new();
                let pre_filter = match stages.first() {
                    Some(pipeline::Stage::Match(f)) => f,
                    _ => &empty,
                };
                docs = query::documents(c, pre_filter)?;
            }
            (format!("{db}.{coll}"), docs)
        }
        _ => (format!("{db}.$cmd.aggregate"), Vec::new()),
    };
    let out = pipeline::run(docs, &stages)?;
    let batch = body
        .get_document("cursor")
        .ok()
        .and_then(|c| c.get("batchSize"))
        .and_then(as_i64)
        .map(|b| b.max(0) as usize);
    Ok(first_batch(
        inner,
        ns,
        out.iter().map(serialize).collect(),
        batch,
        false,
    ))
}
