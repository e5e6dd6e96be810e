//! In-memory databases and collections: documents in natural (insertion) order, an `_id` hash
//! index, unique secondary indexes, and the per-collection `changeStreamPreAndPostImages` flag.
//! Write paths live in `write.rs`; this module owns the containers and their invariants.

pub(crate) mod matcher;
pub(crate) mod update;
pub(crate) mod value;
pub(crate) mod write;

use crate::error::CommandError;
use bson::{doc, Bson, Document};
use std::collections::{BTreeMap, HashMap};
use value::{get_path, IdKey};

/// A secondary index (unique ones are enforced).
#[derive(Debug, Clone)]
pub(crate) struct Index {
    pub name: String,
    pub key: Document,
    pub unique: bool,
    pub sparse: bool,
    entries: HashMap<IdKey, u64>,
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
    docs: BTreeMap<u64, Document>,
    ids: HashMap<IdKey, u64>,
    next_rid: u64,
    pub indexes: Vec<Index>,
    pub images: bool,
    pub uuid: uuid::Uuid,
}

impl Default for Collection {
    fn default() -> Self {
        Collection {
            docs: BTreeMap::new(),
            ids: HashMap::new(),
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

impl Collection {
    pub(crate) fn len(&self) -> usize {
        self.docs.len()
    }

    /// Documents in natural order with their record ids.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Document)> {
        self.docs.iter().map(|(r, d)| (*r, d))
    }

    pub(crate) fn get(&self, rid: u64) -> Option<&Document> {
        self.docs.get(&rid)
    }

    pub(crate) fn rid_of(&self, id: &Bson) -> Option<u64> {
        self.ids.get(&IdKey::of(id)).copied()
    }

    pub(crate) fn get_by_id(&self, id: &Bson) -> Option<&Document> {
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

    /// Inserts a document that already has `_id` as its first field.
    pub(crate) fn insert(&mut self, doc: Document) -> Result<u64, CommandError> {
        let id = doc.get("_id").cloned().unwrap_or(Bson::Null);
        let key = IdKey::of(&id);
        if self.ids.contains_key(&key) {
            return Err(dup_key("_id_", &Bson::Document(doc! { "_id": id })));
        }
        self.check_unique(&doc, None)?;
        let rid = self.next_rid;
        self.next_rid += 1;
        self.ids.insert(key, rid);
        self.index_add(&doc, rid);
        self.docs.insert(rid, doc);
        Ok(rid)
    }

    /// Replaces the document stored under `rid` (the `_id` must not change); returns the old one.
    pub(crate) fn replace(&mut self, rid: u64, doc: Document) -> Result<Document, CommandError> {
        self.check_unique(&doc, Some(rid))?;
        let Some(old) = self.docs.insert(rid, doc) else {
            return Err(CommandError::new(1, "record vanished during update"));
        };
        self.index_remove(&old);
        if let Some(new) = self.docs.get(&rid) {
            let new = new.clone();
            self.index_add(&new, rid);
        }
        Ok(old)
    }

    /// Removes the document stored under `rid`.
    pub(crate) fn remove(&mut self, rid: u64) -> Option<Document> {
        let old = self.docs.remove(&rid)?;
        if let Some(id) = old.get("_id") {
            self.ids.remove(&IdKey::of(id));
        }
        self.index_remove(&old);
        Some(old)
    }

    /// Record ids matching a filter, in natural order (fast path for `{_id: value}`).
    pub(crate) fn find_rids(
        &self,
        filter: &Document,
        limit: Option<usize>,
    ) -> Result<Vec<u64>, CommandError> {
        if filter.len() == 1 {
            if let Some(id) = filter.get("_id") {
                let scalar = !matches!(id, Bson::Document(d) if d.keys().any(|k| k.starts_with('$')))
                    && !matches!(id, Bson::Array(_));
                if scalar {
                    return Ok(self.rid_of(id).into_iter().collect());
                }
            }
        }
        let mut out = Vec::new();
        for (rid, doc) in &self.docs {
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
            if matcher::matches(doc, filter)? {
                out.push(*rid);
            }
        }
        Ok(out)
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
            entries: HashMap::new(),
        };
        if unique {
            for (rid, doc) in &self.docs {
                if let Some(k) = idx.key_of(doc) {
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
