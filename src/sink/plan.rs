//! Pure planning of a set of row operations into multi-row statements. Postgres refuses to touch
//! one row twice in one upsert, so several operations on one row either collapse (when the later
//! one fully determines the row) or run in successive rounds, keeping stream order per row. Per
//! round, tables keep the order of their first appearance and deletes go before soft deletes
//! before upserts. Operations with the same shape (table, columns, version column, insert-only)
//! share one statement.

use std::collections::HashMap;

use crate::event::ClusterTime;
use crate::mapping::RowOp;

/// One operation with the cluster time of the state it writes (the event's, or a copy's start):
/// tombstones are compared with it. `read` marks a state read from MongoDB (a copy, a gap
/// retry) rather than carried by a change event: on an append-only row it only fills a gap and
/// never reports a change (the change events do). `inserted` marks the state of an insert event:
/// like a read, most likely a document Postgres has never seen (the writer may then COPY it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Planned<'a> {
    pub op: &'a RowOp,
    pub at: ClusterTime,
    pub read: bool,
    pub inserted: bool,
}

/// The statements to run for one table, in order.
#[derive(Debug, Default)]
pub struct TablePlan<'a> {
    pub table: &'a str,
    pub deletes: Vec<Vec<Planned<'a>>>,
    pub soft_deletes: Vec<Vec<Planned<'a>>>,
    pub upserts: Vec<Vec<Planned<'a>>>,
}

/// Statement shape: operations with equal shapes go into one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Shape<'a> {
    Delete {
        legacy: &'a str,
        version: Option<&'a str>,
    },
    Soft {
        legacy: &'a str,
        column: &'a str,
        version: Option<&'a str>,
    },
    Upsert {
        id: &'a str,
        legacy: &'a str,
        columns: Vec<&'a str>,
        version: Option<&'a str>,
        insert_only: bool,
    },
}

fn table_and_key(op: &RowOp) -> (&str, &str, &str) {
    match op {
        RowOp::Upsert { table, key, .. }
        | RowOp::Delete { table, key, .. }
        | RowOp::SoftDelete { table, key, .. } => (
            table.as_str(),
            key.collection.as_str(),
            key.legacy_id.as_str(),
        ),
    }
}

/// The documents an operation's row (or its child rows) refers to.
fn refs_of(op: &RowOp) -> impl Iterator<Item = &crate::mapping::LegacyRef> {
    let (columns, children): (&[crate::mapping::ColumnValue], &[crate::mapping::ChildRows]) =
        match op {
            RowOp::Upsert {
                columns, children, ..
            } => (columns, children),
            _ => (&[], &[]),
        };
    columns
        .iter()
        .chain(children.iter().flat_map(|c| c.rows.iter().flatten()))
        .filter_map(|c| match &c.value {
            crate::mapping::SqlValue::Ref(r) => Some(r),
            _ => None,
        })
}

fn shape(op: &RowOp) -> Shape<'_> {
    match op {
        RowOp::Delete {
            legacy_column,
            version,
            ..
        } => Shape::Delete {
            legacy: legacy_column,
            version: version.as_ref().map(|(c, _)| c.as_str()),
        },
        RowOp::SoftDelete {
            legacy_column,
            column,
            version,
            ..
        } => Shape::Soft {
            legacy: legacy_column,
            column,
            version: version.as_ref().map(|(c, _)| c.as_str()),
        },
        RowOp::Upsert {
            id_column,
            legacy_column,
            columns,
            version,
            insert_only,
            ..
        } => {
            let mut names: Vec<&str> = columns.iter().map(|c| c.column.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            Shape::Upsert {
                id: id_column,
                legacy: legacy_column,
                columns: names,
                version: version.as_ref().map(|(c, _)| c.as_str()),
                insert_only: *insert_only,
            }
        }
    }
}

/// Whether applying `prev` then `next` (same row, in this order) leaves exactly what applying
/// `next` alone leaves, so `prev` can be dropped:
/// - a delete erases everything before it (it is version-guarded like the rest);
/// - an upsert overwrites an earlier upsert of the same shape and the same child tables, when
///   it is not older (versions only grow within a stream) and the table is not append-only.
fn supersedes(prev: &RowOp, next: &RowOp) -> bool {
    match (prev, next) {
        (_, RowOp::Delete { .. }) => true,
        (
            RowOp::Upsert {
                children: prev_children,
                version: prev_version,
                insert_only: false,
                ..
            },
            RowOp::Upsert {
                children: next_children,
                version: next_version,
                insert_only: false,
                ..
            },
        ) => {
            let tables = |c: &[crate::mapping::ChildRows]| -> Vec<(String, String)> {
                let mut t: Vec<_> = c
                    .iter()
                    .map(|r| (r.table.clone(), r.parent_column.clone()))
                    .collect();
                t.sort();
                t.dedup();
                t
            };
            let newer = match (prev_version, next_version) {
                (Some((pc, pt)), Some((nc, nt))) => pc == nc && nt >= pt,
                (None, None) => true,
                _ => false,
            };
            newer && shape(prev) == shape(next) && tables(prev_children) == tables(next_children)
        }
        _ => false,
    }
}

/// Plans `ops` (in stream order) into per-table statement groups. No row is touched twice by one
/// statement: an operation that supersedes the row's previous one replaces it; any other later
/// operation on the same row goes to a following round, so each row sees its operations in
/// stream order. Rounds run one after another; within a round, tables keep the order of their
/// first appearance.
pub fn plan<'a>(ops: impl IntoIterator<Item = Planned<'a>>) -> Vec<TablePlan<'a>> {
    // (round, op) slots; `last` maps a row to the slot holding its latest operation.
    let mut slots: Vec<Option<(usize, Planned<'a>)>> = Vec::new();
    let mut last: HashMap<(&'a str, &'a str, &'a str), usize> = HashMap::new();
    // Document (collection, legacy id) -> the latest round writing its row: an operation
    // referring to a document written earlier in the batch runs in a later round, so a parent
    // is always in Postgres before its children (stream order across tables).
    let mut written: HashMap<(&'a str, &'a str), usize> = HashMap::new();
    for planned in ops {
        let op = planned.op;
        let key = table_and_key(op);
        let need = refs_of(op)
            .filter(|r| (r.collection.as_str(), r.legacy_id.as_str()) != (key.1, key.2))
            .filter_map(|r| written.get(&(r.collection.as_str(), r.legacy_id.as_str())))
            .map(|round| round + 1)
            .max()
            .unwrap_or(0);
        let round = match last.get(&key) {
            Some(&i) => match slots[i] {
                Some((round, prev)) if need <= round && supersedes(prev.op, op) => {
                    slots[i] = None;
                    round
                }
                Some((round, _)) => (round + 1).max(need),
                None => need,
            },
            None => need,
        };
        if matches!(op, RowOp::Upsert { .. }) {
            let w = written.entry((key.1, key.2)).or_default();
            *w = (*w).max(round);
        }
        last.insert(key, slots.len());
        slots.push(Some((round, planned)));
    }
    let rounds = slots
        .iter()
        .flatten()
        .map(|(r, _)| r + 1)
        .max()
        .unwrap_or(0);
    let mut out = Vec::new();
    for round in 0..rounds {
        let ops = slots
            .iter()
            .flatten()
            .filter(|(r, _)| *r == round)
            .map(|(_, op)| *op);
        out.extend(group_by_table(ops));
    }
    out
}

fn group_by_table<'a>(ops: impl Iterator<Item = Planned<'a>>) -> Vec<TablePlan<'a>> {
    let mut tables: Vec<TablePlan<'a>> = Vec::new();
    let mut table_index: HashMap<&'a str, usize> = HashMap::new();
    let mut groups: HashMap<(usize, Shape<'a>), usize> = HashMap::new();
    for planned in ops {
        let op = planned.op;
        let (table, _, _) = table_and_key(op);
        let t = *table_index.entry(table).or_insert_with(|| {
            tables.push(TablePlan {
                table,
                ..TablePlan::default()
            });
            tables.len() - 1
        });
        let s = shape(op);
        let plan = &mut tables[t];
        let list = match s {
            Shape::Delete { .. } => &mut plan.deletes,
            Shape::Soft { .. } => &mut plan.soft_deletes,
            Shape::Upsert { .. } => &mut plan.upserts,
        };
        let g = *groups.entry((t, s)).or_insert_with(|| {
            list.push(Vec::new());
            list.len() - 1
        });
        list[g].push(planned);
    }
    tables
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ClusterTime;
    use crate::mapping::{ColumnValue, LegacyRef, SqlValue};

    fn key(id: &str) -> LegacyRef {
        LegacyRef {
            collection: "c".into(),
            legacy_id: id.into(),
        }
    }

    fn upsert(table: &str, id: &str, amount: &str) -> RowOp {
        RowOp::Upsert {
            table: table.into(),
            id_column: "id".into(),
            legacy_column: "legacy_object_id".into(),
            key: key(id),
            columns: vec![ColumnValue {
                column: "amount".into(),
                value: SqlValue::Numeric(amount.into()),
            }],
            children: vec![],
            version: Some(("version".into(), ClusterTime(1))),
            insert_only: false,
        }
    }

    fn planned(ops: &[RowOp]) -> Vec<Planned<'_>> {
        ops.iter()
            .map(|op| Planned {
                op,
                at: ClusterTime(1),
                read: false,
                inserted: false,
            })
            .collect()
    }

    fn ops_of<'a>(group: &[Planned<'a>]) -> Vec<&'a RowOp> {
        group.iter().map(|p| p.op).collect()
    }

    fn delete(table: &str, id: &str) -> RowOp {
        RowOp::Delete {
            table: table.into(),
            legacy_column: "legacy_object_id".into(),
            key: key(id),
            version: None,
        }
    }

    #[test]
    fn last_operation_per_row_wins_and_tables_keep_first_appearance_order() {
        let ops = [
            upsert("b", "1", "1"),
            upsert("a", "1", "2"),
            upsert("b", "2", "3"),
            upsert("b", "1", "4"),
            delete("a", "1"),
        ];
        let plans = plan(planned(&ops));
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].table, "b");
        assert_eq!(plans[0].upserts.len(), 1);
        assert_eq!(ops_of(&plans[0].upserts[0]), vec![&ops[2], &ops[3]]);
        assert_eq!(plans[1].table, "a");
        assert!(plans[1].upserts.is_empty());
        assert_eq!(plans[1].deletes.len(), 1);
        assert_eq!(ops_of(&plans[1].deletes[0]), vec![&ops[4]]);
    }

    #[test]
    fn an_operation_that_does_not_fully_determine_the_row_runs_in_a_later_round() {
        let soft = RowOp::SoftDelete {
            table: "b".into(),
            legacy_column: "legacy_object_id".into(),
            key: key("1"),
            column: "deleted_at".into(),
            value: SqlValue::Bool(true),
            version: Some(("version".into(), ClusterTime(1))),
        };
        let mut other_columns = upsert("b", "1", "9");
        if let RowOp::Upsert { columns, .. } = &mut other_columns {
            columns.push(ColumnValue {
                column: "note".into(),
                value: SqlValue::Null,
            });
        }
        let ops = [
            upsert("b", "1", "1"),
            soft,
            upsert("b", "1", "2"),
            other_columns,
            upsert("b", "2", "3"),
        ];
        let plans = plan(planned(&ops));
        let rounds: Vec<(Vec<&RowOp>, Vec<&RowOp>)> = plans
            .iter()
            .map(|p| {
                assert_eq!(p.table, "b");
                (
                    p.soft_deletes.iter().flatten().map(|x| x.op).collect(),
                    p.upserts.iter().flatten().map(|x| x.op).collect(),
                )
            })
            .collect();
        assert_eq!(
            rounds,
            vec![
                (vec![], vec![&ops[0], &ops[4]]),
                (vec![&ops[1]], vec![]),
                (vec![], vec![&ops[2]]),
                (vec![], vec![&ops[3]]),
            ]
        );
    }

    #[test]
    fn append_only_rows_and_older_versions_never_collapse() {
        let mut first = upsert("l", "1", "1");
        let mut second = upsert("l", "1", "2");
        for op in [&mut first, &mut second] {
            if let RowOp::Upsert { insert_only, .. } = op {
                *insert_only = true;
            }
        }
        assert_eq!(plan(planned(&[first, second])).len(), 2);
        let newer = upsert("b", "1", "1");
        let mut older = upsert("b", "1", "2");
        if let RowOp::Upsert { version, .. } = &mut older {
            *version = Some(("version".into(), ClusterTime(0)));
        }
        assert_eq!(plan(planned(&[newer.clone(), older.clone()])).len(), 2);
        assert_eq!(plan(planned(&[older, newer])).len(), 1);
    }

    #[test]
    fn a_row_referring_to_a_row_written_earlier_in_the_batch_runs_after_it() {
        // payments p1 (refers to existing u0), user u1, payment p2 referring to u1: the payments
        // table appears first, but p2 must wait for u1's insert.
        let payment = |id: &str, user: &str| {
            let mut op = upsert("payments", id, "1");
            if let RowOp::Upsert { columns, key, .. } = &mut op {
                key.collection = "payments".into();
                columns.push(ColumnValue {
                    column: "user_id".into(),
                    value: SqlValue::Ref(LegacyRef {
                        collection: "users".into(),
                        legacy_id: user.into(),
                    }),
                });
            }
            op
        };
        let mut user = upsert("users", "u1", "0");
        if let RowOp::Upsert { key, .. } = &mut user {
            key.collection = "users".into();
        }
        let ops = [payment("p1", "u0"), user, payment("p2", "u1")];
        let plans = plan(planned(&ops));
        let order: Vec<(&str, Vec<&RowOp>)> = plans
            .iter()
            .map(|p| (p.table, p.upserts.iter().flatten().map(|x| x.op).collect()))
            .collect();
        assert_eq!(
            order,
            vec![
                ("payments", vec![&ops[0]]),
                ("users", vec![&ops[1]]),
                ("payments", vec![&ops[2]]),
            ]
        );
        // Without a reference inside the batch, one round as before.
        let ops = [payment("p1", "u0"), payment("p2", "u9")];
        assert_eq!(plan(planned(&ops)).len(), 1);
    }
}
