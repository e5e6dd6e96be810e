//! Runs planned row operations as multi-row statements inside the batch transaction: every value
//! travels as an element of a `text[]` parameter and is cast in SQL to the catalogue's exact type.
//! Upserts are version-guarded and report which rows they wrote; only those parents get their
//! child rows replaced. Append-only rows are inserted if absent and never updated: a conflicting
//! row with different values is reported as an immutable change.
//!
//! Deletes leave tombstones (the tombstones control table, written only here): a hard delete's
//! tombstone keeps any older state of the document from being written again (upserts anti-join
//! it); a soft delete flags the existing row without touching its version column (which keeps the
//! version of the data) and leaves a soft tombstone, so any older state that lands later is
//! flagged again: the last known state lands, then the delete policy applies.

use std::collections::{BTreeMap, HashMap, HashSet};

use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Row, Transaction};

use crate::mapping::{ChildRows, ColumnValue, LegacyRef, RowOp, SqlValue};
use crate::sink::catalogue::{Catalogue, TableInfo};
use crate::sink::error::SinkError;
use crate::sink::name::{quote_ident as ident, quote_schema_table as qualified};
use crate::sink::plan::{Planned, TablePlan};
use crate::sink::text::pg_text;
use crate::sink::tombstones;

/// The soft-delete rule of a collection: the column and the value a delete sets.
#[derive(Debug, Clone, PartialEq)]
pub struct SoftRule {
    pub column: String,
    pub value: SqlValue,
}

/// What the writer needs besides the plan: the catalogue, the quoted tombstones table and the
/// soft-delete rules by collection (to flag older states that land after a soft delete).
pub(crate) struct Targets<'a> {
    pub catalogue: &'a Catalogue,
    pub tombstones: &'a str,
    pub soft: &'a HashMap<String, SoftRule>,
    /// True when the session may create temporary tables: large groups of rows read from
    /// MongoDB (snapshot pages) are then staged with COPY (see `stage_rows`).
    pub staging: bool,
}

/// Upsert groups of at least this many rows read from MongoDB go through a staging table.
pub(crate) const STAGE_MIN_ROWS: usize = 64;

/// Why writing a set of operations failed.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// A statement was rejected by Postgres (the caller decides: per-event gap or batch abort).
    Db(tokio_postgres::Error),
    /// An append-only row exists with different values.
    Immutable { table: String, legacy_id: String },
    /// The mapping and the catalogue disagree, or ids are missing: stop the batch.
    Fatal(SinkError),
}

impl From<tokio_postgres::Error> for WriteError {
    fn from(e: tokio_postgres::Error) -> Self {
        WriteError::Db(e)
    }
}

impl From<SinkError> for WriteError {
    fn from(e: SinkError) -> Self {
        WriteError::Fatal(e)
    }
}

/// Rows written per table and statements sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct WriteStats {
    pub rows: BTreeMap<String, u64>,
    pub statements: u64,
}

impl WriteStats {
    fn add_rows(&mut self, table: &str, n: u64) {
        if n > 0 {
            *self.rows.entry(table.to_string()).or_default() += n;
        }
    }
}

struct Ctx<'a> {
    tx: &'a Transaction<'a>,
    catalogue: &'a Catalogue,
    tombstones: &'a str,
    soft: &'a HashMap<String, SoftRule>,
    ids: &'a HashMap<LegacyRef, uuid::Uuid>,
    staging: bool,
}

/// Executes the plan in order; returns rows written per table. `statements` counts every
/// statement sent, including the one that failed.
pub(crate) async fn execute(
    tx: &Transaction<'_>,
    targets: &Targets<'_>,
    ids: &HashMap<LegacyRef, uuid::Uuid>,
    plans: &[TablePlan<'_>],
    statements: &mut u64,
) -> Result<BTreeMap<String, u64>, WriteError> {
    let ctx = Ctx {
        tx,
        catalogue: targets.catalogue,
        tombstones: targets.tombstones,
        soft: targets.soft,
        ids,
        staging: targets.staging,
    };
    let mut stats = WriteStats::default();
    let result = execute_plans(&ctx, plans, &mut stats).await;
    *statements += stats.statements;
    result.map(|()| stats.rows)
}

async fn execute_plans(
    ctx: &Ctx<'_>,
    plans: &[TablePlan<'_>],
    stats: &mut WriteStats,
) -> Result<(), WriteError> {
    for plan in plans {
        for group in &plan.deletes {
            delete_group(ctx, plan.table, group, stats).await?;
        }
        for group in &plan.soft_deletes {
            soft_delete_group(ctx, plan.table, group, stats).await?;
        }
        for group in &plan.upserts {
            upsert_group(ctx, plan.table, group, stats).await?;
        }
    }
    Ok(())
}

fn table<'c>(cat: &'c Catalogue, name: &str) -> Result<&'c TableInfo, SinkError> {
    cat.tables
        .get(name)
        .ok_or_else(|| SinkError::TableNotFound {
            table: name.to_string(),
        })
}

fn col_type<'c>(info: &'c TableInfo, table: &str, column: &str) -> Result<&'c str, SinkError> {
    info.columns
        .get(column)
        .map(|c| c.sql_type.as_str())
        .ok_or_else(|| SinkError::UnknownColumn {
            table: table.to_string(),
            column: column.to_string(),
        })
}

fn text(ctx: &Ctx<'_>, v: &SqlValue) -> Result<Option<String>, SinkError> {
    pg_text(v, ctx.ids).map_err(|r| SinkError::IdMapIncomplete {
        collection: r.collection,
        legacy_id: r.legacy_id,
    })
}

fn id_of(ctx: &Ctx<'_>, key: &LegacyRef) -> Result<uuid::Uuid, SinkError> {
    ctx.ids
        .get(key)
        .copied()
        .ok_or_else(|| SinkError::IdMapIncomplete {
            collection: key.collection.clone(),
            legacy_id: key.legacy_id.clone(),
        })
}

/// `unnest($1::text[], ..) AS u(c0, ..)` for `n` text arrays.
fn unnest(n: usize) -> String {
    let args: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    let cols: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    format!("unnest({}) AS u({})", args.join(", "), cols.join(", "))
}

/// Copies the rows of `arrays` (one text array per column, all of the same length) into the
/// session's temporary staging table of that many text columns (`c0, c1, ..`), created on first
/// use and emptied at commit, with one binary COPY; returns the table's name. The statement that
/// reads it empties it (`consume_staged`), so a later group of the same width starts empty.
async fn stage_rows(
    ctx: &Ctx<'_>,
    stats: &mut WriteStats,
    arrays: &[Vec<Option<String>>],
) -> Result<String, WriteError> {
    use tokio_postgres::binary_copy::BinaryCopyInWriter;

    let width = arrays.len();
    let name = format!("pg_temp.m2p_stage_{width}");
    let columns: Vec<String> = (0..width).map(|i| format!("c{i} text")).collect();
    ctx.tx
        .batch_execute(&format!(
            "CREATE TEMPORARY TABLE IF NOT EXISTS m2p_stage_{width} ({}) ON COMMIT DELETE ROWS",
            columns.join(", ")
        ))
        .await?;
    let sink = ctx
        .tx
        .copy_in::<_, bytes::Bytes>(&format!("COPY {name} FROM STDIN (FORMAT binary)"))
        .await?;
    let types = vec![Type::TEXT; width];
    let writer = BinaryCopyInWriter::new(sink, &types);
    futures::pin_mut!(writer);
    let rows = arrays.first().map_or(0, Vec::len);
    let mut row: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(width);
    for r in 0..rows {
        row.clear();
        for column in arrays {
            row.push(&column[r]);
        }
        writer.as_mut().write(&row).await?;
    }
    writer.finish().await?;
    stats.statements += 2;
    Ok(name)
}

/// The arrays as parameters of a statement sent without preparing it first (one round trip):
/// every column travels as `text[]` and the statement casts it.
fn params(arrays: &[Vec<Option<String>>]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    arrays
        .iter()
        .map(|a| (a as &(dyn ToSql + Sync), Type::TEXT_ARRAY))
        .collect()
}

async fn query(
    ctx: &Ctx<'_>,
    stats: &mut WriteStats,
    sql: &str,
    arrays: &[Vec<Option<String>>],
) -> Result<Vec<Row>, WriteError> {
    stats.statements += 1;
    Ok(ctx.tx.query_typed(sql, &params(arrays)).await?)
}

async fn exec(
    ctx: &Ctx<'_>,
    stats: &mut WriteStats,
    sql: &str,
    arrays: &[Vec<Option<String>>],
) -> Result<u64, WriteError> {
    stats.statements += 1;
    Ok(ctx.tx.execute_typed(sql, &params(arrays)).await?)
}

fn version_guard(version: Option<&str>, vtype: &str, param: &str) -> String {
    match version {
        Some(v) => format!(
            " AND (t.{col} IS NULL OR t.{col} <= {param}::{vtype})",
            col = ident(v)
        ),
        None => String::new(),
    }
}

async fn delete_group(
    ctx: &Ctx<'_>,
    table_name: &str,
    ops: &[Planned<'_>],
    stats: &mut WriteStats,
) -> Result<(), WriteError> {
    let info = table(ctx.catalogue, table_name)?;
    let (mut keys, mut colls, mut ats) = (Vec::new(), Vec::new(), Vec::new());
    let (mut legacy_col, mut version_col) = ("", None);
    for p in ops {
        if let RowOp::Delete {
            legacy_column,
            key,
            version,
            ..
        } = p.op
        {
            legacy_col = legacy_column;
            version_col = version.as_ref().map(|(c, _)| c.as_str());
            keys.push(Some(key.legacy_id.clone()));
            colls.push(Some(key.collection.clone()));
            ats.push(Some(p.at.to_sql().to_string()));
        }
    }
    let ltype = col_type(info, table_name, legacy_col)?;
    let vtype = match version_col {
        Some(v) => col_type(info, table_name, v)?,
        None => "bigint",
    };
    let sql = format!(
        "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, coll, at)),
              gone AS (DELETE FROM {t} AS t USING u WHERE t.{l} = u.k::{ltype}{guard} RETURNING 1),
              tomb AS ({tomb})
         SELECT count(*) FROM gone",
        t = qualified(&info.schema, &info.name),
        l = ident(legacy_col),
        guard = version_guard(version_col, vtype, "u.at"),
        tomb = tombstones::insert_from_u(ctx.tombstones, false),
    );
    let rows = query(ctx, stats, &sql, &[keys, colls, ats]).await?;
    let n: i64 = rows.first().map_or(Ok(0), |r| r.try_get(0))?;
    stats.add_rows(table_name, u64::try_from(n).unwrap_or(0));
    Ok(())
}

async fn soft_delete_group(
    ctx: &Ctx<'_>,
    table_name: &str,
    ops: &[Planned<'_>],
    stats: &mut WriteStats,
) -> Result<(), WriteError> {
    let info = table(ctx.catalogue, table_name)?;
    let (mut keys, mut colls, mut ats, mut values) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut legacy_col, mut set_col, mut version_col) = ("", "", None);
    for p in ops {
        if let RowOp::SoftDelete {
            legacy_column,
            key,
            column,
            value,
            version,
            ..
        } = p.op
        {
            legacy_col = legacy_column;
            set_col = column;
            version_col = version.as_ref().map(|(c, _)| c.as_str());
            keys.push(Some(key.legacy_id.clone()));
            colls.push(Some(key.collection.clone()));
            ats.push(Some(p.at.to_sql().to_string()));
            values.push(text(ctx, value)?);
        }
    }
    let ltype = col_type(info, table_name, legacy_col)?;
    let ctype = col_type(info, table_name, set_col)?;
    let vtype = match version_col {
        Some(v) => col_type(info, table_name, v)?,
        None => "bigint",
    };
    // The version column keeps the version of the row's data: a state that lands later with an
    // older-or-equal version is flagged again through the tombstone (see `reapply_soft`).
    let sql = format!(
        "WITH u AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(k, coll, at, v)),
              flagged AS (UPDATE {t} AS t SET {c} = u.v::{ctype} FROM u
                          WHERE t.{l} = u.k::{ltype}{guard} RETURNING 1),
              tomb AS ({tomb})
         SELECT count(*) FROM flagged",
        t = qualified(&info.schema, &info.name),
        c = ident(set_col),
        l = ident(legacy_col),
        guard = version_guard(version_col, vtype, "u.at"),
        tomb = tombstones::insert_from_u(ctx.tombstones, true),
    );
    let rows = query(ctx, stats, &sql, &[keys, colls, ats, values]).await?;
    let n: i64 = rows.first().map_or(Ok(0), |r| r.try_get(0))?;
    stats.add_rows(table_name, u64::try_from(n).unwrap_or(0));
    Ok(())
}

/// After an upsert into a soft-delete table: rows whose data is not newer than a soft tombstone
/// of their document get the soft-delete value again (an older state landed after the delete).
async fn reapply_soft(
    ctx: &Ctx<'_>,
    info: &TableInfo,
    table_name: &str,
    legacy_col: &str,
    rule: &SoftRule,
    written: &[(String, String, String)],
    stats: &mut WriteStats,
) -> Result<(), WriteError> {
    if written.is_empty() {
        return Ok(());
    }
    let ltype = col_type(info, table_name, legacy_col)?;
    let ctype = col_type(info, table_name, &rule.column)?;
    let (mut keys, mut colls, mut ats) = (Vec::new(), Vec::new(), Vec::new());
    for (k, c, a) in written {
        keys.push(Some(k.clone()));
        colls.push(Some(c.clone()));
        ats.push(Some(a.clone()));
    }
    let value = vec![text(ctx, &rule.value)?];
    let sql = format!(
        "UPDATE {t} AS t SET {c} = ($4::text[])[1]::{ctype}
         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(k, coll, at)
         {soft}
         WHERE t.{l} = u.k::{ltype}",
        t = qualified(&info.schema, &info.name),
        c = ident(&rule.column),
        l = ident(legacy_col),
        soft = tombstones::soft_join(ctx.tombstones, "u.coll", "u.k", "u.at"),
    );
    exec(ctx, stats, &sql, &[keys, colls, ats, value]).await?;
    Ok(())
}

/// The value of `column` in an operation's assignments (the last one if repeated).
fn value_of<'v>(columns: &'v [ColumnValue], column: &str) -> &'v SqlValue {
    columns
        .iter()
        .rev()
        .find(|c| c.column == column)
        .map_or(&SqlValue::Null, |c| &c.value)
}

async fn upsert_group(
    ctx: &Ctx<'_>,
    table_name: &str,
    ops: &[Planned<'_>],
    stats: &mut WriteStats,
) -> Result<(), WriteError> {
    let Some(RowOp::Upsert {
        id_column,
        legacy_column,
        columns: first_columns,
        version: first_version,
        insert_only,
        ..
    }) = ops.first().map(|p| p.op)
    else {
        return Ok(());
    };
    let info = table(ctx.catalogue, table_name)?;
    let version_col = first_version.as_ref().map(|(c, _)| c.as_str());
    let mut data_cols: Vec<&str> = first_columns
        .iter()
        .map(|c| c.column.as_str())
        .filter(|c| *c != id_column && *c != legacy_column && Some(*c) != version_col)
        .collect();
    data_cols.sort_unstable();
    data_cols.dedup();
    let mut all_cols: Vec<&str> = vec![id_column, legacy_column];
    all_cols.extend(&data_cols);
    all_cols.extend(version_col);
    let types = all_cols
        .iter()
        .map(|c| col_type(info, table_name, c))
        .collect::<Result<Vec<_>, _>>()?;

    // The row values, then the document's collection and the state's cluster time (compared
    // with tombstones).
    let (coll_at, at_at) = (all_cols.len(), all_cols.len() + 1);
    let mut arrays: Vec<Vec<Option<String>>> =
        vec![Vec::with_capacity(ops.len()); all_cols.len() + 2];
    let mut op_ids = Vec::with_capacity(ops.len());
    for p in ops {
        let RowOp::Upsert {
            key,
            columns,
            version,
            ..
        } = p.op
        else {
            continue;
        };
        let id = id_of(ctx, key)?;
        op_ids.push(id);
        arrays[0].push(Some(id.hyphenated().to_string()));
        arrays[1].push(Some(key.legacy_id.clone()));
        for (i, c) in data_cols.iter().enumerate() {
            arrays[2 + i].push(text(ctx, value_of(columns, c))?);
        }
        if version_col.is_some() {
            arrays[2 + data_cols.len()].push(version.as_ref().map(|(_, t)| t.to_sql().to_string()));
        }
        arrays[coll_at].push(Some(key.collection.clone()));
        arrays[at_at].push(Some(p.at.to_sql().to_string()));
    }

    let t = qualified(&info.schema, &info.name);
    let col_list: Vec<String> = all_cols.iter().map(|c| ident(c)).collect();
    let select: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("u.c{i}::{ty}"))
        .collect();
    let conflict = if *insert_only {
        "DO NOTHING".to_string()
    } else {
        let mut sets: Vec<String> = all_cols[2..]
            .iter()
            .map(|c| format!("{0} = EXCLUDED.{0}", ident(c)))
            .collect();
        if sets.is_empty() {
            sets.push(format!("{0} = EXCLUDED.{0}", ident(legacy_column)));
        }
        let guard = version_col.map_or(String::new(), |v| {
            format!(" WHERE t.{0} IS NULL OR t.{0} <= EXCLUDED.{0}", ident(v))
        });
        format!("DO UPDATE SET {}{guard}", sets.join(", "))
    };
    // A state older than (or as old as) the document's hard-delete tombstone is never written.
    let deleted = tombstones::hard_delete_covers(
        ctx.tombstones,
        &format!("u.c{coll_at}"),
        "u.c1",
        &format!("u.c{at_at}"),
    );
    // Large groups of rows read from MongoDB are staged with one binary COPY and read back by the
    // same statement (which empties the staging table); the rest travel as array parameters.
    let staged = ctx.staging && ops.len() >= STAGE_MIN_ROWS && ops.iter().all(|p| p.read);
    // Large groups of rows read from MongoDB or inserted, whose documents Postgres has never seen
    // (no row, no tombstone), go straight into the table with one COPY; any refusal falls back
    // to the guarded statement.
    let copied = ops.len() >= STAGE_MIN_ROWS && ops.iter().all(|p| p.read || p.inserted);
    let fresh = NewRows {
        columns: &all_cols,
        ids: &op_ids,
        legacy_ids: &arrays[1],
        collections: &arrays[coll_at],
    };
    let written: HashSet<uuid::Uuid> =
        if copied && copy_new_rows(ctx, stats, info, table_name, &fresh, &arrays).await? {
            op_ids.iter().copied().collect()
        } else {
            let (with, source) = if staged {
                let stage = stage_rows(ctx, stats, &arrays).await?;
                (
                    format!("WITH u AS (DELETE FROM {stage} RETURNING *) "),
                    "u".to_string(),
                )
            } else {
                (String::new(), unnest(all_cols.len() + 2))
            };
            let sql = format!(
        "{with}INSERT INTO {t} AS t ({cols}) SELECT {select} FROM {source} WHERE NOT {deleted} \
         ON CONFLICT ({id}) {conflict} RETURNING t.{id}::uuid",
        cols = col_list.join(", "),
        select = select.join(", "),
        id = ident(id_column),
    );
            let rows = if staged {
                stats.statements += 1;
                ctx.tx.query(&sql, &[]).await?
            } else {
                query(ctx, stats, &sql, &arrays).await?
            };
            let written = rows
                .iter()
                .map(|r| r.try_get::<_, uuid::Uuid>(0))
                .collect::<Result<HashSet<_>, _>>()?;
            stats.add_rows(table_name, written.len() as u64);

            // A state read from MongoDB (a copy, a retry) that meets an existing append-only row only
            // fills gaps: a difference there was reported by the change event that made it.
            let from_events = ops.iter().any(|p| !p.read);
            if *insert_only && from_events && written.len() < ops.len() && !data_cols.is_empty() {
                let cmp = |prefix: &str, i: usize, c: &str| {
                    let json = info.columns.get(c).is_some_and(|ci| ci.kind == "json");
                    let expr = if prefix == "t" {
                        format!("t.{}", ident(c))
                    } else {
                        format!("u.c{}::{}", i + 2, types[i + 2])
                    };
                    if json {
                        format!("({expr})::jsonb")
                    } else {
                        expr
                    }
                };
                let stored: Vec<String> = data_cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| cmp("t", i, c))
                    .collect();
                let incoming: Vec<String> = data_cols
                    .iter()
                    .enumerate()
                    .map(|(i, c)| cmp("u", i, c))
                    .collect();
                let sql = format!(
                    "SELECT u.c1 FROM {u} JOIN {t} AS t ON t.{id} = u.c0::{idt} \
             WHERE ROW({s}) IS DISTINCT FROM ROW({i}) LIMIT 1",
                    u = unnest(all_cols.len() + 2),
                    id = ident(id_column),
                    idt = types[0],
                    s = stored.join(", "),
                    i = incoming.join(", "),
                );
                let changed = query(ctx, stats, &sql, &arrays).await?;
                if let Some(row) = changed.first() {
                    return Err(WriteError::Immutable {
                        table: table_name.to_string(),
                        legacy_id: row.try_get::<_, Option<String>>(0)?.unwrap_or_default(),
                    });
                }
            }
            written
        };
    finish_upsert(
        ctx,
        info,
        table_name,
        legacy_column,
        ops,
        &op_ids,
        &written,
        &arrays,
        at_at,
        stats,
    )
    .await
}

/// After the rows of an upsert group were written: replaces the child rows of the parents that
/// were written (`written`) and flags again, for soft-delete tables, the written rows whose
/// documents a soft delete already removed.
#[allow(clippy::too_many_arguments)]
async fn finish_upsert(
    ctx: &Ctx<'_>,
    info: &TableInfo,
    table_name: &str,
    legacy_column: &str,
    ops: &[Planned<'_>],
    op_ids: &[uuid::Uuid],
    written: &HashSet<uuid::Uuid>,
    arrays: &[Vec<Option<String>>],
    at_at: usize,
    stats: &mut WriteStats,
) -> Result<(), WriteError> {
    let mut children: Vec<(&ChildRows, uuid::Uuid)> = Vec::new();
    let mut written_keys: Vec<(String, String, String)> = Vec::new();
    for ((p, id), i) in ops.iter().zip(op_ids).zip(0..) {
        if let RowOp::Upsert {
            children: c, key, ..
        } = p.op
        {
            if written.contains(id) {
                children.extend(c.iter().map(|rows| (rows, *id)));
                let at = arrays[at_at][i].clone().unwrap_or_default();
                written_keys.push((key.legacy_id.clone(), key.collection.clone(), at));
            }
        }
    }
    let soft = ops.first().and_then(|p| match p.op {
        RowOp::Upsert { key, .. } => ctx.soft.get(&key.collection),
        _ => None,
    });
    if let Some(rule) = soft {
        reapply_soft(
            ctx,
            info,
            table_name,
            legacy_column,
            rule,
            &written_keys,
            stats,
        )
        .await?;
    }
    replace_children(ctx, &children, stats).await
}

/// The rows of an upsert group as `copy_new_rows` sees them.
struct NewRows<'a> {
    /// The row columns, the id column first (the leading arrays of the group's values).
    columns: &'a [&'a str],
    /// The rows' ids.
    ids: &'a [uuid::Uuid],
    /// The rows' legacy ids.
    legacy_ids: &'a [Option<String>],
    /// Each row's document collection.
    collections: &'a [Option<String>],
}

/// Writes a group of rows read from MongoDB with one `COPY` (text format) straight into the table
/// when none of their documents can be there yet: no row has any of their ids and none of them
/// has a tombstone (so no delete can refuse them); checked by one statement first.
/// The COPY runs under its own savepoint: any refusal (a row that appeared meanwhile, a CHECK, a
/// foreign key) rolls it back and returns false, and the caller writes the group through the
/// guarded `INSERT .. SELECT .. ON CONFLICT`, which decides row by row. True when every row was
/// written.
async fn copy_new_rows(
    ctx: &Ctx<'_>,
    stats: &mut WriteStats,
    info: &TableInfo,
    table_name: &str,
    rows: &NewRows<'_>,
    arrays: &[Vec<Option<String>>],
) -> Result<bool, WriteError> {
    let Some(collection) = rows.collections.first().cloned().flatten() else {
        return Ok(false);
    };
    if rows
        .collections
        .iter()
        .any(|c| c.as_deref() != Some(&collection))
    {
        return Ok(false);
    }
    let t = qualified(&info.schema, &info.name);
    let Some(id_column) = rows.columns.first() else {
        return Ok(false);
    };
    if col_type(info, table_name, id_column)? != "uuid" {
        return Ok(false);
    }
    let probe = format!(
        "SELECT EXISTS (SELECT 1 FROM {tomb} WHERE collection = $1
                            AND legacy_object_id = ANY($3::text[]))
             OR EXISTS (SELECT 1 FROM {t} WHERE {id} = ANY($2::uuid[]))",
        tomb = ctx.tombstones,
        id = ident(id_column),
    );
    let seen = ctx
        .tx
        .query_typed_one(
            &probe,
            &[
                (&collection, Type::TEXT),
                (&rows.ids, Type::UUID_ARRAY),
                (&rows.legacy_ids, Type::TEXT_ARRAY),
            ],
        )
        .await?;
    stats.statements += 1;
    if seen.try_get::<_, bool>(0)? {
        return Ok(false);
    }
    let all_cols = rows.columns;
    let cols: Vec<String> = all_cols.iter().map(|c| ident(c)).collect();
    let sql = format!("COPY {t} ({}) FROM STDIN", cols.join(", "));
    let data = copy_text(&arrays[..all_cols.len()]);
    ctx.tx.batch_execute("SAVEPOINT m2p_copy").await?;
    stats.statements += 2;
    let copied = async {
        let sink = ctx.tx.copy_in::<_, bytes::Bytes>(&sql).await?;
        futures::pin_mut!(sink);
        use futures::SinkExt;
        sink.send(bytes::Bytes::from(data)).await?;
        sink.finish().await
    }
    .await;
    match copied {
        // Released with the write's own savepoint.
        Ok(n) if n == arrays[0].len() as u64 => {
            stats.add_rows(table_name, n);
            Ok(true)
        }
        Ok(_) | Err(_) => {
            ctx.tx
                .batch_execute("ROLLBACK TO SAVEPOINT m2p_copy; RELEASE SAVEPOINT m2p_copy")
                .await?;
            stats.statements += 1;
            Ok(false)
        }
    }
}

/// The rows of `arrays` (one array per column) in COPY's text format: tab-separated, `\N` for
/// NULL, backslash, tab, newline and carriage return escaped.
fn copy_text(arrays: &[Vec<Option<String>>]) -> Vec<u8> {
    let rows = arrays.first().map_or(0, Vec::len);
    let width: usize = arrays
        .iter()
        .map(|a| {
            a.iter()
                .map(|v| v.as_ref().map_or(2, String::len) + 1)
                .sum::<usize>()
        })
        .sum();
    let mut out = Vec::with_capacity(width + rows);
    for r in 0..rows {
        for (c, column) in arrays.iter().enumerate() {
            if c > 0 {
                out.push(b'\t');
            }
            match &column[r] {
                None => out.extend_from_slice(b"\\N"),
                Some(v) => {
                    for &b in v.as_bytes() {
                        match b {
                            b'\\' => out.extend_from_slice(b"\\\\"),
                            b'\t' => out.extend_from_slice(b"\\t"),
                            b'\n' => out.extend_from_slice(b"\\n"),
                            b'\r' => out.extend_from_slice(b"\\r"),
                            _ => out.push(b),
                        }
                    }
                }
            }
        }
        out.push(b'\n');
    }
    out
}

/// Child rows sharing one column set: the columns, then (parent id, row) pairs.
type ChildShape<'a> = (Vec<&'a str>, Vec<(uuid::Uuid, &'a Vec<ColumnValue>)>);

/// Deletes the child rows of every written parent (per child table) and inserts the new ones.
async fn replace_children(
    ctx: &Ctx<'_>,
    children: &[(&ChildRows, uuid::Uuid)],
    stats: &mut WriteStats,
) -> Result<(), WriteError> {
    let mut order: Vec<(&str, &str)> = Vec::new();
    for (c, _) in children {
        let k = (c.table.as_str(), c.parent_column.as_str());
        if !order.contains(&k) {
            order.push(k);
        }
    }
    for (child_table, parent_col) in order {
        let info = table(ctx.catalogue, child_table)?;
        let t = qualified(&info.schema, &info.name);
        let ptype = col_type(info, child_table, parent_col)?;
        let mine: Vec<&(&ChildRows, uuid::Uuid)> = children
            .iter()
            .filter(|(c, _)| c.table == child_table && c.parent_column == parent_col)
            .collect();
        let parents: Vec<Option<String>> = mine
            .iter()
            .map(|(_, id)| Some(id.hyphenated().to_string()))
            .collect();
        let sql = format!(
            "DELETE FROM {t} WHERE {p} IN (SELECT u.c0::{ptype} FROM {u})",
            p = ident(parent_col),
            u = unnest(1),
        );
        exec(ctx, stats, &sql, &[parents]).await?;

        // Rows grouped by their column set: one INSERT per shape.
        let mut shapes: Vec<ChildShape<'_>> = Vec::new();
        for (rows, id) in &mine {
            for row in &rows.rows {
                let mut cols: Vec<&str> = row
                    .iter()
                    .map(|c| c.column.as_str())
                    .filter(|c| *c != parent_col)
                    .collect();
                cols.sort_unstable();
                cols.dedup();
                match shapes.iter_mut().find(|(s, _)| *s == cols) {
                    Some((_, list)) => list.push((*id, row)),
                    None => shapes.push((cols, vec![(*id, row)])),
                }
            }
        }
        for (cols, rows) in shapes {
            let mut all_cols = vec![parent_col];
            all_cols.extend(&cols);
            let types = all_cols
                .iter()
                .map(|c| col_type(info, child_table, c))
                .collect::<Result<Vec<_>, _>>()?;
            let mut arrays: Vec<Vec<Option<String>>> = vec![Vec::new(); all_cols.len()];
            for (id, row) in &rows {
                arrays[0].push(Some(id.hyphenated().to_string()));
                for (i, c) in cols.iter().enumerate() {
                    arrays[1 + i].push(text(ctx, value_of(row, c))?);
                }
            }
            let select: Vec<String> = types
                .iter()
                .enumerate()
                .map(|(i, ty)| format!("u.c{i}::{ty}"))
                .collect();
            let names: Vec<String> = all_cols.iter().map(|c| ident(c)).collect();
            let sql = format!(
                "INSERT INTO {t} ({}) SELECT {} FROM {}",
                names.join(", "),
                select.join(", "),
                unnest(all_cols.len()),
            );
            let n = exec(ctx, stats, &sql, &arrays).await?;
            stats.add_rows(child_table, n);
        }
    }
    Ok(())
}
