//! The in-flight deliveries of a [`Driver`](super::Driver): a minimal slab indexed by a reusable
//! slot number.

use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::message::Message;

/// One delivery being handled.
pub(super) struct Slot<T> {
    pub(super) token: T,
    pub(super) message: Message,
    pub(super) started: Instant,
    pub(super) abort: Option<AbortHandle>,
}

/// A minimal slab: in-flight deliveries indexed by a reusable slot number.
pub(super) struct Slots<T> {
    entries: Vec<Option<Slot<T>>>,
    free: Vec<usize>,
    pub(super) len: usize,
}

impl<T> Slots<T> {
    pub(super) fn new() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    pub(super) fn insert(&mut self, slot: Slot<T>) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(slot);
                i
            }
            None => {
                self.entries.push(Some(slot));
                self.entries.len() - 1
            }
        }
    }

    pub(super) fn remove(&mut self, i: usize) -> Option<Slot<T>> {
        let slot = self.entries.get_mut(i)?.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(slot)
    }

    pub(super) fn drain(&mut self) -> impl Iterator<Item = Slot<T>> + '_ {
        self.len = 0;
        self.free.clear();
        self.entries.drain(..).flatten()
    }
}
