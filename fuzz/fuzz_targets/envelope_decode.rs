//! `envelope::decode` of any bytes: never panics, and what it decodes survives a round trip
//! through Pythia's own envelope unchanged (body, id, attempt, headers, enqueue time).

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pythia_core::{Source, envelope};

fuzz_target!(|data: &[u8]| {
    let source = Source::new("list", "fuzz");
    let msg = envelope::decode(Bytes::copy_from_slice(data), &source);
    let again = envelope::decode(envelope::encode(&msg).into(), &source);
    assert_eq!(again.body(), msg.body());
    assert_eq!(again.id(), msg.id());
    assert_eq!(again.attempt(), msg.attempt());
    assert_eq!(again.headers(), msg.headers());
    assert_eq!(
        again.enqueued_at().map(pythia_core::message::unix_millis),
        msg.enqueued_at().map(pythia_core::message::unix_millis)
    );
});
