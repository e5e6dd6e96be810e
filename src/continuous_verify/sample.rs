//! Reading a random sample of a collection cheaply, by key: short `_id`-ordered runs starting
//! at random points between the smallest and the largest `_id` (ObjectIds are interpolated as
//! 96-bit numbers; other `_id` types start at a random offset), so a round reads a few index
//! ranges instead of scanning the collection. Also re-reading documents by `_id`. MongoDB only;
//! nothing here compares or writes.

use std::collections::BTreeSet;

use bson::oid::ObjectId;
use bson::{doc, Bson, Document};
use futures::TryStreamExt;
use mongodb::Collection;
use rand::Rng;

/// Documents read from each random starting point.
pub const RUN_LENGTH: usize = 10;

type MongoResult<T> = Result<T, mongodb::error::Error>;

async fn first_id(coll: &Collection<Document>, direction: i32) -> MongoResult<Option<Bson>> {
    // No projection: one document is cheap, and not every server agrees on `{_id: 1}`.
    let found = coll.find_one(doc! {}).sort(doc! {"_id": direction}).await?;
    Ok(found.and_then(|d| d.get("_id").cloned()))
}

/// A uniformly random ObjectId between `low` and `high` (inclusive), as 96-bit numbers.
pub fn random_object_id_between(low: &ObjectId, high: &ObjectId, rng: &mut impl Rng) -> ObjectId {
    let number = |oid: &ObjectId| {
        oid.bytes()
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
    };
    let (a, b) = (number(low), number(high));
    let (a, b) = if a <= b { (a, b) } else { (b, a) };
    let picked = rng.random_range(a..=b);
    let mut bytes = [0u8; 12];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (picked >> (8 * (11 - i))) as u8;
    }
    ObjectId::from_bytes(bytes)
}

/// Up to `size` distinct documents of `coll`, spread over the collection. A collection with at
/// most `size` documents is read whole.
pub async fn sample_documents(
    coll: &Collection<Document>,
    size: usize,
) -> MongoResult<Vec<Document>> {
    let (Some(low), Some(high)) = (first_id(coll, 1).await?, first_id(coll, -1).await?) else {
        return Ok(Vec::new());
    };
    let runs = size.div_ceil(RUN_LENGTH);
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<Document> = Vec::with_capacity(size);
    let mut keep = |docs: Vec<Document>, out: &mut Vec<Document>| {
        for d in docs {
            if out.len() >= size {
                return;
            }
            let key = d.get("_id").map(|id| id.to_string()).unwrap_or_default();
            if seen.insert(key) {
                out.push(d);
            }
        }
    };
    match (&low, &high) {
        (Bson::ObjectId(low), Bson::ObjectId(high)) => {
            let pivots: Vec<ObjectId> = {
                let mut rng = rand::rng();
                (0..runs)
                    .map(|_| random_object_id_between(low, high, &mut rng))
                    .collect()
            };
            for pivot in pivots {
                let docs: Vec<Document> = coll
                    .find(doc! {"_id": {"$gte": pivot}})
                    .sort(doc! {"_id": 1})
                    .limit(RUN_LENGTH as i64)
                    .await?
                    .try_collect()
                    .await?;
                keep(docs, &mut out);
            }
        }
        _ => {
            let total = coll.estimated_document_count().await?;
            let offsets: Vec<u64> = {
                let mut rng = rand::rng();
                (0..runs)
                    .map(|_| rng.random_range(0..total.max(1)))
                    .collect()
            };
            for offset in offsets {
                let docs: Vec<Document> = coll
                    .find(doc! {})
                    .sort(doc! {"_id": 1})
                    .skip(offset)
                    .limit(RUN_LENGTH as i64)
                    .await?
                    .try_collect()
                    .await?;
                keep(docs, &mut out);
            }
        }
    }
    if out.len() < size {
        // Few documents, or runs that overlapped: fill from the start.
        let docs: Vec<Document> = coll
            .find(doc! {})
            .sort(doc! {"_id": 1})
            .limit(i64::try_from(size).unwrap_or(i64::MAX))
            .await?
            .try_collect()
            .await?;
        keep(docs, &mut out);
    }
    Ok(out)
}

/// The documents of `ids` that still exist.
pub async fn documents_by_id(
    coll: &Collection<Document>,
    ids: &[Bson],
) -> MongoResult<Vec<Document>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    coll.find(doc! {"_id": {"$in": ids.to_vec()}})
        .await?
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_object_ids_stay_between_the_bounds() {
        let low = ObjectId::parse_str("650000000000000000000001").expect("hex");
        let high = ObjectId::parse_str("650000000000000000ffffff").expect("hex");
        let mut rng = rand::rng();
        let mut distinct = BTreeSet::new();
        for _ in 0..200 {
            let id = random_object_id_between(&low, &high, &mut rng);
            assert!(low <= id && id <= high, "{id} outside [{low}, {high}]");
            distinct.insert(id);
        }
        assert!(distinct.len() > 100, "not random: {}", distinct.len());
        let same = random_object_id_between(&high, &high, &mut rng);
        assert_eq!(same, high);
    }
}
