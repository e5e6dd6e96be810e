//! Cluster clock: hands out strictly increasing `Timestamp(seconds, increment)` values that track the
//! wall clock (seconds = max(last seconds, unix now), increment counts within the second). It owns no
//! other state; callers hold the simulator lock while ticking so ticks and history order agree.

use bson::Timestamp;
use std::time::{SystemTime, UNIX_EPOCH};

/// Current unix time in whole seconds.
pub(crate) fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

/// The cluster time source.
#[derive(Debug, Default)]
pub(crate) struct ClusterClock {
    secs: u32,
    inc: u32,
}

impl ClusterClock {
    /// Returns a new cluster time strictly greater than every earlier one.
    pub(crate) fn tick(&mut self) -> Timestamp {
        let now = unix_now();
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
        let now = unix_now();
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
}
