//! Cluster clock: hands out strictly increasing `Timestamp(seconds, increment)` values that track
//! the simulator's wall clock (seconds = max(last seconds, now), increment counts within the
//! second), and reads that wall clock for `wallTime` and hello's `localTime`. The simulator's wall
//! clock is the real clock shifted by a fixed offset, so a configured start time (e.g. past 2038)
//! advances with real time. It owns no other state; callers hold the simulator lock while ticking
//! so ticks and history order agree.

use bson::{DateTime, Timestamp};
use std::time::{SystemTime, UNIX_EPOCH};

fn real_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The simulator's wall clock: real time plus a fixed offset.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WallClock {
    offset_ms: i64,
}

impl WallClock {
    /// A wall clock that reads `start_secs` (unix seconds) now; `None` follows real time.
    pub(crate) fn starting_at(start_secs: Option<u64>) -> WallClock {
        let offset_ms = start_secs
            .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX) - real_millis())
            .unwrap_or(0);
        WallClock { offset_ms }
    }

    /// Milliseconds since the unix epoch.
    pub(crate) fn now_millis(&self) -> i64 {
        real_millis().saturating_add(self.offset_ms)
    }

    /// The current instant as a BSON date.
    pub(crate) fn now(&self) -> DateTime {
        DateTime::from_millis(self.now_millis())
    }

    /// Whole seconds since the unix epoch (cluster-time seconds are unsigned 32-bit).
    pub(crate) fn now_secs(&self) -> u32 {
        u32::try_from(self.now_millis().max(0) / 1000).unwrap_or(u32::MAX)
    }
}

/// The cluster time source.
#[derive(Debug, Default)]
pub(crate) struct ClusterClock {
    wall: WallClock,
    secs: u32,
    inc: u32,
}

impl ClusterClock {
    pub(crate) fn new(wall: WallClock) -> ClusterClock {
        ClusterClock {
            wall,
            secs: 0,
            inc: 0,
        }
    }

    /// The wall clock the cluster time follows.
    pub(crate) fn wall(&self) -> WallClock {
        self.wall
    }

    /// Returns a new cluster time strictly greater than every earlier one.
    pub(crate) fn tick(&mut self) -> Timestamp {
        let now = self.wall.now_secs();
        if now > self.secs {
            self.secs = now;
            self.inc = 1;
        } else if self.inc == u32::MAX {
            self.secs += 1;
            self.inc = 1;
        } else {
            self.inc += 1;
        }
        self.last()
    }

    /// The last time handed out by [`tick`](Self::tick).
    pub(crate) fn last(&self) -> Timestamp {
        Timestamp {
            time: self.secs,
            increment: self.inc,
        }
    }

    /// A time that is >= every earlier tick and < every later tick, following the wall clock:
    /// `(now, 0)` when the wall clock has moved past the last tick's second, else the last tick.
    pub(crate) fn peek_now(&self) -> Timestamp {
        let now = self.wall.now_secs();
        if now > self.secs {
            Timestamp {
                time: now,
                increment: 0,
            }
        } else {
            self.last()
        }
    }
}

/// Orders two timestamps by (seconds, increment).
pub(crate) fn ts_key(ts: Timestamp) -> u64 {
    (u64::from(ts.time) << 32) | u64::from(ts.increment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing_and_peek_sits_between() {
        let mut clock = ClusterClock::default();
        let a = clock.tick();
        let p = clock.peek_now();
        let b = clock.tick();
        assert!(ts_key(a) < ts_key(b));
        assert!(ts_key(a) <= ts_key(p) && ts_key(p) < ts_key(b));
    }

    #[test]
    fn a_start_time_past_2038_shifts_cluster_time_and_wall_time() {
        let start = 4_102_444_800u64;
        let mut clock = ClusterClock::new(WallClock::starting_at(Some(start)));
        let t = clock.tick();
        assert!(u64::from(t.time) >= start && u64::from(t.time) < start + 60);
        let wall = clock.wall().now_millis();
        assert!(wall >= (start as i64) * 1000 && wall < (start as i64 + 60) * 1000);
    }
}
