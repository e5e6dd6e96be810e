//! In-memory databases and collections. A collection keeps each document once, as shared raw
//! BSON bytes in natural (insertion) order, an ordered `_id` index (MongoDB's value order, see
//! `key.rs`), unique secondary indexes, and the `changeStreamPreAndPostImages` flag. Write paths
//! live in `write.rs` and reads in `query.rs`; this module owns the containers and their
//! invariants (one document per `_id`, unique keys unique).

pub(crate) mod fields;
pub(crate) mod key;
pub(crate) mod matcher;
pub(crate) mod order;
pub(crate) mod plan;
pub(crate) mod query;
pub(crate) mod update;
pub(crate) mod value;
pub(crate) mod write;

use crate::error::CommandError;
use bson::{doc, Bson, Document};
use key::IdKey;
use std::collections::BTreeMap;
use std::sync::Arc;
use value::get_path;

/// A stored document: serialized BSON shared by the store, the history and cursors.
pub(crate) type Raw = Arc<[u8]>;

/// A secondary index (unique ones are enforced).
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub name: String,
    pub key: Document,
    pub unique: bool,
    pub sparse: bool,
    entries: BTreeMap<IdKey, u64>,
}

impl Index {
    fn key_of(&self, doc: &Document) -> Option<IdKey> {
        let mut parts = Vec::with_capacity(self.key.len());
        let mut any = false;
        for field in self.key.keys() {
            match get_path(doc, field) {
                Some(v) => {
                    any = true;
                    parts.push(v.clone());
                }
                None => parts.push(Bson::Null),
            }
        }
        if self.sparse && !any {
            return None;
        }
        Some(IdKey::of(&Bson::Array(parts)))
    }

    /// The index document listIndexes reports.
    pub(crate) fn describe(&self) -> Document {
        let mut d = doc! { "v": 2, "key": self.key.clone(), "name": self.name.clone() };
        if self.unique {
            d.insert("unique", true);
        }
        if self.sparse {
            d.insert("sparse", true);
        }
        d
    }
}

/// One collection.
#[derive(Debug)]
pub(crate) struct Collection {
    docs: BTreeMap<u64, Raw>,
    ids: BTreeMap<IdKey, u64>,
    next_rid: u64,
    pub indexes: Vec<Index>,
    pub images: bool,
    pub uuid: uuid::Uuid,
}

impl Default for Collection {
    fn default() -> Self {
        Collection {
            docs: BTreeMap::new(),
            ids: BTreeMap::new(),
            next_rid: 1,
            indexes: Vec::new(),
            images: false,
            uuid: uuid::Uuid::new_v4(),
        }
    }
}

fn dup_key(index: &str, key: &Bson) -> CommandError {
    CommandError::new(
        11000,
        format!("E11000 duplicate key error collection index: {index} dup key: {key}"),
    )
}

/// Rejects `_id` values MongoDB refuses (arrays, regexes, undefined).
pub(crate) fn check_id(id: &Bson) -> Result<(), CommandError> {
    let kind = match id {
        Bson::Array(_) => "array",
        Bson::RegularExpression(_) => "regex",
        Bson::Undefined => "undefined",
        _ => return Ok(()),
    };
    Err(CommandError::new(
        53,
        format!("The '_id' value cannot be of type {kind}"),
    ))
}

impl Collection {
    pub(crate) fn len(&self) -> usize {
        self.docs.len()
    }

    pub(crate) fn get(&self, rid: u64) -> Option<&Raw> {
        self.docs.get(&rid)
    }

    pub(crate) fn rid_of(&self, id: &Bson) -> Option<u64> {
        self.ids.get(&IdKey::of(id)).copied()
    }

    pub(crate) fn get_by_id(&self, id: &Bson) -> Option<&Raw> {
        self.rid_of(id).and_then(|r| self.docs.get(&r))
    }

    fn check_unique(&self, doc: &Document, own: Option<u64>) -> Result<(), CommandError> {
        for idx in self.indexes.iter().filter(|i| i.unique) {
            if let Some(k) = idx.key_of(doc) {
                if let Some(rid) = idx.entries.get(&k) {
                    if Some(*rid) != own {
                        return Err(dup_key(&idx.name, &Bson::Document(idx.key.clone())));
                    }
                }
            }
        }
        Ok(())
    }

    fn index_add(&mut self, doc: &Document, rid: u64) {
        for idx in self.indexes.iter_mut().filter(|i| i.unique) {
            if let Some(k) = idx.key_of(doc) {
                idx.entries.insert(k, rid);
            }
        }
    }

    fn index_remove(&mut self, doc: &Document) {
        for idx in self.indexes.iter_mut().filter(|i| i.unique) {
            if let Some(k) = idx.key_of(doc) {
                idx.entries.remove(&k);
            }
        }
    }

    fn has_unique(&self) -> bool {
        self.indexes.iter().any(|i| i.unique)
    }

    /// Inserts a document (`_id` first) given both decoded and serialized.
    pub(crate) fn insert(&mut self, doc: &Document, raw: Raw) -> Result<u64, CommandError> {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        check_id(&id)?;
        let key = IdKey::of(&id);
        if self.ids.contains_key(&key) {
            return Err(dup_key("_id_", &Bson::Document(doc! { "_id": id })));
        }
        self.check_unique(doc, None)?;
        let rid = self.next_rid;
        self.next_rid += 1;
        self.ids.insert(key, rid);
        self.index_add(doc, rid);
        self.docs.insert(rid, raw);
        Ok(rid)
    }

    /// Inserts a serialized document (transaction undo of a delete).
    pub(crate) fn insert_raw(&mut self, raw: Raw) -> Result<u64, CommandError> {
        let doc = fields::decode(&raw)?;
        self.insert(&doc, raw)
    }

    /// Replaces the document stored under `rid` (the `_id` must not change); returns the old
    /// bytes. `old` and `new` are the decoded documents (for unique indexes).
    pub(crate) fn replace(
        &mut self,
        rid: u64,
        old: &Document,
        new: &Document,
        raw: Raw,
    ) -> Result<Raw, CommandError> {
        self.check_unique(new, Some(rid))?;
        let Some(previous) = self.docs.insert(rid, raw) else {
            return Err(CommandError::new(1, "record vanished during update"));
        };
        self.index_remove(old);
        self.index_add(new, rid);
        Ok(previous)
    }

    /// Replaces a document with serialized bytes (transaction undo of an update).
    pub(crate) fn replace_raw(&mut self, rid: u64, raw: Raw) -> Result<Raw, CommandError> {
        let Some(current) = self.docs.get(&rid) else {
            return Err(CommandError::new(1, "record vanished during undo"));
        };
        let old = if self.has_unique() {
            fields::decode(current)?
        } else {
            Document::new()
        };
        let new = if self.has_unique() {
            fields::decode(&raw)?
        } else {
            Document::new()
        };
        self.replace(rid, &old, &new, raw)
    }

    /// Removes the document stored under `rid`.
    pub(crate) fn remove(&mut self, rid: u64) -> Option<Raw> {
        let old = self.docs.remove(&rid)?;
        if let Some(id) = query::id_of(&old) {
            self.ids.remove(&IdKey::of(&id));
        }
        if self.has_unique() {
            if let Ok(doc) = fields::decode(&old) {
                self.index_remove(&doc);
            }
        }
        Some(old)
    }

    /// Adds an index (building its entries); errors on existing duplicates.
    pub(crate) fn create_index(
        &mut self,
        name: String,
        key: Document,
        unique: bool,
        sparse: bool,
    ) -> Result<bool, CommandError> {
        if self.indexes.iter().any(|i| i.name == name) || name == "_id_" {
            return Ok(false);
        }
        let mut idx = Index {
            name,
            key,
            unique,
            sparse,
            entries: BTreeMap::new(),
        };
        if unique {
            for (rid, raw) in &self.docs {
                let doc = fields::decode(raw)?;
                if let Some(k) = idx.key_of(&doc) {
                    if idx.entries.insert(k, *rid).is_some() {
                        return Err(dup_key(&idx.name, &Bson::Document(idx.key.clone())));
                    }
                }
            }
        }
        self.indexes.push(idx);
        Ok(true)
    }
}

/// One database.
#[derive(Debug, Default)]
pub(crate) struct Database {
    pub colls: BTreeMap<String, Collection>,
}

/// Every database.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub dbs: BTreeMap<String, Database>,
    /// The simulator's wall clock (for `$currentDate`).
    pub wall: crate::clock::WallClock,
}

impl Store {
    pub(crate) fn coll(&self, db: &str, coll: &str) -> Option<&Collection> {
        self.dbs.get(db)?.colls.get(coll)
    }

    pub(crate) fn coll_mut(&mut self, db: &str, coll: &str) -> Option<&mut Collection> {
        self.dbs.get_mut(db)?.colls.get_mut(coll)
    }

    /// The collection, created implicitly when missing.
    pub(crate) fn coll_or_create(&mut self, db: &str, coll: &str) -> &mut Collection {
        self.dbs
            .entry(db.to_owned())
            .or_default()
            .colls
            .entry(coll.to_owned())
            .or_default()
    }
}
