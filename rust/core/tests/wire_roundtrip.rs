//! Properties of the Raft wire codec (`raft::wire`, specified in `docs/wire-format.md`):
//! every value round-trips, `encoded_len` is exact, and truncated, bit-flipped, mutated or random
//! input always ends in `Err(DecodeError)` (or a value that re-encodes to exactly that input),
//! never a panic. The last tests are a fixed-seed stand-in for the cargo-fuzz target, so CI checks
//! the fuzz property without nightly, and an ignored throughput measurement.

use bytes::Bytes;
use consensus_core::codec::{reseal_frame, HEADER_BYTES, MIN_FRAME_BYTES};
use consensus_core::raft::wire::{self, check_decode_round_trip};
use consensus_core::raft::{ConfChange, ConfState, Entry, EntryKind, HardState, Message, MessageType, Snapshot};
use consensus_core::DecodeError;
use proptest::collection::vec;
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn arb_bytes(max_len: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max_len).prop_map(Bytes::from)
}

fn arb_kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![Just(EntryKind::Normal), Just(EntryKind::ConfChange)]
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (any::<u64>(), any::<u64>(), arb_kind(), arb_bytes(64)).prop_map(|(index, term, kind, data)| Entry {
        index,
        term,
        kind,
        data,
    })
}

fn arb_ids() -> impl Strategy<Value = Vec<u64>> {
    vec(any::<u64>(), 0..6)
}

fn arb_conf_state() -> impl Strategy<Value = ConfState> {
    (arb_ids(), arb_ids(), arb_ids(), arb_ids(), any::<bool>()).prop_map(
        |(voters, learners, voters_outgoing, learners_next, auto_leave)| ConfState {
            voters,
            learners,
            voters_outgoing,
            learners_next,
            auto_leave,
        },
    )
}

fn arb_conf_change() -> impl Strategy<Value = ConfChange> {
    (arb_ids(), arb_ids(), arb_ids(), arb_ids()).prop_map(
        |(add_voters, remove_voters, add_learners, remove_learners)| ConfChange {
            add_voters,
            remove_voters,
            add_learners,
            remove_learners,
        },
    )
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (any::<u64>(), any::<u64>(), arb_conf_state(), arb_bytes(256))
        .prop_map(|(index, term, conf_state, data)| Snapshot { index, term, conf_state, data })
}

fn arb_hard_state() -> impl Strategy<Value = HardState> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, vote, commit)| HardState { term, vote, commit })
}

fn arb_message_type() -> impl Strategy<Value = MessageType> {
    proptest::sample::select(MessageType::ALL.to_vec())
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        arb_message_type(),
        [any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()],
        vec(arb_entry(), 0..8),
        any::<bool>(),
        any::<u64>(),
        arb_bytes(32),
        proptest::option::of(arb_snapshot()),
    )
        .prop_map(
            |(msg_type, [from, to, term, log_term, index, commit], entries, reject, reject_hint, context, snapshot)| {
                Message {
                    msg_type,
                    from,
                    to,
                    term,
                    log_term,
                    index,
                    commit,
                    entries,
                    reject,
                    reject_hint,
                    context,
                    snapshot,
                }
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn message_round_trips_and_encoded_len_is_exact(msg in arb_message()) {
        let frame = wire::encode(&msg);
        prop_assert_eq!(frame.len(), wire::encoded_len(&msg));
        prop_assert_eq!(frame[6], msg.msg_type as u8);
        prop_assert_eq!(wire::decode(&frame)?, msg);
    }

    #[test]
    fn message_of_every_type_round_trips(msg in arb_message()) {
        for msg_type in MessageType::ALL {
            let msg = Message { msg_type, ..msg.clone() };
            prop_assert_eq!(Message::decode(&msg.encode())?, msg);
        }
    }

    #[test]
    fn entries_round_trip_with_data_sliced_from_the_frame(entries in vec(arb_entry(), 0..32)) {
        let msg = Message { entries, ..Message::new(MessageType::AppendEntries, 1, 2, 3) };
        let frame = wire::encode(&msg);
        let decoded = wire::decode(&frame)?;
        let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        for entry in decoded.entries.iter().filter(|e| !e.data.is_empty()) {
            prop_assert!(frame_range.contains(&(entry.data.as_ptr() as usize)));
        }
        prop_assert_eq!(decoded.entries, msg.entries);
    }

    #[test]
    fn snapshot_round_trips_inside_a_message(snapshot in arb_snapshot()) {
        let msg = Message {
            snapshot: Some(snapshot),
            ..Message::new(MessageType::InstallSnapshot, 1, 2, 3)
        };
        prop_assert_eq!(wire::decode(&wire::encode(&msg))?, msg);
    }

    #[test]
    fn conf_state_record_round_trips(cs in arb_conf_state()) {
        prop_assert_eq!(wire::decode_conf_state(&wire::encode_conf_state(&cs))?, cs);
    }

    #[test]
    fn conf_change_record_round_trips(cc in arb_conf_change()) {
        prop_assert_eq!(wire::decode_conf_change(&wire::encode_conf_change(&cc))?, cc);
    }

    #[test]
    fn hard_state_round_trips_in_24_bytes(hs in arb_hard_state()) {
        let record = wire::encode_hard_state(&hs);
        prop_assert_eq!(record.len(), 24);
        prop_assert_eq!(wire::decode_hard_state(&record)?, hs);
    }
}

// ---------------------------------------------------------------------------------------------
// Damaged input
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_truncation_of_a_frame_is_an_error(msg in arb_message()) {
        let frame = wire::encode(&msg);
        for len in 0..frame.len() {
            prop_assert!(wire::decode(&frame.slice(..len)).is_err(), "prefix of {} bytes", len);
        }
    }

    #[test]
    fn every_truncation_of_a_resealed_frame_is_an_error(msg in arb_message()) {
        // With the length and CRC fixed up, a cut frame reaches the payload parser, which must
        // notice the missing bytes itself.
        let frame = wire::encode(&msg);
        for len in MIN_FRAME_BYTES..frame.len() {
            let mut cut = frame[..len].to_vec();
            reseal_frame(&mut cut);
            prop_assert!(wire::decode(&Bytes::from(cut)).is_err(), "resealed prefix of {} bytes", len);
        }
    }

    #[test]
    fn a_single_bit_flip_anywhere_is_an_error(msg in arb_message(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut frame = wire::encode(&msg).to_vec();
        let at = at.index(frame.len());
        frame[at] ^= 1 << bit;
        let result = wire::decode(&Bytes::from(frame));
        prop_assert!(result.is_err(), "flip of bit {} of byte {} decoded", bit, at);
        if at >= HEADER_BYTES {
            prop_assert!(matches!(result, Err(DecodeError::Checksum { .. })), "flip of byte {} gave {:?}", at, result);
        }
    }

    #[test]
    fn random_bytes_never_panic_and_never_decode_non_canonically(data in vec(any::<u8>(), 0..512)) {
        check_decode_round_trip(&data);
    }

    #[test]
    fn truncated_or_padded_records_are_errors(cc in arb_conf_change(), cs in arb_conf_state(), hs in arb_hard_state()) {
        let cc_record = wire::encode_conf_change(&cc);
        for len in 0..cc_record.len() {
            prop_assert!(wire::decode_conf_change(&cc_record.slice(..len)).is_err());
        }
        let cs_record = wire::encode_conf_state(&cs);
        for len in 0..cs_record.len() {
            prop_assert!(wire::decode_conf_state(&cs_record.slice(..len)).is_err());
        }
        let padded = Bytes::from([&cs_record[..], &[0]].concat());
        prop_assert_eq!(wire::decode_conf_state(&padded), Err(DecodeError::TrailingBytes(1)));
        let hs_record = wire::encode_hard_state(&hs);
        for len in 0..hs_record.len() {
            prop_assert!(wire::decode_hard_state(&hs_record[..len]).is_err());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fuzz stand-in: the cargo-fuzz property over 200,000 generated frames, fixed seed
// ---------------------------------------------------------------------------------------------

/// SplitMix64: a tiny deterministic generator, so the run is the same on every machine.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    fn bytes_below(&mut self, bound: usize) -> Vec<u8> {
        let len = self.below(bound);
        self.bytes(len)
    }

    /// Small integers most of the time (boundaries are where decoders go wrong), any u64 otherwise.
    fn interesting_u64(&mut self) -> u64 {
        match self.below(4) {
            0 => self.below(4) as u64,
            1 => u64::MAX - self.below(2) as u64,
            _ => self.next_u64(),
        }
    }
}

fn random_message(rng: &mut SplitMix64) -> Message {
    let ids = |rng: &mut SplitMix64| (0..rng.below(4)).map(|_| rng.interesting_u64()).collect();
    let entry_count = rng.below(5);
    Message {
        msg_type: MessageType::ALL[rng.below(MessageType::ALL.len())],
        from: rng.interesting_u64(),
        to: rng.interesting_u64(),
        term: rng.interesting_u64(),
        log_term: rng.interesting_u64(),
        index: rng.interesting_u64(),
        commit: rng.interesting_u64(),
        entries: (0..entry_count)
            .map(|_| Entry {
                index: rng.interesting_u64(),
                term: rng.interesting_u64(),
                kind: if rng.below(2) == 0 { EntryKind::Normal } else { EntryKind::ConfChange },
                data: Bytes::from(rng.bytes_below(24)),
            })
            .collect(),
        reject: rng.below(2) == 1,
        reject_hint: rng.interesting_u64(),
        context: Bytes::from(rng.bytes_below(8)),
        snapshot: (rng.below(3) == 0).then(|| Snapshot {
            index: rng.interesting_u64(),
            term: rng.interesting_u64(),
            conf_state: ConfState {
                voters: ids(rng),
                learners: ids(rng),
                voters_outgoing: ids(rng),
                learners_next: ids(rng),
                auto_leave: rng.below(2) == 1,
            },
            data: Bytes::from(rng.bytes_below(32)),
        }),
    }
}

/// Applies one to four random edits of the kinds a fuzzer makes.
fn mutate(rng: &mut SplitMix64, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(input.len());
        match rng.below(7) {
            0 if !input.is_empty() => input[at] ^= 1 << rng.below(8),
            1 if !input.is_empty() => {
                input[at] = [0, 1, 2, 0x7f, 0x80, 0xff][rng.below(6)];
            }
            2 if input.len() >= at + 4 => {
                // A forged length or count: tiny, exact-ish or enormous.
                let value: u32 = match rng.below(4) {
                    0 => rng.below(8) as u32,
                    1 => input.len() as u32,
                    2 => u32::MAX - rng.below(4) as u32,
                    _ => rng.next_u64() as u32,
                };
                input[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            3 => input.truncate(at),
            4 => {
                let extra_len = 1 + rng.below(8);
                let extra = rng.bytes(extra_len);
                input.splice(at..at, extra);
            }
            5 if !input.is_empty() => {
                let end = (at + 1 + rng.below(8)).min(input.len());
                input.drain(at..end);
            }
            _ => {
                let len = input.len();
                input.extend_from_slice(&rng.bytes_below(4));
                if rng.below(2) == 0 {
                    input.truncate(len.saturating_sub(rng.below(4)));
                }
            }
        }
    }
}

#[test]
fn fuzz_stand_in_200k_random_and_mutated_frames_never_panic_and_round_trip() {
    const ITERATIONS: usize = 200_000;
    let mut rng = SplitMix64(0x5eed_c0de_c0ff_ee00);
    let mut decoded_after_mutation = 0usize;
    for _ in 0..ITERATIONS {
        let input = match rng.below(10) {
            // Pure noise, sometimes with a plausible header in front.
            0 => rng.bytes_below(160),
            1 => {
                let noise_len = MIN_FRAME_BYTES + rng.below(160);
                let mut noise = rng.bytes(noise_len);
                noise[4] = 1;
                noise[5] = 1;
                noise[6] = 1 + rng.below(14) as u8;
                reseal_frame(&mut noise);
                noise
            }
            // Records.
            2 => {
                let mut record = match rng.below(3) {
                    0 => wire::encode_conf_change(&ConfChange {
                        add_voters: (0..rng.below(3)).map(|_| rng.next_u64()).collect(),
                        remove_learners: (0..rng.below(3)).map(|_| rng.next_u64()).collect(),
                        ..Default::default()
                    })
                    .to_vec(),
                    1 => wire::encode_conf_state(&ConfState {
                        voters: (0..rng.below(3)).map(|_| rng.next_u64()).collect(),
                        auto_leave: rng.below(2) == 0,
                        ..Default::default()
                    })
                    .to_vec(),
                    _ => wire::encode_hard_state(&HardState {
                        term: rng.next_u64(),
                        vote: rng.next_u64(),
                        commit: rng.next_u64(),
                    })
                    .to_vec(),
                };
                mutate(&mut rng, &mut record);
                record
            }
            // Mutated valid frames; `check_decode_round_trip` also tries each one resealed.
            _ => {
                let mut frame = wire::encode(&random_message(&mut rng)).to_vec();
                mutate(&mut rng, &mut frame);
                let mut resealed = frame.clone();
                reseal_frame(&mut resealed);
                if wire::decode(&Bytes::from(resealed)).is_ok() {
                    decoded_after_mutation += 1;
                }
                frame
            }
        };
        check_decode_round_trip(&input);
    }
    // The mutations must leave some frames valid, or the payload parser was never exercised
    // past its first error.
    assert!(decoded_after_mutation > 1000, "only {decoded_after_mutation} mutated frames decoded");
}

// ---------------------------------------------------------------------------------------------
// Throughput (run by hand: cargo test --release -p consensus-core --test wire_roundtrip -- --ignored --nocapture)
// ---------------------------------------------------------------------------------------------

#[test]
#[ignore = "timing measurement; run in release mode by hand"]
fn append_entries_64x128_encode_decode_throughput() {
    let msg = wire::bench_append_entries_message(64, 128);
    let frame_len = wire::encoded_len(&msg);
    let iterations = 200_000;
    let start = std::time::Instant::now();
    let mut checksum = 0u64;
    for _ in 0..iterations {
        let frame = wire::encode(std::hint::black_box(&msg));
        let decoded = wire::decode(std::hint::black_box(&frame)).expect("valid frame");
        checksum = checksum.wrapping_add(decoded.entries.len() as u64);
    }
    let elapsed = start.elapsed();
    assert_eq!(checksum, 64 * iterations as u64);
    let bytes = (frame_len * iterations) as f64;
    let gb_per_s = bytes / elapsed.as_secs_f64() / 1e9;
    let ns_per_round_trip = elapsed.as_nanos() as f64 / iterations as f64;
    println!(
        "AppendEntries 64 x 128 B: frame {frame_len} B, encode+decode {ns_per_round_trip:.0} ns, \
         {gb_per_s:.2} GB/s of frame bytes"
    );
}
