//! Feeds arbitrary bytes to every Raft decoder. Nothing may panic, and anything that decodes must
//! re-encode to exactly the input. The check itself lives in the core crate
//! (`raft::wire::check_decode_round_trip`) so that the stand-in test in
//! `rust/core/tests/wire_roundtrip.rs`, which CI runs on stable, checks the very same property.
//! The input is also tried with its length field and CRC rewritten, so that mutations reach the
//! payload parser instead of stopping at the checksum.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    consensus_core::raft::wire::check_decode_round_trip(data);
});
