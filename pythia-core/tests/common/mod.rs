//! The fault-injecting broker of the runtime's error-path tests (`driver_faults.rs`,
//! `broker_failures.rs`): a [`MemoryBroker`] whose fetch, settle, release and maintenance fail
//! as a test says (a scripted answer per call, or one kind for every call), whose settles can
//! hang or be slow and whose maintenance can block its thread, recording its calls.

#![allow(dead_code)] // each test binary uses its own part of it

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pythia_core::{
    Broker, BrokerError, BrokerErrorKind, Delivery, DeliveryGuarantee, MemoryBroker, Message,
    Settlement, Source,
};
use tokio::time::Instant;

/// How one operation fails: each call takes the next scripted answer (fail with this kind, or
/// pass through); once the script is empty, every call fails with `always`, if set.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) script: VecDeque<Option<BrokerErrorKind>>,
    pub(crate) always: Option<BrokerErrorKind>,
}

pub(crate) type SharedFaults = Arc<Mutex<Faults>>;

/// Calls of one operation as recorded: what each was given and whether it failed.
pub(crate) type Calls<T> = Arc<Mutex<Vec<(T, bool)>>>;

#[derive(Clone)]
pub(crate) struct FaultBroker {
    pub(crate) inner: MemoryBroker,
    pub(crate) fetch_faults: SharedFaults,
    pub(crate) settle_faults: SharedFaults,
    pub(crate) release_faults: SharedFaults,
    pub(crate) maintain_faults: SharedFaults,
    /// Settles never answer (a Redis that accepts connections and never replies).
    pub(crate) settle_hangs: Arc<AtomicBool>,
    /// Each settle takes this long (a slow Redis that still answers).
    pub(crate) settle_delay: Arc<Mutex<Duration>>,
    /// The largest batch a settle was given.
    pub(crate) largest_settle: Arc<AtomicUsize>,
    /// Each maintenance pass blocks its thread this long (a heartbeat on its way), with no
    /// await to cancel at.
    pub(crate) maintain_blocks: Arc<Mutex<Duration>>,
    maintenance_interval: Option<Duration>,
    /// When each fetch was called, and whether it failed.
    pub(crate) fetches: Calls<Instant>,
    /// The message ids of each settle call, and whether it failed.
    pub(crate) settles: Calls<Vec<String>>,
    /// The size of each release.
    pub(crate) releases: Arc<Mutex<Vec<usize>>>,
    pub(crate) maintains: Arc<AtomicUsize>,
    /// Finished maintenance passes and the close, in order.
    pub(crate) events: Arc<Mutex<Vec<&'static str>>>,
}

impl FaultBroker {
    /// `n` messages with ids `m0`, `m1`, …; nothing fails; no maintenance.
    pub(crate) fn with_messages(n: usize) -> Self {
        let inner = MemoryBroker::new("faulty");
        inner.push_many((0..n).map(|i| Message::new(format!("{i}")).with_id(format!("m{i}"))));
        Self {
            inner,
            fetch_faults: Arc::default(),
            settle_faults: Arc::default(),
            release_faults: Arc::default(),
            maintain_faults: Arc::default(),
            settle_hangs: Arc::default(),
            settle_delay: Arc::default(),
            largest_settle: Arc::default(),
            maintain_blocks: Arc::default(),
            maintenance_interval: None,
            fetches: Arc::default(),
            settles: Arc::default(),
            releases: Arc::default(),
            maintains: Arc::default(),
            events: Arc::default(),
        }
    }

    /// Maintenance every `every`.
    pub(crate) fn with_maintenance_interval(mut self, every: Duration) -> Self {
        self.maintenance_interval = Some(every);
        self
    }

    /// Every settle fails with `kind` (until `always` is cleared).
    pub(crate) fn failing_settles(self, kind: BrokerErrorKind) -> Self {
        self.settle_faults.lock().unwrap().always = Some(kind);
        self
    }

    /// Every maintenance pass fails with `kind`.
    pub(crate) fn failing_maintenance(self, kind: BrokerErrorKind) -> Self {
        self.maintain_faults.lock().unwrap().always = Some(kind);
        self
    }

    /// Appends answers to an operation's script.
    pub(crate) fn script(
        faults: &SharedFaults,
        answers: impl IntoIterator<Item = Option<BrokerErrorKind>>,
    ) {
        faults.lock().unwrap().script.extend(answers);
    }

    fn next(faults: &SharedFaults) -> Option<BrokerErrorKind> {
        let mut f = faults.lock().unwrap();
        match f.script.pop_front() {
            Some(answer) => answer,
            None => f.always,
        }
    }
}

impl Broker for FaultBroker {
    type Token = u64;

    fn guarantee(&self) -> DeliveryGuarantee {
        DeliveryGuarantee::AtLeastOnce
    }

    fn source(&self) -> &Source {
        self.inner.source()
    }

    async fn fetch(&self, max: usize) -> Result<Vec<Delivery<u64>>, BrokerError> {
        let fault = Self::next(&self.fetch_faults);
        self.fetches
            .lock()
            .unwrap()
            .push((Instant::now(), fault.is_some()));
        match fault {
            Some(kind) => Err(BrokerError::new(kind, "injected fetch failure")),
            None => self.inner.fetch(max).await,
        }
    }

    async fn settle(&self, batch: &[Settlement<u64>]) -> Result<(), BrokerError> {
        self.largest_settle.fetch_max(batch.len(), Ordering::SeqCst);
        let delay = *self.settle_delay.lock().unwrap();
        tokio::time::sleep(delay).await;
        if self.settle_hangs.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        let fault = Self::next(&self.settle_faults);
        let ids = batch.iter().map(|s| s.message.id().to_owned()).collect();
        self.settles.lock().unwrap().push((ids, fault.is_some()));
        match fault {
            Some(kind) => Err(BrokerError::new(kind, "injected settle failure")),
            None => self.inner.settle(batch).await,
        }
    }

    async fn release(&self, batch: Vec<Delivery<u64>>) -> Result<(), BrokerError> {
        self.releases.lock().unwrap().push(batch.len());
        match Self::next(&self.release_faults) {
            Some(kind) => Err(BrokerError::new(kind, "injected release failure")),
            None => self.inner.release(batch).await,
        }
    }

    async fn is_drained(&self) -> Result<bool, BrokerError> {
        self.inner.is_drained().await
    }

    async fn maintain(&self) -> Result<(), BrokerError> {
        self.maintains.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(*self.maintain_blocks.lock().unwrap());
        match Self::next(&self.maintain_faults) {
            Some(kind) => Err(BrokerError::new(kind, "injected maintenance failure")),
            None => {
                self.events.lock().unwrap().push("heartbeat");
                Ok(())
            }
        }
    }

    fn maintenance_interval(&self) -> Option<Duration> {
        self.maintenance_interval
    }

    async fn close(&self) -> Result<(), BrokerError> {
        self.events.lock().unwrap().push("close");
        Ok(())
    }
}
