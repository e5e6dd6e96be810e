//! The `Health` state behind `/healthz` and `/readyz`, updated by the supervisor and the
//! housekeeping loops.
//!
//! Liveness is a watchdog: the probe loop (`housekeeping`) calls `touch_watchdog` on every turn;
//! if it has not done so for longer than the timeout, the process is considered deadlocked and
//! `/healthz` answers 503. Readiness needs both databases reachable (the periodic probes set
//! `set_postgres` / `set_mongo`) and every enabled stream either running or deliberately stopped
//! by an operator. Every reason and error text stored here is passed through
//! `config::redact_secrets` first, so a connection string never reaches an HTTP response. State
//! changes are mirrored into the `stream_state`, `postgres_up` and `mongo_up` metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{system_clock, Clock, Metrics};
use crate::config::redact_secrets;

/// How long the watchdog may go untouched before `/healthz` reports the process as stuck.
pub const DEFAULT_WATCHDOG_TIMEOUT: Duration = Duration::from_secs(60);

/// Values of the `state` label of `mongo2pg_stream_state`, in `StreamState` order.
pub const STREAM_STATE_LABELS: &[&str] = &[
    "starting",
    "running",
    "retrying",
    "stopped_by_operator",
    "failed",
    "standby",
];

/// What a stream is doing, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Opening the change stream or running its snapshot.
    Starting,
    /// Reading and applying events.
    Running,
    /// Backing off after a transient error; it will restart from its checkpoint.
    Retrying { reason: String },
    /// Stopped on purpose by an operator (e.g. paused for a token reset). Counts as ready.
    StoppedByOperator { reason: String },
    /// Stopped by a fatal error; the reason says what the operator must do.
    Failed { reason: String },
    /// Another replicator process holds this stream's lease; this one takes over if it goes away.
    Standby,
}

impl StreamState {
    /// The `state` label / JSON value.
    pub fn label(&self) -> &'static str {
        match self {
            StreamState::Starting => "starting",
            StreamState::Running => "running",
            StreamState::Retrying { .. } => "retrying",
            StreamState::StoppedByOperator { .. } => "stopped_by_operator",
            StreamState::Failed { .. } => "failed",
            StreamState::Standby => "standby",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            StreamState::Starting | StreamState::Running | StreamState::Standby => None,
            StreamState::Retrying { reason }
            | StreamState::StoppedByOperator { reason }
            | StreamState::Failed { reason } => Some(reason),
        }
    }

    /// Whether this state lets the process report ready.
    pub fn is_ready(&self) -> bool {
        matches!(
            self,
            StreamState::Running | StreamState::StoppedByOperator { .. } | StreamState::Standby
        )
    }

    fn redacted(self) -> StreamState {
        let clean = |reason: String| redact_secrets(&reason).into_owned();
        match self {
            StreamState::Starting => StreamState::Starting,
            StreamState::Running => StreamState::Running,
            StreamState::Standby => StreamState::Standby,
            StreamState::Retrying { reason } => StreamState::Retrying {
                reason: clean(reason),
            },
            StreamState::StoppedByOperator { reason } => StreamState::StoppedByOperator {
                reason: clean(reason),
            },
            StreamState::Failed { reason } => StreamState::Failed {
                reason: clean(reason),
            },
        }
    }
}

/// One database connection as last probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatabaseStatus {
    pub ok: bool,
    /// The last probe's error (redacted); None when it succeeded.
    pub error: Option<String>,
}

impl DatabaseStatus {
    fn not_probed() -> Self {
        DatabaseStatus {
            ok: false,
            error: Some("not probed yet".to_string()),
        }
    }

    fn from_probe(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => DatabaseStatus {
                ok: true,
                error: None,
            },
            Err(e) => DatabaseStatus {
                ok: false,
                error: Some(redact_secrets(&e).into_owned()),
            },
        }
    }
}

/// A stream's entry in the `/readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamStatus {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The `/readyz` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub postgres: DatabaseStatus,
    pub mongo: DatabaseStatus,
    pub streams: BTreeMap<String, StreamStatus>,
    /// Why the process is not ready, one line per cause; empty when ready.
    pub not_ready_because: Vec<String>,
}

/// The `/healthz` body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Liveness {
    pub alive: bool,
    pub watchdog_age_seconds: f64,
    pub watchdog_timeout_seconds: f64,
}

struct State {
    streams: BTreeMap<String, StreamState>,
    postgres: DatabaseStatus,
    mongo: DatabaseStatus,
    watchdog: SystemTime,
}

/// Health shared by the supervisor (writer) and the HTTP server (reader). Share as `Arc<Health>`.
pub struct Health {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
    clock: Clock,
    watchdog_timeout: Duration,
}

impl Health {
    /// Health with the system clock and `DEFAULT_WATCHDOG_TIMEOUT`; state changes are mirrored
    /// into `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Arc<Health> {
        Self::with_clock(metrics, system_clock(), DEFAULT_WATCHDOG_TIMEOUT)
    }

    /// Health with an injected clock and watchdog timeout (tests use a manual clock).
    pub fn with_clock(
        metrics: Arc<Metrics>,
        clock: Clock,
        watchdog_timeout: Duration,
    ) -> Arc<Health> {
        let now = clock();
        Arc::new(Health {
            state: Mutex::new(State {
                streams: BTreeMap::new(),
                postgres: DatabaseStatus::not_probed(),
                mongo: DatabaseStatus::not_probed(),
                watchdog: now,
            }),
            metrics,
            clock,
            watchdog_timeout,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a stream's state (registering the stream the first time). Every enabled stream
    /// should be registered with `Starting` before the server reports ready.
    pub fn set_stream(&self, collection: &str, state: StreamState) {
        let state = state.redacted();
        self.metrics.set_stream_state(collection, state.label());
        self.lock().streams.insert(collection.to_string(), state);
    }

    /// Drops a stream from readiness (e.g. removed from the mapping, or handed to another replica).
    pub fn remove_stream(&self, collection: &str) {
        self.lock().streams.remove(collection);
    }

    /// Result of the latest Postgres probe (`Err` carries the error text; it is redacted).
    pub fn set_postgres(&self, probe: Result<(), String>) {
        let status = DatabaseStatus::from_probe(probe);
        self.metrics.set_database_up(Some(status.ok), None);
        self.lock().postgres = status;
    }

    /// Result of the latest MongoDB probe (`Err` carries the error text; it is redacted).
    pub fn set_mongo(&self, probe: Result<(), String>) {
        let status = DatabaseStatus::from_probe(probe);
        self.metrics.set_database_up(None, Some(status.ok));
        self.lock().mongo = status;
    }

    /// Called by the probe loop on every turn to prove the process is not stuck.
    pub fn touch_watchdog(&self) {
        let now = (self.clock)();
        self.lock().watchdog = now;
    }

    pub fn liveness(&self) -> Liveness {
        let now = (self.clock)();
        let last = self.lock().watchdog;
        let age = now.duration_since(last).unwrap_or(Duration::ZERO);
        Liveness {
            alive: age <= self.watchdog_timeout,
            watchdog_age_seconds: age.as_secs_f64(),
            watchdog_timeout_seconds: self.watchdog_timeout.as_secs_f64(),
        }
    }

    pub fn readiness(&self) -> Readiness {
        let state = self.lock();
        let mut because = Vec::new();
        for (name, db) in [("postgres", &state.postgres), ("mongo", &state.mongo)] {
            if !db.ok {
                let error = db.error.as_deref().unwrap_or("unreachable");
                because.push(format!("{name}: {error}"));
            }
        }
        let mut streams = BTreeMap::new();
        for (collection, stream) in &state.streams {
            if !stream.is_ready() {
                let mut line = format!("stream {collection} is {}", stream.label());
                if let Some(reason) = stream.reason() {
                    line.push_str(": ");
                    line.push_str(reason);
                }
                because.push(line);
            }
            let status = StreamStatus {
                state: stream.label(),
                reason: stream.reason().map(str::to_string),
            };
            streams.insert(collection.clone(), status);
        }
        Readiness {
            ready: because.is_empty(),
            postgres: state.postgres.clone(),
            mongo: state.mongo.clone(),
            streams,
            not_ready_because: because,
        }
    }
}
