//! Legacy id -> UUID resolution through `id_map`: a bounded in-memory cache holding only entries
//! from committed transactions, then ONE batched lookup, then ONE batched allocation of UUIDv7s
//! (`INSERT .. ON CONFLICT DO NOTHING`, then a re-select of the rows another allocator won).
//! Allocation is sorted so concurrent allocators lock keys in the same order. The reverse lookup
//! (UUID back to legacy id, for verify) is one SQL expression, `legacy_id_sql`.

use std::collections::{BTreeSet, HashMap};

use tokio_postgres::Transaction;

use crate::mapping::LegacyRef;
use crate::sink::error::SinkError;

/// Default number of cached id_map entries.
pub const DEFAULT_CACHE_CAPACITY: usize = 100_000;

/// Two-generation cache: lookups promote from the old generation; when the young one is full the
/// old one is dropped. Memory stays under `capacity` entries whatever the workload.
#[derive(Debug)]
pub struct IdCache {
    capacity: usize,
    young: HashMap<LegacyRef, uuid::Uuid>,
    old: HashMap<LegacyRef, uuid::Uuid>,
}

impl IdCache {
    pub fn new(capacity: usize) -> Self {
        IdCache {
            capacity: capacity.max(2),
            young: HashMap::new(),
            old: HashMap::new(),
        }
    }

    pub fn get(&mut self, key: &LegacyRef) -> Option<uuid::Uuid> {
        if let Some(id) = self.young.get(key) {
            return Some(*id);
        }
        let id = self.old.remove(key)?;
        self.insert(key.clone(), id);
        Some(id)
    }

    /// Only call with entries whose transaction has committed.
    pub fn insert(&mut self, key: LegacyRef, id: uuid::Uuid) {
        if self.young.len() >= self.capacity / 2 {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, id);
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
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
    /// Entries read or allocated inside the (not yet committed) transaction: cache them after
    /// commit only.
    pub fresh: Vec<(LegacyRef, uuid::Uuid)>,
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

/// Resolves `refs` to UUIDs inside `tx`, allocating the missing ones.
pub async fn resolve(
    tx: &Transaction<'_>,
    id_map: &str,
    cache: &mut IdCache,
    refs: BTreeSet<LegacyRef>,
) -> Result<Resolution, SinkError> {
    let mut out = Resolution::default();
    let mut missing = Vec::new();
    for r in refs {
        match cache.get(&r) {
            Some(id) => {
                out.cache_hits += 1;
                out.ids.insert(r, id);
            }
            None => {
                out.cache_misses += 1;
                missing.push(r);
            }
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let found = select(tx, id_map, &missing).await?;
    out.statements += 1;
    absorb(&mut out, found);
    let to_allocate: Vec<LegacyRef> = missing
        .into_iter()
        .filter(|r| !out.ids.contains_key(r))
        .collect();
    if to_allocate.is_empty() {
        return Ok(out);
    }
    // BTreeSet order is kept: every allocator inserts keys in the same order (no deadlocks).
    let (collections, legacy): (Vec<&str>, Vec<&str>) = to_allocate
        .iter()
        .map(|r| (r.collection.as_str(), r.legacy_id.as_str()))
        .unzip();
    let new_ids: Vec<uuid::Uuid> = to_allocate.iter().map(|_| uuid::Uuid::now_v7()).collect();
    let sql = format!(
        "INSERT INTO {id_map} (collection, legacy_object_id, new_id)
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[])
         ON CONFLICT (collection, legacy_object_id) DO NOTHING
         RETURNING collection, legacy_object_id, new_id"
    );
    let rows = tx
        .query(&sql, &[&collections, &legacy, &new_ids])
        .await
        .map_err(|e| SinkError::pg("allocating ids in id_map", e))?;
    out.statements += 1;
    out.allocated += rows.len() as u64;
    absorb(&mut out, rows_to_pairs(rows));
    let lost_race: Vec<LegacyRef> = to_allocate
        .into_iter()
        .filter(|r| !out.ids.contains_key(r))
        .collect();
    if lost_race.is_empty() {
        return Ok(out);
    }
    let found = select(tx, id_map, &lost_race).await?;
    out.statements += 1;
    absorb(&mut out, found);
    if let Some(r) = lost_race.iter().find(|r| !out.ids.contains_key(*r)) {
        return Err(SinkError::IdMapIncomplete {
            collection: r.collection.clone(),
            legacy_id: r.legacy_id.clone(),
        });
    }
    Ok(out)
}

fn absorb(out: &mut Resolution, pairs: Vec<(LegacyRef, uuid::Uuid)>) {
    for (r, id) in pairs {
        out.ids.insert(r.clone(), id);
        out.fresh.push((r, id));
    }
}

async fn select(
    tx: &Transaction<'_>,
    id_map: &str,
    refs: &[LegacyRef],
) -> Result<Vec<(LegacyRef, uuid::Uuid)>, SinkError> {
    let (collections, legacy): (Vec<&str>, Vec<&str>) = refs
        .iter()
        .map(|r| (r.collection.as_str(), r.legacy_id.as_str()))
        .unzip();
    let sql = format!(
        "SELECT m.collection, m.legacy_object_id, m.new_id
         FROM {id_map} m
         JOIN unnest($1::text[], $2::text[]) AS u(collection, legacy_object_id)
           ON m.collection = u.collection AND m.legacy_object_id = u.legacy_object_id"
    );
    let rows = tx
        .query(&sql, &[&collections, &legacy])
        .await
        .map_err(|e| SinkError::pg("looking up ids in id_map", e))?;
    Ok(rows_to_pairs(rows))
}

fn rows_to_pairs(rows: Vec<tokio_postgres::Row>) -> Vec<(LegacyRef, uuid::Uuid)> {
    rows.into_iter()
        .map(|row| {
            (
                LegacyRef {
                    collection: row.get(0),
                    legacy_id: row.get(1),
                },
                row.get(2),
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
}
