//! `map_event`: one `ChangeEvent` + the compiled rules of its collection → row operations.
//!
//! insert / replace / update (with its looked-up document) / snapshot → one `RowOp::Upsert` with
//! every configured column and the complete child rows; an update whose looked-up document is gone
//! → `Mapped::Skip` when its delete will remove the row, a `post_image_missing` gap when the row
//! outlives deletes (soft, ignore); delete → the collection's delete policy, preceded by the
//! pre-image's state when there is one and the row outlives the delete. Append-only
//! collections turn updates, replaces and deletes into `immutable_change` errors. Drop, rename,
//! dropDatabase and invalidate are the pipeline's business and come back as `stream_invalidated`.

use bson::Bson;

use super::convert::{bson_type_name, check_text, fail};
use super::row::{map_children, map_row};
use super::rules::{CollectionRules, DeleteRule};
use super::{GapKind, LegacyRef, Mapped, MappingError, RowOp};
use crate::event::{ChangeEvent, Operation};

/// The legacy-id text of a document `_id`: an ObjectId as 24 lower-case hex digits, a string id as
/// itself. Any other `_id` type cannot be keyed in `id_map` and is a malformed event.
pub fn legacy_id_text(id: &Bson) -> Result<String, MappingError> {
    match id {
        Bson::ObjectId(oid) => Ok(oid.to_hex()),
        Bson::String(s) if s.is_empty() => Err(fail(
            GapKind::MalformedEvent,
            "_id: empty string id".to_string(),
        )),
        Bson::String(s) => {
            check_text("_id", s)?;
            Ok(s.clone())
        }
        other => Err(fail(
            GapKind::MalformedEvent,
            format!(
                "_id: a {} id is not supported (ObjectId or string only)",
                bson_type_name(other)
            ),
        )),
    }
}

fn document_key(rules: &CollectionRules, event: &ChangeEvent) -> Result<LegacyRef, MappingError> {
    let id = event
        .document_key
        .as_ref()
        .or_else(|| event.post_image().and_then(|d| d.get("_id")))
        .ok_or_else(|| {
            fail(
                GapKind::MalformedEvent,
                "_id: event has no document key".to_string(),
            )
        })?;
    Ok(LegacyRef {
        collection: rules.collection.clone(),
        legacy_id: legacy_id_text(id)?,
    })
}

/// Maps one event of `rules.collection` to the row operations the sink applies.
///
/// Pure: the same rules and event always give the same result. Errors carry the gap kind and a
/// reason naming the field path.
pub fn map_event(rules: &CollectionRules, event: &ChangeEvent) -> Result<Mapped, MappingError> {
    if event.collection != rules.collection {
        return Err(fail(
            GapKind::MalformedEvent,
            format!(
                "event for collection {} given to the rules of {}",
                event.collection, rules.collection
            ),
        ));
    }
    let version = rules
        .version_column
        .as_ref()
        .map(|c| (c.clone(), event.cluster_time));
    match &event.operation {
        Operation::Insert | Operation::Replace | Operation::Update | Operation::Snapshot => {
            if rules.append_only
                && matches!(event.operation, Operation::Replace | Operation::Update)
            {
                return Err(fail(
                    GapKind::ImmutableChange,
                    format!(
                        "{} of a document in append-only table {}",
                        event.operation.as_str(),
                        rules.table
                    ),
                ));
            }
            let Some(doc) = event.post_image() else {
                if event.operation == Operation::Update {
                    // No post-image: the document was deleted before it could be read. Its
                    // delete follows and removes the row; a row that outlives deletes (soft or
                    // ignored) would keep a state MongoDB moved past, so that is a gap.
                    return match rules.delete {
                        DeleteRule::Delete => Ok(Mapped::Skip),
                        DeleteRule::Soft { .. } | DeleteRule::Ignore => Err(fail(
                            GapKind::PostImageMissing,
                            "update without a post-image: the document was deleted before it \
                             could be read, so this state of it is unknown (pre-images on the \
                             collection let its delete carry it)"
                                .to_string(),
                        )),
                    };
                }
                return Err(fail(
                    GapKind::MalformedEvent,
                    format!("{} event without fullDocument", event.operation.as_str()),
                ));
            };
            let key = document_key(rules, event)?;
            let columns = map_row(&rules.row, doc, "")?;
            let children = map_children(&rules.children, doc)?;
            Ok(Mapped::Ops(vec![RowOp::Upsert {
                table: rules.table.clone(),
                id_column: rules.id_column.clone(),
                legacy_column: rules.legacy_column.clone(),
                key,
                columns,
                children,
                version,
                insert_only: rules.append_only,
            }]))
        }
        Operation::Delete => {
            if rules.append_only {
                return Err(fail(
                    GapKind::ImmutableChange,
                    format!("delete of a document in append-only table {}", rules.table),
                ));
            }
            let key = document_key(rules, event)?;
            // A pre-image is the document's last state: for a row that outlives its delete, that
            // state lands first (at the delete's time), then the delete policy applies.
            let mut ops = Vec::new();
            if let (Some(before), DeleteRule::Soft { .. } | DeleteRule::Ignore) =
                (event.pre_image(), &rules.delete)
            {
                ops.push(RowOp::Upsert {
                    table: rules.table.clone(),
                    id_column: rules.id_column.clone(),
                    legacy_column: rules.legacy_column.clone(),
                    key: key.clone(),
                    columns: map_row(&rules.row, before, "")?,
                    children: map_children(&rules.children, before)?,
                    version: version.clone(),
                    insert_only: false,
                });
            }
            let op = match &rules.delete {
                DeleteRule::Delete => RowOp::Delete {
                    table: rules.table.clone(),
                    legacy_column: rules.legacy_column.clone(),
                    key,
                    version,
                },
                DeleteRule::Soft { column, value } => RowOp::SoftDelete {
                    table: rules.table.clone(),
                    legacy_column: rules.legacy_column.clone(),
                    key,
                    column: column.clone(),
                    value: value.clone(),
                    version,
                },
                DeleteRule::Ignore if ops.is_empty() => return Ok(Mapped::Skip),
                DeleteRule::Ignore => return Ok(Mapped::Ops(ops)),
            };
            ops.push(op);
            Ok(Mapped::Ops(ops))
        }
        Operation::Drop | Operation::Rename | Operation::DropDatabase | Operation::Invalidate => {
            Err(fail(
                GapKind::StreamInvalidated,
                format!(
                    "{} event ends the stream; the pipeline handles it, not the mapping",
                    event.operation.as_str()
                ),
            ))
        }
        // DDL notifications (createIndexes, modify, ...) change no rows.
        Operation::Other(_) => Ok(Mapped::Skip),
    }
}
