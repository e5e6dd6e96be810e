//! `mongo2pg verify`: compares MongoDB and Postgres collection by collection and says, with a
//! structured report and one boolean, whether Postgres holds exactly what the mapping makes of
//! MongoDB.
//!
//! Per collection it maps every MongoDB document through the pure mapping (as a snapshot read),
//! reads the table back from Postgres (references translated back to legacy ids through id_map)
//! and compares: row counts, missing and extra rows, per-column checksums, exact sums of every
//! `numeric` column grouped by a configured column (e.g. `status` or `currency`, summed by Postgres
//! itself), child-row counts, and a row-by-row diff naming the differing columns. Documents the
//! mapping rejects are counted (they are gaps, not rows) and left out of the comparison.
//!
//! Both sides are held in memory per collection; verify is an operator and test tool, not part of
//! the bounded-memory pipeline.

pub mod args;
pub mod compare;
pub mod last;
pub mod rows;

pub use args::{render_text, VerifyArgs, VerifyArgsError};

use std::collections::{BTreeMap, BTreeSet};

use bson::Document;
use futures::TryStreamExt;
use serde::Serialize;

use self::compare::{
    canon_actual, checksums, compared_columns, diff_row, money_columns, money_sums, CanonRow,
    ColumnChecksum, ColumnDiff, ColumnKind, SumError,
};
use self::rows::{expect_document, is_soft_deleted, read_postgres, select_expr, Expectation};
use crate::mapping::rules::CollectionRules;
use crate::sink::name::{quote_ident as quote, quote_qualified, InvalidName};

/// Default number of differing rows listed per collection.
pub const DEFAULT_MAX_LISTED: usize = 20;

/// What verify compares beyond the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyOptions {
    /// Per collection, the column money sums are grouped by (e.g. `payments` → `status`).
    pub group_by: BTreeMap<String, String>,
    /// At most this many missing, extra and differing rows are listed per collection (all are
    /// counted).
    pub max_listed: usize,
    /// The id_map table, optionally schema-qualified.
    pub id_map_table: String,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            group_by: BTreeMap::new(),
            max_listed: DEFAULT_MAX_LISTED,
            id_map_table: "id_map".into(),
        }
    }
}

/// Why verify could not run (a mismatch is a report, not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("reading {collection} from mongodb failed: {source}")]
    Mongo {
        collection: String,
        #[source]
        source: Box<mongodb::error::Error>,
    },
    #[error("reading {table} from postgres failed: {source}")]
    Postgres {
        table: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("summing {column} of {collection} exactly failed: {source}")]
    Sum {
        collection: String,
        column: String,
        #[source]
        source: SumError,
    },
    #[error(transparent)]
    InvalidName(#[from] InvalidName),
}

/// A per-column checksum on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecksumReport {
    pub column: String,
    pub mongo: ColumnChecksum,
    pub postgres: ColumnChecksum,
    pub matches: bool,
}

/// The exact sum of a money column for one group on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoneySumReport {
    pub column: String,
    pub group_by: Option<String>,
    pub group: Option<String>,
    pub mongo: Option<String>,
    pub postgres: Option<String>,
    pub matches: bool,
}

/// Child-row totals of one child table on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChildCountReport {
    pub table: String,
    pub mongo: u64,
    pub postgres: u64,
    pub matches: bool,
}

/// One row that exists on both sides with differing columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowDiff {
    pub legacy_id: String,
    pub columns: Vec<ColumnDiff>,
}

/// The comparison of one collection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CollectionReport {
    pub collection: String,
    pub table: String,
    pub mongo_documents: u64,
    /// Documents the mapping rejects (recorded as gaps, not expected in Postgres).
    pub unmappable_documents: u64,
    pub postgres_rows: u64,
    pub missing_count: u64,
    /// Legacy ids present in MongoDB but not in Postgres (first `max_listed`).
    pub missing: Vec<String>,
    pub extra_count: u64,
    /// Legacy ids present in Postgres but not in MongoDB (first `max_listed`).
    pub extra: Vec<String>,
    pub differing_count: u64,
    pub differing: Vec<RowDiff>,
    pub checksums: Vec<ChecksumReport>,
    pub money_sums: Vec<MoneySumReport>,
    pub child_counts: Vec<ChildCountReport>,
    /// Legacy ids shared by two MongoDB documents (a string `_id` with the text of another
    /// document's ObjectId): Postgres can hold only one of them (the other is an
    /// `id_collision` gap); never clean.
    pub id_collisions: Vec<String>,
    pub clean: bool,
}

/// The comparison of several collections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub collections: Vec<CollectionReport>,
    pub clean: bool,
}

/// What the mapping makes of the MongoDB collection.
struct MongoSide {
    documents: u64,
    unmappable: BTreeSet<String>,
    collisions: BTreeSet<String>,
    rows: BTreeMap<String, CanonRow>,
    children: BTreeMap<String, u64>,
}

async fn read_mongo(
    db: &mongodb::Database,
    rules: &CollectionRules,
) -> Result<MongoSide, VerifyError> {
    let columns = compared_columns(rules);
    let err = |source| VerifyError::Mongo {
        collection: rules.collection.clone(),
        source: Box::new(source),
    };
    let mut cursor = db
        .collection::<Document>(&rules.collection)
        .find(Document::new())
        .sort(bson::doc! {"_id": 1})
        .await
        .map_err(err)?;
    let mut side = MongoSide {
        documents: 0,
        unmappable: BTreeSet::new(),
        collisions: BTreeSet::new(),
        rows: BTreeMap::new(),
        children: rules
            .children
            .iter()
            .map(|c| (c.table.clone(), 0))
            .collect(),
    };
    while let Some(doc) = cursor.try_next().await.map_err(err)? {
        side.documents += 1;
        match expect_document(rules, &columns, doc) {
            Expectation::Unmappable { legacy_id } => {
                side.unmappable.insert(legacy_id);
            }
            Expectation::Row {
                legacy_id,
                row,
                children,
            } => {
                for (table, count) in children {
                    *side.children.entry(table).or_default() += count;
                }
                if side.rows.insert(legacy_id.clone(), row).is_some() {
                    side.collisions.insert(legacy_id);
                }
            }
        }
    }
    // Two documents with one legacy id: which of them Postgres holds is not a difference to
    // report row by row; the collision itself is.
    for id in &side.collisions {
        side.rows.remove(id);
        side.unmappable.insert(id.clone());
    }
    Ok(side)
}

async fn postgres_money_sums(
    pg: &tokio_postgres::Client,
    rules: &CollectionRules,
    money: &str,
    group: Option<(&str, &ColumnKind)>,
    id_map: &str,
    excluded: &Vec<String>,
) -> Result<BTreeMap<Option<String>, String>, VerifyError> {
    let table = quote_qualified(&rules.table)?;
    let mut params = Vec::new();
    let group_expr = match group {
        Some((g, kind)) => select_expr(g, kind, id_map, &mut params),
        None => "null::text".to_string(),
    };
    let sql = format!(
        "select {group_expr}, sum(t.{m})::text from {table} t
         where t.{m} is not null and not (t.{legacy} = any(${n})) group by 1",
        m = quote(money),
        legacy = quote(&rules.legacy_column),
        n = params.len() + 1
    );
    let mut refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
        .iter()
        .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    refs.push(excluded);
    let rows = pg
        .query(&sql, &refs)
        .await
        .map_err(|source| VerifyError::Postgres {
            table: rules.table.clone(),
            source,
        })?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let g: Option<String> = r.get(0);
            let s: Option<String> = r.get(1);
            let g = group.and_then(|(_, k)| canon_actual(k, g.as_deref()));
            (
                g,
                canon_actual(&ColumnKind::Decimal, s.as_deref()).unwrap_or_default(),
            )
        })
        .collect())
}

async fn postgres_child_count(
    pg: &tokio_postgres::Client,
    rules: &CollectionRules,
    child_table: &str,
    parent_column: &str,
    excluded: &Vec<String>,
) -> Result<u64, VerifyError> {
    let sql = format!(
        "select count(*) from {} c join {} p on c.{} = p.{} where not (p.{} = any($1))",
        quote_qualified(child_table)?,
        quote_qualified(&rules.table)?,
        quote(parent_column),
        quote(&rules.id_column),
        quote(&rules.legacy_column)
    );
    let row = pg
        .query_one(&sql, &[excluded])
        .await
        .map_err(|source| VerifyError::Postgres {
            table: child_table.to_string(),
            source,
        })?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}

/// Compares one collection.
pub async fn verify_collection(
    mongo: &mongodb::Database,
    pg: &tokio_postgres::Client,
    rules: &CollectionRules,
    options: &VerifyOptions,
) -> Result<CollectionReport, VerifyError> {
    let id_map = quote_qualified(&options.id_map_table)?;
    let mongo_side = read_mongo(mongo, rules).await?;
    let pg_rows = read_postgres(pg, rules, &id_map, None).await?;
    let listed = options.max_listed;

    let mut report = CollectionReport {
        collection: rules.collection.clone(),
        table: rules.table.clone(),
        mongo_documents: mongo_side.documents,
        unmappable_documents: mongo_side.unmappable.len() as u64,
        postgres_rows: pg_rows.len() as u64,
        missing_count: 0,
        missing: Vec::new(),
        extra_count: 0,
        extra: Vec::new(),
        differing_count: 0,
        differing: Vec::new(),
        checksums: Vec::new(),
        money_sums: Vec::new(),
        child_counts: Vec::new(),
        id_collisions: mongo_side.collisions.iter().take(listed).cloned().collect(),
        clean: false,
    };
    for (id, expected) in &mongo_side.rows {
        match pg_rows.get(id) {
            None => {
                report.missing_count += 1;
                if report.missing.len() < listed {
                    report.missing.push(id.clone());
                }
            }
            Some(actual) => {
                let columns = diff_row(expected, actual);
                if !columns.is_empty() {
                    report.differing_count += 1;
                    if report.differing.len() < listed {
                        report.differing.push(RowDiff {
                            legacy_id: id.clone(),
                            columns,
                        });
                    }
                }
            }
        }
    }
    // Rows Postgres should hold: everything except soft-deleted rows and rejected documents. The
    // others (those and extra rows, reported above) are left out of every sum and count.
    let mut excluded: Vec<String> = Vec::new();
    let compared_pg: BTreeMap<String, CanonRow> = pg_rows
        .into_iter()
        .filter(|(id, row)| {
            let expected = mongo_side.rows.contains_key(id);
            if !expected && !mongo_side.unmappable.contains(id) && !is_soft_deleted(rules, row) {
                report.extra_count += 1;
                if report.extra.len() < listed {
                    report.extra.push(id.clone());
                }
            }
            if !expected {
                excluded.push(id.clone());
            }
            expected
        })
        .collect();

    let columns = compared_columns(rules);
    let names: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
    let mongo_sums = checksums(&mongo_side.rows, &names);
    let pg_sums = checksums(&compared_pg, &names);
    for c in &names {
        let (m, p) = (
            mongo_sums.get(c).copied().unwrap_or_default(),
            pg_sums.get(c).copied().unwrap_or_default(),
        );
        report.checksums.push(ChecksumReport {
            column: c.clone(),
            mongo: m,
            postgres: p,
            matches: m == p,
        });
    }

    let group_by = options.group_by.get(&rules.collection).map(String::as_str);
    let group_kind = group_by.and_then(|g| {
        columns
            .iter()
            .find(|(c, _)| c == g)
            .map(|(c, k)| (c.as_str(), k))
    });
    for money in money_columns(rules) {
        let sum_err = |source| VerifyError::Sum {
            collection: rules.collection.clone(),
            column: money.clone(),
            source,
        };
        let mongo_sums =
            money_sums(&mongo_side.rows, &money, group_kind.map(|(g, _)| g)).map_err(sum_err)?;
        let pg_sums =
            postgres_money_sums(pg, rules, &money, group_kind, &id_map, &excluded).await?;
        let groups: BTreeSet<Option<String>> =
            mongo_sums.keys().chain(pg_sums.keys()).cloned().collect();
        for g in groups {
            let (m, p) = (mongo_sums.get(&g).cloned(), pg_sums.get(&g).cloned());
            report.money_sums.push(MoneySumReport {
                column: money.clone(),
                group_by: group_kind.map(|(c, _)| c.to_string()),
                group: g,
                matches: m == p,
                mongo: m,
                postgres: p,
            });
        }
    }

    for child in &rules.children {
        let mongo_count = mongo_side.children.get(&child.table).copied().unwrap_or(0);
        let pg_count =
            postgres_child_count(pg, rules, &child.table, &child.parent_column, &excluded).await?;
        report.child_counts.push(ChildCountReport {
            table: child.table.clone(),
            mongo: mongo_count,
            postgres: pg_count,
            matches: mongo_count == pg_count,
        });
    }

    report.clean = report.missing_count == 0
        && report.id_collisions.is_empty()
        && report.extra_count == 0
        && report.differing_count == 0
        && report.checksums.iter().all(|c| c.matches)
        && report.money_sums.iter().all(|m| m.matches)
        && report.child_counts.iter().all(|c| c.matches);
    Ok(report)
}

/// Compares every given collection; `clean` is true only when all of them are.
pub async fn verify(
    mongo: &mongodb::Database,
    pg: &tokio_postgres::Client,
    collections: &[&CollectionRules],
    options: &VerifyOptions,
) -> Result<VerifyReport, VerifyError> {
    let mut reports = Vec::with_capacity(collections.len());
    for rules in collections {
        let report = verify_collection(mongo, pg, rules, options).await?;
        tracing::info!(
            collection = %report.collection,
            clean = report.clean,
            missing = report.missing_count,
            extra = report.extra_count,
            differing = report.differing_count,
            "verified collection"
        );
        reports.push(report);
    }
    let clean = reports.iter().all(|r| r.clean);
    Ok(VerifyReport {
        collections: reports,
        clean,
    })
}
