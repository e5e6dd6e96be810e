//! Deferring what waits for a missing row: when an event's write is refused because a referenced
//! row does not exist yet, its row still lands without the parts that cannot — child and junction
//! rows referring to a missing row, and nullable plain references (set to NULL) — and an
//! `fk_deferred` gap records what waits, so the gap retry writes the whole state once the targets
//! exist. Required references and mixed-id references (whose kind column promises a target) cannot
//! be deferred: such an event stays an `fk_missing` gap.
//!
//! Used by the batch apply on a rejected event only; the fast path never pays for it. The
//! existence check is the one statement here; the rewriting of the operation is pure.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio_postgres::GenericClient;

use crate::mapping::{LegacyRef, RowOp, SqlValue};
use crate::sink::catalogue::Catalogue;
use crate::sink::error::SinkError;
use crate::sink::name::{quote_ident, quote_schema_table};

/// Where the rows of a collection live, for existence checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowHome {
    pub table: String,
    pub id_column: String,
}

/// What the deferral knows about the mapped collections.
#[derive(Debug, Clone, Default)]
pub struct DeferRules {
    /// Collection -> its table and id column.
    pub homes: HashMap<String, RowHome>,
    /// Collection -> parent columns holding optional plain references (NULL allowed).
    pub deferrable: HashMap<String, HashSet<String>>,
}

/// An operation rewritten without the parts that wait, and a description of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferral {
    pub op: RowOp,
    pub waiting: Vec<String>,
}

fn refs_of(op: &RowOp) -> Vec<&LegacyRef> {
    let mut out = Vec::new();
    if let RowOp::Upsert {
        columns, children, ..
    } = op
    {
        for c in columns {
            if let SqlValue::Ref(r) = &c.value {
                out.push(r);
            }
        }
        for child in children {
            for row in &child.rows {
                for c in row {
                    if let SqlValue::Ref(r) = &c.value {
                        out.push(r);
                    }
                }
            }
        }
    }
    out
}

/// The references of `ops` whose rows do not exist: one `SELECT` per referenced table.
/// References to collections the mapping does not know are assumed present.
pub async fn missing_targets<C: GenericClient>(
    client: &C,
    catalogue: &Catalogue,
    rules: &DeferRules,
    ids: &HashMap<LegacyRef, uuid::Uuid>,
    ops: &[RowOp],
) -> Result<HashSet<LegacyRef>, SinkError> {
    let mut by_table: BTreeMap<(String, String), Vec<(&LegacyRef, uuid::Uuid)>> = BTreeMap::new();
    for r in ops.iter().flat_map(refs_of) {
        let (Some(home), Some(id)) = (rules.homes.get(&r.collection), ids.get(r)) else {
            continue;
        };
        let Some(info) = catalogue.tables.get(&home.table) else {
            continue;
        };
        by_table
            .entry((
                quote_schema_table(&info.schema, &info.name),
                quote_ident(&home.id_column),
            ))
            .or_default()
            .push((r, *id));
    }
    let mut missing = HashSet::new();
    for ((table, id_column), wanted) in by_table {
        let probe: Vec<uuid::Uuid> = wanted.iter().map(|(_, id)| *id).collect();
        let sql = format!("SELECT {id_column} FROM {table} WHERE {id_column} = ANY($1)");
        let rows = client
            .query(&sql, &[&probe])
            .await
            .map_err(|e| SinkError::pg("checking which referenced rows exist", e))?;
        let present: HashSet<uuid::Uuid> = rows.iter().map(|r| r.get(0)).collect();
        for (r, id) in wanted {
            if !present.contains(&id) {
                missing.insert(r.clone());
            }
        }
    }
    Ok(missing)
}

/// `op` without the parts referring to `missing` rows, when every such part can wait: child and
/// junction rows are left out, optional plain references become NULL. None when nothing refers
/// to a missing row or a required / mixed-id reference does (the event cannot land yet).
pub fn defer(op: &RowOp, missing: &HashSet<LegacyRef>, rules: &DeferRules) -> Option<Deferral> {
    let RowOp::Upsert {
        key,
        columns,
        children,
        ..
    } = op
    else {
        return None;
    };
    let deferrable = rules.deferrable.get(&key.collection);
    let mut waiting = Vec::new();
    let mut new_columns = columns.clone();
    for c in &mut new_columns {
        let SqlValue::Ref(r) = &c.value else {
            continue;
        };
        if !missing.contains(r) {
            continue;
        }
        if !deferrable.is_some_and(|d| d.contains(&c.column)) {
            return None;
        }
        waiting.push(format!(
            "{} waits for {}/{}",
            c.column, r.collection, r.legacy_id
        ));
        c.value = SqlValue::Null;
    }
    let mut new_children = children.clone();
    for child in &mut new_children {
        let before = child.rows.len();
        let mut targets: Vec<String> = Vec::new();
        child.rows.retain(|row| {
            let waits: Vec<&LegacyRef> = row
                .iter()
                .filter_map(|c| match &c.value {
                    SqlValue::Ref(r) if missing.contains(r) => Some(r),
                    _ => None,
                })
                .collect();
            targets.extend(
                waits
                    .iter()
                    .map(|r| format!("{}/{}", r.collection, r.legacy_id)),
            );
            waits.is_empty()
        });
        let left_out = before - child.rows.len();
        if left_out > 0 {
            targets.sort();
            targets.dedup();
            waiting.push(format!(
                "{left_out} {} row(s) wait for {}",
                child.table,
                targets.join(", ")
            ));
        }
    }
    if waiting.is_empty() {
        return None;
    }
    let mut op = op.clone();
    if let RowOp::Upsert {
        columns, children, ..
    } = &mut op
    {
        *columns = new_columns;
        *children = new_children;
    }
    Some(Deferral { op, waiting })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ClusterTime;
    use crate::mapping::{ChildRows, ColumnValue};

    fn r(collection: &str, id: &str) -> LegacyRef {
        LegacyRef {
            collection: collection.into(),
            legacy_id: id.into(),
        }
    }

    fn cv(column: &str, value: SqlValue) -> ColumnValue {
        ColumnValue {
            column: column.into(),
            value,
        }
    }

    fn request() -> RowOp {
        RowOp::Upsert {
            table: "purchase_requests".into(),
            id_column: "id".into(),
            legacy_column: "legacy_object_id".into(),
            key: r("purchaserequests", "p1"),
            columns: vec![
                cv("buyer_id", SqlValue::Ref(r("users", "u1"))),
                cv("selected_offer_id", SqlValue::Ref(r("selleroffers", "o1"))),
                cv("title", SqlValue::Text("t".into())),
            ],
            children: vec![ChildRows {
                table: "purchase_request_offers".into(),
                parent_column: "purchase_request_id".into(),
                rows: vec![
                    vec![cv("offer_id", SqlValue::Ref(r("selleroffers", "o1")))],
                    vec![cv("offer_id", SqlValue::Ref(r("selleroffers", "o2")))],
                ],
            }],
            version: Some(("source_version".into(), ClusterTime(1))),
            insert_only: false,
        }
    }

    fn rules() -> DeferRules {
        DeferRules {
            homes: HashMap::new(),
            deferrable: HashMap::from([(
                "purchaserequests".to_string(),
                HashSet::from(["selected_offer_id".to_string()]),
            )]),
        }
    }

    #[test]
    fn optional_references_and_junction_rows_wait_while_the_row_lands() {
        let missing = HashSet::from([r("selleroffers", "o1")]);
        let d = defer(&request(), &missing, &rules()).expect("deferrable");
        let RowOp::Upsert {
            columns, children, ..
        } = &d.op
        else {
            panic!("upsert expected")
        };
        assert_eq!(columns[1], cv("selected_offer_id", SqlValue::Null));
        assert_eq!(columns[0].value, SqlValue::Ref(r("users", "u1")));
        assert_eq!(
            children[0].rows,
            vec![vec![cv("offer_id", SqlValue::Ref(r("selleroffers", "o2")))]]
        );
        assert_eq!(
            d.waiting,
            vec![
                "selected_offer_id waits for selleroffers/o1".to_string(),
                "1 purchase_request_offers row(s) wait for selleroffers/o1".to_string(),
            ]
        );
    }

    #[test]
    fn a_missing_required_reference_cannot_wait() {
        let missing = HashSet::from([r("users", "u1"), r("selleroffers", "o2")]);
        assert_eq!(defer(&request(), &missing, &rules()), None);
    }

    #[test]
    fn nothing_missing_means_nothing_to_defer() {
        assert_eq!(defer(&request(), &HashSet::new(), &rules()), None);
    }
}
