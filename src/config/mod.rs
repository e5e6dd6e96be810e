//! Typed configuration: the one TOML mapping file (target tables, source database, stream,
//! snapshot and continuous-verification settings, per-collection mapping rules) with defaults as
//! consts and `validate()` that names the collection, the field and the broken rule. `compile` checks the mapping against the
//! live Postgres catalogue and produces the rules the pure mapping stage runs. Connection URLs
//! are not part of this file: they come from flags, the environment or secret files as `Secret`s
//! (`url_source`).

mod collection;
mod compile;
mod groups;
mod secret;
#[cfg(test)]
mod tests;
pub mod url_source;
mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use collection::{
    ChildConfig, ChildShape, CollectionConfig, ColumnConfig, DeletePolicy, JunctionConfig,
    MixedConfig, ReferenceConfig, SqlType,
};
pub use compile::CompiledMapping;
pub use groups::{without_stream_groups, GroupConfig, Members, StreamSpec};
pub use secret::{redact_error, redact_secrets, Secret, REDACTED};
pub use verify::{parse_duration, VerifyConfig};

/// Default schema of the replicator's private tables.
pub const DEFAULT_CONTROL_SCHEMA: &str = "mongo2pg";
/// Default id_map table: the application's backfill table, shared on purpose.
pub const DEFAULT_ID_MAP_TABLE: &str = "public.id_map";
/// Default gaps table: the application's dual-write gaps table.
pub const DEFAULT_GAPS_TABLE: &str = "public.pg_dualwrite_gaps";
/// Checkpoints table name inside the control schema, unless configured.
pub const DEFAULT_CHECKPOINTS_NAME: &str = "checkpoints";
/// Operator token-reset audit table name inside the control schema, unless configured.
pub const DEFAULT_AUDIT_NAME: &str = "token_resets";
pub const DEFAULT_BATCH_MAX_EVENTS: usize = 500;
pub const DEFAULT_BATCH_MAX_WAIT_MS: u64 = 200;
pub const DEFAULT_CHANNEL_CAPACITY: usize = 1024;
/// Default byte budget of the events queued between a stream's reader and its writer (their raw
/// BSON size): 1 MiB.
pub const DEFAULT_CHANNEL_BYTES: usize = 1024 * 1024;
/// Bounds of `stream.channel_bytes`: 64 KiB to 1 GiB.
pub const MIN_CHANNEL_BYTES: usize = 64 * 1024;
pub const MAX_CHANNEL_BYTES: usize = 1024 * 1024 * 1024;
pub const DEFAULT_MAX_AWAIT_MS: u64 = 1000;
pub const DEFAULT_HEARTBEAT_INTERVAL_MS: u64 = 5000;
pub const DEFAULT_SNAPSHOT_PAGE_SIZE: usize = 1000;
/// Default byte budget of one snapshot page (raw BSON size of its documents): 4 MiB.
pub const DEFAULT_SNAPSHOT_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Bounds of `snapshot.page_bytes`: 64 KiB to 1 GiB.
pub const MIN_SNAPSHOT_PAGE_BYTES: usize = 64 * 1024;
pub const MAX_SNAPSHOT_PAGE_BYTES: usize = 1024 * 1024 * 1024;
/// Default number of pages an initial copy writes at once, each on its own connection.
pub const DEFAULT_SNAPSHOT_WRITERS: usize = 2;
/// Upper bound of `snapshot.writers`.
pub const MAX_SNAPSHOT_WRITERS: usize = 16;
pub const DEFAULT_ID_COLUMN: &str = "id";
pub const DEFAULT_LEGACY_COLUMN: &str = "legacy_object_id";
/// Upper bound for batch and page sizes, to keep memory bounded whatever the configuration says.
pub const MAX_BATCH_EVENTS: usize = 100_000;

/// The whole mapping file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the replicator's own tables live.
    #[serde(default)]
    pub target: TargetConfig,
    /// The MongoDB side.
    pub source: SourceConfig,
    /// Change-stream and batching settings.
    #[serde(default)]
    pub stream: StreamConfig,
    /// Initial-copy settings.
    #[serde(default)]
    pub snapshot: SnapshotConfig,
    /// Continuous verification inside `run`; off when the section is absent.
    #[serde(default)]
    pub verify: Option<VerifyConfig>,
    /// Stream groups: `[streams.<name>] collections = [...]` or `"*"`; collections in no group
    /// have one stream each.
    #[serde(default)]
    pub streams: BTreeMap<String, GroupConfig>,
    /// Mapped collections, keyed by MongoDB collection name (as Mongoose names them).
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionConfig>,
}

/// Control tables: names may be `table` or `schema.table`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// Schema for replicator-private tables (checkpoints, audit) unless they are named explicitly.
    pub schema: String,
    /// `id_map(collection, legacy_object_id, new_id, created_at)`, shared with the backfill.
    pub id_map: String,
    /// The gaps table (`pg_dualwrite_gaps`).
    pub gaps: String,
    /// Checkpoints table; default `<schema>.checkpoints`.
    pub checkpoints: Option<String>,
    /// Token-reset audit table; default `<schema>.token_resets`.
    pub audit: Option<String>,
}

impl Default for TargetConfig {
    fn default() -> Self {
        TargetConfig {
            schema: DEFAULT_CONTROL_SCHEMA.to_string(),
            id_map: DEFAULT_ID_MAP_TABLE.to_string(),
            gaps: DEFAULT_GAPS_TABLE.to_string(),
            checkpoints: None,
            audit: None,
        }
    }
}

impl TargetConfig {
    /// The checkpoints table, qualified.
    pub fn checkpoints_table(&self) -> String {
        self.checkpoints
            .clone()
            .unwrap_or_else(|| format!("{}.{DEFAULT_CHECKPOINTS_NAME}", self.schema))
    }
    /// The token-reset audit table, qualified.
    pub fn audit_table(&self) -> String {
        self.audit
            .clone()
            .unwrap_or_else(|| format!("{}.{DEFAULT_AUDIT_NAME}", self.schema))
    }
}

/// The MongoDB side.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Database holding the mapped collections.
    pub database: String,
}

/// `fullDocument` option of the change stream for updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub enum FullDocument {
    /// Look the current document up for every update (works without pre/post images).
    #[default]
    UpdateLookup,
    /// Use the post-image when the collection records them, else none.
    WhenAvailable,
    /// Require post-images; the stream fails if one is missing.
    Required,
}

impl FullDocument {
    /// The server's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            FullDocument::UpdateLookup => "updateLookup",
            FullDocument::WhenAvailable => "whenAvailable",
            FullDocument::Required => "required",
        }
    }
}

/// Change-stream and batching settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// A batch is cut after this many events.
    pub batch_max_events: usize,
    /// ... or when its first event has waited this long (milliseconds).
    pub batch_max_wait_ms: u64,
    /// Capacity of the bounded channel between reader and sink, in events (backpressure).
    pub channel_capacity: usize,
    /// Byte budget of that channel: the raw BSON size of the events queued in it together
    /// (backpressure too; an event larger than the budget is queued alone).
    pub channel_bytes: usize,
    /// `fullDocument` for updates: `updateLookup`, `whenAvailable` or `required`.
    pub full_document: FullDocument,
    /// Ask for pre-images (`fullDocumentBeforeChange: whenAvailable`).
    pub pre_images: bool,
    /// `maxAwaitTimeMS` of the stream's getMore: how long the server waits for new events.
    pub max_await_ms: u64,
    /// How often an idle stream advances its checkpoint through the post-batch resume token.
    pub heartbeat_interval_ms: u64,
    /// Resolve the next batch's ids on a second Postgres connection while a batch is written
    /// (one more connection per stream); false: one batch at a time on one connection.
    pub resolve_ahead: bool,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            batch_max_events: DEFAULT_BATCH_MAX_EVENTS,
            batch_max_wait_ms: DEFAULT_BATCH_MAX_WAIT_MS,
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
            channel_bytes: DEFAULT_CHANNEL_BYTES,
            full_document: FullDocument::default(),
            pre_images: false,
            max_await_ms: DEFAULT_MAX_AWAIT_MS,
            heartbeat_interval_ms: DEFAULT_HEARTBEAT_INTERVAL_MS,
            resolve_ahead: true,
        }
    }
}

/// When the initial copy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SnapshotMode {
    /// Copy a collection once, when its stream has no checkpoint yet.
    #[default]
    Initial,
    /// Never copy; stream from the checkpoint, a start time or now.
    Never,
    /// Copy when there is no checkpoint and also when the stored token can no longer be resumed.
    WhenNeeded,
}

/// Initial-copy settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SnapshotConfig {
    /// `initial`, `never` or `when_needed`.
    pub mode: SnapshotMode,
    /// Documents per snapshot page (one batch each).
    pub page_size: usize,
    /// Byte budget of one page: a page ends at `page_size` documents or once its documents'
    /// raw BSON reaches this many bytes, whichever comes first (memory stays bounded whatever
    /// the page size).
    pub page_bytes: usize,
    /// Pages written at once, each on its own Postgres connection, committed in page order.
    pub writers: usize,
    /// Explicit copy order (parents before children); collections not listed follow in
    /// reference-dependency order.
    pub order: Option<Vec<String>>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: SnapshotMode::default(),
            page_size: DEFAULT_SNAPSHOT_PAGE_SIZE,
            page_bytes: DEFAULT_SNAPSHOT_PAGE_BYTES,
            writers: DEFAULT_SNAPSHOT_WRITERS,
            order: None,
        }
    }
}

/// One broken rule: where (collection, field) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The collection, or the section (`stream`, `snapshot`, `target`, `source`) for global settings.
    pub scope: String,
    /// The field, column or setting concerned.
    pub field: String,
    pub rule: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.scope, self.field, self.rule)
    }
}

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read mapping file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mapping file {path} is not valid TOML for mongo2pg")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("mapping configuration is invalid:\n{}", list(.0))]
    Invalid(Vec<Problem>),
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads, parses and validates a mapping file.
    pub fn from_path(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&text, path)
    }

    /// Parses and validates mapping TOML; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every rule that needs no database; reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let mut report = |scope: &str, field: &str, rule: String| {
            problems.push(Problem {
                scope: scope.to_string(),
                field: field.to_string(),
                rule,
            })
        };
        if self.source.database.trim().is_empty() {
            report(
                "source",
                "database",
                "must name the MongoDB database".into(),
            );
        }
        if let Some(verify) = &self.verify {
            for (field, rule) in verify.problems() {
                report("verify", field, rule);
            }
        }
        if !crate::sink::name::is_identifier(&self.target.schema) {
            report(
                "target",
                "schema",
                format!("{:?} is not a plain SQL identifier", self.target.schema),
            );
        }
        let control = [
            ("id_map", self.target.id_map.clone()),
            ("gaps", self.target.gaps.clone()),
            ("checkpoints", self.target.checkpoints_table()),
            ("audit", self.target.audit_table()),
        ];
        for (field, table) in control {
            if !collection::is_table_name(&table) {
                report(
                    "target",
                    field,
                    format!("{table:?} is not `table` or `schema.table`"),
                );
            }
        }
        let s = &self.stream;
        for (field, value) in [
            ("batch_max_events", s.batch_max_events),
            ("channel_capacity", s.channel_capacity),
        ] {
            if value == 0 || value > MAX_BATCH_EVENTS {
                report(
                    "stream",
                    field,
                    format!("must be between 1 and {MAX_BATCH_EVENTS}, got {value}"),
                );
            }
        }
        if !(MIN_CHANNEL_BYTES..=MAX_CHANNEL_BYTES).contains(&s.channel_bytes) {
            report(
                "stream",
                "channel_bytes",
                format!(
                    "must be between {MIN_CHANNEL_BYTES} and {MAX_CHANNEL_BYTES} bytes, got {}",
                    s.channel_bytes
                ),
            );
        }
        for (field, value) in [
            ("batch_max_wait_ms", s.batch_max_wait_ms),
            ("max_await_ms", s.max_await_ms),
            ("heartbeat_interval_ms", s.heartbeat_interval_ms),
        ] {
            if value == 0 {
                report("stream", field, "must be at least 1 millisecond".into());
            }
        }
        if self.snapshot.page_size == 0 || self.snapshot.page_size > MAX_BATCH_EVENTS {
            report(
                "snapshot",
                "page_size",
                format!("must be between 1 and {MAX_BATCH_EVENTS}"),
            );
        }
        let bytes = self.snapshot.page_bytes;
        if !(MIN_SNAPSHOT_PAGE_BYTES..=MAX_SNAPSHOT_PAGE_BYTES).contains(&bytes) {
            report(
                "snapshot",
                "page_bytes",
                format!(
                    "must be between {MIN_SNAPSHOT_PAGE_BYTES} and {MAX_SNAPSHOT_PAGE_BYTES} bytes, got {bytes}"
                ),
            );
        }
        let writers = self.snapshot.writers;
        if !(1..=MAX_SNAPSHOT_WRITERS).contains(&writers) {
            report(
                "snapshot",
                "writers",
                format!("must be between 1 and {MAX_SNAPSHOT_WRITERS}, got {writers}"),
            );
        }
        if let Some(order) = &self.snapshot.order {
            let mut seen = std::collections::BTreeSet::new();
            for name in order {
                if !self.collections.contains_key(name) {
                    report(
                        "snapshot",
                        "order",
                        format!("{name:?} is not a mapped collection"),
                    );
                }
                if !seen.insert(name) {
                    report("snapshot", "order", format!("{name:?} is listed twice"));
                }
            }
        }
        if self.collections.is_empty() {
            report(
                "collections",
                "-",
                "at least one collection must be mapped".into(),
            );
        }
        for (name, coll) in &self.collections {
            coll.validate(name, &mut problems);
        }
        self.validate_groups(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every table the mapping writes (parents, child and junction tables), each once: the tables
    /// to load from the catalogue before `compile`.
    pub fn mapped_tables(&self) -> Vec<String> {
        let mut tables: Vec<String> = Vec::new();
        for coll in self.collections.values() {
            for table in coll.tables() {
                if !tables.contains(&table) {
                    tables.push(table);
                }
            }
        }
        tables
    }

    /// (table, version column) of every mapped collection that has a version column.
    pub fn version_columns(&self) -> Vec<(String, String)> {
        self.collections
            .values()
            .filter_map(|c| Some((c.table.clone(), c.version_column.clone()?)))
            .collect()
    }

    /// Collections in copy order: the explicit `snapshot.order` first, then the rest with every
    /// referenced collection before the collections referring to it (cycles broken by name order).
    pub fn snapshot_order(&self) -> Vec<String> {
        let mut order: Vec<String> = self.snapshot.order.clone().unwrap_or_default();
        let mut remaining: Vec<&String> = self
            .collections
            .keys()
            .filter(|k| !order.contains(k))
            .collect();
        while !remaining.is_empty() {
            let ready = remaining.iter().position(|name| {
                self.collections[*name]
                    .referenced_collections()
                    .iter()
                    .all(|dep| {
                        dep == *name || order.contains(dep) || !self.collections.contains_key(dep)
                    })
            });
            let next = remaining.remove(ready.unwrap_or(0));
            order.push(next.clone());
        }
        order
    }
}
