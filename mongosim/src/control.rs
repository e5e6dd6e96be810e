//! Simulator controls shared by the in-process handle and the admin commands: truncate history,
//! resize the history window, drop every connection, step down / re-elect, pause / resume.

use crate::state::Shared;

/// Admin command names for the controls (each takes `1` as its value, except the window size).
pub mod names {
    /// `{mongosimTruncateHistory: 1}`: forget all history; resuming from any earlier point fails 286.
    pub const TRUNCATE_HISTORY: &str = "mongosimTruncateHistory";
    /// `{mongosimSetWindow: <n>}`: keep at most `n` history entries.
    pub const SET_WINDOW: &str = "mongosimSetWindow";
    /// `{mongosimDropConnections: 1}`: close every open connection (the caller's too).
    pub const DROP_CONNECTIONS: &str = "mongosimDropConnections";
    /// `{mongosimStepDown: 1}`: become a secondary; writes fail with 10107.
    pub const STEP_DOWN: &str = "mongosimStepDown";
    /// `{mongosimReelect: 1}`: become primary again with a higher electionId.
    pub const REELECT: &str = "mongosimReelect";
    /// `{mongosimPause: 1}`: stop answering every other request until resumed.
    pub const PAUSE: &str = "mongosimPause";
    /// `{mongosimResume: 1}`: answer requests again (served even while paused).
    pub const RESUME: &str = "mongosimResume";
}

impl Shared {
    pub(crate) fn truncate_history(&self) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        inner.history.truncate(&mut inner.clock);
        let last = inner.history.last_seq();
        self.notify(last);
    }

    pub(crate) fn set_window(&self, n: usize) {
        self.lock().history.set_window(n);
    }

    pub(crate) fn drop_connections(&self) {
        self.drop_gen.send_modify(|g| *g += 1);
    }

    pub(crate) fn step_down(&self) {
        self.lock().primary = false;
    }

    pub(crate) fn reelect(&self) {
        let mut inner = self.lock();
        inner.primary = true;
        inner.election += 1;
    }

    pub(crate) fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub(crate) fn resume(&self) {
        self.paused.send_replace(false);
    }
}
