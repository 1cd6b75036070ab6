//! The list brokers' settle commands, built without I/O ([`Call`]): what
//! [`ListBroker`](super::ListBroker) and [`ReliableListBroker`](super::reliable::ReliableListBroker) send,
//! what their unit tests read and what `benches/settle.rs` measures.

use pythia_core::{Outcome, Settlement};

use super::ListSide;
use crate::call::Call;
use crate::consumer::retry_schedule::{dead_letter_payload, delay_ms, retry_payload};
use crate::keys::QueueKeys;
use crate::scripts::{
    LIST_SETTLE, RELIABLE_FETCH, RELIABLE_REAP, RELIABLE_RELEASE, RELIABLE_SETTLE,
};

/// The settle commands of an at-most-once [`ListBroker`](super::ListBroker) on one queue.
#[derive(Debug, Clone)]
pub struct ListCommands {
    queue: String,
    scheduled: String,
    dead_letters: String,
}

impl ListCommands {
    /// The commands of the queue with `keys`.
    pub fn new(keys: &QueueKeys) -> Self {
        Self {
            queue: keys.queue().to_owned(),
            scheduled: keys.scheduled(),
            dead_letters: keys.dead_letters(),
        }
    }

    /// `BRPOP`/`BLPOP <queue> <timeout>` (seconds): one item or nil after the timeout.
    pub(crate) fn blocking_pop(&self, side: ListSide, timeout_secs: f64) -> Call {
        let mut cmd = redis::cmd(side.blocking_pop());
        cmd.arg(&self.queue).arg(timeout_secs);
        Call::command(cmd)
    }

    /// One `list_settle.lua` call scheduling the retries and dead-lettering the dead letters of
    /// `batch` (at most `dead_letter_cap` dead letters kept, 0 for no cap); `None` when the
    /// batch holds only acks, which need no round trip (the items were popped).
    pub fn settle(&self, batch: &[Settlement<()>], dead_letter_cap: usize) -> Option<Call> {
        let mut call = Call::script(&LIST_SETTLE, &[&self.scheduled, &self.dead_letters]);
        call.arg(dead_letter_cap);
        let mut any = false;
        for s in batch {
            match &s.outcome {
                Outcome::Retry { delay } => {
                    call.arg(delay_ms(*delay)).arg(retry_payload(&s.message));
                }
                Outcome::DeadLetter { reason } => {
                    call.arg("d").arg(dead_letter_payload(&s.message, reason));
                }
                Outcome::Ack => continue,
            }
            any = true;
        }
        any.then_some(call)
    }
}

/// The fetch and settle commands of one consumer of a
/// [`ReliableListBroker`](super::reliable::ReliableListBroker).
#[derive(Debug, Clone)]
pub struct ReliableListCommands {
    consumer: String,
    queue: String,
    in_flight: String,
    staging: String,
    consumers: String,
    heartbeat: String,
    scheduled: String,
    dead_letters: String,
}

impl ReliableListCommands {
    /// The commands of consumer `consumer` of the queue with `keys`.
    pub fn new(keys: &QueueKeys, consumer: &str) -> Self {
        Self {
            consumer: consumer.to_owned(),
            queue: keys.queue().to_owned(),
            in_flight: keys.in_flight(consumer),
            staging: keys.staging(consumer),
            consumers: keys.consumers(),
            heartbeat: keys.heartbeat(consumer),
            scheduled: keys.scheduled(),
            dead_letters: keys.dead_letters(),
        }
    }

    /// One `reliable_fetch.lua` call: up to `max` items popped from the `side` end, recorded in
    /// the in-flight hash under delivery ids `first`, `first + 1`… (staged first, so that a
    /// failure leaves them findable), the consumer registered and its heartbeat set to live
    /// `heartbeat_ttl_ms`. Replies the items, oldest first.
    pub fn fetch(&self, max: usize, first: u64, side: ListSide, heartbeat_ttl_ms: u64) -> Call {
        let mut call = Call::script(
            &RELIABLE_FETCH,
            &[
                &self.queue,
                &self.in_flight,
                &self.staging,
                &self.consumers,
                &self.heartbeat,
            ],
        );
        call.arg(max)
            .arg(first)
            .arg(side.pop_flag())
            .arg(&self.consumer)
            .arg(heartbeat_ttl_ms);
        call
    }

    /// `BLMOVE <queue> <staging> RIGHT|LEFT LEFT <timeout>` (seconds): waits for one item and
    /// parks it in this consumer's staging list.
    pub(crate) fn wait_for_item(&self, side: ListSide, timeout_secs: f64) -> Call {
        let mut cmd = redis::cmd("BLMOVE");
        cmd.arg(&self.queue)
            .arg(&self.staging)
            .arg(side.end())
            .arg("LEFT")
            .arg(timeout_secs);
        Call::command(cmd)
    }

    /// One `reliable_release.lua` call handing deliveries `ids` back unchanged to the `side`
    /// consumers pop, in the order given (the first is the next popped). Replies how many were
    /// still in flight.
    pub(crate) fn release(&self, ids: impl IntoIterator<Item = u64>, side: ListSide) -> Call {
        let mut call = Call::script(&RELIABLE_RELEASE, &[&self.in_flight, &self.queue]);
        call.arg(side.pop_flag());
        for id in ids {
            call.arg(id);
        }
        call
    }

    /// One `reliable_reap.lua` call returning this consumer's work to the queue, run by another
    /// consumer that found it dead (or, with `force`, by a new process under its name): `items`
    /// are in-flight `(delivery id, payload re-encoded for another attempt)`, newest first;
    /// staged items come back as they are. Replies how many came back, or -1 if the consumer's
    /// heartbeat is there (alive after all) and `force` is off.
    pub(crate) fn reap(&self, side: ListSide, force: bool, items: &[(&str, Vec<u8>)]) -> Call {
        let mut call = Call::script(
            &RELIABLE_REAP,
            &[
                &self.heartbeat,
                &self.in_flight,
                &self.staging,
                &self.queue,
                &self.consumers,
            ],
        );
        call.arg(side.pop_flag())
            .arg(&self.consumer)
            .arg(if force { "1" } else { "0" });
        for (id, payload) in items {
            call.arg(*id).arg(&payload[..]);
        }
        call
    }

    /// The consumer's in-flight hash.
    pub fn in_flight_key(&self) -> &str {
        &self.in_flight
    }

    /// Acks alone: one `HDEL` of the in-flight hash (replies how many were still there).
    pub fn acks(&self, batch: &[Settlement<u64>]) -> Call {
        let ids: Vec<u64> = batch.iter().map(|s| s.token).collect();
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(&self.in_flight).arg(&ids);
        Call::command(cmd)
    }

    /// Any mix of outcomes: one `reliable_settle.lua` call, four arguments per delivery (`op`,
    /// delivery id, retry delay, payload), keeping at most `dead_letter_cap` dead letters (0:
    /// no cap). Replies (settled, dead letters trimmed).
    pub fn settle(&self, batch: &[Settlement<u64>], dead_letter_cap: usize) -> Call {
        let mut call = Call::script(
            &RELIABLE_SETTLE,
            &[&self.in_flight, &self.scheduled, &self.dead_letters],
        );
        call.arg(dead_letter_cap);
        for s in batch {
            match &s.outcome {
                Outcome::Retry { delay } => call
                    .arg("r")
                    .arg(s.token)
                    .arg(delay_ms(*delay))
                    .arg(retry_payload(&s.message)),
                Outcome::DeadLetter { reason } => call
                    .arg("d")
                    .arg(s.token)
                    .arg(0)
                    .arg(dead_letter_payload(&s.message, reason)),
                Outcome::Ack => call.arg("a").arg(s.token).arg(0).arg(""),
            };
        }
        call
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pythia_core::{Message, Source, envelope};

    use super::*;

    fn settlement<T>(token: T, outcome: Outcome) -> Settlement<T> {
        let produced = Message::new("hi");
        Settlement {
            token,
            message: envelope::decode(
                envelope::encode(&produced).into(),
                &Source::new("list", "jobs"),
            ),
            outcome,
        }
    }

    #[test]
    fn reliable_acks_are_one_hdel_of_the_consumers_hash() {
        let c = ReliableListCommands::new(&QueueKeys::new("pythia", "jobs"), "c1");
        let batch = [settlement(7, Outcome::Ack), settlement(9, Outcome::Ack)];
        assert_eq!(
            c.acks(&batch).text(),
            ["HDEL", "pythia:{jobs}:inflight:c1", "7", "9"]
        );
    }

    #[test]
    fn reliable_settle_takes_four_arguments_per_delivery() {
        let c = ReliableListCommands::new(&QueueKeys::new("pythia", "jobs"), "c1");
        let batch = [
            settlement(1, Outcome::Ack),
            settlement(
                2,
                Outcome::Retry {
                    delay: Duration::from_millis(1500),
                },
            ),
            settlement(
                3,
                Outcome::DeadLetter {
                    reason: "bad".into(),
                },
            ),
        ];
        let args = c.settle(&batch, 10).text();
        assert_eq!(args[0], "EVALSHA");
        assert_eq!(args[1], RELIABLE_SETTLE.get_hash());
        assert_eq!(
            args[2..7],
            [
                "3",
                "pythia:{jobs}:inflight:c1",
                "pythia:{jobs}:scheduled",
                "pythia:{jobs}:dlq",
                "10"
            ]
        );
        assert_eq!(args[7..11], ["a", "1", "0", ""]);
        assert_eq!(args[11..14], ["r", "2", "1500"]);
        assert!(args[14].contains(r#""attempt":2"#), "{}", args[14]);
        assert_eq!(args[15..18], ["d", "3", "0"]);
        assert!(args[18].contains("bad"), "{}", args[18]);
        assert_eq!(args.len(), 19);
    }

    #[test]
    fn list_acks_need_no_call_and_others_one_script() {
        let c = ListCommands::new(&QueueKeys::new("pythia", "jobs"));
        assert!(c.settle(&[settlement((), Outcome::Ack)], 0).is_none());
        let call = c
            .settle(
                &[
                    settlement((), Outcome::Ack),
                    settlement(
                        (),
                        Outcome::Retry {
                            delay: Duration::from_secs(2),
                        },
                    ),
                ],
                0,
            )
            .expect("a retry to schedule");
        let args = call.text();
        assert_eq!(args[0], "EVALSHA");
        assert_eq!(args[1], LIST_SETTLE.get_hash());
        assert_eq!(
            args[2..7],
            [
                "2",
                "pythia:{jobs}:scheduled",
                "pythia:{jobs}:dlq",
                "0",
                "2000"
            ]
        );
        assert_eq!(args.len(), 8);
        assert!(call.packed().starts_with(b"*8\r\n$7\r\nEVALSHA\r\n"));
    }

    #[test]
    fn releases_and_reaps_name_the_consumers_keys() {
        let c = ReliableListCommands::new(&QueueKeys::new("pythia", "jobs"), "c1");
        let args = c.release([4, 2], ListSide::Right).text();
        assert_eq!(args[..2], ["EVALSHA", RELIABLE_RELEASE.get_hash()]);
        assert_eq!(
            args[2..],
            ["2", "pythia:{jobs}:inflight:c1", "jobs", "R", "4", "2"]
        );
        let args = c
            .reap(
                ListSide::Left,
                true,
                &[("9", b"p9".to_vec()), ("3", b"p3".to_vec())],
            )
            .text();
        assert_eq!(args[..2], ["EVALSHA", RELIABLE_REAP.get_hash()]);
        assert_eq!(
            args[2..],
            [
                "5",
                "pythia:{jobs}:heartbeat:c1",
                "pythia:{jobs}:inflight:c1",
                "pythia:{jobs}:staging:c1",
                "jobs",
                "pythia:{jobs}:consumers",
                "L",
                "c1",
                "1",
                "9",
                "p9",
                "3",
                "p3"
            ]
        );
    }

    #[test]
    fn blocking_reads_take_the_configured_end_and_timeout() {
        let keys = QueueKeys::new("pythia", "jobs");
        let list = ListCommands::new(&keys);
        assert_eq!(
            list.blocking_pop(ListSide::Right, 2.0).text(),
            ["BRPOP", "jobs", "2.0"]
        );
        assert_eq!(
            list.blocking_pop(ListSide::Left, 0.5).text(),
            ["BLPOP", "jobs", "0.5"]
        );
        let reliable = ReliableListCommands::new(&keys, "w1");
        assert_eq!(
            reliable.wait_for_item(ListSide::Left, 1.0).text(),
            ["BLMOVE", "jobs", &keys.staging("w1"), "LEFT", "LEFT", "1.0"]
        );
    }
}
