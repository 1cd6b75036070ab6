//! The dead-letter queue's writes, built without I/O ([`Call`]): the replay script, deletes and
//! the purge — what [`DeadLetterQueue`](super::DeadLetterQueue) sends and the tests below read.

use std::time::SystemTime;

use pythia_core::envelope;

use super::{DeadLetter, Handle, Target};
use crate::call::Call;
use crate::scripts::DEAD_LETTERS_REPLAY;
use crate::stream::fields;

/// One `dead_letters_replay.lua` call putting `chunk` back on `queue` (as `target` says) from
/// the dead letters at `key`: a list item with its message as it is re-enqueued (attempt 1,
/// enqueued `now`), a stream entry with the fields it keeps ([`replayed_field`]). Replies
/// `(replayed, missing, unheard, too big)`.
pub(super) fn replay(
    key: &str,
    queue: &str,
    target: Target,
    chunk: &[DeadLetter],
    now: SystemTime,
) -> Call {
    let mode = match target {
        Target::List(side) => side.push_flag(),
        Target::Stream => "S",
        Target::Channel => "P",
    };
    let mut call = Call::script(&DEAD_LETTERS_REPLAY, &[key, queue]);
    call.arg(mode);
    for d in chunk {
        match &d.location.0 {
            Handle::Item(raw) => {
                let msg = d
                    .message
                    .clone()
                    .with_attempt(1)
                    .with_enqueued_at(Some(now));
                call.arg(raw.as_ref()).arg(1).arg(envelope::encode(&msg));
            }
            Handle::Entry { id, fields: f } => {
                let kept: Vec<&(Vec<u8>, Vec<u8>)> =
                    f.iter().filter(|(k, _)| replayed_field(k)).collect();
                call.arg(id).arg(kept.len() * 2);
                for (k, v) in kept {
                    call.arg(k.as_slice()).arg(v.as_slice());
                }
            }
        }
    }
    call
}

/// `chunk` removed from the dead letters at `key`, one `LREM` (the newest copy) or `XDEL` each,
/// pipelined: replies how many each removed.
pub(super) fn delete(key: &str, chunk: &[DeadLetter]) -> Call {
    let mut pipe = redis::pipe();
    for d in chunk {
        match &d.location.0 {
            Handle::Item(raw) => pipe.cmd("LREM").arg(key).arg(-1).arg(raw.as_ref()),
            Handle::Entry { id, .. } => pipe.cmd("XDEL").arg(key).arg(id),
        };
    }
    Call::pipeline(pipe)
}

/// The dead letters at `key` counted and deleted in one transaction: replies `(count, deleted)`.
pub(super) fn purge(key: &str, target: Target) -> Call {
    let mut pipe = redis::pipe();
    pipe.cmd(target.len_command()).arg(key).cmd("DEL").arg(key);
    Call::transaction(pipe)
}

/// The fields a replayed stream entry keeps: everything but the dead-letter bookkeeping, the
/// attempt (absent = 1) and the enqueue time (the new entry's id is the replay time).
fn replayed_field(name: &[u8]) -> bool {
    ![
        fields::ERROR,
        fields::FAILED_AT,
        fields::ENTRY_ID,
        fields::ATTEMPT,
        fields::ENQUEUED_AT,
    ]
    .iter()
    .any(|f| f.as_bytes() == name)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use bytes::Bytes;
    use pythia_core::{Message, Source};

    use super::*;
    use crate::dlq::DlqEntry;
    use crate::list::ListSide;

    fn item(raw: &'static [u8]) -> DeadLetter {
        let message = envelope::decode(Bytes::from_static(raw), &Source::new("list", "jobs"));
        pythia_core::DeadLetter::new(message, None, None)
            .at(DlqEntry(Handle::Item(Bytes::from_static(raw))))
    }

    fn entry(id: &str, f: &[(&str, &str)]) -> DeadLetter {
        let fields = f
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        pythia_core::DeadLetter::new(Message::new("x"), None, None).at(DlqEntry(Handle::Entry {
            id: id.to_owned(),
            fields,
        }))
    }

    #[test]
    fn replayed_stream_entries_drop_the_bookkeeping() {
        assert!(replayed_field(b"body"));
        assert!(replayed_field(b"tenant"));
        assert!(replayed_field(b"pythia-id"));
        assert!(replayed_field(b"pythia-group"));
        assert!(!replayed_field(b"pythia-error"));
        assert!(!replayed_field(b"pythia-attempt"));
        assert!(!replayed_field(b"pythia-enqueued-at"));
    }

    #[test]
    fn a_list_replay_sends_each_item_and_its_message_at_attempt_one() {
        let now = UNIX_EPOCH + Duration::from_millis(7000);
        let call = replay(
            "pythia:{jobs}:dlq",
            "jobs",
            Target::List(ListSide::Right),
            &[item(b"raw body")],
            now,
        );
        let args = call.text();
        assert_eq!(args[..2], ["EVALSHA", DEAD_LETTERS_REPLAY.get_hash()]);
        assert_eq!(
            args[2..8],
            ["2", "pythia:{jobs}:dlq", "jobs", "L", "raw body", "1"]
        );
        let replayed = envelope::decode(
            Bytes::from(call.args()[8].to_vec()),
            &Source::new("list", "jobs"),
        );
        assert_eq!(replayed.body().as_ref(), b"raw body");
        assert_eq!(replayed.attempt(), 1);
        assert_eq!(replayed.enqueued_at(), Some(now));
        assert_eq!(args.len(), 9);
    }

    #[test]
    fn a_stream_replay_keeps_the_message_fields_only() {
        let letter = entry(
            "9-0",
            &[
                ("body", "b"),
                ("pythia-error", "boom"),
                ("pythia-id", "m1"),
                ("pythia-attempt", "3"),
            ],
        );
        let args = replay(
            "pythia:{ev}:dlq",
            "ev",
            Target::Stream,
            &[letter],
            UNIX_EPOCH,
        )
        .text();
        assert_eq!(
            args[2..],
            [
                "2",
                "pythia:{ev}:dlq",
                "ev",
                "S",
                "9-0",
                "4",
                "body",
                "b",
                "pythia-id",
                "m1"
            ]
        );
    }

    #[test]
    fn deletes_and_purges_name_the_dead_letter_key() {
        let letters = [item(b"a"), entry("9-0", &[])];
        assert_eq!(
            delete("pythia:{q}:dlq", &letters).commands_text(),
            [
                vec!["LREM", "pythia:{q}:dlq", "-1", "a"],
                vec!["XDEL", "pythia:{q}:dlq", "9-0"]
            ]
        );
        let purge = purge("pythia:{q}:dlq", Target::Stream);
        assert_eq!(
            purge.commands_text(),
            [["XLEN", "pythia:{q}:dlq"], ["DEL", "pythia:{q}:dlq"]]
        );
        assert!(purge.packed().starts_with(b"*1\r\n$5\r\nMULTI\r\n"));
    }
}
