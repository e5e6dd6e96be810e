//! Legacy id -> UUID resolution through `id_map`: a bounded in-memory cache holding only entries
//! from committed transactions, then ONE statement for every cache miss that reads the entries
//! already there and allocates client-generated UUIDv7s for the others (`INSERT .. ON CONFLICT DO
//! NOTHING RETURNING`), then a lookup of only the keys a concurrent allocator won: a batch of new
//! documents and a batch of known ones both cost one round trip. Allocation is sorted so
//! concurrent allocators lock keys in the same order. The reverse lookup (UUID back to legacy id,
//! for verify) is one SQL expression, `legacy_id_sql`.
//!
//! Identity: the string `_id` "6b09..." and `ObjectId("6b09...")` are two MongoDB documents with
//! the same legacy-id text. `id_map.legacy_type` records which `_id` type owns an entry (set when
//! a document allocates it, claimed by the first document that finds it unset, e.g. allocated by
//! a reference or by the application's backfill); a document of the other type is a collision,
//! never a second user of the entry.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::types::Type;
use tokio_postgres::Transaction;

use crate::mapping::LegacyRef;
use crate::sink::error::SinkError;

/// Default number of cached id_map entries.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// The BSON type of a document `_id` that owns an id_map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdType {
    ObjectId,
    String,
}

impl IdType {
    /// The type of a document key, for the two types id_map keys (others are mapping errors).
    pub fn of(key: &bson::Bson) -> Option<IdType> {
        match key {
            bson::Bson::ObjectId(_) => Some(IdType::ObjectId),
            bson::Bson::String(_) => Some(IdType::String),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            IdType::ObjectId => "objectId",
            IdType::String => "string",
        }
    }

    fn parse(s: &str) -> Option<IdType> {
        match s {
            "objectId" => Some(IdType::ObjectId),
            "string" => Some(IdType::String),
            _ => None,
        }
    }

    /// How a document of this type with legacy id `legacy` is written in reasons.
    pub fn describe(self, legacy: &str) -> String {
        match self {
            IdType::ObjectId => format!("ObjectId(\"{legacy}\")"),
            IdType::String => format!("the string _id {legacy:?}"),
        }
    }
}

/// Whether a string `_id` with this text and an ObjectId can share it (24 lower-case hex digits).
pub fn may_collide(legacy: &str) -> bool {
    legacy.len() == 24
        && legacy
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// One cached entry: the UUID and the type that owns it (None: not known to be owned).
type Entry = (uuid::Uuid, Option<IdType>);

/// A legacy id as the cache stores it: an ObjectId's 24 hex digits as their 12 bytes, any other
/// id as its text; no allocation for ObjectIds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum CompactId {
    Hex24([u8; 12]),
    Text(Box<str>),
}

impl CompactId {
    fn of(legacy: &str) -> CompactId {
        if may_collide(legacy) {
            let mut bytes = [0u8; 12];
            let digits = legacy.as_bytes();
            for (i, b) in bytes.iter_mut().enumerate() {
                *b = (hex_digit(digits[2 * i]) << 4) | hex_digit(digits[2 * i + 1]);
            }
            CompactId::Hex24(bytes)
        } else {
            CompactId::Text(legacy.into())
        }
    }
}

/// The value of a lower-case hex digit (`may_collide` checked the text first).
fn hex_digit(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => b.wrapping_sub(b'a').wrapping_add(10) & 0x0f,
    }
}

/// A cache key: the collection's number in the cache's own list of names, and the legacy id.
type Key = (u32, CompactId);

/// Two-generation cache: lookups promote from the old generation; when the young one is full the
/// old one is dropped. Memory stays under `capacity` entries whatever the workload; an entry
/// takes about 60 bytes (collection names are stored once, ObjectIds as 12 bytes).
#[derive(Debug)]
pub struct IdCache {
    capacity: usize,
    /// Collection names, numbered by their position.
    collections: Vec<String>,
    young: HashMap<Key, Entry>,
    old: HashMap<Key, Entry>,
}

impl IdCache {
    pub fn new(capacity: usize) -> Self {
        IdCache {
            capacity: capacity.max(2),
            collections: Vec::new(),
            young: HashMap::new(),
            old: HashMap::new(),
        }
    }

    /// The key of `r`, if its collection has ever been cached (otherwise nothing of it is).
    fn key(&self, r: &LegacyRef) -> Option<Key> {
        let n = self.collections.iter().position(|c| *c == r.collection)?;
        Some((u32::try_from(n).ok()?, CompactId::of(&r.legacy_id)))
    }

    /// The key of `r`, numbering its collection when it is new.
    fn key_or_add(&mut self, r: &LegacyRef) -> Option<Key> {
        if let Some(k) = self.key(r) {
            return Some(k);
        }
        let n = u32::try_from(self.collections.len()).ok()?;
        self.collections.push(r.collection.clone());
        Some((n, CompactId::of(&r.legacy_id)))
    }

    fn entry(&mut self, r: &LegacyRef) -> Option<Entry> {
        let key = self.key(r)?;
        if let Some(e) = self.young.get(&key) {
            return Some(*e);
        }
        let e = self.old.remove(&key)?;
        self.put(key, e);
        Some(e)
    }

    pub fn get(&mut self, key: &LegacyRef) -> Option<uuid::Uuid> {
        self.entry(key).map(|(id, _)| id)
    }

    fn put(&mut self, key: Key, entry: Entry) {
        if self.young.len() >= self.capacity / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, entry);
    }

    fn put_ref(&mut self, r: &LegacyRef, entry: Entry) {
        if let Some(key) = self.key_or_add(r) {
            self.put(key, entry);
        }
    }

    /// Only call with entries whose transaction has committed.
    pub fn insert(&mut self, key: LegacyRef, id: uuid::Uuid) {
        self.put_ref(&key, (id, None));
    }

    /// Only call with entries whose transaction has committed.
    pub fn insert_owned(&mut self, key: LegacyRef, id: uuid::Uuid, owner: Option<IdType>) {
        self.put_ref(&key, (id, owner));
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// The number of entries the cache holds at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What resolving one batch's references did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Every requested reference with its UUID.
    pub ids: HashMap<LegacyRef, uuid::Uuid>,
    /// Entries read, allocated or claimed inside the (not yet committed) transaction, with their
    /// owner type: cache them after commit only.
    pub fresh: Vec<(LegacyRef, uuid::Uuid, Option<IdType>)>,
    /// Document keys whose entry belongs to a document of the other `_id` type: (key, the
    /// type of the key that was refused, the owner's type).
    pub collisions: HashMap<(LegacyRef, IdType), IdType>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub allocated: u64,
    pub statements: u64,
}

/// A SQL expression for the legacy id behind the UUID `uuid_expr` in the collection named by the
/// bind parameter `$collection_param`, or `unmapped:<uuid>` when id_map has no such entry (a
/// quoted `id_map_table` is expected).
pub fn legacy_id_sql(id_map_table: &str, collection_param: usize, uuid_expr: &str) -> String {
    format!(
        "coalesce((select m.legacy_object_id from {id_map_table} m where m.collection = ${collection_param} and m.new_id = {uuid_expr}), \
         'unmapped:' || {uuid_expr}::text)"
    )
}

/// Resolves `refs` to UUIDs inside `tx`, allocating the missing ones, and checks the ownership of
/// the documents' own keys: `owners` lists each document key of the batch with its `_id` type, in
/// stream order (keys in `owners` but not in `refs`, such as deleted documents, are only checked,
/// never allocated). The first type to own a legacy id keeps it; the other is reported in
/// `collisions`.
pub async fn resolve(
    tx: &Transaction<'_>,
    id_map: &str,
    cache: &mut IdCache,
    refs: BTreeSet<LegacyRef>,
    owners: &[(LegacyRef, IdType)],
    likely: Likely,
) -> Result<Resolution, SinkError> {
    let mut out = Resolution::default();
    // The type each key is claimed for: the first in stream order; a later key of the other type
    // in the same batch collides with it whatever the database says.
    let mut wanted: HashMap<&LegacyRef, IdType> = HashMap::new();
    for (key, t) in owners {
        match wanted.get(key) {
            None => {
                wanted.insert(key, *t);
            }
            Some(first) if first != t => {
                out.collisions.insert((key.clone(), *t), *first);
            }
            Some(_) => {}
        }
    }
    let mut known: HashMap<LegacyRef, Option<IdType>> = HashMap::new();
    let mut missing = Vec::new();
    let checked_only = owners
        .iter()
        .map(|(k, _)| k)
        .filter(|k| !refs.contains(*k))
        .cloned()
        .collect::<BTreeSet<_>>();
    for r in refs.into_iter().chain(checked_only.iter().cloned()) {
        let owned_check = wanted.contains_key(&r) && may_collide(&r.legacy_id);
        match cache.entry(&r) {
            Some((id, owner)) if !owned_check || owner.is_some() => {
                out.cache_hits += 1;
                if !checked_only.contains(&r) {
                    out.ids.insert(r.clone(), id);
                }
                known.insert(r, owner);
            }
            _ => {
                out.cache_misses += 1;
                missing.push(r);
            }
        }
    }
    if !missing.is_empty() {
        // One round trip for the missing entries (`allocate`); then a lookup of only what was
        // there already (when allocation went first) or what another transaction allocated
        // meanwhile, and of the keys that are only checked.
        let to_allocate: Vec<LegacyRef> = missing
            .iter()
            .filter(|r| !checked_only.contains(*r))
            .cloned()
            .collect();
        if !to_allocate.is_empty() {
            allocate(
                tx,
                id_map,
                &to_allocate,
                &wanted,
                likely,
                &mut out,
                &mut known,
            )
            .await?;
        }
        let lookup: Vec<LegacyRef> = missing
            .into_iter()
            .filter(|r| !known.contains_key(r))
            .collect();
        if !lookup.is_empty() {
            let found = select(tx, id_map, &lookup).await?;
            out.statements += 1;
            for (r, id, owner) in found {
                if !checked_only.contains(&r) {
                    out.ids.insert(r.clone(), id);
                }
                out.fresh.push((r.clone(), id, owner));
                known.insert(r, owner);
            }
            if let Some(r) = lookup
                .iter()
                .find(|r| !checked_only.contains(*r) && !out.ids.contains_key(*r))
            {
                return Err(SinkError::IdMapIncomplete {
                    collection: r.collection.clone(),
                    legacy_id: r.legacy_id.clone(),
                });
            }
        }
    }
    // Keys found without an owner are claimed for the first document that writes them.
    let to_claim: Vec<(LegacyRef, IdType)> = wanted
        .iter()
        .filter(|(k, _)| may_collide(&k.legacy_id) && known.get(**k) == Some(&None))
        .filter(|(k, _)| !checked_only.contains(**k))
        .map(|(k, t)| ((*k).clone(), *t))
        .collect();
    if !to_claim.is_empty() {
        for (r, owner) in claim(tx, id_map, &to_claim).await? {
            if let Some(id) = out.ids.get(&r) {
                out.fresh.push((r.clone(), *id, owner));
            }
            known.insert(r, owner);
        }
        out.statements += 1;
    }
    for (key, t) in owners {
        if !may_collide(&key.legacy_id) {
            continue;
        }
        if let Some(Some(owner)) = known.get(key) {
            if owner != t {
                out.collisions.insert((key.clone(), *t), *owner);
            }
        }
    }
    Ok(out)
}

/// Whether the documents of a batch are likely new to id_map, which decides how their missing
/// entries are resolved in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Likely {
    /// Inserts and copies: insert first; the few keys already there are looked up after.
    New,
    /// Updates, deletes: read the entries there and insert only the others, in one statement
    /// (no key goes through a refused insert, and no second round trip for a cold cache).
    Known,
}

/// Resolves the entries of `to_allocate` in one statement: inserts new entries (client-generated
/// UUIDv7, `ON CONFLICT DO NOTHING`), and with `Likely::Known` first reads the entries that
/// exist. An entry that was there (with `Likely::New`) or that another transaction commits
/// meanwhile is not returned: the caller looks those up.
async fn allocate(
    tx: &Transaction<'_>,
    id_map: &str,
    to_allocate: &[LegacyRef],
    wanted: &HashMap<&LegacyRef, IdType>,
    likely: Likely,
    out: &mut Resolution,
    known: &mut HashMap<LegacyRef, Option<IdType>>,
) -> Result<(), SinkError> {
    // BTreeSet order is kept: every allocator inserts keys in the same order (no deadlocks).
    let collections: Vec<&str> = to_allocate.iter().map(|r| r.collection.as_str()).collect();
    let legacy: Vec<&str> = to_allocate.iter().map(|r| r.legacy_id.as_str()).collect();
    let types: Vec<Option<&str>> = to_allocate
        .iter()
        .map(|r| wanted.get(r).map(|t| t.as_str()))
        .collect();
    let new_ids: Vec<uuid::Uuid> = to_allocate.iter().map(|_| uuid::Uuid::now_v7()).collect();
    let sql = match likely {
        Likely::New => format!(
            "INSERT INTO {id_map} (collection, legacy_object_id, new_id, legacy_type)
             SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
             ON CONFLICT (collection, legacy_object_id) DO NOTHING
             RETURNING collection, legacy_object_id, new_id, legacy_type, true"
        ),
        Likely::Known => format!(
            "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[])
                          WITH ORDINALITY AS u(c, l, n, t, o)),
                  found AS (SELECT m.* FROM u CROSS JOIN LATERAL
                              (SELECT m.collection, m.legacy_object_id, m.new_id, m.legacy_type
                               FROM {id_map} m
                               WHERE m.collection = u.c AND m.legacy_object_id = u.l
                               LIMIT 1) m),
                  fresh AS (INSERT INTO {id_map} (collection, legacy_object_id, new_id, legacy_type)
                            SELECT u.c, u.l, u.n, u.t FROM u
                            WHERE NOT EXISTS (SELECT 1 FROM found f
                                              WHERE f.collection = u.c
                                                AND f.legacy_object_id = u.l)
                            ORDER BY u.o
                            ON CONFLICT (collection, legacy_object_id) DO NOTHING
                            RETURNING collection, legacy_object_id, new_id, legacy_type)
             SELECT collection, legacy_object_id, new_id, legacy_type, false FROM found
             UNION ALL
             SELECT collection, legacy_object_id, new_id, legacy_type, true FROM fresh"
        ),
    };
    let rows = tx
        .query_typed(
            &sql,
            &[
                (&collections, Type::TEXT_ARRAY),
                (&legacy, Type::TEXT_ARRAY),
                (&new_ids, Type::UUID_ARRAY),
                (&types, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| SinkError::pg("allocating ids in id_map", e))?;
    out.statements += 1;
    out.allocated += rows
        .iter()
        .filter(|row| matches!(row.try_get::<_, bool>(4), Ok(true)))
        .count() as u64;
    for (r, id, owner) in rows_to_entries(rows) {
        out.ids.insert(r.clone(), id);
        out.fresh.push((r.clone(), id, owner));
        known.insert(r, owner);
    }
    Ok(())
}

/// Sets the owner of entries that have none; returns every entry's owner afterwards.
async fn claim(
    tx: &Transaction<'_>,
    id_map: &str,
    keys: &[(LegacyRef, IdType)],
) -> Result<Vec<(LegacyRef, Option<IdType>)>, SinkError> {
    let collections: Vec<&str> = keys.iter().map(|(r, _)| r.collection.as_str()).collect();
    let legacy: Vec<&str> = keys.iter().map(|(r, _)| r.legacy_id.as_str()).collect();
    let types: Vec<&str> = keys.iter().map(|(_, t)| t.as_str()).collect();
    let sql = format!(
        "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS u(c, l, t)),
              claimed AS (UPDATE {id_map} m SET legacy_type = u.t FROM u
                          WHERE m.collection = u.c AND m.legacy_object_id = u.l
                            AND m.legacy_type IS NULL
                          RETURNING m.collection, m.legacy_object_id, m.legacy_type)
         SELECT m.collection, m.legacy_object_id, coalesce(c.legacy_type, m.legacy_type)
         FROM {id_map} m JOIN u ON m.collection = u.c AND m.legacy_object_id = u.l
         LEFT JOIN claimed c ON c.collection = m.collection AND c.legacy_object_id = m.legacy_object_id"
    );
    let rows = tx
        .query_typed(
            &sql,
            &[
                (&collections, Type::TEXT_ARRAY),
                (&legacy, Type::TEXT_ARRAY),
                (&types, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| SinkError::pg("claiming id_map entries", e))?;
    Ok(rows
        .iter()
        .map(|row| {
            (
                LegacyRef {
                    collection: row.get(0),
                    legacy_id: row.get(1),
                },
                row.get::<_, Option<String>>(2)
                    .as_deref()
                    .and_then(IdType::parse),
            )
        })
        .collect())
}

/// The entries of `refs` that exist. Each key is one probe of the primary key (`LATERAL ..
/// LIMIT 1`): the planner cannot turn the lookup into a scan of the whole of id_map, which it
/// would pick for a join while the table's statistics still say it is small.
async fn select(
    tx: &Transaction<'_>,
    id_map: &str,
    refs: &[LegacyRef],
) -> Result<Vec<(LegacyRef, uuid::Uuid, Option<IdType>)>, SinkError> {
    let (collections, legacy): (Vec<&str>, Vec<&str>) = refs
        .iter()
        .map(|r| (r.collection.as_str(), r.legacy_id.as_str()))
        .unzip();
    let sql = format!(
        "SELECT m.* FROM unnest($1::text[], $2::text[]) AS u(collection, legacy_object_id)
         CROSS JOIN LATERAL
           (SELECT m.collection, m.legacy_object_id, m.new_id, m.legacy_type
            FROM {id_map} m
            WHERE m.collection = u.collection AND m.legacy_object_id = u.legacy_object_id
            LIMIT 1) m"
    );
    let rows = tx
        .query_typed(
            &sql,
            &[
                (&collections, Type::TEXT_ARRAY),
                (&legacy, Type::TEXT_ARRAY),
            ],
        )
        .await
        .map_err(|e| SinkError::pg("looking up ids in id_map", e))?;
    Ok(rows_to_entries(rows))
}

fn rows_to_entries(rows: Vec<tokio_postgres::Row>) -> Vec<(LegacyRef, uuid::Uuid, Option<IdType>)> {
    rows.into_iter()
        .map(|row| {
            (
                LegacyRef {
                    collection: row.get(0),
                    legacy_id: row.get(1),
                },
                row.get(2),
                row.get::<_, Option<String>>(3)
                    .as_deref()
                    .and_then(IdType::parse),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(i: usize) -> LegacyRef {
        LegacyRef {
            collection: "c".into(),
            legacy_id: i.to_string(),
        }
    }

    #[test]
    fn cache_stays_bounded_and_keeps_recent_entries() {
        let mut cache = IdCache::new(10);
        for i in 0..1000 {
            cache.insert(r(i), uuid::Uuid::nil());
            assert!(cache.len() <= 10);
        }
        assert!(cache.get(&r(999)).is_some());
        assert!(cache.get(&r(0)).is_none());
    }

    #[test]
    fn cache_keys_tell_collections_and_id_forms_apart() {
        let oid = "6b09a1b2c3d4e5f6a7b8c9d0";
        let key = |collection: &str, legacy_id: &str| LegacyRef {
            collection: collection.into(),
            legacy_id: legacy_id.into(),
        };
        let mut cache = IdCache::new(100);
        let (a, b, c, d) = (
            uuid::Uuid::from_u128(1),
            uuid::Uuid::from_u128(2),
            uuid::Uuid::from_u128(3),
            uuid::Uuid::from_u128(4),
        );
        cache.insert(key("users", oid), a);
        cache.insert_owned(key("offers", oid), b, Some(IdType::ObjectId));
        // Not 24 lower-case hex digits: kept as text, never confused with the ObjectId form.
        cache.insert(key("users", "6B09A1B2C3D4E5F6A7B8C9D0"), c);
        cache.insert(key("users", "tmpl-1"), d);
        assert_eq!(cache.get(&key("users", oid)), Some(a));
        assert_eq!(
            cache.entry(&key("offers", oid)),
            Some((b, Some(IdType::ObjectId)))
        );
        assert_eq!(
            cache.get(&key("users", "6B09A1B2C3D4E5F6A7B8C9D0")),
            Some(c)
        );
        assert_eq!(cache.get(&key("users", "tmpl-1")), Some(d));
        assert_eq!(cache.get(&key("payments", oid)), None);
        assert_eq!(cache.get(&key("users", "6b09a1b2c3d4e5f6a7b8c9d1")), None);
        assert_eq!(
            CompactId::of(oid),
            CompactId::Hex24([
                0x6b, 0x09, 0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0xa7, 0xb8, 0xc9, 0xd0
            ])
        );
        assert_eq!(cache.len(), 4);
    }
}
