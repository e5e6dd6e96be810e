//! Pure planning of a set of row operations into multi-row statements: the last operation per row
//! wins (Postgres refuses to touch one row twice in one upsert), tables keep the order of their
//! first appearance, and per table deletes go before soft deletes before upserts. Operations with
//! the same shape (table, columns, version column, insert-only) share one statement.

use std::collections::HashMap;

use crate::mapping::RowOp;

/// The statements to run for one table, in order.
#[derive(Debug, Default)]
pub struct TablePlan<'a> {
    pub table: &'a str,
    pub deletes: Vec<Vec<&'a RowOp>>,
    pub soft_deletes: Vec<Vec<&'a RowOp>>,
    pub upserts: Vec<Vec<&'a RowOp>>,
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

/// Plans `ops` (in stream order) into per-table statement groups.
pub fn plan<'a>(ops: impl IntoIterator<Item = &'a RowOp>) -> Vec<TablePlan<'a>> {
    // Last operation per (table, key) wins.
    let mut kept: Vec<Option<&'a RowOp>> = Vec::new();
    let mut position: HashMap<(&'a str, &'a str, &'a str), usize> = HashMap::new();
    for op in ops {
        let key = table_and_key(op);
        if let Some(old) = position.insert(key, kept.len()) {
            kept[old] = None;
        }
        kept.push(Some(op));
    }
    let mut tables: Vec<TablePlan<'a>> = Vec::new();
    let mut table_index: HashMap<&'a str, usize> = HashMap::new();
    let mut groups: HashMap<(usize, Shape<'a>), (u8, usize)> = HashMap::new();
    for op in kept.into_iter().flatten() {
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
        let kind = match s {
            Shape::Delete { .. } => 0u8,
            Shape::Soft { .. } => 1,
            Shape::Upsert { .. } => 2,
        };
        let list = match kind {
            0 => &mut plan.deletes,
            1 => &mut plan.soft_deletes,
            _ => &mut plan.upserts,
        };
        let (_, g) = *groups.entry((t, s)).or_insert_with(|| {
            list.push(Vec::new());
            (kind, list.len() - 1)
        });
        list[g].push(op);
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
        let plans = plan(ops.iter());
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0].table, "b");
        assert_eq!(plans[0].upserts.len(), 1);
        assert_eq!(plans[0].upserts[0], vec![&ops[2], &ops[3]]);
        assert_eq!(plans[1].table, "a");
        assert!(plans[1].upserts.is_empty());
        assert_eq!(plans[1].deletes, vec![vec![&ops[4]]]);
    }
}
