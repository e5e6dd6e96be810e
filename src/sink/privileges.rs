//! What the connected Postgres role may do, checked before a process starts working: every table
//! it will touch (mapped tables with their child and junction tables, the control tables) with
//! the privileges its statements need, `USAGE` on their schemas, and `USAGE` on the sequences
//! behind `serial` columns it inserts into. `requirements` says what each kind of process needs
//! (`Access`); `missing` asks the catalogue (`has_table_privilege`, `has_column_privilege` for
//! the one column-level grant, `has_schema_privilege`, `has_sequence_privilege`) and returns every gap at once, so one line can name them all. It
//! reads only the system catalogues and changes nothing.

use std::collections::BTreeSet;
use std::fmt;

use crate::sink::error::SinkError;
use crate::sink::migrate::ControlNames;
use crate::sink::name::QualifiedName;

/// What a process is about to do; each needs a different set of privileges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `run`, `snapshot`, `gaps retry`: write mapped rows, id_map, gaps and checkpoints.
    Replicate,
    /// `tokens reset`: move checkpoints, record the audit and the skipped window's gap.
    ResetTokens,
    /// `tokens show`.
    ReadTokens,
    /// `gaps list` / `gaps show`.
    ReadGaps,
    /// `gaps resolve` / `gaps ignore`.
    CloseGaps,
    /// `verify`: read the mapped tables and id_map.
    Verify,
    /// Continuous verification inside `run` (`[verify]`): store rounds and mismatches.
    ContinuousVerify,
    /// `verify --last`: read the stored rounds and mismatches.
    ReadVerifyResults,
}

/// One privilege on one table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Requirement {
    /// As configured: `table` (search path) or `schema.table`.
    pub table: String,
    /// `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub privilege: &'static str,
}

/// Something the role cannot do (or a table that is not there).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Missing {
    Table { table: String },
    SchemaUsage { schema: String },
    Privilege { table: String, privilege: String },
    SequenceUsage { sequence: String },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Table { table } => write!(f, "table {table} does not exist"),
            Missing::SchemaUsage { schema } => write!(f, "USAGE on schema {schema}"),
            Missing::Privilege { table, privilege } => write!(f, "{privilege} on {table}"),
            Missing::SequenceUsage { sequence } => write!(f, "USAGE on sequence {sequence}"),
        }
    }
}

/// Everything the role lacks, as one line for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the Postgres role {role} lacks privileges: {} (grant them as in deploy/postgres/grants.sql; missing tables: run `mongo2pg migrate`)",
    list(.missing)
)]
pub struct MissingPrivileges {
    pub role: String,
    pub missing: Vec<Missing>,
}

fn list(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

const ALL: [&str; 4] = ["SELECT", "INSERT", "UPDATE", "DELETE"];

/// The privileges `accesses` need over `mapped_tables` (every table of the mapping, child and
/// junction tables included) and the control tables `names`.
pub fn requirements(
    accesses: &[Access],
    names: &ControlNames,
    mapped_tables: &[String],
) -> Vec<Requirement> {
    let mut out = BTreeSet::new();
    for access in accesses {
        add_requirements(*access, names, mapped_tables, &mut out);
    }
    out.into_iter().collect()
}

fn add_requirements(
    access: Access,
    names: &ControlNames,
    mapped_tables: &[String],
    out: &mut BTreeSet<Requirement>,
) {
    let mut add = |table: &str, privileges: &[&'static str]| {
        for privilege in privileges {
            out.insert(Requirement {
                table: table.to_string(),
                privilege,
            });
        }
    };
    match access {
        Access::Replicate => {
            for table in mapped_tables {
                add(table, &ALL);
            }
            // An entry allocated by a reference is claimed by its document's type later.
            add(&names.id_map, &["SELECT", "INSERT", "UPDATE (legacy_type)"]);
            add(&names.gaps, &["SELECT", "INSERT", "UPDATE"]);
            add(&names.checkpoints, &["SELECT", "INSERT", "UPDATE"]);
            // Deletes leave tombstones; old ones are removed.
            add(&names.tombstones(), &ALL);
            // Start records the mapped tables whose version column uses the current encoding.
            add(&names.version_encoding(), &["SELECT", "INSERT"]);
        }
        Access::ResetTokens => {
            add(&names.checkpoints, &["SELECT", "INSERT", "UPDATE"]);
            add(&names.audit, &["SELECT", "INSERT"]);
            add(&names.gaps, &["SELECT", "INSERT", "UPDATE"]);
        }
        Access::ReadTokens => add(&names.checkpoints, &["SELECT"]),
        Access::ReadGaps => add(&names.gaps, &["SELECT"]),
        Access::CloseGaps => add(&names.gaps, &["SELECT", "UPDATE"]),
        Access::Verify => {
            for table in mapped_tables {
                add(table, &["SELECT"]);
            }
            add(&names.id_map, &["SELECT"]);
        }
        Access::ContinuousVerify => {
            add(&names.verify_rounds(), &["SELECT", "INSERT", "UPDATE"]);
            add(&names.verify_mismatches(), &["SELECT", "INSERT", "DELETE"]);
        }
        Access::ReadVerifyResults => {
            add(&names.verify_rounds(), &["SELECT"]);
            add(&names.verify_mismatches(), &["SELECT"]);
        }
    }
}

/// One row per requirement: (schema, table, privilege); a bare table name has no schema and is
/// resolved through the search path.
const CHECK_SQL: &str = r#"
WITH wanted AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS w(schema_name, table_name, privilege)
), resolved AS (
    SELECT w.*,
           CASE WHEN w.schema_name = '' THEN to_regclass(quote_ident(w.table_name))::oid
                ELSE (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                      WHERE n.nspname = w.schema_name AND c.relname = w.table_name)
           END AS rel
    FROM wanted w
)
SELECT r.schema_name, r.table_name, r.privilege, r.rel IS NOT NULL,
       n.nspname::text,
       COALESCE(has_schema_privilege(n.oid, 'USAGE'), false),
       COALESCE(CASE WHEN r.privilege LIKE '% (%)'
                     THEN has_column_privilege(r.rel, substring(r.privilege from '\((.*)\)'),
                                               split_part(r.privilege, ' ', 1))
                     ELSE has_table_privilege(r.rel, r.privilege) END, false),
       COALESCE((SELECT array_agg(sn.nspname || '.' || s.relname ORDER BY s.relname)
                 FROM pg_depend d
                 JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                 JOIN pg_namespace sn ON sn.oid = s.relnamespace
                 WHERE d.classid = 'pg_class'::regclass AND d.refobjid = r.rel
                   AND d.deptype = 'a' AND r.privilege = 'INSERT'
                   AND CASE WHEN s.relkind = 'S' THEN NOT has_sequence_privilege(s.oid, 'USAGE')
                            ELSE false END), ARRAY[]::text[])
FROM resolved r
LEFT JOIN pg_class c ON c.oid = r.rel
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
"#;

/// Everything in `required` the connected role lacks, sorted (empty when it may do it all).
pub async fn missing(
    client: &tokio_postgres::Client,
    required: &[Requirement],
) -> Result<Vec<Missing>, SinkError> {
    let mut schemas = Vec::new();
    let mut tables = Vec::new();
    let mut privileges = Vec::new();
    for r in required {
        let name = QualifiedName::parse(&r.table)?;
        schemas.push(name.schema.unwrap_or_default());
        tables.push(name.table);
        privileges.push(r.privilege.to_string());
    }
    let rows = client
        .query(CHECK_SQL, &[&schemas, &tables, &privileges])
        .await
        .map_err(|e| SinkError::pg("checking the role's privileges", e))?;
    let mut found = BTreeSet::new();
    for row in &rows {
        let exists: bool = row.get(3);
        if !exists {
            let (schema, table): (String, String) = (row.get(0), row.get(1));
            found.insert(Missing::Table {
                table: if schema.is_empty() {
                    table
                } else {
                    format!("{schema}.{table}")
                },
            });
            continue;
        }
        let schema: Option<String> = row.get(4);
        let schema = schema.unwrap_or_default();
        if !row.get::<_, bool>(5) {
            found.insert(Missing::SchemaUsage {
                schema: schema.clone(),
            });
        }
        if !row.get::<_, bool>(6) {
            found.insert(Missing::Privilege {
                table: format!("{schema}.{}", row.get::<_, String>(1)),
                privilege: row.get(2),
            });
        }
        for sequence in row.get::<_, Vec<String>>(7) {
            found.insert(Missing::SequenceUsage { sequence });
        }
    }
    Ok(found.into_iter().collect())
}

/// Fails with every missing privilege of the connected role for `accesses`.
pub async fn check(
    client: &tokio_postgres::Client,
    accesses: &[Access],
    names: &ControlNames,
    mapped_tables: &[String],
) -> Result<(), CheckError> {
    let required = requirements(accesses, names, mapped_tables);
    let missing = missing(client, &required).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let role = client
        .query_one("SELECT current_user::text", &[])
        .await
        .map_err(|e| SinkError::pg("reading the current role", e))?
        .get(0);
    Err(CheckError::Missing(MissingPrivileges { role, missing }))
}

/// Why the privilege check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Missing(#[from] MissingPrivileges),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_needs_every_mapped_table_and_the_control_tables_it_writes() {
        let names = ControlNames::default();
        let required = requirements(
            &[Access::Replicate],
            &names,
            &["users".to_string(), "public.user_passkeys".to_string()],
        );
        let has = |table: &str, privilege: &str| {
            required
                .iter()
                .any(|r| r.table == table && r.privilege == privilege)
        };
        for table in ["users", "public.user_passkeys"] {
            for privilege in ALL {
                assert!(has(table, privilege), "{privilege} on {table}");
            }
        }
        assert!(has("public.id_map", "INSERT"));
        assert!(
            !has("public.id_map", "UPDATE"),
            "only legacy_type is ever updated"
        );
        assert!(has("public.id_map", "UPDATE (legacy_type)"));
        assert!(has("mongo2pg.checkpoints", "UPDATE"));
        assert!(!has("mongo2pg.token_resets", "INSERT"), "run never audits");
        let verify = requirements(&[Access::Verify], &names, &["users".to_string()]);
        assert!(verify.iter().all(|r| r.privilege == "SELECT"));
    }

    #[test]
    fn the_message_names_every_missing_table_and_privilege() {
        let e = MissingPrivileges {
            role: "m2p".into(),
            missing: vec![
                Missing::SchemaUsage {
                    schema: "mongo2pg".into(),
                },
                Missing::Privilege {
                    table: "public.pg_dualwrite_gaps".into(),
                    privilege: "INSERT".into(),
                },
            ],
        };
        assert_eq!(
            e.to_string(),
            "the Postgres role m2p lacks privileges: USAGE on schema mongo2pg, INSERT on public.pg_dualwrite_gaps (grant them as in deploy/postgres/grants.sql; missing tables: run `mongo2pg migrate`)"
        );
    }
}
