//! The bounded in-process buffer between the subscription and the runtime: received messages,
//! in-process retries due later, the overflow policy and the counters.

use super::*;

/// A received message with its arrival time, decoded when fetched (so a message the overflow
/// policy drops is never parsed), or a message back for a retry.
pub(super) enum Buffered {
    Raw(Bytes, Source, Instant),
    Decoded(Message),
}

impl Buffered {
    pub(super) fn into_message(self) -> Message {
        match self {
            Self::Raw(payload, source, _) => envelope::decode(payload, &source),
            Self::Decoded(msg) => msg,
        }
    }

    /// How long it has waited: since it was received, or since it was first published (from
    /// the envelope) for a retry.
    pub(super) fn waited(&self, now: Instant) -> Option<Duration> {
        match self {
            Self::Raw(_, _, at) => Some(now.saturating_duration_since(*at)),
            Self::Decoded(msg) => msg.age(),
        }
    }
}

/// An in-process retry, ordered by due time, then by scheduling order.
pub(super) struct DueRetry {
    pub(super) due: Instant,
    pub(super) seq: u64,
    pub(super) message: Message,
}

impl PartialEq for DueRetry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for DueRetry {}
impl PartialOrd for DueRetry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for DueRetry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// What the buffer did to make room for one arrival.
pub(super) enum Room {
    /// There was room.
    Free,
    /// The oldest buffered message was dropped to make room.
    Evicted,
    /// No room: the arrival is dropped.
    Full,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) buffer: VecDeque<Buffered>,
    pub(super) retries: BinaryHeap<Reverse<DueRetry>>,
    pub(super) next_seq: u64,
    pub(super) peak_held: usize,
    pub(super) down_since: Option<Instant>,
}

impl State {
    pub(super) fn held(&self) -> usize {
        self.buffer.len() + self.retries.len()
    }

    pub(super) fn make_room(&mut self, capacity: usize, overflow: Overflow) -> Room {
        if self.held() < capacity {
            Room::Free
        } else if overflow == Overflow::DropOldest && self.buffer.pop_front().is_some() {
            Room::Evicted
        } else {
            Room::Full
        }
    }

    pub(super) fn note_peak(&mut self) {
        self.peak_held = self.peak_held.max(self.held());
    }

    /// Moves due retries to the front of the buffer, earliest first.
    pub(super) fn promote_due(&mut self, now: Instant) {
        let mut due = Vec::new();
        while self.retries.peek().is_some_and(|r| r.0.due <= now) {
            due.push(self.retries.pop().expect("peeked").0.message);
        }
        for msg in due.into_iter().rev() {
            self.buffer.push_front(Buffered::Decoded(msg));
        }
    }

    pub(super) fn next_due(&self) -> Option<Instant> {
        self.retries.peek().map(|r| r.0.due)
    }
}

/// State shared by the broker and its subscriber task.
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) wake: Notify,
    pub(super) capacity: usize,
    pub(super) overflow: Overflow,
    pub(super) connected: AtomicBool,
    pub(super) closed: AtomicBool,
    pub(super) received: AtomicU64,
    pub(super) dropped: AtomicU64,
    pub(super) dropped_at_shutdown: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) dropped_metric: metrics::Counter,
    pub(super) shutdown_metric: metrics::Counter,
    pub(super) reconnects_metric: metrics::Counter,
}

impl Shared {
    pub(super) fn new(name: &str, capacity: usize, overflow: Overflow) -> Self {
        let queue = name.to_owned();
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            capacity,
            overflow,
            connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            dropped_at_shutdown: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            dropped_metric: metrics::counter!(DROPPED_TOTAL, "queue" => queue.clone(), "broker" => "pubsub", "policy" => overflow.as_str()),
            shutdown_metric: metrics::counter!(DROPPED_TOTAL, "queue" => queue.clone(), "broker" => "pubsub", "policy" => "shutdown"),
            reconnects_metric: metrics::counter!(RECONNECTS_TOTAL, "queue" => queue, "broker" => "pubsub"),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic (every change is one push or pop).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds received messages to the buffer, applying the overflow policy.
    pub(super) fn push_received(&self, items: Vec<Buffered>) {
        let n = items.len() as u64;
        let mut drops = 0u64;
        {
            let mut st = self.lock();
            for item in items {
                match st.make_room(self.capacity, self.overflow) {
                    Room::Free => st.buffer.push_back(item),
                    Room::Evicted => {
                        drops += 1;
                        st.buffer.push_back(item);
                    }
                    Room::Full => drops += 1,
                }
            }
            st.note_peak();
        }
        self.received.fetch_add(n, Ordering::Relaxed);
        self.count_drops(drops);
        self.wake.notify_one();
    }

    /// Schedules in-process retries; they count against the capacity like arrivals.
    pub(super) fn schedule_retries(&self, retries: Vec<(Duration, Message)>) {
        let now = Instant::now();
        let mut drops = 0u64;
        {
            let mut st = self.lock();
            for (delay, message) in retries {
                match st.make_room(self.capacity, self.overflow) {
                    Room::Full => {
                        drops += 1;
                        continue;
                    }
                    Room::Evicted => drops += 1,
                    Room::Free => {}
                }
                let seq = st.next_seq;
                st.next_seq += 1;
                st.retries.push(Reverse(DueRetry {
                    due: now + delay,
                    seq,
                    message,
                }));
            }
            st.note_peak();
        }
        self.count_drops(drops);
        // A waiting fetch recomputes its wake-up time.
        self.wake.notify_one();
    }

    pub(super) fn count_drops(&self, n: u64) {
        if n > 0 {
            self.dropped.fetch_add(n, Ordering::Relaxed);
            self.dropped_metric.increment(n);
        }
    }

    pub(super) fn count_shutdown_drops(&self, n: u64) {
        self.dropped_at_shutdown.fetch_add(n, Ordering::Relaxed);
        self.shutdown_metric.increment(n);
    }

    pub(super) fn set_connected(&self) {
        self.lock().down_since = None;
        self.connected.store(true, Ordering::Release);
    }

    pub(super) fn set_lost(&self) {
        self.connected.store(false, Ordering::Release);
        self.lock().down_since = Some(Instant::now());
    }
}
