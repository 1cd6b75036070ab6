//! `envelope::decode_dead_letter` of any bytes: never panics, and a dead letter it writes for
//! what it decoded reads back with the same reason and message.

#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pythia_core::{Source, envelope};

fuzz_target!(|data: &[u8]| {
    let source = Source::new("list", "fuzz");
    let dead = envelope::decode_dead_letter(Bytes::copy_from_slice(data), &source);
    let reason = dead.reason.clone().unwrap_or_else(|| "fuzzed".to_owned());
    let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_000);
    let raw = envelope::encode_dead_letter(&dead.message, &reason, at);
    let back = envelope::decode_dead_letter(raw.into(), &source);
    assert_eq!(back.reason.as_deref(), Some(reason.as_str()));
    assert_eq!(back.failed_at, Some(at));
    assert_eq!(back.message.body(), dead.message.body());
    assert_eq!(back.message.id(), dead.message.id());
});
