//! Pure conversion of a raw change-stream event document into a `ChangeEvent`, and decoding of the
//! cluster time carried in a resume token. No I/O.

use bson::{Bson, Document};

use crate::event::{ChangeEvent, ClusterTime, Operation, TxnId};

/// Why a raw event could not be normalized. The pipeline records it as a `malformed_event` gap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed change event: {0}")]
pub struct MalformedEvent(pub String);

/// Cluster time encoded in a resume token's `_data`: a real server's KeyString (and mongosim's
/// layout) starts with type byte 0x82 followed by the 8-byte big-endian timestamp
/// (seconds, increment). Returns None for tokens in another format.
pub fn token_cluster_time(token: &Document) -> Option<ClusterTime> {
    let data = token.get_str("_data").ok()?;
    if data.len() < 18 || !data[..2].eq_ignore_ascii_case("82") {
        return None;
    }
    let seconds = u32::from_str_radix(data.get(2..10)?, 16).ok()?;
    let increment = u32::from_str_radix(data.get(10..18)?, 16).ok()?;
    Some(ClusterTime::new(seconds, increment))
}

/// Normalize one raw event. `default_collection` is used when the event has no `ns.coll`
/// (collection-scoped streams always carry it; this is a fallback).
pub fn normalize_event(
    raw: Document,
    default_collection: &str,
) -> Result<ChangeEvent, MalformedEvent> {
    try_normalize(raw, default_collection).map_err(|(reason, _)| reason)
}

/// [`normalize_event`], handing the raw event back when it is malformed (so the caller can keep
/// it for the gap without copying every event beforehand).
///
/// The post-image and pre-image stay inside `raw` (`fullDocument`, `fullDocumentBeforeChange`)
/// and are read through [`ChangeEvent::post_image`] / [`ChangeEvent::pre_image`]: the event holds
/// one decoded copy of its documents, not two.
pub fn try_normalize(
    raw: Document,
    default_collection: &str,
) -> Result<ChangeEvent, (MalformedEvent, Document)> {
    match parts(&raw, default_collection) {
        Ok(p) => Ok(ChangeEvent {
            operation: p.operation,
            collection: p.collection,
            document_key: p.document_key,
            full_document: None,
            full_document_before_change: None,
            cluster_time: p.cluster_time,
            resume_token: Some(p.token),
            txn: p.txn,
            raw,
        }),
        Err(reason) => Err((reason, raw)),
    }
}

/// What normalizing reads from a raw event (small values only; the documents stay in `raw`).
struct Parts {
    token: Document,
    operation: Operation,
    cluster_time: ClusterTime,
    collection: String,
    document_key: Option<Bson>,
    txn: Option<TxnId>,
}

fn parts(raw: &Document, default_collection: &str) -> Result<Parts, MalformedEvent> {
    let token = match raw.get("_id") {
        Some(Bson::Document(d)) => d.clone(),
        Some(other) => {
            return Err(MalformedEvent(format!(
                "resume token _id is {:?}, not a document",
                other.element_type()
            )))
        }
        None => return Err(MalformedEvent("event has no _id (resume token)".into())),
    };
    let operation = match raw.get_str("operationType") {
        Ok(op) => Operation::parse(op),
        Err(_) => return Err(MalformedEvent("event has no operationType".into())),
    };
    let cluster_time = match raw.get("clusterTime") {
        Some(Bson::Timestamp(ts)) => ClusterTime::from(*ts),
        _ => token_cluster_time(&token).ok_or_else(|| {
            MalformedEvent("event has no clusterTime and its token carries none".into())
        })?,
    };
    let collection = raw
        .get_document("ns")
        .ok()
        .and_then(|ns| ns.get_str("coll").ok())
        .unwrap_or(default_collection)
        .to_string();
    let document_key = raw
        .get_document("documentKey")
        .ok()
        .and_then(|k| k.get("_id"))
        .cloned();
    let needs_key = matches!(
        operation,
        Operation::Insert | Operation::Update | Operation::Replace | Operation::Delete
    );
    if needs_key && document_key.is_none() {
        return Err(MalformedEvent(format!(
            "{} event has no documentKey._id",
            operation.as_str()
        )));
    }
    let txn = match (raw.get_document("lsid"), raw.get("txnNumber")) {
        (Ok(lsid), Some(n)) => {
            let txn_number = match n {
                Bson::Int64(v) => *v,
                Bson::Int32(v) => i64::from(*v),
                _ => return Err(MalformedEvent("txnNumber is not an integer".into())),
            };
            Some(TxnId {
                lsid: lsid.clone(),
                txn_number,
            })
        }
        _ => None,
    };
    Ok(Parts {
        token,
        operation,
        cluster_time,
        collection,
        document_key,
        txn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId, Timestamp};

    #[test]
    fn token_cluster_time_decodes_keystring_prefix() {
        let token = doc! {"_data": "8265A1B2C3000000070000000000000001"};
        assert_eq!(
            token_cluster_time(&token),
            Some(ClusterTime::new(0x65A1B2C3, 7))
        );
        assert_eq!(token_cluster_time(&doc! {"_data": "01"}), None);
        assert_eq!(token_cluster_time(&doc! {"other": 1}), None);
    }

    #[test]
    fn insert_event_is_normalized_with_key_document_and_time() {
        let id = ObjectId::new();
        let raw = doc! {
            "_id": {"_data": "826500000100000002"},
            "operationType": "insert",
            "clusterTime": Timestamp { time: 100, increment: 2 },
            "ns": {"db": "shop", "coll": "users"},
            "documentKey": {"_id": id},
            "fullDocument": {"_id": id, "email": "a@b.c"},
        };
        let ev = normalize_event(raw.clone(), "fallback").expect("valid event");
        assert_eq!(ev.operation, Operation::Insert);
        assert_eq!(ev.collection, "users");
        assert_eq!(ev.document_key, Some(Bson::ObjectId(id)));
        assert_eq!(ev.cluster_time, ClusterTime::new(100, 2));
        assert_eq!(
            ev.post_image().and_then(|d| d.get_str("email").ok()),
            Some("a@b.c")
        );
        // One decoded copy: the post-image is read from the raw event, not copied out of it.
        assert_eq!(ev.full_document, None);
        assert_eq!(ev.raw, raw);
        assert!(ev.txn.is_none());
    }

    #[test]
    fn transaction_event_carries_lsid_and_txn_number() {
        let raw = doc! {
            "_id": {"_data": "826500000100000002"},
            "operationType": "delete",
            "clusterTime": Timestamp { time: 5, increment: 1 },
            "ns": {"db": "shop", "coll": "payments"},
            "documentKey": {"_id": "x"},
            "lsid": {"id": 1},
            "txnNumber": 9_i64,
        };
        let ev = normalize_event(raw, "payments").expect("valid event");
        assert_eq!(ev.txn.map(|t| t.txn_number), Some(9));
    }

    #[test]
    fn crud_event_without_document_key_is_malformed() {
        let raw = doc! {
            "_id": {"_data": "826500000100000002"},
            "operationType": "update",
            "clusterTime": Timestamp { time: 5, increment: 1 },
        };
        let err = normalize_event(raw.clone(), "users").expect_err("must be malformed");
        assert!(err.0.contains("documentKey"), "{err}");
        // The raw event comes back whole for the gap.
        let (reason, back) = try_normalize(raw.clone(), "users").expect_err("must be malformed");
        assert_eq!(reason, err);
        assert_eq!(back, raw);
    }

    #[test]
    fn images_are_read_from_the_raw_event() {
        let raw = doc! {
            "_id": {"_data": "826500000100000002"},
            "operationType": "delete",
            "clusterTime": Timestamp { time: 5, increment: 1 },
            "ns": {"db": "shop", "coll": "users"},
            "documentKey": {"_id": 7},
            "fullDocumentBeforeChange": {"_id": 7, "name": "before"},
        };
        let ev = normalize_event(raw, "users").expect("valid event");
        assert_eq!(ev.post_image(), None);
        assert_eq!(
            ev.pre_image().and_then(|d| d.get_str("name").ok()),
            Some("before")
        );
        // An update whose lookup found nothing carries `fullDocument: null`: no post-image.
        let raw = doc! {
            "_id": {"_data": "826500000100000003"},
            "operationType": "update",
            "clusterTime": Timestamp { time: 5, increment: 2 },
            "documentKey": {"_id": 7},
            "fullDocument": null,
        };
        let ev = normalize_event(raw, "users").expect("valid event");
        assert_eq!(ev.post_image(), None);
    }

    #[test]
    fn missing_cluster_time_falls_back_to_token_prefix() {
        let raw = doc! {"_id": {"_data": "8200000010000000030000"}, "operationType": "invalidate"};
        let ev = normalize_event(raw, "users").expect("valid event");
        assert_eq!(ev.cluster_time, ClusterTime::new(16, 3));
        assert_eq!(ev.operation, Operation::Invalidate);
    }
}
