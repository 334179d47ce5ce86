//! Which protocol a frame, a data directory or a core belongs to: each protocol's name and numbers,
//! written once. The storage crate's file headers (docs/storage-format.md) and the frame header
//! (`codec.rs`, docs/wire-format.md) both take their protocol byte from here.

/// A protocol this build knows. The discriminant is its id, the byte a segment or snapshot file
/// header holds; files on disk already carry these values, so they never change.
///
/// Zab is reserved id 2 (and frame byte 3, `codec::PROTOCOL_ZAB`); it gets a variant once it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ProtocolId {
    Raft = 0,
    Paxos = 1,
}

impl ProtocolId {
    /// Every protocol this build has, in id order.
    pub const ALL: [ProtocolId; 2] = [ProtocolId::Raft, ProtocolId::Paxos];

    /// The id: the protocol byte of a storage file header.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The protocol with id `id`, if this build has it.
    pub fn from_id(id: u8) -> Option<ProtocolId> {
        ProtocolId::ALL.into_iter().find(|p| p.id() == id)
    }

    /// The name configuration files, the CLI and error messages use.
    pub const fn name(self) -> &'static str {
        match self {
            ProtocolId::Raft => "raft",
            ProtocolId::Paxos => "paxos",
        }
    }

    /// The protocol called `name`, if this build has it.
    pub fn from_name(name: &str) -> Option<ProtocolId> {
        ProtocolId::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The protocol byte of a frame header. The wire format numbered protocols from 1 before the
    /// storage format numbered them from 0; both formats are fixed, so this is the one mapping.
    pub const fn frame_byte(self) -> u8 {
        match self {
            ProtocolId::Raft => 1,
            ProtocolId::Paxos => 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_names_and_frame_bytes_are_the_frozen_values() {
        assert_eq!([ProtocolId::Raft.id(), ProtocolId::Paxos.id()], [0, 1]);
        assert_eq!([ProtocolId::Raft.frame_byte(), ProtocolId::Paxos.frame_byte()], [1, 2]);
        for p in ProtocolId::ALL {
            assert_eq!(ProtocolId::from_id(p.id()), Some(p));
            assert_eq!(ProtocolId::from_name(p.name()), Some(p));
        }
        assert_eq!(ProtocolId::from_id(2), None, "2 is reserved for Zab");
        assert_eq!(ProtocolId::from_name("zab"), None);
    }
}
