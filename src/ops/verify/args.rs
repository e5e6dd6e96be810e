//! The flags of `mongo2pg verify [collection...] [--group-by coll=column]...` turned into the
//! collections to compare and `VerifyOptions`, and the human-readable form of a report (the CLI
//! prints the report as JSON with `--json`).

use std::fmt::Write as _;

use super::{VerifyOptions, VerifyReport};
use crate::config::CompiledMapping;
use crate::mapping::CollectionRules;

/// Raw flags as the CLI parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyArgs {
    /// Collections to compare; empty = every mapped collection.
    pub collections: Vec<String>,
    /// `collection=column`: group that collection's money sums by the column.
    pub group_by: Vec<String>,
    /// How many differing rows to list per collection.
    pub max_listed: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyArgsError {
    #[error("collection {0} is not mapped")]
    UnknownCollection(String),
    #[error("--group-by {0:?} is not collection=column")]
    BadGroupBy(String),
}

impl VerifyArgs {
    /// The rules to compare (in snapshot order) and the options.
    pub fn resolve(
        self,
        mapping: &CompiledMapping,
    ) -> Result<(Vec<&CollectionRules>, VerifyOptions), VerifyArgsError> {
        let names: Vec<String> = if self.collections.is_empty() {
            mapping.config.snapshot_order()
        } else {
            self.collections
        };
        let rules = names
            .iter()
            .map(|c| {
                mapping
                    .rules(c)
                    .ok_or_else(|| VerifyArgsError::UnknownCollection(c.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut options = VerifyOptions {
            id_map_table: mapping.config.target.id_map.clone(),
            ..VerifyOptions::default()
        };
        for g in self.group_by {
            let (c, col) = g
                .split_once('=')
                .ok_or_else(|| VerifyArgsError::BadGroupBy(g.clone()))?;
            if c.is_empty() || col.is_empty() {
                return Err(VerifyArgsError::BadGroupBy(g.clone()));
            }
            options.group_by.insert(c.to_string(), col.to_string());
        }
        if let Some(n) = self.max_listed {
            options.max_listed = n;
        }
        Ok((rules, options))
    }
}

/// A compact text report: one line per collection, then every mismatch.
pub fn render_text(report: &VerifyReport) -> String {
    let mut out = String::new();
    for c in &report.collections {
        let _ = writeln!(
            out,
            "{:<24} {:<6} mongo={} postgres={} unmappable={} missing={} extra={} differing={}",
            c.collection,
            if c.clean { "ok" } else { "DIFF" },
            c.mongo_documents,
            c.postgres_rows,
            c.unmappable_documents,
            c.missing_count,
            c.extra_count,
            c.differing_count
        );
        for id in &c.id_collisions {
            let _ = writeln!(
                out,
                "  id collision: a string _id and an ObjectId share the legacy id {id} (see the id_collision gap)"
            );
        }
        for id in &c.missing {
            let _ = writeln!(out, "  missing in postgres: {id}");
        }
        for id in &c.extra {
            let _ = writeln!(out, "  extra in postgres: {id}");
        }
        for d in &c.differing {
            for col in &d.columns {
                let _ = writeln!(
                    out,
                    "  {} {}: mongo={} postgres={}",
                    d.legacy_id,
                    col.column,
                    col.mongo.as_deref().unwrap_or("NULL"),
                    col.postgres.as_deref().unwrap_or("NULL")
                );
            }
        }
        for s in c.checksums.iter().filter(|s| !s.matches) {
            let _ = writeln!(out, "  checksum of {} differs", s.column);
        }
        for m in c.money_sums.iter().filter(|m| !m.matches) {
            let _ = writeln!(
                out,
                "  sum({}) where {}={}: mongo={} postgres={}",
                m.column,
                m.group_by.as_deref().unwrap_or("-"),
                m.group.as_deref().unwrap_or("-"),
                m.mongo.as_deref().unwrap_or("none"),
                m.postgres.as_deref().unwrap_or("none")
            );
        }
        for k in c.child_counts.iter().filter(|k| !k.matches) {
            let _ = writeln!(
                out,
                "  child rows of {}: mongo={} postgres={}",
                k.table, k.mongo, k.postgres
            );
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if report.clean {
            "verify: clean"
        } else {
            "verify: MISMATCH"
        }
    );
    out
}
