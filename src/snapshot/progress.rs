//! Snapshot progress as the operator sees it: an indicatif bar when stderr is a terminal,
//! structured `tracing` lines otherwise (at most one every few seconds, plus the final one).
//! Callers that want the numbers (metrics, tests) get every update through the callback.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How far one collection's copy has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct SnapshotProgress {
    /// Documents copied by this run (a resumed copy does not count earlier runs).
    pub copied: u64,
    /// Documents still to copy, as counted when this run started (an estimate: the collection
    /// keeps changing while it is copied).
    pub remaining: u64,
    /// Pages applied by this run.
    pub pages: u64,
    /// Documents of the page this update reports (0 for the final update): what a counter such
    /// as `Metrics::snapshot_copied` adds.
    pub page_documents: u64,
    /// True for the last update of a finished copy.
    pub done: bool,
}

impl SnapshotProgress {
    /// Nothing copied yet, `remaining` documents to go.
    pub fn starting(remaining: u64) -> Self {
        SnapshotProgress {
            remaining,
            ..SnapshotProgress::default()
        }
    }

    /// Marks the final update of a finished copy.
    pub fn finish(&mut self) {
        self.done = true;
        self.page_documents = 0;
    }
}

/// Minimum interval between two log lines when there is no terminal.
pub const LOG_INTERVAL: Duration = Duration::from_secs(5);

/// Renders progress for one collection.
pub struct ProgressReporter {
    collection: String,
    bar: Option<ProgressBar>,
    last_log: Option<Instant>,
}

impl ProgressReporter {
    /// A bar on a terminal, log lines otherwise. `total` is the estimate of documents to copy.
    pub fn new(collection: &str, total: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{prefix:>20} [{bar:40}] {pos}/{len} docs {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(collection.to_string());
            bar
        });
        ProgressReporter {
            collection: collection.to_string(),
            bar,
            last_log: None,
        }
    }

    /// A reporter that never draws a bar (for tests and the replicator).
    pub fn logging_only(collection: &str) -> Self {
        ProgressReporter {
            collection: collection.to_string(),
            bar: None,
            last_log: None,
        }
    }

    pub fn update(&mut self, p: &SnapshotProgress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.copied);
            if p.done {
                bar.finish();
            }
            return;
        }
        let due = self.last_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL);
        if due || p.done {
            self.last_log = Some(Instant::now());
            tracing::info!(
                collection = %self.collection,
                copied = p.copied,
                remaining = p.remaining.saturating_sub(p.copied),
                pages = p.pages,
                done = p.done,
                "snapshot progress"
            );
        }
    }
}
