//! The replicator's own tables (id_map, checkpoints, gaps, token-reset audit, tombstones, the
//! version-encoding record, continuous-verification results) as versioned SQL migrations from
//! `migrations/`, templated with the configured names and applied through refinery with its
//! history table in the private schema. Running it again is a no-op. It never touches the
//! application's tables; an existing compatible `id_map` only gains the nullable `legacy_type`
//! column.

use refinery::{Migration, Runner};
use tokio_postgres::Client;

use crate::sink::error::SinkError;
use crate::sink::name::{is_control_identifier, InvalidName, QualifiedName};

/// Default schema of the replicator-private tables.
pub const DEFAULT_SCHEMA: &str = "mongo2pg";
/// Default id_map table (shared with the application's backfill).
pub const DEFAULT_ID_MAP: &str = "public.id_map";
/// Default gaps table (the name the dual-write plan uses).
pub const DEFAULT_GAPS: &str = "public.pg_dualwrite_gaps";
/// Name of refinery's history table inside the private schema.
pub const HISTORY_TABLE: &str = "refinery_schema_history";

/// Arbitrary constant for the advisory lock that serialises concurrent `migrate` runs.
const MIGRATE_LOCK_KEY: i64 = 0x6d32_7067_6d69_6772;

const SOURCES: [(&str, &str); 7] = [
    (
        "V1__id_map.sql",
        include_str!("../../migrations/V1__id_map.sql"),
    ),
    (
        "V2__checkpoints.sql",
        include_str!("../../migrations/V2__checkpoints.sql"),
    ),
    (
        "V3__gaps.sql",
        include_str!("../../migrations/V3__gaps.sql"),
    ),
    (
        "V4__token_resets.sql",
        include_str!("../../migrations/V4__token_resets.sql"),
    ),
    (
        "V5__tombstones_identity_time_encoding.sql",
        include_str!("../../migrations/V5__tombstones_identity_time_encoding.sql"),
    ),
    (
        "V6__verify.sql",
        include_str!("../../migrations/V6__verify.sql"),
    ),
    (
        "V7__stream_members.sql",
        include_str!("../../migrations/V7__stream_members.sql"),
    ),
];

/// Names of the control tables. Each table is `schema.table` or a bare `table` (resolved through
/// the search path); every part is a plain lower-case SQL identifier, so it is used unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlNames {
    /// Schema of the replicator-private tables and of the migrations history.
    pub schema: String,
    pub id_map: String,
    pub gaps: String,
    pub checkpoints: String,
    /// Audit table of operator token resets.
    pub audit: String,
}

impl Default for ControlNames {
    fn default() -> Self {
        ControlNames::with_schema(DEFAULT_SCHEMA)
    }
}

impl ControlNames {
    /// Defaults with the private tables (`checkpoints`, `token_resets`) in `schema`.
    pub fn with_schema(schema: &str) -> Self {
        ControlNames {
            schema: schema.to_string(),
            id_map: DEFAULT_ID_MAP.to_string(),
            gaps: DEFAULT_GAPS.to_string(),
            checkpoints: format!("{schema}.checkpoints"),
            audit: format!("{schema}.token_resets"),
        }
    }

    /// The tombstones table (always in the private schema).
    pub fn tombstones(&self) -> String {
        format!("{}.tombstones", self.schema)
    }

    /// The table recording which mapped tables' version columns use the current encoding.
    pub fn version_encoding(&self) -> String {
        format!("{}.version_encoding", self.schema)
    }

    /// Checks every name is a plain identifier (optionally schema-qualified).
    pub fn validate(&self) -> Result<(), SinkError> {
        if !is_control_identifier(&self.schema) {
            return Err(SinkError::InvalidName(InvalidName {
                name: self.schema.clone(),
                reason: "the control schema must be a lower-case identifier ([a-z_][a-z0-9_]*, at most 40 characters)".to_string(),
            }));
        }
        for name in [&self.id_map, &self.gaps, &self.checkpoints, &self.audit] {
            QualifiedName::parse_control(name)?;
        }
        Ok(())
    }

    /// The last continuous-verification round per collection (in the private schema).
    pub fn verify_rounds(&self) -> String {
        format!("{}.verify_rounds", self.schema)
    }

    /// The mismatches of those rounds (in the private schema).
    pub fn verify_mismatches(&self) -> String {
        format!("{}.verify_mismatches", self.schema)
    }

    /// Schemas the tables live in (explicitly qualified ones plus the private schema).
    fn schemas(&self) -> Vec<&str> {
        let mut out = vec![self.schema.as_str()];
        for name in [&self.id_map, &self.gaps, &self.checkpoints, &self.audit] {
            if let Some((schema, _)) = name.split_once('.') {
                if !out.contains(&schema) {
                    out.push(schema);
                }
            }
        }
        out
    }

    /// The migration SQL with every placeholder replaced.
    fn render(&self, sql: &str) -> String {
        sql.replace("{{id_map}}", &self.id_map)
            .replace("{{gaps_name}}", bare(&self.gaps))
            .replace("{{gaps}}", &self.gaps)
            .replace("{{checkpoints}}", &self.checkpoints)
            .replace("{{audit_name}}", bare(&self.audit))
            .replace("{{audit}}", &self.audit)
            .replace("{{tombstones}}", &self.tombstones())
            .replace("{{schema}}", &self.schema)
    }
}

fn bare(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(_, table)| table)
}

/// The control-table migrations for these names, ready for refinery.
pub fn migrations(names: &ControlNames) -> Result<Vec<Migration>, SinkError> {
    SOURCES
        .iter()
        .map(|(file, sql)| {
            Migration::unapplied(file, &names.render(sql))
                .map_err(|source| SinkError::Migration { source })
        })
        .collect()
}

/// Creates or updates the control tables; returns the names of the migrations applied by this
/// call (empty when everything was already in place). Concurrent callers are serialised.
pub async fn migrate(client: &mut Client, names: &ControlNames) -> Result<Vec<String>, SinkError> {
    names.validate()?;
    let migrations = migrations(names)?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK_KEY])
        .await
        .map_err(|e| SinkError::pg("taking the migration lock", e))?;
    let result = run_locked(client, names, &migrations).await;
    let unlock = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK_KEY])
        .await
        .map_err(|e| SinkError::pg("releasing the migration lock", e));
    let applied = result?;
    unlock?;
    Ok(applied)
}

async fn run_locked(
    client: &mut Client,
    names: &ControlNames,
    migrations: &[Migration],
) -> Result<Vec<String>, SinkError> {
    for schema in names.schemas() {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .map_err(|e| SinkError::pg(format!("creating schema {schema}"), e))?;
    }
    let report = Runner::new(migrations)
        .set_migration_table_name(format!("{}.{HISTORY_TABLE}", names.schema))
        .run_async(client)
        .await
        .map_err(|source| SinkError::Migration { source })?;
    check_id_map(client, names).await?;
    Ok(report
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Moves the version columns of mapped tables to the current cluster-time encoding
/// ([`crate::event::ClusterTime::to_sql`]), once per table: `tables` lists (qualified table,
/// version column). A table that does not exist yet is skipped (it is converted when it first
/// exists at a later start); one already recorded is left alone. Returns the tables converted now.
pub async fn upgrade_version_columns(
    client: &mut Client,
    names: &ControlNames,
    tables: &[(String, String)],
) -> Result<Vec<String>, SinkError> {
    let record = crate::sink::name::quote_qualified(&names.version_encoding())?;
    let mut converted = Vec::new();
    for (table, column) in tables {
        let exists: bool = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[table])
            .await
            .map_err(|e| SinkError::pg("looking up a mapped table", e))?
            .get(0);
        if !exists {
            continue;
        }
        let tx = client
            .transaction()
            .await
            .map_err(|e| SinkError::pg("beginning a version-encoding upgrade", e))?;
        // Concurrent replicas wait here for the first one's insert; only it converts.
        let fresh = tx
            .execute(
                &format!(
                    "INSERT INTO {record} (table_name, version_column) VALUES ($1, $2)
                     ON CONFLICT (table_name) DO NOTHING"
                ),
                &[table, column],
            )
            .await
            .map_err(|e| SinkError::pg("recording a version-encoding upgrade", e))?;
        if fresh == 1 {
            let t = crate::sink::name::quote_qualified(table)?;
            let c = crate::sink::name::quote_ident(column);
            tx.execute(
                &format!("UPDATE {t} SET {c} = {c} + (-9223372036854775807 - 1) WHERE {c} >= 0"),
                &[],
            )
            .await
            .map_err(|e| SinkError::pg(format!("converting the version column of {table}"), e))?;
            converted.push(table.clone());
        }
        tx.commit()
            .await
            .map_err(|e| SinkError::pg("committing a version-encoding upgrade", e))?;
    }
    Ok(converted)
}

/// An id_map created by the application may differ in details; it must still have the three
/// columns with usable types and a unique key on (collection, legacy_object_id).
async fn check_id_map(client: &Client, names: &ControlNames) -> Result<(), SinkError> {
    let row = client
        .query_one(
            "SELECT
               (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = to_regclass($1) AND attname = 'new_id' AND NOT attisdropped),
               EXISTS (SELECT 1 FROM pg_index i
                 WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
                   AND i.indnkeyatts = 2
                   AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute a
                         WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))
                       = ARRAY['collection', 'legacy_object_id'])",
            &[&names.id_map],
        )
        .await
        .map_err(|e| SinkError::pg("checking the id_map table", e))?;
    let new_id_type: Option<String> = row.get(0);
    let unique: bool = row.get(1);
    if new_id_type.as_deref() != Some("uuid") || !unique {
        return Err(SinkError::UnsupportedColumn {
            table: names.id_map.clone(),
            column: "new_id".to_string(),
            reason: "id_map needs new_id uuid and a unique key on (collection, legacy_object_id)"
                .to_string(),
        });
    }
    Ok(())
}
