//! The bytes of publishes in flight, bounded. Each publish command can carry a payload up to `--max-message-size`
//! and the command channel holds many of them, so a flood of large publishes would otherwise hold
//! `channel depth × message size`. `NodeHandle::publish` first reserves the payload's bytes here, waiting while the
//! budget is spent; the reservation travels with the payload and is given back when the last reference to those
//! bytes is dropped (the event loop is done with the request), whether the caller is still waiting or not.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Byte permits shared by every handle of one node.
#[derive(Debug, Clone)]
pub(crate) struct PublishBudget {
    permits: Arc<Semaphore>,
    bytes: u32,
}

/// A payload holding its share of the budget.
struct Reserved {
    payload: Bytes,
    _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

impl PublishBudget {
    pub(crate) fn new(bytes: u32) -> Self {
        PublishBudget {
            permits: Arc::new(Semaphore::new(bytes as usize)),
            bytes,
        }
    }

    /// Waits until `payload` fits the budget and returns the same bytes, now carrying their reservation. A payload
    /// larger than the whole budget takes all of it (the loop then refuses it as too large).
    pub(crate) async fn reserve(&self, payload: Bytes) -> Bytes {
        let cost = u32::try_from(payload.len()).unwrap_or(u32::MAX).min(self.bytes);
        // With room, no await: the publish goes on at once, in the order the caller polled it (concurrent publishes
        // of one task keep their order; an await point here would let tokio's task budget reorder them).
        let permit = match self.permits.clone().try_acquire_many_owned(cost) {
            Ok(permit) => permit,
            // The semaphore is never closed, so acquiring only waits.
            Err(_) => match self.permits.clone().acquire_many_owned(cost).await {
                Ok(permit) => permit,
                Err(_) => return payload,
            },
        };
        Bytes::from_owner(Reserved {
            payload,
            _permit: permit,
        })
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[test]
    fn a_publish_waits_while_the_budget_is_spent_and_goes_on_when_bytes_are_released() {
        let budget = PublishBudget::new(10);
        let first = budget.reserve(Bytes::from(vec![1; 6])).now_or_never().unwrap();
        assert_eq!(&first[..], &[1; 6], "the same bytes");
        assert_eq!(budget.permits.available_permits(), 4);
        let mut second = Box::pin(budget.reserve(Bytes::from(vec![2; 6])));
        assert!((&mut second).now_or_never().is_none(), "6 bytes do not fit in 4");
        let copy = first.clone();
        drop(first);
        assert!((&mut second).now_or_never().is_none(), "a clone still holds the bytes");
        drop(copy);
        let second = second.now_or_never().expect("released bytes let it go on");
        assert_eq!(budget.permits.available_permits(), 4);
        drop(second);
        assert_eq!(budget.permits.available_permits(), 10);
    }

    #[test]
    fn a_payload_larger_than_the_budget_takes_all_of_it_rather_than_waiting_for_ever() {
        let budget = PublishBudget::new(10);
        let large = budget.reserve(Bytes::from(vec![0; 100])).now_or_never().unwrap();
        assert_eq!((large.len(), budget.permits.available_permits()), (100, 0));
        drop(large);
        let empty = budget.reserve(Bytes::new()).now_or_never().unwrap();
        assert_eq!((empty.len(), budget.permits.available_permits()), (0, 10));
    }
}
