//! The stream broker's commands, built without I/O ([`Call`]): the group read, acks, the settle
//! script, the drain check, stats, leaving the group and the trims — what
//! [`StreamBroker`](super::StreamBroker) sends, what its unit tests read and what
//! `benches/settle.rs` measures.

use pythia_core::Message;
use pythia_core::message::unix_millis;

use super::StreamEntryId;
use super::fetch::ReadFrom;
use super::wire::fields;
use crate::call::Call;
use crate::keys::QueueKeys;
use crate::scripts::{
    STREAM_CLAIM, STREAM_DRAINED, STREAM_LEAVE, STREAM_SETTLE, STREAM_STATS, STREAM_TRIM,
    STREAM_TRIMMED,
};

/// The commands of one consumer group of a stream.
#[derive(Debug, Clone)]
pub struct StreamCommands {
    stream: String,
    group: String,
    scheduled: String,
    dead_letters: String,
}

/// What the settle script does with one entry besides acking it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Item<'a> {
    /// Due after this many milliseconds (on the server's clock).
    Retry {
        delay: u64,
    },
    DeadLetter {
        reason: &'a str,
    },
    HandBack,
}

/// How a settle script call treats its entries: the dead-letter cap and whether acked entries
/// are deleted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SettleOptions {
    pub(crate) dead_letter_cap: usize,
    pub(crate) delete_on_ack: bool,
    /// Now, in Unix milliseconds (the dead letters' `failed-at`).
    pub(crate) now: u64,
}

impl StreamCommands {
    /// The commands of group `group` of the stream `keys` names (its retry schedule and dead
    /// letters under the keys' prefix).
    pub fn new(keys: &QueueKeys, group: &str) -> Self {
        Self {
            stream: keys.queue().to_owned(),
            group: group.to_owned(),
            scheduled: keys.scheduled(),
            dead_letters: keys.dead_letters(),
        }
    }

    /// `XACK <stream> <group> <id>…`: replies how many were still pending.
    pub fn ack(&self, ids: &[StreamEntryId]) -> Call {
        let mut xack = redis::cmd("XACK");
        xack.arg(&self.stream).arg(&self.group).arg(ids);
        Call::command(xack)
    }

    /// `XACK` then `XDEL` of the same ids in one transaction (a broker `with_delete_on_ack`):
    /// replies `[acked]`, the XDEL's reply left out.
    pub fn ack_and_delete(&self, ids: &[StreamEntryId]) -> Call {
        let mut pipe = redis::pipe();
        pipe.cmd("XACK")
            .arg(&self.stream)
            .arg(&self.group)
            .arg(ids)
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(ids)
            .ignore();
        Call::transaction(pipe)
    }

    /// `XREADGROUP GROUP <group> <consumer> COUNT <max> [BLOCK <ms>] STREAMS <stream> <from>`.
    pub(crate) fn read_group(&self, consumer: &str, max: usize, from: ReadFrom) -> Call {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.group)
            .arg(consumer)
            .arg("COUNT")
            .arg(max);
        match from {
            ReadFrom::New(block_ms) => {
                if let Some(ms) = block_ms {
                    cmd.arg("BLOCK").arg(ms);
                }
                cmd.arg("STREAMS").arg(&self.stream).arg(">")
            }
            ReadFrom::PendingAfter(id) => cmd.arg("STREAMS").arg(&self.stream).arg(id),
        };
        Call::command(cmd)
    }

    /// One call of the settle script (`lua/stream_settle.lua`): `acks` acknowledged, each item
    /// added where it goes (back onto the stream, the schedule or the dead letters) and then
    /// acknowledged. Replies `[settled, [ids too wide for a script…], trimmed]`.
    pub(crate) fn settle(
        &self,
        acks: &[StreamEntryId],
        items: &[(StreamEntryId, &Message, Item<'_>)],
        opts: SettleOptions,
    ) -> Call {
        let mut call = Call::script(
            &STREAM_SETTLE,
            &[&self.stream, &self.scheduled, &self.dead_letters],
        );
        call.arg(&self.group)
            .arg(opts.dead_letter_cap)
            .arg(if opts.delete_on_ack { "1" } else { "0" })
            .arg(acks.len());
        for id in acks {
            call.arg(*id);
        }
        for &(token, msg, item) in items {
            let (op, delay, set) = self.pythia_fields(token, msg, item, opts.now);
            call.arg(op).arg(token).arg(delay).arg(set.len());
            for (k, v) in &set {
                call.arg(*k).arg(v);
            }
            // Stand-ins, used only if the entry is gone from the stream.
            call.arg(1 + msg.headers().len())
                .arg(fields::BODY)
                .arg(msg.body().as_ref());
            for (k, v) in msg.headers() {
                call.arg(k).arg(v);
            }
        }
        call
    }

    /// The operation (`r` retry, `d` dead letter, `l` hand back), the retry delay and Pythia's
    /// fields for one settled entry (see `lua/stream_settle.lua`).
    pub(crate) fn pythia_fields(
        &self,
        token: StreamEntryId,
        msg: &Message,
        item: Item<'_>,
        now: u64,
    ) -> (&'static str, u64, Vec<(&'static str, String)>) {
        let enqueued = msg.enqueued_at().map(unix_millis).unwrap_or(token.ms());
        let (op, delay, attempt, reason) = match item {
            Item::Retry { delay } => ("r", delay, msg.attempt().saturating_add(1), None),
            Item::DeadLetter { reason } => ("d", 0, msg.attempt(), Some(reason)),
            Item::HandBack => ("l", 0, msg.attempt(), None),
        };
        let mut set = vec![
            (fields::ID, msg.id().to_owned()),
            (fields::ATTEMPT, attempt.to_string()),
            (fields::ENQUEUED_AT, enqueued.to_string()),
            (fields::GROUP, self.group.clone()),
        ];
        if let Some(reason) = reason {
            set.push((fields::ERROR, reason.to_owned()));
            set.push((fields::FAILED_AT, now.to_string()));
            set.push((fields::ENTRY_ID, token.to_string()));
        }
        (op, delay, set)
    }

    /// The reclaim script (`lua/stream_claim.lua`): `candidates` of the dead consumer `dead`
    /// (whose heartbeat is `dead_heartbeat`, checked first when `check_heartbeat`) claimed for
    /// `consumer` when idle at least `min_idle_ms`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn claim(
        &self,
        dead_heartbeat: &str,
        registry: &str,
        consumer: &str,
        dead: &str,
        check_heartbeat: bool,
        min_idle_ms: u64,
        candidates: &[StreamEntryId],
    ) -> Call {
        let mut call = Call::script(&STREAM_CLAIM, &[&self.stream, dead_heartbeat, registry]);
        call.arg(&self.group)
            .arg(consumer)
            .arg(dead)
            .arg(if check_heartbeat { "1" } else { "0" })
            .arg(min_idle_ms);
        for id in candidates {
            call.arg(*id);
        }
        call
    }

    /// The drain check (`lua/stream_drained.lua`): replies `[pending, undelivered, scheduled]`,
    /// `pending` negative when the group is gone.
    pub(crate) fn drained(&self) -> Call {
        let mut call = Call::script(&STREAM_DRAINED, &[&self.stream, &self.scheduled]);
        call.arg(&self.group);
        call
    }

    /// The stats script (`lua/stream_stats.lua`), counting the lag up to `depth_limit` when
    /// Redis does not know it: replies `[depth, pending, consumers, next id, scheduled, dead]`.
    pub(crate) fn stats(&self, depth_limit: u64) -> Call {
        let mut call = Call::script(
            &STREAM_STATS,
            &[&self.stream, &self.scheduled, &self.dead_letters],
        );
        call.arg(&self.group).arg(depth_limit);
        call
    }

    /// The leave script (`lua/stream_leave.lua`): `consumer` leaves the group and the registry
    /// when it holds nothing; replies 0 when it left entries pending.
    pub(crate) fn leave(&self, registry: &str, consumer: &str) -> Call {
        let mut call = Call::script(&STREAM_LEAVE, &[self.stream.as_str(), registry]);
        call.arg(&self.group).arg(consumer);
        call
    }

    /// The trim of entries every group has processed (`lua/stream_trim.lua`), at most `limit`.
    pub(crate) fn trim_processed(&self, limit: u64) -> Call {
        let mut call = Call::script(&STREAM_TRIM, &[&self.stream]);
        call.arg(limit);
        call
    }

    /// The count of entries trimmed before the group was delivered them
    /// (`lua/stream_trimmed.lua`); `just_created` when the group was just created.
    pub(crate) fn trimmed_undelivered(&self, just_created: bool) -> Call {
        let mut call = Call::script(&STREAM_TRIMMED, &[&self.stream]);
        call.arg(&self.group)
            .arg(if just_created { "1" } else { "0" });
        call
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commands() -> StreamCommands {
        StreamCommands::new(&QueueKeys::new("pythia", "jobs"), "workers")
    }

    #[test]
    fn acks_name_the_stream_group_and_ids() {
        let c = commands();
        let ids = [StreamEntryId::new(5, 0), StreamEntryId::new(5, 1)];
        assert_eq!(
            c.ack(&ids).text(),
            ["XACK", "jobs", "workers", "5-0", "5-1"]
        );
        let packed = String::from_utf8(c.ack_and_delete(&ids).packed()).unwrap();
        assert!(packed.starts_with("*1\r\n$5\r\nMULTI\r\n"), "{packed}");
        assert!(
            packed.contains("XDEL\r\n$4\r\njobs\r\n$3\r\n5-0\r\n$3\r\n5-1"),
            "{packed}"
        );
        assert!(packed.ends_with("$4\r\nEXEC\r\n"), "{packed}");
    }

    #[test]
    fn group_reads_block_only_for_new_entries() {
        let c = commands();
        let read = |from| c.read_group("w1", 100, from).text().join(" ");
        assert_eq!(
            read(ReadFrom::New(Some(2000))),
            "XREADGROUP GROUP workers w1 COUNT 100 BLOCK 2000 STREAMS jobs >"
        );
        assert_eq!(
            read(ReadFrom::New(None)),
            "XREADGROUP GROUP workers w1 COUNT 100 STREAMS jobs >"
        );
        assert_eq!(
            read(ReadFrom::PendingAfter(StreamEntryId::new(7, 1))),
            "XREADGROUP GROUP workers w1 COUNT 100 STREAMS jobs 7-1"
        );
    }

    #[test]
    fn the_settle_script_gets_keys_options_acks_then_one_record_per_item() {
        let c = commands();
        let msg = Message::new("hi")
            .with_id("m1")
            .with_header("tenant", "acme")
            .with_attempt(2)
            .with_enqueued_at(Some(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(1000),
            ));
        let retry = Item::Retry { delay: 250 };
        let dead = Item::DeadLetter { reason: "boom" };
        let items = [
            (StreamEntryId::new(9, 0), &msg, retry),
            (StreamEntryId::new(9, 1), &msg, dead),
        ];
        let opts = SettleOptions {
            dead_letter_cap: 100,
            delete_on_ack: true,
            now: 5000,
        };
        let args = c.settle(&[StreamEntryId::new(8, 0)], &items, opts).text();
        assert_eq!(args[..2], ["EVALSHA", STREAM_SETTLE.get_hash()]);
        let expected = [
            // keys; group, cap, delete-on-ack; one plain ack
            "3 jobs pythia:{jobs}:scheduled pythia:{jobs}:dlq workers 100 1 1 8-0",
            // the retry: attempt raised, no error fields; 2 stand-in pairs (body, a header)
            "r 9-0 250 4 pythia-id m1 pythia-attempt 3 pythia-enqueued-at 1000 \
             pythia-group workers 2 body hi tenant acme",
            // the dead letter: attempt kept, with the error, the time and the entry id
            "d 9-1 0 7 pythia-id m1 pythia-attempt 2 pythia-enqueued-at 1000 \
             pythia-group workers pythia-error boom pythia-failed-at 5000 \
             pythia-entry-id 9-1 2 body hi tenant acme",
        ];
        assert_eq!(args[2..].join(" "), expected.join(" "));
    }

    #[test]
    fn maintenance_scripts_name_their_keys_and_group() {
        let c = commands();
        let after_hash = |call: Call| call.text()[2..].join(" ");
        let candidates = [StreamEntryId::new(1, 0)];
        assert_eq!(
            after_hash(c.claim(
                "hb:dead",
                "registry",
                "w1",
                "dead",
                true,
                30_000,
                &candidates
            )),
            "3 jobs hb:dead registry workers w1 dead 1 30000 1-0"
        );
        assert_eq!(
            after_hash(c.drained()),
            "2 jobs pythia:{jobs}:scheduled workers"
        );
        assert_eq!(
            after_hash(c.stats(10_000)),
            "3 jobs pythia:{jobs}:scheduled pythia:{jobs}:dlq workers 10000"
        );
        assert_eq!(
            after_hash(c.leave("registry", "w1")),
            "2 jobs registry workers w1"
        );
        assert_eq!(after_hash(c.trim_processed(500)), "1 jobs 500");
        assert_eq!(after_hash(c.trimmed_undelivered(true)), "1 jobs workers 1");
    }
}
