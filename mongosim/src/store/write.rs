//! Write paths over the store: insert, update (operators, replacement, pipeline, upsert, multi) and
//! delete. Each applied write yields a [`Change`] that the oplog turns into a change event and that
//! a transaction can undo; document bytes are shared with the store, never copied. Nothing here
//! touches the clock or the history.

use super::fields::{decode, encode};
use super::order::values_equal;
use super::query::select;
use super::update::{apply_operators, diff_top_level, UpdateSpec};
use super::{value, Raw, Store};
use crate::error::CommandError;
use crate::pipeline;
use bson::{oid::ObjectId, Bson, Document};

/// What happened.
#[derive(Debug, Clone)]
pub(crate) enum ChangeKind {
    Insert,
    Update { description: Document },
    Replace,
    Delete,
    Drop,
    Rename { to_db: String, to_coll: String },
    DropDatabase,
}

/// One applied write, ready to become a change event.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub db: String,
    pub coll: String,
    pub kind: ChangeKind,
    /// `_id` of the affected document.
    pub id: Option<Bson>,
    /// The new document of insert / replace events.
    pub full: Option<Raw>,
    /// The previous document (kept for transactions and pre-images).
    pub pre: Option<Raw>,
    /// The new document of an update (kept only for post-images).
    pub post: Option<Raw>,
    /// Whether the collection records pre/post images.
    pub images: bool,
}

impl Change {
    pub(crate) fn ddl(db: &str, coll: &str, kind: ChangeKind) -> Change {
        Change {
            db: db.to_owned(),
            coll: coll.to_owned(),
            kind,
            id: None,
            full: None,
            pre: None,
            post: None,
            images: false,
        }
    }
}

/// Ensures `_id` exists and is the first field.
pub(crate) fn with_id_first(mut doc: Document) -> Document {
    match doc.keys().next() {
        Some(k) if k == "_id" => doc,
        _ => {
            let id = doc
                .remove("_id")
                .unwrap_or_else(|| Bson::ObjectId(ObjectId::new()));
            let mut out = Document::new();
            out.insert("_id", id);
            out.extend(doc);
            out
        }
    }
}

/// Inserts one document into `db.coll` (created implicitly).
pub(crate) fn insert_one(
    store: &mut Store,
    db: &str,
    coll: &str,
    doc: Document,
    keep_pre: bool,
) -> Result<Change, CommandError> {
    let _ = keep_pre;
    let doc = with_id_first(doc);
    let id = doc.get("_id").cloned();
    let full: Raw = encode(&doc).into();
    let c = store.coll_or_create(db, coll);
    let images = c.images;
    c.insert(&doc, full.clone())?;
    Ok(Change {
        db: db.to_owned(),
        coll: coll.to_owned(),
        kind: ChangeKind::Insert,
        id,
        full: Some(full),
        pre: None,
        post: None,
        images,
    })
}

/// Outcome of one update statement.
#[derive(Debug, Default)]
pub(crate) struct UpdateOutcome {
    pub n: u64,
    pub modified: u64,
    pub upserted: Option<Bson>,
    pub changes: Vec<Change>,
    /// Pre- and post-documents of the last matched document (for findAndModify).
    pub last_pre: Option<Document>,
    pub last_post: Option<Document>,
}

fn compute_new(
    old: &Document,
    spec: &UpdateSpec,
    inserting: bool,
    now: bson::DateTime,
) -> Result<(Document, Option<Document>), CommandError> {
    match spec {
        UpdateSpec::Operators(ops) => {
            let applied = apply_operators(old, ops, inserting, now)?;
            Ok((applied.doc, Some(applied.description)))
        }
        UpdateSpec::Replacement(r) => {
            if let Some(k) = r.keys().find(|k| k.starts_with('$')) {
                return Err(CommandError::bad_value(format!(
                    "replacement document must not contain operator '{k}'"
                )));
            }
            let mut new = Document::new();
            let id = r.get("_id").or_else(|| old.get("_id")).cloned();
            if let Some(id) = id {
                if let Some(oid) = old.get("_id") {
                    if !values_equal(oid, &id) && !inserting {
                        return Err(CommandError::new(66, "After applying the update, the (immutable) field '_id' was found to have been altered"));
                    }
                }
                new.insert("_id", id);
            }
            for (k, v) in r.iter().filter(|(k, _)| k.as_str() != "_id") {
                new.insert(k.clone(), v.clone());
            }
            Ok((new, None))
        }
        UpdateSpec::Pipeline(stages) => {
            let parsed: Vec<_> = stages
                .iter()
                .map(pipeline::parse_stage)
                .collect::<Result<_, _>>()?;
            let mut doc = old.clone();
            for s in &parsed {
                doc = pipeline::apply_doc_stage(s, doc)?.unwrap_or_default();
            }
            if let (Some(a), Some(b)) = (old.get("_id"), doc.get("_id")) {
                if !values_equal(a, b) && !inserting {
                    return Err(CommandError::new(
                        66,
                        "the (immutable) field '_id' was altered",
                    ));
                }
            }
            let desc = diff_top_level(old, &doc);
            Ok((with_id_first(doc), Some(desc)))
        }
    }
}

/// Seed document for an upsert: the equality fields of the filter.
fn upsert_seed(filter: &Document) -> Document {
    let mut seed = Document::new();
    for (k, v) in filter {
        if k == "$and" {
            if let Bson::Array(items) = v {
                for item in items {
                    if let Bson::Document(d) = item {
                        seed.extend(upsert_seed(d));
                    }
                }
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        let value = match v {
            Bson::Document(d) if d.keys().next().is_some_and(|x| x.starts_with('$')) => {
                match d.get("$eq") {
                    Some(x) => x.clone(),
                    None => continue,
                }
            }
            other => other.clone(),
        };
        let _ = value::set_path(&mut seed, k, value);
    }
    seed
}

/// Applies one update statement to `db.coll`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn update(
    store: &mut Store,
    db: &str,
    coll: &str,
    filter: &Document,
    spec: &UpdateSpec,
    multi: bool,
    upsert: bool,
    sort: Option<&Document>,
    keep_pre: bool,
) -> Result<UpdateOutcome, CommandError> {
    if multi && !matches!(spec, UpdateSpec::Operators(_) | UpdateSpec::Pipeline(_)) {
        return Err(CommandError::new(
            9,
            "multi update is not supported for replacement-style update",
        ));
    }
    let mut out = UpdateOutcome::default();
    let rids = match store.coll(db, coll) {
        Some(c) => select(c, filter, sort, if multi { None } else { Some(1) })?,
        None => Vec::new(),
    };
    if rids.is_empty() {
        if upsert {
            let seed = upsert_seed(filter);
            let (mut new, _) = compute_new(&seed, spec, true, store.wall.now())?;
            if let UpdateSpec::Replacement(_) = spec {
                if !new.contains_key("_id") {
                    if let Some(id) = seed.get("_id") {
                        new.insert("_id", id.clone());
                    }
                }
            }
            let post = with_id_first(new.clone());
            let change = insert_one(store, db, coll, new, keep_pre)?;
            out.n = 1;
            out.upserted = change.id.clone();
            out.last_post = Some(post);
            out.changes.push(change);
        }
        return Ok(out);
    }
    let now = store.wall.now();
    let Some(c) = store.coll_mut(db, coll) else {
        return Ok(out);
    };
    for rid in rids {
        let Some(old_raw) = c.get(rid) else { continue };
        let old = decode(old_raw)?;
        let (new, description) = compute_new(&old, spec, false, now)?;
        out.n += 1;
        if new == old {
            out.last_pre = Some(old);
            out.last_post = Some(new);
            continue;
        }
        let id = old.get("_id").cloned();
        let images = c.images;
        let new_raw: Raw = encode(&new).into();
        let old_raw = c.replace(rid, &old, &new, new_raw.clone())?;
        out.modified += 1;
        let (kind, full) = match description {
            Some(d) => (ChangeKind::Update { description: d }, None),
            None => (ChangeKind::Replace, Some(new_raw.clone())),
        };
        let keep_post = images && matches!(kind, ChangeKind::Update { .. });
        out.changes.push(Change {
            db: db.to_owned(),
            coll: coll.to_owned(),
            kind,
            id,
            full,
            pre: (keep_pre || images).then_some(old_raw),
            post: keep_post.then_some(new_raw),
            images,
        });
        out.last_pre = Some(old);
        out.last_post = Some(new);
    }
    Ok(out)
}

/// Deletes documents matching `filter` (`limit` 1 = first match only).
pub(crate) fn delete(
    store: &mut Store,
    db: &str,
    coll: &str,
    filter: &Document,
    limit_one: bool,
    sort: Option<&Document>,
    keep_pre: bool,
) -> Result<(u64, Vec<Change>, Option<Document>), CommandError> {
    let Some(c) = store.coll_mut(db, coll) else {
        return Ok((0, Vec::new(), None));
    };
    let rids = select(c, filter, sort, if limit_one { Some(1) } else { None })?;
    let mut changes = Vec::with_capacity(rids.len());
    let mut last = None;
    let images = c.images;
    for rid in rids {
        if let Some(old) = c.remove(rid) {
            changes.push(Change {
                db: db.to_owned(),
                coll: coll.to_owned(),
                kind: ChangeKind::Delete,
                id: super::query::id_of(&old),
                full: None,
                pre: (keep_pre || images).then(|| old.clone()),
                post: None,
                images,
            });
            last = Some(old);
        }
    }
    let last = last.map(|raw| decode(&raw)).transpose()?;
    Ok((changes.len() as u64, changes, last))
}

/// Reverts one change (transaction abort). DDL changes are not reverted.
pub(crate) fn undo(store: &mut Store, change: &Change) {
    let Some(c) = store.coll_mut(&change.db, &change.coll) else {
        return;
    };
    let id = change.id.clone().unwrap_or(Bson::Null);
    match &change.kind {
        ChangeKind::Insert => {
            if let Some(rid) = c.rid_of(&id) {
                c.remove(rid);
            }
        }
        ChangeKind::Update { .. } | ChangeKind::Replace => {
            if let (Some(rid), Some(pre)) = (c.rid_of(&id), change.pre.clone()) {
                let _ = c.replace_raw(rid, pre);
            }
        }
        ChangeKind::Delete => {
            if let Some(pre) = change.pre.clone() {
                let _ = c.insert_raw(pre);
            }
        }
        _ => {}
    }
}
