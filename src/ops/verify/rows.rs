//! The two sides of a comparison, row by row: what the pure mapping expects from one MongoDB
//! document (`expect_document`), and the rows Postgres holds, all of a table or only some keys
//! (`read_postgres`), both in the canonical form of `compare`. The one-shot `verify` and the
//! continuous verification in `run` both read through here. It writes nothing.

use std::collections::BTreeMap;

use bson::Document;

use super::compare::{canon_actual, canon_expected, compared_columns, CanonRow, ColumnKind};
use super::VerifyError;
use crate::mapping::rules::{CollectionRules, DeleteRule};
use crate::mapping::{legacy_id_text, map_event, Mapped, RowOp};
use crate::sink::idmap::legacy_id_sql;
use crate::sink::name::{quote_ident as quote, quote_qualified};
use crate::source::snapshot::snapshot_event;

/// What Postgres should hold for one MongoDB document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expectation {
    /// A row of the collection's table, and how many rows each child table gets.
    Row {
        legacy_id: String,
        row: CanonRow,
        children: Vec<(String, u64)>,
    },
    /// The mapping rejects the document (it is a gap, not a row).
    Unmappable { legacy_id: String },
}

impl Expectation {
    pub fn legacy_id(&self) -> &str {
        match self {
            Expectation::Row { legacy_id, .. } | Expectation::Unmappable { legacy_id } => legacy_id,
        }
    }
}

/// Maps `doc` (as a snapshot read) and keeps the compared `columns` of its row.
pub fn expect_document(
    rules: &CollectionRules,
    columns: &[(String, ColumnKind)],
    doc: Document,
) -> Expectation {
    let legacy_id = doc
        .get("_id")
        .map(|id| legacy_id_text(id).unwrap_or_else(|_| format!("{id}")))
        .unwrap_or_default();
    let event = snapshot_event(&rules.collection, doc, Default::default());
    let upsert = match map_event(rules, &event) {
        Ok(Mapped::Ops(ops)) => ops.into_iter().find_map(|op| match op {
            RowOp::Upsert {
                table,
                key,
                columns,
                children,
                ..
            } if table == rules.table => Some((key, columns, children)),
            _ => None,
        }),
        _ => None,
    };
    let Some((key, values, children)) = upsert else {
        return Expectation::Unmappable { legacy_id };
    };
    let row: CanonRow = columns
        .iter()
        .map(|(c, _)| {
            let v = values
                .iter()
                .find(|cv| &cv.column == c)
                .and_then(|cv| canon_expected(&cv.value));
            (c.clone(), v)
        })
        .collect();
    Expectation::Row {
        legacy_id: key.legacy_id,
        row,
        children: children
            .into_iter()
            .map(|c| (c.table, c.rows.len() as u64))
            .collect(),
    }
}

/// The SQL expression reading `column` of `t` in canonical text form; references are
/// translated back to legacy ids through id_map (their collection is pushed to `params`).
pub fn select_expr(
    column: &str,
    kind: &ColumnKind,
    id_map: &str,
    params: &mut Vec<String>,
) -> String {
    let c = format!("t.{}", quote(column));
    match kind {
        ColumnKind::Text | ColumnKind::Decimal => format!("{c}::text"),
        ColumnKind::Time => format!("trunc(extract(epoch from {c}) * 1000000)::text"),
        ColumnKind::Json => format!("to_jsonb({c})::text"),
        ColumnKind::Ref { collection } => {
            params.push(collection.clone());
            legacy_id_sql(id_map, params.len(), &c)
        }
    }
}

/// The rows of the collection's table by legacy id: all of them, or only those of `keys`.
/// `id_map` is the quoted id_map table.
pub async fn read_postgres(
    pg: &tokio_postgres::Client,
    rules: &CollectionRules,
    id_map: &str,
    keys: Option<&[String]>,
) -> Result<BTreeMap<String, CanonRow>, VerifyError> {
    let columns = compared_columns(rules);
    let table = quote_qualified(&rules.table)?;
    let mut params = Vec::new();
    let exprs: Vec<String> = columns
        .iter()
        .map(|(c, k)| select_expr(c, k, id_map, &mut params))
        .collect();
    let legacy = quote(&rules.legacy_column);
    let mut sql = format!("select t.{legacy}::text");
    for e in &exprs {
        sql.push_str(", ");
        sql.push_str(e);
    }
    sql.push_str(&format!(" from {table} t"));
    let keys: Option<Vec<String>> = keys.map(<[String]>::to_vec);
    if keys.is_some() {
        sql.push_str(&format!(
            " where t.{legacy}::text = any(${})",
            params.len() + 1
        ));
    }
    let mut refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    if let Some(k) = &keys {
        refs.push(k);
    }
    let rows = pg
        .query(&sql, &refs)
        .await
        .map_err(|source| VerifyError::Postgres {
            table: rules.table.clone(),
            source,
        })?;
    let mut out = BTreeMap::new();
    for r in rows {
        let legacy: Option<String> = r.get(0);
        let mut row = CanonRow::new();
        for (i, (c, k)) in columns.iter().enumerate() {
            let text: Option<String> = r.get(i + 1);
            row.insert(c.clone(), canon_actual(k, text.as_deref()));
        }
        out.insert(legacy.unwrap_or_default(), row);
    }
    Ok(out)
}

/// True when `row` carries the collection's soft-delete marker.
pub fn is_soft_deleted(rules: &CollectionRules, row: &CanonRow) -> bool {
    match &rules.delete {
        DeleteRule::Soft { column, value } => {
            row.get(column).cloned().flatten() == canon_expected(value)
        }
        _ => false,
    }
}
