//! `stream::message_from_entry` of any entry id and fields: never panics, Pythia's own fields
//! (`pythia-*`) never become headers, and the body is the last `body` field when there is one.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pythia_core::Source;
use pythia_redis::stream::message_from_entry;

fuzz_target!(|entry: (String, Vec<(Vec<u8>, Vec<u8>)>)| {
    let (id, fields) = entry;
    let body = fields
        .iter()
        .rev()
        .find(|(k, _)| k.as_slice() == b"body")
        .map(|(_, v)| v.clone());
    let msg = message_from_entry(&id, fields, &Source::new("stream", "fuzz"));
    assert!(msg.attempt() >= 1);
    assert!(!msg.id().is_empty() || id.is_empty());
    for (k, _) in msg.headers() {
        assert!(!k.starts_with("pythia-"), "reserved field {k:?} became a header");
    }
    if let Some(body) = body {
        assert_eq!(msg.body().as_ref(), body.as_slice());
    }
});
