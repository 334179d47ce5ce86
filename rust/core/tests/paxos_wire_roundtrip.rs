//! Properties of the Multi-Paxos wire codec (`paxos::wire`, docs/wire-format.md §10): every message
//! round-trips and `encoded_len` is exact; every truncation and every single bit flip of a frame is
//! a `DecodeError`; random bytes never panic and never decode to something that re-encodes
//! differently (the encoding is canonical).

use bytes::Bytes;
use consensus_core::paxos::{wire, AcceptedSlot, Ballot, Message, MessageType, Snapshot, Value, ValueKind};
use proptest::collection::vec;
use proptest::prelude::*;

fn arb_bytes(max_len: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..=max_len).prop_map(Bytes::from)
}

fn arb_ballot() -> impl Strategy<Value = Ballot> {
    (any::<u64>(), any::<u64>()).prop_map(|(round, node)| Ballot { round, node })
}

fn arb_value() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![Just(ValueKind::Noop), Just(ValueKind::Batch), Just(ValueKind::Reconfig)];
    (kind, any::<u64>(), vec(arb_bytes(32), 0..4)).prop_map(|(kind, round, commands)| Value { kind, round, commands })
}

fn arb_slot() -> impl Strategy<Value = AcceptedSlot> {
    (any::<u64>(), arb_ballot(), arb_value()).prop_map(|(slot, ballot, value)| AcceptedSlot { slot, ballot, value })
}

fn arb_snapshot() -> impl Strategy<Value = Snapshot> {
    (
        any::<u64>(),
        any::<u64>(),
        vec(any::<u64>(), 0..5),
        vec((any::<u64>(), vec(any::<u64>(), 0..5)), 0..3),
        arb_bytes(64),
    )
        .prop_map(|(index, term, members, pending, data)| Snapshot { index, term, members, pending, data })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let head = (
        prop::sample::select(MessageType::ALL.to_vec()),
        any::<u64>(),
        any::<u64>(),
        arb_ballot(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    );
    let body = (vec(arb_slot(), 0..6), vec(arb_bytes(32), 0..4), arb_bytes(24), prop::option::of(arb_snapshot()));
    (head, body).prop_map(
        |((msg_type, from, to, ballot, index, last_index, commit), (entries, commands, context, snapshot))| Message {
            msg_type,
            from,
            to,
            ballot,
            index,
            last_index,
            commit,
            entries,
            commands,
            context,
            snapshot,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn message_round_trips_and_encoded_len_is_exact(msg in arb_message()) {
        let frame = wire::encode(&msg);
        prop_assert_eq!(frame.len(), wire::encoded_len(&msg));
        prop_assert_eq!(wire::decode(&frame).unwrap(), msg);
    }

    #[test]
    fn every_truncation_of_a_frame_is_an_error(msg in arb_message()) {
        let frame = wire::encode(&msg);
        for len in 0..frame.len() {
            prop_assert!(wire::decode(&frame.slice(..len)).is_err(), "a frame cut to {} bytes decoded", len);
        }
    }

    #[test]
    fn a_single_bit_flip_anywhere_is_an_error(msg in arb_message(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut frame = wire::encode(&msg).to_vec();
        let at = at.index(frame.len());
        frame[at] ^= 1 << bit;
        // The frame checksum covers every byte, so no flip can decode.
        prop_assert!(wire::decode(&Bytes::from(frame)).is_err());
    }

    #[test]
    fn random_bytes_never_panic_and_never_decode_non_canonically(data in vec(any::<u8>(), 0..512)) {
        let frame = Bytes::from(data);
        if let Ok(msg) = wire::decode(&frame) {
            prop_assert_eq!(wire::encode(&msg), frame);
        }
    }
}
