//! Whether a collection must be copied before it streams, decided from its stored checkpoint
//! and the snapshot mode, without I/O. (What a lost history leads to is the failure policy's:
//! `policy::history_lost_action`.)

use crate::config::SnapshotMode;
use crate::sink::{Checkpoint, SnapshotState};

/// Where a stream stands before it opens, derived from its checkpoint row (`stage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamStage {
    /// No checkpoint row at all: the stream never ran.
    NoCheckpoint,
    /// A copy started and has not finished (it resumes after its last `_id`).
    InProgress,
    /// The stream has a position (a copy finished, or it never needed one).
    Streaming,
}

/// The stage of a stream with this stored checkpoint (None: no row).
pub fn stage(stored: Option<&Checkpoint>) -> StreamStage {
    match stored {
        None => StreamStage::NoCheckpoint,
        Some(c) => match c.snapshot_state {
            Some(SnapshotState::Running | SnapshotState::Pending) => StreamStage::InProgress,
            _ if c.has_position() => StreamStage::Streaming,
            _ => StreamStage::NoCheckpoint,
        },
    }
}

/// True when the collection must be (re-)copied before streaming. A copy in progress or asked for
/// by `tokens reset --resnapshot` always runs, whatever the mode (in `never` mode only an operator
/// starts one); a stream without any checkpoint is copied unless the mode is `never`.
pub fn needs_snapshot(mode: SnapshotMode, state: &StreamStage) -> bool {
    match state {
        StreamStage::InProgress => true,
        StreamStage::NoCheckpoint => mode != SnapshotMode::Never,
        StreamStage::Streaming => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_and_when_needed_copy_only_without_a_finished_position() {
        for mode in [SnapshotMode::Initial, SnapshotMode::WhenNeeded] {
            assert!(needs_snapshot(mode, &StreamStage::NoCheckpoint));
            assert!(needs_snapshot(mode, &StreamStage::InProgress));
            assert!(!needs_snapshot(mode, &StreamStage::Streaming));
        }
        assert!(!needs_snapshot(
            SnapshotMode::Never,
            &StreamStage::NoCheckpoint
        ));
    }

    #[test]
    fn stage_follows_the_stored_columns() {
        let mut c = Checkpoint {
            stream: "users".into(),
            resume_token: None,
            cluster_time: None,
            epoch: 0,
            holder: None,
            updated_at: chrono::DateTime::UNIX_EPOCH,
            snapshot_state: None,
            snapshot_collection: None,
            snapshot_last_id: None,
            snapshot_start_token: None,
            snapshot_start_time: None,
        };
        assert_eq!(stage(None), StreamStage::NoCheckpoint);
        assert_eq!(stage(Some(&c)), StreamStage::NoCheckpoint);
        c.snapshot_state = Some(SnapshotState::Running);
        assert_eq!(stage(Some(&c)), StreamStage::InProgress);
        c.snapshot_state = Some(SnapshotState::Done);
        c.cluster_time = Some(crate::event::ClusterTime::new(5, 1));
        assert_eq!(stage(Some(&c)), StreamStage::Streaming);
        c.snapshot_state = Some(SnapshotState::Pending);
        assert_eq!(stage(Some(&c)), StreamStage::InProgress);
    }
}
