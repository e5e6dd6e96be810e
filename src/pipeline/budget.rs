//! The byte budget of the events queued between a stream's reader and its consumer: besides at
//! most `channel_capacity` items, the queued events may weigh at most `channel_bytes` of raw BSON
//! together, so the memory a backlog takes does not grow with the size of its documents.
//!
//! The reader reserves an event's raw size before it queues the event; the reservation travels
//! with the event and is released when the consumer takes it out of the channel (the batch being
//! assembled is bounded by `batch_max_events`, and a MongoDB transaction must be able to complete
//! whatever its size, so the budget never waits on the consumer's pending batch). An event larger
//! than the whole budget takes all of it: it is queued alone, never refused.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The budget shared by one reader and its consumer.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    permits: Arc<Semaphore>,
    total: u32,
}

/// Raw bytes reserved for one queued item; released when dropped.
#[derive(Debug)]
pub struct Reserved {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Reserved {
    /// Nothing reserved (heartbeats, failures).
    pub fn none() -> Self {
        Reserved { _permit: None }
    }
}

impl ByteBudget {
    /// A budget of `bytes` (at least 1, at most `u32::MAX`).
    pub fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        ByteBudget {
            permits: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// What an item of `bytes` raw bytes takes from the budget: its size, at most all of it.
    fn cost(&self, bytes: usize) -> u32 {
        u32::try_from(bytes).unwrap_or(u32::MAX).min(self.total)
    }

    /// Waits until `bytes` fit in what the queued items leave free, and reserves them.
    pub async fn reserve(&self, bytes: usize) -> Reserved {
        let cost = self.cost(bytes);
        if cost == 0 {
            return Reserved::none();
        }
        // The semaphore is never closed, so acquiring fails only if it were; then nothing is
        // reserved rather than the reader stopping.
        Reserved {
            _permit: self.permits.clone().acquire_many_owned(cost).await.ok(),
        }
    }

    /// Bytes not reserved by queued items.
    pub fn available(&self) -> usize {
        self.permits.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn reservations_wait_for_the_budget_and_free_it_when_dropped() {
        let budget = ByteBudget::new(1000);
        let a = budget.reserve(600).now_or_never().expect("fits");
        assert_eq!(budget.available(), 400);
        let b = budget.reserve(400).now_or_never().expect("fits exactly");
        assert_eq!(budget.available(), 0);
        // Full: the next event waits until a queued one is taken out.
        let mut waiting = Box::pin(budget.reserve(300));
        assert!((&mut waiting).now_or_never().is_none());
        drop(a);
        let c = waiting.now_or_never().expect("600 bytes were freed");
        assert_eq!(budget.available(), 300);
        drop((b, c));
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn an_event_larger_than_the_budget_is_queued_alone() {
        let budget = ByteBudget::new(1000);
        let small = budget.reserve(10).now_or_never().expect("fits");
        // 5000 bytes take the whole budget: they wait for the queue to empty, then go.
        let mut big = Box::pin(budget.reserve(5000));
        assert!((&mut big).now_or_never().is_none());
        drop(small);
        let big = big.now_or_never().expect("the queue is empty");
        assert_eq!(budget.available(), 0);
        drop(big);
        assert_eq!(budget.available(), 1000);
    }

    #[tokio::test]
    async fn heartbeats_and_empty_items_reserve_nothing() {
        let budget = ByteBudget::new(1);
        let _full = budget.reserve(1).now_or_never().expect("fits");
        assert!(budget.reserve(0).now_or_never().is_some());
        assert_eq!(ByteBudget::new(0).available(), 1);
    }
}
