//! [`Collect`], the worker that keeps every message it saw, for tests that check what was
//! delivered and in which order.

use std::sync::{Arc, Mutex};

use pythia_core::{Message, Worker, WorkerError};

/// Every message a worker saw, in order; clones share what they saw.
#[derive(Clone, Default)]
pub struct Collect {
    /// The messages, in the order handled.
    pub seen: Arc<Mutex<Vec<Message>>>,
}

impl Collect {
    /// The bodies seen so far, as text (lossy).
    pub fn bodies(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|m| String::from_utf8_lossy(m.body()).into_owned())
            .collect()
    }
}

impl Worker for Collect {
    async fn process_message(&self, msg: &Message) -> Result<(), WorkerError> {
        self.seen.lock().unwrap().push(msg.clone());
        Ok(())
    }
}
