//! Pub/sub's commands that go over the shared connection, built without I/O ([`Call`]): the
//! publisher's publish and the broker's dead-letter push. The subscriptions themselves
//! (`SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE`) are sent on a push connection of their own, which
//! [`Call`] does not drive (`subscriber.rs`, `sharded.rs`).

use crate::call::Call;
use crate::scripts::SPUBLISH;

/// `payloads` published on `channel` in order, replying each one's receiver count: with
/// `sharded`, one `spublish.lua` call (on the slot's master); else a pipeline of `PUBLISH`.
pub(super) fn publish<P: AsRef<[u8]>>(channel: &str, sharded: bool, payloads: &[P]) -> Call {
    if sharded {
        let mut call = Call::script(&SPUBLISH, &[channel]);
        for payload in payloads {
            call.arg(payload.as_ref());
        }
        call
    } else {
        let mut pipe = redis::pipe();
        for payload in payloads {
            pipe.publish(channel, payload.as_ref());
        }
        Call::pipeline(pipe)
    }
}

/// Dead-letter `payloads` pushed onto the list `key` (newest first) and, with a `cap` (0: none),
/// the list trimmed to it, in one transaction: replies `(length after the push,)`.
pub(super) fn push_dead_letters(key: &str, payloads: &[Vec<u8>], cap: usize) -> Call {
    let mut pipe = redis::pipe();
    pipe.lpush(key, payloads);
    if cap > 0 {
        pipe.ltrim(key, 0, cap as isize - 1).ignore();
    }
    Call::transaction(pipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_go_out_as_one_publish_each_or_one_sharded_script() {
        let payloads = [&b"a"[..], b"b"];
        assert_eq!(
            publish("events", false, &payloads).commands_text(),
            [["PUBLISH", "events", "a"], ["PUBLISH", "events", "b"]]
        );
        let args = publish("events", true, &payloads).text();
        assert_eq!(args[..2], ["EVALSHA", SPUBLISH.get_hash()]);
        assert_eq!(args[2..], ["1", "events", "a", "b"]);
    }

    #[test]
    fn dead_letters_are_pushed_then_trimmed_to_the_cap_atomically() {
        let payloads = [b"x".to_vec(), b"y".to_vec()];
        let call = push_dead_letters("pythia:{events}:dlq", &payloads, 100);
        assert_eq!(
            call.commands_text(),
            [
                vec!["LPUSH", "pythia:{events}:dlq", "x", "y"],
                vec!["LTRIM", "pythia:{events}:dlq", "0", "99"]
            ]
        );
        assert!(call.packed().starts_with(b"*1\r\n$5\r\nMULTI\r\n"));
        let uncapped = push_dead_letters("k", &payloads, 0).commands_text();
        assert_eq!(uncapped, [["LPUSH", "k", "x", "y"]]);
    }
}
